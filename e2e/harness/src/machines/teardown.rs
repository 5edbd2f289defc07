//! Stopping every machine and deleting its state, including what a killed run left: stale pid files, systemd-nspawn
//! processes no pid file names, containers whose nspawn was killed, mounts. The console logs stay until the next
//! `up`, for a post-mortem.

use std::{fs, time::Duration};

use anyhow::Context;

use super::{Machines, boot, log, mounts, node, remove_file};
use crate::processes;

/// How long systemd-nspawn gets to power its container off after SIGTERM (the machines' services get 10 s each).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// SIGKILL rounds for a machine's leftover processes: a dying systemd may still have started one more.
const KILL_ROUNDS: usize = 3;

/// Stops and deletes every machine of `machines`; harmless when there are none.
pub fn teardown(machines: &Machines) -> anyhow::Result<()> {
    let nodes_dir = &machines.nodes_dir;
    // Every nspawn of ours, with or without a pid file.
    let nspawns = processes::find(|pid| boot::is_ours(pid, nodes_dir));
    if !nspawns.is_empty() {
        // SIGTERM makes systemd-nspawn power its container off, cleanly; all at once, as a shutdown takes a while.
        log(format!("stopping {} node(s)", nspawns.len()));
        processes::stop(&nspawns, SHUTDOWN_GRACE, "systemd-nspawn")?;
    }
    // A killed nspawn leaves its container running; the machines' cgroups still hold it.
    let hierarchies = mounts::cgroup_hierarchies(&mounts::mounts()?);
    for _ in 0..KILL_ROUNDS {
        let leftovers = boot::cgroup_pids(&hierarchies, &machines.cgroup);
        if leftovers.is_empty() {
            break;
        }
        log(format!(
            "killing {} leftover node process(es)",
            leftovers.len()
        ));
        processes::kill(&leftovers, "leftover node processes")?;
    }
    let survivors = boot::cgroup_pids(&hierarchies, &machines.cgroup);
    if !survivors.is_empty() {
        anyhow::bail!(
            "node processes {survivors:?} are still in the {} cgroups after {KILL_ROUNDS} rounds of SIGKILL",
            machines.cgroup
        );
    }
    boot::remove_cgroups(&hierarchies, &machines.cgroup);
    if !nodes_dir.is_dir() {
        return Ok(());
    }
    mounts::unmount_under(nodes_dir)?;
    let entries: Vec<String> = fs::read_dir(nodes_dir)
        .with_context(|| format!("reading {}", nodes_dir.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    for name in node::machine_names(entries.iter().map(String::as_str)) {
        mounts::remove_tree(&nodes_dir.join(&name))?;
    }
    let pid_files = entries
        .iter()
        .filter_map(|entry| entry.strip_suffix(".pid"))
        .filter(|name| node::node_index(name).is_some());
    for name in pid_files {
        let path = boot::pid_file(nodes_dir, name);
        remove_file(&path)?;
    }
    Ok(())
}
