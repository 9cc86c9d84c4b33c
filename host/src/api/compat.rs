//! V1 compatibility: the earlier single-step job shape at `/api/v1/jobs`,
//! mapped onto a v2 job (and a schedule), and POST /api/v2/jobs/schedule,
//! which stores a job and its schedule in one call.
//!
//! # The V1 shape
//!
//! ```json
//! {"name": "Nightly cleanup", "type": "sql", "connection": "warehouse",
//!  "command": "DELETE FROM staging WHERE loaded_at < now() - interval '7 days'",
//!  "schedule": "0 2 * * *", "timezone": "Europe/Berlin"}
//! ```
//!
//! becomes the v2 job `nightly-cleanup` (the name slugified) with one step
//! `main` of type `sql` (`{connection, query: command}`) or `powershell`
//! (`{script: command}`), in the given zone (UTC when absent), and — when
//! `schedule` is given — the schedule `nightly-cleanup` firing it in that
//! zone. Everything is checked before anything is stored: a bad body is a
//! 400 naming the V1 fields (`command`, `schedule`, …), and nothing is
//! stored. POST creates: a job or schedule that already has the id is a
//! 409 (change it through the v2 API, which keeps its versions).
//!
//! GET /api/v1/jobs lists, in the V1 shape, the jobs that map back (one
//! step of type `sql` or `powershell` with an inline command); the others
//! are left out and counted, so that a V1 client sees what it can read.
//! See docs/api-v1-compat.md.

use super::jobs::store_job;
use super::openapi::schemas as doc;
use super::problem::{internal, parse_body};
use super::schedules::{compile_spec, insert_new};
use super::{AppState, Problem};
use crate::auth::Permission;
use crate::model::schedule::{ScheduleDef, ScheduleSpec};
use crate::model::{self, Issue};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// The longest slug made of a V1 name.
const MAX_SLUG: usize = 64;

/// A V1 job's step types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum V1Type {
    Sql,
    Powershell,
}

impl V1Type {
    fn step_type(self) -> &'static str {
        match self {
            Self::Sql => "sql",
            Self::Powershell => "powershell",
        }
    }
}

/// The body of POST /api/v1/jobs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct V1Job {
    name: String,
    #[serde(rename = "type")]
    kind: V1Type,
    /// SQL text (`sql`) or a PowerShell script (`powershell`).
    command: String,
    /// A cron expression (5 or 6 fields, or `@daily`…).
    #[serde(default)]
    schedule: Option<String>,
    /// IANA zone of the job and its schedule; UTC when absent.
    #[serde(default)]
    timezone: Option<String>,
    /// The host's connection name (`sql` only, required there).
    #[serde(default)]
    connection: Option<String>,
    #[serde(default)]
    description: Option<String>,
    /// Whether the schedule fires (true when absent).
    #[serde(default)]
    enabled: Option<bool>,
}

/// A V1 name as a v2 id: lower-case letters and digits, other runs as one
/// `-`, at most 64 characters; `None` when nothing is left.
fn slug(name: &str) -> Option<String> {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(MAX_SLUG);
    let out = out.trim_end_matches('-').to_string();
    (!out.is_empty()).then_some(out)
}

/// A v2 issue path of the mapped job as the V1 field it came from.
fn v1_path(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("steps[0].config") {
        let field = rest.trim_start_matches('.');
        return if field.starts_with("connection") {
            "connection"
        } else {
            "command"
        }
        .into();
    }
    if path.starts_with("steps[0].type") {
        return "type".into();
    }
    if path.starts_with("steps") {
        return "command".into();
    }
    if path == "id" {
        return "name".into();
    }
    path.into()
}

