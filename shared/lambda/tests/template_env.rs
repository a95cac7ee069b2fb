//! The variables `template.yaml` gives every function (`Globals.Function.Environment`) are
//! exactly those `Config::from_env` reads (required and optional), plus `RUST_LOG` for telemetry.

use std::collections::BTreeSet;
use std::path::PathBuf;

use m365_lambda::config::{OPTIONAL, REQUIRED};

#[test]
fn the_template_sets_exactly_the_variables_config_requires() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
    let text = std::fs::read_to_string(path).expect("template.yaml is readable");
    let template: serde_norway::Value = serde_norway::from_str(&text).expect("template is YAML");
    let variables = template["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .expect("Globals.Function.Environment.Variables is a mapping");
    let declared: BTreeSet<&str> = variables.keys().filter_map(|k| k.as_str()).collect();
    let mut expected: BTreeSet<&str> = REQUIRED.into_iter().chain(OPTIONAL).collect();
    expected.insert("RUST_LOG");
    assert_eq!(declared, expected);
}
