//! The HTTP side every component serves (`/metrics`, `/healthz`); see
//! `hydrant_proto::observe`.

use std::sync::Arc;

pub use hydrant_proto::observe::{Observe, router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves the admin routes on `listener` until `shutdown` fires.
pub async fn run(
    listener: TcpListener,
    observe: Arc<dyn Observe>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    hydrant_proto::observe::serve(listener, router(observe), shutdown).await
}
