//! rkt's configuration directories, read and checked as rkt does when it starts (rkt `rkt/config/config.go` and
//! `Documentation/configuration.md`): the stand-in refuses to start on what rkt would refuse, and the agent can
//! check a configuration before it restarts the API service on it.
//!
//! The rules, rkt's:
//! - Directories are read in order, system (`/usr/lib/rkt`), local (`/etc/rkt`), then the user directory if one
//!   is given; a later directory's value overrides an earlier one field by field. A missing directory is empty.
//! - In each, a kind has its subdirectory (`stage1.d`, `paths.d`). Only regular files named `*.json` directly in it
//!   are read, in name order; subdirectories, symbolic links and other names are skipped, and so is a kind's
//!   subdirectory that is itself a symbolic link.
//! - Every file has a non-empty `rktKind` (the subdirectory's kind) and `rktVersion` (`v1`).
//! - Within one directory, two files must not define the same field, whatever their names.
//!
//! Not read here: `auth.d` (credentials, which the operator never writes) and `net.d`, which rkt reads only when a
//! pod starts, never at start-up.

mod error;
pub(crate) mod go_json;
mod go_url;
mod paths;
mod stage1;

use std::{
    fs,
    path::{Path, PathBuf},
};

pub use error::{ConfigError, Problem};
pub use paths::PathsConfig;
pub use stage1::{Stage1Config, Stage1Image};

/// A configured value and the file that set it, so messages and reports can point at the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FromFile<T> {
    pub value: T,
    pub file: PathBuf,
}

impl<T> FromFile<T> {
    /// Sets `slot` to `value` from `file`, unless another file of the same directory already set it.
    fn define(
        slot: &mut Option<Self>,
        field: &'static str,
        value: T,
        file: &Path,
    ) -> Result<(), ConfigError> {
        if let Some(first) = slot {
            return Err(ConfigError::DefinedTwice {
                field,
                first: first.file.clone(),
                second: file.to_owned(),
            });
        }
        *slot = Some(Self {
            value,
            file: file.to_owned(),
        });
        Ok(())
    }
}

/// The configuration rkt starts with: every kind the stand-in honours, merged over the directories.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RktConfig {
    pub stage1: Stage1Config,
    pub paths: PathsConfig,
}

/// The configuration directories rkt reads, in rkt's order (its `--system-config`, `--local-config` and
/// `--user-config` flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigDirs {
    pub system: PathBuf,
    pub local: PathBuf,
    pub user: Option<PathBuf>,
}

impl Default for ConfigDirs {
    fn default() -> Self {
        Self {
            system: PathBuf::from(DEFAULT_SYSTEM_CONFIG_DIR),
            local: PathBuf::from(DEFAULT_LOCAL_CONFIG_DIR),
            user: None,
        }
    }
}

/// The vendor's configuration directory, read-only.
pub const DEFAULT_SYSTEM_CONFIG_DIR: &str = "/usr/lib/rkt";

/// The admin's configuration directory: where the operator writes.
pub const DEFAULT_LOCAL_CONFIG_DIR: &str = crate::api::host_paths::RKT_LOCAL_CONFIG_DIR;

impl ConfigDirs {
    /// Reads every directory, each checked on its own, later ones overriding earlier ones.
    pub fn read(&self) -> Result<RktConfig, ConfigError> {
        let layers = [Some(&self.system), Some(&self.local), self.user.as_ref()]
            .into_iter()
            .flatten()
            .map(|dir| LayerFiles::read(dir))
            .collect::<Result<Vec<_>, _>>()?;
        RktConfig::merged(&layers)
    }
}

impl RktConfig {
    /// The configuration of `layers` (system, local, then user), each checked on its own, later ones overriding
    /// earlier ones field by field.
    pub fn merged(layers: &[LayerFiles]) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        for layer in layers {
            let layer = layer.config()?;
            config.stage1.override_with(layer.stage1);
            config.paths.override_with(layer.paths);
        }
        Ok(config)
    }
}

/// One configuration directory on its own, where no field may be defined twice.
pub fn read_config_dir(dir: &Path) -> Result<RktConfig, ConfigError> {
    LayerFiles::read(dir)?.config()
}

/// The files rkt reads in one configuration directory, with their contents: those of `stage1.d` and of
/// `paths.d`, each in name order. A copy in memory, so that a change can be checked before it is made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerFiles {
    pub stage1: Vec<(PathBuf, Vec<u8>)>,
    pub paths: Vec<(PathBuf, Vec<u8>)>,
}

impl LayerFiles {
    /// The files of the configuration directory `dir` (none when it is missing).
    pub fn read(dir: &Path) -> Result<Self, ConfigError> {
        if !is_dir(dir)? {
            return Ok(Self::default());
        }
        Ok(Self {
            stage1: config_files(&dir.join("stage1.d"))?,
            paths: config_files(&dir.join("paths.d"))?,
        })
    }

