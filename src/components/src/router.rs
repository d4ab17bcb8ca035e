//! The doppler's fan-out core: which subscription receives which envelope. Pure: no I/O, no
//! clocks; the doppler wraps it with gRPC streams.
//!
//! Semantics follow Loggregator's pubsub (see ARCHITECTURE.md):
//! - A subscription registers one *filter* per selector. Subscriptions with the same shard id
//!   and an identical filter form a *group*.
//! - Empty shard id: every member of the group gets a copy. Non-empty: exactly one member
//!   does, in rotation (Loggregator picks at random; rotation splits exactly evenly).
//! - When any member of a group sets `deterministic_name`, counters and gauges go to the
//!   member at `hash(name) % len` of the members ordered by that name, so one name always
//!   lands on the same consumer (CRC-64/ECMA of the counter name; the sum over gauge metric
//!   names). Other kinds keep rotating.
//! - Extension: the reserved name [`SOURCE_AFFINITY`] routes by source id instead, for
//!   every kind, so one app's envelopes all reach the same member.
//! - A subscription receives an envelope at most once, however many of its filters match.
//!
//! Routing works on batches: the router returns, per subscription, the envelopes it must
//! receive, so the caller takes each subscriber's queue lock once per batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hydrant_proto::raw::{Kind, RawEnvelope};
use hydrant_proto::v2::{EgressBatchRequest, Selector, selector::Message as Sel};

#[cfg(test)]
mod tests;

/// Why a subscription request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No selector with a message type (Loggregator answers the same way).
    #[error("Selectors cannot be empty")]
    NoSelectors,
    /// More selectors than the doppler allows one subscription (`--max-selectors`).
    #[error("{got} selectors, more than the {max} one subscription may have")]
    TooManySelectors {
        /// Selectors asked for.
        got: usize,
        /// The limit.
        max: usize,
    },
}

/// Most selectors one subscription may carry by default (`--max-selectors`). Routing looks
/// only at the groups that may match an envelope's kind and source id, so selectors cost
/// little; the cap bounds the memory and the table rebuild a single request can cause.
pub const MAX_SELECTORS: usize = 1024;

/// What one selector matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Filter {
    /// Empty matches every source.
    pub source_id: String,
    /// The message kind.
    pub kind: Kind,
    /// Counter name (empty: any counter).
    pub counter_name: String,
    /// Gauge metric names that must all be present (sorted, deduplicated).
    pub gauge_names: Vec<String>,
}

impl Filter {
    fn from_selector(sel: &Selector) -> Option<Filter> {
        let mut f = Filter {
            source_id: sel.source_id.clone(),
            kind: Kind::None,
            counter_name: String::new(),
            gauge_names: Vec::new(),
        };
        match sel.message.as_ref()? {
            Sel::Log(_) => f.kind = Kind::Log,
            Sel::Counter(c) => {
                f.kind = Kind::Counter;
                f.counter_name = c.name.clone();
            }
            Sel::Gauge(g) => {
                f.kind = Kind::Gauge;
                f.gauge_names = g.names.clone();
                f.gauge_names.sort();
                f.gauge_names.dedup();
            }
            Sel::Timer(_) => f.kind = Kind::Timer,
            Sel::Event(_) => f.kind = Kind::Event,
        }
        Some(f)
    }

    /// Whether `env` passes this filter.
    pub fn matches(&self, env: &RawEnvelope) -> bool {
        if env.kind() != self.kind {
            return false;
        }
        if !self.source_id.is_empty() && self.source_id != env.source_id() {
            return false;
        }
        match self.kind {
            Kind::Counter => self.counter_name.is_empty() || self.counter_name == env.name(),
            Kind::Gauge => self
                .gauge_names
                .iter()
                .all(|want| env.gauge_names().any(|have| have == want)),
            _ => true,
        }
    }
}

/// A validated subscription request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Subscribers with the same non-empty shard id split the stream.
    pub shard_id: String,
    /// One per meaningful selector, deduplicated.
    pub filters: Vec<Filter>,
    /// Name for deterministic routing of counters and gauges.
    pub deterministic_name: String,
    /// Convert `deprecated_tags` into `tags` before delivery.
    pub use_preferred_tags: bool,
}

