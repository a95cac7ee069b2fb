"""Fixtures for the independent-client suite: the emulator binary on a free loopback port with
the example seed, the seed facts the tests need, tokens from the emulator's token endpoint, and
Microsoft's Python Graph SDK pointed at the emulator with a static bearer token.

Environment (set by run.sh): M365_EMULATOR_BIN (the built binary), M365_EMULATOR_SEED (seed file).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
import secrets
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient

HERE = Path(__file__).resolve().parent
CRATE = HERE.parent
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"


class StaticTokenProvider(AccessTokenProvider):
    """Hands the SDK a token obtained beforehand from the emulator's token endpoint."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def get_authorization_token(self, uri: str, additional_authentication_context=None) -> str:
        return self._token

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        # An empty list allows every host, so the SDK sends the token to http://127.0.0.1.
        return AllowedHostsValidator([])


@dataclasses.dataclass
class SeedFacts:
    """What the tests need from the seed: one tenant where an app holds an admin-consent grant."""

    tenant_id: str
    managed_domain: str
    unverified_or_foreign_domain: str
    app_id: str
    app_secret: str
    redirect_uri: str | None
    admin_upn: str | None
    admin_password: str | None
    tenant: dict


def _facts(seed: dict) -> SeedFacts:
    tenants = seed.get("tenants", [])

    def tenant_for(key: str) -> dict | None:
        key = key.lower()
        for t in tenants:
            if t["id"].lower() == key or any(d["name"].lower() == key for d in t.get("domains", [])):
                return t
        return None

    for app in seed.get("applications", []):
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        live = [s["value"] for s in app.get("secrets", []) if not s.get("expiresAt") or s["expiresAt"] > now]
        if not live:
            continue
        for grant in app.get("grants", []):
            if "User.ReadWrite.All" not in grant.get("roles", []):
                continue
            tenant = tenant_for(grant["tenant"])
            if tenant is None:
                continue
            managed = [d for d in tenant["domains"] if d.get("authenticationType") == "Managed" and d.get("isVerified", True)]
            if not managed:
                continue
            managed.sort(key=lambda d: (not d.get("isDefault", False), d.get("isInitial", False)))
            admins = tenant.get("admins", [])
            admin = next(
                (a for a in admins if app["appId"].lower() in [x.lower() for x in a.get("consentedApps", [])]),
                admins[0] if admins else None,
            )
            return SeedFacts(
                tenant_id=tenant["id"].lower(),
                managed_domain=managed[0]["name"],
                unverified_or_foreign_domain="not-a-domain-of-this-tenant.example",
                app_id=app["appId"].lower(),
                app_secret=live[0],
                redirect_uri=(app.get("redirectUris") or [None])[0],
                admin_upn=admin["userPrincipalName"] if admin else None,
                admin_password=admin["password"] if admin else None,
                tenant=tenant,
            )
    raise AssertionError("the seed has no app with a live secret and a User.ReadWrite.All grant in a tenant with a managed domain")


@dataclasses.dataclass
class Emulator:
    base: str
    facts: SeedFacts
    log_path: Path

    def token_request(self, tenant: str, form: dict) -> httpx.Response:
        return httpx.post(f"{self.base}/{tenant}/oauth2/v2.0/token", data=form, timeout=10)

    def app_token(self) -> str:
        r = self.token_request(
            self.facts.tenant_id,
            {
                "grant_type": "client_credentials",
                "client_id": self.facts.app_id,
                "client_secret": self.facts.app_secret,
                "scope": GRAPH_DEFAULT,
            },
        )
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def minted_token(self, **body) -> str:
        r = httpx.post(f"{self.base}/_emulator/tokens", json=body, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def delegated_token(self) -> str:
        """Signs the seeded admin in through the authorize form (PKCE S256), redeems the code."""
        f = self.facts
        assert f.admin_upn and f.admin_password and f.redirect_uri, "the seed needs an admin and a redirect URI"
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        r = httpx.post(
            f"{self.base}/organizations/oauth2/v2.0/authorize",
            data={
                "client_id": f.app_id,
                "response_type": "code",
                "redirect_uri": f.redirect_uri,
                "scope": "openid offline_access https://graph.microsoft.com/.default",
                "state": "py-state",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "login": f.admin_upn,
                "passwd": f.admin_password,
                "action": "accept",
            },
            timeout=10,
        )
        assert r.status_code == 302, f"{r.status_code} {r.headers.get('x-ms-ests-error')} {r.text[:300]}"
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["location"]).query)
        assert query["state"] == ["py-state"]
        t = self.token_request(
            f.tenant_id,
            {
                "grant_type": "authorization_code",
                "client_id": f.app_id,
                "client_secret": f.app_secret,
                "code": query["code"][0],
                "redirect_uri": f.redirect_uri,
                "code_verifier": verifier,
            },
        )
        assert t.status_code == 200, t.text
        body = t.json()
        assert body["refresh_token"]
        return body["access_token"]

    def client(self, token: str) -> tuple[GraphServiceClient, GraphRequestAdapter]:
        auth = BaseBearerTokenAuthenticationProvider(StaticTokenProvider(token))
        adapter = GraphRequestAdapter(auth)
        adapter.base_url = f"{self.base}/v1.0"
        return GraphServiceClient(request_adapter=adapter), adapter


@pytest.fixture(scope="session")
def emulator():
    binary = os.environ.get("M365_EMULATOR_BIN")
    assert binary and Path(binary).is_file(), "M365_EMULATOR_BIN must name the built m365-emulator (run.sh sets it)"
    seed_path = Path(os.environ.get("M365_EMULATOR_SEED", CRATE / "seeds" / "example.json"))
    seed = json.loads(seed_path.read_text())
    log = tempfile.NamedTemporaryFile(prefix="m365-emulator-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [binary, "--port", "0", "--seed", str(seed_path)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")},
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        match = re.search(r"listening on (http://\S+)", line)
        assert match, f"emulator did not start: {line!r}; log {log.name}"
        base = match.group(1)
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"{base}/_emulator/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "emulator health never answered"
            time.sleep(0.05)
        yield Emulator(base=base, facts=_facts(seed), log_path=Path(log.name))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
