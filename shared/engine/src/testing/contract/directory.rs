//! Contract of [`Directory`] (the M365 side; graph-spec §3, §8). Runs against the fake here and,
//! once it exists, against `GraphDirectory` on the m365-emulator. Each function takes a tenant that
//! has `managed` (managed, verified) and, if given, `federated` (federated, verified) domains.

use secrecy::{ExposeSecret, SecretString};

use super::{assert_conflict, assert_not_found, collect_pages, fresh_domain, fresh_suffix};
use crate::error::Error;
use crate::model::{
    DomainKind, DomainName, Email, M365ObjectId, M365UserPatch, NewM365User, TenantId,
};
use crate::ports::Directory;

/// A tenant prepared for the directory contract.
#[derive(Debug, Clone)]
pub struct DirectoryTenant {
    /// Our id of the tenant.
    pub tenant: TenantId,
    /// A managed verified domain.
    pub managed: DomainName,
    /// A federated verified domain, if the implementation can provide one.
    pub federated: Option<DomainName>,
}

fn new_user(domain: &DomainName, password: &str) -> NewM365User {
    let nickname = format!("user.{}", fresh_suffix());
    NewM365User {
        user_principal_name: Email::parse(&format!("{nickname}@{domain}")).expect("valid email"),
        mail_nickname: nickname,
        display_name: "Adele Vance".into(),
        given_name: Some("Adele".into()),
        surname: Some("Vance".into()),
        job_title: None,
        department: Some("Retail".into()),
        attributes: Default::default(),
        account_enabled: true,
        password: SecretString::from(password.to_owned()),
    }
}

const GOOD: &str = "xWwvJ]6NMw+bWH-d";

/// R-BIND-2: a created user is found by its UPN, in any case, with the attributes given.
pub async fn a_created_user_is_found_by_its_upn(dir: &impl Directory, t: &DirectoryTenant) {
    let new = new_user(&t.managed, GOOD);
    let created = dir
        .create_user(&t.tenant, &new)
        .await
        .expect("create succeeds");
    super::assert_created_from(&created, &new);
    assert!(created.account_enabled);
    assert_eq!(created.department.as_deref(), Some("Retail"));
    let found = dir
        .find_user_by_upn(&t.tenant, &new.user_principal_name)
        .await
        .expect("find succeeds");
    assert_eq!(found.map(|u| u.id), Some(created.id));
    let other =
        Email::parse(&format!("nobody.{}@{}", fresh_suffix(), t.managed)).expect("valid email");
    assert_eq!(
        dir.find_user_by_upn(&t.tenant, &other)
            .await
            .expect("find succeeds"),
        None
    );
}

/// R-BIND-2 (never a duplicate account): creating a second user with the same UPN is a UPN conflict.
pub async fn a_second_user_with_the_same_upn_is_a_conflict(
    dir: &impl Directory,
    t: &DirectoryTenant,
) {
    let new = new_user(&t.managed, GOOD);
    dir.create_user(&t.tenant, &new)
        .await
        .expect("create succeeds");
    assert_conflict(&dir.create_user(&t.tenant, &new).await, "upn_exists");
}

/// R-BIND-1: a UPN in a domain the tenant has not verified is rejected.
pub async fn a_user_in_an_unverified_domain_is_rejected(dir: &impl Directory, t: &DirectoryTenant) {
    let result = dir
        .create_user(&t.tenant, &new_user(&fresh_domain(), GOOD))
        .await;
    assert!(
        matches!(result, Err(Error::Rejected { .. })),
        "got {result:?}"
    );
}

/// R-CONN-3: a user in a federated domain cannot be created without a source anchor.
pub async fn a_user_in_a_federated_domain_is_rejected(dir: &impl Directory, t: &DirectoryTenant) {
    let Some(federated) = &t.federated else {
        return;
    };
    let result = dir.create_user(&t.tenant, &new_user(federated, GOOD)).await;
    assert!(
        matches!(result, Err(Error::Rejected { .. })),
        "got {result:?}"
    );
}

