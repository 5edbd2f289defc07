//! The chart's alerts (`files/prometheus-rules.yaml`) and Grafana dashboard (`files/grafana-dashboard.json`) name
//! only metrics that the controller and the agent export: a renamed metric fails here, not silently on a dashboard.
//! (`promtool test rules` checks what the alerts do: tests/alerts.)

use std::collections::BTreeSet;

use crate::{
    agent::metrics::{AgentMetrics, RestartResult},
    api::{NodePhase, RktNodeConfig},
    controller::metrics::Metrics,
};

const RULES: &str = include_str!("../charts/rktnetes-operator/files/prometheus-rules.yaml");
const DASHBOARD: &str = include_str!("../charts/rktnetes-operator/files/grafana-dashboard.json");

/// Every series name the two processes serve, each family given a series first (a family without one shows none).
fn exported() -> BTreeSet<String> {
    let controller = Metrics::default();
    controller.wrote("rktnodestate", "apply");
    controller.failed("rktnodestate");
    controller.set_phases([Some(NodePhase::Applied)]);
    let config: RktNodeConfig = serde_json::from_value(serde_json::json!({
        "apiVersion": "rktnetes.io/v1alpha1", "kind": "RktNodeConfig", "metadata": {"name": "c"},
        "spec": {"rkt": {"version": "1.30.0"}},
    }))
    .expect("a config");
    controller.set_configs([&config]);
    let agent = AgentMetrics::default();
    agent.restarted(RestartResult::Healthy);
    [controller.encode(), agent.encode()]
        .into_iter()
        .map(|text| text.expect("metrics encode"))
        .flat_map(|text| {
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .filter_map(|line| line.split(['{', ' ']).next().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The `rktnetes_*` names in a PromQL expression.
fn names_in(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|token| token.starts_with("rktnetes_"))
        .map(str::to_owned)
        .collect()
}

fn rule_expressions() -> Vec<(String, String)> {
    let rules: serde_json::Value = serde_saphyr::from_str(RULES).expect("the rules file is YAML");
    let groups = rules["groups"].as_array().expect("groups");
    groups
        .iter()
        .flat_map(|group| group["rules"].as_array().expect("rules").iter())
        .map(|rule| {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            let expr = rule["expr"].as_str().expect("an expr");
            (name.to_owned(), expr.to_owned())
        })
        .collect()
}

fn dashboard_expressions() -> Vec<(String, String)> {
    let dashboard: serde_json::Value =
        serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().expect("a title").to_owned();
            panel["targets"]
                .as_array()
                .expect("targets")
                .iter()
                .map(move |target| {
                    let expr = target["expr"].as_str().expect("an expr").to_owned();
                    (title.clone(), expr)
                })
        })
        .collect()
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_name_is_exported() {
    let exported = exported();
    let queries: Vec<(String, String)> = rule_expressions()
        .into_iter()
        .chain(dashboard_expressions())
        .collect();
    assert!(queries.len() > 10, "{queries:?}");
    let mut named = BTreeSet::new();
    for (name, expr) in &queries {
        let names = names_in(expr);
        assert!(
            !names.is_empty(),
            "{name}: names no rktnetes metric: {expr}"
        );
        for metric in names {
            assert!(
                exported.contains(&metric),
                "{name} queries {metric}, which neither the controller nor the agent exports; they export {exported:?}"
            );
            named.insert(metric);
        }
    }
    // And the other way round: every family is on the dashboard or in an alert.
    let families: BTreeSet<&str> = exported
        .iter()
        .map(|name| {
            ["_bucket", "_sum", "_count", "_total"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name)
        })
        .collect();
    for family in families {
        assert!(
            named.iter().any(|metric| metric.starts_with(family)),
            "{family} is exported but neither on the dashboard nor in an alert"
        );
    }
}

#[test]
fn names_are_found_between_operators_and_label_matchers() {
    assert_eq!(
        names_in(
            r#"sum by (le) (rate(rktnetes_agent_x_bucket{job="rktnetes-agent"}[5m]))/rktnetes_y"#
        ),
        BTreeSet::from([
            "rktnetes_agent_x_bucket".to_owned(),
            "rktnetes_y".to_owned()
        ])
    );
}
