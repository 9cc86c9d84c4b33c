//! `extract`: values taken from the JSON response body by JSON pointer
//! (RFC 6901), each becoming part of the output and an exported variable.

use serde_json::{Map, Value};

/// One extraction, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Extraction {
    /// Output and variable name.
    pub name: String,
    /// The JSON pointer, valid per RFC 6901.
    pub pointer: String,
    /// Whether a pointer that does not resolve is acceptable.
    pub optional: bool,
    /// The value used when an optional pointer does not resolve.
    pub default: Value,
}

/// Checks a JSON pointer's syntax: empty (the whole document) or `/`
/// followed by reference tokens, where `~` only appears as `~0` or `~1`.
pub fn check_pointer(pointer: &str) -> Result<(), String> {
    if pointer.is_empty() {
        return Ok(());
    }
    if !pointer.starts_with('/') {
        return Err(format!(
            "`{pointer}` is not a JSON pointer: it must start with `/` (e.g. `/{pointer}`), or be empty for the whole body"
        ));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "`{pointer}` is not a JSON pointer: `~` must be written `~0` and `/` inside a name `~1`"
            ));
        }
    }
    Ok(())
}

/// Checks an extraction name: it becomes a variable, so it must be a plain
/// identifier (letters, digits, `_`; not starting with a digit).
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` cannot be a variable name: use letters, digits and `_`, not starting with a digit"
        ))
    }
}

/// Why extraction failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtractError {
    /// A required pointer did not resolve.
    Missing { name: String, pointer: String },
    /// There are required extractions but the body is not JSON.
    NotJson { names: Vec<String> },
}

impl std::fmt::Display for ExtractError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExtractError::Missing { name, pointer } => write!(
                f,
                "extract `{name}`: JSON pointer `{pointer}` does not resolve in the response body (mark it `\"optional\": true` if it may be absent)"
            ),
            ExtractError::NotJson { names } => write!(
                f,
                "extract {}: the response body is not JSON",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Applies every extraction to `body` (`None` when the body is not JSON).
pub fn extract(
    body: Option<&Value>,
    extractions: &[Extraction],
) -> Result<Map<String, Value>, ExtractError> {
    let Some(body) = body else {
        let required: Vec<String> = extractions
            .iter()
            .filter(|e| !e.optional)
            .map(|e| e.name.clone())
            .collect();
        if !required.is_empty() {
            return Err(ExtractError::NotJson { names: required });
        }
        return Ok(extractions
            .iter()
            .map(|e| (e.name.clone(), e.default.clone()))
            .collect());
    };
    let mut out = Map::new();
    for e in extractions {
        let value = match body.pointer(&e.pointer) {
            Some(value) => value.clone(),
            None if e.optional => e.default.clone(),
            None => {
                return Err(ExtractError::Missing {
                    name: e.name.clone(),
                    pointer: e.pointer.clone(),
                });
            }
        };
        out.insert(e.name.clone(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn required(name: &str, pointer: &str) -> Extraction {
        Extraction {
            name: name.into(),
            pointer: pointer.into(),
            optional: false,
            default: Value::Null,
        }
    }

    #[test]
    fn pointers_are_checked() {
        assert!(check_pointer("").is_ok());
        assert!(check_pointer("/").is_ok());
        assert!(check_pointer("/a/0/b~1c~0d").is_ok());
        assert!(
            check_pointer("status/indicator")
                .unwrap_err()
                .contains("must start with `/`")
        );
        assert!(check_pointer("/a~2").unwrap_err().contains("`~0`"));
        assert!(check_pointer("/a~").unwrap_err().contains("`~0`"));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("state").is_ok());
        assert!(check_name("_x1").is_ok());
        assert!(check_name("1x").is_err());
        assert!(check_name("a-b").is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn extracts_values() {
        let body =
            json!({"status": {"indicator": "none"}, "items": [{"id": 7}], "a/b": 1, "m~n": 2});
        let got = extract(
            Some(&body),
            &[
                required("state", "/status/indicator"),
                required("first", "/items/0/id"),
                required("slash", "/a~1b"),
                required("tilde", "/m~0n"),
                required("all", ""),
                Extraction {
                    optional: true,
                    default: json!("n/a"),
                    ..required("eta", "/eta")
                },
                Extraction {
                    optional: true,
                    ..required("none", "/items/5")
                },
            ],
        )
        .unwrap();
        assert_eq!(got["state"], "none");
        assert_eq!(got["first"], 7);
        assert_eq!(got["slash"], 1);
        assert_eq!(got["tilde"], 2);
        assert_eq!(got["all"], body);
        assert_eq!(got["eta"], "n/a");
        assert_eq!(got["none"], Value::Null);
    }

    #[test]
    fn missing_required_values_fail_naming_the_pointer() {
        let err = extract(
            Some(&json!({"status": {}})),
            &[required("state", "/status/indicator")],
        )
        .unwrap_err();
        assert_eq!(
            err,
            ExtractError::Missing {
                name: "state".into(),
                pointer: "/status/indicator".into()
            }
        );
        assert!(
            err.to_string()
                .contains("`/status/indicator` does not resolve")
        );
    }

    #[test]
    fn non_json_bodies() {
        let optional = Extraction {
            optional: true,
            default: json!(0),
            ..required("n", "/n")
        };
        assert_eq!(
            extract(None, std::slice::from_ref(&optional)).unwrap()["n"],
            0
        );
        let err = extract(None, &[optional, required("state", "/s")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "extract `state`: the response body is not JSON"
        );
    }
}
