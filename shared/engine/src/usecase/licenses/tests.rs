//! Licences on the fake World (R-LIC-1): settings validation, bind, seats, unbind, groups.

use super::*;
use crate::model::{EventKind, M365ObjectId};
use crate::ports::GroupStore;
use crate::testing::{World, uid};
use crate::usecase::directory::{GroupDraft, UpsertGroup};
use crate::usecase::group_sync::SyncGroup;

const E3: &str = "6fd2c87f-b296-42f0-b197-1e91e994b900";
const SWAY: &str = "a23b959c-7ce8-4e57-9140-b90eb88a9e97";
const EXCHANGE: &str = "efb87545-963c-4e0d-99df-69c6916d9eb0";
const PBI: &str = "f8a1db68-be16-40ed-86d5-cb42ce701560";
const VISIO: &str = "c5928f49-12ba-48f7-ada3-0d743a3601d5";

/// Contoso subscribes to E3 (5 seats, SWAY and EXCHANGE plans), Power BI (5) and Visio (1).
async fn world() -> World {
    let w = World::new().await;
    let t = &w.tenant.id;
    w.licensing.subscribe(
        t,
        E3,
        "ENTERPRISEPACK",
        5,
        &[(SWAY, "SWAY"), (EXCHANGE, "EXCHANGE_S_ENTERPRISE")],
    );
    w.licensing.subscribe(t, PBI, "POWER_BI_PRO", 5, &[]);
    w.licensing.subscribe(t, VISIO, "VISIOCLIENT", 1, &[]);
    w
}

fn lic(sku: &str, disabled: &[&str]) -> LicenseRequest {
    LicenseRequest {
        sku: sku.to_owned(),
        disabled_plans: disabled.iter().map(|p| (*p).to_owned()).collect(),
    }
}

async fn configure(w: &World, licenses: Vec<LicenseRequest>, remove_on_unbind: bool) {
    Licenses::new(w)
        .put_settings(
            &w.tenant.id,
            SettingsInput {
                usage_location: Some("US".into()),
                licenses,
                remove_licenses_on_unbind: remove_on_unbind,
            },
        )
        .await
        .unwrap();
}

fn account(b: &Binding) -> M365ObjectId {
    World::object_id(b)
}

fn state(b: &Binding) -> Option<LicenseState> {
    b.licensing.as_ref().map(|l| l.state)
}

#[tokio::test]
async fn the_settings_of_a_tenant_never_configured_are_the_defaults() {
    // R-LIC-1
    let w = world().await;
    let s = Licenses::new(&w).settings(&w.tenant.id).await.unwrap();
    assert_eq!(s, TenantSettings::defaults(w.tenant.id.clone()));
    let unknown = TenantId::generate();
    let e = Licenses::new(&w).settings(&unknown).await.unwrap_err();
    assert_eq!(e.code(), "not_found");
}

#[tokio::test]
async fn settings_resolve_sku_and_plan_names_to_ids() {
    // R-LIC-1
    let w = world().await;
    configure(&w, vec![lic("ENTERPRISEPACK", &["SWAY"])], false).await;
    let s = Licenses::new(&w).settings(&w.tenant.id).await.unwrap();
    assert_eq!(s.usage_location.unwrap().as_str(), "US");
    assert_eq!(s.licenses[0].sku_id, E3);
    assert_eq!(s.licenses[0].disabled_plan_ids, vec![SWAY.to_owned()]);
}

