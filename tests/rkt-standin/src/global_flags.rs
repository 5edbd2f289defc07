//! rkt's global flags, spelled and parsed as rkt spells and parses them (rkt `rkt/rkt.go`): accepted before or
//! after the subcommand, directories made absolute, booleans set by `--flag` or `--flag=false`.

use std::path::{Component, Path, PathBuf};

use clap::{ArgAction, Args};

use rktnetes_operator::rkt::config::{
    ConfigDirs, DEFAULT_LOCAL_CONFIG_DIR, DEFAULT_SYSTEM_CONFIG_DIR,
};

#[derive(Clone, Debug, Args)]
pub struct GlobalFlags {
    /// rkt data directory [default: the `data` of paths.d, else /var/lib/rkt]
    #[arg(long, global = true, value_name = "DIR", value_parser = absolute_dir)]
    pub dir: Option<PathBuf>,
    /// system configuration directory
    #[arg(long, global = true, value_name = "DIR", value_parser = absolute_dir, default_value = DEFAULT_SYSTEM_CONFIG_DIR)]
    pub system_config: PathBuf,
    /// local configuration directory
    #[arg(long, global = true, value_name = "DIR", value_parser = absolute_dir, default_value = DEFAULT_LOCAL_CONFIG_DIR)]
    pub local_config: PathBuf,
    /// user configuration directory
    #[arg(long, global = true, value_name = "DIR", value_parser = absolute_dir)]
    pub user_config: Option<PathBuf>,
    /// comma-separated list of security features to disable. Allowed values: "none", "image", "tls", "ondisk",
    /// "http", "pubkey", "capabilities", "paths", "seccomp", "all-fetch", "all-run", "all"
    #[arg(long, global = true, value_name = "OPTIONS", value_parser = InsecureOptions::parse, default_value = "none")]
    pub insecure_options: InsecureOptions,
    /// automatically trust gpg keys fetched from https
    #[arg(long, global = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_name = "BOOL")]
    pub trust_keys_from_https: bool,
    /// print out more debug information to stderr
    #[arg(long, global = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_name = "BOOL")]
    pub debug: bool,
}

impl GlobalFlags {
    /// The configuration directories these flags name.
    pub fn config_dirs(&self) -> ConfigDirs {
        ConfigDirs {
            system: self.system_config.clone(),
            local: self.local_config.clone(),
            user: self.user_config.clone(),
        }
    }
}

/// rkt's directory flags: not empty, and made absolute against the working directory and cleaned, as Go's
/// `filepath.Abs` does.
fn absolute_dir(value: &str) -> Result<PathBuf, String> {
    if value.is_empty() {
        return Err("\"\" is not a valid directory".to_owned());
    }
    let path = Path::new(value);
    let joined = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .map_err(|error| format!("cannot make {value:?} absolute: {error}"))?
            .join(path)
    };
    Ok(clean(&joined))
}

