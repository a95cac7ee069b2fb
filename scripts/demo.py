#!/usr/bin/env python3
"""The m365-sync walkthrough behind `make demo`: the product on one machine, no AWS, no Microsoft.

Run by `make demo` as `scripts/with-moto.sh python3 scripts/demo.py` (moto's URL arrives in
AWS_ENDPOINT_URL). Starts the m365-emulator with a demo company and devstack with template.yaml's
wiring, then drives the public HTTP API the way an admin would, printing each step and what it
proves. Exits non-zero on the first step that does not behave as the product promises, and stops
everything it started on every exit path. Only the standard library is used.

Steps that need functions not built yet are not faked: the walkthrough covers what exists.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
SEED = ROOT / "tools/m365-emulator/seeds/example.json"
APP_ID = "5f0c3e1a-9b7d-4c2e-8a61-0d4b2f7e9c11"
APP_SECRET = "emulator-secret-m365-sync-1"
DEMO_USERS = 300
CONTOSO_DOMAIN = "contoso.onmicrosoft.com"
# The directory password policy of the demo: passwords expire after ~35 seconds, so expiry can be
# watched; one reconcile round may block, suspend or remove at most 2 users before it is held.
PASSWORD_MAX_AGE_DAYS = "0.0004"
PASSWORD_MAX_AGE_SECONDS = 0.0004 * 86_400
SAFEGUARD = "2"


class DemoFailure(Exception):
    """A step did not behave as the product promises."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def say(text: str = "") -> None:
    print(text, flush=True)


STEP = [0]


def step(title: str) -> None:
    STEP[0] += 1
    say()
    say(f"== {STEP[0]}. {title}")


class Http:
    """A tiny JSON client that never follows redirects (the OAuth steps read `Location`)."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003
            return None

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.opener = urllib.request.build_opener(self._NoRedirect)

    def call(self, method: str, path: str, body=None, form=None, auth: bool = True):
        url = path if path.startswith("http") else f"{self.base}{path}"
        headers = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["content-type"] = "application/x-www-form-urlencoded"
        if auth and self.token:
            headers["authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def json(self, method: str, path: str, body=None, auth: bool = True):
        status, _, raw = self.call(method, path, body=body, auth=auth)
        try:
            return status, json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return status, raw.decode(errors="replace")


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise DemoFailure(what)
    say(f"   ok: {what}")


def reconcile(api: "Http", tenant: str, dry_run: bool, timeout: float = 90.0):
    """POST /tenants/{id}/reconcile answers 202 with a run queued on the reconcile queue (R-OPS-2);
    the run is polled until it ends. Returns (status of the POST, the finished run)."""
    status, queued = api.json("POST", f"/tenants/{tenant}/reconcile?dryRun={'true' if dry_run else 'false'}")
    if status != 202 or not isinstance(queued, dict):
        return status, queued
    run_id = queued["runId"]
    deadline = time.monotonic() + timeout
    run = queued
    while time.monotonic() < deadline:
        _, run = api.json("GET", f"/tenants/{tenant}/reconcile/runs/{run_id}")
        if isinstance(run, dict) and run.get("status") in ("done", "held", "failed"):
            return status, run
        time.sleep(0.5)
    raise DemoFailure(f"reconcile run {run_id} did not finish in {timeout:.0f} s: {run}")


def demo_seed(path: Path, redirect_uri: str) -> None:
    """The example seed, with the local callback registered and a company of a few hundred users."""
    seed = json.loads(SEED.read_text())
    for app in seed["applications"]:
        if app["appId"] == APP_ID:
            app["redirectUris"].append(redirect_uri)
    contoso = seed["tenants"][0]
    first = ["Ava", "Ben", "Chloe", "Dan", "Eva", "Finn", "Gina", "Hugo", "Iris", "Jon"]
    last = ["Archer", "Baker", "Carter", "Dixon", "Ellis", "Foster", "Grant", "Hayes"]
    for i in range(DEMO_USERS):
        given, surname = first[i % len(first)], last[(i // len(first)) % len(last)]
        contoso["users"].append(
            {
                "userPrincipalName": f"{given.lower()}.{surname.lower()}{i}@contoso.com",
                "displayName": f"{given} {surname}",
                "givenName": given,
                "surname": surname,
                "jobTitle": "Staff",
                "usageLocation": "US",
                "password": f"Demo-Passw0rd-{i}!",
            }
        )
    path.write_text(json.dumps(seed))


def wait_for_line(process: subprocess.Popen, prefix: str, timeout: float) -> dict[str, str]:
    """Reads `process`'s stdout until a line starting with `prefix`; returns the `key value` lines."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                raise DemoFailure(f"{process.args[0]} exited with {process.returncode} before '{prefix}'")
            continue
        line = line.strip()
        parts = line.split(" ", 2)
        if len(parts) == 3:
            seen[parts[1]] = parts[2]
        if line.startswith(prefix):
            return seen
    raise DemoFailure(f"no '{prefix}' from {process.args[0]} within {timeout:.0f} s")


def sign_in(authorize_url: str, login: str, password: str, http: Http) -> str:
    """Completes the emulator's sign-in and consent page as the admin would; returns the redirect."""
    status, headers, _ = sign_in_page(authorize_url, login, password, http)
    location = headers.get("Location") or headers.get("location")
    if status != 302 or not location:
        raise DemoFailure(f"sign-in page answered {status} without a redirect")
    return location


def sign_in_page(authorize_url: str, login: str, password: str, http: Http):
    """Submits the emulator's sign-in page as `login`; the raw answer (status, headers, body)."""
    parsed = urllib.parse.urlsplit(authorize_url)
    form = dict(urllib.parse.parse_qsl(parsed.query))
    form.update({"login": login, "passwd": password, "action": "accept"})
    endpoint = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, parsed.path, "", ""))
    return http.call("POST", endpoint, form=form, auth=False)


