//! Walking a policy document with positions (marked-yaml, which reads JSON too), collecting
//! every problem instead of stopping at the first.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use marked_yaml::{LoaderOptions, Node, types::MarkedMappingNode};

use super::*;

pub(super) struct Ctx<'a> {
    file: &'a Path,
    problems: Vec<Problem>,
}

fn position(node: &Node) -> (usize, usize) {
    // A mapping is reported at its first key: that is the line a reader looks for.
    let first_key = node
        .as_mapping()
        .and_then(|m| m.keys().next())
        .and_then(|k| k.span().start());
    first_key
        .or(node.span().start())
        .map_or((0, 0), |m| (m.line(), m.column()))
}

impl Ctx<'_> {
    fn report(
        &mut self,
        severity: Severity,
        at: (usize, usize),
        path: &str,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            severity,
            file: self.file.to_owned(),
            line: at.0,
            column: at.1,
            path: path.to_owned(),
            message: message.into(),
        });
    }
    fn error(&mut self, node: &Node, path: &str, message: impl Into<String>) {
        self.report(Severity::Error, position(node), path, message);
    }
    fn warn(&mut self, node: &Node, path: &str, message: impl Into<String>) {
        self.report(Severity::Warning, position(node), path, message);
    }

    /// Flags keys of `map` not in `allowed`.
    fn known_keys(&mut self, map: &MarkedMappingNode, path: &str, allowed: &[&str]) {
        for (k, _) in map.iter() {
            if !allowed.contains(&k.as_str()) {
                let at = k.span().start().map_or((0, 0), |m| (m.line(), m.column()));
                let field = join(path, k.as_str());
                self.report(
                    Severity::Error,
                    at,
                    &field,
                    format!("unknown field (expected one of: {})", allowed.join(", ")),
                );
            }
        }
    }

    fn scalar<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n str> {
        match node.as_scalar() {
            Some(s) => Some(s.as_str()),
            None => {
                self.error(node, path, "must be a single value");
                None
            }
        }
    }

    fn int(&mut self, node: &Node, path: &str) -> Option<i64> {
        let s = self.scalar(node, path)?;
        match s.trim().parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(node, path, format!("must be an integer, got {s:?}"));
                None
            }
        }
    }

    fn number(&mut self, node: &Node, path: &str) -> Option<f64> {
        let s = self.scalar(node, path)?;
        match s.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => Some(n),
            _ => {
                self.error(node, path, format!("must be a number, got {s:?}"));
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        let s = self.scalar(node, path)?;
        match parse_duration(s) {
            Some(d) => Some(d),
            None => {
                self.error(
                    node,
                    path,
                    format!("must be a duration such as 90s, 5m or 1h, got {s:?}"),
                );
                None
            }
        }
    }

    fn count(&mut self, node: &Node, path: &str) -> Option<u32> {
        let n = self.int(node, path)?;
        match u32::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(node, path, "must be between 0 and 4294967295");
                None
            }
        }
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `90`, `90s`, `500ms`, `5m`, `1h`, `1h30m`.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let d = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => return None,
        };
        total += d;
        rest = &rest[unit_len..];
    }
    Some(total)
}

const TOP: &[&str] = &[
    "app",
    "instance_min_count",
    "instance_max_count",
    "scaling_rules",
    "schedules",
    "target",
    "conflict_resolution",
    "cool_downs",
    "configuration",
    "schema-version",
    "credential-type",
];

