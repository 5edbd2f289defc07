//! Unpacking a verified release archive: rkt's layout, one directory `rkt-vX.Y.Z/` (named for the version the spec
//! asks for) holding `rkt`, the stage1 images and `init/systemd/`. Only files and directories are taken, each below
//! that directory; a link, a device, a path that climbs out (`..`) or an archive that unpacks to more than its
//! limit is refused, naming the entry, and nothing of it stays.

use std::{
    fs,
    io::{self, Read},
    os::unix::fs::PermissionsExt,
    path::{Component, Path, PathBuf},
};

/// How much larger than the archive's size limit its unpacked content may be (rkt's images compress little).
const UNPACKED_FACTOR: u64 = 4;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("the archive is not a gzip-compressed tar file: {0}")]
    NotAnArchive(String),
    #[error(
        "the archive's entry {entry} is not below rkt-v{version}/, as in rkt's release archives"
    )]
    OutsideRelease { entry: String, version: String },
    #[error(
        "the archive's entry {entry} is a {kind}; rkt's release archives hold only files and directories"
    )]
    Kind { entry: String, kind: String },
    #[error("the archive unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the archive has no rkt-v{version}/rkt")]
    NoRkt { version: String },
    #[error("cannot unpack into {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Unpacks the archive at `archive` (rkt `version`'s release) into the new directory `into`, without its top
/// directory; `limit` is the archive's size limit.
pub fn unpack(archive: &Path, version: &str, into: &Path, limit: u64) -> Result<(), UnpackError> {
    let result = unpack_entries(
        archive,
        version,
        into,
        limit.saturating_mul(UNPACKED_FACTOR),
    );
    if result.is_err() {
        let _ = fs::remove_dir_all(into);
    }
    result
}

fn unpack_entries(
    archive: &Path,
    version: &str,
    into: &Path,
    limit: u64,
) -> Result<(), UnpackError> {
    let write = |path: &Path| {
        let path = path.to_owned();
        move |source| UnpackError::Write { path, source }
    };
    fs::create_dir(into).map_err(write(into))?;
    let file =
        fs::File::open(archive).map_err(|error| UnpackError::NotAnArchive(error.to_string()))?;
    let mut entries = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let top = format!("rkt-v{version}");
    let mut unpacked: u64 = 0;
    let not_an_archive = |error: io::Error| UnpackError::NotAnArchive(error.to_string());
    for entry in entries.entries().map_err(not_an_archive)? {
        let mut entry = entry.map_err(not_an_archive)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let relative =
            below_top(&entry.path().map_err(not_an_archive)?, &top).ok_or_else(|| {
                UnpackError::OutsideRelease {
                    entry: name.clone(),
                    version: version.to_owned(),
                }
            })?;
        let target = into.join(&relative);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            fs::create_dir_all(&target).map_err(write(&target))?;
            continue;
        }
        if !kind.is_file() {
            return Err(UnpackError::Kind {
                entry: name,
                kind: kind_name(kind),
            });
        }
        unpacked = unpacked.saturating_add(entry.size());
        if unpacked > limit {
            return Err(UnpackError::TooLarge { limit });
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(write(parent))?;
        }
        let mut content = Vec::new();
        entry
            .by_ref()
            .take(limit)
            .read_to_end(&mut content)
            .map_err(not_an_archive)?;
        fs::write(&target, &content).map_err(write(&target))?;
        // Executable bits as the archive has them; never setuid, setgid or writable by others.
        let mode = entry.header().mode().map_err(not_an_archive)? & 0o755 | 0o600;
        fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(write(&target))?;
    }
    if !into.join("rkt").is_file() {
        return Err(UnpackError::NoRkt {
            version: version.to_owned(),
        });
    }
    Ok(())
}

