//! The HTTP API, Log Cache's read API with its parameters, limits and errors:
//! `GET /api/v1/read/{source_id}`, `GET /api/v1/meta`, `GET /api/v1/info`, Log Cache's
//! PromQL (`/api/v1/query`, `/api/v1/query_range`), plus `/v2/read` (server-sent events),
//! `/metrics` and `/healthz`. In a cluster, reads of another node's sources are proxied to
//! it, meta is merged over every node, and peers deliver envelopes on
//! [`crate::cluster::INGEST_PATH`].

use std::collections::HashSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hydrant_proto::envelope::now_nanos;
use hydrant_proto::json;
use serde_json::{Value, json};

use crate::{LogCache, ReadStatus};
use hydrant_runtime::access::{Guard, Need, Read, Refusal};
use hydrant_runtime::sse;

/// Most envelopes one read returns (Log Cache's limit).
pub const MAX_LIMIT: usize = 1000;

/// Envelopes one read returns by default.
pub const DEFAULT_LIMIT: usize = 100;

/// Largest batch a peer may deliver at once.
pub const INGEST_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// An API error: status and message, as grpc-gateway renders them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    fn bad(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
    /// Unknown, or not readable with this token: indistinguishable on purpose.
    fn not_found() -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: "not found".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match self.status {
            StatusCode::BAD_REQUEST => 3,
            StatusCode::NOT_FOUND => 5,
            StatusCode::TOO_MANY_REQUESTS => 8,
            _ => 2,
        };
        // grpc-gateway v2's error body: the gRPC code, the message, no details.
        let body = json!({ "code": code, "message": self.message, "details": [] });
        (self.status, axum::Json(body)).into_response()
    }
}

fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

type Shared = State<Arc<LogCache>>;

/// What the caller may read: everything on an open cache, otherwise its token's sources.
fn access(cache: &LogCache, headers: &HeaderMap) -> Option<Read> {
    cache.access.grant(headers).map(|g| g.read)
}

/// What the caller may read, and the guids of the apps its token names (from the
/// scheduler); `None` when it may read nothing.
async fn grant(cache: &LogCache, headers: &HeaderMap) -> Option<(Read, HashSet<String>)> {
    let read = access(cache, headers)?;
    let guids = cache.directory.guids(&read.app_names()).await;
    Some((read, guids))
}

async fn read(
    State(cache): Shared,
    Path(source_id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let local = async || {
        let granted = grant(&cache, &headers).await;
        let result = read_inner(&cache, &source_id, raw.as_deref(), granted);
        let status = match &result {
            Ok(_) => ReadStatus::Ok,
            Err(e) if e.status == StatusCode::NOT_FOUND => ReadStatus::NotFound,
            Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => ReadStatus::TooLarge,
            Err(_) => ReadStatus::BadRequest,
        };
        cache.stats.reads.inc(status);
        result.into_response()
    };
    // In a cluster, a read this node cannot answer alone (a source it does not own, or a
    // name that is none of its sources) is answered across it, unless a peer asked.
    let kept = cache.store().contains(&source_id);
    if let Some(c) = cache.cluster.as_ref()
        && !headers.contains_key(crate::cluster::PROXIED)
        && (!c.owns(&source_id) || !kept)
    {
        return across::read(&cache, c, &source_id, raw.as_deref(), &headers, local).await;
    }
    local().await
}

fn read_inner(
    cache: &LogCache,
    source_id: &str,
    raw: Option<&str>,
    granted: Option<(Read, HashSet<String>)>,
) -> Result<Response, ApiError> {
    let (access, guids) = granted.ok_or_else(ApiError::not_found)?;
    let query = parse_query(raw, now_nanos())?;
    let mut by_name = false;
    let found = {
        let store = cache.store();
        // A source may be asked for by app name, as Log Cache allows; an exact source id
        // wins, and the by-name scan over all sources runs only for ids the cache lacks.
        let ids: Vec<String> = if store.contains(source_id) {
            vec![source_id.to_owned()]
        } else {
            by_name = true;
            let named = store.sources_named(source_id);
            if named.is_empty() {
                vec![source_id.to_owned()]
            } else {
                named
            }
        };
        let mut found = Vec::new();
        for id in &ids {
            if !access.allows(id, &guids) {
                return Err(ApiError::not_found());
            }
            found.extend(store.read(id, &query));
        }
        if ids.len() > 1 {
            found.sort_by_key(|f| {
                if query.descending {
                    -f.timestamp()
                } else {
                    f.timestamp()
                }
            });
            found.truncate(query.limit);
        }
        found
    };
    // Decoding and rendering happen outside the store lock.
    let count = found.len();
    let mut body = Vec::with_capacity(count * 400 + 32);
    body.extend_from_slice(b"{\"envelopes\":{\"batch\":[");
    for (i, f) in found.into_iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        json::write_envelope(&f.into_envelope(), &mut body);
    }
    body.extend_from_slice(b"]}}");
    cache.stats.read_envelopes.add(count as u64);
    if body.len() > cache.max_response_bytes {
        return Err(ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "response of {} bytes exceeds {} bytes; ask for fewer envelopes (lower limit)",
                body.len(),
                cache.max_response_bytes
            ),
        });
    }

    let response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    Ok(if by_name {
        across::mark_by_name(response)
    } else {
        response
    })
}

