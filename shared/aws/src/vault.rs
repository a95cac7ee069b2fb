//! Per-tenant OAuth tokens in Secrets Manager (R-CONN-1, R-CONN-4): one secret per tenant,
//! named `<prefix><tenant id>`, holding the access token, the refresh token, the expiry and the
//! Microsoft tenant that issued them (`m365TenantId`, R-CONN-7: the refresh authority; absent in
//! secrets written before it was recorded) as JSON. Secrets Manager keeps the stored value as
//! `AWSCURRENT` and the one before as `AWSPREVIOUS`. Writes carry the caller's request token as
//! `ClientRequestToken`, so a repeated write is a no-op and a reused token with other content is
//! refused.
//!
//! Two writes (R-CONN-8, R-SAFE-4): `create` (the connect callback only) puts a new version or,
//! when the secret does not exist, creates it; `update` (token refresh, on-demand refresh) only
//! puts a new version (`PutSecretValue`) and fails with `NotFound` once the secret was deleted, so
//! a refresh that was in flight during a deauthorization cannot re-create the tokens.

use crate::OnHeap;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use chrono::{DateTime, Utc};
use m365_engine::error::{Conflict, Entity, Error, UnavailableReason};
use m365_engine::model::{M365TenantId, RequestToken, TenantId, TenantTokens};
use m365_engine::ports::TokenVault;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::dynamo::{sdk_error, send_unless};

const COMPONENT: &str = "secretsmanager";
const PREVIOUS: &str = "AWSPREVIOUS";
/// The error code of a secret (or secret version) that does not exist.
const NOT_FOUND: &str = "ResourceNotFoundException";

/// The stored form. Only ever built right before a write and dropped right after a read.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    access_token: String,
    refresh_token: String,
    expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m365_tenant_id: Option<String>,
}

/// Why a stored token secret could not be read (its content is never part of the error).
#[derive(Debug, thiserror::Error)]
#[error("the tenant token secret has no string value or is not the expected JSON")]
pub struct UnreadableTokenSecret;

fn encode(tokens: &TenantTokens) -> Result<String, Error> {
    let stored = Stored {
        access_token: tokens.access_token.expose_secret().to_owned(),
        refresh_token: tokens.refresh_token.expose_secret().to_owned(),
        expires_at: tokens.expires_at,
        m365_tenant_id: tokens
            .m365_tenant_id
            .as_ref()
            .map(|t| t.as_str().to_owned()),
    };
    // serde_json's errors never quote the serialized values.
    serde_json::to_string(&stored).map_err(|e| Error::Infrastructure {
        component: COMPONENT,
        source: Box::new(e),
    })
}

fn decode(text: Option<&str>) -> Result<TenantTokens, Error> {
    let unreadable = || Error::Infrastructure {
        component: COMPONENT,
        source: Box::new(UnreadableTokenSecret),
    };
    let stored: Stored =
        serde_json::from_str(text.ok_or_else(unreadable)?).map_err(|_| unreadable())?;
    let m365_tenant_id = stored
        .m365_tenant_id
        .map(M365TenantId::parse)
        .transpose()
        .map_err(|_| unreadable())?;
    Ok(TenantTokens {
        access_token: SecretString::from(stored.access_token),
        refresh_token: SecretString::from(stored.refresh_token),
        expires_at: stored.expires_at,
        m365_tenant_id,
    })
}

fn same(a: &TenantTokens, b: &TenantTokens) -> bool {
    a.access_token.expose_secret() == b.access_token.expose_secret()
        && a.refresh_token.expose_secret() == b.refresh_token.expose_secret()
        && a.expires_at == b.expires_at
        && a.m365_tenant_id == b.m365_tenant_id
}

fn is<E: ProvideErrorMetadata>(error: &E, code: &str) -> bool {
    error.code() == Some(code)
}

/// [`TokenVault`] on Secrets Manager.
#[derive(Debug, Clone)]
pub struct SecretsManagerTokenVault {
    client: Client,
    prefix: String,
    kms_key_id: Option<String>,
}

impl SecretsManagerTokenVault {
    /// A vault whose secrets are named `<prefix><tenant id>` (e.g. prefix
    /// `m365-sync/prod/tenant/`, which the IAM policies are scoped to) and created encrypted with
    /// the KMS key `kms_key_id` (the stack's own key, R-SAFE-4; `None`: Secrets Manager's
    /// default key).
    #[must_use]
    pub fn new(client: Client, prefix: impl Into<String>, kms_key_id: Option<String>) -> Self {
        Self {
            client,
            prefix: prefix.into(),
            kms_key_id,
        }
    }

    /// The secret name of a tenant's tokens.
    #[must_use]
    pub fn secret_name(&self, tenant: &TenantId) -> String {
        format!("{}{tenant}", self.prefix)
    }