/// R-PWD-1: M365 rejects a password that breaks the complexity rules, on create and on reset.
pub async fn a_non_compliant_password_is_rejected(dir: &impl Directory, t: &DirectoryTenant) {
    let result = dir
        .create_user(&t.tenant, &new_user(&t.managed, "password"))
        .await;
    assert!(
        matches!(result, Err(Error::Rejected { .. })),
        "got {result:?}"
    );
    let created = dir
        .create_user(&t.tenant, &new_user(&t.managed, GOOD))
        .await
        .expect("create succeeds");
    let weak = SecretString::from("abcdefgh".to_owned());
    let result = dir.set_password(&t.tenant, &created.id, &weak).await;
    assert!(
        matches!(result, Err(Error::Rejected { .. })),
        "got {result:?}"
    );
}

/// R-PWD-2: a password reset is accepted and moves `lastPasswordChangeDateTime` no earlier than before.
pub async fn a_compliant_password_reset_is_accepted(dir: &impl Directory, t: &DirectoryTenant) {
    let created = dir
        .create_user(&t.tenant, &new_user(&t.managed, GOOD))
        .await
        .expect("create succeeds");
    let new = SecretString::from("Another-Pa55word".to_owned());
    assert!(!new.expose_secret().is_empty());
    dir.set_password(&t.tenant, &created.id, &new)
        .await
        .expect("reset succeeds");
    let upn = Email::parse(&created.user_principal_name).expect("valid upn");
    let found = dir
        .find_user_by_upn(&t.tenant, &upn)
        .await
        .expect("find succeeds")
        .expect("user exists");
    assert!(found.last_password_change >= created.last_password_change);
}

/// R-BIND-5: sign-in can be blocked and unblocked; the account stays.
pub async fn sign_in_can_be_blocked_and_unblocked(dir: &impl Directory, t: &DirectoryTenant) {
    let new = new_user(&t.managed, GOOD);
    let created = dir
        .create_user(&t.tenant, &new)
        .await
        .expect("create succeeds");
    let find = || async {
        dir.find_user_by_upn(&t.tenant, &new.user_principal_name)
            .await
            .expect("find succeeds")
    };
    dir.set_account_enabled(&t.tenant, &created.id, false)
        .await
        .expect("block succeeds");
    assert_eq!(find().await.map(|u| u.account_enabled), Some(false));
    dir.set_account_enabled(&t.tenant, &created.id, true)
        .await
        .expect("unblock succeeds");
    assert_eq!(find().await.map(|u| u.account_enabled), Some(true));
}

/// R-BIND-9, R-BIND-5: a user's sessions can be revoked, blocked or not, again and again (the
/// engine repeats it on retries); an unknown user is not found.
pub async fn sessions_can_be_revoked_and_an_unknown_user_is_not_found(
    dir: &impl Directory,
    t: &DirectoryTenant,
) {
    let new = new_user(&t.managed, GOOD);
    let created = dir
        .create_user(&t.tenant, &new)
        .await
        .expect("create succeeds");
    dir.revoke_sign_in_sessions(&t.tenant, &created.id)
        .await
        .expect("revocation succeeds");
    dir.set_account_enabled(&t.tenant, &created.id, false)
        .await
        .expect("block succeeds");
    dir.revoke_sign_in_sessions(&t.tenant, &created.id)
        .await
        .expect("a blocked user's sessions can be revoked again");
    let found = dir
        .find_user_by_upn(&t.tenant, &new.user_principal_name)
        .await
        .expect("find succeeds");
    assert_eq!(
        found.map(|u| u.account_enabled),
        Some(false),
        "a revocation does not change sign-in"
    );
    assert_not_found(
        &dir.revoke_sign_in_sessions(&t.tenant, &M365ObjectId::generate())
            .await,
    );
}

/// R-BIND-7: an attribute patch changes what it names, clears what it clears, and keeps the rest.
pub async fn an_attribute_patch_changes_only_what_it_names(
    dir: &impl Directory,
    t: &DirectoryTenant,
) {
    let new = new_user(&t.managed, GOOD);
    let created = dir
        .create_user(&t.tenant, &new)
        .await
        .expect("create succeeds");
    let patch = M365UserPatch {
        job_title: Some(Some("Director".into())),
        department: Some(None),
        ..M365UserPatch::default()
    };
    dir.update_user(&t.tenant, &created.id, &patch)
        .await
        .expect("update succeeds");
    let found = dir
        .find_user_by_upn(&t.tenant, &new.user_principal_name)
        .await
        .expect("find succeeds")
        .expect("user exists");
    assert_eq!(found.job_title.as_deref(), Some("Director"));
    assert_eq!(found.department, None);
    assert_eq!(found.given_name.as_deref(), Some("Adele"));
    assert_eq!(found.display_name, "Adele Vance");
}

