"""The identity platform seen from a second, independent client (plain httpx): token-endpoint
success and error bodies (graph-spec §1.5, §1.6), refresh rotation and revocation (§1.4)."""

from __future__ import annotations

import re

import httpx

from conftest import GRAPH_DEFAULT


def test_client_credentials_success_body(emulator):
    # graph-spec §1.5
    f = emulator.facts
    r = emulator.token_request(
        f.tenant_id,
        {"grant_type": "client_credentials", "client_id": f.app_id, "client_secret": f.app_secret, "scope": GRAPH_DEFAULT},
    )
    assert r.status_code == 200
    body = r.json()
    assert sorted(body) == ["access_token", "expires_in", "ext_expires_in", "token_type"]
    assert body["token_type"].lower() == "bearer"
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
    assert r.headers["request-id"]


def test_a_wrong_secret_is_401_invalid_client_with_the_documented_error_body(emulator):
    # graph-spec §1.5 (401 invalid_client, AADSTS7000215) and §1.6 (body layout)
    f = emulator.facts
    r = emulator.token_request(
        f.tenant_id,
        {"grant_type": "client_credentials", "client_id": f.app_id, "client_secret": "wrong", "scope": GRAPH_DEFAULT},
    )
    assert r.status_code == 401
    body = r.json()
    assert body["error"] == "invalid_client"
    assert body["error_codes"] == [7000215]
    assert re.fullmatch(
        r"AADSTS7000215: .+\r\nTrace ID: [0-9a-f-]{36}\r\nCorrelation ID: [0-9a-f-]{36}\r\nTimestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ",
        body["error_description"],
        flags=re.S,
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", body["timestamp"])
    assert body["trace_id"] == r.headers["request-id"]
    assert body["error_uri"] == "https://login.microsoftonline.com/error?code=7000215"


def test_refresh_rotates_and_an_admin_password_reset_revokes_with_50173(emulator):
    # graph-spec §1.4 (rotation, old token valid; admin reset → AADSTS50173 invalid_grant)
    f = emulator.facts
    minted = httpx.post(
        f"{emulator.base}/_emulator/tokens",
        json={"tenant": f.tenant_id, "appId": f.app_id, "userPrincipalName": f.admin_upn, "refreshToken": True},
        timeout=10,
    ).json()
    rt = minted["refresh_token"]
    form = {"grant_type": "refresh_token", "client_id": f.app_id, "client_secret": f.app_secret, "refresh_token": rt}
    first = emulator.token_request(f.tenant_id, form)
    assert first.status_code == 200, first.text
    assert first.json()["refresh_token"] != rt
    assert emulator.token_request(f.tenant_id, form).status_code == 200, "the old refresh token stays valid"

    httpx.post(f"{emulator.base}/_emulator/clock/advance", json={"seconds": 2}, timeout=10).raise_for_status()
    reset = httpx.post(
        f"{emulator.base}/_emulator/tenants/{f.tenant_id}/admins/{f.admin_upn}/reset-password", json={}, timeout=10
    )
    assert reset.status_code == 204
    revoked = emulator.token_request(f.tenant_id, form)
    assert revoked.status_code == 400
    assert revoked.json()["error"] == "invalid_grant"
    assert revoked.json()["error_codes"] == [50173]
