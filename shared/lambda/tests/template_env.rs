//! `template.yaml` and the one `Config` tree stay in step: `Globals.Function.Environment` sets
//! exactly the required and the template-set optional variables (plus `RUST_LOG` for telemetry),
//! no function sets a global variable again (one source, e.g. for the directory password policy),
//! the reconcile function sets its section, every variable the template sets is one `Config`
//! reads, and the stack Parameters' defaults give the code's defaults.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use m365_engine::model::WelcomeTemplate;
use m365_lambda::Config;
use m365_lambda::config::{LOCAL, NOTIFY, OPTIONAL, RECONCILE, REQUIRED, Section};
use serde_norway::Value;

fn template() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
    let text = std::fs::read_to_string(path).expect("template.yaml is readable");
    serde_norway::from_str(&text).expect("template is YAML")
}

fn names(variables: &Value) -> BTreeSet<String> {
    variables
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Each function's own `Environment.Variables`, by logical id.
fn function_variables(template: &Value) -> BTreeMap<String, Value> {
    template["Resources"]
        .as_mapping()
        .expect("Resources is a mapping")
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(id, r)| {
            (
                id.as_str().unwrap_or_default().to_owned(),
                r["Properties"]["Environment"]["Variables"].clone(),
            )
        })
        .collect()
}

#[test]
fn the_template_sets_exactly_the_variables_config_requires() {
    let template = template();
    let globals = &template["Globals"]["Function"]["Environment"]["Variables"];
    assert!(
        globals.is_mapping(),
        "Globals.Function.Environment.Variables is a mapping"
    );
    let declared = names(globals);
    let mut expected: BTreeSet<String> = REQUIRED
        .into_iter()
        .chain(OPTIONAL)
        .map(str::to_owned)
        .collect();
    expected.insert("RUST_LOG".to_owned());
    assert_eq!(declared, expected);
}

#[test]
fn every_function_variable_is_one_config_reads_and_none_overrides_a_global_one() {
    // One source: the directory password policy and the retry policy come from Globals only.
    let template = template();
    let known: BTreeSet<&str> = REQUIRED
        .into_iter()
        .chain(OPTIONAL)
        .chain(LOCAL)
        .chain(RECONCILE)
        .chain(NOTIFY)
        .collect();
    let globals = names(&template["Globals"]["Function"]["Environment"]["Variables"]);
    let functions = function_variables(&template);
    assert!(functions.len() >= 9, "{:?}", functions.keys());
    for (id, variables) in &functions {
        for name in names(variables) {
            assert!(known.contains(name.as_str()), "{id} sets unknown {name}");
            assert!(!globals.contains(&name), "{id} sets global {name} again");
        }
    }
    let reconcile = names(&functions["ReconcileFunction"]);
    let section: BTreeSet<String> = RECONCILE.into_iter().map(str::to_owned).collect();
    assert_eq!(reconcile, section);
    let notify = names(&functions["NotifyFunction"]);
    let section: BTreeSet<String> = NOTIFY.into_iter().map(str::to_owned).collect();
    assert_eq!(notify, section);
}

