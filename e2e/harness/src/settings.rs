//! Where the end-to-end harness finds things, read once from the checkout and the environment: the pinned versions
//! (`e2e/versions.env`, shared with the shell plumbing), the cache outside the clone, the built tools, and the test
//! machines' network. The shell scripts read the same values from `e2e/lib/common.sh`.

use std::{
    collections::BTreeMap,
    env,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};

/// The harness's view of a checkout and this machine.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The checkout's root.
    pub repo: PathBuf,
    /// `$RKTNETES_CACHE`: everything built or downloaded, outside the clone.
    pub cache: PathBuf,
    /// `e2e/versions.env`.
    pub versions: BTreeMap<String, String>,
}

impl Settings {
    /// The checkout this harness was built in, with the environment of this process.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::of_checkout(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
    }

    /// The checkout at `repo`, with the environment of this process.
    pub fn of_checkout(repo: &Path) -> anyhow::Result<Self> {
        let repo = repo
            .canonicalize()
            .with_context(|| format!("the checkout {}", repo.display()))?;
        let path = repo.join("e2e/versions.env");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let versions = parse_env_file(&text).with_context(|| format!("in {}", path.display()))?;
        let cache = match (env::var_os("RKTNETES_CACHE"), env::var_os("XDG_CACHE_HOME")) {
            (Some(cache), _) if !cache.is_empty() => PathBuf::from(cache),
            (_, Some(xdg)) if !xdg.is_empty() => PathBuf::from(xdg).join("rktnetes"),
            _ => PathBuf::from(env::var_os("HOME").context("HOME is not set")?)
                .join(".cache/rktnetes"),
        };
        Ok(Self {
            repo,
            cache,
            versions,
        })
    }

    /// A pinned version from `e2e/versions.env`.
    pub fn version(&self, name: &str) -> anyhow::Result<&str> {
        self.versions
            .get(name)
            .map(String::as_str)
            .with_context(|| format!("e2e/versions.env has no {name}"))
    }

    /// The control plane's binaries and kubectl/helm (`e2e/build-tools.sh`), keyed by their versions.
    pub fn tools_bin(&self) -> anyhow::Result<PathBuf> {
        Ok(self
            .cache
            .join("tools")
            .join(format!(
                "kubernetes-{}-etcd-{}-helm-{}",
                self.version("KUBERNETES_VERSION")?,
                self.version("ETCD_VERSION")?,
                self.version("HELM_VERSION")?
            ))
            .join("bin"))
    }

    /// promtool (`e2e/build-tools.sh`), keyed by the Prometheus module's version.
    pub fn promtool(&self) -> anyhow::Result<PathBuf> {
        Ok(self
            .cache
            .join("tools")
            .join(format!(
                "prometheus-{}",
                self.version("PROMETHEUS_VERSION")?
            ))
            .join("bin/promtool"))
    }

    /// The kind lane's tools (`e2e/build-tools.sh kind`), keyed by their versions.
    pub fn kind_tools_bin(&self) -> anyhow::Result<PathBuf> {
        Ok(self
            .cache
            .join("tools")
            .join(format!(
                "kind-{}-kubernetes-{}-containerd-{}-crictl-{}",
                self.version("KIND_VERSION")?,
                self.version("KUBERNETES_VERSION")?,
                self.version("CONTAINERD_VERSION")?,
                self.version("CRI_TOOLS_VERSION")?
            ))
            .join("bin"))
    }

    /// A script of the checkout's `e2e/` directory.
    pub fn script(&self, relative: &str) -> PathBuf {
        self.repo.join("e2e").join(relative)
    }

    /// The test machines' host bridge network (`RKTNETES_NODE_NETWORK`, a /24; the host is its `.1`).
    pub fn node_network(&self) -> String {
        env_or("RKTNETES_NODE_NETWORK", "10.213.0.0/24")
    }

    /// The test machines' host bridge (`RKTNETES_NODE_BRIDGE`).
    pub fn node_bridge(&self) -> String {
        env_or("RKTNETES_NODE_BRIDGE", "rktnetes0")
    }

    /// Where the test machines' roots, pid files and consoles live.
    pub fn nodes_dir(&self) -> PathBuf {
        self.cache.join("nodes")
    }

    /// The host's address on the machines' bridge: where the machines reach the API server.
    pub fn node_host_address(&self) -> anyhow::Result<String> {
        let network = self.node_network();
        let prefix = network
            .rsplit_once('.')
            .map(|(prefix, _)| prefix)
            .with_context(|| format!("RKTNETES_NODE_NETWORK is not an IPv4 /24: {network:?}"))?;
        Ok(format!("{prefix}.1"))
    }
}

/// Removes from `command`'s environment what `cargo run` told this binary about itself. Left in, it would reach the
/// builds this harness starts (the kind lane's release build, the fuzz targets), and build scripts that watch those
/// variables (ring's) would rebuild, with every crate that depends on them, on each switch between a build started
/// by hand and one started here.
pub fn forget_cargo_run(command: &mut std::process::Command) {
    for (name, _) in env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_run) {
            command.env_remove(name);
        }
    }
}

/// Whether `cargo run` sets `name` for the program it runs (about the package, not the build).
fn set_by_cargo_run(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "OUT_DIR"
        )
}

/// An environment variable, or `default` when it is unset or empty.
pub fn env_or(name: &str, default: &str) -> String {
    match env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => default.to_owned(),
    }
}

/// `KEY=VALUE` lines, `#` comments and blank lines: the subset of shell that `versions.env` may use.
fn parse_env_file(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut values = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((key, value))
                if !key.is_empty()
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !value.contains(['$', '`', '"', '\'', ' ']) =>
            {
                values.insert(key.to_owned(), value.to_owned());
            }
            _ => bail!("line {}: not a plain KEY=VALUE: {line:?}", number + 1),
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_assignments_and_refuses_shell() {
        let values = parse_env_file("# pinned\nA=v1.2.3\n\nB_2=x\n").expect("parses");
        assert_eq!(values.get("A").map(String::as_str), Some("v1.2.3"));
        assert_eq!(values.get("B_2").map(String::as_str), Some("x"));
        assert!(parse_env_file("A=$(date)\n").is_err());
        assert!(parse_env_file("export A=1\n").is_err());
    }

    #[test]
    fn the_checkouts_versions_are_readable() {
        let settings = Settings::from_env().expect("settings");
        assert!(
            settings
                .version("KUBERNETES_VERSION")
                .expect("pinned")
                .starts_with('v')
        );
        assert!(settings.tools_bin().expect("path").ends_with("bin"));
    }

    #[test]
    fn what_cargo_run_says_about_the_harness_stays_out_of_the_builds() {
        for name in [
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
        ] {
            assert!(set_by_cargo_run(name), "{name}");
        }
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "PATH",
            "RUSTFLAGS",
        ] {
            assert!(!set_by_cargo_run(name), "{name}");
        }
    }
}
