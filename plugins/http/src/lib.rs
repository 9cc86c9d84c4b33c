//! Meridian step type `http`: sends one HTTP request through the host's
//! `http` capability, checks the status, and takes values from the JSON
//! response.
//!
//! ```json
//! { "id": "get", "type": "http", "config": {
//!     "url": "https://status.example.com/api/v1",
//!     "headers": { "Accept": "application/json" },
//!     "auth": { "bearer": { "token_secret": "status_token" } },
//!     "expected_status": ["2xx", 304],
//!     "extract": { "state": "/status/indicator",
//!                  "eta": { "pointer": "/eta", "optional": true, "default": null } },
//!     "timeout_ms": 10000 } }
//! ```
//!
//! Config (see [`config::Config`]; its JSON Schema is what `describe` reports):
//! `method` (default GET), `url`, `query`, `headers` (object or list of
//! `{name, value}`), `body` (text) or `json` (not both), `timeout_ms`,
//! `expected_status` (codes, `"2xx"` classes, `"200-299"` ranges; default
//! 2xx), `extract` (name → JSON pointer, or `{pointer, optional, default}`),
//! `auth` (`basic` with `password_secret`, or `bearer` with `token_secret`),
//! `response_headers`, `max_body_bytes`.
//!
//! Output: `{ status, method, url, headers, body, body_bytes, body_truncated,
//! extracted, elapsed_ms }`; every extracted value is also exported as a
//! variable. Secrets are fetched only to build the Authorization header and
//! never appear in the output.
//!
//! Errors: a status outside `expected_status` is `retryable` for 408, 429,
//! 500, 502, 503 and 504 and `failed` otherwise, naming expected and got and
//! quoting the start of the body; a required extraction that does not resolve
//! is `failed` naming the pointer; a refused request or secret is `denied`;
//! a request that got no answer in time is `timed-out`.

// Tests may unwrap; production code may not (workspace lints).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod extract;
pub mod plan;
pub mod redirect;
pub mod response;
pub mod status;

use std::time::Instant;

use meridian_sdk::{
    Capability, CapabilityError, ConfigIssue, Context, Output, Step, StepError, http, secrets,
};

use crate::config::{Auth, Config};
use crate::plan::Plan;

/// The `http` step type.
pub struct HttpStep;

impl Step for HttpStep {
    type Config = Config;
    const NAME: &'static str = "http";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str = "Sends one HTTP request, checks the response status against \
        `expected_status` (default 2xx), and outputs the status, selected headers, the body (JSON \
        when it is JSON, capped) and values taken from the JSON body by JSON pointer, which are \
        also exported as variables. Credentials come from secrets via `auth`.";

    fn capabilities() -> Vec<Capability> {
        vec![
            Capability::http(
                "*",
                "sends the request each job step configures; grant the hosts and paths its jobs may call",
            ),
            Capability::secret(
                "*",
                "reads the secrets named in `auth` (password_secret, token_secret) to authenticate",
            ),
            Capability::log("logs each request's method, URL, status and duration"),
        ]
    }

    fn validate(config: &Config) -> Vec<ConfigIssue> {
        plan::check(config)
    }

    fn execute(_ctx: &Context, config: Config) -> Result<Output, StepError> {
        let mut plan = plan::plan(&config).map_err(StepError::InvalidConfig)?;
        let started = Instant::now();
        let mut redirects = 0;
        let response = loop {
            let response = build_request(&plan)?
                .send()
                .map_err(|e| request_error(&plan, e))?;
            meridian_sdk::info!(
                "{} {} -> HTTP {} ({} bytes)",
                plan.method,
                plan.url,
                response.status,
                response.body.len()
            );
            if plan.expected.contains(response.status) || plan.max_redirects == 0 {
                break response;
            }
            let hop = match redirect::next_hop(
                &plan.method,
                &plan.url,
                response.status,
                response.header("location"),
            ) {
                None => break response,
                Some(Err(message)) => {
                    return Err(StepError::failed(format!(
                        "{} {}: {message}",
                        plan.method, plan.url
                    )));
                }
                Some(Ok(hop)) => hop,
            };
            redirects += 1;
            if redirects > plan.max_redirects {
                return Err(StepError::failed(format!(
                    "{} {}: more than {} redirects",
                    plan.method, plan.url, plan.max_redirects
                )));
            }
            follow(&mut plan, hop);
        };
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        response::to_output(&plan, &response, elapsed_ms)
    }
}

