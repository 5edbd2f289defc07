//! The chart's alerts and dashboard, checked by promtool (built from the Prometheus Go module by
//! e2e/build-tools.sh): `promtool test rules` over tests/alerts, every alert there both firing and not firing, and
//! every dashboard query valid PromQL. (That they name only exported metrics is a unit test: src/monitoring.rs.)

use std::{collections::BTreeMap, path::PathBuf, process::Command};

use rktnetes_e2e::settings::Settings;
use serde_json::Value;

use crate::support::{cluster::run, repo_path, repo_root};

const RULES: &str = "charts/rktnetes-operator/files/prometheus-rules.yaml";
const RULE_TESTS: &str = "tests/alerts/prometheus-rules.test.yaml";
const DASHBOARD: &str = "charts/rktnetes-operator/files/grafana-dashboard.json";

fn promtool() -> Command {
    let path: PathBuf = Settings::of_checkout(repo_root())
        .and_then(|settings| settings.promtool())
        .expect("the checkout's settings");
    assert!(
        path.exists(),
        "{} is missing: e2e/build-tools.sh builds it",
        path.display()
    );
    Command::new(path)
}

fn yaml(relative: &str) -> Value {
    let text = std::fs::read_to_string(repo_path(relative)).expect("readable");
    serde_saphyr::from_str(&text).unwrap_or_else(|error| panic!("{relative}: {error}"))
}

#[test]
fn promtool_passes_the_alerts_unit_tests() {
    let output = run(promtool().args(["test", "rules", RULE_TESTS]));
    let text = String::from_utf8_lossy(&output.stdout);
    println!("{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn every_alert_is_tested_firing_and_not_firing() {
    let alerts: Vec<String> = yaml(RULES)["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().expect("rules").clone())
        .map(|rule| rule["alert"].as_str().expect("an alert").to_owned())
        .collect();
    assert_eq!(alerts.len(), 5, "{alerts:?}");
    // (fires, stays quiet) per alert, over every evaluation in the test file.
    let mut cases: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for test in yaml(RULE_TESTS)["tests"].as_array().expect("tests") {
        for case in test["alert_rule_test"].as_array().into_iter().flatten() {
            let alert = case["alertname"].as_str().expect("alertname").to_owned();
            let fires = case["exp_alerts"]
                .as_array()
                .is_some_and(|alerts| !alerts.is_empty());
            let entry = cases.entry(alert).or_default();
            if fires {
                entry.0 = true;
            } else {
                entry.1 = true;
            }
        }
    }
    for alert in alerts {
        assert_eq!(
            cases.get(&alert),
            Some(&(true, true)),
            "{alert} needs a case where it fires and one where it does not in {RULE_TESTS}"
        );
    }
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_path(DASHBOARD)).expect("readable"))
            .expect("the dashboard is JSON");
    // promtool checks expressions in rules files: each query becomes a recording rule.
    let rules: Vec<Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().expect("targets").clone())
        .enumerate()
        .map(|(index, target)| {
            serde_json::json!({"record": format!("rktnetes:dashboard_query:{index}"), "expr": target["expr"]})
        })
        .collect();
    assert!(rules.len() >= 14, "{} queries", rules.len());
    let file = tempfile::NamedTempFile::with_suffix(".json").expect("a temporary file");
    let groups = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(file.path(), groups.to_string()).expect("writable");
    let output = run(promtool().args(["check", "rules"]).arg(file.path()));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("SUCCESS"), "{text}");
}
