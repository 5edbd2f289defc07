//! Fetching a release archive into a file on the node, its SHA-512 computed as the bytes arrive: from `https://`
//! (the node's certificate authorities, plus the agent's `--release-ca-file`), or from a `file://` path on the
//! node. The size limit holds before a byte is read when the server says the length, and as the bytes arrive when
//! it does not; a download that fails leaves no file behind. Failures that trying again may mend (the connection,
//! a timeout, a 5xx answer, a body cut off) are retried with backoff; the others are not.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use sha2::{Digest, Sha512};

use crate::agent::host_namespace::HostPrograms;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How many times a download is tried in all.
const ATTEMPTS: u32 = 3;
/// The pause before the second attempt; doubled before each one after it.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// How long connecting (TCP and TLS) and the answer's headers may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the body may go without a byte before the download is given up.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a release install trusts: the certificate authorities of `https://` downloads, and the keys that may sign
/// a release.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// A PEM file of certificate authorities trusted beside the node's own (an internal mirror's), read at each
    /// download.
    pub extra_ca_file: Option<PathBuf>,
    /// A file of armored OpenPGP public keys that may sign a release (`spec.rkt.install.signatureUrl`), read at
    /// each install.
    pub release_keys_file: Option<PathBuf>,
}

/// What a finished download holds.
#[derive(Debug)]
pub struct Downloaded {
    pub size: u64,
    /// The SHA-512 of the bytes, as lowercase hexadecimal.
    pub sha512: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error(
        "{url} is larger than spec.rkt.install.sizeLimit ({limit} bytes){}",
        .size.map(|size| format!(": {size} bytes")).unwrap_or_default()
    )]
    TooLarge {
        url: String,
        limit: u64,
        size: Option<u64>,
    },
    #[error("{url} was cut off after {received} of {expected} bytes")]
    CutOff {
        url: String,
        received: u64,
        expected: u64,
    },
    #[error("cannot download {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("cannot read {path}: {source}")]
    Source {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the download to {}: {source}", .path.display())]
    Destination {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up TLS for {url}: {reason}")]
    Tls { url: String, reason: String },
}

impl DownloadError {
    /// Whether trying again may succeed where this attempt failed.
    fn is_transient(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            Self::CutOff { .. } | Self::Transport { .. } => true,
            Self::TooLarge { .. }
            | Self::Source { .. }
            | Self::Destination { .. }
            | Self::Tls { .. } => false,
        }
    }
}

/// Where an archive comes from.
enum Origin<'a> {
    Https,
    /// A path on the node (through `host_root`).
    File(&'a str),
}

