//! The identity platform and the sign-ins under way, in memory: a fake platform that hands out
//! codes bound to a PKCE verifier, checks the verifier on exchange, rotates refresh tokens and can
//! be told to refuse (`invalid_grant`), fail or hold (at a [`Gate`]) the next call; and a `state`
//! store with expiry.
//!
//! Who signs in: [`FakeIdentityPlatform::consent`] signs in to the M365 tenant the connection is
//! meant for; [`FakeIdentityPlatform::consent_as`] signs in as an admin of another tenant of the
//! [`super::FakeDirectory`] (named by the directory's key), whose tokens the directory's
//! [`crate::ports::TenantProbe`] then reports (R-CONN-7). The fake records the authority of every
//! call (`organizations` or a tenant id) but leaves refusing foreign users at a tenant's authority
//! to the m365-emulator.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use chrono::TimeDelta;
use secrecy::{ExposeSecret, SecretString};

use super::gate::{Gate, GateSlot};
use super::{ManualClock, lock};
use crate::error::{Conflict, Entity, Error, Result};
use crate::model::{M365TenantId, TenantId, TenantTokens};
use crate::ports::{
    AuthorizationRequest, Clock, IdentityPlatform, PendingConsent, PendingConsents,
};

/// AADSTS501481: the code verifier does not match the challenge of the authorization request.
pub const AADSTS_PKCE_MISMATCH: u32 = 501_481;
/// AADSTS54005: the authorization code was already redeemed.
pub const AADSTS_CODE_REDEEMED: u32 = 54_005;
/// AADSTS70000: the grant is invalid (unknown code or refresh token).
pub const AADSTS_INVALID_GRANT: u32 = 70_000;

#[derive(Debug, Default)]
struct Platform {
    /// state → PKCE verifier of every authorization request handed out.
    requests: HashMap<String, String>,
    /// code → (verifier it was issued for, redeemed, the home tenant of who signed in).
    codes: HashMap<String, (String, bool, Option<TenantId>)>,
    /// Refresh tokens the platform accepts (and the home tenant they were issued in).
    refresh_tokens: HashMap<String, (bool, Option<TenantId>)>,
    faults: VecDeque<Error>,
    counter: u64,
    exchanges: u64,
    refreshes: u64,
    /// The authority of every call, oldest first (`None`: `organizations`).
    authorities: Vec<Option<M365TenantId>>,
}

impl Platform {
    fn next(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}-{:06}", self.counter)
    }
}

/// The identity platform in memory. Access tokens live one hour on the shared [`ManualClock`].
#[derive(Debug)]
pub struct FakeIdentityPlatform {
    clock: ManualClock,
    inner: Mutex<Platform>,
    hold: GateSlot,
}

impl FakeIdentityPlatform {
    /// A platform whose tokens expire one hour after `clock`'s now.
    #[must_use]
    pub fn new(clock: ManualClock) -> Self {
        Self {
            clock,
            inner: Mutex::new(Platform::default()),
            hold: GateSlot::default(),
        }
    }

    /// The admin signs in and consents for the request with `state`: the code the browser brings
    /// back (`None` if no such request was handed out). The admin belongs to the M365 tenant the
    /// connection is meant for.
    #[must_use]
    pub fn consent(&self, state: &str) -> Option<SecretString> {
        self.code_for(state, None)
    }

    /// Like [`FakeIdentityPlatform::consent`], but the admin who signs in belongs to the M365
    /// tenant `home` (a key of the [`super::FakeDirectory`]): the tokens are that tenant's.
    #[must_use]
    pub fn consent_as(&self, state: &str, home: &TenantId) -> Option<SecretString> {
        self.code_for(state, Some(home.clone()))
    }

    fn code_for(&self, state: &str, home: Option<TenantId>) -> Option<SecretString> {
        let mut p = lock(&self.inner);
        let verifier = p.requests.get(state)?.clone();
        let code = p.next("code");
        p.codes.insert(code.clone(), (verifier, false, home));
        Some(SecretString::from(code))
    }

    /// Tokens as if an earlier connection had issued them (the refresh token is accepted).
    #[must_use]
    pub fn issue_tokens(&self, lifetime: TimeDelta) -> TenantTokens {
        let mut p = lock(&self.inner);
        self.mint(&mut p, lifetime, None, None)
    }

    /// Revokes a refresh token: its next use is refused with `invalid_grant` (AADSTS70000).
    pub fn revoke(&self, refresh_token: &SecretString) {
        lock(&self.inner)
            .refresh_tokens
            .entry(refresh_token.expose_secret().to_owned())
            .or_insert((false, None))
            .0 = false;
    }

    /// The next token call (exchange or refresh) waits at the returned gate, after it was decided
    /// (the grant checked, tokens minted or the refusal chosen) and before it answers: a test
    /// runs something else in between (R-CONN-8 races).
    #[must_use]
    pub fn hold_next_call(&self) -> Gate {
        self.hold.arm()
    }

    /// The authority of every sign-in request, exchange and refresh so far, oldest first
    /// (`None`: `organizations`).
    #[must_use]
    pub fn authorities(&self) -> Vec<Option<M365TenantId>> {
        lock(&self.inner).authorities.clone()
    }

    /// The next token call (exchange or refresh) fails with `error` (calls are still counted).
    pub fn fail_next_call(&self, error: Error) {
        lock(&self.inner).faults.push_back(error);
    }

