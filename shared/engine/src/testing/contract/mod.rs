//! The contract suite: the behaviour every implementation of a port must show.
//!
//! Each function is a plain `async fn` that takes a port implementation (the directory's also take
//! a [`directory::DirectoryTenant`] fixture) and asserts one behaviour with plain `assert!`s (it
//! panics on failure, like a test). The same functions run against the in-memory fakes
//! (`tests/contract_fakes.rs` here) and against the real adapters (`m365-aws` on moto, `m365-graph`
//! on the emulator) through one macro, [`contract_tests!`]: one invocation per port and adapter
//! expands to one `#[tokio::test]` per contract function of that port.
//!
//! Adding a contract: write the `pub async fn` in the port's file and add its name to the port's
//! list in the `suites!` table below; every adapter's tests then run it. The file is a private
//! module under `#[deny(dead_code)]` and the public `contract::<port>` module re-exports exactly
//! the listed names, so a contract function left out of the list does not compile ("function is
//! never used") instead of silently running nowhere. Functions of another shape (more arguments,
//! an expected value) are listed under `also`: exported, but called by hand.
//!
//! Ids are fresh in every function (random), so store contracts may share one table; listing
//! contracts only look at the records they wrote. Queue contracts need an empty queue each.

use std::fmt::Debug;
use std::future::Future;

use chrono::{DateTime, SubsecRound, Utc};

use crate::error::{Error, InvalidInput, Result};
use crate::model::{
    DomainName, Email, GroupId, M365User, NewM365User, Page, PageRequest, TenantId, UserId,
};

