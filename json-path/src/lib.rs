//! The one JSON-path notation Meridian shows to job authors, plugin authors
//! and API clients, wherever a message points into a document: a job, a
//! step's config, a grant, a request body.
//!
//! ```text
//! url    headers[0].name    steps.fetch-users.output    params["a.b"]    [""]
//! ```
//!
//! - An object key that is a plain name, `[A-Za-z_][A-Za-z0-9_-]*`, follows
//!   a `.` (none at the start); any other key is quoted in brackets,
//!   `["..."]`, with `"` and `\` escaped by a backslash and every other
//!   character as it is.
//! - An array index is `[N]`.
//! - The whole document is the empty path.
//!
//! It is the path syntax of a variable reference (`${params["a.b"]}`, see
//! the host's `model::vars`), so a path Meridian prints is one a job author
//! can write back. The SDK (`meridian_sdk::JsonPath`) and the host both use
//! this crate; it imports nothing of Meridian's.
//!
//! ```
//! use meridian_json_path::JsonPath;
//!
//! let p = JsonPath::root().key("headers").index(0).key("name");
//! assert_eq!(p.as_str(), "headers[0].name");
//! assert_eq!(JsonPath::root().key("a.b").as_str(), r#"["a.b"]"#);
//! assert_eq!(JsonPath::root().key("X-Api-Key").as_str(), "X-Api-Key");
//! ```

use serde_json::Value;
use std::fmt;

/// A path into a JSON document, built segment by segment (see the crate
/// docs for the notation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JsonPath(String);

impl JsonPath {
    /// The document as a whole (written as the empty string).
    pub fn root() -> Self {
        JsonPath(String::new())
    }

    /// The member `key` of this object.
    #[must_use]
    pub fn key(&self, key: &str) -> Self {
        let mut path = self.clone();
        path.push_key(key);
        path
    }

    /// The element `index` of this array.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        let mut path = self.clone();
        path.push_index(index);
        path
    }

    /// Appends the member `key` in place (for walks that push and
    /// [`truncate`](Self::truncate)).
    pub fn push_key(&mut self, key: &str) {
        push_key(&mut self.0, key);
    }

    /// Appends the element `index` in place.
    pub fn push_index(&mut self, index: usize) {
        self.0.push('[');
        self.0.push_str(&index.to_string());
        self.0.push(']');
    }

    /// The length of the text, to [`truncate`](Self::truncate) back to.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether this is the whole document (same as [`is_root`](Self::is_root)).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Back to an earlier [`len`](Self::len).
    pub fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }

    /// `rel`, a path inside the value at this path, as a path from this
    /// path's document: `schedule` joined with `cron` is `schedule.cron`,
    /// with `[0]` is `schedule[0]`.
    #[must_use]
    pub fn join(&self, rel: &JsonPath) -> Self {
        JsonPath(join(&self.0, &rel.0))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the whole document.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path `serde_path_to_error` recorded where deserialising stopped.
    /// Its own `Display` writes every key bare (`headers.a.b` for the key
    /// `a.b`) and the root as `.`; this writes them in this notation.
    pub fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        let mut out = JsonPath::root();
        for segment in path {
            match segment {
                Segment::Seq { index } => out.push_index(*index),
                Segment::Map { key } => out.push_key(key),
                Segment::Enum { variant } => out.push_key(variant),
                // A position serde could not name (inside an untagged enum
                // or a flattened struct): stop at the last known point.
                Segment::Unknown => break,
            }
        }
        out
    }

    /// A JSON Pointer (RFC 6901: `/headers/0/name`) into `document`, in this
    /// notation. A pointer cannot tell the key `"0"` from the index 0; the
    /// document can, so a segment is an index only where the value it
    /// steps into is an array. Past the end of the document (a pointer to a
    /// missing member) every segment is a key.
    pub fn from_pointer(pointer: &str, document: &Value) -> Self {
        let mut out = JsonPath::root();
        let mut at = Some(document);
        for raw in pointer.split('/').skip(1) {
            let segment = raw.replace("~1", "/").replace("~0", "~");
            match (at, segment.parse::<usize>()) {
                (Some(Value::Array(items)), Ok(i)) => {
                    out.push_index(i);
                    at = items.get(i);
                }
                (current, _) => {
                    at = current.and_then(|v| v.get(&segment));
                    out.push_key(&segment);
                }
            }
        }
        out
    }
}

/// [`JsonPath::join`] on paths already written out: `base` and `rel` as
/// one path (`steps[0].config` and `headers[0]` give
/// `steps[0].config.headers[0]`).
pub fn join(base: &str, rel: &str) -> String {
    if base.is_empty() || rel.is_empty() || rel.starts_with('[') {
        format!("{base}{rel}")
    } else {
        format!("{base}.{rel}")
    }
}

