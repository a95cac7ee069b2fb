//! devstack: the whole of `template.yaml` on one machine, without an AWS account.
//!
//! It reads the template (the one source of truth for wiring), creates its tables, queues
//! (with their dead-letter redrive) and secrets on a moto server, runs every function as a
//! real process behind a local AWS Lambda Runtime API (so the functions' own
//! `lambda_runtime` / `lambda_http` code runs), serves the `HttpApi` routes with API Gateway
//! payload 2.0 events behind a bearer token, delivers SQS batches to their consumers
//! (honouring `ReportBatchItemFailures`, visibility timeouts and `maxReceiveCount`), and
//! fires the schedules. A route, queue or schedule missing from the template is missing
//! locally too.

pub mod gateway;
pub mod intrinsic;
pub mod provision;
pub mod routes;
pub mod runtime;
pub mod schedule;
pub mod stack;
pub mod template;

pub use stack::{Devstack, Options, StartError, start};
