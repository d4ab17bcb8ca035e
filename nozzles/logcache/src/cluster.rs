//! The log cache as a cluster, as Log Cache runs (`NODE_ADDRS`, `NODE_INDEX`): every node
//! is given the same ordered list of nodes and its own place in it, and owns the sources
//! [`owner`] assigns to it.
//!
//! - **Ingest.** Each node subscribes to the dopplers with source-id affinity, named by its
//!   index (`hydrant:source-id:node-00001`), and the doppler hands a source to the member
//!   `crc64(source_id) % members` in name order: with every node subscribed, that is the
//!   owner. While a node is away the doppler spreads over fewer members; whatever reaches
//!   a node that does not own it is forwarded to the owner (`POST` [`INGEST_PATH`], a
//!   protobuf `EnvelopeBatch`), through a bounded queue per peer. What cannot be delivered
//!   (the owner is down) is dropped and counted.
//! - **Reads.** A read of a source another node owns is proxied to that node with the
//!   caller's token, so any node answers for the whole cluster. A node that does not answer
//!   is a 502 naming it, never an empty result. `/api/v1/meta` merges every node's own
//!   listing (`?local=true`). A PromQL query reads the metric envelopes of the sources it
//!   names from their owners ([`SAMPLES_PATH`], a protobuf `EnvelopeBatch`) and evaluates
//!   them where it was asked.
//! - **Membership** is static: changing the node list moves most sources to new owners,
//!   whose caches start empty for them (the old owners' copies are no longer read).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hydrant_proto::queue::DropQueue;
use hydrant_proto::raw::{RawBatch, RawEnvelope};
use prost::Message as _;
use tokio_util::sync::CancellationToken;

/// Where peers deliver envelopes they received for a source this node owns.
pub const INGEST_PATH: &str = "/internal/v1/envelopes";

/// Where a node asks a source's owner for the metric envelopes of a time span
/// (`?start=&end=` in ms), for a PromQL query: a protobuf `EnvelopeBatch`.
pub const SAMPLES_PATH: &str = "/internal/v1/samples/{source_id}";

/// Envelopes waiting for one peer; beyond it the oldest are dropped (counted).
pub const FORWARD_QUEUE: usize = 100_000;

/// Envelopes per forwarded batch.
pub const FORWARD_BATCH: usize = 1_000;

/// Marks a request one node proxied to another, so it is answered there, not passed on.
pub const PROXIED: &str = "x-hydrant-proxied";

/// Set on a node's read answer when the name asked for is none of its source ids, so it
/// answered with the sources it keeps under that app name (possibly none); kept when the
/// answer is proxied.
pub const BY_NAME: &str = "x-hydrant-by-name";

/// Longest a forward or a proxied read may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed forward before the next batch to that peer.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// This node's place in the cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Every node's API base URL, in the same order on every node.
    pub nodes: Vec<String>,
    /// This node's index in `nodes`.
    pub index: usize,
    /// Token peers accept (forwards need a writing token, proxied reads pass the caller's).
    pub token: Option<String>,
    /// The client for peers (see `hydrant_runtime::https::client`).
    pub http: reqwest::Client,
}

/// The node index that owns `source_id` in a cluster of `nodes`.
pub fn owner(source_id: &str, nodes: usize) -> usize {
    hydrant_proto::subscriber::source_member(source_id, nodes)
}

impl Cluster {
    /// Whether this node owns `source_id`.
    pub fn owns(&self, source_id: &str) -> bool {
        owner(source_id, self.nodes.len()) == self.index
    }

    /// The subscription name that makes the dopplers send this node what it owns.
    pub fn member_name(&self) -> String {
        format!(
            "{}:node-{:05}",
            hydrant_proto::subscriber::SOURCE_AFFINITY,
            self.index
        )
    }

    fn url(&self, node: usize, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.nodes[node].trim_end_matches('/'))
    }

    /// `GET path_and_query` on `node` with the caller's token, marked as proxied (so
    /// `node` answers it itself).
    fn peer_get(
        &self,
        node: usize,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .get(self.url(node, path_and_query))
            .timeout(PEER_TIMEOUT)
            .header(PROXIED, "1");
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            req = req.header(header::AUTHORIZATION, auth);
        }
        req
    }

    /// `GET path_and_query` on `node`, as the caller asked it (its token), marked as
    /// proxied. A node that does not answer is a 502 naming it.
    pub async fn proxy(&self, node: usize, path_and_query: &str, headers: &HeaderMap) -> Response {
        match self.peer_get(node, path_and_query, headers).send().await {
            Ok(resp) => {
                let status =
                    StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                let kind = resp
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .cloned()
                    .unwrap_or(HeaderValue::from_static("application/json"));
                let by_name = resp.headers().contains_key(BY_NAME);
                match resp.bytes().await {
                    Ok(body) => {
                        let mut r = (status, [(header::CONTENT_TYPE, kind)], body).into_response();
                        if by_name {
                            r.headers_mut()
                                .insert(BY_NAME, HeaderValue::from_static("1"));
                        }
                        r
                    }
                    Err(e) => self.unreachable(node, &e.to_string()),
                }
            }
            Err(e) => self.unreachable(node, &e.to_string()),
        }
    }

    /// The JSON of `GET path_and_query` on `node`, or why not.
    pub async fn get_json(
        &self,
        node: usize,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Result<serde_json::Value, String> {
        let req = self.peer_get(node, path_and_query, headers);
        let resp = req.send().await.map_err(|e| {
            format!(
                "log cache node {node} ({}) is unreachable: {e}",
                self.nodes[node]
            )
        })?;
        if !resp.status().is_success() {
            return Err(format!(
                "log cache node {node} ({}) answered {}",
                self.nodes[node],
                resp.status()
            ));
        }
        resp.json()
            .await
            .map_err(|e| format!("log cache node {node} ({}): {e}", self.nodes[node]))
    }

    /// The metric envelopes `node` keeps of `source` over `[from, to]` (ms), read with the
    /// caller's token; an error names the node and why.
    pub async fn samples(
        &self,
        node: usize,
        source: &str,
        (from, to): (i64, i64),
        headers: &HeaderMap,
    ) -> Result<Vec<hydrant_proto::v2::Envelope>, String> {
        let id: String = form_urlencoded::byte_serialize(source.as_bytes()).collect();
        let path = SAMPLES_PATH.replace("{source_id}", &id);
        let req = self.peer_get(node, &format!("{path}?start={from}&end={to}"), headers);
        let at = || {
            format!(
                "log cache node {node} ({}), which holds {source}",
                self.nodes[node]
            )
        };
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{}, is unreachable: {e}", at()))?;
        if !resp.status().is_success() {
            return Err(format!("{}, answered {}", at(), resp.status()));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("{}, is unreachable: {e}", at()))?;
        hydrant_proto::v2::EnvelopeBatch::decode(body)
            .map(|b| b.batch)
            .map_err(|e| format!("{}, sent an undecodable batch: {e}", at()))
    }

    fn unreachable(&self, node: usize, why: &str) -> Response {
        let message = format!(
            "log cache node {node} ({}), which holds this source, is unreachable: {why}",
            self.nodes[node]
        );
        let body = serde_json::json!({ "code": 14, "message": message, "details": [] });
        (StatusCode::BAD_GATEWAY, axum::Json(body)).into_response()
    }
}

