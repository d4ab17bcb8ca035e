//! Turning SIGINT/SIGTERM (or a supervisor's end) into a cancellation token, and waiting
//! for work with a deadline.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Set in the environment of a component started by a supervisor (`hydrant up`): stop
/// when stdin reaches end of file, i.e. when the supervisor is gone, however it ended.
pub const SUPERVISED_ENV: &str = "HYDRANT_SUPERVISED";

/// Grace period for an orderly stop: long enough to flush a full agent buffer to a doppler
/// on loopback, short enough that an operator's second Ctrl-C is rarely needed.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// A token cancelled on the first SIGINT or SIGTERM (or, for a component run by `hydrant
/// up`, when its supervisor goes away).
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
    if std::env::var_os(SUPERVISED_ENV).is_some() {
        let t = token.clone();
        // A plain thread: a blocking read must not hold up the runtime's exit.
        std::thread::spawn(move || {
            stdin_closed();
            tracing::info!("supervisor gone (stdin closed); shutting down");
            t.cancel();
        });
    }
    token
}

/// Returns when stdin reaches end of file: a supervised component's supervisor is gone.
fn stdin_closed() {
    use std::io::Read as _;
    let mut stdin = std::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
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
