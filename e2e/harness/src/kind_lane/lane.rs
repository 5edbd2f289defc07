//! The lane's settings and how it runs its tools: every child gets the lane's environment (the kind tools on the
//! PATH, the Docker engine's DOCKER_HOST, the cluster's name), runs in the checkout, and writes its progress to
//! stderr, so stdout carries only what a caller reads (`kind env`, cargo test's report).

use std::{
    env,
    ffi::OsStr,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context, bail};

use crate::settings::{Settings, env_or};

/// The kind lane of one checkout and one cluster.
pub struct Lane {
    pub settings: Settings,
    /// `RKTNETES_KIND_CLUSTER`: the kind cluster's name; its workers are `<name>-worker`, `<name>-worker2`, ...
    pub cluster: String,
    /// `RKTNETES_KIND_TIMEOUT`: seconds to wait for each step that waits.
    pub timeout: u64,
    /// The engine's socket when the lane uses one of its own (`e2e/kind/engine.sh`); `None` for the default.
    docker_host: Option<String>,
}

impl Lane {
    /// The lane of the checkout this harness was built in, with the settings of the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let cluster = env_or("RKTNETES_KIND_CLUSTER", "rktnetes");
        let timeout = env_or("RKTNETES_KIND_TIMEOUT", "300");
        Ok(Self {
            settings: Settings::from_env()?,
            cluster: valid_cluster_name(&cluster)?.to_owned(),
            timeout: parse_timeout(&timeout)?,
            docker_host: None,
        })
    }

    /// What the lane keeps of its cluster: the kubeconfig, the chart's values, the node image it was made with.
    pub fn state_dir(&self) -> PathBuf {
        self.settings
            .cache
            .join("kind/clusters")
            .join(&self.cluster)
    }

    /// The cluster's admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.state_dir().join("kubeconfig")
    }

    /// The values the chart is installed with, by the lane and by the suite's own `helm upgrade`s.
    pub fn values_file(&self) -> PathBuf {
        self.state_dir().join("values.yaml")
    }

    /// `--timeout` of the tools that wait.
    pub fn timeout_arg(&self) -> String {
        format!("--timeout={}s", self.timeout)
    }

    /// `program` with the lane's environment, in the checkout, its stderr in the log.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(&self.settings.repo)
            .env("RKTNETES_KIND_CLUSTER", &self.cluster)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        if let Ok(path) = self.tools_path(&[]) {
            command.env("PATH", path);
        }
        if let Some(host) = &self.docker_host {
            command.env("DOCKER_HOST", host);
        }
        crate::settings::forget_cargo_run(&mut command);
        command
    }

    /// A script of `e2e/`.
    pub fn script(&self, relative: &str) -> Command {
        self.command(self.settings.script(relative))
    }

    /// `kind`, the lane's build of it when there is one.
    pub fn kind(&self) -> Command {
        let built = self
            .settings
            .kind_tools_bin()
            .map(|bin| bin.join("kind"))
            .ok()
            .filter(|kind| kind.is_file());
        match built {
            Some(kind) => self.command(kind),
            None => self.command("kind"),
        }
    }

    /// Whether there is a kind to ask about clusters.
    pub fn kind_installed(&self) -> bool {
        let built = self
            .settings
            .kind_tools_bin()
            .is_ok_and(|bin| bin.join("kind").is_file());
        built || self.command("kind").arg("version").output().is_ok()
    }

    /// `kubectl` against the cluster, each request bounded so that a stuck API server fails a step instead of
    /// hanging it.
    pub fn kubectl(&self) -> anyhow::Result<Command> {
        let mut command = self.command(self.settings.tools_bin()?.join("kubectl"));
        command
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--request-timeout=30s");
        Ok(command)
    }

    /// Runs `kubectl args`, its output on stderr.
    pub fn kubectl_to_stderr(&self, args: &[&str]) -> anyhow::Result<()> {
        run_to_stderr(
            self.kubectl()?.args(args),
            &format!("kubectl {}", args.join(" ")),
        )
    }

    /// Runs `kubectl args` and returns what it printed.
    pub fn kubectl_output(&self, args: &[&str]) -> anyhow::Result<String> {
        output(
            self.kubectl()?.args(args),
            &format!("kubectl {}", args.join(" ")),
        )
    }

    /// Runs `kubectl args`, keeping its stdout out of the log.
    pub fn kubectl_quiet(&self, args: &[&str]) -> anyhow::Result<()> {
        run_quiet(
            self.kubectl()?.args(args),
            &format!("kubectl {}", args.join(" ")),
        )
    }

    /// `e2e/kind/node-exec.sh NODE -- ...`: a command as root in a node of the cluster.
    pub fn node_exec(&self, node: &str) -> Command {
        let mut command = self.script("kind/node-exec.sh");
        command.args([node, "--"]);
        command
    }

    /// Makes sure a Docker engine answers (`e2e/kind/engine.sh up`: the user's own, or one it starts) and runs every
    /// later child against it.
    pub fn use_engine(&mut self) -> anyhow::Result<()> {
        let printed = output(
            self.script("kind/engine.sh").arg("up"),
            "e2e/kind/engine.sh up",
        )?;
        self.docker_host = docker_host(&printed)?;
        Ok(())
    }

    /// Runs every later child against the engine that `use_engine` found or started before.
    pub fn use_engine_env(&mut self) -> anyhow::Result<()> {
        self.docker_host = docker_host(&self.engine_env()?)?;
        Ok(())
    }

    /// `e2e/kind/engine.sh env`: the engine's `export DOCKER_HOST=...` line, or a comment for the default engine.
    pub fn engine_env(&self) -> anyhow::Result<String> {
        output(
            self.script("kind/engine.sh").arg("env"),
            "e2e/kind/engine.sh env",
        )
    }

    /// Whether some Docker engine answers (`e2e/kind/engine.sh status`).
    pub fn engine_answers(&self) -> bool {
        self.script("kind/engine.sh")
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// The PATH of the suite and of `kind env`: kubectl and helm, then kind's tools, then this process's PATH.
    pub fn suite_path(&self) -> anyhow::Result<String> {
        let tools = self.settings.tools_bin()?;
        Ok(self.tools_path(&[tools])?.to_string_lossy().into_owned())
    }

    /// `first`, the kind tools, then this process's PATH.
    fn tools_path(&self, first: &[PathBuf]) -> anyhow::Result<std::ffi::OsString> {
        let inherited = env::var_os("PATH").unwrap_or_default();
        let dirs = first
            .iter()
            .cloned()
            .chain([self.settings.kind_tools_bin()?])
            .chain(env::split_paths(&inherited));
        env::join_paths(dirs).context("a PATH of the lane's tools")
    }
}