/// `path` without its first component `top`, when it is plainly below it (`top/` itself is the empty path).
fn below_top(path: &Path, top: &str) -> Option<PathBuf> {
    let mut components = path.components().filter(|c| *c != Component::CurDir);
    if components.next()? != Component::Normal(top.as_ref()) {
        return None;
    }
    let mut relative = PathBuf::new();
    for component in components {
        match component {
            Component::Normal(part) => relative.push(part),
            _ => return None,
        }
    }
    Some(relative)
}

fn kind_name(kind: tar::EntryType) -> String {
    match kind {
        tar::EntryType::Symlink => "symbolic link".to_owned(),
        tar::EntryType::Link => "hard link".to_owned(),
        tar::EntryType::Char | tar::EntryType::Block => "device".to_owned(),
        tar::EntryType::Fifo => "named pipe".to_owned(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzip-compressed tar archive of `entries` (path, content, kind).
    fn archive(dir: &Path, entries: &[(&str, &[u8], tar::EntryType)]) -> PathBuf {
        let path = dir.join("release.tar.gz");
        let file = fs::File::create(&path).unwrap();
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::fast(),
        ));
        for (name, content, kind) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(content.len() as u64);
            header.set_mode(if name.ends_with("/rkt") {
                0o4777
            } else {
                0o644
            });
            if *kind == tar::EntryType::Symlink {
                header.set_link_name("/bin/sh").unwrap();
            }
            // Written raw, so that a hostile name (`..`) reaches the archive as it would from elsewhere.
            let bytes = name.as_bytes();
            header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            header.set_cksum();
            builder.append(&header, *content).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap();
        path
    }

    const FILE: tar::EntryType = tar::EntryType::Regular;

    #[test]
    fn a_release_unpacks_without_its_top_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = archive(
            dir.path(),
            &[
                ("rkt-v1.30.0/", b"", tar::EntryType::Directory),
                ("rkt-v1.30.0/rkt", b"binary", FILE),
                ("rkt-v1.30.0/init/systemd/rkt-api.service", b"[Unit]", FILE),
            ],
        );
        let into = dir.path().join("v1.30.0");
        unpack(&path, "1.30.0", &into, 1 << 20).unwrap();
        assert_eq!(fs::read(into.join("rkt")).unwrap(), b"binary");
        let mode = fs::metadata(into.join("rkt")).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o755, "setuid and others' write are dropped");
        assert!(into.join("init/systemd/rkt-api.service").is_file());
    }

    #[test]
    fn entries_outside_the_release_links_and_other_versions_are_refused_and_leave_nothing() {
        for (entries, expected) in [
            (
                vec![("rkt-v1.30.0/../../etc/passwd", &b"x"[..], FILE)],
                "rkt-v1.30.0/../../etc/passwd is not below rkt-v1.30.0/",
            ),
            (
                vec![("rkt-v1.29.0/rkt", &b"x"[..], FILE)],
                "rkt-v1.29.0/rkt is not below rkt-v1.30.0/",
            ),
            (
                vec![("rkt-v1.30.0/rkt", &b""[..], tar::EntryType::Symlink)],
                "rkt-v1.30.0/rkt is a symbolic link",
            ),
            (
                vec![("rkt-v1.30.0/stage1-coreos.aci", &b"x"[..], FILE)],
                "no rkt-v1.30.0/rkt",
            ),
            (
                vec![("rkt-v1.30.0/rkt", &[0u8; 100][..], FILE)],
                "more than 40 bytes",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = archive(dir.path(), &entries);
            let into = dir.path().join("v1.30.0");
            let error = unpack(&path, "1.30.0", &into, 10).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
            assert!(!into.exists(), "{expected}: the directory is removed");
        }
    }

    #[test]
    fn a_file_that_is_not_an_archive_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("release.tar.gz");
        fs::write(&path, b"<html>not found</html>").unwrap();
        let error = unpack(&path, "1.30.0", &dir.path().join("v1.30.0"), 1 << 20).unwrap_err();
        assert!(matches!(error, UnpackError::NotAnArchive(_)), "{error}");
    }
}