def enabled_accounts(emulator: Http) -> int:
    """How many Contoso accounts can sign in, read from the emulator's raw state."""
    tenant = emulator.json("GET", f"/_emulator/tenants/{CONTOSO_DOMAIN}")[1]
    users = tenant.get("users", []) if isinstance(tenant, dict) else []
    return sum(1 for u in users if u.get("properties", u).get("accountEnabled", True) and not u.get("deletedAt"))


def m365_users(emulator: Http) -> list[dict]:
    """Contoso's M365 users as the emulator holds them (Graph properties plus `id`)."""
    tenant = emulator.json("GET", f"/_emulator/tenants/{CONTOSO_DOMAIN}")[1]
    users = tenant.get("users", []) if isinstance(tenant, dict) else []
    return [{**u.get("properties", {}), **{k: v for k, v in u.items() if k != "properties"}} for u in users]


def m365_user_by_id(emulator: Http, object_id: str) -> dict:
    for user in m365_users(emulator):
        if user.get("id") == object_id:
            return user
    raise DemoFailure(f"no M365 user {object_id} in the emulator")


def sent_emails() -> list[dict]:
    """The emails SES accepted, from moto's record (the demo's view of the mail server)."""
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    for _ in range(5):
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=10) as response:
                data = json.loads(response.read())
            return data.get("ses", {}).get("Message", [])
        except (urllib.error.URLError, json.JSONDecodeError):
            time.sleep(0.3)
    return []


def m365_user(emulator: Http, upn: str) -> dict:
    for user in m365_users(emulator):
        if user.get("userPrincipalName", "").lower() == upn.lower():
            return user
    raise DemoFailure(f"no M365 user {upn} in the emulator")


def m365_group(emulator: Http, group_id: str) -> dict:
    tenant = emulator.json("GET", f"/_emulator/tenants/{CONTOSO_DOMAIN}")[1]
    for group in tenant.get("groups", []) if isinstance(tenant, dict) else []:
        if group.get("id") == group_id:
            return {**group.get("properties", {}), **{k: v for k, v in group.items() if k != "properties"}}
    raise DemoFailure(f"no M365 group {group_id} in the emulator")


