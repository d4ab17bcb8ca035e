//! Reads in a cluster that one node cannot answer alone. A source id goes to its owner
//! (proxied with the caller's token). A name that is no source id — an app name, which
//! Log Cache also reads by — may match sources on every node: each node answers with its
//! own matches and this one merges them as a single node would have (by timestamp, in the
//! asked order, at most `limit`). A node that does not answer is a 502 naming it.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hydrant_proto::envelope::now_nanos;
use serde_json::{Value, json};

use super::{ApiError, parse_query};
use crate::LogCache;
use crate::cluster::{BY_NAME, Cluster, owner};

/// Marks `response` as answered by name.
pub(super) fn mark_by_name(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(BY_NAME, HeaderValue::from_static("1"));
    response
}

/// Answers a read of `name` for the whole cluster; `local` is this node's own answer.
pub(super) async fn read(
    cache: &LogCache,
    c: &Cluster,
    name: &str,
    raw: Option<&str>,
    headers: &HeaderMap,
    local: impl AsyncFnOnce() -> Response,
) -> Response {
    let id: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
    let path = format!(
        "/api/v1/read/{id}{}",
        raw.map(|q| format!("?{q}")).unwrap_or_default()
    );
    let home = owner(name, c.nodes.len());
    let mut answers = Vec::new();
    if home == c.index {
        let here = local().await;
        if !here.headers().contains_key(BY_NAME) || !here.status().is_success() {
            return here;
        }
        answers.push(here);
    } else {
        let there = c.proxy(home, &path, headers).await;
        if !there.headers().contains_key(BY_NAME) || !there.status().is_success() {
            return there;
        }
        answers.push(there);
        answers.push(local().await);
    }
    // By name: every other node's matches too.
    for node in (0..c.nodes.len()).filter(|&n| n != home && n != c.index) {
        answers.push(c.proxy(node, &path, headers).await);
    }
    merge(cache, raw, answers).await
}

/// One answer from several nodes' answers to the same read.
async fn merge(cache: &LogCache, raw: Option<&str>, answers: Vec<Response>) -> Response {
    let query = match parse_query(raw, now_nanos()) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let mut batch: Vec<(i64, Value)> = Vec::new();
    for answer in answers {
        if !answer.status().is_success() {
            return answer;
        }
        let body = match axum::body::to_bytes(answer.into_body(), cache.max_response_bytes).await {
            Ok(b) => b,
            Err(e) => {
                return ApiError {
                    status: StatusCode::BAD_GATEWAY,
                    message: format!("a log cache node's answer could not be read: {e}"),
                }
                .into_response();
            }
        };
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        for e in v["envelopes"]["batch"].as_array().into_iter().flatten() {
            let ts = e["timestamp"].as_str().and_then(|t| t.parse().ok());
            batch.push((ts.unwrap_or(0), e.clone()));
        }
    }
    batch.sort_by_key(|(ts, _)| if query.descending { -*ts } else { *ts });
    batch.truncate(query.limit);
    let batch: Vec<Value> = batch.into_iter().map(|(_, e)| e).collect();
    axum::Json(json!({ "envelopes": { "batch": batch } })).into_response()
}
