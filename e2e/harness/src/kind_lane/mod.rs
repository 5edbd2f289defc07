//! The kind lane: a real kind cluster on this machine, the chart's controller Deployment and agent DaemonSet as pods
//! on its kubelets, and the node end-to-end suite (the integration tests' `nodes::`) plus the lane's own checks
//! (`kind::`, ignored by a plain cargo test) against it. Everything it runs is built here; nothing is pulled from a
//! registry. `e2e/kind/run.sh` runs it as `rktnetes-e2e kind`.
//!
//! The Docker engine, the tools and the images stay shell (`e2e/kind/engine.sh`, `e2e/build-tools.sh`,
//! `node-image.sh`, `operator-image.sh`): the lane runs them and orders the rest.

mod chart;
mod cluster;
mod diagnostics;
mod disk;
mod images;
mod lane;
pub mod pulls;
mod suite;

use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};

pub use self::lane::Lane;
use self::lane::run_to_stderr;
use crate::output::{log, shell_quote};

/// `rktnetes-e2e kind [ci] | up [-- TEST_ARGS...] | setup | test [-- TEST_ARGS...] | env | down`.
///
/// Settings (environment): RKTNETES_KIND_CLUSTER, the cluster's name (default rktnetes; workers <name>-worker,
/// <name>-worker2, ...); RKTNETES_KIND_TIMEOUT, seconds to wait for each step that waits (default 300);
/// RKTNETES_CACHE, where everything built is kept.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct KindArgs {
    #[command(subcommand)]
    command: Option<LaneCommand>,
    /// For `ci` without its name: arguments for the test binary.
    #[arg(last = true, value_name = "TEST_ARGS")]
    test_args: Vec<String>,
}

impl KindArgs {
    /// The command asked for; `ci` when none is named.
    pub fn command(self) -> LaneCommand {
        self.command.unwrap_or(LaneCommand::Ci {
            test_args: self.test_args,
        })
    }
}

/// What the lane does.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum LaneCommand {
    /// (The default; what e2e/test.sh runs.) setup, test, then down whatever happened, printing what the pods did
    /// when something failed.
    Ci {
        /// Arguments for the test binary, in place of `nodes:: kind:: --show-output`.
        #[arg(last = true)]
        test_args: Vec<String>,
    },
    /// setup, then test; leaves the cluster running (its environment: `kind env`).
    Up {
        /// Arguments for the test binary, in place of `nodes:: kind:: --show-output`.
        #[arg(last = true)]
        test_args: Vec<String>,
    },
    /// A Docker engine (e2e/kind/engine.sh), the tools (e2e/build-tools.sh kind), the release build, the images,
    /// the cluster of e2e/kind/kind-config.yaml (recreated when the node image changed), the fourth worker's older
    /// rkt, the operator image loaded with `kind load`, the chart installed with it; waits for the controller.
    Setup,
    /// The suite against that cluster (RKTNETES_E2E_PROFILE=kind, the nodes reached with e2e/kind/node-exec.sh),
    /// then the check that nothing was pulled.
    Test {
        /// Arguments for the test binary (filters, --nocapture ...), in place of `nodes:: kind:: --show-output`.
        #[arg(last = true)]
        test_args: Vec<String>,
    },
    /// Prints the environment the suite uses (KUBECONFIG, DOCKER_HOST, PATH), to eval.
    Env,
    /// Deletes the cluster and stops the Docker engine if the lane started it.
    Down,
}

/// Runs `command`; what failed is in the error, and has been printed with the lane's messages before it.
pub fn run(command: LaneCommand) -> anyhow::Result<()> {
    let mut lane = Lane::from_env()?;
    match command {
        LaneCommand::Ci { test_args } => ci(&mut lane, &test_args),
        LaneCommand::Up { test_args } => {
            setup(&mut lane)?;
            suite::test(&mut lane, &test_args)
        }
        LaneCommand::Setup => setup(&mut lane),
        LaneCommand::Test { test_args } => suite::test(&mut lane, &test_args),
        LaneCommand::Env => print_env(&lane),
        LaneCommand::Down => down(&mut lane),
    }
}

