//! Graph's wire shapes for the user, domain and collection properties we use (names from
//! `reference/graph/openapi/`), and their translation to and from the engine's model.
//!
//! Reads always `$select` (graph-spec §3.3: `accountEnabled`, `department`,
//! `lastPasswordChangeDateTime` are "Returned only on $select").

use chrono::{DateTime, Utc};
use m365_engine::model::{
    DomainKind, DomainName, M365ObjectId, M365User, M365UserPatch, NewM365User, UserAttributes,
    VerifiedDomain,
};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The `$select` of every user read.
pub const USER_SELECT: &str = "id,userPrincipalName,mail,displayName,givenName,surname,jobTitle,department,accountEnabled,lastPasswordChangeDateTime,employeeId,officeLocation,mobilePhone,businessPhones,companyName,usageLocation,city,country";

/// The `$select` of domain reads.
pub const DOMAIN_SELECT: &str = "id,authenticationType,isVerified,isDefault,isInitial";

/// Graph's largest page for directory collections (graph-spec §2.3: `$top` 1..999).
pub const MAX_TOP: u32 = 999;

/// A Graph collection page (graph-spec §2.3).
#[derive(Debug, Deserialize)]
pub struct Collection<T> {
    /// Items of this page.
    pub value: Vec<T>,
    /// The whole URL of the next page (followed as is, never taken apart).
    #[serde(rename = "@odata.nextLink", default)]
    pub next_link: Option<String>,
}

/// `microsoft.graph.user`, the properties of [`USER_SELECT`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphUser {
    /// Object id.
    pub id: String,
    /// UPN.
    pub user_principal_name: String,
    /// Primary SMTP address (`null` when unlicensed).
    #[serde(default)]
    pub mail: Option<String>,
    /// Display name (nullable in the schema).
    #[serde(default)]
    pub display_name: Option<String>,
    /// First name.
    #[serde(default)]
    pub given_name: Option<String>,
    /// Last name.
    #[serde(default)]
    pub surname: Option<String>,
    /// Job title.
    #[serde(default)]
    pub job_title: Option<String>,
    /// Department.
    #[serde(default)]
    pub department: Option<String>,
    /// The R-ATTR-1 attributes (`employeeId`, `usageLocation`, … only with `$select`).
    #[serde(flatten)]
    pub attributes: UserAttributes,
    /// Sign-in allowed (only with `$select`).
    #[serde(default)]
    pub account_enabled: Option<bool>,
    /// Last password change (only with `$select`, R-PWD-3).
    #[serde(default)]
    pub last_password_change_date_time: Option<DateTime<Utc>>,
}

impl GraphUser {
    /// The engine's view of this user; `None` when Graph sent an id that is not a GUID.
    #[must_use]
    pub fn into_m365(self) -> Option<M365User> {
        Some(M365User {
            id: M365ObjectId::parse(self.id).ok()?,
            display_name: self.display_name.unwrap_or_default(),
            user_principal_name: self.user_principal_name,
            mail: self.mail,
            given_name: self.given_name,
            surname: self.surname,
            job_title: self.job_title,
            department: self.department,
            attributes: self.attributes,
            // `accountEnabled` is always selected; a missing value is read as blocked (the safe side).
            account_enabled: self.account_enabled.unwrap_or(false),
            last_password_change: self.last_password_change_date_time,
        })
    }
}

/// `microsoft.graph.domain`, the properties of [`DOMAIN_SELECT`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphDomain {
    /// The FQDN.
    pub id: String,
    /// `Managed` or `Federated` (graph-spec §8.1).
    #[serde(default)]
    pub authentication_type: Option<String>,
    /// Ownership verified.
    #[serde(default)]
    pub is_verified: bool,
}

impl GraphDomain {
    /// The engine's view of a verified domain; `None` for unverified domains and names that are
    /// not DNS names. Any type other than `Managed` counts as federated (not routable, R-CONN-3).
    #[must_use]
    pub fn into_verified(self) -> Option<VerifiedDomain> {
        if !self.is_verified {
            return None;
        }
        let kind = match self.authentication_type.as_deref() {
            Some(t) if t.eq_ignore_ascii_case("Managed") => DomainKind::Managed,
            _ => DomainKind::Federated,
        };
        Some(VerifiedDomain {
            name: DomainName::parse(&self.id).ok()?,
            kind,
        })
    }
}

