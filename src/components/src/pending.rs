//! A bound on the memory that half-received gRPC messages hold.
//!
//! tonic reserves a message's announced length as soon as its 5-byte header arrives,
//! before any of the body: 200 streams that each announce 10 MB and send 7 bytes hold 2 GB
//! that is never returned while the streams stay open. Every request body of the agent's
//! and the doppler's gRPC servers passes through [`Metered`], which reads the same framing
//! and lets a message in only when its announced length fits both the process-wide budget
//! and its connection's share ([`Limits`]). An admitted message must then arrive in full
//! within [`Limits::message_timeout`]. A refused or late message ends its stream with
//! `ResourceExhausted` naming the limit, counted as a rejection (`pending`, `slow`); the
//! budget is given back as each message completes or its stream ends.

use std::collections::HashMap;
use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::status::Reason;

/// Bytes all half-received messages of a process may announce together, by default.
pub const DEFAULT_MAX_PENDING_BYTES: usize = 64 << 20;

/// Bytes the half-received messages of one connection may announce together, by default
/// (never less than the largest message).
pub const DEFAULT_MAX_PENDING_BYTES_PER_CONNECTION: usize = 16 << 20;

/// Time an admitted message has to arrive in full, by default.
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// gRPC's length-prefixed framing: a compression flag and a big-endian `u32` length.
const HEADER: usize = 5;

/// The bounds, validated so that any message under the size limit can be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// All connections together.
    pub total: usize,
    /// One connection.
    pub per_connection: usize,
    /// From a message's header to its last byte.
    pub message_timeout: Duration,
    /// The message size limit; larger messages are left to tonic, which refuses them
    /// before reserving anything.
    pub max_message: usize,
}

impl Limits {
    /// The defaults for `max_message` (each budget at least one largest message).
    pub fn for_max_message(max_message: usize) -> Limits {
        let per_connection = DEFAULT_MAX_PENDING_BYTES_PER_CONNECTION.max(max_message);
        Limits {
            total: DEFAULT_MAX_PENDING_BYTES.max(per_connection),
            per_connection,
            message_timeout: DEFAULT_MESSAGE_TIMEOUT,
            max_message,
        }
    }

    /// Why these limits cannot work, if they cannot.
    pub fn problem(&self) -> Option<String> {
        if self.per_connection < self.max_message {
            return Some(format!(
                "the per-connection budget ({} bytes) is less than the largest message ({} bytes)",
                self.per_connection, self.max_message
            ));
        }
        if self.total < self.per_connection {
            return Some(format!(
                "the total budget ({} bytes) is less than the per-connection budget ({} bytes)",
                self.total, self.per_connection
            ));
        }
        if self.message_timeout.is_zero() {
            return Some("the message timeout must be more than 0".into());
        }
        None
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::for_max_message(hydrant_proto::DEFAULT_MAX_MESSAGE_BYTES)
    }
}

/// What the half-received messages of a server hold, in announced bytes.
pub struct Budget {
    limits: Limits,
    ledger: Mutex<Ledger>,
    refused: Box<dyn Fn(Reason) + Send + Sync>,
}

#[derive(Debug, Default)]
struct Ledger {
    total: usize,
    by_connection: HashMap<SocketAddr, usize>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("limits", &self.limits)
            .field("ledger", &self.ledger)
            .finish_non_exhaustive()
    }
}

impl Budget {
    /// A budget with `limits`; `refused` counts each refusal by reason.
    pub fn new(limits: Limits, refused: impl Fn(Reason) + Send + Sync + 'static) -> Budget {
        Budget {
            limits,
            ledger: Mutex::new(Ledger::default()),
            refused: Box::new(refused),
        }
    }

