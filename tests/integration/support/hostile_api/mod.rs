//! A hostile API server: a TLS proxy in front of the real kube-apiserver that forwards what clients send, but drops
//! watches, answers 410 Gone, 409 Conflict, 429 and 5xx, loses the answers of writes it carried out, and adds
//! latency, at the rates of the [`Faults`] it is given at the time. It presents the API server's own certificate, so
//! a kubeconfig that trusts the cluster's CA reaches it at any address the API server's certificate names; clients
//! authenticate with bearer tokens, which it passes on.
//!
//! It is a [`TlsServer`], on a thread and runtime of its own, so a test that blocks (running a command in a node,
//! restarting the control plane) does not stall the clients' traffic.

pub mod faults;

use std::{
    collections::BTreeMap,
    io,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine, prelude::BASE64_STANDARD};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::{
    Request, Response,
    body::{Frame, Incoming},
    client::conn::http1::SendRequest,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use rktnetes_e2e::kubeconfig::ClusterEndpoint;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub use self::faults::Faults;
use self::faults::{Fate, Midstream, RequestKind, fate, midstream, status_of};
use super::tls_server::{self, Connection, TlsServer};

type Body = BoxBody<Bytes, io::Error>;

/// A running hostile API server; stops when dropped.
pub struct HostileApi {
    server: TlsServer,
    ca_data: String,
    shared: Arc<Shared>,
}

/// What every connection shares.
struct Shared {
    faults: Mutex<Faults>,
    /// Bumped whenever new faults are set, so that watches already streaming meet them too.
    epoch: tokio::sync::watch::Sender<u64>,
    rng: Mutex<fastrand::Rng>,
    /// Requests by kind and fate ([`RequestKind::name`], [`Fate::name`]).
    tally: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    connector: TlsConnector,
    upstream_address: String,
    upstream_name: ServerName<'static>,
}

impl HostileApi {
    /// Starts it in front of `upstream`, presenting the certificate and key in `serving` (PEM files), listening on
    /// every address at a port the kernel picks; `seed` makes its choices repeatable.
    pub fn start(upstream: &ClusterEndpoint, serving: (&Path, &Path), seed: u64) -> Self {
        let ca_pem = BASE64_STANDARD
            .decode(&upstream.ca_data)
            .expect("the cluster's CA is base64");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(&ca_pem) {
            roots
                .add(certificate.expect("the cluster's CA is PEM"))
                .expect("the cluster's CA is a certificate");
        }
        let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut server = tls_server::presenting_files(serving);
        server.alpn_protocols = vec![b"http/1.1".to_vec()];

        let authority = upstream
            .server
            .strip_prefix("https://")
            .unwrap_or_else(|| panic!("the API server {} is not https", upstream.server))
            .trim_end_matches('/');
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let shared = Arc::new(Shared {
            faults: Mutex::new(Faults::default()),
            epoch: tokio::sync::watch::Sender::new(0),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            tally: Mutex::new(BTreeMap::new()),
            connector: TlsConnector::from(Arc::new(client)),
            upstream_address: authority.to_owned(),
            upstream_name: ServerName::try_from(host.to_owned())
                .unwrap_or_else(|error| panic!("{host}: {error}")),
        });

        let server = TlsServer::start("the hostile API server", server, {
            let shared = shared.clone();
            move |connection| serve(connection, shared.clone())
        });
        Self {
            server,
            ca_data: upstream.ca_data.clone(),
            shared,
        }
    }

    /// Where clients on this machine reach it (machines reach it on the same port at their host address).
    pub fn endpoint(&self) -> ClusterEndpoint {
        ClusterEndpoint {
            server: format!("https://127.0.0.1:{}", self.server.port()),
            ca_data: self.ca_data.clone(),
        }
    }

    /// From now on, requests meet `faults`, and so do the watches streaming now.
    pub fn set(&self, faults: Faults) {
        *self.shared.faults.lock().expect("not poisoned") = faults;
        self.shared.epoch.send_modify(|epoch| *epoch += 1);
    }

    /// How many requests of each kind met each fate so far.
    pub fn tally(&self) -> BTreeMap<(&'static str, &'static str), u64> {
        self.shared.tally.lock().expect("not poisoned").clone()
    }
}

/// One client connection: TLS, then HTTP/1.1 requests one after the other, each forwarded over this connection's
/// own connection to the API server (opened when first needed, and again after the API server went away).
async fn serve(tls: Connection, shared: Arc<Shared>) {
    let upstream: Arc<tokio::sync::Mutex<Option<SendRequest<Incoming>>>> = Arc::default();
    let service = service_fn(move |request| {
        let shared = shared.clone();
        let upstream = upstream.clone();
        async move { shared.handle(request, &upstream).await }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

impl Shared {
    fn count(&self, kind: &RequestKind, fate: &'static str) {
        *self
            .tally
            .lock()
            .expect("not poisoned")
            .entry((kind.name(), fate))
            .or_default() += 1;
    }

    fn faults(&self) -> Faults {
        self.faults.lock().expect("not poisoned").clone()
    }

    async fn handle(
        self: &Arc<Self>,
        request: Request<Incoming>,
        upstream: &tokio::sync::Mutex<Option<SendRequest<Incoming>>>,
    ) -> io::Result<Response<Body>> {
        let kind = RequestKind::of(request.method(), request.uri().query());
        let fate = fate(
            &self.faults(),
            &kind,
            &mut self.rng.lock().expect("not poisoned"),
        );
        self.count(&kind, fate.name());
        match fate {
            Fate::Refused { delay, code } => {
                tokio::time::sleep(delay).await;
                Ok(status_response(code))
            }
            Fate::Gone { delay } => {
                tokio::time::sleep(delay).await;
                Ok(expired_watch())
            }
            Fate::Forward {
                delay,
                cut_after,
                lose_answer,
            } => {
                tokio::time::sleep(delay).await;
                let mut upstream = upstream.lock().await;
                let mut sender = match upstream.take() {
                    Some(sender) if !sender.is_closed() => sender,
                    // Unreachable (restarting): the client's connection is closed without an answer, as the API
                    // server's own would be.
                    _ => self.connect().await?,
                };
                let response = sender
                    .send_request(request)
                    .await
                    .map_err(io::Error::other)?;
                if lose_answer {
                    // The write was carried out; its answer is read and thrown away.
                    response
                        .into_body()
                        .collect()
                        .await
                        .map_err(io::Error::other)?;
                    *upstream = Some(sender);
                    return Ok(status_response(504));
                }
                let (parts, body) = response.into_parts();
                let body = if kind == RequestKind::Watch {
                    // The upstream connection goes down with a broken watch.
                    watch_body(body, self.clone(), cut_after)
                } else {
                    *upstream = Some(sender);
                    body.map_err(io::Error::other).boxed()
                };
                Ok(Response::from_parts(parts, body))
            }
        }
    }

    async fn connect(&self) -> io::Result<SendRequest<Incoming>> {
        let tcp = TcpStream::connect(&self.upstream_address).await?;
        let tls = self
            .connector
            .connect(self.upstream_name.clone(), tcp)
            .await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(connection);
        Ok(sender)
    }
}

/// A watch's response body: it follows the API server's until the watch is cut (after `cut_after`, or when faults
/// set later drop it) or expired (faults set later answer it with a 410 `ERROR` event, sent between two events).
fn watch_body(body: Incoming, shared: Arc<Shared>, cut_after: Option<Duration>) -> Body {
    struct Watch {
        body: Incoming,
        shared: Arc<Shared>,
        epoch: tokio::sync::watch::Receiver<u64>,
        deadline: Option<tokio::time::Instant>,
        /// Whether what was sent so far ends between two events.
        between_events: bool,
        expire: bool,
    }
    let epoch = shared.epoch.subscribe();
    let watch = Watch {
        body,
        shared,
        epoch,
        deadline: cut_after.map(|after| tokio::time::Instant::now() + after),
        between_events: true,
        expire: false,
    };
    let frames = futures::stream::unfold(Some(watch), |watch| async move {
        let mut watch = watch?;
        loop {
            if watch.expire && watch.between_events {
                let event = serde_json::json!({"type": "ERROR", "object": status(410)});
                return Some((Ok(Frame::data(Bytes::from(format!("{event}\n")))), None));
            }
            let deadline = watch.deadline;
            tokio::select! {
                frame = watch.body.frame() => return match frame? {
                    Ok(frame) => {
                        if let Some(data) = frame.data_ref() {
                            watch.between_events = data.ends_with(b"\n");
                        }
                        Some((Ok(frame), Some(watch)))
                    }
                    Err(error) => Some((Err(io::Error::other(error)), None)),
                },
                () = sleep_until_or_never(deadline) => return Some((
                    Err(io::Error::other("watch cut by the hostile API server")),
                    None,
                )),
                changed = watch.epoch.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    let faults = watch.shared.faults();
                    let drawn = midstream(&faults, &mut watch.shared.rng.lock().expect("not poisoned"));
                    if let Some(drawn) = drawn {
                        watch.shared.count(&RequestKind::Watch, drawn.name());
                        match drawn {
                            Midstream::Expire => watch.expire = true,
                            Midstream::CutAfter(after) => {
                                let at = tokio::time::Instant::now() + after;
                                watch.deadline = Some(deadline.map_or(at, |before| before.min(at)));
                            }
                        }
                    }
                }
            }
        }
    });
    StreamBody::new(frames).boxed()
}

async fn sleep_until_or_never(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A Kubernetes `Status` of `code`.
fn status(code: u16) -> serde_json::Value {
    let (reason, message) = status_of(code);
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })
}

/// A refusal as the API server answers one: the status code, and a `Status` body.
fn status_response(code: u16) -> Response<Body> {
    let mut response = Response::builder()
        .status(code)
        .header("content-type", "application/json");
    if code == 429 {
        response = response.header("retry-after", "1");
    }
    response
        .body(full(status(code).to_string()))
        .expect("a valid response")
}

/// A watch the API server cannot serve from the version asked for: 200, one `ERROR` event carrying 410, the end.
fn expired_watch() -> Response<Body> {
    let event = serde_json::json!({"type": "ERROR", "object": status(410)});
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(full(format!("{event}\n")))
        .expect("a valid response")
}

fn full(text: String) -> Body {
    Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data frames of a body, each parsed as JSON.
    async fn json_frames(mut body: Body) -> Vec<serde_json::Value> {
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.expect("a frame").into_data().expect("a data frame");
            frames.push(serde_json::from_slice(&data).expect("JSON"));
        }
        frames
    }

    #[tokio::test]
    async fn a_refusal_carries_a_kubernetes_status() {
        let response = status_response(429);
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "1");
        let [status] = &json_frames(response.into_body()).await[..] else {
            panic!("one frame");
        };
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "TooManyRequests");
        assert_eq!(status["code"], 429);
    }

    #[tokio::test]
    async fn an_expired_watch_is_one_error_event_of_410() {
        let [event] = &json_frames(expired_watch().into_body()).await[..] else {
            panic!("one event, then the end");
        };
        assert_eq!(event["type"], "ERROR");
        assert_eq!(event["object"]["code"], 410);
        assert_eq!(event["object"]["reason"], "Expired");
    }
}
