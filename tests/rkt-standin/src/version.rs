//! Which rkt the stand-in pretends to be, and `rkt version` in rkt 1.x's format.

use std::io::Write;

use rktnetes_operator::rkt::APPC_VERSION;

/// Overrides the version at start, so one build can play an older rkt on one test node and a newer on another.
pub const VERSION_ENV: &str = "RKT_STANDIN_VERSION";

/// The version built in: `RKT_STANDIN_VERSION` at compile time, else 1.30.0, rkt's last release.
pub const BUILD_VERSION: &str = match option_env!("RKT_STANDIN_VERSION") {
    Some(version) => version,
    None => "1.30.0",
};

/// The rkt version to report: `RKT_STANDIN_VERSION` from the environment when set and not empty, else the build's.
pub fn rkt_version() -> String {
    std::env::var(VERSION_ENV)
        .ok()
        .filter(|version| !version.trim().is_empty())
        .map_or_else(
            || BUILD_VERSION.to_owned(),
            |version| version.trim().to_owned(),
        )
}

/// Prints what rkt 1.x's `rkt version` prints. There is no Go here, and the `Go Version` line says so rather than
/// invent a Go release.
pub fn print(out: &mut impl Write, version: &str) -> std::io::Result<()> {
    writeln!(out, "rkt Version: {version}")?;
    writeln!(out, "appc Version: {APPC_VERSION}")?;
    writeln!(out, "Go Version: rktnetes stand-in (Rust)")?;
    writeln!(out, "Go OS/Arch: {}/{}", std::env::consts::OS, go_arch())?;
    writeln!(out, "Features: -TPM +SDJOURNAL")
}

/// The machine's architecture as Go names it (`GOARCH`), which is what rkt prints.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::print;

    #[test]
    fn prints_rkt_1_version_lines() {
        let mut out = Vec::new();
        print(&mut out, "1.9.1").unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0], "rkt Version: 1.9.1");
        assert_eq!(lines[1], "appc Version: 0.8.11");
        assert!(lines[3].starts_with("Go OS/Arch: linux/"), "{}", lines[3]);
        assert_eq!(lines[4], "Features: -TPM +SDJOURNAL");
    }
}
