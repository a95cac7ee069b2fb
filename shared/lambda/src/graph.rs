//! The Graph side of a function, built once per cold start: the HTTP client (base URLs from the
//! environment, the real Microsoft hosts by default), the app registration's credentials from the
//! OAuth client secret, the identity platform port and the `Directory` over each tenant's
//! vault-kept tokens.
//!
//! Optional variables, set per function (not in `Globals`, so deployed functions talk to
//! Microsoft): `M365_GRAPH_BASE_URL` (e.g. `http://127.0.0.1:8080/v1.0` for the m365-emulator),
//! `M365_IDENTITY_BASE_URL` (e.g. `http://127.0.0.1:8080`) and `M365_OAUTH_REDIRECT_URI` (the
//! connect callback URL; otherwise the secret's `redirect_uri`).
//!
//! The directory keeps each tenant's access token in memory for the life of the process, until
//! shortly before it expires or Graph refuses it (`m365_graph::VaultTokens`): a warm function
//! reads the token secret once, not on every Graph call.
//!
//! Every Graph write is paced by the per-tenant rate budget ([`DynamoRateBudget`] on the ledger
//! table, shared by all concurrent functions; DESIGN §2 "Graph usage"). Its limit defaults to
//! Graph's documented write limit per app and tenant (3,000 writes / 150 s, graph-spec §7.2) at a
//! 95 % share; optional variables change it: `M365_GRAPH_WRITE_LIMIT` (writes per window),
//! `M365_GRAPH_WRITE_WINDOW_SECONDS` and `M365_GRAPH_WRITE_SHARE` (0 < share ≤ 1). A value that does
//! not parse (or is out of range) is ignored with a warning: the default applies.

use std::sync::Arc;
use std::time::Duration;

use m365_aws::{
    DynamoRateBudget, OAuthClientCredentials, SecretsManagerTokenVault, load_oauth_client,
};
use m365_engine::ports::RateLimit;
use m365_graph::{BuildError, GraphClient, GraphDirectory, GraphIdentity, VaultTokens};

use crate::App;

/// `M365_GRAPH_BASE_URL`: Graph base URL with its version segment (optional).
pub const GRAPH_BASE_URL: &str = "M365_GRAPH_BASE_URL";
/// `M365_IDENTITY_BASE_URL`: identity platform base URL (optional).
pub const IDENTITY_BASE_URL: &str = "M365_IDENTITY_BASE_URL";
/// `M365_OAUTH_REDIRECT_URI`: the connect callback URL registered in the app (optional).
pub const OAUTH_REDIRECT_URI: &str = "M365_OAUTH_REDIRECT_URI";
/// `M365_GRAPH_WRITE_LIMIT`: Graph's write limit per app and tenant, in writes per window (optional).
pub const GRAPH_WRITE_LIMIT: &str = "M365_GRAPH_WRITE_LIMIT";
/// `M365_GRAPH_WRITE_WINDOW_SECONDS`: the window of that limit (optional).
pub const GRAPH_WRITE_WINDOW_SECONDS: &str = "M365_GRAPH_WRITE_WINDOW_SECONDS";
/// `M365_GRAPH_WRITE_SHARE`: the share of that limit the rate budget grants (optional).
pub const GRAPH_WRITE_SHARE: &str = "M365_GRAPH_WRITE_SHARE";

/// Where Graph and the identity platform are, and the callback URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphConfig {
    /// Graph base URL (default `https://graph.microsoft.com/v1.0`).
    pub graph_base: Option<String>,
    /// Identity platform base URL (default `https://login.microsoftonline.com`).
    pub identity_base: Option<String>,
    /// Redirect URI of the connect flow (default: the OAuth client secret's `redirect_uri`).
    pub redirect_uri: Option<String>,
    /// The rate budget of every tenant: a share of Graph's write limit.
    pub write_budget: WriteBudgetConfig,
}

/// Graph's write limit per app and tenant and the share of it the rate budget grants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriteBudgetConfig {
    /// Graph's limit (default [`RateLimit::GRAPH_WRITES`]).
    pub graph_limit: RateLimit,
    /// The share granted, 0 < share ≤ 1 (default [`RateLimit::DEFAULT_SHARE`]).
    pub share: f64,
}

impl Default for WriteBudgetConfig {
    fn default() -> Self {
        Self {
            graph_limit: RateLimit::GRAPH_WRITES,
            share: RateLimit::DEFAULT_SHARE,
        }
    }
}

impl Eq for WriteBudgetConfig {}

impl WriteBudgetConfig {
    /// The limit of every tenant's bucket.
    #[must_use]
    pub fn limit(&self) -> RateLimit {
        self.graph_limit.scaled(self.share)
    }

    fn from_lookup(get: impl Fn(&'static str) -> Option<String>) -> Self {
        let defaults = Self::default();
        let capacity = parsed(&get, GRAPH_WRITE_LIMIT, |v: &u32| *v > 0)
            .unwrap_or(defaults.graph_limit.capacity);
        let window = parsed(&get, GRAPH_WRITE_WINDOW_SECONDS, |v: &u64| *v > 0)
            .map_or(defaults.graph_limit.window, Duration::from_secs);
        let share = parsed(&get, GRAPH_WRITE_SHARE, |v: &f64| *v > 0.0 && *v <= 1.0)
            .unwrap_or(defaults.share);
        Self {
            graph_limit: RateLimit { capacity, window },
            share,
        }
    }
}

/// The variable `name` parsed, if set, parsable and `valid`; otherwise `None` (with a warning for
/// a set but unusable value).
fn parsed<T: std::str::FromStr>(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    valid: impl Fn(&T) -> bool,
) -> Option<T> {
    let raw = get(name)?;
    let value = raw.parse::<T>().ok().filter(|v| valid(v));
    if value.is_none() {
        tracing::warn!(
            variable = name,
            "unusable value ignored; the default applies"
        );
    }
    value
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
            write_budget: WriteBudgetConfig::from_lookup(get),
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
    /// The `Directory` port (its writes paced by `rate_budget`).
    pub directory: VaultDirectory,
    /// The per-tenant Graph rate budget every write of `client` goes through.
    pub rate_budget: DynamoRateBudget,
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
                write_budget: WriteBudgetConfig::default(),
                redirect_uri: None,
            }
        );
    }

    #[test]
    fn the_write_budget_defaults_to_95_percent_of_graphs_write_limit_and_can_be_changed() {
        // DESIGN §2 "Graph usage", graph-spec §7.2: 3,000 writes / 150 s per app and tenant.
        let default = GraphConfig::from_lookup(|_| None).write_budget.limit();
        assert_eq!(default.capacity, 2_850);
        assert_eq!(default.window, Duration::from_secs(150));
        let small = GraphConfig::from_lookup(|name| match name {
            GRAPH_WRITE_LIMIT => Some("60".to_owned()),
            GRAPH_WRITE_WINDOW_SECONDS => Some("10".to_owned()),
            GRAPH_WRITE_SHARE => Some("0.9".to_owned()),
            _ => None,
        });
        assert_eq!(
            small.write_budget.limit(),
            RateLimit {
                capacity: 54,
                window: Duration::from_secs(10)
            }
        );
        let unusable = GraphConfig::from_lookup(|name| match name {
            GRAPH_WRITE_LIMIT => Some("0".to_owned()),
            GRAPH_WRITE_WINDOW_SECONDS => Some("soon".to_owned()),
            GRAPH_WRITE_SHARE => Some("1.5".to_owned()),
            _ => None,
        });
        assert_eq!(unusable.write_budget, WriteBudgetConfig::default());
    }
}
