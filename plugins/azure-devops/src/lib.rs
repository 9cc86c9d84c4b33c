//! Meridian step type `azure-devops`: queues a run of an Azure Pipelines
//! pipeline through the Pipelines Runs REST API, and optionally waits for it
//! to complete, the run's result deciding the step's.
//!
//! ```json
//! { "id": "deploy", "type": "azure-devops", "config": {
//!     "organization": "contoso",
//!     "project": "Shop",
//!     "pipeline_id": 12,
//!     "branch": "main",
//!     "template_parameters": { "environment": "staging" },
//!     "variables": { "release": "${vars.release}" },
//!     "stages_to_skip": ["Smoke"],
//!     "wait": true, "poll_interval_ms": 15000, "wait_timeout_ms": 1800000 },
//!   "timeout_ms": 1900000 }
//! ```
//!
//! Config (see [`config::Config`]; its JSON Schema is what `describe`
//! reports): `organization` (an Azure DevOps Services organisation name, or
//! the URL of an organisation or of an Azure DevOps Server collection),
//! `project`, `pipeline_id`, `branch` or `ref`, `template_parameters`,
//! `variables`, `stages_to_skip`, `pat_secret` (default `azure_devops_pat`),
//! `wait`, `poll_interval_ms`, `wait_timeout_ms`, `request_timeout_ms`,
//! `api_version` (default 7.1).
//!
//! The calls (api-version 7.1; see [`plan::Plan`] and [`api`]):
//! `POST {org}/{project}/_apis/pipelines/{id}/runs` with the body
//! `{resources.repositories.self.refName, templateParameters, variables,
//! stagesToSkip}` queues the run, and `GET …/runs/{runId}` reads it. Both
//! authenticate with HTTP Basic, an empty user name and the personal access
//! token from the secret `pat_secret` as the password. Everything goes
//! through the host's `http` capability, so the operator's grant decides
//! which organisation or server the step may reach.
//!
//! Waiting: the run is read every `poll_interval_ms` until its state is
//! `completed`; between reads the component sleeps with `std::thread::sleep`,
//! which on wasm32-wasip2 is a `wasi:clocks/monotonic-clock` pollable that the
//! host waits on asynchronously (no thread of the host is held, and the
//! step's own timeout still interrupts it). Up to [`MAX_POLL_ERRORS`] failed
//! reads in a row (5xx, 429, no answer) are tolerated.
//!
//! Output: `{ run_id, name, state, result, url (the run's web page),
//! api_url, queued_at, finished_at, organization, project, pipeline_id,
//! waited }`; `run_id`, `run_url` and `result` are also exported.
//!
//! Errors: a rejected personal access token (401, 203 with a sign-in page, a
//! redirect to sign-in) is `invalid-config` at `pat_secret`, saying so, so
//! no retry policy retries it; 404 names
//! the project and pipeline; 400 quotes Azure DevOps' message; 429 and 5xx
//! when queueing are `retryable` (nothing was queued). Once a run is queued,
//! nothing is `retryable` (a retry would queue a second run): a run that ends
//! `failed` or `canceled` is `failed`, and a run that does not complete
//! within `wait_timeout_ms` is `timed-out`; both messages name the run id,
//! its result or state, and its URL. A refused request or secret is `denied`.

// Tests may unwrap; production code may not (workspace lints).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod config;
pub mod plan;

use std::time::{Duration, Instant};

use meridian_sdk::{
    Capability, CapabilityError, ConfigIssue, Context, Output, Step, StepError, http, secrets,
};

use crate::api::{Outcome, Run};
use crate::config::Config;
use crate::plan::{Plan, Wait};

/// Failed reads of a run in a row that end the wait.
pub const MAX_POLL_ERRORS: u32 = 5;

/// The `azure-devops` step type.
pub struct AzureDevOpsStep;

