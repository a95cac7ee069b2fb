//! The identity platform and the sign-ins under way, in memory: a fake platform that hands out
//! codes bound to a PKCE verifier, checks the verifier on exchange, rotates refresh tokens and can
//! be told to refuse (`invalid_grant`) or fail the next call; and a `state` store with expiry.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use chrono::TimeDelta;
use secrecy::{ExposeSecret, SecretString};

use super::{ManualClock, lock};
use crate::error::{Conflict, Entity, Error, Result};
use crate::model::TenantTokens;
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
    /// code → (verifier it was issued for, redeemed).
    codes: HashMap<String, (String, bool)>,
    /// Refresh tokens the platform accepts.
    refresh_tokens: HashMap<String, bool>,
    faults: VecDeque<Error>,
    counter: u64,
    exchanges: u64,
    refreshes: u64,
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
}

impl FakeIdentityPlatform {
    /// A platform whose tokens expire one hour after `clock`'s now.
    #[must_use]
    pub fn new(clock: ManualClock) -> Self {
        Self {
            clock,
            inner: Mutex::new(Platform::default()),
        }
    }

    /// The admin signs in and consents for the request with `state`: the code the browser brings
    /// back (`None` if no such request was handed out).
    #[must_use]
    pub fn consent(&self, state: &str) -> Option<SecretString> {
        let mut p = lock(&self.inner);
        let verifier = p.requests.get(state)?.clone();
        let code = p.next("code");
        p.codes.insert(code.clone(), (verifier, false));
        Some(SecretString::from(code))
    }

    /// Tokens as if an earlier connection had issued them (the refresh token is accepted).
    #[must_use]
    pub fn issue_tokens(&self, lifetime: TimeDelta) -> TenantTokens {
        let mut p = lock(&self.inner);
        self.mint(&mut p, lifetime)
    }

    /// Revokes a refresh token: its next use is refused with `invalid_grant` (AADSTS70000).
    pub fn revoke(&self, refresh_token: &SecretString) {
        lock(&self.inner)
            .refresh_tokens
            .insert(refresh_token.expose_secret().to_owned(), false);
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

    fn mint(&self, p: &mut Platform, lifetime: TimeDelta) -> TenantTokens {
        let access = p.next("at");
        let refresh = p.next("rt");
        p.refresh_tokens.insert(refresh.clone(), true);
        TenantTokens {
            access_token: SecretString::from(access),
            refresh_token: SecretString::from(refresh),
            expires_at: self.clock.now() + lifetime,
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
    fn authorization_request(&self) -> Result<AuthorizationRequest> {
        let mut p = lock(&self.inner);
        let state = format!("{}{}", p.next("state"), uuid::Uuid::new_v4().simple());
        let verifier = format!("{}{}", p.next("verifier"), uuid::Uuid::new_v4().simple());
        p.requests.insert(state.clone(), verifier.clone());
        Ok(AuthorizationRequest {
            url: format!(
                "https://login.example.test/organizations/oauth2/v2.0/authorize?state={state}"
            ),
            state,
            pkce_verifier: SecretString::from(verifier),
        })
    }

    async fn exchange_code(
        &self,
        code: &SecretString,
        pkce_verifier: &SecretString,
    ) -> Result<TenantTokens> {
        YieldOnce(false).await;
        let mut p = lock(&self.inner);
        p.exchanges += 1;
        if let Some(error) = p.faults.pop_front() {
            return Err(error);
        }
        let Some((verifier, redeemed)) = p.codes.get(code.expose_secret()).cloned() else {
            return Err(invalid_grant(AADSTS_INVALID_GRANT));
        };
        if redeemed {
            return Err(invalid_grant(AADSTS_CODE_REDEEMED));
        }
        if verifier != pkce_verifier.expose_secret() {
            return Err(invalid_grant(AADSTS_PKCE_MISMATCH));
        }
        p.codes
            .insert(code.expose_secret().to_owned(), (verifier, true));
        Ok(self.mint(&mut p, TimeDelta::hours(1)))
    }

    async fn refresh(&self, refresh_token: &SecretString) -> Result<TenantTokens> {
        YieldOnce(false).await;
        let mut p = lock(&self.inner);
        p.refreshes += 1;
        if let Some(error) = p.faults.pop_front() {
            return Err(error);
        }
        // The old refresh token stays valid after rotation (graph-spec §1.4).
        if p.refresh_tokens.get(refresh_token.expose_secret()) != Some(&true) {
            return Err(invalid_grant(AADSTS_INVALID_GRANT));
        }
        Ok(self.mint(&mut p, TimeDelta::hours(1)))
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
    crate::pending_consents_contract!(super::FakePendingConsents::new());
}
