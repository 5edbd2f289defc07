//! `rkt`: a stand-in for rkt 1.x, the archived container runtime, for tests and demos. It runs no containers; it
//! answers `rkt version` and serves rkt's API service as rkt does (see the `rkt_standin` library).

use std::{io::IsTerminal, process::ExitCode};

use clap::{CommandFactory, Parser, error::ErrorKind};
use rkt_standin::{Cli, FAILURE_EXIT_CODE, MISSING_COMMAND_EXIT_CODE};
use tracing_subscriber::EnvFilter;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    let default_level = if cli.global.debug { "debug" } else { "info" };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Under systemd stderr goes to the journal, where colour codes are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    match rkt_standin::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::from(FAILURE_EXIT_CODE)
        }
    }
}

/// Help is printed with success; a command line without a command gets rkt's `missing command` and the help, exit
/// status 2; any other bad command line is printed and exits as rkt's do, with 254 (rkt `rkt/main.go`).
fn usage_error(error: &clap::Error) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            ExitCode::SUCCESS
        }
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!("missing command");
            let _ = Cli::command().print_help();
            ExitCode::from(MISSING_COMMAND_EXIT_CODE)
        }
        _ => {
            let _ = error.print();
            ExitCode::from(FAILURE_EXIT_CODE)
        }
    }
}
