//! The model: the nouns of m365-sync, validated at construction.

mod actor;
mod alert;
mod attributes;
mod binding;
mod directory;
mod email;
mod event;
mod group;
mod group_binding;
mod ids;
mod license;
mod mail;
mod notification;
mod operation;
mod page;
mod reconcile_run;
mod tenant;
mod user;

pub use actor::{Actor, MAX_ACTOR_LEN};
pub use alert::{AdminAlert, AlertIncident, AlertKind};
pub use attributes::{
    AttributesPatch, MAX_BUSINESS_PHONE_LEN, MAX_BUSINESS_PHONES, UserAttributes, is_country_code,
};
pub use binding::{Binding, BindingError, BindingState, InFlight, SuspendedReason};
pub use directory::DeletedM365User;
pub use directory::{DirectoryRole, M365User, M365UserPatch, NewM365User, Privilege};
pub use email::{DomainName, Email, EmailError, MAX_DOMAIN_LEN, MAX_EMAIL_LEN, MAX_LOCAL_LEN};
pub use event::{Event, EventKind, Failure, UnknownEventKind};
pub use group::Group;
pub use group_binding::{
    GroupBinding, GroupBindingState, M365Group, MAIL_NICKNAME_PREFIX, MAX_MAIL_NICKNAME,
    SkipReason, SkippedMember, mail_nickname_for,
};
pub use ids::{
    EventId, GroupId, IdError, M365ObjectId, M365TenantId, MAX_DIRECTORY_ID_LEN, TenantId, UserId,
};
pub use license::{
    GrantedSku, GroupLicenses, LicenseInputError, LicenseRequest, LicenseSource, LicenseState,
    Licensing, ResolvedLicense, ServicePlan, SubscribedSku, TenantSettings, UsageLocation,
    UsageLocationError, resolve_licenses, wanted_licenses,
};
pub use mail::{
    MAX_BODY_LEN, MAX_SUBJECT_LEN, OutgoingEmail, Placeholder, TemplateError, WelcomeTemplate,
    WelcomeValues,
};
pub use notification::WelcomeNotification;
pub use operation::{
    Disposition, MAX_QUEUE_DELAY, OperationId, OperationKind, OperationOutcome, OperationSubject,
    RetryMessage,
};
pub use page::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, Page, PageRequest, PageToken};
pub use reconcile_run::{ReconcileRun, RunError, RunId, RunStatus};
pub use tenant::{
    DomainKind, RequestToken, RequestTokenError, Tenant, TenantStatus, TenantTokens, VerifiedDomain,
};
pub use user::{DirectoryUser, MAX_DISPLAY_NAME, SealedPassword, UserState};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_binding_serializes_in_camel_case_with_snake_case_states() {
        // R-SAFE-1 (API shapes, DESIGN §3)
        let mut b = Binding::pending(
            UserId::parse("alice").unwrap(),
            TenantId::parse("6e1f0c1a-0000-4000-8000-000000000001").unwrap(),
            "throttled",
        );
        b.state = BindingState::DeletedInM365;
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["userId"], json!("alice"));
        assert_eq!(v["tenantId"], json!("6e1f0c1a-0000-4000-8000-000000000001"));
        assert_eq!(v["state"], json!("deleted_in_m365"));
        assert_eq!(v["pendingReason"], json!("throttled"));
        assert_eq!(v["m365ObjectId"], json!(null));
        let back: Binding = serde_json::from_value(v).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn every_binding_state_and_event_kind_serializes_as_its_name() {
        // R-AUD-1 (event types as in the API)
        for s in BindingState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
        for k in EventKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), json!(k.as_str()));
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(k));
        }
        assert!("user_created".parse::<EventKind>().is_err());
    }

    #[test]
    fn an_event_names_its_kind_type_and_a_tenant_names_its_status() {
        // R-AUD-1, R-CONN-1
        let e = Event {
            id: EventId::generate(),
            kind: EventKind::UserDeprovision,
            at: chrono::Utc::now(),
            user_id: Some(UserId::parse("alice").unwrap()),
            tenant_id: None,
            operation_id: None,
            reason: Some("password_expired".into()),
            details: None,
            actor: Some(Actor::local()),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], json!("user_deprovision"));
        assert_eq!(v["userId"], json!("alice"));
        let t = Tenant::pending(TenantId::generate(), "Contoso");
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["status"], json!("pending_consent"));
        assert_eq!(v["tokenExpiresAt"], json!(null));
        for status in [
            TenantStatus::PendingConsent,
            TenantStatus::Active,
            TenantStatus::ReauthorizationRequired,
            TenantStatus::Deauthorized,
        ] {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                json!(status.as_str())
            );
        }
    }

    #[test]
    fn a_sealed_password_serializes_its_bytes_as_base64() {
        // R-PWD-1 (sealed form stored as text)
        let sealed = SealedPassword {
            key_version: "v1".into(),
            nonce: vec![0; 12],
            ciphertext: vec![255, 1],
        };
        let v = serde_json::to_value(&sealed).unwrap();
        assert_eq!(
            v,
            json!({"keyVersion": "v1", "nonce": "AAAAAAAAAAAAAAAA", "ciphertext": "/wE="})
        );
        let back: SealedPassword = serde_json::from_value(v).unwrap();
        assert_eq!(back, sealed);
    }

    #[test]
    fn a_directory_user_with_a_bad_email_does_not_deserialize() {
        // R-SAFE-1
        let good = json!({
            "id": "alice", "email": "Alice@Contoso.com", "givenName": null, "surname": null,
            "displayName": "Alice", "jobTitle": null, "department": null, "state": "active",
            "password": null, "passwordChangedAt": null, "version": 0
        });
        let user: DirectoryUser = serde_json::from_value(good.clone()).unwrap();
        assert_eq!(user.email.as_str(), "alice@contoso.com");
        let mut bad = good;
        bad["email"] = json!("alice");
        assert!(serde_json::from_value::<DirectoryUser>(bad).is_err());
    }
}
