//! A job's capability scope: the third term of
//! *effective = asked ∩ granted ∩ job scope*.
//!
//! A job may narrow what its steps reach below what their plugins are
//! granted (it can never widen it):
//!
//! ```json
//! "scope": {
//!   "http": ["https://api.example.com/v1/*"],
//!   "secrets": ["api_token"],
//!   "sql": ["reporting"],
//!   "process": []
//! }
//! ```
//!
//! Each kind is a list of globs over what a call names — the URL, the
//! secret name, the connection name, the program path (`*` also crosses
//! `/`). A kind left out is not narrowed; an empty list allows none of it.
//! A call outside the scope is a denial that says the job's scope refused
//! it.

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};

/// The scope as written in a job definition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeSpec {
    /// URL globs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Vec<String>>,
    /// Secret name globs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<String>>,
    /// Connection name globs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<Vec<String>>,
    /// Program path globs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Vec<String>>,
}

/// A parsed scope.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    kinds: Vec<(&'static str, Vec<GlobMatcher>)>,
}

impl Scope {
    /// Compiles the globs; errors carry the path below `scope`
    /// (`http[0]`) and the problem.
    pub fn parse(spec: &ScopeSpec) -> Result<Self, Vec<(String, String)>> {
        let mut kinds = Vec::new();
        let mut errors = Vec::new();
        for (kind, globs) in [
            ("http", &spec.http),
            ("secrets", &spec.secrets),
            ("sql", &spec.sql),
            ("process", &spec.process),
        ] {
            let Some(globs) = globs else { continue };
            let mut matchers = Vec::new();
            for (i, g) in globs.iter().enumerate() {
                if g.trim().is_empty() {
                    errors.push((format!("{kind}[{i}]"), "must not be empty".into()));
                    continue;
                }
                match GlobBuilder::new(g).literal_separator(false).build() {
                    Ok(glob) => matchers.push(glob.compile_matcher()),
                    Err(e) => {
                        errors.push((format!("{kind}[{i}]"), format!("invalid pattern: {e}")))
                    }
                }
            }
            kinds.push((kind, matchers));
        }
        if errors.is_empty() {
            Ok(Self { kinds })
        } else {
            Err(errors)
        }
    }

    /// A scope that allows nothing of any kind.
    pub fn nothing() -> Self {
        Self {
            kinds: ["http", "secrets", "sql", "process"]
                .into_iter()
                .map(|k| (k, Vec::new()))
                .collect(),
        }
    }

    /// Whether the scope lets a call of this capability name this target
    /// (a URL, a secret, a connection, a program).
    pub fn allows(&self, capability: &str, target: &str) -> bool {
        match self.kinds.iter().find(|(k, _)| *k == capability) {
            None => true,
            Some((_, globs)) => globs.iter().any(|g| g.is_match(target)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn scope(json: serde_json::Value) -> Scope {
        Scope::parse(&serde_json::from_value(json).unwrap()).unwrap()
    }

    #[test]
    fn a_kind_left_out_is_not_narrowed_and_an_empty_list_allows_none() {
        let s = scope(serde_json::json!({"http": ["https://api.example.com/v1/*"], "process": []}));
        assert!(s.allows("http", "https://api.example.com/v1/items/3"));
        assert!(!s.allows("http", "https://api.example.com/v2/items"));
        assert!(!s.allows("http", "https://evil.example/v1/"));
        assert!(!s.allows("process", "/bin/sh"));
        assert!(s.allows("sql", "anything"));
        assert!(s.allows("secrets", "anything"));
    }

    #[test]
    fn bad_patterns_name_their_place() {
        let spec: ScopeSpec =
            serde_json::from_value(serde_json::json!({"sql": ["ok", "", "a[b"]})).unwrap();
        let errors = Scope::parse(&spec).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["sql[1]", "sql[2]"]);
        assert!(serde_json::from_value::<ScopeSpec>(serde_json::json!({"files": []})).is_err());
    }
}
