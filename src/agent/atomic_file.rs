//! The one way the agent changes a file on the host: whole, or not at all.
//!
//! The new content goes to a temporary file in the same directory, is flushed to disk, and is renamed over the
//! target; then the directory is flushed so the rename itself survives a crash. A reader (rkt, the kubelet) sees
//! the old file or the new one, never a part. The temporary name is hidden and never ends in `.conf` or `.json`,
//! so rkt, which reads every `*.conf` in `net.d` and every `*.json` in `stage1.d`, never reads it.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use super::crash_point;

/// The suffix of temporary files; a leftover one from a crash is removed by [`remove_leftovers`].
const TEMPORARY_SUFFIX: &str = ".rktnetes-tmp";

/// A file operation that failed, with the path it concerned.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct FileError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FileError + 'a {
    move |source| FileError {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Replaces `path` with `content` and `mode` atomically, creating its directory if needed.
pub fn write(path: &Path, content: &[u8], mode: u32) -> Result<(), FileError> {
    let directory = parent(path)?;
    fs::create_dir_all(directory).map_err(error("create directory", directory))?;
    let temporary = temporary_path(path);
    crash_point::reached("before creating the temporary of", path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temporary)
            .map_err(error("create", &temporary))?;
        file.write_all(content)
            .map_err(error("write", &temporary))?;
        crash_point::reached("after writing the temporary of", path);
        // The mode given at creation is filtered by the umask; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(error("chmod", &temporary))?;
        file.sync_all().map_err(error("fsync", &temporary))?;
        crash_point::reached("after flushing the temporary of", path);
        fs::rename(&temporary, path).map_err(error("rename over", path))?;
        crash_point::reached("after renaming over", path);
        sync_directory(directory)?;
        crash_point::reached("after flushing the directory of", path);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

/// Removes `path` if it exists, durably.
pub fn remove(path: &Path) -> Result<(), FileError> {
    crash_point::reached("before removing", path);
    match fs::remove_file(path) {
        Ok(()) => {
            crash_point::reached("after removing", path);
            sync_directory(parent(path)?)
        }
        Err(source) if source.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(FileError {
            action: "remove",
            path: path.to_owned(),
            source,
        }),
    }
}

/// The content of `path`, or `None` when it does not exist.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>, FileError> {
    match fs::read(path) {
        Ok(content) => Ok(Some(content)),
        Err(source) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FileError {
            action: "read",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Removes temporary files a crash left in `directory`.
pub fn remove_leftovers(directory: &Path) -> Result<(), FileError> {
    let entries = match fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(source) if source.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(error("list", directory)(source)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(TEMPORARY_SUFFIX) {
            remove(&entry.path())?;
        }
    }
    Ok(())
}

fn parent(path: &Path) -> Result<&Path, FileError> {
    path.parent().ok_or_else(|| FileError {
        action: "find the directory of",
        path: path.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "no parent directory"),
    })
}

fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}{TEMPORARY_SUFFIX}"))
}

fn sync_directory(directory: &Path) -> Result<(), FileError> {
    File::open(directory)
        .and_then(|handle| handle.sync_all())
        .map_err(error("fsync directory", directory))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("rktnetes-atomic-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn writes_whole_files_with_the_mode_and_leaves_no_temporary() {
        let dir = scratch("write");
        let path = dir.join("net.d/00-rktnetes.conf");
        write(&path, b"{\"a\": 1}\n", 0o644).unwrap();
        write(&path, b"{\"a\": 2}\n", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{\"a\": 2}\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["00-rktnetes.conf"]);
    }

    #[test]
    fn the_temporary_name_is_never_read_by_rkt() {
        let temporary = temporary_path(Path::new("/etc/rkt/net.d/00-rktnetes.conf"));
        let name = temporary
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(!name.ends_with(".conf") && !name.ends_with(".json") && name.starts_with('.'));
        assert_eq!(temporary.parent(), Some(Path::new("/etc/rkt/net.d")));
    }

    #[test]
    fn removing_is_idempotent_and_leftovers_are_cleared() {
        let dir = scratch("remove");
        let path = dir.join("f.json");
        write(&path, b"x", 0o600).unwrap();
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert_eq!(read(&path).unwrap(), None);
        fs::write(dir.join(".f.json.rktnetes-tmp"), b"partial").unwrap();
        fs::write(dir.join("foreign.conf"), b"keep").unwrap();
        remove_leftovers(&dir).unwrap();
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["foreign.conf"]);
    }

    #[test]
    fn a_reader_racing_the_writer_sees_old_or_new_whole() {
        let dir = scratch("race");
        let path = dir.join("00-rktnetes.conf");
        let old = vec![b'o'; 64 * 1024];
        let new = vec![b'n'; 64 * 1024];
        write(&path, &old, 0o644).unwrap();
        let reader = {
            let (path, old, new) = (path.clone(), old.clone(), new.clone());
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    let seen = fs::read(&path).unwrap();
                    assert!(
                        seen == old || seen == new,
                        "a partial file of {} bytes",
                        seen.len()
                    );
                }
            })
        };
        for round in 0..200 {
            write(&path, if round % 2 == 0 { &new } else { &old }, 0o644).unwrap();
        }
        reader.join().unwrap();
    }
}
