//! The releases on the node: one directory each below `/opt/rkt/releases`, named for the version and the archive's
//! digest, and the link `/opt/rkt/current` to the one the node runs. The link is switched with one rename of a new
//! link over it, so `rkt` (and every stage1 image beside it) is the old release or the new one, never a mix.

use std::{
    fs, io,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
};

use crate::{
    agent::{atomic_file::FileError, host_files::Host},
    api::host_paths::{RKT_CURRENT_LINK, RKT_INSTALL_TREE, RKT_RELEASES_DIR},
};

/// The prefix of the releases directory's work in progress (downloads, unpacking), removed before each install.
pub const PARTIAL_PREFIX: &str = ".partial-";

/// The directory name of rkt `version`'s release with the archive digest `sha512`.
pub fn release_name(version: &str, sha512: &str) -> String {
    let digest: String = sha512.chars().take(16).collect();
    format!("v{version}-{}", digest.to_ascii_lowercase())
}

/// What `/opt/rkt/current` points at (such as `releases/v1.30.0-…`), or `None` when there is no link.
pub fn current(host: &Host) -> Result<Option<String>, FileError> {
    let link = host.path(RKT_CURRENT_LINK);
    match fs::read_link(&link) {
        Ok(target) => Ok(Some(target.display().to_string())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FileError {
            action: "read the link",
            path: link,
            source,
        }),
    }
}

/// The link target of the release named `name`, relative to `/opt/rkt`.
pub fn link_target(name: &str) -> String {
    let releases = RKT_RELEASES_DIR
        .strip_prefix(RKT_INSTALL_TREE)
        .unwrap_or(RKT_RELEASES_DIR)
        .trim_start_matches('/');
    format!("{releases}/{name}")
}

/// The directory of the release named `name` on the host.
pub fn release_dir(host: &Host, name: &str) -> PathBuf {
    host.path(RKT_RELEASES_DIR).join(name)
}

/// Points `/opt/rkt/current` at `target` (or removes it, for `None`) in one step.
pub fn switch(host: &Host, target: Option<&str>) -> Result<(), FileError> {
    let link = host.path(RKT_CURRENT_LINK);
    let Some(target) = target else {
        return match fs::remove_file(&link) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(FileError {
                action: "remove the link",
                path: link,
                source: error,
            }),
            _ => Ok(()),
        };
    };
    let new = link.with_file_name(".current.rktnetes-tmp");
    let failed = |action, path: &Path| {
        let path = path.to_owned();
        move |source| FileError {
            action,
            path,
            source,
        }
    };
    let _ = fs::remove_file(&new);
    symlink(target, &new).map_err(failed("create the link", &new))?;
    fs::rename(&new, &link).map_err(failed("rename the link over", &link))?;
    if let Some(parent) = link.parent() {
        fs::File::open(parent)
            .and_then(|directory| directory.sync_all())
            .map_err(failed("fsync", parent))?;
    }
    Ok(())
}

/// Removes every release but those named in `keep`, and any work in progress; returns the names removed.
pub fn prune(host: &Host, keep: &[&str]) -> Result<Vec<String>, FileError> {
    let dir = host.path(RKT_RELEASES_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(FileError {
                action: "list",
                path: dir,
                source,
            });
        }
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if keep.contains(&name.as_str()) {
            continue;
        }
        let path = entry.path();
        fs::remove_dir_all(&path).map_err(|source| FileError {
            action: "remove",
            path,
            source,
        })?;
        removed.push(name);
    }
    removed.sort();
    Ok(removed)
}

/// Removes what an install that stopped half-way left in the releases directory.
pub fn remove_partial(host: &Host) {
    let dir = host.path(RKT_RELEASES_DIR);
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(PARTIAL_PREFIX)
        {
            let path = entry.path();
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            if let Err(error) = removed {
                tracing::warn!(%error, path = %path.display(), "could not remove a partial install");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(dir: &Path) -> Host {
        Host {
            root: dir.to_owned(),
        }
    }

    #[test]
    fn the_link_switches_whole_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path());
        for name in ["v1.29.0-aaaa", "v1.30.0-bbbb"] {
            let release = release_dir(&host, name);
            fs::create_dir_all(&release).unwrap();
            fs::write(release.join("rkt"), name).unwrap();
        }
        assert_eq!(current(&host).unwrap(), None);
        switch(&host, Some(&link_target("v1.29.0-aaaa"))).unwrap();
        assert_eq!(
            current(&host).unwrap().as_deref(),
            Some("releases/v1.29.0-aaaa")
        );
        let binary = host.path("/opt/rkt/current/rkt");
        assert_eq!(fs::read_to_string(&binary).unwrap(), "v1.29.0-aaaa");
        switch(&host, Some(&link_target("v1.30.0-bbbb"))).unwrap();
        assert_eq!(fs::read_to_string(&binary).unwrap(), "v1.30.0-bbbb");
        switch(&host, None).unwrap();
        assert_eq!(current(&host).unwrap(), None);
        switch(&host, None).unwrap();
    }

    #[test]
    fn pruning_keeps_the_named_releases() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path());
        for name in ["v1.28.0-a", "v1.29.0-b", "v1.30.0-c", ".partial-x"] {
            fs::create_dir_all(release_dir(&host, name)).unwrap();
        }
        let removed = prune(&host, &["v1.29.0-b", "v1.30.0-c"]).unwrap();
        assert_eq!(removed, [".partial-x", "v1.28.0-a"]);
        assert!(release_dir(&host, "v1.30.0-c").is_dir());
    }

    #[test]
    fn a_release_is_named_by_version_and_digest() {
        assert_eq!(
            release_name("1.30.0", &"AB".repeat(64)),
            "v1.30.0-abababababababab"
        );
    }
}
