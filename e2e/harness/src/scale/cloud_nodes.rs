//! Node objects shaped like a cloud provider's nodes (the labels, annotations, taints, capacity, addresses, images
//! and conditions a kubelet and a cloud controller give them), about 15 KB each as the API server serves them,
//! made through the real API in the pools the bench's configs select.

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::{
    api::{
        coordination::v1::{Lease, LeaseSpec},
        core::v1::Node,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams},
};
use serde_json::{Value, json};

use crate::node_objects::ORIGIN_LABEL;

/// The origin label's value on the bench's Node objects (the tests' are `machine` and `simulated`).
pub const BENCH_ORIGIN: &str = "scale-bench";

/// The pools of the examples' configs (`e2e/examples`), by the value of their selector's label; node `i` is in
/// pool `i % 3`.
pub const POOL_LABEL: &str = "rktnetes.io/network";
pub const POOLS: [&str; 3] = ["bridge", "flannel", "cni"];

/// Where the kubelets' Leases are.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// How many images each node lists: about half of a node's stored size, as on a busy cloud node.
const IMAGES: usize = 48;

/// The name of bench node `index`.
pub fn name(index: usize) -> String {
    format!("scale-{index:05}")
}

/// The Node object of bench node `index`, with its status (created in one request: the API server keeps a status
/// given on create).
pub fn node(index: usize) -> Value {
    let name = name(index);
    let zone = ["a", "b", "c"][index % 3];
    let address = format!(
        "10.{}.{}.{}",
        64 + index / 65_536,
        (index / 256) % 256,
        index % 256
    );
    let images: Vec<Value> = (0..IMAGES)
        .map(|image| {
            let repository = format!("registry.example.com/platform/service-{image:02}");
            json!({
                "names": [
                    format!("{repository}@sha256:{:064x}", index * IMAGES + image),
                    format!("{repository}:v1.{image}.{}", index % 7),
                ],
                "sizeBytes": 20_000_000 + image * 1_048_576,
            })
        })
        .collect();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": "2026-12-01T00:00:00Z", "lastTransitionTime": "2026-12-01T00:00:00Z",
        })
    };
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/instance-type": "m6i.2xlarge",
                "beta.kubernetes.io/os": "linux",
                "failure-domain.beta.kubernetes.io/region": "eu-west-1",
                "failure-domain.beta.kubernetes.io/zone": format!("eu-west-1{zone}"),
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "node.kubernetes.io/instance-type": "m6i.2xlarge",
                "topology.kubernetes.io/region": "eu-west-1",
                "topology.kubernetes.io/zone": format!("eu-west-1{zone}"),
                "topology.ebs.csi.aws.com/zone": format!("eu-west-1{zone}"),
                "node-pool": format!("pool-{}", index % 10),
                "capacity-type": "on-demand",
                "team": "platform",
                ORIGIN_LABEL: BENCH_ORIGIN,
                POOL_LABEL: POOLS[index % POOLS.len()],
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "csi.volume.kubernetes.io/nodeid": format!(r#"{{"ebs.csi.aws.com":"i-{index:017x}"}}"#),
                "alpha.kubernetes.io/provided-node-ip": address,
                "cluster.x-k8s.io/cluster-name": "production-eu-west-1",
                "cluster.x-k8s.io/machine": format!("production-md-0-{index:05}"),
                "cluster.x-k8s.io/owner-kind": "MachineSet",
                "cluster.x-k8s.io/owner-name": "production-md-0-7c9f8d6b5",
            },
        },
        "spec": {
            "podCIDR": format!("100.{}.{}.0/24", 64 + index / 256 % 64, index % 256),
            "podCIDRs": [format!("100.{}.{}.0/24", 64 + index / 256 % 64, index % 256)],
            "providerID": format!("aws:///eu-west-1{zone}/i-{index:017x}"),
            "taints": [{"key": "dedicated", "value": "platform", "effect": "PreferNoSchedule"}],
        },
        "status": {
            "capacity": {"cpu": "8", "ephemeral-storage": "104845292Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": "32329604Ki", "pods": "110"},
            "allocatable": {"cpu": "7910m", "ephemeral-storage": "95551679124", "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": "31312772Ki", "pods": "110"},
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": address},
                {"type": "InternalDNS", "address": format!("ip-{}.eu-west-1.compute.internal", address.replace('.', "-"))},
                {"type": "Hostname", "address": format!("ip-{}.eu-west-1.compute.internal", address.replace('.', "-"))},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": format!("{:032x}", index),
                "systemUUID": format!("ec2{:05x}-0000-0000-0000-{index:012x}", index),
                "bootID": format!("{:08x}-0000-4000-8000-{index:012x}", index),
                "kernelVersion": "6.1.0-27-cloud-amd64",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": "rkt://1.30.0",
                "kubeletVersion": "v1.37.0",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "images": images,
        },
    })
}

