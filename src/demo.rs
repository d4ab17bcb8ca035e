//! The demo app `hydrant up --demo` pushes (`hydrant demo-app`, run by the cell like any
//! app). It serves HTTP on `$PORT`, writes a status line to stdout every few seconds and a
//! warning to stderr now and then, reports each request as an `http` timer through the
//! agent (as a router would), and burns a core on request so the autoscaler has something
//! to react to:
//!
//! - `GET /` answers `hello from <app>/<index>`;
//! - `GET /burn?seconds=N` burns one core for N seconds (default 300), `GET /burn?seconds=0`
//!   stops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use hydrant_proto::envelope;
use hydrant_proto::ingress::{self, IngressClient, Sender};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Time between two status lines.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(3);

/// Every this many status lines, one warning goes to stderr.
const WARN_EVERY: u64 = 4;

/// Burn time when `/burn` names none.
const DEFAULT_BURN: Duration = Duration::from_secs(300);

/// Queue bound for the timers sent to the agent.
const TIMER_QUEUE: usize = 10_000;

/// Where the demo app runs, from the environment the cell gives every instance.
#[derive(Debug, Clone)]
pub struct Env {
    /// `PORT`.
    pub port: u16,
    /// App guid (`VCAP_APPLICATION.application_id`): the timers' source_id.
    pub app_id: String,
    /// App name.
    pub app_name: String,
    /// `INSTANCE_INDEX`.
    pub index: String,
    /// Agent for the timers (`HYDRANT_AGENT`); none sends no timers.
    pub agent: Option<String>,
    /// mTLS to the agent (`HYDRANT_TLS_CA`, `HYDRANT_TLS_CERT`, `HYDRANT_TLS_KEY`).
    pub tls: Option<hydrant_proto::transport::Tls>,
}

impl Env {
    /// Reads the instance's environment.
    pub fn from_env() -> Result<Env, String> {
        let port = std::env::var("PORT")
            .map_err(|_| "PORT is not set (the demo app runs on a cell)".to_owned())?
            .parse()
            .map_err(|_| "PORT is not a port number".to_owned())?;
        let vcap: serde_json::Value = std::env::var("VCAP_APPLICATION")
            .ok()
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default();
        let field = |k: &str| vcap[k].as_str().unwrap_or("demo").to_owned();
        let path = |k: &str| std::env::var_os(k).map(std::path::PathBuf::from);
        let tls = hydrant_proto::transport::Tls::from_files(
            path("HYDRANT_TLS_CA").as_deref(),
            path("HYDRANT_TLS_CERT").as_deref(),
            path("HYDRANT_TLS_KEY").as_deref(),
            "metron",
        )
        .map_err(|e| e.to_string())?;
        Ok(Env {
            tls,
            port,
            app_id: field("application_id"),
            app_name: field("application_name"),
            index: std::env::var("INSTANCE_INDEX").unwrap_or_else(|_| "0".into()),
            agent: std::env::var("HYDRANT_AGENT")
                .ok()
                .filter(|a| !a.is_empty()),
        })
    }
}

#[derive(Debug)]
struct Demo {
    env: Env,
    requests: AtomicU64,
    /// UNIX seconds until which a core burns (0: not burning).
    burn_until: AtomicI64,
    burning: AtomicBool,
    timers: Option<Sender>,
}

