//! HTTPS for every HTTP API (SPEC §11, `security.http.tls`): the metadata nodes' API (console,
//! Raft RPCs, broker registration and heartbeats) and the brokers' API, served with the
//! certificate and key of `security.tls`; and the one way this code base builds an HTTP client,
//! which trusts `security.tls.caFile` (or a CA the CLI is given).
//!
//! rustls with the ring provider, as for the Kafka listeners: no OpenSSL, no process-wide
//! crypto provider to install. reqwest builds its TLS configuration even for a client that
//! only ever speaks `http://`, so every client comes from [`client_builder`], which hands it
//! ours.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

use crate::security::{SecurityConfig, TlsConfig};
use crate::TypesError;

/// A TLS handshake that takes longer than this is dropped (a client that connects and sends
/// nothing holds no task for long).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TypesError> {
    let bad = |why: String| TypesError::Tls(format!("{what} {}: {why}", path.display()));
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// Whether `security` asks for HTTPS on the HTTP APIs.
pub fn enabled(security: Option<&SecurityConfig>) -> bool {
    security
        .and_then(|s| s.http.as_ref())
        .is_some_and(|h| h.tls)
}

/// `https` or `http`: the scheme of every node URL under `security`.
pub fn scheme(security: Option<&SecurityConfig>) -> &'static str {
    if enabled(security) {
        "https"
    } else {
        "http"
    }
}

/// The server side: `security.tls`'s certificate chain and key, HTTP/1.1. Clients are not
/// asked for certificates here; bearer tokens say who they are.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TypesError> {
    let chain = certs(&tls.cert_file, "certificate")?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| TypesError::Tls(format!("private key {}: {e}", tls.key_file.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TypesError::Tls(format!("protocol versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TypesError::Tls(format!("certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The HTTPS server configuration `security` asks for, `None` for plain HTTP.
pub fn server_config_for(
    security: Option<&SecurityConfig>,
) -> Result<Option<Arc<rustls::ServerConfig>>, TypesError> {
    if !enabled(security) {
        return Ok(None);
    }
    let tls = security
        .and_then(|s| s.tls.as_ref())
        .ok_or_else(|| TypesError::Tls("security.http.tls needs security.tls".into()))?;
    server_config(tls).map(Some)
}

/// A reqwest client builder whose TLS trusts the certificates in `ca_file` (none: no server
/// certificate is trusted, so only `http://` URLs work).
pub fn client_builder(ca_file: Option<&Path>) -> Result<reqwest::ClientBuilder, TypesError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca_file {
        for c in certs(ca, "CA certificate")? {
            roots
                .add(c)
                .map_err(|e| TypesError::Tls(format!("CA certificate {}: {e}", ca.display())))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TypesError::Tls(format!("protocol versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(reqwest::Client::builder().tls_backend_preconfigured(config))
}

/// [`client_builder`] trusting the CA of `security` when its HTTP APIs speak HTTPS.
pub fn client_builder_for(
    security: Option<&SecurityConfig>,
) -> Result<reqwest::ClientBuilder, TypesError> {
    let ca = enabled(security)
        .then(|| security.and_then(|s| s.tls.as_ref()?.ca_file.as_deref()))
        .flatten();
    client_builder(ca)
}

/// A plain HTTP client (no CA), for the places that never speak HTTPS: tests' helpers, probes.
pub fn client() -> reqwest::Client {
    client_builder(None)
        .and_then(|b| {
            b.build()
                .map_err(|e| TypesError::Tls(format!("HTTP client: {e}")))
        })
        .unwrap_or_default()
}

/// Serves `app` on `listener` until `shutdown` resolves: over TLS with `tls`, else plain; the
/// client's address is in each request's `ConnectInfo<SocketAddr>` (ACL hosts).
/// Either way with TCP_NODELAY (Raft RPC answers are small: without it they can wait for
/// delayed ACKs).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        None => {
            axum::serve(
                NodelayListener(listener),
                app.into_make_service_with_connect_info::<crate::http::ClientAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
        }
        Some(config) => {
            axum::serve(
                TlsListener::new(listener, config),
                app.into_make_service_with_connect_info::<crate::http::ClientAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
        }
    }
}

/// A TCP listener that hands axum only connections whose TLS handshake completed. Handshakes
/// run in their own tasks, so a slow or silent client holds up nobody else.
pub struct TlsListener {
    local: std::io::Result<SocketAddr>,
    accepted: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> TlsListener {
        let local = listener.local_addr();
        let (tx, accepted) = tokio::sync::mpsc::channel(64);
        let tls = tokio_rustls::TlsAcceptor::from(config);
        let acceptor = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // EMFILE and the like: back off instead of spinning.
                        tracing::warn!("HTTPS accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (tls, handed) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = handed.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "HTTPS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        TlsListener {
            local,
            accepted,
            acceptor,
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for crate::http::ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        crate::http::ClientAddr(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, NodelayListener>>
    for crate::http::ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, NodelayListener>) -> Self {
        crate::http::ClientAddr(*stream.remote_addr())
    }
}

/// Plain TCP with TCP_NODELAY on every connection.
pub struct NodelayListener(pub TcpListener);

impl axum::serve::Listener for NodelayListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, peer) = axum::serve::Listener::accept(&mut self.0).await;
        let _ = tcp.set_nodelay(true);
        (tcp, peer)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(c) => c,
            // The acceptor ended (it only does when this listener is dropped).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        match &self.local {
            Ok(a) => Ok(*a),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}
