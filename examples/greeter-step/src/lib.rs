//! `greeter`: an example Meridian step type, written only against
//! `meridian-sdk`, the way a plugin author would write one.
//!
//! It greets someone by name, with a salutation that suits the local hour of
//! the job's scheduled time ("Good morning" in the job's own timezone), logs
//! the greeting, exports it as the variable `greeting`, and, when the config
//! names a `webhook_url`, POSTs it there as `{"text": "..."}`, optionally with
//! a bearer token read from a secret.
//!
//! ```json
//! { "id": "greet", "type": "greeter",
//!   "config": { "name": "Ops team", "webhook_url": "https://hooks.example.com/greetings",
//!               "webhook_token_secret": "greeter_token" } }
//! ```
//!
//! See README.md beside this crate for the walk from `cargo new` to a run.

// Tests may unwrap; production code may not (workspace lints).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use meridian_sdk::http::Request;
use meridian_sdk::serde_json::json;
use meridian_sdk::{Capability, ConfigIssue, Context, Output, Step, StepError};
use schemars::JsonSchema;
use serde::Deserialize;

/// The greeter's configuration.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who to greet.
    pub name: String,
    /// The salutation, e.g. "Welcome". Default: "Good morning",
    /// "Good afternoon" or "Good evening" by the local hour of the scheduled
    /// time, "Hello" for a run started by hand.
    #[serde(default)]
    pub salutation: Option<String>,
    /// Where to POST the greeting as `{"text": "..."}`, if anywhere.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Name of the secret holding a bearer token for the webhook.
    #[serde(default)]
    pub webhook_token_secret: Option<String>,
}

/// The step type.
pub struct Greeter;

impl Step for Greeter {
    type Config = Config;
    const NAME: &'static str = "greeter";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str = "Greets someone by name (by the local time of day of the \
        job's schedule), exports the greeting as `greeting`, and optionally POSTs it to a webhook.";

    fn capabilities() -> Vec<Capability> {
        vec![
            Capability::http(
                "https://*",
                "POSTs the greeting to the configured `webhook_url`",
            ),
            Capability::secret(
                "*",
                "reads the webhook's bearer token from `webhook_token_secret`",
            ),
            Capability::log("logs each greeting"),
        ]
    }

    fn validate(config: &Config) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if config.name.trim().is_empty() {
            issues.push(ConfigIssue::new("name", "must not be empty"));
        } else if config.name.chars().count() > 100 {
            issues.push(ConfigIssue::new("name", "must be at most 100 characters"));
        }
        if let Some(url) = &config.webhook_url
            && !url.contains("${")
            && !url.starts_with("https://")
        {
            issues.push(ConfigIssue::new("webhook_url", "must be an https:// URL"));
        }
        if config.webhook_token_secret.is_some() && config.webhook_url.is_none() {
            issues.push(ConfigIssue::new(
                "webhook_token_secret",
                "is only used with `webhook_url`",
            ));
        }
        issues
    }

    fn execute(ctx: &Context, config: Config) -> Result<Output, StepError> {
        let salutation = config
            .salutation
            .clone()
            .unwrap_or_else(|| default_salutation(ctx.scheduled_time.as_deref()).to_string());
        let greeting = format!("{salutation}, {}!", config.name.trim());
        meridian_sdk::info!("{greeting} (job {}, attempt {})", ctx.job_id, ctx.attempt);

        let webhook_status = match &config.webhook_url {
            Some(url) => Some(post_greeting(
                url,
                config.webhook_token_secret.as_deref(),
                &greeting,
            )?),
            None => None,
        };

        Ok(Output::new(json!({
            "greeting": greeting,
            "timezone": ctx.timezone,
            "webhook_status": webhook_status,
        }))
        .export("greeting", &greeting))
    }
}

