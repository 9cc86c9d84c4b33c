//! What a config means: the checked organisation URL, the two REST URLs the
//! step calls, the request body, and how (and whether) to wait. Every problem
//! is a [`ConfigIssue`] with the JSON path of the field, found all at once so
//! that `validate` reports them together.

use std::time::Duration;

use meridian_sdk::{ConfigIssue, JsonPath};
use serde_json::{Map, Value, json};
use url::Url;

use crate::config::{
    Config, DEFAULT_API_VERSION, DEFAULT_PAT_SECRET, DEFAULT_POLL_INTERVAL_MS,
    DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_WAIT_TIMEOUT_MS,
};

/// Azure DevOps Services; an organisation name `x` means `{SERVICES}/x`.
pub const SERVICES: &str = "https://dev.azure.com";
/// The shortest time between two reads of a run.
pub const MIN_POLL_INTERVAL_MS: u32 = 100;
/// The longest time limit of one REST call (the host's own cap).
pub const MAX_REQUEST_TIMEOUT_MS: u32 = 300_000;

/// A checked config, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The organisation or collection URL, without a trailing slash.
    pub organization: Url,
    /// Project name or id, as configured.
    pub project: String,
    /// The pipeline's id.
    pub pipeline_id: u32,
    /// The JSON body of the queue request.
    pub body: Value,
    /// The secret holding the personal access token.
    pub pat_secret: String,
    /// How to wait for the run, or `None` to return once it is queued.
    pub wait: Option<Wait>,
    /// Time limit of each REST call, in milliseconds.
    pub request_timeout_ms: u32,
    /// The `api-version` query parameter.
    pub api_version: String,
}

/// How to wait for a run to complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// Time between two reads of the run.
    pub interval: Duration,
    /// How long to wait in all, counted from the moment the run was queued.
    pub timeout: Duration,
}

impl Plan {
    /// `POST` here queues a run:
    /// `{org}/{project}/_apis/pipelines/{pipelineId}/runs?api-version=…`.
    pub fn queue_url(&self) -> String {
        self.api_url(None)
    }

    /// `GET` here reads run `run_id`:
    /// `{org}/{project}/_apis/pipelines/{pipelineId}/runs/{runId}?api-version=…`.
    pub fn run_url(&self, run_id: u64) -> String {
        self.api_url(Some(run_id))
    }

    /// The run's page in the web UI, for when the API gives no link.
    pub fn web_url(&self, run_id: u64) -> String {
        let mut url = self.organization.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .push(&self.project)
                .push("_build")
                .push("results");
        }
        url.query_pairs_mut()
            .append_pair("buildId", &run_id.to_string());
        url.to_string()
    }

    fn api_url(&self, run_id: Option<u64>) -> String {
        let mut url = self.organization.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .push(&self.project)
                .extend(["_apis", "pipelines"])
                .push(&self.pipeline_id.to_string())
                .push("runs");
            if let Some(id) = run_id {
                segments.push(&id.to_string());
            }
        }
        url.query_pairs_mut()
            .append_pair("api-version", &self.api_version);
        url.to_string()
    }

    /// The organisation URL as text, without a trailing slash.
    pub fn organization_text(&self) -> String {
        self.organization.as_str().trim_end_matches('/').to_string()
    }
}

/// Every problem with `config`; empty when it is usable.
pub fn check(config: &Config) -> Vec<ConfigIssue> {
    plan(config).err().unwrap_or_default()
}

