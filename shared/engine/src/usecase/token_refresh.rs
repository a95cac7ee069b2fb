//! Scheduled token refresh (DESIGN §4 "token-refresh", R-CONN-4): every active tenant whose access
//! token expires within the window (15 minutes) is refreshed under a per-tenant lease, so concurrent
//! runs make one token call; the rotated tokens are saved in the vault before anything uses them;
//! `invalid_grant` marks the tenant `reauthorization_required` with an event, which parks its queued
//! work (the retry worker re-queues it instead of failing it) until an admin reconnects.
//!
//! The refresh grant goes to the tenant's own authority (`/{m365TenantId}`) once it is known, not to
//! `organizations` (R-CONN-7). Its writes never overwrite a deauthorization or a reconnect
//! (R-CONN-8): the rotated tokens are saved with `TokenVault::update`, which fails once the secret
//! was deleted (the refresh then reports [`TenantRefresh::Superseded`] and writes nothing); the
//! expiry is written only on an `active` tenant; and `reauthorization_required` is written only on an
//! `active` tenant whose vault still holds the refused refresh token — re-read after the tenant and
//! before the conditional write, so a reconnect (which writes its tokens before its status) is never
//! undone.
//!
//! Admin alerts (R-OPS-1, `usecase::alerts`), once per incident: a tenant marked
//! `reauthorization_required` (or found so by a later run whose alert did not go out) alerts
//! `reauthorization_required`; the platform refusing our OAuth client itself (`invalid_client`:
//! wrong or expired client secret, AADSTS7000215 / 7000222; `unauthorized_client`, graph-spec §1.5)
//! is a configuration error: the tenant stays `active` (nothing of it is wrong), the first run of
//! the incident records a `tenant_configuration_error` event and alerts `configuration_error`, and
//! every run that meets it reports [`TenantRefresh::ConfigurationError`] — the function then fails
//! the invocation, so Lambda's `Errors` metric and its alarm see it. A refresh that succeeds
//! resolves both incidents. Throttling, 5xx, `temporarily_unavailable` and network failures stay
//! retryable ([`TenantRefresh::Failed`]).

use chrono::{DateTime, TimeDelta, Utc};

use secrecy::{ExposeSecret, SecretString};

use crate::error::{Entity, Error, Result};
use crate::model::{
    AlertKind, Event, EventId, EventKind, PageRequest, RequestToken, Tenant, TenantId,
    TenantStatus, TenantTokens,
};
use crate::ports::Ports;
use crate::ports::{Clock, EventStore, IdentityPlatform, Leases, TenantStore, TokenVault};

use super::alerts::{Alerting, Raised};
use super::connect::transition_tenant;

/// How often the conditional `reauthorization_required` write is retried after losing a race.
const MAX_MARK_ATTEMPTS: u32 = 5;

/// Tokens expiring within this window are refreshed (DESIGN §4).
pub const DEFAULT_REFRESH_WINDOW: TimeDelta = TimeDelta::minutes(15);

/// How long a refresh may hold a tenant's lease (far longer than one token call).
pub const DEFAULT_LEASE: TimeDelta = TimeDelta::minutes(2);

/// Tenants read per page.
const TENANT_PAGE: u32 = 100;

/// The lease name of a tenant's refresh.
#[must_use]
pub fn lease_name(tenant: &TenantId) -> String {
    format!("token-refresh#{tenant}")
}

/// What happened to one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantRefresh {
    /// New tokens were saved; the access token now expires at this instant.
    Refreshed {
        /// New expiry.
        expires_at: DateTime<Utc>,
    },
    /// The tokens are not due (another run refreshed them, or they are fresh).
    NotDue,
    /// Another run holds the tenant's lease: it refreshes.
    Busy,
    /// The refresh token was refused: the tenant is now `reauthorization_required`.
    ReauthorizationRequired {
        /// The AADSTS code.
        aadsts: u32,
    },
    /// The vault has no tokens for this active tenant: it needs reauthorization too.
    NoTokens,
    /// The tenant was deauthorized (or reconnected) while its refresh ran: nothing was saved or
    /// marked, the newer state stands (R-CONN-8).
    Superseded,
    /// The identity platform refused our OAuth client (`invalid_client`, `unauthorized_client`):
    /// a configuration error an admin must fix (R-OPS-1). The tenant stays `active`; the run
    /// fails loudly.
    ConfigurationError {
        /// The OAuth `error` value.
        error: String,
        /// The AADSTS code (7000215 wrong secret, 7000222 expired secret, …), when given.
        aadsts: Option<u32>,
    },
    /// A retryable failure (throttling, outage): the next scheduled run tries again.
    Failed {
        /// Machine code.
        code: &'static str,
    },
}