/// The salutation for the local hour of an RFC 3339 time that carries the
/// job zone's offset (`2026-03-29T08:00:00+02:00` → "Good morning").
pub fn default_salutation(scheduled_time: Option<&str>) -> &'static str {
    let hour = scheduled_time
        .and_then(|t| t.get(11..13))
        .and_then(|h| h.parse::<u8>().ok());
    match hour {
        Some(0..=11) => "Good morning",
        Some(12..=17) => "Good afternoon",
        Some(_) => "Good evening",
        None => "Hello",
    }
}

/// POSTs the greeting; a 2xx answer is success, 429 and 5xx are worth a
/// retry, anything else is a failure.
fn post_greeting(url: &str, token_secret: Option<&str>, greeting: &str) -> Result<u16, StepError> {
    let mut request = Request::post(url)
        .json(&json!({ "text": greeting }))?
        .timeout_ms(10_000);
    if let Some(secret) = token_secret {
        request = request.bearer(&meridian_sdk::secrets::get(secret)?);
    }
    let response = request.send()?;
    match response.status {
        200..=299 => Ok(response.status),
        429 | 500..=599 => Err(StepError::retryable(format!(
            "the webhook answered HTTP {}",
            response.status
        ))),
        status => Err(StepError::failed(format!(
            "the webhook answered HTTP {status}: {}",
            response.text().chars().take(200).collect::<String>()
        ))),
    }
}

meridian_sdk::export_step!(Greeter);

#[cfg(test)]
mod tests {
    use meridian_sdk::{CapabilityKind, validate_config};

    use super::*;

    #[test]
    fn salutation_follows_the_local_hour() {
        assert_eq!(
            default_salutation(Some("2026-03-29T08:00:00+02:00")),
            "Good morning"
        );
        assert_eq!(
            default_salutation(Some("2026-03-29T12:30:00-05:00")),
            "Good afternoon"
        );
        assert_eq!(
            default_salutation(Some("2026-03-29T23:59:00Z")),
            "Good evening"
        );
        assert_eq!(default_salutation(None), "Hello");
        assert_eq!(default_salutation(Some("soon")), "Hello");
    }

    #[test]
    fn validation_reports_paths() {
        let paths = |config: &str| -> Vec<String> {
            validate_config::<Greeter>(config)
                .into_iter()
                .map(|i| i.path)
                .collect()
        };
        assert!(paths(r#"{"name": "Ann"}"#).is_empty());
        assert_eq!(paths(r#"{"name": " "}"#), ["name"]);
        assert_eq!(paths(r#"{}"#), ["name"]);
        assert_eq!(
            paths(r#"{"name": "Ann", "webhook_url": "http://x", "webhook_token_secret": "t"}"#),
            ["webhook_url"]
        );
        assert_eq!(
            paths(r#"{"name": "Ann", "webhook_token_secret": "t"}"#),
            ["webhook_token_secret"]
        );
        assert!(paths(r#"{"name": "Ann", "webhook_url": "${vars.hook}"}"#).is_empty());
    }

    #[test]
    fn greets_without_a_webhook() {
        let mut ctx = Context::default();
        ctx.timezone = "Asia/Tokyo".into();
        ctx.scheduled_time = Some("2026-03-29T19:00:00+09:00".into());
        let config = Config {
            name: "Ann".into(),
            salutation: None,
            webhook_url: None,
            webhook_token_secret: None,
        };
        let out = Greeter::execute(&ctx, config).unwrap();
        assert_eq!(out.value()["greeting"], "Good evening, Ann!");
        assert_eq!(out.value()["webhook_status"], json!(null));
        assert_eq!(out.exported("greeting"), Some(&json!("Good evening, Ann!")));
    }

    #[test]
    fn the_webhook_needs_the_host() {
        // Natively there is no host to send through: the step fails cleanly.
        let config = Config {
            name: "Ann".into(),
            salutation: Some("Hi".into()),
            webhook_url: Some("https://hooks.example.com/x".into()),
            webhook_token_secret: None,
        };
        let err = Greeter::execute(&Context::default(), config).unwrap_err();
        assert!(matches!(err, StepError::Failed(_)), "{err:?}");
        assert!(
            Greeter::capabilities()
                .iter()
                .any(|c| c.kind == CapabilityKind::Http)
        );
    }
}
