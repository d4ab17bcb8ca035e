//! Access control: an optional YAML file of bearer tokens, each either admin or limited to a
//! list of source ids and app names.
//!
//! ```yaml
//! tokens:
//!   - token: "s3cret-admin"
//!     admin: true
//!   - token: "team-a"
//!     sources: ["6d6c3a04-…"]   # source ids (app guids, component names)
//!     apps: ["web"]             # app names, matched against the `app_name` tag
//! ```
//!
//! Tokens are compared in constant time and never logged. As in Log Cache, a request that
//! may not read a source is answered 404, so a token cannot probe which sources exist.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use hydrant_proto::v2::EgressBatchRequest;
use serde::Deserialize;

/// Errors loading an auth file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("cannot read auth file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed or has unknown or mistyped fields.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A semantic problem with one token entry.
    #[error("{path}: tokens[{index}]: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which entry.
        index: usize,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tokens: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    token: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    apps: Vec<String>,
}

/// What a request may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Everything.
    All,
    /// Only these sources, or sources whose `app_name` is listed.
    Scoped {
        /// Source ids.
        sources: HashSet<String>,
        /// App names.
        apps: HashSet<String>,
    },
}

impl Access {
    /// Whether `source_id` (whose envelopes carry `app_name`, if known) may be read.
    pub fn allows(&self, source_id: &str, app_name: Option<&str>) -> bool {
        match self {
            Access::All => true,
            Access::Scoped { sources, apps } => {
                sources.contains(source_id) || app_name.is_some_and(|a| apps.contains(a))
            }
        }
    }

    /// Whether this is admin access.
    pub fn is_admin(&self) -> bool {
        matches!(self, Access::All)
    }

    /// Whether this access may open a `/v2/read` subscription: admins always; others only
    /// when every selector names a source they may read (`app_name` looks a source's app
    /// name up).
    pub fn may_subscribe(
        &self,
        req: &EgressBatchRequest,
        app_name: impl Fn(&str) -> Option<String>,
    ) -> bool {
        self.is_admin()
            || req.selectors.iter().all(|s| {
                !s.source_id.is_empty()
                    && self.allows(&s.source_id, app_name(&s.source_id).as_deref())
            })
    }
}

/// Loaded tokens.
#[derive(Clone)]
pub struct Auth {
    grants: Vec<(Vec<u8>, Access)>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print tokens.
        f.debug_struct("Auth")
            .field("tokens", &self.grants.len())
            .finish()
    }
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

impl Auth {
    /// Reads and validates an auth file.
    pub fn load(path: &Path) -> Result<Auth, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.into(),
            source,
        })?;
        Auth::parse(&text, path)
    }

    /// Parses auth YAML; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Auth, Error> {
        let file: File = serde_norway::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            Error::Syntax {
                path: path.into(),
                line,
                column,
                message: e.to_string(),
            }
        })?;
        let invalid = |index, message: &str| Error::Invalid {
            path: path.into(),
            index,
            message: message.into(),
        };
        let mut seen = HashSet::new();
        let mut grants = Vec::new();
        for (i, e) in file.tokens.into_iter().enumerate() {
            if e.token.trim().is_empty() {
                return Err(invalid(i, "token: must not be empty"));
            }
            if !seen.insert(e.token.clone()) {
                return Err(invalid(i, "token: duplicates an earlier token"));
            }
            let access = if e.admin {
                if !e.sources.is_empty() || !e.apps.is_empty() {
                    return Err(invalid(
                        i,
                        "an admin token reads everything; remove sources/apps",
                    ));
                }
                Access::All
            } else {
                if e.sources.is_empty() && e.apps.is_empty() {
                    return Err(invalid(i, "set admin: true, or list sources and/or apps"));
                }
                Access::Scoped {
                    sources: e.sources.into_iter().collect(),
                    apps: e.apps.into_iter().collect(),
                }
            };
            grants.push((e.token.into_bytes(), access));
        }
        Ok(Auth { grants })
    }

    /// The access of an `Authorization` header value (`bearer TOKEN`, any case); `None` when
    /// missing or unknown. Every token is compared, so timing does not reveal which matched.
    pub fn check(&self, authorization: Option<&str>) -> Option<Access> {
        let value = authorization?.trim();
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let token = token.trim().as_bytes();
        let mut found = None;
        for (t, access) in &self.grants {
            if constant_time_eq(t, token) {
                found = Some(access.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(q: &str) -> EgressBatchRequest {
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(q.as_bytes()).into_owned().collect();
        hydrant_runtime::sse::request(&pairs).unwrap()
    }

    #[test]
    fn non_admins_must_name_readable_sources_to_subscribe() {
        let scoped = Access::Scoped {
            sources: ["a".to_owned()].into(),
            apps: ["web".to_owned()].into(),
        };
        let names = |s: &str| (s == "guid-web").then(|| "web".to_owned());
        assert!(scoped.may_subscribe(&read("source_id=a&log"), names));
        assert!(scoped.may_subscribe(&read("source_id=guid-web&log"), names));
        assert!(
            !scoped.may_subscribe(&read("log"), names),
            "the whole Firehose is admin-only"
        );
        assert!(!scoped.may_subscribe(&read("source_id=a&source_id=b&log"), names));
        assert!(Access::All.may_subscribe(&read("log"), names));
    }

    const FILE: &str = "tokens:\n  - token: root\n    admin: true\n  - token: team\n    sources: [s1]\n    apps: [web]\n";

    #[test]
    fn grants_admin_and_scoped_access() {
        let auth = Auth::parse(FILE, Path::new("auth.yml")).unwrap();
        assert_eq!(auth.check(Some("bearer root")), Some(Access::All));
        assert_eq!(auth.check(Some("Bearer root")), Some(Access::All));
        let team = auth.check(Some("bearer team")).unwrap();
        assert!(team.allows("s1", None));
        assert!(team.allows("guid-of-web", Some("web")));
        assert!(!team.allows("s2", Some("api")));
        assert_eq!(auth.check(Some("bearer nope")), None);
        assert_eq!(auth.check(Some("basic root")), None);
        assert_eq!(auth.check(None), None);
        assert!(
            !format!("{auth:?}").contains("root"),
            "tokens are never printed"
        );
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let err = Auth::parse(
            "tokens:\n  - token: x\n    colour: red\n",
            Path::new("a.yml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("a.yml:3:5:"), "{err}");
        assert!(err.contains("unknown field `colour`"), "{err}");
        let err = Auth::parse("tokens:\n  - token: x\n", Path::new("a.yml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "a.yml: tokens[0]: set admin: true, or list sources and/or apps"
        );
        let err = Auth::parse(
            "tokens:\n  - token: x\n    admin: true\n  - token: x\n    admin: true\n",
            Path::new("a.yml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("tokens[1]: token: duplicates"), "{err}");
    }
}
