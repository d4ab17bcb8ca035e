//! mTLS settings and gRPC endpoint tuning shared by every Hydrant server and client.
//!
//! Plaintext is the zero-config default (loopback development). With a CA, certificate and
//! key, servers require client certificates signed by the CA and clients verify the server
//! against the CA and a configurable server name (Loggregator uses "doppler" and "metron").

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

use crate::{HTTP2_CONNECTION_WINDOW, HTTP2_STREAM_WINDOW};

/// Errors loading TLS material or building an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Names cannot be resolved (the DNS configuration is unusable).
    #[error("doppler discovery: {0}")]
    Discovery(String),
    /// A file could not be read.
    #[error("cannot read {what} file {path}: {source}")]
    Read {
        /// Which input (`--tls-ca`, …).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no PEM block of the expected kind.
    #[error("{what} file {path} holds no PEM {expected}")]
    NotPem {
        /// Which input.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What was expected (`CERTIFICATE`, `PRIVATE KEY`).
        expected: &'static str,
    },
    /// Only some of `--tls-ca`, `--tls-cert`, `--tls-key` were given.
    #[error("mTLS needs all of --tls-ca, --tls-cert and --tls-key (missing {0})")]
    Incomplete(&'static str),
    /// The address is not a valid URI.
    #[error("invalid address {addr}: {source}")]
    Address {
        /// The address as given.
        addr: String,
        /// Why tonic refused it.
        #[source]
        source: tonic::transport::Error,
    },
}

/// PEM material for mutual TLS.
#[derive(Clone)]
pub struct Tls {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
    /// Name the peer's certificate must carry when we are the client.
    pub server_name: String,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn read_pem(what: &'static str, path: &Path, expected: &'static str) -> Result<Vec<u8>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        what,
        path: path.into(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains("-----BEGIN ") || !text.contains(expected) {
        return Err(Error::NotPem {
            what,
            path: path.into(),
            expected,
        });
    }
    Ok(bytes)
}

impl Tls {
    /// Loads the CA, certificate and key; `None` when none of them is given (plaintext).
    pub fn from_files(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
        server_name: &str,
    ) -> Result<Option<Tls>, Error> {
        match (ca, cert, key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some(Tls {
                ca: read_pem("--tls-ca", ca, "CERTIFICATE")?,
                cert: read_pem("--tls-cert", cert, "CERTIFICATE")?,
                key: read_pem("--tls-key", key, "PRIVATE KEY")?,
                server_name: server_name.to_owned(),
            })),
            (None, _, _) => Err(Error::Incomplete("--tls-ca")),
            (_, None, _) => Err(Error::Incomplete("--tls-cert")),
            (_, _, None) => Err(Error::Incomplete("--tls-key")),
        }
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca
    }

    /// This component's certificate (PEM).
    pub fn cert_pem(&self) -> &[u8] {
        &self.cert
    }

    /// This component's private key (PEM).
    pub fn key_pem(&self) -> &[u8] {
        &self.key
    }

    /// Server side: present our certificate, require a client certificate from the CA.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
            .client_auth_optional(false)
    }

    /// Client side: verify the server against the CA and `server_name`, present our certificate.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
            .domain_name(self.server_name.clone())
    }
}

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long data a sender wrote may stay unacknowledged by the receiving host before its
/// connection is given up (`TCP_USER_TIMEOUT`, Linux). A host that vanishes mid-stream (link
/// cut, power lost) sends no reset: without this, a sender would keep writing into a dead
/// connection until the HTTP/2 keepalive gives up after ~30 s. Acknowledgements come from
/// the peer's kernel, not from its (possibly busy) process, so 750 ms without one means the
/// host is unreachable, not slow (on a LAN they take well under a millisecond; Linux's
/// least retransmission timeout is 200 ms). With it, the streams to a host that vanished
/// break within a second and the other targets take everything.
pub const PEER_ACK_TIMEOUT: Duration = Duration::from_millis(750);

/// Connects a sender's `endpoint` (from [`endpoint`]) with `TCP_USER_TIMEOUT` set to
/// `ack_timeout`, so a connection to a host that went away fails within that time once
/// anything is written to it (elsewhere the option is not available and only the keepalive
/// applies).
pub async fn connect_sender(
    endpoint: &Endpoint,
    ack_timeout: Duration,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    #[cfg(target_os = "linux")]
    http.set_tcp_user_timeout(Some(ack_timeout));
    #[cfg(not(target_os = "linux"))]
    let _ = ack_timeout;
    endpoint.connect_with_connector(http).await
}

/// A gRPC endpoint tuned for streaming envelopes: large HTTP/2 windows, no Nagle delay,
/// keepalives that notice a dead peer within ~30 s, and mTLS when configured.
pub fn endpoint(addr: &str, tls: Option<&Tls>) -> Result<Endpoint, Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("{scheme}://{addr}")
    };
    let address_error = |source| Error::Address {
        addr: addr.to_owned(),
        source,
    };
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(address_error)?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .initial_stream_window_size(HTTP2_STREAM_WINDOW)
        .initial_connection_window_size(HTTP2_CONNECTION_WINDOW)
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(15))
        .keep_alive_while_idle(true);
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.client_config())
            .map_err(address_error)?;
    }
    Ok(endpoint)
}
