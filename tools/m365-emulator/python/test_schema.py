"""Schema check: emulator responses against the OpenAPI subset copied to
tests/data/graph-v1.0-identity-subset.openapi.yaml (generated from Microsoft's CSDL).

Two checks per response:
1. JSON-schema validation (OpenAPI 3.0 dialect: `nullable`, formats) of the documented response
   schema for that path, method and status.
2. No undeclared properties: every member of every entity object must be a property the schema
   declares (following `allOf` inheritance and the object's own `@odata.type`); annotations
   (names containing `@`) are exempt. The CSDL marks directory objects as open types
   (`additionalProperties: {type: object}` on directoryObject), which check 1 cannot honour
   inside `allOf`, so that marker is dropped before check 1 and check 2 is the strict one.
"""

from __future__ import annotations

import copy
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from openapi_schema_validator import OAS30Validator, oas30_format_checker

SPEC_PATH = Path(__file__).resolve().parent.parent / "tests" / "data" / "graph-v1.0-identity-subset.openapi.yaml"
SPEC = yaml.safe_load(SPEC_PATH.read_text())
SCHEMAS = SPEC["components"]["schemas"]


def _drop_open_type_markers(node):
    if isinstance(node, dict):
        if isinstance(node.get("additionalProperties"), dict):
            node = {k: v for k, v in node.items() if k != "additionalProperties"}
        return {k: _drop_open_type_markers(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_drop_open_type_markers(v) for v in node]
    return node


CLOSED_COMPONENTS = _drop_open_type_markers(copy.deepcopy(SPEC["components"]))


def deref(schema: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        schema = SCHEMAS[name]
    return schema


def declared_properties(schema: dict) -> dict:
    schema = deref(schema)
    props: dict = {}
    for part in schema.get("allOf", []):
        props.update(declared_properties(part))
    props.update(schema.get("properties", {}))
    return props


def object_branch(schema: dict) -> dict:
    """For `anyOf`/`oneOf` (nullable complex types), the branch that declares structure."""
    schema = deref(schema)
    for key in ("anyOf", "oneOf"):
        for branch in schema.get(key, []):
            b = deref(branch)
            if "$ref" in branch or b.get("properties") or b.get("allOf") or b.get("items"):
                return b
    return schema


def undeclared(value, schema: dict, where: str) -> list[str]:
    schema = object_branch(schema)
    found: list[str] = []
    if isinstance(value, dict):
        odata_type = value.get("@odata.type")
        if isinstance(odata_type, str) and odata_type.startswith("#microsoft.graph."):
            schema = SCHEMAS.get(odata_type[1:], schema)
        props = declared_properties(schema)
        if not props:
            return found
        for key, item in value.items():
            if "@" in key:
                continue
            if key not in props:
                found.append(f"{where}.{key}")
            else:
                found.extend(undeclared(item, props[key], f"{where}.{key}"))
    elif isinstance(value, list):
        items = schema.get("items")
        if items:
            for i, item in enumerate(value):
                found.extend(undeclared(item, items, f"{where}[{i}]"))
    return found


def response_schema(path: str, method: str, status: int) -> dict:
    responses = SPEC["paths"][path][method]["responses"]
    entry = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX") or responses.get("default")
    assert entry is not None, f"the spec documents no {status} for {method.upper()} {path}"
    if "$ref" in entry:
        entry = SPEC["components"]["responses"][entry["$ref"].split("/")[-1]]
    return entry["content"]["application/json"]["schema"]


def check(response: httpx.Response, path: str, method: str) -> dict:
    body = response.json()
    schema = response_schema(path, method, response.status_code)
    rooted = dict(schema)
    rooted["components"] = CLOSED_COMPONENTS
    validator = OAS30Validator(rooted, format_checker=oas30_format_checker)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{method.upper()} {path} → {response.status_code}: " + "; ".join(
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]
    )
    extra = undeclared(body, schema, "$")
    assert not extra, f"{method.upper()} {path}: undeclared properties {extra[:10]}"
    return body


@pytest.fixture(scope="module")
def api(emulator):
    client = httpx.Client(
        base_url=f"{emulator.base}/v1.0",
        headers={"Authorization": f"Bearer {emulator.app_token()}"},
        timeout=10,
    )
    yield client
    client.close()


def new_user_body(domain: str) -> dict:
    nick = f"schema{uuid.uuid4().hex[:10]}"
    return {
        "accountEnabled": True,
        "displayName": f"Schema {nick}",
        "mailNickname": nick,
        "userPrincipalName": f"{nick}@{domain}",
        "passwordProfile": {"forceChangePasswordNextSignIn": False, "password": "Schema-Passw0rd!1"},
    }


