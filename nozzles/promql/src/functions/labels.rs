//! `label_replace` and `label_join`, as Prometheus: the metric name is kept, an empty
//! result deletes the destination label, `.` in a regex does not match a newline (as in
//! selectors), and a bad regex or label name is an execution error.

use promql_parser::parser::Call;

use super::{arg, string, vector};
use crate::eval::{Evaluator, Sample, Val};
use crate::{Error, valid_label_name as valid_name};

/// `label_replace(v, dst, replacement, src, regex)`.
pub(crate) fn replace(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Val, Error> {
    let v = vector(ev, arg(c, 0)?, t)?;
    let dst = string(ev, arg(c, 1)?, t)?;
    let replacement = string(ev, arg(c, 2)?, t)?;
    let src = string(ev, arg(c, 3)?, t)?;
    let pattern = string(ev, arg(c, 4)?, t)?;
    let re = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|_| {
        Error::Execution(format!(
            "invalid regular expression in label_replace(): {pattern}"
        ))
    })?;
    if !valid_name(&dst) {
        return Err(Error::Execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let site = crate::ops::memo_site(c as *const Call as usize, 0);
    let out = v
        .into_iter()
        .map(|s| Sample {
            labels: ev.relabel(site, &s.labels, |labels| {
                let value = labels.get(&src).map_or("", String::as_str);
                let caps = re.captures(value)?;
                let mut res = String::new();
                caps.expand(&replacement, &mut res);
                let mut out = labels.clone();
                if res.is_empty() {
                    out.remove(&dst);
                } else {
                    out.insert(dst.clone(), res);
                }
                Some(out)
            }),
            value: s.value,
        })
        .collect();
    Ok(Val::Vector(out))
}

/// `label_join(v, dst, separator, src...)`.
pub(crate) fn join(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Val, Error> {
    let v = vector(ev, arg(c, 0)?, t)?;
    let dst = string(ev, arg(c, 1)?, t)?;
    let sep = string(ev, arg(c, 2)?, t)?;
    let mut sources = Vec::new();
    for e in c.args.args.iter().skip(3) {
        let src = string(ev, e, t)?;
        if !valid_name(&src) {
            return Err(Error::Execution(format!(
                "invalid source label name in label_join(): {src}"
            )));
        }
        sources.push(src);
    }
    if !valid_name(&dst) {
        return Err(Error::Execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let site = crate::ops::memo_site(c as *const Call as usize, 0);
    let out = v
        .into_iter()
        .map(|s| Sample {
            labels: ev.relabel(site, &s.labels, |labels| {
                let joined = sources
                    .iter()
                    .map(|k| labels.get(k).map_or("", String::as_str))
                    .collect::<Vec<_>>()
                    .join(&sep);
                let mut out = labels.clone();
                if joined.is_empty() {
                    out.remove(&dst);
                } else {
                    out.insert(dst.clone(), joined);
                }
                Some(out)
            }),
            value: s.value,
        })
        .collect();
    Ok(Val::Vector(out))
}
