//! Turning an instance's output into log envelopes: line splitting (with Diego's ~60 KiB cap),
//! the per-instance log rate limit, and the envelope builders for app, cell and API
//! messages. Pure: the rate limiter takes `now`.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hydrant_proto::envelope;
use hydrant_proto::raw::RawEnvelope;
use hydrant_proto::v2::Envelope;
use prost::Message as _;
use tokio::time::Instant;

/// Longer lines are split into several envelopes of at most this many bytes, as Diego does.
pub const MAX_LINE_BYTES: usize = 60 * 1024;

/// Splits a byte stream into lines (without the newline), cutting at [`MAX_LINE_BYTES`].
/// Bytes are never altered: invalid UTF-8 passes through as is.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: BytesMut,
}

impl LineSplitter {
    /// Adds bytes; returns the complete lines they finish.
    pub fn push(&mut self, data: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(data);
        let mut lines = Vec::new();
        loop {
            let limit = self.buf.len().min(MAX_LINE_BYTES + 1);
            match self.buf[..limit].iter().position(|b| *b == b'\n') {
                Some(i) => {
                    let mut line = self.buf.split_to(i + 1);
                    line.truncate(i);
                    if line.last() == Some(&b'\r') {
                        line.truncate(i - 1);
                    }
                    lines.push(line.freeze());
                }
                None if self.buf.len() >= MAX_LINE_BYTES => {
                    lines.push(self.buf.split_to(MAX_LINE_BYTES).freeze());
                }
                None => return lines,
            }
        }
    }

    /// What is left at end of stream (a last line without newline).
    pub fn finish(&mut self) -> Option<Bytes> {
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

/// A per-instance log rate limit in bytes per second (token bucket with one second of
/// burst). Excess lines are dropped and counted; at most once a second (and at the end of
/// the stream) one notice in the app's own log says how much was dropped.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_sec: u64,
    tokens: f64,
    last: Instant,
    dropped_lines: u64,
    dropped_bytes: u64,
    since: Option<Instant>,
}

/// What to do with a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Pass,
    /// Drop it.
    Drop,
    /// Send this notice first (drops were pending), then the line.
    NoticeThenPass(String),
    /// Drop the line, and send this notice (a second of dropping has passed).
    NoticeAndDrop(String),
}

impl RateLimit {
    /// A limit of `bytes_per_sec`, full at `now`.
    pub fn new(bytes_per_sec: u64, now: Instant) -> RateLimit {
        RateLimit {
            bytes_per_sec,
            tokens: bytes_per_sec as f64,
            last: now,
            dropped_lines: 0,
            dropped_bytes: 0,
            since: None,
        }
    }

    /// Decides for a line of `len` bytes at `now`.
    pub fn check(&mut self, len: usize, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let cap = self.bytes_per_sec as f64;
        self.tokens = (self.tokens + elapsed * cap).min(cap);
        let fits = self.tokens >= len as f64;
        if fits {
            self.tokens -= len as f64;
        }
        let notice_due = self
            .since
            .is_some_and(|s| now.saturating_duration_since(s) >= Duration::from_secs(1));
        match (fits, self.since.is_some()) {
            (true, true) if notice_due => Verdict::NoticeThenPass(self.take_notice()),
            (true, _) => Verdict::Pass,
            (false, _) => {
                self.dropped_lines += 1;
                self.dropped_bytes += len as u64;
                self.since.get_or_insert(now);
                if notice_due {
                    Verdict::NoticeAndDrop(self.take_notice())
                } else {
                    Verdict::Drop
                }
            }
        }
    }

    /// The pending notice, if lines were dropped since the last one (for end of stream).
    pub fn flush(&mut self) -> Option<String> {
        self.since.is_some().then(|| self.take_notice())
    }