def test_user_responses_match_the_schema(api, emulator):
    # graph-spec §3.1, §3.3 (shapes from the openapi subset)
    created = api.post("/users", json=new_user_body(emulator.facts.managed_domain))
    assert created.status_code == 201
    user = check(created, "/users", "post")
    check(api.get(f"/users/{user['id']}"), "/users/{user-id}", "get")
    selected = api.get(
        f"/users/{user['id']}",
        params={"$select": "id,userPrincipalName,accountEnabled,lastPasswordChangeDateTime,assignedLicenses,proxyAddresses,createdDateTime,onPremisesImmutableId,usageLocation"},
    )
    check(selected, "/users/{user-id}", "get")
    listed = api.get("/users", params={"$top": "3"})
    assert listed.status_code == 200
    check(listed, "/users", "get")


def test_group_and_member_responses_match_the_schema(api, emulator):
    # graph-spec §4.1, §4.4
    user = api.post("/users", json=new_user_body(emulator.facts.managed_domain)).json()
    nick = f"schemagrp{uuid.uuid4().hex[:8]}"
    created = api.post(
        "/groups",
        json={"displayName": nick, "mailEnabled": False, "mailNickname": nick, "securityEnabled": True},
    )
    assert created.status_code == 201
    group = check(created, "/groups", "post")
    check(api.get(f"/groups/{group['id']}"), "/groups/{group-id}", "get")
    added = api.post(
        f"/groups/{group['id']}/members/$ref",
        json={"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{user['id']}"},
    )
    assert added.status_code == 204
    members = api.get(f"/groups/{group['id']}/members")
    body = check(members, "/groups/{group-id}/members", "get")
    assert body["value"][0]["@odata.type"] == "#microsoft.graph.user"
    check(api.get("/groups", params={"$top": "5"}), "/groups", "get")


def test_directory_responses_match_the_schema(api):
    # graph-spec §8.1 domains, §3.9 organization, §9.1 subscribedSkus, §10 directoryAudits
    domains = check(api.get("/domains"), "/domains", "get")
    assert domains["value"]
    check(api.get(f"/domains/{domains['value'][0]['id']}"), "/domains/{domain-id}", "get")
    check(api.get("/organization"), "/organization", "get")
    check(api.get("/subscribedSkus"), "/subscribedSkus", "get")
    check(api.get("/auditLogs/directoryAudits"), "/auditLogs/directoryAudits", "get")


def test_deleted_items_and_delta_responses_match_the_schema(api, emulator):
    # graph-spec §3.6 deleted items (cast listing), §5 delta
    user = api.post("/users", json=new_user_body(emulator.facts.managed_domain)).json()
    assert api.delete(f"/users/{user['id']}").status_code == 204
    check(api.get("/directory/deletedItems/microsoft.graph.user"), "/directory/deletedItems/microsoft.graph.user", "get")
    check(api.get(f"/directory/deletedItems/{user['id']}"), "/directory/deletedItems/{directoryObject-id}", "get")
    delta = api.get("/users/delta()")
    assert delta.status_code == 200, delta.text
    check(delta, "/users/delta()", "get")
    groups_delta = api.get("/groups/delta()")
    assert groups_delta.status_code == 200, groups_delta.text
    check(groups_delta, "/groups/delta()", "get")


def test_error_responses_match_the_odata_error_schema(api, emulator):
    # graph-spec §2.2 envelope, §2.7 not found, §3.2 duplicate UPN
    missing = api.get(f"/users/{uuid.uuid4()}")
    assert missing.status_code == 404
    body = check(missing, "/users/{user-id}", "get")
    inner = body["error"]["innerError"]
    assert set(inner) >= {"date", "request-id", "client-request-id"}
    assert len(inner["date"]) == 19 and inner["date"][10] == "T", "yyyy-MM-ddTHH:mm:ss, no zone"
    user = new_user_body(emulator.facts.managed_domain)
    assert api.post("/users", json=user).status_code == 201
    conflict = api.post("/users", json=user)
    assert conflict.status_code == 400
    check(conflict, "/users", "post")


def test_batch_response_matches_the_schema(api, emulator):
    # graph-spec §6 ($batch: per-item id, status, headers, JSON body)
    r = api.post(
        "/$batch",
        json={
            "requests": [
                {"id": "1", "method": "GET", "url": "/organization"},
                {"id": "2", "method": "GET", "url": f"/users/{uuid.uuid4()}"},
            ]
        },
    )
    assert r.status_code == 200
    body = check(r, "/$batch", "post")
    by_id = {item["id"]: item for item in body["responses"]}
    assert by_id["1"]["status"] == 200 and by_id["1"]["body"]["value"]
    assert by_id["2"]["status"] == 404
    assert by_id["2"]["body"]["error"]["code"] == "Request_ResourceNotFound"
