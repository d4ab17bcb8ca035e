//! A minimal HTTP/1.1 client over TCP or TLS with its own rustls config (ring provider, the
//! given CA only), for the Kubernetes actuator. reqwest is not used here: its rustls support
//! would need a process-wide crypto provider for every client in the program.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use super::{Error, REQUEST_TIMEOUT};

/// A client; `tls` is required for `https://` URLs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Client {
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Client {
    /// A client trusting only the CAs in `ca` (PEM), or plaintext only without one.
    pub(crate) fn new(ca: Option<&Path>) -> Result<Client, Error> {
        Ok(Client {
            tls: ca.map(config).transpose()?.map(Arc::new),
        })
    }

    /// Sends one request; returns the status and body.
    pub(crate) async fn send(
        &self,
        method: http::Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<String>,
    ) -> Result<(u16, String), Error> {
        let fail = |message: String| Error::Request {
            url: url.to_owned(),
            message,
        };
        let uri: http::Uri = url.parse().map_err(|e| fail(format!("bad URL: {e}")))?;
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().ok_or_else(|| fail("no host".into()))?.to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("{host}:{port}"));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| fail(e.to_string()))?;
        let exchange = async {
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| fail(format!("cannot connect: {e}")))?;
            if https {
                let Some(tls) = &self.tls else {
                    return Err(fail("https needs a CA bundle (--kube-ca)".into()));
                };
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| fail(format!("bad server name: {e}")))?;
                let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| fail(format!("TLS handshake failed: {e}")))?;
                exchange(TokioIo::new(stream), req)
                    .await
                    .map_err(|e| fail(format!("HTTP exchange failed: {e}")))
            } else {
                exchange(TokioIo::new(tcp), req)
                    .await
                    .map_err(|e| fail(format!("HTTP exchange failed: {e}")))
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| fail(format!("no answer within {REQUEST_TIMEOUT:?}")))?
    }
}

async fn exchange<S>(io: S, req: http::Request<Full<Bytes>>) -> Result<(u16, String), hyper::Error>
where
    S: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A rustls client config trusting only the CAs in `path`.
fn config(path: &Path) -> Result<rustls::ClientConfig, Error> {
    let bad = |message: String| Error::File {
        path: path.to_owned(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(format!("cannot read the CA bundle: {e}")))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("unusable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the CA bundle".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
