//! `rkt`: a stand-in for rkt 1.x, the archived container runtime, for tests and demos. It runs no containers; it
//! answers `rkt version` and serves rkt's API service as rkt does (see the `rkt_standin` library).

use std::{io::IsTerminal, process::ExitCode};

use clap::Parser;
use rkt_standin::{Cli, FAILURE_EXIT_CODE};
use tracing_subscriber::EnvFilter;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
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
