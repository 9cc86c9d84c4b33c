//! The errors a step deals in.
//!
//! [`CapabilityError`] is what a host capability call returns; [`StepError`]
//! is what a step returns to the host. `?` converts the first into the second,
//! keeping a denial a denial (never retried, shown to the operator with the
//! grant that would allow it) and a timeout a timeout.

use std::fmt;

use crate::bindings::meridian::step::types as wit;

/// One problem with a step's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// JSON path into the step's config, e.g. `headers[0].name`; empty for
    /// the config as a whole. [`JsonPath`](crate::JsonPath) builds one.
    pub path: String,
    /// What is wrong, for a human.
    pub message: String,
}

impl ConfigIssue {
    /// An issue at `path` (`""` for the whole config).
    ///
    /// ```
    /// use meridian_sdk::{ConfigIssue, JsonPath};
    ///
    /// let issue = ConfigIssue::new(JsonPath::root().key("headers").index(0).key("name"), "must not be empty");
    /// assert_eq!(issue.path, "headers[0].name");
    /// assert_eq!(issue.to_string(), "headers[0].name: must not be empty");
    /// ```
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigIssue {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn into_wit(self) -> wit::ConfigIssue {
        wit::ConfigIssue {
            path: self.path,
            message: self.message,
        }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A capability use that the grants refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The capability refused: `http`, `secrets`, `sql`, `process`, `log`.
    pub capability: String,
    /// What was asked for: a URL, a secret name, a connection, a program.
    pub target: String,
    /// Why it was refused.
    pub reason: String,
    /// The grant that would have allowed it, in the grants file syntax.
    pub grant_hint: String,
}

impl Denial {
    // Only capability calls, which exist on wasm32 alone, receive denials.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn from_wit(denial: wit::Denial) -> Self {
        Denial {
            capability: denial.capability,
            target: denial.target,
            reason: denial.reason,
            grant_hint: denial.grant_hint,
        }
    }

    pub(crate) fn into_wit(self) -> wit::Denial {
        wit::Denial {
            capability: self.capability,
            target: self.target,
            reason: self.reason,
            grant_hint: self.grant_hint,
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} access to `{}` denied: {}",
            self.capability, self.target, self.reason
        )?;
        if !self.grant_hint.is_empty() {
            write!(f, " (a grant that allows it: {})", self.grant_hint)?;
        }
        Ok(())
    }
}

/// Why a host capability call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// The grants do not allow this call.
    #[error("{0}")]
    Denied(Denial),
    /// The request itself is malformed (bad URL, bad parameter...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The call was allowed but failed (connection refused, SQL error...).
    #[error("{0}")]
    Failed(String),
    /// The call exceeded its time limit.
    #[error("timed out: {0}")]
    TimedOut(String),
    /// The step has used up one of its sandbox budgets; it will fail
    /// whatever it returns.
    #[error("budget exceeded: {0}")]
    BudgetExceeded(String),
}

impl CapabilityError {
    /// The denial, when the grants refused the call.
    pub fn denial(&self) -> Option<&Denial> {
        match self {
            CapabilityError::Denied(denial) => Some(denial),
            _ => None,
        }
    }

    /// A short name for the kind of error: `denied`, `invalid-request`,
    /// `failed`, `timed-out` or `budget-exceeded` (the WIT case names).
    pub fn kind(&self) -> &'static str {
        match self {
            CapabilityError::Denied(_) => "denied",
            CapabilityError::InvalidRequest(_) => "invalid-request",
            CapabilityError::Failed(_) => "failed",
            CapabilityError::TimedOut(_) => "timed-out",
            CapabilityError::BudgetExceeded(_) => "budget-exceeded",
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn from_wit(error: wit::CapabilityError) -> Self {
        match error {
            wit::CapabilityError::Denied(denial) => {
                CapabilityError::Denied(Denial::from_wit(denial))
            }
            wit::CapabilityError::InvalidRequest(m) => CapabilityError::InvalidRequest(m),
            wit::CapabilityError::Failed(m) => CapabilityError::Failed(m),
            wit::CapabilityError::TimedOut(m) => CapabilityError::TimedOut(m),
            wit::CapabilityError::BudgetExceeded(m) => CapabilityError::BudgetExceeded(m),
        }
    }

    /// What a capability call returns when the code does not run inside the
    /// Meridian host (a native `cargo test`).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn outside_host(capability: &str) -> Self {
        CapabilityError::Failed(format!(
            "the {capability} capability is only available inside the Meridian host (wasm32-wasip2)"
        ))
    }
}

