//! JSON paths into a step's config, in the one notation Meridian shows to
//! job authors: `url`, `headers[0].name`, `extract.state`,
//! `headers["Content-Type"]`.

use std::fmt;

/// A path into a JSON document, built segment by segment.
///
/// Keys that are plain identifiers are joined with `.`; any other key is
/// written as a quoted JSON string in brackets; array indices in brackets.
///
/// ```
/// use meridian_sdk::JsonPath;
///
/// assert_eq!(JsonPath::root().to_string(), "");
/// assert_eq!(JsonPath::root().key("headers").index(0).key("name").as_str(), "headers[0].name");
/// assert_eq!(JsonPath::root().key("headers").key("X-Api-Key").as_str(), r#"headers["X-Api-Key"]"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct JsonPath(String);

impl JsonPath {
    /// The document as a whole (written as the empty string).
    pub fn root() -> Self {
        JsonPath(String::new())
    }

    /// The member `key` of this object.
    pub fn key(&self, key: &str) -> Self {
        let mut path = self.0.clone();
        if is_identifier(key) {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
        } else {
            path.push('[');
            path.push_str(&quote(key));
            path.push(']');
        }
        JsonPath(path)
    }

    /// The element `index` of this array.
    pub fn index(&self, index: usize) -> Self {
        JsonPath(format!("{}[{index}]", self.0))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the whole document.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path serde_path_to_error recorded, in this notation.
    pub(crate) fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        let mut out = JsonPath::root();
        for segment in path {
            out = match segment {
                Segment::Seq { index } => out.index(*index),
                Segment::Map { key } => out.key(key),
                Segment::Enum { variant } => out.key(variant),
                // A position serde could not name (inside an untagged enum or a
                // flattened struct): stop at the last known point.
                Segment::Unknown => break,
            };
        }
        out
    }
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn quote(key: &str) -> String {
    // A JSON string literal is unambiguous and familiar; serialising a &str
    // cannot fail, but fall back to a hand-quoted form rather than unwrap.
    serde_json::to_string(key).unwrap_or_else(|_| format!("\"{key}\""))
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
            root.key("m").key("say \"hi\"").as_str(),
            r#"m["say \"hi\""]"#
        );
        assert_eq!(root.key("").as_str(), r#"[""]"#);
    }
}
