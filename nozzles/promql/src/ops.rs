//! Aggregations and binary operators, with Prometheus' label rules: grouping `by` /
//! `without`, vector matching on signatures with `on` / `ignoring`, `group_left` /
//! `group_right` copying labels from the "one" side, comparison filtering and `bool`.

use std::collections::BTreeMap;
use std::sync::Arc;

use promql_parser::label::Labels as LabelList;
use promql_parser::parser::{AggregateExpr, BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::eval::{AddrMap, Evaluator, Sample, Val};
use super::functions::{quantile, variance};
use super::{Error, Labels};

/// Aggregations the evaluator implements.
pub(crate) const AGGREGATIONS: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

/// A label-rewrite memo's key ([`Evaluator::relabel`]): the node's address (8-aligned)
/// tagged with what is memoized there, so an aggregation's group keys, a binary operation's
/// signatures and its results never share a memo, even where one node sits at the
/// address of another (an enum's payload at offset 0).
pub(crate) fn memo_site(addr: usize, tag: usize) -> usize {
    addr | tag
}

/// The labels without `__name__`.
pub(crate) fn drop_name(labels: &Arc<Labels>) -> Arc<Labels> {
    if labels.contains_key("__name__") {
        let mut l = (**labels).clone();
        l.remove("__name__");
        Arc::new(l)
    } else {
        Arc::clone(labels)
    }
}

fn names(list: &LabelList) -> Vec<&str> {
    list.labels.iter().map(String::as_str).collect()
}

/// The labels `m` selects: `Include` keeps the listed ones; `Exclude` drops them and
/// `__name__`.
fn project(labels: &Labels, m: &LabelModifier) -> Labels {
    let (listed, include) = match m {
        LabelModifier::Include(list) => (names(list), true),
        LabelModifier::Exclude(list) => (names(list), false),
    };
    labels
        .iter()
        .filter(|(k, _)| {
            let named = listed.contains(&k.as_str());
            if include {
                named
            } else {
                k.as_str() != "__name__" && !named
            }
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// An aggregation's group: `by`/`without` labels, or one group without a clause.
pub(crate) fn group_key(labels: &Labels, modifier: Option<&LabelModifier>) -> Labels {
    modifier.map_or_else(Labels::new, |m| project(labels, m))
}

/// Evaluates an aggregation at `t`.
pub(crate) fn aggregate(ev: &Evaluator<'_>, a: &AggregateExpr, t: i64) -> Result<Val, Error> {
    let op = a.op.to_string();
    if op == "count_values" {
        return count_values(ev, a, t);
    }
    let param = match &a.param {
        Some(p) => match ev.eval(p, t)? {
            Val::Scalar(x) => Some(x),
            other => {
                return Err(Error::BadData(format!(
                    "expected scalar parameter for {op}, got {}",
                    other.kind()
                )));
            }
        },
        None => None,
    };
    let Val::Vector(input) = ev.eval(&a.expr, t)? else {
        return Err(Error::BadData(format!("expected instant vector in {op}")));
    };
    // Group keys are interned per aggregation and memoized per input series: a range
    // query projects each series' labels once, and groups by address.
    let site = memo_site(a as *const AggregateExpr as usize, 1);
    let mut groups: Vec<(Arc<Labels>, Vec<Sample>)> = Vec::new();
    let mut index: AddrMap<usize, usize> = AddrMap::default();
    for s in input {
        let key = ev.relabel(site, &s.labels, |l| Some(group_key(l, a.modifier.as_ref())));
        let i = *index.entry(Arc::as_ptr(&key) as usize).or_insert_with(|| {
            groups.push((Arc::clone(&key), Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(s);
    }
    let mut out = Vec::new();
    for (key, members) in groups {
        if op == "topk" || op == "bottomk" {
            let k = param.unwrap_or(0.0);
            if k < 1.0 {
                continue;
            }
            let mut members = members;
            members.sort_by(|x, y| {
                let ord = x.value.total_cmp(&y.value);
                if op == "topk" { ord.reverse() } else { ord }
            });
            // NaN sorts last either way.
            members.sort_by_key(|s| s.value.is_nan());
            out.extend(members.into_iter().take(k as usize));
            continue;
        }
        let values = || members.iter().map(|s| s.value);
        let n = members.len() as f64;
        let value = match op.as_str() {
            "sum" => values().sum(),
            "avg" => values().sum::<f64>() / n,
            "count" => n,
            "group" => 1.0,
            "min" => values().fold(f64::NAN, |m, v| if m.is_nan() || v < m { v } else { m }),
            "max" => values().fold(f64::NAN, |m, v| if m.is_nan() || v > m { v } else { m }),
            "stddev" => variance(&values().collect::<Vec<_>>()).sqrt(),
            "stdvar" => variance(&values().collect::<Vec<_>>()),
            "quantile" => quantile(param.unwrap_or(f64::NAN), &mut values().collect::<Vec<_>>()),
            other => return Err(super::unsupported(&format!("aggregation \"{other}\""))),
        };
        out.push(Sample { labels: key, value });
    }
    Ok(Val::Vector(out))
}

/// `count_values("label", v)`: per group, how many samples have each value, the value
/// (formatted as Go's `strconv.FormatFloat(v, 'f', -1, 64)`) in `label`.
fn count_values(ev: &Evaluator<'_>, a: &AggregateExpr, t: i64) -> Result<Val, Error> {
    let label = match a.param.as_deref().map(|p| ev.eval(p, t)).transpose()? {
        Some(Val::Str(s)) => s,
        _ => {
            return Err(Error::BadData(
                "expected string parameter for count_values".into(),
            ));
        }
    };
    if !super::valid_label_name(&label) {
        return Err(Error::Execution(format!("invalid label name \"{label}\"")));
    }
    let Val::Vector(input) = ev.eval(&a.expr, t)? else {
        return Err(Error::BadData(
            "expected instant vector in count_values".into(),
        ));
    };
    let mut groups: BTreeMap<Labels, f64> = BTreeMap::new();
    for s in input {
        let mut labels = (*s.labels).clone();
        // Go's `strconv.FormatFloat(v, 'f', -1, 64)`, as Prometheus writes sample values.
        labels.insert(label.clone(), super::format_value(s.value));
        let key = match &a.modifier {
            // `by` keeps the value label too.
            Some(LabelModifier::Include(list)) => {
                let mut keep = names(list);
                keep.push(&label);
                labels
                    .into_iter()
                    .filter(|(k, _)| keep.contains(&k.as_str()))
                    .collect()
            }
            Some(m) => project(&labels, m),
            None => labels.into_iter().filter(|(k, _)| *k == label).collect(),
        };
        *groups.entry(key).or_default() += 1.0;
    }
    Ok(Val::Vector(
        groups
            .into_iter()
            .map(|(labels, n)| Sample {
                labels: Arc::new(labels),
                value: n,
            })
            .collect(),
    ))
}

/// Whether an operator's result loses the metric name: the arithmetic ones but `atan2`,
/// which keeps it in Prometheus 2.x (`shouldDropMetricName`).
fn drops_name(op: &str) -> bool {
    matches!(op, "+" | "-" | "*" | "/" | "%" | "^")
}

fn arithmetic(op: &str, l: f64, r: f64) -> Option<f64> {
    Some(match op {
        "+" => l + r,
        "-" => l - r,
        "*" => l * r,
        "/" => l / r,
        "%" => l % r,
        "^" => l.powf(r),
        "atan2" => l.atan2(r),
        _ => return None,
    })
}

fn comparison(op: &str, l: f64, r: f64) -> Option<bool> {
    Some(match op {
        "==" => l == r,
        "!=" => l != r,
        ">" => l > r,
        "<" => l < r,
        ">=" => l >= r,
        "<=" => l <= r,
        _ => return None,
    })
}

/// Evaluates a binary expression at `t`.
pub(crate) fn binary(ev: &Evaluator<'_>, b: &BinaryExpr, t: i64) -> Result<Val, Error> {
    let op = b.op.to_string();
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
    let bool_mod = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => {
            if let Some(v) = arithmetic(&op, l, r) {
                return Ok(Val::Scalar(v));
            }
            match comparison(&op, l, r) {
                Some(c) => Ok(Val::Scalar(if c { 1.0 } else { 0.0 })),
                None => Err(Error::BadData(format!(
                    "operator {op} not allowed between scalars"
                ))),
            }
        }
        (Val::Vector(v), Val::Scalar(x)) => {
            Ok(Val::Vector(with_scalar(ev, &op, v, x, false, bool_mod)))
        }
        (Val::Scalar(x), Val::Vector(v)) => {
            Ok(Val::Vector(with_scalar(ev, &op, v, x, true, bool_mod)))
        }
        (Val::Vector(l), Val::Vector(r)) => vectors(ev, &op, b, l, r, bool_mod).map(Val::Vector),
        (l, r) => Err(Error::BadData(format!(
            "operator {op} not allowed between {} and {}",
            l.kind(),
            r.kind()
        ))),
    }
}

fn with_scalar(
    ev: &Evaluator<'_>,
    op: &str,
    v: Vec<Sample>,
    x: f64,
    scalar_left: bool,
    bool_mod: bool,
) -> Vec<Sample> {
    v.into_iter()
        .filter_map(|s| {
            let (l, r) = if scalar_left {
                (x, s.value)
            } else {
                (s.value, x)
            };
            if let Some(value) = arithmetic(op, l, r) {
                let labels = if drops_name(op) {
                    ev.unnamed(&s.labels)
                } else {
                    s.labels
                };
                return Some(Sample { labels, value });
            }
            let keep = comparison(op, l, r)?;
            if bool_mod {
                Some(Sample {
                    labels: ev.unnamed(&s.labels),
                    value: if keep { 1.0 } else { 0.0 },
                })
            } else {
                keep.then_some(s)
            }
        })
        .collect()
}

/// A sample's match signature: `on`/`ignoring` labels, or all but `__name__`.
fn signature(labels: &Labels, matching: Option<&LabelModifier>) -> Labels {
    match matching {
        Some(m) => project(labels, m),
        None => project(
            labels,
            &LabelModifier::Exclude(LabelList { labels: Vec::new() }),
        ),
    }
}

fn fmt_labels(l: &Labels) -> String {
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn vectors(
    ev: &Evaluator<'_>,
    op: &str,
    b: &BinaryExpr,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    bool_mod: bool,
) -> Result<Vec<Sample>, Error> {
    let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
    let card = b
        .modifier
        .as_ref()
        .map_or(VectorMatchCardinality::OneToOne, |m| m.card.clone());
    // Signatures are interned per expression and memoized per series: equal signatures
    // are one `Arc`, compared by address, computed once per series for a range query.
    let sig_site = memo_site(b as *const BinaryExpr as usize, 2);
    let sig = |l: &Arc<Labels>| ev.relabel(sig_site, l, |l| Some(signature(l, matching)));
    let addr = |a: &Arc<Labels>| Arc::as_ptr(a) as usize;
    if matches!(op, "and" | "or" | "unless") {
        let right: AddrMap<usize, ()> = rhs.iter().map(|s| (addr(&sig(&s.labels)), ())).collect();
        return Ok(match op {
            "and" => lhs
                .into_iter()
                .filter(|s| right.contains_key(&addr(&sig(&s.labels))))
                .collect(),
            "unless" => lhs
                .into_iter()
                .filter(|s| !right.contains_key(&addr(&sig(&s.labels))))
                .collect(),
            _ => {
                let left: AddrMap<usize, ()> =
                    lhs.iter().map(|s| (addr(&sig(&s.labels)), ())).collect();
                let mut out = lhs;
                out.extend(
                    rhs.into_iter()
                        .filter(|s| !left.contains_key(&addr(&sig(&s.labels)))),
                );
                out
            }
        });
    }
    // The "one" side is indexed; for group_right it is the left.
    let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut index: AddrMap<usize, Sample> = AddrMap::default();
    for s in one {
        let key = sig(&s.labels);
        if index.insert(addr(&key), s).is_some() {
            let side = if one_to_many { "left" } else { "right" };
            return Err(Error::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side",
                fmt_labels(&key)
            )));
        }
    }
    let include: Vec<&str> = card.labels().map(names).unwrap_or_default();
    let out_site = memo_site(b as *const BinaryExpr as usize, 3);
    let mut seen_many: AddrMap<usize, ()> = AddrMap::default();
    let mut out = Vec::new();
    for s in many {
        let key = sig(&s.labels);
        let Some(other) = index.get(&addr(&key)) else {
            continue;
        };
        if card == VectorMatchCardinality::OneToOne && seen_many.insert(addr(&key), ()).is_some() {
            return Err(Error::Execution(format!(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right); found duplicates for {}",
                fmt_labels(&key)
            )));
        }
        let (l, r) = if one_to_many {
            (other.value, s.value)
        } else {
            (s.value, other.value)
        };
        let (value, keep) = match arithmetic(op, l, r) {
            Some(v) => (v, true),
            None => {
                let c = comparison(op, l, r).unwrap_or(false);
                if bool_mod {
                    (if c { 1.0 } else { 0.0 }, true)
                } else {
                    (l, c)
                }
            }
        };
        if !keep {
            continue;
        }
        let result = |labels: &Labels| {
            let mut labels = labels.clone();
            if drops_name(op) || bool_mod {
                labels.remove("__name__");
            }
            if card == VectorMatchCardinality::OneToOne {
                match matching {
                    Some(LabelModifier::Include(list)) => {
                        let keep = names(list);
                        labels.retain(|k, _| keep.contains(&k.as_str()));
                    }
                    Some(LabelModifier::Exclude(list)) => {
                        let drop = names(list);
                        labels.retain(|k, _| !drop.contains(&k.as_str()));
                    }
                    None => {}
                }
            }
            for ln in &include {
                match other.labels.get(*ln) {
                    Some(v) if !v.is_empty() => {
                        labels.insert((*ln).to_owned(), v.clone());
                    }
                    _ => {
                        labels.remove(*ln);
                    }
                }
            }
            labels
        };
        // Without labels copied from the "one" side, the result's labels depend on this
        // series alone, so they are worked out once per series.
        let labels = if include.is_empty() {
            ev.relabel(out_site, &s.labels, |l| Some(result(l)))
        } else {
            Arc::new(result(&s.labels))
        };
        out.push(Sample { labels, value });
    }
    Ok(out)
}