    async fn read(
        &self,
        tenant: &TenantId,
        stage: Option<&str>,
        version: Option<&str>,
    ) -> Result<Option<TenantTokens>, Error> {
        let request = self
            .client
            .get_secret_value()
            .secret_id(self.secret_name(tenant))
            .set_version_stage(stage.map(str::to_owned))
            .set_version_id(version.map(str::to_owned))
            .send();
        send_unless(COMPONENT, request, &[NOT_FOUND])
            .await?
            .map(|output| decode(output.secret_string()))
            .transpose()
    }
}

/// What a `PutSecretValue` did.
enum Put {
    /// The version is stored (now or by an earlier identical write).
    Done,
    /// There is no secret to add a version to; the encoded value, for a create.
    NoSecret(String),
}

impl SecretsManagerTokenVault {
    /// Adds `tokens` as the new current version of an existing secret (`PutSecretValue`).
    async fn put_version(
        &self,
        tenant: &TenantId,
        tokens: &TenantTokens,
        request: &RequestToken,
    ) -> Result<Put, Error> {
        // The request token is the version id: if that version exists, this write already
        // happened (same content: nothing to do) or the token is being reused (refused).
        if let Some(existing) = self.read(tenant, None, Some(request.as_str())).await? {
            return if same(&existing, tokens) {
                Ok(Put::Done)
            } else {
                Err(Error::Conflict(Conflict::RequestTokenReused))
            };
        }
        let value = encode(tokens)?;
        let put = self
            .client
            .put_secret_value()
            .secret_id(self.secret_name(tenant))
            .client_request_token(request.as_str())
            .secret_string(&value)
            .send()
            .on_heap()
            .await;
        match put {
            Ok(_) => Ok(Put::Done),
            // Absent, or (AWS) deleted and still being removed: the only InvalidRequest a
            // well-formed PutSecretValue on our own secret gets is "marked for deletion".
            Err(error) if is(&error, NOT_FOUND) || is(&error, "InvalidRequestException") => {
                Ok(Put::NoSecret(value))
            }
            Err(error) if is(&error, "ResourceExistsException") => {
                Err(Error::Conflict(Conflict::RequestTokenReused))
            }
            Err(error) => Err(sdk_error(COMPONENT, error)),
        }
    }
}

impl TokenVault for SecretsManagerTokenVault {
    async fn get(&self, tenant: &TenantId) -> Result<Option<TenantTokens>, Error> {
        self.read(tenant, None, None).await
    }

    async fn get_previous(&self, tenant: &TenantId) -> Result<Option<TenantTokens>, Error> {
        self.read(tenant, Some(PREVIOUS), None).await
    }

    async fn create(
        &self,
        tenant: &TenantId,
        tokens: &TenantTokens,
        request: &RequestToken,
    ) -> Result<(), Error> {
        let value = match self.put_version(tenant, tokens, request).await? {
            Put::Done => return Ok(()),
            Put::NoSecret(value) => value,
        };
        // First tokens of this tenant (or first since a delete): create the secret.
        let create = self
            .client
            .create_secret()
            .name(self.secret_name(tenant))
            .description("OAuth tokens of one connected M365 tenant (m365-sync)")
            .set_kms_key_id(self.kms_key_id.clone())
            .client_request_token(request.as_str())
            .secret_string(value)
            .send()
            .on_heap()
            .await;
        match create {
            Ok(_) => Ok(()),
            // Another writer created the secret meanwhile, or (AWS) a just force-deleted
            // secret of the same name is still being removed: both settle within seconds, so
            // the put is retryable.
            Err(error)
                if is(&error, "ResourceExistsException")
                    || is(&error, "InvalidRequestException") =>
            {
                Err(Error::Unavailable {
                    component: COMPONENT,
                    reason: UnavailableReason::Service,
                    retry_after: Some(Duration::from_secs(1)),
                    graph_request_id: None,
                    source: Some(Box::new(error)),
                })
            }
            Err(error) => Err(sdk_error(COMPONENT, error)),
        }
    }

    async fn update(
        &self,
        tenant: &TenantId,
        tokens: &TenantTokens,
        request: &RequestToken,
    ) -> Result<(), Error> {
        match self.put_version(tenant, tokens, request).await? {
            Put::Done => Ok(()),
            // Deleted by a deauthorization (or never created): a refresh never creates (R-CONN-8).
            Put::NoSecret(_) => Err(Error::not_found(Entity::TenantTokens, tenant)),
        }
    }

    async fn delete(&self, tenant: &TenantId) -> Result<(), Error> {
        // No recovery window: deauthorizing deletes the tokens now (R-CONN-5), and a later
        // reconnect must be able to create the secret again under the same name.
        let request = self
            .client
            .delete_secret()
            .secret_id(self.secret_name(tenant))
            .force_delete_without_recovery(true)
            .send();
        send_unless(COMPONENT, request, &[NOT_FOUND])
            .await
            .map(drop)
    }
}
