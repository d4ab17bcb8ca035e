//! Real third-party servers from Debian packages, started on 127.0.0.1 for a test and killed
//! when dropped: Alertmanager (`prometheus-alertmanager`), Prometheus and VictoriaMetrics
//! (`victoria-metrics`). `.ci/run` installs them; a test that needs one fails with the
//! install command when it is missing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually_within, http_get};

/// A free loopback port for a server in another process, which binds it a moment later.
/// Taken below Linux's ephemeral range (32768–60999), so no listener bound to port 0 in
/// the meantime (every in-process test server) can take it first.
pub fn free_port() -> SocketAddr {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let offset = (std::process::id() % 64) as u16 * 100;
    for _ in 0..2000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % 6400;
        let port = 20_000 + (offset + n) % 6400;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().expect("local addr");
        }
    }
    panic!("no free port in 20000..26400");
}

fn scratch(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("hydrant-{name}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn binary(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed; run `apt-get install -y {package}` (.ci/run does)");
}

/// A running Alertmanager.
#[derive(Debug)]
pub struct Alertmanager {
    /// HTTP address.
    pub addr: SocketAddr,
    /// `http://…` base URL.
    pub url: String,
    child: Child,
    dir: PathBuf,
}

impl Alertmanager {
    /// Starts Alertmanager with one no-op receiver, clustering off, and waits until ready.
    pub async fn start() -> Alertmanager {
        Alertmanager::start_with(
            "route:\n  receiver: none\n  group_wait: 1s\nreceivers:\n  - name: none\n",
        )
        .await
    }

    /// Starts Alertmanager with this configuration (YAML).
    pub async fn start_with(config_yaml: &str) -> Alertmanager {
        let bin = binary("prometheus-alertmanager", "prometheus-alertmanager");
        let dir = scratch("alertmanager");
        let config = dir.join("alertmanager.yml");
        std::fs::write(&config, config_yaml).expect("write alertmanager.yml");
        let addr = free_port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-alertmanager");
        let am = Alertmanager {
            addr,
            url: format!("http://{addr}"),
            child,
            dir,
        };
        eventually_within("alertmanager ready", Duration::from_secs(30), || async {
            matches!(http_get(addr, "/-/ready").await, Ok((200, _)))
        })
        .await;
        am
    }

    /// The active alerts (`GET /api/v2/alerts`).
    pub async fn alerts(&self) -> Vec<serde_json::Value> {
        let url = format!("{}/api/v2/alerts", self.url);
        match hydrant_runtime::https::plain_client()
            .get(&url)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running VictoriaMetrics (single node).
#[derive(Debug)]
pub struct VictoriaMetrics {
    /// HTTP address.
    pub addr: SocketAddr,
    /// `http://…` base URL (Prometheus query API under `/api/v1`).
    pub url: String,
    child: Child,
    dir: PathBuf,
}

impl VictoriaMetrics {
    /// Starts VictoriaMetrics with its data in a scratch directory and waits until ready.
    pub async fn start() -> VictoriaMetrics {
        let bin = binary("victoria-metrics", "victoria-metrics");
        let dir = scratch("victoria-metrics");
        let addr = free_port();
        let child = Command::new(bin)
            .arg(format!("-httpListenAddr={addr}"))
            .arg(format!("-storageDataPath={}", dir.display()))
            .arg("-retentionPeriod=100y")
            .arg("-search.latencyOffset=0s")
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start victoria-metrics");
        let vm = VictoriaMetrics {
            addr,
            url: format!("http://{addr}"),
            child,
            dir,
        };
        eventually_within(
            "victoria-metrics ready",
            Duration::from_secs(30),
            || async { matches!(http_get(addr, "/health").await, Ok((200, _))) },
        )
        .await;
        vm
    }

    /// Imports Prometheus text lines (`name{labels} value timestamp_ms`) and makes them
    /// searchable at once.
    pub async fn import(&self, lines: &str) {
        let http = hydrant_runtime::https::plain_client();
        let r = http
            .post(format!("{}/api/v1/import/prometheus", self.url))
            .body(lines.to_owned())
            .send()
            .await
            .expect("import");
        assert!(r.status().is_success(), "import: {}", r.status());
        let r = http
            .get(format!("{}/internal/force_flush", self.url))
            .send()
            .await
            .expect("flush");
        assert!(r.status().is_success(), "flush: {}", r.status());
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running Prometheus with the remote-write receiver on.
#[derive(Debug)]
pub struct Prometheus {
    /// HTTP address.
    pub addr: SocketAddr,
    /// `http://…` base URL.
    pub url: String,
    child: Child,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus (no scrape targets) and waits until ready.
    pub async fn start() -> Prometheus {
        Prometheus::start_in(scratch("prometheus")).await
    }

    /// Starts Prometheus over `openmetrics` (OpenMetrics text, `# EOF` included) turned
    /// into TSDB blocks by `promtool tsdb create-blocks-from openmetrics`, as a user
    /// backfills: the same data a differential test gives Hydrant.
    pub async fn start_with(openmetrics: &str) -> Prometheus {
        let dir = scratch("prometheus");
        let input = dir.join("data.om");
        std::fs::write(&input, openmetrics).expect("write data.om");
        let out = Command::new(binary("promtool", "prometheus"))
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(dir.join("data"))
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool create-blocks-from openmetrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Prometheus::start_in(dir).await
    }

    async fn start_in(dir: PathBuf) -> Prometheus {
        let bin = binary("prometheus", "prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
        )
        .expect("write prometheus.yml");
        let addr = free_port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--storage.tsdb.retention.time=100y")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            addr,
            url: format!("http://{addr}"),
            child,
            dir,
        };
        eventually_within("prometheus ready", Duration::from_secs(30), || async {
            matches!(http_get(addr, "/-/ready").await, Ok((200, _)))
        })
        .await;
        p
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
