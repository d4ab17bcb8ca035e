//! Backtick raw strings. PromQL's `` `…` `` takes every character literally, but the lexer
//! of `promql-parser` 0.11 reads a backslash in one as an escape and refuses
//! ``{instance=~`10\.0\.1\..*`}`` with "unknown escape sequence". Until that is fixed
//! upstream, each raw string is rewritten into the double-quoted string of the same value
//! before parsing; everything else (double- and single-quoted strings, comments) is copied
//! unchanged.

use std::borrow::Cow;

/// `query` with every backtick string turned into the equivalent double-quoted one.
pub(crate) fn requote(query: &str) -> Cow<'_, str> {
    if !query.contains('`') {
        return Cow::Borrowed(query);
    }
    let mut out = String::with_capacity(query.len() + 16);
    let mut chars = query.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                out.push(c);
                while let Some(d) = chars.next() {
                    out.push(d);
                    if d == '\\' {
                        if let Some(e) = chars.next() {
                            out.push(e);
                        }
                    } else if d == c {
                        break;
                    }
                }
            }
            '#' => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '`' => {
                let rest = chars.as_str();
                let Some(end) = rest.find('`') else {
                    // Unterminated: left for the parser to report.
                    out.push(c);
                    out.push_str(rest);
                    break;
                };
                out.push('"');
                for d in rest[..end].chars() {
                    match d {
                        '\\' => out.push_str("\\\\"),
                        '"' => out.push_str("\\\""),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        other => out.push(other),
                    }
                }
                out.push('"');
                chars = rest[end + 1..].chars();
            }
            other => out.push(other),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_strings_become_double_quoted_strings_of_the_same_value() {
        assert_eq!(
            requote(r"up{instance=~`10\.0\.1\..*`}"),
            r#"up{instance=~"10\\.0\\.1\\..*"}"#
        );
        assert_eq!(requote("x{a=`say \"hi\"\n`}"), r#"x{a="say \"hi\"\n"}"#);
        // Backticks inside other strings and comments are not strings of their own.
        let q = "x{a=\"`\\\"`\", b='`'} # a `comment`\n+ y{c=`d`}";
        assert_eq!(
            requote(q),
            "x{a=\"`\\\"`\", b='`'} # a `comment`\n+ y{c=\"d\"}"
        );
        assert_eq!(requote("x{a=`open"), "x{a=`open");
        assert!(matches!(requote("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn the_parser_takes_what_it_refused() {
        let expr = crate::parse(r"sum(up{instance=~`10\.0\.1\..*`})").unwrap();
        assert!(
            expr.to_string().contains(r#"instance=~"10\\.0\\.1\\..*""#),
            "{expr}"
        );
    }
}
