//! Integration tier: the CRDs on a real kube-apiserver. Examples are admitted; every invalid case is refused by
//! the apiserver itself, with a message naming the offending field; `kubectl explain` reads the descriptions.

use std::time::Duration;

use kube::{
    Api,
    api::{DynamicObject, Patch, PatchParams},
    core::ApiResource,
};
use rktnetes_operator::api::RktNodeConfig;
use serde_json::{Value, json};

use crate::support::{
    cluster::cluster,
    corpus::{examples, invalid_cases},
    eventually,
    scenario::bridge_example,
};

const FIELD_MANAGER: &str = "rktnetes-tests";

fn configs(client: kube::Client) -> Api<DynamicObject> {
    Api::all_with(client, &ApiResource::erase::<RktNodeConfig>(&()))
}

/// Server-side apply as `kubectl apply --server-side` does it (strict field validation), without persisting.
async fn dry_run_apply(api: &Api<DynamicObject>, object: &Value) -> Result<(), kube::Error> {
    let name = object["metadata"]["name"]
        .as_str()
        .expect("every object is named");
    let params = PatchParams::apply(FIELD_MANAGER)
        .dry_run()
        .validation_strict();
    api.patch(name, &params, &Patch::Apply(object))
        .await
        .map(drop)
}

#[tokio::test]
async fn examples_are_admitted() {
    let api = configs(cluster().client().await);
    for example in examples() {
        if let Err(error) = dry_run_apply(&api, &example.object).await {
            panic!("the apiserver refused {}: {error}", example.file);
        }
    }
}

/// Values at the edge of each consumer's rule, which both the apiserver and `render`'s validator must admit: the
/// rules refuse what the consumer refuses, not more.
pub fn edge_cases() -> Vec<(&'static str, Value)> {
    let bridge = |bridge: Value| bridge_example().set("/spec/network/contained/bridge", bridge);
    let selector = |selector: Value| bridge_example().set("/spec/nodeSelector", selector);
    let stage1 = |stage1: Value| bridge_example().set("/spec/stage1", stage1);
    let install = |install: Value| bridge_example().set("/spec/rkt/install", install);
    let sha512 = "0123456789abcdefABCDEF".repeat(6)[..128].to_owned();
    let custom = |config: Value| {
        bridge_example().set(
            "/spec/network/contained",
            json!({"plugin": "Custom", "custom": {"config": config}}),
        )
    };
    vec![
        ("an IPv4 /30 with its first host as gateway", bridge(json!({"subnet": "10.22.0.0/30", "gateway": "10.22.0.1"}))),
        ("an IPv4 /30 with its last host as gateway", bridge(json!({"subnet": "10.22.0.0/30", "gateway": "10.22.0.2"}))),
        ("the host below a /26's broadcast", bridge(json!({"subnet": "192.168.7.128/26", "gateway": "192.168.7.190"}))),
        ("an IPv6 /126", bridge(json!({"subnet": "fd00::/126", "gateway": "fd00::3", "routes": [{"dst": "::/0"}]}))),
        ("a bridge named a.b", bridge(json!({"name": "a.b"}))),
        ("a prefixed label key and an empty value", selector(json!({"matchLabels": {"node.example.com/pool": ""}}))),
        ("a 63-character label name", selector(json!({"matchExpressions": [{"key": "a".repeat(63), "operator": "Exists"}]}))),
        ("nested plain plugin types", custom(json!({"type": "flannel", "delegate": {"type": "bridge", "ipam": {"type": "host-local"}}}))),
        ("a stage1 location on an IPv6 host with a port", stage1(json!({"location": "http://[fd00::1]:8080/stage1-coreos.aci"}))),
        ("a stage1 location on a docker registry, with a tag", stage1(json!({"location": "docker://quay.io/coreos/stage1:1.30.0"}))),
        ("a stage1 location with user, escapes, query and fragment", stage1(json!({"location": "https://ci:t%40ken@mirror.example/a%20b/stage1.aci?v=1#sha512"}))),
        ("a stage1 location file URL", stage1(json!({"location": "file:///opt/rkt/stage1-coreos.aci"}))),
        ("an install from an https mirror with a port, at the largest size limit", install(json!({"url": "https://mirror.example:8443/rkt/rkt-v1.30.0.tar.gz", "sha512": sha512, "sizeLimit": 4_294_967_296_i64}))),
        ("an install from an archive on the node", install(json!({"url": "file:///var/cache/rkt/rkt-v1.30.0.tar.gz", "sha512": sha512}))),
        ("a signed install", install(json!({"url": "https://mirror.example/rkt-v1.30.0.tar.gz", "sha512": sha512, "signatureUrl": "https://mirror.example/rkt-v1.30.0.tar.gz.asc"}))),
        ("chained plain plugin types", custom(json!({"type": "bridge", "plugins": [{"type": "bridge", "ipam": {"type": "host-local"}}, {"type": "portmap"}]}))),
    ]
    .into_iter()
    .map(|(why, config)| (why, config.json().clone()))
    .collect()
}

#[tokio::test]
async fn values_at_the_edge_of_each_rule_are_admitted() {
    let api = configs(cluster().client().await);
    for (why, object) in edge_cases() {
        if let Err(error) = dry_run_apply(&api, &object).await {
            panic!("the apiserver refused {why}: {error}");
        }
    }
}

#[tokio::test]
async fn every_invalid_case_is_refused_naming_its_field() {
    let api = configs(cluster().client().await);
    let cases = invalid_cases();
    assert!(
        cases.len() >= 200,
        "the corpus has only {} cases",
        cases.len()
    );
    let mut misses = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        match dry_run_apply(&api, &case.object(index)).await {
            Ok(()) => misses.push(format!("#{index} ({}): admitted", case.why)),
            // Schema and CEL violations are 422 Invalid; server-side apply refuses a value it cannot even type
            // (an unknown field, a string where an object belongs) while building the patch, with a 500.
            Err(kube::Error::Api(status)) if status.message.contains(&case.field) => {}
            Err(error) => misses.push(format!(
                "#{index} ({}): refused, but not naming {}: {error}",
                case.why, case.field
            )),
        }
    }
    assert!(
        misses.is_empty(),
        "{} of {} invalid cases were not refused as expected:\n{}",
        misses.len(),
        cases.len(),
        misses.join("\n")
    );
}

#[tokio::test]
async fn kubectl_explain_describes_the_network() {
    let cluster = cluster();
    // The apiserver publishes a new CRD's OpenAPI a moment after it is established.
    let explained = eventually(
        "kubectl explain rktnodeconfig.spec.network succeeds",
        Duration::from_secs(60),
        async || {
            let output = cluster
                .kubectl()
                .args(["explain", "rktnodeconfig.spec.network"])
                .output()
                .map_err(|error| error.to_string())?;
            if output.status.success() {
                Ok(String::from_utf8_lossy(&output.stdout).into_owned())
            } else {
                Err(String::from_utf8_lossy(&output.stderr).into_owned())
            }
        },
    )
    .await;
    for expected in [
        "KIND:       RktNodeConfig",
        "The pod network of the selected nodes.",
        "mode",
        "How pods are networked",
        "contained",
        "kubernetesCNI",
    ] {
        assert!(
            explained.contains(expected),
            "kubectl explain lacks {expected:?}:\n{explained}"
        );
    }
}
