//! `hydrant push | scale | apps | delete`: a client of the scheduler API (the Cloud
//! Controller v3 subset served by `hydrant cell`).

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cell::contract::{
    self, CreateApp, Errors, InstanceState, InstanceStats, Page, Process, Scale,
};

/// Default scheduler URL.
pub const DEFAULT_SCHEDULER: &str = "127.0.0.1:9022";

/// Errors talking to the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No answer.
    #[error(
        "cannot reach the scheduler at {url} ({source}); is `hydrant cell` running? (set --scheduler or HYDRANT_SCHEDULER)"
    )]
    Unreachable {
        /// Where we tried.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The API refused the request.
    #[error("{title} ({status}): {detail}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Cloud Controller error title.
        title: String,
        /// What was wrong.
        detail: String,
    },
    /// No app by that name or guid.
    #[error("app '{0}' not found")]
    NotFound(String),
    /// The app exists already.
    #[error(
        "app '{0}' already exists (use `hydrant scale` to change its instances, or `hydrant delete` first)"
    )]
    Exists(String),
    /// A malformed size such as `--memory 12X`.
    #[error("invalid size {0:?} (use e.g. 256M, 1G)")]
    Size(String),
    /// An instance crashed before it became healthy.
    #[error(
        "app '{name}' did not start: instance {index} crashed{exit} (see `hydrant logs {name} --recent`)"
    )]
    Crashed {
        /// The app.
        name: String,
        /// The instance.
        index: u32,
        /// What the cell knows of the exit, with a leading space; empty when nothing.
        exit: String,
    },
    /// The instances were not all running in time.
    #[error(
        "app '{name}' did not start within {waited:?}: {running} of {wanted} instances running (see `hydrant apps` and `hydrant logs {name} --recent`)"
    )]
    StartTimeout {
        /// The app.
        name: String,
        /// Time waited.
        waited: std::time::Duration,
        /// Instances running.
        running: usize,
        /// Instances wanted.
        wanted: u32,
    },
}

/// What `hydrant push NAME -- ARGS…` runs: one argument is a shell command line (as `cf push
/// -c` takes one); several are a program and its arguments, each quoted for `/bin/sh` so
/// they arrive unchanged.
pub fn command_line(args: &[String]) -> String {
    match args {
        [one] => one.clone(),
        many => many
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// `s` as one `/bin/sh` word.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Parses `256M`, `1G`, `512MB`, `1024` (megabytes) into megabytes.
pub fn parse_megabytes(s: &str) -> Result<u64, Error> {
    let t = s.trim().to_ascii_uppercase();
    let t = t.strip_suffix('B').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('G') => (&t[..t.len() - 1], 1024),
        Some('M') => (&t[..t.len() - 1], 1),
        _ => (t, 1),
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n * mult),
        _ => Err(Error::Size(s.to_owned())),
    }
}

/// A request body as JSON (contract types always serialize).
fn json(body: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(body).unwrap_or_default()
}

