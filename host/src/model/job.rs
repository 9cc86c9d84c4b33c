//! Job definitions: the JSON an operator submits, and its validation.
//!
//! A job is an ordered list of steps, each naming a step type (a loaded
//! plugin) and its config, with per-step flow control (SQL Server Agent's
//! model: on success / on failure go to the next step, go to a named step,
//! or quit reporting success or failure), retries and timeouts; typed
//! parameters with defaults; and execution-wide limits. Step configs may
//! reference variables with `${...}` (syntax: [`super::vars`]).
//!
//! Parsing reports a shape error with the JSON path where it stopped;
//! validation against the loaded plugins (every problem at once: the job's
//! own rules, variable references, each step's config as its plugin checks
//! it) is the engine's ([`crate::engine::validate_job`]).

use meridian_json_path::JsonPath;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// The most step runs one execution may make unless the job says otherwise;
/// bounds loops built with `goto`.
pub const DEFAULT_MAX_STEP_RUNS: u32 = 1000;

/// A job definition as submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// IANA zone the job's times are in; its executions wait in this zone's
    /// queue.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Higher runs first within the zone's queue.
    #[serde(default)]
    pub priority: i32,
    /// Typed parameters, referenced as `${params.<name>}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, ParamSpec>,
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Wall-clock limit of a whole execution, retries and waits included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The most step runs one execution may make (goto loops end here);
    /// [`DEFAULT_MAX_STEP_RUNS`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_step_runs: Option<u32>,
    /// What happens to an execution whose node stopped while it ran.
    #[serde(default)]
    pub on_interrupted: OnInterrupted,
    /// How much execution history to keep for this job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Narrows what this job's steps may reach below their plugins'
    /// grants (see [`crate::capabilities::grants::scope`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<crate::capabilities::grants::scope::ScopeSpec>,
}

/// The recovery policy for an execution found `running` at start-up (its
/// node died mid-step).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnInterrupted {
    /// The interrupted attempt is recorded as `interrupted` and counts as a
    /// failed attempt of its step; when the step's retry policy has attempts
    /// left, the execution resumes at that step (at-least-once: the step may
    /// have had side effects), otherwise the step's failure flow applies.
    #[default]
    RetryStep,
    /// The execution fails at once.
    Fail,
}

/// History retention per job: finished executions beyond either limit are
/// deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Keep at most this many finished executions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Delete finished executions older than this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_days: Option<u32>,
}

/// A typed job parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(rename = "type", default)]
    pub kind: ParamType,
    /// Used when an execution does not supply the parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// An execution must supply it (or it must have a default).
    #[serde(default)]
    pub required: bool,
    /// The only values allowed, when given.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A parameter's JSON type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    String,
    Number,
    Integer,
    Boolean,
    Object,
    Array,
    #[default]
    Any,
}

impl ParamType {
    pub(crate) fn accepts(self, v: &Value) -> bool {
        match self {
            ParamType::String => v.is_string(),
            ParamType::Number => v.is_number(),
            ParamType::Integer => v.is_i64() || v.is_u64(),
            ParamType::Boolean => v.is_boolean(),
            ParamType::Object => v.is_object(),
            ParamType::Array => v.is_array(),
            ParamType::Any => true,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            ParamType::String => "a string",
            ParamType::Number => "a number",
            ParamType::Integer => "an integer",
            ParamType::Boolean => "a boolean",
            ParamType::Object => "an object",
            ParamType::Array => "an array",
            ParamType::Any => "any value",
        }
    }
}

/// One step of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub id: String,
    /// The step type: the name of a loaded plugin.
    #[serde(rename = "type")]
    pub step_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The step type's settings; `{}` when absent.
    #[serde(default = "empty_object")]
    pub config: Value,
    /// Wall-clock limit of one attempt; the sandbox default otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// What follows success; `next` by default (after the last step: the
    /// execution succeeds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<FlowAction>,
    /// What follows failure (after the last attempt); `quit_failure` by
    /// default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<FlowAction>,
    /// Shorthand for `on_failure: "next"`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continue_on_failure: bool,
}