/// `path` without `.` and `..` segments, resolved lexically (Go's `filepath.Clean`).
fn clean(path: &Path) -> PathBuf {
    let mut cleaned = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(segment) => cleaned.push(segment),
            Component::ParentDir => {
                cleaned.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    cleaned
}

/// The security features disabled with `--insecure-options` (rkt `rkt/flag/secflags.go`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InsecureOptions(u16);

const IMAGE: u16 = 1;
const TLS: u16 = 1 << 1;
/// Ignored by rkt since 1.x and left for compatibility: named on its own it still shows, but `all` and `all-run`
/// do not include it.
const ONDISK: u16 = 1 << 2;
const HTTP: u16 = 1 << 3;
const PUBKEY: u16 = 1 << 4;
const CAPABILITIES: u16 = 1 << 5;
const PATHS: u16 = 1 << 6;
const SECCOMP: u16 = 1 << 7;
const ALL_FETCH: u16 = IMAGE | TLS | HTTP | PUBKEY;
const ALL_RUN: u16 = CAPABILITIES | PATHS | SECCOMP;

/// Each option and the features it disables, in rkt's order; `all-fetch`, `all-run` and `all` are unions of the
/// others.
const INSECURE_OPTIONS: [(&str, u16); 12] = [
    ("none", 0),
    ("image", IMAGE),
    ("tls", TLS),
    ("ondisk", ONDISK),
    ("http", HTTP),
    ("pubkey", PUBKEY),
    ("capabilities", CAPABILITIES),
    ("paths", PATHS),
    ("seccomp", SECCOMP),
    ("all-fetch", ALL_FETCH),
    ("all-run", ALL_RUN),
    ("all", ALL_FETCH | ALL_RUN),
];

impl InsecureOptions {
    /// rkt's rules: a comma-separated list, case-insensitive, each option known and named once; empty is `none`.
    fn parse(value: &str) -> Result<Self, String> {
        let mut options = Self(0);
        if value.is_empty() {
            return Ok(options);
        }
        let value = value.to_lowercase();
        let mut seen = Vec::new();
        for name in value.split(',') {
            let Some((_, bits)) = INSECURE_OPTIONS.iter().find(|(option, _)| *option == name)
            else {
                let allowed = INSECURE_OPTIONS.map(|(option, _)| option).join(", ");
                return Err(format!("unknown option {name:?}; allowed: {allowed}"));
            };
            if seen.contains(&name) {
                return Err(format!("duplicated option {name:?}"));
            }
            seen.push(name);
            options.0 |= bits;
        }
        Ok(options)
    }
}

/// As rkt reports them in GetInfo: `none`, or every option whose features are all disabled, comma-separated.
/// rkt lists them in the random order of a Go map; we keep the order of its list of options.
impl std::fmt::Display for InsecureOptions {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = INSECURE_OPTIONS
            .iter()
            .filter(|(name, bits)| !matches!(*name, "none" | "all") && self.0 & bits == *bits)
            .map(|(name, _)| *name)
            .collect();
        if names.is_empty() {
            formatter.write_str("none")
        } else {
            formatter.write_str(&names.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{InsecureOptions, absolute_dir, clean};

    #[test]
    fn directories_are_absolute_and_clean() {
        assert_eq!(
            clean(Path::new("/etc/rkt/../rkt/./net.d/")),
            Path::new("/etc/rkt/net.d")
        );
        assert_eq!(clean(Path::new("/..")), Path::new("/"));
        assert_eq!(absolute_dir("/etc/rkt").unwrap(), Path::new("/etc/rkt"));
        assert!(absolute_dir("relative").unwrap().is_absolute());
        assert_eq!(
            absolute_dir("").unwrap_err(),
            "\"\" is not a valid directory"
        );
    }

    #[test]
    fn insecure_options_read_back_as_rkt_reports_them() {
        let shown = |value: &str| InsecureOptions::parse(value).unwrap().to_string();
        assert_eq!(shown("none"), "none");
        assert_eq!(shown("image,tls"), "image,tls");
        assert_eq!(shown("tls,image"), "image,tls");
        assert_eq!(shown("all-run"), "capabilities,paths,seccomp,all-run");
        // rkt's `all` leaves out `ondisk`, which it ignores; named on its own, it shows.
        assert_eq!(
            shown("all"),
            "image,tls,http,pubkey,capabilities,paths,seccomp,all-fetch,all-run"
        );
        assert_eq!(shown("ondisk"), "ondisk");
        assert_eq!(
            shown("all,ondisk"),
            "image,tls,ondisk,http,pubkey,capabilities,paths,seccomp,all-fetch,all-run"
        );
        assert_eq!(shown("IMAGE"), "image");
        assert_eq!(shown(""), "none");
        assert!(InsecureOptions::parse("bogus").is_err());
        assert!(InsecureOptions::parse("image,image").is_err());
    }
}