def wait_for_binding(api: Http, user: str, state: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    binding: dict = {}
    while time.monotonic() < deadline:
        status, body = api.json("GET", f"/users/{user}/binding")
        binding = (body.get("binding", body) if isinstance(body, dict) else {}) if status == 200 else {}
        if binding.get("state") == state:
            return binding
        time.sleep(0.5)
    return binding


def graph(emulator: Http, method: str, path: str, body=None):
    """A Graph call as the m365-sync app in Contoso, with a token minted by the emulator (as an
    admin would look in Graph Explorer)."""
    status, token = emulator.json("POST", "/_emulator/tokens", {"tenant": CONTOSO_DOMAIN, "appId": APP_ID})
    if status != 200:
        raise DemoFailure(f"the emulator minted no token: {status} {token}")
    return Http(emulator.base, token["access_token"]).json(method, f"/v1.0{path}", body)


def sku_ids(account: dict) -> list[str]:
    return [lic.get("skuId") for lic in account.get("assignedLicenses", [])]


def find_schedule(wiring, function: str) -> str | None:
    """The name of `function`'s first schedule event in devstack's wiring (read from template.yaml)."""
    for item in wiring.get("schedules", []) if isinstance(wiring, dict) else []:
        if str(item.get("function", "")).endswith(function):
            return item.get("event")
    return None


def walkthrough(api: Http, emulator: Http) -> list[str]:
    summary: list[str] = []

    step("Connect the Contoso tenant (OAuth 2.0 authorization code + PKCE, as its admin)")
    # Access tokens of 10 minutes, so the 5-minute refresh schedule finds work in step 4.
    emulator.json("PUT", "/_emulator/identity/settings", {"accessTokenLifetimeSeconds": 600})
    status, body = api.json("POST", "/tenants", {"name": "Contoso"})
    expect(status == 201, f"POST /tenants answered 201 with tenantId {body.get('tenantId') if isinstance(body, dict) else body}")
    contoso_id = body["tenantId"]
    # A second sign-in link for Contoso, handed out before anyone consented (used in step 3).
    status, early = api.json("POST", "/tenants", {"tenantId": contoso_id})
    expect(status == 200, "a second sign-in link was handed out before the consent")
    say(f"   the admin opens: {body['authorizeUrl'][:110]}…")
    callback = sign_in(body["authorizeUrl"], "admin@contoso.onmicrosoft.com", "Admin-Passw0rd!", emulator)
    say("   the admin signs in and consents; Microsoft redirects the browser to our /oauth/callback")
    status, tenant = api.json("GET", callback, auth=False)
    expect(status == 200, "the callback verified state + PKCE, stored the tokens and claimed the domains")
    say(f"   tenant: {json.dumps(tenant)[:300]}")
    expect(tenant.get("status") == "active", "Contoso is active")
    summary.append("connected Contoso through OAuth (state + PKCE verified, tokens in Secrets Manager)")

    step("Try the GoDaddy-operated Northwind tenant (all domains federated)")
    status, body = api.json("POST", "/tenants", {"name": "Northwind"})
    expect(status == 201, "POST /tenants answered 201")
    callback = sign_in(body["authorizeUrl"], "admin@northwind.onmicrosoft.com", "Northwind-Adm1n!", emulator)
    status, refusal = api.json("GET", callback, auth=False)
    code = refusal.get("error", {}).get("code") if isinstance(refusal, dict) else None
    expect(status == 422 and code == "federated_tenant_unsupported",
           f"refused with {status} {code}: {refusal.get('error', {}).get('message', '') if isinstance(refusal, dict) else refusal}")
    summary.append("refused the all-federated Northwind tenant with a clear reason")

    step("Reconnect Contoso, but Northwind's admin signs in: refused, Contoso untouched")
    pinned_tid = tenant.get("m365TenantId")
    status, before = api.json("GET", f"/tenants/{contoso_id}")
    expect(status == 200 and before.get("status") == "active", "Contoso is active before the reconnect")
    status, body = api.json("POST", "/tenants", {"tenantId": contoso_id})
    url = body.get("authorizeUrl", "") if isinstance(body, dict) else ""
    expect(status == 200 and f"/{pinned_tid}/oauth2/v2.0/authorize" in url,
           f"the reconnect link names Contoso's own Microsoft tenant ({pinned_tid}), not 'organizations'")
    status, headers, _ = sign_in_page(url, "admin@northwind.onmicrosoft.com", "Northwind-Adm1n!", emulator)
    refused = headers.get("x-ms-ests-error") or headers.get("X-Ms-Ests-Error")
    expect(status == 200 and refused == "50020",
           f"Microsoft's page refuses Northwind's admin there (AADSTS{refused}), nothing reaches the callback")
    say("   a link handed out before Contoso was pinned still names 'organizations'; Northwind's admin uses it:")
    callback = sign_in(early["authorizeUrl"], "admin@northwind.onmicrosoft.com", "Northwind-Adm1n!", emulator)
    status, refusal = api.json("GET", callback, auth=False)
    code = refusal.get("error", {}).get("code") if isinstance(refusal, dict) else None
    expect(status == 409 and code == "tenant_mismatch",
           f"the callback read the new token's tenant first and refused with {status} {code}: "
           f"{refusal.get('error', {}).get('message', '') if isinstance(refusal, dict) else refusal}")
    status, after = api.json("GET", f"/tenants/{contoso_id}")
    expect(after == before, "Contoso is exactly as before: active, same tenant id, domains and token expiry")
    summary.append("refused a reconnect signed in as another tenant's admin (AADSTS50020 on the pinned link, "
                   "409 tenant_mismatch on an old one); Contoso's tokens untouched")

    step("List the tenants")
    status, tenants = api.json("GET", "/tenants")
    expect(status == 200, "GET /tenants answered 200")
    for t in tenants.get("tenants", tenants) if isinstance(tenants, dict) else tenants:
        say(f"   {t.get('name'):<12} {t.get('status'):<24} domains: {[d.get('name') for d in t.get('domains', [])]}")

    step("Refresh tokens on schedule (the EventBridge rule of template.yaml, fired now by devstack)")
    expiry_before = tenant.get("tokenExpiresAt")
    say(f"   Contoso's access token expires at {expiry_before} (within the 15-minute refresh window)")
    wiring = api.json("GET", "/_devstack/wiring")[1]
    schedule = find_schedule(wiring, "TokenRefreshFunction")
    expect(schedule is not None, f"template.yaml schedules TokenRefreshFunction ({schedule})")
    time.sleep(1.1)  # token expiry has one-second resolution
    status, _, raw = api.call("POST", f"/_devstack/schedules/TokenRefreshFunction/{schedule}")
    outcome = json.loads(raw) if status == 200 else {}
    expect(outcome.get("ok") is True, f"the token-refresh schedule ran: {raw.decode(errors='replace')[:200]}")
    status, tenant = api.json("GET", f"/tenants/{contoso_id}")
    expect(tenant.get("tokenExpiresAt") != expiry_before,
           f"the rotated tokens were saved: expiry now {tenant.get('tokenExpiresAt')}")
    summary.append("refreshed Contoso's tokens on schedule, rotated refresh token saved before use")

    step("Import: page through Contoso's M365 users and import a few")
    status, page = api.json("GET", f"/tenants/{contoso_id}/import?limit=50")
    rows = page.get("users", []) if isinstance(page, dict) else []
    expect(status == 200 and len(rows) == 50 and page.get("nextCursor"),
           f"GET /tenants/{{id}}/import?limit=50: one page of {len(rows)} users and an opaque, signed nextCursor")
    tampered = page["nextCursor"][:-2] + ("AA" if not page["nextCursor"].endswith("AA") else "BB")
    status, body = api.json("GET", f"/tenants/{contoso_id}/import?limit=50&cursor={urllib.parse.quote(tampered)}")
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    expect(status == 400, f"a tampered cursor is refused ({code})")
    status, page = api.json("GET", f"/tenants/{contoso_id}/import?limit=50&prefix=ava")
    rows = page.get("users", []) if isinstance(page, dict) else []
    expect(status == 200 and rows and all(r.get("status") == "new" for r in rows),
           f"prefix 'ava': {len(rows)} users, all new to the directory")
    chosen = [r["m365Id"] for r in rows[:3]]
    status, result = api.json("POST", f"/tenants/{contoso_id}/import", {"m365Ids": chosen})
    expect(status == 200 and result.get("imported") == 3,
           f"imported {result.get('imported')} of 3 (directory users bound to their accounts, M365 untouched)")
    imported = [(r["userId"], r["m365Id"]) for r in result.get("results", []) if r.get("result") == "imported"]
    status, page = api.json("GET", f"/tenants/{contoso_id}/import?limit=50&prefix=ava&status=imported")
    rows = page.get("users", []) if isinstance(page, dict) else []
    expect(len(rows) == 3, f"the same page now shows them as imported: {[r['userPrincipalName'] for r in rows]}")
    summary.append("imported 3 M365 users page by page, with a tamper-evident cursor")

    step("Directory users, and a password checked against the policies")
    alice = {"email": "alice.new@contoso.com", "displayName": "Alice Newman", "givenName": "Alice",
             "surname": "Newman", "jobTitle": "Engineer", "department": "R&D",
             "notificationEmail": "alice.home@example.org"}
    status, body = api.json("PUT", "/users/alice", alice)
    expect(status in (200, 201), f"PUT /users/alice answered {status} (a new employee, not in M365 yet)")
    status, body = api.json("POST", "/users/alice/password", {"password": "short"})
    error = body.get("error", {}) if isinstance(body, dict) else {}
    expect(status == 400 and error.get("code") == "password_policy",
           f"a weak password is refused, nothing stored: {error.get('message', '')[:160]}")
    status, _, _ = api.call("POST", "/users/alice/password", {"password": "Corr3ct-Horse-Battery"})
    expect(status == 204, "a compliant password is sealed (AES-256-GCM) and stored")
    adele = {"email": "AdeleV@contoso.com", "displayName": "Adele Vance", "givenName": "Adele",
             "surname": "Vance", "jobTitle": "Retail Manager", "department": "Sales"}
    status, _ = api.json("PUT", "/users/adele", adele)
    expect(status in (200, 201), "PUT /users/adele answered (she already has an M365 account)")

    step("Bind Alice while Microsoft Graph throttles: pending, then absorbed by the retry queue")
    status, _ = emulator.json("POST", "/_emulator/faults",
                              {"method": "POST", "path": "/v1.0/users", "kind": "429", "count": 2, "retryAfter": "1.5"})
    expect(status < 300, "fault armed in the emulator")
    say("   the emulator will answer the next 2 account creations with 429 + Retry-After: 1.5")
    started = time.monotonic()
    status, body = api.json("PUT", "/users/alice/binding", {"welcome": True})
    binding = body.get("binding", {}) if isinstance(body, dict) else {}
    expect(status == 202 and binding.get("state") == "pending",
           f"PUT /users/alice/binding answered {status} {binding.get('state')}: {binding.get('pendingReason')}")
    binding = wait_for_binding(api, "alice", "provisioned", 120)
    expect(binding.get("state") == "provisioned",
           f"the retry worker (SQS) finished the bind after {time.monotonic() - started:.1f} s")
    accounts = [u for u in m365_users(emulator) if u.get("userPrincipalName", "").lower() == alice["email"]]
    expect(len(accounts) == 1 and accounts[0].get("id") == binding.get("m365ObjectId"),
           f"exactly one M365 account exists for Alice ({binding.get('m365ObjectId')})")
    summary.append("bound Alice: a new M365 account, created through two 429s without failing the admin")

    step("Alice's welcome email, delivered by Amazon SES (the notify function on the notifications queue)")
    # Read on SES's side: moto's record of the messages SES accepted (the demo looks; the product
    # only calls SES v2 SendEmail).
    mails = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not mails:
        mails = [m for m in sent_emails() if "alice.home@example.org" in m.get("destinations", {}).get("ToAddresses", [])]
        time.sleep(0.5)
    expect(len(mails) == 1, f"exactly one welcome email, to her notificationEmail ({len(mails)} sent)")
    mail = mails[0]
    say(f"   From: {mail.get('source')}\n   To: alice.home@example.org\n   Subject: {mail.get('subject')}")
    for line in str(mail.get("body", "")).splitlines():
        say(f"   | {line}")
    expect(alice["email"] in str(mail.get("body")), "it names her M365 sign-in address")
    expect("Corr3ct-Horse-Battery" not in json.dumps(mail), "and never her password")
    summary.append("delivered Alice's welcome email through SES to her notificationEmail, without her password")

    step("Bind Adele, who already has an M365 account: adopted, not duplicated")
    existing = m365_user(emulator, adele["email"])
    status, body = api.json("PUT", "/users/adele/binding", {"welcome": False})
    binding = body.get("binding", {}) if isinstance(body, dict) else {}
    expect(status == 200 and binding.get("m365ObjectId") == existing.get("id"),
           f"adopted her account {existing.get('id')} ({binding.get('state')})")
    summary.append("bound Adele by adopting her existing account")

    step("Push a new password to Alice's M365 account")
    before = m365_user(emulator, alice["email"]).get("lastPasswordChangeDateTime")
    time.sleep(1.1)
    status, _, _ = api.call("POST", "/users/alice/password", {"password": "N3w-Spring-Harvest"})
    password_set_at = time.monotonic()
    expect(status == 204, "POST /users/alice/password answered 204")
    after = m365_user(emulator, alice["email"]).get("lastPasswordChangeDateTime")
    expect(after != before, f"M365's lastPasswordChangeDateTime moved: {before} -> {after}")
    summary.append("pushed Alice's new password to M365")

    step("Bind a directory group: a security group in M365 mirroring its bound members")
    status, _ = api.json("PUT", "/groups/platform", {"name": "Platform Team", "members": ["alice", "adele"]})
    expect(status in (200, 201), f"PUT /groups/platform answered {status}")
    status, body = api.json("PUT", "/groups/platform/binding", {"tenantId": contoso_id})
    group_id = body.get("binding", {}).get("m365GroupId") if isinstance(body, dict) else None
    expect(status == 200 and group_id, f"PUT /groups/platform/binding answered {status}: "
                                       f"{body.get('change') if isinstance(body, dict) else body}, "
                                       f"{body.get('added') if isinstance(body, dict) else ''} member(s) added")
    group = m365_group(emulator, group_id)
    expect(group.get("securityEnabled") is True and group.get("mailEnabled") is False,
           f"M365 security group {group.get('id')} (securityEnabled, not mail-enabled)")
    expect(len(group.get("members", [])) == 2, "Alice and Adele are its members")
    status, body = api.json("PUT", "/groups/platform", {"name": "Platform Team", "members": ["alice"]})
    expect(status == 200, f"Adele leaves the directory group: sync {body.get('sync') if isinstance(body, dict) else body}")
    group = m365_group(emulator, group_id)
    expect(len(group.get("members", [])) == 1, "and the M365 group follows: one member left")
    summary.append("bound the Platform Team group: a security group whose membership follows the directory")

    step("Reconcile: a password changed inside M365 is overwritten with the directory's")
    status, run = reconcile(api, contoso_id, dry_run=False)
    report = run.get("report") or {}
    expect(status == 202 and run.get("status") == "done",
           f"POST …/reconcile answered 202 with run {run.get('runId')}; it ran from the reconcile queue")
    say(f"   first run (full delta sync): {len(report.get('plan', []))} repairs, "
        f"{report.get('pages')} delta page(s), {run.get('passes')} pass(es)")
    # Reconcile counts a password change as M365's when M365's lastPasswordChangeDateTime is later
    # than the one it read back after our last push (M365's clock against M365's clock). The
    # stamps have one-second resolution: Alice's change comes a second after our push.
    time.sleep(1.1)
    emulator.json("POST", f"/_emulator/tenants/{CONTOSO_DOMAIN}/users/{alice['email']}/self-password-change", {})
    changed = m365_user(emulator, alice["email"]).get("lastPasswordChangeDateTime")
    say(f"   Alice then changes her own password in Microsoft 365 ({changed})")
    status, run = reconcile(api, contoso_id, dry_run=True)
    report = run.get("report") or {}
    kinds = [r.get("kind") for r in report.get("plan", [])]
    expect(run.get("status") == "done" and "overwrite_password" in kinds, f"a dry run plans {kinds} and writes nothing")
    expect(m365_user(emulator, alice["email"]).get("lastPasswordChangeDateTime") == changed,
           "M365 is untouched by the dry run")
    time.sleep(1.1)  # lastPasswordChangeDateTime has one-second resolution
    status, run = reconcile(api, contoso_id, dry_run=False)
    report = run.get("report") or {}
    expect(run.get("status") == "done" and report.get("applied", 0) >= 1, f"the real run applied {report.get('applied')} repair(s)")
    overwritten = m365_user(emulator, alice["email"]).get("lastPasswordChangeDateTime")
    expect(overwritten != changed, f"Alice's M365 password was set back to the directory's ({overwritten})")
    summary.append("reconciled: an M365-side password change found by delta, shown by a dry run, then overwritten")

    step(f"Password expiry: the directory policy's maximum age is {PASSWORD_MAX_AGE_DAYS} days here (~35 s)")
    remaining = PASSWORD_MAX_AGE_SECONDS + 1 - (time.monotonic() - password_set_at)
    if remaining > 0:
        say(f"   waiting {remaining:.0f} s for Alice's password to expire…")
        time.sleep(remaining)
    # This time through the hourly schedule, as deployed: the schedule only queues one reconcile
    # pass per active tenant on the reconcile queue, and the pass runs from the queue.
    wiring = api.json("GET", "/_devstack/wiring")[1]
    schedule = find_schedule(wiring, "ReconcileFunction")
    expect(schedule is not None, f"template.yaml schedules ReconcileFunction ({schedule})")
    status, _, raw = api.call("POST", f"/_devstack/schedules/ReconcileFunction/{schedule}")
    outcome = json.loads(raw) if status == 200 else {}
    expect(outcome.get("ok") is True,
           f"the reconcile schedule queued a pass per active tenant: {raw.decode(errors='replace')[:200]}")
    binding = wait_for_binding(api, "alice", "suspended", 20)
    say("   the queued pass ran from the reconcile queue (SQS consumer of template.yaml)")
    expect(binding.get("state") == "suspended", "Alice's binding is suspended")
    expect(m365_user(emulator, alice["email"]).get("accountEnabled") is False, "her M365 sign-in is blocked")
    status, _, _ = api.call("POST", "/users/alice/password", {"password": "Autumn-Leaves-42"})
    expect(status == 204, "she sets a new password")
    binding = wait_for_binding(api, "alice", "provisioned", 10)
    expect(binding.get("state") == "provisioned"
           and m365_user(emulator, alice["email"]).get("accountEnabled") is True,
           "the new password re-enabled her M365 account")
    summary.append("suspended Alice when her directory password expired (schedule → reconcile queue → pass); a new password re-enabled her")

    step("Suspend Adele in the directory: sign-in blocked and sessions revoked, then reactivate")
    before = m365_user(emulator, adele["email"]).get("signInSessionsValidFromDateTime")
    time.sleep(1.1)  # M365's timestamps have one-second resolution
    status, body = api.json("PUT", "/users/adele", {**adele, "state": "disabled"})
    binding = body.get("binding", {}) if isinstance(body, dict) else {}
    expect(status == 200 and binding.get("state") == "suspended"
           and binding.get("suspendedReason") == "directory_disabled",
           f"PUT /users/adele {{\"state\": \"disabled\"}} answered {status}: binding {binding.get('state')} "
           f"({binding.get('suspendedReason')})")
    account = m365_user(emulator, adele["email"])
    expect(account.get("accountEnabled") is False, "her M365 sign-in is blocked (accountEnabled=false)")
    after = account.get("signInSessionsValidFromDateTime")
    expect(bool(after) and after != before,
           f"her open sessions were revoked: signInSessionsValidFromDateTime {before} -> {after}")
    status, body = api.json("PUT", "/users/adele/binding", {"welcome": False})
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    expect(status == 409 and code == "user_disabled", f"binding a disabled user is refused: {status} {code}")
    status, body = api.json("PUT", "/users/adele", {**adele, "state": "active"})
    binding = body.get("binding", {}) if isinstance(body, dict) else {}
    expect(status == 200 and binding.get("state") == "provisioned",
           f"back to active: binding {binding.get('state')}")
    expect(m365_user(emulator, adele["email"]).get("accountEnabled") is True, "her M365 sign-in is allowed again")
    status, body = api.json("GET", "/events?userId=adele")
    events = body.get("events", []) if isinstance(body, dict) else []
    recent = [(e.get("type"), e.get("reason")) for e in events[:2]]
    expect(recent == [("user_update_provision", "reactivated"), ("user_deprovision", "directory_disabled")],
           f"recorded: {recent}")
    summary.append("suspended Adele in the directory: sign-in blocked and sessions revoked at once; reactivated")

    step(f"Safeguard: a round that would block more than {SAFEGUARD} users is held until an admin decides")
    for user_id, _ in imported:
        status, body = api.json("DELETE", f"/users/{user_id}/binding")
        expect(status == 200, f"unbound imported user {user_id}: sign-in blocked")
    for _, m365_id in imported:
        status, _ = graph(emulator, "PATCH", f"/users/{m365_id}", {"accountEnabled": True})
        expect(status == 204, f"an M365 admin re-enables {m365_id} behind our back")
    status, run = reconcile(api, contoso_id, dry_run=False)
    trip = (run.get("report") or {}).get("safeguard") or {}
    expect(run.get("status") == "held",
           f"the run stopped at the safeguard: {trip.get('roundTotal', trip.get('destructive'))} to block, "
           f"allowed {trip.get('allowed')} (threshold {trip.get('threshold')}); nothing written")
    expect(all(m365_user_by_id(emulator, m)["accountEnabled"] for _, m in imported), "the accounts are still enabled")
    status, plan = api.json("GET", f"/tenants/{contoso_id}/reconcile/held")
    items = [(u.get("kind"), u.get("userId")) for u in plan.get("users", [])] if isinstance(plan, dict) else []
    expect(status == 200 and len(items) == 3, f"GET …/reconcile/held shows the held plan: {items}")
    status, body = api.json("GET", "/events?type=reconcile_safeguard_tripped")
    tripped = body.get("events", []) if isinstance(body, dict) else []
    expect(len(tripped) == 1, f"one reconcile_safeguard_tripped event (actor {tripped[0].get('actor') if tripped else None})")
    status, decision = api.json("POST", f"/tenants/{contoso_id}/reconcile/held/approve")
    expect(status == 200 and decision.get("applied") == 3,
           f"an admin approves: {decision.get('applied')} applied, {len(decision.get('skipped', []))} skipped")
    expect(not any(m365_user_by_id(emulator, m)["accountEnabled"] for _, m in imported),
           "the three accounts are blocked again")
    status, body = api.json("GET", "/events?type=reconcile_plan_approved")
    approved = body.get("events", []) if isinstance(body, dict) else []
    expect(len(approved) == 1 and approved[0].get("actor") == "local",
           f"reconcile_plan_approved recorded once, naming its actor ({approved[0].get('actor') if approved else None})")
    status, body = api.json("POST", f"/tenants/{contoso_id}/reconcile/held/approve")
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    expect(status == 404 and code == "no_held_plan", f"approving again applies nothing: {status} {code}")
    summary.append(f"held a reconcile round over the safeguard ({SAFEGUARD} users) until an admin approved it; applied once")

    step("Unbind Alice: sign-in blocked, account kept")
    status, body = api.json("DELETE", "/users/alice/binding")
    binding = body.get("binding", {}) if isinstance(body, dict) else {}
    expect(status == 200 and binding.get("state") == "blocked", f"DELETE /users/alice/binding: {binding.get('state')}")
    account = m365_user(emulator, alice["email"])
    expect(account.get("accountEnabled") is False and account.get("id"),
           "her M365 account still exists with accountEnabled=false")
    summary.append("unbound Alice: sign-in blocked, nothing deleted")

    step("Licences: Contoso's default licence on bind, and a seat that runs out")
    status, body = api.json("PUT", f"/tenants/{contoso_id}/settings",
                            {"usageLocation": "US", "licenses": [{"sku": "E5"}]})
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    expect(status == 400 and code == "unknown_sku",
           f"an SKU Contoso does not subscribe to is refused: {body.get('error', {}).get('message', '')[:120]}")
    settings = {"usageLocation": "US", "removeLicensesOnUnbind": False,
                "licenses": [{"sku": "ENTERPRISEPACK", "disabledPlans": ["SHAREPOINTENTERPRISE"]}]}
    status, body = api.json("PUT", f"/tenants/{contoso_id}/settings", settings)
    expect(status == 200 and body.get("licenses", [{}])[0].get("sku") == "ENTERPRISEPACK",
           "PUT /tenants/{id}/settings: Office 365 E3 by default, without SharePoint, usage location US")
    megan = {"email": "megan.new@contoso.com", "displayName": "Megan Bowen", "givenName": "Megan",
             "surname": "Bowen", "jobTitle": "Marketing Manager", "department": "Marketing",
             "officeLocation": "12/1110", "city": "Seattle", "country": "United States"}
    status, _ = api.json("PUT", "/users/megan", megan)
    expect(status in (200, 201), "PUT /users/megan: a new employee with her office, city and country")
    status, body = api.json("PUT", "/users/megan/binding", {"welcome": False})
    binding = body.get("binding", {}) if isinstance(body, dict) else {}
    account = m365_user(emulator, megan["email"])
    expect(status in (200, 201) and binding.get("state") == "provisioned",
           f"bound Megan: a new M365 account {account.get('id')}")
    e3 = [lic for lic in account.get("assignedLicenses", []) if lic.get("skuId") == "6fd2c87f-b296-42f0-b197-1e91e994b900"]
    expect(account.get("usageLocation") == "US" and len(e3) == 1,
           "her account got usage location US, then Office 365 E3")
    expect(len(e3[0].get("disabledPlans", [])) == 1, f"with SharePoint disabled: {e3[0].get('disabledPlans')}")
    expect(account.get("officeLocation") == "12/1110" and account.get("city") == "Seattle",
           "her office and city reached M365 (R-ATTR-1)")
    status, _ = api.json("PUT", "/groups/security", {"name": "Security Team", "members": ["megan"]})
    expect(status in (200, 201), "PUT /groups/security: Megan joins the Security Team")
    status, body = api.json("PUT", "/groups/security/binding", {"tenantId": contoso_id, "licenses": [{"sku": "EMS"}]})
    expect(status in (200, 201), f"the group is bound with the EMS licence for its members ({status})")
    status, body = api.json("GET", "/users/megan/binding")
    binding = body.get("binding", body) if isinstance(body, dict) else {}
    error = binding.get("lastError") or {}
    expect(binding.get("state") == "provisioned" and binding.get("licenseState") == "failed"
           and error.get("code") == "license_unavailable",
           f"EMS has no seat left (Adele holds the only one): Megan stays provisioned, licenseState "
           f"{binding.get('licenseState')} ({error.get('code')})")
    status, body = api.json("GET", f"/tenants/{contoso_id}/failures")
    failures = body.get("failures", []) if isinstance(body, dict) else []
    expect(any(f.get("code") == "license_unavailable" and f.get("graphRequestId") for f in failures),
           "a failure is recorded with Graph's request id")
    adele_id = m365_user(emulator, adele["email"])["id"]
    status, _ = graph(emulator, "POST", f"/users/{adele_id}/assignLicense",
                      {"addLicenses": [], "removeLicenses": ["efccb6f7-5641-4e0e-bd10-b4976e1bf68e"]})
    expect(status == 200, "an admin frees the seat in M365 (Adele's EMS licence removed)")
    status, run = reconcile(api, contoso_id, dry_run=False)
    expect(run.get("status") == "done", "reconcile runs")
    status, body = api.json("GET", "/users/megan/binding")
    binding = body.get("binding", body) if isinstance(body, dict) else {}
    account = m365_user(emulator, megan["email"])
    expect(binding.get("licenseState") == "assigned" and "efccb6f7-5641-4e0e-bd10-b4976e1bf68e" in sku_ids(account),
           f"reconcile assigned EMS now that a seat is free: licenseState {binding.get('licenseState')}")
    summary.append("licensed Megan on bind (E3 without SharePoint); EMS failed for want of a seat, then reconcile assigned it")

    step("Manager, and an M365 deletion undone by re-binding (restore, not an empty new account)")
    status, body = api.json("PUT", "/users/megan", {**megan, "managerId": "adele"})
    expect(status == 200, "PUT /users/megan with managerId adele")
    status, manager = graph(emulator, "GET", f"/users/{account['id']}/manager")
    expect(status == 200 and manager.get("id") == adele_id, "in M365, Megan's manager is now Adele's account")
    held = emulator.json("GET", "/_emulator/realism")[1].get("addressReleaseDelayMs", 0)
    emulator.json("PUT", "/_emulator/realism", {"addressReleaseDelayMs": 86_400_000})
    status, _ = graph(emulator, "DELETE", f"/users/{account['id']}")
    expect(status == 204, "Megan's account is deleted in M365 (its address now held for 24 hours)")
    status, body = api.json("DELETE", "/users/megan/binding")
    binding = body.get("binding", {}) if isinstance(body, dict) else {}
    expect(binding.get("state") == "deleted_in_m365", f"unbinding finds it gone: {binding.get('state')}")
    started = time.monotonic()
    status, body = api.json("PUT", "/users/megan/binding", {"welcome": False})
    binding = body.get("binding", {}) if isinstance(body, dict) else {}
    expect(status == 200 and binding.get("state") == "provisioned" and binding.get("restored") is True,
           f"re-binding restored it at once ({time.monotonic() - started:.1f} s, no 24 h wait): restored "
           f"{binding.get('restored')}")
    restored = m365_user(emulator, megan["email"])
    expect(restored.get("id") == account["id"] and restored.get("accountEnabled") is True,
           f"the same account {restored.get('id')}, enabled")
    expect({"6fd2c87f-b296-42f0-b197-1e91e994b900", "efccb6f7-5641-4e0e-bd10-b4976e1bf68e"} <= set(sku_ids(restored)), "its licences came back with it")
    emulator.json("PUT", "/_emulator/realism", {"addressReleaseDelayMs": held})
    status, body = api.json("PUT", "/users/megan", {**megan, "managerId": None})
    status, _ = graph(emulator, "GET", f"/users/{account['id']}/manager")
    expect(status == 404, "clearing managerId removed her manager in M365")
    summary.append("set and cleared Megan's manager; restored her deleted account by re-binding, licences kept")

    step("The audit trail")
    status, body = api.json("GET", f"/events?tenantId={contoso_id}")
    events = body.get("events", []) if isinstance(body, dict) else []
    expect(status == 200 and events, f"GET /events?tenantId=… lists {len(events)} events, newest first")
    for event in events:
        say(f"   {event.get('at', '')[:19]}  {event.get('type'):<32} {event.get('userId') or '':<8}"
            f" {event.get('reason') or ''}")
    kinds = {event.get("type") for event in events}
    reasons = {event.get("reason") for event in events if event.get("type") == "user_deprovision"}
    expect("password_expired" in reasons, "the expiry's user_deprovision carries reason password_expired")
    for kind in ("user_create_provision", "user_update_provision", "user_password_update_provision",
                 "user_deprovision"):
        expect(kind in kinds, f"{kind} recorded")
    summary.append(f"recorded {len(events)} audit events for Contoso")

    step("Deauthorize Contoso: tokens deleted, M365 accounts untouched")
    counters = f"/_emulator/tenants/{CONTOSO_DOMAIN}/requests"
    graph_before = emulator.json("GET", counters)[1].get("graph", 0)
    enabled_before = enabled_accounts(emulator)
    status, _, _ = api.call("DELETE", f"/tenants/{contoso_id}")
    expect(status in (200, 204), f"DELETE /tenants/{{id}} answered {status}")
    status, tenant = api.json("GET", f"/tenants/{contoso_id}")
    expect(tenant.get("status") == "deauthorized", "Contoso is deauthorized")
    graph_after = emulator.json("GET", counters)[1].get("graph", 0)
    expect(graph_after == graph_before, f"no Graph request was made ({graph_before} before, {graph_after} after)")
    expect(enabled_accounts(emulator) == enabled_before, f"all {enabled_before} M365 accounts are still enabled")
    summary.append("deauthorized Contoso without a single Graph call: every M365 account still enabled")
    return summary


def serve_until_interrupted(api: str, token: str, emulator: str) -> None:
    say()
    say(f"API      {api}")
    say(f"token    {token}")
    say(f"emulator {emulator}  (admin@contoso.onmicrosoft.com / Admin-Passw0rd! signs in on the consent page)")
    say()
    say("Try:")
    say(f"  curl -s -H 'authorization: Bearer {token}' -H 'content-type: application/json' -d '{{\"name\":\"Contoso\"}}' {api}/tenants")
    say("  open the authorizeUrl it returns in a browser, sign in, consent; then:")
    say(f"  curl -s -H 'authorization: Bearer {token}' {api}/tenants")
    say(f"  curl -s {emulator}/_emulator/state | head -c 2000")
    say()
    say("Ctrl-C stops everything.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        say("stopping")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet-logs", action="store_true", help="send service logs to a file")
    parser.add_argument("--local", action="store_true",
                        help="start the stack, print how to reach it and keep it running until Ctrl-C")
    args = parser.parse_args()
    moto = os.environ.get("AWS_ENDPOINT_URL")
    if not moto:
        say("demo: AWS_ENDPOINT_URL is not set; run it through `make demo`")
        return 2

    processes: list[subprocess.Popen] = []
    workdir = Path(tempfile.mkdtemp(prefix="m365-demo-"))
    logs = open(workdir / "services.log", "w") if args.quiet_logs else None  # noqa: SIM115

    def stop(*_: object) -> None:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        emulator_port, api_port = free_port(), free_port()
        api_base = f"http://127.0.0.1:{api_port}"
        redirect = f"{api_base}/oauth/callback"
        seed = workdir / "seed.json"
        demo_seed(seed, redirect)

        say("m365-sync demo: moto (DynamoDB, SQS, Secrets Manager) at " + moto)
        emulator = subprocess.Popen(
            [str(TARGET / "debug/m365-emulator"), "--port", str(emulator_port), "--seed", str(seed)],
            stdout=subprocess.PIPE, stderr=logs, text=True,
        )
        processes.append(emulator)
        wait_for_line(emulator, "m365-emulator listening", 30)
        emulator_base = f"http://127.0.0.1:{emulator_port}"
        say(f"m365-emulator (Microsoft Graph + identity platform) at {emulator_base}, {DEMO_USERS + 3} Contoso users")

        client_secret = json.dumps({"client_id": APP_ID, "client_secret": APP_SECRET, "redirect_uri": redirect})
        devstack = subprocess.Popen(
            [
                str(TARGET / "debug/devstack"), "--template", str(ROOT / "template.yaml"), "--moto", moto,
                "--port", str(api_port),
                "--env", f"M365_GRAPH_BASE_URL={emulator_base}/v1.0",
                "--env", f"M365_IDENTITY_BASE_URL={emulator_base}",
                "--env", f"M365_OAUTH_REDIRECT_URI={redirect}",
                "--env", f"M365_PASSWORD_MAX_AGE_DAYS={PASSWORD_MAX_AGE_DAYS}",
                "--env", f"M365_RECONCILE_SAFEGUARD={SAFEGUARD}",
                "--secret", f"OAuthClientSecret={client_secret}",
            ],
            stdout=subprocess.PIPE, stderr=logs, text=True, cwd=ROOT,
        )
        processes.append(devstack)
        seen = wait_for_line(devstack, "devstack ready", 600)
        token = seen.get("token", "")
        say(f"devstack (template.yaml's API routes, queues and schedules) at {seen.get('api', api_base)}")

        if args.local:
            serve_until_interrupted(api_base, token, emulator_base)
            return 0
        summary = walkthrough(Http(api_base, token), Http(emulator_base))
        say()
        say("== Summary")
        for line in summary:
            say(f"   - {line}")
        say(f"demo finished: {len(summary)} steps succeeded")
        return 0
    except DemoFailure as failure:
        say(f"\ndemo FAILED: {failure}")
        if logs:
            say(f"service logs: {workdir / 'services.log'}")
        return 1
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
