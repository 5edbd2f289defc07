//! `rktnetes-e2e`: the harness's work for the demo and for people at a shell, through the same code the tests use:
//! the test machines (`nodes`, which `e2e/nodes.sh` runs), and the Kubernetes side, which talks to the cluster of
//! `$KUBECONFIG` (the admin kubeconfig of `e2e/cluster.sh up`).

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use kube::{Client, Config, config::KubeConfigOptions, config::Kubeconfig};
use rktnetes_e2e::{
    control_plane::ControlPlane,
    fuzz, join,
    kind_lane::{self, KindArgs},
    kubeconfig::{self, ClusterEndpoint},
    log,
    machines::{MAX_MACHINES, Machines},
    scale::{self, ScaleArgs},
    service_accounts::{ServiceAccountRef, token},
    settings::Settings,
};

#[derive(Parser)]
#[command(about = "rktnetes-operator's end-to-end harness", version)]
struct Cli {
    /// The admin kubeconfig.
    #[arg(long, env = "KUBECONFIG", global = true)]
    kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The test machines: systemd-nspawn Debian machines behind a host bridge (needs root). Results go to stdout,
    /// progress to stderr.
    Nodes {
        #[command(subcommand)]
        command: NodesCommand,
    },
    /// The local control plane: etcd, kube-apiserver and kube-controller-manager as processes on this machine
    /// (settings: see the module `control_plane`).
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// The fuzzing campaign: each target of tests/fuzz (cargo fuzz, nightly Rust) for a time or a number of runs;
    /// prints each target's figures and fails when one crashed.
    Fuzz {
        /// Seconds per target.
        #[arg(long, conflicts_with = "runs", default_value_t = 60)]
        seconds: u64,
        /// Executions per target, instead of a time.
        #[arg(long)]
        runs: Option<u64>,
        /// The targets (default: all).
        targets: Vec<String>,
    },
    /// The kind lane (e2e/kind/run.sh): a kind cluster built here with the chart's pods on its kubelets, and the
    /// node suite against it. `kind [ci] | up [-- TEST_ARGS...] | setup | test [-- TEST_ARGS...] | env | down`.
    Kind(KindArgs),
    /// The scale bench (e2e/scale.sh): 1,000 to 20,000 cloud-shaped Node objects on the local control plane, the
    /// controller as a process, simulated agents; prints the figures beside the goals.
    Scale(ScaleArgs),
    /// The scale bench's simulated agents, one process for all (started by `scale`).
    #[command(hide = true)]
    ScaleAgents {
        #[arg(long)]
        nodes: usize,
        #[arg(long)]
        apply_delay_ms: u64,
    },
    #[command(flatten)]
    Api(ApiCommand),
}

