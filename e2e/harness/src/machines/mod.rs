//! The test machines of the node end-to-end tier: Debian roots booted with systemd-nspawn, each with its own
//! systemd, D-Bus, network namespace (behind a host bridge), `rkt-api.service` running the project's rkt stand-in,
//! the real CNI plugins, and the rktnetes agent's unit (started once it has a kubeconfig). Making them cluster nodes
//! is the crate root's ([`crate::join`]). Everything lives under `$RKTNETES_CACHE/nodes`; the Debian root is
//! debootstrapped once and cached under `$RKTNETES_CACHE/rootfs`.
//!
//! Settings (environment), the same as `e2e/nodes.sh` always read:
//! - `RKTNETES_BIN_DIR`: where `rktnetes` and `rkt` (the stand-in) are (default `target/debug`); they are
//!   bind-mounted read-only into each machine at `up`, so after a rebuild run `up` again
//! - `RKTNETES_NODE_BRIDGE` (default `rktnetes0`) and `RKTNETES_NODE_NETWORK` (a /24, default `10.213.0.0/24`;
//!   the host takes `.1`, machine `i` `.(10+i)`)
//! - `RKTNETES_NODE_SUITE`: the machines' Debian release (default: this host's, so that binaries built here find
//!   the same libc there); `RKTNETES_DEBIAN_MIRROR`: where debootstrap downloads from (default: apt's mirror here)
//! - `RKTNETES_NODE_ROOT_MODE`: `overlay`, `copy` or `auto` (overlay where the kernel allows it; default)
//! - `RKTNETES_NODE_TIMEOUT`: seconds to wait for the machines to boot (default 120)

mod boot;
mod bridge;
mod debian;
mod image;
mod mounts;
mod network;
mod node;
mod root;
mod teardown;

use std::{
    collections::BTreeMap,
    env, fmt, fs, io,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

pub use self::{
    network::{MAX_MACHINES, NodeNetwork},
    node::{NODE_PREFIX, node_name},
    root::{AGENT_METRICS_PORT, RootMode},
};
use crate::{
    output::{log, print_tail},
    owned_dir::{self, OwnedDir},
    settings::{Settings, env_or},
};

/// The rkt version a machine's stand-in reports unless told otherwise.
pub const DEFAULT_RKT_VERSION: &str = "1.30.0";
/// The machines' PATH for commands run in them.
const NODE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A running machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    pub name: String,
    /// Its address on the host bridge.
    pub address: String,
}

/// A machine that has a root, running or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineStatus {
    pub name: String,
    pub running: bool,
    pub address: String,
}

impl fmt::Display for MachineStatus {
    /// `NAME\tSTATE\tADDRESS`, the line `nodes status` prints.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.running { "running" } else { "stopped" };
        write!(formatter, "{}\t{state}\t{}", self.name, self.address)
    }
}

/// The test machines of a checkout, with this process's settings.
#[derive(Clone, Debug)]
pub struct Machines {
    nodes_dir: PathBuf,
    rootfs_dir: PathBuf,
    /// `e2e/node/`: the units every machine gets.
    node_files: PathBuf,
    bin_dir: PathBuf,
    bridge: String,
    network: NodeNetwork,
    root_mode: RootMode,
    boot_timeout: Duration,
    /// The key of the nodes directory, which the machines' cgroups and nspawn names carry.
    key: String,
    /// The cgroup below which each machine has its own (`rktnetes-nodes-<key>`).
    cgroup: String,
}

impl Machines {
    /// The nodes directory, as the harness owns it (marker `.rktnetes-nodes`).
    fn owned_dir(&self) -> OwnedDir {
        OwnedDir::new(self.nodes_dir.clone(), ".rktnetes-nodes", "nodes dir")
    }

    /// The machines of the checkout at `repo`.
    pub fn of_checkout(repo: &Path) -> anyhow::Result<Self> {
        Self::new(&Settings::of_checkout(repo)?)
    }

