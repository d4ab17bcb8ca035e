//! Parsing one sample line of the Prometheus text exposition format:
//! `name{label="value",…} value [timestamp_ms]`. Used to turn a component's own `/metrics`
//! into envelopes and by the storage nozzle's text import.

/// One parsed sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name, as written.
    pub name: String,
    /// Labels in the order written, values unescaped.
    pub labels: Vec<(String, String)>,
    /// Value (`NaN`, `+Inf` and `-Inf` included).
    pub value: f64,
    /// Timestamp in milliseconds since the epoch, when the line has one.
    pub timestamp_ms: Option<i64>,
}

/// What is wrong with a sample line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Nothing after the metric name.
    #[error("a sample needs a value after the metric name")]
    NoValue,
    /// The line starts with `{` or a space.
    #[error("missing metric name")]
    NoName,
    /// A label without `=`.
    #[error("a label needs name=\"value\"")]
    LabelSyntax,
    /// A label value not in double quotes.
    #[error("label {0:?}: the value must be quoted")]
    Unquoted(String),
    /// A label value without its closing quote.
    #[error("label {0:?}: unterminated value")]
    Unterminated(String),
    /// The value is not a float, `NaN` or `±Inf`.
    #[error("value {0:?} is not a number")]
    NotANumber(String),
    /// The timestamp is not an integer.
    #[error("timestamp {0:?} is not an integer (milliseconds)")]
    Timestamp(String),
    /// More fields after the timestamp.
    #[error("unexpected {0:?} after the timestamp")]
    Trailing(String),
}

/// Parses a sample line; the error says what is wrong with it. Comment and blank lines
/// are not samples: callers skip them first.
pub fn parse(line: &str) -> Result<Sample, Error> {
    let line = line.trim();
    let end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or(Error::NoValue)?;
    let (name, rest) = line.split_at(end);
    if name.is_empty() {
        return Err(Error::NoName);
    }
    let mut labels = Vec::new();
    let rest = match rest.strip_prefix('{') {
        Some(mut s) => loop {
            s = s.trim_start().trim_start_matches(',').trim_start();
            if let Some(after) = s.strip_prefix('}') {
                break after;
            }
            let (key, after) = s.split_once('=').ok_or(Error::LabelSyntax)?;
            let after = after
                .trim_start()
                .strip_prefix('"')
                .ok_or_else(|| Error::Unquoted(key.trim().to_owned()))?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let close = loop {
                let (i, c) = chars
                    .next()
                    .ok_or_else(|| Error::Unterminated(key.trim().to_owned()))?;
                match c {
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(other) => value.push(other),
                        None => return Err(Error::Unterminated(key.trim().to_owned())),
                    },
                    '"' => break i,
                    c => value.push(c),
                }
            };
            labels.push((key.trim().to_owned(), value));
            s = &after[close + 1..];
        },
        None => rest,
    };
    let (value, timestamp_ms) = value_and_time(rest)?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
        timestamp_ms,
    })
}

/// The value and optional millisecond timestamp after a series (the second half of
/// [`split`]).
pub fn value_and_time(rest: &str) -> Result<(f64, Option<i64>), Error> {
    if rest.is_ascii() {
        // The common case, split without decoding characters (the same fields).
        let bytes = rest.as_bytes();
        let mut i = 0;
        let fields = std::iter::from_fn(|| {
            while bytes.get(i).is_some_and(|b| space(*b)) {
                i += 1;
            }
            let start = i;
            while bytes.get(i).is_some_and(|b| !space(*b)) {
                i += 1;
            }
            (i > start).then(|| &rest[start..i])
        });
        value_and_time_of(fields)
    } else {
        value_and_time_of(rest.split_whitespace())
    }
}

fn value_and_time_of<'a>(
    mut fields: impl Iterator<Item = &'a str>,
) -> Result<(f64, Option<i64>), Error> {
    let value = fields.next().ok_or(Error::NoValue)?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| Error::NotANumber(v.to_owned()))?,
    };
    let timestamp_ms = match fields.next() {
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| Error::Timestamp(t.to_owned()))?,
        ),
        None => None,
    };
    if let Some(extra) = fields.next() {
        return Err(Error::Trailing(extra.to_owned()));
    }
    Ok((value, timestamp_ms))
}

/// An ASCII character `char::is_whitespace` holds to be white space (tab to carriage
/// return, and space), so byte scans split where `split_whitespace` does.
fn space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r' | b' ')
}

