//! TLS on the HTTP ports, and the one way Hydrant builds an HTTP client.
//!
//! A component given certificates (`--tls-ca`, `--tls-cert`, `--tls-key`) serves its HTTP
//! API over TLS with the certificate it presents on gRPC. A client certificate is not
//! required there: tokens authorize HTTP callers (the CLI, Grafana, Prometheus, curl). A
//! client certificate that is presented must chain to the CA.
//!
//! Handshakes run concurrently, each within [`HANDSHAKE_TIMEOUT`], and at most
//! [`HANDSHAKES_IN_FLIGHT`] at once: a silent or slow client holds its own socket and
//! nothing else.
//!
//! Every HTTP client in Hydrant comes from [`client`]: it carries its own rustls
//! configuration (ring; the given CA only, or the system's roots without one, read at the
//! first https handshake), so no process-wide crypto provider is needed. A tidy test keeps other constructors out.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hydrant_proto::transport::Tls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

mod system;

/// Time a new HTTPS connection has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS handshakes in progress at once; more connections wait in the kernel's backlog.
pub const HANDSHAKES_IN_FLIGHT: usize = 256;

/// Connections past their handshake, waiting for the HTTP server to take them.
const READY_CONNECTIONS: usize = 64;

/// Errors building TLS configurations or clients.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The material was read but rustls refused it.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_error(e: impl std::fmt::Display) -> Error {
    Error::Config(e.to_string())
}

/// The certificates in a PEM bundle.
fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("{what}: not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Config(format!("{what}: no PEM certificate")));
    }
    Ok(certs)
}

fn roots(pem: &[u8], what: &str) -> Result<rustls::RootCertStore, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(pem, what)? {
        roots
            .add(cert)
            .map_err(|e| Error::Config(format!("{what}: unusable CA certificate: {e}")))?;
    }
    Ok(roots)
}

fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| Error::Config(format!("the private key: not a PEM private key: {e}")))
}

/// The server side of a component's HTTPS port: its certificate, HTTP/1.1, and client
/// certificates optional but checked against the CA when presented.
pub fn server_config(tls: &Tls) -> Result<Arc<rustls::ServerConfig>, Error> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(tls.ca_pem(), "the CA")?),
        Arc::clone(&provider),
    )
    .allow_unauthenticated()
    .build()
    .map_err(config_error)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certificates(tls.cert_pem(), "the certificate")?,
            private_key(tls.key_pem())?,
        )
        .map_err(config_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The HTTPS settings of a component with certificates; `None` (plain HTTP) without.
pub fn server_tls(tls: Option<&Tls>) -> Result<Option<Arc<rustls::ServerConfig>>, Error> {
    tls.map(server_config).transpose()
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
    }
}

/// What an HTTP client trusts, and whether it presents a certificate.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// CA certificates (PEM) to trust instead of the system's roots.
    pub ca: Option<Vec<u8>>,
    /// A client certificate and key (PEM) to present.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl ClientTls {
    /// Trusting the CA in a PEM file.
    pub fn ca_file(path: &Path) -> Result<ClientTls, Error> {
        let pem = std::fs::read(path).map_err(|e| Error::File {
            path: path.into(),
            message: format!("cannot read the CA certificate: {e}"),
        })?;
        certificates(&pem, "the CA").map_err(|e| Error::File {
            path: path.into(),
            message: e.to_string(),
        })?;
        Ok(ClientTls {
            ca: Some(pem),
            identity: None,
        })
    }

    /// Trusting a component's CA and presenting its certificate.
    pub fn of(tls: &Tls) -> ClientTls {
        ClientTls {
            ca: Some(tls.ca_pem().to_vec()),
            identity: Some((tls.cert_pem().to_vec(), tls.key_pem().to_vec())),
        }
    }

    /// The rustls configuration these settings make (ALPN `http/1.1`), for a TLS client
    /// that is not HTTP (clear `alpn_protocols` there).
    pub fn rustls(&self) -> Result<rustls::ClientConfig, Error> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?;
        let builder = match &self.ca {
            Some(pem) => builder.with_root_certificates(roots(pem, "the CA")?),
            // The system's roots, loaded at the first https:// handshake: a process that
            // only speaks plain http (most CLI calls) does not pay for reading them.
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(system::LazyVerifier::new(provider()))),
        };
        let mut config = match &self.identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(certificates(cert, "the certificate")?, private_key(key)?)
                .map_err(config_error)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// `addr` as a base URL: kept when it names its scheme; otherwise `https://` when `tls`
/// trusts a CA of its own (a Hydrant with certificates), else `http://`.
pub fn url(addr: &str, tls: &ClientTls) -> String {
    let addr = addr.trim_end_matches('/');
    if addr.contains("://") {
        addr.to_owned()
    } else if tls.ca.is_some() {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    }
}

/// A client builder with Hydrant's TLS settings (`tls`, or the system's roots), for callers
/// that add timeouts or other settings.
pub fn client_builder(tls: &ClientTls) -> Result<reqwest::ClientBuilder, Error> {
    #[allow(clippy::disallowed_methods)] // the one sanctioned constructor
    let builder = reqwest::Client::builder();
    Ok(builder.tls_backend_preconfigured(tls.rustls()?))
}

/// An HTTP client with Hydrant's TLS settings.
pub fn client(tls: &ClientTls) -> Result<reqwest::Client, Error> {
    Ok(client_builder(tls)?.build()?)
}

/// A client builder that trusts the system's roots and presents no certificate: for plain
/// `http://` peers and public `https://` ones.
pub fn plain_builder() -> reqwest::ClientBuilder {
    // Without a CA or an identity there is nothing to parse: this cannot fail.
    client_builder(&ClientTls::default()).expect("TLS settings without a CA always build")
}

/// [`plain_builder`]'s client. Panics only where `reqwest::Client::new` would.
pub fn plain_client() -> reqwest::Client {
    plain_builder()
        .build()
        .expect("an HTTP client without a CA builds")
}

/// Accepts TCP connections and runs their TLS handshakes concurrently; an
/// [`axum::serve::Listener`] of finished TLS connections.
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts handshaking connections from `listener` with `config`.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_CONNECTIONS);
        let accept_task = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(TlsListener {
            ready,
            local,
            accept_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let permits = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or a transient error: back off instead of spinning.
                tracing::warn!(error = %e, "accepting an HTTPS connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests;
