//! The evaluator: an expression at one time, and range queries as one evaluation per step
//! over the prefetched series. Subqueries evaluate their inner expression at absolute,
//! step-aligned times, each once per query (memoized), and hand the outer function a
//! range vector as a matrix selector would.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use promql_parser::parser::{Expr, MatrixSelector, SubqueryExpr, VectorSelector};

use super::{Data, Error, Labels, Series, Value, functions, offset_ms, ops};

mod columnar;

/// An instant-vector element.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) labels: Arc<Labels>,
    pub(crate) value: f64,
}

/// An intermediate value.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Scalar(f64),
    Str(String),
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

impl Val {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::Str(_) => "string",
            Val::Vector(_) => "instant vector",
            Val::Matrix(_) => "range vector",
        }
    }
}

/// A hasher for maps keyed by addresses (and small tuples of integers): a multiply per
/// word instead of SipHash, which showed as a sixth of a 1,000-series aggregation's time.
/// Keys are the evaluator's own pointers, not input a client controls.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AddrHasher(u64);

impl std::hash::Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }
}

/// A map keyed by addresses.
pub(crate) type AddrMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<AddrHasher>>;

/// Original labels (kept alive) → the same labels without `__name__`, by address.
type Unnamed = AddrMap<usize, (Arc<Labels>, Arc<Labels>)>;

/// A borrowed window of one series: its labels and samples.
pub(crate) type Window<'a> = (&'a Arc<Labels>, &'a [(i64, f64)]);

/// A subquery's inner result at one inner step, by (subquery address, step).
type Memo = AddrMap<(usize, i64), Rc<Vec<Sample>>>;

/// Evaluates one parsed query over the data its plan fetched.
#[derive(Debug)]
pub struct Evaluator<'a> {
    data: &'a Data,
    index: AddrMap<usize, usize>,
    lookback: i64,
    /// Labels without `__name__`, per original labels (kept alive, so addresses stay
    /// unique): one copy per series for a whole range query instead of one per step.
    unnamed: RefCell<Unnamed>,
    /// The query's `[start, end]` (ms), what `@ start()` and `@ end()` mean.
    span: Cell<(i64, i64)>,
    /// Subquery inner results, shared by the outer steps whose windows overlap.
    memo: RefCell<Memo>,
    /// Label sets a function's result was last found unique with, per call site: a
    /// range query re-checks only when the series change.
    verified: RefCell<AddrMap<usize, Vec<Arc<Labels>>>>,
    /// `label_replace`/`label_join` results per (call site, input labels), the input kept
    /// alive: one rewrite per series for a whole range query.
    relabeled: RefCell<AddrMap<usize, SiteMemo>>,
    /// Per selector (by address), per series: where its last window was.
    cursors: RefCell<AddrMap<usize, Vec<Cursor>>>,
}

/// Samples gathered step by step into series: found by the address of the `Arc` their
/// labels share (selectors and functions reuse one per series across steps), else by
/// value.
#[derive(Debug, Default)]
struct Gather {
    series: Vec<Series>,
    by_ptr: AddrMap<usize, usize>,
    by_value: HashMap<Arc<Labels>, usize>,
}

impl Gather {
    fn push(&mut self, labels: &Arc<Labels>, t: i64, v: f64) {
        let ptr = Arc::as_ptr(labels) as usize;
        let i = match self.by_ptr.get(&ptr) {
            Some(i) => *i,
            None => {
                let i = match self.by_value.get(labels) {
                    Some(i) => *i,
                    None => {
                        self.series.push(Series {
                            labels: Arc::clone(labels),
                            points: Vec::new(),
                        });
                        self.by_value
                            .insert(Arc::clone(labels), self.series.len() - 1);
                        self.series.len() - 1
                    }
                };
                // Only an address whose Arc the map keeps alive may be remembered.
                if Arc::ptr_eq(&self.series[i].labels, labels) {
                    self.by_ptr.insert(ptr, i);
                }
                i
            }
        };
        self.series[i].points.push((t, v));
    }
}

/// Where a series' last window `(from, at]` was: a range query's steps move forward, so
/// the next window is found by stepping on from there instead of two binary searches.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    at: i64,
    lo: usize,
    hi: usize,
}

impl Default for Cursor {
    fn default() -> Cursor {
        Cursor {
            at: i64::MIN,
            lo: 0,
            hi: 0,
        }
    }
}

