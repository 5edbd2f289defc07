//! The kubelet's own CNI networking (`--network-plugin=cni`): the user's CNI config in the kubelet's config
//! directory.

use serde_json::Value;

use super::{RenderError, host_file, json};
use crate::api::{
    HostFile, KubernetesCniNetwork,
    host_paths::{self, CNI_CONF_DIR},
};

/// The kubelet uses the first config of its directory in name order; `10-` leaves room for an admin's `00-` to
/// take precedence on purpose.
const FILE_NAME: &str = "10-rktnetes.conf";

/// The network name when the user's config has none.
const DEFAULT_NETWORK_NAME: &str = "rktnetes";

/// The kubelet's CNI config directory as the kubelet flag and the file path use it: without trailing slashes, and
/// only where the agent may write.
pub(super) fn conf_dir(network: &KubernetesCniNetwork) -> Result<&str, RenderError> {
    let dir = network.conf_dir.trim_end_matches('/');
    let plain_segments = dir
        .split('/')
        .skip(1)
        .all(|segment| !segment.is_empty() && segment != "." && segment != "..");
    // The only CNI config directory the agent may write to, or one inside it.
    if plain_segments && (dir == CNI_CONF_DIR || host_paths::is_below(dir, CNI_CONF_DIR)) {
        Ok(dir)
    } else {
        Err(RenderError::UnmanagedCniConfDir {
            conf_dir: network.conf_dir.clone(),
        })
    }
}

/// The CNI config file in the kubelet's config directory.
pub(super) fn render(network: &KubernetesCniNetwork) -> Result<HostFile, RenderError> {
    let mut config = network.config.clone();
    config
        .entry("name")
        .or_insert_with(|| DEFAULT_NETWORK_NAME.into());
    Ok(host_file(
        format!("{}/{FILE_NAME}", conf_dir(network)?),
        json::file_content(&json::SortedKeys(&Value::Object(config)))?,
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::render;
    use crate::api::{
        KubernetesCniNetwork,
        host_paths::{CNI_CONF_DIR, MANAGED_DIRS},
    };
    use crate::render::RenderError;

    fn network(conf_dir: &str, config: serde_json::Value) -> KubernetesCniNetwork {
        KubernetesCniNetwork {
            conf_dir: conf_dir.to_owned(),
            bin_dir: "/opt/cni/bin".to_owned(),
            config: serde_json::from_value(config).unwrap(),
        }
    }

    #[test]
    fn the_conf_root_is_a_managed_root() {
        assert!(MANAGED_DIRS.contains(&CNI_CONF_DIR));
    }

    #[test]
    fn names_the_network_rktnetes_when_the_config_does_not() {
        let file = render(&network(
            "/etc/cni/net.d",
            json!({"cniVersion": "0.3.1", "type": "ptp"}),
        ))
        .unwrap();
        assert_eq!(file.path, "/etc/cni/net.d/10-rktnetes.conf");
        assert_eq!(file.mode, 0o644);
        assert_eq!(
            file.content,
            "{\n  \"cniVersion\": \"0.3.1\",\n  \"name\": \"rktnetes\",\n  \"type\": \"ptp\"\n}\n"
        );
    }

    #[test]
    fn keeps_the_users_name_and_fields() {
        let config =
            json!({"name": "pods", "type": "ptp", "ipMasq": true, "ipam": {"type": "host-local"}});
        let file = render(&network("/etc/cni/net.d/", config.clone())).unwrap();
        assert_eq!(file.path, "/etc/cni/net.d/10-rktnetes.conf");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&file.content).unwrap(),
            config
        );
    }

    #[test]
    fn accepts_a_directory_inside_the_cni_root() {
        let file = render(&network("/etc/cni/net.d/rkt", json!({"type": "ptp"}))).unwrap();
        assert_eq!(file.path, "/etc/cni/net.d/rkt/10-rktnetes.conf");
    }

    #[test]
    fn refuses_directories_the_agent_may_not_write() {
        for conf_dir in [
            "/etc/kubernetes/cni/net.d",
            "/etc/cni/net.dx",
            "/etc/cni",
            "/etc/rkt/net.d",
            "/etc/cni/net.d/./x",
            "/etc/cni/net.d//x",
        ] {
            let error = render(&network(conf_dir, json!({"type": "ptp"}))).unwrap_err();
            assert!(
                matches!(error, RenderError::UnmanagedCniConfDir { .. }),
                "{conf_dir}: {error}"
            );
            assert!(
                error
                    .to_string()
                    .contains("spec.network.kubernetesCNI.confDir")
            );
        }
    }
}
