//! `rktnetes-e2e`: the harness's Kubernetes work for the demo and for people at a shell, through the same code the
//! tests use. It talks to the cluster of `$KUBECONFIG` (the admin kubeconfig of `e2e/cluster.sh up`).

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use kube::{Client, Config, config::KubeConfigOptions, config::Kubeconfig};
use rktnetes_e2e::{
    control_plane::ControlPlane,
    join,
    kubeconfig::{self, ClusterEndpoint},
    log,
    machines::Machines,
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
    /// The local control plane: etcd, kube-apiserver and kube-controller-manager as processes on this machine
    /// (settings: see the module `control_plane`).
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
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

/// `rktnetes-e2e cluster ACTION`.
fn cluster(action: ClusterAction) -> anyhow::Result<ExitCode> {
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

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("not KEY=VALUE: {text:?}")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // An error is a message for the person at the shell, with its causes, not a backtrace.
    run(Cli::parse()).await.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Cluster { action } => return cluster(action),
        Command::Join { labels, agent } => {
            let (client, endpoint) = admin(cli.kubeconfig).await?;
            let machines = Machines::of_checkout(&repo_root());
            let labels: BTreeMap<String, String> = labels.into_iter().collect();
            let names = join(&client, &endpoint, &machines, &labels, &agent).await?;
            for name in names {
                println!("{name}");
            }
        }
        Command::Kubeconfig {
            service_account,
            seconds,
            out,
        } => {
            let (client, endpoint) = admin(cli.kubeconfig).await?;
            let token = token(&client, &service_account, None, seconds).await?;
            kubeconfig::write(
                &out,
                &kubeconfig::for_token(&endpoint, &service_account.name, &token),
            )?;
        }
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
