//! Flags and glue for `hydrant autoscaler` (the process) and its `history` and `explain`
//! clients.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use hydrant::apps;
use hydrant_autoscaler::actuator::{self, Actuator};
use hydrant_autoscaler::api::contract::{ErrorBody, Explanation, HistoryPage, Overview};
use hydrant_autoscaler::fleet::Settings;
use hydrant_autoscaler::notify::Receivers;
use hydrant_autoscaler::{replay, service};
use hydrant_runtime::config::{Invalid, Invalids};
use hydrant_runtime::shutdown;

mod render;

use render::{explain_text, history_table, replay_report, status_table};

use super::{ClientToken, ComponentArgs, bind, parse_duration};
use hydrant_runtime::https;

/// Default storage nozzle query API.
pub(crate) const DEFAULT_STORAGE: &str = "127.0.0.1:9400";

/// Default autoscaler API URL.
pub(crate) const DEFAULT_AUTOSCALER: &str = "127.0.0.1:9500";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct AutoscalerArgs {
    #[command(subcommand)]
    command: Option<AutoscalerCommand>,
    #[command(flatten)]
    run: RunArgs,
}

impl AutoscalerArgs {
    /// The API address of the autoscaler process (when run without a subcommand).
    pub(crate) fn http(&self) -> Option<SocketAddr> {
        self.command.is_none().then_some(self.run.http)
    }

    /// The policy files or directories of the autoscaler process.
    pub(crate) fn policies(&self) -> &[PathBuf] {
        &self.run.policies
    }
}

#[derive(Debug, Subcommand)]
enum AutoscalerCommand {
    /// Show an app's scaling history (newest first).
    History {
        /// App name or guid.
        app: String,
        /// Autoscaler API URL.
        #[arg(long, env = "HYDRANT_AUTOSCALER", default_value = DEFAULT_AUTOSCALER)]
        autoscaler: String,
        /// Most records to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        token: ClientToken,
    },
    /// Replay stored metrics through a policy and print the decisions it would have taken
    /// (a dry run; nothing is scaled).
    Replay {
        /// The policy file.
        #[arg(long)]
        policy: PathBuf,
        /// Prometheus-compatible query API holding the metrics (the storage nozzle).
        #[arg(long, env = "HYDRANT_STORAGE", default_value = DEFAULT_STORAGE)]
        storage: String,
        /// Start: RFC 3339, UNIX seconds, or relative (`now-1h`).
        #[arg(long)]
        from: String,
        /// End.
        #[arg(long, default_value = "now")]
        to: String,
        /// Evaluation tick.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        step: Duration,
        /// Stat window of each aggregate.
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        stat_window: Duration,
        /// Instance count at the start (default: the instances stored then).
        #[arg(long)]
        instances: Option<u32>,
        /// One JSON record per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        token: ClientToken,
    },
    /// Every app with a policy in one table, as `kubectl get hpa` shows autoscalers: each
    /// rule's metric value against its threshold, the limits, the instances and the last
    /// decision.
    Status {
        /// Autoscaler API URL.
        #[arg(long, env = "HYDRANT_AUTOSCALER", default_value = DEFAULT_AUTOSCALER)]
        autoscaler: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        token: ClientToken,
    },
    /// Show the live state of an app's rules and what would happen next.
    Explain {
        /// App name or guid.
        app: String,
        /// Autoscaler API URL.
        #[arg(long, env = "HYDRANT_AUTOSCALER", default_value = DEFAULT_AUTOSCALER)]
        autoscaler: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        token: ClientToken,
    },
}

