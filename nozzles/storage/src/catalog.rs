//! The series catalog: series ids, their names and labels, and an inverted index
//! (name → ids, label=value → ids) for selectors. Guards cardinality: each metric name may
//! hold at most `max_series_per_metric` series; samples of further new series are refused
//! and counted, so a label explosion costs a counter, never the process.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use promql_parser::label::{MatchOp, Matcher};

use crate::model::SeriesKey;

/// A series id: dense, assigned in order of first sight, stable across restarts.
pub type SeriesId = u64;

/// Default cap on series per metric name.
pub const DEFAULT_MAX_SERIES_PER_METRIC: usize = 100_000;

/// A new series was refused: its metric is at the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// The catalog.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Looked up for every sample ingested, so hashed with foldhash (seeded at random per
    /// map, like the std hasher, and several times cheaper than SipHash on these keys).
    ids: HashMap<Arc<SeriesKey>, SeriesId, foldhash::fast::RandomState>,
    keys: Vec<Arc<SeriesKey>>,
    by_name: HashMap<String, Vec<SeriesId>>,
    postings: HashMap<String, HashMap<String, Vec<SeriesId>>>,
    max_per_metric: usize,
    /// Refused new series per metric name.
    pub overflow: BTreeMap<String, u64>,
}

impl Catalog {
    /// An empty catalog with a per-metric cap.
    pub fn new(max_per_metric: usize) -> Catalog {
        Catalog {
            max_per_metric,
            ..Catalog::default()
        }
    }

    /// Series held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no series.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The id of `key`, if known.
    pub fn id(&self, key: &SeriesKey) -> Option<SeriesId> {
        self.ids.get(key).copied()
    }

    /// The id of `key`, adding it when new (`Ok((id, true))`), or `Err(Overflow)` when its
    /// metric is at the cap.
    pub fn get_or_insert(&mut self, key: &SeriesKey) -> Result<(SeriesId, bool), Overflow> {
        if let Some(id) = self.ids.get(key) {
            return Ok((*id, false));
        }
        let count = self.by_name.get(&key.name).map_or(0, Vec::len);
        if count >= self.max_per_metric {
            *self.overflow.entry(key.name.clone()).or_default() += 1;
            return Err(Overflow);
        }
        Ok((self.insert(key.clone()), true))
    }

    /// Adds a series with the next id (also used when loading a persisted catalog, in
    /// id order).
    pub fn insert(&mut self, key: SeriesKey) -> SeriesId {
        let id = self.keys.len() as SeriesId;
        let key = Arc::new(key);
        self.by_name.entry(key.name.clone()).or_default().push(id);
        for (k, v) in &key.labels {
            self.postings
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default()
                .push(id);
        }
        self.ids.insert(Arc::clone(&key), id);
        self.keys.push(key);
        id
    }

    /// Forgets every series from id `len` on: the new series of a batch whose catalog
    /// write failed, so their ids are given again to whatever comes next (they were never
    /// acknowledged, nor written anywhere).
    pub fn rollback(&mut self, len: usize) {
        while self.keys.len() > len {
            let Some(key) = self.keys.pop() else { break };
            let id = self.keys.len() as SeriesId;
            self.ids.remove(&key);
            if let Some(ids) = self.by_name.get_mut(&key.name) {
                ids.retain(|&i| i != id);
                if ids.is_empty() {
                    self.by_name.remove(&key.name);
                }
            }
            for (k, v) in &key.labels {
                if let Some(values) = self.postings.get_mut(k) {
                    if let Some(ids) = values.get_mut(v) {
                        ids.retain(|&i| i != id);
                        if ids.is_empty() {
                            values.remove(v);
                        }
                    }
                    if values.is_empty() {
                        self.postings.remove(k);
                    }
                }
            }
        }
    }

    /// The key of a series, shared.
    pub fn key_arc(&self, id: SeriesId) -> Arc<SeriesKey> {
        Arc::clone(&self.keys[id as usize])
    }

    /// The key of a series.
    pub fn key(&self, id: SeriesId) -> &SeriesKey {
        &self.keys[id as usize]
    }