/// Points the plan at the next hop of a redirect.
fn follow(plan: &mut Plan, hop: redirect::Hop) {
    if !hop.keep_body {
        plan.body = None;
        plan.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
    }
    if !hop.keep_auth {
        plan.auth = None;
        plan.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("authorization"));
    }
    plan.method = hop.method;
    plan.url = hop.url;
}

/// The request for `plan`, with credentials fetched from secrets.
fn build_request(plan: &Plan) -> Result<http::Request, StepError> {
    let mut request = http::Request::new(plan.method.as_str(), plan.url.as_str())
        .headers(plan.headers.iter().cloned());
    if let Some(body) = &plan.body {
        request = request.body(body.clone());
    }
    if let Some(ms) = plan.timeout_ms {
        request = request.timeout_ms(ms);
    }
    match &plan.auth {
        Some(Auth::Basic {
            username,
            password_secret,
        }) => {
            let password = secrets::get(password_secret)?;
            request = request.basic_auth(username, &password);
        }
        Some(Auth::Bearer { token_secret }) => {
            let token = secrets::get(token_secret)?;
            request = request.bearer(&token);
        }
        None => {}
    }
    Ok(request)
}

/// A request that got no response: denials stay denials (the host's message
/// names the grant), the rest say which request it was.
fn request_error(plan: &Plan, error: CapabilityError) -> StepError {
    match error {
        CapabilityError::Denied(denial) => StepError::Denied(denial),
        CapabilityError::TimedOut(m) => {
            StepError::TimedOut(format!("{} {}: {m}", plan.method, plan.url))
        }
        other => StepError::Failed(format!("{} {}: {other}", plan.method, plan.url)),
    }
}

meridian_sdk::export_step!(HttpStep);

#[cfg(test)]
mod tests {
    use meridian_sdk::serde_json::{self, json};

    use super::*;

    #[test]
    fn describe_asks_for_http_and_secrets() {
        let kinds: Vec<_> = HttpStep::capabilities()
            .into_iter()
            .map(|c| (c.kind, c.target))
            .collect();
        assert!(kinds.contains(&(meridian_sdk::CapabilityKind::Http, "*".to_string())));
        assert!(kinds.contains(&(meridian_sdk::CapabilityKind::Secrets, "*".to_string())));
        let schema = meridian_sdk::config_schema::<Config>();
        assert_eq!(schema["required"], json!(["url"]));
        assert!(schema["properties"]["expected_status"].is_object());
    }

    #[test]
    fn validate_runs_serde_and_semantic_checks() {
        let issues = meridian_sdk::validate_config::<HttpStep>(
            &json!({"url": "ftp://x", "method": "GET", "extract": {"a": "b"}}).to_string(),
        );
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["url", "extract.a"]);
        let issues = meridian_sdk::validate_config::<HttpStep>(r#"{"url": 3}"#);
        assert_eq!(issues[0].path, "url");
        assert!(
            meridian_sdk::validate_config::<HttpStep>(r#"{"url": "https://example.com"}"#)
                .is_empty()
        );
    }

    #[test]
    fn requests_are_built_from_the_plan() {
        let config: Config = meridian_sdk::parse_config(
            &json!({"method": "PATCH", "url": "https://x.example/a", "json": [1], "timeout_ms": 50}).to_string(),
        )
        .unwrap();
        let plan = plan::plan(&config).unwrap();
        let request = build_request(&plan).unwrap();
        assert_eq!(request.method(), "PATCH");
        assert_eq!(request.url(), "https://x.example/a");
        assert_eq!(
            request.header_value("content-type"),
            Some("application/json")
        );
        assert_eq!(request.body_bytes(), Some(&b"[1]"[..]));
        assert_eq!(request.timeout(), Some(50));
    }

    #[test]
    fn capability_errors_name_the_request() {
        let config: Config = serde_json::from_value(json!({"url": "https://x.example/a"})).unwrap();
        let plan = plan::plan(&config).unwrap();
        assert_eq!(
            request_error(&plan, CapabilityError::TimedOut("after 50 ms".into())),
            StepError::TimedOut("GET https://x.example/a: after 50 ms".into())
        );
        assert_eq!(
            request_error(&plan, CapabilityError::Failed("connection refused".into())),
            StepError::Failed("GET https://x.example/a: connection refused".into())
        );
        // Outside the host, secrets are unavailable: the step fails cleanly.
        let config: Config = serde_json::from_value(
            json!({"url": "https://x.example", "auth": {"bearer": {"token_secret": "t"}}}),
        )
        .unwrap();
        assert!(matches!(
            build_request(&plan::plan(&config).unwrap()),
            Err(StepError::Failed(_))
        ));
    }
}
