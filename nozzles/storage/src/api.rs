//! The HTTP API: what Grafana's Prometheus data source calls (`query`, `query_range`,
//! `format_query`, `labels`, `label/{name}/values`, `series` (sorted by labels),
//! `status/buildinfo` (reporting the Prometheus version whose semantics the engine
//! follows, so Grafana enables the API paths that version has), and empty-success
//! `metadata`, `query_exemplars`, `rules`), GET and form POST alike; `POST /api/v1/sql`;
//! `/metrics` and `/healthz`. Errors use Prometheus' JSON (`bad_data` 400, `execution` 422).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hydrant_runtime::access::{Guard, Need};
use hydrant_runtime::admin::Observe;
use hydrant_runtime::instrument::Render;
use hydrant_runtime::metrics::Text;
use serde_json::{Value, json};

use crate::promql::{self, Error};
use crate::query;
use crate::service::{Api, Outcome, Storage};
use crate::telemetry::{METRICS, names};

type Shared = State<Arc<Storage>>;

/// Prometheus' error response.
fn error(e: &Error) -> Response {
    let status = match e {
        Error::BadData(_) => StatusCode::BAD_REQUEST,
        Error::Execution(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = json!({"status": "error", "errorType": e.kind(), "error": e.to_string()});
    (status, axum::Json(body)).into_response()
}

fn success(data: Value) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

/// Query-string and form parameters, in order (repeated keys kept).
fn params(raw: Option<&str>, body: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    out.extend(form_urlencoded::parse(body).into_owned());
    out
}

fn one<'a>(p: &'a [(String, String)], key: &str) -> Option<&'a str> {
    p.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn required<'a>(p: &'a [(String, String)], key: &str) -> Result<&'a str, Error> {
    one(p, key).ok_or_else(|| Error::BadData(format!("invalid parameter \"{key}\": missing")))
}

fn now_ms() -> i64 {
    hydrant_proto::envelope::now_nanos() / 1_000_000
}

async fn instant(State(s): Shared, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    let p = params(raw.as_deref(), &body);
    let result = async {
        let q = required(&p, "query")?.to_owned();
        let t = one(&p, "time").map_or(Ok(now_ms()), query::parse_time)?;
        let store = Arc::clone(&s);
        let answer = s.queries.run(async move {
            let limits = store.queries.limits().promql;
            query::instant(&store.shared, &q, t, &limits).await
        });
        answer.await?
    }
    .await;
    respond(&s, Api::Query, result)
}

async fn range(State(s): Shared, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    let p = params(raw.as_deref(), &body);
    let result = async {
        let q = required(&p, "query")?;
        let start = query::parse_time(required(&p, "start")?)?;
        let end = query::parse_time(required(&p, "end")?)?;
        let step = query::parse_duration(required(&p, "step")?)?;
        let (q, store) = (q.to_owned(), Arc::clone(&s));
        let answer = s.queries.run(async move {
            let limits = store.queries.limits().promql;
            query::range(&store.shared, &q, start, end, step, &limits).await
        });
        answer.await?
    }
    .await;
    respond(&s, Api::QueryRange, result)
}

fn respond(s: &Storage, api: Api, result: Result<promql::Value, Error>) -> Response {
    match result {
        Ok(v) => {
            s.count_query(api, Outcome::Ok);
            (
                [(header::CONTENT_TYPE, "application/json")],
                query::render(&v),
            )
                .into_response()
        }
        Err(e) => {
            let outcome = if matches!(e, Error::BadData(_)) {
                Outcome::BadData
            } else {
                Outcome::Execution
            };
            s.count_query(api, outcome);
            error(&e)
        }
    }
}

/// Series ids matching every `match[]` selector (union), or `None` without any.
fn matched(s: &Storage, p: &[(String, String)]) -> Result<Option<Vec<u64>>, Error> {
    let selectors: Vec<&str> = p
        .iter()
        .filter(|(k, _)| k == "match[]")
        .map(|(_, v)| v.as_str())
        .collect();
    if selectors.is_empty() {
        return Ok(None);
    }
    let mut ids = BTreeSet::new();
    for sel in selectors {
        let expr = promql::parse(sel)?;
        let promql_parser::parser::Expr::VectorSelector(_) = &expr else {
            return Err(Error::BadData(format!(
                "invalid parameter \"match[]\": {sel}: not a series selector"
            )));
        };
        for need in promql::plan(&expr, 0, 0, 0) {
            ids.extend(query::select(&s.shared, &need.matchers));
        }
    }
    Ok(Some(ids.into_iter().collect()))
}