async fn meta(
    State(cache): Shared,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let (access, guids) = grant(&cache, &headers)
        .await
        .ok_or_else(ApiError::not_found)?;
    let entries = cache.store().meta(|id, _| access.allows(id, &guids));
    let mut meta: serde_json::Map<String, Value> = entries
        .into_iter()
        .map(|(id, m)| {
            let v = json!({
                "count": m.count.to_string(),
                "expired": m.expired.to_string(),
                "oldest_timestamp": m.oldest_timestamp.to_string(),
                "newest_timestamp": m.newest_timestamp.to_string(),
            });
            (id, v)
        })
        .collect();
    // In a cluster, every other node's own listing too: a node that does not answer is an
    // error naming it, not a shorter listing.
    let local = pairs(raw.as_deref())
        .iter()
        .any(|(k, v)| k == "local" && v == "true");
    if let Some(c) = cache.cluster.as_ref().filter(|_| !local)
        && !headers.contains_key(crate::cluster::PROXIED)
    {
        for node in (0..c.nodes.len()).filter(|&n| n != c.index) {
            let theirs = c
                .get_json(node, "/api/v1/meta?local=true", &headers)
                .await
                .map_err(|message| ApiError {
                    status: StatusCode::BAD_GATEWAY,
                    message,
                })?;
            if let Some(m) = theirs["meta"].as_object() {
                meta.extend(m.clone());
            }
        }
    }
    Ok(axum::Json(json!({ "meta": meta })))
}

/// A peer's envelopes for sources this node owns (a protobuf `EnvelopeBatch`).
async fn ingest(State(cache): Shared, body: bytes::Bytes) -> Result<StatusCode, ApiError> {
    use prost::Message as _;
    if cache.cluster.is_none() {
        return Err(ApiError::not_found());
    }
    let batch = hydrant_proto::raw::RawBatch::decode(body)
        .map_err(|e| ApiError::bad(format!("not an EnvelopeBatch: {e}")))?;
    cache.store().insert_all(&batch.batch);
    Ok(StatusCode::NO_CONTENT)
}

/// The Log Cache API version `/api/v1/info` reports. Clients choose their paths and
/// features by it: go-log-cache reads under `/api/v1` only from 2.0.0 on (before, `/v1`),
/// and the cf CLI's `cf tail --name-filter` needs 2.1.0. This cache serves the 2.x read,
/// meta and info API, with `name_filter`.
pub const LOG_CACHE_API_VERSION: &str = "2.11.0";

async fn info(State(cache): Shared) -> axum::Json<Value> {
    axum::Json(json!({
        "version": LOG_CACHE_API_VERSION,
        "vm_uptime": cache.started.elapsed().as_secs().to_string(),
        "hydrant_version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn sse(State(cache): Shared, RawQuery(raw): RawQuery, headers: HeaderMap) -> Response {
    let Some((access, guids)) = grant(&cache, &headers).await else {
        return ApiError::not_found().into_response();
    };
    let pairs = pairs(raw.as_deref());
    sse::respond(cache.source.as_ref(), cache.timing, &pairs, |req| {
        access.may_subscribe(req, &guids)
    })
    .await
}

/// What each route needs: `/api/v1/info` nothing (clients ask it before anything else),
/// `/metrics` a token that reads everything, reads any token (narrowed to its sources).
fn needs(_: &Method, path: &str) -> Need {
    match path {
        "/api/v1/info" => Need::Nothing,
        "/metrics" => Need::ReadAll,
        crate::cluster::INGEST_PATH => Need::Write,
        _ => Need::Read,
    }
}

/// As Log Cache: a caller that may not read is told "not found", so a token cannot probe
/// which sources exist.
fn refuse(r: Refusal) -> Response {
    match r {
        Refusal::Unauthenticated | Refusal::Forbidden(_) => ApiError::not_found().into_response(),
        Refusal::Foreign(message) => ApiError {
            status: StatusCode::FORBIDDEN,
            message,
        }
        .into_response(),
    }
}

/// The log cache's routes, behind its access guard (`/healthz` is always open).
pub fn router(cache: Arc<LogCache>) -> Router {
    let observe: Arc<dyn hydrant_runtime::admin::Observe> = Arc::clone(&cache) as _;
    let access = cache.access.clone();
    let routes = Router::new()
        .route("/api/v1/read/{source_id}", get(read))
        .route("/api/v1/meta", get(meta))
        .route("/api/v1/info", get(info))
        .route("/api/v1/query", get(query::instant).post(query::instant))
        .route("/api/v1/query_range", get(query::range).post(query::range))
        .route("/v2/read", get(sse))
        .route(crate::cluster::SAMPLES_PATH, get(query::samples))
        .route(
            crate::cluster::INGEST_PATH,
            post(ingest).layer(axum::extract::DefaultBodyLimit::max(INGEST_BODY_LIMIT)),
        )
        .with_state(cache)
        .merge(hydrant_runtime::admin::router(observe));
    Guard::new(access, needs).refusing(refuse).wrap(routes)
}

mod across;
mod gateway;
mod query;

pub use gateway::parse_query;

#[cfg(test)]
mod fuzz;