/// Forwarding counters.
#[derive(Debug, Default)]
pub struct ForwardStats {
    /// Envelopes delivered to their owner.
    pub forwarded: AtomicU64,
    /// Envelopes dropped: the owner did not take them, or its queue overflowed.
    pub dropped: AtomicU64,
}

/// The queues towards every other node.
#[derive(Debug)]
pub struct Peers {
    cluster: Cluster,
    queues: Vec<Option<Arc<DropQueue<RawEnvelope>>>>,
    /// Counters.
    pub stats: Arc<ForwardStats>,
}

impl Peers {
    /// The queues and their delivery tasks (one per other node), which run until `cancel`.
    pub fn new(
        cluster: Cluster,
        cancel: CancellationToken,
    ) -> (Peers, Vec<impl Future<Output = ()> + Send + 'static>) {
        let stats = Arc::new(ForwardStats::default());
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for node in 0..cluster.nodes.len() {
            if node == cluster.index {
                queues.push(None);
                continue;
            }
            let queue = Arc::new(DropQueue::new(FORWARD_QUEUE, usize::MAX, |_| 1));
            queues.push(Some(Arc::clone(&queue)));
            tasks.push(deliver(
                cluster.clone(),
                node,
                queue,
                Arc::clone(&stats),
                cancel.clone(),
            ));
        }
        (
            Peers {
                cluster,
                queues,
                stats,
            },
            tasks,
        )
    }

    /// Keeps what this node owns; queues the rest for its owners.
    pub fn route(&self, batch: &[RawEnvelope]) -> Vec<RawEnvelope> {
        let n = self.cluster.nodes.len();
        let mut local = Vec::with_capacity(batch.len());
        for env in batch {
            match self
                .queues
                .get(owner(env.source_id(), n))
                .and_then(Option::as_ref)
            {
                Some(q) => {
                    let pushed = q.push(env.clone());
                    let lost = pushed.dropped + pushed.refused;
                    self.stats.dropped.fetch_add(lost as u64, Relaxed);
                }
                None => local.push(env.clone()),
            }
        }
        local
    }
}

/// Delivers one peer's queue in batches until `cancel`.
async fn deliver(
    cluster: Cluster,
    node: usize,
    queue: Arc<DropQueue<RawEnvelope>>,
    stats: Arc<ForwardStats>,
    cancel: CancellationToken,
) {
    let url = cluster.url(node, INGEST_PATH);
    let mut batch = Vec::with_capacity(FORWARD_BATCH);
    loop {
        batch.clear();
        let n = tokio::select! {
            n = queue.pop_batch(FORWARD_BATCH, usize::MAX, &mut batch) => n,
            () = cancel.cancelled() => return,
        };
        if n == 0 {
            return;
        }
        let body = Bytes::from(RawBatch::from(std::mem::take(&mut batch)).encode_to_vec());
        let mut req = cluster
            .http
            .post(&url)
            .timeout(PEER_TIMEOUT)
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .body(body);
        if let Some(t) = &cluster.token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => {
                stats.forwarded.fetch_add(n as u64, Relaxed);
            }
            result => {
                stats.dropped.fetch_add(n as u64, Relaxed);
                let why = match result {
                    Ok(r) => r.status().to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(node, %url, error = %why, envelopes = n, "log cache: a forward to the owner failed; dropped");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_PAUSE) => {}
                    () = cancel.cancelled() => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_spread_and_agree_with_the_dopplers_affinity() {
        let mut per_node = [0usize; 3];
        for i in 0..3000 {
            per_node[owner(&format!("app-{i}"), 3)] += 1;
        }
        assert!(per_node.iter().all(|&n| n > 800), "{per_node:?}");
        // The doppler hands a source to member crc64 % n; the owner is that member.
        let id = "6f1b7c0e-0000-4000-8000-000000000001";
        assert_eq!(
            owner(id, 2),
            (hydrant_proto::subscriber::crc64(id) % 2) as usize
        );
    }
}
