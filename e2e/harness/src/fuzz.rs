//! The fuzzing campaign: every target of `tests/fuzz` run with cargo fuzz (libFuzzer, nightly Rust) for a time or
//! a number of executions, its figures read from libFuzzer's final statistics. cargo-fuzz is installed once into
//! the cache, keyed by its pinned version; the targets build into a target directory of their own there.
//!
//! A target fails the campaign when libFuzzer stops on a crash (a panic, an abort, a timeout or running out of
//! memory); the input that did it is left in `tests/fuzz/artifacts/TARGET/`.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, bail};

use crate::{
    log,
    settings::{self, Settings},
};

/// The targets, as `tests/fuzz/Cargo.toml` names them.
pub const TARGETS: [&str; 5] = [
    "render_spec",
    "cni_config",
    "rkt_config",
    "ledger",
    "offline_validation",
];

/// How long each target runs.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    Seconds(u64),
    Runs(u64),
}

/// What one target did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub target: String,
    pub runs: u64,
    pub seconds: u64,
    pub corpus: usize,
    pub crashed: bool,
}

impl fmt::Display for Outcome {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = self.runs / self.seconds.max(1);
        write!(
            formatter,
            "{:<20} {:>12} runs {:>6} s {:>8}/s {:>6} corpus  {}",
            self.target,
            self.runs,
            self.seconds,
            rate,
            self.corpus,
            if self.crashed { "CRASHED" } else { "0 crashes" }
        )
    }
}

/// Runs each of `targets` within `budget`; fails when any crashed, after running them all.
pub fn campaign(
    settings: &Settings,
    targets: &[String],
    budget: Budget,
) -> anyhow::Result<Vec<Outcome>> {
    let cargo_fuzz = install_cargo_fuzz(settings)?;
    let fuzz_dir = settings.repo.join("tests/fuzz");
    let target_dir = settings.cache.join("fuzz/target");
    log("building the fuzz targets (cargo +nightly fuzz build, release with debug assertions)");
    let status = cargo_fuzz_command(&cargo_fuzz, &target_dir)
        .args(["build", "--fuzz-dir"])
        .arg(&fuzz_dir)
        .args(["-O", "--debug-assertions"])
        .stdout(Stdio::inherit())
        .status()
        .context("running cargo +nightly fuzz build (is the nightly toolchain installed?)")?;
    anyhow::ensure!(status.success(), "cargo fuzz build failed");
    let mut outcomes = Vec::new();
    for target in targets {
        anyhow::ensure!(
            TARGETS.contains(&target.as_str()),
            "no fuzz target {target:?}; the targets are {}",
            TARGETS.join(", ")
        );
        outcomes.push(run_target(
            &cargo_fuzz,
            &target_dir,
            &fuzz_dir,
            target,
            budget,
        )?);
        log(outcomes
            .last()
            .map_or_else(String::new, ToString::to_string));
    }
    if outcomes.iter().any(|outcome| outcome.crashed) {
        bail!(
            "a fuzz target crashed; its input is in {}",
            fuzz_dir.join("artifacts").display()
        );
    }
    Ok(outcomes)
}

fn run_target(
    cargo_fuzz: &Path,
    target_dir: &Path,
    fuzz_dir: &Path,
    target: &str,
    budget: Budget,
) -> anyhow::Result<Outcome> {
    let corpus = fuzz_dir.join("corpus").join(target);
    let seeds = fuzz_dir.join("seeds").join(target);
    fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let limit = match budget {
        Budget::Seconds(seconds) => format!("-max_total_time={seconds}"),
        Budget::Runs(runs) => format!("-runs={runs}"),
    };
    log(format!("fuzzing {target} ({limit})"));
    let started = Instant::now();
    // New inputs go to the corpus directory; the seeds (committed, hand-made) are only read.
    let output = cargo_fuzz_command(cargo_fuzz, target_dir)
        .args(["run", "--fuzz-dir"])
        .arg(fuzz_dir)
        .args(["-O", "--debug-assertions", target])
        .arg(&corpus)
        .arg(&seeds)
        .args([
            "--",
            &limit,
            "-max_len=4096",
            "-timeout=10",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
        ])
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running cargo fuzz run {target}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let crashed = !output.status.success();
    if crashed {
        eprintln!("{stderr}");
    }
    let corpus_size = fs::read_dir(&corpus).map_or(0, |entries| entries.count());
    Ok(Outcome {
        target: target.to_owned(),
        runs: final_stat(&stderr, "stat::number_of_executed_units").unwrap_or(0),
        seconds: started.elapsed().as_secs(),
        corpus: corpus_size,
        crashed,
    })
}

/// A value of libFuzzer's `-print_final_stats=1` lines (`stat::name:   value`).
fn final_stat(stderr: &str, name: &str) -> Option<u64> {
    stderr.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(':')?
            .trim()
            .parse()
            .ok()
    })
}

fn cargo_fuzz_command(cargo_fuzz: &Path, target_dir: &Path) -> Command {
    let mut command = Command::new(cargo_fuzz);
    // cargo-fuzz runs as a cargo subcommand: its first argument is its own name.
    command
        .arg("fuzz")
        .env("RUSTUP_TOOLCHAIN", "nightly")
        .env("CARGO_TARGET_DIR", target_dir);
    settings::forget_cargo_run(&mut command);
    command
}

/// cargo-fuzz of the pinned version, installed into the cache the first time.
fn install_cargo_fuzz(settings: &Settings) -> anyhow::Result<PathBuf> {
    let version = settings.version("CARGO_FUZZ_VERSION")?;
    let root = settings
        .cache
        .join("tools")
        .join(format!("cargo-fuzz-{version}"));
    let binary = root.join("bin/cargo-fuzz");
    if binary.is_file() {
        return Ok(binary);
    }
    log(format!(
        "installing cargo-fuzz {version} into {}",
        root.display()
    ));
    let status = Command::new("cargo")
        .args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            version,
            "--root",
        ])
        .arg(&root)
        .stdout(Stdio::inherit())
        .status()
        .context("running cargo install cargo-fuzz")?;
    anyhow::ensure!(
        status.success(),
        "cargo install cargo-fuzz {version} failed"
    );
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_statistics_are_read_by_name() {
        let stderr = "Done 12345 runs in 10 second(s)\nstat::number_of_executed_units: 12345\nstat::average_exec_per_sec:     1234\n";
        assert_eq!(
            final_stat(stderr, "stat::number_of_executed_units"),
            Some(12345)
        );
        assert_eq!(final_stat(stderr, "stat::peak_rss_mb"), None);
    }
}
