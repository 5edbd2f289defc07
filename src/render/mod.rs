//! Rendering: what a node must have, computed from the `RktNodeConfig` that wins it.
//!
//! One pure function, [`render`], used by the controller (which writes the result into each node's
//! `RktNodeState`) and by `rktnetes render` (which prints it offline), so what an admin previews is what nodes get.
//! The output is byte-for-byte deterministic: the same spec always gives the same files and the same hash.

pub mod api_service_unit;
mod contained_network;
mod hash;
mod json;
mod kubelet;
mod kubernetes_cni;
mod stage1;

pub use hash::json_hash;

use crate::api::{
    HostFile, NetworkMode, RktNodeConfigSpec, RktNodeStateSpec, RktServiceSpec, RktSpec,
    host_paths::{self, RKT_LOCAL_CONFIG_DIR},
    node_state::MAX_FILE_SIZE,
};

/// The permission bits of every rendered file: configuration, readable by rkt, the kubelet and admins.
const FILE_MODE: i32 = 0o644;

/// Everything a node selected by a spec must have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendering {
    /// The files the node must have, sorted by path.
    pub files: Vec<HostFile>,
    /// The rkt the node must run and how to reach its API service.
    pub rkt: RktServiceSpec,
    /// Whether the rkt API service must be restarted after the files change: true when any file is rkt's own.
    pub restart_api_service: bool,
    /// The identity of this rendering: 16 hex digits of SHA-256 over `files`, `rkt` and `restart_api_service`.
    pub hash: String,
}

/// A spec that cannot become files on a node. Admission refuses most of these, but a spec also comes from code or
/// from an object stored under an older CRD, and the renderer is the last check before root-owned files on every
/// node; so they are errors, never panics or guesses, which the controller reports as a condition on the config and
/// `rktnetes render` prints naming the field.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The agent may write CNI configs only below `/etc/cni/net.d`, and a path with empty or `.` segments is not
    /// one it can own.
    #[error(
        "spec.network.kubernetesCNI.confDir: {conf_dir:?} is not a directory the operator may write to: \
         it must be /etc/cni/net.d or a directory inside it, without empty, '.' or '..' segments"
    )]
    UnmanagedCniConfDir {
        /// The confDir as written in the spec.
        conf_dir: String,
    },
    /// The kubelet gets its rkt flags from one environment variable that systemd splits on whitespace, so a
    /// value with whitespace would reach the kubelet as several broken flags.
    #[error(
        "{field}: {value:?} contains whitespace, which cannot be passed to the kubelet in $KUBELET_RKT_ARGS"
    )]
    WhitespaceInKubeletFlag {
        /// The spec field the flag comes from.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// Mode KubernetesCNI without its settings (admission refuses this; a spec built in code may not).
    #[error("spec.network.kubernetesCNI: mode KubernetesCNI requires kubernetesCNI")]
    MissingKubernetesCni,
    /// Plugin Custom without its config (admission refuses this; a spec built in code may not).
    #[error("spec.network.contained.custom: plugin Custom requires custom.config")]
    MissingCustomConfig,
    /// A rendered file is larger than a RktNodeState may carry (a custom CNI config can be).
    #[error(
        "{path}: the rendered file has {size} bytes, more than the {MAX_FILE_SIZE} a node's state may carry"
    )]
    FileTooLarge {
        /// The file's path on the node.
        path: String,
        /// Its size in bytes.
        size: usize,
    },
    /// A rendered file or the hash input could not be serialised as JSON (not expected: every map key is a string).
    #[error("cannot serialise the rendering as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Renders everything a node selected by `spec` must have.
pub fn render(spec: &RktNodeConfigSpec) -> Result<Rendering, RenderError> {
    let mut files = Vec::new();
    let cni = match spec.network.mode {
        NetworkMode::Contained => {
            files.push(contained_network::render(
                &spec.network.contained.clone().unwrap_or_default(),
            )?);
            None
        }
        NetworkMode::KubernetesCni => {
            let cni = spec
                .network
                .kubernetes_cni
                .as_ref()
                .ok_or(RenderError::MissingKubernetesCni)?;
            files.push(kubernetes_cni::render(cni)?);
            Some(cni)
        }
        NetworkMode::Kubenet => None,
    };
    if spec.stage1.is_set() {
        files.push(stage1::render(&spec.stage1)?);
    }
    files.push(kubelet::render(spec, cni)?);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    if let Some(file) = files
        .iter()
        .find(|file| file.content.len() > MAX_FILE_SIZE as usize)
    {
        return Err(RenderError::FileTooLarge {
            path: file.path.clone(),
            size: file.content.len(),
        });
    }

    let rkt = rkt_service(&spec.rkt);
    let restart_api_service = files
        .iter()
        .any(|file| host_paths::is_below(&file.path, RKT_LOCAL_CONFIG_DIR));
    let hash = hash::rendering_hash(&files, &rkt, restart_api_service)?;
    Ok(Rendering {
        files,
        rkt,
        restart_api_service,
        hash,
    })
}

