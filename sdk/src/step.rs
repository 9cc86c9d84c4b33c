//! The one trait a plugin implements, and the config handling the SDK does
//! for it: JSON text in, the author's own serde type out, every problem a
//! [`ConfigIssue`] with a JSON path.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::{Capability, ConfigIssue, Context, JsonPath, Output, StepError};

/// A step type. Implement it for a (usually empty) type and export that type
/// with [`export_step!`](crate::export_step).
///
/// See the [crate documentation](crate) for a complete plugin.
pub trait Step {
    /// The step's configuration, as job definitions write it (JSON). Its
    /// schemars schema is what `describe` reports; serde's errors become
    /// config issues with a JSON path.
    type Config: DeserializeOwned + JsonSchema;

    /// The step type's name, as job definitions refer to it (`"type": "http"`)
    /// and grants name it (`plugin = "http"`).
    const NAME: &'static str;
    /// The step type's own semver version.
    const VERSION: &'static str;
    /// One paragraph for operators.
    const DESCRIPTION: &'static str;

    /// The capabilities the step asks for; the host grants at most these.
    /// Default: none.
    fn capabilities() -> Vec<Capability> {
        Vec::new()
    }

    /// Checks beyond what serde checks (a URL that parses, a range that is not
    /// empty...). Called after the config deserialised, both when a job is
    /// validated and before every execution. Default: no further checks.
    ///
    /// When the host validates a job, this runs with no capabilities at all:
    /// every call (a secret, an HTTP request, SQL, a process) is denied and
    /// log lines are dropped, whatever the plugin was granted. Check the
    /// config's shape here; reach out in [`Step::execute`].
    fn validate(config: &Self::Config) -> Vec<ConfigIssue> {
        let _ = config;
        Vec::new()
    }

    /// Runs the step once with a config that passed [`Step::validate`].
    fn execute(ctx: &Context, config: Self::Config) -> Result<Output, StepError>;
}

/// The JSON Schema (draft 2020-12) of a config type, as `describe` reports it.
///
/// ```
/// #[derive(schemars::JsonSchema)]
/// struct Config { url: String }
///
/// let schema = meridian_sdk::config_schema::<Config>();
/// assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
/// assert_eq!(schema["required"][0], "url");
/// ```
pub fn config_schema<C: JsonSchema>() -> serde_json::Value {
    schemars::SchemaGenerator::default()
        .into_root_schema_for::<C>()
        .to_value()
}

/// Deserialises a config text into `C`, reporting a failure as config issues
/// with the JSON path serde stopped at.
///
/// An empty text counts as `{}` (a step whose job gives no config).
///
/// ```
/// use meridian_sdk::parse_config;
///
/// #[derive(serde::Deserialize)]
/// struct Header { name: String, value: String }
/// #[derive(serde::Deserialize)]
/// struct Config { url: String, #[serde(default)] headers: Vec<Header> }
///
/// let issues = parse_config::<Config>(r#"{"url": "https://x", "headers": [{"value": "1"}]}"#).err().unwrap();
/// assert_eq!(issues[0].path, "headers[0].name");
/// assert_eq!(issues[0].message, "required field is missing");
///
/// let issues = parse_config::<Config>(r#"{"url": 7}"#).err().unwrap();
/// assert_eq!(issues[0].path, "url");
/// assert_eq!(issues[0].message, "invalid type: integer `7`, expected a string");
/// ```
pub fn parse_config<C: DeserializeOwned>(text: &str) -> Result<C, Vec<ConfigIssue>> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let result = serde_path_to_error::deserialize::<_, C>(&mut deserializer)
        .map_err(|e| issue_from_serde(JsonPath::from_serde(e.path()), e.inner()))
        .and_then(|config| {
            deserializer
                .end()
                .map(|()| config)
                .map_err(|e| issue_from_serde(JsonPath::root(), &e))
        });
    match result {
        Ok(config) => Ok(config),
        // A job that gives `"config": null` means "no config", like omitting it.
        Err(issue) if text.trim() == "null" => parse_config::<C>("{}").map_err(|_| vec![issue]),
        Err(issue) => Err(vec![issue]),
    }
}

fn issue_from_serde(mut json_path: JsonPath, error: &serde_json::Error) -> ConfigIssue {
    let full = error.to_string();
    if error.is_syntax() || error.is_eof() {
        // Where in the text matters for a syntax error; there is no path.
        return ConfigIssue::new(json_path, format!("the config is not valid JSON: {full}"));
    }
    // Data errors: the path says where; drop serde_json's " at line L column C".
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let mut message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        json_path = json_path.key(field);
        message = "required field is missing".to_string();
    }
    ConfigIssue::new(json_path, message)
}

/// Checks a config text the way `validate` does: deserialises it into
/// `S::Config`, then runs [`Step::validate`]. Empty when the config is valid.
pub fn validate_config<S: Step>(text: &str) -> Vec<ConfigIssue> {
    match parse_config::<S::Config>(text) {
        Ok(config) => S::validate(&config),
        Err(issues) => issues,
    }
}
