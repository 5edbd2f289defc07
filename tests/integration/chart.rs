//! The Helm chart on the local control plane: it lints, the API server accepts everything it renders (the controller
//! under the `restricted` Pod Security level), and bad values fail `helm install` naming the value.
//!
//! Installing it for real, with the agents in real nodes under its identities, is the node tier (`nodes`).

use serde_json::Value;

use crate::support::{
    chart::{CHART, KUBE_VERSION, RELEASE_NAMESPACE, helm, helm_output},
    cluster::{TestCluster, cluster, run, serial},
    repo_path,
};

/// The namespaces of a rendering that only goes through the API server's dry run, away from the installed release.
const DRY_RUN_NAMESPACE: &str = "rktnetes-dry-run";
const DRY_RUN_AGENT_NAMESPACE: &str = "rktnetes-dry-run-agent";

fn template(cluster: &TestCluster, extra: &[&str]) -> String {
    let output = run(helm(cluster)
        .args([
            "template",
            "rktnetes",
            CHART,
            "--kube-version",
            KUBE_VERSION,
        ])
        .args(["--namespace", DRY_RUN_NAMESPACE])
        .args(extra));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The rendered objects, as JSON (kubectl converts the YAML stream).
fn rendered_objects(cluster: &TestCluster, yaml: &str) -> Vec<Value> {
    let path = std::env::temp_dir().join("rktnetes-chart-rendering.yaml");
    std::fs::write(&path, yaml).expect("the rendering can be written");
    let output = run(cluster
        .kubectl()
        .args(["create", "--dry-run=client", "-o", "json", "-f"])
        .arg(&path));
    // One JSON document per object, one after the other.
    serde_json::Deserializer::from_slice(&output.stdout)
        .into_iter::<Value>()
        .map(|object| object.expect("kubectl prints JSON"))
        .collect()
}

#[test]
fn the_chart_lints() {
    let cluster = cluster();
    let output = helm_output(
        cluster,
        &["lint", "--strict", CHART, "--kube-version", KUBE_VERSION],
    );
    assert!(
        output.status.success(),
        "helm lint failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_api_server_accepts_the_rendered_chart_and_the_controller_is_restricted() {
    // Its cluster-scoped objects are the installed release's (the node tests install and uninstall it).
    let _serial = serial().blocking_lock();
    let cluster = cluster();
    // The release namespace enforces and warns at `restricted`, as an operations team would run it.
    for (namespace, level) in [
        (DRY_RUN_NAMESPACE, "restricted"),
        (DRY_RUN_AGENT_NAMESPACE, "privileged"),
    ] {
        let manifest = format!(
            r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{namespace}","labels":{{"pod-security.kubernetes.io/enforce":"{level}","pod-security.kubernetes.io/warn":"{level}"}}}}}}"#
        );
        let path = std::env::temp_dir().join(format!("{namespace}.json"));
        std::fs::write(&path, manifest).expect("the namespace manifest can be written");
        run(cluster
            .kubectl()
            .args([
                "apply",
                "--server-side",
                "--field-manager=rktnetes-tests",
                "-f",
            ])
            .arg(&path));
    }
    let yaml = template(
        cluster,
        &[
            "--set",
            &format!("agent.namespace={DRY_RUN_AGENT_NAMESPACE}"),
        ],
    );
    // Everything but the agent namespace, which exists already (it is made above with the chart's labels).
    let objects: Vec<Value> = rendered_objects(cluster, &yaml)
        .into_iter()
        .filter(|object| object["kind"] != "Namespace")
        .collect();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let path = std::env::temp_dir().join("rktnetes-chart-objects.json");
    std::fs::write(&path, list.to_string()).expect("the objects can be written");
    let output = cluster
        .kubectl()
        .args(["apply", "--dry-run=server", "--warnings-as-errors", "-f"])
        .arg(&path)
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "the API server refused the rendered chart:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let applied = String::from_utf8_lossy(&output.stdout);
    for object in [
        "deployment.apps/rktnetes-controller",
        "validatingadmissionpolicy.admissionregistration.k8s.io/rktnetes-agent-own-node",
        "validatingadmissionpolicy.admissionregistration.k8s.io/rktnetes-agent-own-events",
        "validatingadmissionpolicy.admissionregistration.k8s.io/rktnetes-controller-agent-label",
        "clusterrole.rbac.authorization.k8s.io/rktnetes-agent",
    ] {
        assert!(
            applied.contains(object),
            "{object} missing from:\n{applied}"
        );
    }

    let deployment = objects
        .iter()
        .find(|object| object["kind"] == "Deployment")
        .expect("the controller Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&format!("--agent-namespace={DRY_RUN_AGENT_NAMESPACE}").as_str()));
    assert!(args.contains(&"--agent-tolerations=[{\"operator\":\"Exists\"}]"));
}

#[test]
fn the_monitoring_values_render_the_alerts_the_dashboard_and_the_agents_pod_monitor() {
    let cluster = cluster();
    let yaml = template(
        cluster,
        &[
            "--set",
            "agent.metrics.port=9478",
            "--set",
            "metrics.podMonitor.enabled=true",
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--set",
            "metrics.prometheusRule.labels.release=prometheus",
            "--set",
            "metrics.grafanaDashboard.enabled=true",
        ],
    );
    // helm's stream, parsed here: kubectl would need the prometheus-operator CRDs to read it.
    let objects: Vec<Value> = serde_saphyr::from_multiple::<Option<Value>>(&yaml)
        .expect("helm prints YAML")
        .into_iter()
        .flatten()
        .collect();
    let find = |kind: &str| {
        objects
            .iter()
            .find(|object| object["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} rendered"))
    };
    let rules: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_path(
            "charts/rktnetes-operator/files/prometheus-rules.yaml",
        ))
        .expect("readable"),
    )
    .expect("YAML");
    let rule = find("PrometheusRule");
    assert_eq!(rule["spec"], rules, "the PrometheusRule is the rules file");
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    let dashboard = objects
        .iter()
        .find(|object| {
            object["kind"] == "ConfigMap"
                && object["metadata"]["name"] == "rktnetes-grafana-dashboard"
        })
        .expect("the dashboard's ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let rendered: Value =
        serde_json::from_str(dashboard["data"]["rktnetes.json"].as_str().expect("text"))
            .expect("the dashboard is JSON");
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path(
            "charts/rktnetes-operator/files/grafana-dashboard.json",
        ))
        .expect("readable"),
    )
    .expect("JSON");
    assert_eq!(rendered, file);
    let monitor = find("PodMonitor");
    assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["port"], "metrics");
    assert_eq!(monitor["metadata"]["namespace"], "rktnetes-agent");
    let deployment = find("Deployment");
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array()
            .expect("args")
            .contains(&Value::from("--agent-metrics-port=9478")),
        "{args}"
    );

    // Off by default.
    let plain = template(cluster, &[]);
    for kind in [
        "PrometheusRule",
        "PodMonitor",
        "rktnetes-grafana-dashboard",
        "--agent-metrics-port",
    ] {
        assert!(!plain.contains(kind), "{kind} rendered by default");
    }
}

