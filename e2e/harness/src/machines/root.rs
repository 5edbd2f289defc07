//! Each machine's own root: an overlay over the cached Debian root (instant, its changes in `upper/`) or a copy,
//! and the files that make the machine itself (identity, address, the units from `e2e/node/` and their
//! per-machine settings).

use std::{
    ffi::CString,
    fmt, fs, io,
    net::Ipv4Addr,
    os::unix::{
        ffi::OsStrExt,
        fs::{PermissionsExt, symlink},
    },
    path::Path,
    process::Command,
    str::FromStr,
};

use anyhow::{Context, bail};

use super::remove_file;

/// How each machine gets its own root (`RKTNETES_NODE_ROOT_MODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootMode {
    /// An overlayfs over the cached root where the kernel allows it, else a copy.
    Auto,
    Overlay,
    /// `cp -a --reflink=auto`.
    Copy,
}

impl FromStr for RootMode {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        match text {
            "auto" => Ok(Self::Auto),
            "overlay" => Ok(Self::Overlay),
            "copy" => Ok(Self::Copy),
            _ => bail!("RKTNETES_NODE_ROOT_MODE must be auto, overlay or copy: {text:?}"),
        }
    }
}

impl fmt::Display for RootMode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::Auto => "auto",
            Self::Overlay => "overlay",
            Self::Copy => "copy",
        })
    }
}

/// Gives a machine its own root at `dir/root`, from the cached root `lower`; returns the mode it used (overlay or
/// copy).
pub fn make(lower: &Path, dir: &Path, mode: RootMode) -> anyhow::Result<RootMode> {
    let root = dir.join("root");
    create_dir(&root)?;
    if mode != RootMode::Copy {
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        create_dir(&upper)?;
        create_dir(&work)?;
        match mount_overlay(lower, &upper, &work, &root) {
            Ok(()) => return Ok(RootMode::Overlay),
            Err(error) if mode == RootMode::Overlay => {
                return Err(error).context("RKTNETES_NODE_ROOT_MODE=overlay");
            }
            Err(_) => {
                fs::remove_dir_all(&upper)
                    .with_context(|| format!("deleting {}", upper.display()))?;
                fs::remove_dir_all(&work)
                    .with_context(|| format!("deleting {}", work.display()))?;
            }
        }
    }
    fs::remove_dir(&root).with_context(|| format!("deleting {}", root.display()))?;
    let status = Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(lower)
        .arg(&root)
        .status()
        .context("running cp")?;
    if !status.success() {
        bail!(
            "copying {} to {} failed ({status})",
            lower.display(),
            root.display()
        );
    }
    Ok(RootMode::Copy)
}

fn mount_overlay(lower: &Path, upper: &Path, work: &Path, root: &Path) -> anyhow::Result<()> {
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let c_string = |bytes: &[u8]| CString::new(bytes).context("a path with a NUL byte");
    let (source, fs_type) = (c_string(b"overlay")?, c_string(b"overlay")?);
    let (target, data) = (
        c_string(root.as_os_str().as_bytes())?,
        c_string(options.as_bytes())?,
    );
    // SAFETY: mount(2) reads NUL-terminated strings that outlive the call.
    let result = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fs_type.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("cannot mount an overlay at {} ({options})", root.display()));
    }
    Ok(())
}

/// Who a machine is.
pub struct Identity<'a> {
    pub name: &'a str,
    pub address: Ipv4Addr,
    /// The host's address on the bridge, the machine's gateway.
    pub gateway: Ipv4Addr,
    /// What the machine's rkt stand-in reports (`RKT_STANDIN_VERSION` of its `rkt-api.service`).
    pub rkt_version: &'a str,
}

