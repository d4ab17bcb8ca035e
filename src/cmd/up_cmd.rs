//! Flags and glue for `hydrant up` (the whole system under one supervisor), `hydrant config
//! check`, and the demo app. `up` plans each component's command line from its own
//! defaults, the config file and a few of its own (data under `--data-dir`), parses it
//! with the component's own flag definitions to learn its addresses, and hands the list to
//! [`hydrant::up::Supervisor`].

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, CommandFactory as _, FromArgMatches as _, Subcommand};
use hydrant::demo;
use hydrant::up::{Spec, StopEvent, Supervisor};
use hydrant_runtime::shutdown;

use super::parse_duration;
use super::{components, config};
use crate::Command;

mod banner;
mod terminal;
use banner::{print_endpoints, push_demo};
use terminal::Terminal;

/// Name of the demo app and of its policy file.
const DEMO: &str = "demo";

/// The example policy written into an empty policy directory.
const EXAMPLE_POLICY: &str = "\
# An example policy, written by `hydrant up` into an empty policy directory. It scales the
# app \"demo\" (`hydrant up --demo` pushes it) on CPU. Edit it or add files beside it: the
# autoscaler reloads them. Check them with `hydrant policy check DIR`.
app: demo
instance_min_count: 1
instance_max_count: 3
scaling_rules:
  - {metric_type: cpu, operator: '>', threshold: 60, breach_duration: 30s, cool_down: 30s, adjustment: '+1'}
  - {metric_type: cpu, operator: '<', threshold: 15, breach_duration: 60s, cool_down: 60s, adjustment: '-1'}
";

/// `up`'s data directory unless `--data-dir` says otherwise; CLI commands look for the
/// token and the CA there.
pub(crate) const DEFAULT_DATA_DIR: &str = "hydrant-data";

/// Where `up` keeps its CA and certificates, under its data directory.
pub(crate) const CERTS_DIR: &str = "certs";

/// The CA a CLI command trusts when none is given: the one `up` made in its default data
/// directory.
pub(crate) fn default_ca() -> PathBuf {
    Path::new(DEFAULT_DATA_DIR).join(CERTS_DIR).join("ca.pem")
}

/// Makes the CA and certificates under `dir` unless every one is there already, so a
/// restart keeps the ones clients trust.
fn ensure_certs(dir: &Path) -> anyhow::Result<()> {
    let names = components::cert_names();
    let complete = dir.join("ca.pem").exists()
        && names.iter().all(|n| {
            dir.join(format!("{n}.pem")).exists() && dir.join(format!("{n}-key.pem")).exists()
        });
    if !complete {
        hydrant::certs::generate_all(dir, &names)?;
    }
    Ok(())
}

/// The admin token `up` makes in its data directory (mode 0600) and hands to every
/// component and to the CLI.
pub(crate) const TOKEN_FILE: &str = "token";

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Directory for everything: instances, storage, policies, each component's log, the
    /// API token.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub(crate) data_dir: PathBuf,
    /// Also push the demo app, which the example policy scales.
    #[arg(long)]
    pub(crate) demo: bool,
    /// Time each component gets to stop before it is killed.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub(crate) grace: Duration,
    /// Time each component gets to become healthy.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub(crate) start_timeout: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a config file (default: --config, else ./hydrant.yaml) and print every problem.
    Check {
        /// The file.
        file: Option<PathBuf>,
    },
}