    /// A label's value on a series (`__name__` is the name; absent labels are "").
    pub fn label<'a>(&'a self, id: SeriesId, name: &str) -> &'a str {
        let key = self.key(id);
        if name == "__name__" {
            return &key.name;
        }
        key.labels.get(name).map_or("", String::as_str)
    }

    /// Series matching every matcher (Prometheus semantics: an absent label is "").
    pub fn select(&self, matchers: &[Matcher]) -> Vec<SeriesId> {
        // Start from the smallest equality posting list, else every series.
        let mut candidates: Option<&[SeriesId]> = None;
        for m in matchers {
            if !matches!(m.op, MatchOp::Equal) || m.value.is_empty() {
                continue;
            }
            let list: &[SeriesId] = if m.name == "__name__" {
                self.by_name.get(&m.value).map_or(&[], Vec::as_slice)
            } else {
                self.postings
                    .get(&m.name)
                    .and_then(|vals| vals.get(&m.value))
                    .map_or(&[], Vec::as_slice)
            };
            if candidates.is_none_or(|c| list.len() < c.len()) {
                candidates = Some(list);
            }
        }
        let check = |id: SeriesId| matchers.iter().all(|m| m.is_match(self.label(id, &m.name)));
        match candidates {
            Some(list) => list.iter().copied().filter(|id| check(*id)).collect(),
            None => (0..self.keys.len() as SeriesId)
                .filter(|id| check(*id))
                .collect(),
        }
    }

    /// Label names over `ids` (every series when `None`), `__name__` included.
    pub fn label_names(&self, ids: Option<&[SeriesId]>) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        match ids {
            None => {
                if !self.keys.is_empty() {
                    out.insert("__name__".to_owned());
                }
                out.extend(self.postings.keys().cloned());
            }
            Some(ids) => {
                // Borrowed while collecting: one allocation per distinct name.
                let mut names: BTreeSet<&str> = BTreeSet::new();
                if !ids.is_empty() {
                    names.insert("__name__");
                }
                for id in ids {
                    names.extend(self.key(*id).labels.keys().map(String::as_str));
                }
                out.extend(names.into_iter().map(str::to_owned));
            }
        }
        out
    }

    /// Values of label `name` over `ids` (every series when `None`).
    pub fn label_values(&self, name: &str, ids: Option<&[SeriesId]>) -> BTreeSet<String> {
        match ids {
            None if name == "__name__" => self.by_name.keys().cloned().collect(),
            None => self
                .postings
                .get(name)
                .map(|v| v.keys().cloned().collect())
                .unwrap_or_default(),
            Some(ids) => ids
                .iter()
                .map(|id| self.label(*id, name))
                .filter(|v| !v.is_empty())
                .collect::<BTreeSet<&str>>()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, labels: &[(&str, &str)]) -> SeriesKey {
        SeriesKey {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn matchers(selector: &str) -> Vec<Matcher> {
        match promql_parser::parser::parse(selector).unwrap() {
            promql_parser::parser::Expr::VectorSelector(vs) => {
                let mut m = vs.matchers.matchers.clone();
                if let Some(n) = vs.name {
                    m.push(Matcher::new(MatchOp::Equal, "__name__", &n));
                }
                m
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn selects_with_every_matcher_kind() {
        let mut c = Catalog::new(10);
        let a = c
            .get_or_insert(&key("cpu", &[("app", "web"), ("i", "0")]))
            .unwrap()
            .0;
        let b = c
            .get_or_insert(&key("cpu", &[("app", "api"), ("i", "0")]))
            .unwrap()
            .0;
        let d = c.get_or_insert(&key("cpu", &[("i", "1")])).unwrap().0;
        let m = c
            .get_or_insert(&key("memory", &[("app", "web")]))
            .unwrap()
            .0;
        assert_eq!(
            c.get_or_insert(&key("cpu", &[("app", "web"), ("i", "0")])),
            Ok((a, false))
        );
        assert_eq!(c.select(&matchers("cpu")), [a, b, d]);
        assert_eq!(c.select(&matchers(r#"cpu{app="web"}"#)), [a]);
        assert_eq!(
            c.select(&matchers(r#"cpu{app!="web"}"#)),
            [b, d],
            "absent is \"\""
        );
        assert_eq!(c.select(&matchers(r#"cpu{app=~"w.*|api"}"#)), [a, b]);
        assert_eq!(c.select(&matchers(r#"cpu{app!~"w.*"}"#)), [b, d]);
        assert_eq!(c.select(&matchers(r#"cpu{app=""}"#)), [d]);
        assert_eq!(c.select(&matchers(r#"{app="web"}"#)), [a, m]);
        assert_eq!(c.select(&matchers(r#"{__name__=~"mem.*"}"#)), [m]);
        assert!(c.select(&matchers("nothing")).is_empty());
        assert_eq!(
            c.label_names(None).into_iter().collect::<Vec<_>>(),
            ["__name__", "app", "i"]
        );
        assert_eq!(
            c.label_values("app", Some(&[a, d]))
                .into_iter()
                .collect::<Vec<_>>(),
            ["web"]
        );
        assert_eq!(
            c.label_values("__name__", None)
                .into_iter()
                .collect::<Vec<_>>(),
            ["cpu", "memory"]
        );
    }

    #[test]
    fn cardinality_is_capped_per_metric_and_counted() {
        let mut c = Catalog::new(2);
        for i in 0..5 {
            let r = c.get_or_insert(&key("req", &[("id", &i.to_string())]));
            assert_eq!(r.is_ok(), i < 2, "{i}");
        }
        assert!(
            c.get_or_insert(&key("other", &[])).is_ok(),
            "other metrics are unaffected"
        );
        assert_eq!(c.overflow.get("req"), Some(&3));
        assert_eq!(c.len(), 3);
    }
}