    /// The layer with the file at `path` holding `content`, or gone (`None`), when rkt would read a file there:
    /// a `*.json` directly in `stage1.d` or `paths.d` of `dir`. Other paths leave the layer as it is.
    pub fn with_file(mut self, dir: &Path, path: &Path, content: Option<Vec<u8>>) -> Self {
        let read_by_rkt = path
            .file_name()
            .is_some_and(|name| name.as_encoded_bytes().ends_with(b".json"));
        let files = match path.parent() {
            Some(parent) if read_by_rkt && parent == dir.join("stage1.d") => &mut self.stage1,
            Some(parent) if read_by_rkt && parent == dir.join("paths.d") => &mut self.paths,
            _ => return self,
        };
        files.retain(|(file, _)| file != path);
        if let Some(content) = content {
            files.push((path.to_owned(), content));
            sort_by_name(files);
        }
        self
    }

    /// The layer's configuration: refused as rkt refuses it.
    pub fn config(&self) -> Result<RktConfig, ConfigError> {
        read_files(&self.stage1, &self.paths)
    }
}

/// One configuration directory's files, read in memory: those of `stage1.d` and of `paths.d`, each in name order.
pub fn read_files(
    stage1_files: &[(PathBuf, Vec<u8>)],
    paths_files: &[(PathBuf, Vec<u8>)],
) -> Result<RktConfig, ConfigError> {
    let mut config = RktConfig::default();
    for (path, raw) in stage1_files {
        check_header(path, raw, stage1::KIND)?;
        config.stage1.add_file(path, raw)?;
    }
    for (path, raw) in paths_files {
        check_header(path, raw, paths::KIND)?;
        config.paths.add_file(path, raw)?;
    }
    Ok(config)
}

/// Whether `path` is a directory, following symbolic links; a missing one is no directory, anything else that is
/// not one is an error, as in rkt.
fn is_dir(path: &Path) -> Result<bool, ConfigError> {
    match fs::metadata(path) {
        Ok(metadata) if metadata.is_dir() => Ok(true),
        Ok(_) => Err(ConfigError::NotADirectory {
            path: path.to_owned(),
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(ConfigError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The config files of a kind's subdirectory with their contents, in name order (Go's `filepath.Walk` order, so
/// the file reported second in a conflict is the one rkt would report).
fn config_files(dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>, ConfigError> {
    if !is_dir(dir)? {
        return Ok(Vec::new());
    }
    // rkt walks the directory with Go's `filepath.Walk`, which does not descend into a root that is a symbolic
    // link: a linked `stage1.d` is silently ignored by rkt, so it is here.
    let linked = fs::symlink_metadata(dir).map_err(|source| ConfigError::Io {
        path: dir.to_owned(),
        source,
    })?;
    if linked.file_type().is_symlink() {
        return Ok(Vec::new());
    }
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| ConfigError::Io { path, source }
    };
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let path = entry.path();
        // rkt lstats: a symbolic link is skipped, not followed.
        let file_type = entry.file_type().map_err(io_error(&path))?;
        if file_type.is_file() && entry.file_name().as_encoded_bytes().ends_with(b".json") {
            paths.push(path);
        }
    }
    let mut files = paths
        .into_iter()
        .map(|path| {
            let raw = fs::read(&path).map_err(io_error(&path))?;
            Ok((path, raw))
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    sort_by_name(&mut files);
    Ok(files)
}

/// In Go's `filepath.Walk` order: byte order of the names.
fn sort_by_name(files: &mut [(PathBuf, Vec<u8>)]) {
    files.sort_by(|(a, _), (b, _)| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
}

/// Every config file names its kind and version; a subdirectory takes one kind, and each kind has version `v1`.
fn check_header(path: &Path, raw: &[u8], kind: &'static str) -> Result<(), ConfigError> {
    let [found_kind, version] = go_json::string_fields(path, raw, ["rktKind", "rktVersion"])?;
    let found_kind = found_kind
        .filter(|value| !value.is_empty())
        .ok_or_else(|| ConfigError::NoKind {
            path: path.to_owned(),
        })?;
    let version =
        version
            .filter(|value| !value.is_empty())
            .ok_or_else(|| ConfigError::NoVersion {
                path: path.to_owned(),
            })?;
    if found_kind != kind {
        return Err(ConfigError::WrongKind {
            dir: path.parent().map(Path::to_owned).unwrap_or_default(),
            path: path.to_owned(),
            expected: kind,
            found: found_kind,
        });
    }
    if version != "v1" {
        return Err(ConfigError::UnknownVersion {
            path: path.to_owned(),
            kind,
            version,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
