//! Telemetry installs one global JSON subscriber; a second init is refused, not a panic.

#[test]
fn telemetry_installs_once_and_refuses_a_second_subscriber() {
    assert!(m365_lambda::telemetry::init().is_ok());
    tracing::info!(op.id = "user_bind/user:alice/1", "telemetry is up");
    assert!(m365_lambda::telemetry::init().is_err());
}
