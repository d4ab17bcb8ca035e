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
    pub(crate) console: SocketAddr,
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
            console: free_port(),
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

/// Self-metrics and container metrics every second, so the test sees several samples soon.
const FAST: &str = "1s";

/// A `hydrant.yaml` for `up --demo` setting every port, the data dir and the policy dir;
/// with `vm`, storage remote-writes to it.
pub(crate) fn config(p: &Ports, data: &str, policies: &str, vm: Option<&str>) -> String {
    let agent = p.agent_grpc;
    let doppler = p.doppler_grpc;
    let remote_write = vm
        .map(|vm| format!("  remote-write-url: {vm}/api/v1/write\n"))
        .unwrap_or_default();
    format!(
        "# written by the up test\n\
         up:\n  data-dir: {data}\n  demo: true\n  grace: 20s\n\
         doppler:\n  grpc: {doppler}\n  http: {}\n  self-metrics-agent: {agent}\n  self-metrics-interval: {FAST}\n\
         agent:\n  grpc: {agent}\n  http: {}\n  doppler: [{doppler}]\n  self-metrics-interval: {FAST}\n\
         cell:\n  api: {}\n  agent: {agent}\n  metrics-interval: {FAST}\n  self-metrics-interval: {FAST}\n  stop-grace: 3s\n\
         logcache:\n  http: {}\n  from: {doppler}\n  self-metrics-agent: {agent}\n  self-metrics-interval: {FAST}\n\
         storage:\n  http: {}\n  from: {doppler}\n  self-metrics-agent: {agent}\n  self-metrics-interval: {FAST}\n{remote_write}\
         autoscaler:\n  http: {}\n  from: {doppler}\n  scheduler: {}\n  policies: {policies}\n  tick: 1s\n  stat-window: 3s\n  self-metrics-agent: {agent}\n  self-metrics-interval: {FAST}\n\
         console:\n  http: {}\n  self-metrics-agent: {agent}\n  self-metrics-interval: {FAST}\n",
        p.doppler_http,
        p.agent_http,
        p.cell,
        p.logcache,
        p.storage,
        p.autoscaler,
        p.cell,
        p.console
    )
}

/// Scales out quickly on a burning core; scales in after a quiet spell.
pub(crate) const POLICY: &str = "app: demo\ninstance_min_count: 1\ninstance_max_count: 2\nscaling_rules:\n  \
    - {metric_type: cpu, operator: '>', threshold: 25, breach_duration: 3s, cool_down: 5s, adjustment: '+1'}\n  \
    - {metric_type: cpu, operator: '<', threshold: 2, breach_duration: 120s, cool_down: 5s, adjustment: '-1'}\n";

/// A scratch directory for `up --demo`: the demo's [`POLICY`] in `policies/`, free ports,
/// and a `hydrant.yaml` from [`config`] (with `vm`, storage remote-writes to it).
pub(crate) struct DemoDir {
    pub(crate) dir: crate::guard::Scratch,
    pub(crate) ports: Ports,
    pub(crate) data: std::path::PathBuf,
    pub(crate) policies: std::path::PathBuf,
    pub(crate) file: std::path::PathBuf,
}

impl DemoDir {
    /// Writes the policy and the config file under a new scratch directory `name`.
    pub(crate) fn new(name: &str, vm: Option<&str>) -> DemoDir {
        let dir = crate::guard::Scratch::new(name);
        let policies = dir.join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        std::fs::write(policies.join("demo.yml"), POLICY).unwrap();
        let ports = Ports::free();
        let data = dir.join("data");
        let file = dir.join("hydrant.yaml");
        let text = config(
            &ports,
            &data.display().to_string(),
            &policies.display().to_string(),
            vm,
        );
        std::fs::write(&file, text).unwrap();
        DemoDir {
            dir,
            ports,
            data,
            policies,
            file,
        }
    }
}
