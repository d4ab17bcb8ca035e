//! `hydrant.yaml`: a section per component whose keys are that subcommand's long flags.
//! `retention: 7d` under `storage:` is `hydrant storage --retention 7d`; a list repeats a
//! flag (`from: [a:8082, b:8082]`); `true` sets a switch (`no-wal: true`). Flags given on the
//! command line win over the file. Every key and value is checked against the subcommand's
//! own flag definitions, so the file accepts exactly what the command line does, and each
//! problem names file:line:column and the field.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::ArgAction;
use clap::error::ErrorKind;
use marked_yaml::{LoaderOptions, Node};

use super::components;

/// The file used when `--config` is not given and it exists in the working directory.
pub(crate) const DEFAULT_FILE: &str = "hydrant.yaml";

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) line: usize,
    pub(crate) column: usize,
    /// `section.key`, or the section alone.
    pub(crate) field: String,
    pub(crate) message: String,
}

/// Errors loading a config file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", listing(path, problems))]
    Invalid {
        path: String,
        problems: Vec<Problem>,
    },
}

fn listing(path: &str, problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{path}:{p}"));
    }
    out
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// A checked config file.
#[derive(Debug, Clone)]
pub(crate) struct File {
    path: PathBuf,
    entries: Vec<Entry>,
    /// Where each section starts (line, column).
    sections_at: Vec<(String, (usize, usize))>,
}

#[derive(Debug, Clone)]
struct Entry {
    section: String,
    long: String,
    id: String,
    /// Values; a switch set to `true` has none.
    values: Vec<String>,
    /// A switch set to `false`: contributes nothing.
    off: bool,
    /// Where its key is (line, column).
    at: (usize, usize),
}

/// Reads and checks `path` against `cli`'s subcommands.
pub(crate) fn load(path: &Path, cli: &clap::Command) -> Result<File, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(path, &text, cli)
}