/// The node's Lease in `kube-node-lease`, as its kubelet holds it.
pub fn lease(index: usize) -> Lease {
    let name = name(index);
    Lease {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(LEASE_NAMESPACE.to_owned()),
            labels: Some([(ORIGIN_LABEL.to_owned(), BENCH_ORIGIN.to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name),
            lease_duration_seconds: Some(40),
            ..LeaseSpec::default()
        }),
    }
}

/// Makes bench nodes `0..count` that do not exist yet (with their Leases), `parallel` requests at a time; returns
/// how many it made.
pub async fn ensure(client: &Client, count: usize, parallel: usize) -> anyhow::Result<usize> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let existing = nodes
        .list_metadata(&ListParams::default().labels(&format!("{ORIGIN_LABEL}={BENCH_ORIGIN}")))
        .await
        .context("listing the bench's Node objects")?;
    let have: std::collections::BTreeSet<String> = existing
        .items
        .into_iter()
        .filter_map(|node| node.metadata.name)
        .collect();
    let made = AtomicUsize::new(0);
    stream::iter((0..count).filter(|index| !have.contains(&name(*index))))
        .map(Ok::<_, anyhow::Error>)
        .try_for_each_concurrent(parallel, |index| {
            let (nodes, leases, made) = (&nodes, &leases, &made);
            async move {
                let node: Node = serde_json::from_value(node(index))?;
                nodes
                    .create(&PostParams::default(), &node)
                    .await
                    .with_context(|| format!("creating Node {}", name(index)))?;
                match leases.create(&PostParams::default(), &lease(index)).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 409 => {}
                    Err(error) => {
                        return Err(error)
                            .with_context(|| format!("creating the Lease of {}", name(index)));
                    }
                }
                made.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        })
        .await?;
    Ok(made.into_inner())
}

/// Deletes every bench Node object and Lease.
pub async fn forget(client: &Client) -> anyhow::Result<()> {
    let selector = ListParams::default().labels(&format!("{ORIGIN_LABEL}={BENCH_ORIGIN}"));
    Api::<Node>::all(client.clone())
        .delete_collection(&DeleteParams::default(), &selector)
        .await
        .context("deleting the bench's Node objects")?;
    Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE)
        .delete_collection(&DeleteParams::default(), &selector)
        .await
        .context("deleting the bench's node Leases")?;
    Ok(())
}

/// The size of one bench node as the API server serves it (JSON, managedFields included).
pub async fn served_size(client: &Client) -> anyhow::Result<usize> {
    let node: Value = Api::<Node>::all(client.clone())
        .get(&name(0))
        .await
        .map(|node| serde_json::to_value(node).unwrap_or_default())
        .context("reading a bench node")?;
    Ok(serde_json::to_vec(&node)?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_about_fifteen_kilobytes_and_a_valid_node() {
        let value = node(4321);
        let size = serde_json::to_vec(&value).expect("serializes").len();
        assert!((12_000..18_000).contains(&size), "{size} bytes");
        let node: Node = serde_json::from_value(value).expect("a Node");
        assert_eq!(node.metadata.name.as_deref(), Some("scale-04321"));
        assert_eq!(node.metadata.labels.expect("labels")[POOL_LABEL], "flannel");
        assert_eq!(lease(7).metadata.name.as_deref(), Some("scale-00007"));
    }
}
