//! What a successful step produces: its output JSON (later steps read it as
//! `${steps.<step id>.output}`) and the variables it exports.

use serde::Serialize;
use serde_json::Value;

use crate::StepError;
use crate::bindings::meridian::step::types as wit;

/// The result of a successful step.
///
/// ```
/// use meridian_sdk::Output;
/// use meridian_sdk::serde_json::json;
///
/// let out = Output::new(json!({ "rows": 3 }))
///     .export("row_count", 3)
///     .export("last_id", "a-17");
/// assert_eq!(out.value(), &json!({ "rows": 3 }));
/// assert_eq!(out.exported("last_id"), Some(&json!("a-17")));
/// ```
///
/// Values are serialised when given; a value serde cannot represent as JSON
/// (a map with non-string keys, say) makes the step fail with a message
/// naming it, rather than produce a partial output.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Output {
    value: Value,
    exports: Vec<(String, Value)>,
    /// The first serialisation failure, reported when the step returns.
    error: Option<String>,
}

impl Output {
    /// An output whose JSON is `value`.
    pub fn new(value: impl Serialize) -> Self {
        match serde_json::to_value(value) {
            Ok(value) => Output {
                value,
                ..Output::default()
            },
            Err(e) => Output {
                error: Some(format!("the step's output could not be serialised: {e}")),
                ..Output::default()
            },
        }
    }

    /// An output of JSON `null`, for steps whose effect is all there is.
    pub fn empty() -> Self {
        Output::default()
    }

    /// Also exports the variable `name` to later steps (replacing an earlier
    /// export of the same name).
    pub fn export(mut self, name: impl Into<String>, value: impl Serialize) -> Self {
        let name = name.into();
        match serde_json::to_value(value) {
            Ok(value) => {
                self.exports.retain(|(n, _)| *n != name);
                self.exports.push((name, value));
            }
            Err(e) => {
                if self.error.is_none() {
                    self.error = Some(format!(
                        "exported variable `{name}` could not be serialised: {e}"
                    ));
                }
            }
        }
        self
    }

    /// The output JSON.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The exported variable `name`, if exported.
    pub fn exported(&self, name: &str) -> Option<&Value> {
        self.exports.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// All exported variables, in the order they were exported.
    pub fn exports(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.exports.iter().map(|(n, v)| (n.as_str(), v))
    }

    pub(crate) fn into_wit(self) -> Result<wit::StepOutput, StepError> {
        if let Some(error) = self.error {
            return Err(StepError::Failed(error));
        }
        Ok(wit::StepOutput {
            output: self.value.to_string(),
            exports: self
                .exports
                .into_iter()
                .map(|(name, value)| (name, value.to_string()))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn serialises_value_and_exports() {
        let out = Output::new(json!({"a": 1}))
            .export("x", 1)
            .export("y", "two")
            .export("x", [3]);
        let wit = out.into_wit().unwrap();
        assert_eq!(wit.output, r#"{"a":1}"#);
        assert_eq!(
            wit.exports,
            vec![
                ("y".to_string(), "\"two\"".to_string()),
                ("x".to_string(), "[3]".to_string())
            ]
        );
    }

    #[test]
    fn unserialisable_values_fail_the_step() {
        let mut bad = BTreeMap::new();
        bad.insert(vec![1u8], 1);
        let err = Output::new(json!(1))
            .export("m", &bad)
            .into_wit()
            .unwrap_err();
        assert!(matches!(err, StepError::Failed(m) if m.contains("`m`")));
        assert!(Output::new(&bad).into_wit().is_err());
        assert_eq!(Output::empty().into_wit().unwrap().output, "null");
    }
}