#[tokio::test]
async fn bad_settings_are_refused_with_the_known_names_and_nothing_is_written() {
    // R-LIC-1, R-SAFE-1
    let w = world().await;
    let put = |input: SettingsInput| {
        let w = &w;
        async move {
            Licenses::new(w)
                .put_settings(&w.tenant.id, input)
                .await
                .unwrap_err()
        }
    };
    let e = put(SettingsInput {
        licenses: vec![lic("NOPE", &[])],
        ..SettingsInput::default()
    })
    .await;
    assert_eq!(e.code(), "unknown_sku");
    assert!(
        e.to_string()
            .contains("ENTERPRISEPACK, POWER_BI_PRO, VISIOCLIENT"),
        "{e}"
    );
    let e = put(SettingsInput {
        licenses: vec![lic("ENTERPRISEPACK", &["YAMMER"])],
        ..SettingsInput::default()
    })
    .await;
    assert_eq!(e.code(), "unknown_service_plan");
    assert!(e.to_string().contains("SWAY, EXCHANGE_S_ENTERPRISE"), "{e}");
    let e = put(SettingsInput {
        usage_location: Some("USA".into()),
        ..SettingsInput::default()
    })
    .await;
    assert_eq!(e.code(), "invalid_usage_location");
    let e = Licenses::new(&w)
        .put_settings(&TenantId::generate(), SettingsInput::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "not_found");
    assert_eq!(
        w.license_settings.settings(&w.tenant.id).await.unwrap(),
        None,
        "nothing written"
    );
}

#[tokio::test]
async fn binding_sets_the_usage_location_and_assigns_the_default_licence_with_its_disabled_plans() {
    // R-LIC-1
    let w = world().await;
    configure(&w, vec![lic("ENTERPRISEPACK", &["SWAY"])], false).await;
    w.user("adele").await;
    let crate::usecase::Outcome::Done { binding, .. } = w.bind("adele").await else {
        panic!("bound")
    };
    assert_eq!(
        state(&binding),
        Some(LicenseState::Assigned),
        "the bind's outcome shows the licences"
    );
    let b = w.binding("adele").await;
    assert_eq!(b, binding);
    assert_eq!(b.state, BindingState::Provisioned);
    assert_eq!(state(&b), Some(LicenseState::Assigned));
    let id = account(&b);
    assert_eq!(
        w.licensing
            .usage_location(&w.tenant.id, &id)
            .unwrap()
            .as_str(),
        "US"
    );
    assert_eq!(
        w.licensing.assigned(&w.tenant.id, &id),
        BTreeMap::from([(E3.to_owned(), vec![SWAY.to_owned()])])
    );
    let events = w.events_of(EventKind::UserUpdateProvision);
    assert_eq!(events.len(), 1);
    let details = events[0].details.as_ref().unwrap();
    assert_eq!(
        details["licensesAdded"],
        serde_json::json!(["ENTERPRISEPACK"])
    );
    assert_eq!(details["usageLocation"], "US");
}

#[tokio::test]
async fn a_tenant_without_licence_settings_costs_no_licence_call() {
    // R-LIC-1, DESIGN §5
    let w = world().await;
    w.user("adele").await;
    w.bind("adele").await;
    assert_eq!(w.licensing.writes(), 0);
    assert_eq!(w.binding("adele").await.licensing, None);
}

#[tokio::test]
async fn without_any_usage_location_the_licence_fails_without_a_graph_write() {
    // R-LIC-1 (graph-spec §9.2: M365 refuses a licence without a usage location)
    let w = world().await;
    Licenses::new(&w)
        .put_settings(
            &w.tenant.id,
            SettingsInput {
                licenses: vec![lic("POWER_BI_PRO", &[])],
                ..SettingsInput::default()
            },
        )
        .await
        .unwrap();
    w.user("adele").await;
    w.bind("adele").await;
    let b = w.binding("adele").await;
    assert_eq!(b.state, BindingState::Provisioned);
    assert_eq!(state(&b), Some(LicenseState::Failed));
    assert_eq!(b.last_error.unwrap().code, USAGE_LOCATION_REQUIRED);
    assert_eq!(w.licensing.writes(), 0);
}

