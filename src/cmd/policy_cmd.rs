//! Flags and glue for `hydrant policy check`.

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::{Args, Subcommand};
use hydrant_autoscaler::policy::{self, Severity};

/// `hydrant policy …`.
#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    #[command(subcommand)]
    pub(crate) command: PolicyCommand,
}

/// Policy subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Validate policy files (YAML or JSON; a directory means every policy in it) and print
    /// every problem with file:line:column and field path. Exit 1 on any error.
    Check {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

fn is_policy_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yml" | "yaml" | "json")
    )
}

fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| anyhow::anyhow!("cannot read directory {}: {e}", p.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.is_file() && is_policy_file(f))
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// `hydrant policy`.
pub(crate) async fn policy(a: PolicyArgs) -> anyhow::Result<()> {
    let PolicyCommand::Check { paths } = a.command;
    let files = expand(&paths)?;
    let (mut errors, mut warnings) = (0, 0);
    for file in &files {
        let loaded = policy::load(file);
        for p in &loaded.problems {
            match p.severity {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
            }
            println!("{p}");
        }
        if let Some(policy) = loaded.policy {
            println!(
                "{}: ok (app {}, {} rule(s))",
                file.display(),
                policy.app,
                policy.rules.len()
            );
        }
    }
    println!(
        "{} file(s): {errors} error(s), {warnings} warning(s)",
        files.len()
    );
    if errors > 0 {
        bail!("{errors} error(s) in policies");
    }
    Ok(())
}