impl Rendering {
    /// The desired state of a node that `config_name` wins, as written to its `RktNodeState`.
    pub fn node_state_spec(&self, config_name: &str) -> RktNodeStateSpec {
        RktNodeStateSpec {
            config_name: config_name.to_owned(),
            files: self.files.clone(),
            hash: self.hash.clone(),
            rkt: self.rkt.clone(),
            restart_api_service: self.restart_api_service,
        }
    }
}

fn rkt_service(rkt: &RktSpec) -> RktServiceSpec {
    RktServiceSpec {
        version: rkt.version.clone(),
        api_endpoint: rkt.api_endpoint.clone(),
        api_service_unit: rkt.api_service_unit.clone(),
        api_service_unit_policy: rkt.api_service_unit_policy,
        path: rkt.path.clone(),
        install: rkt.install.clone(),
    }
}

/// A rendered file with the mode every rendered file has.
fn host_file(path: impl Into<String>, content: String) -> HostFile {
    HostFile {
        path: path.into(),
        content,
        mode: FILE_MODE,
    }
}

/// A spec written as YAML, for tests.
#[cfg(test)]
fn test_spec(yaml: &str) -> RktNodeConfigSpec {
    serde_saphyr::from_str(yaml).unwrap_or_else(|error| panic!("{yaml}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::{Rendering, render, test_spec};
    use crate::api::host_paths;

    fn rendering(yaml: &str) -> Rendering {
        render(&test_spec(yaml)).unwrap_or_else(|error| panic!("{yaml}: {error}"))
    }

    fn paths(rendering: &Rendering) -> Vec<&str> {
        rendering
            .files
            .iter()
            .map(|file| file.path.as_str())
            .collect()
    }

    const BRIDGE: &str = "{rkt: {version: 1.30.0}, network: {contained: {bridge: {mtu: 1460}}}, \
                          stage1: {name: coreos.com/rkt/stage1-coreos, version: 1.30.0}}";

    #[test]
    fn contained_network_writes_rkts_network_and_restarts_its_api_service() {
        let rendering = rendering("rkt: {version: 1.30.0}");
        assert_eq!(
            paths(&rendering),
            [
                "/etc/rkt/net.d/00-rktnetes.conf",
                "/etc/systemd/system/kubelet.service.d/20-rktnetes.conf",
            ]
        );
        assert!(rendering.restart_api_service);
    }

    #[test]
    fn a_stage1_adds_rkts_stage1_file() {
        assert_eq!(
            paths(&rendering(BRIDGE)),
            [
                "/etc/rkt/net.d/00-rktnetes.conf",
                "/etc/rkt/stage1.d/rktnetes.json",
                "/etc/systemd/system/kubelet.service.d/20-rktnetes.conf",
            ]
        );
    }

    #[test]
    fn kubernetes_cni_writes_the_kubelets_network_and_leaves_rkts_api_service_running() {
        let kubernetes_cni = "{rkt: {version: 1.30.0}, network: {mode: KubernetesCNI, kubernetesCNI: \
                              {config: {type: ptp}}}}";
        let rendering = rendering(kubernetes_cni);
        assert_eq!(
            paths(&rendering),
            [
                "/etc/cni/net.d/10-rktnetes.conf",
                "/etc/systemd/system/kubelet.service.d/20-rktnetes.conf",
            ]
        );
        assert!(!rendering.restart_api_service);
    }

    #[test]
    fn kubenet_writes_only_the_kubelet_flags() {
        let rendering = rendering("{rkt: {version: 1.30.0}, network: {mode: Kubenet}}");
        assert_eq!(
            paths(&rendering),
            ["/etc/systemd/system/kubelet.service.d/20-rktnetes.conf"]
        );
        assert!(!rendering.restart_api_service);
    }

    #[test]
    fn any_rkt_file_restarts_rkts_api_service() {
        let rendering = rendering(
            "{rkt: {version: 1.30.0}, network: {mode: Kubenet}, \
             stage1: {location: /usr/lib/rkt/stage1-images/stage1-fly.aci}}",
        );
        assert!(rendering.restart_api_service);
    }

    #[test]
    fn every_file_is_0644_inside_a_managed_root() {
        for yaml in [
            BRIDGE,
            "{rkt: {version: 1.30.0}, network: {mode: KubernetesCNI, kubernetesCNI: {config: {type: ptp}}}, \
             stage1: {name: coreos.com/rkt/stage1-fly, version: 1.30.0}}",
        ] {
            for file in rendering(yaml).files {
                assert_eq!(file.mode, 0o644, "{}", file.path);
                assert!(host_paths::is_managed(&file.path), "{}", file.path);
                assert!(file.content.ends_with('\n'), "{}", file.path);
            }
        }
    }

    #[test]
    fn the_rkt_service_is_the_specs_rkt() {
        let rendering = rendering(
            "rkt: {version: 1.29.0, apiEndpoint: '[::1]:15441', apiServiceUnit: rkt-api@main.service, path: /opt/rkt/rkt}",
        );
        assert_eq!(rendering.rkt.version, "1.29.0");
        assert_eq!(rendering.rkt.api_endpoint, "[::1]:15441");
        assert_eq!(rendering.rkt.api_service_unit, "rkt-api@main.service");
        assert_eq!(rendering.rkt.path.as_deref(), Some("/opt/rkt/rkt"));
    }

    #[test]
    fn rendering_is_deterministic() {
        let first = rendering(BRIDGE);
        assert_eq!(first, rendering(BRIDGE));
        assert_eq!(first.hash.len(), 16);
        assert!(
            first
                .hash
                .chars()
                .all(|digit| digit.is_ascii_hexdigit() && !digit.is_ascii_uppercase())
        );
        // The same custom config with its keys in another order renders to the same bytes.
        let custom = |config: &str| {
            rendering(&format!(
                "{{rkt: {{version: 1.30.0}}, network: {{contained: {{plugin: Custom, custom: {{config: {config}}}}}}}}}"
            ))
        };
        assert_eq!(
            custom("{type: ptp, ipMasq: true, ipam: {type: host-local, subnet: 10.1.0.0/16}}"),
            custom("{ipam: {subnet: 10.1.0.0/16, type: host-local}, ipMasq: true, type: ptp}")
        );
    }

    #[test]
    fn the_hash_changes_with_anything_the_node_gets() {
        let base = rendering(BRIDGE).hash;
        for changed in [
            "{rkt: {version: 1.30.0}, network: {contained: {bridge: {mtu: 1500}}}, \
             stage1: {name: coreos.com/rkt/stage1-coreos, version: 1.30.0}}",
            "{rkt: {version: 1.30.0}, network: {contained: {bridge: {mtu: 1460}}}, \
             stage1: {name: coreos.com/rkt/stage1-coreos, version: 1.29.0}}",
            "{rkt: {version: 1.30.1}, network: {contained: {bridge: {mtu: 1460}}}, \
             stage1: {name: coreos.com/rkt/stage1-coreos, version: 1.30.0}}",
            "{rkt: {version: 1.30.0, apiEndpoint: 'localhost:15442'}, network: {contained: {bridge: {mtu: 1460}}}, \
             stage1: {name: coreos.com/rkt/stage1-coreos, version: 1.30.0}}",
            "{rkt: {version: 1.30.0, apiServiceUnit: rkt.service}, network: {contained: {bridge: {mtu: 1460}}}, \
             stage1: {name: coreos.com/rkt/stage1-coreos, version: 1.30.0}}",
            "{rkt: {version: 1.30.0, path: /usr/bin/rkt}, network: {contained: {bridge: {mtu: 1460}}}, \
             stage1: {name: coreos.com/rkt/stage1-coreos, version: 1.30.0}}",
            "{rkt: {version: 1.30.0}, network: {contained: {bridge: {mtu: 1460}}}}",
        ] {
            assert_ne!(rendering(changed).hash, base, "{changed}");
        }
    }

    #[test]
    fn the_hash_ignores_what_the_node_does_not_get() {
        let base = rendering(BRIDGE).hash;
        let same = rendering(
            "{rkt: {version: 1.30.0}, network: {mode: Contained, contained: {plugin: Bridge, bridge: \
             {name: mybridge, mtu: 1460, subnet: 10.22.0.0/16}}}, \
             stage1: {name: coreos.com/rkt/stage1-coreos, version: 1.30.0}, \
             nodeSelector: {matchLabels: {pool: rkt}}, priority: 7, rollout: {maxUnavailable: 30%, paused: true}}",
        );
        assert_eq!(same.hash, base);
    }

    #[test]
    fn the_node_state_carries_the_whole_rendering() {
        let rendering = rendering(BRIDGE);
        let state = rendering.node_state_spec("bridge");
        assert_eq!(state.config_name, "bridge");
        assert_eq!(state.files, rendering.files);
        assert_eq!(state.hash, rendering.hash);
        assert_eq!(state.rkt, rendering.rkt);
        assert_eq!(state.restart_api_service, rendering.restart_api_service);
    }
}
