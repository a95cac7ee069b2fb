//! Connecting, reconnecting and deauthorizing an M365 tenant (DESIGN §3 `/tenants`, `/oauth/callback`):
//!
//! - [`StartConnection`]: a tenant in `pending_consent` and the admin's sign-in URL; the `state` and
//!   PKCE verifier are kept (with a TTL) so the callback can verify them (R-CONN-1, R-SAFE-3);
//! - [`CompleteConnection`]: the OAuth callback — verify `state`, redeem the code with the verifier,
//!   read `/organization` and `/domains` with the new access token itself ([`TenantProbe`]) and
//!   decide BEFORE anything is written (R-CONN-7): a tenant pinned to another Microsoft tenant, or
//!   without the expected verified domain, is refused (`tenant_mismatch`), an all-federated one too
//!   (R-CONN-3); then claim the domains all or none (R-CONN-2), pin and activate the tenant with a
//!   conditional write, and only then store the tokens (`tenant_connected`);
//! - [`Deauthorize`]: mark the tenant `deauthorized` and bump its consent epoch (voiding every
//!   sign-in under way, R-CONN-8), delete the tokens, every binding of the tenant `unselected`, no
//!   Graph call at all, `tenant_deauthorized` (R-CONN-5).
//!
//! Tenant status changes are conditional writes on what is stored right before the write (the
//! store's version check, re-read after a lost race), so a refresh, a reconnect and a
//! deauthorization never overwrite one another (R-CONN-8):
//! - the callback activates only if the tenant's consent epoch is still the sign-in's (no
//!   deauthorization since) and its pin is absent or the consenting tenant's; it writes the tenant
//!   record before the tokens, and re-reads the epoch after storing them: a deauthorization that
//!   landed in between wins and the tokens this consent stored are removed;
//! - a deauthorization always applies (the admin's last word) and voids later callbacks of older
//!   sign-ins; a refresh that loses against it finds the secret gone and cannot re-create it
//!   (`TokenVault::update` never creates);
//! - the token refresh marks `reauthorization_required` only an `active` tenant whose vault still
//!   holds the refused refresh token (see `token_refresh`), so it never undoes a reconnect.
//!
//! Once the Microsoft tenant id is known, every sign-in URL and code redemption for the tenant goes
//! to that tenant's own authority instead of `organizations` (R-CONN-7); the pin survives a
//! deauthorization (the bindings' M365 object ids belong to that tenant): connect another Microsoft
//! tenant as a new tenant.
//!
//! Any admin of the directory works with a connected tenant afterwards: nothing here is tied to the
//! admin who signed in (R-CONN-6).

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;

use crate::error::{Entity, Error, FieldProblem, InvalidInput, Result};
use crate::model::{
    BindingState, DomainName, EmailError, Event, EventId, EventKind, M365TenantId, PageRequest,
    RequestToken, Tenant, TenantId, TenantStatus, TenantTokens,
};
use crate::policy::routing::domains_to_claim;
use crate::ports::Ports;
use crate::ports::{
    BindingStore, Clock, ConsentedTenant, EventStore, Expect, IdentityPlatform, PendingConsent,
    PendingConsents, TenantProbe, TenantStore, TokenVault,
};
use secrecy::ExposeSecret;

/// How long an admin has to complete the sign-in (the code itself lives about 10 minutes,
/// graph-spec §1.2; the sign-in page may take longer).
pub const DEFAULT_CONSENT_TTL: TimeDelta = TimeDelta::minutes(30);

/// Longest tenant name accepted.
pub const MAX_TENANT_NAME: usize = 256;

/// How often a versioned write is re-read and retried after losing a race.
const MAX_WRITE_ATTEMPTS: u32 = 5;

/// Why a connection (or the callback) was refused. Input problems are 4xx (R-SAFE-1); `Engine`
/// carries store and platform failures and conflicts such as `domain_claimed`.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The callback's `state` is unknown, expired, already used or was tampered with (R-SAFE-3),
    /// or the tenant was deauthorized since the sign-in started (R-CONN-8).
    #[error(
        "the sign-in state is unknown, expired, already used or voided by a deauthorization; \
         start the connection again"
    )]
    InvalidState,
    /// The admin declined (or could not give) consent; the redirect's `error` is kept.
    #[error(
        "consent was not given ({error}); start the connection again as an admin of the tenant"
    )]
    ConsentDenied {
        /// The identity platform's `error` value (e.g. `access_denied`, `consent_required`).
        error: String,
    },
    /// The platform refused the code: a wrong PKCE verifier, or a reused or expired code.
    #[error("the authorization code was refused (AADSTS{aadsts}); start the connection again")]
    CodeRejected {
        /// The AADSTS code (501481 wrong verifier, 54005 reused code, …).
        aadsts: u32,
    },
    /// Every custom domain of the tenant is federated (R-CONN-3).
    #[error(
        "every custom domain of this Microsoft 365 tenant is federated: sign-in is run by another \
         identity provider, as in tenants bought through GoDaddy, so Microsoft does not let m365-sync \
         create users or set passwords there. GoDaddy-operated tenants cannot be managed; defederate \
         the tenant from GoDaddy (or add a managed domain) and connect again"
    )]
    FederatedTenant,
    /// The consent came from another Microsoft tenant than the one this tenant is pinned to
    /// (R-CONN-7); nothing was stored and the tenant's tokens, domains and status are as they were.
    #[error(
        "this sign-in belongs to the Microsoft 365 tenant {consented}, but this connection is \
         pinned to the Microsoft 365 tenant {pinned}; sign in as an admin of {pinned}, or connect \
         the other tenant as a new tenant"
    )]
    TenantMismatch {
        /// The Microsoft tenant the connection belongs to.
        pinned: M365TenantId,
        /// The Microsoft tenant whose admin consented.
        consented: M365TenantId,
    },
    /// The consenting Microsoft tenant has no verified domain equal to the tenant's
    /// `expectedDomain` (R-CONN-7); nothing was stored.
    #[error(
        "the Microsoft 365 tenant that consented ({consented}) has no verified domain {domain}; \
         sign in as an admin of the tenant that owns {domain}"
    )]
    ExpectedDomainMissing {
        /// The domain the admin said the tenant has.
        domain: DomainName,
        /// The Microsoft tenant whose admin consented.
        consented: M365TenantId,
    },
    /// A store, vault, Graph or identity failure, or a conflict such as a domain claimed by
    /// another tenant (`domain_claimed`, R-CONN-2).
    #[error(transparent)]
    Engine(#[from] Error),
}

impl ConnectError {
    /// Machine-readable code (R-SAFE-1).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidState => "invalid_state",
            Self::ConsentDenied { .. } => "consent_denied",
            Self::CodeRejected { .. } => "invalid_grant",
            Self::FederatedTenant => "federated_tenant_unsupported",
            Self::TenantMismatch { .. } | Self::ExpectedDomainMissing { .. } => "tenant_mismatch",
            Self::Engine(e) => e.code(),
        }
    }

    /// True when the caller's input (or the admin's answer) is at fault: a 4xx.
    #[must_use]
    pub fn is_client_error(&self) -> bool {
        match self {
            Self::Engine(e) => matches!(
                e,
                Error::Invalid(_) | Error::NotFound { .. } | Error::Conflict(_)
            ),
            _ => true,
        }
    }
}

/// A started connection: the tenant and the URL to send the admin to.
#[derive(Debug, Clone)]
pub struct ConnectionStart {
    /// The tenant (status `pending_consent` for a new one).
    pub tenant: Tenant,
    /// The identity platform's sign-in URL.
    pub authorize_url: String,
}

use_case! {
    /// Starts a connection (`POST /tenants`, R-CONN-1).
    pub struct StartConnection {
        ports: [tenants: Tenants, consents: Consents, identity: Identity, clock: Clock],
        extra: [
            /// How long the sign-in may take ([`DEFAULT_CONSENT_TTL`]).
            consent_ttl: TimeDelta,
        ],
    }
}

