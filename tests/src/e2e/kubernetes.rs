//! The Kubernetes manifests in `deploy/kubernetes/`: every object against the Kubernetes
//! API's own schemas (the `kubernetes-validate` tool, strict: an unknown field fails), and
//! against the binary they run: every container's arguments name flags its subcommand
//! has, every port and probe is where the component listens, the kustomization lists
//! exactly the manifests, the autoscaler's Role writes nothing but the `scale`
//! subresource, and its example policies pass `hydrant policy check --strict`.
//!
//! No cluster is needed; the manifests are read as files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use marked_yaml::{LoaderOptions, Node};
use serde_json::Value;

use crate::guard::Scratch;
use crate::hydrant_bin;

/// The Kubernetes version the manifests are validated against (they need 1.28 or later:
/// the log cache reads the `apps.kubernetes.io/pod-index` label).
const KUBERNETES_VERSION: &str = "1.30.0";

/// Where `.ci/run` installs `kubernetes-validate` (a venv of its own).
const VALIDATOR_VENV: &str = "/opt/hydrant-kv/bin/kubernetes-validate";

/// How to install it, for the failure message.
const INSTALL: &str = "python3 -m venv /opt/hydrant-kv && \
                       /opt/hydrant-kv/bin/pip install kubernetes-validate==1.37.0";

/// Workload kinds whose pod templates run Hydrant.
const WORKLOADS: &[&str] = &["Deployment", "StatefulSet", "DaemonSet"];

/// Verbs that only read.
const READ_VERBS: &[&str] = &["get", "list", "watch"];

/// `deploy/kubernetes/`.
fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// Every manifest file (YAML, not the kustomization), by name.
fn manifest_files() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("deploy/kubernetes/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .filter(|p| p.file_stem().is_some_and(|s| s != "kustomization"))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no manifests in {}", dir().display());
    out
}

/// One YAML document of a manifest file, as JSON (every scalar a string).
#[derive(Debug)]
struct Doc {
    /// `file.yaml#N` (N from 1).
    at: String,
    value: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }

    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }
}

/// A YAML node as JSON, every scalar a string (`replicas: 2` is `"2"`).
fn json(node: &Node) -> Value {
    match node {
        Node::Scalar(s) => Value::String(s.as_str().to_owned()),
        Node::Mapping(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.as_str().to_owned(), json(v)))
                .collect(),
        ),
        Node::Sequence(s) => Value::Array(s.iter().map(json).collect()),
    }
}

/// Parses `text` (documents separated by `---` lines: none may occur in a block scalar),
/// skipping documents that hold only comments; a duplicate key is an error.
fn parse_documents(file: &str, text: &str) -> Vec<Doc> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut n = 0;
    for line in text.lines().chain(std::iter::once("---")) {
        if line.trim_end() != "---" {
            current.push_str(line);
            current.push('\n');
            continue;
        }
        let body = std::mem::take(&mut current);
        if body
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            continue;
        }
        n += 1;
        let at = format!("{file}#{n}");
        let options = LoaderOptions::default().error_on_duplicate_keys(true);
        let node = marked_yaml::parse_yaml_with_options(0, &body, options)
            .unwrap_or_else(|e| panic!("{at}: not YAML: {e}"));
        docs.push(Doc {
            at,
            value: json(&node),
        });
    }
    docs
}

/// Every document of every manifest file.
fn documents() -> Vec<Doc> {
    let mut out = Vec::new();
    for path in manifest_files() {
        let text = std::fs::read_to_string(&path).expect("read manifest");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let docs = parse_documents(&name, &text);
        assert!(!docs.is_empty(), "{name}: no objects");
        out.extend(docs);
    }
    out
}

/// The strings of an array (none when `v` is no array).
fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// Every container of every workload: where it is, the container, and its pod spec.
fn containers(docs: &[Doc]) -> Vec<(String, &Value, &Value)> {
    let mut out = Vec::new();
    for d in docs.iter().filter(|d| WORKLOADS.contains(&d.kind())) {
        let pod = &d.value["spec"]["template"]["spec"];
        for key in ["initContainers", "containers"] {
            for c in pod[key].as_array().into_iter().flatten() {
                let at = format!("{} {}/{} container {}", d.at, d.kind(), d.name(), c["name"]);
                out.push((at, c, pod));
            }
        }
    }
    assert!(!out.is_empty(), "no containers in the manifests");
    out
}

