//! A TLS server of the tests (the hostile API server, the release mirror): it listens on every address at a port
//! the kernel picks and serves each connection, once TLS is up, with the caller's function. It runs on a thread and
//! runtime of its own, so a test that blocks (running a command in a node, restarting the control plane) does not
//! stall it, and it stops, dropping the connections it still serves, when dropped.

use std::{future::Future, net::SocketAddr, path::Path, sync::Arc};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

/// A connection of a [`TlsServer`], TLS established.
pub type Connection = TlsStream<TcpStream>;

/// A running server; stops when dropped.
pub struct TlsServer {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsServer {
    /// Starts `what` (named in panics) with the TLS settings `tls`; each connection that completes its handshake is
    /// served by `serve`.
    pub fn start<Serve, Served>(what: &str, tls: rustls::ServerConfig, serve: Serve) -> Self
    where
        Serve: Fn(Connection) -> Served + Send + Sync + 'static,
        Served: Future<Output = ()> + Send + 'static,
    {
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let serve = Arc::new(serve);
        let listener = std::net::TcpListener::bind("0.0.0.0:0")
            .unwrap_or_else(|error| panic!("a port for {what}: {error}"));
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let address = listener.local_addr().expect("the listener's address");
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|error| panic!("a runtime for {what}: {error}"));
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("a tokio listener");
                // Dropped (and so aborted) with the loop: no connection outlives the server.
                let mut connections = tokio::task::JoinSet::new();
                let mut stopped = std::pin::pin!(stopped);
                loop {
                    tokio::select! {
                        accepted = listener.accept() => if let Ok((stream, _)) = accepted {
                            let (handshake, serve) = (acceptor.accept(stream), serve.clone());
                            connections.spawn(async move {
                                if let Ok(connection) = handshake.await {
                                    serve(connection).await;
                                }
                            });
                        },
                        Some(_) = connections.join_next(), if !connections.is_empty() => {}
                        _ = &mut stopped => break,
                    }
                }
            });
        });
        Self {
            address,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The port it listens on (on every address).
    pub fn port(&self) -> u16 {
        self.address.port()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// TLS settings that present `certificates` (the server's first, then its chain) and `key`, with ring, as kube's
/// client uses.
pub fn presenting(
    certificates: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> rustls::ServerConfig {
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .expect("the certificate and key match")
}

/// TLS settings that present the certificate and key in the PEM files `serving`.
pub fn presenting_files(serving: (&Path, &Path)) -> rustls::ServerConfig {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(serving.0)
        .and_then(Iterator::collect)
        .unwrap_or_else(|error| panic!("{}: {error}", serving.0.display()));
    let key = PrivateKeyDer::from_pem_file(serving.1)
        .unwrap_or_else(|error| panic!("{}: {error}", serving.1.display()));
    presenting(certificates, key)
}
