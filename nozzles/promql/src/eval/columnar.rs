//! Range queries of `sum`, `avg`, `count`, `min`, `max` or `group` straight over a
//! selector or a range function of one (`avg by (app) (cpu)`,
//! `sum by (app) (rate(requests_total[5m]))`: dashboard staples), and of such a range
//! function alone (`max_over_time(x[10m])`), evaluated a series at a time:
//! each series walks every step once with its cursor and adds into its group's row of
//! accumulators. The per-step path builds a sample (an `Arc` count) per series per step
//! and a vector per group; this one allocates per group, once. Answers are identical:
//! the same additions in the same order.

use std::sync::Arc;

use std::collections::HashSet;

use promql_parser::parser::{AggregateExpr, Expr, MatrixSelector, VectorSelector};

use super::{AddrMap, Evaluator};
use crate::{Labels, Series, functions, offset_ms, ops};

/// What is aggregated.
#[derive(Debug, Clone, Copy)]
enum Input<'e> {
    /// An instant selector: each series' newest sample in the lookback window.
    Selector(&'e VectorSelector),
    /// A range function without parameters over a matrix selector.
    Range(&'static str, &'e MatrixSelector),
}

impl Input<'_> {
    /// The selector whose series are read.
    fn key(&self) -> usize {
        match self {
            Input::Selector(vs) => *vs as *const VectorSelector as usize,
            Input::Range(_, ms) => *ms as *const MatrixSelector as usize,
        }
    }
}

/// `f(m[d])` for a range function `f` without parameters over a matrix selector.
fn range_input(e: &Expr) -> Option<Input<'_>> {
    let Expr::Call(c) = e else {
        return None;
    };
    if !plain_range_function(c.func.name) || c.args.args.len() != 1 {
        return None;
    }
    match unparen(&c.args.args[0]) {
        Expr::MatrixSelector(ms) => Some(Input::Range(c.func.name, ms)),
        _ => None,
    }
}

/// Range functions this path evaluates: one range-vector argument, no parameters.
fn plain_range_function(name: &str) -> bool {
    functions::range::matrix_arg(name) == Some(0)
        && !matches!(
            name,
            "predict_linear" | "holt_winters" | "double_exponential_smoothing" | "absent_over_time"
        )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Sum,
    Avg,
    Count,
    Min,
    Max,
    Group,
}

/// One group's state at one step.
#[derive(Debug, Clone, Copy)]
struct Acc {
    n: u32,
    /// The sum, or the running min/max.
    x: f64,
}

fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

