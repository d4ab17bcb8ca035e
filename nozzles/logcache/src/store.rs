//! The cache: per source id, the most recent envelopes of every type in timestamp order.
//! Pure (no I/O, no clock): the caller supplies envelopes and queries.
//!
//! Bounds:
//! - at most `max_per_source` envelopes per source: the source's oldest goes first;
//! - a global memory budget. Past it, the store evicts the globally oldest envelopes of
//!   the sources using more than their fair share (budget ÷ sources). A noisy source
//!   therefore pays for its own flood, and quiet sources keep their history.
//!
//! Memory per envelope is its message bytes plus a fixed 48 bytes. The header (source id,
//! instance id, tags) is interned per source ([`headers`]).

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use hydrant_proto::raw::{Kind, RawEnvelope};
use hydrant_proto::v2::{Envelope, envelope::Message};
use prost::Message as _;
use prost::encoding::{DecodeContext, decode_key, skip_field};

mod headers;

use headers::Headers;

/// Fixed cost of one cached envelope: the entry (32 bytes) and its heap allocation header.
pub const ENTRY_OVERHEAD: usize = 48;

/// After a memory prune, usage is brought this far below the budget, so pruning happens in
/// rounds rather than on every insert.
const PRUNE_TO: f64 = 0.95;

/// Store bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Envelopes per source.
    pub max_per_source: usize,
    /// Bytes for everything.
    pub memory_bytes: usize,
}

/// A set of envelope kinds (bit per [`Kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds(u8);

impl Kinds {
    /// Every kind.
    pub const ALL: Kinds = Kinds(0b11111);

    fn bit(kind: Kind) -> u8 {
        match kind {
            Kind::Log => 1,
            Kind::Counter => 2,
            Kind::Gauge => 4,
            Kind::Timer => 8,
            Kind::Event => 16,
            Kind::None => 0,
        }
    }

    /// The empty set.
    pub fn none() -> Kinds {
        Kinds(0)
    }

    /// Adds a kind.
    pub fn with(self, kind: Kind) -> Kinds {
        Kinds(self.0 | Kinds::bit(kind))
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: Kind) -> bool {
        self.0 & Kinds::bit(kind) != 0
    }
}

#[derive(Debug)]
struct Entry {
    timestamp: i64,
    header: u32,
    kind: Kind,
    /// The envelope's message field, encoded (key, length and body).
    body: Box<[u8]>,
}

impl Entry {
    fn cost(&self) -> usize {
        ENTRY_OVERHEAD + self.body.len()
    }
}

#[derive(Debug, Default)]
struct Source {
    entries: VecDeque<Entry>,
    headers: Headers,
    expired: u64,
    bytes: usize,
    app_name: Option<String>,
}

impl Source {
    fn cost(&self) -> usize {
        self.bytes + self.headers.bytes
    }

    fn evict_oldest(&mut self) -> usize {
        let Some(e) = self.entries.pop_front() else {
            return 0;
        };
        self.headers.release(e.header);
        self.bytes -= e.cost();
        self.expired += 1;
        e.cost()
    }
}

/// What [`Store::meta`] reports per source (Log Cache's `meta`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Envelopes held.
    pub count: u64,
    /// Envelopes evicted so far.
    pub expired: u64,
    /// Oldest timestamp held.
    pub oldest_timestamp: i64,
    /// Newest timestamp held.
    pub newest_timestamp: i64,
}

/// A validated read (Log Cache's `Read`).
#[derive(Debug, Clone)]
pub struct Query {
    /// Inclusive, UNIX ns.
    pub start: i64,
    /// Exclusive, UNIX ns.
    pub end: i64,
    /// Kinds to return.
    pub kinds: Kinds,
    /// At most this many.
    pub limit: usize,
    /// Newest first.
    pub descending: bool,
    /// Keep only counters/timers whose name, and gauge metrics whose key, match; drops logs
    /// and events.
    pub name_filter: Option<regex::Regex>,
}

/// An envelope copied out of the store, decoded outside its lock by [`Found::into_envelope`].
#[derive(Debug, Clone)]
pub struct Found {
    header: Arc<[u8]>,
    timestamp: i64,
    body: Box<[u8]>,
}

impl Found {
    /// Its timestamp.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The full envelope.
    pub fn into_envelope(self) -> Envelope {
        // Header and body are the envelope's own fields; concatenated they decode as one.
        let mut bytes = Vec::with_capacity(self.header.len() + self.body.len());
        bytes.extend_from_slice(&self.header);
        bytes.extend_from_slice(&self.body);
        let mut env = Envelope::decode(&bytes[..]).unwrap_or_default();
        env.timestamp = self.timestamp;
        env
    }
}