impl Step {
    /// The action after success.
    pub fn success_action(&self) -> FlowAction {
        self.on_success.clone().unwrap_or(FlowAction::Next)
    }

    /// The action after the last failed attempt.
    pub fn failure_action(&self) -> FlowAction {
        match &self.on_failure {
            Some(a) => a.clone(),
            None if self.continue_on_failure => FlowAction::Next,
            None => FlowAction::QuitFailure,
        }
    }

    /// The retry policy, or a single attempt.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry.clone().unwrap_or_default()
    }
}

/// Where an execution goes after a step: SQL Server Agent's model.
///
/// JSON: `"next"`, `"quit_success"`, `"quit_failure"` or
/// `{"goto": "<step id>"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowAction {
    /// The following step. Past the last step the execution succeeds, also
    /// when the last step failed with `on_failure: "next"`: the job said
    /// that failure may be passed over.
    Next,
    /// End the execution as succeeded.
    QuitSuccess,
    /// End the execution as failed.
    QuitFailure,
    /// Continue at the named step (which may be earlier: a loop, bounded by
    /// the job's `max_step_runs`).
    Goto(String),
}

impl Serialize for FlowAction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FlowAction::Next => s.serialize_str("next"),
            FlowAction::QuitSuccess => s.serialize_str("quit_success"),
            FlowAction::QuitFailure => s.serialize_str("quit_failure"),
            FlowAction::Goto(id) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("goto", id)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for FlowAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const EXPECTED: &str = r#""next", "quit_success", "quit_failure" or {"goto": "<step id>"}"#;
        impl<'de> Visitor<'de> for V {
            type Value = FlowAction;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FlowAction, E> {
                match v {
                    "next" => Ok(FlowAction::Next),
                    "quit_success" => Ok(FlowAction::QuitSuccess),
                    "quit_failure" => Ok(FlowAction::QuitFailure),
                    other => Err(E::custom(format!(
                        "unknown flow action {other:?}; expected {EXPECTED}"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FlowAction, A::Error> {
                let mut target: Option<String> = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "goto" || target.is_some() {
                        return Err(de::Error::custom(format!(
                            "unexpected key {key:?}; expected {EXPECTED}"
                        )));
                    }
                    target = Some(map.next_value()?);
                }
                target
                    .map(FlowAction::Goto)
                    .ok_or_else(|| de::Error::custom(format!("expected {EXPECTED}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// How a step is retried after a failed attempt.
///
/// The wait before retry `n` (n = 1 after the first attempt) is
/// `min(initial_interval_ms × multiplier^(n−1), max_interval_ms)`, then
/// spread by ± `jitter` × that wait (jitter is derived from the execution,
/// step run and attempt, so a rerun of the same history waits the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means no retry.
    #[serde(default = "one")]
    pub max_attempts: u32,
    #[serde(default = "default_initial_ms")]
    pub initial_interval_ms: u64,
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    #[serde(default = "default_max_ms")]
    pub max_interval_ms: u64,
    /// Fraction (0 to 1) of each wait to spread randomly either way.
    #[serde(default)]
    pub jitter: f64,
    /// Failure kinds (see [`FAILURE_KINDS`]) that end the step at
    /// once. `invalid_config` and `denied` never retry, listed or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub never_retry: Vec<String>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

fn one() -> u32 {
    1
}
fn default_initial_ms() -> u64 {
    1000
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_max_ms() -> u64 {
    60_000
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            initial_interval_ms: default_initial_ms(),
            multiplier: default_multiplier(),
            max_interval_ms: default_max_ms(),
            jitter: 0.0,
            never_retry: Vec::new(),
        }
    }
}

impl RetryPolicy {
    /// Whether a retryable failure of this kind (`StepFailure::kind`) may
    /// be retried under this policy (attempts left aside).
    pub fn may_retry(&self, kind: &str) -> bool {
        !self.never_retry.iter().any(|k| k == kind)
    }

    /// The wait before retry `retry` (1-based), before jitter.
    pub fn base_delay_ms(&self, retry: u32) -> u64 {
        let exp = self
            .multiplier
            .powi(i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX));
        let ms = self.initial_interval_ms as f64 * exp;
        if !ms.is_finite() || ms >= self.max_interval_ms as f64 {
            self.max_interval_ms
        } else {
            ms as u64
        }
    }

    /// The wait before retry `retry`, spread by the jitter using `unit`, a
    /// number in [0, 1) (0.5 means no spread).
    pub fn delay_ms(&self, retry: u32, unit: f64) -> u64 {
        let base = self.base_delay_ms(retry) as f64;
        let spread = base * self.jitter.clamp(0.0, 1.0) * (unit.clamp(0.0, 1.0) * 2.0 - 1.0);
        (base + spread).max(0.0).round() as u64
    }
}

fn default_timezone() -> String {
    "UTC".to_string()
}

/// One problem with a request: a job definition, a step's config (as its
/// plugin reports it), a schedule, a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Issue {
    /// JSON path into the body (`steps[1].config.url`), or the query
    /// parameter's name; empty for the whole body.
    pub path: String,
    pub message: String,
}

/// Every kind of step failure (the runtime's `StepFailure::kind`); a
/// job's retry policy may list any of them in `never_retry`.
pub const FAILURE_KINDS: &[&str] = &[
    "invalid_config",
    "denied",
    "failed",
    "retryable",
    "timed_out",
    "timeout",
    "memory_limit",
    "host_call_budget",
    "output_too_large",
    "resource_limit",
    "crashed",
    "bad_output",
    "unavailable",
];

/// Parses a job from JSON text; a shape error comes back as one issue with
/// the path where parsing stopped.
pub fn parse_job(text: &str) -> Result<Job, Vec<Issue>> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        vec![Issue {
            path: JsonPath::from_serde(e.path()).into(),
            message: e.into_inner().to_string(),
        }]
    })
}

/// Parses a job from a JSON value (an API body).
pub fn job_from_value(value: Value) -> Result<Job, Vec<Issue>> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        vec![Issue {
            path: JsonPath::from_serde(e.path()).into(),
            message: e.into_inner().to_string(),
        }]
    })
}

