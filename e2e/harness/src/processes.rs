//! The harness's daemons (the control plane's components, the machines' systemd-nspawn) found and stopped by what
//! they are, read from `/proc`, never by a pid alone: pid files go stale and pids get reused.

use std::{
    fs,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::bail;

/// A process of this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pid(pub i32);

impl Pid {
    /// Alive and not a zombie (one lingers until its parent reaps it, and is dead too).
    pub fn alive(self) -> bool {
        match fs::read_to_string(format!("/proc/{}/stat", self.0)) {
            // The state follows the command name, which is in parentheses and may hold anything.
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X"),
            Err(_) => false,
        }
    }

    /// Its program and arguments (empty once it is gone, or for a kernel thread).
    pub fn command_line(self) -> Vec<String> {
        fs::read(format!("/proc/{}/cmdline", self.0))
            .map(|bytes| {
                bytes
                    .split(|byte| *byte == 0)
                    .filter(|arg| !arg.is_empty())
                    .map(|arg| String::from_utf8_lossy(arg).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The file name of its program.
    pub fn program(self) -> Option<String> {
        let command_line = self.command_line();
        let program = command_line.first()?;
        Path::new(program)
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
    }

    /// Its parent, while it lives.
    pub fn parent(self) -> Option<Pid> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.0)).ok()?;
        // After the command name in parentheses: the state, then the parent's pid.
        let (_, rest) = stat.rsplit_once(')')?;
        rest.split_whitespace().nth(1)?.parse().ok().map(Pid)
    }

    /// Which namespace of `kind` (`pid`, `mnt`, `net` ...) it is in, as the kernel names it (`pid:[4026531836]`):
    /// two processes are in the same namespace when the names are equal.
    pub fn namespace(self, kind: &str) -> Option<String> {
        fs::read_link(format!("/proc/{}/ns/{kind}", self.0))
            .ok()
            .map(|target| target.to_string_lossy().into_owned())
    }

    /// The pid read from a pid file, if it holds one.
    pub fn from_file(path: &Path) -> Option<Self> {
        fs::read_to_string(path).ok()?.trim().parse().ok().map(Pid)
    }

    fn signal(self, signal: i32) {
        // SAFETY: kill(2) has no memory effects; a pid that is gone makes it fail with ESRCH, which is fine here.
        unsafe {
            libc::kill(self.0, signal);
        }
    }
}

/// Every live process for which `wanted` holds.
pub fn find(wanted: impl Fn(Pid) -> bool) -> Vec<Pid> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<Pid> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok().map(Pid))
        .filter(|pid| pid.alive() && wanted(*pid))
        .collect();
    pids.sort();
    pids
}

/// Waits up to `timeout` for every pid to exit; returns those still alive.
pub fn wait_gone(pids: &[Pid], timeout: Duration) -> Vec<Pid> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<Pid> = pids.iter().copied().filter(|pid| pid.alive()).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM to every pid at once, up to `grace` for them to exit, then SIGKILL to the rest. Fails naming any that
/// survive SIGKILL.
pub fn stop(pids: &[Pid], grace: Duration, what: &str) -> anyhow::Result<()> {
    for pid in pids {
        pid.signal(libc::SIGTERM);
    }
    let left = wait_gone(pids, grace);
    if left.is_empty() {
        return Ok(());
    }
    eprintln!(
        "{what}: {left:?} did not stop within {} s of SIGTERM; killing",
        grace.as_secs()
    );
    kill(&left, what)
}

/// SIGKILL to every pid; fails naming any that survive it for ten seconds.
pub fn kill(pids: &[Pid], what: &str) -> anyhow::Result<()> {
    for pid in pids {
        pid.signal(libc::SIGKILL);
    }
    let left = wait_gone(pids, Duration::from_secs(10));
    if !left.is_empty() {
        bail!("{what}: {left:?} survived SIGKILL");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn a_child_is_found_by_its_command_line_and_stopped() {
        let mut child = Command::new("sleep")
            .arg("3600.25")
            .spawn()
            .expect("sleep runs");
        let pid = Pid(i32::try_from(child.id()).expect("a pid fits"));
        // The parent may run again before the kernel has set the new program's arguments (it wakes the parent
        // early in execve), so an empty command line is read for a moment: look again until it shows.
        let deadline = Instant::now() + Duration::from_secs(5);
        let found = loop {
            let found =
                find(|candidate| candidate.command_line().iter().any(|arg| arg == "3600.25"));
            if !found.is_empty() || Instant::now() >= deadline {
                break found;
            }
            thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(found, vec![pid]);
        assert_eq!(pid.program().as_deref(), Some("sleep"));
        assert_eq!(
            pid.parent(),
            Some(Pid(i32::try_from(std::process::id()).expect("a pid fits")))
        );
        assert!(
            pid.namespace("pid")
                .is_some_and(|pid_namespace| pid_namespace.starts_with("pid:["))
        );
        // Reaped by a thread, as a daemon's parent would: a zombie would count as alive to kill(2).
        let reaper = thread::spawn(move || child.wait());
        stop(&[pid], Duration::from_secs(5), "sleep").expect("stops");
        assert!(!pid.alive());
        reaper.join().expect("joins").expect("waited");
    }
}
