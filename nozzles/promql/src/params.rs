//! Prometheus' HTTP parameters: times (float seconds or RFC 3339) and durations (float
//! seconds or `1h30m`), clamped so no later arithmetic on them can overflow.

use crate::{Error, MAX_DURATION_MS, MAX_TIME_MS};

/// Parses a Prometheus time parameter (float seconds or RFC 3339) into ms.
///
/// Times are clamped to ±[`MAX_TIME_MS`] (tens of millions of years), so no later
/// arithmetic on them can overflow.
pub fn parse_time(s: &str) -> Result<i64, Error> {
    let ms = if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
    {
        (secs * 1000.0).round() as i64
    } else {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp_millis())
            .map_err(|_| Error::BadData(format!("cannot parse {s:?} to a valid timestamp")))?
    };
    Ok(ms.clamp(-MAX_TIME_MS, MAX_TIME_MS))
}

/// Parses a step or duration parameter (float seconds or `15s`, `1m`, …) into ms.
pub fn parse_duration(s: &str) -> Result<i64, Error> {
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
    {
        return Ok(((secs * 1000.0).round() as i64).clamp(-MAX_DURATION_MS, MAX_DURATION_MS));
    }
    duration_units(s)
        .ok_or_else(|| Error::BadData(format!("cannot parse {s:?} to a valid duration")))
}

/// Prometheus' duration syntax (`1h30m`, `500ms`, `2w`: units in decreasing order, each at
/// most once) in ms, saturating at [`MAX_DURATION_MS`]. Written here rather than taken
/// from the PromQL parser, whose conversion panics on durations beyond `Duration`'s range.
fn duration_units(s: &str) -> Option<i64> {
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = s;
    let mut total: i64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().unwrap_or(i64::MAX);
        rest = &rest[digits..];
        // "ms" before "m", so match the longest unit first.
        let (i, (unit, ms)) = UNITS
            .iter()
            .enumerate()
            .skip(next_unit)
            .filter(|(_, (u, _))| rest.starts_with(u))
            .max_by_key(|(_, (u, _))| u.len())?;
        rest = &rest[unit.len()..];
        next_unit = i + 1;
        total = total.saturating_add(n.saturating_mul(*ms));
    }
    (!s.is_empty()).then_some(total.min(MAX_DURATION_MS))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value as Json, json};

    use super::*;
    use crate::render::{render, time_json};
    use crate::{Labels, Series, Value};

    #[test]
    fn durations_in_prometheus_syntax() {
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500);
        assert_eq!(parse_duration("1m500ms").unwrap(), 60_500);
        assert_eq!(parse_duration("2w").unwrap(), 14 * 86_400_000);
        assert_eq!(parse_duration("15").unwrap(), 15_000);
        assert_eq!(parse_duration("100000000y").unwrap(), MAX_DURATION_MS);
        for bad in ["", "m", "1x", "1m1h", "1m1m", "-5m", "1.5m", "5m "] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parameters_and_rendering() {
        assert_eq!(parse_time("1795315594.693").unwrap(), 1_795_315_594_693);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert!(parse_time("yesterday").is_err());
        assert_eq!(parse_duration("15").unwrap(), 15_000);
        assert_eq!(parse_duration("0.5").unwrap(), 500);
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000);
        assert!(parse_duration("soon").is_err());
        assert_eq!(time_json(4_000), json!(4));
        assert_eq!(time_json(1_500), json!(1.5));
        let parsed = |v: &Value| serde_json::from_slice::<Json>(&render(v)).unwrap();
        assert_eq!(
            parsed(&Value::Scalar(4_000, 2.0)),
            json!({"status": "success", "data": {"resultType": "scalar", "result": [4, "2"]}})
        );
        let labels = Arc::new(Labels::from([
            ("__name__".to_owned(), "cpu".to_owned()),
            ("job".to_owned(), "a \"b\"\n".to_owned()),
        ]));
        let matrix = Value::Matrix(vec![Series {
            labels: Arc::clone(&labels),
            points: vec![(1_500, 0.25), (3_000, f64::NAN), (4_000, f64::INFINITY)],
        }]);
        assert_eq!(
            parsed(&matrix),
            json!({"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {"__name__": "cpu", "job": "a \"b\"\n"},
                 "values": [[1.5, "0.25"], [3, "NaN"], [4, "+Inf"]]}]}})
        );
        let vector = Value::Vector(2_000, vec![(labels, -1e-7)]);
        assert_eq!(
            parsed(&vector),
            json!({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"__name__": "cpu", "job": "a \"b\"\n"}, "value": [2, "-0.0000001"]}]}})
        );
        assert_eq!(
            parsed(&Value::String(1_000, "x\"".into())),
            json!({"status": "success", "data": {"resultType": "string", "result": [1, "x\""]}})
        );
    }
}
