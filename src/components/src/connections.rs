//! Accepted gRPC connections, bounded. Idle TCP connections that never send the HTTP/2
//! preface once held every descriptor of a doppler and locked all clients out for 25 s
//! and more. Here:
//! - at most [`max_connections`] are open at once (the descriptor limit less a reserve for
//!   files, streams and the HTTP port); beyond that a new connection is closed at once,
//!   so the process never runs out of descriptors;
//! - a connection must send its first bytes within its handshake deadline
//!   (`--handshake-timeout`, [`HANDSHAKE_TIMEOUT`] by default), or it is closed.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Time a new connection has to send its first bytes (the HTTP/2 preface, or a TLS hello),
/// by default (`--handshake-timeout`).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most connections open at once, whatever the descriptor limit.
pub const MAX_CONNECTIONS: usize = 16_384;

/// Descriptors kept for everything else: files, the HTTP port, outgoing streams.
pub const DESCRIPTOR_RESERVE: u64 = 256;

/// How many connections this process may hold: the soft descriptor limit less
/// [`DESCRIPTOR_RESERVE`], at most [`MAX_CONNECTIONS`] (and at least 16).
pub fn max_connections() -> usize {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    let budget = soft.saturating_sub(DESCRIPTOR_RESERVE);
    usize::try_from(budget)
        .unwrap_or(usize::MAX)
        .clamp(16, MAX_CONNECTIONS)
}

/// The connections `listener` accepts, within [`max_connections`], each with `handshake`
/// to send its first bytes.
pub fn incoming(
    listener: TcpListener,
    handshake: Duration,
) -> impl Stream<Item = io::Result<Conn>> {
    let permits = Arc::new(Semaphore::new(max_connections()));
    futures::stream::unfold((listener, permits), move |(listener, permits)| async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, or the peer went away during accept: wait a little
                    // rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                tracing::warn!("too many connections; closing a new one");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let conn = Conn {
                stream,
                _permit: permit,
                first_bytes: Some(Box::pin(tokio::time::sleep(handshake))),
            };
            return Some((Ok(conn), (listener, permits)));
        }
    })
}

/// One accepted connection: holds its place among the open ones until dropped.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Until the first bytes arrive: when they must have.
    first_bytes: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.first_bytes = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let expired = this
                    .first_bytes
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no handshake within the time allowed",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}
