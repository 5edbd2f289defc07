//! `rkt api-service`: rkt's read-only gRPC API, answering GetInfo as rkt does, and ListPods and ListImages with
//! empty lists (the stand-in runs no pods and stores no images). Like rkt it opens its socket, then reads its
//! configuration and refuses to start on an invalid one, and it stops gracefully on SIGTERM or SIGINT. A release
//! stamped broken (`exit`, see the `version` module) exits at start, before it opens its socket.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
};
use tonic::{Request, Response, Status, transport::server::TcpIncoming};

use super::{
    StandInError,
    fault::{self, FaultMode},
    global_flags::GlobalFlags,
    version,
};
use rktnetes_operator::rkt::{
    API_VERSION, APPC_VERSION, DEFAULT_API_ENDPOINT,
    v1alpha::{
        self, GetInfoRequest, GetInfoResponse, Info, ListImagesRequest, ListImagesResponse,
        ListPodsRequest, ListPodsResponse,
        public_api_server::{PublicApi, PublicApiServer},
    },
};

/// How long calls in flight may take to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// rkt's data directory when neither `--dir` nor `paths.d` sets one.
const DEFAULT_DATA_DIR: &str = "/var/lib/rkt";

/// The answers of one running API service.
#[derive(Clone, Debug)]
pub struct PublicApiService {
    info: Info,
    /// An injected fault's cause: GetInfo fails with it.
    refuse_get_info: Option<String>,
}

impl PublicApiService {
    /// A service reporting `rkt_version`, started with `flags` and data directory `data_dir`.
    pub fn new(rkt_version: String, flags: &GlobalFlags, data_dir: &Path) -> Self {
        let text = |path: &Path| path.to_string_lossy().into_owned();
        Self {
            info: Info {
                rkt_version,
                appc_version: APPC_VERSION.to_owned(),
                api_version: API_VERSION.to_owned(),
                global_flags: Some(v1alpha::GlobalFlags {
                    dir: text(data_dir),
                    system_config_dir: text(&flags.system_config),
                    local_config_dir: text(&flags.local_config),
                    user_config_dir: flags.user_config.as_deref().map(text).unwrap_or_default(),
                    insecure_flags: flags.insecure_options.to_string(),
                    trust_keys_from_https: flags.trust_keys_from_https,
                }),
            },
            refuse_get_info: None,
        }
    }
}

#[tonic::async_trait]
impl PublicApi for PublicApiService {
    async fn get_info(
        &self,
        request: Request<GetInfoRequest>,
    ) -> Result<Response<GetInfoResponse>, Status> {
        // One line a call (rkt logs none): the tests count a node agent's checks by them.
        tracing::info!(client = ?request.remote_addr(), "GetInfo");
        if let Some(cause) = &self.refuse_get_info {
            return Err(Status::unavailable(cause.clone()));
        }
        Ok(Response::new(GetInfoResponse {
            info: Some(self.info.clone()),
        }))
    }

    async fn list_pods(
        &self,
        _request: Request<ListPodsRequest>,
    ) -> Result<Response<ListPodsResponse>, Status> {
        Ok(Response::new(ListPodsResponse { pods: Vec::new() }))
    }

    /// rkt lists the images of its store that match any of the filters; the stand-in's store is empty.
    async fn list_images(
        &self,
        _request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        Ok(Response::new(ListImagesResponse { images: Vec::new() }))
    }
}