/// The plan for `config`, or every problem with it.
pub fn plan(config: &Config) -> Result<Plan, Vec<ConfigIssue>> {
    let mut issues = Vec::new();
    let root = JsonPath::root();
    let mut issue = |path: JsonPath, message: String| issues.push(ConfigIssue::new(path, message));

    let organization = match organization_url(&config.organization) {
        Ok(url) => Some(url),
        Err(message) => {
            issue(root.key("organization"), message);
            None
        }
    };
    if let Err(message) = check_project(&config.project) {
        issue(root.key("project"), message);
    }
    if config.pipeline_id == 0 {
        issue(root.key("pipeline_id"), "must be greater than 0".into());
    }

    let git_ref = match (&config.branch, &config.git_ref) {
        (Some(_), Some(_)) => {
            issue(
                root.clone(),
                "`branch` and `ref` are both set; give one".into(),
            );
            None
        }
        (Some(branch), None) => match check_branch(branch) {
            Ok(r) => Some(r),
            Err(message) => {
                issue(root.key("branch"), message);
                None
            }
        },
        (None, Some(r)) => match check_ref(r) {
            Ok(()) => Some(r.clone()),
            Err(message) => {
                issue(root.key("ref"), message);
                None
            }
        },
        (None, None) => None,
    };

    let mut parameters = Map::new();
    for (name, value) in &config.template_parameters {
        let path = root.key("template_parameters").key(name);
        if name.trim().is_empty() {
            issue(path, "a parameter name must not be empty".into());
            continue;
        }
        match parameter_text(value) {
            Some(text) => {
                parameters.insert(name.clone(), Value::String(text));
            }
            None => issue(path, "null is not a parameter value".into()),
        }
    }

    let mut variables = Map::new();
    for (name, variable) in &config.variables {
        if let Err(message) = check_variable_name(name) {
            issue(root.key("variables").key(name), message);
            continue;
        }
        let (value, is_secret) = variable.parts();
        variables.insert(
            name.clone(),
            json!({ "value": value, "isSecret": is_secret }),
        );
    }

    for (i, stage) in config.stages_to_skip.iter().enumerate() {
        if stage.trim().is_empty() {
            issue(
                root.key("stages_to_skip").index(i),
                "a stage name must not be empty".into(),
            );
        }
    }

    let pat_secret = config
        .pat_secret
        .clone()
        .unwrap_or_else(|| DEFAULT_PAT_SECRET.to_string());
    if pat_secret.trim().is_empty() {
        issue(
            root.key("pat_secret"),
            "must name a secret (default `azure_devops_pat`)".into(),
        );
    }

    let interval = config.poll_interval_ms.unwrap_or(DEFAULT_POLL_INTERVAL_MS);
    if interval < MIN_POLL_INTERVAL_MS {
        issue(
            root.key("poll_interval_ms"),
            format!("must be at least {MIN_POLL_INTERVAL_MS}"),
        );
    }
    let wait_timeout = config.wait_timeout_ms.unwrap_or(DEFAULT_WAIT_TIMEOUT_MS);
    if wait_timeout == 0 {
        issue(root.key("wait_timeout_ms"), "must be greater than 0".into());
    }
    let request_timeout_ms = config
        .request_timeout_ms
        .unwrap_or(DEFAULT_REQUEST_TIMEOUT_MS);
    if request_timeout_ms == 0 || request_timeout_ms > MAX_REQUEST_TIMEOUT_MS {
        issue(
            root.key("request_timeout_ms"),
            format!("must be between 1 and {MAX_REQUEST_TIMEOUT_MS}"),
        );
    }
    let api_version = config
        .api_version
        .clone()
        .unwrap_or_else(|| DEFAULT_API_VERSION.to_string());
    if let Err(message) = check_api_version(&api_version) {
        issue(root.key("api_version"), message);
    }

    let mut body = Map::new();
    if let Some(r) = git_ref {
        body.insert(
            "resources".into(),
            json!({ "repositories": { "self": { "refName": r } } }),
        );
    }
    if !parameters.is_empty() {
        body.insert("templateParameters".into(), Value::Object(parameters));
    }
    if !variables.is_empty() {
        body.insert("variables".into(), Value::Object(variables));
    }
    if !config.stages_to_skip.is_empty() {
        body.insert("stagesToSkip".into(), json!(config.stages_to_skip));
    }

    match organization {
        Some(organization) if issues.is_empty() => Ok(Plan {
            organization,
            project: config.project.trim().to_string(),
            pipeline_id: config.pipeline_id,
            body: Value::Object(body),
            pat_secret,
            wait: config.wait.then_some(Wait {
                interval: Duration::from_millis(u64::from(interval)),
                timeout: Duration::from_millis(wait_timeout),
            }),
            request_timeout_ms,
            api_version,
        }),
        _ => Err(issues),
    }
}