/// Whether `id` may name a job or a step: 1-128 letters, digits, `-`, `_`
/// and `.`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

pub(crate) fn valid_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Keys of `${execution.*}` (see [`crate::engine`]).
pub const EXECUTION_KEYS: &[&str] = &[
    "id",
    "attempt",
    "step_id",
    "step_run",
    "trigger",
    "scheduled_time",
    "scheduled_time_utc",
    "started_at",
    "schedule_id",
];
/// Keys of `${job.*}`.
pub const JOB_KEYS: &[&str] = &[
    "id", "name", "version", "timezone", "priority", "owner", "tags",
];
/// Keys of `${steps.<id>.*}`.
pub const STEP_KEYS: &[&str] = &["output", "exports", "status", "error", "attempts"];

/// `base` + a relative JSON path (`url`, `[0].x`, or empty).
pub fn join_path(base: &str, rel: &str) -> String {
    meridian_json_path::join(base, rel)
}

pub(crate) fn listing<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(" (declared: {})", names.join(", "))
    }
}

pub(crate) fn check_param_value(spec: &ParamSpec, v: &Value) -> Result<(), String> {
    if !spec.kind.accepts(v) {
        return Err(format!("must be {}", spec.kind.name()));
    }
    if let Some(allowed) = &spec.allowed
        && !allowed.contains(v)
    {
        return Err(format!(
            "must be one of {}",
            allowed
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

/// The parameters of one execution: the supplied values checked against
/// the job's declarations, with defaults filled in. Every problem comes
/// back, each at `params.<name>`.
pub fn resolve_params(
    job: &Job,
    supplied: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<Issue>> {
    let mut issues = Vec::new();
    let mut out = Map::new();
    for name in supplied.keys() {
        if !job.params.contains_key(name) {
            issues.push(Issue {
                path: format!("params.{name}"),
                message: format!(
                    "the job declares no parameter {name:?}{}",
                    listing(job.params.keys().map(String::as_str))
                ),
            });
        }
    }
    for (name, spec) in &job.params {
        let path = format!("params.{name}");
        match supplied.get(name).or(spec.default.as_ref()) {
            Some(v) => match check_param_value(spec, v) {
                Ok(()) => {
                    out.insert(name.clone(), v.clone());
                }
                Err(message) => issues.push(Issue { path, message }),
            },
            None if spec.required => issues.push(Issue {
                path,
                message: "required".into(),
            }),
            None => {
                out.insert(name.clone(), Value::Null);
            }
        }
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(issues)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shape_errors_carry_their_path() {
        let e = parse_job(r#"{"id":"a","name":"n","steps":[{"id":"s","type":"http","config":{},"timeout_ms":"x"}]}"#)
            .unwrap_err();
        assert_eq!(e[0].path, "steps[0].timeout_ms");
        let e = parse_job(r#"{"id":"a","name":"n","steps":[],"colour":1}"#).unwrap_err();
        assert!(e[0].message.contains("colour"), "{:?}", e);
    }

    #[test]
    fn flow_actions_read_and_write_both_forms() {
        let job = parse_job(
            r#"{"id":"a","name":"n","steps":[
                {"id":"s","type":"t","on_success":"quit_success","on_failure":{"goto":"s"}},
                {"id":"u","type":"t","continue_on_failure":true}]}"#,
        )
        .unwrap();
        assert_eq!(job.steps[0].success_action(), FlowAction::QuitSuccess);
        assert_eq!(job.steps[0].failure_action(), FlowAction::Goto("s".into()));
        assert_eq!(job.steps[1].failure_action(), FlowAction::Next);
        assert_eq!(job.steps[1].success_action(), FlowAction::Next);
        let text = serde_json::to_value(&job.steps[0]).unwrap();
        assert_eq!(text["on_failure"], json!({"goto": "s"}));
        assert_eq!(text["on_success"], json!("quit_success"));
        let e = parse_job(
            r#"{"id":"a","name":"n","steps":[{"id":"s","type":"t","on_success":"jump"}]}"#,
        )
        .unwrap_err();
        assert_eq!(e[0].path, "steps[0].on_success");
        assert!(e[0].message.contains("jump"), "{e:?}");
    }

    #[test]
    fn retry_delays_grow_and_are_capped() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial_interval_ms: 100,
            multiplier: 3.0,
            max_interval_ms: 1000,
            jitter: 0.0,
            never_retry: vec![],
        };
        let d: Vec<u64> = (1..=4).map(|n| p.delay_ms(n, 0.9)).collect();
        assert_eq!(d, [100, 300, 900, 1000]);
        let j = RetryPolicy { jitter: 0.5, ..p };
        assert_eq!(j.delay_ms(1, 0.0), 50);
        assert_eq!(j.delay_ms(1, 0.5), 100);
        assert_eq!(j.delay_ms(2, 1.0), 450);
    }

    #[test]
    fn params_are_typed_defaulted_and_checked() {
        let job = parse_job(
            r#"{"id":"a","name":"n","steps":[{"id":"s","type":"t"}],
                "params":{"region":{"type":"string","enum":["eu","us"],"default":"eu"},
                          "n":{"type":"integer","required":true},
                          "note":{}}}"#,
        )
        .unwrap();
        let ok = resolve_params(&job, json!({"n": 3}).as_object().unwrap()).unwrap();
        assert_eq!(Value::Object(ok), json!({"region":"eu","n":3,"note":null}));
        let e = resolve_params(
            &job,
            json!({"region":"mars","n":1.5,"x":1}).as_object().unwrap(),
        )
        .unwrap_err();
        let paths: Vec<&str> = e.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["params.x", "params.n", "params.region"]);
        let e = resolve_params(&job, &Map::new()).unwrap_err();
        assert_eq!(e[0].path, "params.n");
        assert_eq!(e[0].message, "required");
    }
}