impl Step for AzureDevOpsStep {
    type Config = Config;
    const NAME: &'static str = "azure-devops";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str = "Queues a run of an Azure Pipelines pipeline (Azure DevOps \
        Services or an Azure DevOps Server collection) through the Pipelines Runs REST API, with a \
        branch or ref, template parameters, variables and stages to skip, authenticated with a \
        personal access token from a secret. Optionally waits for the run to complete; its result \
        then decides the step's. Outputs and exports the run id, URL and result.";

    fn capabilities() -> Vec<Capability> {
        vec![
            Capability::http(
                "https://dev.azure.com/*/_apis/pipelines/*",
                "Azure DevOps Services: queues pipeline runs (POST .../runs) and reads them (GET \
                 .../runs/{id}); grant host dev.azure.com with path_prefix /{organization}/",
            ),
            Capability::http(
                "*/_apis/pipelines/*",
                "Azure DevOps Server collections (and organisations given by URL): the same two \
                 calls under the collection URL; grant only your server's host and collection path",
            ),
            Capability::secret(
                "*",
                "reads the personal access token from the secret named by `pat_secret` (default \
                 azure_devops_pat); grant only that secret",
            ),
            Capability::log("logs the queued run's id and URL and its state changes"),
        ]
    }

    fn validate(config: &Config) -> Vec<ConfigIssue> {
        plan::check(config)
    }

    fn execute(ctx: &Context, config: Config) -> Result<Output, StepError> {
        let plan = plan::plan(&config).map_err(StepError::InvalidConfig)?;
        let pat = secrets::get(&plan.pat_secret)?;
        if ctx.is_retry() {
            meridian_sdk::info!(
                "attempt {}: queueing a new run of pipeline {}",
                ctx.attempt,
                plan.pipeline_id
            );
        }
        let run = queue(&plan, &pat)?;
        let queued = Instant::now();
        meridian_sdk::info!(
            "queued run {} of pipeline {} in project `{}`: {}",
            run.id,
            plan.pipeline_id,
            plan.project,
            run.web_url(&plan)
        );
        let Some(wait) = plan.wait else {
            return Ok(output(&plan, &run, false));
        };
        let run = wait_for(&plan, &pat, run, wait, queued)?;
        match run.outcome() {
            Outcome::Succeeded => Ok(output(&plan, &run, true)),
            Outcome::NotSucceeded => Err(StepError::failed(format!(
                "{} finished with result `{}`: {}",
                describe_run(&plan, &run),
                run.result.as_deref().unwrap_or("unknown"),
                run.web_url(&plan)
            ))),
        }
    }
}

/// The step's output and exports for `run`.
fn output(plan: &Plan, run: &Run, waited: bool) -> Output {
    Output::new(run.to_output(plan, waited))
        .export("run_id", run.id)
        .export("run_url", run.web_url(plan))
        .export("result", &run.result)
}

/// "Azure DevOps run 42 (20260330.1) of pipeline 7".
fn describe_run(plan: &Plan, run: &Run) -> String {
    match &run.name {
        Some(name) => format!(
            "Azure DevOps run {} ({name}) of pipeline {}",
            run.id, plan.pipeline_id
        ),
        None => format!(
            "Azure DevOps run {} of pipeline {}",
            run.id, plan.pipeline_id
        ),
    }
}

/// A request to the API with the token and the time limit set.
/// `X-TFS-FedAuthRedirect: Suppress` asks Azure DevOps to answer a rejected
/// token with 401 rather than a sign-in page (which is still recognised).
fn request(method: &str, url: String, plan: &Plan, pat: &str) -> http::Request {
    http::Request::new(method, url)
        .header("Accept", "application/json")
        .header("X-TFS-FedAuthRedirect", "Suppress")
        .basic_auth("", pat)
        .timeout_ms(plan.request_timeout_ms)
}