/// An organisation name (`contoso` → `https://dev.azure.com/contoso`) or an
/// organisation / collection URL, as the URL the API paths hang off.
pub fn organization_url(text: &str) -> Result<Url, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("must be an organisation name or URL".into());
    }
    if !text.contains("://") {
        check_organization_name(text)?;
        return Url::parse(&format!("{SERVICES}/{text}")).map_err(|e| e.to_string());
    }
    let mut url = Url::parse(text).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!(
            "the URL must be https (or http), not {}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL must not carry credentials; the PAT comes from `pat_secret`".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the URL must not have a query or fragment".into());
    }
    if url
        .path_segments()
        .is_some_and(|mut s| s.any(|segment| segment.eq_ignore_ascii_case("_apis")))
    {
        return Err(
            "give the organisation or collection URL, without `_apis/...` (e.g. https://dev.azure.com/contoso)"
                .into(),
        );
    }
    if url.host_str() == Some("dev.azure.com") && url.path().trim_matches('/').is_empty() {
        return Err("name the organisation: https://dev.azure.com/{organization}".into());
    }
    let trimmed = url.path().trim_end_matches('/').to_string();
    url.set_path(&trimmed);
    Ok(url)
}

/// Organisation names: letters, digits and hyphens, not at either end.
fn check_organization_name(name: &str) -> Result<(), String> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !ok_chars || name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "`{name}` is neither an organisation name (letters, digits, hyphens) nor an http(s) URL"
        ));
    }
    Ok(())
}

fn check_project(project: &str) -> Result<(), String> {
    let project = project.trim();
    if project.is_empty() {
        return Err("must be a project name or id".into());
    }
    if let Some(c) = project
        .chars()
        .find(|c| c.is_control() || matches!(c, '/' | '\\' | '?' | '#'))
    {
        return Err(format!("a project name cannot contain {c:?}"));
    }
    Ok(())
}

fn check_branch(branch: &str) -> Result<String, String> {
    if branch.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if branch.chars().any(char::is_whitespace) {
        return Err("a branch name cannot contain spaces".into());
    }
    if branch.starts_with("refs/") {
        return Err(format!(
            "`{branch}` is a full ref: give it as `ref`, or give the branch name alone"
        ));
    }
    Ok(format!("refs/heads/{branch}"))
}

fn check_ref(git_ref: &str) -> Result<(), String> {
    if !git_ref.starts_with("refs/") || git_ref.len() <= "refs/".len() {
        return Err(format!(
            "`{git_ref}` is not a full ref like refs/heads/main or refs/tags/v1 (use `branch` for a branch name)"
        ));
    }
    if git_ref.chars().any(char::is_whitespace) {
        return Err("a ref cannot contain spaces".into());
    }
    Ok(())
}

/// Variable names: letters, digits, `.` and `_`.
fn check_variable_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a variable name must not be empty".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
    {
        return Err("a variable name may contain only letters, digits, `.` and `_`".into());
    }
    Ok(())
}

/// `7.1`, `7.0`, `6.0-preview.1`; the Runs API starts at 6.0.
fn check_api_version(version: &str) -> Result<(), String> {
    let (number, preview) = match version.split_once('-') {
        Some((number, rest)) => (number, Some(rest)),
        None => (version, None),
    };
    let parts: Vec<&str> = number.split('.').collect();
    let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let preview_ok = preview.is_none_or(|p| {
        p == "preview"
            || p.strip_prefix("preview.")
                .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty())
    });
    if parts.len() != 2 || !parts.iter().all(|p| numeric(p)) || !preview_ok {
        return Err(format!(
            "`{version}` is not an api-version like 7.1 or 6.0-preview.1"
        ));
    }
    if parts[0].parse::<u32>().unwrap_or(0) < 6 {
        return Err("the Pipelines Runs API needs api-version 6.0-preview.1 or later".into());
    }
    Ok(())
}