impl Cursor {
    /// The indices `lo..hi` of the samples in `(from, at]`; `from` moves with `at`.
    fn window(&mut self, points: &[(i64, f64)], from: i64, at: i64) -> (usize, usize) {
        let (mut lo, mut hi) = if self.at != i64::MIN && at >= self.at {
            (self.lo, self.hi)
        } else {
            (
                points.partition_point(|(ts, _)| *ts <= from),
                points.partition_point(|(ts, _)| *ts <= at),
            )
        };
        while lo < points.len() && points[lo].0 <= from {
            lo += 1;
        }
        hi = hi.max(lo);
        while hi < points.len() && points[hi].0 <= at {
            hi += 1;
        }
        *self = Cursor { at, lo, hi };
        (lo, hi)
    }
}

/// One call site's label rewrites: by input labels (kept alive), and the outputs interned
/// by value, so equal results share one `Arc` (grouping and duplicate checks go by
/// address).
#[derive(Debug, Default)]
struct SiteMemo {
    by_input: Unnamed,
    interned: HashSet<Arc<Labels>>,
}

fn collect(e: &Expr, out: &mut Vec<usize>) {
    match e {
        Expr::VectorSelector(vs) => out.push(vs as *const VectorSelector as usize),
        Expr::MatrixSelector(ms) => out.push(ms as *const MatrixSelector as usize),
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                collect(p, out);
            }
            collect(&a.expr, out);
        }
        Expr::Unary(u) => collect(&u.expr, out),
        Expr::Binary(b) => {
            collect(&b.lhs, out);
            collect(&b.rhs, out);
        }
        Expr::Paren(p) => collect(&p.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| collect(a, out)),
        Expr::Subquery(sq) => collect(&sq.expr, out),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

impl<'a> Evaluator<'a> {
    /// An evaluator for `expr` (the same value that was planned) over `data`.
    pub fn new(expr: &Expr, data: &'a Data, lookback: i64) -> Evaluator<'a> {
        let mut order = Vec::new();
        collect(expr, &mut order);
        Evaluator {
            data,
            index: order.into_iter().enumerate().map(|(i, p)| (p, i)).collect(),
            lookback,
            unnamed: RefCell::default(),
            span: Cell::new((0, 0)),
            memo: RefCell::default(),
            verified: RefCell::default(),
            relabeled: RefCell::default(),
            cursors: RefCell::default(),
        }
    }

    /// `labels` rewritten by `f` (`None`: unchanged), memoized per call site `site`; equal
    /// rewritten label sets come back as the same `Arc`.
    pub(crate) fn relabel(
        &self,
        site: usize,
        labels: &Arc<Labels>,
        f: impl FnOnce(&Labels) -> Option<Labels>,
    ) -> Arc<Labels> {
        let ptr = Arc::as_ptr(labels) as usize;
        let mut memo = self.relabeled.borrow_mut();
        let per_site = memo.entry(site).or_default();
        if let Some((_, out)) = per_site.by_input.get(&ptr) {
            return Arc::clone(out);
        }
        let out = match f(labels) {
            None => Arc::clone(labels),
            Some(l) => match per_site.interned.get(&l) {
                Some(a) => Arc::clone(a),
                None => {
                    let a = Arc::new(l);
                    per_site.interned.insert(Arc::clone(&a));
                    a
                }
            },
        };
        per_site
            .by_input
            .insert(ptr, (Arc::clone(labels), Arc::clone(&out)));
        out
    }

    /// The time `at` pins evaluation to, or `t` without one.
    pub(crate) fn pinned(&self, at: &Option<promql_parser::parser::AtModifier>, t: i64) -> i64 {
        super::at_ms(at, self.span.get()).unwrap_or(t)
    }

    /// `labels` without `__name__`, shared across steps.
    pub(crate) fn unnamed(&self, labels: &Arc<Labels>) -> Arc<Labels> {
        if !labels.contains_key("__name__") {
            return Arc::clone(labels);
        }
        let mut memo = self.unnamed.borrow_mut();
        let entry = memo
            .entry(Arc::as_ptr(labels) as usize)
            .or_insert_with(|| (Arc::clone(labels), ops::drop_name(labels)));
        Arc::clone(&entry.1)
    }

    fn series(&self, ptr: usize) -> &'a [Series] {
        self.index
            .get(&ptr)
            .and_then(|i| self.data.selected.get(*i))
            .map_or(&[], Vec::as_slice)
    }

    /// The value of `expr` at `t` (ms): an instant query.
    pub fn instant(&self, expr: &Expr, t: i64) -> Result<Value, Error> {
        self.span.set((t, t));
        Ok(match self.eval(expr, t)? {
            Val::Scalar(v) => Value::Scalar(t, v),
            Val::Str(s) => Value::String(t, s),
            // Unique already, as in `range`.
            Val::Vector(v) => {
                Value::Vector(t, v.into_iter().map(|s| (s.labels, s.value)).collect())
            }
            Val::Matrix(m) => Value::Matrix(m),
        })
    }