/// The `POST /users` body (graph-spec §3.1): `passwordProfile.forceChangePasswordNextSignIn`
/// is false — the password is the directory's own (R-PWD-2). Holds the password: never log it.
#[must_use]
pub fn create_user_body(user: &NewM365User) -> Value {
    let mut body = Map::new();
    body.insert("accountEnabled".into(), json!(user.account_enabled));
    body.insert("displayName".into(), json!(user.display_name));
    body.insert("mailNickname".into(), json!(user.mail_nickname));
    body.insert(
        "userPrincipalName".into(),
        json!(user.user_principal_name.as_str()),
    );
    for (key, value) in [
        ("givenName", &user.given_name),
        ("surname", &user.surname),
        ("jobTitle", &user.job_title),
        ("department", &user.department),
    ] {
        if let Some(v) = value {
            body.insert(key.into(), json!(v));
        }
    }
    // R-ATTR-1: the set ones only (a create has nothing to clear).
    let (attributes, _) = user.attributes.patch_from(&UserAttributes::default());
    extend(&mut body, &attributes);
    body.insert(
        "passwordProfile".into(),
        json!({"forceChangePasswordNextSignIn": false, "password": user.password.expose_secret()}),
    );
    Value::Object(body)
}

/// The `PATCH /users/{id}` body of an attribute patch (`null` clears, graph-spec §3.4).
#[must_use]
pub fn patch_user_body(patch: &M365UserPatch) -> Value {
    let mut body = Map::new();
    if let Some(name) = &patch.display_name {
        body.insert("displayName".into(), json!(name));
    }
    for (key, value) in [
        ("givenName", &patch.given_name),
        ("surname", &patch.surname),
        ("jobTitle", &patch.job_title),
        ("department", &patch.department),
    ] {
        if let Some(v) = value {
            body.insert(key.into(), json!(v));
        }
    }
    extend(&mut body, &patch.attributes);
    Value::Object(body)
}

/// Adds the R-ATTR-1 attributes of `patch` to `body` (`null` clears, `[]` empties the phones).
fn extend(body: &mut Map<String, Value>, patch: &m365_engine::model::AttributesPatch) {
    if let Ok(Value::Object(fields)) = serde_json::to_value(patch) {
        body.extend(fields);
    }
}

/// The user as created: Graph's `201` body holds only the default projection (graph-spec §3.1),
/// so the rest is what we sent (graph-spec §7.4: trust the write response, do not re-read).
#[must_use]
pub fn created_user(response: GraphUser, sent: &NewM365User) -> Option<M365User> {
    let mut user = response.into_m365()?;
    user.account_enabled = sent.account_enabled;
    user.given_name = user.given_name.or_else(|| sent.given_name.clone());
    user.surname = user.surname.or_else(|| sent.surname.clone());
    user.job_title = user.job_title.or_else(|| sent.job_title.clone());
    user.department = user.department.or_else(|| sent.department.clone());
    // Only `businessPhones`, `mobilePhone` and `officeLocation` are in the default projection.
    user.attributes.clone_from(&sent.attributes);
    if user.display_name.is_empty() {
        user.display_name.clone_from(&sent.display_name);
    }
    Some(user)
}

