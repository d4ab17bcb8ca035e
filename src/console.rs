//! `hydrant console`: the platform in one web page (apps, instances, live logs, charts,
//! policies and decisions, platform health), served by Hydrant itself.
//!
//! The console keeps no data of its own. Its page (`assets`, embedded in the binary) calls
//! the existing APIs through this server, which forwards each call to the component that
//! owns the answer (`proxy`): the cell's scheduler API, the log cache (reads and its
//! `/v2/read` event stream), the storage nozzle's Prometheus API, the autoscaler. The
//! charts are drawn from the same dashboard files Grafana is given, so the two never
//! disagree.
//!
//! Authorization is the other APIs' own: the browser signs in with a bearer token, which
//! this server keeps in an `HttpOnly`, `SameSite=Strict` cookie and forwards as
//! `Authorization` on every call; each component decides what the token may do. The
//! server's own guard (the runtime's `Guard`) checks the token, the `Host` and the
//! `Origin` before anything is forwarded.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hydrant_proto::transport::Tls;
use hydrant_runtime::access::{Access, Guard, Need, Refusal};
use hydrant_runtime::admin::Observe;
use hydrant_runtime::instrument::Render as _;
use hydrant_runtime::lifecycle::Lifecycle;
use hydrant_runtime::metrics::Text;
use hydrant_runtime::selfmetrics;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod assets;
mod proxy;
pub mod telemetry;

pub use proxy::Upstream;

/// The cookie that carries the signed-in token.
pub const COOKIE: &str = "hydrant_console_token";

/// Longest a component's `/healthz` may take before the platform page calls it unreachable.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the console stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Serving or stopping failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Self-metrics could not reach their agent's address or TLS settings.
    #[error(transparent)]
    Transport(#[from] hydrant_proto::transport::Error),
}

/// What the console serves and where it finds the components.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL of each API the page calls (absent: that part of the page says so).
    pub upstreams: Vec<(Upstream, String)>,
    /// Every component whose `/healthz` the platform page shows: name and base URL.
    pub components: Vec<(String, String)>,
    /// The client for those calls (trusts the components' CA).
    pub http: reqwest::Client,
    /// Who may use the console.
    pub access: Access,
    /// Certificates when the console itself serves HTTPS (plain HTTP without).
    pub tls: Option<Tls>,
    /// Self-metrics through an agent.
    pub self_metrics: Option<selfmetrics::SelfMetrics>,
    /// Grace period of an orderly stop.
    pub grace: Duration,
}

/// The running console.
#[derive(Debug)]
pub struct Console {
    config: Config,
    stats: telemetry::Stats,
    /// Ends the event streams being forwarded when the console stops.
    stopping: CancellationToken,
    started: std::time::Instant,
}

impl Console {
    /// A console over `config`.
    pub fn new(config: Config) -> Arc<Console> {
        Arc::new(Console {
            config,
            stats: telemetry::Stats::default(),
            stopping: CancellationToken::new(),
            started: std::time::Instant::now(),
        })
    }

    fn https(&self) -> bool {
        self.config.tls.is_some()
    }
}

/// Serves the console on `listener` until `shutdown` fires.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let mut life: Lifecycle<Error> = Lifecycle::new("console", config.grace);
    let console = Console::new(config);
    let stopping = console.stopping.clone();
    life.on_stop(
        hydrant_runtime::lifecycle::Phase::Accept,
        "end event streams",
        async move {
            stopping.cancel();
            Ok(())
        },
    );
    let observe: Arc<dyn Observe> = Arc::clone(&console) as Arc<dyn Observe>;
    selfmetrics::register(&mut life, observe, console.config.self_metrics.as_ref())?;
    let tls = hydrant_runtime::https::server_tls(console.config.tls.as_ref())
        .map_err(std::io::Error::from)?;
    hydrant_runtime::admin::spawn(&mut life, listener, router(console), tls);
    life.run(shutdown).await?;
    Ok(())
}

/// What a route of the console needs: the page and signing in need nothing, `/metrics`
/// reads everything, and every API call any valid token (the component it reaches decides
/// the rest).
fn needs(_: &Method, path: &str) -> Need {
    if path == "/metrics" {
        Need::ReadAll
    } else if path.starts_with("/api/") && path != "/api/session" {
        Need::Read
    } else {
        Need::Nothing
    }
}

/// A refusal in the page's error shape (`{"message"}`).
fn refuse(r: Refusal) -> Response {
    let (status, message) = match r {
        Refusal::Unauthenticated => (
            StatusCode::UNAUTHORIZED,
            "sign in with a token (hydrant up writes one to hydrant-data/token)".to_owned(),
        ),
        Refusal::Forbidden(m) | Refusal::Foreign(m) => (StatusCode::FORBIDDEN, m),
    };
    message_response(status, message)
}

/// `{"message": …}` with `status`.
pub(crate) fn message_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"message": message.into()}))).into_response()
}

