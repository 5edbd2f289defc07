//! The kubelet flags for rkt (seed 003, "Running rktnetes") as a systemd drop-in for `kubelet.service`.
//!
//! The drop-in only sets `KUBELET_RKT_ARGS`: kubelet units differ too much between distributions for the operator
//! to rewrite their `ExecStart`, so the admin references the variable once and the operator keeps it current.

use super::{RenderError, host_file, kubernetes_cni};
use crate::api::{
    HostFile, KubernetesCniNetwork, NetworkMode, RktNodeConfigSpec, host_paths::KUBELET_DROP_IN_DIR,
};

/// systemd reads the drop-ins of `kubelet.service.d` in name order; `20-` comes after the usual `10-kubeadm.conf`.
fn path() -> String {
    format!("{KUBELET_DROP_IN_DIR}/20-rktnetes.conf")
}

/// What the admin reads first when opening the file.
const HEADER: &str = "\
# Managed by rktnetes-operator from the RktNodeConfig that selects this node: edit that, not this file.
# The kubelet flags for running pods with rkt. systemd loads this drop-in with kubelet.service, but the kubelet
# gets the flags only where its ExecStart references the variable, for example in another drop-in:
#   [Service]
#   ExecStart=
#   ExecStart=/usr/bin/kubelet $KUBELET_ARGS $KUBELET_RKT_ARGS
# A change takes effect after `systemctl daemon-reload` and a restart of kubelet.service.
";

/// The drop-in for a node running `spec`; `cni` is the kubelet's CNI network in mode KubernetesCNI.
pub(super) fn render(
    spec: &RktNodeConfigSpec,
    cni: Option<&KubernetesCniNetwork>,
) -> Result<HostFile, RenderError> {
    let flags = flags(spec, cni)?.join(" ");
    let content = format!(
        "{HEADER}[Service]\nEnvironment=\"{}\"\n",
        systemd_quoted(&format!("KUBELET_RKT_ARGS={flags}"))
    );
    Ok(host_file(path(), content))
}

/// The kubelet's flags, in the order seed 003 lists them.
fn flags(
    spec: &RktNodeConfigSpec,
    cni: Option<&KubernetesCniNetwork>,
) -> Result<Vec<String>, RenderError> {
    let mut flags = vec![
        "--container-runtime=rkt".to_owned(),
        format!("--rkt-api-endpoint={}", spec.rkt.api_endpoint),
    ];
    if let Some(path) = spec.rkt.rkt_path() {
        flags.push(format!(
            "--rkt-path={}",
            unsplittable("spec.rkt.path", path)?
        ));
    }
    if let Some(name) = &spec.stage1.name {
        flags.push(format!("--rkt-stage1-image={name}"));
    }
    match (spec.network.mode, cni) {
        // An empty --network-plugin is rkt's contained network.
        (NetworkMode::Contained, _) => {}
        (NetworkMode::KubernetesCni, Some(cni)) => {
            flags.push("--network-plugin=cni".to_owned());
            flags.push(format!(
                "--cni-conf-dir={}",
                unsplittable(
                    "spec.network.kubernetesCNI.confDir",
                    kubernetes_cni::conf_dir(cni)?
                )?
            ));
            flags.push(format!(
                "--cni-bin-dir={}",
                unsplittable("spec.network.kubernetesCNI.binDir", &cni.bin_dir)?
            ));
        }
        (NetworkMode::KubernetesCni, None) => return Err(RenderError::MissingKubernetesCni),
        (NetworkMode::Kubenet, _) => flags.push("--network-plugin=kubenet".to_owned()),
    }
    Ok(flags)
}

/// `value`, when systemd will not split it when expanding `$KUBELET_RKT_ARGS`.
fn unsplittable<'a>(field: &'static str, value: &'a str) -> Result<&'a str, RenderError> {
    if value.chars().any(char::is_whitespace) {
        Err(RenderError::WhitespaceInKubeletFlag {
            field,
            value: value.to_owned(),
        })
    } else {
        Ok(value)
    }
}