#[tokio::test]
async fn seat_exhaustion_keeps_the_account_and_reconcile_assigns_once_a_seat_frees() {
    // R-LIC-1
    let w = world().await;
    configure(&w, vec![lic("VISIOCLIENT", &[])], true).await;
    w.user("adele").await;
    w.user("alex").await;
    w.bind("adele").await;
    w.bind("alex").await;
    let b = w.binding("alex").await;
    assert_eq!(
        b.state,
        BindingState::Provisioned,
        "the account stays provisioned"
    );
    assert_eq!(state(&b), Some(LicenseState::Failed));
    assert_eq!(
        b.licensing.as_ref().unwrap().error_code.as_deref(),
        Some(LICENSE_UNAVAILABLE)
    );
    assert_eq!(b.last_error.as_ref().unwrap().code, LICENSE_UNAVAILABLE);
    let failures = w.failures.all();
    let failure = failures
        .iter()
        .find(|f| f.code == LICENSE_UNAVAILABLE)
        .expect("a failure is recorded");
    assert_eq!(failure.user_id, Some(uid("alex")));
    assert!(
        failure.graph_request_id.is_some(),
        "with Graph's request id"
    );
    assert!(w.licensing.assigned(&w.tenant.id, &account(&b)).is_empty());

    // Still no seat: reconcile tries and fails again.
    let report = Licenses::new(&w)
        .reconcile_tenant(&w.tenant.id)
        .await
        .unwrap();
    assert_eq!(report.failed, 1);

    // Unbinding adele (removeLicensesOnUnbind) frees the seat; reconcile assigns it to alex.
    w.unbinder().unbind(&uid("adele")).await.unwrap();
    let adele = w.binding("adele").await;
    assert!(
        w.licensing
            .assigned(&w.tenant.id, &account(&adele))
            .is_empty()
    );
    let report = Licenses::new(&w)
        .reconcile_tenant(&w.tenant.id)
        .await
        .unwrap();
    assert_eq!((report.changed, report.failed), (1, 0));
    let b = w.binding("alex").await;
    assert_eq!(state(&b), Some(LicenseState::Assigned));
    assert_eq!(b.last_error, None, "the licence error is cleared");
    assert!(
        w.licensing
            .assigned(&w.tenant.id, &account(&b))
            .contains_key(VISIO)
    );
}

#[tokio::test]
async fn unbind_keeps_licences_unless_the_tenant_removes_them_on_unbind() {
    // R-LIC-1
    let w = world().await;
    configure(&w, vec![lic("ENTERPRISEPACK", &[])], false).await;
    w.user("adele").await;
    w.bind("adele").await;
    w.unbinder().unbind(&uid("adele")).await.unwrap();
    let b = w.binding("adele").await;
    assert_eq!(b.state, BindingState::Blocked);
    assert!(
        w.licensing
            .assigned(&w.tenant.id, &account(&b))
            .contains_key(E3)
    );

    configure(&w, vec![lic("ENTERPRISEPACK", &[])], true).await;
    w.user("alex").await;
    w.bind("alex").await;
    w.unbinder().unbind(&uid("alex")).await.unwrap();
    let b = w.binding("alex").await;
    assert!(w.licensing.assigned(&w.tenant.id, &account(&b)).is_empty());
    assert_eq!(state(&b), Some(LicenseState::None));
    let removed = w
        .events
        .all()
        .into_iter()
        .filter(|e| e.user_id == Some(uid("alex")) && e.kind == EventKind::UserUpdateProvision)
        .any(|e| e.details.unwrap()["licensesRemoved"] == serde_json::json!(["ENTERPRISEPACK"]));
    assert!(removed, "the removal is recorded with its SKU");
}