impl Spec {
    /// Validates a request: `legacy_selector` is used only when `selectors` is empty, and
    /// selectors without a message type are ignored, as in Loggregator.
    pub fn from_request(req: &EgressBatchRequest) -> Result<Spec, Error> {
        Spec::from_request_within(req, MAX_SELECTORS)
    }

    /// As [`Spec::from_request`], with at most `max_selectors` selectors.
    pub fn from_request_within(
        req: &EgressBatchRequest,
        max_selectors: usize,
    ) -> Result<Spec, Error> {
        let selectors: Vec<&Selector> = if req.selectors.is_empty() {
            req.legacy_selector.iter().collect()
        } else {
            req.selectors.iter().collect()
        };
        if selectors.len() > max_selectors {
            return Err(Error::TooManySelectors {
                got: selectors.len(),
                max: max_selectors,
            });
        }
        let mut filters: Vec<Filter> = selectors
            .into_iter()
            .filter_map(Filter::from_selector)
            .collect();
        filters.sort();
        filters.dedup();
        if filters.is_empty() {
            return Err(Error::NoSelectors);
        }
        Ok(Spec {
            shard_id: req.shard_id.clone(),
            filters,
            deterministic_name: req.deterministic_name.clone(),
            use_preferred_tags: req.use_preferred_tags,
        })
    }
}

/// A subscription's identity inside the router.
pub type SubId = u64;

/// One group: identical filter and shard id.
#[derive(Debug)]
struct Group {
    filter: Filter,
    shard_id: String,
    /// Members ordered by (deterministic name, id).
    members: Vec<(String, SubId)>,
    /// Dense index of each member, in `members` order.
    dense: Vec<usize>,
    next: AtomicUsize,
}

impl Group {
    fn deterministic(&self) -> bool {
        self.members.iter().any(|(name, _)| !name.is_empty())
    }

    /// Whether the group routes by source id (a Hydrant extension, see [`SOURCE_AFFINITY`]).
    fn by_source(&self) -> bool {
        self.members.iter().any(|(name, _)| is_source_affine(name))
    }
}

/// An immutable view of all subscriptions, swapped on every (un)subscribe so routing never
/// takes a lock.
#[derive(Debug, Default)]
pub struct Table {
    groups: Vec<Group>,
    /// Groups matching any source, by kind.
    any_source: HashMap<Kind, Vec<usize>>,
    /// Groups matching one source id, by kind and source id: routing an envelope looks at
    /// these two lists only, however many subscriptions and selectors there are.
    by_source: HashMap<Kind, HashMap<String, Vec<usize>>>,
    /// Dense index → id.
    order: Vec<SubId>,
    /// Dense index → wants preferred tags.
    preferred: Vec<bool>,
}

/// Per subscription (by dense index), the envelopes to deliver from one batch.
#[derive(Debug, Default)]
pub struct Routed {
    /// `out[i]` goes to the subscription `Table::sub_at(i)`.
    pub out: Vec<Vec<RawEnvelope>>,
}

