//! `hydrant drain create|delete` and `hydrant drains`: syslog drains for apps, as the cf
//! CLI's drains plugin makes them (a user-provided service instance with a
//! `syslog_drain_url`, bound to the app). Every host's agent picks a new drain up at its
//! next poll of the bindings (`--drain-refresh`, 5 s under `up`).

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::SchedulerArgs;

#[derive(Debug, Args)]
pub(crate) struct DrainArgs {
    #[command(subcommand)]
    pub(crate) action: DrainAction,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DrainAction {
    /// Send an app's logs to a syslog drain: `hydrant drain create APP URL`.
    Create(CreateArgs),
    /// Stop a drain: `hydrant drain delete NAME`.
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// App name or guid.
    pub(crate) app: String,
    /// syslog://HOST:PORT, syslog-tls://…, https://… or https-batch://… (options in the
    /// query: drain-type=logs|metrics|all, drain-data=…, omit-metadata=true).
    pub(crate) url: String,
    /// The drain's name (default: drain-APP-XXXXXXXX).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// CA certificate (PEM file) the drain's server certificate chains to (TLS drains;
    /// default: the system's roots).
    #[arg(long)]
    pub(crate) ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM file) to present to the drain (mutual TLS).
    #[arg(long, requires = "key")]
    pub(crate) cert: Option<std::path::PathBuf>,
    /// The client certificate's key (PEM file).
    #[arg(long, requires = "cert")]
    pub(crate) key: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) scheduler: SchedulerArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The drain's name (see `hydrant drains`).
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) scheduler: SchedulerArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DrainsArgs {
    /// Only this app's drains (name or guid).
    pub(crate) app: Option<String>,
    /// One JSON object per drain.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) scheduler: SchedulerArgs,
}

/// `hydrant drain …`.
pub(crate) async fn drain(a: DrainArgs) -> anyhow::Result<()> {
    match a.action {
        DrainAction::Create(c) => {
            let mut credentials = serde_json::Map::new();
            for (key, flag, file) in [
                ("ca", "--ca", &c.ca),
                ("cert", "--cert", &c.cert),
                ("key", "--key", &c.key),
            ] {
                if let Some(path) = file {
                    let pem = std::fs::read_to_string(path)
                        .with_context(|| format!("{flag} {}", path.display()))?;
                    credentials.insert(key.into(), pem.into());
                }
            }
            let d = c
                .scheduler
                .client()?
                .create_drain(&c.app, &c.url, c.name.as_deref(), credentials)
                .await?;
            println!("created drain {} for {}: {}", d.name, d.app, d.url);
        }
        DrainAction::Delete(d) => {
            d.scheduler.client()?.delete_drain(&d.name).await?;
            println!("deleted drain {}", d.name);
        }
    }
    Ok(())
}

/// `hydrant drains`.
pub(crate) async fn drains(a: DrainsArgs) -> anyhow::Result<()> {
    let drains = a.scheduler.client()?.drains(a.app.as_deref()).await?;
    if a.json {
        for d in &drains {
            println!(
                "{}",
                serde_json::json!({"name": d.name, "app": d.app, "url": d.url, "guid": d.instance_guid})
            );
        }
        return Ok(());
    }
    let mut rows = vec![["app".to_owned(), "name".to_owned(), "url".to_owned()]];
    rows.extend(drains.into_iter().map(|d| [d.app, d.name, d.url]));
    print!("{}", hydrant::apps::columns(&rows));
    Ok(())
}
