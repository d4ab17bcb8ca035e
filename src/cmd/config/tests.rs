//! Config file checks against the real command definitions.

use std::path::Path;

use clap::CommandFactory as _;

use super::*;

fn check(text: &str) -> Result<File, Vec<String>> {
    parse(Path::new("hydrant.yaml"), text, &crate::Cli::command()).map_err(|e| match e {
        Error::Invalid { problems, .. } => problems.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    })
}

#[test]
fn flags_become_arguments_and_the_command_line_wins() {
    let file = check(
        "doppler:\n  grpc: 127.0.0.1:9082\nagent:\n  doppler: [a:1, b:2]\n  tag: deployment=dev\n\
         storage:\n  retention: 7d\n  no-wal: true\n  max_log_rows: 10\ncell:\n",
    )
    .unwrap();
    assert_eq!(file.args("doppler", |_| false), ["--grpc=127.0.0.1:9082"]);
    assert_eq!(
        file.args("agent", |_| false),
        ["--doppler=a:1", "--doppler=b:2", "--tag=deployment=dev"]
    );
    assert_eq!(
        file.args("storage", |id| id == "retention"),
        ["--no-wal", "--max-log-rows=10"]
    );
    assert!(file.sets("storage", "max-log-rows"));
    assert!(file.args("cell", |_| false).is_empty());
}

#[test]
fn every_problem_is_reported_with_its_line_and_field() {
    let problems = check(
        "storage:\n  retention: soon\n  colour: blue\n  no-wal: maybe\ndopler:\n  grpc: x\n\
         agent:\n  grpc: [a, b]\n  buffer: -3\n",
    )
    .unwrap_err();
    assert_eq!(problems.len(), 6, "{problems:#?}");
    assert!(
        problems[0].starts_with("2:14: storage.retention: invalid value 'soon'"),
        "{}",
        problems[0]
    );
    assert!(
        problems[1].starts_with("3:3: storage.colour: unknown flag --colour"),
        "{}",
        problems[1]
    );
    assert!(
        problems[2].starts_with("4:11: storage.no-wal: is a switch"),
        "{}",
        problems[2]
    );
    assert!(
        problems[3].starts_with("5:1: dopler: unknown section"),
        "{}",
        problems[3]
    );
    assert!(
        problems[4].starts_with("8:9: agent.grpc: takes one value"),
        "{}",
        problems[4]
    );
    assert!(
        problems[5].starts_with("9:11: agent.buffer: invalid value '-3'"),
        "{}",
        problems[5]
    );
}

#[test]
fn bad_yaml_names_the_place() {
    let problems = check("doppler:\n  grpc: [unclosed\n").unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains("not valid YAML"), "{}", problems[0]);
    let problems = check("doppler:\n  grpc: a\ndoppler:\n  http: b\n").unwrap_err();
    assert!(
        problems[0].starts_with("3:1: duplicate key"),
        "{}",
        problems[0]
    );
}
