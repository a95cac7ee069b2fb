//! The OAuth client (app registration) credentials, read once per cold start from the secret that
//! `template.yaml` declares (`OAuthClientSecret`): JSON `{"client_id", "client_secret"}` and,
//! optionally, `"redirect_uri"` (the connect callback URL registered in the app registration, e.g.
//! `https://<api id>.execute-api.<region>.amazonaws.com/oauth/callback`; kept in the secret because
//! the API's URL is only known after the first deployment).

use crate::OnHeap;
use aws_sdk_secretsmanager::Client;
use m365_engine::error::Error;
use secrecy::SecretString;
use serde::Deserialize;

use crate::dynamo::sdk_error;

const COMPONENT: &str = "secretsmanager";

/// The app registration's credentials. `Debug` redacts the secret.
#[derive(Debug, Clone)]
pub struct OAuthClientCredentials {
    /// The application (client) id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretString,
    /// The registered redirect URI of the connect callback, when the secret names one.
    pub redirect_uri: Option<String>,
}

#[derive(Deserialize)]
struct Stored {
    client_id: String,
    client_secret: String,
    #[serde(default)]
    redirect_uri: Option<String>,
}

/// Why the OAuth client secret could not be used (its content is never part of the error).
#[derive(Debug, thiserror::Error)]
#[error(
    "the OAuth client secret has no string value or is not JSON with client_id and client_secret"
)]
pub struct UnreadableOAuthClientSecret;

/// Reads the credentials from the secret `secret_id` (name or ARN).
///
/// # Errors
/// Secrets Manager failures (mapped like every adapter's); `Infrastructure` with
/// [`UnreadableOAuthClientSecret`] when the value is not the expected JSON.
pub async fn load_oauth_client(
    client: &Client,
    secret_id: &str,
) -> Result<OAuthClientCredentials, Error> {
    let value = secret_string(client, secret_id).await?;
    let unreadable = || Error::Infrastructure {
        component: COMPONENT,
        source: Box::new(UnreadableOAuthClientSecret),
    };
    let stored: Stored =
        serde_json::from_str(&value.ok_or_else(unreadable)?).map_err(|_| unreadable())?;
    if stored.client_id.trim().is_empty() || stored.client_secret.is_empty() {
        return Err(unreadable());
    }
    Ok(OAuthClientCredentials {
        client_id: stored.client_id,
        client_secret: SecretString::from(stored.client_secret),
        redirect_uri: stored.redirect_uri.filter(|u| !u.trim().is_empty()),
    })
}

/// The current string value of the secret `secret_id` (`None` for a binary secret).
///
/// # Errors
/// Secrets Manager failures, mapped like every adapter's.
pub(crate) async fn secret_string(
    client: &Client,
    secret_id: &str,
) -> Result<Option<String>, Error> {
    let output = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .on_heap()
        .await
        .map_err(|e| sdk_error(COMPONENT, e))?;
    Ok(output.secret_string)
}
