//! What every machine has in common: the cached Debian root's packages and what is done to it once, before any
//! machine boots from it. The cached root is rebuilt whenever this file changes (its hash is the root's
//! `prepare` key), so what is here and the roots in caches cannot drift apart.

use std::{fs, os::unix::fs::symlink, path::Path, process::Command};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::remove_file;

/// What goes into the root besides debootstrap's minimal base. curl and procps are for people and tests looking
/// around in a machine.
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "containernetworking-plugins",
    "iproute2",
    "iptables",
    "ca-certificates",
    "curl",
    "procps",
];

/// Units that would only wake up at random times in a test (apt downloads, file system checks), and consoles
/// nobody logs in on.
const MASKED_UNITS: &[&str] = &[
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "systemd-pstore.service",
    "console-getty.service",
    "getty@tty1.service",
];

/// The key of this preparation: a hash of this file.
pub fn prepare_key() -> String {
    let digest = Sha256::digest(include_str!("image.rs").as_bytes());
    digest
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Prepares a freshly debootstrapped root.
pub fn prepare(root: &Path) -> anyhow::Result<()> {
    // Each machine gets a machine id of its own at boot time; the image must not carry one.
    write(&root.join("etc/machine-id"), "")?;
    let dbus_id = root.join("var/lib/dbus/machine-id");
    remove_file(&dbus_id)?;
    symlink("/etc/machine-id", &dbus_id)
        .with_context(|| format!("linking {} to /etc/machine-id", dbus_id.display()))?;
    // Machines never install packages; the downloaded .debs and indexes would only make each copy bigger.
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        delete_files_below(&root.join(dir))?;
    }
    // systemd-networkd gives host0 the machine's address, from a file each machine gets.
    chroot_systemctl(root, &["enable", "--quiet", "systemd-networkd.service"])?;
    let mut mask = vec!["mask", "--quiet"];
    mask.extend_from_slice(MASKED_UNITS);
    chroot_systemctl(root, &mask)?;
    write(
        &root.join("etc/systemd/journald.conf.d/10-rktnetes-e2e.conf"),
        "[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n",
    )?;
    // A service that ignores SIGTERM holds up a machine's shutdown for 10 s, not the default 90 s (`down` waits
    // 30 s).
    write(
        &root.join("etc/systemd/system.conf.d/10-rktnetes-e2e.conf"),
        "[Manager]\nDefaultTimeoutStopSec=10s\n",
    )
}

fn write(path: &Path, content: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, content).with_context(|| format!("writing {}", path.display()))
}

fn delete_files_below(dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            delete_files_below(&path)?;
        } else {
            fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?;
        }
    }
    Ok(())
}

fn chroot_systemctl(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("chroot")
        .arg(root)
        .arg("systemctl")
        .args(args)
        .status()
        .with_context(|| format!("running chroot {} systemctl", root.display()))?;
    if !status.success() {
        bail!(
            "chroot {} systemctl {} failed ({status})",
            root.display(),
            args.join(" ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_short_and_stable() {
        assert_eq!(prepare_key().len(), 16);
        assert_eq!(prepare_key(), prepare_key());
    }
}
