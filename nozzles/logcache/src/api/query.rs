//! The HTTP side of Log Cache's PromQL endpoints (`crate::promql`): parameters from the
//! query string or a form body, the caller's sources checked before anything is read,
//! other nodes' sources read from them, evaluation off the async threads, Prometheus' JSON.
//! Also the owner's side of those reads ([`crate::cluster::SAMPLES_PATH`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hydrant_promql::Error;
use hydrant_promql::params::{parse_duration, parse_time};
use serde_json::json;

use super::{ApiError, Shared, grant, pairs};
use crate::{LogCache, promql};

/// Prometheus' error answer.
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

/// The parameters, from the query string and a form body; each given at most once.
fn params(
    method: &Method,
    headers: &HeaderMap,
    raw: Option<&str>,
    body: &[u8],
) -> Result<Vec<(String, String)>, Error> {
    let mut p = pairs(raw);
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if method == Method::POST && form {
        p.extend(form_urlencoded::parse(body).into_owned());
    }
    for key in ["query", "time", "start", "end", "step"] {
        let values: Vec<&str> = p
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect();
        if values.len() > 1 {
            return Err(Error::BadData(format!(
                "too many values for field \"{key}\": {}",
                values.join(", ")
            )));
        }
    }
    Ok(p)
}

fn one<'a>(p: &'a [(String, String)], key: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn required<'a>(p: &'a [(String, String)], key: &str) -> Result<&'a str, Error> {
    one(p, key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::BadData(format!("couldn't parse {key}: it is missing")))
}

/// Which query a request asks for.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Instant,
    Range,
}

async fn answer(
    cache: Arc<LogCache>,
    kind: Kind,
    method: Method,
    headers: HeaderMap,
    raw: Option<String>,
    body: Bytes,
) -> Response {
    let Some((read, guids)) = grant(&cache, &headers).await else {
        return ApiError::not_found().into_response();
    };
    let p = match params(&method, &headers, raw.as_deref(), &body) {
        Ok(p) => p,
        Err(e) => return error(&e),
    };
    let parsed = match required(&p, "query").and_then(promql::parse) {
        Ok(q) => q,
        Err(e) => return error(&e),
    };
    if !promql::authorized(&parsed, |s| read.allows(s, &guids)) {
        return ApiError::not_found().into_response();
    }
    let times = match kind {
        Kind::Instant => one(&p, "time")
            .filter(|t| !t.is_empty())
            .map(parse_time)
            .transpose()
            .map(|t| (t, 0, 0)),
        Kind::Range => (|| {
            let start = parse_time(required(&p, "start")?)?;
            let end = parse_time(required(&p, "end")?)?;
            let step = parse_duration(required(&p, "step")?)?;
            Ok((Some(start), end, step))
        })(),
    };
    let (start, end, step) = match times {
        Ok(t) => t,
        Err(e) => return error(&e),
    };
    // Instant queries default to now: fixed here so the span read from other nodes is the
    // one evaluated.
    let start = match kind {
        Kind::Instant => Some(start.unwrap_or_else(promql::default_time)),
        Kind::Range => start,
    };
    let span = match kind {
        Kind::Instant => parsed.span(start.unwrap_or(0), start.unwrap_or(0)),
        Kind::Range => parsed.span(start.unwrap_or(0), end),
    };
    let remote = match remote(&cache, &parsed.sources, span, &headers).await {
        Ok(r) => r,
        Err(e) => return error(&e),
    };
    let c = Arc::clone(&cache);
    // Evaluation reads the store under its mutex source by source and may take a while:
    // off the async threads.
    let result = tokio::task::spawn_blocking(move || match kind {
        Kind::Instant => promql::instant(&c, &remote, &parsed, start.unwrap_or(0)),
        Kind::Range => promql::range(&c, &remote, &parsed, start.unwrap_or(0), end, step),
    })
    .await
    .unwrap_or_else(|e| Err(Error::Internal(format!("the query failed: {e}"))));
    match result {
        Ok(v) => (
            [(header::CONTENT_TYPE, "application/json")],
            hydrant_promql::render::render(&v),
        )
            .into_response(),
        Err(e) => error(&e),
    }
}

/// The sources of `sources` that other nodes own, read from them (all at once).
async fn remote(
    cache: &LogCache,
    sources: &[String],
    span: (i64, i64),
    headers: &HeaderMap,
) -> Result<promql::Remote, Error> {
    let Some(c) = cache.cluster.as_ref() else {
        return Ok(promql::Remote::new());
    };
    let elsewhere: Vec<&String> = sources.iter().filter(|s| !c.owns(s)).collect();
    let reads = elsewhere.iter().map(|s| {
        let node = crate::cluster::owner(s, c.nodes.len());
        c.samples(node, s, span, headers)
    });
    let mut out = promql::Remote::new();
    let mut total = 0;
    for (source, read) in elsewhere.iter().zip(futures::future::join_all(reads).await) {
        let envelopes = read.map_err(Error::Execution)?;
        total += envelopes.len();
        if total > promql::MAX_SAMPLES {
            return Err(Error::Execution(format!(
                "the query would read more than {} samples from the cache",
                promql::MAX_SAMPLES
            )));
        }
        out.insert((*source).clone(), envelopes);
    }
    Ok(out)
}

/// The metric envelopes of one source this node keeps, over `?start=&end=` (ms), as a
/// protobuf `EnvelopeBatch`, for the node a PromQL query was asked of. 404 as any read
/// the caller's token does not allow.
pub(super) async fn samples(
    State(cache): Shared,
    axum::extract::Path(source_id): axum::extract::Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    use prost::Message as _;
    let Some((read, guids)) = grant(&cache, &headers).await else {
        return ApiError::not_found().into_response();
    };
    if !read.allows(&source_id, &guids) {
        return ApiError::not_found().into_response();
    }
    let p = pairs(raw.as_deref());
    let ms = |key: &str| one(&p, key).and_then(|v| v.parse::<i64>().ok());
    let (Some(from), Some(to)) = (ms("start"), ms("end")) else {
        return error(&Error::BadData(
            "start and end (ms) are required".to_owned(),
        ));
    };
    let c = Arc::clone(&cache);
    let batch = tokio::task::spawn_blocking(move || {
        let batch = promql::metric_envelopes(&c, &source_id, from, to);
        hydrant_proto::v2::EnvelopeBatch { batch }.encode_to_vec()
    })
    .await;
    match batch {
        Ok(body) => ([(header::CONTENT_TYPE, "application/x-protobuf")], body).into_response(),
        Err(e) => error(&Error::Internal(format!("reading samples failed: {e}"))),
    }
}

/// `/api/v1/query`.
pub(super) async fn instant(
    State(cache): Shared,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    answer(cache, Kind::Instant, method, headers, raw, body).await
}

/// `/api/v1/query_range`.
pub(super) async fn range(
    State(cache): Shared,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    answer(cache, Kind::Range, method, headers, raw, body).await
}
