//! InfluxDB v2 (`/api/v2/write`, line protocol) through the `influxdb2` crate, behind the
//! `influxdb` feature: that crate is unmaintained since 2024 and brings its own older HTTP
//! stack, so nothing else depends on it. Each sample is a point: measurement = metric
//! name, tags = labels, field `value`, millisecond timestamps.

use super::{BoxFuture, Sample, SendError, Sink};

/// Where to write.
#[derive(Debug, Clone)]
pub struct Config {
    /// Server URL.
    pub url: String,
    /// Organization.
    pub org: String,
    /// Bucket.
    pub bucket: String,
    /// Token (empty: no `Authorization` header).
    pub token: String,
}

/// An InfluxDB v2 sink.
pub struct Influx {
    config: Config,
    client: influxdb2::Client,
}

impl std::fmt::Debug for Influx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Influx")
            .field("url", &self.config.url)
            .field("org", &self.config.org)
            .field("bucket", &self.config.bucket)
            .finish_non_exhaustive()
    }
}

impl Influx {
    /// A sink for `config`.
    pub fn new(config: Config) -> Influx {
        let client = influxdb2::Client::new(&config.url, &config.org, &config.token);
        Influx { config, client }
    }
}

fn escape_key(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('=', "\\=")
        .replace(' ', "\\ ")
}

/// Line protocol for a batch (precision ms); NaN and infinities, which line protocol
/// cannot carry, are left out.
pub fn lines(batch: &[Sample]) -> String {
    let mut out = String::new();
    for s in batch {
        if !s.value.is_finite() {
            continue;
        }
        out.push_str(&escape_key(&s.key.name));
        for (k, v) in &s.key.labels {
            if !v.is_empty() {
                out.push(',');
                out.push_str(&escape_key(k));
                out.push('=');
                out.push_str(&escape_key(v));
            }
        }
        out.push_str(&format!(" value={} {}\n", s.value, s.ts));
    }
    out
}

impl Sink for Influx {
    fn name(&self) -> &'static str {
        "influxdb"
    }

    fn target(&self) -> String {
        format!(
            "{}?org={}&bucket={}",
            self.config.url, self.config.org, self.config.bucket
        )
    }

    fn send<'a>(&'a self, batch: &'a [Sample]) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let body = lines(batch);
            if body.is_empty() {
                return Ok(());
            }
            self.client
                .write_line_protocol_with_precision(
                    &self.config.org,
                    &self.config.bucket,
                    body,
                    influxdb2::api::write::TimestampPrecision::Milliseconds,
                )
                .await
                .map_err(|e| {
                    let retryable = match &e {
                        influxdb2::RequestError::Http { status, .. } => {
                            status.as_u16() >= 500 || status.as_u16() == 429
                        }
                        _ => true,
                    };
                    SendError {
                        retryable,
                        message: e.to_string(),
                    }
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::SeriesKey;

    #[test]
    fn line_protocol_escapes_and_skips_nan() {
        let key = Arc::new(SeriesKey {
            name: "cpu load".into(),
            labels: [("app", "a,b"), ("k=v", "x y"), ("empty", "")]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        });
        let batch = [
            Sample {
                key: Arc::clone(&key),
                ts: 5,
                value: 1.5,
            },
            Sample {
                key,
                ts: 6,
                value: f64::NAN,
            },
        ];
        assert_eq!(
            lines(&batch),
            "cpu\\ load,app=a\\,b,k\\=v=x\\ y value=1.5 5\n"
        );
    }
}
