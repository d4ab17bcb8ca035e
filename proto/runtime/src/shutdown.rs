//! Turning SIGINT, SIGTERM and SIGHUP (or a supervisor's end) into a cancellation token
//! that starts a component's ordered stop ([`crate::lifecycle`]), and the default grace
//! period.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Set in the environment of a component started by a supervisor (`hydrant up`): stop
/// when stdin reaches end of file, i.e. when the supervisor is gone, however it ended.
pub const SUPERVISED_ENV: &str = "HYDRANT_SUPERVISED";

/// Grace period for an orderly stop: long enough to flush a full agent buffer to a doppler
/// on loopback, short enough that an operator's second Ctrl-C is rarely needed.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// A token cancelled on the first SIGINT, SIGTERM or SIGHUP (a closed terminal), or, for a
/// component run by `hydrant up`, when its supervisor goes away.
///
/// # Panics
/// Must be called inside a tokio runtime.
pub fn on_signal() -> CancellationToken {
    on_signals(true)
}

/// Like [`on_signal`], but SIGHUP is left to the component (the autoscaler reloads its
/// policies on it).
///
/// # Panics
/// Must be called inside a tokio runtime.
pub fn on_signal_except_hangup() -> CancellationToken {
    on_signals(false)
}

fn on_signals(hangup: bool) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let which = wait_for_signal(hangup).await;
        tracing::info!(signal = which, "signal received; shutting down");
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

/// Waits for the first stopping signal; returns its name.
async fn wait_for_signal(hangup: bool) -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv(), if hangup => "SIGHUP",
    }
}
