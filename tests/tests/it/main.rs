//! The integration tests of m365-sync, one module per scenario area, built as ONE test binary
//! (`cargo test -p m365-integration-tests --test it`): everything is linked once, not once per
//! file. Every module uses the harness of this crate's library (`m365_integration_tests`: moto
//! resources, the emulator in-process, the functions' production wiring, API Gateway events,
//! SQS deliveries, log capture).
//!
//! Filter by module: `cargo test -p m365-integration-tests --test it -- provisioning::`.
//! Run them on moto: `scripts/with-moto.sh cargo test -p m365-integration-tests`.

mod alerts;
mod attributes;
mod bad_input;
mod connect_flow;
mod deadline;
mod groups;
mod groups_reconcile;
mod held;
mod import;
mod licenses;
mod manager;
mod notify;
mod offboarding;
mod privileged;
mod provisioning;
mod rate_budget;
mod reconcile;
mod runtime_trace;
mod tenant_isolation;
mod token_refresh_flow;
mod vault_reads;
