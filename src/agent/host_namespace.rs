//! The node's own programs, run where they are: in the host's mount namespace.
//!
//! In its pod the agent sees its image's filesystem plus the host directories it mounts, so `rkt` (or the
//! `spec.rkt.path` of a RktNodeState) would resolve inside the image. With the host's PID namespace (hostPID, which
//! stage1-fly gives every pod anyway), `/proc/1/ns/mnt` is the mount namespace of the node's init: a child process
//! joins it before it executes the program, and the agent itself stays where it is.

use std::{
    fs::File,
    io,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use tokio::process::Command;

/// The search path for the node's programs, as a root shell on the node has it.
const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
#[error("cannot open the host's mount namespace {path}: {source}")]
pub struct HostNamespaceError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// Where the node's programs run: the agent's own mount namespace, or the host's.
#[derive(Debug)]
pub enum HostPrograms {
    /// The agent runs on the host (a systemd unit, or a pod already in the host's mount namespace).
    Here,
    /// Programs join this mount namespace first.
    InNamespace { path: PathBuf, namespace: File },
}

impl HostPrograms {
    /// Programs run in the mount namespace at `path` (such as `/proc/1/ns/mnt`), or here when none is given or when
    /// it is the agent's own.
    pub fn new(path: Option<&Path>) -> Result<Self, HostNamespaceError> {
        let Some(path) = path else {
            return Ok(Self::Here);
        };
        let error = |source| HostNamespaceError {
            path: path.to_owned(),
            source,
        };
        let namespace = File::open(path).map_err(error)?;
        let theirs = namespace.metadata().map_err(error)?;
        let ours = std::fs::metadata("/proc/self/ns/mnt").map_err(error)?;
        if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
            return Ok(Self::Here);
        }
        Ok(Self::InNamespace {
            path: path.to_owned(),
            namespace,
        })
    }

    /// A command for the node's program `program` (a name, looked up in the node's PATH, or a path on the node).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("PATH", HOST_PATH);
        if let Self::InNamespace { namespace, .. } = self {
            let fd = namespace.as_raw_fd();
            // SAFETY: between fork and exec only async-signal-safe calls are made (setns, chdir), on a descriptor
            // that stays open as long as `self`, which outlives the spawn.
            unsafe {
                command.pre_exec(move || {
                    if libc::setns(fd, libc::CLONE_NEWNS) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    // The working directory was the agent's; "/" is the host's.
                    if libc::chdir(c"/".as_ptr()) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        command
    }

    /// A command for the node's program `program` that runs in a network namespace of its own, new and empty:
    /// while it runs, `/proc/<its pid>/ns/net` is a scratch network namespace.
    pub fn in_new_network_namespace(&self, program: &str) -> Command {
        let mut command = self.command(program);
        // SAFETY: between fork and exec only unshare, async-signal-safe, is called.
        unsafe {
            command.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
    }

    /// Where the programs run, for logs and messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Here => "the agent's own mount namespace".to_owned(),
            Self::InNamespace { path, .. } => {
                format!("the host's mount namespace ({})", path.display())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_a_namespace_programs_run_here() {
        let programs = HostPrograms::new(None).unwrap();
        assert!(matches!(programs, HostPrograms::Here));
        let output = programs
            .command("sh")
            .args(["-c", "echo $PATH"])
            .output()
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), HOST_PATH);
    }

    #[test]
    fn the_agents_own_namespace_is_here() {
        let programs = HostPrograms::new(Some(Path::new("/proc/self/ns/mnt"))).unwrap();
        assert!(matches!(programs, HostPrograms::Here));
    }

    /// A mount namespace of its own (made with util-linux's `unshare`, as root) with a tmpfs over `dir`: a program
    /// run in it sees the tmpfs's file, one run here does not.
    #[tokio::test]
    async fn programs_run_in_the_given_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().display().to_string();
        let mut other = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs none '{path}' && touch '{path}/only-there' && echo ready && exec sleep 60"
            ))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("util-linux unshare runs");
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(other.stdout.take().unwrap()),
            &mut ready,
        )
        .unwrap();
        assert_eq!(
            ready.trim(),
            "ready",
            "the namespace was not set up (root is needed)"
        );
        let namespace = PathBuf::from(format!("/proc/{}/ns/mnt", other.id()));
        let programs = HostPrograms::new(Some(&namespace)).unwrap();
        assert!(matches!(programs, HostPrograms::InNamespace { .. }));
        let list = |programs: &HostPrograms| {
            let mut command = programs.command("ls");
            command.arg(&path);
            async move { String::from_utf8(command.output().await.unwrap().stdout).unwrap() }
        };
        let there = list(&programs).await;
        let here = list(&HostPrograms::Here).await;
        other.kill().unwrap();
        other.wait().unwrap();
        assert_eq!(there.trim(), "only-there");
        assert_eq!(here.trim(), "");
    }

    #[test]
    fn a_namespace_that_cannot_be_opened_is_an_error_naming_it() {
        let error = HostPrograms::new(Some(Path::new("/proc/0/ns/mnt"))).unwrap_err();
        assert!(error.to_string().contains("/proc/0/ns/mnt"), "{error}");
    }
}