/// A container's subcommand (its first argument: the image's entrypoint is `hydrant`).
fn subcommand<'a>(at: &str, c: &'a Value) -> &'a str {
    assert!(
        c.get("command").is_none(),
        "{at}: sets `command`, replacing the image's `hydrant` entrypoint"
    );
    let args = strings(&c["args"]);
    let sub = args.first().copied().unwrap_or_default();
    assert!(
        !sub.is_empty() && !sub.starts_with('-'),
        "{at}: the first argument must be the subcommand, got {args:?}"
    );
    sub
}

/// The value a container's arguments give `flag` (`--flag=V` or `--flag V`), if any.
fn arg_value<'a>(c: &'a Value, flag: &str) -> Option<&'a str> {
    let args = strings(&c["args"]);
    let eq = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix(eq.as_str())
            .or_else(|| (*a == flag).then(|| args.get(i + 1).copied()).flatten())
    })
}

/// `hydrant SUB --help`, memoised.
fn help(sub: &str) -> String {
    static CACHE: std::sync::Mutex<BTreeMap<String, String>> =
        std::sync::Mutex::new(BTreeMap::new());
    // A test that failed while holding it leaves what it had cached intact.
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(sub.to_owned())
        .or_insert_with(|| {
            let out = Command::new(hydrant_bin())
                .args([sub, "--help"])
                .output()
                .expect("run hydrant --help");
            assert!(
                out.status.success(),
                "`hydrant {sub} --help` failed: is `{sub}` a subcommand? {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .clone()
}

/// The long flags an option line of `--help` names (`-h, --help`, `--grpc <GRPC>`): its
/// leading tokens, so flags quoted in a description do not count.
fn line_flags(line: &str) -> Vec<&str> {
    line.split([' ', ','])
        .filter(|t| !t.is_empty())
        .take_while(|t| t.starts_with('-') || t.starts_with('<'))
        .filter(|t| t.starts_with("--"))
        .collect()
}

/// The long flags `help` lists.
fn flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .flat_map(line_flags)
        .map(str::to_owned)
        .collect()
}

/// The `[default: …]` that `help` gives `flag`.
fn default_of(help: &str, flag: &str) -> Option<String> {
    let lines: Vec<&str> = help.lines().collect();
    let start = lines.iter().position(|l| line_flags(l).contains(&flag))?;
    let end = lines[start + 1..]
        .iter()
        .position(|l| !line_flags(l).is_empty())
        .map_or(lines.len(), |p| start + 1 + p);
    let block = lines[start..end].join("\n");
    let rest = &block[block.find("[default: ")? + "[default: ".len()..];
    Some(rest[..rest.find(']')?].to_owned())
}

/// The address a container's component listens on for `flag`: its argument, else the
/// subcommand's default.
fn listen_addr(at: &str, c: &Value, flag: &str) -> String {
    let sub = subcommand(at, c);
    arg_value(c, flag)
        .map(str::to_owned)
        .or_else(|| default_of(&help(sub), flag))
        .unwrap_or_else(|| panic!("{at}: `hydrant {sub}` has no {flag} and no default"))
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{addr:?} is no host:port"))
}

/// The element of the array `list` whose `key` is `value`.
fn find<'a>(list: &'a Value, key: &str, value: &Value) -> Option<&'a Value> {
    list.as_array()?.iter().find(|e| &e[key] == value)
}

/// A probe's or Service's port (a number or a container port's name) as a number.
fn resolve_port(at: &str, c: &Value, port: &Value) -> u16 {
    let text = port.as_str().unwrap_or_default();
    if let Ok(n) = text.parse() {
        return n;
    }
    find(&c["ports"], "name", port)
        .and_then(|p| p["containerPort"].as_str()?.parse().ok())
        .unwrap_or_else(|| panic!("{at}: no container port named {text:?}"))
}