/// The v2 job and schedule a V1 body becomes; every problem with V1
/// paths.
fn map_v1(v1: &V1Job) -> Result<(model::Job, Option<ScheduleDef>), Vec<Issue>> {
    let mut issues = Vec::new();
    let id = slug(&v1.name).unwrap_or_else(|| {
        issues.push(Issue {
            path: "name".into(),
            message: "must contain at least one letter or digit".into(),
        });
        String::new()
    });
    if v1.command.trim().is_empty() {
        issues.push(Issue {
            path: "command".into(),
            message: "must not be empty".into(),
        });
    }
    let config = match (v1.kind, &v1.connection) {
        (V1Type::Sql, Some(c)) => json!({ "connection": c, "query": v1.command }),
        (V1Type::Sql, None) => {
            issues.push(Issue {
                path: "connection".into(),
                message: "required for type sql: the host's connection name".into(),
            });
            Value::Null
        }
        (V1Type::Powershell, None) => json!({ "script": v1.command }),
        (V1Type::Powershell, Some(_)) => {
            issues.push(Issue {
                path: "connection".into(),
                message: "only type sql takes a connection".into(),
            });
            Value::Null
        }
    };
    let timezone = v1.timezone.clone().unwrap_or_else(|| "UTC".into());
    let mut job = json!({
        "id": id,
        "name": v1.name,
        "timezone": timezone,
        "steps": [{ "id": "main", "type": v1.kind.step_type(), "config": config }],
    });
    if let Some(d) = &v1.description {
        job["description"] = json!(d);
    }
    let job = match model::job_from_value(job) {
        Ok(job) => Some(job),
        Err(more) => {
            issues.extend(more.into_iter().map(|i| Issue {
                path: v1_path(&i.path),
                message: i.message,
            }));
            None
        }
    };
    let schedule = v1.schedule.as_ref().and_then(|cron| {
        let spec = ScheduleSpec {
            id: id.clone(),
            job_id: id.clone(),
            cron: cron.clone(),
            timezone: timezone.clone(),
            enabled: v1.enabled.unwrap_or(true),
            start_at: None,
            end_at: None,
            misfire: Default::default(),
            overlap: Default::default(),
            dst: Default::default(),
            jitter_s: 0,
            priority: 0,
        };
        compile_spec(spec)
            .map_err(|more| {
                issues.extend(more.into_iter().map(|i| Issue {
                    path: match i.path.as_str() {
                        "cron" => "schedule".into(),
                        "id" | "job_id" => "name".into(),
                        other => other.into(),
                    },
                    message: i.message,
                }));
            })
            .ok()
    });
    match job {
        Some(job) if issues.is_empty() => Ok((job, schedule)),
        _ => {
            dedup(&mut issues);
            Err(issues)
        }
    }
}

/// One issue per (path, message): the zone is checked by job and schedule
/// alike.
fn dedup(issues: &mut Vec<Issue>) {
    let mut seen = std::collections::HashSet::new();
    issues.retain(|i| seen.insert((i.path.clone(), i.message.clone())));
}

fn conflict(code: &'static str, title: &str, detail: String) -> Problem {
    Problem::new(StatusCode::CONFLICT, code, title).with_detail(detail)
}