/// Queues the run. Nothing was queued when this fails, so 429 and 5xx are
/// worth a retry.
fn queue(plan: &Plan, pat: &str) -> Result<Run, StepError> {
    let what = format!(
        "queueing pipeline {} in project `{}` at {}",
        plan.pipeline_id,
        plan.project,
        plan.organization_text()
    );
    let response = request("POST", plan.queue_url(), plan, pat)
        .json(&plan.body)?
        .send()
        .map_err(|e| match e {
            CapabilityError::Denied(denial) => StepError::Denied(denial),
            CapabilityError::TimedOut(m) => StepError::TimedOut(format!("{what}: {m}")),
            other => StepError::Failed(format!("{what}: {other}")),
        })?;
    api::interpret(plan, &response).map_err(|e| {
        if e.is_transient() {
            StepError::Retryable(format!("{what}: {e}"))
        } else {
            fatal(what, e)
        }
    })
}

/// A non-transient API error as the step's error. A rejected token is the
/// config's `pat_secret` being unusable: `invalid_config`, which no retry
/// policy retries (a retry cannot fix it, and must not lock the account).
fn fatal(what: String, e: api::ApiError) -> StepError {
    match e {
        api::ApiError::PatRejected { .. } => {
            StepError::InvalidConfig(vec![meridian_sdk::ConfigIssue::new(
                "pat_secret",
                format!("{what}: {e}"),
            )])
        }
        e => StepError::Failed(format!("{what}: {e}")),
    }
}

/// Why one read of a run gave nothing.
enum ReadError {
    /// Ends the wait.
    Fatal(StepError),
    /// May pass: the next read is tried.
    Transient(String),
}

/// Reads run `run_id`.
fn read(plan: &Plan, pat: &str, run_id: u64) -> Result<Run, ReadError> {
    let response = request("GET", plan.run_url(run_id), plan, pat)
        .send()
        .map_err(|e| match e {
            CapabilityError::Denied(denial) => ReadError::Fatal(StepError::Denied(denial)),
            CapabilityError::Failed(m) | CapabilityError::TimedOut(m) => ReadError::Transient(m),
            other => ReadError::Fatal(StepError::from(other)),
        })?;
    api::interpret(plan, &response).map_err(|e| {
        if e.is_transient() {
            ReadError::Transient(e.to_string())
        } else {
            ReadError::Fatal(fatal(format!("reading run {run_id}"), e))
        }
    })
}

/// Reads the run every `wait.interval` until it completes, or until
/// `wait.timeout` after `queued`.
fn wait_for(
    plan: &Plan,
    pat: &str,
    mut run: Run,
    wait: Wait,
    queued: Instant,
) -> Result<Run, StepError> {
    let deadline = queued + wait.timeout;
    let mut errors = 0;
    loop {
        if run.is_completed() {
            return Ok(run);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(StepError::timed_out(format!(
                "{} did not complete within {} ms (last state `{}`; it was not canceled): {}",
                describe_run(plan, &run),
                wait.timeout.as_millis(),
                run.state.as_deref().unwrap_or("unknown"),
                run.web_url(plan)
            )));
        }
        std::thread::sleep(
            wait.interval
                .min(deadline - now)
                .max(Duration::from_millis(1)),
        );
        match read(plan, pat, run.id) {
            Ok(next) => {
                errors = 0;
                if next.state != run.state {
                    meridian_sdk::info!(
                        "run {}: state `{}`",
                        next.id,
                        next.state.as_deref().unwrap_or("unknown")
                    );
                }
                run = next;
            }
            Err(ReadError::Transient(message)) => {
                errors += 1;
                meridian_sdk::warn!(
                    "reading run {} failed ({errors} of {MAX_POLL_ERRORS}): {message}",
                    run.id
                );
                if errors >= MAX_POLL_ERRORS {
                    return Err(StepError::failed(format!(
                        "{}: {MAX_POLL_ERRORS} reads in a row failed, the last with: {message}; the run may still be going: {}",
                        describe_run(plan, &run),
                        run.web_url(plan)
                    )));
                }
            }
            Err(ReadError::Fatal(StepError::Failed(message))) => {
                return Err(StepError::failed(format!(
                    "reading {}: {message}; see {}",
                    describe_run(plan, &run),
                    run.web_url(plan)
                )));
            }
            Err(ReadError::Fatal(error)) => return Err(error),
        }
    }
}

