//! The host paths the operator knows, each defined here once: the renderer writes below them, the agent writes,
//! watches and restarts by them, the agent DaemonSet mounts them, and the CRD admits files only below the managed
//! ones.

/// rkt's local configuration directory (rkt `Documentation/configuration.md`), where an administrator's settings
/// go. The rkt API service reads it when it starts, so a change below it takes a restart of that service.
pub const RKT_LOCAL_CONFIG_DIR: &str = "/etc/rkt";
/// rkt's contained-network CNI configurations: `net.d` of the local configuration directory.
pub const RKT_NET_DIR: &str = "/etc/rkt/net.d";
/// rkt's default stage1 configuration: `stage1.d` of the local configuration directory.
pub const RKT_STAGE1_DIR: &str = "/etc/rkt/stage1.d";
/// The kubelet's default CNI configuration directory (`--cni-conf-dir`).
pub const CNI_CONF_DIR: &str = "/etc/cni/net.d";
/// Drop-ins of the kubelet's systemd unit, where the kubelet's rkt flags go.
pub const KUBELET_DROP_IN_DIR: &str = "/etc/systemd/system/kubelet.service.d";

/// Where the administrator's systemd unit files are: the agent writes the rkt API service's unit here
/// ([`api_service_unit_path`]), and nothing else directly in it.
pub const SYSTEMD_SYSTEM_DIR: &str = "/etc/systemd/system";

/// The unit file of the rkt API service named `unit` (`RktNodeConfig`'s `spec.rkt.apiServiceUnit`, a unit name
/// the CRD holds to letters, digits and `:_.@-`), which the agent writes unless told not to.
pub fn api_service_unit_path(unit: &str) -> String {
    format!("{SYSTEMD_SYSTEM_DIR}/{unit}")
}

/// Where the rkt binary is when `spec.rkt.path` does not say (rkt's own unit runs it from here).
pub const DEFAULT_RKT_BINARY: &str = "/usr/bin/rkt";

/// The directories an agent may write in. The CRD refuses a file anywhere else, so a compromised controller or a
/// hand edit cannot make an agent write outside rkt's and the kubelet's configuration.
pub const MANAGED_DIRS: [&str; 4] = [
    RKT_NET_DIR,
    RKT_STAGE1_DIR,
    CNI_CONF_DIR,
    KUBELET_DROP_IN_DIR,
];

/// Where a node's rkt binary may be (`spec.rkt.path`): a file named `rkt` directly in one of these directories, or
/// anywhere below [`RKT_INSTALL_TREE`]. The privileged agent runs `<path> version` on every selected node, so the
/// path may not name any other program (`/bin/sh`, a file in `/tmp`).
pub const RKT_BIN_DIRS: [&str; 4] = ["/usr/bin", "/usr/local/bin", "/opt/bin", "/opt/rkt"];
/// Versioned rkt installations, such as `/opt/rkt/v1.30.0/rkt`.
pub const RKT_INSTALL_TREE: &str = "/opt/rkt";

/// The rkt releases the agent installed (`spec.rkt.install`), one directory each, named by version and digest.
pub const RKT_RELEASES_DIR: &str = "/opt/rkt/releases";
/// The symlink to the installed release the node runs; the agent switches it with one rename.
pub const RKT_CURRENT_LINK: &str = "/opt/rkt/current";
/// The rkt binary of the installed release the node runs: the API service's and the kubelet's `rkt`.
pub const INSTALLED_RKT_BINARY: &str = "/opt/rkt/current/rkt";

/// Whether `path` is where `spec.rkt.path` may point: the CRD's rule, checked again by the agent on the node against
/// the path with every symlink resolved, before it runs the file.
pub fn is_rkt_binary(path: &str) -> bool {
    let plain = path.starts_with('/') && !path.split('/').any(|part| part == "." || part == "..");
    plain
        && (RKT_BIN_DIRS
            .iter()
            .any(|dir| path.strip_prefix(dir) == Some("/rkt"))
            || (is_below(path, RKT_INSTALL_TREE) && path.ends_with("/rkt")))
}

/// Where the agent keeps its ledger (what it wrote, for removal and rollback) across restarts; the agent DaemonSet
/// mounts it.
pub const AGENT_STATE_DIR: &str = "/var/lib/rktnetes";
/// The system D-Bus socket, through which the agent asks systemd to restart the rkt API service; the DaemonSet
/// mounts it at this path.
pub const DBUS_SOCKET: &str = "/run/dbus/system_bus_socket";
/// The mount namespace of the node's init (the agent DaemonSet shares the host's PID namespace): the agent runs the
/// node's own programs (`rkt version`, `spec.rkt.path`) in it, so that they resolve on the host, not in its image.
pub const HOST_MOUNT_NAMESPACE: &str = "/proc/1/ns/mnt";

/// Whether `path` is strictly below the directory `dir` (`/etc/rkt/net.d/x` is below `/etc/rkt`; `/etc/rktx` and
/// `/etc/rkt` itself are not).
pub fn is_below(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'))
}

/// The host directories the agent writes in: the [`MANAGED_DIRS`], the one of the rkt API service's unit, and
/// rkt's install tree (the releases it installs and the link to the current one).
pub fn agent_written_dirs() -> impl Iterator<Item = &'static str> {
    MANAGED_DIRS
        .into_iter()
        .chain([SYSTEMD_SYSTEM_DIR, RKT_INSTALL_TREE])
}

/// Whether an agent may write `path`: below one of [`MANAGED_DIRS`].
pub fn is_managed(path: &str) -> bool {
    MANAGED_DIRS.iter().any(|dir| is_below(path, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_file_named_rkt_where_rkt_is_installed_is_a_rkt_binary() {
        for allowed in [
            "/usr/bin/rkt",
            "/usr/local/bin/rkt",
            "/opt/bin/rkt",
            "/opt/rkt/rkt",
            "/opt/rkt/v1.30.0/rkt",
        ] {
            assert!(is_rkt_binary(allowed), "{allowed}");
        }
        for refused in [
            "/bin/sh",
            "/usr/bin/dash",
            "/tmp/rkt",
            "/usr/bin/rktx",
            "/usr/bin/sub/rkt",
            "/opt/rkt/../../tmp/rkt",
            "/usr/bin/./rkt",
            "/opt/rkt",
            "rkt",
        ] {
            assert!(!is_rkt_binary(refused), "{refused}");
        }
    }

    #[test]
    fn below_means_inside_the_directory() {
        assert!(is_below(
            "/etc/rkt/net.d/00-rktnetes.conf",
            RKT_LOCAL_CONFIG_DIR
        ));
        assert!(is_below("/etc/rkt/net.d/00-rktnetes.conf", RKT_NET_DIR));
        assert!(!is_below("/etc/rkt", RKT_LOCAL_CONFIG_DIR));
        assert!(!is_below("/etc/rkt/", RKT_LOCAL_CONFIG_DIR));
        assert!(!is_below("/etc/rktnetes/x", RKT_LOCAL_CONFIG_DIR));
        assert!(!is_below("/etc/cni/net.d.old/x", CNI_CONF_DIR));
    }

    #[test]
    fn managed_paths_are_in_the_managed_directories_only() {
        assert!(is_managed("/etc/cni/net.d/10-rktnetes.conflist"));
        assert!(is_managed(
            "/etc/systemd/system/kubelet.service.d/20-rktnetes.conf"
        ));
        assert!(!is_managed("/etc/rkt/paths.d/x.json"));
        assert!(!is_managed("/var/lib/rktnetes/ledger.json"));
    }
}
