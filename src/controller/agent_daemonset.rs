//! The agent DaemonSet the controller keeps: one privileged agent on each node labelled for it (every node that some
//! config selects or that still releases our files: see `agent_placement`), run by rkt under its fly stage1 (host
//! mount and network namespaces), with host mounts limited to what the agent writes. Its template depends on the
//! agent's settings only.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    api::{
        apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet},
        core::v1::{
            ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
            HostPathVolumeSource, KeyToPath, ObjectFieldSelector, PodSpec, PodTemplateSpec,
            ResourceRequirements, SecurityContext, Toleration, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};

use super::agent_placement::AGENT_LABEL;
use crate::api::host_paths::{self, AGENT_STATE_DIR, DBUS_SOCKET, HOST_MOUNT_NAMESPACE};
use crate::render::json_hash;

/// The per-pod stage1 override (seed 003): the agent needs the host's mount namespace, so it runs under fly.
pub const STAGE1_OVERRIDE_ANNOTATION: &str = "rkt.alpha.kubernetes.io/stage1-name-override";
pub const STAGE1_FLY: &str = "coreos.com/rkt/stage1-fly";
/// The hash of the DaemonSet the controller last applied; equal hashes mean there is nothing to write.
pub const TEMPLATE_HASH_ANNOTATION: &str = "rktnetes.io/template-hash";

/// How the agent DaemonSet is deployed; from the controller's command line, which the Helm chart sets.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentSettings {
    pub namespace: String,
    pub name: String,
    pub image: String,
    pub image_pull_policy: Option<String>,
    pub service_account: String,
    pub log_level: String,
    pub tolerations: Vec<Toleration>,
    pub resources: Option<ResourceRequirements>,
    pub priority_class_name: Option<String>,
    /// How often the agent checks its node when nothing happens, in seconds.
    pub check_interval_seconds: u64,
    /// A ConfigMap in the agent's namespace whose `ca.crt` holds the certificate authorities that downloads of rkt
    /// releases trust beside the node's own (an internal mirror's).
    pub release_ca_config_map: Option<String>,
    /// A ConfigMap in the agent's namespace whose `keys.asc` holds the armored OpenPGP keys that may sign rkt
    /// releases.
    pub release_keys_config_map: Option<String>,
    /// The port on the node's IP where the agent serves its metrics, if it does.
    pub metrics_port: Option<u16>,
}

/// A file the agent reads from a ConfigMap of the chart's: its volume name, key, directory in the container, and
/// the agent's flag that names it.
struct ConfigMapFile {
    volume: &'static str,
    key: &'static str,
    dir: &'static str,
    flag: &'static str,
}

const RELEASE_CA: ConfigMapFile = ConfigMapFile {
    volume: "release-ca",
    key: "ca.crt",
    dir: "/etc/rktnetes/release-ca",
    flag: "--release-ca-file",
};

const RELEASE_KEYS: ConfigMapFile = ConfigMapFile {
    volume: "release-keys",
    key: "keys.asc",
    dir: "/etc/rktnetes/release-keys",
    flag: "--release-keys-file",
};

