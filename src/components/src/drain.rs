//! Syslog drains, as Loggregator's syslog agent writes them: every host's agent sends the
//! logs (and, when asked, metrics) of the apps bound to a drain straight to it, so drains
//! scale with hosts and never pass through the dopplers.
//!
//! - [`url`]: drain URLs (scheme, options, anonymized form).
//! - [`rfc5424`]: envelopes as RFC 5424 messages, byte for byte as Loggregator writes them.

pub mod rfc5424;
pub mod url;