/// Runs the API service on `listen` (HOST:PORT) until SIGTERM or SIGINT, then lets calls in flight finish
/// for a short while.
pub async fn run(
    listen: &str,
    flags: &GlobalFlags,
    rkt_version: String,
) -> Result<(), StandInError> {
    tracing::info!("API service starting...");
    // A broken release fails before it opens its socket, whatever its configuration or the fault file say.
    if let Some(fault) = version::release_stamp().and_then(|stamp| fault::released(&stamp)) {
        return Err(StandInError::Injected(fault.cause));
    }
    // rkt takes an empty --listen for its default.
    let address = if listen.is_empty() {
        DEFAULT_API_ENDPOINT
    } else {
        listen
    };
    // As rkt (`openAPISockets`): the line first, then the socket; the configuration is read after both, when the
    // service opens its image store, so an invalid configuration is reported by a service that was listening.
    tracing::info!("Listening on {address}");
    let listener = listen_on(address).await?;
    // rkt says no more; a port of the kernel's choosing (`:0`, as the tests ask for) is worth a line of its own.
    if let Ok(local) = listener.local_addr()
        && local.to_string() != address
    {
        tracing::info!("Bound to {local}");
    }
    let data_dir = data_dir(flags)?;
    let fault = fault::injected()?;
    if let Some(fault) = &fault
        && fault.mode == FaultMode::Exit
    {
        return Err(StandInError::Injected(fault.cause.clone()));
    }
    let mut terminate = signal(SignalKind::terminate()).map_err(StandInError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(StandInError::Signals)?;
    let mut service = PublicApiService::new(rkt_version, flags, &data_dir);
    if let Some(fault) = fault {
        tracing::warn!(cause = fault.cause, "GetInfo will fail");
        service.refuse_get_info = Some(fault.cause);
    }
    tracing::info!(
        rkt_version = %service.info.rkt_version,
        data_dir = %data_dir.display(),
        "API service running"
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .add_service(PublicApiServer::new(service))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
            // A dropped sender stops the server as well as a sent stop.
            let _ = stopped.await;
        });
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result.map_err(StandInError::Serve),
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    tracing::info!("API service exiting...");
    let _ = stop.send(());
    // rkt exits at once on a signal; we let calls in flight finish, but a client that never closes its
    // connection must not keep systemd waiting for its stop timeout.
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(result) => result.map_err(StandInError::Serve),
        Err(_) => {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; exiting without them");
            Ok(())
        }
    }
}

/// The data directory rkt reports, found as rkt finds it (`calculateDataDir` in rkt `rkt/rkt.go`): `--dir` when
/// given; otherwise rkt reads its configuration, failing on an invalid one, and takes `paths.d`'s `data` or
/// `/var/lib/rkt`. Symbolic links are resolved when the directory exists. So, as with rkt, `--dir` skips reading
/// the configuration at start.
fn data_dir(flags: &GlobalFlags) -> Result<PathBuf, StandInError> {
    let dir = match &flags.dir {
        Some(dir) => dir.clone(),
        None => {
            let config = flags.config_dirs().read()?;
            if let Some(stage1) = &config.stage1.image {
                tracing::debug!(
                    name = %stage1.value.name,
                    version = %stage1.value.version,
                    file = %stage1.file.display(),
                    "default stage1 image"
                );
            }
            config
                .paths
                .data
                .map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), |data| data.value)
        }
    };
    match std::fs::canonicalize(&dir) {
        Ok(real) => Ok(real),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(dir),
        Err(source) => Err(StandInError::DataDir { path: dir, source }),
    }
}

/// Listens on HOST:PORT. A host name is resolved and, as Go's `net.Listen` does, only one of its addresses is
/// used, IPv4 first.
async fn listen_on(address: &str) -> Result<TcpListener, StandInError> {
    let resolve_error = |source| StandInError::Resolve {
        address: address.to_owned(),
        source,
    };
    let candidates: Vec<SocketAddr> = tokio::net::lookup_host(address)
        .await
        .map_err(resolve_error)?
        .collect();
    let chosen = candidates
        .iter()
        .find(|candidate| candidate.is_ipv4())
        .or_else(|| candidates.first())
        .copied()
        .ok_or_else(|| {
            resolve_error(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the name has no address",
            ))
        })?;
    TcpListener::bind(chosen)
        .await
        .map_err(|source| StandInError::Listen {
            address: address.to_owned(),
            source,
        })
}
