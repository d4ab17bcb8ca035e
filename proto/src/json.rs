//! Loggregator's JSON conventions for envelopes (protojson with proto field names):
//! snake_case keys, 64-bit integers as strings, `payload` as base64, enum values by name.
//! Every field of the set message is emitted, populated or not, as the RLP gateway does.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::v2::{self, Envelope, envelope::Message};

/// One envelope as a protojson object.
pub fn envelope(env: &Envelope) -> Value {
    let mut obj = Map::new();
    obj.insert("timestamp".into(), json!(env.timestamp.to_string()));
    obj.insert("source_id".into(), json!(env.source_id));
    obj.insert("instance_id".into(), json!(env.instance_id));
    let deprecated: Map<String, Value> = env
        .deprecated_tags
        .iter()
        .map(|(k, v)| (k.clone(), value(v)))
        .collect();
    obj.insert("deprecated_tags".into(), Value::Object(deprecated));
    let tags: Map<String, Value> = env
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    obj.insert("tags".into(), Value::Object(tags));
    if let Some((name, body)) = env.message.as_ref().map(message) {
        obj.insert(name.into(), body);
    }
    Value::Object(obj)
}

/// A batch as `{"batch":[…]}`.
pub fn batch(envelopes: &[Envelope]) -> Value {
    json!({ "batch": envelopes.iter().map(envelope).collect::<Vec<_>>() })
}

fn value(v: &v2::Value) -> Value {
    match &v.data {
        Some(v2::value::Data::Text(s)) => json!({ "text": s }),
        Some(v2::value::Data::Integer(i)) => json!({ "integer": i.to_string() }),
        Some(v2::value::Data::Decimal(d)) => json!({ "decimal": float(*d) }),
        None => json!({}),
    }
}

/// protojson writes non-finite doubles as the strings "NaN", "Infinity", "-Infinity".
fn float(d: f64) -> Value {
    if d.is_nan() {
        json!("NaN")
    } else if d.is_infinite() {
        json!(if d > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        json!(d)
    }
}

fn message(m: &Message) -> (&'static str, Value) {
    match m {
        Message::Log(l) => {
            let ty = v2::log::Type::try_from(l.r#type)
                .map(|t| json!(t.as_str_name()))
                .unwrap_or_else(|_| json!(l.r#type));
            let payload = base64::engine::general_purpose::STANDARD.encode(&l.payload);
            ("log", json!({ "payload": payload, "type": ty }))
        }
        Message::Counter(c) => (
            "counter",
            json!({ "name": c.name, "delta": c.delta.to_string(), "total": c.total.to_string() }),
        ),
        Message::Gauge(g) => {
            let metrics: Map<String, Value> = g
                .metrics
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        json!({ "unit": v.unit, "value": float(v.value) }),
                    )
                })
                .collect();
            ("gauge", json!({ "metrics": metrics }))
        }
        Message::Timer(t) => (
            "timer",
            json!({ "name": t.name, "start": t.start.to_string(), "stop": t.stop.to_string() }),
        ),
        Message::Event(e) => ("event", json!({ "title": e.title, "body": e.body })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope;

    #[test]
    fn follows_loggregator_conventions() {
        let mut log = envelope::log("app-guid", "hello\n", true);
        log.timestamp = 1532030745755909241;
        log.instance_id = "0".into();
        log.tags.insert("source_type".into(), "APP/PROC/WEB".into());
        assert_eq!(
            envelope(&log).to_string(),
            r#"{"deprecated_tags":{},"instance_id":"0","log":{"payload":"aGVsbG8K","type":"ERR"},"source_id":"app-guid","tags":{"source_type":"APP/PROC/WEB"},"timestamp":"1532030745755909241"}"#
        );
        let mut c = envelope::counter("doppler", "ingress", 9);
        c.timestamp = 1;
        if let Some(Message::Counter(counter)) = &mut c.message {
            counter.total = u64::MAX;
        }
        let v = envelope(&c);
        assert_eq!(v["counter"]["delta"], "9");
        assert_eq!(v["counter"]["total"], "18446744073709551615");
        let g = envelope::gauge("x", [("cpu", f64::NAN, "percentage")]);
        assert_eq!(envelope(&g)["gauge"]["metrics"]["cpu"]["value"], "NaN");
        let mut t = envelope::timer("x", "http", -5, 10);
        t.deprecated_tags.insert(
            "n".into(),
            v2::Value {
                data: Some(v2::value::Data::Integer(-3)),
            },
        );
        let v = envelope(&t);
        assert_eq!(
            (v["timer"]["start"].as_str(), v["timer"]["stop"].as_str()),
            (Some("-5"), Some("10"))
        );
        assert_eq!(v["deprecated_tags"]["n"]["integer"], "-3");
    }
}

/// Writes `s` as a JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Writes string pairs as a JSON object, in the order given.
pub fn write_str_map<K, V>(out: &mut Vec<u8>, pairs: impl IntoIterator<Item = (K, V)>)
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    out.push(b'{');
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k.as_ref());
        out.push(b':');
        write_str(out, v.as_ref());
    }
    out.push(b'}');
}

/// Writes one envelope as protojson straight into `out`: the same document as
/// [`envelope`], without building a `Value` tree (reads of a thousand envelopes are this
/// loop).
pub fn write_envelope(env: &Envelope, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let string = write_str;
    let _ = write!(out, "{{\"timestamp\":\"{}\",\"source_id\":", env.timestamp);
    string(out, &env.source_id);
    out.extend_from_slice(b",\"instance_id\":");
    string(out, &env.instance_id);
    out.extend_from_slice(b",\"deprecated_tags\":{");
    for (i, (k, v)) in env.deprecated_tags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, k);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, &value(v));
    }
    out.extend_from_slice(b"},\"tags\":");
    write_str_map(out, &env.tags);
    match &env.message {
        Some(Message::Log(l)) => {
            out.extend_from_slice(b",\"log\":{\"payload\":\"");
            let mut encoded = String::new();
            base64::engine::general_purpose::STANDARD.encode_string(&l.payload, &mut encoded);
            out.extend_from_slice(encoded.as_bytes());
            out.extend_from_slice(b"\",\"type\":");
            match v2::log::Type::try_from(l.r#type) {
                Ok(t) => string(out, t.as_str_name()),
                Err(_) => {
                    let _ = write!(out, "{}", l.r#type);
                }
            }
            out.push(b'}');
        }
        Some(m) => {
            let (name, body) = message(m);
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            let _ = serde_json::to_writer(&mut *out, &body);
        }
        None => {}
    }
    out.push(b'}');
}

#[cfg(test)]
mod writer_tests {
    use super::*;
    use crate::envelope as build;

    #[test]
    fn the_direct_writer_matches_the_value_rendering() {
        let mut log = build::log("app \"quoted\"", vec![0xff, b'\n', b'x'], true);
        log.tags.insert("k\u{1}".into(), "v\\".into());
        log.deprecated_tags.insert(
            "d".into(),
            v2::Value {
                data: Some(v2::value::Data::Decimal(f64::NAN)),
            },
        );
        let samples = [
            log,
            build::counter("c", "n", 3),
            build::gauge(
                "g",
                [("cpu", 1.5, "percentage"), ("inf", f64::INFINITY, "")],
            ),
            build::timer("t", "http", -1, 2),
            build::event("e", "title", "body"),
            Envelope::default(),
        ];
        for env in &samples {
            let mut out = Vec::new();
            write_envelope(env, &mut out);
            let parsed: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(parsed, envelope(env), "{}", String::from_utf8_lossy(&out));
        }
    }
}