/// Per-tenant results of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshReport {
    /// Each tenant looked at, with its result.
    pub tenants: Vec<(TenantId, TenantRefresh)>,
}

impl RefreshReport {
    /// How many tenants had the outcome `pred` accepts.
    #[must_use]
    pub fn count(&self, pred: impl Fn(&TenantRefresh) -> bool) -> usize {
        self.tenants.iter().filter(|(_, r)| pred(r)).count()
    }
}

use_case! {
    /// The token-refresh use case.
    pub struct RefreshTokens {
        ports: [
            tenants: Tenants, vault: Vault, identity: Identity, leases: Leases, events: Events,
            clock: Clock
        ],
        built: [
            /// Admin alerts, once per incident (R-OPS-1).
            alerting: Alerting<'a, P> = Alerting::new,
        ],
        extra: [
            /// Who we are in the leases (unique per invocation, e.g. the Lambda request id).
            holder: String,
            /// Refresh tokens expiring within this window ([`DEFAULT_REFRESH_WINDOW`]).
            window: TimeDelta,
            /// Lease length ([`DEFAULT_LEASE`]).
            lease: TimeDelta,
        ],
    }
}

impl<P: Ports> RefreshTokens<'_, P> {
    /// Refreshes every active tenant whose token expires within the window. One tenant's failure
    /// does not stop the others.
    ///
    /// # Errors
    /// Store failures while listing tenants; per-tenant failures are in the report.
    pub async fn run(&self) -> Result<RefreshReport> {
        let mut report = RefreshReport::default();
        let mut page = PageRequest::first(TENANT_PAGE);
        loop {
            let batch = self.tenants.list(&page).await?;
            for tenant in batch.items {
                if tenant.status == TenantStatus::ReauthorizationRequired {
                    // Catches up an alert that did not go out when the tenant was marked (a
                    // failed publish); an alerted incident is only read (R-OPS-1).
                    if let Err(e) = self.alert_reauthorization(&tenant, None).await {
                        tracing::warn!(tenant.id = %tenant.id, error.code = e.code(), "reauthorization alert not published; the next run retries");
                    }
                    continue;
                }
                if tenant.status != TenantStatus::Active || !self.due(tenant.token_expires_at) {
                    continue;
                }
                let result = match self.refresh_tenant(&tenant.id).await {
                    Ok(r) => r,
                    Err(e) => TenantRefresh::Failed { code: e.code() },
                };
                report.tenants.push((tenant.id, result));
            }
            match batch.next {
                Some(next) => page = PageRequest::after(next, TENANT_PAGE),
                None => break,
            }
        }
        Ok(report)
    }

    fn due(&self, expires_at: Option<DateTime<Utc>>) -> bool {
        // An active tenant without a known expiry is checked against the vault.
        expires_at.is_none_or(|at| at - self.clock.now() <= self.window)
    }

    /// Refreshes one tenant under its lease if its tokens (as the vault says) are due.
    ///
    /// # Errors
    /// Store and vault failures, and retryable platform failures (throttling, outage).
    pub async fn refresh_tenant(&self, id: &TenantId) -> Result<TenantRefresh> {
        let now = self.clock.now();
        let name = lease_name(id);
        if !self
            .leases
            .acquire(&name, &self.holder, now, now + self.lease)
            .await?
        {
            return Ok(TenantRefresh::Busy);
        }
        let result = self.refresh_leased(id).await;
        // The lease expires on its own if this fails; the result is what matters.
        drop(self.leases.release(&name, &self.holder).await);
        result
    }

    async fn refresh_leased(&self, id: &TenantId) -> Result<TenantRefresh> {
        let tenant = super::stored_tenant(self.tenants, id).await?;
        if tenant.status != TenantStatus::Active {
            return Ok(TenantRefresh::NotDue);
        }
        let Some(current) = self.vault.get(id).await? else {
            return self.require_reauthorization(&tenant, None, None).await;
        };
        // Read after taking the lease: a run that finished just before us already refreshed.
        if !self.due(Some(current.expires_at)) {
            return Ok(TenantRefresh::NotDue);
        }
        // The tenant's own authority once known (R-CONN-7).
        let authority = tenant
            .m365_tenant_id
            .clone()
            .or_else(|| current.m365_tenant_id.clone());
        match self
            .identity
            .refresh(&current.refresh_token, authority.as_ref())
            .await
        {
            Ok(tokens) => self.save(id, tokens, authority).await,
            Err(Error::ReauthorizationRequired { aadsts }) => {
                self.require_reauthorization(&tenant, Some(&current.refresh_token), Some(aadsts))
                    .await
            }
            Err(Error::ClientConfiguration { error, aadsts }) => {
                Ok(self.configuration_error(&tenant, error, aadsts).await)
            }
            Err(e) if e.is_retryable() => Ok(TenantRefresh::Failed { code: e.code() }),
            Err(e) => Err(e),
        }
    }

    /// The platform refused our OAuth client (R-OPS-1): the first run of the incident records a
    /// `tenant_configuration_error` event (its id derived from the incident, so a retry records
    /// none twice) and alerts; every run reports it. A failed event or alert is logged and retried
    /// by a later run once the incident's claim ran out; the report says `ConfigurationError`
    /// either way, so the invocation fails.
    async fn configuration_error(
        &self,
        tenant: &Tenant,
        error: String,
        aadsts: Option<u32>,
    ) -> TenantRefresh {
        tracing::error!(tenant.id = %tenant.id, oauth.error = %error, aadsts = ?aadsts, error.retryable = false, "the identity platform refused the OAuth client: configuration error");
        let details = serde_json::json!({ "error": error, "aadsts": aadsts });
        let alerted = async {
            let Some(incident) = self
                .alerting
                .open(&tenant.id, AlertKind::ConfigurationError)
                .await?
            else {
                return Ok(());
            };
            self.events
                .append(&Event {
                    id: EventId::derive(&[
                        tenant.id.as_str(),
                        EventKind::TenantConfigurationError.as_str(),
                        &incident.opened_at.timestamp_millis().to_string(),
                    ]),
                    kind: EventKind::TenantConfigurationError,
                    at: incident.opened_at,
                    user_id: None,
                    tenant_id: Some(tenant.id.clone()),
                    operation_id: None,
                    reason: Some(error.clone()),
                    details: Some(details.clone()),
                    actor: Some(self.actor.clone()),
                })
                .await?;
            let code = aadsts.map_or_else(String::new, |c| format!(" (AADSTS{c})"));
            self.alerting
                .publish(
                    &incident,
                    format!(
                        "Microsoft refused the OAuth client while refreshing the tokens of tenant \"{}\": {error}{code}. The client secret in the OAuthClientSecret secret is probably wrong or expired; replace it.",
                        tenant.name
                    ),
                    details,
                )
                .await
        };
        if let Err(e) = alerted.await {
            tracing::warn!(tenant.id = %tenant.id, error.code = e.code(), "configuration error not recorded or alerted; a later run retries");
        }
        TenantRefresh::ConfigurationError { error, aadsts }
    }

    /// Alerts `reauthorization_required` for `tenant` once per incident (R-OPS-1).
    async fn alert_reauthorization(&self, tenant: &Tenant, aadsts: Option<u32>) -> Result<Raised> {
        let why = match aadsts {
            Some(code) => format!("Microsoft refused its refresh token (AADSTS{code})"),
            None => "it has no usable tokens".to_owned(),
        };
        self.alerting
            .raise(
                &tenant.id,
                AlertKind::ReauthorizationRequired,
                format!(
                    "Tenant \"{}\" needs to be reconnected by an admin: {why}. Its work is paused until then.",
                    tenant.name
                ),
                serde_json::json!({ "aadsts": aadsts }),
            )
            .await
    }

    /// Closes the tenant's `configuration_error` and `reauthorization_required` incidents after
    /// a refresh that worked (R-OPS-1); a store failure only delays that to the next refresh.
    async fn resolve_incidents(&self, id: &TenantId) {
        for kind in [
            AlertKind::ConfigurationError,
            AlertKind::ReauthorizationRequired,
        ] {
            if let Err(e) = self.alerting.resolve(kind, id).await {
                tracing::warn!(tenant.id = %id, alert.kind = kind.as_str(), error.code = e.code(), "alert incident not resolved; the next refresh retries");
            }
        }
    }

    /// Saves rotated tokens (R-CONN-4) — update only: a deauthorization that deleted the secret
    /// meanwhile stands (R-CONN-8) — then the new expiry on a tenant that is still `active`.
    async fn save(
        &self,
        id: &TenantId,
        tokens: TenantTokens,
        authority: Option<crate::model::M365TenantId>,
    ) -> Result<TenantRefresh> {
        let tokens = TenantTokens {
            m365_tenant_id: tokens.m365_tenant_id.or(authority),
            ..tokens
        };
        match self
            .vault
            .update(id, &tokens, &RequestToken::generate())
            .await
        {
            Ok(()) => {}
            Err(Error::NotFound { .. }) => return Ok(TenantRefresh::Superseded),
            Err(e) => return Err(e),
        }
        let expires_at = tokens.expires_at;
        transition_tenant(self.tenants, id, |t| {
            if t.status != TenantStatus::Active {
                return Ok::<_, Error>(false);
            }
            t.token_expires_at = Some(expires_at);
            Ok(true)
        })
        .await?;
        self.resolve_incidents(id).await;
        Ok(TenantRefresh::Refreshed { expires_at })
    }

    /// Marks the tenant `reauthorization_required` and records the event (R-CONN-4) — only while
    /// it is `active` and the vault still holds `refused` (`None`: still holds no tokens). The vault
    /// is re-read after the tenant and before the version-checked write, so a reconnect, which
    /// stores its tokens before activating, is never undone, nor is a deauthorization (R-CONN-8).
    /// Its queued work is parked by the retry worker, which checks the tenant's status; nothing is
    /// failed.
    async fn require_reauthorization(
        &self,
        tenant: &Tenant,
        refused: Option<&SecretString>,
        aadsts: Option<u32>,
    ) -> Result<TenantRefresh> {
        let mut marked = None;
        for _ in 0..MAX_MARK_ATTEMPTS {
            let current = self
                .tenants
                .get(&tenant.id)
                .await?
                .ok_or_else(|| Error::not_found(Entity::Tenant, &tenant.id))?;
            if current.status != TenantStatus::Active {
                return Ok(TenantRefresh::Superseded);
            }
            let held = self.vault.get(&tenant.id).await?;
            let unchanged = match (refused, &held) {
                (Some(refused), Some(held)) => {
                    held.refresh_token.expose_secret() == refused.expose_secret()
                }
                (None, None) => true,
                _ => false,
            };
            if !unchanged {
                return Ok(TenantRefresh::Superseded);
            }
            let mut next = current.clone();
            next.status = TenantStatus::ReauthorizationRequired;
            match self.tenants.update(&next, current.version).await {
                Ok(_) => {
                    marked = Some(current.version);
                    break;
                }
                Err(e) if e.is_conflict("stale_version") => {}
                Err(e) => return Err(e),
            }
        }
        let Some(marked_from) = marked else {
            return Err(Error::stale(Entity::Tenant, tenant.version));
        };
        self.events
            .append(&Event {
                actor: Some(self.actor.clone()),
                // One per marking: the version-checked write from `marked_from` happens once.
                id: EventId::derive(&[
                    tenant.id.as_str(),
                    EventKind::TenantReauthorizationRequired.as_str(),
                    &marked_from.to_string(),
                ]),
                kind: EventKind::TenantReauthorizationRequired,
                at: self.clock.now(),
                user_id: None,
                tenant_id: Some(tenant.id.clone()),
                operation_id: None,
                reason: Some(match aadsts {
                    Some(code) => format!("AADSTS{code}"),
                    None => "no_tokens".to_owned(),
                }),
                details: aadsts.map(|code| serde_json::json!({ "aadsts": code })),
            })
            .await?;
        // A failed publish is caught up by the next run (it alerts tenants found marked).
        if let Err(e) = self.alert_reauthorization(tenant, aadsts).await {
            tracing::warn!(tenant.id = %tenant.id, error.code = e.code(), "reauthorization alert not published; the next run retries");
        }
        Ok(match aadsts {
            Some(aadsts) => TenantRefresh::ReauthorizationRequired { aadsts },
            None => TenantRefresh::NoTokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::model::{BindingState, TenantTokens};
    use crate::ports::{AlertIncidents, TokenVault};
    use crate::testing::{FakeIdentityPlatform, FakeLeases, FakeTokenVault};
    use crate::usecase::Outcome;
    use crate::usecase::connect::update_tenant;
    use crate::usecase::retry::RetryOutcome;
    use crate::usecase::testkit::{World, throttled};

    /// The testkit's world (one active tenant, its bindings and retry queue) plus tokens.
    struct R {
        w: World,
        vault: FakeTokenVault,
        identity: FakeIdentityPlatform,
        leases: FakeLeases,
    }

    impl R {
        /// The tenant's access token expires in `lifetime`.
        async fn new(lifetime: TimeDelta) -> Self {
            let w = World::new().await;
            let identity = FakeIdentityPlatform::new(w.clock.clone());
            let vault = FakeTokenVault::new();
            let tokens = identity.issue_tokens(lifetime);
            vault
                .create(&w.tenant.id, &tokens, &RequestToken::generate())
                .await
                .unwrap();
            update_tenant(&w.tenants, &w.tenant.id, |t| {
                t.token_expires_at = Some(tokens.expires_at);
            })
            .await
            .unwrap();
            Self {
                w,
                vault,
                identity,
                leases: FakeLeases::new(),
            }
        }

        fn job(&self, holder: &str) -> RefreshTokens<'_, World> {
            RefreshTokens {
                actor: &self.w.actor,
                tenants: &self.w.tenants,
                vault: &self.vault,
                identity: &self.identity,
                leases: &self.leases,
                events: &self.w.events,
                clock: &self.w.clock,
                alerting: Alerting::new(&self.w),
                holder: holder.to_owned(),
                window: DEFAULT_REFRESH_WINDOW,
                lease: DEFAULT_LEASE,
            }
        }

        async fn tokens(&self) -> TenantTokens {
            self.vault.get(&self.w.tenant.id).await.unwrap().unwrap()
        }

        async fn tenant(&self) -> Tenant {
            self.w
                .tenants
                .get(&self.w.tenant.id)
                .await
                .unwrap()
                .unwrap()
        }
    }

    #[tokio::test]
    async fn a_token_expiring_within_15_minutes_is_refreshed_and_the_rotated_token_saved() {
        // R-CONN-4
        let r = R::new(TimeDelta::minutes(14)).await;
        let old = r.tokens().await;
        let report = r.job("run-1").run().await.unwrap();
        let new = r.tokens().await;
        assert_eq!(
            report.tenants,
            vec![(
                r.w.tenant.id.clone(),
                TenantRefresh::Refreshed {
                    expires_at: new.expires_at
                }
            )]
        );
        assert_eq!(r.identity.refreshes(), 1);
        assert_ne!(
            new.refresh_token.expose_secret(),
            old.refresh_token.expose_secret(),
            "the rotated refresh token is the current one"
        );
        assert_eq!(new.expires_at, r.w.now() + TimeDelta::hours(1));
        let previous = r.vault.get_previous(&r.w.tenant.id).await.unwrap().unwrap();
        assert_eq!(
            previous.refresh_token.expose_secret(),
            old.refresh_token.expose_secret()
        );
        assert_eq!(r.tenant().await.token_expires_at, Some(new.expires_at));
        assert!(
            r.leases.holder(&lease_name(&r.w.tenant.id)).is_none(),
            "lease released"
        );
    }

    #[tokio::test]
    async fn a_token_expiring_later_or_a_tenant_not_active_is_left_alone() {
        // R-CONN-4
        let r = R::new(TimeDelta::minutes(16)).await;
        assert!(r.job("run-1").run().await.unwrap().tenants.is_empty());
        let r = R::new(TimeDelta::minutes(5)).await;
        r.w.set_tenant_status(TenantStatus::Deauthorized).await;
        assert!(r.job("run-1").run().await.unwrap().tenants.is_empty());
        assert_eq!(r.identity.refreshes(), 0);
    }

    #[tokio::test]
    async fn concurrent_refreshes_of_one_tenant_make_exactly_one_token_call() {
        // R-CONN-4 (single flight per tenant)
        let r = R::new(TimeDelta::minutes(5)).await;
        let (a, b) = (r.job("run-a"), r.job("run-b"));
        let (ra, rb) = futures_join(a.run(), b.run()).await;
        let mut results = vec![
            ra.unwrap().tenants[0].1.clone(),
            rb.unwrap().tenants[0].1.clone(),
        ];
        results.sort_by_key(|r| matches!(r, TenantRefresh::Busy));
        assert!(
            matches!(results[0], TenantRefresh::Refreshed { .. }),
            "{results:?}"
        );
        assert_eq!(results[1], TenantRefresh::Busy);
        assert_eq!(r.identity.refreshes(), 1);
        // A run that took the lease just after the refresh finds the tokens fresh.
        assert_eq!(
            r.job("run-c").refresh_tenant(&r.w.tenant.id).await.unwrap(),
            TenantRefresh::NotDue
        );
        assert_eq!(r.identity.refreshes(), 1);
    }

    #[tokio::test]
    async fn an_expired_lease_of_a_crashed_run_is_taken_over() {
        // R-CONN-4 (no tenant stays stuck behind a dead run)
        let r = R::new(TimeDelta::minutes(5)).await;
        let now = r.w.now();
        r.leases
            .acquire(
                &lease_name(&r.w.tenant.id),
                "crashed",
                now,
                now + DEFAULT_LEASE,
            )
            .await
            .unwrap();
        assert_eq!(
            r.job("run-1").refresh_tenant(&r.w.tenant.id).await.unwrap(),
            TenantRefresh::Busy
        );
        r.w.clock.advance(DEFAULT_LEASE);
        assert!(matches!(
            r.job("run-1").refresh_tenant(&r.w.tenant.id).await.unwrap(),
            TenantRefresh::Refreshed { .. }
        ));
    }

    #[tokio::test]
    async fn each_invalid_grant_code_marks_the_tenant_reauthorization_required_with_an_event() {
        // R-CONN-4 (AADSTS700082 idle expiry, 50173 revoked, 65001 consent removed, 50057 disabled)
        for aadsts in [700_082, 50_173, 65_001, 50_057] {
            let r = R::new(TimeDelta::minutes(5)).await;
            r.identity
                .fail_next_call(Error::ReauthorizationRequired { aadsts });
            let report = r.job("run-1").run().await.unwrap();
            assert_eq!(
                report.tenants[0].1,
                TenantRefresh::ReauthorizationRequired { aadsts }
            );
            assert_eq!(
                r.tenant().await.status,
                TenantStatus::ReauthorizationRequired
            );
            let events: Vec<_> =
                r.w.events
                    .all()
                    .into_iter()
                    .filter(|e| e.kind == EventKind::TenantReauthorizationRequired)
                    .collect();
            assert_eq!(events.len(), 1);
            assert_eq!(
                events[0].reason.as_deref(),
                Some(format!("AADSTS{aadsts}").as_str())
            );
            assert_eq!(events[0].tenant_id.as_ref(), Some(&r.w.tenant.id));
            // Deterministic (issue 13): derived from the version the marking wrote over.
            assert_eq!(
                events[0].id,
                crate::model::EventId::derive(&[
                    r.w.tenant.id.as_str(),
                    "tenant_reauthorization_required",
                    &(r.tenant().await.version - 1).to_string()
                ])
            );
            // The next run leaves it alone: an admin must reconnect.
            assert!(r.job("run-2").run().await.unwrap().tenants.is_empty());
        }
    }

    #[tokio::test]
    async fn a_revoked_refresh_token_parks_the_tenants_queued_work_without_failing_it() {
        // R-CONN-4 (work paused, nothing failed or lost)
        let r = R::new(TimeDelta::minutes(5)).await;
        r.w.user("adele").await;
        r.w.directory.fail_next_call(throttled());
        let Outcome::Deferred { retry, .. } = r.w.bind("adele").await else {
            panic!("deferred")
        };
        let _ = r.w.queue.drain();
        r.identity.revoke(&r.tokens().await.refresh_token);
        let report = r.job("run-1").run().await.unwrap();
        assert!(matches!(
            report.tenants[0].1,
            TenantRefresh::ReauthorizationRequired { .. }
        ));
        r.w.clock.set(retry.not_before);
        let outcome = r.w.dispatcher().dispatch(&retry).await.unwrap();
        assert!(
            matches!(outcome, RetryOutcome::Parked { .. }),
            "{outcome:?}"
        );
        assert_eq!(r.w.binding("adele").await.state, BindingState::Pending);
        assert_eq!(r.w.queue.snapshot().len(), 1, "still queued");
        assert!(r.w.dead_letters.is_empty());
    }

    #[tokio::test]
    async fn a_throttled_refresh_changes_nothing_and_the_next_run_retries() {
        // R-CONN-4
        let r = R::new(TimeDelta::minutes(5)).await;
        let old = r.tokens().await;
        r.identity.fail_next_call(throttled());
        let report = r.job("run-1").run().await.unwrap();
        assert_eq!(
            report.tenants[0].1,
            TenantRefresh::Failed { code: "throttled" }
        );
        assert_eq!(r.tenant().await.status, TenantStatus::Active);
        assert_eq!(
            r.tokens().await.refresh_token.expose_secret(),
            old.refresh_token.expose_secret()
        );
        let report = r.job("run-2").run().await.unwrap();
        assert!(matches!(
            report.tenants[0].1,
            TenantRefresh::Refreshed { .. }
        ));
    }

    #[tokio::test]
    async fn an_active_tenant_without_tokens_needs_reauthorization() {
        // R-CONN-4
        let r = R::new(TimeDelta::minutes(5)).await;
        r.vault.delete(&r.w.tenant.id).await.unwrap();
        let report = r.job("run-1").run().await.unwrap();
        assert_eq!(report.tenants[0].1, TenantRefresh::NoTokens);
        assert_eq!(
            r.tenant().await.status,
            TenantStatus::ReauthorizationRequired
        );
        assert_eq!(r.identity.refreshes(), 0);
    }

    fn client_refused(error: &str, aadsts: u32) -> Error {
        Error::ClientConfiguration {
            error: error.to_owned(),
            aadsts: Some(aadsts),
        }
    }

    #[tokio::test]
    async fn a_refused_refresh_token_alerts_reauthorization_once_however_many_runs_follow() {
        // R-OPS-1, R-CONN-4
        let r = R::new(TimeDelta::minutes(5)).await;
        r.identity
            .fail_next_call(Error::ReauthorizationRequired { aadsts: 700_082 });
        r.job("run-1").run().await.unwrap();
        r.w.clock.advance(TimeDelta::minutes(5));
        r.job("run-2").run().await.unwrap();
        r.w.clock.advance(TimeDelta::hours(1));
        r.job("run-3").run().await.unwrap();
        let alerts = r.w.alerts.of(AlertKind::ReauthorizationRequired);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].tenant_id, r.w.tenant.id);
        assert_eq!(alerts[0].details["aadsts"], 700_082);
        assert!(alerts[0].message.contains("AADSTS700082"));
    }

    #[tokio::test]
    async fn a_reauthorization_alert_that_failed_to_publish_goes_out_with_a_later_run() {
        // R-OPS-1 (no alert lost to a failed publish; still only one)
        let r = R::new(TimeDelta::minutes(5)).await;
        r.identity
            .fail_next_call(Error::ReauthorizationRequired { aadsts: 50_173 });
        r.w.alerts.fail_next(throttled());
        let report = r.job("run-1").run().await.unwrap();
        assert_eq!(
            report.tenants[0].1,
            TenantRefresh::ReauthorizationRequired { aadsts: 50_173 },
            "the marking stands"
        );
        assert!(r.w.alerts.published().is_empty());
        r.w.clock.advance(super::super::alerts::ALERT_CLAIM);
        r.job("run-2").run().await.unwrap();
        r.w.clock.advance(TimeDelta::minutes(5));
        r.job("run-3").run().await.unwrap();
        assert_eq!(r.w.alerts.of(AlertKind::ReauthorizationRequired).len(), 1);
    }

    #[tokio::test]
    async fn a_refused_client_is_a_configuration_error_recorded_and_alerted_once_per_incident() {
        // R-OPS-1 (graph-spec §1.5: invalid_client AADSTS7000215 wrong secret, 7000222 expired
        // secret; unauthorized_client AADSTS700016)
        for (error, aadsts) in [
            ("invalid_client", 7_000_215),
            ("invalid_client", 7_000_222),
            ("unauthorized_client", 700_016),
        ] {
            let r = R::new(TimeDelta::minutes(5)).await;
            r.identity.fail_next_call(client_refused(error, aadsts));
            let report = r.job("run-1").run().await.unwrap();
            let expected = TenantRefresh::ConfigurationError {
                error: error.to_owned(),
                aadsts: Some(aadsts),
            };
            assert_eq!(report.tenants[0].1, expected);
            assert_eq!(
                r.tenant().await.status,
                TenantStatus::Active,
                "nothing of the tenant is wrong"
            );
            // The next run meets it again: reported again (the run fails again), but no second
            // event or alert.
            r.w.clock.advance(TimeDelta::minutes(5));
            r.identity.fail_next_call(client_refused(error, aadsts));
            let report = r.job("run-2").run().await.unwrap();
            assert_eq!(report.tenants[0].1, expected);
            let events = r.w.events_of(EventKind::TenantConfigurationError);
            assert_eq!(events.len(), 1, "{events:?}");
            assert_eq!(events[0].reason.as_deref(), Some(error));
            assert_eq!(events[0].details.as_ref().unwrap()["aadsts"], aadsts);
            let alerts = r.w.alerts.of(AlertKind::ConfigurationError);
            assert_eq!(alerts.len(), 1, "{alerts:?}");
            assert_eq!(alerts[0].details["error"], error);
            assert!(
                !alerts[0].message.contains("secret-"),
                "no secret in the alert"
            );
        }
    }

    #[tokio::test]
    async fn a_configuration_error_ends_with_a_working_refresh_and_a_recurrence_alerts_anew() {
        // R-OPS-1
        let r = R::new(TimeDelta::minutes(5)).await;
        r.identity
            .fail_next_call(client_refused("invalid_client", 7_000_215));
        r.job("run-1").run().await.unwrap();
        r.w.clock.advance(TimeDelta::minutes(5));
        let report = r.job("run-2").run().await.unwrap();
        assert!(matches!(
            report.tenants[0].1,
            TenantRefresh::Refreshed { .. }
        ));
        assert!(
            r.w.alert_incidents
                .get(&r.w.tenant.id, AlertKind::ConfigurationError)
                .await
                .unwrap()
                .is_none(),
            "resolved"
        );
        // Due again later, refused again: a new incident, a new event and alert.
        r.w.clock.advance(TimeDelta::minutes(50));
        r.identity
            .fail_next_call(client_refused("invalid_client", 7_000_222));
        let report = r.job("run-3").run().await.unwrap();
        assert!(matches!(
            report.tenants[0].1,
            TenantRefresh::ConfigurationError { .. }
        ));
        assert_eq!(r.w.alerts.of(AlertKind::ConfigurationError).len(), 2);
        assert_eq!(r.w.count_events(EventKind::TenantConfigurationError), 2);
    }

    /// Polls two futures together on one task (no extra dependency for `join!`).
    async fn futures_join<A: std::future::Future, B: std::future::Future>(
        a: A,
        b: B,
    ) -> (A::Output, B::Output) {
        let mut a = std::pin::pin!(a);
        let mut b = std::pin::pin!(b);
        let (mut ra, mut rb) = (None, None);
        std::future::poll_fn(|cx| {
            if ra.is_none()
                && let std::task::Poll::Ready(v) = a.as_mut().poll(cx)
            {
                ra = Some(v);
            }
            if rb.is_none()
                && let std::task::Poll::Ready(v) = b.as_mut().poll(cx)
            {
                rb = Some(v);
            }
            if ra.is_some() && rb.is_some() {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        (ra.unwrap(), rb.unwrap())
    }
}
