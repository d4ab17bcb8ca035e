//! Self-observability shared by every Hydrant component and nozzle: declared metrics, a
//! Prometheus text writer that refuses undeclared names, and the `/metrics` + `/healthz`
//! HTTP routes.
//!
//! Components keep their counters in atomics and render them on each scrape; nothing is
//! emitted from inside hot loops. Each crate declares its metrics once with [`metrics!`];
//! `hydrant::telemetry::all()` gathers every table so dashboards can be checked.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub mod exposition;
pub mod selfmetrics;

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// Monotonic.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// A declared metric.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Full name, `hydrant_<component>_…`.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Type,
    /// One-line help text.
    pub help: &'static str,
}

/// Declares metrics: generates a `names` module of constants and a `METRICS` table.
#[macro_export]
macro_rules! metrics {
    ($($ident:ident = $name:literal, $kind:ident, $help:literal;)*) => {
        /// Metric name constants.
        pub mod names {
            $(
                #[doc = $help]
                pub const $ident: &str = $name;
            )*
        }
        /// All metrics declared here.
        pub const METRICS: &[$crate::observe::Metric] = &[
            $($crate::observe::Metric { name: $name, kind: $crate::observe::Type::$kind, help: $help },)*
        ];
    };
}

/// Builds a Prometheus text exposition for the metrics of one table.
#[derive(Debug)]
pub struct Text {
    table: &'static [Metric],
    out: String,
    last: &'static str,
}

impl Text {
    /// An empty exposition whose samples must be declared in `table`.
    pub fn new(table: &'static [Metric]) -> Text {
        Text {
            table,
            out: String::new(),
            last: "",
        }
    }

    /// Writes one sample. Samples of one metric must be written consecutively.
    ///
    /// # Panics
    /// If `name` is not declared in the table (a programming error caught by tests).
    pub fn sample(&mut self, name: &'static str, labels: &[(&str, &str)], value: f64) {
        let m = self
            .table
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("metric {name} is not declared in telemetry"));
        if self.last != name {
            let kind = match m.kind {
                Type::Counter => "counter",
                Type::Gauge => "gauge",
            };
            let _ = writeln!(self.out, "# HELP {name} {}\n# TYPE {name} {kind}", m.help);
            self.last = name;
        }
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// The finished exposition.
    pub fn finish(self) -> String {
        self.out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

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

/// Serves `router` on `listener` until `shutdown` while `tasks` run: a component's main
/// loop. The first task that fails cancels `cancel` (the tasks' token) and its error is
/// returned; every task is awaited before returning, so nothing runs on afterwards.
pub async fn serve_with_tasks<E>(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    cancel: CancellationToken,
    mut tasks: tokio::task::JoinSet<Result<(), E>>,
) -> Result<(), E>
where
    E: From<std::io::Error> + Send + 'static,
{
    let server = serve(listener, router, shutdown);
    let mut server = std::pin::pin!(server);
    let result = loop {
        tokio::select! {
            r = &mut server => break r.map_err(E::from),
            Some(done) = tasks.join_next() => {
                if let Ok(Err(e)) = done {
                    cancel.cancel();
                    break Err(e);
                }
            }
        }
    };
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    result
}

#[cfg(test)]
#[allow(unreachable_pub)]
mod tests {
    use super::*;

    crate::metrics! {
        DEMO = "hydrant_demo_envelopes_total", Counter, "Demo.";
    }

    #[test]
    fn writes_help_once_and_escapes_labels() {
        let mut t = Text::new(METRICS);
        t.sample(names::DEMO, &[("shard_id", "a\"b")], 1.0);
        t.sample(names::DEMO, &[("shard_id", "")], 2.0);
        let s = t.finish();
        assert_eq!(s.matches("# TYPE").count(), 1);
        assert!(
            s.contains(r#"hydrant_demo_envelopes_total{shard_id="a\"b"} 1"#),
            "{s}"
        );
    }
}
