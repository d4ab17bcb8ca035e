//! Turning SIGINT/SIGTERM into a cancellation token, and waiting for work with a deadline.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Grace period for an orderly stop: long enough to flush a full agent buffer to a doppler
/// on loopback, short enough that an operator's second Ctrl-C is rarely needed.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// A token cancelled on the first SIGINT or SIGTERM.
///
/// # Panics
/// Must be called inside a tokio runtime.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received; shutting down");
        t.cancel();
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Awaits `work` for at most `grace`; logs `what` when it overran. Returns whether it finished.
pub async fn within<F: Future>(grace: Duration, what: &str, work: F) -> bool {
    match tokio::time::timeout(grace, work).await {
        Ok(_) => true,
        Err(_) => {
            tracing::warn!(
                component = what,
                ?grace,
                "did not stop within the grace period"
            );
            false
        }
    }
}