/// A scheduler API client.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:9022`), sending with `http`
    /// (see [`hydrant_runtime::https::client`]).
    pub fn new(base: &str, token: Option<String>, http: reqwest::Client) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
        }
    }

    /// Sends a request and reads the answer as `T`; an error answer becomes
    /// [`Error::Api`] with Cloud Controller's title and detail.
    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, Error> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|source| Error::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|source| Error::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        if status.is_success() {
            // An empty answer (204, 202 without a body) reads as JSON `null`.
            let text = if text.trim().is_empty() {
                "null"
            } else {
                &text
            };
            return serde_json::from_str(text).map_err(|e| Error::Api {
                status: status.as_u16(),
                title: "unexpected answer".into(),
                detail: format!("{e}: {}", text.chars().take(300).collect::<String>()),
            });
        }
        let first = serde_json::from_str::<Errors>(&text)
            .ok()
            .and_then(|e| e.errors.into_iter().next());
        Err(match first {
            Some(e) => Error::Api {
                status: status.as_u16(),
                title: e.title,
                detail: e.detail,
            },
            None => Error::Api {
                status: status.as_u16(),
                title: "error".into(),
                detail: text,
            },
        })
    }

    /// Every app, page by page as Cloud Controller pages them (at most 100 pages of 5,000).
    pub async fn apps(&self) -> Result<Vec<contract::App>, Error> {
        let mut out = Vec::new();
        for n in 1..=100 {
            let path = format!("/v3/apps?page={n}&per_page=5000");
            let page: Page<contract::App> = self.call(reqwest::Method::GET, &path, None).await?;
            out.extend(page.resources);
            if page.pagination.next.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// The app with this name or guid.
    ///
    /// Asks for that one app as the cf CLI does (`?names=`, then `?guids=`), so resolving a
    /// name costs the same with ten apps or ten thousand. A name with a comma cannot be
    /// put in Cloud Controller's list filter; it is looked up in the full listing.
    pub async fn find(&self, name_or_guid: &str) -> Result<contract::App, Error> {
        let matches = |a: &contract::App| a.name == name_or_guid || a.guid == name_or_guid;
        if name_or_guid.contains(',') || name_or_guid.is_empty() {
            return self
                .apps()
                .await?
                .into_iter()
                .find(matches)
                .ok_or_else(|| Error::NotFound(name_or_guid.to_owned()));
        }
        let value: String = form_urlencoded::byte_serialize(name_or_guid.as_bytes()).collect();
        for filter in ["names", "guids"] {
            let path = format!("/v3/apps?{filter}={value}");
            let page: Page<contract::App> = self.call(reqwest::Method::GET, &path, None).await?;
            if let Some(app) = page.resources.into_iter().find(matches) {
                return Ok(app);
            }
        }
        Err(Error::NotFound(name_or_guid.to_owned()))
    }

    /// Creates an app.
    pub async fn push(
        &self,
        name: &str,
        command: &str,
        instances: u32,
        memory_mb: u64,
        disk_mb: u64,
        env: &BTreeMap<String, String>,
    ) -> Result<contract::App, Error> {
        if self.find(name).await.is_ok() {
            return Err(Error::Exists(name.to_owned()));
        }
        let body = CreateApp {
            name: Some(name.to_owned()),
            command: Some(command.to_owned()),
            instances: Some(i64::from(instances)),
            memory_in_mb: Some(memory_mb as i64),
            disk_in_mb: Some(disk_mb as i64),
            env: env.clone(),
        };
        self.call(reqwest::Method::POST, "/v3/apps", Some(json(&body)))
            .await
    }

    /// Sets the instance count.
    pub async fn scale(&self, name_or_guid: &str, instances: i64) -> Result<Process, Error> {
        let change = Scale {
            instances: Some(instances),
            ..Scale::default()
        };
        self.scale_to(name_or_guid, &change).await
    }

    /// Scales an app: instances, quotas or both (Cloud Controller's process scale).
    pub async fn scale_to(&self, name_or_guid: &str, change: &Scale) -> Result<Process, Error> {
        let guid = self.find(name_or_guid).await?.guid;
        let path = format!("/v3/apps/{guid}/processes/web/actions/scale");
        self.call(reqwest::Method::POST, &path, Some(json(change)))
            .await
    }

    /// Deletes an app.
    pub async fn delete(&self, name_or_guid: &str) -> Result<(), Error> {
        let guid = self.find(name_or_guid).await?.guid;
        self.call::<serde::de::IgnoredAny>(
            reqwest::Method::DELETE,
            &format!("/v3/apps/{guid}"),
            None,
        )
        .await
        .map(drop)
    }

    /// Per-instance stats of an app.
    pub async fn stats(&self, guid: &str) -> Result<Vec<InstanceStats>, Error> {
        let stats: contract::Stats = self
            .call(
                reqwest::Method::GET,
                &format!("/v3/apps/{guid}/processes/web/stats"),
                None,
            )
            .await?;
        Ok(stats.resources)
    }

    /// Waits until `wanted` instances of the app run (each survived the cell's startup
    /// window), as `cf push` waits; an instance that crashes first, or `timeout`, is an
    /// error naming it.
    pub async fn wait_started(
        &self,
        name: &str,
        guid: &str,
        wanted: u32,
        timeout: std::time::Duration,
    ) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let stats = self.stats(guid).await?;
            if let Some(crashed) = stats.iter().find(|s| s.state == InstanceState::Crashed) {
                let exit = crashed
                    .detail
                    .as_ref()
                    .map(|d| match &d.last_crash {
                        Some(c) => format!(" ({}; {} crashes in a row)", c.reason, d.crash_count),
                        None => format!(" ({} crashes in a row)", d.crash_count),
                    })
                    .unwrap_or_default();
                return Err(Error::Crashed {
                    name: name.to_owned(),
                    index: crashed.index,
                    exit,
                });
            }
            let running = stats
                .iter()
                .filter(|s| s.state == InstanceState::Running)
                .count();
            if running >= wanted as usize {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::StartTimeout {
                    name: name.to_owned(),
                    waited: timeout,
                    running,
                    wanted,
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// The `hydrant apps` table.
    pub async fn table(&self) -> Result<String, Error> {
        let mut rows = vec![[
            "name".to_owned(),
            "state".into(),
            "instances".into(),
            "cpu".into(),
            "memory".into(),
            "guid".into(),
        ]];
        for app in self.apps().await? {
            let stats = self.stats(&app.guid).await?;
            let running = stats
                .iter()
                .filter(|s| s.state == InstanceState::Running)
                .count();
            let usage: Vec<_> = stats
                .iter()
                .filter_map(|s| s.detail.as_ref().map(|d| &d.usage))
                .collect();
            // CPU as the mean over instances (as `cf apps` would sum nothing); memory the sum.
            let cpu = usage.iter().map(|u| u.cpu).sum::<f64>() / usage.len().max(1) as f64;
            let mem: u64 = usage.iter().map(|u| u.mem).sum();
            let crashed = stats
                .iter()
                .filter(|s| s.state == InstanceState::Crashed)
                .count();
            let state = match (app.state, crashed) {
                (contract::AppState::Stopped, _) => "stopped".to_owned(),
                (_, 0) => "started".to_owned(),
                (_, n) => format!("started ({n} crashed)"),
            };
            rows.push([
                app.name,
                state,
                format!("{running}/{}", app.instances),
                format!("{:.1}%", cpu * 100.0),
                format!("{:.1}M", mem as f64 / (1024.0 * 1024.0)),
                app.guid,
            ]);
        }
        Ok(columns(&rows))
    }

    /// One app as `cf app` shows it: its settings, then each instance with its state, when
    /// it started, cpu, memory and disk against their quotas, and crashes in a row.
    pub async fn details(&self, name_or_guid: &str) -> Result<String, Error> {
        let app = self.find(name_or_guid).await?;
        let stats = self.stats(&app.guid).await?;
        let running = stats
            .iter()
            .filter(|s| s.state == InstanceState::Running)
            .count();
        let mb = |b: u64| format!("{:.1}M", b as f64 / (1024.0 * 1024.0));
        let mut out = format!(
            "name:              {}\nguid:              {}\nrequested state:   {}\ninstances:         {running}/{}\nmemory, disk:      {}M, {}M per instance\ncommand:           {}\n\n",
            app.name,
            app.guid,
            match app.state {
                contract::AppState::Started => "started",
                contract::AppState::Stopped => "stopped",
            },
            app.instances,
            app.memory_in_mb,
            app.disk_in_mb,
            app.command
        );
        let mut rows = vec![[
            String::new(),
            "state".to_owned(),
            "since".into(),
            "cpu".into(),
            "memory".into(),
            "disk".into(),
            "crashes".into(),
        ]];
        let now = chrono::Utc::now();
        for s in &stats {
            let state = match s.state {
                InstanceState::Starting => "starting",
                InstanceState::Running => "running",
                InstanceState::Crashed => "crashed",
                InstanceState::Down => "down",
            };
            let since = if s.uptime > 0 {
                (now - chrono::Duration::seconds(s.uptime as i64))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            } else {
                String::new()
            };
            let (cpu, mem, disk, crashes) = match &s.detail {
                Some(d) => (
                    format!("{:.1}%", d.usage.cpu * 100.0),
                    format!("{} of {}", mb(d.usage.mem), mb(d.mem_quota)),
                    format!("{} of {}", mb(d.usage.disk), mb(d.disk_quota)),
                    d.crash_count.to_string(),
                ),
                None => Default::default(),
            };
            rows.push([
                format!("#{}", s.index),
                state.into(),
                since,
                cpu,
                mem,
                disk,
                crashes,
            ]);
        }
        out.push_str(&columns(&rows));
        for s in &stats {
            if let Some(c) = s.detail.as_ref().and_then(|d| d.last_crash.as_ref()) {
                out.push_str(&format!(
                    "#{} last crash: {} at {}\n",
                    s.index, c.reason, c.at
                ));
            }
        }
        Ok(out)
    }
}

/// Rows as left-aligned columns, three spaces apart (widths in characters, as `{:<w$}`
/// pads). Every table the CLI prints goes through here.
pub fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

mod drains;

pub use drains::Drain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_after_the_separator_reach_the_program_unchanged() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            command_line(&args(&["echo hi; sleep 1"])),
            "echo hi; sleep 1"
        );
        let argv = args(&[
            "printf",
            "%s|",
            "while :; do :; done",
            "it's",
            "",
            "$HOME",
            "a\\b",
        ]);
        let line = command_line(&argv);
        // /bin/sh, as the cell runs it, gives the program exactly these arguments.
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &line])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "while :; do :; done|it's||$HOME|a\\b|",
            "{line}"
        );
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_megabytes("256M").unwrap(), 256);
        assert_eq!(parse_megabytes("1G").unwrap(), 1024);
        assert_eq!(parse_megabytes("512mb").unwrap(), 512);
        assert_eq!(parse_megabytes("64").unwrap(), 64);
        assert!(parse_megabytes("12X").is_err());
        assert!(parse_megabytes("0M").is_err());
    }
}
