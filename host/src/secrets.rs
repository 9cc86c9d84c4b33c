//! Named secrets and the masking of their values.
//!
//! Secrets come from the config file (a literal, an environment variable or
//! a file) and from `MERIDIAN_SECRET_<NAME>` environment variables. A step
//! sees a secret only through the secrets capability, and only when granted;
//! every value is masked in whatever the host writes or returns (step
//! outputs, errors, logs), by one [`Masker`] built once at load.

use aho_corasick::AhoCorasick;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// What a masked secret is replaced with.
pub const MASK: &str = "***";

/// A secret value that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plain value, for the one place that hands it to a step.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// All named secrets known to this host, with the masker for their values.
#[derive(Clone, Default)]
pub struct SecretStore {
    values: BTreeMap<String, SecretValue>,
    masker: Arc<Masker>,
}

impl fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretStore")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SecretStore {
    pub fn new(values: BTreeMap<String, SecretValue>) -> Self {
        let masker = Arc::new(Masker::new(values.values().map(SecretValue::expose)));
        Self { values, masker }
    }

    pub fn get(&self, name: &str) -> Option<&SecretValue> {
        self.values.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    pub fn masker(&self) -> &Arc<Masker> {
        &self.masker
    }
}

/// Replaces every occurrence of any secret value with [`MASK`].
///
/// Built once from all secret values (one Aho-Corasick automaton, leftmost
/// longest match so a secret that contains another is masked whole).
#[derive(Default)]
pub struct Masker {
    automaton: Option<AhoCorasick>,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("active", &self.automaton.is_some())
            .finish()
    }
}

impl Masker {
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let patterns: Vec<&str> = values.into_iter().filter(|v| !v.is_empty()).collect();
        if patterns.is_empty() {
            return Self { automaton: None };
        }
        let automaton = aho_corasick::AhoCorasickBuilder::new()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok();
        Self { automaton }
    }

    /// The text with every secret replaced; borrowed when nothing matched.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match &self.automaton {
            Some(ac) if ac.is_match(text) => {
                let replacements = vec![MASK; ac.patterns_len()];
                Cow::Owned(ac.replace_all(text, &replacements))
            }
            _ => Cow::Borrowed(text),
        }
    }

    /// Masks every string (keys included) inside a JSON value, in place.
    /// Working on the parsed value keeps the JSON valid and catches secrets
    /// that the serialised text would show escaped.
    pub fn mask_json(&self, value: &mut Value) {
        if self.automaton.is_none() {
            return;
        }
        match value {
            Value::String(s) => {
                if let Cow::Owned(masked) = self.mask(s) {
                    *s = masked;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.mask_json(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut v) in entries {
                    self.mask_json(&mut v);
                    map.insert(self.mask(&key).into_owned(), v);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_all_secrets_longest_first() {
        let m = Masker::new(["hunter2", "hunter2-and-more", ""]);
        assert_eq!(m.mask("a hunter2 b"), "a *** b");
        assert_eq!(m.mask("x hunter2-and-more y"), "x *** y");
        assert!(matches!(m.mask("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn masks_inside_json_keeping_it_valid() {
        let m = Masker::new(["p\"w"]);
        let mut v = json!({"a": ["x p\"w y", 1], "p\"w": true});
        m.mask_json(&mut v);
        assert_eq!(v, json!({"a": ["x *** y", 1], "***": true}));
    }

    #[test]
    fn debug_never_shows_values() {
        let store = SecretStore::new(BTreeMap::from([("t".into(), SecretValue::new("s3cr3t"))]));
        let shown = format!("{store:?} {:?}", store.get("t"));
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