/// Which platform carries out scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ActuatorKind {
    /// A Hydrant cell or Cloud Foundry (`--scheduler`, optional token or UAA).
    Scheduler,
    /// Kubernetes deployments (`--kube-api`, `--kube-namespace`).
    Kubernetes,
    /// A webhook receiving each scale as JSON (`--webhook-url`).
    Webhook,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Doppler to read the Firehose from; repeat to read several.
    #[arg(long = "from", default_value = "127.0.0.1:8082")]
    dopplers: Vec<String>,
    /// Policy files or directories; repeatable.
    #[arg(long = "policies", default_value = "hydrant-data/policies")]
    policies: Vec<PathBuf>,
    /// Where the scaling history and cooldowns are kept across restarts (default: in
    /// memory only; `hydrant up` gives one under its data directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:9500")]
    http: SocketAddr,
    /// What carries out scales.
    #[arg(long, value_enum, default_value_t = ActuatorKind::Scheduler)]
    actuator: ActuatorKind,
    /// Scheduler API URL (a Hydrant cell or Cloud Foundry's Cloud Controller).
    #[arg(long, env = "HYDRANT_SCHEDULER", default_value = apps::DEFAULT_SCHEDULER)]
    scheduler: String,
    /// File whose first line is the bearer token for the scheduler API (`hydrant up`
    /// gives its own token file); it wins over --token.
    #[arg(long)]
    scheduler_token_file: Option<PathBuf>,
    /// Bearer token for the scheduler API.
    #[arg(long, env = "HYDRANT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// UAA URL: get scheduler tokens with client credentials (Cloud Foundry).
    #[arg(long, requires_all = ["uaa_client_id", "uaa_client_secret"])]
    uaa_url: Option<String>,
    /// UAA client id.
    #[arg(long)]
    uaa_client_id: Option<String>,
    /// UAA client secret.
    #[arg(long, env = "HYDRANT_UAA_CLIENT_SECRET", hide_env_values = true)]
    uaa_client_secret: Option<String>,
    /// Kubernetes API URL.
    #[arg(long, default_value = "https://kubernetes.default.svc")]
    kube_api: String,
    /// Kubernetes namespace of the deployments.
    #[arg(long, default_value = "default")]
    kube_namespace: String,
    /// Kubernetes bearer token file (in a pod: the service account's).
    #[arg(long)]
    kube_token_file: Option<PathBuf>,
    /// CA bundle (PEM) that signed the Kubernetes API's certificate.
    #[arg(long)]
    kube_ca: Option<PathBuf>,
    /// Webhook actuator URL.
    #[arg(long)]
    webhook_url: Option<String>,
    /// Bearer token for the webhook actuator.
    #[arg(long, env = "HYDRANT_WEBHOOK_TOKEN", hide_env_values = true)]
    webhook_token: Option<String>,
    /// Alertmanager base URL; repeat to send to several.
    #[arg(long)]
    alertmanager: Vec<String>,
    /// Webhook receiving alerts (Alertmanager's webhook payload).
    #[arg(long)]
    alert_webhook: Option<String>,
    /// Alerts keep firing this long after their condition stops.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    keep_firing_for: Duration,
    /// Where decisions and alerts go as log lines and events (default: the first --from).
    #[arg(long)]
    emit_to: Vec<String>,
    /// Do not emit decisions and alerts into the Firehose.
    #[arg(long, conflicts_with = "emit_to")]
    no_emit: bool,
    /// Evaluation tick.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    tick: Duration,
    /// Stat window of each aggregate (CF: 120 s).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    stat_window: Duration,
    /// How often instance counts are read from the platform.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    refresh: Duration,
    /// Consecutive actuator failures that pause an app's scaling.
    #[arg(long, default_value_t = 3)]
    breaker_failures: u32,
    /// First pause after the breaker trips (doubles up to 24 × this).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    breaker_backoff: Duration,
    /// Evaluate and record decisions without carrying them out.
    #[arg(long)]
    shadow: bool,
    /// Name of this member of the autoscaler group (orders members; optional).
    #[arg(long)]
    member: Option<String>,
    /// Name the dopplers' certificates must carry.
    #[arg(long, default_value = "doppler")]
    tls_server_name: String,
    /// Prometheus-compatible query API (the storage nozzle) the API's policy replays read
    /// (`POST /v1/apps/{app}/policy/replay`), with each caller's own token; without it,
    /// replays are refused.
    #[arg(long, value_name = "URL")]
    replay_from: Option<String>,
    #[command(flatten)]
    component: ComponentArgs,
}

/// The component's client TLS: its CA and certificate, as the cell and storage take them.
fn client_tls(a: &RunArgs) -> anyhow::Result<https::ClientTls> {
    Ok(a.component
        .tls
        .load("metron")?
        .map(|t| https::ClientTls::of(&t))
        .unwrap_or_default())
}

/// The storage the API's replays read (`--replay-from`), reached as the scheduler is.
fn build_replay_from(a: &RunArgs) -> anyhow::Result<Option<service::ReplayFrom>> {
    let Some(addr) = &a.replay_from else {
        return Ok(None);
    };
    let tls = client_tls(a)?;
    let url = https::url(addr, &tls);
    reqwest::Url::parse(&url).with_context(|| format!("{addr:?} is not a URL"))?;
    Ok(Some(service::ReplayFrom {
        url,
        http: https::client(&tls)?,
    }))
}