/// Finds `kubernetes-validate`: `$HYDRANT_KUBERNETES_VALIDATE`, the venv `.ci/run`
/// installs, then `PATH`. Fails (never skips) when it is missing.
fn validator() -> PathBuf {
    let mut tried = Vec::new();
    if let Some(p) = std::env::var_os("HYDRANT_KUBERNETES_VALIDATE") {
        tried.push(PathBuf::from(p));
    }
    tried.push(PathBuf::from(VALIDATOR_VENV));
    if let Some(path) = std::env::var_os("PATH") {
        tried.extend(std::env::split_paths(&path).map(|d| d.join("kubernetes-validate")));
    }
    tried
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "kubernetes-validate is not installed (looked for $HYDRANT_KUBERNETES_VALIDATE, \
             {VALIDATOR_VENV} and on PATH); install it with: {INSTALL}"
            )
        })
}

#[test]
fn every_object_passes_strict_schema_validation() {
    let tool = validator();
    let files = manifest_files();
    let expected = documents().len();
    let out = Command::new(&tool)
        .args(["--kubernetes-version", KUBERNETES_VERSION, "--strict"])
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", tool.display()));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate failed:\n{report}"
    );
    // An unknown kind is only a warning to the tool: every document must have passed.
    let problem = |l: &str| l.starts_with("WARN") || l.starts_with("ERROR");
    assert!(
        !report.lines().any(problem),
        "kubernetes-validate:\n{report}"
    );
    let passed = report
        .lines()
        .filter(|l| l.contains(" passed for resource "))
        .count();
    assert_eq!(
        passed, expected,
        "every document validated (the files hold {expected}):\n{report}"
    );
}

#[test]
fn the_kustomization_lists_exactly_the_manifests() {
    let text = std::fs::read_to_string(dir().join("kustomization.yaml")).expect("kustomization");
    let k = &parse_documents("kustomization.yaml", &text)[0].value;
    assert_eq!(k["kind"], "Kustomization");
    assert_eq!(k["namespace"], "hydrant");
    let listed = strings(&k["resources"]);
    let present: Vec<String> = manifest_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    // Both ways: every listed file exists (once), every manifest is listed.
    assert_eq!(
        sorted, present,
        "kustomization.yaml `resources` against the files"
    );
    let docs = documents();
    let namespace = docs.iter().find(|d| d.kind() == "Namespace");
    assert_eq!(
        namespace.map(Doc::name),
        Some("hydrant"),
        "the Namespace object"
    );
}

#[test]
fn every_argument_is_a_flag_of_the_subcommand() {
    let docs = documents();
    let mut subs = BTreeSet::new();
    for (at, c, _) in containers(&docs) {
        let sub = subcommand(&at, c);
        subs.insert(sub.to_owned());
        let known = flags(&help(sub));
        let env: BTreeSet<&str> = c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str())
            .collect();
        for arg in strings(&c["args"]).iter().skip(1) {
            if arg.starts_with("--") {
                let flag = arg.split_once('=').map_or(*arg, |(f, _)| f);
                assert!(
                    known.contains(flag),
                    "{at}: `hydrant {sub}` has no flag {flag} (see `hydrant {sub} --help`)"
                );
            }
            // `$(NAME)` is expanded by the kubelet only when the container defines NAME.
            let mut rest = *arg;
            while let Some(i) = rest.find("$(") {
                let name = &rest[i + 2..];
                let end = name
                    .find(')')
                    .unwrap_or_else(|| panic!("{at}: unclosed $( in {arg}"));
                assert!(
                    env.contains(&name[..end]),
                    "{at}: {arg} uses $({}) but the container has no such env",
                    &name[..end]
                );
                rest = &name[end..];
            }
        }
    }
    let expected = ["agent", "autoscaler", "doppler", "logcache", "storage"];
    assert_eq!(subs, expected.iter().map(|s| s.to_string()).collect());
}

