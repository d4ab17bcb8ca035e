//! Decoding what the log cache answers: protojson envelopes (`/api/v1/read`, `/v2/read`).
//! A read of 1,000 envelopes is decoded straight into envelopes, borrowing from the
//! response where it can; any other shape goes through `serde_json::Value`.

use std::borrow::Cow;
use std::collections::HashMap;

use hydrant_proto::v2::{Envelope, envelope::Message};
use serde::Deserialize;
use serde_json::Value;

/// Decodes a protojson envelope (as the read API and `/v2/read` write them).
pub fn from_json(v: &Value) -> Option<Envelope> {
    let num = |v: &Value| {
        v.as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .or_else(|| v.as_i64())
    };
    let mut env = Envelope {
        timestamp: num(&v["timestamp"]).unwrap_or(0),
        source_id: v["source_id"]
            .as_str()
            .or_else(|| v["sourceId"].as_str())
            .unwrap_or_default()
            .to_owned(),
        instance_id: v["instance_id"]
            .as_str()
            .or_else(|| v["instanceId"].as_str())
            .unwrap_or_default()
            .to_owned(),
        ..Envelope::default()
    };
    if let Some(tags) = v["tags"].as_object() {
        env.tags = tags
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
    }
    if let Some(log) = v.get("log") {
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::STANDARD
            .decode(log["payload"].as_str().unwrap_or(""))
            .ok()?;
        let ty = if log["type"] == "ERR" || log["type"] == 1 {
            1
        } else {
            0
        };
        env.message = Some(Message::Log(hydrant_proto::v2::Log {
            payload: payload.into(),
            r#type: ty,
        }));
    }
    Some(env)
}

/// A read's body: `{"envelopes": {"batch": [...]}}`.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default)]
    envelopes: Option<Batch<'a>>,
}

#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(borrow, default)]
    batch: Vec<Json<'a>>,
}

/// The fields of a protojson envelope that `hydrant logs` prints.
#[derive(Deserialize)]
struct Json<'a> {
    #[serde(default, deserialize_with = "int64")]
    timestamp: i64,
    #[serde(borrow, default, alias = "sourceId")]
    source_id: Cow<'a, str>,
    #[serde(borrow, default, alias = "instanceId")]
    instance_id: Cow<'a, str>,
    #[serde(borrow, default)]
    tags: HashMap<Cow<'a, str>, Cow<'a, str>>,
    #[serde(borrow, default)]
    log: Option<Log<'a>>,
}

#[derive(Deserialize)]
struct Log<'a> {
    #[serde(borrow, default)]
    payload: Cow<'a, str>,
    #[serde(default, rename = "type", deserialize_with = "log_type")]
    ty: i32,
}

/// protojson writes int64 as a string; a number is accepted too.
fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an int64 as a string or a number")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<i64, E> {
            s.parse().map_err(E::custom)
        }
        fn visit_i64<E>(self, n: i64) -> Result<i64, E> {
            Ok(n)
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<i64, E> {
            i64::try_from(n).map_err(E::custom)
        }
    }
    d.deserialize_any(V)
}

/// `"OUT"`/`"ERR"` (protojson) or 0/1.
fn log_type<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = i32;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("OUT, ERR, 0 or 1")
        }
        fn visit_str<E>(self, s: &str) -> Result<i32, E> {
            Ok(i32::from(s == "ERR"))
        }
        fn visit_i64<E>(self, n: i64) -> Result<i32, E> {
            Ok(i32::from(n == 1))
        }
        fn visit_u64<E>(self, n: u64) -> Result<i32, E> {
            Ok(i32::from(n == 1))
        }
    }
    d.deserialize_any(V)
}

impl Json<'_> {
    fn envelope(self) -> Option<Envelope> {
        use base64::Engine as _;
        let message = match self.log {
            Some(log) => {
                let payload = base64::engine::general_purpose::STANDARD
                    .decode(log.payload.as_bytes())
                    .ok()?;
                Some(Message::Log(hydrant_proto::v2::Log {
                    payload: payload.into(),
                    r#type: log.ty,
                }))
            }
            None => None,
        };
        Some(Envelope {
            timestamp: self.timestamp,
            source_id: self.source_id.into_owned(),
            instance_id: self.instance_id.into_owned(),
            tags: self
                .tags
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            message,
            ..Envelope::default()
        })
    }
}

/// The envelopes of a read's body. A body the typed decoder does not take (an odd field
/// type) is decoded through [`from_json`] instead, which skips what it cannot read.
pub(super) fn batch(bytes: &[u8]) -> Vec<Envelope> {
    match serde_json::from_slice::<Body<'_>>(bytes) {
        Ok(body) => body
            .envelopes
            .map(|b| b.batch)
            .unwrap_or_default()
            .into_iter()
            .filter_map(Json::envelope)
            .collect(),
        Err(_) => serde_json::from_slice::<Value>(bytes)
            .map(|v| {
                v["envelopes"]["batch"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(from_json)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(ts: i64, text: &str, err: bool) -> Envelope {
        let mut e = hydrant_proto::envelope::log("app", text.as_bytes().to_vec(), err);
        e.timestamp = ts;
        e.instance_id = "2".into();
        e.tags.insert("source_type".into(), "APP/PROC/WEB".into());
        e
    }

    #[test]
    fn both_decoders_read_protojson_back() {
        let envs = vec![log(42, "héllo \u{1} \"q\"", true), log(43, "plain", false)];
        let body = serde_json::json!({"envelopes": hydrant_proto::json::batch(&envs)});
        assert_eq!(batch(body.to_string().as_bytes()), envs);
        assert_eq!(
            from_json(&hydrant_proto::json::envelope(&envs[0])),
            Some(envs[0].clone())
        );
        // Numbers where protojson has strings, and an odd tag value: still read.
        let odd = r#"{"envelopes":{"batch":[{"timestamp":7,"source_id":"a","tags":{"n":1},"log":{"payload":"aGk=","type":1}}]}}"#;
        let got = batch(odd.as_bytes());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].timestamp, 7);
    }
}