fn build_actuator(a: &RunArgs) -> anyhow::Result<Arc<dyn Actuator>> {
    Ok(match a.actuator {
        ActuatorKind::Scheduler => {
            let auth = match (&a.uaa_url, &a.scheduler_token_file, &a.token) {
                (Some(url), _, _) => actuator::Auth::Uaa {
                    url: url.clone(),
                    client_id: a.uaa_client_id.clone().unwrap_or_default(),
                    client_secret: a.uaa_client_secret.clone().unwrap_or_default(),
                },
                (None, Some(path), _) => actuator::Auth::Bearer(super::read_token(path)?),
                (None, None, Some(t)) => actuator::Auth::Bearer(t.clone()),
                (None, None, None) => actuator::Auth::None,
            };
            // The cell is reached with this component's certificate and CA (https for an
            // address without a scheme when it has them).
            let tls = client_tls(a)?;
            Arc::new(actuator::CloudController::new(
                &https::url(&a.scheduler, &tls),
                auth,
                https::client(&tls)?,
            ))
        }
        ActuatorKind::Kubernetes => Arc::new(actuator::Kubernetes::new(
            &a.kube_api,
            &a.kube_namespace,
            a.kube_token_file.clone(),
            a.kube_ca.clone(),
        )?),
        ActuatorKind::Webhook => {
            let Some(url) = &a.webhook_url else {
                bail!("webhook needs --webhook-url");
            };
            Arc::new(actuator::Webhook::new(url, a.webhook_token.clone()))
        }
    })
}

/// The autoscaler's config from its flags, with every problem it would refuse.
fn build(a: &RunArgs) -> Result<service::Config, Invalids> {
    let mut problems = Vec::new();
    let emit_to = match (a.no_emit, a.emit_to.is_empty()) {
        (true, _) => Vec::new(),
        (false, true) => a.dopplers.iter().take(1).cloned().collect(),
        (false, false) => a.emit_to.clone(),
    };
    let tls = a.component.tls.check(&a.tls_server_name, &mut problems);
    let self_tls = a.component.tls.check("metron", &mut Vec::new());
    let settings = Settings {
        stat_window: a.stat_window.as_secs() as i64,
        keep_firing_for: a.keep_firing_for,
        breaker_failures: a.breaker_failures,
        breaker_backoff: a.breaker_backoff,
        breaker_backoff_max: a.breaker_backoff * 24,
    };
    problems.extend(service::validate(a.tick, a.refresh, &settings));
    let actuator = match build_actuator(a) {
        Ok(actuator) => actuator,
        Err(e) => {
            let field = match a.actuator {
                ActuatorKind::Webhook => "actuator",
                ActuatorKind::Kubernetes => "kube-token-file",
                ActuatorKind::Scheduler => "scheduler",
            };
            problems.push(Invalid::new(field, format!("{e:#}")));
            return Err(Invalids(problems));
        }
    };
    let access = a.component.access.access(&mut problems);
    let replay_from = build_replay_from(a).unwrap_or_else(|e| {
        problems.push(Invalid::new("replay-from", format!("{e:#}")));
        None
    });
    Invalids::check(problems)?;
    let config = service::Config {
        data_dir: a.data_dir.clone(),
        access,
        replay_from,
        dopplers: a.dopplers.clone(),
        tls,
        discovery: a.component.discovery(),
        policies: a.policies.clone(),
        actuator,
        receivers: Receivers {
            alertmanagers: a.alertmanager.clone(),
            webhook: a.alert_webhook.clone(),
            external_url: format!("http://{}", a.http),
        },
        emit_to,
        self_metrics: a.component.self_metrics.config(
            "autoscaler",
            a.http,
            self_tls,
            super::DEFAULT_AGENT,
        ),
        tick: a.tick,
        refresh: a.refresh,
        reload_poll: service::DEFAULT_RELOAD_POLL,
        settings,
        shadow: a.shadow,
        member: a.member.clone(),
        grace: a.component.grace(),
    };
    Ok(config)
}

impl AutoscalerArgs {
    /// Whether this runs the autoscaler (no subcommand), not a query of one.
    pub(crate) fn serves(&self) -> bool {
        self.command.is_none()
    }
}

