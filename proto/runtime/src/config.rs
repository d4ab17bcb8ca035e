//! Settings a component refuses, reported all at once. Each library config type checks
//! itself (`validate`) and names every problem by its flag, which is also its key in
//! `hydrant.yaml`; start-up and `hydrant config check` run the same checks.

use std::fmt;

/// One refused setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The flag (without `--`) and config key.
    pub field: String,
    /// What is wrong, and what is allowed.
    pub message: String,
}

impl Invalid {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--{} {}", self.field, self.message)
    }
}

/// Every problem of one configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalids(pub Vec<Invalid>);

impl fmt::Display for Invalids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl Invalids {
    /// `Ok` when there is no problem.
    pub fn check(problems: Vec<Invalid>) -> Result<(), Invalids> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Invalids(problems))
        }
    }
}

/// Adds a problem to `out` unless `ok`.
pub fn require(out: &mut Vec<Invalid>, ok: bool, field: &str, message: &str) {
    if !ok {
        out.push(Invalid::new(field, message));
    }
}
