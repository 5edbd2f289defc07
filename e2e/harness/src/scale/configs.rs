//! The bench's RktNodeConfigs: the three examples of `e2e/examples` (bridge, flannel, Kubernetes CNI), each over
//! its third of the bench nodes, at the bench's `maxUnavailable`; a change that gives every node a new spec; and
//! waiting until the configs report every node on it.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use kube::{
    Api, Client,
    api::{
        ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
    },
};
use serde_json::{Value, json};

use super::cloud_nodes::POOLS;

/// The examples, in the order of [`POOLS`].
pub const EXAMPLES: [&str; 3] = ["bridge", "flannel", "kubernetes-cni"];

fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("rktnetes.io", "v1alpha1", "RktNodeConfig"),
        "rktnodeconfigs",
    )
}

fn api(client: &Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &resource())
}

/// How many of `nodes` bench nodes example `index` selects (node `i` is in pool `i % 3`).
pub fn selected(nodes: usize, index: usize) -> usize {
    nodes / POOLS.len() + usize::from(index < nodes % POOLS.len())
}

/// Creates the examples with `max_unavailable`, read through `kubectl` (which turns the YAML into JSON).
pub async fn create(
    client: &Client,
    kubectl: &Path,
    kubeconfig: &Path,
    examples: &Path,
    max_unavailable: &str,
) -> anyhow::Result<()> {
    for name in EXAMPLES {
        let file = examples.join(format!("{name}.yaml"));
        let output = Command::new(kubectl)
            .args([
                "create",
                "--dry-run=client",
                "--validate=false",
                "-o",
                "json",
                "-f",
            ])
            .arg(&file)
            .env("KUBECONFIG", kubeconfig)
            .output()
            .with_context(|| format!("running {}", kubectl.display()))?;
        if !output.status.success() {
            bail!(
                "kubectl could not read {}: {}",
                file.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let mut config: Value = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("kubectl's JSON of {}", file.display()))?;
        config["spec"]["rollout"]["maxUnavailable"] = json!(max_unavailable);
        let config: DynamicObject = serde_json::from_value(config)?;
        api(client)
            .create(&PostParams::default(), &config)
            .await
            .with_context(|| format!("creating RktNodeConfig {name}"))?;
    }
    Ok(())
}

/// Gives every node a new spec: the rkt API service's endpoint moves to the other of two ports.
pub async fn change(client: &Client, round: usize) -> anyhow::Result<()> {
    let endpoint = format!("localhost:{}", 15441 + round % 2);
    let patch = json!({"spec": {"rkt": {"apiEndpoint": endpoint}}});
    for name in EXAMPLES {
        api(client)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("changing RktNodeConfig {name}"))?;
    }
    Ok(())
}

/// Deletes the examples (the API's default propagation: the garbage collector deletes their states).
pub async fn delete(client: &Client) -> anyhow::Result<()> {
    for name in EXAMPLES {
        match api(client).delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                return Err(error).with_context(|| format!("deleting RktNodeConfig {name}"));
            }
        }
    }
    Ok(())
}

/// Each example's config hash now (empty when it has none yet).
pub async fn hashes(client: &Client) -> anyhow::Result<Vec<String>> {
    let mut hashes = Vec::new();
    for name in EXAMPLES {
        let config = api(client).get(name).await?;
        hashes.push(
            config.data["status"]["configHash"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    Ok(hashes)
}

/// What "done" means for a rollout: every selected node applied the new spec (with agents), or holds it (without).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
    Ready,
    Written,
}

/// Waits until every example reports all its `nodes` on a hash other than `before`'s; returns the time since
/// `since`.
pub async fn wait_rolled_out(
    client: &Client,
    nodes: usize,
    before: &[String],
    done: Done,
    since: Instant,
    limit: Duration,
) -> anyhow::Result<Duration> {
    loop {
        let mut all = true;
        let mut last = String::new();
        for (index, name) in EXAMPLES.iter().enumerate() {
            let config = api(client).get(name).await?;
            let status = &config.data["status"];
            let count = |field: &str| status[field].as_u64().unwrap_or(0) as usize;
            let want = selected(nodes, index);
            let hash = status["configHash"].as_str().unwrap_or_default();
            let counted = match done {
                Done::Ready => count("readyNodes"),
                Done::Written => count("updatedNodes"),
            };
            let current = status["observedGeneration"].as_i64() == config.metadata.generation
                && !hash.is_empty()
                && before.get(index).is_none_or(|old| old != hash)
                && count("matchedNodes") == want
                && counted == want;
            if !current {
                all = false;
                last = format!("{name}: {status}");
            }
        }
        if all {
            return Ok(since.elapsed());
        }
        if since.elapsed() > limit {
            bail!("not rolled out within {} s; {last}", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pools_share_the_nodes() {
        for nodes in [0, 1, 2, 3, 1000, 5000, 20_000] {
            assert_eq!(
                (0..3).map(|index| selected(nodes, index)).sum::<usize>(),
                nodes
            );
        }
        assert_eq!(
            [selected(1000, 0), selected(1000, 1), selected(1000, 2)],
            [334, 333, 333]
        );
    }
}
