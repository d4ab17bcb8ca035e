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

/// Serves `router` on `listener` as `life`'s task `http`, until its serve phase: the HTTP
/// side of every component.
pub fn spawn<E>(life: &mut Lifecycle<E>, listener: TcpListener, router: Router)
where
    E: From<std::io::Error> + std::fmt::Display + Send + 'static,
{
    let stop = life.token(Phase::Serve);
    life.spawn(Phase::Serve, "http", async move {
        serve(listener, router, stop).await.map_err(E::from)
    });
}
