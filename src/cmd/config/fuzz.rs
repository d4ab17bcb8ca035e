//! Bounded fuzzing of `hydrant.yaml` checking (proptest, part of `cargo test`): a valid file
//! with random edits from YAML's vocabulary and every section's flag names, and arbitrary
//! text. Whatever the file, checking returns the arguments or problems, never a panic.

use std::path::Path;

use clap::CommandFactory as _;
use hydrant_runtime::fuzz;
use proptest::prelude::*;

use super::*;

const SEED: &str = "doppler:\n  grpc: 127.0.0.1:8082\n  http: 127.0.0.1:8090\nagent:\n  doppler: [127.0.0.1:8082]\n  tag: [deployment=dev, az=z1]\nstorage:\n  retention: 7d\n  data-dir: data\nautoscaler:\n  tick: 5s\n  policies: [policies]\nlogcache:\n  max-per-source: 1000\ncell:\n  data-dir: cell\nup:\n  demo: true\n";

const VOCAB: &[&str] = &[
    "-1",
    "0",
    "99999999999999999999",
    "1e400",
    "~",
    "null",
    "true",
    "'",
    "\"",
    "[",
    "]",
    "{",
    "}",
    ": ",
    ",",
    "\n",
    "\n  ",
    "- ",
    "&a ",
    "*a",
    "<<: *a",
    "!!binary ",
    "? ",
    "|\n  x",
    "#",
    "\t",
    "---\n",
    "\u{feff}",
    "\u{0}",
    "é",
    "grpc",
    "http",
    "tls-ca",
    "grace-secs",
    "retention",
    "tick",
    "breaker-failures",
    "help",
    "version",
    "doppler",
    "agent",
    "up",
    "config",
    "--",
    "=",
    "30m",
    "500ms",
    "127.0.0.1:0",
    "[::1]:99999",
];

proptest! {
    #![proptest_config(fuzz::config())]

    #[test]
    fn edited_config_files_check_or_report_problems(e in fuzz::edits(VOCAB)) {
        let text = fuzz::apply(SEED, &e);
        let _ = parse(Path::new("hydrant.yaml"), &text, &crate::Cli::command());
    }

    #[test]
    fn arbitrary_text_checks_or_reports_problems(text in "\\PC{0,300}") {
        let _ = parse(Path::new("hydrant.yaml"), &text, &crate::Cli::command());
    }
}