/// R-BIND-8: operations on a user that does not exist are not found.
pub async fn operations_on_a_missing_user_are_not_found(dir: &impl Directory, t: &DirectoryTenant) {
    let missing = M365ObjectId::generate();
    assert_not_found(&dir.set_account_enabled(&t.tenant, &missing, false).await);
    let patch = M365UserPatch {
        job_title: Some(Some("x".into())),
        ..M365UserPatch::default()
    };
    assert_not_found(&dir.update_user(&t.tenant, &missing, &patch).await);
}

/// The ids of `n` new users in the managed domain.
async fn created_users(dir: &impl Directory, t: &DirectoryTenant, n: usize) -> Vec<M365ObjectId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(
            dir.create_user(&t.tenant, &new_user(&t.managed, GOOD))
                .await
                .expect("create succeeds")
                .id,
        );
    }
    ids
}

/// R-ATTR-1: a manager is set, read back, replaced and removed; setting the same manager again
/// and removing an absent one are success; an unknown user has no manager to read.
pub async fn a_manager_is_set_read_replaced_and_cleared(dir: &impl Directory, t: &DirectoryTenant) {
    let ids = created_users(dir, t, 3).await;
    let (user, first, second) = (&ids[0], &ids[1], &ids[2]);
    let manager = |id: &M365ObjectId| {
        let id = id.clone();
        async move { dir.manager_of(&t.tenant, &id).await.expect("manager read") }
    };
    assert_eq!(manager(user).await, None, "no manager at first");
    dir.set_manager(&t.tenant, user, first)
        .await
        .expect("set succeeds");
    assert_eq!(manager(user).await, Some(first.clone()));
    dir.set_manager(&t.tenant, user, first)
        .await
        .expect("setting the same manager again succeeds");
    dir.set_manager(&t.tenant, user, second)
        .await
        .expect("replace succeeds");
    assert_eq!(manager(user).await, Some(second.clone()));
    assert_eq!(manager(second).await, None, "the relation has a direction");
    dir.clear_manager(&t.tenant, user)
        .await
        .expect("clear succeeds");
    assert_eq!(manager(user).await, None);
    dir.clear_manager(&t.tenant, user)
        .await
        .expect("clearing an absent manager succeeds");
    assert_not_found(&dir.manager_of(&t.tenant, &M365ObjectId::generate()).await);
}

/// R-IMP-1: the tenant's users are listed across pages, each once.
pub async fn users_are_listed_across_pages(dir: &impl Directory, t: &DirectoryTenant) {
    let ids = created_users(dir, t, 3).await;
    let listed: Vec<_> = collect_pages(
        2,
        |page| async move { dir.list_users(&t.tenant, &page).await },
    )
    .await
    .into_iter()
    .map(|u| u.id)
    .collect();
    let mut unique = listed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), listed.len(), "each user once");
    assert!(ids.iter().all(|id| listed.contains(id)));
}

/// R-CONN-2 / R-CONN-3: the verified domains are reported with their kind.
pub async fn verified_domains_are_reported_with_their_kind(
    dir: &impl Directory,
    t: &DirectoryTenant,
) {
    let domains = dir
        .verified_domains(&t.tenant)
        .await
        .expect("domains succeed");
    assert!(
        domains
            .iter()
            .any(|d| d.name == t.managed && d.kind == DomainKind::Managed)
    );
    if let Some(federated) = &t.federated {
        assert!(
            domains
                .iter()
                .any(|d| &d.name == federated && d.kind == DomainKind::Federated)
        );
    }
}

/// R-CONN-1: the tenant's Microsoft id is reported, the same on every call.
pub async fn the_organization_id_is_stable(dir: &impl Directory, t: &DirectoryTenant) {
    let first = dir
        .organization_id(&t.tenant)
        .await
        .expect("organization succeeds");
    let again = dir
        .organization_id(&t.tenant)
        .await
        .expect("organization succeeds");
    assert_eq!(first, again);
    assert!(!first.as_str().is_empty());
}