/// Declares every port's contract module: the file (a private module, `#[deny(dead_code)]`), the
/// public module re-exporting the listed contract functions (plus the `also` items), and one arm
/// of [`contract_tests!`] per port generating a test per listed function. `$d` is a literal `$`
/// (how a `macro_rules!` writes another macro's metavariables on stable Rust).
macro_rules! suites {
    ($d:tt $(
        $(#[$doc:meta])*
        $module:ident in $file:literal as $private:ident, takes ($($shape:ident),+) {
            $($name:ident),+ $(,)?
        } $(also { $($extra:ident),+ $(,)? })?;
    )+) => {
        $(
            #[deny(dead_code)]
            #[path = $file]
            mod $private;

            $(#[$doc])*
            pub mod $module {
                pub use super::$private::{$($name,)+ $($($extra,)+)?};
            }
        )+

        /// Expands to one `#[tokio::test]` per contract function of a port, run against the port
        /// built by the given expression (evaluated inside each async test; it may `.await`, and
        /// may `return` to skip, e.g. when moto is absent). Use it inside a module, one module per
        /// port and adapter:
        ///
        /// ```text
        /// mod users {
        ///     m365_engine::contract_tests!(users, DynamoUsers::new(client, table));
        ///     // `ref` when the expression already yields a `&Port` (one store shared by the tests):
        ///     m365_engine::contract_tests!(users, ref super::shared(&STORE));
        /// }
        /// mod directory {
        ///     // directory and security_groups: a tuple `(directory, DirectoryTenant, ..)`; further
        ///     // fields (an emulator guard) live as long as the test.
        ///     m365_engine::contract_tests!(directory, super::directory());
        /// }
        /// ```
        ///
        /// Ports: users, groups, tenants, bindings, events, failures, ledger, retry_queue (an
        /// EMPTY queue per test), token_vault, sealer, leases, alert_incidents, pending_consents, rate_budget (built
        /// with [`rate_budget::CONTRACT_LIMIT`]), directory, security_groups.
        #[macro_export]
        macro_rules! contract_tests {
            $(
                ($module, $d($d make:tt)+) => {
                    $crate::__contract_tests!($module; ($($shape),+); [$d($d make)+]; $($name),+);
                };
            )+
        }
    };
}

suites! {$
    /// Contract of [`UserStore`](crate::ports::UserStore).
    users in "users.rs" as users_suite, takes (port) {
        a_created_user_can_be_read_by_id_and_by_email,
        every_field_of_a_user_round_trips,
        a_missing_user_reads_as_none,
        a_second_user_with_the_same_email_is_refused,
        creating_a_user_twice_is_refused,
        a_replace_bumps_the_version_and_a_stale_replace_is_refused,
        replacing_a_missing_user_is_not_found,
        changing_a_users_email_frees_the_old_one,
        changing_a_users_email_to_a_taken_one_is_refused,
        users_are_listed_across_pages,
        a_garbage_cursor_is_refused,
        reports_are_found_by_their_manager_and_follow_changes,
    };
    /// Contract of [`GroupStore`](crate::ports::GroupStore).
    groups in "groups.rs" as groups_suite, takes (port) {
        a_created_group_round_trips_with_its_members,
        creating_a_group_twice_is_refused,
        a_stale_group_replace_is_refused,
        groups_are_listed_across_pages,
        a_deleted_group_is_gone_and_deleting_again_is_harmless,
        a_member_is_found_in_each_of_its_groups_and_only_those,
        groups_of_member_follow_membership_changes,
        a_deleted_group_no_longer_lists_its_members,
        a_member_of_many_groups_finds_them_all,
        a_large_membership_change_is_found_by_every_member,
    };
    /// Contract of [`TenantStore`](crate::ports::TenantStore).
    tenants in "tenants.rs" as tenants_suite, takes (port) {
        a_created_tenant_round_trips,
        creating_a_tenant_twice_is_refused,
        a_stale_tenant_update_is_refused,
        claimed_domains_route_to_their_tenant,
        a_domain_claimed_by_another_tenant_is_refused_and_nothing_is_claimed,
        reclaiming_its_own_domains_is_idempotent,
        released_domains_can_be_claimed_by_another_tenant,
        a_tenant_cannot_release_another_tenants_domain,
        a_tenant_with_150_domains_claims_them_all,
        a_large_claim_refused_late_claims_nothing_and_keeps_what_was_held,
        tenants_are_listed_across_pages,
    };
    /// Contract of [`BindingStore`](crate::ports::BindingStore).
    bindings in "bindings.rs" as bindings_suite, takes (port) {
        a_binding_is_created_only_if_absent,
        a_stale_binding_update_is_refused,
        updating_a_missing_binding_is_refused,
        a_binding_round_trips_with_its_last_error,
        a_suspended_binding_round_trips_with_its_reason,
        bindings_are_listed_by_tenant_with_an_optional_state_filter,
        a_state_change_moves_a_binding_between_state_listings,
    };
    /// Contract of [`EventStore`](crate::ports::EventStore).
    events in "events.rs" as events_suite, takes (port) {
        events_of_a_user_are_listed_newest_first,
        events_of_a_tenant_are_listed_newest_first,
        events_of_a_type_are_listed_newest_first,
        since_keeps_only_events_at_or_after_it,
        events_page_through_a_cursor_without_gaps_or_repeats,
        appending_the_same_event_twice_keeps_one,
        a_garbage_event_cursor_is_refused,
    };
    /// Contract of [`FailureStore`](crate::ports::FailureStore).
    failures in "failures.rs" as failures_suite, takes (port) {
        failures_of_a_tenant_are_listed_newest_first,
    };
    /// Contract of [`OperationLedger`](crate::ports::OperationLedger).
    ledger in "ledger.rs" as ledger_suite, takes (port) {
        a_second_claim_of_an_operation_is_in_progress,
        a_completed_operation_is_already_done_with_its_outcome,
        an_expired_lease_is_taken_over,
        a_released_claim_can_be_claimed_again,
        releasing_a_done_operation_keeps_it_done,
        a_done_operation_past_its_expiry_can_be_claimed_again,
    };
    /// Contract of [`RetryQueue`](crate::ports::RetryQueue) with its consumer side; each test
    /// needs an empty queue.
    retry_queue in "retry_queue.rs" as retry_queue_suite, takes (port) {
        a_sent_message_is_received_intact_and_gone_after_ack,
        a_delayed_message_is_not_received_before_its_delay,
        an_unacknowledged_message_comes_back_after_its_visibility_timeout,
        several_messages_are_each_delivered_once,
        a_delay_beyond_fifteen_minutes_is_refused,
    };
    /// Contract of [`TokenVault`](crate::ports::TokenVault).
    token_vault in "token_vault.rs" as token_vault_suite, takes (port) {
        stored_tokens_are_read_back_as_current,
        a_second_put_keeps_the_first_as_previous,
        repeating_a_put_with_the_same_request_token_changes_nothing,
        reusing_a_request_token_with_other_tokens_is_refused,
        deleted_tokens_are_gone_and_can_be_stored_again,
        an_update_of_a_tenant_without_tokens_fails_and_creates_nothing,
    };
    /// Contract of [`Sealer`](crate::ports::Sealer).
    sealer in "sealer.rs" as sealer_suite, takes (port) {
        a_sealed_password_opens_to_the_same_password,
        the_sealed_form_hides_the_password,
        a_tampered_sealed_password_is_refused,
        a_password_sealed_for_one_user_does_not_open_for_another,
        an_unknown_key_version_is_refused,
    };
    /// Contract of [`LicenseSettingsStore`](crate::ports::LicenseSettingsStore) (R-LIC-1).
    license_settings in "license_settings.rs" as license_settings_suite, takes (port) {
        tenant_settings_round_trip_and_a_second_put_replaces_them,
        group_licenses_round_trip_per_group,
    };
    /// Contract of [`ReconcileRuns`](crate::ports::ReconcileRuns) (R-OPS-2).
    runs in "runs.rs" as runs_suite, takes (port) {
        a_run_round_trips_under_its_own_tenant_only,
        an_update_applies_on_the_expected_version_only,
    };
    /// Contract of [`Leases`](crate::ports::Leases).
    leases in "leases.rs" as leases_suite, takes (port) {
        a_free_lease_is_taken_and_a_live_one_is_refused,
        an_expired_lease_is_taken_over,
        only_the_holder_releases_a_lease,
    };
    /// Contract of [`AlertIncidents`](crate::ports::AlertIncidents) (R-OPS-1).
    alert_incidents in "alert_incidents.rs" as alert_incidents_suite, takes (port) {
        a_new_incident_is_claimed_once_and_its_alert_published_once,
        an_unconfirmed_claim_is_taken_over_after_it_ran_out_with_the_same_incident,
        a_resolved_incident_opens_anew_and_resolving_twice_finds_none,
        incidents_of_other_tenants_and_kinds_are_apart,
    };
    /// Contract of [`PendingConsents`](crate::ports::PendingConsents).
    pending_consents in "pending_consents.rs" as pending_consents_suite, takes (port) {
        a_sign_in_is_taken_once_with_every_field,
        an_expired_sign_in_is_not_returned,
        an_unknown_state_is_not_found,
        storing_a_state_twice_is_refused,
    };
    /// Contract of [`RateBudget`](crate::ports::RateBudget); the budget must be built with
    /// [`rate_budget::CONTRACT_LIMIT`].
    rate_budget in "rate_budget.rs" as rate_budget_suite, takes (port) {
        a_new_tenant_gets_its_capacity_then_waits,
        the_budget_refills_with_time,
        a_wait_ends_when_the_units_are_back,
        tenants_do_not_share_a_bucket,
        an_impossible_cost_is_refused,
    } also { CONTRACT_LIMIT };
    /// Contract of [`Directory`](crate::ports::Directory) (Microsoft Graph's side); each function
    /// takes the directory and a [`directory::DirectoryTenant`] fixture. The privileged-account
    /// contracts take more (a [`directory::RoleAdmin`], an expected admin) and are called by hand.
    directory in "directory.rs" as directory_suite, takes (port, fixture) {
        a_created_user_is_found_by_its_upn,
        a_second_user_with_the_same_upn_is_a_conflict,
        a_user_in_an_unverified_domain_is_rejected,
        a_user_in_a_federated_domain_is_rejected,
        a_non_compliant_password_is_rejected,
        a_compliant_password_reset_is_accepted,
        sign_in_can_be_blocked_and_unblocked,
        sessions_can_be_revoked_and_an_unknown_user_is_not_found,
        an_attribute_patch_changes_only_what_it_names,
        operations_on_a_missing_user_are_not_found,
        users_are_listed_across_pages,
        verified_domains_are_reported_with_their_kind,
        the_organization_id_is_stable,
        a_manager_is_set_read_replaced_and_cleared,
    } also {
        DirectoryTenant,
        RoleAdmin,
        GLOBAL_ADMINISTRATOR_TEMPLATE,
        directory_roles_are_reported_per_user_and_per_tenant_alike,
        the_consenting_admin_is_reported,
    };
    /// Contract of the directory's security groups (R-GRP-1); like [`directory`], each function
    /// takes the directory and a [`directory::DirectoryTenant`].
    security_groups in "security_groups.rs" as security_groups_suite, takes (port, fixture) {
        a_security_group_is_created_and_found_by_its_nickname,
        members_are_added_listed_and_removed_idempotently,
    };
}

/// A fresh random suffix (lowercase hex, 16 characters).
#[must_use]
pub fn fresh_suffix() -> String {
    let mut s = uuid::Uuid::new_v4().simple().to_string();
    s.truncate(16);
    s
}

/// A fresh user id (`u-<suffix>`).
#[must_use]
pub fn fresh_user_id() -> UserId {
    UserId::parse(format!("u-{}", fresh_suffix())).expect("a generated user id is valid")
}

/// A fresh user id sharing `prefix` (for ordered listings).
#[must_use]
pub fn user_id_with(prefix: &str, n: usize) -> UserId {
    UserId::parse(format!("{prefix}-{n:03}")).expect("a generated user id is valid")
}

/// A fresh group id (`g-<suffix>`).
#[must_use]
pub fn fresh_group_id() -> GroupId {
    GroupId::parse(format!("g-{}", fresh_suffix())).expect("a generated group id is valid")
}

/// A fresh DNS domain (`d<suffix>.example`).
#[must_use]
pub fn fresh_domain() -> DomainName {
    DomainName::parse(&format!("d{}.example", fresh_suffix())).expect("a generated domain is valid")
}

/// A fresh email in a fresh domain.
#[must_use]
pub fn fresh_email() -> Email {
    Email::parse(&format!("user.{}@{}", fresh_suffix(), fresh_domain()))
        .expect("a generated email is valid")
}

/// A fresh tenant id.
#[must_use]
pub fn fresh_tenant_id() -> TenantId {
    TenantId::generate()
}

/// A password every directory's policy accepts (the contracts' and the adapters' tests' own).
pub const COMPLIANT_PASSWORD: &str = "xWwvJ]6NMw+bWH-d";

/// A new enabled M365 user `upn` with `mail_nickname` and `display_name`, the
/// [`COMPLIANT_PASSWORD`] and no optional attribute.
#[must_use]
pub fn new_m365_user(upn: Email, mail_nickname: &str, display_name: &str) -> NewM365User {
    NewM365User {
        user_principal_name: upn,
        mail_nickname: mail_nickname.to_owned(),
        display_name: display_name.to_owned(),
        given_name: None,
        surname: None,
        job_title: None,
        department: None,
        attributes: Default::default(),
        account_enabled: true,
        password: secrecy::SecretString::from(COMPLIANT_PASSWORD.to_owned()),
    }
}

/// Every R-ATTR-1 attribute set, within Graph's rules (Contoso's Redmond office).
#[must_use]
pub fn every_attribute() -> crate::model::UserAttributes {
    crate::model::UserAttributes {
        employee_id: Some("E-1001".into()),
        office_location: Some("18/2111".into()),
        mobile_phone: Some("+1 425 555 0109".into()),
        business_phones: vec!["+1 425 555 0100".into()],
        company_name: Some("Contoso".into()),
        usage_location: Some("US".into()),
        city: Some("Redmond".into()),
        country: Some("United States".into()),
    }
}

/// Asserts that the M365 `account` is the one created from `new`: its UPN, in any case (Graph
/// keeps the case it was given, a lookup matches in any).
pub fn assert_created_from(account: &M365User, new: &NewM365User) {
    assert!(
        account
            .user_principal_name
            .eq_ignore_ascii_case(new.user_principal_name.as_str()),
        "created {} for {}",
        account.user_principal_name,
        new.user_principal_name
    );
}

/// Now, truncated to whole milliseconds (what every store can keep exactly).
#[must_use]
pub fn now_ms() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// Most pages a contract follows before calling a listing endless.
const MAX_PAGES: usize = 10_000;

/// Follows `next` tokens until the last page and returns every item, asserting that the listing ends.
pub async fn collect_pages<T, F, Fut>(limit: u32, mut fetch: F) -> Vec<T>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page<T>>>,
{
    let mut items = Vec::new();
    let mut request = PageRequest::first(limit);
    for _ in 0..MAX_PAGES {
        let page = fetch(request.clone())
            .await
            .expect("listing a page succeeds");
        assert!(
            page.items.len() <= limit as usize,
            "a page holds at most `limit` items"
        );
        items.extend(page.items);
        match page.next {
            Some(next) => request = PageRequest::after(next, limit),
            None => return items,
        }
    }
    panic!("the listing did not end after {MAX_PAGES} pages");
}

/// The ids (by `id`) of the listed `items` that `keep` accepts, sorted: what a listing contract
/// compares with the ids it wrote.
pub fn listed_ids<T, I: Ord>(
    items: Vec<T>,
    id: impl FnMut(T) -> I,
    keep: impl FnMut(&I) -> bool,
) -> Vec<I> {
    let mut listed: Vec<I> = items.into_iter().map(id).filter(keep).collect();
    listed.sort();
    listed
}

/// Asserts that `result` is the conflict with `code`.
pub fn assert_conflict<T: Debug>(result: &Result<T>, code: &str) {
    assert!(
        matches!(result, Err(e) if e.is_conflict(code)),
        "expected conflict {code}, got {result:?}"
    );
}

/// Asserts that `result` is a not-found error.
pub fn assert_not_found<T: Debug>(result: &Result<T>) {
    assert!(
        matches!(result, Err(Error::NotFound { .. })),
        "expected not found, got {result:?}"
    );
}

/// Asserts that `result` is an invalid-cursor error.
pub fn assert_invalid_cursor<T: Debug>(result: &Result<T>) {
    assert!(
        matches!(result, Err(Error::Invalid(InvalidInput::Cursor))),
        "expected invalid cursor, got {result:?}"
    );
}

/// The expansion of [`contract_tests!`] for one port: one `#[tokio::test]` per named function.
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_tests {
    ($module:ident; (port); [ref $make:expr]; $($name:ident),+) => {
        $(
            #[tokio::test]
            async fn $name() {
                let port = $make;
                $crate::testing::contract::$module::$name(port).await;
            }
        )+
    };
    ($module:ident; (port); [$make:expr]; $($name:ident),+) => {
        $(
            #[tokio::test]
            async fn $name() {
                let port = $make;
                $crate::testing::contract::$module::$name(&port).await;
            }
        )+
    };
    ($module:ident; (port, fixture); [$make:expr]; $($name:ident),+) => {
        $(
            #[tokio::test]
            async fn $name() {
                let made = $make;
                $crate::testing::contract::$module::$name(&made.0, &made.1).await;
            }
        )+
    };
}
