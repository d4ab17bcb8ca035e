//! `/api/{upstream}/…`: a call of the page, forwarded to the component that answers it.
//!
//! Only what the component needs goes on: the method, the path and query after the
//! upstream's name, the body (at most [`MAX_BODY`]), and the `Authorization`,
//! `Content-Type`, `Accept` and `Last-Event-ID` headers. The browser's `Origin` and
//! cookies stay here. The answer comes back as it is, streamed, so the log cache's event
//! stream reaches the page line by line; a stream ends when the console stops.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;

use super::{Console, message_response, telemetry};

/// Largest request body forwarded (a policy, an app to push).
pub(super) const MAX_BODY: usize = 1024 * 1024;

/// Longest an ordinary call may take; event streams have no limit.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The headers a forwarded request keeps.
const REQUEST_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::ACCEPT,
    HeaderName::from_static("last-event-id"),
];

/// The headers a forwarded answer keeps.
const RESPONSE_HEADERS: [HeaderName; 3] = [
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::RETRY_AFTER,
];

/// An API the page calls through the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Upstream {
    /// The scheduler (Cloud Controller's v3 subset).
    Cell,
    /// The log cache: reads, meta, and `/v2/read`.
    Logcache,
    /// The storage nozzle's Prometheus-compatible API.
    Storage,
    /// The autoscaler: policies, history, explain, replay.
    Autoscaler,
}

impl Upstream {
    /// Every upstream.
    pub const ALL: [Upstream; 4] = [
        Upstream::Cell,
        Upstream::Logcache,
        Upstream::Storage,
        Upstream::Autoscaler,
    ];

    /// Its name in `/api/{name}/…`, in flags and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Upstream::Cell => "cell",
            Upstream::Logcache => "logcache",
            Upstream::Storage => "storage",
            Upstream::Autoscaler => "autoscaler",
        }
    }

    /// The upstream called `name`.
    pub fn named(name: &str) -> Option<Upstream> {
        Upstream::ALL.into_iter().find(|u| u.name() == name)
    }

    fn label(self) -> telemetry::Api {
        match self {
            Upstream::Cell => telemetry::Api::Cell,
            Upstream::Logcache => telemetry::Api::Logcache,
            Upstream::Storage => telemetry::Api::Storage,
            Upstream::Autoscaler => telemetry::Api::Autoscaler,
        }
    }
}

/// Whether a call is an event stream, which may last as long as the page is open.
fn is_stream(rest: &str, accept: Option<&str>) -> bool {
    rest == "v2/read" || accept.is_some_and(|a| a.contains("text/event-stream"))
}

/// Forwards `req` to upstream `name` at path `rest`.
pub(super) async fn forward(
    State(c): State<Arc<Console>>,
    Path((name, rest)): Path<(String, String)>,
    req: Request,
) -> Response {
    let Some(upstream) = Upstream::named(&name) else {
        return message_response(StatusCode::NOT_FOUND, format!("no API called {name:?}"));
    };
    let Some(base) = c
        .config
        .upstreams
        .iter()
        .find_map(|(u, url)| (*u == upstream).then_some(url.as_str()))
    else {
        return message_response(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the console was started without --{name}"),
        );
    };
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return message_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a request body may have at most {MAX_BODY} bytes"),
            );
        }
    };
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let url = format!("{}/{rest}{query}", base.trim_end_matches('/'));
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let stream = is_stream(&rest, accept);
    let mut call = c.config.http.request(parts.method.clone(), &url);
    for h in &REQUEST_HEADERS {
        if let Some(v) = parts.headers.get(h) {
            call = call.header(h, v);
        }
    }
    if !stream {
        call = call.timeout(CALL_TIMEOUT);
    }
    if !body.is_empty() {
        call = call.body(body);
    }
    c.stats.calls.inc(upstream.label());
    let answer = match call.send().await {
        Ok(a) => a,
        Err(e) => {
            c.stats.failed.inc(upstream.label());
            tracing::warn!(upstream = name, %url, error = %e, "console: upstream call failed");
            return message_response(
                StatusCode::BAD_GATEWAY,
                format!("the {name} API at {base} did not answer: {e}"),
            );
        }
    };
    let mut resp = Response::builder().status(answer.status());
    for h in &RESPONSE_HEADERS {
        if let Some(v) = answer.headers().get(h) {
            resp = resp.header(h, v);
        }
    }
    let body = if stream {
        c.stats.streams.add(1);
        let guard = StreamGuard(Arc::clone(&c));
        let stopping = c.stopping.clone().cancelled_owned();
        let bytes = answer
            .bytes_stream()
            .take_until(stopping)
            .map(move |chunk| {
                let _keep = &guard;
                chunk
            });
        Body::from_stream(bytes)
    } else {
        Body::from_stream(answer.bytes_stream())
    };
    resp.body(body).unwrap_or_else(|e| {
        message_response(StatusCode::BAD_GATEWAY, format!("unusable answer: {e}")).into_response()
    })
}

/// Counts an event stream as open until the page goes or the console stops.
struct StreamGuard(Arc<Console>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.stats.streams.add(-1);
    }
}
