//! The repository's own `template.yaml` as devstack reads it: every function gets the
//! environment the template declares — the Globals (with the stack Parameters' defaults for the
//! directory password policy and the retry policy) merged with its own — so a local stack runs
//! with the deployed defaults (issue 13). Pure: no moto, nothing started.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use devstack::intrinsic::Scope;
use devstack::template::Template;

#[test]
fn every_function_gets_the_templates_environment_with_the_parameter_defaults() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
    let template = Template::read(&path).expect("template.yaml parses");
    let parameters: BTreeMap<String, String> = template
        .parameters
        .iter()
        .map(|(name, default)| (name.clone(), default.clone().unwrap_or_default()))
        .collect();
    let mut scope = Scope::new(
        parameters,
        template.resources.iter().map(|r| r.logical_id.clone()),
    );
    for resource in &template.resources {
        let id = resource.logical_id.clone();
        scope.define(
            &id,
            format!("local-{id}"),
            [("Arn", format!("arn:local:{id}"))],
        );
    }
    let expected = [
        ("M365_PASSWORD_MIN_LENGTH", "8"),
        ("M365_PASSWORD_REQUIRED_CLASSES", ""),
        ("M365_PASSWORD_MAX_AGE_DAYS", "0"),
        ("M365_RETRY_MAX_ATTEMPTS", "8"),
        ("M365_RETRY_BASE_DELAY_SECONDS", "2"),
        ("M365_RETRY_MAX_DELAY_SECONDS", "900"),
    ];
    let mut functions = 0;
    for resource in template.functions() {
        let spec = template
            .function_spec(resource, &scope, "local")
            .expect("the function resolves");
        for (name, value) in expected {
            assert_eq!(
                spec.environment.get(name).map(String::as_str),
                Some(value),
                "{} {name}",
                spec.logical_id
            );
        }
        assert_eq!(
            spec.environment
                .get("M365_LEDGER_TABLE")
                .map(String::as_str),
            Some("local-LedgerTable")
        );
        let reconcile = spec.environment.get("M365_RECONCILE_QUEUE_URL");
        assert_eq!(
            reconcile.is_some(),
            spec.logical_id == "ReconcileFunction",
            "{}",
            spec.logical_id
        );
        let sender = spec.environment.get("M365_WELCOME_SENDER");
        assert_eq!(
            sender.map(String::as_str),
            (spec.logical_id == "NotifyFunction").then_some("welcome@example.com"),
            "{}",
            spec.logical_id
        );
        functions += 1;
    }
    assert_eq!(functions, 10);
}