impl Evaluator<'_> {
    /// `expr` over `[start, end]` every `step` when it is an aggregation this path
    /// covers; `None` otherwise.
    pub(super) fn columnar(
        &self,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
    ) -> Option<Vec<Series>> {
        let steps = ((end - start) / step + 1) as usize;
        let a = match unparen(expr) {
            Expr::Aggregate(a) => a,
            Expr::Call(_) => {
                let input = range_input(unparen(expr))?;
                return self.function_columns(input, start, step, steps);
            }
            _ => return None,
        };
        let input = match unparen(&a.expr) {
            Expr::VectorSelector(vs) => Input::Selector(vs),
            other => range_input(other)?,
        };
        if a.param.is_some() {
            return None;
        }
        let op = match a.op.to_string().as_str() {
            "sum" => Op::Sum,
            "avg" => Op::Avg,
            "count" => Op::Count,
            "min" => Op::Min,
            "max" => Op::Max,
            "group" => Op::Group,
            _ => return None,
        };
        self.aggregate_columns(a, input, op, start, step, steps)
    }

    /// The labels each series has once `input` is applied: a range function drops the
    /// name (but `last_over_time`). `None` when two series end up equal: the per-step
    /// path then refuses the steps where both have a value, as Prometheus does.
    fn input_labels(&self, input: Input<'_>, series: &[Series]) -> Option<Vec<Arc<Labels>>> {
        match input {
            Input::Selector(_) | Input::Range("last_over_time", _) => {
                Some(series.iter().map(|s| Arc::clone(&s.labels)).collect())
            }
            Input::Range(..) => {
                let out: Vec<Arc<Labels>> =
                    series.iter().map(|s| self.unnamed(&s.labels)).collect();
                let mut seen: HashSet<&Labels> = HashSet::with_capacity(out.len());
                out.iter().all(|l| seen.insert(l)).then_some(out)
            }
        }
    }

    fn aggregate_columns(
        &self,
        a: &AggregateExpr,
        input: Input<'_>,
        op: Op,
        start: i64,
        step: i64,
        steps: usize,
    ) -> Option<Vec<Series>> {
        let site = ops::memo_site(a as *const AggregateExpr as usize, 1);
        let series = self.series(input.key());
        let labels = self.input_labels(input, series)?;
        let mut keys: Vec<Arc<Labels>> = Vec::new();
        let mut rows: Vec<Vec<Acc>> = Vec::new();
        let mut index: AddrMap<usize, usize> = AddrMap::default();
        // -0.0: where `Iterator::sum` starts, so a sum of one -0.0 stays -0.0.
        let empty = Acc { n: 0, x: -0.0 };
        for (s, labels) in series.iter().zip(&labels) {
            let key = self.relabel(site, labels, |l| {
                Some(ops::group_key(l, a.modifier.as_ref()))
            });
            let g = *index.entry(Arc::as_ptr(&key) as usize).or_insert_with(|| {
                keys.push(Arc::clone(&key));
                rows.push(vec![empty; steps]);
                rows.len() - 1
            });
            let row = &mut rows[g];
            for (i, v) in self.steps(input, &s.points, start, step, steps) {
                let acc = &mut row[i];
                acc.x = match op {
                    Op::Sum | Op::Avg => acc.x + v,
                    Op::Min if acc.n == 0 || acc.x.is_nan() || v < acc.x => v,
                    Op::Max if acc.n == 0 || acc.x.is_nan() || v > acc.x => v,
                    Op::Min | Op::Max | Op::Count | Op::Group => acc.x,
                };
                acc.n += 1;
            }
        }
        let mut out: Vec<Series> = keys
            .into_iter()
            .zip(rows)
            .filter_map(|(labels, row)| {
                let points: Vec<(i64, f64)> = row
                    .iter()
                    .enumerate()
                    .filter(|(_, acc)| acc.n > 0)
                    .map(|(i, acc)| {
                        let value = match op {
                            Op::Sum | Op::Min | Op::Max => acc.x,
                            Op::Avg => acc.x / f64::from(acc.n),
                            Op::Count => f64::from(acc.n),
                            Op::Group => 1.0,
                        };
                        (start + i as i64 * step, value)
                    })
                    .collect();
                (!points.is_empty()).then_some(Series { labels, points })
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Some(out)
    }

    /// A range function of a matrix selector (`max_over_time(x[10m])`) over a range: each
    /// series walks the steps once into its own output series.
    fn function_columns(
        &self,
        input: Input<'_>,
        start: i64,
        step: i64,
        steps: usize,
    ) -> Option<Vec<Series>> {
        let series = self.series(input.key());
        let labels = self.input_labels(input, series)?;
        let mut out: Vec<Series> = series
            .iter()
            .zip(labels)
            .filter_map(|(s, labels)| {
                let points: Vec<(i64, f64)> = self
                    .steps(input, &s.points, start, step, steps)
                    .map(|(i, v)| (start + i as i64 * step, v))
                    .collect();
                (!points.is_empty()).then_some(Series { labels, points })
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Some(out)
    }

    /// One series' values of `input` at each of `steps` steps from `start`, by step
    /// index (steps without a value are left out); its cursor moves forward only.
    fn steps<'s>(
        &'s self,
        input: Input<'s>,
        points: &'s [(i64, f64)],
        start: i64,
        step: i64,
        steps: usize,
    ) -> impl Iterator<Item = (usize, f64)> + 's {
        let mut cursor = super::Cursor::default();
        (0..steps).filter_map(move |i| {
            let t = start + i as i64 * step;
            Some((i, self.value_at(input, points, &mut cursor, t)?))
        })
    }

    /// One series' value of `input` at `t`, its cursor moved on.
    fn value_at(
        &self,
        input: Input<'_>,
        points: &[(i64, f64)],
        cursor: &mut super::Cursor,
        t: i64,
    ) -> Option<f64> {
        match input {
            Input::Selector(vs) => {
                let at = self.pinned(&vs.at, t) - offset_ms(&vs.offset);
                let from = at - self.lookback;
                let (_, hi) = cursor.window(points, from, at);
                let &(ts, v) = points.get(hi.checked_sub(1)?)?;
                (ts > from).then_some(v)
            }
            Input::Range(name, ms) => {
                let at = self.pinned(&ms.vs.at, t) - offset_ms(&ms.vs.offset);
                let from = at - crate::duration_ms(&ms.range);
                let (lo, hi) = cursor.window(points, from, at);
                if lo >= hi {
                    return None;
                }
                functions::range::window_value(name, &points[lo..hi], from, at, t, &[])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use crate::tests::{Fixture, run};
    use crate::{Labels, Value};

    fn points(seed: u64, gap: (i64, i64)) -> Vec<(i64, f64)> {
        let mut x = seed;
        (0..130)
            .map(|i| i * 30_000 + (seed as i64 % 7) * 1000)
            .filter(|t| *t < gap.0 || *t > gap.1)
            .map(|t| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let v = match x >> 60 {
                    0 => f64::NAN,
                    1 => -0.0,
                    _ => (x >> 40) as f64 / 1000.0 - 500.0,
                };
                (t, v)
            })
            .collect()
    }

    #[test]
    fn columns_answer_as_the_per_step_path_does() {
        let a = points(1, (600_000, 1_200_000));
        let b = points(2, (0, 0));
        let c = points(3, (2_000_000, 3_000_000));
        let d = points(4, (0, 0));
        let series: Vec<Fixture<'_>> = vec![
            ("cpu", &[("app", "web"), ("instance", "0")], &a),
            ("cpu", &[("app", "web"), ("instance", "1")], &b),
            ("cpu", &[("app", "api"), ("instance", "0")], &c),
            ("cpu", &[("instance", "2")], &d),
            ("mem", &[("app", "web")], &b),
            ("mem2", &[("app", "web")], &d),
        ];
        // Two series equal once the name is dropped: refused, as per step.
        for q in [
            "sum(rate({__name__=~\"mem|mem2\"}[5m]))",
            "rate({__name__=~\"mem|mem2\"}[5m])",
        ] {
            let e = run(q, &series, Some((0, 3_900_000, 67_000)), 0).unwrap_err();
            assert!(e.to_string().contains("same labelset"), "{q}: {e}");
        }
        let (start, end, step) = (0, 3_900_000, 67_000);
        let range = Some((start, end, step));
        for op in ["sum", "avg", "count", "min", "max", "group"] {
            for shape in [
                "OP(cpu)",
                "OP by (app) (cpu)",
                "OP without (instance) (cpu)",
                "OP by (app) (cpu offset 2m)",
                "OP by (app) (cpu @ end())",
                "(OP by (instance) ((cpu)))",
                "OP by (__name__) ({__name__=~\"cpu|mem\"})",
                "OP by (app) (rate(cpu[5m]))",
                "OP without (instance) (increase(cpu[3m] offset 1m))",
                "OP(irate(cpu[2m]))",
                "OP by (app) (avg_over_time(cpu[10m]))",
                "OP by (__name__) (last_over_time({__name__=~\"cpu|mem\"}[1m]))",
                "OP by (app) (changes(cpu[5m] @ end()))",
                "OP(deriv({__name__=~\"cpu|mem\"}[5m]))",
                // No aggregation: the function alone (OP is ignored).
                "rate(cpu[5m])",
                "max_over_time({__name__=~\"cpu|mem\"}[10m] offset 1m)",
                "(last_over_time(cpu[2m]))",
                "changes(cpu[5m] @ end())",
            ] {
                let q = shape.replace("OP", op);
                let Value::Matrix(fast) = run(&q, &series, range, 0).unwrap() else {
                    panic!("{q}: not a matrix");
                };
                // The per-step path: an instant query at every step.
                let mut slow: BTreeMap<Arc<Labels>, Vec<(i64, f64)>> = BTreeMap::new();
                let mut t = start;
                while t <= end {
                    // `@ end()` is the range's end in the range query.
                    let instant = q.replace("end()", &format!("{}", end as f64 / 1000.0));
                    let Value::Vector(_, v) = run(&instant, &series, None, t).unwrap() else {
                        panic!("{q}: not a vector");
                    };
                    for (labels, value) in v {
                        slow.entry(labels).or_default().push((t, value));
                    }
                    t += step;
                }
                assert_eq!(fast.len(), slow.len(), "{q}");
                for (x, (labels, points)) in fast.iter().zip(&slow) {
                    assert_eq!(&x.labels, labels, "{q}");
                    assert_eq!(x.points.len(), points.len(), "{q} {labels:?}");
                    for (p, r) in x.points.iter().zip(points) {
                        assert_eq!(p.0, r.0, "{q}");
                        assert!(
                            p.1.to_bits() == r.1.to_bits(),
                            "{q} at {}: {} vs {}",
                            p.0,
                            p.1,
                            r.1
                        );
                    }
                }
            }
        }
    }
}
