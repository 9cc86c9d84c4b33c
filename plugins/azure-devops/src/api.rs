//! The two Azure DevOps REST calls the step makes and what their answers
//! mean: a [`Run`] when the call worked, an [`ApiError`] when it did not.
//!
//! Azure DevOps rejects a personal access token in three ways, all of which
//! are [`ApiError::PatRejected`]: `401`, `203 Non-Authoritative` with an HTML
//! sign-in page, and a redirect to a sign-in page (the host does not follow
//! redirects, so the step sees the `302`). An HTML page where JSON was
//! expected is read the same way. The token itself never appears in an error.

use meridian_sdk::http::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::plan::Plan;

/// The most characters of an error body quoted in a message.
const QUOTE_CHARS: usize = 300;

/// A pipeline run as the API returns it (only the fields the step uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// The run id.
    pub id: u64,
    /// The run's name (its build number).
    #[serde(default)]
    pub name: Option<String>,
    /// `unknown`, `inProgress`, `canceling` or `completed`.
    #[serde(default)]
    pub state: Option<String>,
    /// `unknown`, `succeeded`, `failed` or `canceled`; absent until completed.
    #[serde(default)]
    pub result: Option<String>,
    /// The run's REST URL.
    #[serde(default)]
    pub url: Option<String>,
    /// When the run was queued.
    #[serde(default)]
    pub created_date: Option<String>,
    /// When it completed.
    #[serde(default)]
    pub finished_date: Option<String>,
    /// Links; `web` is the run's page.
    #[serde(default, rename = "_links")]
    pub links: Option<Links>,
}

/// The `_links` of a run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Links {
    /// The run's page in the web UI.
    #[serde(default)]
    pub web: Option<Link>,
}

/// One link.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Link {
    /// Where it points.
    pub href: String,
}

/// How a completed run ended, for the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `succeeded`.
    Succeeded,
    /// `failed`, `canceled`, `unknown`, or anything else.
    NotSucceeded,
}

impl Run {
    /// Whether the run has completed (`state == completed`).
    pub fn is_completed(&self) -> bool {
        self.state
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("completed"))
    }

    /// How the run ended (meaningful once it is completed).
    pub fn outcome(&self) -> Outcome {
        match self.result.as_deref() {
            Some(r) if r.eq_ignore_ascii_case("succeeded") => Outcome::Succeeded,
            _ => Outcome::NotSucceeded,
        }
    }

    /// The run's page: the API's `_links.web.href`, or one built from the plan.
    pub fn web_url(&self, plan: &Plan) -> String {
        self.links
            .as_ref()
            .and_then(|l| l.web.as_ref())
            .map(|w| w.href.clone())
            .unwrap_or_else(|| plan.web_url(self.id))
    }

    /// The step's output for this run.
    pub fn to_output(&self, plan: &Plan, waited: bool) -> Value {
        json!({
            "run_id": self.id,
            "name": self.name,
            "state": self.state,
            "result": self.result,
            "url": self.web_url(plan),
            "api_url": self.url.clone().unwrap_or_else(|| plan.run_url(self.id)),
            "queued_at": self.created_date,
            "finished_at": self.finished_date,
            "organization": plan.organization_text(),
            "project": plan.project,
            "pipeline_id": plan.pipeline_id,
            "waited": waited,
        })
    }
}

/// Why a REST call did not give a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Azure DevOps did not accept the personal access token.
    #[error(
        "Azure DevOps at {organization} rejected the personal access token from secret `{secret}` ({how}); check that it is valid, not expired, and has scope Build (read & execute)"
    )]
    PatRejected {
        /// The organisation or collection URL.
        organization: String,
        /// The secret the token came from.
        secret: String,
        /// What the answer was (`HTTP 401`, ...).
        how: String,
    },
    /// 404: the project or the pipeline (or the run) does not exist.
    #[error(
        "HTTP 404: project `{project}` or pipeline {pipeline_id} was not found at {organization}{}", detail(.message)
    )]
    NotFound {
        /// The organisation or collection URL.
        organization: String,
        /// The project as configured.
        project: String,
        /// The pipeline id.
        pipeline_id: u32,
        /// Azure DevOps' own message, if any.
        message: String,
    },
    /// 429 or 5xx: worth another try.
    #[error("HTTP {status}{}", detail(.message))]
    Transient {
        /// The status.
        status: u16,
        /// Azure DevOps' message or the start of the body.
        message: String,
    },
    /// Any other refusal (400 bad parameters, 403 missing permission, ...).
    #[error("HTTP {status}{}", detail(.message))]
    Refused {
        /// The status.
        status: u16,
        /// Azure DevOps' message or the start of the body.
        message: String,
    },
    /// A 2xx whose body is not a run.
    #[error("HTTP {status}: the answer is not a pipeline run: {message}")]
    NotARun {
        /// The status.
        status: u16,
        /// What was wrong with it.
        message: String,
    },
}

