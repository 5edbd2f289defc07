//! Debian roots built with debootstrap once and cached: the Debian release of this host, the mirror apt uses here,
//! and the cached root itself, rebuilt only when what it is made of changes. (The kind lane's images are built by
//! `e2e/lib/debian.sh`, the shell counterpart.)

use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, bail};

use super::{installed, log, mounts, print_tail, remove_file};

/// The Debian release (`bookworm` ...) in an `/etc/os-release`, when it is Debian's.
pub fn host_suite(os_release: &str) -> Option<String> {
    let value = |key: &str| {
        os_release.lines().find_map(|line| {
            let value = line.strip_prefix(key)?.strip_prefix('=')?;
            Some(value.trim().trim_matches(['"', '\'']).to_owned())
        })
    };
    let codename = value("VERSION_CODENAME").filter(|codename| !codename.is_empty())?;
    (value("ID").as_deref() == Some("debian")).then_some(codename)
}

/// The mirror apt uses on this machine for `suite`: the first source, one-line or deb822 style, that serves it (not
/// the security archive, which has suites of its own); Debian's redirector if none does.
pub fn apt_mirror(suite: &str) -> String {
    let sorted_with = |extension: &str| {
        let mut files: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
            .into_iter()
            .flatten()
            .filter_map(|entry| Some(entry.ok()?.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == extension))
            .collect();
        files.sort();
        files
    };
    let one_line =
        std::iter::once(PathBuf::from("/etc/apt/sources.list")).chain(sorted_with("list"));
    let from_one_line = one_line
        .filter_map(|file| fs::read_to_string(file).ok())
        .find_map(|text| mirror_in_one_line_sources(&text, suite));
    from_one_line
        .or_else(|| {
            sorted_with("sources")
                .into_iter()
                .filter_map(|file| fs::read_to_string(file).ok())
                .find_map(|text| mirror_in_deb822_sources(&text, suite))
        })
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_owned())
}

/// `deb [option=value ...] URI SUITE COMPONENT...` lines.
fn mirror_in_one_line_sources(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != "deb" {
            return None;
        }
        let mut uri = words.next()?;
        if uri.starts_with('[') {
            while !uri.ends_with(']') {
                uri = words.next()?;
            }
            uri = words.next()?;
        }
        (words.next()? == suite).then(|| uri.to_owned())
    })
}

/// deb822 paragraphs (`Types:`, `URIs:`, `Suites:`, `Enabled:`), separated by blank lines.
fn mirror_in_deb822_sources(text: &str, suite: &str) -> Option<String> {
    text.split("\n\n").find_map(|paragraph| {
        let field = |name: &str| {
            paragraph
                .lines()
                .filter(|line| !line.starts_with('#'))
                .find_map(|line| {
                    let (key, value) = line.split_once(':')?;
                    key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
                })
        };
        let has = |name: &str, wanted: &str| {
            field(name).is_some_and(|values| values.split_whitespace().any(|value| value == wanted))
        };
        let enabled = field("Enabled").is_none_or(|value| !value.eq_ignore_ascii_case("no"));
        if enabled && has("Types", "deb") && has("Suites", suite) {
            field("URIs")?.split_whitespace().next().map(str::to_owned)
        } else {
            None
        }
    })
}

/// A minimal Debian root of `suite` with `packages`, then `prepare` run on it, cached at `root`.
pub struct CachedRoot<'a> {
    pub root: PathBuf,
    pub suite: &'a str,
    pub packages: &'a [&'a str],
    /// Where debootstrap downloads from; the mirror apt uses here when none.
    pub mirror: Option<String>,
    pub prepare: fn(&Path) -> anyhow::Result<()>,
    /// Changes whenever what `prepare` does changes.
    pub prepare_key: String,
}

impl CachedRoot<'_> {
    /// What the cached root was made of, written beside it: a root whose stamp differs is rebuilt.
    fn stamp(&self) -> String {
        format!(
            "suite={} packages={} prepare={}",
            self.suite,
            self.packages.join(" "),
            self.prepare_key
        )
    }

    fn beside(&self, suffix: &str) -> PathBuf {
        let mut path = self.root.clone().into_os_string();
        path.push(suffix);
        PathBuf::from(path)
    }

    /// Builds the root unless it is there and current. A build that fails or is killed leaves the old root.
    pub fn ensure(&self) -> anyhow::Result<()> {
        let stamp_file = self.beside(".stamp");
        let want = self.stamp();
        let current = fs::read_to_string(&stamp_file).ok();
        if self.root.is_dir() && current.as_deref().map(str::trim_end) == Some(want.as_str()) {
            return Ok(());
        }
        if !installed("debootstrap") {
            bail!("debootstrap is not installed; run e2e/install-deps.sh");
        }
        let mirror = self
            .mirror
            .clone()
            .unwrap_or_else(|| apt_mirror(self.suite));
        let start = Instant::now();
        log(format!(
            "building a Debian {} root from {mirror} into {} (about a minute, once)",
            self.suite,
            self.root.display()
        ));
        if let Some(parent) = self.root.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let building = self.beside(".tmp");
        let log_path = self.beside(".debootstrap.log");
        // A debootstrap that died half-way can leave /proc and /sys mounted in its target.
        mounts::unmount_under(&building)?;
        mounts::remove_tree(&building)?;
        let log_file =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let status = Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--include={}", self.packages.join(",")))
            .arg(self.suite)
            .arg(&building)
            .arg(&mirror)
            .stdout(log_file.try_clone().context("the debootstrap log")?)
            .stderr(log_file)
            .status()
            .context("running debootstrap")?;
        if !status.success() {
            print_tail(&log_path, 20);
            mounts::unmount_under(&building)?;
            bail!("debootstrap failed ({status}); see {}", log_path.display());
        }
        (self.prepare)(&building)
            .with_context(|| format!("preparing the Debian root {}", building.display()))?;
        remove_file(&stamp_file)?;
        mounts::remove_tree(&self.root)?;
        fs::rename(&building, &self.root).with_context(|| {
            format!("renaming {} to {}", building.display(), self.root.display())
        })?;
        fs::write(&stamp_file, format!("{want}\n"))
            .with_context(|| format!("writing {}", stamp_file.display()))?;
        log(format!(
            "Debian root ready in {} s: {}",
            start.elapsed().as_secs(),
            self.root.display()
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suite_of_debian_only() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n";
        assert_eq!(host_suite(debian).as_deref(), Some("bookworm"));
        let ubuntu = "ID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n";
        assert_eq!(host_suite(ubuntu), None);
        assert_eq!(host_suite("ID=debian\n"), None);
    }

    #[test]
    fn one_line_sources_with_and_without_options() {
        let text = "# deb http://old/ bookworm main\n\
                    deb http://security.debian.org/ bookworm-security main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n";
        assert_eq!(
            mirror_in_one_line_sources(text, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(mirror_in_one_line_sources(text, "trixie"), None);
    }

    #[test]
    fn deb822_sources_skip_disabled_and_other_suites() {
        let text = "Types: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\nEnabled: no\n\n\
                    Types: deb\n# a comment\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\n\
                    Types: deb deb-src\nURIs: http://mirror.example/debian http://other.example/debian\n\
                    Suites: bookworm bookworm-updates\nComponents: main\n";
        assert_eq!(
            mirror_in_deb822_sources(text, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(mirror_in_deb822_sources(text, "trixie"), None);
    }
}