/// Writes the files that make the machine at `root` itself; the units come from `node_files` (`e2e/node/`).
pub fn configure(root: &Path, node_files: &Path, identity: &Identity<'_>) -> anyhow::Result<()> {
    let Identity {
        name,
        address,
        gateway,
        rkt_version,
    } = identity;
    write(&root.join("etc/hostname"), &format!("{name}\n"))?;
    write(
        &root.join("etc/hosts"),
        &format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{address}\t{name}\n"
        ),
    )?;
    let uuid = fs::read_to_string("/proc/sys/kernel/random/uuid")
        .context("reading /proc/sys/kernel/random/uuid")?;
    write(
        &root.join("etc/machine-id"),
        &format!("{}\n", uuid.trim().replace('-', "")),
    )?;
    // Sorts before the image's 80-container-host0.network, which would ask for DHCP.
    write(
        &root.join("etc/systemd/network/10-host0.network"),
        &host0_network(*address, *gateway),
    )?;
    let units = root.join("etc/systemd/system");
    create_dir(&units)?;
    for unit in ["rkt-api.service", "rktnetes-agent.service"] {
        let (from, to) = (node_files.join(unit), units.join(unit));
        fs::copy(&from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        fs::set_permissions(&to, fs::Permissions::from_mode(0o644))
            .with_context(|| format!("setting the mode of {}", to.display()))?;
    }
    let wanted = units.join("multi-user.target.wants/rkt-api.service");
    create_dir(wanted.parent().context("a unit's directory")?)?;
    remove_file(&wanted)?;
    symlink("../rkt-api.service", &wanted)
        .with_context(|| format!("linking {}", wanted.display()))?;
    write(
        &units.join("rkt-api.service.d/10-rkt-version.conf"),
        &format!("[Service]\nEnvironment=RKT_STANDIN_VERSION={rkt_version}\n"),
    )?;
    // Checks every 3 s (30 s by default) so that the tests see a stopped rkt API service quickly, and gives a
    // restarted one 5 s to answer (30 s by default; the stand-in answers within milliseconds), so that a broken
    // change is rolled back quickly. Release downloads trust the certificate authorities that a test puts in
    // release-ca.crt (its release mirror's), beside the node's own, and releases may be signed by the keys it puts
    // in release-keys.asc. The agent serves its metrics on port 9478 of the node's addresses.
    write(
        &root.join("etc/rktnetes/agent.env"),
        &format!(
            "NODE_NAME={name}\nRKTNETES_CHECK_INTERVAL=3\nRKTNETES_HEALTH_TIMEOUT=5\n\
             RKTNETES_RELEASE_CA_FILE=/etc/rktnetes/release-ca.crt\n\
             RKTNETES_RELEASE_KEYS_FILE=/etc/rktnetes/release-keys.asc\n\
             RKTNETES_METRICS_PORT={AGENT_METRICS_PORT}\nRKTNETES_METRICS_IP=0.0.0.0\n"
        ),
    )
}

/// Where the agent of a test machine serves its metrics, on the machine's addresses (on the kind lane, the chart's
/// `agent.metrics.port`, on the node's IP).
pub const AGENT_METRICS_PORT: u16 = 9478;

/// systemd-networkd's configuration of the machine's end of its veth: a fixed address, the host as gateway, no
/// DHCP or IPv6 autoconfiguration.
fn host0_network(address: Ipv4Addr, gateway: Ipv4Addr) -> String {
    format!(
        "[Match]\nName=host0\n\n[Network]\nAddress={address}/24\nGateway={gateway}\nDHCP=no\n\
         LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn write(path: &Path, content: &str) -> anyhow::Result<()> {
    create_dir(path.parent().context("a file's directory")?)?;
    fs::write(path, content).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_modes_parse_and_refuse_others() {
        assert_eq!("auto".parse::<RootMode>().expect("auto"), RootMode::Auto);
        assert_eq!("copy".parse::<RootMode>().expect("copy"), RootMode::Copy);
        let error = "overlayfs".parse::<RootMode>().expect_err("not a mode");
        assert!(error.to_string().contains("RKTNETES_NODE_ROOT_MODE"));
    }

    #[test]
    fn a_machine_is_configured_from_its_identity() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let node_files = Path::new(env!("CARGO_MANIFEST_DIR")).join("../node");
        let identity = Identity {
            name: "rktnetes-node-2",
            address: Ipv4Addr::new(10, 213, 0, 12),
            gateway: Ipv4Addr::new(10, 213, 0, 1),
            rkt_version: "1.29.0",
        };
        configure(dir.path(), &node_files, &identity).expect("configured");
        let read = |path: &str| fs::read_to_string(dir.path().join(path)).expect(path);
        assert_eq!(read("etc/hostname"), "rktnetes-node-2\n");
        assert!(read("etc/hosts").contains("10.213.0.12\trktnetes-node-2\n"));
        assert_eq!(read("etc/machine-id").trim().len(), 32);
        assert!(
            read("etc/systemd/network/10-host0.network")
                .contains("Address=10.213.0.12/24\nGateway=10.213.0.1\n")
        );
        assert!(
            read("etc/systemd/system/rkt-api.service.d/10-rkt-version.conf")
                .contains("RKT_STANDIN_VERSION=1.29.0")
        );
        assert!(read("etc/rktnetes/agent.env").starts_with("NODE_NAME=rktnetes-node-2\n"));
        assert!(!read("etc/systemd/system/multi-user.target.wants/rkt-api.service").is_empty());
        // Configuring again (a root that is already configured) is fine.
        configure(dir.path(), &node_files, &identity).expect("configured again");
    }
}