impl ConfigMapFile {
    /// Mounts `config_map`'s key read-only and names the file in the agent's arguments.
    fn mount(
        &self,
        config_map: &str,
        volumes: &mut Vec<Volume>,
        mounts: &mut Vec<VolumeMount>,
        args: &mut Vec<String>,
    ) {
        volumes.push(Volume {
            name: self.volume.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map.to_owned(),
                items: Some(vec![KeyToPath {
                    key: self.key.to_owned(),
                    path: self.key.to_owned(),
                    ..KeyToPath::default()
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: self.volume.to_owned(),
            mount_path: self.dir.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        args.push(format!("{}={}/{}", self.flag, self.dir, self.key));
    }
}

/// The agent DaemonSet, on the nodes labelled [`AGENT_LABEL`] with its name.
pub fn agent_daemonset(settings: &AgentSettings) -> DaemonSet {
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "rktnetes-agent".to_owned(),
        ),
        (
            "app.kubernetes.io/instance".to_owned(),
            settings.name.clone(),
        ),
        ("app.kubernetes.io/component".to_owned(), "agent".to_owned()),
    ]);
    let mut metadata_labels = labels.clone();
    metadata_labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        "rktnetes-controller".to_owned(),
    );

    let (mut volumes, mut mounts) = host_mounts();
    let mut args = vec![
        "agent".to_owned(),
        "--node-name=$(NODE_NAME)".to_owned(),
        format!("--check-interval={}", settings.check_interval_seconds),
        format!("--host-mount-namespace={HOST_MOUNT_NAMESPACE}"),
    ];
    if let Some(config_map) = &settings.release_ca_config_map {
        RELEASE_CA.mount(config_map, &mut volumes, &mut mounts, &mut args);
    }
    if let Some(config_map) = &settings.release_keys_config_map {
        RELEASE_KEYS.mount(config_map, &mut volumes, &mut mounts, &mut args);
    }
    let mut env = vec![
        field_env("NODE_NAME", "spec.nodeName"),
        EnvVar {
            name: "RUST_LOG".to_owned(),
            value: Some(settings.log_level.clone()),
            ..EnvVar::default()
        },
    ];
    let mut ports = None;
    if let Some(port) = settings.metrics_port {
        // The agent shares the node's network: its metrics are on the node's own address.
        env.push(field_env("HOST_IP", "status.hostIP"));
        args.push(format!("--metrics-port={port}"));
        args.push("--metrics-ip=$(HOST_IP)".to_owned());
        ports = Some(vec![ContainerPort {
            name: Some("metrics".to_owned()),
            container_port: port.into(),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]);
    }
    let container = Container {
        name: "agent".to_owned(),
        image: Some(settings.image.clone()),
        image_pull_policy: settings.image_pull_policy.clone(),
        args: Some(args),
        env: Some(env),
        ports,
        // Required with the stage1 override (seed 003): fly gives the pod the host's namespaces.
        // The image runs as non-root by default (the controller is `restricted`); the agent writes root-owned files.
        security_context: Some(SecurityContext {
            privileged: Some(true),
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            ..SecurityContext::default()
        }),
        resources: settings.resources.clone(),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let mut daemonset = DaemonSet {
        metadata: ObjectMeta {
            name: Some(settings.name.clone()),
            namespace: Some(settings.namespace.clone()),
            labels: Some(metadata_labels),
            ..ObjectMeta::default()
        },
        spec: DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::Int(1)),
                    ..RollingUpdateDaemonSet::default()
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([(
                        STAGE1_OVERRIDE_ANNOTATION.to_owned(),
                        STAGE1_FLY.to_owned(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(settings.service_account.clone()),
                    // The agent reaches the rkt API service on the node's localhost, and runs the node's own
                    // programs in the mount namespace of the node's init; stage1-fly shares both namespaces with
                    // the host anyway, other runtimes are told to.
                    host_network: Some(true),
                    host_pid: Some(true),
                    dns_policy: Some("ClusterFirstWithHostNet".to_owned()),
                    priority_class_name: settings.priority_class_name.clone(),
                    tolerations: Some(settings.tolerations.clone()),
                    node_selector: Some(BTreeMap::from([(
                        AGENT_LABEL.to_owned(),
                        settings.name.clone(),
                    )])),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DaemonSetSpec::default()
        },
        status: None,
    };
    let hash = template_hash(&daemonset);
    daemonset.metadata.annotations = Some(BTreeMap::from([(
        TEMPLATE_HASH_ANNOTATION.to_owned(),
        hash,
    )]));
    daemonset
}

/// An environment variable from a field of the pod.
fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The hash that identifies a DaemonSet as the controller renders it. (A DaemonSet always serializes; were it not
/// to, every template would hash alike and the controller would write it once more, nothing worse.)
fn template_hash(daemonset: &DaemonSet) -> String {
    json_hash(daemonset).unwrap_or_default()
}

/// The host directories the agent writes (mounted at the same paths: the managed directories and the one of the
/// rkt API service's unit), its state directory, and the D-Bus socket.
fn host_mounts() -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut directories: BTreeSet<String> = host_paths::agent_written_dirs()
        .map(str::to_owned)
        .collect();
    directories.insert(AGENT_STATE_DIR.to_owned());
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let paths = directories
        .into_iter()
        .map(|path| (path, "DirectoryOrCreate"))
        .chain([(DBUS_SOCKET.to_owned(), "Socket")]);
    for (index, (path, kind)) in paths.enumerate() {
        let name = format!("host-{index}");
        volumes.push(Volume {
            name: name.clone(),
            host_path: Some(HostPathVolumeSource {
                path: path.clone(),
                type_: Some(kind.to_owned()),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name,
            mount_path: path,
            ..VolumeMount::default()
        });
    }
    (volumes, mounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AgentSettings {
        AgentSettings {
            namespace: "rktnetes-system".into(),
            name: "rktnetes-agent".into(),
            image: "rktnetes:test".into(),
            image_pull_policy: None,
            service_account: "rktnetes-agent".into(),
            log_level: "info".into(),
            tolerations: vec![Toleration {
                operator: Some("Exists".into()),
                ..Toleration::default()
            }],
            resources: None,
            priority_class_name: None,
            check_interval_seconds: 30,
            release_ca_config_map: None,
            release_keys_config_map: None,
            metrics_port: None,
        }
    }

    #[test]
    fn metrics_are_served_on_the_nodes_address_only_when_a_port_is_set() {
        let container = |settings: &AgentSettings| {
            agent_daemonset(settings)
                .spec
                .template
                .spec
                .unwrap()
                .containers[0]
                .clone()
        };
        let quiet = container(&settings());
        assert!(quiet.ports.is_none());
        assert!(
            !quiet
                .args
                .unwrap()
                .iter()
                .any(|arg| arg.starts_with("--metrics"))
        );
        let serving = container(&AgentSettings {
            metrics_port: Some(9478),
            ..settings()
        });
        let args = serving.args.unwrap();
        assert!(args.contains(&"--metrics-port=9478".to_owned()), "{args:?}");
        assert!(
            args.contains(&"--metrics-ip=$(HOST_IP)".to_owned()),
            "{args:?}"
        );
        let host_ip = serving
            .env
            .unwrap()
            .into_iter()
            .find(|env| env.name == "HOST_IP")
            .expect("HOST_IP");
        assert_eq!(
            host_ip.value_from.unwrap().field_ref.unwrap().field_path,
            "status.hostIP"
        );
        let port = &serving.ports.unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.container_port),
            (Some("metrics"), 9478)
        );
    }

    #[test]
    fn the_agent_runs_privileged_under_stage1_fly_with_its_node_name() {
        let template = agent_daemonset(&settings()).spec.template;
        assert_eq!(
            template.metadata.unwrap().annotations.unwrap()[STAGE1_OVERRIDE_ANNOTATION],
            "coreos.com/rkt/stage1-fly"
        );
        let pod = template.spec.unwrap();
        assert_eq!(pod.host_network, Some(true));
        assert_eq!(pod.host_pid, Some(true), "/proc/1 must be the node's init");
        let container = &pod.containers[0];
        assert_eq!(
            container.security_context.as_ref().unwrap().privileged,
            Some(true)
        );
        assert_eq!(
            container.args.as_deref().unwrap(),
            [
                "agent",
                "--node-name=$(NODE_NAME)",
                "--check-interval=30",
                "--host-mount-namespace=/proc/1/ns/mnt"
            ]
        );
        assert!(
            pod.volumes
                .as_ref()
                .unwrap()
                .iter()
                .all(|volume| volume.config_map.is_none()),
            "no release CA unless one is given"
        );
        let env = container.env.as_ref().unwrap();
        assert_eq!(
            env[0]
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "spec.nodeName"
        );
        assert_eq!(
            pod.node_selector,
            Some(BTreeMap::from([(
                "rktnetes.io/agent".to_owned(),
                "rktnetes-agent".to_owned()
            )])),
            "agents go to the nodes labelled for them"
        );
        assert!(pod.affinity.is_none());
        let paths: Vec<_> = pod
            .volumes
            .unwrap()
            .into_iter()
            .map(|v| v.host_path.unwrap().path)
            .collect();
        assert_eq!(
            paths,
            [
                "/etc/cni/net.d",
                "/etc/rkt/net.d",
                "/etc/rkt/stage1.d",
                "/etc/systemd/system",
                "/etc/systemd/system/kubelet.service.d",
                "/opt/rkt",
                "/var/lib/rktnetes",
                "/run/dbus/system_bus_socket"
            ]
        );
    }

    #[test]
    fn the_template_hash_is_stable_and_follows_the_agents_settings_only() {
        let hash = |daemonset: DaemonSet| {
            daemonset.metadata.annotations.unwrap()[TEMPLATE_HASH_ANNOTATION].clone()
        };
        let first = hash(agent_daemonset(&settings()));
        assert_eq!(first, hash(agent_daemonset(&settings())));
        let mut other = settings();
        other.image = "rktnetes:next".into();
        assert_ne!(first, hash(agent_daemonset(&other)));
    }

    #[test]
    fn a_release_ca_config_map_is_mounted_and_given_to_the_agent() {
        let settings = AgentSettings {
            release_ca_config_map: Some("mirror-ca".into()),
            release_keys_config_map: Some("rkt-keys".into()),
            ..settings()
        };
        let pod = agent_daemonset(&settings).spec.template.spec.unwrap();
        let volume = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|volume| volume.name == "release-ca")
            .expect("the release CA volume");
        assert_eq!(volume.config_map.unwrap().name, "mirror-ca");
        let container = &pod.containers[0];
        let mount = container
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|mount| mount.name == "release-ca")
            .expect("its mount");
        assert_eq!(mount.read_only, Some(true));
        assert!(
            container
                .args
                .as_ref()
                .unwrap()
                .contains(&format!("--release-ca-file={}/ca.crt", mount.mount_path))
        );
        assert!(
            container
                .args
                .as_ref()
                .unwrap()
                .contains(&"--release-keys-file=/etc/rktnetes/release-keys/keys.asc".to_owned())
        );
    }
}