/// The console's routes, behind its guard.
pub fn router(console: Arc<Console>) -> Router {
    let observe: Arc<dyn Observe> = Arc::clone(&console) as Arc<dyn Observe>;
    let access = console.config.access.clone();
    let routes = Router::new()
        .route("/api/session", get(session).post(sign_in).delete(sign_out))
        .route("/api/components", get(components))
        .route(
            "/api/{upstream}/{*rest}",
            axum::routing::any(proxy::forward),
        )
        .route("/assets/{*path}", get(assets::asset))
        .fallback(assets::page)
        .with_state(Arc::clone(&console))
        .merge(hydrant_runtime::admin::router(observe));
    Guard::new(access, needs)
        .refusing(refuse)
        .wrap(routes)
        .layer(axum::middleware::from_fn(cookie_token))
        .layer(axum::middleware::from_fn(security_headers))
}

/// The token in the console's cookie, if any.
fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == COOKIE && !v.is_empty()).then(|| v.to_owned())
        })
}

/// A signed-in browser's cookie becomes the request's bearer token (unless it carries one
/// already), so the guard, and every component behind the console, see the same token.
async fn cookie_token(mut req: Request, next: Next) -> Response {
    if !req.headers().contains_key(header::AUTHORIZATION)
        && let Some(token) = cookie_value(req.headers())
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        req.headers_mut().insert(header::AUTHORIZATION, v);
    }
    next.run(req).await
}

/// What every answer carries: scripts and data from this origin only, never framed.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
             form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

type Shared = State<Arc<Console>>;

/// `GET /api/session`: whether the browser is signed in, and whether its token may write.
/// Not signed in is an ordinary answer (the page shows its sign-in form), not a 401.
async fn session(State(c): Shared, headers: HeaderMap) -> Response {
    let open = c.config.access.tokens.is_none();
    let grant = c.config.access.grant(&headers);
    axum::Json(json!({
        "authenticated": grant.is_some(),
        "open": open,
        "write": grant.is_some_and(|g| g.write),
    }))
    .into_response()
}

/// The body of `POST /api/session`.
#[derive(Debug, serde::Deserialize)]
pub struct SignIn {
    /// The bearer token.
    pub token: String,
}

/// `POST /api/session`: checks the token and keeps it in the cookie.
async fn sign_in(State(c): Shared, body: axum::body::Bytes) -> Response {
    let Ok(SignIn { token }) = serde_json::from_slice::<SignIn>(&body) else {
        return message_response(
            StatusCode::BAD_REQUEST,
            r#"expected {"token": "…"} as JSON"#,
        );
    };
    let token = token.trim().to_owned();
    let valid_chars = token
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b';' && b != b',');
    let mut headers = HeaderMap::new();
    let granted = valid_chars
        && HeaderValue::from_str(&format!("Bearer {token}"))
            .ok()
            .map(|v| headers.insert(header::AUTHORIZATION, v))
            .is_some()
        && c.config.access.grant(&headers).is_some();
    if !granted {
        c.stats.sign_ins.inc(telemetry::SignIn::Refused);
        return message_response(StatusCode::UNAUTHORIZED, "this token is not valid here");
    }
    c.stats.sign_ins.inc(telemetry::SignIn::Accepted);
    let secure = if c.https() { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

/// `DELETE /api/session`: forgets the cookie.
async fn sign_out() -> Response {
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

/// `GET /api/components`: the console's own health and every component's `/healthz`, asked
/// at once.
async fn components(State(c): Shared) -> axum::Json<Value> {
    let asks = c.config.components.iter().map(|(name, url)| {
        let http = c.config.http.clone();
        let health = format!("{}/healthz", url.trim_end_matches('/'));
        async move {
            let (status, health) =
                crate::up::health_of(http.get(&health).timeout(HEALTH_TIMEOUT)).await;
            json!({"name": name, "url": url, "status": status, "health": health})
        }
    });
    let mut components = futures::future::join_all(asks).await;
    let (_, own) = c.health();
    components.insert(
        0,
        json!({"name": "console", "url": "(this server)", "status": "ok", "health": own}),
    );
    axum::Json(json!({ "components": components }))
}

impl Observe for Console {
    fn metrics(&self) -> String {
        let mut t = Text::new(telemetry::METRICS);
        self.stats.render(&mut t);
        t.finish()
    }

    fn health(&self) -> (bool, Value) {
        let upstreams: serde_json::Map<String, Value> = self
            .config
            .upstreams
            .iter()
            .map(|(u, url)| (u.name().to_owned(), Value::from(url.as_str())))
            .collect();
        (
            true,
            json!({
                "component": "console",
                "status": "ok",
                "upstreams": upstreams,
                "uptime_secs": self.started.elapsed().as_secs(),
            }),
        )
    }
}

#[cfg(test)]
mod tests;
