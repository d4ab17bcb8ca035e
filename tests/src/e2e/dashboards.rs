//! The Grafana dashboards against Grafana's dashboard model and the declared metric names:
//! schemaVersion, unique ids, grid positions, the data source on every panel and query,
//! variable definitions, and every expression parsing as PromQL over names Hydrant
//! declares. They must work both ways Grafana takes them: imported through its UI (the
//! `__inputs` data source picker; the importer writes the chosen uid over `${DS_HYDRANT}`)
//! and provisioned by `hydrant up` (no import: `${DS_HYDRANT}` is then the data source
//! variable, whose default is the provisioned default data source). `up.rs` runs the same
//! queries against a live system.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use promql_parser::parser::{self, Expr};
use serde_json::Value;

/// The schemaVersion Grafana 12 writes.
pub(crate) const SCHEMA_VERSION: u64 = 41;

/// Value substituted for each template variable when a query runs.
pub(crate) const APP: &str = "demo";

/// What `$guid` (the Apps dashboard's app guid) becomes in [`queries`]; `up.rs` puts the
/// demo app's guid in its place.
pub(crate) const GUID: &str = "00000000-0000-4000-8000-0000000000a9";

/// The data source every panel, query, annotation and variable names: the dashboard's
/// one import input, and the name of its data source variable.
const DS: &str = "${DS_HYDRANT}";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

/// Every dashboard: file name and parsed JSON.
pub(crate) fn dashboards() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir()).expect("dashboards/") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("read dashboard");
            let json: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            out.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                json,
            ));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(out.len(), 3, "platform, apps and autoscaler dashboards");
    out
}

/// Every query of a dashboard (panels, then annotations), variables substituted: where it
/// is, and the expression.
pub(crate) fn queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let at = format!("panel {} ({}) {}", p["id"], p["title"], t["refId"]);
            out.push((at, substitute(t["expr"].as_str().unwrap_or_default())));
        }
    }
    for a in annotations(d) {
        let at = format!("annotation {}", a["name"]);
        out.push((at, substitute(a["expr"].as_str().unwrap_or_default())));
    }
    out
}

fn substitute(expr: &str) -> String {
    expr.replace("$app", APP).replace("$guid", GUID)
}

fn panels(d: &Value) -> Vec<&Value> {
    d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] != "row")
        .collect()
}

