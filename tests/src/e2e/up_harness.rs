//! Running `hydrant up` (the real binary) in a test: free ports for every component (for
//! the test's `hydrant.yaml`), the process started in its own directory, and its banner
//! read until it says it is up.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::hydrant_bin;
use crate::servers::free_port;

/// Longest `up` may take to print its banner.
const READY: Duration = Duration::from_secs(120);

/// Free loopback ports for every component.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ports {
    pub(crate) doppler_grpc: SocketAddr,
    pub(crate) doppler_http: SocketAddr,
    pub(crate) agent_grpc: SocketAddr,
    pub(crate) agent_http: SocketAddr,
    pub(crate) cell: SocketAddr,
    pub(crate) logcache: SocketAddr,
    pub(crate) storage: SocketAddr,
    pub(crate) autoscaler: SocketAddr,
}

impl Ports {
    /// Free loopback ports for every component.
    pub(crate) fn free() -> Ports {
        Ports {
            doppler_grpc: free_port(),
            doppler_http: free_port(),
            agent_grpc: free_port(),
            agent_http: free_port(),
            cell: free_port(),
            logcache: free_port(),
            storage: free_port(),
            autoscaler: free_port(),
        }
    }
}

/// A running `hydrant up`.
pub(crate) struct Up {
    pub(crate) child: Child,
    /// What it printed after the banner, line by line.
    pub(crate) lines: Lines<BufReader<ChildStdout>>,
    /// Its banner.
    pub(crate) banner: String,
}

/// Starts `hydrant --config FILE up ARGS…` in `dir` and waits for its banner's last line.
pub(crate) async fn start(dir: &Path, file: &Path, args: &[&str]) -> Up {
    let mut child = Command::new(hydrant_bin())
        .arg("--config")
        .arg(file)
        .arg("up")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start hydrant up");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    let ready = tokio::time::timeout(READY, async {
        while let Ok(Some(line)) = lines.next_line().await {
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("Ctrl-C stops everything") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(ready, Ok(true)), "up did not come up:\n{banner}");
    Up {
        child,
        lines,
        banner,
    }
}

/// A TCP server that keeps every byte sent to it (a syslog drain's far end): its address
/// and what it has received so far.
pub(crate) async fn tcp_sink() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
) {
    use tokio::io::AsyncReadExt as _;
    let sink = crate::listener().await;
    let addr = sink.local_addr().unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let into = std::sync::Arc::clone(&got);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = sink.accept().await {
            let into = std::sync::Arc::clone(&into);
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    into.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (addr, got)
}