/// How a privilege contract run changes role assignments outside Graph's provisioning surface, as
/// an admin does in the Entra portal (R-BIND-11): the fake's own methods, or the emulator's
/// control API. Role names are built-in display names (`Global Administrator`, …).
pub trait RoleAdmin: Sync {
    /// Makes `holder` (a user, or a group whose members then hold it) a member of `role`.
    fn grant(
        &self,
        tenant: &TenantId,
        holder: &M365ObjectId,
        role: &str,
    ) -> impl std::future::Future<Output = ()> + Send;

    /// Removes `holder` from `role`.
    fn revoke(
        &self,
        tenant: &TenantId,
        holder: &M365ObjectId,
        role: &str,
    ) -> impl std::future::Future<Output = ()> + Send;
}

/// Global Administrator's template id (immutable for built-in roles; Entra "role template IDs").
pub const GLOBAL_ADMINISTRATOR_TEMPLATE: &str = "62e90394-69f5-4237-9190-012177145e10";

/// R-BIND-11: an ordinary user holds no role; a granted role is reported for the user
/// (`directory_roles_of`) and in the tenant's listing (`directory_role_holders`) alike, with its
/// name and template id; a role held by a group counts for its members; a revoked role is gone
/// from both; an unknown user is not found.
pub async fn directory_roles_are_reported_per_user_and_per_tenant_alike(
    dir: &impl Directory,
    t: &DirectoryTenant,
    roles: &impl RoleAdmin,
) {
    let a = dir
        .create_user(&t.tenant, &new_user(&t.managed, GOOD))
        .await
        .expect("create succeeds");
    let b = dir
        .create_user(&t.tenant, &new_user(&t.managed, GOOD))
        .await
        .expect("create succeeds");
    let of = |id: M365ObjectId| async move {
        dir.directory_roles_of(&t.tenant, &id)
            .await
            .expect("roles read")
    };
    let holders = || async {
        dir.directory_role_holders(&t.tenant)
            .await
            .expect("holders read")
    };
    assert_eq!(of(a.id.clone()).await, Vec::new(), "an ordinary user");
    assert!(!holders().await.contains_key(&a.id));

    roles.grant(&t.tenant, &a.id, "Global Administrator").await;
    let held = of(a.id.clone()).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(
        held[0].display_name.as_deref(),
        Some("Global Administrator")
    );
    assert_eq!(
        held[0].role_template_id.as_deref(),
        Some(GLOBAL_ADMINISTRATOR_TEMPLATE)
    );
    assert_eq!(holders().await.get(&a.id), Some(&held), "both views agree");

    let nickname = format!("helpdesk{}", fresh_suffix());
    let group = dir
        .create_security_group(&t.tenant, "Helpdesk", &nickname)
        .await
        .expect("group created");
    dir.add_group_member(&t.tenant, &group.id, &b.id)
        .await
        .expect("member added");
    roles
        .grant(&t.tenant, &group.id, "Helpdesk Administrator")
        .await;
    let via_group = of(b.id.clone()).await;
    assert_eq!(
        via_group
            .iter()
            .map(|r| r.display_name.as_deref())
            .collect::<Vec<_>>(),
        [Some("Helpdesk Administrator")],
        "a role held by a group is held by its members"
    );
    assert_eq!(holders().await.get(&b.id), Some(&via_group));

    roles.revoke(&t.tenant, &a.id, "Global Administrator").await;
    assert_eq!(of(a.id.clone()).await, Vec::new(), "revoked");
    assert!(!holders().await.contains_key(&a.id));

    assert_not_found(
        &dir.directory_roles_of(&t.tenant, &M365ObjectId::generate())
            .await,
    );
}

/// R-BIND-11: the connection's consenting admin is the one `expected` (`None` for app-only
/// tokens), on every call.
pub async fn the_consenting_admin_is_reported(
    dir: &impl Directory,
    t: &DirectoryTenant,
    expected: Option<&M365ObjectId>,
) {
    for _ in 0..2 {
        assert_eq!(
            dir.consenting_admin(&t.tenant)
                .await
                .expect("consenting admin read")
                .as_ref(),
            expected
        );
    }
}