fn annotations(d: &Value) -> Vec<&Value> {
    d["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["builtIn"] != 1)
        .collect()
}

/// Checks the provisioned Prometheus data source.
fn check_provisioned_data_source() {
    let text = std::fs::read_to_string(dir().join("provisioning/datasources/hydrant.yaml"))
        .expect("datasource provisioning file");
    let root = marked_yaml::parse_yaml(0, &text).expect("provisioning YAML");
    let ds = root
        .as_mapping()
        .and_then(|m| m.get_sequence("datasources"))
        .and_then(|s| s.get_mapping(0))
        .expect("datasources[0]");
    assert_eq!(
        ds.get_scalar("type").map(|s| s.as_str()),
        Some("prometheus")
    );
    // The storage API needs a token: the data source sends one.
    let header = ds
        .get_mapping("jsonData")
        .and_then(|j| j.get_scalar("httpHeaderName1"))
        .map(|s| s.as_str().to_owned());
    assert_eq!(header.as_deref(), Some("Authorization"));
    let value = ds
        .get_mapping("secureJsonData")
        .and_then(|j| j.get_scalar("httpHeaderValue1"))
        .map(|s| s.as_str().to_owned());
    assert_eq!(value.as_deref(), Some("Bearer ${HYDRANT_TOKEN}"));
    // `up` serves HTTPS with its own CA: the data source trusts it.
    assert!(
        ds.get_scalar("url")
            .is_some_and(|u| u.as_str().starts_with("https://")),
        "the data source reaches storage over https"
    );
    let ca_check = ds
        .get_mapping("jsonData")
        .and_then(|j| j.get_scalar("tlsAuthWithCACert"))
        .map(|s| s.as_str().to_owned());
    assert_eq!(ca_check.as_deref(), Some("true"));
    let ca = ds
        .get_mapping("secureJsonData")
        .and_then(|j| j.get_scalar("tlsCACert"))
        .map(|s| s.as_str().to_owned());
    assert_eq!(ca.as_deref(), Some("${HYDRANT_TLS_CA_PEM}"));
    // Provisioned dashboards find it as the data source variable's default.
    assert_eq!(ds.get_scalar("isDefault").map(|s| s.as_str()), Some("true"));
    assert!(ds.get_scalar("uid").is_some(), "a stable uid");
}

/// Every `datasource.uid` in a dashboard (panels, queries, annotations, variables).
fn datasource_uids(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(uid) = m.get("datasource").and_then(|d| d["uid"].as_str()) {
                out.push(uid.to_owned());
            }
            m.values().for_each(|x| datasource_uids(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| datasource_uids(x, out)),
        _ => {}
    }
}

/// The dashboard's import inputs and data source variable; then an import as Grafana's
/// UI does it (the chosen uid written over `${DS_HYDRANT}`) leaves every query on the
/// chosen data source.
fn check_data_source_input(file: &str, d: &Value, text: &str) {
    let inputs = d["__inputs"].as_array().expect("__inputs");
    assert_eq!(inputs.len(), 1, "{file}: one input");
    let i = &inputs[0];
    assert_eq!(
        (&i["name"], &i["type"], &i["pluginId"]),
        (
            &Value::from("DS_HYDRANT"),
            &Value::from("datasource"),
            &Value::from("prometheus")
        ),
        "{file}: __inputs"
    );
    let var = &d["templating"]["list"][0];
    assert_eq!(
        (&var["name"], &var["type"], &var["query"]),
        (
            &Value::from("DS_HYDRANT"),
            &Value::from("datasource"),
            &Value::from("prometheus")
        ),
        "{file}: the first variable picks the data source"
    );
    let mut uids = Vec::new();
    datasource_uids(d, &mut uids);
    let builtin = "-- Grafana --";
    assert!(
        uids.iter().all(|u| u == DS || u == builtin),
        "{file}: every data source is {DS}: {uids:?}"
    );
    let imported: Value =
        serde_json::from_str(&text.replace(DS, "picked-at-import")).expect("imported JSON");
    let mut uids = Vec::new();
    datasource_uids(&imported, &mut uids);
    let picked = uids.iter().filter(|u| *u == "picked-at-import").count();
    assert!(
        picked > 0 && uids.iter().all(|u| u == "picked-at-import" || u == builtin),
        "{file}: after import every query uses the chosen data source: {uids:?}"
    );
}

fn metric_names(e: &Expr, out: &mut BTreeSet<String>) {
    match e {
        Expr::VectorSelector(vs) => out.extend(vs.name.clone()),
        Expr::MatrixSelector(ms) => out.extend(ms.vs.name.clone()),
        Expr::Aggregate(a) => {
            metric_names(&a.expr, out);
            if let Some(p) = &a.param {
                metric_names(p, out);
            }
        }
        Expr::Unary(u) => metric_names(&u.expr, out),
        Expr::Binary(b) => {
            metric_names(&b.lhs, out);
            metric_names(&b.rhs, out);
        }
        Expr::Paren(p) => metric_names(&p.expr, out),
        Expr::Subquery(s) => metric_names(&s.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| metric_names(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

#[test]
fn dashboards_follow_grafanas_model_and_use_declared_names() {
    check_provisioned_data_source();
    let declared: HashSet<&str> = hydrant::telemetry::dashboard_names().into_iter().collect();
    let mut dashboard_uids = HashSet::new();
    for (file, d) in dashboards() {
        let at = |what: &str| format!("{file}: {what}");
        let text = std::fs::read_to_string(dir().join(&file)).expect("read dashboard");
        check_data_source_input(&file, &d, &text);
        assert_eq!(
            d["schemaVersion"].as_u64(),
            Some(SCHEMA_VERSION),
            "{}",
            at("schemaVersion")
        );
        let duid = d["uid"].as_str().expect("uid");
        assert!(!duid.is_empty() && duid.len() <= 40, "{}", at("uid"));
        assert!(
            dashboard_uids.insert(duid.to_owned()),
            "{}",
            at("uid not unique")
        );
        assert!(
            d["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{}",
            at("title")
        );

        let mut ids = HashSet::new();
        for p in d["panels"].as_array().expect("panels") {
            let id = p["id"].as_u64().expect("panel id");
            assert!(ids.insert(id), "{}", at(&format!("panel id {id} repeated")));
            let g = &p["gridPos"];
            let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
            assert!(
                g["y"].is_u64() && g["h"].as_u64().unwrap() > 0,
                "{}",
                at("gridPos")
            );
            assert!(
                w > 0 && x + w <= 24,
                "{}",
                at(&format!("panel {id} outside the 24-column grid"))
            );
            if p["type"] == "row" {
                continue;
            }
            assert!(
                ["timeseries", "stat", "gauge", "table", "bargauge"]
                    .contains(&p["type"].as_str().unwrap()),
                "{}",
                at(&format!("panel {id} type"))
            );
            assert_eq!(
                p["datasource"]["uid"],
                DS,
                "{}",
                at(&format!("panel {id} datasource"))
            );
            let targets = p["targets"].as_array().expect("targets");
            assert!(
                !targets.is_empty(),
                "{}",
                at(&format!("panel {id} has no query"))
            );
            let mut refs = HashSet::new();
            for t in targets {
                assert!(
                    refs.insert(t["refId"].as_str().expect("refId")),
                    "{}",
                    at("refId repeated")
                );
                assert_eq!(
                    t["datasource"]["uid"],
                    DS,
                    "{}",
                    at(&format!("panel {id} query datasource"))
                );
            }
        }
        for a in annotations(&d) {
            assert_eq!(
                a["datasource"]["uid"],
                DS,
                "{}",
                at("annotation datasource")
            );
            assert!(
                a["enable"].is_boolean() && a["name"].is_string(),
                "{}",
                at("annotation")
            );
        }

        let mut variables = HashSet::new();
        for v in d["templating"]["list"].as_array().expect("templating.list") {
            let name = v["name"].as_str().expect("variable name");
            if v["type"] == "datasource" {
                variables.insert(name.to_owned());
                continue;
            }
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.is_empty(),
                "{}",
                at("variable name")
            );
            variables.insert(name.to_owned());
            assert_eq!(v["type"], "query", "{}", at("variable type"));
            assert_eq!(v["datasource"]["uid"], DS, "{}", at("variable datasource"));
            assert!(
                matches!(v["refresh"].as_u64(), Some(1 | 2)),
                "{}",
                at("variable refresh")
            );
            let q = v["query"]["query"].as_str().expect("variable query");
            assert_eq!(
                v["definition"].as_str(),
                Some(q),
                "{}",
                at("variable definition")
            );
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or_else(|| {
                    panic!(
                        "{}",
                        at("variable query is not label_values(metric, label)")
                    )
                });
            let (series, label) = inner.rsplit_once(',').expect("label_values(metric, label)");
            // `metric` or `metric{label="$var"}`: variables used there are defined above.
            let metric = series.split('{').next().unwrap_or_default();
            for word in series.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
            {
                if let Some(var) = word.strip_prefix('$') {
                    assert!(
                        variables.contains(var) && var != name,
                        "{}",
                        at(&format!("variable {name}: ${var} not defined before it"))
                    );
                }
            }
            assert!(
                declared.contains(metric.trim()),
                "{}",
                at(&format!("variable metric {metric}"))
            );
            assert!(!label.trim().is_empty(), "{}", at("variable label"));
        }
        for (place, expr) in queries(&d) {
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$')) {
                if let Some(var) = word.strip_prefix('$') {
                    assert!(
                        variables.contains(var),
                        "{}",
                        at(&format!("{place}: ${var} undefined"))
                    );
                }
            }
            let parsed = parser::parse(&expr)
                .unwrap_or_else(|e| panic!("{}", at(&format!("{place}: {expr}: {e}"))));
            let mut names = BTreeSet::new();
            metric_names(&parsed, &mut names);
            assert!(!names.is_empty(), "{}", at(&format!("{place}: no metric")));
            for n in names {
                assert!(
                    declared.contains(n.as_str()),
                    "{}",
                    at(&format!("{place}: {n} is not declared"))
                );
            }
        }
    }
}

#[test]
fn dashboard_provisioning_points_at_the_dashboards() {
    let text = std::fs::read_to_string(dir().join("provisioning/dashboards/hydrant.yaml"))
        .expect("dashboard provisioning file");
    let root = marked_yaml::parse_yaml(0, &text).expect("provisioning YAML");
    let p = root
        .as_mapping()
        .and_then(|m| m.get_sequence("providers"))
        .and_then(|s| s.get_mapping(0))
        .expect("providers[0]");
    assert_eq!(p.get_scalar("type").map(|s| s.as_str()), Some("file"));
    let path = p
        .get_mapping("options")
        .and_then(|o| o.get_scalar("path"))
        .expect("options.path");
    assert_eq!(path.as_str(), "${HYDRANT_DASHBOARDS}");
}