/// Counters of the store.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Envelopes stored.
    pub ingested: u64,
    /// Evicted because their source was full.
    pub evicted_per_source: u64,
    /// Evicted for the memory budget.
    pub evicted_memory: u64,
    /// Envelopes refused (no source id).
    pub refused: u64,
}

/// The cache.
#[derive(Debug)]
pub struct Store {
    sources: HashMap<String, Source>,
    bytes: usize,
    limits: Limits,
    /// Counters.
    pub stats: Stats,
}

/// Splits an encoded envelope into its header (everything but timestamp and message) and
/// its message field. Borrowed when each part is one contiguous run of fields, as it is for
/// envelopes encoded in field order; copied otherwise.
fn split(bytes: &[u8]) -> (Cow<'_, [u8]>, Cow<'_, [u8]>) {
    let (mut header, mut body) = (Part::default(), Part::default());
    let mut buf = bytes;
    while !buf.is_empty() {
        let start = bytes.len() - buf.len();
        // Validated when parsed, so these cannot fail; stop if they do.
        let Ok((tag, wire)) = decode_key(&mut buf) else {
            break;
        };
        if skip_field(wire, tag, &mut buf, DecodeContext::default()).is_err() {
            break;
        }
        let range = start..bytes.len() - buf.len();
        match tag {
            1 => {}
            4 | 5 | 6 | 7 | 10 => body.add(bytes, range),
            _ => header.add(bytes, range),
        }
    }
    (header.into_cow(bytes), body.into_cow(bytes))
}

/// Byte ranges of one part of an envelope: a single run while fields are adjacent.
#[derive(Default)]
struct Part {
    run: Option<std::ops::Range<usize>>,
    copied: Option<Vec<u8>>,
}

impl Part {
    fn add(&mut self, bytes: &[u8], r: std::ops::Range<usize>) {
        if let Some(copy) = &mut self.copied {
            copy.extend_from_slice(&bytes[r]);
            return;
        }
        match &mut self.run {
            None => self.run = Some(r),
            Some(run) if run.end == r.start => run.end = r.end,
            Some(run) => {
                let mut copy = bytes[run.clone()].to_vec();
                copy.extend_from_slice(&bytes[r]);
                self.copied = Some(copy);
            }
        }
    }

    fn into_cow(self, bytes: &[u8]) -> Cow<'_, [u8]> {
        match (self.copied, self.run) {
            (Some(c), _) => Cow::Owned(c),
            (None, Some(r)) => Cow::Borrowed(&bytes[r]),
            (None, None) => Cow::Borrowed(&[]),
        }
    }
}

impl Store {
    /// An empty store.
    pub fn new(limits: Limits) -> Store {
        Store {
            sources: HashMap::new(),
            bytes: 0,
            limits,
            stats: Stats::default(),
        }
    }

    /// Bytes used (estimated as described in the module docs).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Envelopes held.
    pub fn len(&self) -> usize {
        self.sources.values().map(|s| s.entries.len()).sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.sources.values().all(|s| s.entries.is_empty())
    }

    /// Sources held.
    pub fn source_count(&self) -> usize {
        self.sources.len()
    }

