//! What a step knows about the run it belongs to.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::StepError;
use crate::bindings::meridian::step::types as wit;

/// The run a step executes in: ids for logs and idempotency keys, the attempt
/// number, the job's timezone and nominal fire time, and the variables the
/// step may read.
///
/// `Context::default()` gives an empty context for unit tests:
///
/// ```
/// use meridian_sdk::Context;
/// use meridian_sdk::serde_json::json;
///
/// let mut ctx = Context::default();
/// ctx.timezone = "Asia/Tokyo".into();
/// ctx.variables = json!({ "region": "eu", "limit": 10 });
/// assert_eq!(ctx.variable_str("region"), Some("eu"));
/// assert_eq!(ctx.variable_as::<u32>("limit").unwrap(), 10);
/// assert!(!ctx.is_retry());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Context {
    /// Id of the job definition.
    pub job_id: String,
    /// Id of this execution of the job (one per run): a natural idempotency
    /// key together with `step_id`.
    pub execution_id: String,
    /// Id of this step inside the job.
    pub step_id: String,
    /// 1 for the first attempt, incremented on each retry.
    pub attempt: u32,
    /// IANA zone of the job, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// The nominal fire time as an RFC 3339 instant with the offset of the
    /// job's zone; `None` when the run was started by hand.
    pub scheduled_time: Option<String>,
    /// The variables this step may read: a JSON object.
    pub variables: Value,
}

impl Default for Context {
    fn default() -> Self {
        Context {
            job_id: String::new(),
            execution_id: String::new(),
            step_id: String::new(),
            attempt: 1,
            timezone: "UTC".to_string(),
            scheduled_time: None,
            variables: Value::Object(Map::new()),
        }
    }
}

impl Context {
    /// The variable `name`, if set.
    pub fn variable(&self, name: &str) -> Option<&Value> {
        self.variables.get(name)
    }

    /// The variable `name` when it is set and is a string.
    pub fn variable_str(&self, name: &str) -> Option<&str> {
        self.variable(name).and_then(Value::as_str)
    }

    /// The variable `name` deserialised into `T`; a missing variable or one of
    /// the wrong shape is a [`StepError::Failed`] naming it.
    pub fn variable_as<T: DeserializeOwned>(&self, name: &str) -> Result<T, StepError> {
        let value = self
            .variable(name)
            .ok_or_else(|| StepError::failed(format!("variable `{name}` is not set")))?;
        T::deserialize(value).map_err(|e| {
            StepError::failed(format!("variable `{name}` has an unexpected value: {e}"))
        })
    }

    /// Whether this is a retry of the step (attempt 2 or later).
    pub fn is_retry(&self) -> bool {
        self.attempt > 1
    }

    /// Whether the run was fired by a schedule rather than started by hand.
    pub fn is_scheduled(&self) -> bool {
        self.scheduled_time.is_some()
    }

    /// Builds the context from what the host passed, returning the config text
    /// separately (the SDK parses it into the step's own type).
    pub(crate) fn from_wit(context: wit::StepContext) -> Result<(Self, String), StepError> {
        let variables = if context.variables.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_str(&context.variables).map_err(|e| {
                StepError::failed(format!("the host passed variables that are not JSON: {e}"))
            })?
        };
        Ok((
            Context {
                job_id: context.job_id,
                execution_id: context.execution_id,
                step_id: context.step_id,
                attempt: context.attempt,
                timezone: context.timezone,
                scheduled_time: context.scheduled_time,
                variables,
            },
            context.config,
        ))
    }
}
