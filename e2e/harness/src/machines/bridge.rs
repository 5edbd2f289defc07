//! The host bridge the machines' veths join (systemd-nspawn `--network-bridge`), with the host's address on it.
//! It refuses a network that another interface of this host already uses, rather than route it twice.

use std::{path::Path, process::Command};

use anyhow::{Context, bail};

use super::{log, network::NodeNetwork};

/// Creates the bridge unless it is there, gives it the host's address, and brings it up.
pub fn ensure(bridge: &str, network: NodeNetwork) -> anyhow::Result<()> {
    let host = network.host();
    if !Path::new("/sys/class/net").join(bridge).exists() {
        log(format!("creating bridge {bridge} ({host}/24)"));
        ip(&["link", "add", "name", bridge, "type", "bridge"])?;
    }
    if !is_bridge(bridge) {
        bail!("{bridge} exists and is not a bridge (set RKTNETES_NODE_BRIDGE)");
    }
    let addresses = ip(&["-o", "-4", "addr", "show", "to", &network.to_string()])?;
    let others = interfaces_other_than(&addresses, bridge);
    if !others.is_empty() {
        bail!(
            "{network} is already used on {} (set RKTNETES_NODE_NETWORK)",
            others.join(" ")
        );
    }
    ip(&["addr", "replace", &format!("{host}/24"), "dev", bridge])?;
    ip(&["link", "set", "dev", bridge, "up"])?;
    Ok(())
}

/// Deletes the bridge if it is there.
pub fn remove(bridge: &str) -> anyhow::Result<()> {
    if is_bridge(bridge) {
        ip(&["link", "delete", "dev", bridge])?;
        log(format!("removed bridge {bridge}"));
    }
    Ok(())
}

fn is_bridge(name: &str) -> bool {
    Path::new("/sys/class/net")
        .join(name)
        .join("bridge")
        .is_dir()
}

/// Runs `ip`; its stdout.
fn ip(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "ip {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The interfaces in `ip -o -4 addr show` lines (`3: eth0    inet 10.0.0.5/24 ...`) other than `bridge`, each
/// once, sorted.
fn interfaces_other_than(addresses: &str, bridge: &str) -> Vec<String> {
    let mut names: Vec<String> = addresses
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter(|name| *name != bridge)
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_interfaces_on_the_network_are_named_once() {
        let addresses = "7: rktnetes0    inet 10.213.0.1/24 scope global rktnetes0\\       valid_lft forever\n\
                         3: eth1    inet 10.213.0.5/24 scope global eth1\n\
                         3: eth1    inet 10.213.0.6/24 scope global secondary eth1\n";
        assert_eq!(interfaces_other_than(addresses, "rktnetes0"), ["eth1"]);
        assert!(interfaces_other_than("", "rktnetes0").is_empty());
    }
}
