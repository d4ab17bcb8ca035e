//! The one place where inbound failures become gRPC statuses and counter labels.
//!
//! The raw services' codec answers a message that fails to decode with `InvalidArgument`
//! and a typed reason; tonic answers one over the size limit with `OutOfRange`. Both are the
//! *client's* fault: ingress counts them by reason and answers `InvalidArgument` and
//! `ResourceExhausted` with what was wrong (which envelope, which field, which limit).

use hydrant_proto::raw::codec::Rejected;
use hydrant_runtime::instrument::Family;
use tonic::{Code, Status};

/// An ingress message refused for what it contained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not a well-formed `loggregator.v2` message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A string field (source id, tag, name…) is not UTF-8.
    #[error("invalid UTF-8: {0}")]
    InvalidUtf8(String),
    /// Larger than the configured message limit.
    #[error("message too large: {0}")]
    Oversized(String),
}

impl Rejection {
    /// Classifies an error from an inbound stream or request; `Err` gives back statuses
    /// that are not about the message (the client went away, the connection broke).
    ///
    /// By type, not wording: decode failures carry the reason the raw services' codec put
    /// in the status details (`raw::codec::Rejected`); `OutOfRange` is what tonic answers
    /// to a message over the size limit, and nothing else on an inbound path does.
    pub fn classify(status: Status) -> Result<Rejection, Status> {
        match (Rejected::of(&status), status.code()) {
            (Some(Rejected::Malformed), _) => Ok(Rejection::Malformed(status.message().to_owned())),
            (Some(Rejected::InvalidUtf8), _) => {
                Ok(Rejection::InvalidUtf8(status.message().to_owned()))
            }
            (None, Code::OutOfRange) => Ok(Rejection::Oversized(
                status.message().trim_start_matches("Error, ").to_owned(),
            )),
            _ => Err(status),
        }
    }

    /// Its counter label.
    pub fn reason(&self) -> Reason {
        match self {
            Rejection::Malformed(_) => Reason::Malformed,
            Rejection::InvalidUtf8(_) => Reason::InvalidUtf8,
            Rejection::Oversized(_) => Reason::Oversized,
        }
    }
}

impl From<Rejection> for Status {
    fn from(r: Rejection) -> Status {
        match r {
            Rejection::Oversized(_) => Status::resource_exhausted(r.to_string()),
            _ => Status::invalid_argument(r.to_string()),
        }
    }
}

impl From<crate::router::Error> for Status {
    fn from(e: crate::router::Error) -> Status {
        match e {
            crate::router::Error::NoSelectors | crate::router::Error::TooManySelectors { .. } => {
                Status::invalid_argument(e.to_string())
            }
        }
    }
}

hydrant_runtime::labels! {
    /// Why an ingress message was refused: the `reason` label of the agent's and the
    /// doppler's rejection counters.
    pub enum Reason {
        /// Not a well-formed `loggregator.v2` message.
        Malformed => [("reason", "malformed")],
        /// A string field is not UTF-8.
        InvalidUtf8 => [("reason", "invalid_utf8")],
        /// Over the message size limit.
        Oversized => [("reason", "oversized")],
        /// Announced while half-received messages already hold the server's budget
        /// ([`crate::pending`]).
        Pending => [("reason", "pending")],
        /// Did not arrive in full within the message timeout ([`crate::pending`]).
        Slow => [("reason", "slow")],
    }
}

/// Rejections counted by reason (the agent's and the doppler's `rejected_messages_total`).
pub type RejectionCounts = Family<Reason>;

/// Reads an inbound stream's next message, turning message-level failures into a counted
/// [`Rejection`] status. `Ok(None)` is the client's end of stream.
pub async fn next_message<T>(
    stream: &mut tonic::Streaming<T>,
    counts: &RejectionCounts,
) -> Result<Option<T>, Status> {
    match stream.message().await {
        Ok(m) => Ok(m),
        Err(status) => match Rejection::classify(status) {
            Ok(rejection) => {
                counts.inc(rejection.reason());
                tracing::warn!(reason = ?rejection.reason(), %rejection, "ingress message refused");
                Err(rejection.into())
            }
            Err(other) => Err(other),
        },
    }
}

/// Rewrites a response whose status is a decode failure tonic raised before any handler ran
/// (unary requests, subscription requests) into the same client-error status a handler
/// would give, and counts it. Installed as a layer on every gRPC server, so every path
/// reports bad input the same way.
pub fn remap_response<B>(
    counts: &RejectionCounts,
    mut response: http::Response<B>,
) -> http::Response<B> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    if status.code() == Code::Ok {
        return response;
    }
    if let Ok(rejection) = Rejection::classify(status) {
        counts.inc(rejection.reason());
        tracing::warn!(reason = ?rejection.reason(), %rejection, "request refused");
        let _ = Status::from(rejection).add_header(response.headers_mut());
    }
    response
}
