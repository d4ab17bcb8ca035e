//! OTLP ingest at the agent: OpenTelemetry SDKs and collectors export logs and metrics to
//! it over gRPC (`--otlp-grpc`, 4317) or HTTP/protobuf (`--otlp-http`, 4318, `POST
//! /v1/logs` and `/v1/metrics`, optionally gzip), and each becomes envelopes
//! ([`hydrant_proto::otlp`]) that enter the agent like an emitter's: tags, counter totals,
//! drains, the dopplers. An export is answered once its envelopes are queued.
//!
//! Bad input is answered, never fatal: an undecodable body is 400 (gRPC
//! `InvalidArgument`) naming the problem, a body over `--max-message-bytes` 413, a content
//! type other than protobuf 415 (OTLP/JSON is not taken yet).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hydrant_proto::envelope::now_nanos;
use hydrant_proto::otlp::{self, logs_service, metrics_service};
use hydrant_proto::raw::RawEnvelope;
use prost::Message as _;

use super::State;

/// Default gRPC address (OTLP's 4317).
pub const DEFAULT_GRPC: &str = "127.0.0.1:4317";

/// Default HTTP address (OTLP's 4318).
pub const DEFAULT_HTTP: &str = "127.0.0.1:4318";

/// Where the envelopes go, and OTLP's counters.
#[derive(Debug, Clone)]
pub struct Otlp {
    state: Arc<State>,
}

impl Otlp {
    /// Envelopes from OTLP into `state`.
    pub fn new(state: Arc<State>) -> Otlp {
        Otlp { state }
    }

    fn accept(&self, envelopes: Vec<hydrant_proto::v2::Envelope>, signal: &'static str) {
        let n = envelopes.len() as u64;
        let batch: Vec<RawEnvelope> = envelopes.iter().map(RawEnvelope::from_envelope).collect();
        match signal {
            "logs" => self.state.stats.otlp_logs.add(n),
            _ => self.state.stats.otlp_metrics.add(n),
        }
        self.state.accept(batch);
    }

    fn logs(&self, req: &logs_service::ExportLogsServiceRequest) {
        self.accept(otlp::log_envelopes(req, now_nanos()), "logs");
    }

    fn metrics(&self, req: &metrics_service::ExportMetricsServiceRequest) {
        self.accept(otlp::metric_envelopes(req, now_nanos()), "metrics");
    }
}

#[tonic::async_trait]
impl logs_service::logs_service_server::LogsService for Otlp {
    async fn export(
        &self,
        request: tonic::Request<logs_service::ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<logs_service::ExportLogsServiceResponse>, tonic::Status> {
        self.logs(request.get_ref());
        Ok(tonic::Response::new(
            logs_service::ExportLogsServiceResponse::default(),
        ))
    }
}

#[tonic::async_trait]
impl metrics_service::metrics_service_server::MetricsService for Otlp {
    async fn export(
        &self,
        request: tonic::Request<metrics_service::ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<metrics_service::ExportMetricsServiceResponse>, tonic::Status> {
        self.metrics(request.get_ref());
        Ok(tonic::Response::new(
            metrics_service::ExportMetricsServiceResponse::default(),
        ))
    }
}

/// The gRPC services, each taking messages up to `max_message_bytes`.
pub fn grpc_services(
    otlp: &Otlp,
    max_message_bytes: usize,
) -> (
    logs_service::logs_service_server::LogsServiceServer<Otlp>,
    metrics_service::metrics_service_server::MetricsServiceServer<Otlp>,
) {
    (
        logs_service::logs_service_server::LogsServiceServer::new(otlp.clone())
            .max_decoding_message_size(max_message_bytes),
        metrics_service::metrics_service_server::MetricsServiceServer::new(otlp.clone())
            .max_decoding_message_size(max_message_bytes),
    )
}

/// An OTLP/HTTP error: a status and its text (OTLP answers a `google.rpc.Status`; its
/// message is what clients log).
fn refuse(status: StatusCode, message: String) -> Response {
    tracing::debug!(%status, %message, "otlp: export refused");
    (status, message).into_response()
}

/// The request body as protobuf bytes: gzip undone, protobuf required.
fn body(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Vec<u8>, (StatusCode, String)> {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !kind.starts_with("application/x-protobuf") {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type {kind:?}: send application/x-protobuf (OTLP/JSON is not taken)"),
        ));
    }
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Ok(body.to_vec());
    }
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("gzip body: {e}")))?;
    if out.len() > limit {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the uncompressed body exceeds {limit} bytes"),
        ));
    }
    Ok(out)
}

#[derive(Clone)]
struct Http {
    otlp: Otlp,
    limit: usize,
}

async fn http_logs(AxumState(h): AxumState<Http>, headers: HeaderMap, raw: Bytes) -> Response {
    let bytes = match body(&headers, raw, h.limit) {
        Ok(b) => b,
        Err((status, message)) => return refuse(status, message),
    };
    match logs_service::ExportLogsServiceRequest::decode(&bytes[..]) {
        Ok(req) => {
            h.otlp.logs(&req);
            protobuf(&logs_service::ExportLogsServiceResponse::default())
        }
        Err(e) => refuse(
            StatusCode::BAD_REQUEST,
            format!("not an ExportLogsServiceRequest: {e}"),
        ),
    }
}

async fn http_metrics(AxumState(h): AxumState<Http>, headers: HeaderMap, raw: Bytes) -> Response {
    let bytes = match body(&headers, raw, h.limit) {
        Ok(b) => b,
        Err((status, message)) => return refuse(status, message),
    };
    match metrics_service::ExportMetricsServiceRequest::decode(&bytes[..]) {
        Ok(req) => {
            h.otlp.metrics(&req);
            protobuf(&metrics_service::ExportMetricsServiceResponse::default())
        }
        Err(e) => refuse(
            StatusCode::BAD_REQUEST,
            format!("not an ExportMetricsServiceRequest: {e}"),
        ),
    }
}

fn protobuf(m: &impl prost::Message) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        m.encode_to_vec(),
    )
        .into_response()
}

/// OTLP/HTTP's routes, taking bodies up to `limit` bytes.
pub fn http_router(otlp: Otlp, limit: usize) -> Router {
    Router::new()
        .route("/v1/logs", post(http_logs))
        .route("/v1/metrics", post(http_metrics))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Http { otlp, limit })
}
