//! rkt release archives made from the stand-in, for the runs that install rkt on a node from a release. rkt's
//! archive `rkt-vX.Y.Z.tar.gz` holds one directory `rkt-vX.Y.Z/`: the `rkt` binary, the three stage1 images, the
//! systemd units and tmpfiles.d entry of `init/`, the data directory script, bash completion and the manual page.
//! Here `rkt` is the stand-in binary stamped with the release's version (`rkt_standin::stamp`), so one build makes
//! the releases of several rkt versions, and a release can be made broken (`exit`: its API service exits at start);
//! the caller stamps it.
//! The stand-in has no stage1, so the images are short placeholder texts that say so. An archive is reproducible:
//! every entry is owned by root with a fixed modification time, in a fixed order, so the same stand-in and version
//! give the same bytes and the same digest. Releases are signed as rkt's were, with GnuPG ([`SigningKey`]).

use std::{
    fs,
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context;
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha512};

/// The modification time of every entry (the epoch), so the archive does not depend on when it was made.
const ENTRY_MTIME: u64 = 0;

/// The stage1 flavours rkt ships, one image each (`stage1-FLAVOR.aci`).
const STAGE1_FLAVORS: [&str; 3] = ["coreos", "fly", "kvm"];

/// One built release archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// `rkt-vX.Y.Z.tar.gz`, as rkt named its release archives.
    pub file_name: String,
    /// The gzip-compressed tar archive.
    pub bytes: Vec<u8>,
    /// The SHA-512 digest of `bytes`, lowercase hex.
    pub sha512_hex: String,
}

/// An OpenPGP key that signs releases, as rkt's were signed: a new key in a GnuPG home of its own.
pub struct SigningKey {
    home: PathBuf,
    /// The armored public key, as a node's release keys hold it.
    pub public_key: String,
}

impl SigningKey {
    /// A new signing key of `algorithm` (`rsa2048`, `ed25519`: GnuPG's names) in the new GnuPG home `dir/name`.
    pub fn new(dir: &Path, name: &str, algorithm: &str) -> anyhow::Result<Self> {
        let home = dir.join(name);
        fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", home.display()))?;
        let key = Self {
            home,
            public_key: String::new(),
        };
        key.gpg(&[
            "--quick-generate-key",
            &format!("{name} <{name}@releases.example>"),
            algorithm,
            "sign",
            "never",
        ])?;
        let public_key = String::from_utf8(key.gpg(&["--armor", "--export"])?)
            .context("gpg exported a key that is not text")?;
        Ok(Self { public_key, ..key })
    }

    /// The detached signature over `file`, armored or binary.
    pub fn sign(&self, file: &Path, armor: bool) -> anyhow::Result<Vec<u8>> {
        let file = file.to_str().context("a path that is not UTF-8")?;
        let mut args = vec!["--detach-sign", "--output", "-", file];
        if armor {
            args.insert(0, "--armor");
        }
        self.gpg(&args)
    }