    fn take_notice(&mut self) -> String {
        let text = format!(
            "app instance exceeded log rate limit ({} bytes/sec): {} log lines ({} bytes) dropped",
            self.bytes_per_sec, self.dropped_lines, self.dropped_bytes
        );
        self.dropped_lines = 0;
        self.dropped_bytes = 0;
        self.since = None;
        text
    }
}

/// The app identity every envelope of an instance carries.
#[derive(Debug, Clone)]
pub struct AppTags {
    /// App guid (the source id).
    pub app_id: String,
    /// App name.
    pub app_name: String,
    /// Instance index.
    pub index: u32,
    /// Instance guid.
    pub instance_guid: String,
}

impl AppTags {
    fn base(&self, mut env: Envelope, source_type: &str, instance_id: String) -> Envelope {
        env.instance_id = instance_id;
        let tags: HashMap<String, String> = [
            ("source_type", source_type),
            ("app_id", &self.app_id),
            ("app_name", &self.app_name),
            ("process_type", "web"),
            ("process_id", &self.app_id),
            ("process_instance_id", &self.instance_guid),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.tags = tags;
        env
    }

    /// A line the app printed.
    pub fn app_log(&self, line: Bytes, err: bool) -> Envelope {
        self.base(
            envelope::log(&self.app_id, line, err),
            "APP/PROC/WEB",
            self.index.to_string(),
        )
    }

    /// An encoder for this instance's app log lines: the source id, instance id and tags
    /// are encoded once, so each line costs one small buffer and a copy of its bytes.
    pub fn app_log_encoder(&self) -> AppLogEncoder {
        let mut head = self.app_log(Bytes::new(), false);
        head.message = None;
        head.timestamp = 0;
        AppLogEncoder {
            prefix: head.encode_to_vec(),
        }
    }

    /// A message from the cell about this instance (`[CELL/index]`).
    pub fn cell_log(&self, text: impl Into<String>, err: bool) -> Envelope {
        let text: String = text.into();
        self.base(
            envelope::log(&self.app_id, text, err),
            "CELL",
            self.index.to_string(),
        )
    }

    /// A message from the scheduler API about the app (`[API/0]`).
    pub fn api_log(&self, text: impl Into<String>) -> Envelope {
        let text: String = text.into();
        self.base(envelope::log(&self.app_id, text, false), "API", "0".into())
    }

    /// An event about the app.
    pub fn event(&self, title: &str, body: String) -> Envelope {
        self.base(
            envelope::event(&self.app_id, title, body),
            "API",
            self.index.to_string(),
        )
    }

    /// Container metrics: tagged like logs, without `source_type`.
    pub fn metrics<'a>(
        &self,
        metrics: impl IntoIterator<Item = (&'a str, f64, &'a str)>,
    ) -> Envelope {
        let mut env = self.base(
            envelope::gauge(&self.app_id, metrics),
            "",
            self.index.to_string(),
        );
        env.tags.remove("source_type");
        env
    }
}

/// Encodes an instance's app log lines directly to wire bytes (see
/// [`AppTags::app_log_encoder`]).
#[derive(Debug, Clone)]
pub struct AppLogEncoder {
    prefix: Vec<u8>,
}

