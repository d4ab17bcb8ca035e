//! The budget follows gRPC framing across any chunking, refuses what does not fit, ends
//! late messages, and gives everything back.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::*;

/// A body that yields its chunks, then either ends or waits forever.
struct Chunks {
    chunks: VecDeque<Bytes>,
    hang: bool,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        match self.chunks.pop_front() {
            Some(c) => Poll::Ready(Some(Ok(Frame::data(c)))),
            None if self.hang => Poll::Pending,
            None => Poll::Ready(None),
        }
    }
}

fn body(chunks: &[&[u8]], hang: bool) -> Chunks {
    Chunks {
        chunks: chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect(),
        hang,
    }
}

/// A gRPC frame header announcing `len` bytes.
fn header(len: u32) -> Vec<u8> {
    let mut h = vec![0u8];
    h.extend_from_slice(&len.to_be_bytes());
    h
}

#[derive(Default)]
struct Counted {
    pending: AtomicU64,
    slow: AtomicU64,
}

fn budget(total: usize, per_connection: usize, max_message: usize) -> (Arc<Budget>, Arc<Counted>) {
    let counted = Arc::new(Counted::default());
    let c = Arc::clone(&counted);
    let limits = Limits {
        total,
        per_connection,
        message_timeout: Duration::from_secs(5),
        max_message,
    };
    assert_eq!(limits.problem(), None);
    let budget = Budget::new(limits, move |r| {
        match r {
            Reason::Pending => c.pending.fetch_add(1, Relaxed),
            Reason::Slow => c.slow.fetch_add(1, Relaxed),
            _ => 0,
        };
    });
    (Arc::new(budget), counted)
}

/// Polls one frame.
async fn next<B: Body<Data = Bytes, Error = Status> + Unpin>(
    m: &mut Metered<B>,
) -> Option<Result<Frame<Bytes>, Status>> {
    std::future::poll_fn(|cx| Pin::new(&mut *m).poll_frame(cx)).await
}

fn conn(port: u16) -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], port)))
}

#[tokio::test]
async fn messages_are_held_from_header_to_last_byte_across_any_chunking() {
    let (b, _) = budget(100, 100, 50);
    let h = header(10);
    // Header split 2 + 3, body split 4 + 6, then a second message in one chunk with the
    // first's tail.
    let mut tail = vec![9u8; 6];
    tail.extend(header(20));
    tail.extend([7u8; 20]);
    let chunks: Vec<&[u8]> = vec![&h[..2], &h[2..], &[1, 2, 3, 4], &tail];
    let mut m = Metered::new(body(&chunks, false), Arc::clone(&b), conn(1));
    next(&mut m).await.unwrap().unwrap();
    assert_eq!(b.held(), 0, "a partial header holds nothing");
    next(&mut m).await.unwrap().unwrap();
    assert_eq!(
        b.held(),
        10,
        "the whole announced length from the header on"
    );
    next(&mut m).await.unwrap().unwrap();
    assert_eq!(b.held(), 10);
    next(&mut m).await.unwrap().unwrap();
    assert_eq!(b.held(), 0, "both messages complete");
    assert!(next(&mut m).await.is_none());
}

#[tokio::test]
async fn a_full_budget_refuses_and_completion_or_drop_gives_back() {
    let (b, counted) = budget(30, 20, 20);
    // Connection 1 holds 20 (its whole share); connection 2 holds 10 more; the total is full.
    let h20 = header(20);
    let mut first = Metered::new(body(&[&h20, &[0; 5]], true), Arc::clone(&b), conn(1));
    next(&mut first).await.unwrap().unwrap();
    next(&mut first).await.unwrap().unwrap();
    let h10 = header(10);
    let mut second = Metered::new(body(&[&h10], true), Arc::clone(&b), conn(2));
    next(&mut second).await.unwrap().unwrap();
    assert_eq!(b.held(), 30);

    // Over the total.
    let h1 = header(1);
    let mut third = Metered::new(body(&[&h1], true), Arc::clone(&b), conn(3));
    let e = next(&mut third).await.unwrap().unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert!(
        e.message().contains("--max-pending-bytes"),
        "{}",
        e.message()
    );
    assert!(next(&mut third).await.is_none(), "a refused body ends");
    assert_eq!(counted.pending.load(Relaxed), 1);

    // Dropping the second stream gives its 10 back; connection 1 is still at its share.
    drop(second);
    assert_eq!(b.held(), 20);
    let h5 = header(5);
    let mut fourth = Metered::new(body(&[&h5], true), Arc::clone(&b), conn(1));
    let e = next(&mut fourth).await.unwrap().unwrap_err();
    assert!(
        e.message().contains("--max-pending-bytes-per-connection"),
        "{}",
        e.message()
    );
    assert_eq!(counted.pending.load(Relaxed), 2);
    let mut fifth = Metered::new(body(&[&h5], true), Arc::clone(&b), conn(4));
    next(&mut fifth).await.unwrap().unwrap();
    assert_eq!(b.held(), 25);
    drop((first, fifth));
    assert_eq!(b.held(), 0);
}

#[tokio::test]
async fn oversized_messages_are_left_to_tonic_and_hold_nothing() {
    let (b, counted) = budget(30, 20, 20);
    let h = header(1_000_000);
    let mut m = Metered::new(body(&[&h, &[0; 100]], false), Arc::clone(&b), conn(1));
    next(&mut m).await.unwrap().unwrap();
    next(&mut m).await.unwrap().unwrap();
    assert_eq!(b.held(), 0);
    assert_eq!(counted.pending.load(Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_message_that_stalls_past_the_timeout_ends_its_stream() {
    let (b, counted) = budget(100, 100, 50);
    let h = header(40);
    let mut m = Metered::new(body(&[&h, &[1; 7]], true), Arc::clone(&b), conn(1));
    next(&mut m).await.unwrap().unwrap();
    next(&mut m).await.unwrap().unwrap();
    assert_eq!(b.held(), 40);
    let e = next(&mut m).await.unwrap().unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert!(
        e.message().contains("--message-timeout") && e.message().contains("33 bytes are missing"),
        "{}",
        e.message()
    );
    assert_eq!(b.held(), 0);
    assert_eq!(counted.slow.load(Relaxed), 1);
}

#[test]
fn limits_that_could_never_admit_the_largest_message_are_refused() {
    let mut l = Limits::for_max_message(32 << 20);
    assert_eq!(l.problem(), None, "defaults grow with the message limit");
    assert!(l.per_connection >= 32 << 20 && l.total >= l.per_connection);
    l.per_connection = 1 << 20;
    assert!(l.problem().unwrap().contains("largest message"));
    l.per_connection = l.total + 1;
    assert!(l.problem().unwrap().contains("total budget"));
}
