//! `GraphDirectory`'s privileged-account reads against the real m365-emulator (R-BIND-11): the
//! engine's directory-role contract (the same assertions the fake passes), the consenting admin
//! behind delegated tokens (cached) and its absence behind app-only ones, and roles still seen —
//! nameless — when the connection may not read directory roles.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use m365_emulator::identity::{AccessClaims, mint_access_token};
use m365_engine::Error;
use m365_engine::model::{DomainName, M365ObjectId, TenantId};
use m365_engine::ports::Directory;
use m365_engine::testing::contract::assert_not_found;
use m365_engine::testing::contract::directory::{self as contract, DirectoryTenant, RoleAdmin};
use m365_graph::{GraphDirectory, StaticToken};
use secrecy::SecretString;
use serde_json::json;
use support::{ADMIN, APP, CONTOSO, FEDERATED, MANAGED, start};

/// Role assignments through the emulator's control API (the Entra portal's part).
struct EmulatorRoles<'e>(&'e support::Emu);

impl RoleAdmin for EmulatorRoles<'_> {
    async fn grant(&self, _: &TenantId, holder: &M365ObjectId, role: &str) {
        let path = format!(
            "/_emulator/tenants/{CONTOSO}/roles/{}/members",
            role.replace(' ', "%20")
        );
        self.0.admin_post(&path, json!({ "member": holder })).await;
    }

    async fn revoke(&self, _: &TenantId, holder: &M365ObjectId, role: &str) {
        let url = format!(
            "{}/_emulator/tenants/{CONTOSO}/roles/{}/members/{holder}",
            self.0.base,
            role.replace(' ', "%20")
        );
        let r = self.0.admin.delete(url).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
}

fn fixture(emu: &support::Emu) -> DirectoryTenant {
    DirectoryTenant {
        tenant: emu.tenant(),
        managed: DomainName::parse(MANAGED).unwrap(),
        federated: Some(DomainName::parse(FEDERATED).unwrap()),
    }
}

/// A directory on a delegated token of `upn` carrying `scopes` (what a connection holds).
fn delegated(emu: &support::Emu, upn: &str, scopes: &[&str]) -> GraphDirectory<StaticToken> {
    let token = {
        let mut state = emu.state.lock();
        let now = state.clock.now();
        mint_access_token(
            &mut state,
            AccessClaims {
                tenant_id: CONTOSO.to_owned(),
                app_id: APP.to_owned(),
                roles: Vec::new(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                user_upn: Some(upn.to_owned()),
                expires_at: now + chrono::Duration::hours(1),
            },
        )
    };
    GraphDirectory::new(emu.client(), StaticToken(SecretString::from(token)))
}

fn admin_id(emu: &support::Emu) -> M365ObjectId {
    let state = emu.state.lock();
    let id = state.tenants[CONTOSO]
        .users
        .values()
        .find(|u| u.upn().eq_ignore_ascii_case(ADMIN))
        .unwrap()
        .id
        .clone();
    M365ObjectId::parse(id).unwrap()
}

fn requests_to(emu: &support::Emu, route: &str) -> u64 {
    let state = emu.state.lock();
    state.tenants[CONTOSO]
        .request_counts
        .get(&format!("graph GET {route}"))
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn graph_directory_passes_the_directory_role_contract_on_the_emulator() {
    // R-BIND-11
    let emu = start().await;
    contract::directory_roles_are_reported_per_user_and_per_tenant_alike(
        &emu.directory(),
        &fixture(&emu),
        &EmulatorRoles(&emu),
    )
    .await;
}

#[tokio::test]
async fn the_seeded_admin_holds_global_administrator_in_both_views() {
    // R-BIND-11 (seeded admins hold Global Administrator)
    let emu = start().await;
    let dir = emu.directory();
    let admin = admin_id(&emu);
    let roles = dir.directory_roles_of(&emu.tenant(), &admin).await.unwrap();
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert_eq!(roles[0].label(), "Global Administrator");
    let holders = dir.directory_role_holders(&emu.tenant()).await.unwrap();
    assert_eq!(holders.get(&admin), Some(&roles));
    // The app's own service principal holds User Administrator: it is no account.
    assert_eq!(holders.len(), 1, "{holders:?}");
}

#[tokio::test]
async fn the_consenting_admin_is_the_signed_in_user_and_is_asked_once() {
    // R-BIND-11 (GET /me with the connection's delegated tokens, cached per tenant)
    let emu = start().await;
    let admin = admin_id(&emu);
    let dir = delegated(&emu, ADMIN, &["User.ReadWrite.All"]);
    contract::the_consenting_admin_is_reported(&dir, &fixture(&emu), Some(&admin)).await;
    assert_eq!(
        requests_to(&emu, "/v1.0/me"),
        1,
        "the second answer came from the cache"
    );
    // App-only tokens have no signed-in user: Graph's 400 means "none", not a failure.
    contract::the_consenting_admin_is_reported(&emu.directory(), &fixture(&emu), None).await;
}

#[tokio::test]
async fn without_a_role_permission_roles_are_still_seen_but_the_tenant_listing_is_forbidden() {
    // R-BIND-11 (limited information still reveals a role; listing needs RoleManagement.Read.Directory)
    let emu = start().await;
    let admin = admin_id(&emu);
    let dir = delegated(
        &emu,
        ADMIN,
        &["User.ReadWrite.All", "GroupMember.ReadWrite.All"],
    );
    let roles = dir.directory_roles_of(&emu.tenant(), &admin).await.unwrap();
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert_eq!(roles[0].display_name, None, "limited information: nameless");
    assert_eq!(roles[0].label(), "a directory role");
    let listing = dir.directory_role_holders(&emu.tenant()).await;
    assert!(
        matches!(listing, Err(Error::Forbidden { .. })),
        "{listing:?}"
    );
    // A user that does not exist is not found.
    assert_not_found(
        &dir.directory_roles_of(&emu.tenant(), &M365ObjectId::generate())
            .await,
    );
}
