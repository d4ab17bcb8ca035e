//! Drain URLs as Loggregator's syslog agent reads them (`ingress/bindings/
//! binding_config.go`, `egress/syslog/writer_factory.go`): the scheme picks the protocol,
//! the query picks what is sent (`drain-type`, `drain-data`, `include-metrics-deprecated`)
//! and whether tags travel (`disable-metadata`/`omit-metadata`), and what is shown or
//! counted of a URL never includes its user info or query (they may hold secrets).

use std::fmt;

/// How a drain is written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `syslog://`: TCP, RFC 6587 octet counting.
    Syslog,
    /// `syslog-tls://`: the same over TLS (RFC 5425).
    SyslogTls,
    /// `https://`: one POST per message.
    Https,
    /// `https-batch://`: POSTs of many messages, by size or every second.
    HttpsBatch,
}

impl Scheme {
    /// The scheme as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Syslog => "syslog",
            Scheme::SyslogTls => "syslog-tls",
            Scheme::Https => "https",
            Scheme::HttpsBatch => "https-batch",
        }
    }
}

/// Which envelopes a drain receives (Loggregator's `DrainData`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Data {
    /// Logs and events (the default).
    Logs,
    /// Gauges and counters.
    Metrics,
    /// Timers.
    Traces,
    /// Everything.
    All,
    /// Logs without events (`drain-type=logs`).
    LogsNoEvents,
    /// Logs, gauges and counters (`drain-type=all`).
    LogsAndMetrics,
}

impl Data {
    /// Whether an envelope of this kind goes to the drain.
    pub fn wants(self, kind: hydrant_proto::raw::Kind) -> bool {
        use hydrant_proto::raw::Kind;
        match self {
            Data::All => true,
            Data::Logs => matches!(kind, Kind::Log | Kind::Event),
            Data::LogsNoEvents => kind == Kind::Log,
            Data::Metrics => matches!(kind, Kind::Gauge | Kind::Counter),
            Data::LogsAndMetrics => matches!(kind, Kind::Log | Kind::Gauge | Kind::Counter),
            Data::Traces => kind == Kind::Timer,
        }
    }
}

/// A drain URL that can be written to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DrainUrl {
    /// As given (with any user info and query: never shown or logged).
    pub url: String,
    /// Protocol.
    pub scheme: Scheme,
    /// Host (name or address).
    pub host: String,
    /// Port (the scheme's default when absent: 514 for `syslog`, 6514 for `syslog-tls`,
    /// 443 for `https`).
    pub port: u16,
    /// What it receives.
    pub data: Data,
    /// Leave the tags out of each message.
    pub omit_metadata: bool,
}

/// Why a drain URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{anonymized}: {reason}")]
pub struct Invalid {
    /// The URL without user info and query.
    pub anonymized: String,
    /// What is wrong.
    pub reason: String,
    /// What the app's own log says about it, in Loggregator's words.
    pub notice: String,
}

impl DrainUrl {
    /// Parses a drain URL, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<DrainUrl, Invalid> {
        let anonymized = anonymize(text);
        let invalid = |reason: String, notice: String| Invalid {
            anonymized: anonymized.clone(),
            reason,
            notice,
        };
        let u = url::Url::parse(text.trim()).map_err(|e| {
            invalid(
                format!("not a URL: {e}"),
                "Cannot parse syslog drain URL.".into(),
            )
        })?;
        let scheme = match u.scheme() {
            "syslog" => Scheme::Syslog,
            "syslog-tls" => Scheme::SyslogTls,
            "https" => Scheme::Https,
            "https-batch" => Scheme::HttpsBatch,
            other => {
                return Err(invalid(
                    format!(
                        "unsupported protocol {other:?} (syslog, syslog-tls, https or https-batch)"
                    ),
                    format!("Invalid Scheme {other} for syslog drain url {anonymized}"),
                ));
            }
        };
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                invalid(
                    "no host".into(),
                    format!("No hostname found in syslog drain url {anonymized}"),
                )
            })?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = u.port().unwrap_or(match scheme {
            Scheme::Syslog => 514,
            Scheme::SyslogTls => 6514,
            Scheme::Https | Scheme::HttpsBatch => 443,
        });
        let query = |key: &str| {
            u.query_pairs()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
        };
        let mut data = match query("drain-type").as_deref() {
            Some("logs") => Data::LogsNoEvents,
            Some("metrics") => Data::Metrics,
            Some("all") => Data::LogsAndMetrics,
            _ => Data::Logs,
        };
        data = match query("drain-data").as_deref() {
            Some("logs") => Data::Logs,
            Some("metrics") => Data::Metrics,
            Some("traces") => Data::Traces,
            Some("all") => Data::All,
            _ => data,
        };
        if query("include-metrics-deprecated").is_some_and(|v| !v.is_empty()) {
            data = Data::All;
        }
        let omit = query("disable-metadata").filter(|v| !v.is_empty());
        let omit = omit.or_else(|| query("omit-metadata"));
        Ok(DrainUrl {
            url: text.trim().to_owned(),
            scheme,
            host,
            port,
            data,
            omit_metadata: omit.as_deref() == Some("true"),
        })
    }

    /// The URL without user info and query, as shown in logs, metrics and app notices.
    pub fn anonymized(&self) -> String {
        anonymize(&self.url)
    }

    /// Where an `https`/`https-batch` drain is POSTed to.
    pub fn post_url(&self) -> String {
        match self.scheme {
            Scheme::HttpsBatch => self.url.replacen("https-batch://", "https://", 1),
            _ => self.url.clone(),
        }
    }
}

