//! The key that signs every pagination cursor of the API (R-SAFE-1, R-IMP-1), read from the
//! cursor key secret (`template.yaml`: `CursorKeySecret`, at least 32 characters) the first time
//! a function signs or opens a cursor, then kept for the life of the process: at most one
//! Secrets Manager read per cold start, and none at all in functions that never list anything
//! (they hold no permission to read it either).

use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_secretsmanager::Client;
use m365_engine::error::Error;
use m365_engine::policy::cursor::CursorKey;
use secrecy::SecretString;

use crate::oauth_client::secret_string;

const COMPONENT: &str = "secretsmanager";

/// Why the cursor key secret could not be used (its content is never part of the error).
#[derive(Debug, thiserror::Error)]
#[error("the cursor key secret has no string value or holds fewer than 32 characters")]
pub struct UnusableCursorKeySecret;

#[derive(Debug, Clone)]
enum Source {
    Secret { client: Client, secret_id: String },
    Given,
}

/// The cursor signing key, from a Secrets Manager secret (or given as is).
#[derive(Debug, Clone)]
pub struct SecretsManagerCursorKey {
    source: Source,
    cache: Arc<Mutex<Option<CursorKey>>>,
}

impl SecretsManagerCursorKey {
    /// The key held by the secret `secret_id` (name or ARN), read on first use.
    #[must_use]
    pub fn new(client: Client, secret_id: impl Into<String>) -> Self {
        Self {
            source: Source::Secret {
                client,
                secret_id: secret_id.into(),
            },
            cache: Arc::default(),
        }
    }

    /// A key already at hand (a caller that read it itself, or a test).
    #[must_use]
    pub fn given(key: CursorKey) -> Self {
        Self {
            source: Source::Given,
            cache: Arc::new(Mutex::new(Some(key))),
        }
    }

    /// The key: read from Secrets Manager once, then from memory.
    ///
    /// # Errors
    /// Secrets Manager failures (mapped like every adapter's); `Infrastructure` with
    /// [`UnusableCursorKeySecret`] when the secret holds no usable key.
    pub async fn key(&self) -> Result<CursorKey, Error> {
        if let Some(key) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(key);
        }
        let Source::Secret { client, secret_id } = &self.source else {
            // A given key is always cached.
            return Err(unusable());
        };
        let value = secret_string(client, secret_id)
            .await?
            .ok_or_else(unusable)?;
        let key = CursorKey::new(SecretString::from(value)).map_err(|_| unusable())?;
        // Two first uses racing both read the same secret; either copy will do.
        *self.cache.lock().unwrap_or_else(PoisonError::into_inner) = Some(key.clone());
        Ok(key)
    }
}

fn unusable() -> Error {
    Error::Infrastructure {
        component: COMPONENT,
        source: Box::new(UnusableCursorKeySecret),
    }
}

impl m365_engine::ports::CursorKeys for SecretsManagerCursorKey {
    async fn key(&self) -> Result<CursorKey, Error> {
        Self::key(self).await
    }
}
