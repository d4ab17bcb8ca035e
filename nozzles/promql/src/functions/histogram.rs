//! `histogram_quantile` over classic (`le`-labelled) buckets, as Prometheus'
//! `bucketQuantile`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Labels;
use crate::eval::Sample;

/// Prometheus' `bucketQuantile` over each group of `le` buckets (a group: the labels
/// but `le`, per metric name, so two histograms with the same labels stay apart).
pub(crate) fn quantile(q: f64, v: Vec<Sample>) -> Vec<Sample> {
    let mut groups: BTreeMap<(Labels, String), Vec<(f64, f64)>> = BTreeMap::new();
    for s in v {
        let Some(le) = s.labels.get("le") else {
            continue;
        };
        let upper = match le.as_str() {
            "+Inf" | "Inf" | "+inf" | "inf" => f64::INFINITY,
            other => match other.parse::<f64>() {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        let mut labels = (*s.labels).clone();
        labels.remove("le");
        let name = labels.remove("__name__").unwrap_or_default();
        groups
            .entry((labels, name))
            .or_default()
            .push((upper, s.value));
    }
    groups
        .into_iter()
        .map(|((labels, _), mut buckets)| Sample {
            labels: Arc::new(labels),
            value: bucket_quantile(q, &mut buckets),
        })
        .collect()
}

fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Merge equal bounds, and make counts monotonic.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for (le, count) in buckets.iter().copied() {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += count,
            _ => merged.push((le, count)),
        }
    }
    for i in 1..merged.len() {
        if merged[i].1 < merged[i - 1].1 {
            merged[i].1 = merged[i - 1].1;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = merged
        .iter()
        .position(|(_, c)| *c >= rank)
        .unwrap_or(merged.len() - 1);
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (start, prev) = if b == 0 {
        (0.0, 0.0)
    } else {
        (merged[b - 1].0, merged[b - 1].1)
    };
    let end = merged[b].0;
    let count = merged[b].1 - prev;
    rank -= prev;
    start + (end - start) * (rank / count)
}