/// Why a step did not succeed: what [`Step::execute`](crate::Step::execute)
/// returns for anything a job author can act on. A panic becomes a trap, which
/// the host reports as a bug in the step.
///
/// ```
/// use meridian_sdk::{CapabilityError, StepError};
///
/// fn fetch() -> Result<(), StepError> {
///     // A capability error converts with `?`.
///     Err(CapabilityError::TimedOut("no answer within 5000 ms".into()))?;
///     Ok(())
/// }
/// assert!(matches!(fetch(), Err(StepError::TimedOut(_))));
/// assert!(StepError::retryable("HTTP 503").is_retryable());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The configuration is unusable; never retried.
    #[error("invalid config: {}", join_issues(.0))]
    InvalidConfig(Vec<ConfigIssue>),
    /// A capability was refused; never retried.
    #[error("{0}")]
    Denied(Denial),
    /// The step failed; retried when the job's retry policy says so.
    #[error("{0}")]
    Failed(String),
    /// A transient failure that a retry may fix.
    #[error("{0} (retryable)")]
    Retryable(String),
    /// The step gave up waiting for something.
    #[error("timed out: {0}")]
    TimedOut(String),
}

fn join_issues(issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl StepError {
    /// [`StepError::Failed`] with a message.
    pub fn failed(message: impl fmt::Display) -> Self {
        StepError::Failed(message.to_string())
    }

    /// [`StepError::Retryable`] with a message.
    pub fn retryable(message: impl fmt::Display) -> Self {
        StepError::Retryable(message.to_string())
    }

    /// [`StepError::TimedOut`] with a message.
    pub fn timed_out(message: impl fmt::Display) -> Self {
        StepError::TimedOut(message.to_string())
    }

    /// [`StepError::InvalidConfig`] with one issue.
    pub fn invalid_config(path: impl Into<String>, message: impl Into<String>) -> Self {
        StepError::InvalidConfig(vec![ConfigIssue::new(path, message)])
    }

    /// Whether the step itself says a retry may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StepError::Retryable(_))
    }

    pub(crate) fn into_wit(self) -> wit::StepError {
        match self {
            StepError::InvalidConfig(issues) => wit::StepError::InvalidConfig(
                issues.into_iter().map(ConfigIssue::into_wit).collect(),
            ),
            StepError::Denied(denial) => wit::StepError::Denied(denial.into_wit()),
            StepError::Failed(m) => wit::StepError::Failed(m),
            StepError::Retryable(m) => wit::StepError::Retryable(m),
            StepError::TimedOut(m) => wit::StepError::TimedOut(m),
        }
    }
}

/// Denied stays denied and timed-out stays timed-out; the rest fail the step
/// (a malformed request is a bug to fix, and a spent budget fails the step
/// whatever it returns, so neither is worth a retry by the step's own word).
impl From<CapabilityError> for StepError {
    fn from(error: CapabilityError) -> Self {
        match error {
            CapabilityError::Denied(denial) => StepError::Denied(denial),
            CapabilityError::TimedOut(m) => StepError::TimedOut(m),
            CapabilityError::Failed(m) => StepError::Failed(m),
            error @ (CapabilityError::InvalidRequest(_) | CapabilityError::BudgetExceeded(_)) => {
                StepError::Failed(error.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denial() -> Denial {
        Denial {
            capability: "secrets".into(),
            target: "api_token".into(),
            reason: "not granted".into(),
            grant_hint: "secrets = [\"api_token\"]".into(),
        }
    }

    #[test]
    fn capability_errors_map_to_step_errors() {
        assert_eq!(
            StepError::from(CapabilityError::Denied(denial())),
            StepError::Denied(denial())
        );
        assert_eq!(
            StepError::from(CapabilityError::TimedOut("slow".into())),
            StepError::TimedOut("slow".into())
        );
        assert_eq!(
            StepError::from(CapabilityError::Failed("refused".into())),
            StepError::Failed("refused".into())
        );
        assert_eq!(
            StepError::from(CapabilityError::InvalidRequest("bad url".into())),
            StepError::Failed("invalid request: bad url".into())
        );
        assert_eq!(
            StepError::from(CapabilityError::BudgetExceeded("host calls".into())),
            StepError::Failed("budget exceeded: host calls".into())
        );
    }

    #[test]
    fn messages_read_well() {
        assert_eq!(
            denial().to_string(),
            "secrets access to `api_token` denied: not granted (a grant that allows it: secrets = [\"api_token\"])"
        );
        let err = StepError::InvalidConfig(vec![
            ConfigIssue::new("url", "relative URL without a base"),
            ConfigIssue::new("", "`body` and `json` are both set"),
        ]);
        assert_eq!(
            err.to_string(),
            "invalid config: url: relative URL without a base; `body` and `json` are both set"
        );
    }
}
