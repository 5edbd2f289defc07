//! A release mirror for the test nodes: serves rkt release archives over HTTPS, presenting the API server's own
//! certificate (so a node trusting the cluster's CA trusts it at the host address the nodes reach), and can cut an
//! archive off half-way, announcing its whole length first, as a connection that drops mid-download does. It
//! counts the requests for each path, so a test sees the agent's retries.
//!
//! It speaks just enough HTTP/1.1 by hand (one request per connection, `Connection: close`) that a cut-off body
//! is exactly what the test asks for, not whatever an HTTP server library makes of a body shorter than its length.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_rustls::TlsAcceptor;

/// How a path is served.
#[derive(Clone)]
pub enum Serve {
    /// The bytes, whole.
    Whole(Arc<Vec<u8>>),
    /// The bytes' whole length announced, then only their first half, then the connection closed.
    CutOff(Arc<Vec<u8>>),
}

/// A running mirror; stops when dropped.
pub struct ReleaseServer {
    address: SocketAddr,
    requests: Arc<Mutex<BTreeMap<String, u32>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReleaseServer {
    /// Serves `paths` (such as `/rkt-v1.30.0.tar.gz`), presenting the certificate and key in `serving` (PEM files),
    /// on every address at a port the kernel picks; any other path is 404.
    pub fn start(serving: (&Path, &Path), paths: BTreeMap<String, Serve>) -> Self {
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(serving.0)
            .and_then(Iterator::collect)
            .unwrap_or_else(|error| panic!("{}: {error}", serving.0.display()));
        let key = PrivateKeyDer::from_pem_file(serving.1)
            .unwrap_or_else(|error| panic!("{}: {error}", serving.1.display()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .expect("the certificate and key match");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("a port for the mirror");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let address = listener.local_addr().expect("the mirror's address");
        let requests = Arc::new(Mutex::new(BTreeMap::new()));
        let paths = Arc::new(paths);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn({
            let requests = requests.clone();
            move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the mirror");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("a tokio listener");
                    let mut connections = tokio::task::JoinSet::new();
                    let mut stopped = std::pin::pin!(stopped);
                    loop {
                        tokio::select! {
                            accepted = listener.accept() => if let Ok((stream, _)) = accepted {
                                let (acceptor, paths, requests) =
                                    (acceptor.clone(), paths.clone(), requests.clone());
                                connections.spawn(async move {
                                    if let Ok(tls) = acceptor.accept(stream).await {
                                        let _ = answer(tls, &paths, &requests).await;
                                    }
                                });
                            },
                            Some(_) = connections.join_next(), if !connections.is_empty() => {}
                            _ = &mut stopped => break,
                        }
                    }
                });
            }
        });
        Self {
            address,
            requests,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The URL of `path` as the machines reach it: at `host`, their host address.
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.address.port())
    }

    /// How many times `path` was asked for.
    pub fn requests(&self, path: &str) -> u32 {
        self.requests
            .lock()
            .expect("not poisoned")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for ReleaseServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request's head and answers it.
async fn answer(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    paths: &BTreeMap<String, Serve>,
    requests: &Mutex<BTreeMap<String, u32>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buffer = [0; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < 16 << 10 {
        let read = tls.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let head = String::from_utf8_lossy(&head);
    let path = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_owned();
    *requests
        .lock()
        .expect("not poisoned")
        .entry(path.clone())
        .or_default() += 1;
    let (bytes, sent) = match paths.get(&path) {
        Some(Serve::Whole(bytes)) => (bytes.clone(), bytes.len()),
        Some(Serve::CutOff(bytes)) => (bytes.clone(), bytes.len() / 2),
        None => {
            tls.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await?;
            return tls.shutdown().await;
        }
    };
    let header = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len()
    );
    tls.write_all(header.as_bytes()).await?;
    tls.write_all(&bytes[..sent]).await?;
    tls.flush().await?;
    if sent < bytes.len() {
        // Dropped without a TLS close_notify: the connection breaks, as one cut off does.
        return Ok(());
    }
    tls.shutdown().await
}
