//! Query parameters as Log Cache's HTTP gateway reads them (grpc-gateway v2,
//! `runtime.PopulateQueryParameters` into `logcache.v1.ReadRequest`), so a client that
//! works against Log Cache gets the same answer here:
//!
//! - a field is named by its proto name or its JSON name (`start_time`, `startTime`);
//!   unknown parameters are ignored;
//! - integers are decimal with an optional sign (Go's `strconv.ParseInt`), booleans are
//!   `1 t T TRUE true True 0 f F FALSE false False` (`strconv.ParseBool`);
//! - a scalar given twice is an error (`too many values for field "limit": 1, 2`);
//! - `envelope_types` repeats, one type each, by exact name (`LOG`) or number (`1`); no
//!   comma lists;
//! - errors are `400` with grpc-gateway's body, `{"code": 3, "message": …, "details": []}`.
//!
//! Then Log Cache's read rules (`LocalStoreReader.Read`): `end_time` 0 or absent is now,
//! `limit` 0 or absent is 100, at most 1,000; a `start_time` in the future is an empty
//! answer, not an error.

use std::collections::BTreeMap;

use hydrant_proto::raw::Kind;

use super::{ApiError, DEFAULT_LIMIT, MAX_LIMIT};
use crate::store::{Kinds, Query};

/// The `ReadRequest` fields a query may set: (proto name, JSON name).
const FIELDS: &[(&str, &str)] = &[
    ("source_id", "sourceId"),
    ("start_time", "startTime"),
    ("end_time", "endTime"),
    ("limit", "limit"),
    ("envelope_types", "envelopeTypes"),
    ("descending", "descending"),
    ("name_filter", "nameFilter"),
];

/// `logcache.v1.EnvelopeType`, by name and number.
const ENVELOPE_TYPES: &[(&str, i32, Option<Kind>)] = &[
    ("ANY", 0, None),
    ("LOG", 1, Some(Kind::Log)),
    ("COUNTER", 2, Some(Kind::Counter)),
    ("GAUGE", 3, Some(Kind::Gauge)),
    ("TIMER", 4, Some(Kind::Timer)),
    ("EVENT", 5, Some(Kind::Event)),
];

/// Every value given for each known field, by proto name, in order.
#[derive(Debug, Default)]
pub(super) struct Params(BTreeMap<&'static str, Vec<String>>);

impl Params {
    /// Reads a raw query string as Go's `ParseForm` and the gateway do.
    pub(super) fn parse(raw: Option<&str>) -> Result<Params, ApiError> {
        let raw = raw.unwrap_or_default();
        if raw.contains(';') {
            return Err(ApiError::bad("invalid semicolon separator in query"));
        }
        let mut params = Params::default();
        for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
            let field = FIELDS
                .iter()
                .find(|(proto, json)| key == *proto || key == *json)
                .map(|(proto, _)| *proto);
            if let Some(field) = field {
                params.0.entry(field).or_default().push(value.into_owned());
            }
        }
        Ok(params)
    }

    /// The one value of a scalar field.
    fn scalar(&self, field: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(field).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([one]) => Ok(Some(one)),
            Some(many) => Err(ApiError::bad(format!(
                "too many values for field \"{field}\": {}",
                many.join(", ")
            ))),
        }
    }

    fn int(&self, field: &str) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.scalar(field)? else {
            return Ok(None);
        };
        go_parse_int(v).map(Some).map_err(|why| {
            ApiError::bad(format!(
                "parsing field \"{field}\": strconv.ParseInt: parsing {}: {why}",
                go_quote(v)
            ))
        })
    }

    fn bool(&self, field: &str) -> Result<Option<bool>, ApiError> {
        let Some(v) = self.scalar(field)? else {
            return Ok(None);
        };
        match v {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(Some(true)),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(Some(false)),
            _ => Err(ApiError::bad(format!(
                "parsing field \"{field}\": strconv.ParseBool: parsing {}: invalid syntax",
                go_quote(v)
            ))),
        }
    }

    fn envelope_types(&self) -> Result<Kinds, ApiError> {
        let mut kinds = Kinds::none();
        let mut any = true;
        for v in self.0.get("envelope_types").into_iter().flatten() {
            let by_number = go_parse_int(v).ok();
            let known = ENVELOPE_TYPES
                .iter()
                .find(|(name, n, _)| v == name || by_number == Some(i64::from(*n)));
            match known {
                Some((_, _, Some(kind))) => {
                    kinds = kinds.with(*kind);
                    any = false;
                }
                // ANY adds nothing; only ANY (or nothing) means every type.
                Some((_, _, None)) => {}
                None => {
                    return Err(ApiError::bad(format!(
                        "parsing list \"envelope_types\": {} is not a valid value",
                        go_quote(v)
                    )));
                }
            }
        }
        Ok(if any { Kinds::ALL } else { kinds })
    }
}