/// Checks `text` (the contents of `path`) against `cli`'s subcommands, reporting every
/// problem at once.
pub(crate) fn parse(path: &Path, text: &str, cli: &clap::Command) -> Result<File, Error> {
    let mut problems = Vec::new();
    let mut entries = Vec::new();
    let mut sections_at = Vec::new();
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .toplevel_mapping();
    // Size and nesting limits before the (recursive) loader sees the text.
    let loaded = match hydrant_runtime::yaml::check(text) {
        Err(e) => Err(problem(e.position(), "", format!("refused: {e}"))),
        Ok(()) => {
            marked_yaml::parse_yaml_with_options(0, text, options).map_err(|e| load_problem(&e))
        }
    };
    match loaded {
        Err(p) => problems.push(p),
        Ok(root) => {
            if let Some(map) = root.as_mapping() {
                for (key, node) in map.iter() {
                    let at = key
                        .span()
                        .start()
                        .map_or((0, 0), |m| (m.line(), m.column()));
                    sections_at.push((key.as_str().to_owned(), at));
                    section(cli, key.as_str(), key, node, &mut entries, &mut problems);
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(File {
            path: path.to_owned(),
            entries,
            sections_at,
        })
    } else {
        Err(Error::Invalid {
            path: path.display().to_string(),
            problems,
        })
    }
}

fn position(node: &Node) -> (usize, usize) {
    node.span()
        .start()
        .map_or((0, 0), |m| (m.line(), m.column()))
}

fn problem(at: (usize, usize), field: &str, message: impl Into<String>) -> Problem {
    Problem {
        line: at.0,
        column: at.1,
        field: field.to_owned(),
        message: message.into(),
    }
}

fn load_problem(e: &marked_yaml::LoadError) -> Problem {
    use marked_yaml::LoadError::*;
    let (at, message) = match e {
        TopLevelMustBeMapping(m) => (
            Some(*m),
            "the file must be a mapping of sections (doppler:, agent:, …)".to_owned(),
        ),
        DuplicateKey(inner) => (
            inner.key.span().start().copied(),
            format!("duplicate key {:?}", inner.key.as_str()),
        ),
        ScanError(m, err) => (Some(*m), format!("not valid YAML: {}", err.info())),
        other => (None, format!("not a valid config file: {other}")),
    };
    problem(at.map_or((0, 0), |m| (m.line(), m.column())), "", message)
}

fn section(
    cli: &clap::Command,
    name: &str,
    key: &marked_yaml::types::MarkedScalarNode,
    node: &Node,
    entries: &mut Vec<Entry>,
    problems: &mut Vec<Problem>,
) {
    let key_at = key
        .span()
        .start()
        .map_or((0, 0), |m| (m.line(), m.column()));
    let sub = components::sections()
        .any(|s| s == name)
        .then(|| cli.find_subcommand(name))
        .flatten();
    let Some(sub) = sub else {
        problems.push(problem(
            key_at,
            name,
            format!(
                "unknown section (expected one of: {})",
                components::sections().collect::<Vec<_>>().join(", ")
            ),
        ));
        return;
    };
    let Some(map) = node.as_mapping() else {
        // `storage:` with nothing under it is an empty section.
        if node.as_scalar().is_some_and(|s| s.as_str().is_empty()) {
            return;
        }
        problems.push(problem(position(node), name, "must be a mapping of flags"));
        return;
    };
    for (k, v) in map.iter() {
        let long = k.as_str().replace('_', "-");
        let field = format!("{name}.{}", k.as_str());
        let at = k.span().start().map_or((0, 0), |m| (m.line(), m.column()));
        match entry(sub, name, &long, v) {
            Ok(e) => entries.push(Entry { at, ..e }),
            Err((node_at, message)) => {
                problems.push(problem(node_at.unwrap_or(at), &field, message));
            }
        }
    }
}

type EntryError = (Option<(usize, usize)>, String);

fn entry(sub: &clap::Command, name: &str, long: &str, node: &Node) -> Result<Entry, EntryError> {
    let Some(arg) = sub
        .get_arguments()
        .find(|a| a.get_long() == Some(long) && !a.is_hide_set())
    else {
        return Err((
            None,
            format!("unknown flag --{long} of `hydrant {name}` (see `hydrant {name} --help`)"),
        ));
    };
    let scalars: Vec<(String, (usize, usize))> = match node {
        Node::Scalar(s) => vec![(s.as_str().to_owned(), position(node))],
        Node::Sequence(seq) => {
            if !matches!(arg.get_action(), ArgAction::Append) {
                return Err((Some(position(node)), "takes one value, not a list".into()));
            }
            let mut out = Vec::new();
            for item in seq.iter() {
                let Some(s) = item.as_scalar() else {
                    return Err((Some(position(item)), "list items must be values".into()));
                };
                out.push((s.as_str().to_owned(), position(item)));
            }
            out
        }
        Node::Mapping(_) => {
            return Err((
                Some(position(node)),
                "must be a value, not a mapping".into(),
            ));
        }
    };
    let id = arg.get_id().as_str().to_owned();
    match arg.get_action() {
        ArgAction::SetTrue => {
            let (value, at) = &scalars[0];
            let off = match value.as_str() {
                "true" => false,
                "false" => true,
                _ => {
                    let message = format!("is a switch: true or false, not {value:?}");
                    return Err((Some(*at), message));
                }
            };
            Ok(Entry {
                section: name.to_owned(),
                long: long.to_owned(),
                id,
                values: Vec::new(),
                off,
                at: (0, 0),
            })
        }
        ArgAction::Set | ArgAction::Append => {
            for (value, at) in &scalars {
                if value.is_empty() {
                    return Err((Some(*at), "needs a value".into()));
                }
                check_value(sub, name, long, value).map_err(|m| (Some(*at), m))?;
            }
            Ok(Entry {
                section: name.to_owned(),
                long: long.to_owned(),
                id,
                values: scalars.into_iter().map(|(v, _)| v).collect(),
                off: false,
                at: (0, 0),
            })
        }
        _ => Err((None, format!("--{long} cannot be set from a file"))),
    }
}

/// Runs the flag's own parser on `value` (the same check the command line gets).
fn check_value(sub: &clap::Command, name: &str, long: &str, value: &str) -> Result<(), String> {
    let flag = format!("--{long}={value}");
    match sub.clone().try_get_matches_from([name, flag.as_str()]) {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::ValueValidation | ErrorKind::InvalidValue
            ) =>
        {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            Err(first.trim_start_matches("error: ").to_owned())
        }
        _ => Ok(()),
    }
}

impl File {
    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file sets flag `--long` of `section`.
    pub(crate) fn sets(&self, section: &str, long: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.section == section && e.long == long)
    }

    /// Where `section.long` is set, else where the section starts (the setting came from
    /// a default), else the top of the file.
    pub(crate) fn position(&self, section: &str, long: &str) -> (usize, usize) {
        self.entries
            .iter()
            .find(|e| e.section == section && e.long == long)
            .map(|e| e.at)
            .or_else(|| {
                self.sections_at
                    .iter()
                    .find(|(s, _)| s == section)
                    .map(|(_, at)| *at)
            })
            .unwrap_or((1, 1))
    }

    /// A problem of `section.long` as found after loading (a component's own checks).
    pub(crate) fn problem(&self, section: &str, long: &str, message: impl Into<String>) -> Problem {
        let field = if long.is_empty() {
            section.to_owned()
        } else {
            format!("{section}.{long}")
        };
        problem(self.position(section, long), &field, message)
    }

    /// Every problem as one error naming this file.
    pub(crate) fn refused(&self, problems: Vec<Problem>) -> Error {
        Error::Invalid {
            path: self.path.display().to_string(),
            problems,
        }
    }

    /// The sections present.
    pub(crate) fn sections(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.entries.iter().map(|e| e.section.as_str()).collect();
        out.dedup();
        out
    }

    /// Command-line arguments for `section`, leaving out the flags for which `given(id)`
    /// says the command line already has a value.
    pub(crate) fn args(&self, section: &str, given: impl Fn(&str) -> bool) -> Vec<OsString> {
        let mut out = Vec::new();
        for e in self.entries.iter().filter(|e| e.section == section) {
            if e.off || given(&e.id) {
                continue;
            }
            if e.values.is_empty() {
                out.push(OsString::from(format!("--{}", e.long)));
            }
            for v in &e.values {
                out.push(OsString::from(format!("--{}={v}", e.long)));
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "config/fuzz.rs"]
mod fuzz;
#[cfg(test)]
#[path = "config/tests.rs"]
mod tests;
