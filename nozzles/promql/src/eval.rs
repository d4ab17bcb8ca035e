//! The evaluator: an expression at one time, and range queries as one evaluation per step
//! over the prefetched series.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use promql_parser::parser::{Expr, MatrixSelector, VectorSelector};

use super::{Data, Error, Labels, Series, Value, functions, offset_ms, ops};

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

/// Original labels (kept alive) → the same labels without `__name__`, by address.
type Unnamed = HashMap<usize, (Arc<Labels>, Arc<Labels>)>;

/// A borrowed window of one series: its labels and samples.
pub(crate) type Window<'a> = (&'a Arc<Labels>, &'a [(i64, f64)]);

/// Evaluates one parsed query over the data its plan fetched.
#[derive(Debug)]
pub struct Evaluator<'a> {
    data: &'a Data,
    index: HashMap<usize, usize>,
    lookback: i64,
    /// Labels without `__name__`, per original labels (kept alive, so addresses stay
    /// unique): one copy per series for a whole range query instead of one per step.
    unnamed: RefCell<Unnamed>,
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
        _ => {}
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
            unnamed: RefCell::new(HashMap::new()),
        }
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
        Ok(match self.eval(expr, t)? {
            Val::Scalar(v) => Value::Scalar(t, v),
            Val::Str(s) => Value::String(t, s),
            Val::Vector(v) => {
                unique(&v)?;
                Value::Vector(t, v.into_iter().map(|s| (s.labels, s.value)).collect())
            }
            Val::Matrix(m) => Value::Matrix(m),
        })
    }

    /// `expr` at every step of `[start, end]`: a range query.
    pub fn range(&self, expr: &Expr, start: i64, end: i64, step: i64) -> Result<Value, Error> {
        // Series by the address of an Arc they keep alive (the fast path: selectors and
        // functions reuse one Arc per series across steps), then by label value.
        let mut series: Vec<Series> = Vec::new();
        let mut by_ptr: HashMap<usize, usize> = HashMap::new();
        let mut by_value: HashMap<Arc<Labels>, usize> = HashMap::new();
        let mut push = |labels: Arc<Labels>, t: i64, v: f64| {
            let ptr = Arc::as_ptr(&labels) as usize;
            let i = match by_ptr.get(&ptr) {
                Some(i) => *i,
                None => match by_value.get(&labels) {
                    Some(i) => *i,
                    None => {
                        series.push(Series {
                            labels: Arc::clone(&labels),
                            points: Vec::new(),
                        });
                        let i = series.len() - 1;
                        by_ptr.insert(ptr, i);
                        by_value.insert(labels, i);
                        i
                    }
                },
            };
            series[i].points.push((t, v));
        };
        let empty = Arc::new(Labels::new());
        let mut t = start;
        while t <= end {
            match self.eval(expr, t)? {
                Val::Scalar(v) => push(Arc::clone(&empty), t, v),
                Val::Vector(v) => {
                    unique(&v)?;
                    for s in v {
                        push(s.labels, t, s.value);
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
                Val::Vector(v) => Ok(Val::Vector(
                    v.into_iter()
                        .map(|s| Sample {
                            labels: self.unnamed(&s.labels),
                            value: -s.value,
                        })
                        .collect(),
                )),
                other => Err(Error::BadData(format!(
                    "unary minus is not defined on a {}",
                    other.kind()
                ))),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.select(vs, t))),
            Expr::MatrixSelector(ms) => Ok(Val::Matrix(self.window(ms, t))),
            Expr::Aggregate(a) => ops::aggregate(self, a, t),
            Expr::Binary(b) => ops::binary(self, b, t),
            Expr::Call(c) => functions::call(self, c, t),
            Expr::Subquery(_) | Expr::Extension(_) => Err(super::unsupported("this expression")),
        }
    }

    /// An instant vector selector at `t`: each series' newest sample in `(t − lookback, t]`
    /// (left-open, as Prometheus 3 and VictoriaMetrics).
    fn select(&self, vs: &VectorSelector, t: i64) -> Vec<Sample> {
        let at = t - offset_ms(&vs.offset);
        let from = at - self.lookback;
        self.series(vs as *const VectorSelector as usize)
            .iter()
            .filter_map(|s| {
                let i = s.points.partition_point(|(ts, _)| *ts <= at);
                let (ts, v) = *s.points.get(i.checked_sub(1)?)?;
                (ts > from).then(|| Sample {
                    labels: Arc::clone(&s.labels),
                    value: v,
                })
            })
            .collect()
    }

    /// A range vector at `t`: each series' samples in `(t − range, t]` (left-open, as
    /// Prometheus 3 and VictoriaMetrics), borrowed from the fetched data.
    pub(crate) fn window_slices(&self, ms: &MatrixSelector, t: i64) -> Vec<Window<'a>> {
        let at = t - offset_ms(&ms.vs.offset);
        let from = at - super::duration_ms(&ms.range);
        self.series(ms as *const MatrixSelector as usize)
            .iter()
            .filter_map(|s| {
                let lo = s.points.partition_point(|(ts, _)| *ts <= from);
                let hi = s.points.partition_point(|(ts, _)| *ts <= at);
                (lo < hi).then(|| (&s.labels, &s.points[lo..hi]))
            })
            .collect()
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
