//! The test machines of `e2e/nodes.sh` (systemd-nspawn Debian machines behind a host bridge), reached through its
//! commands: which run, at which address, and running commands in them.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, bail};

/// A running machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    pub name: String,
    /// Its address on the host bridge.
    pub address: String,
}

/// `e2e/nodes.sh` of a checkout.
pub struct Machines {
    script: PathBuf,
}

impl Machines {
    /// The machines of the checkout at `repo`.
    pub fn of_checkout(repo: &Path) -> Self {
        Self {
            script: repo.join("e2e/nodes.sh"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.script);
        command.args(args).stderr(Stdio::inherit());
        command
    }

    fn output(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self
            .command(args)
            .output()
            .with_context(|| format!("running {} {}", self.script.display(), args.join(" ")))?;
        if !output.status.success() {
            bail!(
                "{} {} failed ({})",
                self.script.display(),
                args.join(" "),
                output.status
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The running machines, in order.
    pub fn running(&self) -> anyhow::Result<Vec<Machine>> {
        // `status` exits 1 when some machine is stopped; its lines still say which run.
        let output = self
            .command(&["status"])
            .output()
            .with_context(|| format!("running {} status", self.script.display()))?;
        Ok(parse_status(&String::from_utf8_lossy(&output.stdout)))
    }

    /// The address at which the machines reach this host (and its API server).
    pub fn host_address(&self) -> anyhow::Result<String> {
        Ok(self.output(&["host-address"])?.trim().to_owned())
    }

    /// Runs `command` as root in machine `name`; fails when it does.
    pub fn exec(&self, name: &str, command: &[&str]) -> anyhow::Result<String> {
        let mut args = vec!["exec", name, "--"];
        args.extend_from_slice(command);
        self.output(&args)
    }

    /// Writes `content` to `path` in machine `name` with mode 0600, whole (beside it first, then renamed).
    pub fn write_file(&self, name: &str, path: &str, content: &str) -> anyhow::Result<()> {
        let script = format!(
            "set -e; umask 077; mkdir -p \"$(dirname '{path}')\"; cat >'{path}.tmp'; mv '{path}.tmp' '{path}'"
        );
        let mut child = self
            .command(&["exec", name, "--", "sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
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

/// The running machines in `nodes.sh status` lines (`NAME\tSTATE\tADDRESS`).
fn parse_status(status: &str) -> Vec<Machine> {
    status
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let (name, state, address) = (fields.next()?, fields.next()?, fields.next()?);
            (state == "running").then(|| Machine {
                name: name.to_owned(),
                address: address.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_running_machines_count() {
        let status =
            "rktnetes-node-1\trunning\t10.213.0.11\nrktnetes-node-2\tstopped\t10.213.0.12\n";
        assert_eq!(
            parse_status(status),
            [Machine {
                name: "rktnetes-node-1".into(),
                address: "10.213.0.11".into()
            }]
        );
    }
}