impl<P: Ports> StartConnection<'_, P> {
    /// Creates a tenant named `name` in `pending_consent` and returns the admin's sign-in URL.
    ///
    /// # Errors
    /// `Invalid(Field "name")` for an empty or too long name, `Invalid(Name "name")` for one
    /// holding a control or bidirectional-override character (R-SAFE-1); store or configuration
    /// failures.
    pub async fn start(&self, name: &str) -> Result<ConnectionStart> {
        self.start_expecting(name, None).await
    }

    /// Like [`StartConnection::start`], and the consenting Microsoft tenant must have the verified
    /// domain `expected_domain` (R-CONN-7: a consent from another tenant is refused with
    /// `tenant_mismatch`, nothing stored).
    ///
    /// # Errors
    /// `Invalid(Field "name")` for an empty or too long name; `Invalid(Email)` with code
    /// `invalid_domain` for an expected domain that is not a fully qualified DNS name; store or
    /// configuration failures. Nothing is written on bad input.
    pub async fn start_expecting(
        &self,
        name: &str,
        expected_domain: Option<&str>,
    ) -> Result<ConnectionStart> {
        let name = name.trim();
        if name.is_empty() {
            return Err(field("name", FieldProblem::Empty));
        }
        crate::policy::name::check_name("name", name)?;
        if name.chars().count() > MAX_TENANT_NAME {
            return Err(field(
                "name",
                FieldProblem::TooLong {
                    max: MAX_TENANT_NAME,
                },
            ));
        }
        let expected_domain = expected_domain.map(expected).transpose()?;
        let mut new = Tenant::pending(TenantId::generate(), name);
        new.expected_domain = expected_domain;
        let tenant = self.tenants.create(&new).await?;
        let authorize_url = self.sign_in(&tenant).await?;
        Ok(ConnectionStart {
            tenant,
            authorize_url,
        })
    }

    /// A new sign-in for an existing tenant: to reconnect after `reauthorization_required` or a
    /// deauthorization, or to finish an abandoned connection. Its bindings are not touched
    /// (R-CONN-5: reconnecting re-binds nobody).
    ///
    /// # Errors
    /// `NotFound` (tenant); store or configuration failures.
    pub async fn restart(&self, tenant_id: &TenantId) -> Result<ConnectionStart> {
        let tenant = self
            .tenants
            .get(tenant_id)
            .await?
            .ok_or_else(|| Error::not_found(Entity::Tenant, tenant_id))?;
        let authorize_url = self.sign_in(&tenant).await?;
        Ok(ConnectionStart {
            tenant,
            authorize_url,
        })
    }

    /// A sign-in at the tenant's own authority once it is pinned (R-CONN-7), recording the
    /// tenant's consent epoch (R-CONN-8).
    async fn sign_in(&self, tenant: &Tenant) -> Result<String> {
        let authority = tenant.m365_tenant_id.clone();
        let request = self.identity.authorization_request(authority.as_ref())?;
        self.consents
            .put(&PendingConsent {
                state: request.state,
                tenant_id: tenant.id.clone(),
                pkce_verifier: request.pkce_verifier,
                expires_at: self.clock.now() + self.consent_ttl,
                consent_epoch: tenant.consent_epoch,
                authority,
                requested_by: Some(self.actor.clone()),
            })
            .await?;
        Ok(request.url)
    }
}

/// What the identity platform sent back to `GET /oauth/callback`.
#[derive(Debug, Clone)]
pub enum Callback {
    /// Consent given: the code and the echoed state.
    Code {
        /// The authorization code (a secret: it buys tokens).
        code: SecretString,
        /// The echoed `state`.
        state: String,
    },
    /// The platform redirected with an error (`access_denied`, `consent_required`, …).
    Denied {
        /// The echoed `state`, if any.
        state: Option<String>,
        /// The `error` value.
        error: String,
    },
}

use_case! {
    /// Completes a connection (`GET /oauth/callback`, R-CONN-1..3, R-CONN-7, R-CONN-8).
    pub struct CompleteConnection {
        ports: [
            tenants: Tenants, consents: Consents, identity: Identity, vault: Vault,
            directory: Probe = probe, events: Events, clock: Clock
        ],
        built: [
            /// Closes the tenant's alert incidents once it is active again (R-OPS-1).
            alerting: super::alerts::Alerting<'a, P> = super::alerts::Alerting::new,
        ],
    }
}

impl<P: Ports> CompleteConnection<'_, P> {
    /// Verifies the callback and connects the tenant: pinned to its Microsoft tenant, `active`,
    /// every verified managed domain claimed, tokens in the vault, one `tenant_connected` event.
    ///
    /// Nothing is written before the decision (R-CONN-7): the code is exchanged and the new
    /// access token reads `/organization` and `/domains` first. A refused consent (mismatch,
    /// expected domain missing, federated, domain claimed elsewhere, consent denied, a sign-in
    /// voided by a deauthorization) leaves no token anywhere and the tenant's stored tokens,
    /// domains and status exactly as they were.
    ///
    /// # Errors
    /// [`ConnectError::InvalidState`], [`ConnectError::ConsentDenied`],
    /// [`ConnectError::CodeRejected`], [`ConnectError::TenantMismatch`],
    /// [`ConnectError::ExpectedDomainMissing`], [`ConnectError::FederatedTenant`],
    /// `domain_claimed` and other engine errors.
    pub async fn complete(&self, callback: Callback) -> Result<Tenant, ConnectError> {
        let now = self.clock.now();
        let (code, state) = match callback {
            Callback::Denied { state, error } => {
                if let Some(state) = state {
                    // The sign-in is over either way: its state must not be redeemable later.
                    self.consents.take(&state, now).await?;
                }
                return Err(ConnectError::ConsentDenied {
                    error: sanitize_error(&error),
                });
            }
            Callback::Code { code, state } => (code, state),
        };
        let pending = self
            .consents
            .take(&state, now)
            .await?
            .ok_or(ConnectError::InvalidState)?;
        let tenant = self
            .tenants
            .get(&pending.tenant_id)
            .await?
            .ok_or_else(|| Error::not_found(Entity::Tenant, &pending.tenant_id))?;
        // R-CONN-8: a deauthorization since the sign-in started voids it (not even a token call).
        if tenant.consent_epoch != pending.consent_epoch {
            return Err(ConnectError::InvalidState);
        }
        let tokens = self
            .identity
            .exchange_code(&code, &pending.pkce_verifier, pending.authority.as_ref())
            .await
            .map_err(|e| match e {
                Error::ReauthorizationRequired { aadsts } => ConnectError::CodeRejected { aadsts },
                other => ConnectError::Engine(other),
            })?;
        // R-CONN-7: which Microsoft tenant these tokens belong to, read with them alone; nothing
        // has been written yet, so a refusal below leaves nothing behind.
        let consented = self
            .directory
            .probe(&tenant.id, &tokens.access_token)
            .await?;
        check_consented(&tenant, &consented)?;
        let names =
            domains_to_claim(&consented.domains).map_err(|_| ConnectError::FederatedTenant)?;
        let tokens = TenantTokens {
            m365_tenant_id: Some(consented.m365_tenant_id.clone()),
            ..tokens
        };
        self.connect(&tenant, &pending, &consented, &names, &tokens, now)
            .await
    }

    async fn connect(
        &self,
        tenant: &Tenant,
        pending: &PendingConsent,
        consented: &ConsentedTenant,
        names: &[DomainName],
        tokens: &TenantTokens,
        now: DateTime<Utc>,
    ) -> Result<Tenant, ConnectError> {
        // All or nothing (R-CONN-2): a domain of another tenant refuses the whole claim.
        self.tenants.claim_domains(&tenant.id, names).await?;
        // The tenant record first, conditionally (R-CONN-8): pinned to the consenting tenant,
        // `active`, unless a deauthorization voided this sign-in or another consent pinned the
        // tenant to another Microsoft tenant meanwhile.
        let (before, connected) = match self.activate(&tenant.id, pending, consented, tokens).await
        {
            Ok(written) => written,
            Err(e) => {
                self.release_unheld(&tenant.id, names).await;
                return Err(e);
            }
        };
        // Only now the tokens: the tenant they are stored for is pinned to their tenant (R-CONN-7).
        if let Err(e) = self
            .vault
            .create(&tenant.id, tokens, &RequestToken::generate())
            .await
        {
            // Best effort: the record as it was (unless someone wrote since) and no new claim.
            drop(self.tenants.update(&before, connected.version).await);
            self.release_unheld(&tenant.id, names).await;
            return Err(e.into());
        }
        // A deauthorization that landed while the tokens were written wins (R-CONN-8): it bumped
        // the epoch after our activation; the tokens this consent stored must not outlive it.
        let now_stored = self
            .tenants
            .get(&tenant.id)
            .await?
            .ok_or_else(|| Error::not_found(Entity::Tenant, &tenant.id))?;
        if now_stored.consent_epoch != pending.consent_epoch {
            self.remove_if_current(&tenant.id, tokens).await;
            return Err(ConnectError::InvalidState);
        }
        let gone: Vec<DomainName> = before
            .domains
            .iter()
            .map(|d| d.name.clone())
            .filter(|n| !names.contains(n))
            .collect();
        if !gone.is_empty() {
            self.tenants.release_domains(&tenant.id, &gone).await?;
        }
        self.events
            .append(&Event {
                // The admin who started the connection (the callback itself is anonymous).
                actor: Some(
                    pending
                        .requested_by
                        .clone()
                        .unwrap_or_else(|| self.actor.clone()),
                ),
                // One per activation: the version of the tenant record this consent activated.
                id: EventId::derive(&[
                    connected.id.as_str(),
                    EventKind::TenantConnected.as_str(),
                    &connected.version.to_string(),
                ]),
                kind: EventKind::TenantConnected,
                at: now,
                user_id: None,
                tenant_id: Some(connected.id.clone()),
                operation_id: None,
                reason: None,
                details: Some(serde_json::json!({
                    "domains": connected.domains,
                    "m365TenantId": consented.m365_tenant_id,
                })),
            })
            .await?;
        // Active again with tokens the platform just issued to our client: a reauthorization or
        // client configuration incident is over (R-OPS-1); the next occurrence alerts again.
        for kind in [
            crate::model::AlertKind::ReauthorizationRequired,
            crate::model::AlertKind::ConfigurationError,
        ] {
            if let Err(e) = self.alerting.resolve(kind, &connected.id).await {
                tracing::warn!(tenant.id = %connected.id, alert.kind = kind.as_str(), error.code = e.code(), "alert incident not resolved");
            }
        }
        Ok(connected)
    }

    /// `active`, pinned, with the consented domains and the new expiry — if the stored tenant
    /// still accepts this consent (same epoch, no other pin). Returns the record before and after.
    async fn activate(
        &self,
        id: &TenantId,
        pending: &PendingConsent,
        consented: &ConsentedTenant,
        tokens: &TenantTokens,
    ) -> Result<(Tenant, Tenant), ConnectError> {
        let written = transition_tenant(self.tenants, id, |t| {
            if t.consent_epoch != pending.consent_epoch {
                return Err(ConnectError::InvalidState);
            }
            check_consented(t, consented)?;
            t.status = TenantStatus::Active;
            t.m365_tenant_id = Some(consented.m365_tenant_id.clone());
            t.domains.clone_from(&consented.domains);
            t.token_expires_at = Some(tokens.expires_at);
            Ok(true)
        })
        .await?;
        written.ok_or_else(|| ConnectError::Engine(Error::stale(Entity::Tenant, 0)))
    }

    /// After a refused or failed connect, releases those of `names` (just claimed) that the
    /// tenant, as stored now, does not hold: a tenant that is `active` or awaiting
    /// reauthorization keeps its recorded domains routed; any other holds none (best effort).
    async fn release_unheld(&self, id: &TenantId, names: &[DomainName]) {
        let Ok(current) = self.tenants.get(id).await else {
            return;
        };
        let keeps = |n: &DomainName| {
            current.as_ref().is_some_and(|t| {
                matches!(
                    t.status,
                    TenantStatus::Active | TenantStatus::ReauthorizationRequired
                ) && t.domain(n).is_some()
            })
        };
        let release: Vec<DomainName> = names.iter().filter(|n| !keeps(n)).cloned().collect();
        drop(self.tenants.release_domains(id, &release).await);
    }

    /// Deletes the tenant's tokens if they are still the ones `tokens` (this consent's).
    async fn remove_if_current(&self, id: &TenantId, tokens: &TenantTokens) {
        if let Ok(Some(current)) = self.vault.get(id).await
            && current.access_token.expose_secret() == tokens.access_token.expose_secret()
        {
            drop(self.vault.delete(id).await);
        }
    }
}

