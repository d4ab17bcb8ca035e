//! Bounded fuzzing of the read API's parameters (proptest, part of `cargo test`): query
//! strings built from Log Cache's parameter names with hostile values and escapes, and
//! arbitrary text. Parsing answers a query or a 400 naming the problem, never a panic.

use hydrant_runtime::fuzz;
use proptest::prelude::*;

use super::*;

const KEYS: &[&str] = &[
    "start_time",
    "end_time",
    "limit",
    "envelope_types",
    "descending",
    "name_filter",
    "source_id",
    "shard_id",
    "selectors",
    "%00",
    "",
    "start_time[]",
];

const VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "100",
    "1000",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999999",
    "1e18",
    "NaN",
    "true",
    "True",
    "t",
    "1",
    "false",
    "LOG",
    "GAUGE",
    "0",
    "5",
    "ANY",
    "%FF",
    "%",
    "%zz",
    "(a|b)*c",
    "[",
    "\u{0}",
    "é",
    "+1",
    " 1",
];

fn query() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop::sample::select(KEYS),
            prop::sample::select(VALUES),
            any::<bool>(),
        ),
        0..8,
    )
    .prop_map(|pairs| {
        let mut q = String::new();
        for (k, v, bare) in pairs {
            if !q.is_empty() {
                q.push('&');
            }
            q.push_str(k);
            if !bare {
                q.push('=');
                q.push_str(v);
            }
        }
        q
    })
}

proptest! {
    #![proptest_config(fuzz::config())]

    #[test]
    fn built_queries_parse_or_are_refused(q in query(), now in any::<i64>()) {
        let _ = parse_query(Some(&q), now);
    }

    #[test]
    fn arbitrary_queries_parse_or_are_refused(q in "\\PC{0,200}", now in any::<i64>()) {
        let _ = parse_query(Some(&q), now);
    }
}