pub(super) fn parse(text: &str, file: &Path) -> Loaded {
    let mut cx = Ctx {
        file,
        problems: Vec::new(),
    };
    // Size and nesting limits before the (recursive) loader sees the text.
    if let Err(e) = hydrant_runtime::yaml::check(text) {
        cx.report(Severity::Error, e.position(), "", format!("refused: {e}"));
        return Loaded {
            policy: None,
            problems: cx.problems,
        };
    }
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .toplevel_mapping();
    let root = match marked_yaml::parse_yaml_with_options(0, text, options) {
        Ok(root) => root,
        Err(e) => {
            let at = load_error_position(&e);
            cx.report(Severity::Error, at, "", load_error_message(&e));
            return Loaded {
                policy: None,
                problems: cx.problems,
            };
        }
    };
    let Some(map) = root.as_mapping() else {
        cx.error(&root, "", "a policy must be a mapping");
        return Loaded {
            policy: None,
            problems: cx.problems,
        };
    };
    cx.known_keys(map, "", TOP);

    let app = match map.get_node("app") {
        Some(n) => cx.scalar(n, "app").unwrap_or_default().to_owned(),
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    if app.is_empty() {
        cx.error(
            &root,
            "app",
            "the app is unnamed: set app: or name the file after it",
        );
    }
    let min = required(&mut cx, map, &root, "", "instance_min_count")
        .and_then(|n| cx.count(n, "instance_min_count"));
    let max = required(&mut cx, map, &root, "", "instance_max_count")
        .and_then(|n| cx.count(n, "instance_max_count"));
    if let (Some(lo), Some(node)) = (min, map.get_node("instance_min_count")) {
        let activation = map
            .get_node("target")
            .and_then(Node::as_mapping)
            .is_some_and(|t| t.get_node("activation").is_some());
        if lo < 1 && !activation {
            cx.error(
                node,
                "instance_min_count",
                "must be greater than or equal to 1 (0 needs target.activation)",
            );
        }
        if let Some(hi) = max
            && lo > hi
        {
            cx.error(
                node,
                "instance_min_count",
                format!("instance_min_count {lo} is higher than instance_max_count {hi}"),
            );
        }
    }

    let mut rules = Vec::new();
    let mut rule_nodes = Vec::new();
    if let Some(node) = map.get_node("scaling_rules") {
        match node.as_sequence() {
            Some(seq) => {
                for (i, r) in seq.iter().enumerate() {
                    if let Some(rule) = parse_rule(&mut cx, r, &format!("scaling_rules[{i}]")) {
                        rules.push(rule);
                        rule_nodes.push((i, r));
                    }
                }
            }
            None => cx.error(node, "scaling_rules", "must be a list of rules"),
        }
    }
    let target = map
        .get_node("target")
        .and_then(|n| parse_target(&mut cx, n));
    let schedules = map
        .get_node("schedules")
        .and_then(|n| parse_schedules(&mut cx, n));
    if map.get_node("scaling_rules").is_none()
        && map.get_node("schedules").is_none()
        && map.get_node("target").is_none()
    {
        cx.error(
            &root,
            "",
            "a policy needs scaling_rules, schedules or target",
        );
    }
    let conflict = match map.get_node("conflict_resolution") {
        None => Conflict::ScaleOutWins,
        Some(n) => match cx.scalar(n, "conflict_resolution") {
            Some("scale_out_wins") => Conflict::ScaleOutWins,
            Some("first_match") => Conflict::FirstMatch,
            Some(other) => {
                cx.error(
                    n,
                    "conflict_resolution",
                    format!("must be scale_out_wins or first_match, got {other:?}"),
                );
                Conflict::ScaleOutWins
            }
            None => Conflict::ScaleOutWins,
        },
    };
    let cool_downs = map
        .get_node("cool_downs")
        .map(|n| parse_cool_downs(&mut cx, n))
        .unwrap_or_default();
    if let Some(n) = map.get_node("configuration") {
        check_configuration(&mut cx, n);
    }
    let mut extras = BTreeMap::new();
    for key in ["schema-version", "credential-type"] {
        if let Some(v) = map.get_node(key).and_then(|n| cx.scalar(n, key)) {
            extras.insert(key.to_owned(), v.to_owned());
        }
    }
    check_contradictions(&mut cx, &rules, &rule_nodes);

    let has_errors = cx.problems.iter().any(|p| p.severity == Severity::Error);
    let policy = match (has_errors, min, max) {
        (false, Some(min), Some(max)) => Some(Policy {
            app,
            min,
            max,
            rules,
            target,
            schedules,
            conflict,
            cool_downs,
            extras,
        }),
        _ => None,
    };
    cx.problems.sort_by_key(|p| (p.line, p.column));
    Loaded {
        policy,
        problems: cx.problems,
    }
}

/// `map[key]`, or an error at `parent` naming the missing field `base.key`.
pub(super) fn required<'n>(
    cx: &mut Ctx<'_>,
    map: &'n MarkedMappingNode,
    parent: &Node,
    base: &str,
    key: &str,
) -> Option<&'n Node> {
    let node = map.get_node(key);
    if node.is_none() {
        cx.error(parent, &join(base, key), "required field is missing");
    }
    node
}

fn load_error_position(e: &marked_yaml::LoadError) -> (usize, usize) {
    use marked_yaml::LoadError::*;
    let m = match e {
        TopLevelMustBeMapping(m)
        | TopLevelMustBeSequence(m)
        | UnexpectedAnchor(m)
        | MappingKeyMustBeScalar(m)
        | UnexpectedTag(m)
        | ScanError(m, _) => Some(*m),
        DuplicateKey(inner) => inner.key.span().start().copied(),
    };
    m.map_or((0, 0), |m| (m.line(), m.column()))
}