/// POST /api/v1/jobs — a V1 job: 201 with the v2 job id and version, the
/// schedule id (when scheduled) and links.
#[utoipa::path(
    post,
    path = "/api/v1/jobs",
    extensions(("x-required-permission" = json!(Permission::Operate))),
    tag = "jobs",
    summary = "Create a job in the V1 single-step shape (mapped onto a v2 job and schedule)",
    description = "Body: `{name, type: sql|powershell, command, schedule?, timezone?, connection? (sql), description?, enabled?}`. The job id is the name slugified; its one step is `main`. See docs/api-v1-compat.md.",
    request_body(content = Object, description = "The V1 job"),
    responses(
        (status = 201, description = "Stored: `{job_id, version, schedule_id, next_fires, links}`; `Location` is the v2 job", body = Object),
        (status = 400, description = "The body is not JSON (`malformed_json`) or not valid (`validation_failed`, every issue with its path)", content_type = "application/problem+json", body = doc::Problem),
        (status = 409, description = "A job or schedule with that id exists (`job_exists`, `schedule_exists`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn create_v1_job(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let result = async {
        let v1: V1Job = parse_body(&body)?;
        let (job, schedule) = map_v1(&v1).map_err(Problem::validation)?;
        // Everything the v2 endpoints would refuse, before storing anything.
        let mut issues = crate::engine::validate_job(&job, &state.runtime).await;
        for i in &mut issues {
            i.path = v1_path(&i.path);
        }
        dedup(&mut issues);
        if !issues.is_empty() {
            return Err(Problem::validation(issues));
        }
        if state
            .store
            .get_job(&job.id)
            .await
            .map_err(internal)?
            .is_some()
        {
            return Err(conflict(
                "job_exists",
                "A job with this name already exists",
                format!(
                    "job {:?} exists; change it with POST /api/v2/jobs (a new version)",
                    job.id
                ),
            ));
        }
        if let Some(def) = &schedule
            && state
                .store
                .get_schedule(&def.spec.id)
                .await
                .map_err(internal)?
                .is_some()
        {
            return Err(conflict(
                "schedule_exists",
                "A schedule with this id already exists",
                format!("schedule {:?} already exists", def.spec.id),
            ));
        }
        let version = store_job(&state, &job).await?;
        let schedule_view = match &schedule {
            Some(def) => Some(insert_new(&state, def).await?.1),
            None => None,
        };
        let schedule_id = schedule.as_ref().map(|d| d.spec.id.clone());
        let mut links = Map::new();
        links.insert("job".into(), json!(format!("/api/v2/jobs/{}", job.id)));
        links.insert("execute".into(), json!("/api/v2/jobs/execute"));
        if let Some(id) = &schedule_id {
            links.insert("schedule".into(), json!(format!("/api/v2/schedules/{id}")));
        }
        Ok((
            StatusCode::CREATED,
            [(header::LOCATION, format!("/api/v2/jobs/{}", job.id))],
            Json(json!({
                "job_id": job.id,
                "version": version,
                "schedule_id": schedule_id,
                "next_fires": schedule_view.as_ref().map(|v| v["next_fires"].clone()),
                "links": links,
            })),
        )
            .into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// A stored v2 job in the V1 shape, when it has one: a single step of
/// type `sql` (with `connection` and `query`) or `powershell` (with
/// `script`) and nothing else in its config.
fn as_v1(job: &model::Job, schedule: Option<&crate::store::ScheduleRow>) -> Option<Value> {
    let [step] = job.steps.as_slice() else {
        return None;
    };
    let config = step.config.as_object()?;
    let mut v = json!({
        "id": job.id,
        "name": job.name,
        "timezone": job.timezone,
    });
    match step.step_type.as_str() {
        "sql" if config.len() == 2 => {
            v["type"] = json!("sql");
            v["connection"] = config.get("connection")?.clone();
            v["command"] = json!(config.get("query")?.as_str()?);
        }
        "powershell" if config.len() == 1 => {
            v["type"] = json!("powershell");
            v["command"] = json!(config.get("script")?.as_str()?);
        }
        _ => return None,
    }
    if !job.description.is_empty() {
        v["description"] = json!(job.description);
    }
    if let Some(s) = schedule {
        let def = ScheduleDef::from_row(s).ok()?;
        v["schedule"] = json!(def.spec.cron);
        v["enabled"] = json!(def.spec.enabled);
        v["schedule_id"] = json!(s.id);
    }
    Some(v)
}

/// GET /api/v1/jobs — every live job that maps back to the V1 shape, in id
/// order, with how many were left out (several steps, other step types,
/// options V1 cannot say).
#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    extensions(("x-required-permission" = json!(Permission::Read))),
    tag = "jobs",
    summary = "List the jobs that have a V1 shape",
    responses((status = 200, description = "`{jobs: [V1 job with id and schedule_id], not_v1: N}`", body = Object)),
)]
pub(super) async fn list_v1_jobs(State(state): State<Arc<AppState>>) -> Response {
    const BATCH: i64 = 200;
    let result = async {
        let mut jobs = Vec::new();
        let mut skipped = 0usize;
        let mut after: Option<String> = None;
        loop {
            let rows = state
                .store
                .list_jobs(after.as_deref(), BATCH)
                .await
                .map_err(internal)?;
            for row in &rows {
                after = Some(row.job_id.clone());
                let Ok(job) = model::parse_job(&row.definition) else {
                    skipped += 1;
                    continue;
                };
                let schedules = state
                    .store
                    .list_schedules(Some(&job.id))
                    .await
                    .map_err(internal)?;
                // V1 knew one schedule per job; one with more is left out.
                let mapped = match schedules.as_slice() {
                    [] => as_v1(&job, None),
                    [one] => as_v1(&job, Some(one)),
                    _ => None,
                };
                match mapped {
                    Some(v) => jobs.push(v),
                    None => skipped += 1,
                }
            }
            if (rows.len() as i64) < BATCH {
                break;
            }
        }
        Ok::<_, Problem>(Json(json!({ "jobs": jobs, "not_v1": skipped })).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The body of POST /api/v2/jobs/schedule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobScheduleRequest {
    /// A stored job.
    #[serde(default)]
    job_id: Option<String>,
    /// Or a job definition, stored (a new version if it changed) first.
    #[serde(default)]
    job: Option<Value>,
    /// The fields of POST /api/v2/schedules; `job_id` may be left out
    /// (it is the job's), and `id` too (it is then the job's id).
    schedule: Map<String, Value>,
}

fn prefixed(base: &str, issues: Vec<Issue>) -> Vec<Issue> {
    issues
        .into_iter()
        .map(|i| Issue {
            path: model::join_path(base, &i.path),
            message: i.message,
        })
        .collect()
}

/// POST /api/v2/jobs/schedule — stores the job (when given) and a schedule
/// for it: 201 with both ids and the next fires. Both are checked before
/// either is stored.
#[utoipa::path(
    post,
    path = "/api/v2/jobs/schedule",
    extensions(("x-required-permission" = json!(Permission::Operate))),
    tag = "schedules",
    summary = "Store a job (or name a stored one) and a schedule for it, in one call",
    description = "Body: `{job_id | job, schedule}`; `schedule` has the fields of POST /api/v2/schedules, `job_id` and `id` optional (both default to the job's id). Both are checked before either is stored.",
    request_body(content = Object),
    responses(
        (status = 201, description = "`{job_id, job_version, schedule_id, next_fires, schedule}`; `Location` is the schedule", body = Object),
        (status = 400, description = "The body is not JSON (`malformed_json`) or not valid (`validation_failed`, every issue with its path)", content_type = "application/problem+json", body = doc::Problem),
        (status = 409, description = "A schedule with this id exists (`schedule_exists`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn schedule_job(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let result = async {
        let request: JobScheduleRequest = parse_body(&body)?;
        let (job_id, job) = match (request.job_id, request.job) {
            (Some(id), None) => (id, None),
            (None, Some(def)) => {
                let job = model::job_from_value(def)
                    .map_err(|issues| Problem::validation(prefixed("job", issues)))?;
                let issues = crate::engine::validate_job(&job, &state.runtime).await;
                if !issues.is_empty() {
                    return Err(Problem::validation(prefixed("job", issues)));
                }
                (job.id.clone(), Some(job))
            }
            _ => {
                return Err(Problem::validation(vec![Issue {
                    path: String::new(),
                    message: "give either job_id (a stored job) or job (a definition)".into(),
                }]));
            }
        };
        let mut schedule = request.schedule;
        match schedule.get("job_id") {
            None => {
                schedule.insert("job_id".into(), json!(job_id));
            }
            Some(v) if v == &json!(job_id) => {}
            Some(_) => {
                return Err(Problem::validation(vec![Issue {
                    path: "schedule.job_id".into(),
                    message: format!("must be the job's id, {job_id:?}, or left out"),
                }]));
            }
        }
        schedule
            .entry("id")
            .or_insert_with(|| json!(job_id.clone()));
        let spec: ScheduleSpec = serde_path_to_error::deserialize(Value::Object(schedule))
            .map_err(|e| {
                let path = meridian_json_path::JsonPath::from_serde(e.path()).to_string();
                Problem::validation(vec![Issue {
                    path: model::join_path("schedule", &path),
                    message: e.into_inner().to_string(),
                }])
            })?;
        let def = compile_spec(spec)
            .map_err(|issues| Problem::validation(prefixed("schedule", issues)))?;
        if job.is_none()
            && state
                .store
                .get_job(&job_id)
                .await
                .map_err(internal)?
                .is_none()
        {
            return Err(Problem::validation(vec![Issue {
                path: "job_id".into(),
                message: format!("no job has the id {job_id:?}"),
            }]));
        }
        if state
            .store
            .get_schedule(&def.spec.id)
            .await
            .map_err(internal)?
            .is_some()
        {
            return Err(conflict(
                "schedule_exists",
                "A schedule with this id already exists",
                format!("schedule {:?} already exists", def.spec.id),
            ));
        }
        let version = match &job {
            Some(job) => Some(store_job(&state, job).await?),
            None => None,
        };
        let (row, view) = insert_new(&state, &def).await?;
        Ok((
            StatusCode::CREATED,
            [(header::LOCATION, format!("/api/v2/schedules/{}", row.id))],
            Json(json!({
                "job_id": job_id,
                "job_version": version,
                "schedule_id": row.id,
                "next_fires": view["next_fires"],
                "schedule": view,
            })),
        )
            .into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_become_ids() {
        assert_eq!(slug("Nightly Cleanup!").as_deref(), Some("nightly-cleanup"));
        assert_eq!(slug("  --ETL: load (v2) ").as_deref(), Some("etl-load-v2"));
        assert_eq!(slug("äöü"), None);
        assert_eq!(slug(&"x".repeat(200)).unwrap().len(), MAX_SLUG);
    }

    #[test]
    fn v2_paths_read_as_v1_fields() {
        assert_eq!(v1_path("steps[0].config.query"), "command");
        assert_eq!(v1_path("steps[0].config.script"), "command");
        assert_eq!(v1_path("steps[0].config.connection"), "connection");
        assert_eq!(v1_path("timezone"), "timezone");
    }
}
