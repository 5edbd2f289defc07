//! A release mirror for the test nodes: serves rkt release archives over HTTPS, with a certificate of its own
//! authority for the address the nodes reach it at, and can cut an archive off half-way, announcing its whole
//! length first, as a connection that drops mid-download does. It counts the requests for each path, so a test
//! sees the agent's retries.
//!
//! It speaks just enough HTTP/1.1 by hand (one request per connection, `Connection: close`) that a cut-off body
//! is exactly what the test asks for, not whatever an HTTP server library makes of a body shorter than its length.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::tls_server::{self, Connection, TlsServer};

/// How a path is served.
#[derive(Clone)]
pub enum Serve {
    /// The bytes, whole.
    Whole(Arc<Vec<u8>>),
    /// The bytes' whole length announced, then only their first half, then the connection closed.
    CutOff(Arc<Vec<u8>>),
}

/// The mirror's own certificate authority, as a site's internal release mirror has one: the nodes are given its
/// certificate to trust for release downloads (the agent's `--release-ca-file`), and nothing else.
pub struct MirrorAuthority {
    issuer: Issuer<'static, KeyPair>,
    /// The authority's certificate, PEM.
    pub certificate_pem: String,
}

impl MirrorAuthority {
    pub fn new() -> Self {
        let key = KeyPair::generate().expect("a key for the mirror's CA");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(DnType::CommonName, "rktnetes test release mirror CA");
        let certificate = params
            .self_signed(&key)
            .expect("the mirror's CA certificate");
        Self {
            issuer: Issuer::new(params, key),
            certificate_pem: certificate.pem(),
        }
    }

    /// TLS settings for the mirror at `address`: a new serving certificate naming it, signed by this authority.
    fn serving(&self, address: IpAddr) -> rustls::ServerConfig {
        let key = KeyPair::generate().expect("a key for the mirror");
        let certificate = CertificateParams::new(vec![address.to_string()])
            .expect("the mirror's address is a name a certificate can hold")
            .signed_by(&key, &self.issuer)
            .expect("the mirror's certificate");
        tls_server::presenting(
            vec![CertificateDer::from(certificate.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

/// A running mirror; stops when dropped.
pub struct ReleaseServer {
    server: TlsServer,
    host: IpAddr,
    requests: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl ReleaseServer {
    /// Serves `paths` (such as `/rkt-v1.30.0.tar.gz`) on every address, at a port the kernel picks, with a
    /// certificate of `authority` for `host`, the address the nodes reach this machine at; any other path is 404.
    pub fn start(
        authority: &MirrorAuthority,
        host: IpAddr,
        paths: BTreeMap<String, Serve>,
    ) -> Self {
        let requests = Arc::new(Mutex::new(BTreeMap::new()));
        let paths = Arc::new(paths);
        let server = TlsServer::start("the release mirror", authority.serving(host), {
            let requests = requests.clone();
            move |connection| {
                let (paths, requests) = (paths.clone(), requests.clone());
                async move {
                    let _ = answer(connection, &paths, &requests).await;
                }
            }
        });
        Self {
            server,
            host,
            requests,
        }
    }

    /// The URL at which the nodes reach `path`.
    pub fn url(&self, path: &str) -> String {
        let host = match self.host {
            IpAddr::V4(host) => host.to_string(),
            IpAddr::V6(host) => format!("[{host}]"),
        };
        format!("https://{host}:{}{path}", self.server.port())
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

/// Reads one request's head and answers it.
async fn answer(
    mut tls: Connection,
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