impl Table {
    /// Builds a table from subscriptions.
    pub fn new<'a>(specs: impl IntoIterator<Item = (SubId, &'a Spec)>) -> Table {
        let mut table = Table::default();
        let mut by_key: HashMap<(String, Filter), usize> = HashMap::new();
        let mut dense: HashMap<SubId, usize> = HashMap::new();
        for (id, spec) in specs {
            dense.insert(id, table.order.len());
            table.order.push(id);
            table.preferred.push(spec.use_preferred_tags);
            for filter in &spec.filters {
                let key = (spec.shard_id.clone(), filter.clone());
                let g = *by_key.entry(key).or_insert_with(|| {
                    table.groups.push(Group {
                        filter: filter.clone(),
                        shard_id: spec.shard_id.clone(),
                        members: Vec::new(),
                        dense: Vec::new(),
                        next: AtomicUsize::new(0),
                    });
                    table.groups.len() - 1
                });
                table.groups[g]
                    .members
                    .push((spec.deterministic_name.clone(), id));
            }
        }
        for (i, g) in table.groups.iter_mut().enumerate() {
            g.members.sort();
            g.dense = g.members.iter().map(|(_, id)| dense[id]).collect();
            let kind = g.filter.kind;
            if g.filter.source_id.is_empty() {
                table.any_source.entry(kind).or_default().push(i);
            } else {
                let sources = table.by_source.entry(kind).or_default();
                sources
                    .entry(g.filter.source_id.clone())
                    .or_default()
                    .push(i);
            }
        }
        table
    }

    /// The groups that may match `env` (its kind, any source or its source id).
    fn candidates<'t>(&'t self, env: &RawEnvelope) -> impl Iterator<Item = &'t Group> + 't {
        let kind = env.kind();
        let any = self.any_source.get(&kind).map(Vec::as_slice);
        let one = self
            .by_source
            .get(&kind)
            .and_then(|m| m.get(env.source_id()))
            .map(Vec::as_slice);
        any.unwrap_or_default()
            .iter()
            .chain(one.unwrap_or_default())
            .map(|&g| &self.groups[g])
    }

    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The subscription at dense index `i`.
    pub fn sub_at(&self, i: usize) -> SubId {
        self.order[i]
    }

    /// Routes a batch. `routed` is reused across calls to avoid reallocating.
    pub fn route(&self, batch: &[RawEnvelope], routed: &mut Routed) {
        routed.out.resize_with(self.order.len(), Vec::new);
        for v in &mut routed.out {
            v.clear();
        }
        let mut targets: Vec<usize> = Vec::with_capacity(8);
        for env in batch {
            targets.clear();
            for group in self.candidates(env) {
                if !group.filter.matches(env) {
                    continue;
                }
                if group.shard_id.is_empty() {
                    targets.extend_from_slice(&group.dense);
                } else {
                    targets.push(group.dense[self.pick(group, env)]);
                }
            }
            if targets.is_empty() {
                continue;
            }
            targets.sort_unstable();
            targets.dedup();
            let mut preferred: Option<RawEnvelope> = None;
            for &t in &targets {
                let env = if self.preferred[t] && env.has_deprecated_tags() {
                    preferred.get_or_insert_with(|| prefer_tags(env)).clone()
                } else {
                    env.clone()
                };
                routed.out[t].push(env);
            }
        }
    }

    fn pick(&self, group: &Group, env: &RawEnvelope) -> usize {
        let n = group.members.len();
        if group.by_source() {
            return hydrant_proto::subscriber::source_member(env.source_id(), n);
        }
        if group.deterministic() {
            let hash = match env.kind() {
                Kind::Counter => Some(crc64(env.name())),
                Kind::Gauge => Some(env.gauge_names().map(crc64).fold(0u64, u64::wrapping_add)),
                _ => None,
            };
            if let Some(hash) = hash {
                return (hash % n as u64) as usize;
            }
        }
        group.next.fetch_add(1, Ordering::Relaxed) % n
    }
}

pub use hydrant_proto::subscriber::SOURCE_AFFINITY;

fn is_source_affine(name: &str) -> bool {
    name == SOURCE_AFFINITY
        || name
            .strip_prefix(SOURCE_AFFINITY)
            .is_some_and(|rest| rest.starts_with(':'))
}

use hydrant_proto::subscriber::crc64;

fn prefer_tags(env: &RawEnvelope) -> RawEnvelope {
    let mut full = env.decode();
    hydrant_proto::envelope::prefer_tags(&mut full);
    RawEnvelope::from_envelope(&full)
}

/// The mutable registry of subscriptions behind the current [`Table`].
#[derive(Debug, Default)]
pub struct Registry {
    specs: HashMap<SubId, Spec>,
    next_id: SubId,
    table: Arc<Table>,
}

impl Registry {
    /// Adds a subscription and rebuilds the table.
    pub fn subscribe(&mut self, spec: Spec) -> SubId {
        self.next_id += 1;
        let id = self.next_id;
        self.specs.insert(id, spec);
        self.rebuild();
        id
    }

    /// Removes a subscription; returns whether it existed.
    pub fn unsubscribe(&mut self, id: SubId) -> bool {
        let existed = self.specs.remove(&id).is_some();
        if existed {
            self.rebuild();
        }
        existed
    }

    /// The current table (cheap to clone and share).
    pub fn table(&self) -> Arc<Table> {
        Arc::clone(&self.table)
    }

    fn rebuild(&mut self) {
        let mut ids: Vec<&SubId> = self.specs.keys().collect();
        ids.sort();
        self.table = Arc::new(Table::new(ids.into_iter().map(|id| (*id, &self.specs[id]))));
    }
}