/// Runs `command`, its stdout sent to stderr with the rest of the log; fails naming `what` unless it succeeds.
pub fn run_to_stderr(command: &mut Command, what: &str) -> anyhow::Result<()> {
    command.stdout(std::io::stderr());
    status(command, what)
}

/// Runs `command` with its stdout discarded (its errors still reach stderr); fails naming `what` unless it succeeds.
pub fn run_quiet(command: &mut Command, what: &str) -> anyhow::Result<()> {
    command.stdout(Stdio::null());
    status(command, what)
}

fn status(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Runs `command` and returns its stdout (its stderr goes where the command says: the log, for the lane's
/// commands); fails naming `what` unless it succeeds.
pub fn output(command: &mut Command, what: &str) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !output.status.success() {
        bail!("{what} failed ({})", output.status);
    }
    String::from_utf8(output.stdout).with_context(|| format!("{what} printed something not UTF-8"))
}

/// The Docker engine that `engine.sh up` or `env` names: `export DOCKER_HOST=...`, or only a comment when the
/// default engine answers.
fn docker_host(printed: &str) -> anyhow::Result<Option<String>> {
    let mut host = None;
    for line in printed.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.strip_prefix("export DOCKER_HOST=") {
            Some(value) if !value.is_empty() && !value.contains(['\'', '"', ' ', '$']) => {
                host = Some(value.to_owned());
            }
            _ => bail!("e2e/kind/engine.sh printed what is not a DOCKER_HOST setting: {line:?}"),
        }
    }
    Ok(host)
}

/// `RKTNETES_KIND_TIMEOUT`: whole seconds.
fn parse_timeout(text: &str) -> anyhow::Result<u64> {
    text.parse::<u64>()
        .ok()
        .filter(|_| text.bytes().all(|byte| byte.is_ascii_digit()))
        .with_context(|| format!("RKTNETES_KIND_TIMEOUT is not a number of seconds: '{text}'"))
}

/// `RKTNETES_KIND_CLUSTER`: a name kind accepts, which also makes a valid container and directory name.
fn valid_cluster_name(name: &str) -> anyhow::Result<&str> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    if !valid {
        bail!("RKTNETES_KIND_CLUSTER is not a valid kind cluster name: '{name}'");
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_is_the_lanes_own_or_the_default() {
        assert_eq!(
            docker_host("export DOCKER_HOST=unix:///run/rktnetes-docker/docker.sock\n")
                .expect("parses")
                .as_deref(),
            Some("unix:///run/rktnetes-docker/docker.sock")
        );
        assert_eq!(
            docker_host("# the lane uses the Docker engine that already answers\n")
                .expect("parses"),
            None
        );
        assert!(docker_host("export DOCKER_HOST=$(evil)\n").is_err());
        assert!(docker_host("PATH=/tmp\n").is_err());
    }

    #[test]
    fn the_timeout_is_whole_seconds() {
        assert_eq!(parse_timeout("300").expect("valid"), 300);
        for bad in ["", "5m", "-1", "+5", "1.5", "99999999999999999999999"] {
            let error = parse_timeout(bad).expect_err(bad);
            assert_eq!(
                error.to_string(),
                format!("RKTNETES_KIND_TIMEOUT is not a number of seconds: '{bad}'")
            );
        }
    }

    #[test]
    fn cluster_names_are_what_kind_accepts() {
        for good in ["rktnetes", "ci-2", "a.b"] {
            assert!(valid_cluster_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "Rkt", "a_b", "a/b", ".x"] {
            assert!(valid_cluster_name(bad).is_err(), "{bad}");
        }
    }
}
