//! The Graph side of a function, built once per cold start: the HTTP client (base URLs from the
//! [`GraphConfig`] section of the app's `Config`, the real Microsoft hosts by default), the app
//! registration's credentials from the OAuth client secret, the identity platform port and the
//! `Directory` over each tenant's vault-kept tokens.
//!
//! The directory keeps each tenant's access token in memory for the life of the process, until
//! shortly before it expires or Graph refuses it (`m365_graph::VaultTokens`): a warm function
//! reads the token secret once, not on every Graph call.
//!
//! Every Graph write is paced by the per-tenant rate budget ([`DynamoRateBudget`] on the ledger
//! table, shared by all concurrent functions; DESIGN §2 "Graph usage"). Its limit defaults to
//! Graph's documented write limit per app and tenant (3,000 writes / 150 s, graph-spec §7.2) at a
//! 95 % share; the configuration's write budget changes it (`M365_GRAPH_WRITE_LIMIT`,
//! `M365_GRAPH_WRITE_WINDOW_SECONDS`, `M365_GRAPH_WRITE_SHARE`, read in `crate::config`).

use std::sync::Arc;

use m365_aws::{
    DynamoRateBudget, OAuthClientCredentials, SecretsManagerTokenVault, load_oauth_client,
};
use m365_graph::{BuildError, GraphClient, GraphDirectory, GraphIdentity, VaultTokens};

use crate::App;
pub use crate::config::{GraphConfig, WriteBudgetConfig};

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
    /// The `Directory` port (its writes paced by `rate_budget`).
    pub directory: VaultDirectory,
    /// The per-tenant Graph rate budget every write of `client` goes through.
    pub rate_budget: DynamoRateBudget,
}

impl GraphApp {
    /// Reads the OAuth client secret named by the app's configuration and builds the Graph side
    /// of the configuration's [`GraphConfig`].
    ///
    /// # Errors
    /// [`GraphSetupError`].
    pub async fn load(app: &App) -> Result<Self, GraphSetupError> {
        let secrets = aws_sdk_secretsmanager::Client::new(&app.sdk);
        let credentials = load_oauth_client(&secrets, &app.config.oauth_client_secret_id)
            .await
            .map_err(GraphSetupError::OAuthClient)?;
        Self::with_credentials(app, &app.config.graph, credentials)
    }

    /// The Graph side of a function that never calls Graph (`notify`, R-NOT-1): built without
    /// reading the OAuth client secret, so that function's role needs no access to it (R-SAFE-4).
    /// Its client id and secret are empty: a Graph call through it cannot succeed (nor can it
    /// read a tenant token, for which such a role has no permission either).
    ///
    /// # Errors
    /// [`GraphSetupError::Build`] for a bad base URL.
    pub fn without_credentials(app: &App) -> Result<Self, GraphSetupError> {
        Self::with_credentials(
            app,
            &app.config.graph,
            OAuthClientCredentials {
                client_id: String::new(),
                client_secret: secrecy::SecretString::from(String::new()),
                redirect_uri: None,
            },
        )
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
        let rate_budget = DynamoRateBudget::new(
            aws_sdk_dynamodb::Client::new(&app.sdk),
            &app.config.resources.ledger_table,
            config.write_budget.limit(),
        );
        let client = builder.build()?.with_budget(Arc::new(rate_budget.clone()));
        let mut identity = client.identity(credentials.client_id, credentials.client_secret);
        if let Some(uri) = config.redirect_uri.clone().or(credentials.redirect_uri) {
            identity = identity.with_redirect_uri(uri);
        }
        let tokens = VaultTokens::new(app.token_vault.clone(), identity.clone());
        Ok(Self {
            directory: GraphDirectory::new(client.clone(), tokens),
            identity: GraphIdentity::new(identity),
            client,
            rate_budget,
        })
    }
}
