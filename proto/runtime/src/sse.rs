//! `GET /v2/read`: the Firehose as server-sent events, like Loggregator's RLP gateway, so
//! browsers and curl can tail. Served by the log cache and by the doppler's HTTP port; each
//! supplies a [`Source`] to subscribe to and decides who may read what.
//!
//! Query: `source_id` (repeatable), type flags `log`, `counter`, `gauge`, `timer`, `event`
//! (presence is enough; at least one is required), `counter.name`, `gauge.name` (comma
//! separated, repeatable), `shard_id`, `deterministic_name`. Each batch is written as
//! `data: <protojson EnvelopeBatch>`; a `heartbeat` event every 15 s carries the UNIX time;
//! after the stream timeout a `closing` event ends the stream (clients reconnect).

use std::convert::Infallible;
use std::pin::Pin;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use hydrant_proto::json;
use hydrant_proto::raw::{RawBatch, RawEnvelope};
use hydrant_proto::subscriber::select;
use hydrant_proto::v2::{EgressBatchRequest, Selector};

/// A stream of Firehose batches; it ends when the source goes away.
pub type BatchStream = Pin<Box<dyn Stream<Item = RawBatch> + Send + 'static>>;

/// Where a `/v2/read` subscription is opened: the log cache's dopplers, or a doppler's own
/// hub.
pub trait Source: Send + Sync + 'static {
    /// Opens a subscription.
    fn subscribe(
        &self,
        request: EgressBatchRequest,
    ) -> Pin<Box<dyn Future<Output = Result<BatchStream, tonic::Status>> + Send + '_>>;
}

/// Timing of the event stream.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Interval of heartbeat events (Loggregator: 15 s).
    pub heartbeat: Duration,
    /// The stream closes after this long (Loggregator: 14 min).
    pub stream_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat: Duration::from_secs(15),
            stream_timeout: Duration::from_secs(14 * 60),
        }
    }
}