/// Refuses a consent of the wrong Microsoft tenant (R-CONN-7): the tenant is pinned to another
/// one, or (not pinned yet) the consenting tenant lacks the expected verified domain.
fn check_consented(tenant: &Tenant, consented: &ConsentedTenant) -> Result<(), ConnectError> {
    match (&tenant.m365_tenant_id, &tenant.expected_domain) {
        (Some(pinned), _) if *pinned != consented.m365_tenant_id => {
            Err(ConnectError::TenantMismatch {
                pinned: pinned.clone(),
                consented: consented.m365_tenant_id.clone(),
            })
        }
        (None, Some(domain)) if !consented.domains.iter().any(|d| d.name == *domain) => {
            Err(ConnectError::ExpectedDomainMissing {
                domain: domain.clone(),
                consented: consented.m365_tenant_id.clone(),
            })
        }
        _ => Ok(()),
    }
}

/// Validates an `expectedDomain` (R-SAFE-1: 400 `invalid_domain`).
fn expected(raw: &str) -> Result<DomainName> {
    let raw = raw.trim();
    DomainName::parse(raw).map_err(|e| {
        let e = match e {
            EmailError::EmptyDomain => EmailError::InvalidDomain {
                domain: raw.to_owned(),
            },
            other => other,
        };
        Error::Invalid(InvalidInput::Email(e))
    })
}

/// The result of a deauthorization.
#[derive(Debug, Clone)]
pub struct Deauthorized {
    /// The tenant, now `deauthorized`.
    pub tenant: Tenant,
    /// How many bindings became `unselected`.
    pub unselected: usize,
}

use_case! {
    /// Deauthorizes a tenant (`DELETE /tenants/{tenantId}`, R-CONN-5). It holds no `Directory`: it
    /// cannot write to M365, so every account stays as it is, enabled.
    pub struct Deauthorize {
        ports: [tenants: Tenants, vault: Vault, bindings: Bindings, events: Events, clock: Clock],
    }
}

/// Bindings read per page while unselecting.
const BINDING_PAGE: u32 = 100;

