//! Flags and glue for `hydrant policy check`.

use std::path::PathBuf;

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
        /// Treat warnings as errors (rules that may flap, …), exit 1 on any.
        #[arg(long)]
        strict: bool,
        /// Print the result as JSON: every problem (file, line, column, path, severity,
        /// message) and every policy loaded.
        #[arg(long)]
        json: bool,
    },
}

/// `hydrant policy`.
pub(crate) async fn policy(a: PolicyArgs) -> anyhow::Result<()> {
    let PolicyCommand::Check {
        paths,
        strict,
        json,
    } = a.command;
    let set = policy::load_all(&paths);
    let (mut errors, mut warnings) = (0, 0);
    for p in &set.problems {
        match p.severity {
            Severity::Error => errors += 1,
            Severity::Warning => warnings += 1,
        }
        if !json {
            println!("{p}");
        }
    }
    if json {
        let problems: Vec<serde_json::Value> = set
            .problems
            .iter()
            .map(|p| {
                serde_json::json!({
                    "file": p.file.display().to_string(),
                    "line": p.line,
                    "column": p.column,
                    "path": p.path,
                    "severity": match p.severity {
                        Severity::Error => "error",
                        Severity::Warning => "warning",
                    },
                    "message": p.message,
                })
            })
            .collect();
        let policies: Vec<serde_json::Value> = set
            .policies
            .iter()
            .zip(&set.origins)
            .map(|(p, f)| {
                serde_json::json!({"file": f.display().to_string(), "app": p.app, "rules": p.rules.len()})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"files": set.files.len(), "errors": errors, "warnings": warnings, "problems": problems, "policies": policies})
        );
    } else {
        for (policy, file) in set.policies.iter().zip(&set.origins) {
            println!(
                "{}: ok (app {}, {} rule(s))",
                file.display(),
                policy.app,
                policy.rules.len()
            );
        }
        println!(
            "{} file(s): {errors} error(s), {warnings} warning(s)",
            set.files.len()
        );
    }
    if errors > 0 {
        bail!("{errors} error(s) in policies");
    }
    if strict && warnings > 0 {
        bail!("{warnings} warning(s) in policies (--strict)");
    }
    Ok(())
}