/// Appends `.key`, or `["key"]` when the key is not a plain name.
fn push_key(out: &mut String, key: &str) {
    if is_plain_name(key) {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(key);
    } else {
        out.push_str("[\"");
        for c in key.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str("\"]");
    }
}

/// `[A-Za-z_][A-Za-z0-9_-]*`: a key written after a `.`.
pub fn is_plain_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<JsonPath> for String {
    fn from(path: JsonPath) -> String {
        path.0
    }
}

impl From<&JsonPath> for String {
    fn from(path: &JsonPath) -> String {
        path.0.clone()
    }
}

impl AsRef<str> for JsonPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builds_paths() {
        let root = JsonPath::root();
        assert!(root.is_root());
        assert_eq!(root.key("url").as_str(), "url");
        assert_eq!(root.index(2).as_str(), "[2]");
        assert_eq!(
            root.key("a").index(1).index(2).key("b_c").as_str(),
            "a[1][2].b_c"
        );
        assert_eq!(root.key("extract").key("1st").as_str(), r#"extract["1st"]"#);
        assert_eq!(
            root.key("steps").key("fetch-users").as_str(),
            "steps.fetch-users"
        );
        assert_eq!(
            root.key("m").key("say \"hi\"").as_str(),
            r#"m["say \"hi\""]"#
        );
        assert_eq!(root.key("back\\slash").as_str(), r#"["back\\slash"]"#);
        assert_eq!(root.key("").as_str(), r#"[""]"#);
        assert_eq!(root.key("-x").as_str(), r#"["-x"]"#);
    }

    #[test]
    fn joins_paths() {
        let base = JsonPath::root().key("schedule");
        assert_eq!(base.join(&JsonPath::root()).as_str(), "schedule");
        assert_eq!(
            base.join(&JsonPath::root().key("cron")).as_str(),
            "schedule.cron"
        );
        assert_eq!(
            base.join(&JsonPath::root().index(0)).as_str(),
            "schedule[0]"
        );
        assert_eq!(
            base.join(&JsonPath::root().key("a b")).as_str(),
            r#"schedule["a b"]"#
        );
        assert_eq!(JsonPath::root().join(&base).as_str(), "schedule");
    }

    #[test]
    fn pointers_are_read_against_their_document() {
        let doc = json!({"headers": [{"name": "x"}], "codes": {"200": "ok"}, "a/b": {"c~d": 1}});
        let at = |p: &str| JsonPath::from_pointer(p, &doc).to_string();
        assert_eq!(at(""), "");
        assert_eq!(at("/headers/0/name"), "headers[0].name");
        // "200" is a key of an object, not an index.
        assert_eq!(at("/codes/200"), r#"codes["200"]"#);
        assert_eq!(at("/a~1b/c~0d"), r#"["a/b"]["c~d"]"#);
        // Past the document: keys.
        assert_eq!(at("/missing/0"), r#"missing["0"]"#);
    }

    #[test]
    fn serde_paths_quote_odd_keys_and_drop_the_root_dot() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Doc {
            items: Vec<std::collections::BTreeMap<String, u8>>,
        }
        let text = r#"{"items": [{"a.b": 1}, {"ok": 1, "x y": "not a number"}]}"#;
        let de = &mut serde_json::Deserializer::from_str(text);
        let err = serde_path_to_error::deserialize::<_, Doc>(de).unwrap_err();
        assert_eq!(err.path().to_string(), "items[1].x y");
        assert_eq!(
            JsonPath::from_serde(err.path()).as_str(),
            r#"items[1]["x y"]"#
        );
        let de = &mut serde_json::Deserializer::from_str("[]");
        let err = serde_path_to_error::deserialize::<_, Doc>(de).unwrap_err();
        assert_eq!(err.path().to_string(), ".");
        assert!(JsonPath::from_serde(err.path()).is_root());
    }

    proptest::proptest! {
        /// Every key is written so that reading it back is unambiguous: a
        /// plain name, or a bracketed quote whose unescaped text is the key.
        #[test]
        fn keys_read_back(key in "\\PC{0,12}") {
            let p = JsonPath::root().key(&key);
            let text = p.as_str();
            if is_plain_name(&key) {
                proptest::prop_assert_eq!(text, key.as_str());
            } else {
                let inner = text.strip_prefix("[\"").and_then(|t| t.strip_suffix("\"]"));
                proptest::prop_assert!(inner.is_some(), "{}", text);
                let mut back = String::new();
                let mut chars = inner.unwrap_or_default().chars();
                while let Some(c) = chars.next() {
                    back.push(if c == '\\' { chars.next().unwrap_or('\\') } else { c });
                }
                proptest::prop_assert_eq!(back, key);
            }
        }
    }
}