    /// How many code exchanges were attempted.
    #[must_use]
    pub fn exchanges(&self) -> u64 {
        lock(&self.inner).exchanges
    }

    /// How many refresh grants were attempted.
    #[must_use]
    pub fn refreshes(&self) -> u64 {
        lock(&self.inner).refreshes
    }

    /// New tokens; an access token of another home tenant carries its key after `@` (what the
    /// fake directory's probe reads).
    fn mint(
        &self,
        p: &mut Platform,
        lifetime: TimeDelta,
        home: Option<&TenantId>,
        authority: Option<&M365TenantId>,
    ) -> TenantTokens {
        let mut access = p.next("at");
        if let Some(home) = home {
            access = format!("{access}@{home}");
        }
        let refresh = p.next("rt");
        p.refresh_tokens
            .insert(refresh.clone(), (true, home.cloned()));
        TenantTokens {
            access_token: SecretString::from(access),
            refresh_token: SecretString::from(refresh),
            expires_at: self.clock.now() + lifetime,
            m365_tenant_id: authority.cloned(),
        }
    }
}

fn invalid_grant(aadsts: u32) -> Error {
    Error::ReauthorizationRequired { aadsts }
}

/// A future that is pending once, so concurrent callers interleave at the token call as they
/// would on the network.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

impl IdentityPlatform for FakeIdentityPlatform {
    fn authorization_request(&self, tenant: Option<&M365TenantId>) -> Result<AuthorizationRequest> {
        let mut p = lock(&self.inner);
        p.authorities.push(tenant.cloned());
        let state = format!("{}{}", p.next("state"), uuid::Uuid::new_v4().simple());
        let verifier = format!("{}{}", p.next("verifier"), uuid::Uuid::new_v4().simple());
        p.requests.insert(state.clone(), verifier.clone());
        let authority = tenant.map_or("organizations", M365TenantId::as_str);
        Ok(AuthorizationRequest {
            url: format!(
                "https://login.example.test/{authority}/oauth2/v2.0/authorize?state={state}"
            ),
            state,
            pkce_verifier: SecretString::from(verifier),
        })
    }

    async fn exchange_code(
        &self,
        code: &SecretString,
        pkce_verifier: &SecretString,
        tenant: Option<&M365TenantId>,
    ) -> Result<TenantTokens> {
        YieldOnce(false).await;
        let result = {
            let mut p = lock(&self.inner);
            p.exchanges += 1;
            p.authorities.push(tenant.cloned());
            if let Some(error) = p.faults.pop_front() {
                Err(error)
            } else {
                match p.codes.get(code.expose_secret()).cloned() {
                    None => Err(invalid_grant(AADSTS_INVALID_GRANT)),
                    Some((_, true, _)) => Err(invalid_grant(AADSTS_CODE_REDEEMED)),
                    Some((verifier, false, _)) if verifier != pkce_verifier.expose_secret() => {
                        Err(invalid_grant(AADSTS_PKCE_MISMATCH))
                    }
                    Some((verifier, false, home)) => {
                        p.codes.insert(
                            code.expose_secret().to_owned(),
                            (verifier, true, home.clone()),
                        );
                        Ok(self.mint(&mut p, TimeDelta::hours(1), home.as_ref(), tenant))
                    }
                }
            }
        };
        if let Some(gate) = self.hold.take() {
            gate.pass().await;
        }
        result
    }

    async fn refresh(
        &self,
        refresh_token: &SecretString,
        tenant: Option<&M365TenantId>,
    ) -> Result<TenantTokens> {
        YieldOnce(false).await;
        let result = {
            let mut p = lock(&self.inner);
            p.refreshes += 1;
            p.authorities.push(tenant.cloned());
            if let Some(error) = p.faults.pop_front() {
                Err(error)
            } else {
                // The old refresh token stays valid after rotation (graph-spec §1.4).
                match p.refresh_tokens.get(refresh_token.expose_secret()).cloned() {
                    Some((true, home)) => {
                        Ok(self.mint(&mut p, TimeDelta::hours(1), home.as_ref(), tenant))
                    }
                    _ => Err(invalid_grant(AADSTS_INVALID_GRANT)),
                }
            }
        };
        if let Some(gate) = self.hold.take() {
            gate.pass().await;
        }
        result
    }
}

/// Sign-ins under way in memory, consumed once, ignored once expired.
#[derive(Debug, Default)]
pub struct FakePendingConsents {
    entries: Mutex<HashMap<String, PendingConsent>>,
}

impl FakePendingConsents {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many sign-ins are stored (expired ones included).
    #[must_use]
    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    /// True when none is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PendingConsents for FakePendingConsents {
    async fn put(&self, pending: &PendingConsent) -> Result<()> {
        let mut entries = lock(&self.entries);
        if entries.contains_key(&pending.state) {
            return Err(Error::Conflict(Conflict::AlreadyExists {
                entity: Entity::Tenant,
                id: "oauth state".to_owned(),
            }));
        }
        entries.insert(pending.state.clone(), pending.clone());
        Ok(())
    }

    async fn take(
        &self,
        state: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<PendingConsent>> {
        Ok(lock(&self.entries)
            .remove(state)
            .filter(|p| p.expires_at > now))
    }
}

#[cfg(test)]
mod contract {
    contract_tests!(pending_consents, super::FakePendingConsents::new());
}