/// [`matched`], narrowed to the series with samples in the hours `start`..`end` touch
/// when either is given (Prometheus answers from the blocks the range overlaps).
async fn scoped(s: &Storage, p: &[(String, String)]) -> Result<Option<Vec<u64>>, Error> {
    let ids = matched(s, p)?;
    let (start, end) = (one(p, "start"), one(p, "end"));
    if start.is_none() && end.is_none() {
        return Ok(ids);
    }
    let start = start.map_or(Ok(i64::MIN / 2), query::parse_time)?;
    let end = end.map_or(Ok(now_ms()), query::parse_time)?;
    if end < start {
        return Err(Error::BadData(
            "invalid parameter \"end\": end timestamp must not be before start time".into(),
        ));
    }
    let within = s
        .shared
        .series_between(start, end)
        .await
        .map_err(|e| Error::Execution(e.to_string()))?;
    Ok(Some(match ids {
        Some(ids) => ids.into_iter().filter(|id| within.contains(id)).collect(),
        None => within.into_iter().collect(),
    }))
}

async fn labels(State(s): Shared, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    let p = params(raw.as_deref(), &body);
    match scoped(&s, &p).await {
        Ok(ids) => {
            let names = query::label_names(&s.shared, ids.as_deref());
            success(json!(names))
        }
        Err(e) => error(&e),
    }
}

async fn label_values(
    State(s): Shared,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    if !promql::valid_label_name(&name) {
        return error(&Error::BadData(format!("invalid label name: {name:?}")));
    }
    let p = params(raw.as_deref(), &[]);
    match scoped(&s, &p).await {
        Ok(ids) => {
            let values = query::label_values(&s.shared, &name, ids.as_deref());
            success(json!(values))
        }
        Err(e) => error(&e),
    }
}

async fn series(State(s): Shared, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    let p = params(raw.as_deref(), &body);
    if !p.iter().any(|(k, _)| k == "match[]") {
        return error(&Error::BadData("no match[] parameter provided".into()));
    }
    match scoped(&s, &p).await {
        Ok(None) => error(&Error::BadData("no match[] parameter provided".into())),
        Ok(Some(ids)) => {
            let limit = one(&p, "limit")
                .and_then(|l| l.parse::<usize>().ok())
                .filter(|l| *l > 0);
            let mut all = query::labels(&s.shared, &ids);
            // Prometheus returns series in label order (name first, then each label).
            // A series several nodes wrote is one series.
            all.sort_unstable();
            all.dedup();
            all.truncate(limit.unwrap_or(usize::MAX));
            (
                [(header::CONTENT_TYPE, "application/json")],
                promql::render::render_series(&all),
            )
                .into_response()
        }
        Err(e) => error(&e),
    }
}

/// The Prometheus release whose PromQL semantics and API the storage nozzle follows.
pub const PROMETHEUS_COMPATIBLE_VERSION: &str = "2.42.0";

