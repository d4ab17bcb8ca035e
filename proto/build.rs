//! Generates the Loggregator v2 types and gRPC stubs with protox (pure Rust), so building needs
//! no system `protoc`.
//!
//! Two passes over the same Loggregator v2 descriptors, and one over v1's:
//! - `std/`: ordinary prost types, clients and servers (`hydrant_proto::v2`).
//! - `raw/`: clients and servers whose `Envelope` and `EnvelopeBatch` are the zero-copy
//!   `RawEnvelope` / `RawBatch` (`hydrant_proto::raw`), used on the hot path so a doppler
//!   never decodes or re-encodes an envelope it only forwards. Their codec
//!   (`raw::codec::RawCodec`) answers bad input with a typed reason.
//! - `v1/`: dropsonde's `events` and the `plumbing.DopplerIngestor` service
//!   (`hydrant_proto::v1`), for legacy emitters and loggregator-agents.
//! - `otlp/`: OpenTelemetry's logs and metrics (`hydrant_proto::otlp`) and their export
//!   services, for OTLP ingest and export.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "loggregator/v2/envelope.proto",
    "loggregator/v2/ingress.proto",
    "loggregator/v2/egress.proto",
];

/// Loggregator v1: dropsonde envelopes and the agent-to-doppler `DopplerIngestor`
/// (`hydrant_proto::v1`).
const V1_PROTOS: &[&str] = &["dropsonde/events.proto", "dropsonde/plumbing.proto"];

/// OTLP: the logs and metrics export services and everything they use.
const OTLP_PROTOS: &[&str] = &[
    "opentelemetry/proto/collector/logs/v1/logs_service.proto",
    "opentelemetry/proto/collector/metrics/v1/metrics_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS.iter().chain(V1_PROTOS) {
        println!("cargo:rerun-if-changed={proto}");
    }
    println!("cargo:rerun-if-changed=opentelemetry");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["."])?;

    let std_out = out.join("std");
    std::fs::create_dir_all(&std_out)?;
    tonic_prost_build::configure()
        .out_dir(&std_out)
        .bytes(".loggregator.v2.Log.payload")
        .compile_fds(fds.clone())?;

    let raw_out = out.join("raw");
    std::fs::create_dir_all(&raw_out)?;
    tonic_prost_build::configure()
        .out_dir(&raw_out)
        .codec_path("crate::raw::codec::RawCodec")
        .extern_path(".loggregator.v2", "crate::v2")
        .extern_path(".loggregator.v2.Envelope", "crate::raw::RawEnvelope")
        .extern_path(".loggregator.v2.EnvelopeBatch", "crate::raw::RawBatch")
        .compile_fds(fds)?;

    let v1_out = out.join("v1");
    std::fs::create_dir_all(&v1_out)?;
    tonic_prost_build::configure()
        .out_dir(&v1_out)
        .build_client(true)
        .build_server(true)
        .compile_fds(protox::compile(V1_PROTOS, ["."])?)?;

    let otlp_out = out.join("otlp");
    std::fs::create_dir_all(&otlp_out)?;
    tonic_prost_build::configure()
        .out_dir(&otlp_out)
        .build_client(true)
        .build_server(true)
        .compile_fds(protox::compile(OTLP_PROTOS, ["."])?)?;
    Ok(())
}
