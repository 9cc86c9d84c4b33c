//! The step's configuration as job definitions write it. These types only
//! mirror the JSON (their schema is what `describe` reports); what the values
//! mean is checked once, in [`crate::plan`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// The secret read for the personal access token when `pat_secret` is not set.
pub const DEFAULT_PAT_SECRET: &str = "azure_devops_pat";
/// The REST API version used when `api_version` is not set.
pub const DEFAULT_API_VERSION: &str = "7.1";
/// Time between two reads of the run while waiting, when not set.
pub const DEFAULT_POLL_INTERVAL_MS: u32 = 15_000;
/// How long to wait for the run to complete, when not set.
pub const DEFAULT_WAIT_TIMEOUT_MS: u64 = 3_600_000;
/// Time limit of each REST call, when not set.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u32 = 30_000;

/// Queue one run of an Azure Pipelines pipeline, and optionally wait for its
/// result.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Azure DevOps Services organisation name (`contoso`, meaning
    /// `https://dev.azure.com/contoso`), or the full URL of an organisation
    /// (`https://dev.azure.com/contoso`) or of an Azure DevOps Server
    /// collection (`https://tfs.example.com/tfs/DefaultCollection`).
    pub organization: String,
    /// Project name or id.
    pub project: String,
    /// The pipeline's numeric id (the `definitionId` in its web URL).
    pub pipeline_id: u32,
    /// Branch to run, e.g. `main` (sent as `refs/heads/main`). Not together
    /// with `ref`; with neither, the pipeline's default branch runs.
    #[serde(default)]
    pub branch: Option<String>,
    /// Full git ref to run, e.g. `refs/tags/v1.2` or `refs/pull/7/merge`. Not
    /// together with `branch`.
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    /// Values of the pipeline's runtime (template) parameters. Strings,
    /// numbers and booleans are sent as their text; lists and objects as JSON
    /// text, which YAML reads as the same value.
    #[serde(default)]
    pub template_parameters: BTreeMap<String, Value>,
    /// Pipeline variables to set for this run (the pipeline must allow them
    /// to be set at queue time): name → value, or name → `{ "value",
    /// "is_secret" }`.
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
    /// Names of stages not to run.
    #[serde(default)]
    pub stages_to_skip: Vec<String>,
    /// The secret holding the personal access token (scope Build: read &
    /// execute). Default `azure_devops_pat`.
    #[serde(default)]
    pub pat_secret: Option<String>,
    /// Wait for the run to complete; its result then decides the step's
    /// (succeeded → success; failed or canceled → failure). Default false:
    /// the step succeeds once the run is queued.
    #[serde(default)]
    pub wait: bool,
    /// Milliseconds between two reads of the run while waiting (default
    /// 15000, at least 100).
    #[serde(default)]
    pub poll_interval_ms: Option<u32>,
    /// How long to wait for the run to complete, in milliseconds (default
    /// 3600000). The step's own `timeout_ms` must be longer, or the sandbox
    /// ends the step first.
    #[serde(default)]
    pub wait_timeout_ms: Option<u64>,
    /// Time limit of each REST call in milliseconds (default 30000).
    #[serde(default)]
    pub request_timeout_ms: Option<u32>,
    /// REST API version (default `7.1`; Azure DevOps Server 2020 needs
    /// `6.0-preview.1`, Server 2022 `7.0`).
    #[serde(default)]
    pub api_version: Option<String>,
}

/// A variable's value: a scalar, or `{ "value", "is_secret" }`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Variable {
    /// The value, not secret.
    Plain(Scalar),
    /// The value and whether Azure DevOps should treat it as a secret.
    Full(FullVariable),
}

/// A variable with its secrecy spelled out.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FullVariable {
    /// The value.
    pub value: Scalar,
    /// Whether Azure DevOps masks the value in its logs (default false).
    #[serde(default)]
    pub is_secret: bool,
}

/// A string, number or boolean, sent as its text.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    /// Sent as is.
    Text(String),
    /// Sent as its JSON text (`2`, `0.5`).
    Number(serde_json::Number),
    /// Sent as `true` / `false`.
    Bool(bool),
}

impl Scalar {
    /// The text Azure DevOps receives.
    pub fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Number(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

impl Variable {
    /// The value's text and whether it is secret.
    pub fn parts(&self) -> (String, bool) {
        match self {
            Variable::Plain(value) => (value.text(), false),
            Variable::Full(FullVariable { value, is_secret }) => (value.text(), *is_secret),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn variables_take_both_forms() {
        let config: Config = serde_json::from_value(json!({
            "organization": "contoso", "project": "p", "pipeline_id": 1,
            "variables": { "a": "x", "b": 2, "c": { "value": true, "is_secret": true } },
            "ref": "refs/tags/v1"
        }))
        .unwrap();
        assert_eq!(config.variables["a"].parts(), ("x".into(), false));
        assert_eq!(config.variables["b"].parts(), ("2".into(), false));
        assert_eq!(config.variables["c"].parts(), ("true".into(), true));
        assert_eq!(config.git_ref.as_deref(), Some("refs/tags/v1"));
    }
}