/// The commands that talk to the cluster of `$KUBECONFIG`.
#[derive(Subcommand)]
enum ApiCommand {
    /// Registers every running test machine (e2e/nodes.sh) as a Node object and starts its agent with a token of
    /// the agent's ServiceAccount bound to that Node. Prints the node names.
    Join {
        /// A label on every Node object (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// The agent's ServiceAccount (its RBAC is the chart's).
        #[arg(long, default_value = "rktnetes-agent/rktnetes-agent")]
        agent: ServiceAccountRef,
    },
    /// Writes a kubeconfig holding a fresh token of a ServiceAccount.
    Kubeconfig {
        #[arg(long, value_name = "NAMESPACE/NAME")]
        service_account: ServiceAccountRef,
        /// How long the token lives, in seconds.
        #[arg(long, default_value_t = 86400)]
        seconds: i64,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum NodesCommand {
    /// Replaces whatever machines exist with N fresh ones, rktnetes-node-1 .. rktnetes-node-N (node i at .(10+i) of
    /// the node network), waits until each has booted, and prints their names, one a line. The Debian root is
    /// debootstrapped once (about a minute) and cached.
    Up {
        #[arg(value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_MACHINES)))]
        count: u32,
        /// The rkt version node I's stand-in reports (default 1.30.0; repeatable).
        #[arg(long = "rkt-version", value_name = "I=VERSION", value_parser = parse_rkt_version)]
        rkt_versions: Vec<(u32, String)>,
    },
    /// Runs a command as root inside a machine (its name or its index) with a clean environment; stdin, stdout,
    /// stderr and the exit status pass through.
    Exec {
        node: String,
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// One line per machine: name, running or stopped, address; exits 1 if any is stopped.
    Status,
    /// The address at which the machines reach this host (and kube-apiserver).
    HostAddress,
    /// Stops every machine (cleanly, then by force), deletes their roots and removes the bridge, including what a
    /// killed run left; harmless when nothing runs.
    Down,
}

fn parse_rkt_version(text: &str) -> Result<(u32, String), String> {
    match text.split_once('=') {
        Some((index, version)) if !version.is_empty() => index
            .parse()
            .ok()
            .filter(|index| *index >= 1)
            .map(|index| (index, version.to_owned()))
            .ok_or_else(|| format!("not NODE_INDEX=VERSION: {text:?}")),
        _ => Err(format!("not NODE_INDEX=VERSION: {text:?}")),
    }
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Starts it (or does nothing when it is already healthy); prints the admin kubeconfig's path on stdout.
    Up,
    /// Stops it and deletes its state; harmless when it is not running.
    Down,
    /// Prints "up" (exit 0) or "down" (exit 1).
    Status,
    /// Prints the admin kubeconfig's path (fails when it is not up).
    Kubeconfig,
    /// Prints `export KUBECONFIG=...; export PATH=...` for `eval`.
    Env,
}

/// `rktnetes-e2e cluster ACTION`; it needs no async runtime.
fn control_plane(action: ClusterAction) -> anyhow::Result<ExitCode> {
    let plane = ControlPlane::from_env(&Settings::from_env()?)?;
    let require_up = || {
        anyhow::ensure!(
            plane.healthy(),
            "the cluster is not up; run: e2e/cluster.sh up"
        );
        Ok(())
    };
    match action {
        ClusterAction::Up => println!("{}", plane.up()?.display()),
        ClusterAction::Down => plane.down()?,
        ClusterAction::Status => {
            if plane.healthy() {
                println!("up");
            } else {
                let partial = plane.partly_running();
                if !partial.is_empty() {
                    log(format!(
                        "partly running: {} (`up` restarts it, `down` stops it)",
                        partial.join(" ")
                    ));
                }
                println!("down");
                return Ok(ExitCode::FAILURE);
            }
        }
        ClusterAction::Kubeconfig => {
            require_up()?;
            println!("{}", plane.admin_kubeconfig().display());
        }
        ClusterAction::Env => {
            require_up()?;
            println!("{}", plane.env());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `rktnetes-e2e fuzz`.
fn fuzz_campaign(
    seconds: u64,
    runs: Option<u64>,
    targets: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let budget = runs.map_or(fuzz::Budget::Seconds(seconds), fuzz::Budget::Runs);
    let targets = if targets.is_empty() {
        fuzz::TARGETS.map(str::to_owned).to_vec()
    } else {
        targets
    };
    for outcome in fuzz::campaign(&Settings::from_env()?, &targets, budget)? {
        println!("{outcome}");
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("not KEY=VALUE: {text:?}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        // The machines' commands need no cluster, and `exec` passes its command's exit status on.
        Command::Nodes { command } => nodes(command),
        Command::Cluster { action } => control_plane(action),
        Command::Kind(lane) => kind_lane::run(lane.command()).map(|()| ExitCode::SUCCESS),
        Command::Fuzz {
            seconds,
            runs,
            targets,
        } => fuzz_campaign(seconds, runs, targets),
        Command::Scale(args) => Settings::from_env()
            .and_then(|settings| {
                let runtime =
                    tokio::runtime::Runtime::new().context("starting the async runtime")?;
                runtime.block_on(scale::run(&args, &settings))
            })
            .map(|()| ExitCode::SUCCESS),
        Command::ScaleAgents {
            nodes,
            apply_delay_ms,
        } => scale_agents(nodes, apply_delay_ms).map(|()| ExitCode::SUCCESS),
        Command::Api(command) => tokio::runtime::Runtime::new()
            .context("starting the async runtime")
            .and_then(|runtime| runtime.block_on(api(command, cli.kubeconfig)))
            .map(|()| ExitCode::SUCCESS),
    };
    // Errors as the shell scripts print theirs: one line with its causes, no backtrace.
    result.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}

/// The simulated agents, with the kubeconfig of `$KUBECONFIG` (the agents' ServiceAccount).
fn scale_agents(nodes: usize, apply_delay_ms: u64) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("the agents' kubeconfig")?;
        scale::agents::run(
            client,
            nodes,
            std::time::Duration::from_millis(apply_delay_ms),
        )
        .await
    })
}

/// The commands that talk to the cluster of `kubeconfig`.
async fn api(command: ApiCommand, kubeconfig: Option<PathBuf>) -> anyhow::Result<()> {
    match command {
        ApiCommand::Join { labels, agent } => {
            let (client, endpoint) = admin(kubeconfig).await?;
            let machines = Machines::of_checkout(&repo_root())?;
            let labels: BTreeMap<String, String> = labels.into_iter().collect();
            let names = join(&client, &endpoint, &machines, &labels, &agent).await?;
            for name in names {
                println!("{name}");
            }
        }
        ApiCommand::Kubeconfig {
            service_account,
            seconds,
            out,
        } => {
            let (client, endpoint) = admin(kubeconfig).await?;
            let token = token(&client, &service_account, None, seconds).await?;
            kubeconfig::write(
                &out,
                &kubeconfig::for_token(&endpoint, &service_account.name, &token),
            )?;
        }
    }
    Ok(())
}

/// The test machines' commands; they need no cluster.
fn nodes(command: NodesCommand) -> anyhow::Result<ExitCode> {
    let machines = Machines::of_checkout(&repo_root())?;
    match command {
        NodesCommand::Up {
            count,
            rkt_versions,
        } => {
            for name in machines.up(count, &rkt_versions.into_iter().collect())? {
                println!("{name}");
            }
        }
        NodesCommand::Exec { node, command } => {
            let command: Vec<&str> = command.iter().map(String::as_str).collect();
            let status = machines
                .command(&node, &command)?
                .status()
                .with_context(|| format!("running {} in {node}", command.join(" ")))?;
            // A command killed by a signal exits as a shell would report it.
            let code = status.code().or_else(|| {
                std::os::unix::process::ExitStatusExt::signal(&status).map(|signal| 128 + signal)
            });
            return Ok(ExitCode::from(
                code.and_then(|code| u8::try_from(code).ok()).unwrap_or(1),
            ));
        }
        NodesCommand::Status => {
            let machines = machines.status()?;
            if machines.is_empty() {
                eprintln!("no nodes");
            }
            for machine in &machines {
                println!("{machine}");
            }
            if machines.iter().any(|machine| !machine.running) {
                return Ok(ExitCode::FAILURE);
            }
        }
        NodesCommand::HostAddress => println!("{}", machines.host_address()?),
        NodesCommand::Down => machines.down()?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A client of the admin kubeconfig, and where it reaches the API server.
async fn admin(path: Option<PathBuf>) -> anyhow::Result<(Client, ClusterEndpoint)> {
    let path = path.context(
        "no kubeconfig: set KUBECONFIG (KUBECONFIG=$(e2e/cluster.sh up)) or pass --kubeconfig",
    )?;
    let config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?,
        &KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("loading {}", path.display()))?;
    let client = Client::try_from(config).context("making a Kubernetes client")?;
    let endpoint = ClusterEndpoint::of(&path)?;
    Ok((client, endpoint))
}

/// The checkout this harness was built in.
fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("rktnetes-e2e").chain(args.iter().copied()))
    }

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn nodes_up_takes_a_count_and_rkt_versions() {
        let cli = parse(&[
            "nodes",
            "up",
            "4",
            "--rkt-version",
            "4=1.29.0",
            "--rkt-version",
            "2=1.28.1",
        ])
        .expect("parses");
        let Command::Nodes {
            command:
                NodesCommand::Up {
                    count,
                    rkt_versions,
                },
        } = cli.command
        else {
            panic!("not nodes up");
        };
        assert_eq!(count, 4);
        assert_eq!(
            rkt_versions,
            [(4, "1.29.0".to_owned()), (2, "1.28.1".to_owned())]
        );
        for wrong in [
            &["nodes", "up", "0"][..],
            &["nodes", "up", "201"],
            &["nodes", "up"],
            &["nodes", "up", "2", "--rkt-version", "1.29.0"],
            &["nodes", "up", "2", "--rkt-version", "0=1.29.0"],
            &["nodes", "up", "2", "--rkt-version", "x=1.29.0"],
            &["nodes", "up", "2", "--rkt-version", "1="],
        ] {
            assert!(parse(wrong).is_err(), "{wrong:?}");
        }
    }

    #[test]
    fn nodes_exec_takes_the_command_after_a_double_dash() {
        let cli = parse(&["nodes", "exec", "1", "--", "sh", "-c", "echo --x"]).expect("parses");
        let Command::Nodes {
            command: NodesCommand::Exec { node, command },
        } = cli.command
        else {
            panic!("not nodes exec");
        };
        assert_eq!(node, "1");
        assert_eq!(command, ["sh", "-c", "echo --x"]);
        assert!(parse(&["nodes", "exec", "1"]).is_err());
        assert!(parse(&["nodes", "exec", "1", "--"]).is_err());
    }
}