/// Fetches `url` into `destination` (created; removed again on any failure), holding it to `limit` bytes.
pub async fn download(
    url: &str,
    limit: u64,
    (programs, host_root): (&HostPrograms, &Path),
    destination: &Path,
    trust: &Trust,
) -> Result<Downloaded, DownloadError> {
    let origin = match url.strip_prefix("file://") {
        Some(path) => Origin::File(path),
        None => Origin::Https,
    };
    let mut pause = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let result = match origin {
            Origin::File(path) => copy_file(programs, host_root, path, limit, destination).await,
            Origin::Https => fetch_https(url, limit, destination, trust).await,
        };
        if result.is_err() {
            // Nothing of a failed download stays on the node.
            let _ = tokio::fs::remove_file(destination).await;
        }
        match result {
            Err(error) if error.is_transient() && attempt < ATTEMPTS => {
                tracing::warn!(%error, attempt, retry_in = ?pause, "the download failed; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Counts and hashes the bytes written to the destination, and holds them to the limit.
struct Sink {
    file: tokio::fs::File,
    path: PathBuf,
    digest: Sha512,
    size: u64,
    limit: u64,
}

impl Sink {
    async fn create(path: &Path, limit: u64) -> Result<Self, DownloadError> {
        let file =
            tokio::fs::File::create(path)
                .await
                .map_err(|source| DownloadError::Destination {
                    path: path.to_owned(),
                    source,
                })?;
        Ok(Self {
            file,
            path: path.to_owned(),
            digest: Sha512::new(),
            size: 0,
            limit,
        })
    }

    /// Takes `bytes`, or refuses them when they pass the limit (`url` names the source in the error).
    async fn take(&mut self, bytes: &[u8], url: &str) -> Result<(), DownloadError> {
        self.size += bytes.len() as u64;
        if self.size > self.limit {
            return Err(DownloadError::TooLarge {
                url: url.to_owned(),
                limit: self.limit,
                size: None,
            });
        }
        self.digest.update(bytes);
        self.file
            .write_all(bytes)
            .await
            .map_err(|source| DownloadError::Destination {
                path: self.path.clone(),
                source,
            })
    }

    async fn finish(mut self) -> Result<Downloaded, DownloadError> {
        let flushed = self.file.flush().await;
        flushed
            .and(self.file.sync_all().await)
            .map_err(|source| DownloadError::Destination {
                path: self.path.clone(),
                source,
            })?;
        Ok(Downloaded {
            size: self.size,
            sha512: self
                .digest
                .finalize()
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect(),
        })
    }
}

/// Reads the archive at `path` on the node. The node's file is read in the node's mount namespace (`cat` run
/// there, as the node's other programs), since the agent's pod mounts only the directories it writes; an agent on
/// the host itself reads it below `host_root`.
async fn copy_file(
    programs: &HostPrograms,
    host_root: &Path,
    path: &str,
    limit: u64,
    destination: &Path,
) -> Result<Downloaded, DownloadError> {
    let unreadable = |source| DownloadError::Source {
        path: path.to_owned(),
        source,
    };
    let on_node = match programs {
        HostPrograms::Here => host_root.join(path.trim_start_matches('/')),
        HostPrograms::InNamespace { .. } => PathBuf::from(path),
    };
    let mut cat = programs.command("cat");
    cat.arg("--")
        .arg(&on_node)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cat.spawn().map_err(unreadable)?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| unreadable(std::io::Error::other("cat's output is not piped")))?;
    let url = format!("file://{path}");
    let mut sink = Sink::create(destination, limit).await?;
    let mut buffer = vec![0; 256 << 10];
    loop {
        let read = stdout.read(&mut buffer).await.map_err(unreadable)?;
        if read == 0 {
            break;
        }
        sink.take(&buffer[..read], &url).await?;
    }
    let output = child.wait_with_output().await.map_err(unreadable)?;
    if !output.status.success() {
        let reason = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        return Err(unreadable(std::io::Error::other(reason)));
    }
    sink.finish().await
}

async fn fetch_https(
    url: &str,
    limit: u64,
    destination: &Path,
    trust: &Trust,
) -> Result<Downloaded, DownloadError> {
    let transport = |reason: String| DownloadError::Transport {
        url: url.to_owned(),
        reason,
    };
    let uri: hyper::Uri = url
        .parse()
        .map_err(|error: hyper::http::uri::InvalidUri| transport(error.to_string()))?;
    let client = client(url, trust)?;
    let request = hyper::Request::get(uri)
        .header(
            hyper::header::USER_AGENT,
            concat!("rktnetes-agent/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|error| transport(error.to_string()))?;
    let response = tokio::time::timeout(ANSWER_TIMEOUT, client.request(request))
        .await
        .map_err(|_| transport(format!("no answer within {ANSWER_TIMEOUT:?}")))?
        .map_err(|error| transport(error_chain(&error)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(DownloadError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
        });
    }
    let expected = response
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if let Some(size) = expected.filter(|size| *size > limit) {
        return Err(DownloadError::TooLarge {
            url: url.to_owned(),
            limit,
            size: Some(size),
        });
    }
    let mut body = response.into_body();
    let mut sink = Sink::create(destination, limit).await?;
    loop {
        let frame = tokio::time::timeout(STALL_TIMEOUT, body.frame())
            .await
            .map_err(|_| transport(format!("no data for {STALL_TIMEOUT:?}")))?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|error| match expected {
            Some(expected) => DownloadError::CutOff {
                url: url.to_owned(),
                received: sink.size,
                expected,
            },
            None => transport(error_chain(&error)),
        })?;
        if let Ok(data) = frame.into_data() {
            sink.take(&data, url).await?;
        }
    }
    if let Some(expected) = expected.filter(|expected| sink.size != *expected) {
        return Err(DownloadError::CutOff {
            url: url.to_owned(),
            received: sink.size,
            expected,
        });
    }
    sink.finish().await
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A client for `https://` only, trusting the node's certificate authorities and the extra ones.
fn client(url: &str, trust: &Trust) -> Result<HttpsClient, DownloadError> {
    let tls = |reason: String| DownloadError::Tls {
        url: url.to_owned(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for certificate in native.certs {
        // A certificate the node has but rustls cannot use is skipped, as every TLS client does.
        let _ = roots.add(certificate);
    }
    if let Some(path) = &trust.extra_ca_file {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|error| tls(format!("cannot read {}: {error}", path.display())))?;
        for certificate in certificates {
            let certificate =
                certificate.map_err(|error| tls(format!("{}: {error}", path.display())))?;
            roots
                .add(certificate)
                .map_err(|error| tls(format!("{}: {error}", path.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(tls(
            "the node has no certificate authorities, and no --release-ca-file is given".to_owned(),
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| tls(error.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(ANSWER_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// An error and its sources, one after the other (hyper's own message says little: "client error (Connect)").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_is_copied_with_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("release.tar.gz"), b"abc").unwrap();
        let destination = dir.path().join("download");
        let downloaded = download(
            "file:///release.tar.gz",
            10,
            (&HostPrograms::Here, dir.path()),
            &destination,
            &Trust::default(),
        )
        .await
        .unwrap();
        assert_eq!(downloaded.size, 3);
        // SHA-512("abc"), FIPS 180-2's example.
        assert!(
            downloaded.sha512.starts_with("ddaf35a193617aba"),
            "{}",
            downloaded.sha512
        );
        assert_eq!(std::fs::read(&destination).unwrap(), b"abc");
    }

    #[tokio::test]
    async fn a_file_over_the_limit_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("release.tar.gz"), b"abcdef").unwrap();
        let destination = dir.path().join("download");
        let error = download(
            "file:///release.tar.gz",
            5,
            (&HostPrograms::Here, dir.path()),
            &destination,
            &Trust::default(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, DownloadError::TooLarge { limit: 5, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("sizeLimit (5 bytes)"), "{error}");
        assert!(!destination.exists());
    }

    #[tokio::test]
    async fn a_missing_file_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let error = download(
            "file:///opt/rkt-v1.30.0.tar.gz",
            5,
            (&HostPrograms::Here, dir.path()),
            &dir.path().join("download"),
            &Trust::default(),
        )
        .await
        .unwrap_err();
        assert!(
            error.to_string().contains("/opt/rkt-v1.30.0.tar.gz"),
            "{error}"
        );
    }

    /// A one-shot HTTPS server on 127.0.0.1: answers the n-th connection with `answers[n]` (the last one again
    /// after that), raw bytes, then closes without a TLS close_notify. Returns its port, the CA's PEM and the
    /// number of connections served.
    async fn server(
        answers: Vec<Vec<u8>>,
    ) -> (u16, String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::{Arc, atomic::Ordering};

        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        use tokio::io::AsyncReadExt;

        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let answer = answers[n.min(answers.len() - 1)].clone();
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    continue;
                };
                let mut head = [0; 4096];
                let _ = tls.read(&mut head).await;
                let _ = tls.write_all(&answer).await;
                let _ = tls.flush().await;
            }
        });
        (port, ca.pem(), served)
    }

    fn answer(status: &str, length: usize, body: &[u8]) -> Vec<u8> {
        let mut answer =
            format!("HTTP/1.1 {status}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n")
                .into_bytes();
        answer.extend_from_slice(body);
        answer
    }

    async fn fetch(
        port: u16,
        ca: &str,
        limit: u64,
    ) -> (
        tempfile::TempDir,
        PathBuf,
        Result<Downloaded, DownloadError>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, ca).unwrap();
        let destination = dir.path().join("download");
        let trust = Trust {
            extra_ca_file: Some(ca_file),
            release_keys_file: None,
        };
        let result = download(
            &format!("https://127.0.0.1:{port}/rkt-v1.30.0.tar.gz"),
            limit,
            (&HostPrograms::Here, dir.path()),
            &destination,
            &trust,
        )
        .await;
        (dir, destination, result)
    }

    #[tokio::test]
    async fn a_body_cut_off_and_a_503_are_tried_again_and_the_third_answer_counts() {
        let (port, ca, served) = server(vec![
            answer("200 OK", 10, b"abcde"),
            answer("503 Service Unavailable", 0, b""),
            answer("200 OK", 3, b"abc"),
        ])
        .await;
        let (_dir, destination, result) = fetch(port, &ca, 100).await;
        let downloaded = result.unwrap();
        assert_eq!(downloaded.size, 3);
        assert!(downloaded.sha512.starts_with("ddaf35a193617aba"));
        assert_eq!(std::fs::read(destination).unwrap(), b"abc");
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_body_cut_off_every_time_says_so_and_leaves_nothing() {
        let (port, ca, served) = server(vec![answer("200 OK", 10, b"abcde")]).await;
        let (_dir, destination, result) = fetch(port, &ca, 100).await;
        let error = result.unwrap_err();
        assert!(
            matches!(
                error,
                DownloadError::CutOff {
                    received: 5,
                    expected: 10,
                    ..
                }
            ),
            "{error}"
        );
        assert!(!destination.exists());
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_404_and_an_announced_length_over_the_limit_are_not_tried_again() {
        let (port, ca, served) = server(vec![answer("404 Not Found", 0, b"")]).await;
        let (_dir, _, result) = fetch(port, &ca, 100).await;
        assert!(matches!(
            result,
            Err(DownloadError::Status { status: 404, .. })
        ));
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);

        let (port, ca, served) = server(vec![answer("200 OK", 1000, b"")]).await;
        let (_dir, destination, result) = fetch(port, &ca, 100).await;
        let error = result.unwrap_err();
        assert!(
            matches!(
                error,
                DownloadError::TooLarge {
                    size: Some(1000),
                    limit: 100,
                    ..
                }
            ),
            "{error}"
        );
        assert!(!destination.exists());
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_server_the_node_does_not_trust_is_refused() {
        let (port, _, _) = server(vec![answer("200 OK", 3, b"abc")]).await;
        let (_, other_ca, _) = server(vec![answer("200 OK", 0, b"")]).await;
        let (_dir, _, result) = fetch(port, &other_ca, 100).await;
        let error = result.unwrap_err();
        assert!(
            error.to_string().contains("UnknownIssuer")
                || error.to_string().contains("certificate"),
            "{error}"
        );
    }
}
