//! Connecting, reconnecting and deauthorizing an M365 tenant (DESIGN §3 `/tenants`, `/oauth/callback`):
//!
//! - [`StartConnection`]: a tenant in `pending_consent` and the admin's sign-in URL; the `state` and
//!   PKCE verifier are kept (with a TTL) so the callback can verify them (R-CONN-1, R-SAFE-3);
//! - [`CompleteConnection`]: the OAuth callback — verify `state`, redeem the code with the verifier,
//!   store the tokens in the vault, read the verified domains, claim them all or none (R-CONN-2),
//!   refuse an all-federated tenant (R-CONN-3), tenant `active` + `tenant_connected`;
//! - [`Deauthorize`]: delete the tokens, every binding of the tenant `unselected`, no Graph call at
//!   all, `tenant_deauthorized` (R-CONN-5).
//!
//! Any admin of the directory works with a connected tenant afterwards: nothing here is tied to the
//! admin who signed in (R-CONN-6).

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;

use crate::error::{Entity, Error, FieldProblem, InvalidInput, Result};
use crate::model::{
    BindingState, DomainName, Event, EventId, EventKind, M365TenantId, PageRequest, RequestToken,
    Tenant, TenantId, TenantStatus, TenantTokens,
};
use crate::policy::routing::domains_to_claim;
use crate::ports::{
    BindingStore, Clock, Directory, EventStore, Expect, IdentityPlatform, PendingConsent,
    PendingConsents, TenantStore, TokenVault,
};

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
    /// The callback's `state` is unknown, expired, already used or was tampered with (R-SAFE-3).
    #[error("the sign-in state is unknown, expired or already used; start the connection again")]
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

/// Starts a connection (`POST /tenants`, R-CONN-1).
#[derive(Debug)]
pub struct StartConnection<'a, T, S, I, C> {
    /// Tenants.
    pub tenants: &'a T,
    /// Sign-ins under way.
    pub consents: &'a S,
    /// The identity platform.
    pub identity: &'a I,
    /// Time.
    pub clock: &'a C,
    /// How long the sign-in may take ([`DEFAULT_CONSENT_TTL`]).
    pub consent_ttl: TimeDelta,
}