impl AppLogEncoder {
    /// The envelope for one line, stamped `timestamp` (UNIX ns).
    pub fn encode(&self, line: &[u8], err: bool, timestamp: i64) -> RawEnvelope {
        use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
        let payload_len = 1 + encoded_len_varint(line.len() as u64) + line.len();
        let body_len = payload_len + if err { 2 } else { 0 };
        let mut buf = BytesMut::with_capacity(self.prefix.len() + body_len + 24);
        buf.extend_from_slice(&self.prefix);
        encode_key(1, WireType::Varint, &mut buf);
        encode_varint(timestamp as u64, &mut buf);
        encode_key(4, WireType::LengthDelimited, &mut buf);
        encode_varint(body_len as u64, &mut buf);
        encode_key(1, WireType::LengthDelimited, &mut buf);
        encode_varint(line.len() as u64, &mut buf);
        buf.extend_from_slice(line);
        if err {
            encode_key(2, WireType::Varint, &mut buf);
            encode_varint(1, &mut buf);
        }
        RawEnvelope::parse(buf.freeze()).expect("encoded from a valid prefix")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_long_lines_and_keeps_bytes() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"a\nb"), [Bytes::from_static(b"a")]);
        assert_eq!(
            s.push(b"c\r\n\xff\xfe\n"),
            [Bytes::from_static(b"bc"), Bytes::from_static(b"\xff\xfe")]
        );
        let long = vec![b'x'; MAX_LINE_BYTES * 2 + 10];
        let lines = s.push(&long);
        assert_eq!(
            lines.iter().map(Bytes::len).collect::<Vec<_>>(),
            [MAX_LINE_BYTES, MAX_LINE_BYTES]
        );
        assert_eq!(s.push(b"\n"), [Bytes::from(vec![b'x'; 10])]);
        assert_eq!(s.push(b"tail"), Vec::<Bytes>::new());
        assert_eq!(s.finish(), Some(Bytes::from_static(b"tail")));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn a_line_of_exactly_the_cap_followed_by_newline_is_one_line() {
        let mut s = LineSplitter::default();
        let mut data = vec![b'y'; MAX_LINE_BYTES];
        data.push(b'\n');
        assert_eq!(
            s.push(&data).iter().map(Bytes::len).collect::<Vec<_>>(),
            [MAX_LINE_BYTES]
        );
    }

    #[test]
    fn the_fast_encoder_matches_the_prost_envelope() {
        let tags = AppTags {
            app_id: "guid".into(),
            app_name: "demo".into(),
            index: 3,
            instance_guid: "ig".into(),
        };
        let enc = tags.app_log_encoder();
        for (line, err) in [
            (&b"hello"[..], false),
            (&b"\xff\xfe oops"[..], true),
            (&b""[..], false),
        ] {
            let mut want = tags.app_log(Bytes::copy_from_slice(line), err);
            want.timestamp = 1_700_000_000_123_456_789;
            assert_eq!(enc.encode(line, err, want.timestamp).decode(), want);
        }
    }

    #[test]
    fn rate_limit_drops_excess_and_reports_once() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(100, t0);
        assert_eq!(r.check(60, t0), Verdict::Pass);
        assert_eq!(r.check(60, t0), Verdict::Drop);
        assert_eq!(r.check(30, t0), Verdict::Pass, "a smaller line still fits");
        assert_eq!(r.check(60, t0), Verdict::Drop);
        // Half a second later 50 bytes are back: lines pass, the notice waits for its second.
        assert_eq!(r.check(40, t0 + Duration::from_millis(500)), Verdict::Pass);
        match r.check(40, t0 + Duration::from_millis(1000)) {
            Verdict::NoticeThenPass(n) => {
                assert!(n.contains("2 log lines (120 bytes) dropped"), "{n}")
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(r.check(10, t0 + Duration::from_millis(1000)), Verdict::Pass);
        assert_eq!(r.flush(), None, "nothing pending");
        assert_eq!(
            r.check(500, t0 + Duration::from_millis(1000)),
            Verdict::Drop
        );
        let rest = r.flush().unwrap();
        assert!(
            rest.contains("1 log lines (500 bytes)"),
            "end of stream reports the rest: {rest}"
        );
    }

    #[test]
    fn continuous_dropping_reports_every_second() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(10, t0);
        assert_eq!(r.check(100, t0), Verdict::Drop);
        assert_eq!(r.check(100, t0 + Duration::from_millis(900)), Verdict::Drop);
        match r.check(100, t0 + Duration::from_millis(1000)) {
            Verdict::NoticeAndDrop(n) => assert!(n.contains("3 log lines (300 bytes)"), "{n}"),
            v => panic!("{v:?}"),
        }
    }
}