fn detail(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl ApiError {
    /// Whether a retry may help (429 and 5xx).
    pub fn is_transient(&self) -> bool {
        matches!(self, ApiError::Transient { .. })
    }
}

/// What a response to either call means.
pub fn interpret(plan: &Plan, response: &Response) -> Result<Run, ApiError> {
    let status = response.status;
    let rejected = |how: String| ApiError::PatRejected {
        organization: plan.organization_text(),
        secret: plan.pat_secret.clone(),
        how,
    };
    let html = response
        .content_type()
        .is_some_and(|t| t == "text/html" || t == "application/xhtml+xml");
    match status {
        401 => Err(rejected("HTTP 401".into())),
        203 => Err(rejected(
            "HTTP 203 Non-Authoritative with a sign-in page".into(),
        )),
        300..=399 => {
            let location = response.header("location").unwrap_or_default();
            let lower = location.to_ascii_lowercase();
            if lower.contains("signin") || lower.contains("login") || location.is_empty() {
                Err(rejected(format!(
                    "HTTP {status} redirect to a sign-in page"
                )))
            } else {
                Err(ApiError::Refused {
                    status,
                    message: format!(
                        "redirected to {location}; check `organization` (the API answers without redirects)"
                    ),
                })
            }
        }
        200..=299 if html => Err(rejected(format!(
            "HTTP {status} with an HTML page instead of JSON, a sign-in page"
        ))),
        200..=299 => serde_json::from_slice::<Run>(&response.body).map_err(|e| ApiError::NotARun {
            status,
            message: e.to_string(),
        }),
        404 => Err(ApiError::NotFound {
            organization: plan.organization_text(),
            project: plan.project.clone(),
            pipeline_id: plan.pipeline_id,
            message: error_message(response),
        }),
        429 | 500..=599 => Err(ApiError::Transient {
            status,
            message: error_message(response),
        }),
        _ => Err(ApiError::Refused {
            status,
            message: error_message(response),
        }),
    }
}

/// Azure DevOps' `message` from a JSON error body, or the start of the body
/// when it is text (nothing for an HTML page).
pub fn error_message(response: &Response) -> String {
    if let Ok(body) = serde_json::from_slice::<Value>(&response.body)
        && let Some(message) = body.get("message").and_then(Value::as_str)
    {
        return quote(message);
    }
    if response.content_type().as_deref() == Some("text/html") {
        return String::new();
    }
    quote(response.text().trim())
}

fn quote(text: &str) -> String {
    let mut quoted: String = text.chars().take(QUOTE_CHARS).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    quoted
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::Config;

    fn plan() -> Plan {
        let config: Config = serde_json::from_value(
            json!({ "organization": "contoso", "project": "p", "pipeline_id": 7 }),
        )
        .unwrap();
        crate::plan::plan(&config).unwrap()
    }

    fn response(status: u16, content_type: &str, body: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn runs_are_read_from_the_documented_shape() {
        let body = json!({
            "_links": { "web": { "href": "https://dev.azure.com/contoso/p/_build/results?buildId=42" } },
            "id": 42, "name": "20260330.1", "state": "completed", "result": "succeeded",
            "url": "https://dev.azure.com/contoso/p/_apis/pipelines/7/runs/42",
            "createdDate": "2026-03-30T01:00:00Z", "finishedDate": "2026-03-30T01:05:00Z",
            "pipeline": { "id": 7, "name": "ci" }
        });
        let run = interpret(
            &plan(),
            &response(200, "application/json; charset=utf-8", &body.to_string()),
        )
        .unwrap();
        assert!(run.is_completed());
        assert_eq!(run.outcome(), Outcome::Succeeded);
        let out = run.to_output(&plan(), true);
        assert_eq!(out["run_id"], 42);
        assert_eq!(
            out["url"],
            "https://dev.azure.com/contoso/p/_build/results?buildId=42"
        );
        assert_eq!(out["queued_at"], "2026-03-30T01:00:00Z");
        // A run still going, without links.
        let run = interpret(
            &plan(),
            &response(
                200,
                "application/json",
                r#"{"id": 3, "state": "inProgress"}"#,
            ),
        )
        .unwrap();
        assert!(!run.is_completed());
        assert_eq!(run.outcome(), Outcome::NotSucceeded);
        assert_eq!(
            run.to_output(&plan(), false)["api_url"],
            "https://dev.azure.com/contoso/p/_apis/pipelines/7/runs/3?api-version=7.1"
        );
    }

    #[test]
    fn rejected_tokens_are_recognised_in_every_form() {
        let p = plan();
        let mut redirect = response(302, "text/html", "");
        redirect.headers.push((
            "Location".into(),
            "https://spsprodweu5.vssps.visualstudio.com/_signin?realm=dev.azure.com".into(),
        ));
        for r in [
            response(401, "text/plain", ""),
            response(203, "text/html; charset=utf-8", "<html>Sign In</html>"),
            redirect,
            response(200, "text/html", "<html>Sign In</html>"),
        ] {
            let e = interpret(&p, &r).unwrap_err();
            assert!(matches!(e, ApiError::PatRejected { .. }), "{e:?}");
            let text = e.to_string();
            assert!(
                text.contains("rejected the personal access token"),
                "{text}"
            );
            assert!(text.contains("azure_devops_pat"), "{text}");
        }
    }

    #[test]
    fn errors_quote_azure_devops() {
        let p = plan();
        let e = interpret(
            &p,
            &response(
                400,
                "application/json",
                r#"{"$id":"1","message":"Unexpected parameter 'envx'","typeKey":"PipelineValidationException"}"#,
            ),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "HTTP 400: Unexpected parameter 'envx'");
        let e = interpret(
            &p,
            &response(404, "application/json", r#"{"message":"nope"}"#),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "HTTP 404: project `p` or pipeline 7 was not found at https://dev.azure.com/contoso: nope"
        );
        let e = interpret(&p, &response(503, "text/plain", "busy")).unwrap_err();
        assert!(e.is_transient());
        assert_eq!(e.to_string(), "HTTP 503: busy");
        let e = interpret(&p, &response(200, "application/json", "[]")).unwrap_err();
        assert!(matches!(e, ApiError::NotARun { .. }), "{e:?}");
        let long = "x".repeat(1000);
        assert!(
            error_message(&response(500, "text/plain", &long))
                .chars()
                .count()
                <= 301
        );
    }
}
