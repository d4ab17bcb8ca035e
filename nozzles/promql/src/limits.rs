//! Limits on a query's size and shape, checked on its text before the parser runs.
//!
//! Parsing, planning and evaluation all recurse over the expression tree, whose depth is
//! at most the query's bracket nesting plus its number of operators (a chain `1+1+…+1` is
//! a tree as deep as it is long). A 10 KB query could otherwise nest 2,000 deep and
//! overflow a thread's stack, which aborts the whole process. Counting on the text is
//! linear, allocates nothing, and cannot be fooled by brackets, operators or keywords
//! inside strings, comments or label matchers.

use super::Error;

/// Longest query accepted by default, in bytes (a Grafana query with a long `=~`
/// alternation is a few kilobytes).
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

/// Deepest nesting of `(`, `[` and `{` accepted.
pub const MAX_NESTING: usize = 64;

/// Most binary operators (and unary minus signs) in one query.
pub const MAX_OPERATORS: usize = 256;

/// Most selectors one query may read (each is fetched from storage separately).
pub const MAX_SELECTORS: usize = 64;

const KEYWORD_OPERATORS: &[&str] = &["and", "or", "unless", "atan2"];

/// The limits a query is held to (`--promql-max-*`; the constants above by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest query, in bytes.
    pub max_bytes: usize,
    /// Deepest bracket nesting.
    pub max_nesting: usize,
    /// Most operators.
    pub max_operators: usize,
    /// Most selectors.
    pub max_selectors: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bytes: MAX_QUERY_BYTES,
            max_nesting: MAX_NESTING,
            max_operators: MAX_OPERATORS,
            max_selectors: MAX_SELECTORS,
        }
    }
}

/// Checks `query` against the default limits.
pub fn check_text(query: &str) -> Result<(), Error> {
    check_text_within(query, &Limits::default())
}

/// Checks `query`'s size, nesting and operators against `limits`.
pub fn check_text_within(query: &str, limits: &Limits) -> Result<(), Error> {
    let (max_bytes, max_nesting, max_operators) =
        (limits.max_bytes, limits.max_nesting, limits.max_operators);
    if query.len() > max_bytes {
        return Err(refused(format!(
            "the query is {} bytes, over the limit of {max_bytes}",
            query.len()
        )));
    }
    let bytes = query.as_bytes();
    let (mut depth, mut braces, mut operators) = (0usize, 0usize, 0usize);
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'"' | b'\'' | b'`' => i = skip_string(bytes, i),
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if c == b'{' {
                    braces += 1;
                }
                if depth > max_nesting {
                    return Err(refused(format!(
                        "the query nests brackets deeper than {max_nesting} levels"
                    )));
                }
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                if c == b'}' {
                    braces = braces.saturating_sub(1);
                }
            }
            // Inside `{…}` these are label matchers (`=`, `!=`, `=~`), not operators.
            _ if braces > 0 => {}
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' => operators += 1,
            b'=' | b'!' if bytes.get(i + 1) == Some(&b'=') => {
                operators += 1;
                i += 1;
            }
            _ if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
                {
                    i += 1;
                }
                let word = &query[start..i];
                if KEYWORD_OPERATORS
                    .iter()
                    .any(|k| word.eq_ignore_ascii_case(k))
                {
                    operators += 1;
                }
                if operators > max_operators {
                    break;
                }
                continue;
            }
            _ => {}
        }
        if operators > max_operators {
            break;
        }
        i += 1;
    }
    if operators > max_operators {
        return Err(refused(format!(
            "the query has more than {max_operators} operators"
        )));
    }
    Ok(())
}

/// The index of the closing quote of the string opening at `start` (or the end).
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote != b'`' => i += 2,
            c if c == quote => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// A refusal naming the parameter and the limit.
pub fn refused(what: String) -> Error {
    Error::BadData(format!(
        "invalid parameter \"query\": {what} (Hydrant's limit)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_for(q: &str) -> String {
        match check_text(q) {
            Err(Error::BadData(m)) => m,
            other => panic!("{q:.40}: {other:?}"),
        }
    }

    #[test]
    fn deep_nesting_and_long_operator_chains_are_refused_by_name() {
        let abs = format!("{}x{}", "abs(".repeat(2_000), ")".repeat(2_000));
        assert!(refused_for(&abs).contains("deeper than 64"));
        let sum = format!("1{}", "+1".repeat(10_000));
        assert!(refused_for(&sum).contains("more than 256 operators"));
        let or = vec!["up"; 2_000].join(" or ");
        assert!(refused_for(&or).contains("more than 256 operators"));
        let big = format!("up{{job=~\"{}\"}}", "a|".repeat(40_000));
        assert!(refused_for(&big).contains("over the limit of 65536"));
    }

    #[test]
    fn brackets_and_operators_in_strings_matchers_and_comments_do_not_count() {
        let q = format!(
            "sum by (job) (rate(http_total{{path=~\"{}\", a!=\"-\"}}[5m])) # {}\n",
            "(((+-*/".repeat(200),
            "((((or".repeat(200)
        );
        assert_eq!(check_text(&q), Ok(()));
        let at_limit = format!("{}1{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert_eq!(check_text(&at_limit), Ok(()));
        let chain = format!("1{}", "+1".repeat(MAX_OPERATORS));
        assert_eq!(check_text(&chain), Ok(()));
        assert_eq!(
            check_text("order_total or sort_desc(x) unless y == 1"),
            Ok(())
        );
    }
}