/// Splits a sample line into its series as written (name and `{…}`, not unescaped) and the
/// rest, so an importer can parse each distinct series once and look the others up by
/// their text. `None` when the line is not well formed ([`parse`] then names the problem).
pub fn split(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    let bytes = line.as_bytes();
    // Names are ASCII: bytes find their end, unless a non-ASCII character comes first.
    let end = match bytes
        .iter()
        .position(|&b| b == b'{' || space(b) || !b.is_ascii())?
    {
        i if bytes[i].is_ascii() => i,
        _ => line.find(|c: char| c == '{' || c.is_whitespace())?,
    };
    if end == 0 {
        return None;
    }
    if bytes[end] != b'{' {
        return Some(line.split_at(end));
    }
    // Outside quotes the series ends at `}`; inside, `\` escapes the next byte. (Label
    // sets are short: a plain loop beats `memchr`'s per-call setup.)
    let (mut i, mut quoted) = (end + 1, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'}' if !quoted => return Some(line.split_at(i + 1)),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `split` and `value_and_time` as first written (char by char), the reference the
    /// byte scans must match.
    fn split_reference(line: &str) -> Option<(&str, &str)> {
        let line = line.trim();
        let end = line.find(|c: char| c == '{' || c.is_whitespace())?;
        if end == 0 {
            return None;
        }
        let bytes = line.as_bytes();
        if bytes[end] != b'{' {
            return Some(line.split_at(end));
        }
        let (mut i, mut quoted) = (end + 1, false);
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b'}' if !quoted => return Some(line.split_at(i + 1)),
                _ => {}
            }
            i += 1;
        }
        None
    }

    #[test]
    fn byte_scans_split_as_the_char_scans_do() {
        // Lines drawn from the characters that matter (quotes, braces, escapes, every
        // ASCII white space, non-ASCII spaces and letters); fixed seed, bounded.
        let alphabet = [
            "x", "_", "1", "{", "}", "\"", "\\", "=", ",", " ", "\t", "\u{b}", "\u{c}", "\r", "é",
            "\u{a0}", "\u{2003}", "1e3", "NaN", "-", ".",
        ];
        let mut seed: u64 = 0x5eed;
        let mut next = move |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        let mut split_some = 0;
        for _ in 0..20_000 {
            let len = next(24);
            let line: String = (0..len).map(|_| alphabet[next(alphabet.len())]).collect();
            let want = split_reference(&line);
            assert_eq!(split(&line), want, "{line:?}");
            let rest = want.map_or(line.as_str(), |(_, rest)| rest);
            let reference = value_and_time_of(rest.split_whitespace());
            assert_eq!(
                format!("{:?}", value_and_time(rest)),
                format!("{reference:?}"),
                "{rest:?}"
            );
            split_some += usize::from(want.is_some());
        }
        assert!(split_some > 1_000, "{split_some} lines split");
    }

    #[test]
    fn split_finds_the_series_text_past_quoted_braces() {
        assert_eq!(split("up 1 2"), Some(("up", " 1 2")));
        let line = r#"x{a="}\"{",b="c"} 4 5"#;
        assert_eq!(split(line), Some((r#"x{a="}\"{",b="c"}"#, " 4 5")));
        assert_eq!(split(r#"x{a="open 1"#), None);
        assert_eq!(split("{a=\"b\"} 1"), None);
        assert_eq!(value_and_time(" +Inf 17"), Ok((f64::INFINITY, Some(17))));
        assert_eq!(value_and_time(" 1 2 3"), Err(Error::Trailing("3".into())));
    }

    #[test]
    fn parses_names_labels_values_and_timestamps() {
        let s = parse(r#"load{job="a \"b\"",x="1\n"} 4.5 1700000000000"#).unwrap();
        assert_eq!(s.name, "load");
        assert_eq!(
            s.labels,
            [
                ("job".to_owned(), "a \"b\"".to_owned()),
                ("x".into(), "1\n".into())
            ]
        );
        assert_eq!((s.value, s.timestamp_ms), (4.5, Some(1_700_000_000_000)));
        let s = parse("up 1").unwrap();
        assert_eq!((s.labels.len(), s.timestamp_ms), (0, None));
        assert!(parse("x{} NaN").unwrap().value.is_nan());
        assert_eq!(parse("x -Inf").unwrap().value, f64::NEG_INFINITY);
    }

    #[test]
    fn says_what_is_wrong() {
        assert_eq!(parse("load"), Err(Error::NoValue));
        assert_eq!(parse("load{a=b} 1"), Err(Error::Unquoted("a".into())));
        assert_eq!(parse("load{a=\"b} 1"), Err(Error::Unterminated("a".into())));
        assert_eq!(parse("load abc"), Err(Error::NotANumber("abc".into())));
        assert!(
            parse("load 1 12.5")
                .unwrap_err()
                .to_string()
                .contains("milliseconds")
        );
        assert_eq!(parse("load 1 2 3"), Err(Error::Trailing("3".into())));
    }
}