/// Runs the demo app until `shutdown`.
pub async fn run(env: Env, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], env.port))).await?;
    let client = match &env.agent {
        Some(agent) => {
            let mut c = ingress::Config::new(vec![agent.clone()]);
            c.buffer_envelopes = TIMER_QUEUE;
            c.tls = env.tls.clone();
            Some(IngressClient::start(c).map_err(std::io::Error::other)?)
        }
        None => None,
    };
    let demo = Arc::new(Demo {
        requests: AtomicU64::new(0),
        burn_until: AtomicI64::new(0),
        burning: AtomicBool::new(false),
        timers: client.as_ref().map(|c| c.sender()),
        env,
    });
    println!(
        "demo app {}/{} listening on 127.0.0.1:{} (GET /, GET /burn?seconds=N)",
        demo.env.app_name, demo.env.index, demo.env.port
    );
    let status = tokio::spawn(status_lines(Arc::clone(&demo), shutdown.clone()));
    let router = Router::new()
        .route("/", get(hello))
        .route("/burn", get(burn))
        .with_state(Arc::clone(&demo));
    let stop = shutdown.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await?;
    demo.burn_until.store(0, Relaxed);
    let _ = status.await;
    if let Some(c) = client {
        c.close(Duration::from_secs(1)).await;
    }
    println!("demo app stopped");
    Ok(())
}

async fn hello(State(demo): State<Arc<Demo>>) -> String {
    let started = envelope::now_nanos();
    let n = demo.requests.fetch_add(1, Relaxed) + 1;
    let body = format!(
        "hello from {}/{} (request {n})\n",
        demo.env.app_name, demo.env.index
    );
    demo.timer("GET", "/", 200, started);
    body
}

#[derive(Debug, serde::Deserialize)]
struct BurnQuery {
    seconds: Option<u64>,
}

async fn burn(State(demo): State<Arc<Demo>>, Query(q): Query<BurnQuery>) -> String {
    let started = envelope::now_nanos();
    let seconds = q.seconds.map_or(DEFAULT_BURN, Duration::from_secs);
    let until = if seconds.is_zero() {
        0
    } else {
        chrono::Utc::now().timestamp() + seconds.as_secs() as i64
    };
    demo.burn_until.store(until, Relaxed);
    if until > 0 && !demo.burning.swap(true, Relaxed) {
        let d = Arc::clone(&demo);
        std::thread::spawn(move || spin(&d));
    }
    let text = if until == 0 {
        format!("{}/{}: burn stopped\n", demo.env.app_name, demo.env.index)
    } else {
        format!(
            "{}/{}: burning one core for {}s\n",
            demo.env.app_name,
            demo.env.index,
            seconds.as_secs()
        )
    };
    print!("{text}");
    demo.timer("GET", "/burn", 200, started);
    text
}

/// Keeps one core busy until the burn deadline passes.
fn spin(demo: &Demo) {
    let mut x: u64 = 1;
    loop {
        let deadline = demo.burn_until.load(Relaxed);
        if chrono::Utc::now().timestamp() >= deadline {
            break;
        }
        let slice = Instant::now();
        while slice.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        }
        std::hint::black_box(x);
    }
    demo.burning.store(false, Relaxed);
    println!("{}/{}: burn over", demo.env.app_name, demo.env.index);
}

async fn status_lines(demo: Arc<Demo>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(STATUS_INTERVAL);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        n += 1;
        let burning = if demo.burning.load(Relaxed) {
            "yes"
        } else {
            "no"
        };
        println!(
            "{}/{}: {} requests served, burning: {burning}",
            demo.env.app_name,
            demo.env.index,
            demo.requests.load(Relaxed)
        );
        if n.is_multiple_of(WARN_EVERY) {
            eprintln!(
                "{}/{}: warning: this is what an error line looks like",
                demo.env.app_name, demo.env.index
            );
        }
    }
}

impl Demo {
    /// Reports a request as an `http` timer, tagged as Cloud Foundry's router does.
    fn timer(&self, method: &str, uri: &str, status: u16, started: i64) {
        let Some(sender) = &self.timers else { return };
        let mut e = envelope::timer(&self.env.app_id, "http", started, envelope::now_nanos());
        e.instance_id.clone_from(&self.env.index);
        for (k, v) in [
            ("method", method),
            ("uri", uri),
            ("status_code", &status.to_string()),
            ("app_name", &self.env.app_name),
        ] {
            e.tags.insert(k.into(), v.into());
        }
        sender.send_envelope(&e);
    }
}
