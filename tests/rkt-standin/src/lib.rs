//! A stand-in for rkt 1.x, for tests and demos: rkt is archived and cannot be installed, so test nodes run this
//! instead, as `/usr/bin/rkt`. A crate of its own beside the operator (a test double is no part of the product);
//! it speaks the operator's `rkt::v1alpha` protocol and reads rkt's configuration with the operator's `rkt::config`. It runs no containers. It implements what the operator and the kubelet's version
//! checks touch, exactly as rkt does: `rkt version`, and `rkt api-service` with GetInfo and ListPods (an empty
//! list), rkt's global flags, and rkt's reading and refusing of its configuration at start.
//!
//! One build plays several rkt releases: [`stamp`] writes a release's version (and, for a broken release, a fault)
//! into a copy of the built binary, which then reports that version as a real rkt reports the one compiled in.

mod api_service;
pub mod fault;
mod global_flags;
mod version;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use api_service::PublicApiService;
pub use global_flags::{GlobalFlags, InsecureOptions};
pub use version::{
    BUILD_VERSION, RELEASE_FAULTS, ReleaseStamp, STAMP_CAPACITY, STAMP_MARKER, STAMP_SLOT_LEN,
    StampError, VERSION_ENV, release_stamp, rkt_version, stamp,
};

use rktnetes_operator::rkt::{DEFAULT_API_ENDPOINT, config::ConfigError, error_chain};

/// The stand-in's command line, rkt's spelling.
#[derive(Debug, Parser)]
#[command(
    name = "rkt",
    about = "A stand-in for rkt, the archived container runtime, for tests and demos",
    long_about = "A stand-in for rkt 1.x, the archived container runtime, for tests and demos. \
                  It runs no containers: it answers `rkt version` and serves rkt's API service \
                  (GetInfo, and ListPods with no pods) exactly as rkt does, reading and checking \
                  rkt's configuration directories when the API service starts. The version it \
                  reports is the one its release was stamped with, else $RKT_STANDIN_VERSION, else \
                  the one it was built with.",
    disable_version_flag = true,
    infer_subcommands = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the version and exit
    Version,
    /// Run API service (experimental)
    #[command(
        long_about = "Run rkt's API service: gRPC on the address and port given by --listen, by default \
                      localhost:15441. Specify the address 0.0.0.0 to listen on all interfaces."
    )]
    ApiService {
        /// address to listen for client API requests
        #[arg(long, value_name = "ADDRESS", default_value = DEFAULT_API_ENDPOINT)]
        listen: String,
    },
}

/// Why the stand-in stopped with a failure. The messages begin with the subcommand, as rkt's do.
#[derive(Debug, thiserror::Error)]
pub enum StandInError {
    #[error("api-service: {0}")]
    Fault(#[from] fault::FaultFileError),
    #[error("api-service: {0}")]
    Injected(String),
    #[error("api-service: cannot get configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("api-service: cannot evaluate the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("api-service: cannot resolve the listen address {address:?}: {source}")]
    Resolve {
        address: String,
        source: std::io::Error,
    },
    #[error("api-service: could not open tcp socket on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("api-service: cannot handle signals: {0}")]
    Signals(std::io::Error),
    #[error("api-service: {}", error_chain(.0))]
    Serve(tonic::transport::Error),
    #[error("version: cannot write to stdout: {0}")]
    Stdout(std::io::Error),
}

/// rkt's exit status for every failure of a command and for a command line it cannot parse (rkt `rkt/rkt.go`,
/// `rkt/main.go`).
pub const FAILURE_EXIT_CODE: u8 = 254;

/// rkt's exit status when no command is given (rkt `runMissingCommand`).
pub const MISSING_COMMAND_EXIT_CODE: u8 = 2;

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), StandInError> {
    match cli.command {
        Command::Version => version::print(&mut std::io::stdout().lock(), &rkt_version())
            .map_err(StandInError::Stdout),
        Command::ApiService { listen } => {
            api_service::run(&listen, &cli.global, rkt_version()).await
        }
    }
}