/// Each case: a `--set` that breaks the schema, and the value the error must name.
const INVALID_VALUES: [(&str, &str); 10] = [
    ("controller.replicas=two", "/controller/replicas"),
    ("agent.metrics.port=70000", "/agent/metrics/port"),
    ("controller.replicas=0", "/controller/replicas"),
    ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
    ("agent.namespace=Agents_Here", "/agent/namespace"),
    ("metrics.port=80", "/metrics/port"),
    ("logFormat=xml", "/logFormat"),
    ("controler.replicas=2", "controler"),
    (
        "agent.tolerations[0].operator=Maybe",
        "/agent/tolerations/0/operator",
    ),
    (
        "controller.resources.limits.memory=lots",
        "/controller/resources/limits/memory",
    ),
];

#[test]
fn invalid_values_fail_helm_install_naming_the_value() {
    // Accepted values would install a release beside the node tests' one.
    let _serial = serial().blocking_lock();
    let cluster = cluster();
    let mut wrong = Vec::new();
    for (set, named) in INVALID_VALUES {
        // A real install: were the values accepted, it would go on to create the release (and fail differently).
        let output = helm(cluster)
            .args(["install", "rktnetes-values-check", CHART])
            .args(["--namespace", RELEASE_NAMESPACE, "--set", set])
            .output()
            .expect("helm runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() || !stderr.contains(named) || !stderr.contains("schema") {
            wrong.push(format!("--set {set}: {}", stderr.trim()));
        }
    }
    assert!(
        wrong.is_empty(),
        "helm install did not refuse, naming the value:\n{}",
        wrong.join("\n")
    );
    let releases = run(helm(cluster).args(["list", "-A", "-q"]));
    assert!(!String::from_utf8_lossy(&releases.stdout).contains("rktnetes-values-check"));
}