    /// Stores a batch, then enforces the memory budget.
    pub fn insert_all<'a>(&mut self, batch: impl IntoIterator<Item = &'a RawEnvelope>) {
        for env in batch {
            self.insert(env);
        }
        if self.bytes > self.limits.memory_bytes {
            self.prune();
        }
    }

    fn insert(&mut self, raw: &RawEnvelope) {
        if raw.source_id().is_empty() {
            self.stats.refused += 1;
            return;
        }
        let (header, body) = split(raw.bytes());
        let source = match self.sources.get_mut(raw.source_id()) {
            Some(s) => s,
            None => self.sources.entry(raw.source_id().to_owned()).or_default(),
        };
        let before = source.cost();
        let header_id = source.headers.intern(&header);
        if source.app_name.is_none() {
            source.app_name = raw.tag("app_name").map(str::to_owned);
        }
        let entry = Entry {
            timestamp: raw.timestamp(),
            header: header_id,
            kind: raw.kind(),
            body: Box::from(&*body),
        };
        source.bytes += entry.cost();
        // Arrivals are almost always in order; a late one is placed by binary search.
        if source
            .entries
            .back()
            .is_none_or(|b| b.timestamp <= entry.timestamp)
        {
            source.entries.push_back(entry);
        } else {
            let at = source
                .entries
                .partition_point(|e| e.timestamp <= entry.timestamp);
            source.entries.insert(at, entry);
        }
        self.stats.ingested += 1;
        if source.entries.len() > self.limits.max_per_source {
            source.evict_oldest();
            self.stats.evicted_per_source += 1;
        }
        self.bytes = self.bytes + source.cost() - before;
    }

    /// Evicts the globally oldest envelopes of the sources above their fair share until
    /// usage is below the budget.
    fn prune(&mut self) {
        let target = (self.limits.memory_bytes as f64 * PRUNE_TO) as usize;
        let fair = self.limits.memory_bytes / self.sources.len().max(1);
        let mut heap: BinaryHeap<Reverse<(i64, String)>> = self
            .sources
            .iter()
            .filter(|(_, s)| s.cost() > fair)
            .filter_map(|(id, s)| {
                s.entries
                    .front()
                    .map(|e| Reverse((e.timestamp, id.clone())))
            })
            .collect();
        while self.bytes > target {
            let Some(Reverse((_, id))) = heap.pop() else {
                break;
            };
            let Some(source) = self.sources.get_mut(&id) else {
                continue;
            };
            let before = source.cost();
            source.evict_oldest();
            self.stats.evicted_memory += 1;
            self.bytes = self.bytes + source.cost() - before;
            if source.cost() > fair
                && let Some(e) = source.entries.front()
            {
                heap.push(Reverse((e.timestamp, id)));
            }
        }
        // Sources emptied by pruning are forgotten, so churning source ids cannot grow the map.
        self.sources.retain(|_, s| !s.entries.is_empty());
    }

    /// The envelopes of `source_id` matching `q`, copied out for decoding.
    pub fn read(&self, source_id: &str, q: &Query) -> Vec<Found> {
        let Some(source) = self.sources.get(source_id) else {
            return Vec::new();
        };
        let lo = source.entries.partition_point(|e| e.timestamp < q.start);
        let hi = source.entries.partition_point(|e| e.timestamp < q.end);
        if lo >= hi {
            return Vec::new();
        }
        let range = source.entries.range(lo..hi);
        let wanted = |e: &&Entry| {
            q.kinds.contains(e.kind)
                && (q.name_filter.is_none() || !matches!(e.kind, Kind::Log | Kind::Event))
        };
        let copy = |e: &Entry| {
            source.headers.get(e.header).map(|h| Found {
                header: Arc::clone(h),
                timestamp: e.timestamp,
                body: e.body.clone(),
            })
        };
        // The name filter needs the decoded message, so it is applied after copying; walk
        // until `limit` envelopes pass it.
        let mut out = Vec::new();
        let mut push = |e: &Entry| {
            if let Some(found) = copy(e).and_then(|f| apply_name_filter(f, q.name_filter.as_ref()))
            {
                out.push(found);
            }
            out.len() >= q.limit
        };
        if q.descending {
            for e in range.rev().filter(wanted) {
                if push(e) {
                    break;
                }
            }
        } else {
            for e in range.filter(wanted) {
                if push(e) {
                    break;
                }
            }
        }
        out
    }

    /// Per-source meta, for every source or only those `visible` allows.
    pub fn meta(&self, visible: impl Fn(&str, Option<&str>) -> bool) -> Vec<(String, Meta)> {
        let mut out: Vec<(String, Meta)> = self
            .sources
            .iter()
            .filter(|(id, s)| visible(id, s.app_name.as_deref()))
            .map(|(id, s)| {
                let meta = Meta {
                    count: s.entries.len() as u64,
                    expired: s.expired,
                    oldest_timestamp: s.entries.front().map_or(0, |e| e.timestamp),
                    newest_timestamp: s.entries.back().map_or(0, |e| e.timestamp),
                };
                (id.clone(), meta)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Whether the cache holds envelopes of `source_id`.
    pub fn contains(&self, source_id: &str) -> bool {
        self.sources.contains_key(source_id)
    }

    /// The `app_name` tag seen on a source's envelopes.
    pub fn app_name(&self, source_id: &str) -> Option<&str> {
        self.sources.get(source_id)?.app_name.as_deref()
    }

    /// Source ids whose `app_name` tag is `name`.
    pub fn sources_named(&self, name: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .sources
            .iter()
            .filter(|(_, s)| s.app_name.as_deref() == Some(name))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }
}

/// Applies a name filter to a copied envelope: counters and timers by name, gauges reduced
/// to the matching metric keys (dropped when none match).
fn apply_name_filter(found: Found, filter: Option<&regex::Regex>) -> Option<Found> {
    let Some(re) = filter else { return Some(found) };
    let mut env = Envelope::decode(&found.body[..]).ok()?;
    match env.message.as_mut()? {
        Message::Counter(c) => re.is_match(&c.name).then_some(found),
        Message::Timer(t) => re.is_match(&t.name).then_some(found),
        Message::Gauge(g) => {
            let before = g.metrics.len();
            g.metrics.retain(|k, _| re.is_match(k));
            if g.metrics.is_empty() {
                None
            } else if g.metrics.len() == before {
                Some(found)
            } else {
                Some(Found {
                    body: env.encode_to_vec().into(),
                    ..found
                })
            }
        }
        Message::Log(_) | Message::Event(_) => None,
    }
}

#[cfg(test)]
mod tests;