impl<P: Ports> Deauthorize<'_, P> {
    /// Marks the tenant `deauthorized` (so nothing routes to it) and bumps its consent epoch (so
    /// every sign-in under way is void, R-CONN-8), deletes the tokens, un-selects every binding
    /// (their queued operations are dropped as superseded), releases the domain claims (another
    /// connection may claim them) and records `tenant_deauthorized`. Running it again finishes an
    /// interrupted run.
    ///
    /// The status is written before the tokens are deleted: a callback that activated the tenant
    /// meanwhile sees the new epoch after storing its tokens and removes them, and one that comes
    /// later is refused; a refresh can only update an existing secret, so once the delete is done
    /// nothing brings the tokens back (R-CONN-8).
    ///
    /// # Errors
    /// `NotFound` (tenant); store failures.
    pub async fn deauthorize(&self, id: &TenantId) -> Result<Deauthorized> {
        let now = self.clock.now();
        // Applies whatever the current status: the admin's deauthorization is the last word.
        let tenant = update_tenant(self.tenants, id, |t| {
            t.status = TenantStatus::Deauthorized;
            t.token_expires_at = None;
            t.consent_epoch += 1;
        })
        .await?;
        self.vault.delete(id).await?;
        let mut listed = Vec::new();
        let mut page = PageRequest::first(BINDING_PAGE);
        loop {
            let batch = self.bindings.list_by_tenant(id, None, &page).await?;
            listed.extend(batch.items);
            match batch.next {
                Some(next) => page = PageRequest::after(next, BINDING_PAGE),
                None => break,
            }
        }
        let mut unselected = 0;
        for binding in listed {
            if self.unselect(id, binding).await? {
                unselected += 1;
            }
        }
        let names: Vec<DomainName> = tenant.domains.iter().map(|d| d.name.clone()).collect();
        self.tenants.release_domains(id, &names).await?;
        self.events
            .append(&Event {
                actor: Some(self.actor.clone()),
                // One per deauthorization: each bumps the consent epoch once.
                id: EventId::derive(&[
                    id.as_str(),
                    EventKind::TenantDeauthorized.as_str(),
                    &tenant.consent_epoch.to_string(),
                ]),
                kind: EventKind::TenantDeauthorized,
                at: now,
                user_id: None,
                tenant_id: Some(id.clone()),
                operation_id: None,
                reason: None,
                details: Some(serde_json::json!({ "unselected": unselected })),
            })
            .await?;
        Ok(Deauthorized { tenant, unselected })
    }

    /// Un-selects one binding (re-reading it after a lost race); false if there was nothing to do.
    async fn unselect(
        &self,
        tenant: &TenantId,
        mut binding: crate::model::Binding,
    ) -> Result<bool> {
        for _ in 0..MAX_WRITE_ATTEMPTS {
            // Re-read after a race, the user may have been bound elsewhere meanwhile.
            if binding.tenant_id != *tenant || binding.state == BindingState::Unselected {
                return Ok(false);
            }
            let version = binding.version;
            let mut next = binding.clone();
            next.state = BindingState::Unselected;
            next.pending_reason = None;
            // A queued bind or unbind of this binding is now superseded (dropped by the worker).
            next.in_flight = None;
            match self.bindings.put(&next, Expect::Version(version)).await {
                Ok(_) => return Ok(true),
                Err(e) if e.is_conflict("stale_version") => {
                    match self.bindings.get(&binding.user_id).await? {
                        Some(fresh) => binding = fresh,
                        None => return Ok(false),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::stale(Entity::Binding, binding.version))
    }
}

/// Applies `change` to the stored tenant `id`, re-reading it after a lost race.
pub(crate) async fn update_tenant(
    tenants: &impl TenantStore,
    id: &TenantId,
    change: impl Fn(&mut Tenant),
) -> Result<Tenant> {
    transition_tenant(tenants, id, |t| {
        change(t);
        Ok::<_, Error>(true)
    })
    .await?
    .map(|(_, written)| written)
    .ok_or_else(|| Error::stale(Entity::Tenant, 0))
}

/// A conditional tenant write (R-CONN-8): `change` sees the stored tenant and either changes it
/// (`Ok(true)`), leaves it (`Ok(false)`: the expected state is gone, nothing is written) or
/// refuses (`Err`). The write carries the version read, so `change` decides on exactly what is
/// stored at the moment of the write; a lost race re-reads and asks `change` again. Returns the
/// record before and after the write, or `None` when `change` left it.
///
/// # Errors
/// `change`'s refusal; `NotFound` (tenant); store failures; `stale_version` after
/// `MAX_WRITE_ATTEMPTS` lost races.
pub(crate) async fn transition_tenant<Err: From<Error>>(
    tenants: &impl TenantStore,
    id: &TenantId,
    change: impl Fn(&mut Tenant) -> std::result::Result<bool, Err>,
) -> std::result::Result<Option<(Tenant, Tenant)>, Err> {
    let mut last = Error::stale(Entity::Tenant, 0);
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let current = tenants
            .get(id)
            .await?
            .ok_or_else(|| Error::not_found(Entity::Tenant, id))?;
        let mut next = current.clone();
        if !change(&mut next)? {
            return Ok(None);
        }
        match tenants.update(&next, current.version).await {
            Ok(t) => return Ok(Some((current, t))),
            Err(e) if e.is_conflict("stale_version") => last = e,
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.into())
}

fn field(field: &'static str, problem: FieldProblem) -> Error {
    Error::Invalid(InvalidInput::Field { field, problem })
}

/// Keeps an `error` value from the redirect short and plain (it is echoed in our answer).
fn sanitize_error(error: &str) -> String {
    let clean: String = error
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    if clean.is_empty() {
        "unknown".to_owned()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DomainKind, Email, VerifiedDomain};
    use crate::policy::routing::{RoutingError, resolve_tenant};
    use crate::ports::{EventFilter, EventQuery};
    use crate::testing::{
        AADSTS_PKCE_MISMATCH, FakeBindings, FakeDirectory, FakeEvents, FakeIdentityPlatform,
        FakeLeases, FakePendingConsents, FakeTenants, FakeTokenVault, ManualClock,
    };
    use crate::usecase::Outcome;
    use crate::usecase::testkit::{World, throttled};
    use crate::usecase::token_refresh::{
        DEFAULT_LEASE, DEFAULT_REFRESH_WINDOW, RefreshTokens, TenantRefresh,
    };

    fn domain(name: &str, kind: DomainKind) -> VerifiedDomain {
        VerifiedDomain {
            name: DomainName::parse(name).unwrap(),
            kind,
        }
    }

    fn managed(name: &str) -> VerifiedDomain {
        domain(name, DomainKind::Managed)
    }

    fn federated(name: &str) -> VerifiedDomain {
        domain(name, DomainKind::Federated)
    }

    fn name(s: &str) -> DomainName {
        DomainName::parse(s).unwrap()
    }

    struct Conn {
        clock: ManualClock,
        tenants: FakeTenants,
        consents: FakePendingConsents,
        identity: FakeIdentityPlatform,
        vault: FakeTokenVault,
        directory: FakeDirectory,
        events: FakeEvents,
        bindings: FakeBindings,
        leases: FakeLeases,
        actor: crate::model::Actor,
        alerts: crate::testing::FakeAdminAlerts,
        alert_incidents: crate::testing::FakeAlertIncidents,
    }

    /// A sign-in under way: the tenant and the `state` the platform will echo.
    struct SignIn {
        tenant: TenantId,
        state: String,
    }

    impl Conn {
        fn new() -> Self {
            let clock = ManualClock::fixed();
            Self {
                identity: FakeIdentityPlatform::new(clock.clone()),
                directory: FakeDirectory::new(clock.clone(), TimeDelta::zero()),
                clock,
                tenants: FakeTenants::new(),
                consents: FakePendingConsents::new(),
                vault: FakeTokenVault::new(),
                events: FakeEvents::new(),
                bindings: FakeBindings::new(),
                leases: FakeLeases::new(),
                actor: crate::model::Actor::local(),
                alerts: crate::testing::FakeAdminAlerts::new(),
                alert_incidents: crate::testing::FakeAlertIncidents::new(),
            }
        }

        fn refresher(&self, holder: &str) -> RefreshTokens<'_, World> {
            RefreshTokens {
                actor: &self.actor,
                tenants: &self.tenants,
                vault: &self.vault,
                identity: &self.identity,
                leases: &self.leases,
                events: &self.events,
                clock: &self.clock,
                alerting: self.alerting(),
                holder: holder.to_owned(),
                window: DEFAULT_REFRESH_WINDOW,
                lease: DEFAULT_LEASE,
            }
        }

        /// Another Microsoft tenant with `domains` (a key of the fake directory that is none of
        /// our tenants), whose admin can sign in with [`Conn::callback_as`].
        fn other_microsoft_tenant(&self, domains: Vec<VerifiedDomain>) -> TenantId {
            let key = TenantId::generate();
            self.directory.add_tenant(&key, domains);
            key
        }

        /// The admin of the Microsoft tenant `home` consents on the sign-in's page.
        async fn callback_as(
            &self,
            sign_in: &SignIn,
            home: &TenantId,
        ) -> Result<Tenant, ConnectError> {
            let code = self.identity.consent_as(&sign_in.state, home).unwrap();
            self.completer()
                .complete(Callback::Code {
                    code,
                    state: sign_in.state.clone(),
                })
                .await
        }

        /// A new sign-in for an existing tenant (reconnect).
        async fn restart(&self, tenant: &TenantId) -> SignIn {
            let again = self.starter().restart(tenant).await.unwrap();
            SignIn {
                tenant: tenant.clone(),
                state: state_of(&again.authorize_url),
            }
        }

        /// The tenant's current tokens' access token (`None`: no tokens).
        async fn access_token(&self, tenant: &TenantId) -> Option<String> {
            self.vault
                .get(tenant)
                .await
                .unwrap()
                .map(|t| t.access_token.expose_secret().to_owned())
        }

        fn starter(&self) -> StartConnection<'_, World> {
            StartConnection {
                actor: &self.actor,
                tenants: &self.tenants,
                consents: &self.consents,
                identity: &self.identity,
                clock: &self.clock,
                consent_ttl: DEFAULT_CONSENT_TTL,
            }
        }

        fn completer(&self) -> CompleteConnection<'_, World> {
            CompleteConnection {
                actor: &self.actor,
                tenants: &self.tenants,
                consents: &self.consents,
                identity: &self.identity,
                vault: &self.vault,
                directory: &self.directory,
                events: &self.events,
                clock: &self.clock,
                alerting: self.alerting(),
            }
        }

        fn alerting(&self) -> crate::usecase::alerts::Alerting<'_, World> {
            crate::usecase::alerts::Alerting {
                actor: &self.actor,
                alerts: &self.alerts,
                incidents: &self.alert_incidents,
                clock: &self.clock,
            }
        }

        fn deauthorizer(&self) -> Deauthorize<'_, World> {
            Deauthorize {
                actor: &self.actor,
                tenants: &self.tenants,
                vault: &self.vault,
                bindings: &self.bindings,
                events: &self.events,
                clock: &self.clock,
            }
        }

        /// Starts a connection whose M365 tenant has `domains`.
        async fn sign_in(&self, domains: Vec<VerifiedDomain>) -> SignIn {
            let started = self.starter().start("Contoso").await.unwrap();
            self.directory.add_tenant(&started.tenant.id, domains);
            SignIn {
                tenant: started.tenant.id,
                state: state_of(&started.authorize_url),
            }
        }

        /// The admin consents and the browser comes back with the code.
        async fn callback(&self, sign_in: &SignIn) -> Result<Tenant, ConnectError> {
            let code = self.identity.consent(&sign_in.state).unwrap();
            self.completer()
                .complete(Callback::Code {
                    code,
                    state: sign_in.state.clone(),
                })
                .await
        }

        async fn tenant(&self, id: &TenantId) -> Tenant {
            self.tenants.get(id).await.unwrap().unwrap()
        }

        async fn owner(&self, domain: &str) -> Option<TenantId> {
            self.tenants.tenant_for_domain(&name(domain)).await.unwrap()
        }

        fn count(&self, kind: EventKind) -> usize {
            self.events.all().iter().filter(|e| e.kind == kind).count()
        }
    }

    fn state_of(url: &str) -> String {
        url.split("state=").nth(1).unwrap().to_owned()
    }

    #[tokio::test]
    async fn starting_a_connection_creates_a_pending_tenant_and_keeps_the_state_and_verifier() {
        // R-CONN-1, R-SAFE-3
        let c = Conn::new();
        let started = c.starter().start("  Contoso  ").await.unwrap();
        assert_eq!(started.tenant.status, TenantStatus::PendingConsent);
        assert_eq!(started.tenant.name, "Contoso");
        assert_eq!(c.tenant(&started.tenant.id).await, started.tenant);
        assert_eq!(c.consents.len(), 1);
        let kept = c
            .consents
            .take(&state_of(&started.authorize_url), c.clock.now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kept.tenant_id, started.tenant.id);
        assert_eq!(kept.expires_at, c.clock.now() + DEFAULT_CONSENT_TTL);
        assert!(
            !format!("{kept:?}").contains("verifier-"),
            "the verifier never prints"
        );
    }

    #[tokio::test]
    async fn a_tenant_needs_a_name_of_at_most_256_characters() {
        // R-SAFE-1
        let c = Conn::new();
        let e = c.starter().start("   ").await.unwrap_err();
        assert_eq!(e.code(), "invalid_field");
        let e = c.starter().start(&"x".repeat(257)).await.unwrap_err();
        assert_eq!(e.code(), "invalid_field");
        assert!(c.consents.is_empty());
    }

    #[tokio::test]
    async fn a_tenant_name_with_a_control_or_bidi_override_character_is_refused_and_nothing_is_written()
     {
        // R-SAFE-1
        let c = Conn::new();
        for name in [
            "Con\u{0}toso",
            "Contoso\u{1b}[2J",
            "Contoso\r\nFake: line",
            "\u{202E}osotnoC",
        ] {
            let e = c.starter().start(name).await.unwrap_err();
            assert_eq!(e.code(), "invalid_name", "{name:?}");
        }
        assert!(c.consents.is_empty());
        let listed = c.tenants.list(&PageRequest::first(10)).await.unwrap();
        assert!(listed.items.is_empty());
    }

    #[tokio::test]
    async fn the_connected_event_names_the_admin_who_started_the_connection_not_the_callback() {
        // R-AUD-1: the callback is public (anonymous); the event names who asked to connect.
        let mut c = Conn::new();
        let admin = "arn:aws:iam::123456789012:user/admin";
        c.actor = crate::model::Actor::principal(admin).unwrap();
        let s = c.sign_in(vec![managed("contoso.com")]).await;
        c.actor = crate::model::Actor::anonymous();
        c.callback(&s).await.unwrap();
        let connected: Vec<_> = c
            .events
            .all()
            .into_iter()
            .filter(|e| e.kind == EventKind::TenantConnected)
            .collect();
        assert_eq!(connected.len(), 1);
        assert_eq!(connected[0].actor.as_ref().map(|a| a.as_str()), Some(admin));
        c.deauthorizer().deauthorize(&s.tenant).await.unwrap();
        let gone: Vec<_> = c
            .events
            .all()
            .into_iter()
            .filter(|e| e.kind == EventKind::TenantDeauthorized)
            .collect();
        assert_eq!(
            gone[0].actor.as_ref().map(|a| a.as_str()),
            Some(crate::model::Actor::ANONYMOUS),
            "a deauthorization names its own caller"
        );
    }

    #[tokio::test]
    async fn the_callback_connects_a_managed_tenant_with_its_domains_tokens_and_one_event() {
        // R-CONN-1, R-CONN-2
        let c = Conn::new();
        let s = c
            .sign_in(vec![
                managed("contoso.onmicrosoft.com"),
                managed("contoso.com"),
            ])
            .await;
        assert_eq!(c.tenant(&s.tenant).await.m365_tenant_id, None);
        let tenant = c.callback(&s).await.unwrap();
        assert_eq!(tenant.status, TenantStatus::Active);
        assert_eq!(tenant.domains.len(), 2);
        assert!(tenant.m365_tenant_id.is_some(), "Microsoft's id is stored");
        assert_eq!(tenant.m365_tenant_id, c.directory.m365_tenant_id(&s.tenant));
        let tokens = c.vault.get(&s.tenant).await.unwrap().unwrap();
        assert_eq!(tenant.token_expires_at, Some(tokens.expires_at));
        assert_eq!(c.owner("contoso.com").await, Some(s.tenant.clone()));
        assert_eq!(
            c.owner("contoso.onmicrosoft.com").await,
            Some(s.tenant.clone())
        );
        assert_eq!(c.count(EventKind::TenantConnected), 1);
        let events = c
            .events
            .query(&EventQuery {
                filter: EventFilter::Tenant(s.tenant.clone()),
                since: None,
                page: PageRequest::first(10),
            })
            .await
            .unwrap();
        assert_eq!(events.items[0].kind, EventKind::TenantConnected);
        // Deterministic (issue 13): derived from the activation, so a replayed append is kept once.
        assert_eq!(
            events.items[0].id,
            EventId::derive(&[
                s.tenant.as_str(),
                "tenant_connected",
                &tenant.version.to_string()
            ])
        );
        assert!(c.consents.is_empty(), "the state is consumed");
    }

    #[tokio::test]
    async fn a_mixed_tenant_connects_but_its_federated_domains_do_not_route() {
        // R-CONN-3, R-CONN-2
        let c = Conn::new();
        let s = c
            .sign_in(vec![
                managed("contoso.onmicrosoft.com"),
                managed("contoso.com"),
                federated("sso.contoso.com"),
            ])
            .await;
        c.callback(&s).await.unwrap();
        let ok = resolve_tenant(&c.tenants, &Email::parse("a@contoso.com").unwrap()).await;
        assert_eq!(ok.unwrap().id, s.tenant);
        let refused = resolve_tenant(&c.tenants, &Email::parse("a@sso.contoso.com").unwrap())
            .await
            .unwrap_err();
        assert!(matches!(
            refused,
            Error::Routing(RoutingError::FederatedDomain { .. })
        ));
    }

    #[tokio::test]
    async fn an_all_federated_tenant_is_refused_with_the_godaddy_explanation_and_nothing_written() {
        // R-CONN-3
        let c = Conn::new();
        let s = c
            .sign_in(vec![
                managed("northwind.onmicrosoft.com"),
                federated("northwind.com"),
                federated("northwindtraders.com"),
            ])
            .await;
        let e = c.callback(&s).await.unwrap_err();
        assert_eq!(e.code(), "federated_tenant_unsupported");
        assert!(e.is_client_error());
        assert!(e.to_string().contains("GoDaddy"), "{e}");
        assert!(
            c.vault.get(&s.tenant).await.unwrap().is_none(),
            "no tokens kept"
        );
        assert_eq!(c.owner("northwind.com").await, None);
        assert_eq!(c.owner("northwind.onmicrosoft.com").await, None);
        assert_eq!(
            c.tenant(&s.tenant).await.status,
            TenantStatus::PendingConsent
        );
        assert!(c.events.all().is_empty());
    }

    #[tokio::test]
    async fn a_domain_claimed_by_another_tenant_refuses_the_whole_connection() {
        // R-CONN-2 (one tenant per domain, all or nothing)
        let c = Conn::new();
        let first = c.sign_in(vec![managed("fabrikam.com")]).await;
        c.callback(&first).await.unwrap();
        let second = c
            .sign_in(vec![managed("contoso.com"), managed("fabrikam.com")])
            .await;
        let e = c.callback(&second).await.unwrap_err();
        assert_eq!(e.code(), "domain_claimed");
        assert!(e.is_client_error());
        assert!(e.to_string().contains("fabrikam.com"), "{e}");
        assert_eq!(c.owner("contoso.com").await, None, "nothing half-claimed");
        assert_eq!(c.owner("fabrikam.com").await, Some(first.tenant));
        assert!(c.vault.get(&second.tenant).await.unwrap().is_none());
        assert_eq!(
            c.tenant(&second.tenant).await.status,
            TenantStatus::PendingConsent
        );
        assert_eq!(c.count(EventKind::TenantConnected), 1);
    }

    #[tokio::test]
    async fn a_tampered_or_reused_state_is_refused_without_a_token_call() {
        // R-SAFE-3, R-CONN-1
        let c = Conn::new();
        let s = c.sign_in(vec![managed("contoso.com")]).await;
        let code = c.identity.consent(&s.state).unwrap();
        let tampered = c
            .completer()
            .complete(Callback::Code {
                code: code.clone(),
                state: format!("{}x", s.state),
            })
            .await
            .unwrap_err();
        assert!(matches!(tampered, ConnectError::InvalidState));
        assert_eq!(tampered.code(), "invalid_state");
        assert_eq!(c.identity.exchanges(), 0);
        c.completer()
            .complete(Callback::Code {
                code: code.clone(),
                state: s.state.clone(),
            })
            .await
            .unwrap();
        let replay = c
            .completer()
            .complete(Callback::Code {
                code,
                state: s.state.clone(),
            })
            .await
            .unwrap_err();
        assert!(matches!(replay, ConnectError::InvalidState));
        assert_eq!(c.identity.exchanges(), 1);
    }

    #[tokio::test]
    async fn an_expired_state_is_refused() {
        // R-SAFE-3
        let c = Conn::new();
        let s = c.sign_in(vec![managed("contoso.com")]).await;
        c.clock.advance(DEFAULT_CONSENT_TTL + TimeDelta::seconds(1));
        let e = c.callback(&s).await.unwrap_err();
        assert!(matches!(e, ConnectError::InvalidState));
        assert_eq!(c.identity.exchanges(), 0);
    }

    #[tokio::test]
    async fn a_code_presented_with_another_sign_ins_verifier_is_refused_by_pkce() {
        // R-SAFE-3 (PKCE: a code injected into another sign-in cannot be redeemed)
        let c = Conn::new();
        let victim = c.sign_in(vec![managed("contoso.com")]).await;
        let attacker = c.sign_in(vec![managed("fabrikam.com")]).await;
        let attackers_code = c.identity.consent(&attacker.state).unwrap();
        let e = c
            .completer()
            .complete(Callback::Code {
                code: attackers_code,
                state: victim.state.clone(),
            })
            .await
            .unwrap_err();
        assert!(
            matches!(e, ConnectError::CodeRejected { aadsts } if aadsts == AADSTS_PKCE_MISMATCH)
        );
        assert_eq!(e.code(), "invalid_grant");
        assert!(c.vault.get(&victim.tenant).await.unwrap().is_none());
        assert_eq!(
            c.tenant(&victim.tenant).await.status,
            TenantStatus::PendingConsent
        );
    }

    #[tokio::test]
    async fn a_denied_consent_is_reported_and_consumes_the_state() {
        // R-CONN-1, R-SAFE-1
        let c = Conn::new();
        let s = c.sign_in(vec![managed("contoso.com")]).await;
        let e = c
            .completer()
            .complete(Callback::Denied {
                state: Some(s.state.clone()),
                error: "access_denied".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), "consent_denied");
        assert!(e.to_string().contains("access_denied"));
        assert!(matches!(
            c.callback(&s).await.unwrap_err(),
            ConnectError::InvalidState
        ));
    }

    #[tokio::test]
    async fn a_token_endpoint_outage_at_callback_is_not_a_client_error() {
        // R-SAFE-1 (4xx only for bad input), R-CONN-1
        let c = Conn::new();
        let s = c.sign_in(vec![managed("contoso.com")]).await;
        c.identity.fail_next_call(throttled());
        let e = c.callback(&s).await.unwrap_err();
        assert_eq!(e.code(), "throttled");
        assert!(!e.is_client_error());
        assert!(c.vault.get(&s.tenant).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn many_tenants_connect_each_routing_its_own_domains() {
        // R-CONN-2, R-CONN-6 (any admin then works with them: routing needs no sign-in)
        let c = Conn::new();
        let a = c.sign_in(vec![managed("contoso.com")]).await;
        let b = c.sign_in(vec![managed("fabrikam.com")]).await;
        c.callback(&b).await.unwrap();
        c.callback(&a).await.unwrap();
        for (email, tenant) in [("x@contoso.com", &a.tenant), ("y@fabrikam.com", &b.tenant)] {
            let routed = resolve_tenant(&c.tenants, &Email::parse(email).unwrap())
                .await
                .unwrap();
            assert_eq!(&routed.id, tenant);
            assert_eq!(routed.status, TenantStatus::Active);
        }
    }

    async fn deauthorize_world() -> (World, FakeTokenVault, Vec<(String, Option<bool>)>) {
        let mut w = World::new().await;
        let vault = FakeTokenVault::new();
        let tokens = crate::model::TenantTokens {
            access_token: SecretString::from("at"),
            refresh_token: SecretString::from("rt"),
            expires_at: w.now() + TimeDelta::hours(1),
            m365_tenant_id: None,
        };
        vault
            .create(&w.tenant.id, &tokens, &RequestToken::generate())
            .await
            .unwrap();
        for id in ["adele", "alex", "megan", "lynne"] {
            w.user(id).await;
        }
        for id in ["adele", "alex", "megan"] {
            assert!(matches!(w.bind(id).await, Outcome::Done { .. }));
        }
        assert!(matches!(
            w.unbinder()
                .unbind(&crate::usecase::testkit::uid("megan"))
                .await
                .unwrap(),
            Outcome::Done { .. }
        ));
        w.directory.fail_next_call(throttled());
        assert!(matches!(w.bind("lynne").await, Outcome::Deferred { .. }));
        let mut accounts = Vec::new();
        for id in ["adele", "alex", "megan", "lynne"] {
            let b = w.binding(id).await;
            let enabled = b
                .m365_object_id
                .as_ref()
                .and_then(|o| w.directory.user(&w.tenant.id, o))
                .map(|u| u.account_enabled);
            accounts.push((id.to_owned(), enabled));
        }
        w.dead_letters.clear();
        (w, vault, accounts)
    }

    #[tokio::test]
    async fn deauthorizing_deletes_the_tokens_unselects_every_binding_and_touches_no_m365_account()
    {
        // R-CONN-5
        let (mut w, vault, accounts) = deauthorize_world().await;
        let calls = w.directory.calls();
        let done = Deauthorize::<World> {
            actor: &w.actor,
            tenants: &w.tenants,
            vault: &vault,
            bindings: &w.bindings,
            events: &w.events,
            clock: &w.clock,
        }
        .deauthorize(&w.tenant.id)
        .await
        .unwrap();
        assert_eq!(done.unselected, 4);
        assert_eq!(done.tenant.status, TenantStatus::Deauthorized);
        assert!(vault.get(&w.tenant.id).await.unwrap().is_none());
        assert_eq!(w.directory.calls(), calls, "no Graph call at all");
        for (id, enabled) in &accounts {
            let b = w.binding(id).await;
            assert_eq!(b.state, BindingState::Unselected, "{id}");
            assert!(b.in_flight.is_none());
            let now = b
                .m365_object_id
                .as_ref()
                .and_then(|o| w.directory.user(&w.tenant.id, o))
                .map(|u| u.account_enabled);
            assert_eq!(&now, enabled, "{id}'s account is as it was");
        }
        assert_eq!(accounts[0].1, Some(true), "bound accounts stay enabled");
        assert_eq!(w.count_events(EventKind::TenantDeauthorized), 1);
        assert_eq!(
            w.tenants
                .tenant_for_domain(&name("contoso.com"))
                .await
                .unwrap(),
            None,
            "the domains are free for another connection"
        );
        // The bind that was waiting on the retry queue is dropped, not run.
        let calls = w.directory.calls();
        w.drain().await;
        assert_eq!(w.directory.calls(), calls);
        assert_eq!(w.binding("lynne").await.state, BindingState::Unselected);
        assert!(w.dead_letters.is_empty());
    }

    #[tokio::test]
    async fn deauthorizing_twice_changes_nothing_more() {
        // R-CONN-5
        let (w, vault, _) = deauthorize_world().await;
        let deauth = Deauthorize::<World> {
            actor: &w.actor,
            tenants: &w.tenants,
            vault: &vault,
            bindings: &w.bindings,
            events: &w.events,
            clock: &w.clock,
        };
        deauth.deauthorize(&w.tenant.id).await.unwrap();
        let again = deauth.deauthorize(&w.tenant.id).await.unwrap();
        assert_eq!(again.unselected, 0);
        // Each deauthorization bumps the consent epoch once and records one event, its id
        // derived from that epoch (issue 13): the fake keeps one event per id.
        assert_eq!(w.count_events(EventKind::TenantDeauthorized), 2);
        assert!(w.events.all().iter().any(|e| e.id
            == EventId::derive(&[
                w.tenant.id.as_str(),
                "tenant_deauthorized",
                &again.tenant.consent_epoch.to_string()
            ])));
        let missing = deauth.deauthorize(&TenantId::generate()).await.unwrap_err();
        assert_eq!(missing.code(), "not_found");
    }

    #[tokio::test]
    async fn reconnecting_a_deauthorized_tenant_rebinds_nobody() {
        // R-CONN-5
        let c = Conn::new();
        let s = c.sign_in(vec![managed("contoso.com")]).await;
        c.callback(&s).await.unwrap();
        let mut b = crate::model::Binding::pending(
            crate::usecase::testkit::uid("adele"),
            s.tenant.clone(),
            "x",
        );
        b.state = BindingState::Provisioned;
        b.pending_reason = None;
        c.bindings.put(&b, Expect::Absent).await.unwrap();
        let d = c.deauthorizer().deauthorize(&s.tenant).await.unwrap();
        assert_eq!(d.unselected, 1);
        let again = c.starter().restart(&s.tenant).await.unwrap();
        let s2 = SignIn {
            tenant: s.tenant.clone(),
            state: state_of(&again.authorize_url),
        };
        let t = c.callback(&s2).await.unwrap();
        assert_eq!(t.status, TenantStatus::Active);
        assert_eq!(c.owner("contoso.com").await, Some(s.tenant.clone()));
        let b = c
            .bindings
            .get(&crate::usecase::testkit::uid("adele"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.state, BindingState::Unselected);
        assert_eq!(c.count(EventKind::TenantConnected), 2);
    }

    #[tokio::test]
    async fn a_reconnect_ends_the_reauthorization_incident_so_a_recurrence_alerts_again() {
        // R-OPS-1 (an incident stays open until the tenant is active again after a reconnect)
        use crate::model::AlertKind;
        use crate::ports::AlertIncidents;
        let c = Conn::new();
        let s = c.sign_in(vec![managed("contoso.com")]).await;
        c.callback(&s).await.unwrap();
        update_tenant(&c.tenants, &s.tenant, |t| {
            t.status = TenantStatus::ReauthorizationRequired;
        })
        .await
        .unwrap();
        let raised = c
            .alerting()
            .raise(
                &s.tenant,
                AlertKind::ReauthorizationRequired,
                "reconnect",
                serde_json::json!({}),
            )
            .await
            .unwrap();
        assert!(matches!(
            raised,
            crate::usecase::alerts::Raised::Published(_)
        ));
        let again = c.starter().restart(&s.tenant).await.unwrap();
        c.callback(&SignIn {
            tenant: s.tenant.clone(),
            state: state_of(&again.authorize_url),
        })
        .await
        .unwrap();
        assert_eq!(
            c.alert_incidents
                .get(&s.tenant, AlertKind::ReauthorizationRequired)
                .await
                .unwrap(),
            None,
            "resolved by the reconnect"
        );
        let recurred = c
            .alerting()
            .raise(
                &s.tenant,
                AlertKind::ReauthorizationRequired,
                "reconnect",
                serde_json::json!({}),
            )
            .await
            .unwrap();
        assert!(matches!(
            recurred,
            crate::usecase::alerts::Raised::Published(_)
        ));
        assert_eq!(c.alerts.of(AlertKind::ReauthorizationRequired).len(), 2);
    }

    #[tokio::test]
    async fn reconnecting_after_reauthorization_required_makes_the_tenant_active_again() {
        // R-CONN-4
        let c = Conn::new();
        let s = c
            .sign_in(vec![managed("contoso.com"), managed("old.contoso.com")])
            .await;
        c.callback(&s).await.unwrap();
        update_tenant(&c.tenants, &s.tenant, |t| {
            t.status = TenantStatus::ReauthorizationRequired;
        })
        .await
        .unwrap();
        // Meanwhile a domain was removed from the M365 tenant.
        c.directory
            .set_domains(&s.tenant, vec![managed("contoso.com")]);
        let again = c.starter().restart(&s.tenant).await.unwrap();
        let t = c
            .callback(&SignIn {
                tenant: s.tenant.clone(),
                state: state_of(&again.authorize_url),
            })
            .await
            .unwrap();
        assert_eq!(t.status, TenantStatus::Active);
        assert_eq!(
            c.owner("old.contoso.com").await,
            None,
            "a removed domain is released"
        );
        assert_eq!(c.owner("contoso.com").await, Some(s.tenant));
        let missing = c
            .starter()
            .restart(&TenantId::generate())
            .await
            .unwrap_err();
        assert_eq!(missing.code(), "not_found");
    }

    // ---- R-CONN-7: the connection is pinned to its Microsoft tenant ----

    /// Everything a refused consent must leave as it was.
    #[derive(Debug, PartialEq)]
    struct Snapshot {
        tenant: Tenant,
        access_token: Option<String>,
        versions: usize,
        owners: Vec<Option<TenantId>>,
        events: usize,
    }

    impl Conn {
        async fn snapshot(&self, tenant: &TenantId, domains: &[&str]) -> Snapshot {
            let mut owners = Vec::new();
            for d in domains {
                owners.push(self.owner(d).await);
            }
            Snapshot {
                tenant: self.tenant(tenant).await,
                access_token: self.access_token(tenant).await,
                versions: self.vault.versions(tenant),
                owners,
                events: self.events.all().len(),
            }
        }
    }

    #[tokio::test]
    async fn a_reconnect_consented_in_another_microsoft_tenant_is_refused_and_changes_nothing() {
        // R-CONN-7 (issue 11: Contoso reconnected, the consent page signed in as another tenant's admin)
        let c = Conn::new();
        let s = c
            .sign_in(vec![
                managed("contoso.com"),
                managed("contoso.onmicrosoft.com"),
            ])
            .await;
        let contoso = c.callback(&s).await.unwrap();
        let fabrikam =
            c.other_microsoft_tenant(vec![managed("fabrikam.com"), managed("contoso.net")]);
        let watched = ["contoso.com", "contoso.onmicrosoft.com", "fabrikam.com"];
        let before = c.snapshot(&s.tenant, &watched).await;
        let again = c.restart(&s.tenant).await;
        let exchanges = c.identity.exchanges();
        let e = c.callback_as(&again, &fabrikam).await.unwrap_err();
        assert_eq!(e.code(), "tenant_mismatch");
        assert!(e.is_client_error());
        assert!(
            matches!(&e, ConnectError::TenantMismatch { pinned, consented }
                if Some(pinned) == contoso.m365_tenant_id.as_ref()
                    && Some(consented) == c.directory.m365_tenant_id(&fabrikam).as_ref()),
            "{e:?}"
        );
        assert_eq!(
            c.identity.exchanges(),
            exchanges + 1,
            "the code was redeemed"
        );
        assert_eq!(
            c.snapshot(&s.tenant, &watched).await,
            before,
            "tokens, record (status, domains, pin, version), claims and events as they were"
        );
        assert!(c.consents.is_empty(), "the sign-in is spent");
    }

    #[tokio::test]
    async fn every_refused_consent_leaves_no_token_and_keeps_an_active_tenants_tokens() {
        // R-CONN-7 (federated, mismatch, domain claimed elsewhere, consent denied, bad code)
        let c = Conn::new();
        let holder = c.sign_in(vec![managed("taken.example")]).await;
        c.callback(&holder).await.unwrap();
        let s = c.sign_in(vec![managed("contoso.com")]).await;
        c.callback(&s).await.unwrap();
        let other = c.other_microsoft_tenant(vec![managed("fabrikam.com")]);
        let watched = ["contoso.com", "fabrikam.com", "taken.example"];
        let before = c.snapshot(&s.tenant, &watched).await;
        // Another tenant's admin.
        let e = c
            .callback_as(&c.restart(&s.tenant).await, &other)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "tenant_mismatch");
        assert_eq!(c.snapshot(&s.tenant, &watched).await, before);
        // Contoso's own admin, but the tenant now holds a domain another tenant claimed.
        c.directory.set_domains(
            &s.tenant,
            vec![managed("contoso.com"), managed("taken.example")],
        );
        let e = c.callback(&c.restart(&s.tenant).await).await.unwrap_err();
        assert_eq!(e.code(), "domain_claimed");
        assert_eq!(c.snapshot(&s.tenant, &watched).await, before);
        // Every custom domain now federated.
        c.directory
            .set_domains(&s.tenant, vec![federated("contoso.com")]);
        let e = c.callback(&c.restart(&s.tenant).await).await.unwrap_err();
        assert_eq!(e.code(), "federated_tenant_unsupported");
        assert_eq!(c.snapshot(&s.tenant, &watched).await, before);
        // Consent denied, and a code the platform refuses.
        let denied = c.restart(&s.tenant).await;
        let e = c
            .completer()
            .complete(Callback::Denied {
                state: Some(denied.state.clone()),
                error: "access_denied".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), "consent_denied");
        c.identity
            .fail_next_call(Error::ReauthorizationRequired { aadsts: 700_005 });
        let e = c.callback(&c.restart(&s.tenant).await).await.unwrap_err();
        assert_eq!(e.code(), "invalid_grant");
        assert_eq!(c.snapshot(&s.tenant, &watched).await, before);

        // A tenant that was never connected keeps no token either.
        let pending = c.sign_in(vec![managed("northwind.example")]).await;
        let e = c.callback_as(&pending, &other).await;
        assert!(
            e.is_ok(),
            "an unpinned tenant without expectation takes any tenant"
        );
        let fresh = c.sign_in(vec![federated("northwind.com")]).await;
        assert_eq!(
            c.callback(&fresh).await.unwrap_err().code(),
            "federated_tenant_unsupported"
        );
        assert_eq!(
            c.vault.versions(&fresh.tenant),
            0,
            "nothing was ever written"
        );
    }

    #[tokio::test]
    async fn the_first_consent_must_come_from_a_tenant_with_the_expected_domain() {
        // R-CONN-7 (`POST /tenants` `expectedDomain`)
        let c = Conn::new();
        let started = c
            .starter()
            .start_expecting("Contoso", Some(" Contoso.COM "))
            .await
            .unwrap();
        assert_eq!(
            started.tenant.expected_domain,
            Some(name("contoso.com")),
            "normalized"
        );
        let id = started.tenant.id.clone();
        c.directory
            .add_tenant(&id, vec![managed("contoso.com"), managed("contoso.net")]);
        let wrong = c.other_microsoft_tenant(vec![managed("fabrikam.com")]);
        let s = SignIn {
            tenant: id.clone(),
            state: state_of(&started.authorize_url),
        };
        let e = c.callback_as(&s, &wrong).await.unwrap_err();
        assert_eq!(e.code(), "tenant_mismatch");
        assert!(e.to_string().contains("contoso.com"), "{e}");
        assert!(matches!(e, ConnectError::ExpectedDomainMissing { .. }));
        assert_eq!(c.vault.versions(&id), 0, "no token anywhere");
        assert_eq!(c.owner("fabrikam.com").await, None);
        let t = c.tenant(&id).await;
        assert_eq!(
            (t.status, t.m365_tenant_id),
            (TenantStatus::PendingConsent, None)
        );
        // The right tenant connects.
        let t = c.callback(&c.restart(&id).await).await.unwrap();
        assert_eq!(t.status, TenantStatus::Active);
        assert_eq!(t.m365_tenant_id, c.directory.m365_tenant_id(&id));
    }

    #[tokio::test]
    async fn an_expected_domain_that_is_not_a_domain_is_refused_and_nothing_is_created() {
        // R-SAFE-1, R-CONN-7
        let c = Conn::new();
        for bad in [
            "",
            "  ",
            "not a domain",
            "localhost",
            "-x.example",
            "a..example",
        ] {
            let e = c
                .starter()
                .start_expecting("Contoso", Some(bad))
                .await
                .unwrap_err();
            assert_eq!(e.code(), "invalid_domain", "{bad:?}");
        }
        assert!(c.consents.is_empty());
        let listed = c.tenants.list(&PageRequest::first(10)).await.unwrap();
        assert!(listed.items.is_empty(), "no tenant was created");
    }

    #[tokio::test]
    async fn once_the_tenant_id_is_known_sign_in_code_redemption_and_refresh_use_its_authority() {
        // R-CONN-7 (`/{m365TenantId}` instead of `organizations`)
        let c = Conn::new();
        let s = c.sign_in(vec![managed("contoso.com")]).await;
        assert_eq!(
            c.identity.authorities(),
            vec![None],
            "unknown before consent"
        );
        let t = c.callback(&s).await.unwrap();
        let pinned = t.m365_tenant_id.clone().unwrap();
        assert_eq!(
            c.vault
                .get(&s.tenant)
                .await
                .unwrap()
                .unwrap()
                .m365_tenant_id,
            Some(pinned.clone()),
            "the vault keeps the issuing tenant with the tokens"
        );
        let again = c.starter().restart(&s.tenant).await.unwrap();
        assert!(
            again
                .authorize_url
                .contains(&format!("/{pinned}/oauth2/v2.0/authorize")),
            "{}",
            again.authorize_url
        );
        c.callback(&SignIn {
            tenant: s.tenant.clone(),
            state: state_of(&again.authorize_url),
        })
        .await
        .unwrap();
        c.clock.advance(TimeDelta::minutes(50));
        let report = c.refresher("run-1").run().await.unwrap();
        assert!(matches!(
            report.tenants[0].1,
            TenantRefresh::Refreshed { .. }
        ));
        assert_eq!(
            c.identity.authorities(),
            vec![
                None,
                None,
                Some(pinned.clone()),
                Some(pinned.clone()),
                Some(pinned.clone())
            ],
            "sign-in, exchange, reconnect sign-in, its exchange, refresh"
        );
        assert_eq!(
            c.vault
                .get(&s.tenant)
                .await
                .unwrap()
                .unwrap()
                .m365_tenant_id,
            Some(pinned),
            "the rotated tokens keep their tenant"
        );
    }

    // ---- R-CONN-8: deauthorize is final, status changes never overwrite each other ----

    #[tokio::test]
    async fn a_sign_in_started_before_a_deauthorization_no_longer_works() {
        // R-CONN-8 (pending consents invalidated by the consent epoch)
        let c = Conn::new();
        let s = c.sign_in(vec![managed("contoso.com")]).await;
        c.callback(&s).await.unwrap();
        let old = c.restart(&s.tenant).await;
        c.deauthorizer().deauthorize(&s.tenant).await.unwrap();
        let exchanges = c.identity.exchanges();
        let e = c.callback(&old).await.unwrap_err();
        assert!(matches!(e, ConnectError::InvalidState), "{e:?}");
        assert_eq!(c.identity.exchanges(), exchanges, "not even a token call");
        assert_eq!(c.access_token(&s.tenant).await, None);
        let t = c.tenant(&s.tenant).await;
        assert_eq!(t.status, TenantStatus::Deauthorized);
        assert_eq!(c.owner("contoso.com").await, None);
        // A sign-in started after the deauthorization is the next consent: it works.
        let t = c.callback(&c.restart(&s.tenant).await).await.unwrap();
        assert_eq!(t.status, TenantStatus::Active);
    }

    /// Runs `first` until it waits at `gate`, then `second` to its end, then opens the gate and
    /// lets `first` finish: the forced interleaving of an R-CONN-8 race.
    async fn interleave<A, B>(
        gate: &crate::testing::Gate,
        first: A,
        second: B,
    ) -> (A::Output, B::Output)
    where
        A: std::future::Future,
        B: std::future::Future,
    {
        futures::future::join(first, async {
            gate.reached().await;
            let out = second.await;
            gate.open();
            out
        })
        .await
    }

    #[tokio::test]
    async fn a_deauthorization_while_the_callback_stores_the_tokens_wins() {
        // R-CONN-8 (reconnect → active vs deauthorize → deauthorized): the callback activated
        // the tenant and is about to write the tokens when the deauthorization runs to its end.
        let c = Conn::new();
        let s = c.sign_in(vec![managed("contoso.com")]).await;
        c.callback(&s).await.unwrap();
        let again = c.restart(&s.tenant).await;
        let code = c.identity.consent(&again.state).unwrap();
        let gate = c.vault.hold_next_write();
        let deauth = c.deauthorizer();
        let (connected, deauthorized) = interleave(
            &gate,
            c.completer().complete(Callback::Code {
                code,
                state: again.state.clone(),
            }),
            deauth.deauthorize(&s.tenant),
        )
        .await;
        deauthorized.unwrap();
        let e = connected.unwrap_err();
        assert!(matches!(e, ConnectError::InvalidState), "{e:?}");
        assert_eq!(c.access_token(&s.tenant).await, None, "no token survives");
        let t = c.tenant(&s.tenant).await;
        assert_eq!(t.status, TenantStatus::Deauthorized);
        assert_eq!(t.token_expires_at, None);
        assert_eq!(c.owner("contoso.com").await, None);
        assert_eq!(c.count(EventKind::TenantConnected), 1, "only the first");
    }

    #[tokio::test]
    async fn a_deauthorization_while_the_code_is_redeemed_leaves_no_token_and_no_claim() {
        // R-CONN-8: the deauthorization lands between the code exchange and the activation.
        let c = Conn::new();
        let s = c.sign_in(vec![managed("contoso.com")]).await;
        c.callback(&s).await.unwrap();
        let again = c.restart(&s.tenant).await;
        let code = c.identity.consent(&again.state).unwrap();
        let gate = c.identity.hold_next_call();
        let deauth = c.deauthorizer();
        let (connected, deauthorized) = interleave(
            &gate,
            c.completer().complete(Callback::Code {
                code,
                state: again.state.clone(),
            }),
            deauth.deauthorize(&s.tenant),
        )
        .await;
        deauthorized.unwrap();
        assert!(matches!(connected.unwrap_err(), ConnectError::InvalidState));
        assert_eq!(c.vault.versions(&s.tenant), 0, "nothing written");
        assert_eq!(c.tenant(&s.tenant).await.status, TenantStatus::Deauthorized);
        assert_eq!(
            c.owner("contoso.com").await,
            None,
            "the re-claimed domain is released again"
        );
    }

    #[tokio::test]
    async fn a_refresh_that_was_in_flight_cannot_bring_deauthorized_tokens_back() {
        // R-CONN-8 (refresh vs deauthorize): the refresh grant answered, the deauthorization
        // runs to its end, then the refresh tries to save the rotated tokens.
        let c = Conn::new();
        let s = c.sign_in(vec![managed("contoso.com")]).await;
        c.callback(&s).await.unwrap();
        c.clock.advance(TimeDelta::minutes(50));
        let gate = c.identity.hold_next_call();
        let (job, deauth) = (c.refresher("run-1"), c.deauthorizer());
        let (refreshed, deauthorized) = interleave(
            &gate,
            job.refresh_tenant(&s.tenant),
            deauth.deauthorize(&s.tenant),
        )
        .await;
        deauthorized.unwrap();
        assert_eq!(refreshed.unwrap(), TenantRefresh::Superseded);
        assert_eq!(c.identity.refreshes(), 1, "the grant was redeemed");
        assert_eq!(
            c.vault.versions(&s.tenant),
            0,
            "the secret was not re-created"
        );
        let t = c.tenant(&s.tenant).await;
        assert_eq!(t.status, TenantStatus::Deauthorized, "not overwritten");
        assert_eq!(t.token_expires_at, None);
        assert_eq!(c.count(EventKind::TenantReauthorizationRequired), 0);
    }

    #[tokio::test]
    async fn a_refused_refresh_does_not_undo_a_reconnect_that_completed_meanwhile() {
        // R-CONN-8 (refresh → reauthorization_required vs reconnect → active)
        let c = Conn::new();
        let s = c.sign_in(vec![managed("contoso.com")]).await;
        c.callback(&s).await.unwrap();
        let old = c.vault.get(&s.tenant).await.unwrap().unwrap();
        c.identity.revoke(&old.refresh_token);
        c.clock.advance(TimeDelta::minutes(50));
        let again = c.restart(&s.tenant).await;
        let code = c.identity.consent(&again.state).unwrap();
        let gate = c.identity.hold_next_call();
        let job = c.refresher("run-1");
        let completer = c.completer();
        let reconnect = async {
            completer
                .complete(Callback::Code {
                    code,
                    state: again.state.clone(),
                })
                .await
        };
        let (refreshed, reconnected) =
            interleave(&gate, job.refresh_tenant(&s.tenant), reconnect).await;
        let reconnected = reconnected.unwrap();
        assert_eq!(refreshed.unwrap(), TenantRefresh::Superseded);
        let t = c.tenant(&s.tenant).await;
        assert_eq!(t.status, TenantStatus::Active, "the reconnect stands");
        assert_eq!(t.version, reconnected.version, "nothing written after it");
        let now = c.vault.get(&s.tenant).await.unwrap().unwrap();
        assert_ne!(
            now.refresh_token.expose_secret(),
            old.refresh_token.expose_secret(),
            "the reconnect's tokens"
        );
        assert_eq!(c.count(EventKind::TenantReauthorizationRequired), 0);

        // The other order: the refusal lands first, the reconnect then makes the tenant active.
        let current = c.vault.get(&s.tenant).await.unwrap().unwrap();
        c.identity.revoke(&current.refresh_token);
        c.clock.advance(TimeDelta::minutes(50));
        assert!(matches!(
            c.refresher("run-2")
                .refresh_tenant(&s.tenant)
                .await
                .unwrap(),
            TenantRefresh::ReauthorizationRequired { .. }
        ));
        let t = c.callback(&c.restart(&s.tenant).await).await.unwrap();
        assert_eq!(t.status, TenantStatus::Active);
    }

    #[tokio::test]
    async fn a_refresh_refused_after_a_deauthorization_does_not_mark_the_tenant() {
        // R-CONN-8 (refresh → reauthorization_required vs deauthorize → deauthorized)
        let c = Conn::new();
        let s = c.sign_in(vec![managed("contoso.com")]).await;
        c.callback(&s).await.unwrap();
        let tokens = c.vault.get(&s.tenant).await.unwrap().unwrap();
        c.identity.revoke(&tokens.refresh_token);
        c.clock.advance(TimeDelta::minutes(50));
        let gate = c.identity.hold_next_call();
        let (job, deauth) = (c.refresher("run-1"), c.deauthorizer());
        let (refreshed, deauthorized) = interleave(
            &gate,
            job.refresh_tenant(&s.tenant),
            deauth.deauthorize(&s.tenant),
        )
        .await;
        deauthorized.unwrap();
        assert_eq!(refreshed.unwrap(), TenantRefresh::Superseded);
        assert_eq!(c.tenant(&s.tenant).await.status, TenantStatus::Deauthorized);
        assert_eq!(c.count(EventKind::TenantReauthorizationRequired), 0);
    }

    #[tokio::test]
    async fn concurrent_first_consents_from_two_microsoft_tenants_pin_the_first_and_refuse_the_other()
     {
        // R-CONN-7, R-CONN-8: two sign-ins of one new tenant; the second consent, from another
        // Microsoft tenant, completes while the first is storing its tokens.
        let c = Conn::new();
        let s = c.sign_in(vec![managed("contoso.com")]).await;
        let second = c.restart(&s.tenant).await;
        let other = c.other_microsoft_tenant(vec![managed("fabrikam.com")]);
        let code = c.identity.consent(&s.state).unwrap();
        let gate = c.vault.hold_next_write();
        let completer = c.completer();
        let first = completer.complete(Callback::Code {
            code,
            state: s.state.clone(),
        });
        let (first, refused) = interleave(&gate, first, c.callback_as(&second, &other)).await;
        let first = first.unwrap();
        assert_eq!(refused.unwrap_err().code(), "tenant_mismatch");
        assert_eq!(first.m365_tenant_id, c.directory.m365_tenant_id(&s.tenant));
        assert_eq!(c.owner("fabrikam.com").await, None);
        assert_eq!(
            c.vault.versions(&s.tenant),
            1,
            "only the first consent's tokens"
        );
    }
}
