//! Directory (administrator) roles: the built-in role catalog, role activation and role
//! membership of a tenant (what `GET /directoryRoles`, `…/members`, `/users/{id}/memberOf` and
//! `transitiveMemberOf` serve, and what the control API grants and revokes).
//!
//! Graph's model (Microsoft Graph docs, `directoryRole` resource and its list APIs): a tenant's
//! `directoryRole` objects are the *activated* built-in roles, each with its own object id and the
//! immutable `roleTemplateId` of its template; only Global Administrator is activated in every
//! tenant, the others on first assignment. Members are users, groups (role-assignable ones) and
//! service principals. The template ids below are Microsoft's published built-in role ids; the
//! `description` texts are written from memory of the Entra built-in roles page and are
//! unconfirmed (graph-spec is silent on directory roles).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::state::{DirectoryRoleObject, Tenant, new_id};

/// A built-in role: display name, template id, description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleTemplate {
    /// E.g. `Global Administrator`.
    pub display_name: &'static str,
    /// The immutable template id.
    pub template_id: &'static str,
    /// Microsoft's description (text unconfirmed).
    pub description: &'static str,
}

/// The built-in roles the emulator knows (others are refused by the seed and the control API).
pub const CATALOG: &[RoleTemplate] = &[
    RoleTemplate {
        display_name: "Global Administrator",
        template_id: "62e90394-69f5-4237-9190-012177145e10",
        description: "Can manage all aspects of Microsoft Entra ID and Microsoft services that use Microsoft Entra identities.",
    },
    RoleTemplate {
        display_name: "Global Reader",
        template_id: "f2ef992c-3afb-46b9-b7cf-a126ee74c451",
        description: "Can read everything that a Global Administrator can, but not update anything.",
    },
    RoleTemplate {
        display_name: "User Administrator",
        template_id: "fe930be7-5e62-47db-91af-98c3a49a38b1",
        description: "Can manage all aspects of users and groups, including resetting passwords for limited admins.",
    },
    RoleTemplate {
        display_name: "Privileged Role Administrator",
        template_id: "e8611ab8-c189-46e8-94e1-60213ab1f814",
        description: "Can manage role assignments in Microsoft Entra ID, and all aspects of Privileged Identity Management.",
    },
    RoleTemplate {
        display_name: "Privileged Authentication Administrator",
        template_id: "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
        description: "Can access to view, set and reset authentication method information for any user (admin or non-admin).",
    },
    RoleTemplate {
        display_name: "Authentication Administrator",
        template_id: "c4e39bd9-1100-46d3-8c65-fb160da0071f",
        description: "Can access to view, set and reset authentication method information for any non-admin user.",
    },
    RoleTemplate {
        display_name: "Helpdesk Administrator",
        template_id: "729827e3-9c14-49f7-bb1b-9608f156bbb8",
        description: "Can reset passwords for non-administrators and Helpdesk Administrators.",
    },
    RoleTemplate {
        display_name: "Password Administrator",
        template_id: "966707d0-3269-4727-9be2-8c3a10f19b9d",
        description: "Can reset passwords for non-administrators and Password Administrators.",
    },
    RoleTemplate {
        display_name: "Security Administrator",
        template_id: "194ae4cb-b126-40b2-bd5b-6091b380977d",
        description: "Can read security information and reports, and manage configuration in Microsoft Entra ID and Office 365.",
    },
    RoleTemplate {
        display_name: "Exchange Administrator",
        template_id: "29232cdf-9323-42fd-ade2-1d097af3e4de",
        description: "Can manage all aspects of the Exchange product.",
    },
    RoleTemplate {
        display_name: "SharePoint Administrator",
        template_id: "f28a1f50-f6e7-4571-818b-6a12f2af6b6c",
        description: "Can manage all aspects of the SharePoint service.",
    },
    RoleTemplate {
        display_name: "Billing Administrator",
        template_id: "b0f54661-2d74-4c50-afa3-1ec803f12efe",
        description: "Can perform common billing related tasks like updating payment information.",
    },
    RoleTemplate {
        display_name: "Application Administrator",
        template_id: "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3",
        description: "Can create and manage all aspects of app registrations and enterprise apps.",
    },
    RoleTemplate {
        display_name: "Cloud Application Administrator",
        template_id: "158c047a-c907-4556-b7ef-446551a6b5f7",
        description: "Can create and manage all aspects of app registrations and enterprise apps except App Proxy.",
    },
    RoleTemplate {
        display_name: "Conditional Access Administrator",
        template_id: "b1be1c3e-b65d-4f19-8427-f6fa0d97feb9",
        description: "Can manage Conditional Access capabilities.",
    },
];

