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
    },
}

/// `hydrant policy`.
pub(crate) async fn policy(a: PolicyArgs) -> anyhow::Result<()> {
    let PolicyCommand::Check { paths, strict } = a.command;
    let set = policy::load_all(&paths);
    let (mut errors, mut warnings) = (0, 0);
    for p in &set.problems {
        match p.severity {
            Severity::Error => errors += 1,
            Severity::Warning => warnings += 1,
        }
        println!("{p}");
    }
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
    if errors > 0 {
        bail!("{errors} error(s) in policies");
    }
    if strict && warnings > 0 {
        bail!("{warnings} warning(s) in policies (--strict)");
    }
    Ok(())
}
