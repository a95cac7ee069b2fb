//! Privileged accounts (R-BIND-11): an M365 account that holds a directory role (directly or
//! through a role-assignable group) or that is the admin whose consent the tenant's connection
//! carries is never taken over silently. Bind and import refuse to adopt one with
//! `privileged_account` unless the request says `adoptPrivileged`; password pushes and reconcile
//! leave one alone unless its binding was adopted that way ([`crate::model::Binding::adopted_privileged`]).
//!
//! What is checked, and when:
//! - one account ([`privilege_of`]): its transitive directory roles (one Graph read) and the
//!   connection's consenting admin (`GET /me`, which the Graph adapter caches per tenant). Used
//!   when a bind adopts an account found by UPN and before a password push — never on the
//!   create path (a new account holds no role; DESIGN §5 keeps a new-user bind at ≤ 2 requests);
//! - a whole tenant ([`PrivilegedAccounts::load`]): every role holder (one read for the roles,
//!   one per activated role) plus the consenting admin, once per reconcile pass that plans writes
//!   and once per import request, so the cost does not grow with the number of accounts checked.
//!
//! A fresh check before each write means a role granted after the binding is respected too.
//! PIM-eligible (not activated) role assignments are not members of a directory role in Graph
//! and are not seen (unconfirmed whether Microsoft lists them anywhere in v1.0 `directoryRole`).

use std::collections::BTreeMap;

use crate::error::{Conflict, Error, Result};
use crate::model::{DirectoryRole, M365ObjectId, Privilege, TenantId};
use crate::ports::Directory;

/// The privilege of the one account `id` (R-BIND-11): its directory roles and whether it
/// consented the connection. Two port calls (the adapter caches the consenting admin).
///
/// # Errors
/// `NotFound` (entity `M365User`) when the account does not exist; Graph errors.
pub(crate) async fn privilege_of<D: Directory>(
    directory: &D,
    tenant: &TenantId,
    id: &M365ObjectId,
) -> Result<Privilege> {
    let directory_roles = directory.directory_roles_of(tenant, id).await?;
    let admin = directory.consenting_admin(tenant).await?;
    Ok(Privilege {
        directory_roles,
        consenting_admin: admin.as_ref() == Some(id),
    })
}

/// Every privileged account of a tenant at one moment (R-BIND-11).
#[derive(Debug, Clone, Default)]
pub(crate) struct PrivilegedAccounts {
    roles: BTreeMap<M365ObjectId, Vec<DirectoryRole>>,
    admin: Option<M365ObjectId>,
}

impl PrivilegedAccounts {
    /// Reads the tenant's role holders and its consenting admin.
    ///
    /// # Errors
    /// Graph errors (`Forbidden` when the connection may not read directory roles).
    pub(crate) async fn load<D: Directory>(directory: &D, tenant: &TenantId) -> Result<Self> {
        let roles = directory.directory_role_holders(tenant).await?;
        let admin = directory.consenting_admin(tenant).await?;
        Ok(Self { roles, admin })
    }

    /// The privilege of `id` (not privileged when it holds nothing).
    pub(crate) fn of(&self, id: &M365ObjectId) -> Privilege {
        Privilege {
            directory_roles: self.roles.get(id).cloned().unwrap_or_default(),
            consenting_admin: self.admin.as_ref() == Some(id),
        }
    }
}

/// The refusal of a privileged account (409 `privileged_account` at the API).
pub(crate) fn refusal(account: impl std::fmt::Display, privilege: &Privilege) -> Error {
    Error::Conflict(Conflict::PrivilegedAccount {
        account: account.to_string(),
        why: privilege.describe(),
    })
}

/// What an adoption's event records (R-BIND-11 "kept in the event"): the opt-in and, when the
/// account was privileged, why.
pub(crate) fn adoption_details(adopt_privileged: bool, privilege: &Privilege) -> serde_json::Value {
    let mut details = serde_json::Map::new();
    if adopt_privileged {
        details.insert("adoptPrivileged".into(), serde_json::Value::Bool(true));
    }
    if privilege.is_privileged() {
        details.insert(
            "privilege".into(),
            serde_json::to_value(privilege).unwrap_or(serde_json::Value::Null),
        );
    }
    serde_json::Value::Object(details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usecase::testkit::World;

    #[tokio::test]
    async fn the_consenting_admin_and_role_holders_are_privileged_and_others_are_not() {
        // R-BIND-11
        let w = World::with_bound(&["adele", "alex", "lee"]).await;
        let id = |b: crate::model::Binding| b.m365_object_id.unwrap();
        let (adele, alex, lee) = (
            id(w.binding("adele").await),
            id(w.binding("alex").await),
            id(w.binding("lee").await),
        );
        w.directory
            .grant_role(&w.tenant.id, &adele, "Global Administrator");
        w.directory.set_consenting_admin(&w.tenant.id, Some(&alex));
        let one = |id| privilege_of(&w.directory, &w.tenant.id, id);
        let p = one(&adele).await.unwrap();
        assert_eq!(p.directory_roles.len(), 1);
        assert_eq!(p.directory_roles[0].label(), "Global Administrator");
        assert!(!p.consenting_admin && p.is_privileged());
        let p = one(&alex).await.unwrap();
        assert!(p.consenting_admin && p.directory_roles.is_empty() && p.is_privileged());
        assert!(!one(&lee).await.unwrap().is_privileged());
        let all = PrivilegedAccounts::load(&w.directory, &w.tenant.id)
            .await
            .unwrap();
        assert_eq!(all.of(&adele), one(&adele).await.unwrap());
        assert_eq!(all.of(&alex), one(&alex).await.unwrap());
        assert!(!all.of(&lee).is_privileged());
        let message = refusal("adele@contoso.com", &all.of(&adele)).to_string();
        assert!(message.contains("Global Administrator"), "{message}");
        assert!(message.contains("adoptPrivileged"), "{message}");
    }

    #[tokio::test]
    async fn a_role_held_by_a_group_makes_its_members_privileged() {
        // R-BIND-11 (roles assigned to role-assignable groups count, as transitiveMemberOf says)
        let w = World::with_bound(&["adele"]).await;
        let adele = w.binding("adele").await.m365_object_id.unwrap();
        let group = w.helpdesk_group_with(&adele);
        let p = privilege_of(&w.directory, &w.tenant.id, &adele)
            .await
            .unwrap();
        assert_eq!(p.directory_roles[0].label(), "Helpdesk Administrator");
        let all = PrivilegedAccounts::load(&w.directory, &w.tenant.id)
            .await
            .unwrap();
        assert_eq!(all.of(&adele), p);
        assert!(
            !all.of(&group).is_privileged(),
            "the group itself is no account"
        );
    }
}
