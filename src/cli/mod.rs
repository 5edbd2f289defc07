//! The `rktnetes` command line: one binary, a subcommand per component.

mod crdgen;
mod render;

use clap::{Parser, Subcommand};

pub use crdgen::CrdgenArgs;

/// Manages how Kubernetes nodes run the rkt container runtime.
#[derive(Debug, Parser)]
#[command(name = "rktnetes", version = crate::cli::VERSION_STRING)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The version printed by `rktnetes version` and `--version`.
pub const VERSION_STRING: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions generated from the API types, or write them to a directory.
    Crdgen(CrdgenArgs),
    /// Print what a node with the given labels would get from the RktNodeConfigs in a file, without a cluster.
    Render(render::RenderArgs),
    /// Run the controller: RktNodeConfigs to per-node RktNodeStates, rolled out safely, and the agent DaemonSet.
    Controller(Box<crate::controller::ControllerArgs>),
    /// Run a node's agent: apply its RktNodeState on the host, restart the rkt API service, report back.
    Agent(Box<crate::agent::AgentArgs>),
    /// Print the version of rktnetes and of the API it serves.
    Version,
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    match cli.command {
        Command::Crdgen(args) => crdgen::run(&args)?,
        Command::Render(args) => render::run(&args)?,
        Command::Controller(args) => crate::controller::run(*args).await?,
        Command::Agent(args) => crate::agent::run(*args).await?,
        Command::Version => println!(
            "rktnetes {VERSION_STRING} (API {}/{})",
            crate::api::GROUP,
            crate::api::VERSION
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    fn refusal(args: &[&str]) -> String {
        match Cli::try_parse_from(args) {
            Ok(cli) => panic!("{args:?} was accepted: {cli:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn durations_beyond_their_range_are_refused_naming_the_flag() {
        let huge = u64::MAX.to_string();
        for (command, flag) in [
            ("controller", "--resync-seconds"),
            ("controller", "--lease-duration"),
            ("controller", "--agent-check-interval"),
            ("agent", "--health-timeout"),
            ("agent", "--restart-timeout"),
            ("agent", "--check-interval"),
        ] {
            let mut args = vec!["rktnetes", command, flag, huge.as_str()];
            if command == "agent" {
                args.extend(["--node-name", "node-1"]);
            }
            let refusal = refusal(&args);
            assert!(refusal.contains(flag), "{refusal}");
            args[3] = "0";
            let refusal = self::refusal(&args);
            assert!(refusal.contains(flag), "{refusal}");
        }
        let refusal = refusal(&["rktnetes", "controller", "--write-concurrency", "0"]);
        assert!(refusal.contains("--write-concurrency"), "{refusal}");
    }

    #[test]
    fn the_largest_durations_are_accepted() {
        Cli::try_parse_from(["rktnetes", "controller", "--resync-seconds", "86400"]).unwrap();
        Cli::try_parse_from([
            "rktnetes",
            "agent",
            "--node-name",
            "node-1",
            "--health-timeout",
            "3600",
            "--restart-timeout",
            "3600",
        ])
        .unwrap();
    }
}
