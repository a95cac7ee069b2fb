"""Microsoft's Python Graph SDK (msgraph-sdk, pinned in requirements.txt) drives the emulator:
users and groups CRUD, membership through $ref, paging with PageIterator, deleted items, and
errors parsed as ODataError with the graph-spec code and message. Each test names the
graph-spec section it proves.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.assigned_license import AssignedLicense
from msgraph.generated.models.group import Group
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_profile import PasswordProfile
from msgraph.generated.models.reference_create import ReferenceCreate
from msgraph.generated.models.reference_update import ReferenceUpdate
from msgraph.generated.models.user import User
from msgraph.generated.users.item.assign_license.assign_license_post_request_body import (
    AssignLicensePostRequestBody,
)
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
from msgraph.generated.users.users_request_builder import UsersRequestBuilder
from msgraph_core import PageIterator
from msgraph_core.requests.batch_request_builder import BatchRequestBuilder
from msgraph_core.requests.batch_request_content import BatchRequestContent
from msgraph_core.requests.batch_request_item import BatchRequestItem

PASSWORD = "Sdk-Passw0rd!2024"


def run(coro):
    return asyncio.run(coro)


def new_user(domain: str, **extra) -> User:
    nick = f"sdk{uuid.uuid4().hex[:10]}"
    return User(
        account_enabled=True,
        display_name=f"SDK {nick}",
        mail_nickname=nick,
        user_principal_name=f"{nick}@{domain}",
        password_profile=PasswordProfile(force_change_password_next_sign_in=False, password=PASSWORD),
        **extra,
    )


async def odata_error(awaitable) -> ODataError:
    with pytest.raises(ODataError) as info:
        await awaitable
    return info.value


def assert_inner_error(err: ODataError) -> None:
    # graph-spec §2.2: innerError carries date (yyyy-MM-ddTHH:mm:ss), request-id, client-request-id.
    inner = err.error.inner_error
    assert inner is not None, "innerError must parse"
    assert inner.request_id, "innerError.request-id"
    assert inner.client_request_id, "innerError.client-request-id"
    assert inner.date is not None, "innerError.date"


def test_user_create_get_update_delete_round_trip(emulator):
    # graph-spec §3.1 create (201), §3.3 get by id and by UPN, §3.4 patch (204), §3.5 delete (204), §2.7 404 after
    async def body():
        graph, _ = emulator.client(emulator.app_token())
        created = await graph.users.post(new_user(emulator.facts.managed_domain))
        assert created.id and created.user_principal_name.endswith("@" + emulator.facts.managed_domain)
        by_id = await graph.users.by_user_id(created.id).get()
        by_upn = await graph.users.by_user_id(created.user_principal_name).get()
        assert by_id.id == by_upn.id == created.id
        assert by_id.display_name == created.display_name

        await graph.users.by_user_id(created.id).patch(User(display_name="Renamed by SDK", account_enabled=False))
        config = RequestConfiguration(
            query_parameters=UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(
                select=["id", "displayName", "accountEnabled", "lastPasswordChangeDateTime"]
            )
        )
        updated = await graph.users.by_user_id(created.id).get(request_configuration=config)
        assert updated.display_name == "Renamed by SDK"
        assert updated.account_enabled is False
        assert updated.last_password_change_date_time is not None  # graph-spec §3.8

        await graph.users.by_user_id(created.id).delete()
        err = await odata_error(graph.users.by_user_id(created.id).get())
        assert err.response_status_code == 404
        assert err.error.code == "Request_ResourceNotFound"
        assert err.error.message == (
            f"Resource '{created.id}' does not exist or one of its queried reference-property objects are not present."
        )
        assert_inner_error(err)

    run(body())


def test_duplicate_upn_is_an_odata_error_with_object_conflict_detail(emulator):
    # graph-spec §3.2 (duplicate UPN, current shape with details[].code ObjectConflict)
    async def body():
        graph, _ = emulator.client(emulator.app_token())
        user = new_user(emulator.facts.managed_domain)
        await graph.users.post(user)
        err = await odata_error(graph.users.post(user))
        assert err.response_status_code == 400
        assert err.error.code == "Request_BadRequest"
        assert err.error.message == "Another object with the same value for property userPrincipalName already exists."
        assert [(d.code, d.target) for d in err.error.details] == [("ObjectConflict", "userPrincipalName")]
        assert_inner_error(err)

    run(body())


def test_a_upn_in_a_foreign_domain_is_refused(emulator):
    # graph-spec §3.2 / §2.2 (domain portion invalid, details InvalidValue on userPrincipalName)
    async def body():
        graph, _ = emulator.client(emulator.app_token())
        err = await odata_error(graph.users.post(new_user(emulator.facts.unverified_or_foreign_domain)))
        assert err.response_status_code == 400
        assert err.error.code == "Request_BadRequest"
        assert err.error.message == (
            "The domain portion of the userPrincipalName property is invalid. "
            "You must use one of the verified domain names in your organization."
        )
        assert [(d.code, d.target) for d in err.error.details] == [("InvalidValue", "userPrincipalName")]

    run(body())


def test_a_weak_password_is_refused_with_the_complexity_message(emulator):
    # graph-spec §3.2 and §3.7 (complexity: 3 of 4 classes, length >= 8)
    async def body():
        graph, _ = emulator.client(emulator.app_token())
        user = new_user(emulator.facts.managed_domain)
        user.password_profile = PasswordProfile(force_change_password_next_sign_in=False, password="password")
        err = await odata_error(graph.users.post(user))
        assert err.response_status_code == 400
        assert err.error.code == "Request_BadRequest"
        assert err.error.message == (
            "The specified password does not comply with password complexity requirements. "
            "Please provide a different password."
        )

    run(body())


def test_listing_users_pages_with_top_and_the_page_iterator_follows_next_links(emulator):
    # graph-spec §2.3 ($top, opaque $skiptoken in @odata.nextLink, followed whole)
    async def body():
        graph, adapter = emulator.client(emulator.app_token())
        created = set()
        for _ in range(5):
            created.add((await graph.users.post(new_user(emulator.facts.managed_domain))).id)
        config = RequestConfiguration(
            query_parameters=UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(top=2, select=["id", "userPrincipalName"])
        )
        first = await graph.users.get(request_configuration=config)
        assert len(first.value) == 2
        assert first.odata_next_link and "$skiptoken=" in first.odata_next_link
        seen: list[str] = []

        def collect(user: User) -> bool:
            seen.append(user.id)
            return True

        iterator = PageIterator(first, adapter)
        await iterator.iterate(collect)
        assert len(seen) == len(set(seen)), "no user appears twice across pages"
        assert created <= set(seen)

    run(body())


def test_groups_and_membership_through_ref(emulator):
    # graph-spec §4.1 create, §4.2 add member (204) and "already exist" (400), §4.4 list members
    # with @odata.type, §4.3 remove (204) and not-a-member (404), §4.5 delete
    async def body():
        graph, _ = emulator.client(emulator.app_token())
        user = await graph.users.post(new_user(emulator.facts.managed_domain))
        nick = f"sdkgrp{uuid.uuid4().hex[:8]}"
        group = await graph.groups.post(
            Group(display_name=f"SDK {nick}", mail_enabled=False, mail_nickname=nick, security_enabled=True)
        )
        assert group.id and group.security_enabled is True and group.group_types == []
        fetched = await graph.groups.by_group_id(group.id).get()
        assert fetched.display_name == f"SDK {nick}"
        await graph.groups.by_group_id(group.id).patch(Group(description="managed by the SDK suite"))
        assert (await graph.groups.by_group_id(group.id).get()).description == "managed by the SDK suite"

        ref = ReferenceCreate(odata_id=f"https://graph.microsoft.com/v1.0/directoryObjects/{user.id}")
        await graph.groups.by_group_id(group.id).members.ref.post(ref)
        members = await graph.groups.by_group_id(group.id).members.get()
        assert [m.id for m in members.value] == [user.id]
        assert isinstance(members.value[0], User), "@odata.type must select the User model"
        assert members.value[0].odata_type == "#microsoft.graph.user"

        err = await odata_error(graph.groups.by_group_id(group.id).members.ref.post(ref))
        assert err.response_status_code == 400
        assert err.error.code == "Request_BadRequest"
        assert err.error.message == (
            "One or more added object references already exist for the following modified properties: 'members'."
        )

        await graph.groups.by_group_id(group.id).members.by_directory_object_id(user.id).ref.delete()
        assert (await graph.groups.by_group_id(group.id).members.get()).value == []
        err = await odata_error(graph.groups.by_group_id(group.id).members.by_directory_object_id(user.id).ref.delete())
        assert err.response_status_code == 404
        assert err.error.code == "Request_ResourceNotFound"

        await graph.groups.by_group_id(group.id).delete()
        err = await odata_error(graph.groups.by_group_id(group.id).get())
        assert err.response_status_code == 404
        assert err.error.message == (
            f"Resource '{group.id}' does not exist or one of its queried reference-property objects are not present."
        )

    run(body())


def test_a_manager_is_assigned_read_replaced_and_removed_through_ref(emulator):
    # R-ATTR-1: PUT /users/{id}/manager/$ref (204), GET /users/{id}/manager (a directoryObject the
    # SDK reads as a User), DELETE .../manager/$ref (204), and the 404 without a manager
    async def body():
        graph, _ = emulator.client(emulator.app_token())
        user = await graph.users.post(new_user(emulator.facts.managed_domain))
        boss = await graph.users.post(new_user(emulator.facts.managed_domain))
        chief = await graph.users.post(new_user(emulator.facts.managed_domain))
        no_manager = (
            "Resource 'manager' does not exist or one of its queried reference-property objects are not present."
        )
        err = await odata_error(graph.users.by_user_id(user.id).manager.get())
        assert err.response_status_code == 404
        assert err.error.code == "Request_ResourceNotFound"
        assert err.error.message == no_manager
        assert_inner_error(err)

        await graph.users.by_user_id(user.id).manager.ref.put(
            ReferenceUpdate(odata_id=f"https://graph.microsoft.com/v1.0/users/{boss.id}")
        )
        manager = await graph.users.by_user_id(user.id).manager.get()
        assert manager.id == boss.id
        assert isinstance(manager, User), "@odata.type must select the User model"
        by_upn = await graph.users.by_user_id(user.user_principal_name).manager.get()
        assert by_upn.id == boss.id

        await graph.users.by_user_id(user.id).manager.ref.put(
            ReferenceUpdate(odata_id=f"https://graph.microsoft.com/v1.0/users/{chief.id}")
        )
        assert (await graph.users.by_user_id(user.id).manager.get()).id == chief.id

        missing = str(uuid.uuid4())
        err = await odata_error(
            graph.users.by_user_id(user.id).manager.ref.put(
                ReferenceUpdate(odata_id=f"https://graph.microsoft.com/v1.0/users/{missing}")
            )
        )
        assert err.response_status_code == 404
        assert missing in err.error.message

        await graph.users.by_user_id(user.id).manager.ref.delete()
        err = await odata_error(graph.users.by_user_id(user.id).manager.get())
        assert err.response_status_code == 404
        assert err.error.message == no_manager
        err = await odata_error(graph.users.by_user_id(user.id).manager.ref.delete())
        assert err.response_status_code == 404

    run(body())


def test_adding_a_missing_member_is_404_naming_the_member(emulator):
    # graph-spec §4.2 (member object not found → 404 naming the member id)
    async def body():
        graph, _ = emulator.client(emulator.app_token())
        nick = f"sdkgrp{uuid.uuid4().hex[:8]}"
        group = await graph.groups.post(
            Group(display_name=nick, mail_enabled=False, mail_nickname=nick, security_enabled=True)
        )
        missing = str(uuid.uuid4())
        ref = ReferenceCreate(odata_id=f"https://graph.microsoft.com/v1.0/directoryObjects/{missing}")
        err = await odata_error(graph.groups.by_group_id(group.id).members.ref.post(ref))
        assert err.response_status_code == 404
        assert err.error.code == "Request_ResourceNotFound"
        assert missing in err.error.message

    run(body())


def test_a_deleted_user_is_listed_in_deleted_items_and_can_be_restored(emulator):
    # graph-spec §3.5 soft delete, §3.6 deleted items (cast listing) and restore
    async def body():
        graph, _ = emulator.client(emulator.app_token())
        user = await graph.users.post(new_user(emulator.facts.managed_domain))
        await graph.users.by_user_id(user.id).delete()
        deleted = await graph.directory.deleted_items.graph_user.get()
        assert user.id in [u.id for u in deleted.value]
        restored = await graph.directory.deleted_items.by_directory_object_id(user.id).restore.post()
        assert restored.id == user.id
        assert (await graph.users.by_user_id(user.id).get()).id == user.id

    run(body())


def test_users_delta_rounds_end_in_a_delta_link_that_reports_new_users(emulator):
    # graph-spec §5 (delta: nextLink pages, then deltaLink; a later round returns the changes)
    async def body():
        graph, _ = emulator.client(emulator.app_token())
        page = await graph.users.delta.get()
        rounds = 0
        while page.odata_next_link:
            rounds += 1
            assert rounds < 100, "delta paging must end"
            page = await graph.users.delta.with_url(page.odata_next_link).get()
        delta_link = page.odata_delta_link
        assert delta_link, "the last page carries @odata.deltaLink"
        user = await graph.users.post(new_user(emulator.facts.managed_domain))
        changes = await graph.users.delta.with_url(delta_link).get()
        assert user.id in [u.id for u in changes.value]

    run(body())


def test_groups_delta_reports_a_new_group(emulator):
    # graph-spec §5 (groups delta)
    async def body():
        graph, _ = emulator.client(emulator.app_token())
        page = await graph.groups.delta.get()
        while page.odata_next_link:
            page = await graph.groups.delta.with_url(page.odata_next_link).get()
        nick = f"sdkdelta{uuid.uuid4().hex[:8]}"
        group = await graph.groups.post(
            Group(display_name=nick, mail_enabled=False, mail_nickname=nick, security_enabled=True)
        )
        changes = await graph.groups.delta.with_url(page.odata_delta_link).get()
        assert group.id in [g.id for g in changes.value]

    run(body())


def test_a_garbage_token_is_401_invalid_authentication_token(emulator):
    # graph-spec §2.6 (malformed token → 401 InvalidAuthenticationToken, IDX14100)
    async def body():
        graph, _ = emulator.client("not-a-token")
        err = await odata_error(graph.users.get())
        assert err.response_status_code == 401
        assert err.error.code == "InvalidAuthenticationToken"
        assert err.error.message.startswith("IDX14100:")
        assert_inner_error(err)

    run(body())


def test_an_expired_token_is_401_lifetime_validation_failed(emulator):
    # graph-spec §2.6 (expired token)
    async def body():
        token = emulator.minted_token(tenant=emulator.facts.tenant_id, appId=emulator.facts.app_id, expiresIn=-60)
        graph, _ = emulator.client(token)
        err = await odata_error(graph.users.get())
        assert err.response_status_code == 401
        assert err.error.code == "InvalidAuthenticationToken"
        assert err.error.message == "Lifetime validation failed, the token is expired."

    run(body())


def test_a_token_without_the_permission_is_403_authorization_request_denied(emulator):
    # graph-spec §2.6 / §11.3 (403 Authorization_RequestDenied when the token lacks the role)
    async def body():
        token = emulator.minted_token(tenant=emulator.facts.tenant_id, appId=emulator.facts.app_id, roles=[])
        graph, _ = emulator.client(token)
        err = await odata_error(graph.users.post(new_user(emulator.facts.managed_domain)))
        assert err.response_status_code == 403
        assert err.error.code == "Authorization_RequestDenied"
        assert err.error.message == "Insufficient privileges to complete the operation."

    run(body())


def test_a_delegated_token_from_a_scripted_admin_sign_in_reads_the_directory(emulator):
    # graph-spec §1.2 (authorization code + PKCE, completed by a script) feeding Graph calls
    async def body():
        graph, _ = emulator.client(emulator.delegated_token())
        me = await graph.users.by_user_id(emulator.facts.admin_upn).get()
        assert me.user_principal_name.lower() == emulator.facts.admin_upn.lower()
        org = await graph.organization.get()
        assert org.value and org.value[0].id == emulator.facts.tenant_id

    run(body())


def graph_request_count(emulator) -> int:
    r = httpx.get(f"{emulator.base}/_emulator/tenants/{emulator.facts.tenant_id}/requests", timeout=10)
    r.raise_for_status()
    return int(r.json().get("graph", 0))


def test_the_sdk_retry_handler_honours_an_injected_429(emulator):
    # graph-spec §7.1 (429 + Retry-After): Microsoft's RetryHandler waits and retries transparently
    async def body():
        graph, _ = emulator.client(emulator.app_token())
        fault = httpx.post(
            f"{emulator.base}/_emulator/faults",
            json={"method": "GET", "path": "/v1.0/organization", "kind": "429", "retryAfter": "1", "count": 1},
            timeout=10,
        )
        assert fault.status_code < 300, fault.text
        before = graph_request_count(emulator)
        org = await graph.organization.get()
        assert org.value and org.value[0].id == emulator.facts.tenant_id
        assert graph_request_count(emulator) - before == 2, "one 429, then the retried request"

    run(body())


def test_batch_through_the_sdk_returns_per_item_statuses_and_bodies(emulator):
    # graph-spec §6 ($batch: relative URLs, per-item status and body)
    async def body():
        graph, adapter = emulator.client(emulator.app_token())
        missing = str(uuid.uuid4())
        content = BatchRequestContent()
        content.add_request("1", BatchRequestItem(graph.users.by_user_id(emulator.facts.admin_upn).to_get_request_information(), id="1"))
        content.add_request("2", BatchRequestItem(graph.users.by_user_id(missing).to_get_request_information(), id="2"))
        content.add_request("3", BatchRequestItem(graph.organization.to_get_request_information(), id="3"))
        result = await BatchRequestBuilder(adapter).post(content)
        assert result.get_response_status_codes() == {"1": 200, "2": 404, "3": 200}
        # msgraph-core 1.5.2 reads item bodies with get_bytes_value() (base64 text), so JSON-object bodies as
        # Graph sends them (graph-spec §6) arrive as None: bodies are checked in test_schema.py instead.

    run(body())


def seats(emulator) -> dict[str, int]:
    """Free seats per SKU id at seed time (enabled units minus seeded assignments)."""
    tenant = emulator.facts.tenant
    used: dict[str, int] = {}
    for u in tenant.get("users", []):
        for sku in u.get("licenses", []):
            used[sku.lower()] = used.get(sku.lower(), 0) + 1
    return {s["skuId"].lower(): s["enabledUnits"] - used.get(s["skuId"].lower(), 0) for s in tenant.get("skus", [])}


def test_assign_license_needs_a_usage_location_and_refuses_a_full_sku(emulator):
    # graph-spec §9.2 (usageLocation error, 200 with the user, seat exhaustion)
    free = seats(emulator)
    available = [sku for sku, n in free.items() if n >= 2]
    full = [sku for sku, n in free.items() if n <= 0]
    assert available, "the seed needs a SKU with free seats"

    async def body():
        graph, _ = emulator.client(emulator.app_token())
        user = await graph.users.post(new_user(emulator.facts.managed_domain))
        request = AssignLicensePostRequestBody(
            add_licenses=[AssignedLicense(sku_id=uuid.UUID(available[0]), disabled_plans=[])], remove_licenses=[]
        )
        err = await odata_error(graph.users.by_user_id(user.id).assign_license.post(request))
        assert err.response_status_code == 400
        assert err.error.code == "Request_BadRequest"
        assert err.error.message == "License assignment cannot be done for user with invalid usage location."

        await graph.users.by_user_id(user.id).patch(User(usage_location="US"))
        licensed = await graph.users.by_user_id(user.id).assign_license.post(request)
        assert licensed.id == user.id
        config = RequestConfiguration(
            query_parameters=UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(select=["assignedLicenses"])
        )
        fetched = await graph.users.by_user_id(user.id).get(request_configuration=config)
        assert [str(l.sku_id) for l in fetched.assigned_licenses] == [available[0]]

        if full:
            exhausted = AssignLicensePostRequestBody(
                add_licenses=[AssignedLicense(sku_id=uuid.UUID(full[0]), disabled_plans=[])], remove_licenses=[]
            )
            err = await odata_error(graph.users.by_user_id(user.id).assign_license.post(exhausted))
            assert err.response_status_code == 400
            assert "does not have any available licenses" in err.error.message

    run(body())


def test_domains_and_organization_tell_managed_from_federated(emulator):
    # graph-spec §8.1/§8.2 (authenticationType) and §3.9 (organization verifiedDomains[].type)
    seeded = {d["name"].lower(): d["authenticationType"] for d in emulator.facts.tenant["domains"]}

    async def body():
        graph, _ = emulator.client(emulator.app_token())
        domains = await graph.domains.get()
        got = {d.id.lower(): d.authentication_type for d in domains.value}
        assert got == seeded
        org = (await graph.organization.get()).value[0]
        verified = {d.name.lower(): d.type for d in org.verified_domains}
        for name, kind in verified.items():
            assert seeded[name] == kind

    run(body())


def test_advanced_queries_need_consistency_level_eventual(emulator):
    # graph-spec §2.4 (endsWith without the header → 400 Request_UnsupportedQuery; with it + $count → @odata.count)
    async def body():
        graph, _ = emulator.client(emulator.app_token())
        filter_ = f"endswith(userPrincipalName,'@{emulator.facts.managed_domain}')"
        plain = RequestConfiguration(
            query_parameters=UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(filter=filter_)
        )
        err = await odata_error(graph.users.get(request_configuration=plain))
        assert err.response_status_code == 400
        assert err.error.code == "Request_UnsupportedQuery"
        assert err.error.message == (
            "Operator 'endsWith' is not supported because the 'ConsistencyLevel:eventual' header is missing. "
            "Refer to https://aka.ms/graph-docs/advanced-queries for more information"
        )
        advanced = RequestConfiguration(
            query_parameters=UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(filter=filter_, count=True)
        )
        advanced.headers.add("ConsistencyLevel", "eventual")
        page = await graph.users.get(request_configuration=advanced)
        assert page.odata_count is not None and page.odata_count >= len(page.value) > 0
        assert all(u.user_principal_name.lower().endswith("@" + emulator.facts.managed_domain.lower()) for u in page.value)

    run(body())