#[test]
fn probes_and_ports_are_where_each_component_listens() {
    let docs = documents();
    for (at, c, _) in containers(&docs) {
        let http = listen_addr(&at, c, "--http");
        let host = http.rsplit_once(':').map_or("", |(h, _)| h);
        assert!(
            ["0.0.0.0", "[::]"].contains(&host),
            "{at}: --http {http} is not reachable from the kubelet (listen on 0.0.0.0)"
        );
        let tls = arg_value(c, "--tls-ca").is_some();
        for probe in ["readinessProbe", "livenessProbe"] {
            let get = &c[probe]["httpGet"];
            assert!(get.is_object(), "{at}: no {probe} httpGet");
            assert_eq!(get["path"], "/healthz", "{at}: {probe} path");
            let port = resolve_port(&at, c, &get["port"]);
            assert_eq!(
                port,
                port_of(&http),
                "{at}: {probe} port against --http {http}"
            );
            let scheme = get["scheme"].as_str().unwrap_or("HTTP");
            let want = if tls { "HTTPS" } else { "HTTP" };
            assert_eq!(
                scheme, want,
                "{at}: {probe} scheme (HTTPS iff certificates)"
            );
        }
        // A port named after a listening flag (grpc, http) is where that flag listens.
        let sub = subcommand(&at, c);
        for p in c["ports"].as_array().into_iter().flatten() {
            let name = p["name"].as_str().unwrap_or_default();
            let flag = format!("--{name}");
            if flags(&help(sub)).contains(&flag) {
                let addr = listen_addr(&at, c, &flag);
                assert_eq!(
                    p["containerPort"].as_str().and_then(|s| s.parse().ok()),
                    Some(port_of(&addr)),
                    "{at}: port {name} against {flag} {addr}"
                );
            }
        }
    }
}

#[test]
fn services_select_a_workload_and_reach_its_ports() {
    let docs = documents();
    let services: Vec<&Doc> = docs.iter().filter(|d| d.kind() == "Service").collect();
    assert!(!services.is_empty());
    for s in services {
        let selector = s.value["spec"]["selector"].as_object().expect("selector");
        let matching: Vec<&Doc> = docs
            .iter()
            .filter(|d| WORKLOADS.contains(&d.kind()))
            .filter(|d| {
                let labels = &d.value["spec"]["template"]["metadata"]["labels"];
                selector.iter().all(|(k, v)| &labels[k] == v)
            })
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "{}: Service {} selects one workload",
            s.at,
            s.name()
        );
        let w = matching[0];
        let c = &w.value["spec"]["template"]["spec"]["containers"][0];
        for p in s.value["spec"]["ports"].as_array().into_iter().flatten() {
            resolve_port(&s.at, c, p.get("targetPort").unwrap_or(&p["port"]));
        }
        if w.kind() == "StatefulSet" {
            assert_eq!(w.value["spec"]["serviceName"], s.name(), "{}", w.at);
            assert_eq!(s.value["spec"]["clusterIP"], "None", "{}: headless", s.at);
        }
    }
}

#[test]
fn the_autoscaler_role_writes_only_the_scale_subresource() {
    let docs = documents();
    let cluster = docs.iter().find(|d| d.kind().starts_with("Cluster"));
    assert!(cluster.is_none(), "namespaced RBAC only: {cluster:?}");
    let roles: Vec<&Doc> = docs.iter().filter(|d| d.kind() == "Role").collect();
    let mut can = BTreeSet::new();
    for r in &roles {
        for rule in r.value["rules"].as_array().expect("rules") {
            let (verbs, resources) = (strings(&rule["verbs"]), strings(&rule["resources"]));
            let groups = strings(&rule["apiGroups"]);
            for list in [&verbs, &resources, &groups] {
                assert!(!list.contains(&"*"), "{}: a wildcard in {rule}", r.at);
            }
            let writes = verbs.iter().any(|v| !READ_VERBS.contains(v));
            if writes {
                assert_eq!(
                    (resources.as_slice(), groups.as_slice()),
                    (["deployments/scale"].as_slice(), ["apps"].as_slice()),
                    "{}: write verbs {verbs:?} on anything but apps deployments/scale",
                    r.at
                );
            }
            for v in &verbs {
                for res in &resources {
                    can.insert(format!("{v} {res}"));
                }
            }
        }
    }
    // What the Kubernetes actuator calls: the deployments list and the scale patch.
    for need in ["list deployments", "patch deployments/scale"] {
        assert!(can.contains(need), "the Role must allow {need}: {can:?}");
    }
    // Bound to the service account the autoscaler runs as.
    let deployment = docs
        .iter()
        .find(|d| d.kind() == "Deployment" && d.name() == "autoscaler")
        .expect("autoscaler Deployment");
    let account = &deployment.value["spec"]["template"]["spec"]["serviceAccountName"];
    let binding = docs
        .iter()
        .find(|d| d.kind() == "RoleBinding")
        .expect("a RoleBinding");
    let (role, subject) = (&binding.value["roleRef"], &binding.value["subjects"][0]);
    assert_eq!(
        (&role["name"], &subject["name"], &subject["namespace"]),
        (
            &Value::from(roles[0].name()),
            account,
            &Value::from("hydrant")
        ),
        "{}: the Role, bound to the autoscaler's service account",
        binding.at
    );
}

