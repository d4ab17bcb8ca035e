//! The HTTP side every component serves: `/metrics` (Prometheus text) and `/healthz`
//! (JSON, 503 when unhealthy), over what the component reports about itself.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::FutureExt as _;
use std::panic::AssertUnwindSafe;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::lifecycle::{Lifecycle, Phase};

/// What a component reports about itself.
pub trait Observe: Send + Sync + 'static {
    /// Prometheus text exposition of the component's metrics.
    fn metrics(&self) -> String;
    /// Whether the component is healthy, and details for humans.
    fn health(&self) -> (bool, serde_json::Value);
}

/// The `/metrics` and `/healthz` routes over `observe`.
pub fn router(observe: Arc<dyn Observe>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(observe)
}

async fn metrics(State(o): State<Arc<dyn Observe>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        o.metrics(),
    )
}

/// `/healthz`: the component's report, with the process id added, so a supervisor can tell
/// its own child from another process answering on the same port.
async fn healthz(State(o): State<Arc<dyn Observe>>) -> impl IntoResponse {
    let (ok, mut details) = o.health();
    if let Some(map) = details.as_object_mut() {
        map.insert("pid".into(), std::process::id().into());
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(details))
}

/// Serves `router` on `listener` until `shutdown` fires: every component's HTTP server.
/// A handler that panics is answered `500` naming the panic (and logged), never with a
/// dropped connection, and the server keeps serving.
///
/// With `tls` the port speaks HTTPS only ([`crate::https`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let router = router.layer(axum::middleware::from_fn(catch_panic));
    let stopped = async move { shutdown.cancelled().await };
    match tls {
        Some(config) => {
            let listener = crate::https::TlsListener::new(listener, config)?;
            axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
        }
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
        }
    }
}

/// What a caught panic said (its `&str` or `String` payload), for logs and answers.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

/// Runs the rest of the request, turning a panic into a `500` response.
async fn catch_panic(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic_message(panic.as_ref());
            tracing::error!(%method, path, panic = %what, "an HTTP handler panicked");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal error: the handler for {method} {path} panicked: {what}\n"),
            )
                .into_response()
        }
    }
}

/// Serves `router` on `listener` as `life`'s task `http`, until its serve phase: the HTTP
/// side of every component (HTTPS with `tls`).
pub fn spawn<E>(
    life: &mut Lifecycle<E>,
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
) where
    E: From<std::io::Error> + std::fmt::Display + Send + 'static,
{
    let stop = life.token(Phase::Serve);
    life.spawn(Phase::Serve, "http", async move {
        serve(listener, router, tls, stop).await.map_err(E::from)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One HTTP/1.1 request on a fresh connection; the whole response as text.
    async fn fetch(addr: std::net::SocketAddr, path: &str) -> String {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            conn.read_to_string(&mut out),
        )
        .await
        .expect("a response within 10 s")
        .unwrap();
        out
    }

    async fn boom() -> &'static str {
        panic!("index out of range")
    }

    #[tokio::test]
    async fn a_panicking_handler_is_answered_500_and_the_server_keeps_serving() {
        let router = Router::new()
            .route("/boom", axum::routing::get(boom))
            .route("/ok", axum::routing::get(|| async { "fine" }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, router, None, stop.clone()));
        for _ in 0..3 {
            let boom = fetch(addr, "/boom").await;
            assert!(boom.starts_with("HTTP/1.1 500"), "{boom}");
            assert!(
                boom.contains("the handler for GET /boom panicked: index out of range"),
                "{boom}"
            );
        }
        assert!(fetch(addr, "/ok").await.ends_with("fine"));
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