/// `value` escaped for a double-quoted systemd setting: quotes and backslashes escaped, `%` doubled (systemd
/// expands specifiers in `Environment=`), control characters as C escapes, so no value can end the line and
/// add a directive of its own.
fn systemd_quoted(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '%' => quoted.push_str("%%"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            control if control.is_ascii_control() => {
                quoted.push_str(&format!("\\x{:02x}", u32::from(control)))
            }
            other => quoted.push(other),
        }
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::{path, render, systemd_quoted};
    use crate::render::{RenderError, test_spec};

    fn environment_line(yaml: &str) -> String {
        let spec = test_spec(yaml);
        let file = render(&spec, spec.network.kubernetes_cni.as_ref()).unwrap();
        assert_eq!(file.path, path());
        assert_eq!(file.mode, 0o644);
        let lines: Vec<&str> = file.content.lines().collect();
        assert!(lines.contains(&"[Service]"), "{}", file.content);
        lines
            .into_iter()
            .find(|line| line.starts_with("Environment="))
            .unwrap()
            .to_owned()
    }

    #[test]
    fn contained_network_leaves_the_network_plugin_empty() {
        assert_eq!(
            environment_line("rkt: {version: 1.30.0}"),
            r#"Environment="KUBELET_RKT_ARGS=--container-runtime=rkt --rkt-api-endpoint=localhost:15441""#
        );
    }

    #[test]
    fn names_the_rkt_binary_and_the_stage1_image_when_set() {
        assert_eq!(
            environment_line(
                "{rkt: {version: 1.30.0, apiEndpoint: 'rkt.local:9000', path: /opt/rkt/rkt}, \
                 stage1: {name: coreos.com/rkt/stage1-coreos, version: 1.30.0}}"
            ),
            r#"Environment="KUBELET_RKT_ARGS=--container-runtime=rkt --rkt-api-endpoint=rkt.local:9000 --rkt-path=/opt/rkt/rkt --rkt-stage1-image=coreos.com/rkt/stage1-coreos""#
        );
    }

    #[test]
    fn kubernetes_cni_names_the_plugin_and_its_directories() {
        assert_eq!(
            environment_line(
                "{rkt: {version: 1.30.0}, network: {mode: KubernetesCNI, kubernetesCNI: \
                 {confDir: /etc/cni/net.d/, binDir: /usr/lib/cni, config: {type: ptp}}}}"
            ),
            r#"Environment="KUBELET_RKT_ARGS=--container-runtime=rkt --rkt-api-endpoint=localhost:15441 --network-plugin=cni --cni-conf-dir=/etc/cni/net.d --cni-bin-dir=/usr/lib/cni""#
        );
    }

    #[test]
    fn kubenet_names_the_plugin() {
        assert_eq!(
            environment_line("{rkt: {version: 1.30.0}, network: {mode: Kubenet}}"),
            r#"Environment="KUBELET_RKT_ARGS=--container-runtime=rkt --rkt-api-endpoint=localhost:15441 --network-plugin=kubenet""#
        );
    }

    #[test]
    fn tells_the_admin_how_to_use_it() {
        let spec = test_spec("rkt: {version: 1.30.0}");
        let content = render(&spec, None).unwrap().content;
        assert!(content.contains("$KUBELET_RKT_ARGS"), "{content}");
        assert!(
            content.contains("Managed by rktnetes-operator"),
            "{content}"
        );
    }

    #[test]
    fn a_path_with_whitespace_is_refused_naming_its_field() {
        let spec = test_spec("rkt: {version: 1.30.0, path: '/opt/my rkt/rkt'}");
        let error = render(&spec, None).unwrap_err();
        assert!(
            matches!(
                error,
                RenderError::WhitespaceInKubeletFlag {
                    field: "spec.rkt.path",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn quoting_keeps_every_value_inside_its_setting() {
        assert_eq!(systemd_quoted(r#"a"b\c%d"#), r#"a\"b\\c%%d"#);
        assert_eq!(
            systemd_quoted("x\nExecStartPre=/bin/sh\x01"),
            "x\\nExecStartPre=/bin/sh\\x01"
        );
    }
}