#[test]
fn the_autoscaler_policies_pass_policy_check() {
    let docs = documents();
    let (at, c, pod) = containers(&docs)
        .into_iter()
        .find(|(at, c, _)| subcommand(at, c) == "autoscaler")
        .expect("an autoscaler container");
    assert_eq!(arg_value(c, "--actuator"), Some("kubernetes"), "{at}");
    let dir = arg_value(c, "--policies").unwrap_or_else(|| panic!("{at}: no --policies"));
    let mount = find(&c["volumeMounts"], "mountPath", &Value::from(dir))
        .unwrap_or_else(|| panic!("{at}: nothing mounted at --policies {dir}"));
    let volume = find(&pod["volumes"], "name", &mount["name"]).expect("the policies volume");
    let map = volume["configMap"]["name"]
        .as_str()
        .expect("a ConfigMap volume");
    let config = docs
        .iter()
        .find(|d| d.kind() == "ConfigMap" && d.name() == map)
        .unwrap_or_else(|| panic!("no ConfigMap {map}"));
    let data = config.value["data"].as_object().expect("ConfigMap data");
    assert!(!data.is_empty(), "{}: no example policy", config.at);
    let scratch = Scratch::new("kube-policies");
    for (file, text) in data {
        std::fs::write(scratch.join(file), text.as_str().unwrap()).unwrap();
    }
    let out = Command::new(hydrant_bin())
        .args(["policy", "check", "--strict"])
        .arg(scratch.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = format!("{} file(s): 0 error(s), 0 warning(s)", data.len());
    let ok = out.status.success() && stdout.contains(&summary);
    assert!(ok, "{}: policy check --strict:\n{stdout}", config.at);
}

#[test]
fn the_parsers_here_find_what_they_look_for() {
    let docs = parse_documents(
        "x.yaml",
        "# only a comment\n---\na: 1\n---\n---\nb: [x, y]\n",
    );
    assert_eq!(docs.len(), 2);
    assert_eq!(
        (docs[0].at.as_str(), &docs[1].value["b"][1]),
        ("x.yaml#1", &Value::from("y"))
    );
    let help = "Options:\n      --grpc <GRPC>\n          gRPC address\n          \n          \
                [default: 127.0.0.1:3458]\n  -h, --help  Print help [default: no]\n";
    assert_eq!(
        default_of(help, "--grpc").as_deref(),
        Some("127.0.0.1:3458")
    );
    assert_eq!(default_of(help, "--gr"), None);
    let long = "      --actuator <ACTUATOR>\n          - kubernetes: deployments (`--kube-api`)\n\
                \n          [default: scheduler]\n";
    assert_eq!(default_of(long, "--actuator").as_deref(), Some("scheduler"));
    assert_eq!(flags(long), ["--actuator".to_owned()].into());
    assert_eq!(flags(help), ["--grpc", "--help"].map(String::from).into());
    let c = serde_json::json!({"args": ["agent", "--http=0.0.0.0:1", "--tag", "a=b"]});
    assert_eq!(arg_value(&c, "--http"), Some("0.0.0.0:1"));
    assert_eq!(arg_value(&c, "--tag"), Some("a=b"));
    assert_eq!(arg_value(&c, "--grpc"), None);
}