/// setup and test, then down whatever happened: a CI run leaves nothing behind, and its log says what the pods did
/// when it failed.
fn ci(lane: &mut Lane, test_args: &[String]) -> anyhow::Result<()> {
    let result = setup(lane).and_then(|()| suite::test(lane, test_args));
    if result.is_err() && lane.kubeconfig().is_file() {
        diagnostics::print(lane);
    }
    if let Err(error) = down(lane) {
        eprintln!("error: taking the kind lane down: {error:#}");
    }
    result
}

fn setup(lane: &mut Lane) -> anyhow::Result<()> {
    let started = Instant::now();
    let images = images::build(lane)?;
    cluster::create_or_reuse(lane, &images.node)?;
    cluster::set_old_rkt(lane)?;
    chart::install(lane, &images.operator)?;
    lane.kubectl_to_stderr(&["get", "pods", "-A", "-o", "wide"])?;
    log(format!(
        "the kind cluster {} is ready in {}s (eval \"$(e2e/kind/run.sh env)\" to use it)",
        lane.cluster,
        started.elapsed().as_secs()
    ));
    Ok(())
}

/// The engine's `export DOCKER_HOST=...` line (from engine.sh), KUBECONFIG, and a PATH with kubectl, helm and kind.
fn print_env(lane: &Lane) -> anyhow::Result<()> {
    let engine = lane.engine_env()?;
    print!("{engine}");
    println!(
        "export KUBECONFIG={}",
        shell_quote(&lane.kubeconfig().to_string_lossy())
    );
    println!("export PATH={}", shell_quote(&lane.suite_path()?));
    Ok(())
}

fn down(lane: &mut Lane) -> anyhow::Result<()> {
    if lane.kind_installed() && lane.engine_answers() {
        lane.use_engine_env()?;
        if cluster::exists(lane)? {
            log(format!("deleting the kind cluster {}", lane.cluster));
            run_to_stderr(
                lane.kind()
                    .args(["delete", "cluster", "--name", &lane.cluster]),
                "kind delete cluster",
            )?;
        }
    }
    let state = lane.state_dir();
    if state.exists() {
        std::fs::remove_dir_all(&state)
            .with_context(|| format!("removing the cluster's state {}", state.display()))?;
    }
    run_to_stderr(
        lane.script("kind/engine.sh").arg("down"),
        "e2e/kind/engine.sh down",
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kind: KindArgs,
    }

    fn parse(args: &[&str]) -> Result<LaneCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("kind").chain(args.iter().copied()))
            .map(|cli| cli.kind.command())
    }

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn ci_is_the_default_and_test_arguments_follow_the_double_dash() {
        assert_eq!(
            parse(&[]).expect("parses"),
            LaneCommand::Ci { test_args: vec![] }
        );
        assert_eq!(
            parse(&["--", "nodes::", "--nocapture"]).expect("parses"),
            LaneCommand::Ci {
                test_args: strings(&["nodes::", "--nocapture"])
            }
        );
        assert_eq!(
            parse(&["ci", "--", "kind::"]).expect("parses"),
            LaneCommand::Ci {
                test_args: strings(&["kind::"])
            }
        );
        assert_eq!(
            parse(&["up", "--", "kind::"]).expect("parses"),
            LaneCommand::Up {
                test_args: strings(&["kind::"])
            }
        );
        assert_eq!(
            parse(&["test", "--", "kind::", "--exact"]).expect("parses"),
            LaneCommand::Test {
                test_args: strings(&["kind::", "--exact"])
            }
        );
        assert_eq!(parse(&["setup"]).expect("parses"), LaneCommand::Setup);
        assert_eq!(parse(&["env"]).expect("parses"), LaneCommand::Env);
        assert_eq!(parse(&["down"]).expect("parses"), LaneCommand::Down);
    }

    #[test]
    fn commands_without_a_test_run_take_no_arguments() {
        assert!(parse(&["setup", "--", "kind::"]).is_err());
        assert!(parse(&["down", "--", "x"]).is_err());
        assert!(parse(&["test", "kind::"]).is_err());
        assert!(parse(&["sideways"]).is_err());
    }
}
