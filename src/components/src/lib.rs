//! Hydrant's platform components: what runs on every cell and in the middle of the
//! pipeline, as opposed to the nozzles that consume the Firehose.
//!
//! Reading order:
//! - [`router`]: the pure fan-out core (selectors, shard groups, deterministic routing).
//! - [`doppler`]: Ingress + the Firehose (Egress) around the router.
//! - [`agent`]: per-cell ingress that completes envelopes and forwards them to dopplers.
//! - [`cell`]: runs app instances as processes, streams their logs and metrics, scales them.
//! - [`drain`]: syslog drains (RFC 5424 over TCP, TLS or HTTPS), written by the agent for
//!   the apps bound to them.
//! - Cross-cutting: [`telemetry`] (every metric these components expose), [`status`]
//!   (errors to gRPC statuses), [`inbound`] (reading ingress streams), [`connections`]
//!   (accepted gRPC connections, bounded in number and handshake time), [`pending`]
//!   (the memory half-received messages may hold), [`v1`] (Loggregator v1 ingress: the
//!   doppler's `DopplerIngestor`, the agent's dropsonde UDP).
//!
//! This crate depends on the wire contract (`hydrant-proto`) and the shared runtime
//! (`hydrant-runtime`) only; it never names a nozzle. The `hydrant` binary runs these
//! components and the nozzles as subcommands.

pub mod agent;
pub mod cell;
pub mod connections;
pub mod doppler;
pub mod drain;
pub mod inbound;
pub mod pending;
pub mod router;
pub mod status;
pub mod telemetry;
pub mod v1;