fn load_error_message(e: &marked_yaml::LoadError) -> String {
    use marked_yaml::LoadError::*;
    match e {
        TopLevelMustBeMapping(_) => "a policy must be a mapping".into(),
        DuplicateKey(inner) => format!("duplicate key {:?}", inner.key.as_str()),
        ScanError(_, err) => format!("not valid YAML or JSON: {}", err.info()),
        other => format!("not a valid policy document: {other}"),
    }
}

fn parse_cool_downs(cx: &mut Ctx<'_>, node: &Node) -> CoolDowns {
    let Some(map) = node.as_mapping() else {
        cx.error(
            node,
            "cool_downs",
            "must be a mapping with scale_out and/or scale_in",
        );
        return CoolDowns::default();
    };
    cx.known_keys(map, "cool_downs", &["scale_out", "scale_in"]);
    CoolDowns {
        scale_out: map
            .get_node("scale_out")
            .and_then(|n| cx.duration(n, "cool_downs.scale_out")),
        scale_in: map
            .get_node("scale_in")
            .and_then(|n| cx.duration(n, "cool_downs.scale_in")),
    }
}

fn check_configuration(cx: &mut Ctx<'_>, node: &Node) {
    let path = "configuration";
    let Some(map) = node.as_mapping() else {
        return cx.error(node, path, "must be a mapping");
    };
    cx.known_keys(map, path, &["custom_metrics", "app_guid"]);
    let Some(cm) = map.get_node("custom_metrics").and_then(Node::as_mapping) else {
        return;
    };
    cx.known_keys(
        cm,
        "configuration.custom_metrics",
        &["metric_submission_strategy"],
    );
    let Some(strategy_node) = cm.get_node("metric_submission_strategy") else {
        return;
    };
    let path = "configuration.custom_metrics.metric_submission_strategy";
    let Some(strategy) = strategy_node.as_mapping() else {
        return cx.error(strategy_node, path, "must be a mapping");
    };
    cx.known_keys(strategy, path, &["allow_from"]);
    match strategy.get_node("allow_from") {
        None => cx.error(
            strategy_node,
            &join(path, "allow_from"),
            "allow_from is required",
        ),
        Some(n) => {
            let value = cx.scalar(n, &join(path, "allow_from"));
            if !matches!(value, Some("bound_app" | "same_app")) {
                cx.error(
                    n,
                    &join(path, "allow_from"),
                    "must be one of the following: \"bound_app\", \"same_app\"",
                );
            }
        }
    }
}

fn parse_schedules(cx: &mut Ctx<'_>, node: &Node) -> Option<Schedules> {
    let path = "schedules";
    let Some(map) = node.as_mapping() else {
        cx.error(node, path, "must be a mapping");
        return None;
    };
    cx.known_keys(
        map,
        path,
        &["timezone", "recurring_schedule", "specific_date"],
    );
    let timezone = required(cx, map, node, "schedules", "timezone").and_then(|n| {
        let raw = cx.scalar(n, "schedules.timezone")?;
        let name = raw.trim();
        if name != raw {
            cx.warn(n, "schedules.timezone", "surrounding spaces ignored");
        }
        match name.parse::<chrono_tz::Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                cx.error(
                    n,
                    "schedules.timezone",
                    format!("unknown time zone {name:?} (use an IANA name such as Europe/Berlin)"),
                );
                None
            }
        }
    });
    if map.get_node("recurring_schedule").is_none() && map.get_node("specific_date").is_none() {
        cx.error(node, path, "needs recurring_schedule or specific_date");
    }
    let mut recurring = Vec::new();
    if let Some(seq) = map
        .get_node("recurring_schedule")
        .and_then(Node::as_sequence)
    {
        for (i, r) in seq.iter().enumerate() {
            if let Some(rs) =
                schedules::recurring(cx, r, &format!("schedules.recurring_schedule[{i}]"))
            {
                recurring.push((i, r, rs));
            }
        }
    }
    let mut specific = Vec::new();
    if let Some(seq) = map.get_node("specific_date").and_then(Node::as_sequence) {
        for (i, r) in seq.iter().enumerate() {
            if let Some(sd) = schedules::specific(cx, r, &format!("schedules.specific_date[{i}]")) {
                specific.push((i, r, sd));
            }
        }
    }
    schedules::overlaps(cx, &recurring, &specific);
    Some(Schedules {
        timezone: timezone?,
        recurring: recurring.into_iter().map(|(_, _, r)| r).collect(),
        specific: specific.into_iter().map(|(_, _, s)| s).collect(),
    })
}

mod rules;
mod schedules;
mod target;

use target::parse_target;

#[cfg(test)]
pub(crate) use rules::parse_adjustment;
use rules::{check_contradictions, parse_rule};