impl<T, S, I, C> StartConnection<'_, T, S, I, C>
where
    T: TenantStore,
    S: PendingConsents,
    I: IdentityPlatform,
    C: Clock,
{
    /// Creates a tenant named `name` in `pending_consent` and returns the admin's sign-in URL.
    ///
    /// # Errors
    /// `Invalid(Field "name")` for an empty or too long name, `Invalid(Name "name")` for one
    /// holding a control or bidirectional-override character (R-SAFE-1); store or configuration
    /// failures.
    pub async fn start(&self, name: &str) -> Result<ConnectionStart> {
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
        let tenant = self
            .tenants
            .create(&Tenant::pending(TenantId::generate(), name))
            .await?;
        let authorize_url = self.sign_in(&tenant.id).await?;
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
        let authorize_url = self.sign_in(&tenant.id).await?;
        Ok(ConnectionStart {
            tenant,
            authorize_url,
        })
    }

    async fn sign_in(&self, tenant: &TenantId) -> Result<String> {
        let request = self.identity.authorization_request()?;
        self.consents
            .put(&PendingConsent {
                state: request.state,
                tenant_id: tenant.clone(),
                pkce_verifier: request.pkce_verifier,
                expires_at: self.clock.now() + self.consent_ttl,
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

/// Completes a connection (`GET /oauth/callback`, R-CONN-1..3).
#[derive(Debug)]
pub struct CompleteConnection<'a, T, S, I, V, D, E, C> {
    /// Tenants and domain claims.
    pub tenants: &'a T,
    /// Sign-ins under way.
    pub consents: &'a S,
    /// The identity platform.
    pub identity: &'a I,
    /// Where the tokens live (and only there, R-CONN-1).
    pub vault: &'a V,
    /// M365 (reads the verified domains with the new tokens).
    pub directory: &'a D,
    /// Audit events.
    pub events: &'a E,
    /// Time.
    pub clock: &'a C,
}

impl<T, S, I, V, D, E, C> CompleteConnection<'_, T, S, I, V, D, E, C>
where
    T: TenantStore,
    S: PendingConsents,
    I: IdentityPlatform,
    V: TokenVault,
    D: Directory,
    E: EventStore,
    C: Clock,
{
    /// Verifies the callback and connects the tenant: `active`, every verified domain claimed,
    /// tokens in the vault, one `tenant_connected` event. On any refusal nothing is left behind:
    /// no claim, no tokens (unless the tenant was already active and keeps working), the tenant
    /// keeps its status.
    ///
    /// # Errors
    /// [`ConnectError::InvalidState`], [`ConnectError::ConsentDenied`],
    /// [`ConnectError::CodeRejected`], [`ConnectError::FederatedTenant`], `domain_claimed` and
    /// other engine errors.
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
        let tokens = self
            .identity
            .exchange_code(&code, &pending.pkce_verifier)
            .await
            .map_err(|e| match e {
                Error::ReauthorizationRequired { aadsts } => ConnectError::CodeRejected { aadsts },
                other => ConnectError::Engine(other),
            })?;
        // The directory reads the domains with the tenant's tokens, which it finds in the vault.
        self.vault
            .put(&tenant.id, &tokens, &RequestToken::generate())
            .await?;
        match self.connect(&tenant, &tokens, now).await {
            Ok(connected) => Ok(connected),
            Err(error) => {
                if tenant.status != TenantStatus::Active {
                    // Best effort: the original error is what the caller must see.
                    drop(self.vault.delete(&tenant.id).await);
                }
                Err(error)
            }
        }
    }

    async fn connect(
        &self,
        tenant: &Tenant,
        tokens: &TenantTokens,
        now: DateTime<Utc>,
    ) -> Result<Tenant, ConnectError> {
        let domains = self.directory.verified_domains(&tenant.id).await?;
        let names = domains_to_claim(&domains).map_err(|_| ConnectError::FederatedTenant)?;
        // Microsoft's id of the tenant (R-CONN-1), read before anything is claimed.
        let m365_id = self.directory.organization_id(&tenant.id).await?;
        // All or nothing (R-CONN-2): a domain of another tenant refuses the whole claim.
        self.tenants.claim_domains(&tenant.id, &names).await?;
        let held_before: Vec<DomainName> = tenant.domains.iter().map(|d| d.name.clone()).collect();
        let result = self
            .activate(&tenant.id, &m365_id, &domains, tokens.expires_at)
            .await;
        let connected = match result {
            Ok(t) => t,
            Err(e) => {
                let new: Vec<DomainName> = names
                    .iter()
                    .filter(|n| !held_before.contains(n))
                    .cloned()
                    .collect();
                drop(self.tenants.release_domains(&tenant.id, &new).await);
                return Err(e.into());
            }
        };
        let gone: Vec<DomainName> = held_before
            .into_iter()
            .filter(|n| !names.contains(n))
            .collect();
        if !gone.is_empty() {
            self.tenants.release_domains(&tenant.id, &gone).await?;
        }
        self.events
            .append(&Event {
                id: EventId::generate(),
                kind: EventKind::TenantConnected,
                at: now,
                user_id: None,
                tenant_id: Some(connected.id.clone()),
                operation_id: None,
                reason: None,
                details: Some(serde_json::json!({
                    "domains": connected.domains,
                })),
            })
            .await?;
        Ok(connected)
    }

    async fn activate(
        &self,
        id: &TenantId,
        m365_id: &M365TenantId,
        domains: &[crate::model::VerifiedDomain],
        expires_at: DateTime<Utc>,
    ) -> Result<Tenant> {
        update_tenant(self.tenants, id, |t| {
            t.status = TenantStatus::Active;
            t.m365_tenant_id = Some(m365_id.clone());
            t.domains = domains.to_vec();
            t.token_expires_at = Some(expires_at);
        })
        .await
    }
}

/// The result of a deauthorization.
#[derive(Debug, Clone)]
pub struct Deauthorized {
    /// The tenant, now `deauthorized`.
    pub tenant: Tenant,
    /// How many bindings became `unselected`.
    pub unselected: usize,
}

/// Deauthorizes a tenant (`DELETE /tenants/{tenantId}`, R-CONN-5). It holds no `Directory`: it
/// cannot write to M365, so every account stays as it is, enabled.
#[derive(Debug)]
pub struct Deauthorize<'a, T, V, B, E, C> {
    /// Tenants and domain claims.
    pub tenants: &'a T,
    /// Tokens.
    pub vault: &'a V,
    /// Bindings.
    pub bindings: &'a B,
    /// Audit events.
    pub events: &'a E,
    /// Time.
    pub clock: &'a C,
}

/// Bindings read per page while unselecting.
const BINDING_PAGE: u32 = 100;

impl<T, V, B, E, C> Deauthorize<'_, T, V, B, E, C>
where
    T: TenantStore,
    V: TokenVault,
    B: BindingStore,
    E: EventStore,
    C: Clock,
{
    /// Deletes the tokens, marks the tenant `deauthorized` (so nothing routes to it), un-selects
    /// every binding (their queued operations are dropped as superseded), releases the domain
    /// claims (another connection may claim them) and records `tenant_deauthorized`. Running it
    /// again finishes an interrupted run.
    ///
    /// # Errors
    /// `NotFound` (tenant); store failures.
    pub async fn deauthorize(&self, id: &TenantId) -> Result<Deauthorized> {
        let now = self.clock.now();
        if self.tenants.get(id).await?.is_none() {
            return Err(Error::not_found(Entity::Tenant, id));
        }
        // First, so that nothing can reach M365 for this tenant any more.
        self.vault.delete(id).await?;
        let tenant = update_tenant(self.tenants, id, |t| {
            t.status = TenantStatus::Deauthorized;
            t.token_expires_at = None;
        })
        .await?;
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
                id: EventId::generate(),
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
    let mut last = Error::stale(Entity::Tenant, 0);
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let current = tenants
            .get(id)
            .await?
            .ok_or_else(|| Error::not_found(Entity::Tenant, id))?;
        let mut next = current.clone();
        change(&mut next);
        match tenants.update(&next, current.version).await {
            Ok(t) => return Ok(t),
            Err(e) if e.is_conflict("stale_version") => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
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

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::model::{DomainKind, Email, VerifiedDomain};
    use crate::policy::routing::{RoutingError, resolve_tenant};
    use crate::ports::{EventFilter, EventQuery};
    use crate::testing::{
        AADSTS_PKCE_MISMATCH, FakeBindings, FakeDirectory, FakeEvents, FakeIdentityPlatform,
        FakePendingConsents, FakeTenants, FakeTokenVault, ManualClock,
    };
    use crate::usecase::Outcome;
    use crate::usecase::testkit::{World, throttled};

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
            }
        }

        fn starter(
            &self,
        ) -> StartConnection<'_, FakeTenants, FakePendingConsents, FakeIdentityPlatform, ManualClock>
        {
            StartConnection {
                tenants: &self.tenants,
                consents: &self.consents,
                identity: &self.identity,
                clock: &self.clock,
                consent_ttl: DEFAULT_CONSENT_TTL,
            }
        }

        fn completer(
            &self,
        ) -> CompleteConnection<
            '_,
            FakeTenants,
            FakePendingConsents,
            FakeIdentityPlatform,
            FakeTokenVault,
            FakeDirectory,
            FakeEvents,
            ManualClock,
        > {
            CompleteConnection {
                tenants: &self.tenants,
                consents: &self.consents,
                identity: &self.identity,
                vault: &self.vault,
                directory: &self.directory,
                events: &self.events,
                clock: &self.clock,
            }
        }

        fn deauthorizer(
            &self,
        ) -> Deauthorize<'_, FakeTenants, FakeTokenVault, FakeBindings, FakeEvents, ManualClock>
        {
            Deauthorize {
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
        };
        vault
            .put(&w.tenant.id, &tokens, &RequestToken::generate())
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
        let done = Deauthorize {
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
        let deauth = Deauthorize {
            tenants: &w.tenants,
            vault: &vault,
            bindings: &w.bindings,
            events: &w.events,
            clock: &w.clock,
        };
        deauth.deauthorize(&w.tenant.id).await.unwrap();
        let again = deauth.deauthorize(&w.tenant.id).await.unwrap();
        assert_eq!(again.unselected, 0);
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
            .add_tenant(&s.tenant, vec![managed("contoso.com")]);
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
}
