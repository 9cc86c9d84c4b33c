//! Job definitions and their validation.
//!
//! A job is an ordered list of steps, each naming a step type (a loaded
//! plugin) and its config. Validation reports every problem at once, each
//! with a JSON path into the definition (`steps[1].config.url: ...`): shape
//! errors from parsing, then the job's own rules, then each step's config as
//! checked by its plugin.

use crate::runtime::{ConfigIssue, Runtime};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;

pub mod schedule;

/// A job definition as submitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// IANA zone the job's times are in.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    pub steps: Vec<Step>,
}

/// One step of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub id: String,
    /// The step type: the name of a loaded plugin.
    #[serde(rename = "type")]
    pub step_type: String,
    #[serde(default)]
    pub config: Value,
    /// Wall-clock limit of one attempt; the sandbox default otherwise.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

fn default_timezone() -> String {
    "UTC".to_string()
}

/// A problem with a job definition; `path` is a JSON path into it.
pub type Issue = ConfigIssue;

/// Parses a job from JSON text; a shape error comes back as one issue with
/// the path where parsing stopped.
pub fn parse_job(text: &str) -> Result<Job, Vec<Issue>> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        vec![Issue {
            path: if path == "." { String::new() } else { path },
            message: e.into_inner().to_string(),
        }]
    })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Every problem with a parsed job, including each step's config as its
/// plugin sees it.
pub async fn validate_job(job: &Job, runtime: &Runtime) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut issue = |path: String, message: String| issues.push(Issue { path, message });
    if !valid_id(&job.id) {
        issue(
            "id".into(),
            "must be 1-128 characters of letters, digits, '-', '_' and '.'".into(),
        );
    }
    if job.name.trim().is_empty() {
        issue("name".into(), "must not be empty".into());
    }
    if job.timezone.parse::<chrono_tz::Tz>().is_err() {
        issue(
            "timezone".into(),
            format!("{:?} is not an IANA time zone", job.timezone),
        );
    }
    if job.steps.is_empty() {
        issue("steps".into(), "a job needs at least one step".into());
    }
    let mut seen = HashSet::new();
    for (i, step) in job.steps.iter().enumerate() {
        if !valid_id(&step.id) {
            issue(
                format!("steps[{i}].id"),
                "must be 1-128 characters of letters, digits, '-', '_' and '.'".into(),
            );
        } else if !seen.insert(step.id.as_str()) {
            issue(
                format!("steps[{i}].id"),
                format!("duplicate step id {:?}", step.id),
            );
        }
        if step.timeout_ms == Some(0) {
            issue(
                format!("steps[{i}].timeout_ms"),
                "must be greater than 0".into(),
            );
        }
    }
    for (i, step) in job.steps.iter().enumerate() {
        match runtime.plugin(&step.step_type) {
            None => issues.push(Issue {
                path: format!("steps[{i}].type"),
                message: format!(
                    "unknown step type {:?}; loaded: {}",
                    step.step_type,
                    runtime
                        .plugins()
                        .map(|p| p.info.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
            Some(plugin) => {
                for found in runtime.validate_config(plugin, &step.config).await {
                    let path = if found.path.is_empty() {
                        format!("steps[{i}].config")
                    } else if found.path.starts_with('[') {
                        format!("steps[{i}].config{}", found.path)
                    } else {
                        format!("steps[{i}].config.{}", found.path)
                    };
                    issues.push(Issue {
                        path,
                        message: found.message,
                    });
                }
            }
        }
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_errors_carry_their_path() {
        let e = parse_job(r#"{"id":"a","name":"n","steps":[{"id":"s","type":"http","config":{},"timeout_ms":"x"}]}"#)
            .unwrap_err();
        assert_eq!(e[0].path, "steps[0].timeout_ms");
        let e = parse_job(r#"{"id":"a","name":"n","steps":[],"colour":1}"#).unwrap_err();
        assert!(e[0].message.contains("colour"), "{:?}", e);
    }
}
