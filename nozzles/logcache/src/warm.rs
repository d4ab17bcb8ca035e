//! Warming at start: a restarted log cache reads the newest log lines of every source from
//! the storage nozzle's `logs` table (`POST /api/v1/sql`), so `hydrant logs APP --recent`
//! still shows what was logged before the restart.
//!
//! The Firehose subscription starts first; the warm read then asks only for lines older
//! than that moment (`ts < start`), so the two meet without overlap (a line in flight at
//! the restart may be missing or doubled). Each source gets at most its cache share
//! (`max_per_source`) and the whole read at most [`Warm::max_rows`] lines, newest first.
//! A storage nozzle that is not up yet is retried for [`Warm::patience`]. What came back,
//! and how far back it reaches, is in `/healthz` (`warm`) and the component log.
//!
//! The `logs` table keeps a line's source, instance, source type, stream and text: a
//! warmed envelope has those, not the rest of its tags.

use std::time::Duration;

use hydrant_proto::envelope;
use hydrant_proto::raw::RawEnvelope;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Default most lines read when warming.
pub const DEFAULT_MAX_ROWS: usize = 200_000;

/// Default oldest line read: a day back.
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(24 * 3600);

/// Default time to wait for the storage nozzle to answer.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(60);

/// Pause between attempts while the storage nozzle does not answer.
const RETRY: Duration = Duration::from_secs(1);

/// Longest one attempt may take (a large read included).
const ATTEMPT: Duration = Duration::from_secs(60);

/// Where and how much to warm from.
#[derive(Debug, Clone)]
pub struct Warm {
    /// The storage nozzle's API base URL.
    pub url: String,
    /// Bearer token reading every source.
    pub token: Option<String>,
    /// The client (see `hydrant_runtime::https::client`).
    pub http: reqwest::Client,
    /// Most lines read.
    pub max_rows: usize,
    /// Oldest line read, back from the start.
    pub lookback: Duration,
    /// How long to keep trying an unreachable storage nozzle.
    pub patience: Duration,
}

/// How warming went, for `/healthz`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `pending`, `done` or `failed`.
    pub status: String,
    /// Lines put in the cache.
    pub envelopes: usize,
    /// Sources they belong to.
    pub sources: usize,
    /// The oldest line's time (RFC 3339), when there was one.
    pub oldest: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// One row of the `logs` table.
#[derive(Debug, Deserialize)]
struct Row {
    ts: i64,
    source_id: String,
    instance_id: String,
    source_type: String,
    stream: String,
    payload: String,
}

/// The SQL of a warm read of lines older than `before` (ns).
fn statement(w: &Warm, before: i64, per_source: usize) -> String {
    let since = before.saturating_sub(w.lookback.as_nanos() as i64);
    format!(
        "SELECT ts, source_id, instance_id, source_type, stream, payload FROM (\
         SELECT ts, source_id, instance_id, source_type, stream, payload, \
         ROW_NUMBER() OVER (PARTITION BY source_id ORDER BY ts DESC) AS rn \
         FROM logs WHERE ts < {before} AND ts >= {since}) AS recent \
         WHERE rn <= {per_source} ORDER BY ts DESC LIMIT {}",
        w.max_rows
    )
}

/// One attempt: the rows, or why not.
async fn read(w: &Warm, sql: &str) -> Result<Vec<Row>, String> {
    let url = format!("{}/api/v1/sql", w.url.trim_end_matches('/'));
    let mut req = w.http.post(&url).timeout(ATTEMPT).body(sql.to_owned());
    if let Some(t) = &w.token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let why = v["error"].as_str().unwrap_or(text.trim());
        return Err(format!("{url}: {status}: {why}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("{url}: unexpected answer: {e}"))
}

/// The envelope a row was stored from.
fn envelope_of(row: Row) -> RawEnvelope {
    let mut e = envelope::log(row.source_id, row.payload.into_bytes(), row.stream == "ERR");
    e.timestamp = row.ts;
    e.instance_id = row.instance_id;
    if !row.source_type.is_empty() {
        e.tags.insert("source_type".into(), row.source_type);
    }
    RawEnvelope::from_envelope(&e)
}

/// Reads what storage holds of the lines older than `before` (ns) and hands them to
/// `insert` (oldest and newest mixed; the store orders them). Retries an unreachable
/// storage nozzle until `patience` runs out or `cancel` fires.
pub async fn run(
    w: &Warm,
    before: i64,
    per_source: usize,
    cancel: &CancellationToken,
    insert: impl FnOnce(Vec<RawEnvelope>),
) -> Report {
    let sql = statement(w, before, per_source);
    let deadline = tokio::time::Instant::now() + w.patience;
    let rows = loop {
        match read(w, &sql).await {
            Ok(rows) => break rows,
            Err(e) if tokio::time::Instant::now() + RETRY > deadline => {
                return Report {
                    status: "failed".into(),
                    error: Some(e),
                    ..Report::default()
                };
            }
            Err(_) => {
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => {}
                    () = cancel.cancelled() => return Report {
                        status: "failed".into(),
                        error: Some("stopped before storage answered".into()),
                        ..Report::default()
                    },
                }
            }
        }
    };
    let oldest = rows.iter().map(|r| r.ts).min();
    let sources: std::collections::HashSet<&str> =
        rows.iter().map(|r| r.source_id.as_str()).collect();
    let sources = sources.len();
    let envelopes: Vec<RawEnvelope> = rows.into_iter().map(envelope_of).collect();
    let n = envelopes.len();
    insert(envelopes);
    Report {
        status: "done".into(),
        envelopes: n,
        sources,
        oldest: oldest.map(hydrant_runtime::time::rfc3339_nanos),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_log_envelopes() {
        let raw = envelope_of(Row {
            ts: 42,
            source_id: "g".into(),
            instance_id: "1".into(),
            source_type: "APP/PROC/WEB".into(),
            stream: "ERR".into(),
            payload: "boom".into(),
        });
        assert_eq!(raw.source_id(), "g");
        assert_eq!(raw.timestamp(), 42);
        assert_eq!(raw.tag("source_type"), Some("APP/PROC/WEB"));
    }
}