    fn gpg(&self, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        let output = Command::new("gpg")
            .arg("--homedir")
            .arg(&self.home)
            .args([
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .output()
            .context("running gpg (e2e/install-deps.sh installs it)")?;
        anyhow::ensure!(
            output.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(output.stdout)
    }
}

/// A file of the release, its path below `rkt-vX.Y.Z/`.
struct ReleaseFile {
    path: String,
    mode: u32,
    content: Vec<u8>,
}

impl ReleaseFile {
    fn new(path: &str, mode: u32, content: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.to_owned(),
            mode,
            content: content.into(),
        }
    }
}

/// The release archive of rkt `version` (`1.29.0`, without the `v`) whose `rkt` is `rkt`: the stand-in binary
/// stamped with that version (`rkt_standin::stamp`, which the caller applies, so that the harness does not build
/// the stand-in and, through it, the operator).
pub fn build_release(rkt: &[u8], version: &str) -> anyhow::Result<Release> {
    anyhow::ensure!(
        !version.starts_with('v')
            && !version.is_empty()
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+')),
        "the release version {version:?} must be a version such as 1.30.0, without its `v`"
    );
    let rkt = rkt.to_vec();
    let top = format!("rkt-v{version}");
    let bytes = archive(&top, &release_files(version, rkt))
        .with_context(|| format!("writing the archive {top}.tar.gz"))?;
    let sha512_hex = Sha512::digest(&bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok(Release {
        file_name: format!("{top}.tar.gz"),
        bytes,
        sha512_hex,
    })
}

/// Every file of rkt `version`'s release, `rkt` being the stamped binary `rkt`, in archive order.
fn release_files(version: &str, rkt: Vec<u8>) -> Vec<ReleaseFile> {
    let mut files = vec![ReleaseFile::new("rkt", 0o755, rkt)];
    for flavor in STAGE1_FLAVORS {
        files.push(ReleaseFile::new(
            &format!("stage1-{flavor}.aci"),
            0o644,
            stage1_placeholder(version, flavor),
        ));
    }
    let units = [
        ("rkt-api.service", API_SERVICE),
        ("rkt-gc.service", GC_SERVICE),
        ("rkt-gc.timer", GC_TIMER),
        ("rkt-metadata.service", METADATA_SERVICE),
        ("rkt-metadata.socket", METADATA_SOCKET),
        ("tmpfiles.d/rkt.conf", TMPFILES),
    ];
    for (name, content) in units {
        files.push(ReleaseFile::new(
            &format!("init/systemd/{name}"),
            0o644,
            content,
        ));
    }
    files.push(ReleaseFile::new(
        "scripts/setup-data-dir.sh",
        0o755,
        SETUP_DATA_DIR,
    ));
    files.push(ReleaseFile::new(
        "bash_completion/rkt.bash",
        0o644,
        BASH_COMPLETION,
    ));
    files.push(ReleaseFile::new(
        "manpages/rkt.1",
        0o644,
        manual_page(version),
    ));
    files
}

/// The content of a stage1 image: rkt ships ACI images here; the stand-in runs no pods and has none.
fn stage1_placeholder(version: &str, flavor: &str) -> String {
    format!(
        "stage1-{flavor}.aci of rkt v{version}, as released by rktnetes' rkt stand-in: a placeholder, not an ACI \
         image. The stand-in runs no pods and has no stage1; this file is here because rkt's release archives \
         hold one image for each stage1 flavour.\n"
    )
}

/// The gzip-compressed tar of `files` below the directory `top`, with a directory entry before the files of each
/// directory, every entry root's and dated [`ENTRY_MTIME`].
fn archive(top: &str, files: &[ReleaseFile]) -> anyhow::Result<Vec<u8>> {
    // A fixed gzip header too: no file name, no time. The fast level: the stand-in is a large unoptimised binary in
    // test builds (about 100 MB), which the default level takes three times as long to compress, for a fifth less.
    let gzip = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::fast());
    let mut tar = tar::Builder::new(gzip);
    let mut directories = vec![top.to_owned()];
    append(&mut tar, tar::EntryType::Directory, top, 0o755, &[])?;
    for file in files {
        let path = format!("{top}/{}", file.path);
        // The directories above the file, outermost first, each once.
        let mut parents: Vec<&str> = path.match_indices('/').map(|(at, _)| &path[..at]).collect();
        parents.retain(|parent| !directories.iter().any(|known| known == parent));
        for parent in parents {
            append(&mut tar, tar::EntryType::Directory, parent, 0o755, &[])?;
            directories.push(parent.to_owned());
        }
        append(
            &mut tar,
            tar::EntryType::Regular,
            &path,
            file.mode,
            &file.content,
        )?;
    }
    let gzip = tar.into_inner()?;
    Ok(gzip.finish()?)
}

/// Appends one entry owned by root (uid and gid 0) and dated [`ENTRY_MTIME`].
fn append(
    tar: &mut tar::Builder<impl Write>,
    kind: tar::EntryType,
    path: &str,
    mode: u32,
    content: &[u8],
) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_username("root")?;
    header.set_groupname("root")?;
    header.set_mtime(ENTRY_MTIME);
    header.set_size(content.len() as u64);
    let path = if kind == tar::EntryType::Directory {
        format!("{path}/")
    } else {
        path.to_owned()
    };
    tar.append_data(&mut header, &path, content)
        .with_context(|| format!("adding {path}"))
}

/// rkt's API service, as rkt's `init/systemd` has it: the read-only gRPC API on localhost:15441.
const API_SERVICE: &str = "\
[Unit]
Description=rkt API service
Documentation=man:rkt(1)
After=network.target

[Service]
ExecStart=/usr/bin/rkt api-service
KillMode=mixed
Restart=always

[Install]
WantedBy=multi-user.target
";

/// Garbage collection of exited pods, started by `rkt-gc.timer`.
const GC_SERVICE: &str = "\
[Unit]
Description=Garbage collection of exited rkt pods
Documentation=man:rkt(1)

[Service]
Type=oneshot
ExecStart=/usr/bin/rkt gc --grace-period=24h
";

const GC_TIMER: &str = "\
[Unit]
Description=Periodic garbage collection of exited rkt pods
Documentation=man:rkt(1)

[Timer]
OnActiveSec=0s
OnUnitActiveSec=12h

[Install]
WantedBy=timers.target
";

/// The metadata service that pods query for their identity, started by its socket.
const METADATA_SERVICE: &str = "\
[Unit]
Description=rkt metadata service
Documentation=man:rkt(1)
Requires=rkt-metadata.socket
After=network.target rkt-metadata.socket

[Service]
ExecStart=/usr/bin/rkt metadata-service

[Install]
Also=rkt-metadata.socket
";

const METADATA_SOCKET: &str = "\
[Unit]
Description=rkt metadata service socket
PartOf=rkt-metadata.service

[Socket]
ListenStream=/run/rkt/metadata-svc.sock
SocketMode=0660
SocketUser=root
SocketGroup=root
RemoveOnStop=true

[Install]
WantedBy=sockets.target
";

/// rkt's data directory, for systemd-tmpfiles; `scripts/setup-data-dir.sh` makes the same by hand.
const TMPFILES: &str = "\
d /var/lib/rkt 2750 root rkt
d /var/lib/rkt/tmp 2750 root rkt
d /var/lib/rkt/pods 2750 root rkt
d /var/lib/rkt/cas 2770 root rkt
";

const SETUP_DATA_DIR: &str = "\
#!/bin/sh
# Makes rkt's data directory (the first argument, else /var/lib/rkt) with the group rkt and the modes of
# init/systemd/tmpfiles.d/rkt.conf, for machines without systemd-tmpfiles.
set -e
datadir=${1:-/var/lib/rkt}
getent group rkt >/dev/null || groupadd --system rkt
install -d -m 2750 -g rkt \"$datadir\" \"$datadir/tmp\" \"$datadir/pods\"
install -d -m 2770 -g rkt \"$datadir/cas\"
";

/// Completion of rkt's commands, the ones the stand-in answers.
const BASH_COMPLETION: &str = "\
# bash completion for rkt
_rkt() {
    local word=${COMP_WORDS[COMP_CWORD]}
    if ((COMP_CWORD == 1)); then
        mapfile -t COMPREPLY < <(compgen -W 'api-service help version' -- \"$word\")
    fi
}
complete -F _rkt rkt
";

/// rkt's manual page, naming the release and what this `rkt` is.
fn manual_page(version: &str) -> String {
    format!(
        "\
.TH RKT 1 \"\" \"rkt v{version}\" \"rkt Manual\"
.SH NAME
rkt \\- a stand-in for the rkt container runtime (rktnetes tests and demos)
.SH SYNOPSIS
.B rkt
[\\fIglobal flags\\fR] \\fIcommand\\fR
.SH DESCRIPTION
This is rktnetes' stand-in for rkt v{version}, the archived container runtime. It runs no containers: it
answers \\fBrkt version\\fR and serves rkt's API service, reading rkt's configuration directories.
.SH COMMANDS
.TP
.B version
Print the version and exit.
.TP
.B api-service
Run rkt's API service (gRPC, by default on localhost:15441).
"
    )
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// The files of rkt's release layout, below `rkt-vX.Y.Z/`.
    const LAYOUT: [&str; 13] = [
        "rkt",
        "stage1-coreos.aci",
        "stage1-fly.aci",
        "stage1-kvm.aci",
        "init/systemd/rkt-api.service",
        "init/systemd/rkt-gc.service",
        "init/systemd/rkt-gc.timer",
        "init/systemd/rkt-metadata.service",
        "init/systemd/rkt-metadata.socket",
        "init/systemd/tmpfiles.d/rkt.conf",
        "scripts/setup-data-dir.sh",
        "bash_completion/rkt.bash",
        "manpages/rkt.1",
    ];

    /// A pretend stamped stand-in binary.
    const RKT: &[u8] = b"\x7fELF pretend code, stamped 1.29.0";

    /// An entry of an archive as read back.
    struct Entry {
        /// Without a directory's trailing `/`.
        path: String,
        kind: tar::EntryType,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        content: Vec<u8>,
    }

    /// The entries of `release`, in archive order.
    fn entries(release: &Release) -> Vec<Entry> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&release.bytes[..]));
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let header = entry.header().clone();
                let mut content = Vec::new();
                entry.read_to_end(&mut content).unwrap();
                let path = entry.path().unwrap().display().to_string();
                Entry {
                    path: path.trim_end_matches('/').to_owned(),
                    kind: header.entry_type(),
                    mode: header.mode().unwrap(),
                    uid: header.uid().unwrap(),
                    gid: header.gid().unwrap(),
                    mtime: header.mtime().unwrap(),
                    content,
                }
            })
            .collect()
    }

    /// The content of the entry `path` of `entries`.
    fn content<'a>(entries: &'a [Entry], path: &str) -> &'a [u8] {
        &entries
            .iter()
            .find(|entry| entry.path == path)
            .unwrap_or_else(|| panic!("no {path}"))
            .content
    }

    /// The sorted paths of the entries of `kind`.
    fn paths(entries: &[Entry], kind: tar::EntryType) -> Vec<&str> {
        let mut paths: Vec<&str> = entries
            .iter()
            .filter(|entry| entry.kind == kind)
            .map(|entry| entry.path.as_str())
            .collect();
        paths.sort_unstable();
        paths
    }

    #[test]
    fn a_release_holds_rkts_layout_with_the_stamped_stand_in() {
        let release = build_release(RKT, "1.29.0").unwrap();
        assert_eq!(release.file_name, "rkt-v1.29.0.tar.gz");
        let entries = entries(&release);
        // Files and directories only, each once.
        assert!(entries.iter().all(|entry| matches!(
            entry.kind,
            tar::EntryType::Regular | tar::EntryType::Directory
        )));
        let mut expected: Vec<String> = LAYOUT
            .iter()
            .map(|file| format!("rkt-v1.29.0/{file}"))
            .collect();
        expected.sort_unstable();
        assert_eq!(paths(&entries, tar::EntryType::Regular), expected);
        assert_eq!(
            paths(&entries, tar::EntryType::Directory),
            [
                "rkt-v1.29.0",
                "rkt-v1.29.0/bash_completion",
                "rkt-v1.29.0/init",
                "rkt-v1.29.0/init/systemd",
                "rkt-v1.29.0/init/systemd/tmpfiles.d",
                "rkt-v1.29.0/manpages",
                "rkt-v1.29.0/scripts",
            ]
        );
        // The top directory first, and each directory before what it holds.
        assert_eq!(entries[0].path, "rkt-v1.29.0");
        for (at, entry) in entries.iter().enumerate() {
            if let Some((parent, _)) = entry.path.rsplit_once('/') {
                assert!(
                    entries[..at].iter().any(|before| before.path == parent),
                    "{}",
                    entry.path
                );
            }
        }
        for entry in &entries {
            assert_eq!(
                (entry.uid, entry.gid, entry.mtime),
                (0, 0, ENTRY_MTIME),
                "{}",
                entry.path
            );
            let executable = entry.kind == tar::EntryType::Directory
                || entry.path.ends_with("/rkt")
                || entry.path.ends_with(".sh");
            assert_eq!(
                entry.mode,
                if executable { 0o755 } else { 0o644 },
                "{}",
                entry.path
            );
        }
        assert_eq!(content(&entries, "rkt-v1.29.0/rkt"), RKT);
        let stage1 = String::from_utf8_lossy(content(&entries, "rkt-v1.29.0/stage1-kvm.aci"));
        assert!(
            stage1.contains("v1.29.0") && stage1.contains("placeholder"),
            "{stage1}"
        );
        let unit = String::from_utf8_lossy(content(
            &entries,
            "rkt-v1.29.0/init/systemd/rkt-api.service",
        ));
        assert!(
            unit.contains("ExecStart=/usr/bin/rkt api-service"),
            "{unit}"
        );
    }

    #[test]
    fn a_release_is_reproducible_and_its_digest_is_of_its_bytes() {
        let first = build_release(RKT, "1.30.0").unwrap();
        let second = build_release(RKT, "1.30.0").unwrap();
        assert_eq!(first, second);
        assert_eq!(first.sha512_hex.len(), 128);
        let digest: String = Sha512::digest(&first.bytes)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(first.sha512_hex, digest);
        let other = build_release(RKT, "1.29.0").unwrap();
        assert_ne!(other.sha512_hex, first.sha512_hex, "another version");
        let broken = build_release(b"another binary", "1.30.0").unwrap();
        assert_ne!(broken.sha512_hex, first.sha512_hex, "another rkt");
    }

    #[test]
    fn what_cannot_be_a_version_is_refused() {
        for version in ["v1.29.0", "1.29/0", "", "1.29.0 exit"] {
            let error = build_release(RKT, version).unwrap_err();
            assert!(
                error.to_string().contains("must be a version"),
                "{version}: {error}"
            );
        }
    }
}