/// A component as `up` runs it.
#[derive(Debug)]
pub(super) struct Planned {
    spec: Spec,
    /// The address of its main API or port, and what it is for.
    main: (String, &'static str),
    /// The autoscaler's first policy path.
    policies: Option<PathBuf>,
}

/// `hydrant config check`.
pub(crate) fn config(a: ConfigArgs, global: Option<PathBuf>) -> anyhow::Result<()> {
    let ConfigCommand::Check { file } = a.command;
    let path = file
        .or(global)
        .unwrap_or_else(|| config::DEFAULT_FILE.into());
    let command = crate::Cli::command();
    let file = config::load(&path, &command)?;
    // Flags that are fine alone may still clash together (a missing companion flag), and
    // values that parse may still be refused by the component: check both, the way the
    // component does at start, and report every problem of every section at once.
    let mut problems = Vec::new();
    for section in file.sections() {
        let mut argv: Vec<OsString> = vec!["hydrant".into(), section.into()];
        argv.extend(file.args(section, |_| false));
        // `up` hands every component the token file it makes; a section that chooses
        // neither a token file nor an open API is checked as `up` runs it.
        let chooses = argv.iter().any(|a| {
            let a = a.to_string_lossy();
            a.starts_with("--token-file") || a.starts_with("--auth-file") || a == "--insecure-open"
        });
        if section != "up" && !chooses {
            argv.push("--insecure-open".into());
        }
        let cli = match command.clone().try_get_matches_from(&argv) {
            Ok(matches) => crate::Cli::from_arg_matches(&matches)?,
            Err(e) => {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or_default();
                let message = first.trim_start_matches("error: ").to_owned();
                problems.push(file.problem(section, "", message));
                continue;
            }
        };
        for p in super::refused(&cli.command) {
            problems.push(file.problem(section, &p.field, p.message));
        }
    }
    if !problems.is_empty() {
        return Err(file.refused(problems).into());
    }
    println!("{}: ok ({})", path.display(), file.sections().join(", "));
    Ok(())
}

/// The hidden `hydrant demo-app`.
pub(crate) async fn demo_app() -> anyhow::Result<()> {
    let env = demo::Env::from_env().map_err(anyhow::Error::msg)?;
    demo::run(env, shutdown::on_signal()).await?;
    Ok(())
}

/// Loopback form of a listen address, for probes and for people.
fn reach(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// Where `up` planned the components others connect to: one source of truth, so moving a
/// port in the config file moves every connection to it.
#[derive(Debug, Default, Clone)]
struct Wiring {
    /// The doppler's gRPC address.
    doppler: Option<String>,
    /// The agent's gRPC address.
    agent: Option<String>,
    /// The cell's scheduler API URL.
    cell: Option<String>,
    /// The storage nozzle's API, when it runs.
    storage: Option<String>,
    /// The log cache's API.
    logcache: Option<String>,
    /// The autoscaler's API.
    autoscaler: Option<String>,
    /// Every component's HTTP base URL (its `/healthz`), for the console's platform page.
    health: Vec<(&'static str, String)>,
}

impl Wiring {
    fn of(planned: &[Planned]) -> Wiring {
        let main = |name| endpoint(planned, name).map(str::to_owned);
        Wiring {
            doppler: main("doppler"),
            agent: main("agent"),
            cell: main("cell"),
            storage: main("storage"),
            logcache: main("logcache"),
            autoscaler: main("autoscaler"),
            health: planned
                .iter()
                .map(|p| {
                    let base = p.spec.health.trim_end_matches("/healthz").to_owned();
                    (p.spec.name, base)
                })
                .collect(),
        }
    }

    /// The connection flags of component `name`, as (flag, address).
    fn flags(&self, name: &str) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut add = |flag, addr: &Option<String>| {
            if let Some(a) = addr {
                out.push((flag, a.clone()));
            }
        };
        match name {
            "agent" => {
                add("doppler", &self.doppler);
                // The apps' syslog drain bindings.
                add("drain-bindings", &self.cell);
            }
            "cell" => add("agent", &self.agent),
            "logcache" | "storage" | "autoscaler" => add("from", &self.doppler),
            // The console calls the four APIs and shows the others' health.
            "console" => {
                add("cell", &self.cell);
                add("logcache", &self.logcache);
                add("storage", &self.storage);
                add("autoscaler", &self.autoscaler);
            }
            _ => {}
        }
        // The log cache (app names to guids) and the autoscaler (scales) call the cell.
        if ["logcache", "autoscaler"].contains(&name) {
            add("scheduler", &self.cell);
        }
        // The autoscaler's dry runs read what storage kept.
        if name == "autoscaler" {
            add("replay-from", &self.storage);
        }
        // The log cache fills itself from storage's logs at start.
        if name == "logcache" {
            add("warm-from", &self.storage);
        }
        // Everything but the agent itself sends its own metrics to the agent.
        if name != "agent" {
            add("self-metrics-agent", &self.agent);
        }
        if name == "console" {
            for (component, base) in &self.health {
                if ["doppler", "agent"].contains(component) {
                    out.push(("component", format!("{component}={base}")));
                }
            }
        }
        out
    }
}

/// Plans component `name`, connected as `wiring` says unless the config file says how.
fn plan(
    name: &'static str,
    data: &Path,
    file: Option<&config::File>,
    wiring: &Wiring,
) -> anyhow::Result<Planned> {
    let mut args: Vec<OsString> = vec![name.into()];
    let component = components::find(name).context("not a component")?;
    for (long, value) in (component.up_flags)(data) {
        if !file.is_some_and(|f| f.sets(name, long)) {
            args.push(format!("--{long}={value}").into());
        }
    }
    for (long, value) in wiring.flags(name) {
        if !file.is_some_and(|f| f.sets(name, long)) {
            args.push(format!("--{long}={value}").into());
        }
    }
    // Every HTTP API takes the token `up` makes, unless the config file chooses.
    let chooses = ["token-file", "auth-file", "insecure-open"]
        .iter()
        .any(|k| file.is_some_and(|f| f.sets(name, k)));
    if !chooses {
        args.push(format!("--token-file={}", data.join(TOKEN_FILE).display()).into());
    }
    // Every component presents its certificate on gRPC and serves HTTPS, unless the config
    // file chooses its TLS itself.
    let tls_chosen = ["tls-ca", "tls-cert", "tls-key"]
        .iter()
        .any(|k| file.is_some_and(|f| f.sets(name, k)));
    let scheme = if tls_chosen {
        let given = |k| file.is_some_and(|f| f.sets(name, k));
        if given("tls-cert") { "https" } else { "http" }
    } else {
        let certs = data.join(CERTS_DIR);
        args.push(format!("--tls-ca={}", certs.join("ca.pem").display()).into());
        let cert = component.cert;
        args.push(format!("--tls-cert={}", certs.join(format!("{cert}.pem")).display()).into());
        args.push(
            format!(
                "--tls-key={}",
                certs.join(format!("{cert}-key.pem")).display()
            )
            .into(),
        );
        "https"
    };
    if let Some(f) = file {
        args.push("--config".into());
        args.push(
            f.path()
                .canonicalize()
                .unwrap_or(f.path().to_owned())
                .into(),
        );
    }
    let mut argv: Vec<OsString> = vec!["hydrant".into()];
    argv.extend(args.iter().cloned());
    let (cli, _) = crate::parse(argv).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let mut policies = None;
    let mut health_scheme = scheme;
    let (http, main) = match &cli.command {
        Command::Doppler(a) => (a.http, reach(a.grpc)),
        Command::Agent(a) => (a.http, reach(a.grpc)),
        Command::Cell(a) => (a.api, format!("{scheme}://{}", reach(a.api))),
        Command::Logcache(a) => (a.http, format!("{scheme}://{}", reach(a.http))),
        #[cfg(feature = "storage")]
        Command::Storage(a) => (a.http, format!("{scheme}://{}", reach(a.http))),
        Command::Autoscaler(a) => {
            let http = a.http().context("autoscaler: no address")?;
            policies = a.policies().first().cloned();
            (http, format!("{scheme}://{}", reach(http)))
        }
        // The console serves plain HTTP unless told `--https`: browsers do not trust
        // `up`'s CA, and it listens on loopback.
        Command::Console(a) => {
            health_scheme = if a.https { "https" } else { "http" };
            (a.http, format!("{health_scheme}://{}", reach(a.http)))
        }
        other => bail!("{name}: not a component ({other:?})"),
    };
    Ok(Planned {
        spec: Spec {
            name,
            args,
            health: format!("{health_scheme}://{}/healthz", reach(http)),
        },
        main: (main, component.serves),
        policies,
    })
}

/// The admin token at `path`, made (32 random bytes, hex, mode 0600) when missing, so a
/// restart keeps the token every client already has.
fn ensure_token(path: &Path) -> anyhow::Result<String> {
    use std::io::{Read as _, Write as _};
    use std::os::unix::fs::OpenOptionsExt as _;
    if path.exists() {
        return super::read_token(path);
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for a token")?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{token}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

/// `hydrant up`.
pub(crate) async fn up(a: UpArgs, file: Option<config::File>) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let components: Vec<&'static str> = components::COMPONENTS
        .iter()
        .filter(|c| c.built)
        .map(|c| c.name)
        .collect();
    // Two passes: the first learns where each component listens, the second connects
    // every component to those addresses.
    let plan_all = |wiring: &Wiring| {
        components
            .iter()
            .map(|n| plan(n, &a.data_dir, file.as_ref(), wiring))
            .collect::<anyhow::Result<Vec<_>>>()
    };
    let planned = plan_all(&Wiring::of(&plan_all(&Wiring::default())?))?;
    let _lock = hydrant::up::DirLock::take(&a.data_dir)?;
    let token = ensure_token(&a.data_dir.join(TOKEN_FILE))?;
    let certs = a.data_dir.join(CERTS_DIR);
    ensure_certs(&certs)?;
    let tls = hydrant_runtime::https::ClientTls::ca_file(&certs.join("ca.pem"))?;
    // SIGINT, SIGTERM, SIGHUP and a closed stdout all lead to the same ordered stop.
    let signal = shutdown::on_signal();
    let term = Terminal::new(signal.clone());
    let policies = policy_dir(&planned, &a.data_dir);
    write_example_policy(&term, &policies, a.demo)?;
    if let Some(f) = &file {
        term.line(format_args!("config: {}", f.path().display()));
    }
    let logs = a.data_dir.join("logs");
    let mut sup = Supervisor::new(exe.clone(), &logs, &tls)?;
    for p in &planned {
        term.part(format_args!("starting {:<11}", p.spec.name));
        let started = tokio::select! {
            r = sup.start(&p.spec, a.start_timeout) => r,
            () = signal.cancelled() => {
                term.line(format_args!("interrupted"));
                stop_all(&term, &mut sup, a.grace).await;
                return Ok(());
            }
        };
        match started {
            Ok(took) => term.line(format_args!("ready in {:.1}s", took.as_secs_f64())),
            Err(e) => {
                term.line(format_args!("failed"));
                stop_all(&term, &mut sup, a.grace).await;
                return Err(e.into());
            }
        }
    }
    print_endpoints(
        &term,
        &planned,
        &logs,
        &policies,
        &a.data_dir.join(TOKEN_FILE),
        &token,
        &certs.join("ca.pem"),
    );
    if a.demo {
        push_demo(&term, &planned, &exe, &token, &tls, &certs).await?;
    }
    term.line(format_args!("Ctrl-C stops everything."));
    let watch = watch_health(&term, sup.http(), &planned);
    tokio::select! {
        () = watch => bail!("the health watch ended"),
        () = signal.cancelled() => {
            term.line(format_args!("\nstopping…"));
            stop_all(&term, &mut sup, a.grace).await;
            Ok(())
        }
        (name, status, tail) = sup.exited() => {
            term.line(format_args!("\n{name} exited unexpectedly ({status}); the end of its log:\n{tail}"));
            stop_all(&term, &mut sup, a.grace).await;
            bail!("{name} exited; see {}", logs.join(format!("{name}.log")).display())
        }
    }
}

/// How often `up` looks at every component's `/healthz` once everything runs.
const HEALTH_WATCH: Duration = Duration::from_secs(5);

/// Says on `up`'s terminal when a running component stops being healthy (a refused policy,
/// a failing sink, a crash-looping app) and when it is again, with what its `/healthz`
/// reports. Never ends.
async fn watch_health(term: &Terminal, http: reqwest::Client, planned: &[Planned]) {
    let mut last: BTreeMap<&str, String> = BTreeMap::new();
    loop {
        tokio::time::sleep(HEALTH_WATCH).await;
        for p in planned {
            let (status, v) = hydrant::up::health_of(http.get(&p.spec.health)).await;
            // The autoscaler's refused policies; any component's other problems; or why
            // it did not answer.
            let problems: Vec<&str> = v["policy_problems"]
                .as_array()
                .into_iter()
                .chain(v["problems"].as_array())
                .flatten()
                .filter_map(|x| x.as_str())
                .take(3)
                .collect();
            let detail = match v["error"].as_str() {
                Some(e) if status == "unreachable" => e.to_owned(),
                _ => problems.join("; "),
            };
            let seen = last.insert(p.spec.name, status.clone());
            let changed = seen.as_deref().unwrap_or("ok") != status;
            if changed && status == "ok" {
                term.line(format_args!("  {}: ok again", p.spec.name));
            } else if changed {
                term.line(format_args!("  {}: {status}: {detail}", p.spec.name));
            }
        }
    }
}

/// The autoscaler's policy directory, as planned.
fn policy_dir(planned: &[Planned], data: &Path) -> PathBuf {
    planned
        .iter()
        .find_map(|p| p.policies.clone())
        .unwrap_or_else(|| data.join("policies"))
}

/// Writes the example policy when the policy directory does not exist yet, or, for
/// `--demo`, when no policy file for the demo app is there.
fn write_example_policy(term: &Terminal, dir: &Path, demo: bool) -> anyhow::Result<()> {
    let path = dir.join(format!("{DEMO}.yml"));
    let demo_missing = demo && !path.exists() && !dir.join(format!("{DEMO}.yaml")).exists();
    if dir.exists() && !demo_missing {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&path, EXAMPLE_POLICY).with_context(|| format!("writing {}", path.display()))?;
    term.line(format_args!("wrote an example policy: {}", path.display()));
    Ok(())
}

async fn stop_all(term: &Terminal, sup: &mut Supervisor, grace: Duration) {
    sup.stop(&components::stop_order(), grace, |e| match e {
        StopEvent::Stopping(n) => {
            term.part(format_args!("stopping {n:<11}"));
        }
        StopEvent::Slow(n, t) => {
            term.part(format_args!(
                "\n  {n} is slow to stop ({:.0}s)… ",
                t.as_secs_f64()
            ));
        }
        StopEvent::Stopped(_, t, _) => {
            term.line(format_args!("stopped in {:.1}s", t.as_secs_f64()))
        }
        StopEvent::Killed(n, t) => {
            term.line(format_args!(
                "killed: {n} did not stop within {:.0}s",
                t.as_secs_f64()
            ));
        }
    })
    .await;
}

pub(super) fn endpoint<'a>(planned: &'a [Planned], name: &str) -> Option<&'a str> {
    planned
        .iter()
        .find(|p| p.spec.name == name)
        .map(|p| p.main.0.as_str())
}
