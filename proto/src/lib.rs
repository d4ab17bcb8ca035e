//! Hydrant's wire contract: the Loggregator v2 protocol (package `loggregator.v2`) and the
//! clients every Hydrant component and nozzle uses, as go-loggregator is for Loggregator.
//! No servers, no `/proc`, no process lifecycle: those are `hydrant-runtime`'s.
//!
//! Reading order:
//! - [`v2`]: generated prost types and tonic stubs, field-for-field Loggregator's.
//! - [`raw`]: zero-copy validated envelopes for the forwarding hot path.
//! - [`envelope`]: builders and accessors on the wire types.
//! - [`json`]: Loggregator's protojson conventions (snake_case, int64 as strings, base64).
//! - [`transport`]: mTLS settings and tuned gRPC endpoints shared by servers and clients.
//! - [`queue`]: the bounded drop-oldest queue (a "diode") used on every hop.
//! - [`ingress`]: a batching Ingress client that never blocks its caller.
//! - [`subscriber`]: a Firehose subscriber that reconnects with backoff, and selectors.
//! - [`v1`]: Loggregator v1 (dropsonde envelopes, the `DopplerIngestor` hop) and its
//!   conversion to v2, for legacy emitters and loggregator-agents.
//! - [`otlp`]: OpenTelemetry's logs and metrics protocol and its mapping to envelopes.

/// Generated Loggregator v2 types, clients and servers.
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    clippy::clone_on_ref_ptr
)]
pub mod v2 {
    include!(concat!(env!("OUT_DIR"), "/std/loggregator.v2.rs"));
}

pub mod discovery;
pub mod envelope;
pub mod ingress;
pub mod json;
pub mod otlp;
pub mod queue;
pub mod raw;
pub mod subscriber;
pub mod transport;
pub mod v1;

/// Largest gRPC message accepted or sent on any hop (Loggregator uses 10 MiB too).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;

/// HTTP/2 stream window. The 64 KiB protocol default caps one stream at roughly
/// window/RTT, which on loopback throttles a BatchSender stream well below what the
/// pipeline can carry; 4 MiB lets a full batch be in flight without waiting on WINDOW_UPDATE.
pub const HTTP2_STREAM_WINDOW: u32 = 4 * 1024 * 1024;

/// HTTP/2 connection window: room for several streams' windows at once.
pub const HTTP2_CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