/// Every problem the autoscaler process would refuse at start (none for a query
/// subcommand).
pub(crate) fn check(a: &AutoscalerArgs) -> Vec<Invalid> {
    match a.command {
        None => build(&a.run).err().map(|e| e.0).unwrap_or_default(),
        Some(_) => Vec::new(),
    }
}

async fn serve(a: RunArgs) -> anyhow::Result<()> {
    let config = build(&a)?;
    let http = bind("--http", a.http).await?;
    tracing::info!(http = %a.http, dopplers = ?a.dopplers, actuator = ?a.actuator, shadow = a.shadow, "autoscaler listening");
    service::run(config, http, shutdown::on_signal_except_hangup()).await?;
    Ok(())
}

/// GETs `path` from the autoscaler API as its response type; an error answer becomes
/// its message.
async fn get<T: serde::de::DeserializeOwned>(
    base: &str,
    path: &str,
    token: &ClientToken,
) -> anyhow::Result<T> {
    let (http, base) = token.client_for(base)?;
    let url = format!("{base}{path}");
    let mut req = http.get(&url);
    if let Some(t) = token.get()? {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.with_context(|| {
        format!("cannot reach the autoscaler at {base}; is `hydrant autoscaler` running? (set --autoscaler or HYDRANT_AUTOSCALER)")
    })?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .context("reading the autoscaler's answer")?;
    if !status.is_success() {
        let msg = serde_json::from_str::<ErrorBody>(&text)
            .map_or_else(|_| text.trim().to_owned(), |e| e.message);
        bail!("{msg} ({status})");
    }
    serde_json::from_str(&text).with_context(|| format!("unexpected answer from {url}"))
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `hydrant autoscaler …`.
pub(crate) async fn autoscaler(a: AutoscalerArgs) -> anyhow::Result<()> {
    match a.command {
        None => serve(a.run).await,
        Some(AutoscalerCommand::History {
            app,
            autoscaler,
            limit,
            json,
            token,
        }) => {
            let path = format!(
                "/v1/apps/{}/scaling_histories?results-per-page={}",
                enc(&app),
                limit.clamp(1, 1000)
            );
            let page: HistoryPage = get(&autoscaler, &path, &token).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(());
            }
            if page.resources.is_empty() {
                println!("No scaling history for app {app}.");
            } else {
                print!("{}", history_table(&page.resources));
            }
            Ok(())
        }
        Some(AutoscalerCommand::Status {
            autoscaler,
            json,
            token,
        }) => {
            let overview: Overview = get(&autoscaler, "/v1/overview", &token).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&overview)?);
            } else if overview.resources.is_empty() {
                println!("No app has a policy.");
            } else {
                print!(
                    "{}",
                    status_table(&overview, chrono::Utc::now().timestamp())
                );
            }
            Ok(())
        }
        Some(AutoscalerCommand::Replay {
            policy,
            storage,
            from,
            to,
            step,
            stat_window,
            instances,
            json,
            token,
        }) => {
            let loaded = hydrant_autoscaler::policy::load(&policy);
            for p in &loaded.problems {
                eprintln!("{p}");
            }
            let Some(policy) = loaded.policy else {
                bail!("the policy has errors");
            };
            let now = chrono::Utc::now().timestamp();
            let from =
                replay::parse_time(&from, now).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
            let to = replay::parse_time(&to, now).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
            if from > to {
                bail!("--from must not be after --to");
            }
            if step < Duration::from_secs(1) || stat_window < Duration::from_secs(1) {
                bail!("--step and --stat-window must be at least 1s");
            }
            let (http, storage) = token.client_for(&storage)?;
            let r = replay::Replay {
                policy,
                storage,
                http,
                token: token.get()?,
                from,
                to,
                step: step.as_secs() as i64,
                instances,
                settings: Settings {
                    stat_window: stat_window.as_secs() as i64,
                    ..Settings::default()
                },
            };
            let outcome = replay::run(&r).await?;
            print!("{}", replay_report(&outcome, from, to, json)?);
            Ok(())
        }
        Some(AutoscalerCommand::Explain {
            app,
            autoscaler,
            json,
            token,
        }) => {
            let path = format!("/v1/apps/{}/explain", enc(&app));
            let x: Explanation = get(&autoscaler, &path, &token).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&x)?);
            } else {
                print!("{}", explain_text(&x));
            }
            Ok(())
        }
    }
}