/// A template parameter value as the text Azure DevOps expects; `None` for null.
fn parameter_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(_) | Value::Object(_) => Some(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(value: Value) -> Config {
        meridian_sdk::parse_config(&value.to_string()).unwrap()
    }

    fn paths(value: Value) -> Vec<String> {
        check(&config(value)).into_iter().map(|i| i.path).collect()
    }

    #[test]
    fn names_and_urls_become_organisation_urls() {
        let url = |s| organization_url(s).map(|u| u.to_string());
        assert_eq!(url("contoso").unwrap(), "https://dev.azure.com/contoso");
        assert_eq!(
            url("https://dev.azure.com/contoso/").unwrap(),
            "https://dev.azure.com/contoso"
        );
        assert_eq!(
            url("https://tfs.example.com/tfs/DefaultCollection").unwrap(),
            "https://tfs.example.com/tfs/DefaultCollection"
        );
        assert_eq!(
            url("http://127.0.0.1:8080/org").unwrap(),
            "http://127.0.0.1:8080/org"
        );
        for bad in [
            "",
            "con toso",
            "-x",
            "ftp://x/y",
            "https://user:pw@dev.azure.com/x",
            "https://dev.azure.com/",
            "https://dev.azure.com/x/p/_apis/pipelines",
            "https://dev.azure.com/x?a=1",
        ] {
            assert!(url(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn urls_follow_the_documented_paths() {
        let plan = plan(&config(json!({
            "organization": "https://tfs.example.com/tfs/DefaultCollection/",
            "project": "Fabrikam Fiber", "pipeline_id": 12
        })))
        .unwrap();
        assert_eq!(
            plan.queue_url(),
            "https://tfs.example.com/tfs/DefaultCollection/Fabrikam%20Fiber/_apis/pipelines/12/runs?api-version=7.1"
        );
        assert_eq!(
            plan.run_url(345),
            "https://tfs.example.com/tfs/DefaultCollection/Fabrikam%20Fiber/_apis/pipelines/12/runs/345?api-version=7.1"
        );
        assert_eq!(
            plan.web_url(345),
            "https://tfs.example.com/tfs/DefaultCollection/Fabrikam%20Fiber/_build/results?buildId=345"
        );
        assert_eq!(plan.body, json!({}));
        assert_eq!(plan.pat_secret, "azure_devops_pat");
        assert_eq!(plan.wait, None);
    }

    #[test]
    fn the_body_has_the_documented_shape() {
        let plan = plan(&config(json!({
            "organization": "contoso", "project": "p", "pipeline_id": 1,
            "branch": "release/2.0",
            "template_parameters": { "env": "prod", "count": 3, "dry": false, "list": [1, "a"] },
            "variables": { "v": "x", "s": { "value": "y", "is_secret": true } },
            "stages_to_skip": ["Deploy"],
            "wait": true, "poll_interval_ms": 500, "wait_timeout_ms": 9000, "api_version": "6.0-preview.1"
        })))
        .unwrap();
        assert_eq!(
            plan.body,
            json!({
                "resources": { "repositories": { "self": { "refName": "refs/heads/release/2.0" } } },
                "templateParameters": { "env": "prod", "count": "3", "dry": "false", "list": "[1,\"a\"]" },
                "variables": { "v": { "value": "x", "isSecret": false }, "s": { "value": "y", "isSecret": true } },
                "stagesToSkip": ["Deploy"]
            })
        );
        assert_eq!(
            plan.wait,
            Some(Wait {
                interval: Duration::from_millis(500),
                timeout: Duration::from_millis(9000)
            })
        );
        assert!(plan.queue_url().ends_with("?api-version=6.0-preview.1"));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let base = json!({ "organization": "contoso", "project": "p", "pipeline_id": 1 });
        assert!(paths(base.clone()).is_empty());
        let mut bad = base.clone();
        let fields = json!({
            "organization": "not a name", "project": " ", "pipeline_id": 0,
            "template_parameters": { "x": null },
            "variables": { "bad name": "v" },
            "stages_to_skip": ["ok", ""],
            "pat_secret": "", "poll_interval_ms": 5, "wait_timeout_ms": 0,
            "request_timeout_ms": 0, "api_version": "5.1"
        });
        for (k, v) in fields.as_object().unwrap() {
            bad[k] = v.clone();
        }
        assert_eq!(
            paths(bad),
            [
                "organization",
                "project",
                "pipeline_id",
                "template_parameters.x",
                r#"variables["bad name"]"#,
                "stages_to_skip[1]",
                "pat_secret",
                "poll_interval_ms",
                "wait_timeout_ms",
                "request_timeout_ms",
                "api_version"
            ]
        );
        let mut both = base.clone();
        both["branch"] = json!("main");
        both["ref"] = json!("refs/heads/main");
        assert_eq!(paths(both), [""]);
        let mut full = base.clone();
        full["branch"] = json!("refs/heads/main");
        assert_eq!(paths(full), ["branch"]);
        let mut short = base;
        short["ref"] = json!("main");
        assert_eq!(paths(short), ["ref"]);
    }

    #[test]
    fn api_versions() {
        for ok in ["7.1", "7.0", "6.0-preview.1", "7.2-preview"] {
            assert!(check_api_version(ok).is_ok(), "{ok}");
        }
        for bad in ["7", "7.1.1", "x.1", "5.1", "7.1-beta", "7.1-preview."] {
            assert!(check_api_version(bad).is_err(), "{bad}");
        }
    }
}
