//! Generates the Loggregator v2 types and gRPC stubs with protox (pure Rust), so building needs
//! no system `protoc`.
//!
//! Two passes over the same descriptors:
//! - `std/`: ordinary prost types, clients and servers (`hydrant_proto::v2`).
//! - `raw/`: clients and servers whose `Envelope` and `EnvelopeBatch` are the zero-copy
//!   `RawEnvelope` / `RawBatch` (`hydrant_proto::raw`), used on the hot path so a doppler
//!   never decodes or re-encodes an envelope it only forwards. Their codec
//!   (`raw::codec::RawCodec`) answers bad input with a typed reason.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "loggregator/v2/envelope.proto",
    "loggregator/v2/ingress.proto",
    "loggregator/v2/egress.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
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
    Ok(())
}