impl fmt::Display for DrainUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.anonymized())
    }
}

/// A URL's text without its user info and query (and fragment); text that is no URL is
/// shown up to its first `?` with anything before an `@` removed.
pub fn anonymize(text: &str) -> String {
    if let Ok(mut u) = url::Url::parse(text.trim()) {
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.set_query(None);
        u.set_fragment(None);
        return u.to_string();
    }
    let no_query = text.split(['?', '#']).next().unwrap_or_default();
    match no_query.rsplit_once('@') {
        Some((before, after)) => match before.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://{after}"),
            None => after.to_owned(),
        },
        None => no_query.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hydrant_proto::raw::Kind;

    #[test]
    fn schemes_ports_and_what_is_sent() {
        let d = DrainUrl::parse("syslog://logs.example.com").unwrap();
        assert_eq!(
            (d.scheme, d.port, d.data),
            (Scheme::Syslog, 514, Data::Logs)
        );
        let d = DrainUrl::parse("syslog-tls://10.0.0.1:6000?drain-type=all").unwrap();
        assert_eq!(
            (d.scheme, d.host.as_str(), d.port, d.data),
            (Scheme::SyslogTls, "10.0.0.1", 6000, Data::LogsAndMetrics)
        );
        let d = DrainUrl::parse("https-batch://u:p@h/path?drain-data=metrics").unwrap();
        assert_eq!(
            (d.scheme, d.port, d.data),
            (Scheme::HttpsBatch, 443, Data::Metrics)
        );
        assert_eq!(d.post_url(), "https://u:p@h/path?drain-data=metrics");
        let d =
            DrainUrl::parse("syslog://h:1?drain-type=logs&include-metrics-deprecated=1").unwrap();
        assert_eq!(d.data, Data::All);
        assert!(
            DrainUrl::parse("syslog://h:1?omit-metadata=true")
                .unwrap()
                .omit_metadata
        );
        assert!(
            DrainUrl::parse("syslog://h:1?disable-metadata=true")
                .unwrap()
                .omit_metadata
        );
        assert!(
            !DrainUrl::parse("syslog://h:1?omit-metadata=false")
                .unwrap()
                .omit_metadata
        );
        let d = DrainUrl::parse("syslog://[::1]:5514").unwrap();
        assert_eq!((d.host.as_str(), d.port), ("::1", 5514));
    }

    #[test]
    fn kinds_follow_loggregators_filter() {
        assert!(Data::Logs.wants(Kind::Event) && !Data::LogsNoEvents.wants(Kind::Event));
        assert!(!Data::Logs.wants(Kind::Gauge) && Data::LogsAndMetrics.wants(Kind::Counter));
        assert!(Data::Traces.wants(Kind::Timer) && !Data::Metrics.wants(Kind::Timer));
        assert!(Data::All.wants(Kind::Timer));
    }

    #[test]
    fn bad_urls_are_named_without_their_secrets() {
        let e = DrainUrl::parse("ftp://user:secret@h/x?token=t").unwrap_err();
        assert_eq!(e.anonymized, "ftp://h/x");
        assert!(e.reason.contains("unsupported protocol \"ftp\""), "{e}");
        assert_eq!(
            e.notice,
            "Invalid Scheme ftp for syslog drain url ftp://h/x"
        );
        assert!(!e.to_string().contains("secret"));
        let e = DrainUrl::parse("not a url ?key=k").unwrap_err();
        assert!(e.reason.starts_with("not a URL"), "{e}");
        assert!(!e.to_string().contains("key=k"));
        assert_eq!(
            DrainUrl::parse("syslog://a:b@h:1?x=y")
                .unwrap()
                .anonymized(),
            "syslog://h:1"
        );
        assert!(DrainUrl::parse("syslog:///nohost").is_err());
    }
}
