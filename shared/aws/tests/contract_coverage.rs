//! Every function of the engine's contract suite for a port this crate implements is run by
//! one of this crate's `contract_*.rs` tests: a contract added to the engine without a run here
//! fails this test instead of going unchecked.

use std::path::PathBuf;

/// Contract modules of ports implemented here (`directory` is the Graph side, not ours).
const MODULES: [&str; 13] = [
    "users",
    "groups",
    "tenants",
    "bindings",
    "events",
    "failures",
    "ledger",
    "retry_queue",
    "token_vault",
    "sealer",
    "leases",
    "pending_consents",
    "rate_budget",
];

#[test]
fn every_store_contract_of_the_engine_runs_against_the_aws_adapters() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let contracts = root.join("../engine/src/testing/contract");
    let mut ours = String::new();
    for entry in std::fs::read_dir(root.join("tests")).expect("tests directory") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.starts_with("contract_") && name != "contract_coverage.rs" {
            ours.push_str(&std::fs::read_to_string(&path).expect("readable test file"));
        }
    }
    let mut missing = Vec::new();
    let mut seen = 0;
    for module in MODULES {
        let source = std::fs::read_to_string(contracts.join(format!("{module}.rs")))
            .expect("contract module exists");
        for line in source.lines() {
            let Some(rest) = line.trim_start().strip_prefix("pub async fn ") else {
                continue;
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            seen += 1;
            let used = ours.contains(&format!("{name},")) || ours.contains(&format!("{name})"));
            if !used {
                missing.push(format!("{module}::{name}"));
            }
        }
    }
    assert!(
        seen > 40,
        "found only {seen} contract functions: did the suite move?"
    );
    assert!(
        missing.is_empty(),
        "contracts not run against AWS adapters: {missing:#?}"
    );
}
