//! Limits on the YAML documents users hand to Hydrant (`hydrant.yaml`, autoscaler
//! policies), checked before anything builds a tree from them.
//!
//! The YAML loader builds its tree recursively, so a small file of deeply nested
//! sequences (`- - - - …`, 50,000 levels in 100 KB) would overflow the stack and abort the
//! process, and a file of tens of megabytes would take minutes and gigabytes. [`check`]
//! walks the parser's events iteratively, refusing a document deeper than its limit at the
//! line and column where it gets too deep, and refuses an oversized file before parsing.
//! A syntax error is left to the loader, which reports it with its own position.

use yaml_rust2::parser::{Event, Parser};

/// Collections nested deeper than this are refused. `hydrant.yaml` needs 3 levels and a
/// policy about 6 (a schedule's days of the week inside a schedule inside `schedules`).
pub const MAX_DEPTH: usize = 64;

/// Files larger than this are refused. A policy of a hundred rules and schedules is a few
/// kilobytes.
pub const MAX_BYTES: usize = 1024 * 1024;

/// Why a document was refused before loading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Collections nested deeper than the limit.
    #[error("nested deeper than {max} levels (the limit on collections within collections)")]
    TooDeep {
        /// 1-based line where the limit was passed.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The limit.
        max: usize,
    },
    /// The file is over the size limit.
    #[error("{bytes} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
}

impl Refused {
    /// Where in the file the problem is (1-based line and column; the start for size).
    pub fn position(&self) -> (usize, usize) {
        match self {
            Refused::TooDeep { line, column, .. } => (*line, *column),
            Refused::TooLarge { .. } => (1, 1),
        }
    }
}

/// Checks `text` against [`MAX_BYTES`] and [`MAX_DEPTH`].
pub fn check(text: &str) -> Result<(), Refused> {
    check_with(text, MAX_BYTES, MAX_DEPTH)
}

/// Checks `text` against the given limits, without recursion and without building a tree.
pub fn check_with(text: &str, max_bytes: usize, max_depth: usize) -> Result<(), Refused> {
    if text.len() > max_bytes {
        return Err(Refused::TooLarge {
            bytes: text.len(),
            max: max_bytes,
        });
    }
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(e) => e,
            // The loader reports syntax errors with its own wording and position.
            Err(_) => return Ok(()),
        };
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > max_depth {
                    return Err(Refused::TooDeep {
                        line: mark.line(),
                        column: mark.col() + 1,
                        max: max_depth,
                    });
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            Event::StreamEnd => return Ok(()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_block_and_flow_nesting_is_refused_where_it_gets_too_deep() {
        let block = format!("scaling_rules:\n{}x\n", "- ".repeat(50_000));
        let Err(Refused::TooDeep { line, column, max }) = check(&block) else {
            panic!("accepted 50,000 levels");
        };
        assert_eq!((line, max), (2, MAX_DEPTH));
        assert_eq!(
            column,
            2 * MAX_DEPTH - 1,
            "the sequence that is one too deep"
        );

        // Past 255 flow levels the scanner itself stops with an error, which the loader
        // reports; either way nothing recursive runs.
        let flow = format!("a: {}1{}\n", "[".repeat(10_000), "]".repeat(10_000));
        let mut parser = Parser::new_from_str(&flow);
        assert!((0..30_000).any(|_| parser.next_token().is_err()));
        let flow = format!("a: {}1{}\n", "[".repeat(100), "]".repeat(100));
        assert!(matches!(
            check(&flow),
            Err(Refused::TooDeep { line: 1, .. })
        ));
    }

    #[test]
    fn ordinary_documents_and_syntax_errors_pass_to_the_loader() {
        let policy = "instance_min_count: 1\nscaling_rules:\n  - metric_type: cpu\n    threshold: 70\nschedules:\n  recurring_schedule:\n    - days_of_week: [1, 2, 3]\n";
        assert_eq!(check(policy), Ok(()));
        let at_limit = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(check(&at_limit), Ok(()));
        assert_eq!(check("a: [1, 2\nb: {"), Ok(()));
    }

    #[test]
    fn oversized_files_are_refused_before_parsing() {
        assert_eq!(
            check_with("a: 1\nb: 2\n", 5, MAX_DEPTH),
            Err(Refused::TooLarge { bytes: 10, max: 5 })
        );
    }
}