/// An OData string literal: single quotes, `''` escapes a quote (graph-spec §3.3).
#[must_use]
pub fn odata_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use m365_engine::model::Email;
    use secrecy::SecretString;

    fn new_user() -> NewM365User {
        NewM365User {
            user_principal_name: Email::parse("adele@contoso.com").unwrap(),
            mail_nickname: "adele".into(),
            display_name: "Adele Vance".into(),
            given_name: Some("Adele".into()),
            surname: None,
            job_title: None,
            department: Some("Retail".into()),
            attributes: Default::default(),
            account_enabled: true,
            password: SecretString::from("xWwvJ]6NMw+bWH-d".to_owned()),
        }
    }

    #[test]
    fn a_create_body_never_forces_a_password_change_and_omits_absent_attributes() {
        // R-PWD-2, graph-spec §3.1
        let body = create_user_body(&new_user());
        assert_eq!(
            body["passwordProfile"]["forceChangePasswordNextSignIn"],
            json!(false)
        );
        assert_eq!(body["accountEnabled"], json!(true));
        assert_eq!(body["userPrincipalName"], json!("adele@contoso.com"));
        assert_eq!(body["department"], json!("Retail"));
        assert!(body.get("surname").is_none());
    }

    #[test]
    fn a_patch_body_sets_clears_and_leaves_fields() {
        // R-BIND-7, graph-spec §3.4
        let patch = M365UserPatch {
            job_title: Some(Some("Director".into())),
            department: Some(None),
            ..M365UserPatch::default()
        };
        assert_eq!(
            patch_user_body(&patch),
            json!({"jobTitle": "Director", "department": null})
        );
    }

    #[test]
    fn a_create_body_carries_the_set_r_attr_1_attributes_only() {
        // R-ATTR-1, graph-spec §3.1
        let mut user = new_user();
        user.attributes.employee_id = Some("E-1".into());
        user.attributes.usage_location = Some("US".into());
        user.attributes.business_phones = vec!["+1 425 555 0100".into()];
        let body = create_user_body(&user);
        assert_eq!(body["employeeId"], json!("E-1"));
        assert_eq!(body["usageLocation"], json!("US"));
        assert_eq!(body["businessPhones"], json!(["+1 425 555 0100"]));
        for absent in [
            "officeLocation",
            "mobilePhone",
            "companyName",
            "city",
            "country",
        ] {
            assert!(body.get(absent).is_none(), "{absent}");
        }
    }

    #[test]
    fn a_patch_body_clears_r_attr_1_attributes_with_null_and_phones_with_an_empty_list() {
        // R-ATTR-1, graph-spec §3.4
        let patch = M365UserPatch {
            attributes: m365_engine::model::AttributesPatch {
                city: Some(Some("Oslo".into())),
                mobile_phone: Some(None),
                business_phones: Some(Vec::new()),
                ..Default::default()
            },
            ..M365UserPatch::default()
        };
        assert_eq!(
            patch_user_body(&patch),
            json!({"city": "Oslo", "mobilePhone": null, "businessPhones": []})
        );
    }

    #[test]
    fn a_graph_user_reads_the_r_attr_1_attributes_and_nulls_as_unset() {
        // R-ATTR-1, graph-spec §3.3
        let user: GraphUser = serde_json::from_value(json!({
            "id": "87d349ed-44d7-43e1-9a83-5f2406dee5bd",
            "userPrincipalName": "adele@contoso.com",
            "accountEnabled": true,
            "companyName": "Contoso",
            "usageLocation": "US",
            "businessPhones": ["+1 1"],
            "city": null
        }))
        .unwrap();
        let m365 = user.into_m365().unwrap();
        assert_eq!(m365.attributes.company_name.as_deref(), Some("Contoso"));
        assert_eq!(m365.attributes.usage_location.as_deref(), Some("US"));
        assert_eq!(m365.attributes.business_phones, vec!["+1 1".to_owned()]);
        assert_eq!(m365.attributes.city, None);
        for name in [
            "employeeId",
            "officeLocation",
            "mobilePhone",
            "businessPhones",
            "companyName",
            "usageLocation",
            "city",
            "country",
        ] {
            assert!(USER_SELECT.split(',').any(|s| s == name), "{name} selected");
        }
    }

    #[test]
    fn odata_literals_escape_single_quotes() {
        // graph-spec §3.3
        assert_eq!(odata_string("o'neil@contoso.com"), "'o''neil@contoso.com'");
    }

    #[test]
    fn only_verified_domains_are_reported_and_only_managed_ones_as_managed() {
        // R-CONN-2, R-CONN-3
        let d = |id: &str, t: &str, v: bool| GraphDomain {
            id: id.into(),
            authentication_type: Some(t.into()),
            is_verified: v,
        };
        assert_eq!(
            d("contoso.com", "Managed", true)
                .into_verified()
                .map(|v| v.kind),
            Some(DomainKind::Managed)
        );
        assert_eq!(
            d("fab.com", "Federated", true)
                .into_verified()
                .map(|v| v.kind),
            Some(DomainKind::Federated)
        );
        assert_eq!(d("x.com", "Managed", false).into_verified(), None);
    }
}
