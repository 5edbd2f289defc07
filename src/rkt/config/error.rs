//! What makes rkt refuse its configuration, each error naming the file (and, for a conflict, both files).

use std::path::PathBuf;

/// A configuration rkt would refuse to start with (rkt `rkt/config`). rkt's own messages name only the file it was
/// reading when it noticed; ours name every file involved, so an admin sees what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("expected {path} to be a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path}: not a JSON object: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: field {field:?} must be a string, not {found}")]
    NotAString {
        path: PathBuf,
        field: &'static str,
        found: &'static str,
    },
    #[error("no rktKind specified in {path}")]
    NoKind { path: PathBuf },
    #[error("no rktVersion specified in {path}")]
    NoVersion { path: PathBuf },
    #[error(
        "the configuration directory {dir} expects configuration files of kind {expected:?}, \
         but {path} has kind {found:?}"
    )]
    WrongKind {
        dir: PathBuf,
        path: PathBuf,
        expected: &'static str,
        found: String,
    },
    #[error(
        "{path}: no parser available for configuration of kind {kind:?} and version {version:?}"
    )]
    UnknownVersion {
        path: PathBuf,
        kind: &'static str,
        version: String,
    },
    #[error("{path}: invalid {kind} configuration: {problem}")]
    Invalid {
        path: PathBuf,
        kind: &'static str,
        problem: Problem,
    },
    #[error(
        "both {first} and {second} define {field}; within one configuration directory, \
         only one file may"
    )]
    DefinedTwice {
        field: &'static str,
        first: PathBuf,
        second: PathBuf,
    },
}

/// What is wrong inside one otherwise well-formed file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("the default stage1 image version is specified, but its name is missing")]
    VersionWithoutName,
    #[error("the default stage1 image name is specified, but its version is missing")]
    NameWithoutVersion,
    #[error(
        "the default stage1 image location {location:?} is either a relative path or a URL without scheme"
    )]
    LocationWithoutScheme { location: String },
    #[error("the default stage1 image location {location:?} is an invalid URL: {reason}")]
    LocationNotAUrl { location: String, reason: String },
    #[error(
        "the default stage1 image location URL {location:?} has invalid scheme {scheme:?}, \
         allowed schemes are \"docker\", \"file\", \"http\", \"https\""
    )]
    LocationScheme { location: String, scheme: String },
    #[error("the {field} directory {path:?} must be an absolute path")]
    RelativePath { field: &'static str, path: String },
}
