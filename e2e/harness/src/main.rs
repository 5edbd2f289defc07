//! `rktnetes-e2e`: the harness's Kubernetes work for the demo and for people at a shell, through the same code the
//! tests use. It talks to the cluster of `$KUBECONFIG` (the admin kubeconfig of `e2e/cluster.sh up`).

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use kube::{Client, Config, config::KubeConfigOptions, config::Kubeconfig};
use rktnetes_e2e::{
    join,
    kind_lane::{self, KindArgs},
    kubeconfig::{self, ClusterEndpoint},
    machines::Machines,
    service_accounts::{ServiceAccountRef, token},
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
    /// The kind lane (e2e/kind/run.sh): a kind cluster built here with the chart's pods on its kubelets, and the
    /// node suite against it. `kind [ci] | up [-- TEST_ARGS...] | setup | test [-- TEST_ARGS...] | env | down`.
    Kind(KindArgs),
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("not KEY=VALUE: {text:?}")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        // The lane reports its own failures as the shell scripts do (`error: ...`, exit status 1): its log is
        // read in CI next to theirs.
        Command::Kind(lane) => {
            if let Err(error) = kind_lane::run(lane.command()) {
                eprintln!("error: {error:#}");
                std::process::exit(1);
            }
        }
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
    Ok(())
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
