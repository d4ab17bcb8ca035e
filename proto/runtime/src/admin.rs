//! The HTTP side every component serves: `/metrics` (Prometheus text) and `/healthz`
//! (JSON, 503 when unhealthy), over what the component reports about itself.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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

async fn healthz(State(o): State<Arc<dyn Observe>>) -> impl IntoResponse {
    let (ok, details) = o.health();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(details))
}

/// Serves `router` on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Serves the admin routes of `observe` on `listener` until `shutdown` fires.
pub async fn run(
    listener: TcpListener,
    observe: Arc<dyn Observe>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve(listener, router(observe), shutdown).await
}
