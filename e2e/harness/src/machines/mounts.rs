//! Mounts, read from `/proc/self/mountinfo`: the cgroup hierarchies a machine is placed in, and the mounts below a
//! directory that must go before it is deleted. Deleting never crosses into another file system, so a mount that
//! could not be removed is never emptied through its mount point.

use std::{
    ffi::CString,
    fs, io,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};

/// One line of `/proc/self/mountinfo`, the fields used here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub super_options: String,
}

/// This process's mounts.
pub fn mounts() -> anyhow::Result<Vec<Mount>> {
    let text =
        fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text))
}

/// `ID PARENT MAJOR:MINOR ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER_OPTIONS` lines; the optional
/// fields vary in number, so the fields after them are found from the `-` separator.
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let separator = fields.iter().skip(6).position(|field| *field == "-")? + 6;
            Some(Mount {
                mount_point: PathBuf::from(unescape(fields.get(4)?)),
                fs_type: (*fields.get(separator + 1)?).to_owned(),
                super_options: (*fields.get(separator + 3)?).to_owned(),
            })
        })
        .collect()
}

/// The kernel writes a blank, tab, newline or backslash in a path as `\` and three octal digits.
fn unescape(field: &str) -> std::ffi::OsString {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|digits| {
            bytes[i] == b'\\' && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        });
        match octal.and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok())
        {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    std::ffi::OsStr::from_bytes(&out).to_owned()
}

/// The cgroup hierarchies systemd-nspawn places a container in: cgroup v2, and v1's `name=systemd` on a hybrid
/// host.
pub fn cgroup_hierarchies(mounts: &[Mount]) -> Vec<PathBuf> {
    mounts
        .iter()
        .filter(|mount| {
            mount.fs_type == "cgroup2"
                || (mount.fs_type == "cgroup"
                    && mount
                        .super_options
                        .split(',')
                        .any(|option| option == "name=systemd"))
        })
        .map(|mount| mount.mount_point.clone())
        .collect()
}

/// The mount points strictly below `dir`, deepest first (so that each is unmounted before what it sits on).
fn mount_points_under(mounts: &[Mount], dir: &Path) -> Vec<PathBuf> {
    let mut below: Vec<PathBuf> = mounts
        .iter()
        .map(|mount| mount.mount_point.clone())
        .filter(|point| point.starts_with(dir) && point != dir)
        .collect();
    below.sort_by(|a, b| b.cmp(a));
    below.dedup();
    below
}

/// Unmounts everything below `dir`: cleanly when nothing uses it, else lazily (detached now, freed when its last
/// user goes).
pub fn unmount_under(dir: &Path) -> anyhow::Result<()> {
    for point in mount_points_under(&mounts()?, dir) {
        let path = CString::new(point.as_os_str().as_bytes())
            .with_context(|| format!("a mount point with a NUL byte: {}", point.display()))?;
        // SAFETY: umount2(2) reads a NUL-terminated path that outlives the call.
        if unsafe { libc::umount2(path.as_ptr(), 0) } == 0 {
            continue;
        }
        // SAFETY: as above.
        if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("cannot unmount {}", point.display()));
        }
    }
    Ok(())
}

/// Deletes `path` and everything below it that is on the same file system (`rm -rf --one-file-system`); fails
/// naming a directory that is another file system's, rather than deleting what is mounted there. Nothing there is
/// fine.
pub fn remove_tree(path: &Path) -> anyhow::Result<()> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    if metadata.is_dir() {
        remove_dir_on(path, metadata.dev())
    } else {
        fs::remove_file(path).with_context(|| format!("deleting {}", path.display()))
    }
}

fn remove_dir_on(dir: &Path, device: u64) -> anyhow::Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        let metadata =
            fs::symlink_metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        if !metadata.is_dir() {
            fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?;
        } else if metadata.dev() == device {
            remove_dir_on(&path, device)?;
        } else {
            bail!(
                "{} is another file system (still mounted?); not deleting it",
                path.display()
            );
        }
    }
    fs::remove_dir(dir).with_context(|| format!("deleting {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime - ext4 /dev/vda rw
31 22 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:5 - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:9 master:2 - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 22 0:50 / /cache/nodes/rktnetes-node-1/root rw - overlay overlay rw,lowerdir=/cache/rootfs/bookworm
91 90 0:51 / /cache/nodes/rktnetes-node-1/root/my\\040dir rw - tmpfs tmpfs rw
92 22 0:52 / /cache/nodes-other/x rw - tmpfs tmpfs rw
";

    #[test]
    fn cgroup_hierarchies_are_v2_and_v1_name_systemd() {
        assert_eq!(
            cgroup_hierarchies(&parse_mountinfo(MOUNTINFO)),
            [
                PathBuf::from("/sys/fs/cgroup/systemd"),
                PathBuf::from("/sys/fs/cgroup/unified")
            ]
        );
    }

    #[test]
    fn mounts_below_a_directory_deepest_first_with_blanks_unescaped() {
        assert_eq!(
            mount_points_under(&parse_mountinfo(MOUNTINFO), Path::new("/cache/nodes")),
            [
                PathBuf::from("/cache/nodes/rktnetes-node-1/root/my dir"),
                PathBuf::from("/cache/nodes/rktnetes-node-1/root")
            ]
        );
        assert!(
            mount_points_under(
                &parse_mountinfo(MOUNTINFO),
                Path::new("/cache/nodes/rktnetes-node-1/root/my dir")
            )
            .is_empty()
        );
    }

    #[test]
    fn a_backslash_not_followed_by_octal_stays() {
        assert_eq!(
            unescape("a\\tb\\134c\\12"),
            std::ffi::OsString::from("a\\tb\\c\\12")
        );
    }

    #[test]
    fn a_tree_is_removed_and_nothing_there_is_fine() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("a/b")).expect("directories");
        fs::write(tree.join("a/b/file"), "x").expect("a file");
        std::os::unix::fs::symlink("/etc", tree.join("a/link")).expect("a symlink");
        remove_tree(&tree).expect("removed");
        assert!(!tree.exists());
        assert!(Path::new("/etc").is_dir());
        remove_tree(&tree).expect("nothing there");
    }
}
