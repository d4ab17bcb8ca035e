//! Live tailing: `/v2/read` server-sent events from the log cache, resumed after every
//! stream end with catch-up reads from the cache, a small reorder window, and duplicates
//! skipped.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hydrant_proto::v2::Envelope;
use serde_json::Value;

use super::{Client, Error, Printer, RECENT_LIMIT, REORDER_WINDOW, from_json};

pub(super) async fn tail<W: Write>(
    client: &Client,
    source_id: &str,
    p: &mut Printer<'_, W>,
    deadline: Option<Instant>,
) -> Result<(), Error> {
    let source: String = form_urlencoded::byte_serialize(source_id.as_bytes()).collect();
    let mut backoff = Duration::from_millis(100);
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
        let resp = match client
            .get(&format!("/v2/read?source_id={source}&log"))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                return Err(Error::Api {
                    status: r.status().as_u16(),
                    message: r.text().await.unwrap_or_default(),
                });
            }
            Err(e) if p.last_ts == 0 => return Err(client.unreachable(e)),
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        // Catch up on what arrived while (re)connecting, from the cache: now, and once more
        // after the first event, for lines that were still on their way into the cache.
        let resume = (p.last_ts > 0).then_some(p.last_ts);
        if let Some(from) = resume {
            catch_up(client, source_id, from, p).await?;
        }
        stream_events(
            resp,
            p,
            deadline,
            resume.map(|from| (client, source_id, from)),
        )
        .await?;
    }
}

/// Prints what the cache holds for `source_id` since `from` (duplicates are skipped).
async fn catch_up<W: Write>(
    client: &Client,
    source_id: &str,
    from: i64,
    p: &mut Printer<'_, W>,
) -> Result<(), Error> {
    let missed = client
        .read_logs(source_id, from, RECENT_LIMIT, false)
        .await?
        .unwrap_or_default();
    for env in &missed {
        p.print(env)?;
    }
    p.out.flush()?;
    Ok(())
}

/// Prints the events of one SSE response until it ends, with a small reorder window. On a
/// resumed stream, the first event triggers a second catch-up from the cache.
async fn stream_events<W: Write>(
    resp: reqwest::Response,
    p: &mut Printer<'_, W>,
    deadline: Option<Instant>,
    mut resume: Option<(&Client, &str, i64)>,
) -> Result<(), Error> {
    let mut bytes = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut pending: BTreeMap<(i64, u64), (Instant, Envelope)> = BTreeMap::new();
    let mut seq = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        let stop_at = deadline.map(tokio::time::Instant::from_std);
        tokio::select! {
            chunk = bytes.next() => match chunk {
                Some(Ok(c)) => buf.extend_from_slice(&c),
                _ => break,
            },
            _ = tick.tick() => {}
            () = async { match stop_at { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => break,
        }
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let kind = text
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("message");
            if kind == "closing" {
                return flush(p, &mut pending, None);
            }
            if let Some((client, source_id, from)) = resume.take() {
                flush(p, &mut pending, None)?;
                catch_up(client, source_id, from, p).await?;
            }
            if kind != "message" {
                continue;
            }
            let data: String = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            let Ok(v) = serde_json::from_str::<Value>(&data) else {
                continue;
            };
            for env in v["batch"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(from_json)
            {
                seq += 1;
                pending.insert((env.timestamp, seq), (Instant::now(), env));
            }
        }
        flush(p, &mut pending, Some(REORDER_WINDOW))?;
    }
    flush(p, &mut pending, None)
}

/// Prints held envelopes that have waited `window` (all of them with `None`), in order.
fn flush<W: Write>(
    p: &mut Printer<'_, W>,
    pending: &mut BTreeMap<(i64, u64), (Instant, Envelope)>,
    window: Option<Duration>,
) -> Result<(), Error> {
    let now = Instant::now();
    // Everything up to the newest envelope that has waited long enough goes out, in order.
    let cut = match window {
        None => pending.keys().next_back().copied(),
        Some(w) => pending
            .iter()
            .filter(|(_, (at, _))| now.duration_since(*at) >= w)
            .map(|(k, _)| *k)
            .next_back(),
    };
    let Some(cut) = cut else { return Ok(()) };
    let rest = pending.split_off(&(cut.0, cut.1 + 1));
    for (_, (_, env)) in std::mem::replace(pending, rest) {
        p.print(&env)?;
    }
    p.out.flush()?;
    Ok(())
}