meridian_sdk::export_step!(AzureDevOpsStep);

#[cfg(test)]
mod tests {
    use meridian_sdk::serde_json::json;

    use super::*;

    fn plan() -> Plan {
        let config: Config = serde_json::from_value(json!({
            "organization": "contoso", "project": "p", "pipeline_id": 7, "wait": true
        }))
        .unwrap();
        plan::plan(&config).unwrap()
    }

    #[test]
    fn describe_asks_for_azure_devops_urls_and_a_secret() {
        let asks: Vec<_> = AzureDevOpsStep::capabilities()
            .into_iter()
            .map(|c| (c.kind, c.target))
            .collect();
        assert!(asks.contains(&(
            meridian_sdk::CapabilityKind::Http,
            "https://dev.azure.com/*/_apis/pipelines/*".to_string()
        )));
        assert!(asks.contains(&(meridian_sdk::CapabilityKind::Secrets, "*".to_string())));
        let schema = meridian_sdk::config_schema::<Config>();
        assert_eq!(
            schema["required"],
            json!(["organization", "project", "pipeline_id"])
        );
        assert!(schema["properties"]["ref"].is_object());
    }

    #[test]
    fn validate_reports_serde_and_semantic_issues_by_path() {
        let issues = meridian_sdk::validate_config::<AzureDevOpsStep>(
            &json!({"organization": "contoso", "project": "p", "pipeline_id": "7"}).to_string(),
        );
        assert_eq!(issues[0].path, "pipeline_id");
        let issues = meridian_sdk::validate_config::<AzureDevOpsStep>(
            &json!({"organization": "contoso", "project": "p", "pipeline_id": 7, "wait": true, "poll_interval_ms": 1}).to_string(),
        );
        assert_eq!(issues[0].path, "poll_interval_ms");
        let issues = meridian_sdk::validate_config::<AzureDevOpsStep>(
            &json!({"organization": "contoso", "project": "p", "pipeline_id": 7, "branchh": "x"})
                .to_string(),
        );
        assert!(issues[0].message.contains("unknown field"), "{issues:?}");
    }

    #[test]
    fn requests_carry_basic_auth_with_an_empty_user() {
        let plan = plan();
        let request = request("GET", plan.run_url(1), &plan, "s3cret");
        // base64(":s3cret")
        assert_eq!(
            request.header_value("authorization"),
            Some("Basic OnMzY3JldA==")
        );
        assert_eq!(request.timeout(), Some(30_000));
        assert_eq!(
            request.header_value("x-tfs-fedauthredirect"),
            Some("Suppress")
        );
    }

    #[test]
    fn a_completed_run_ends_the_wait_at_once() {
        let run = Run {
            id: 9,
            name: None,
            state: Some("completed".into()),
            result: Some("canceled".into()),
            url: None,
            created_date: None,
            finished_date: None,
            links: None,
        };
        let wait = Wait {
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(60),
        };
        let started = Instant::now();
        let done = wait_for(&plan(), "t", run.clone(), wait, started).unwrap();
        assert_eq!(done, run);
        assert!(started.elapsed() < Duration::from_secs(1));
        // Past the deadline, an unfinished run times out naming itself.
        let going = Run {
            state: Some("inProgress".into()),
            ..run
        };
        let wait = Wait {
            interval: Duration::from_millis(100),
            timeout: Duration::ZERO,
        };
        match wait_for(&plan(), "t", going, wait, started) {
            Err(StepError::TimedOut(m)) => {
                assert!(m.contains("run 9"), "{m}");
                assert!(m.contains("_build/results?buildId=9"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn outside_the_host_the_step_fails_cleanly() {
        let config: Config = serde_json::from_value(
            json!({"organization": "contoso", "project": "p", "pipeline_id": 7}),
        )
        .unwrap();
        assert!(matches!(
            AzureDevOpsStep::execute(&Context::default(), config),
            Err(StepError::Failed(_))
        ));
    }
}