async fn buildinfo() -> Response {
    success(json!({
        "version": PROMETHEUS_COMPATIBLE_VERSION,
        "revision": concat!("hydrant-", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "hydrant",
        "buildDate": "",
        "goVersion": "",
        "features": {},
    }))
}

/// `GET|POST /api/v1/format_query`: the query parsed and pretty-printed.
async fn format_query(RawQuery(raw): RawQuery, body: Bytes) -> Response {
    let p = params(raw.as_deref(), &body);
    match required(&p, "query").and_then(promql::parse) {
        Ok(expr) => success(json!(expr.prettify())),
        Err(e) => error(&e),
    }
}

async fn sql(
    State(s): Shared,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(raw.as_deref(), &[]);
    let text = String::from_utf8_lossy(&body).into_owned();
    // The statement is the body: plain SQL, or JSON {"query": "…"}.
    let statement = match serde_json::from_str::<Value>(&text) {
        Ok(v) if v["query"].is_string() => v["query"].as_str().unwrap_or_default().to_owned(),
        _ => text,
    };
    let arrow = one(&p, "format") == Some("arrow")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("vnd.apache.arrow"));
    let store = Arc::clone(&s);
    let ctx = s.queries.session(datafusion::prelude::SessionConfig::new());
    let result = s
        .queries
        .run(async move { crate::sql::run(&store.shared, &store.logs, &ctx, &statement).await })
        .await;
    let batches = match result {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            s.count_query(Api::Sql, Outcome::BadData);
            return error(&Error::BadData(e.to_string()));
        }
        Err(failure) => {
            s.count_query(Api::Sql, Outcome::Execution);
            return error(&Error::from(failure));
        }
    };
    s.count_query(Api::Sql, Outcome::Ok);
    let encoded = if arrow {
        crate::sql::to_arrow(&batches).map(|b| ("application/vnd.apache.arrow.stream", b))
    } else {
        crate::sql::to_json(&batches).map(|b| ("application/json", b))
    };
    match encoded {
        Ok((ct, bytes)) => ([(header::CONTENT_TYPE, ct)], bytes).into_response(),
        Err(e) => error(&Error::Execution(e.to_string())),
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            json!({"status": "error", "errorType": "not_found", "error": "no such endpoint"}),
        ),
    )
        .into_response()
}

/// `POST /api/v1/import/prometheus`: 204 once every sample is stored, 400 naming the first
/// bad line (nothing is stored then).
async fn import(State(s): Shared, headers: HeaderMap, body: axum::body::Body) -> Response {
    let size = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    if size > crate::import::MAX_IMPORT_BYTES {
        return too_large();
    }
    // Read as it arrives, blocks of whole lines parsed on every core.
    let mut scanner = crate::import::ParallelScanner::new(now_ms(), size);
    let mut stream = body.into_data_stream();
    let mut read = 0usize;
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return error(&Error::BadData(format!("reading the body: {e}"))),
        };
        read += chunk.len();
        if read > crate::import::MAX_IMPORT_BYTES {
            return too_large();
        }
        scanner.feed(&chunk).await;
    }
    let scanned = match scanner.finish().await {
        Ok(scanned) => scanned,
        Err(e) => return error(&Error::BadData(e.to_string())),
    };
    let stored = tokio::task::spawn_blocking(move || -> Result<usize, Error> {
        let stored = |e| Error::Execution(format!("storing samples: {e}"));
        let ids = s.shared.lock().resolve(&scanned.keys).map_err(stored)?;
        let mut refused = 0;
        for chunk in scanned.rows.chunks(crate::import::CHUNK_SAMPLES) {
            let mut samples = Vec::with_capacity(chunk.len());
            samples.extend(
                chunk
                    .iter()
                    .filter_map(|(k, t, v)| ids[*k as usize].map(|id| (id, *t, *v))),
            );
            refused += chunk.len() - samples.len();
            s.ingest(&[], &samples).map_err(stored)?;
        }
        s.shared.lock().refuse(refused as u64);
        Ok(scanned.rows.len())
    })
    .await;
    match stored {
        Ok(Ok(_)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => error(&e),
        Err(e) => error(&Error::Execution(format!("import task failed: {e}"))),
    }
}