#[test]
fn the_notify_function_gets_its_section_from_parameters_whose_defaults_are_the_codes() {
    // R-NOT-1: sender, subject and body are stack parameters; the defaults make a valid
    // template equal to the code's defaults.
    let template = template();
    let parameters = &template["Parameters"];
    let variables = function_variables(&template)["NotifyFunction"].clone();
    let default = |variable: &str| -> String {
        let Value::Tagged(tagged) = &variables[variable] else {
            panic!("{variable} is not a !Ref");
        };
        assert_eq!(tagged.tag.to_string(), "!Ref", "{variable}");
        let parameter = tagged.value.as_str().expect("a parameter name");
        parameters[parameter]["Default"]
            .as_str()
            .unwrap_or_else(|| panic!("{parameter} has a text default"))
            .to_owned()
    };
    let [sender, subject, body] = NOTIFY.map(default);
    let from_template = WelcomeTemplate::new(&sender, &subject, &body).expect("valid defaults");
    let coded = WelcomeTemplate::new(
        &sender,
        WelcomeTemplate::DEFAULT_SUBJECT,
        WelcomeTemplate::DEFAULT_BODY,
    )
    .expect("valid");
    assert_eq!(from_template, coded);
    let env: BTreeMap<&str, String> = NOTIFY.into_iter().zip([sender, subject, body]).collect();
    let config = Config::read(
        |name| {
            env.get(name).cloned().or_else(|| {
                REQUIRED.contains(&name).then(|| match name {
                    n if n.ends_with("_TABLE") => "m365-sync-dev-table".to_owned(),
                    n if n.ends_with("_URL") => {
                        "https://sqs.eu-west-1.amazonaws.com/123456789012/q".to_owned()
                    }
                    n if n.ends_with("_PREFIX") => "m365-sync/dev/tenant/".to_owned(),
                    _ => "m365-sync/dev/secret".to_owned(),
                })
            })
        },
        &[Section::Notify],
    )
    .expect("the notify function starts with the defaults");
    assert_eq!(config.notify().expect("the section").template, coded);
}

#[test]
fn the_stack_parameters_defaults_are_the_codes_defaults() {
    // R-PWD-1, R-PWD-4, R-BIND-6: a stack deployed without overrides behaves as the code's
    // defaults say; every optional global variable comes from a Parameter.
    let template = template();
    let parameters = template["Parameters"]
        .as_mapping()
        .expect("Parameters is a mapping");
    let globals = template["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .expect("Globals variables");
    let mut from_parameters = BTreeMap::new();
    for name in OPTIONAL {
        let value = &globals[name];
        let Value::Tagged(tagged) = value else {
            panic!("{name} is not a !Ref");
        };
        assert_eq!(tagged.tag.to_string(), "!Ref", "{name}");
        let parameter = tagged.value.as_str().expect("a parameter name");
        let Some(declaration) = parameters.get(parameter) else {
            // A resource (the KMS key), not a Parameter.
            continue;
        };
        let default = match &declaration["Default"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => panic!("{parameter} has no scalar default: {other:?}"),
        };
        from_parameters.insert(name, default);
    }
    assert_eq!(
        from_parameters.len(),
        // The KMS key and the admin alerts topic are resources, not Parameters.
        OPTIONAL.len() - 2,
        "{from_parameters:?}"
    );
    let complete = |name: &str| -> Option<String> {
        if let Some(value) = from_parameters.get(name) {
            return Some(value.clone());
        }
        REQUIRED.contains(&name).then(|| match name {
            n if n.ends_with("_TABLE") => "m365-sync-dev-table".to_owned(),
            n if n.ends_with("_URL") => {
                "https://sqs.eu-west-1.amazonaws.com/123456789012/q".to_owned()
            }
            n if n.ends_with("_PREFIX") => "m365-sync/dev/tenant/".to_owned(),
            _ => "m365-sync/dev/secret".to_owned(),
        })
    };
    let deployed = Config::read(complete, &[]).expect("the defaults are valid");
    let coded = Config::read(
        |name| complete(name).filter(|_| REQUIRED.contains(&name)),
        &[],
    )
    .expect("required only");
    assert_eq!(deployed.password_policy, coded.password_policy);
    assert_eq!(deployed.retry, coded.retry);
    assert_eq!(deployed, coded);
    // And the reconcile function's own values are its section's defaults.
    let reconcile = function_variables(&template)["ReconcileFunction"].clone();
    let own = |name: &str| -> Option<String> {
        match &reconcile[name] {
            Value::String(s) => Some(s.clone()),
            Value::Tagged(_) => {
                Some("https://sqs.eu-west-1.amazonaws.com/123456789012/passes".to_owned())
            }
            _ => complete(name),
        }
    };
    let section = Config::read(own, &[Section::Reconcile])
        .expect("the reconcile function's values are valid")
        .reconcile
        .expect("the section");
    assert_eq!(section.safeguard.to_string(), "10%");
    assert_eq!(section.max_pages, 50);
}