/// The built-in role named `key`: its display name (any case) or its template id.
#[must_use]
pub fn template(key: &str) -> Option<&'static RoleTemplate> {
    CATALOG.iter().find(|t| {
        t.display_name.eq_ignore_ascii_case(key) || t.template_id.eq_ignore_ascii_case(key)
    })
}

impl Tenant {
    /// The activated role for `template`, activating it (new object id) on first use, as
    /// assigning a role in the portal does.
    pub fn activate_role(&mut self, template: &RoleTemplate) -> &mut DirectoryRoleObject {
        let existing = self
            .directory_roles
            .values()
            .find(|r| r.role_template_id == template.template_id)
            .map(|r| r.id.clone());
        let id = existing.unwrap_or_else(|| {
            let id = new_id();
            self.directory_roles.insert(
                id.clone(),
                DirectoryRoleObject {
                    id: id.clone(),
                    role_template_id: template.template_id.to_owned(),
                    display_name: template.display_name.to_owned(),
                    description: template.description.to_owned(),
                    members: Vec::new(),
                },
            );
            id
        });
        self.directory_roles
            .get_mut(&id)
            .unwrap_or_else(|| unreachable!("the role was found or inserted above"))
    }

    /// The activated role addressed by `key`: its object id, its template id (also in the
    /// `roleTemplateId=…` alternate-key form) or its display name.
    #[must_use]
    pub fn find_role(&self, key: &str) -> Option<&DirectoryRoleObject> {
        let key = key
            .strip_prefix("roleTemplateId=")
            .map_or(key, |k| k.trim_matches('\''));
        self.directory_roles
            .get(&key.to_ascii_lowercase())
            .or_else(|| {
                self.directory_roles.values().find(|r| {
                    r.role_template_id.eq_ignore_ascii_case(key)
                        || r.display_name.eq_ignore_ascii_case(key)
                })
            })
    }

    /// Makes `member` (a user or group object id) a member of the built-in role `template`
    /// (activating it); an admin entry of the tenant gets the role in its `roles` too. Returns
    /// whether it was not a member before.
    pub fn grant_role(&mut self, template: &RoleTemplate, member: &str) -> bool {
        if let Some(admin) = self.admins.get_mut(member) {
            admin.roles.insert(template.display_name.to_owned());
        }
        let role = self.activate_role(template);
        if role.members.iter().any(|m| m == member) {
            return false;
        }
        role.members.push(member.to_owned());
        true
    }

    /// Removes `member` from the role `template` (the role stays activated, as in Entra).
    /// Returns whether it was a member.
    pub fn revoke_role(&mut self, template: &RoleTemplate, member: &str) -> bool {
        if let Some(admin) = self.admins.get_mut(member) {
            admin.roles.remove(template.display_name);
        }
        let Some(role) = self
            .directory_roles
            .values_mut()
            .find(|r| r.role_template_id == template.template_id)
        else {
            return false;
        };
        let before = role.members.len();
        role.members.retain(|m| m != member);
        role.members.len() != before
    }

    /// Ids of the active groups `object` is a member of: directly, or through nested groups too
    /// when `transitive`.
    #[must_use]
    pub fn groups_containing(
        &self,
        object: &str,
        transitive: bool,
        now: DateTime<Utc>,
    ) -> BTreeSet<String> {
        let mut found: BTreeSet<String> = BTreeSet::new();
        let mut frontier = vec![object.to_owned()];
        while let Some(member) = frontier.pop() {
            for g in self
                .groups
                .values()
                .filter(|g| crate::graph::groups::visible(g, now) && g.members.contains(&member))
            {
                if found.insert(g.id.clone()) && transitive {
                    frontier.push(g.id.clone());
                }
            }
        }
        found
    }

    /// The activated roles `user` is a member of: directly, or (when `transitive`) through one of
    /// the groups it belongs to, directly or nested (`transitiveMemberOf`).
    #[must_use]
    pub fn roles_of(
        &self,
        user: &str,
        transitive: bool,
        now: DateTime<Utc>,
    ) -> Vec<&DirectoryRoleObject> {
        let mut holders: BTreeSet<String> = BTreeSet::from([user.to_owned()]);
        if transitive {
            holders.extend(self.groups_containing(user, true, now));
        }
        self.directory_roles
            .values()
            .filter(|r| r.members.iter().any(|m| holders.contains(m)))
            .collect()
    }
}