    /// The machines as `settings` and the environment describe them; fails naming a setting that is wrong.
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let bin_dir = match env::var_os("RKTNETES_BIN_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => settings.repo.join("target/debug"),
        };
        let timeout = env_or("RKTNETES_NODE_TIMEOUT", "120");
        let boot_timeout = timeout.parse().map(Duration::from_secs).map_err(|_| {
            anyhow::anyhow!("RKTNETES_NODE_TIMEOUT is not a number of seconds: {timeout:?}")
        })?;
        let nodes_dir = settings.nodes_dir();
        let key = boot::key(&nodes_dir);
        Ok(Self {
            cgroup: boot::cgroup_name(&key),
            key,
            nodes_dir,
            rootfs_dir: settings.cache.join("rootfs"),
            node_files: settings.repo.join("e2e/node"),
            bin_dir,
            bridge: settings.node_bridge(),
            network: settings.node_network().parse()?,
            root_mode: env_or("RKTNETES_NODE_ROOT_MODE", "auto").parse()?,
            boot_timeout,
        })
    }

    /// The same machines, booted with the `rktnetes` and `rkt` binaries of `dir` (instead of `RKTNETES_BIN_DIR`).
    pub fn with_binaries(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = dir.into();
        self
    }

    /// Replaces whatever machines exist with `count` fresh ones, `rktnetes-node-1` .. `rktnetes-node-N`, and waits
    /// until each has booted; machine `i`'s stand-in reports `rkt_versions[i]` (default [`DEFAULT_RKT_VERSION`]).
    /// Returns their names. If anything fails, no half-made machine stays behind (their console logs do).
    pub fn up(
        &self,
        count: u32,
        rkt_versions: &BTreeMap<u32, String>,
    ) -> anyhow::Result<Vec<String>> {
        if !(1..=MAX_MACHINES).contains(&count) {
            bail!("from 1 to {MAX_MACHINES} nodes, not {count}");
        }
        if let Some((index, version)) = rkt_versions
            .iter()
            .find(|(index, _)| !(1..=count).contains(*index))
        {
            bail!("--rkt-version {index}={version}: there is no node {index}");
        }
        for binary in ["rktnetes", "rkt"] {
            let path = self.bin_dir.join(binary);
            if !is_executable(&path) {
                bail!(
                    "{} is missing; build it (cargo build) or point RKTNETES_BIN_DIR at it",
                    path.display()
                );
            }
        }
        for program in ["systemd-nspawn", "nsenter", "ip", "cp", "chroot"] {
            if !installed(program) {
                bail!("{program} is not installed; run e2e/install-deps.sh");
            }
        }
        // SAFETY: geteuid(2) has no failure mode and no memory effects.
        if unsafe { libc::geteuid() } != 0 {
            bail!("test nodes need root");
        }
        let suite = match env::var("RKTNETES_NODE_SUITE") {
            Ok(suite) if !suite.is_empty() => suite,
            _ => fs::read_to_string("/etc/os-release")
                .ok()
                .and_then(|text| debian::host_suite(&text))
                .context("this host is not Debian; set RKTNETES_NODE_SUITE to a Debian release")?,
        };

        let _lock = owned_dir::acquire(&self.owned_dir())?;
        let start = Instant::now();
        match self.replace(count, rkt_versions, &suite, start) {
            Ok(names) => {
                log(format!(
                    "{count} node(s) up in {} s; consoles in {}/<name>.log",
                    start.elapsed().as_secs(),
                    self.nodes_dir.display()
                ));
                Ok(names)
            }
            Err(error) => {
                log("up failed; removing its nodes");
                if let Err(cleanup) = teardown::teardown(self) {
                    log(format!("removing them failed too: {cleanup:#}"));
                }
                Err(error)
            }
        }
    }

    fn replace(
        &self,
        count: u32,
        rkt_versions: &BTreeMap<u32, String>,
        suite: &str,
        start: Instant,
    ) -> anyhow::Result<Vec<String>> {
        teardown::teardown(self)?;
        for entry in fs::read_dir(&self.nodes_dir)
            .with_context(|| format!("reading {}", self.nodes_dir.display()))?
        {
            let entry = entry.with_context(|| format!("reading {}", self.nodes_dir.display()))?;
            let is_console = entry.file_name().to_str().is_some_and(|file| {
                file.strip_suffix(".log")
                    .is_some_and(|name| node::node_index(name).is_some())
            });
            if is_console {
                remove_file(&entry.path())?;
            }
        }
        // Not `rootfs/<suite>`, the root `e2e/nodes.sh` built before it was a shim: an older checkout running on
        // the same machine would otherwise rebuild that root under this one's machines, and back.
        let cached = self.rootfs_dir.join(format!("nspawn-{suite}"));
        debian::CachedRoot {
            root: cached.clone(),
            suite,
            packages: image::PACKAGES,
            mirror: env::var("RKTNETES_DEBIAN_MIRROR")
                .ok()
                .filter(|mirror| !mirror.is_empty()),
            prepare: image::prepare,
            prepare_key: image::prepare_key(),
        }
        .ensure()?;
        bridge::ensure(&self.bridge, self.network)?;

        let mut names = Vec::new();
        let mut mode = self.root_mode;
        for index in 1..=count {
            let name = node_name(index);
            let dir = self.nodes_dir.join(&name);
            mode = root::make(&cached, &dir, self.root_mode)
                .with_context(|| format!("making {name}'s root"))?;
            let identity = root::Identity {
                name: &name,
                address: self.network.machine(index)?,
                gateway: self.network.host(),
                rkt_version: rkt_versions
                    .get(&index)
                    .map_or(DEFAULT_RKT_VERSION, String::as_str),
            };
            root::configure(&dir.join("root"), &self.node_files, &identity)
                .with_context(|| format!("configuring {name}"))?;
            names.push(name);
        }
        log(format!(
            "node roots made ({mode}) in {} s; booting {}",
            start.elapsed().as_secs(),
            names.join(" ")
        ));
        for name in &names {
            boot::boot(self, name)?;
        }
        boot::wait_booted(self, &names)?;
        Ok(names)
    }

    /// Stops every machine (cleanly, then by force), deletes their roots and removes the bridge; harmless when
    /// nothing runs.
    pub fn down(&self) -> anyhow::Result<()> {
        let start = Instant::now();
        let _lock = owned_dir::acquire(&self.owned_dir())?;
        teardown::teardown(self)?;
        bridge::remove(&self.bridge)?;
        log(format!("nodes down in {} s", start.elapsed().as_secs()));
        Ok(())
    }

    /// Every machine that has a root, in order, running or not.
    pub fn status(&self) -> anyhow::Result<Vec<MachineStatus>> {
        let entries: Vec<String> = match fs::read_dir(&self.nodes_dir) {
            Ok(entries) => entries
                .filter_map(|entry| {
                    let entry = entry.ok()?;
                    entry.file_type().ok()?.is_dir().then_some(())?;
                    entry.file_name().into_string().ok()
                })
                .collect(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(error) => {
                return Err(error).with_context(|| format!("reading {}", self.nodes_dir.display()));
            }
        };
        node::machine_names(entries.iter().map(String::as_str))
            .into_iter()
            .map(|name| {
                let index = node::node_index(&name).context("a machine's index")?;
                Ok(MachineStatus {
                    running: boot::init_pid(&self.nodes_dir, &name).is_some(),
                    address: self.network.machine(index)?.to_string(),
                    name,
                })
            })
            .collect()
    }

    /// The running machines, in order.
    pub fn running(&self) -> anyhow::Result<Vec<Machine>> {
        Ok(self
            .status()?
            .into_iter()
            .filter(|machine| machine.running)
            .map(|machine| Machine {
                name: machine.name,
                address: machine.address,
            })
            .collect())
    }

    /// The address at which the machines reach this host (and its API server).
    pub fn host_address(&self) -> anyhow::Result<String> {
        Ok(self.network.host().to_string())
    }

    /// A command that runs `command` as root in machine `node` (its name or its index), in all its namespaces and
    /// with a clean environment (PATH, HOME, LANG, and TERM if set here). Fails when there is no such machine or it
    /// is not running.
    pub fn command(&self, node: &str, command: &[&str]) -> anyhow::Result<Command> {
        let name = node::resolve(node);
        if command.is_empty() {
            bail!("no command to run in {name}");
        }
        if !self.nodes_dir.join(&name).is_dir() {
            bail!("no node named {name} (see: e2e/nodes.sh status)");
        }
        let init = boot::init_pid(&self.nodes_dir, &name)
            .with_context(|| format!("{name} is not running"))?;
        let mut nsenter = Command::new("nsenter");
        nsenter
            .arg("--target")
            .arg(init.0.to_string())
            .args([
                "--mount", "--uts", "--ipc", "--net", "--pid", "--root", "--wd", "--",
            ])
            .args([
                "env",
                "-i",
                &format!("PATH={NODE_PATH}"),
                "HOME=/root",
                "LANG=C.UTF-8",
            ]);
        if let Ok(term) = env::var("TERM")
            && !term.is_empty()
        {
            nsenter.arg(format!("TERM={term}"));
        }
        nsenter.args(command);
        Ok(nsenter)
    }

    /// Runs `command` as root in machine `name`, its stderr passed through; its stdout. Fails when it does.
    pub fn exec(&self, name: &str, command: &[&str]) -> anyhow::Result<String> {
        let output = self
            .command(name, command)?
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {} in {name}", command.join(" ")))?;
        if !output.status.success() {
            bail!("{} failed in {name} ({})", command.join(" "), output.status);
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Machine `node`'s root as the host sees it (`/proc/<its init>/root`): its files, read without entering it.
    pub fn root_of(&self, node: &str) -> anyhow::Result<PathBuf> {
        let name = node::resolve(node);
        let init = boot::init_pid(&self.nodes_dir, &name)
            .with_context(|| format!("{name} is not running"))?;
        Ok(PathBuf::from(format!("/proc/{}/root", init.0)))
    }

    /// What `command` prints in machine `name`, trimmed, whatever its status; empty when it cannot run. For polling.
    fn quiet_output(&self, name: &str, command: &[&str]) -> String {
        self.command(name, command)
            .ok()
            .and_then(|mut command| command.stderr(Stdio::null()).output().ok())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .unwrap_or_default()
    }

    /// Writes `content` to `path` in machine `name` with mode 0600, whole (beside it first, then renamed).
    pub fn write_file(&self, name: &str, path: &str, content: &str) -> anyhow::Result<()> {
        let script = format!(
            "set -e; umask 077; mkdir -p \"$(dirname '{path}')\"; cat >'{path}.tmp'; mv '{path}.tmp' '{path}'"
        );
        let mut child = self
            .command(name, &["sh", "-c", &script])?
            .stdin(Stdio::piped())
            .spawn()
            .with_context(|| format!("writing {path} in {name}"))?;
        child
            .stdin
            .take()
            .context("the machine's stdin")?
            .write_all(content.as_bytes())
            .with_context(|| format!("writing {path} in {name}"))?;
        let status = child.wait()?;
        if !status.success() {
            bail!("writing {path} in {name} failed ({status})");
        }
        Ok(())
    }
}

/// Whether `program` is on this process's PATH.
fn installed(program: &str) -> bool {
    env::var_os("PATH")
        .is_some_and(|path| env::split_paths(&path).any(|dir| is_executable(&dir.join(program))))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// Deletes a file; one that is not there is fine.
fn remove_file(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("deleting {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_name_state_address() {
        let line = MachineStatus {
            name: "rktnetes-node-2".into(),
            running: false,
            address: "10.213.0.12".into(),
        };
        assert_eq!(line.to_string(), "rktnetes-node-2\tstopped\t10.213.0.12");
    }
}
