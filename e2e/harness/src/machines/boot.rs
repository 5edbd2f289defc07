//! Booting machines: systemd-nspawn in a session of its own (so that it outlives the harness and a caller's
//! process-group kill) and in cgroups of its own, and telling when a machine's systemd has finished booting.
//!
//! Every machine runs in a cgroup of its own below `rktnetes-nodes-<key>` (the key names the nodes directory), at
//! the top of each hierarchy systemd-nspawn uses. Two nspawns in the same cgroup put their containers in the same
//! `payload` cgroup, and then each container's systemd manages the other's services too. The cgroups also find the
//! processes of a machine whose nspawn was killed (its init outlives it); keyed by the nodes directory, they never
//! find another checkout's or cache's machines.

use std::{
    fs::{self, File, OpenOptions},
    io,
    os::fd::{AsRawFd, RawFd},
    os::unix::{ffi::OsStrExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::{Machines, log, mounts, print_tail, remove_file};
use crate::processes::{self, Pid};

/// A short key of a nodes directory: it tells its machines' cgroups and nspawn machine names from those of any other
/// nodes directory on this host (another checkout's, another cache's), which may run at the same time.
pub fn key(nodes_dir: &Path) -> String {
    let digest = Sha256::digest(nodes_dir.as_os_str().as_bytes());
    digest
        .iter()
        .take(6)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The cgroup below which every machine of the nodes directory of `key` has its own.
pub fn cgroup_name(key: &str) -> String {
    format!("rktnetes-nodes-{key}")
}

/// systemd-nspawn's name for machine `name`. It names the host's end of the veth and nspawn's state under
/// `/run/systemd/nspawn`, which must not be shared by two machines of the same name from different nodes
/// directories. (The machine's hostname and node name are `name`, from its `/etc/hostname` and `agent.env`.)
pub fn nspawn_machine(name: &str, key: &str) -> String {
    format!("{name}-{key}")
}

/// A machine's pid file: its systemd-nspawn.
pub fn pid_file(nodes_dir: &Path, name: &str) -> PathBuf {
    nodes_dir.join(format!("{name}.pid"))
}

/// A machine's console log.
pub fn console_log(nodes_dir: &Path, name: &str) -> PathBuf {
    nodes_dir.join(format!("{name}.log"))
}

/// Whether `pid` is a systemd-nspawn running a root under `nodes_dir`. Pid files go stale and pids get reused, so a
/// pid alone proves nothing.
pub fn is_ours(pid: Pid, nodes_dir: &Path) -> bool {
    let prefix = format!("--directory={}/", nodes_dir.display());
    pid.program().as_deref() == Some("systemd-nspawn")
        && pid
            .command_line()
            .iter()
            .any(|arg| arg.starts_with(&prefix))
}

/// The running systemd-nspawn of machine `name`.
pub fn nspawn_pid(nodes_dir: &Path, name: &str) -> Option<Pid> {
    let directory = format!(
        "--directory={}",
        nodes_dir.join(name).join("root").display()
    );
    Pid::from_file(&pid_file(nodes_dir, name)).filter(|pid| {
        pid.alive() && is_ours(*pid, nodes_dir) && pid.command_line().contains(&directory)
    })
}

/// The machine's init: the child of its nspawn that lives in a pid namespace of its own (while the container is
/// being set up, nspawn has another child, in nspawn's pid namespace).
pub fn init_pid(nodes_dir: &Path, name: &str) -> Option<Pid> {
    let nspawn = nspawn_pid(nodes_dir, name)?;
    let host_namespace = nspawn.namespace("pid")?;
    processes::find(|pid| pid.parent() == Some(nspawn))
        .into_iter()
        .find(|child| {
            child
                .namespace("pid")
                .is_some_and(|namespace| namespace != host_namespace)
        })
}

/// Boots machine `name` from its root, in the background; returns its systemd-nspawn.
pub fn boot(machines: &Machines, name: &str) -> anyhow::Result<Pid> {
    let nodes_dir = &machines.nodes_dir;
    let hierarchies = mounts::cgroup_hierarchies(&mounts::mounts()?);
    if hierarchies.is_empty() {
        bail!("no cgroup2 or name=systemd cgroup hierarchy is mounted (see /proc/self/mountinfo)");
    }
    // Opened here, written in the child before it becomes systemd-nspawn: from its first instruction on, nspawn
    // and everything it starts is in the machine's cgroups.
    let mut cgroup_procs: Vec<File> = Vec::new();
    for hierarchy in &hierarchies {
        let cgroup = hierarchy.join(&machines.cgroup).join(name);
        fs::create_dir_all(&cgroup).with_context(|| format!("creating {}", cgroup.display()))?;
        let procs = cgroup.join("cgroup.procs");
        cgroup_procs.push(
            OpenOptions::new()
                .write(true)
                .open(&procs)
                .with_context(|| format!("opening {}", procs.display()))?,
        );
    }
    let fds: Vec<RawFd> = cgroup_procs.iter().map(AsRawFd::as_raw_fd).collect();
    let pid_path = pid_file(nodes_dir, name);
    remove_file(&pid_path)?;
    let log_path = console_log(nodes_dir, name);
    let console =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let root = nodes_dir.join(name).join("root");
    let bind = |binary: &str, at: &str| {
        format!("--bind-ro={}:{at}", machines.bin_dir.join(binary).display())
    };
    let mut nspawn = Command::new("systemd-nspawn");
    nspawn
        .args(["--boot", "--register=no", "--keep-unit"])
        .arg(format!("--directory={}", root.display()))
        .arg(format!("--machine={}", nspawn_machine(name, &machines.key)))
        .arg(format!("--network-bridge={}", machines.bridge))
        .arg(bind("rktnetes", "/usr/local/bin/rktnetes"))
        .arg(bind("rkt", "/usr/bin/rkt"))
        .args(["--console=read-only", "--link-journal=no"])
        .stdin(Stdio::null())
        .stdout(console.try_clone().context("the console log")?)
        .stderr(console);
    // SAFETY: between fork and exec the child only makes async-signal-safe system calls (setsid, write) on
    // memory allocated before the fork. Writing "0" to cgroup.procs moves the writing process.
    unsafe {
        nspawn.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            for fd in &fds {
                if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = nspawn.spawn().with_context(|| {
        format!(
            "starting systemd-nspawn for {name} (see {})",
            log_path.display()
        )
    })?;
    drop(cgroup_procs);
    let pid = Pid(i32::try_from(child.id()).context("a pid that fits an i32")?);
    fs::write(&pid_path, format!("{}\n", pid.0))
        .with_context(|| format!("writing {}", pid_path.display()))?;
    Ok(pid)
}

/// Waits until every machine's systemd has finished booting and answers on D-Bus; logs the failed units of a
/// degraded one.
pub fn wait_booted(machines: &Machines, names: &[String]) -> anyhow::Result<()> {
    let nodes_dir = &machines.nodes_dir;
    let deadline = Instant::now() + machines.boot_timeout;
    for name in names {
        let log_path = console_log(nodes_dir, name);
        let state = loop {
            let mut state = String::new();
            if init_pid(nodes_dir, name).is_some() {
                state = machines.quiet_output(name, &["systemctl", "is-system-running"]);
                if (state == "running" || state == "degraded")
                    && machines
                        .command(
                            name,
                            &[
                                "busctl",
                                "get-property",
                                "org.freedesktop.systemd1",
                                "/org/freedesktop/systemd1",
                                "org.freedesktop.systemd1.Manager",
                                "Version",
                            ],
                        )?
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|status| status.success())
                {
                    break state;
                }
            } else if !Pid::from_file(&pid_file(nodes_dir, name)).is_some_and(Pid::alive) {
                print_tail(&log_path, 30);
                bail!(
                    "{name} exited while booting; its console is in {}",
                    log_path.display()
                );
            }
            if Instant::now() >= deadline {
                print_tail(&log_path, 30);
                bail!(
                    "{name} did not finish booting within {} s (systemd: {}); see {}",
                    machines.boot_timeout.as_secs(),
                    if state.is_empty() {
                        "not answering"
                    } else {
                        &state
                    },
                    log_path.display()
                );
            }
            thread::sleep(Duration::from_millis(200));
        };
        if state == "degraded" {
            let failed = machines.quiet_output(
                name,
                &[
                    "systemctl",
                    "list-units",
                    "--failed",
                    "--plain",
                    "--no-legend",
                ],
            );
            let units: Vec<&str> = failed
                .lines()
                .filter_map(|line| line.split_whitespace().next())
                .collect();
            log(format!(
                "{name} is degraded; failed units: {}",
                units.join(" ")
            ));
        }
    }
    Ok(())
}

/// Every process in the machines' cgroups: the containers of nspawns that were killed.
pub fn cgroup_pids(hierarchies: &[PathBuf], cgroup: &str) -> Vec<Pid> {
    let mut pids = Vec::new();
    for hierarchy in hierarchies {
        collect_cgroup_pids(&hierarchy.join(cgroup), &mut pids);
    }
    pids.sort();
    pids.dedup();
    pids
}

fn collect_cgroup_pids(cgroup: &Path, pids: &mut Vec<Pid>) {
    if let Ok(procs) = fs::read_to_string(cgroup.join("cgroup.procs")) {
        pids.extend(
            procs
                .lines()
                .filter_map(|line| line.trim().parse().ok())
                .map(Pid),
        );
    }
    for entry in fs::read_dir(cgroup).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            collect_cgroup_pids(&entry.path(), pids);
        }
    }
}

/// Removes the machines' cgroups, deepest first; one that still holds a process stays.
pub fn remove_cgroups(hierarchies: &[PathBuf], cgroup: &str) {
    fn remove(cgroup: &Path) {
        for entry in fs::read_dir(cgroup).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                remove(&entry.path());
            }
        }
        // A cgroup with processes refuses (EBUSY); teardown has killed them, so this is only a leftover of a race.
        let _ = fs::remove_dir(cgroup);
    }
    for hierarchy in hierarchies {
        let ours = hierarchy.join(cgroup);
        if ours.is_dir() {
            remove(&ours);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_nodes_directory_has_cgroups_and_machine_names_of_its_own() {
        let default = key(Path::new("/root/.cache/rktnetes/nodes"));
        assert_eq!(default.len(), 12);
        assert_eq!(default, key(Path::new("/root/.cache/rktnetes/nodes")));
        let other = key(Path::new("/tmp/other-cache/nodes"));
        assert_ne!(default, other);
        assert_eq!(cgroup_name(&default), format!("rktnetes-nodes-{default}"));
        assert_ne!(
            nspawn_machine("rktnetes-node-1", &default),
            nspawn_machine("rktnetes-node-1", &other)
        );
        // machined's limit for a machine name.
        assert!(nspawn_machine("rktnetes-node-200", &default).len() <= 64);
    }
}