/// A `/v2/read` query that cannot be served, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// Builds the subscription from the query pairs. Preferred tags are always used, as the
/// RLP gateway does.
pub fn request(pairs: &[(String, String)]) -> Result<EgressBatchRequest, BadRequest> {
    fn values<'a>(pairs: &'a [(String, String)], k: &'a str) -> impl Iterator<Item = &'a str> {
        pairs
            .iter()
            .filter(move |(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    let has = |k: &str| pairs.iter().any(|(key, _)| key == k);
    let mut sources: Vec<&str> = values(pairs, "source_id").collect();
    if sources.is_empty() {
        sources.push("");
    }
    let counter_names: Vec<&str> = values(pairs, "counter.name").collect();
    let gauge_names: Vec<&str> = values(pairs, "gauge.name").collect();
    if counter_names
        .iter()
        .chain(&gauge_names)
        .any(|n| n.is_empty())
    {
        return Err(BadRequest(
            "counter.name and gauge.name must not be empty".into(),
        ));
    }
    let mut selectors: Vec<Selector> = Vec::new();
    for s in &sources {
        if has("log") {
            selectors.push(select::log(s));
        }
        if has("counter") || !counter_names.is_empty() {
            if counter_names.is_empty() {
                selectors.push(select::counter(s, ""));
            }
            selectors.extend(counter_names.iter().map(|n| select::counter(s, n)));
        }
        if has("gauge") || !gauge_names.is_empty() {
            if gauge_names.is_empty() {
                selectors.push(select::gauge(s, &[]));
            }
            for names in &gauge_names {
                let names: Vec<&str> = names.split(',').collect();
                selectors.push(select::gauge(s, &names));
            }
        }
        if has("timer") {
            selectors.push(select::timer(s));
        }
        if has("event") {
            selectors.push(select::event(s));
        }
    }
    if selectors.is_empty() {
        return Err(BadRequest(
            "at least one envelope type (log, counter, gauge, timer, event) is required".into(),
        ));
    }
    let first = |k: &str| values(pairs, k).next().unwrap_or_default().to_owned();
    Ok(EgressBatchRequest {
        shard_id: first("shard_id"),
        deterministic_name: first("deterministic_name"),
        use_preferred_tags: true,
        selectors,
        legacy_selector: None,
    })
}

/// The event stream for a subscription.
pub fn events(
    batches: BatchStream,
    timing: Timing,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    enum Step {
        Batch(Option<RawBatch>),
        Heartbeat,
        Closing,
    }
    let deadline = tokio::time::Instant::now() + timing.stream_timeout;
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + timing.heartbeat,
        timing.heartbeat,
    );
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = (batches, heartbeat, false);
    let stream = futures::stream::unfold(
        state,
        move |(mut batches, mut heartbeat, done)| async move {
            if done {
                return None;
            }
            let step = tokio::select! {
                b = batches.next() => Step::Batch(b),
                _ = heartbeat.tick() => Step::Heartbeat,
                () = tokio::time::sleep_until(deadline) => Step::Closing,
            };
            let (event, done) = match step {
                Step::Batch(Some(batch)) => {
                    (Event::default().data(batch_json(&batch.batch)), false)
                }
                Step::Batch(None) => (
                    Event::default()
                        .event("closing")
                        .data("closing: the Firehose ended"),
                    true,
                ),
                Step::Heartbeat => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    (
                        Event::default()
                            .event("heartbeat")
                            .data(now.as_secs().to_string()),
                        false,
                    )
                }
                Step::Closing => (
                    Event::default()
                        .event("closing")
                        .data("closing due to stream timeout"),
                    true,
                ),
            };
            Some((Ok(event), (batches, heartbeat, done)))
        },
    );
    Sse::new(stream)
}

/// Answers a `/v2/read` request: 400 for a bad query, 404 when `allowed` refuses the
/// subscription, 502 when it fails, else the event stream.
pub async fn respond(
    source: &dyn Source,
    timing: Timing,
    pairs: &[(String, String)],
    allowed: impl FnOnce(&EgressBatchRequest) -> bool,
) -> Response {
    let error = |status: StatusCode, message: String| {
        (
            status,
            axum::Json(serde_json::json!({ "error": message, "message": message })),
        )
            .into_response()
    };
    let request = match request(pairs) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.0),
    };
    if !allowed(&request) {
        return error(StatusCode::NOT_FOUND, "not found".into());
    }
    match source.subscribe(request).await {
        Ok(batches) => events(batches, timing).into_response(),
        Err(status) => error(StatusCode::BAD_GATEWAY, status.message().to_owned()),
    }
}

/// A batch as protojson `{"batch":[…]}` on one line.
pub fn batch_json(batch: &[RawEnvelope]) -> String {
    let mut out = Vec::with_capacity(batch.len() * 400 + 16);
    out.extend_from_slice(b"{\"batch\":[");
    for (i, env) in batch.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_envelope(&env.decode(), &mut out);
    }
    out.extend_from_slice(b"]}");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

#[cfg(test)]
mod tests {
    use hydrant_proto::v2::selector::Message as Sel;

    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    #[test]
    fn builds_selectors_like_the_rlp_gateway() {
        let r = request(&pairs(
            "source_id=a&source_id=b&log&counter.name=req&gauge.name=cpu,memory&shard_id=x",
        ))
        .unwrap();
        assert_eq!(r.shard_id, "x");
        assert!(r.use_preferred_tags);
        assert_eq!(r.selectors.len(), 6, "{:?}", r.selectors);
        assert!(
            r.selectors
                .iter()
                .all(|s| s.source_id == "a" || s.source_id == "b")
        );
        assert!(
            matches!(r.selectors[2].message.as_ref(), Some(Sel::Gauge(g)) if g.names == ["cpu", "memory"])
        );
        assert!(
            request(&pairs("source_id=a"))
                .unwrap_err()
                .0
                .contains("at least one envelope type")
        );
        assert!(request(&pairs("counter.name=")).is_err());
    }
}
