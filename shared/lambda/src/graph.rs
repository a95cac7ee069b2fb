//! The Graph side of a function, built once per cold start: the HTTP client (base URLs from the
//! environment, the real Microsoft hosts by default), the app registration's credentials from the
//! OAuth client secret, the identity platform port and the `Directory` over each tenant's
//! vault-kept tokens.
//!
//! Optional variables, set per function (not in `Globals`, so deployed functions talk to
//! Microsoft): `M365_GRAPH_BASE_URL` (e.g. `http://127.0.0.1:8080/v1.0` for the m365-emulator),
//! `M365_IDENTITY_BASE_URL` (e.g. `http://127.0.0.1:8080`) and `M365_OAUTH_REDIRECT_URI` (the
//! connect callback URL; otherwise the secret's `redirect_uri`).

use m365_aws::{OAuthClientCredentials, SecretsManagerTokenVault, load_oauth_client};
use m365_graph::{BuildError, GraphClient, GraphDirectory, GraphIdentity, VaultTokens};

use crate::App;

/// `M365_GRAPH_BASE_URL`: Graph base URL with its version segment (optional).
pub const GRAPH_BASE_URL: &str = "M365_GRAPH_BASE_URL";
/// `M365_IDENTITY_BASE_URL`: identity platform base URL (optional).
pub const IDENTITY_BASE_URL: &str = "M365_IDENTITY_BASE_URL";
/// `M365_OAUTH_REDIRECT_URI`: the connect callback URL registered in the app (optional).
pub const OAUTH_REDIRECT_URI: &str = "M365_OAUTH_REDIRECT_URI";

/// Where Graph and the identity platform are, and the callback URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphConfig {
    /// Graph base URL (default `https://graph.microsoft.com/v1.0`).
    pub graph_base: Option<String>,
    /// Identity platform base URL (default `https://login.microsoftonline.com`).
    pub identity_base: Option<String>,
    /// Redirect URI of the connect flow (default: the OAuth client secret's `redirect_uri`).
    pub redirect_uri: Option<String>,
}

impl GraphConfig {
    /// Reads the optional variables from the process environment.
    #[must_use]
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the optional variables from any lookup (blank values count as unset).
    #[must_use]
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        Self {
            graph_base: get(GRAPH_BASE_URL),
            identity_base: get(IDENTITY_BASE_URL),
            redirect_uri: get(OAUTH_REDIRECT_URI),
        }
    }
}

/// Why the Graph side could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum GraphSetupError {
    /// A base URL is invalid or the TLS client could not be built.
    #[error("the Graph client could not be built")]
    Build(#[from] BuildError),
    /// The OAuth client secret could not be read.
    #[error("the OAuth client credentials could not be read")]
    OAuthClient(#[source] m365_engine::Error),
}

/// The `Directory` of every function: Graph with each tenant's delegated tokens from the vault.
pub type VaultDirectory = GraphDirectory<VaultTokens<SecretsManagerTokenVault>>;

/// The Graph side, sharing one connection pool.
#[derive(Debug, Clone)]
pub struct GraphApp {
    /// The HTTP client.
    pub client: GraphClient,
    /// The identity platform port (connect, token refresh).
    pub identity: GraphIdentity,
    /// The `Directory` port.
    pub directory: VaultDirectory,
}

impl GraphApp {
    /// Reads the OAuth client secret named by the app's configuration and builds the Graph side.
    ///
    /// # Errors
    /// [`GraphSetupError`].
    pub async fn load(app: &App, config: &GraphConfig) -> Result<Self, GraphSetupError> {
        let secrets = aws_sdk_secretsmanager::Client::new(&app.sdk);
        let credentials = load_oauth_client(&secrets, &app.config.oauth_client_secret_id)
            .await
            .map_err(GraphSetupError::OAuthClient)?;
        Self::with_credentials(app, config, credentials)
    }

    /// Builds the Graph side with known credentials.
    ///
    /// # Errors
    /// [`GraphSetupError::Build`] for a bad base URL.
    pub fn with_credentials(
        app: &App,
        config: &GraphConfig,
        credentials: OAuthClientCredentials,
    ) -> Result<Self, GraphSetupError> {
        let mut builder = GraphClient::builder();
        if let Some(base) = &config.graph_base {
            builder = builder.graph_base(base);
        }
        if let Some(base) = &config.identity_base {
            builder = builder.identity_base(base);
        }
        let client = builder.build()?;
        let mut identity = client.identity(credentials.client_id, credentials.client_secret);
        if let Some(uri) = config.redirect_uri.clone().or(credentials.redirect_uri) {
            identity = identity.with_redirect_uri(uri);
        }
        let tokens = VaultTokens::new(app.token_vault.clone(), identity.clone());
        Ok(Self {
            directory: GraphDirectory::new(client.clone(), tokens),
            identity: GraphIdentity::new(identity),
            client,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_or_missing_graph_variables_mean_the_microsoft_defaults() {
        let config = GraphConfig::from_lookup(|name| match name {
            GRAPH_BASE_URL => Some("  ".to_owned()),
            IDENTITY_BASE_URL => Some(" http://127.0.0.1:8080 ".to_owned()),
            _ => None,
        });
        assert_eq!(
            config,
            GraphConfig {
                graph_base: None,
                identity_base: Some("http://127.0.0.1:8080".to_owned()),
                redirect_uri: None,
            }
        );
    }
}
