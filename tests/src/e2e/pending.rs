//! Half-sent gRPC messages cannot pile up memory: 200 streams that each announce a 10 MB
//! message and send 7 bytes once took a doppler from ~160 MB to ~490 MB, never returned.
//! Now a real doppler process admits only what its budget holds, refuses the rest by name,
//! ends admitted messages that stall, and keeps serving real clients beside them.

use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use hydrant::telemetry::names;

use crate::guard::Proc;
use crate::servers::free_port;
use crate::{eventually_within, hydrant_bin, metric, wait_healthy};

/// Announced length of each hostile message (under the 10 MiB message limit).
const ANNOUNCED: u32 = 10_000_000;

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// Opens `streams` BatchSender streams on one new connection, each announcing
/// [`ANNOUNCED`] bytes and sending 2 of them (7 bytes with the header); returns what keeps
/// them open.
async fn half_send(
    addr: std::net::SocketAddr,
    streams: usize,
) -> (h2::client::SendRequest<Bytes>, Vec<h2::SendStream<Bytes>>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let mut open = Vec::new();
    for _ in 0..streams {
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/loggregator.v2.Ingress/BatchSender"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        client = client.ready().await.unwrap();
        let (_response, mut send) = client.send_request(request, false).unwrap();
        let mut frame = vec![0u8];
        frame.extend_from_slice(&ANNOUNCED.to_be_bytes());
        frame.extend_from_slice(&[0x0a, 0x00]);
        send.send_data(Bytes::from(frame), false).unwrap();
        open.push(send);
    }
    (client, open)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_messages_are_bounded_refused_by_name_and_timed_out() {
    let (grpc, http) = (free_port(), free_port());
    let mut doppler = Proc::new(
        Command::new(hydrant_bin())
            .args(["doppler", "--insecure-open"])
            .arg(format!("--grpc={grpc}"))
            .arg(format!("--http={http}"))
            .args([
                "--max-pending-bytes=32MiB",
                "--max-pending-bytes-per-connection=16MiB",
                "--message-timeout=4s",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the doppler"),
    );
    wait_healthy(http).await;
    let pid = doppler.child().id();
    let before = rss(pid);

    // 20 connections × 10 streams.
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(half_send(grpc, 10).await);
    }
    let rejected = |reason: &'static str| async move {
        metric(http, names::DOPPLER_REJECTED, &[("reason", reason)]).await
    };
    // 32 MiB admits three 10 MB messages (at most one per connection: 16 MiB each); the
    // other 197 are refused as they arrive.
    eventually_within("197 messages refused", Duration::from_secs(20), || async {
        rejected("pending").await >= 197.0
    })
    .await;
    assert_eq!(rejected("pending").await, 197.0);
    let pending = metric(http, names::DOPPLER_PENDING_BYTES, &[]).await;
    assert_eq!(pending, 3.0 * f64::from(ANNOUNCED), "three admitted");
    let grown = rss(pid).saturating_sub(before);
    eprintln!(
        "200 half-sent messages grew the doppler by {} MiB",
        grown >> 20
    );
    assert!(
        grown < 96 << 20,
        "half-sent messages grew the doppler by {} MiB",
        grown >> 20
    );

    // A real client is served beside them.
    super::send(
        grpc,
        [hydrant_proto::envelope::log("real", "served", false)],
    )
    .await;
    eventually_within(
        "the real client served",
        Duration::from_secs(10),
        || async { metric(http, names::DOPPLER_INGRESS, &[]).await >= 1.0 },
    )
    .await;

    // The three admitted ones stall past --message-timeout and end; the budget is free.
    eventually_within("stalled messages end", Duration::from_secs(20), || async {
        rejected("slow").await == 3.0
            && metric(http, names::DOPPLER_PENDING_BYTES, &[]).await == 0.0
    })
    .await;
    drop(held);
    doppler.kill();
}
