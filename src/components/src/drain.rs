//! Syslog drains, as Loggregator's syslog agent writes them: every host's agent sends the
//! logs (and, when asked, metrics) of the apps bound to a drain straight to it, so drains
//! scale with hosts and never pass through the dopplers.
//!
//! - [`url`]: drain URLs (scheme, options, anonymized form).
//! - [`rfc5424`]: envelopes as RFC 5424 messages, byte for byte as Loggregator writes them.
//! - [`writer`]: one drain: its queue, its connection or HTTPS client, retries, counted
//!   losses and the notices about them in the app's log.
//! - [`bindings`]: which drains run: the apps' bindings polled from the scheduler, and
//!   aggregate drains; routing of envelopes to them by source id.

pub mod bindings;
pub mod rfc5424;
pub mod url;
pub mod writer;

use hydrant_proto::envelope;
use hydrant_proto::v2::Envelope;

/// A notice about a drain in the app's own log stream, as Loggregator writes them:
/// source type `LGR`, on stderr.
pub fn app_notice(app_id: &str, text: impl Into<String>) -> Envelope {
    let text: String = text.into();
    let mut env = envelope::log(app_id, text, true);
    env.instance_id = "0".into();
    env.tags.insert("source_type".into(), "LGR".into());
    env
}