    /// `expr` at every step of `[start, end]`: a range query.
    pub fn range(&self, expr: &Expr, start: i64, end: i64, step: i64) -> Result<Value, Error> {
        self.span.set((start, end));
        if let Some(series) = self.columnar(expr, start, end, step) {
            return Ok(Value::Matrix(series));
        }
        let mut gathered = Gather::default();
        let empty = Arc::new(Labels::new());
        let mut t = start;
        while t <= end {
            match self.eval(expr, t)? {
                Val::Scalar(v) => gathered.push(&empty, t, v),
                // Unique already: selectors and aggregations make no duplicates, and
                // `eval` checks what functions and operators make.
                Val::Vector(v) => {
                    for s in v {
                        gathered.push(&s.labels, t, s.value);
                    }
                }
                other => {
                    return Err(Error::BadData(format!(
                        "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                        other.kind()
                    )));
                }
            }
            t += step;
        }
        let mut series = gathered.series;
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(Value::Matrix(series))
    }

    pub(crate) fn eval(&self, e: &Expr, t: i64) -> Result<Val, Error> {
        match e {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Val::Scalar(v) => Ok(Val::Scalar(-v)),
                Val::Vector(v) => self.checked(
                    e,
                    Val::Vector(
                        v.into_iter()
                            .map(|s| Sample {
                                labels: self.unnamed(&s.labels),
                                value: -s.value,
                            })
                            .collect(),
                    ),
                ),
                other => Err(Error::BadData(format!(
                    "unary minus is not defined on a {}",
                    other.kind()
                ))),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.select(vs, t))),
            Expr::MatrixSelector(ms) => Ok(Val::Matrix(self.window(ms, t))),
            Expr::Aggregate(a) => ops::aggregate(self, a, t),
            Expr::Binary(b) => {
                let v = ops::binary(self, b, t)?;
                self.checked(e, v)
            }
            Expr::Call(c) => {
                let v = functions::call(self, c, t)?;
                self.checked(e, v)
            }
            Expr::Subquery(sq) => Ok(Val::Matrix(self.subquery(sq, t)?)),
            Expr::Extension(_) => Err(super::unsupported("this expression")),
        }
    }

    /// `v`, refused when it is a vector with two equal label sets (Prometheus checks every
    /// function's and operator's result). `site` is the expression that made it.
    fn checked(&self, site: &Expr, v: Val) -> Result<Val, Error> {
        let Val::Vector(samples) = &v else {
            return Ok(v);
        };
        let key = site as *const Expr as usize;
        let mut verified = self.verified.borrow_mut();
        if let Some(last) = verified.get(&key)
            && last.len() == samples.len()
            && last
                .iter()
                .zip(samples)
                .all(|(a, s)| Arc::ptr_eq(a, &s.labels))
        {
            return Ok(v);
        }
        unique(samples)?;
        verified.insert(key, samples.iter().map(|s| Arc::clone(&s.labels)).collect());
        Ok(v)
    }

    /// An instant vector selector at `t`: each series' newest sample in `(t − lookback, t]`
    /// (left-open, as Prometheus 3 and VictoriaMetrics).
    fn select(&self, vs: &VectorSelector, t: i64) -> Vec<Sample> {
        self.select_with(vs, t, |labels, _, value| Sample {
            labels: Arc::clone(labels),
            value,
        })
    }

    /// As [`Evaluator::select`], with each sample's own timestamp (ms).
    pub(crate) fn select_timed(&self, vs: &VectorSelector, t: i64) -> Vec<(Sample, i64)> {
        self.select_with(vs, t, |labels, ts, value| {
            let sample = Sample {
                labels: Arc::clone(labels),
                value,
            };
            (sample, ts)
        })
    }

    /// Each selected series' newest sample in the lookback window, through `f(labels, ts,
    /// value)`.
    fn select_with<T>(
        &self,
        vs: &VectorSelector,
        t: i64,
        f: impl Fn(&Arc<Labels>, i64, f64) -> T,
    ) -> Vec<T> {
        let at = self.pinned(&vs.at, t) - offset_ms(&vs.offset);
        let from = at - self.lookback;
        self.with_cursors(vs as *const VectorSelector as usize, |series| {
            series
                .filter_map(|(s, c)| {
                    let (_, i) = c.window(&s.points, from, at);
                    let (ts, v) = *s.points.get(i.checked_sub(1)?)?;
                    (ts > from).then(|| f(&s.labels, ts, v))
                })
                .collect()
        })
    }

    /// Runs `f` over the series of the selector at `key`, each with its cursor.
    fn with_cursors<T>(
        &self,
        key: usize,
        f: impl FnOnce(&mut dyn Iterator<Item = (&'a Series, &mut Cursor)>) -> T,
    ) -> T {
        let series = self.series(key);
        let mut cursors = self.cursors.borrow_mut();
        let cursors = cursors
            .entry(key)
            .or_insert_with(|| vec![Cursor::default(); series.len()]);
        f(&mut series.iter().zip(cursors.iter_mut()))
    }

    /// A subquery at `t`: its inner expression at every multiple of its step in
    /// `(t' − range, t']`, where `t'` is `t` (or its `@` time) less its offset.
    pub(crate) fn subquery(&self, sq: &SubqueryExpr, t: i64) -> Result<Vec<Series>, Error> {
        let end = self.pinned(&sq.at, t) - offset_ms(&sq.offset);
        let start = end - super::duration_ms(&sq.range);
        let step = sq
            .step
            .as_ref()
            .map_or(super::DEFAULT_SUBQUERY_STEP_MS, super::duration_ms)
            .max(1);
        let mut ts = start.div_euclid(step) * step;
        if ts <= start {
            ts += step;
        }
        let key = sq as *const SubqueryExpr as usize;
        let mut gathered = Gather::default();
        while ts <= end {
            let memoized = self.memo.borrow().get(&(key, ts)).cloned();
            let samples = match memoized {
                Some(s) => s,
                None => {
                    let s = Rc::new(self.inner_step(&sq.expr, ts)?);
                    let mut memo = self.memo.borrow_mut();
                    if memo.len() >= super::MAX_SUBQUERY_STEPS {
                        return Err(Error::Execution(format!(
                            "the query's subqueries would evaluate more than {} steps; use a larger subquery step or a shorter range",
                            super::MAX_SUBQUERY_STEPS
                        )));
                    }
                    memo.insert((key, ts), Rc::clone(&s));
                    s
                }
            };
            for s in samples.iter() {
                gathered.push(&s.labels, ts, s.value);
            }
            ts += step;
        }
        Ok(gathered.series)
    }

    /// A subquery's inner expression at one of its steps, as an instant vector.
    fn inner_step(&self, e: &Expr, ts: i64) -> Result<Vec<Sample>, Error> {
        match self.eval(e, ts)? {
            Val::Vector(v) => Ok(v),
            Val::Scalar(x) => Ok(vec![Sample {
                labels: Arc::new(Labels::new()),
                value: x,
            }]),
            other => Err(Error::BadData(format!(
                "subquery is only allowed on instant vector, got {} instead",
                other.kind()
            ))),
        }
    }

    /// A range vector at `t`: each series' samples in `(t − range, t]` (left-open, as
    /// Prometheus 3 and VictoriaMetrics), borrowed from the fetched data.
    pub(crate) fn window_slices(&self, ms: &MatrixSelector, t: i64) -> Vec<Window<'a>> {
        let at = self.pinned(&ms.vs.at, t) - offset_ms(&ms.vs.offset);
        let from = at - super::duration_ms(&ms.range);
        self.with_cursors(ms as *const MatrixSelector as usize, |series| {
            series
                .filter_map(|(s, c)| {
                    let (lo, hi) = c.window(&s.points, from, at);
                    (lo < hi).then(|| (&s.labels, &s.points[lo..hi]))
                })
                .collect()
        })
    }

    /// A range vector at `t`, owned (an instant query's result).
    pub(crate) fn window(&self, ms: &MatrixSelector, t: i64) -> Vec<Series> {
        self.window_slices(ms, t)
            .into_iter()
            .map(|(labels, points)| Series {
                labels: Arc::clone(labels),
                points: points.to_vec(),
            })
            .collect()
    }
}

/// Prometheus refuses a vector with two elements of the same labels.
fn unique(v: &[Sample]) -> Result<(), Error> {
    let mut seen = HashSet::with_capacity(v.len());
    for s in v {
        if !seen.insert(&s.labels) {
            return Err(Error::Execution(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn a_cursor_finds_what_binary_search_finds_in_any_order_of_times() {
        let points: Vec<(i64, f64)> = (0..50).map(|i| (i * 7 + (i % 3), 0.0)).collect();
        let mut c = Cursor::default();
        let mut seed = 17u64;
        for step in 0..400 {
            // Mostly forward, sometimes back (a subquery starting over).
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let at = if step % 37 == 0 {
                (seed >> 40) as i64 % 400
            } else {
                step
            };
            let from = at - 30;
            let want = (
                points.partition_point(|(t, _)| *t <= from),
                points.partition_point(|(t, _)| *t <= at),
            );
            assert_eq!(c.window(&points, from, at), want, "at {at}");
        }
    }
}
