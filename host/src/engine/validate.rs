//! Validation of a parsed job against the loaded plugins: every problem at
//! once, each with a JSON path into the definition (`steps[1].config.url:
//! ...`): the job's own rules, then variable references, then each step's
//! config as its plugin checks it, starting with `${...}` in the fields the
//! plugin runs as code ([`crate::runtime::literal`]).

use crate::model::vars::{self, Root, Segment};
use crate::model::{
    EXECUTION_KEYS, FAILURE_KINDS, FlowAction, Issue, JOB_KEYS, Job, STEP_KEYS, Step,
    check_param_value, join_path, listing, valid_id, valid_param_name,
};
use crate::runtime::Runtime;
use serde_json::Value;
use std::collections::HashSet;

/// Every problem with a parsed job, including variable references and each
/// step's config as its plugin sees it.
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
    } else if job.name.len() > 200 {
        issue("name".into(), "must be at most 200 characters".into());
    }
    if job.timezone.parse::<chrono_tz::Tz>().is_err() {
        issue(
            "timezone".into(),
            format!("{:?} is not an IANA time zone", job.timezone),
        );
    }
    if job.timeout_ms == Some(0) {
        issue("timeout_ms".into(), "must be greater than 0".into());
    }
    if let Some(spec) = &job.scope
        && let Err(errors) = crate::capabilities::grants::scope::Scope::parse(spec)
    {
        for (path, message) in errors {
            issue(format!("scope.{path}"), message);
        }
    }
    if let Some(n) = job.max_step_runs
        && !(1..=100_000).contains(&n)
    {
        issue(
            "max_step_runs".into(),
            "must be between 1 and 100000".into(),
        );
    }
    if job.tags.len() > 32 {
        issue("tags".into(), "at most 32 tags".into());
    }
    for (i, tag) in job.tags.iter().enumerate() {
        if tag.trim().is_empty() || tag.len() > 64 {
            issue(format!("tags[{i}]"), "must be 1-64 characters".into());
        }
    }
    if let Some(r) = &job.retention {
        if r.keep_last == Some(0) {
            issue(
                "retention.keep_last".into(),
                "must be at least 1 (omit it to keep every execution)".into(),
            );
        }
        if r.max_age_days == Some(0) {
            issue(
                "retention.max_age_days".into(),
                "must be at least 1 (omit it to keep executions of any age)".into(),
            );
        }
    }
    for (name, spec) in &job.params {
        let path = format!("params.{name}");
        if !valid_param_name(name) {
            issue(
                path.clone(),
                "a parameter name is a letter or '_' followed by letters, digits, '_' or '-' (at most 64)"
                    .into(),
            );
        }
        if let Some(d) = &spec.default
            && let Err(m) = check_param_value(spec, d)
        {
            issue(format!("{path}.default"), m);
        }
        if let Some(allowed) = &spec.allowed {
            if allowed.is_empty() {
                issue(
                    format!("{path}.enum"),
                    "must list at least one value".into(),
                );
            }
            for (j, v) in allowed.iter().enumerate() {
                if !spec.kind.accepts(v) {
                    issue(
                        format!("{path}.enum[{j}]"),
                        format!("must be {}", spec.kind.name()),
                    );
                }
            }
        }
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
        if step.continue_on_failure && step.on_failure.is_some() {
            issue(
                format!("steps[{i}].continue_on_failure"),
                "cannot be combined with on_failure (it is shorthand for on_failure: \"next\")"
                    .into(),
            );
        }
        if let Some(r) = &step.retry {
            let p = format!("steps[{i}].retry");
            if !(1..=100).contains(&r.max_attempts) {
                issue(
                    format!("{p}.max_attempts"),
                    "must be between 1 and 100".into(),
                );
            }
            if !(r.multiplier.is_finite() && (1.0..=100.0).contains(&r.multiplier)) {
                issue(
                    format!("{p}.multiplier"),
                    "must be between 1 and 100".into(),
                );
            }
            if !(r.jitter.is_finite() && (0.0..=1.0).contains(&r.jitter)) {
                issue(format!("{p}.jitter"), "must be between 0 and 1".into());
            }
            if r.initial_interval_ms > r.max_interval_ms {
                issue(
                    format!("{p}.initial_interval_ms"),
                    "must not exceed max_interval_ms".into(),
                );
            }
            if r.max_interval_ms > 24 * 3600 * 1000 {
                issue(
                    format!("{p}.max_interval_ms"),
                    "must be at most one day (86400000)".into(),
                );
            }
            for (j, k) in r.never_retry.iter().enumerate() {
                if !FAILURE_KINDS.contains(&k.as_str()) {
                    issue(
                        format!("{p}.never_retry[{j}]"),
                        format!(
                            "unknown failure kind {k:?}; known: {}",
                            FAILURE_KINDS.join(", ")
                        ),
                    );
                }
            }
        }
    }
    let ids: HashSet<&str> = job.steps.iter().map(|s| s.id.as_str()).collect();
    for (i, step) in job.steps.iter().enumerate() {
        for (field, action) in [
            ("on_success", &step.on_success),
            ("on_failure", &step.on_failure),
        ] {
            if let Some(FlowAction::Goto(target)) = action
                && !ids.contains(target.as_str())
            {
                issue(
                    format!("steps[{i}].{field}.goto"),
                    format!("no step has the id {target:?}"),
                );
            }
        }
    }
    for (i, step) in job.steps.iter().enumerate() {
        let base = format!("steps[{i}].config");
        let (refs, syntax) = vars::references(&step.config);
        for s in syntax {
            issues.push(Issue {
                path: join_path(&base, &s.path),
                message: s.message,
            });
        }
        for (at, r) in refs {
            if let Err(message) = check_reference(job, step, &r, runtime) {
                issues.push(Issue {
                    path: join_path(&base, &at),
                    message: format!("${{{}}}: {message}", r.text),
                });
            }
        }
    }
    for (i, step) in job.steps.iter().enumerate() {
        match runtime.plugin(&step.step_type) {
            None => issues.push(Issue {
                path: format!("steps[{i}].type"),
                message: match runtime.unloadable_step_type(&step.step_type) {
                    Some(u) => format!(
                        "step type {:?}: its plugin could not be loaded ({})",
                        step.step_type,
                        u.describe()
                    ),
                    None => format!(
                        "unknown step type {:?}; loaded: {}",
                        step.step_type,
                        runtime
                            .plugins()
                            .iter()
                            .map(|p| p.info.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                },
            }),
            Some(plugin) => {
                // Text the plugin runs as code takes no `${...}`: a value
                // spliced into it would rewrite it.
                for spliced in plugin.literal_fields().check(&step.config) {
                    issues.push(Issue {
                        path: join_path(&format!("steps[{i}].config"), &spliced.path),
                        message: spliced.message,
                    });
                }
                // Strings holding `${...}` are checked after resolution, at
                // run time: their type is not known yet.
                let templated = templated_paths(&step.config);
                for found in runtime.validate_config(&plugin, &step.config).await {
                    if templated
                        .iter()
                        .any(|t| found.path == *t || is_inside(&found.path, t))
                    {
                        continue;
                    }
                    issues.push(Issue {
                        path: join_path(&format!("steps[{i}].config"), &found.path),
                        message: found.message,
                    });
                }
            }
        }
    }
    issues
}

fn is_inside(path: &str, outer: &str) -> bool {
    outer.is_empty()
        || path
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// Paths of the strings in `config` that hold an expression.
fn templated_paths(config: &Value) -> Vec<String> {
    let (refs, _) = vars::references(config);
    let mut paths: Vec<String> = refs.into_iter().map(|(p, _)| p).collect();
    paths.dedup();
    paths
}

fn check_reference(
    job: &Job,
    step: &Step,
    r: &vars::Reference,
    runtime: &Runtime,
) -> Result<(), String> {
    let first = match r.path.first() {
        Some(Segment::Key(k)) => Some(k.as_str()),
        Some(Segment::Index(_)) => return Err("expected a name after the root".into()),
        None => None,
    };
    match r.root {
        Root::Params => match first {
            None => Ok(()),
            Some(name) if job.params.contains_key(name) => Ok(()),
            Some(name) => Err(format!(
                "the job declares no parameter {name:?}{}",
                listing(job.params.keys().map(String::as_str))
            )),
        },
        Root::Steps => {
            let Some(id) = first else {
                return Ok(());
            };
            if !job.steps.iter().any(|s| s.id == id) {
                return Err(format!("no step has the id {id:?}"));
            }
            match r.path.get(1) {
                None => Ok(()),
                Some(Segment::Key(k)) if STEP_KEYS.contains(&k.as_str()) => Ok(()),
                Some(_) => Err(format!("a step's variables are {}", STEP_KEYS.join(", "))),
            }
        }
        Root::Execution => check_key(first, EXECUTION_KEYS, "execution"),
        Root::Job => check_key(first, JOB_KEYS, "job"),
        Root::Secrets => {
            let Some(name) = first else {
                return Err("name a secret: ${secrets.<name>}".into());
            };
            if runtime.secrets().get(name).is_none() {
                return Err(format!("no secret {name:?} is configured"));
            }
            match runtime.plugin(&step.step_type) {
                Some(plugin) => plugin
                    .grants()
                    .check_secret(name)
                    .map_err(|d| format!("step type {:?} may not read it: {d}", step.step_type)),
                None => Ok(()),
            }
        }
    }
}

fn check_key(first: Option<&str>, keys: &[&str], root: &str) -> Result<(), String> {
    match first {
        None => Ok(()),
        Some(k) if keys.contains(&k) => Ok(()),
        Some(k) => Err(format!(
            "{root} has no variable {k:?}; it has {}",
            keys.join(", ")
        )),
    }
}