/// 413 for a body over [`crate::import::MAX_IMPORT_BYTES`].
fn too_large() -> Response {
    let message = format!(
        "the body is larger than {} MiB; split the import",
        crate::import::MAX_IMPORT_BYTES >> 20
    );
    let body = json!({"status": "error", "errorType": "bad_data", "error": message});
    (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response()
}

/// The API routes.
pub fn router(storage: Arc<Storage>) -> Router {
    let observe: Arc<dyn Observe> = Arc::clone(&storage) as Arc<dyn Observe>;
    let access = storage.access.clone();
    let routes = Router::new()
        .route("/api/v1/query", get(instant).post(instant))
        .route("/api/v1/query_range", get(range).post(range))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route("/api/v1/metadata", get(|| async { success(json!({})) }))
        .route(
            "/api/v1/query_exemplars",
            get(|| async { success(json!([])) }).post(|| async { success(json!([])) }),
        )
        .route(
            "/api/v1/rules",
            get(|| async { success(json!({"groups": []})) }),
        )
        .route("/api/v1/sql", post(sql))
        .route("/api/v1/import/prometheus", post(import))
        .with_state(storage)
        .merge(hydrant_runtime::admin::router(observe))
        .fallback(not_found);
    Guard::new(access, needs).wrap(routes)
}

/// Every query reads every app's data, so reads need a token that reads everything;
/// importing samples writes.
fn needs(method: &Method, path: &str) -> Need {
    match (method, path) {
        (&Method::POST, "/api/v1/import/prometheus") => Need::Write,
        _ => Need::ReadAll,
    }
}

impl Observe for Storage {
    fn metrics(&self) -> String {
        let mut t = Text::new(METRICS);
        let (stats, series, rows, (parts, bytes), overflow) = {
            let store = self.shared.lock();
            (
                store.stats,
                store.catalog.len(),
                store.buffer_rows(),
                store.parts(),
                store.catalog.overflow.clone(),
            )
        };
        t.sample(names::INGESTED, &[], stats.ingested as f64);
        for (metric, n) in &overflow {
            t.sample(names::REFUSED, &[("metric", metric)], *n as f64);
        }
        t.sample(names::SERIES, &[], series as f64);
        t.sample(names::BUFFER_ROWS, &[], rows as f64);
        t.sample(names::PARTS, &[], parts as f64);
        t.sample(names::PARTS_BYTES, &[], bytes as f64);
        let (cached, hits, misses) = self.shared.part_cache_stats();
        t.sample(names::PART_CACHE_BYTES, &[], cached as f64);
        t.sample(names::PART_CACHE_READS, &[("result", "hit")], hits as f64);
        t.sample(
            names::PART_CACHE_READS,
            &[("result", "miss")],
            misses as f64,
        );
        t.sample(names::SEALED, &[], stats.sealed as f64);
        t.sample(names::COMPACTIONS, &[], stats.compactions as f64);
        t.sample(names::EXPIRED, &[], stats.expired_hours as f64);
        t.sample(names::CORRUPT, &[], stats.corrupt_records as f64);
        t.sample(
            names::QUARANTINED,
            &[("table", crate::store::parts::METRICS)],
            stats.quarantined_parts as f64,
        );
        let (log_rows, evicted, written, log_parts, log_quarantined) = {
            let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
            let parts = logs.parts();
            let bytes: u64 = parts.iter().map(|p| p.bytes).sum();
            (
                logs.rows_in_memory(),
                logs.buffer().evicted,
                logs.written,
                (parts.len(), bytes),
                logs.quarantined,
            )
        };
        t.sample(
            names::QUARANTINED,
            &[("table", crate::logs::store::LOGS)],
            log_quarantined as f64,
        );
        t.sample(names::LOG_ROWS, &[], log_rows as f64);
        t.sample(names::LOG_EVICTED, &[], evicted as f64);
        t.sample(names::LOG_WRITTEN, &[], written as f64);
        t.sample(names::LOG_PARTS, &[], log_parts.0 as f64);
        t.sample(names::LOG_BYTES, &[], log_parts.1 as f64);
        self.stats.render(&mut t);
        t.sample(
            names::ERRORS,
            &[("stage", "delete")],
            self.shared.delete_failures.load(Relaxed) as f64,
        );
        crate::sink::render(&self.forwarders, &mut t);
        crate::cluster::render(self, &mut t);
        t.finish()
    }

    /// Healthy, but `degraded` with each failing sink's last error: the store keeps
    /// everything, only that sink's copy is behind or lost.
    fn health(&self) -> (bool, Value) {
        let series = self.shared.lock().catalog.len();
        let mut problems: Vec<String> = self
            .forwarders
            .iter()
            .filter_map(|f| {
                f.failing()
                    .map(|e| format!("sink {} ({}) is failing: {e}", f.name, f.target))
            })
            .collect();
        if let Some(e) = self
            .cluster
            .get()
            .and_then(crate::cluster::Cluster::failing)
        {
            problems.push(format!("object store is failing: {e}"));
        }
        let status = if problems.is_empty() {
            "ok"
        } else {
            "degraded"
        };
        (
            true,
            json!({"component": "storage", "status": status, "problems": problems, "series": series, "uptime_secs": self.uptime().as_secs()}),
        )
    }
}