/// Go's `strconv.ParseInt(v, 10, 64)`: an optional sign and decimal digits.
fn go_parse_int(v: &str) -> Result<i64, &'static str> {
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("invalid syntax");
    }
    v.parse().map_err(|_| "value out of range")
}

/// A value quoted as Go's `%q` would, for messages.
fn go_quote(v: &str) -> String {
    format!("{v:?}")
}

/// Validates read parameters the way Log Cache does; `now` (UNIX ns) stands for an
/// absent or zero `end_time`.
pub fn parse_query(raw: Option<&str>, now: i64) -> Result<Query, ApiError> {
    let p = Params::parse(raw)?;
    let start = p.int("start_time")?.unwrap_or(0);
    let end = p.int("end_time")?.unwrap_or(0);
    let limit = p.int("limit")?.unwrap_or(0);
    let kinds = p.envelope_types()?;
    let descending = p.bool("descending")?.unwrap_or(false);
    let name_filter = p.scalar("name_filter")?.unwrap_or_default();
    // Log Cache's checks, in its order.
    if end != 0 && start > end {
        return Err(ApiError::bad(format!(
            "StartTime ({start}) must be before EndTime ({end})"
        )));
    }
    if limit > MAX_LIMIT as i64 {
        return Err(ApiError::bad(format!(
            "limit ({limit}) must be {MAX_LIMIT} or less"
        )));
    }
    if limit < 0 {
        return Err(ApiError::bad(format!(
            "limit ({limit}) must be greater than zero"
        )));
    }
    let name_filter = if name_filter.is_empty() {
        None
    } else {
        Some(regex::Regex::new(name_filter).map_err(|e| {
            ApiError::bad(format!(
                "name filter must be a valid regular expression: {e}"
            ))
        })?)
    };
    Ok(Query {
        start,
        end: if end == 0 { now } else { end },
        kinds,
        limit: if limit == 0 {
            DEFAULT_LIMIT
        } else {
            limit as usize
        },
        descending,
        name_filter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(q: &str) -> String {
        parse_query(Some(q), 99).unwrap_err().message
    }

    #[test]
    fn defaults_and_log_cache_rules() {
        let q = parse_query(None, 99).unwrap();
        assert_eq!((q.start, q.end, q.limit, q.descending), (0, 99, 100, false));
        assert_eq!(q.kinds, Kinds::ALL);
        // end_time=0 is now, limit=0 the default.
        let q = parse_query(Some("end_time=0&limit=0"), 99).unwrap();
        assert_eq!((q.end, q.limit), (99, 100));
        // A start in the future is no error: the answer is empty.
        let q = parse_query(Some("start_time=500"), 99).unwrap();
        assert_eq!((q.start, q.end), (500, 99));
        // The cf CLI's start_time (Go's zero time, overflowed).
        let q = parse_query(
            Some("descending=true&envelope_types=LOG&limit=1000&start_time=-6795364578871345152"),
            99,
        )
        .unwrap();
        assert_eq!(
            (q.start, q.limit, q.descending),
            (-6795364578871345152, 1000, true)
        );
        assert!(q.kinds.contains(Kind::Log) && !q.kinds.contains(Kind::Gauge));
        assert_eq!(err("limit=1001"), "limit (1001) must be 1000 or less");
        assert_eq!(err("limit=-1"), "limit (-1) must be greater than zero");
        assert_eq!(
            err("start_time=10&end_time=5"),
            "StartTime (10) must be before EndTime (5)"
        );
        assert!(err("name_filter=(").starts_with("name filter must be a valid regular expression"));
    }

    #[test]
    fn fields_by_proto_or_json_name_and_unknown_ones_ignored() {
        let q = parse_query(
            Some("startTime=5&endTime=9&envelopeTypes=GAUGE&nameFilter=cpu&shard_id=x&selectors=y"),
            99,
        )
        .unwrap();
        assert_eq!((q.start, q.end), (5, 9));
        assert!(q.kinds.contains(Kind::Gauge) && !q.kinds.contains(Kind::Log));
        assert_eq!(q.name_filter.unwrap().as_str(), "cpu");
    }

    #[test]
    fn scalars_once_integers_and_booleans_as_go_parses_them() {
        assert_eq!(
            err("limit=1&limit=2"),
            "too many values for field \"limit\": 1, 2"
        );
        assert_eq!(
            err("start_time=1&startTime=2"),
            "too many values for field \"start_time\": 1, 2"
        );
        assert_eq!(
            err("limit=abc"),
            "parsing field \"limit\": strconv.ParseInt: parsing \"abc\": invalid syntax"
        );
        for bad in ["1.5", "1e9", "0x10", "", " 1"] {
            assert!(
                err(&format!("limit={bad}")).contains("invalid syntax"),
                "{bad}"
            );
        }
        assert!(err("start_time=99999999999999999999").ends_with("value out of range"));
        // `+` in a query is a space (as Go decodes it too); an encoded sign is fine.
        assert!(err("limit=+7").contains("invalid syntax"));
        assert_eq!(parse_query(Some("limit=%2B7"), 99).unwrap().limit, 7);
        for yes in ["1", "t", "T", "TRUE", "true", "True"] {
            assert!(
                parse_query(Some(&format!("descending={yes}")), 9)
                    .unwrap()
                    .descending
            );
        }
        for no in ["0", "f", "F", "FALSE", "false", "False"] {
            assert!(
                !parse_query(Some(&format!("descending={no}")), 9)
                    .unwrap()
                    .descending
            );
        }
        for bad in ["", "yes", "on", "tRUE"] {
            assert_eq!(
                err(&format!("descending={bad}")),
                format!(
                    "parsing field \"descending\": strconv.ParseBool: parsing {bad:?}: invalid syntax"
                )
            );
        }
        assert_eq!(
            err("limit=1;limit=2"),
            "invalid semicolon separator in query"
        );
    }

    #[test]
    fn envelope_types_by_name_or_number_one_per_parameter() {
        let q = parse_query(Some("envelope_types=1&envelope_types=GAUGE"), 9).unwrap();
        assert!(q.kinds.contains(Kind::Log) && q.kinds.contains(Kind::Gauge));
        assert!(!q.kinds.contains(Kind::Counter));
        assert_eq!(
            parse_query(Some("envelope_types=ANY"), 9).unwrap().kinds,
            Kinds::ALL
        );
        assert_eq!(
            parse_query(Some("envelope_types=0"), 9).unwrap().kinds,
            Kinds::ALL
        );
        for bad in ["log", "LOG,GAUGE", "9", "LOGS"] {
            assert_eq!(
                err(&format!("envelope_types={}", bad.replace(',', "%2C"))),
                format!("parsing list \"envelope_types\": {bad:?} is not a valid value")
            );
        }
    }
}
