//! m365-lambda: what every function shares at run time — the one [`Config`] tree read from the
//! environment (resources, Graph, the directory password policy, retry and deadline policies,
//! function sections), JSON [`telemetry`], and the [`App`] that builds the AWS clients and
//! adapters once per cold start; [`graph`] builds the Graph side (client, identity platform, `Directory`)
//! and [`api`] shapes HTTP API answers; [`deadline`] turns the Lambda deadline into the instant
//! a function's work stops (R-OPS-2); [`sqs`] is the one batch helper of every queue consumer
//! (decode, run, `batchItemFailures`, one policy for permanent, transient and undecodable records).

pub mod api;
pub mod app;
pub mod config;
pub mod deadline;
pub mod graph;
pub mod provision;
pub mod sqs;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use app::{App, AppError};
pub use config::{Config, ConfigError};
pub use graph::{GraphApp, GraphConfig, GraphSetupError};