async fn licensed_group(w: &World, id: &str, members: &[&str], licenses: Vec<LicenseRequest>) {
    let gid = GroupId::parse(id).unwrap();
    let group = Group::new(
        gid.clone(),
        format!("Group {id}"),
        members.iter().map(|m| uid(m)),
    );
    w.groups.create(&group).await.unwrap();
    let l = Licenses::new(w);
    let resolved = l
        .check_group_licenses(&w.tenant.id, &licenses)
        .await
        .unwrap();
    SyncGroup::new(w).bind(&gid, &w.tenant.id).await.unwrap();
    let group = w.groups.get(&gid).await.unwrap().unwrap();
    l.set_group_licenses(&group, &w.tenant.id, resolved)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_group_licence_follows_membership_while_the_tenant_default_stays() {
    // R-LIC-1
    let w = world().await;
    configure(&w, vec![lic("ENTERPRISEPACK", &[])], false).await;
    w.user("adele").await;
    w.bind("adele").await;
    licensed_group(
        &w,
        "sales",
        &["adele"],
        vec![lic("POWER_BI_PRO", &[]), lic("ENTERPRISEPACK", &[])],
    )
    .await;
    let id = account(&w.binding("adele").await);
    let held = w.licensing.assigned(&w.tenant.id, &id);
    assert!(held.contains_key(E3) && held.contains_key(PBI), "{held:?}");

    // A user bound later joins with the group's licence at bind.
    w.user("alex").await;
    UpsertGroup::new(&w)
        .upsert(
            &GroupId::parse("sales").unwrap(),
            GroupDraft {
                name: "Group sales".into(),
                members: vec!["adele".into(), "alex".into()],
            },
        )
        .await
        .unwrap();
    w.bind("alex").await;
    let alex = account(&w.binding("alex").await);
    assert!(w.licensing.assigned(&w.tenant.id, &alex).contains_key(PBI));

    // Adele leaves the group: Power BI goes, E3 (also the tenant's default) stays.
    UpsertGroup::new(&w)
        .upsert(
            &GroupId::parse("sales").unwrap(),
            GroupDraft {
                name: "Group sales".into(),
                members: vec!["alex".into()],
            },
        )
        .await
        .unwrap();
    Licenses::new(&w)
        .follow_members([uid("adele")].iter())
        .await;
    let held = w.licensing.assigned(&w.tenant.id, &id);
    assert_eq!(held.keys().collect::<Vec<_>>(), vec![E3], "{held:?}");
    let granted = w.binding("adele").await.licensing.unwrap().granted;
    assert_eq!(
        granted[E3].sources,
        BTreeSet::from([LicenseSource::Tenant]),
        "the group no longer grants E3"
    );
}

#[tokio::test]
async fn reconcile_catches_up_a_membership_change_it_was_not_told_about() {
    // R-LIC-1
    let w = world().await;
    configure(&w, vec![], false).await;
    w.user("adele").await;
    w.bind("adele").await;
    licensed_group(&w, "sales", &["adele"], vec![lic("POWER_BI_PRO", &[])]).await;
    let id = account(&w.binding("adele").await);
    assert!(w.licensing.assigned(&w.tenant.id, &id).contains_key(PBI));
    let mut group = w
        .groups
        .get(&GroupId::parse("sales").unwrap())
        .await
        .unwrap()
        .unwrap();
    group.members.clear();
    w.groups.replace(&group, group.version).await.unwrap();
    let report = Licenses::new(&w)
        .reconcile_tenant(&w.tenant.id)
        .await
        .unwrap();
    assert_eq!(report.changed, 1);
    assert!(w.licensing.assigned(&w.tenant.id, &id).is_empty());
    assert_eq!(state(&w.binding("adele").await), Some(LicenseState::None));
}

#[tokio::test]
async fn a_licence_m365_never_got_from_us_is_never_removed() {
    // R-LIC-1: only what we granted is removed
    let w = world().await;
    configure(&w, vec![lic("ENTERPRISEPACK", &[])], true).await;
    w.user("adele").await;
    w.bind("adele").await;
    let id = account(&w.binding("adele").await);
    // An admin gave Visio by hand.
    w.licensing
        .assign_licenses(&w.tenant.id, &id, &[(VISIO.to_owned(), vec![])], &[])
        .await
        .unwrap();
    w.unbinder().unbind(&uid("adele")).await.unwrap();
    let held = w.licensing.assigned(&w.tenant.id, &id);
    assert_eq!(held.keys().collect::<Vec<_>>(), vec![VISIO]);
}
