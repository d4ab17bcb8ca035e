//! Reading client-streaming ingress RPCs, shared by the agent and the doppler: message by
//! message until the client ends the stream or the component stops taking data, with
//! refused messages counted and answered with a status that names the problem.

use std::pin::pin;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use crate::status::{RejectionCounts, next_message};

/// Keeps an open-streams gauge up to date for the life of a stream.
struct StreamGauge<'a>(&'a AtomicI64);

impl Drop for StreamGauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Hands every message of `stream` to `sink`. Returns `Ok` when the client ends the stream
/// or `stop` fires; `Err` with the reason when a message is refused.
pub async fn drain<T>(
    mut stream: Streaming<T>,
    stop: &CancellationToken,
    open_streams: &AtomicI64,
    rejected: &RejectionCounts,
    mut sink: impl FnMut(T),
) -> Result<(), Status> {
    open_streams.fetch_add(1, Relaxed);
    let _gauge = StreamGauge(open_streams);
    let mut stopped = pin!(stop.cancelled());
    loop {
        let message = tokio::select! {
            biased;
            m = next_message(&mut stream, rejected) => m?,
            () = &mut stopped => return Ok(()),
        };
        match message {
            Some(m) => sink(m),
            None => return Ok(()),
        }
    }
}
