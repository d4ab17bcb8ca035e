//! Prometheus remote write 1.0: `WriteRequest` protobuf (hand-written, four messages),
//! snappy block compression, and the spec's headers. Each series' full label set is sent,
//! sorted by name, with `__name__`; samples of a series go in time order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;

use super::{BoxFuture, Sample, SendError, Sink, status};

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Sorted labels, `__name__` included.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples in time order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<WriteSample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, Message)]
pub struct WriteSample {
    /// Value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Builds the request for a batch.
pub fn request(batch: &[Sample]) -> WriteRequest {
    let mut index: HashMap<*const crate::model::SeriesKey, usize> = HashMap::new();
    let mut timeseries: Vec<TimeSeries> = Vec::new();
    for s in batch {
        let i = *index.entry(Arc::as_ptr(&s.key)).or_insert_with(|| {
            let mut labels: Vec<Label> = s
                .key
                .labels
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| Label {
                    name: k.clone(),
                    value: v.clone(),
                })
                .collect();
            labels.push(Label {
                name: "__name__".into(),
                value: s.key.name.clone(),
            });
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            timeseries.push(TimeSeries {
                labels,
                samples: Vec::new(),
            });
            timeseries.len() - 1
        });
        timeseries[i].samples.push(WriteSample {
            value: s.value,
            timestamp: s.ts,
        });
    }
    for ts in &mut timeseries {
        ts.samples.sort_by_key(|s| s.timestamp);
    }
    WriteRequest { timeseries }
}

/// A remote-write endpoint.
#[derive(Debug)]
pub struct RemoteWrite {
    url: String,
    http: reqwest::Client,
}

impl RemoteWrite {
    /// A sink posting to `url` (e.g. `http://prometheus:9090/api/v1/write`).
    pub fn new(url: &str) -> RemoteWrite {
        RemoteWrite {
            url: url.to_owned(),
            http: hydrant_runtime::https::plain_builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_else(|_| hydrant_runtime::https::plain_client()),
        }
    }
}

impl Sink for RemoteWrite {
    fn name(&self) -> &'static str {
        "remote_write"
    }

    fn target(&self) -> String {
        self.url.clone()
    }

    fn send<'a>(&'a self, batch: &'a [Sample]) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let body = request(batch).encode_to_vec();
            let compressed =
                snap::raw::Encoder::new()
                    .compress_vec(&body)
                    .map_err(|e| SendError {
                        retryable: false,
                        message: format!("snappy: {e}"),
                    })?;
            let resp = self
                .http
                .post(&self.url)
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("User-Agent", concat!("hydrant/", env!("CARGO_PKG_VERSION")))
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(compressed)
                .send()
                .await
                .map_err(|e| SendError {
                    retryable: true,
                    message: e.to_string(),
                })?;
            let code = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            status(code, &text)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SeriesKey;

    #[test]
    fn series_grouped_labels_sorted_samples_in_order() {
        let key = Arc::new(SeriesKey {
            name: "cpu".into(),
            labels: [("source_id", "a"), ("Zone", "z"), ("empty", "")]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        });
        let other = Arc::new(SeriesKey {
            name: "mem".into(),
            labels: Default::default(),
        });
        let batch = [
            Sample {
                key: Arc::clone(&key),
                ts: 2,
                value: 2.0,
            },
            Sample {
                key: Arc::clone(&other),
                ts: 1,
                value: 9.0,
            },
            Sample {
                key,
                ts: 1,
                value: 1.0,
            },
        ];
        let req = request(&batch);
        assert_eq!(req.timeseries.len(), 2);
        let names: Vec<&str> = req.timeseries[0]
            .labels
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["Zone", "__name__", "source_id"],
            "sorted bytewise, empty values left out"
        );
        let ts: Vec<i64> = req.timeseries[0]
            .samples
            .iter()
            .map(|s| s.timestamp)
            .collect();
        assert_eq!(ts, [1, 2]);
        let encoded = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&encoded).unwrap();
        assert_eq!(WriteRequest::decode(&*raw).unwrap(), req);
    }
}