    /// Announced bytes of the messages being received now.
    pub fn held(&self) -> usize {
        self.ledger().total
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits `n` bytes for `conn`, or says which budget is full.
    fn take(&self, conn: Option<SocketAddr>, n: usize) -> Result<(), Status> {
        let mut ledger = self.ledger();
        if ledger.total + n > self.limits.total {
            drop(ledger);
            (self.refused)(Reason::Pending);
            return Err(Status::resource_exhausted(format!(
                "server busy: half-received messages already announce {} of {} bytes \
                 (--max-pending-bytes); this one announced {n}",
                self.held(),
                self.limits.total
            )));
        }
        if let Some(conn) = conn {
            let mine = ledger.by_connection.entry(conn).or_default();
            if *mine + n > self.limits.per_connection {
                let held = *mine;
                if held == 0 {
                    ledger.by_connection.remove(&conn);
                }
                drop(ledger);
                (self.refused)(Reason::Pending);
                return Err(Status::resource_exhausted(format!(
                    "this connection's half-received messages already announce {held} of {} \
                     bytes (--max-pending-bytes-per-connection); this one announced {n}",
                    self.limits.per_connection
                )));
            }
            *mine += n;
        }
        ledger.total += n;
        Ok(())
    }

    /// Gives back `n` bytes taken for `conn`.
    fn give(&self, conn: Option<SocketAddr>, n: usize) {
        let mut ledger = self.ledger();
        ledger.total = ledger.total.saturating_sub(n);
        if let Some(conn) = conn
            && let Some(mine) = ledger.by_connection.get_mut(&conn)
        {
            *mine = mine.saturating_sub(n);
            if *mine == 0 {
                ledger.by_connection.remove(&conn);
            }
        }
    }
}

/// A request body whose messages are admitted by a [`Budget`].
#[derive(Debug)]
pub struct Metered<B> {
    inner: B,
    budget: Arc<Budget>,
    conn: Option<SocketAddr>,
    header: [u8; HEADER],
    header_len: usize,
    /// Bytes of the current message still to come (0: reading a header).
    left: usize,
    /// Bytes taken from the budget for the current message.
    held: usize,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    failed: bool,
}

impl<B> Metered<B> {
    /// Meters `inner`, a request body from `conn`.
    pub fn new(inner: B, budget: Arc<Budget>, conn: Option<SocketAddr>) -> Metered<B> {
        Metered {
            inner,
            budget,
            conn,
            header: [0; HEADER],
            header_len: 0,
            left: 0,
            held: 0,
            deadline: None,
            failed: false,
        }
    }

    fn release(&mut self) {
        if self.held > 0 {
            self.budget.give(self.conn, self.held);
            self.held = 0;
        }
        self.deadline = None;
    }

    /// Follows the framing through `data`, admitting each message whose header ends in it.
    fn observe(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.left == 0 {
                let n = (HEADER - self.header_len).min(data.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
                self.header_len += n;
                data = &data[n..];
                if self.header_len < HEADER {
                    continue;
                }
                self.header_len = 0;
                let mut len = [0u8; 4];
                len.copy_from_slice(&self.header[1..]);
                let len = u32::from_be_bytes(len) as usize;
                if len == 0 {
                    continue;
                }
                if len <= self.budget.limits.max_message {
                    self.budget.take(self.conn, len)?;
                    self.held = len;
                    self.deadline = Some(Box::pin(tokio::time::sleep(
                        self.budget.limits.message_timeout,
                    )));
                }
                self.left = len;
            } else {
                let n = self.left.min(data.len());
                self.left -= n;
                data = &data[n..];
                if self.left == 0 {
                    self.release();
                }
            }
        }
        Ok(())
    }

    fn fail(&mut self, status: Status) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.failed = true;
        self.release();
        Poll::Ready(Some(Err(status)))
    }
}

impl<B> Drop for Metered<B> {
    fn drop(&mut self) {
        self.release();
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes, Error = Status> + Unpin,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && let Err(status) = this.observe(data)
                {
                    return this.fail(status);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => {
                if other.is_none() {
                    this.release();
                }
                Poll::Ready(other)
            }
            Poll::Pending => {
                let late = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if !late {
                    return Poll::Pending;
                }
                (this.budget.refused)(Reason::Slow);
                let status = Status::resource_exhausted(format!(
                    "a message of {} bytes did not arrive within {:?} (--message-timeout); \
                     {} bytes are missing",
                    this.held, this.budget.limits.message_timeout, this.left
                ));
                this.fail(status)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connection a request came in on, when the transport says.
fn remote_addr<T>(request: &http::Request<T>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.get_ref().remote_addr())
        })
}

/// The request layer that meters every request body of a gRPC server with `budget`.
pub fn layer(
    budget: Arc<Budget>,
) -> tower::util::MapRequestLayer<
    impl Fn(http::Request<tonic::body::Body>) -> http::Request<tonic::body::Body> + Clone,
> {
    tower::util::MapRequestLayer::new(move |request: http::Request<tonic::body::Body>| {
        let conn = remote_addr(&request);
        let budget = Arc::clone(&budget);
        request.map(|body| tonic::body::Body::new(Metered::new(body, budget, conn)))
    })
}

#[cfg(test)]
mod tests;
