//! Jobs and executions: store a job (a new version on each change),
//! validate one, run one now, watch and cancel executions.
//!
//! Bodies are parsed here rather than by axum's `Json` extractor so that a
//! malformed or mistyped body gets a problem document naming the JSON path.

use super::openapi::schemas as doc;
use super::{AppState, Problem};
use crate::engine::service::{CancelOutcome, SubmitError};
use crate::engine::view;
use crate::metrics::QueueWindow;
use crate::model::{self, Issue};
use crate::queue::QueueStats;
use crate::store::ExecutionFilter;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// Parses a JSON body into `T`; errors name the path where it broke.
pub(super) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let path = if path == "." { String::new() } else { path };
        if inner.is_syntax() || inner.is_eof() {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "The request body is not valid JSON",
            )
            .with_detail(inner.to_string())
        } else {
            Problem::validation(vec![Issue {
                path,
                message: inner.to_string(),
            }])
        }
    })
}

/// The problem document for a failure that is not the caller's: 503
/// `store_unavailable` (with `Retry-After`) when the store is in one of its
/// passing conditions ([`crate::store::Unavailable`]: unreachable, disk
/// full, read-only, busy), 500 `internal` otherwise. Either way the client
/// gets no internal text; the log gets all of it.
pub(super) fn internal<E: std::fmt::Display + 'static>(e: E) -> Problem {
    if let Some(why) = store_unavailable(&e) {
        tracing::warn!(error = %e, reason = why.describe(), "request refused: the store is unavailable");
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "The store is unavailable; retry later",
        )
        .with_detail(why.describe());
    }
    tracing::error!(error = %e, "request failed");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "The request could not be completed",
    )
}

/// The store's passing condition behind an error, if that is what it is:
/// a store error itself, the engine's or the queues' wrapping of one, or
/// one in an `anyhow` chain.
fn store_unavailable(e: &dyn std::any::Any) -> Option<crate::store::Unavailable> {
    use crate::store::StoreError;
    if let Some(e) = e.downcast_ref::<StoreError>() {
        return e.unavailable();
    }
    if let Some(crate::engine::EngineError::Store(e)) =
        e.downcast_ref::<crate::engine::EngineError>()
    {
        return e.unavailable();
    }
    if let Some(crate::engine::service::SubmitError::Store(e)) =
        e.downcast_ref::<crate::engine::service::SubmitError>()
    {
        return e.unavailable();
    }
    if let Some(e) = e.downcast_ref::<anyhow::Error>() {
        return e
            .chain()
            .find_map(|c| c.downcast_ref::<StoreError>())
            .and_then(StoreError::unavailable);
    }
    None
}

/// Validates a job and stores it; returns the version.
pub(super) async fn store_job(state: &AppState, job: &model::Job) -> Result<i64, Problem> {
    let issues = crate::engine::validate_job(job, &state.runtime).await;
    if !issues.is_empty() {
        return Err(Problem::validation(issues));
    }
    let text = serde_json::to_string(job).map_err(internal)?;
    state
        .store
        .put_job(&job.id, &text, state.now().timestamp_micros())
        .await
        .map_err(internal)
}

fn job_body(body: &[u8]) -> Result<model::Job, Problem> {
    let value: Value = parse_body(body)?;
    model::job_from_value(value).map_err(Problem::validation)
}

/// POST /api/v2/jobs — create a job, or a new version of it.
#[utoipa::path(
    post,
    path = "/api/v2/jobs",
    tag = "jobs",
    summary = "Create a job, or a new version of it",
    request_body(content = doc::Job, description = "The job definition"),
    responses(
        (status = 200, description = "Stored; `Location` is the job", body = doc::JobStored, links(
            ("GetJob" = (operation_id = "get_job", parameters(("id" = "$response.body#/id")), description = "The job just stored")),
            ("DeleteJob" = (operation_id = "delete_job", parameters(("id" = "$response.body#/id")), description = "Delete the job just stored")),
            ("ListJobVersions" = (operation_id = "list_job_versions", parameters(("id" = "$response.body#/id")), description = "The job's versions")),
        )),
        (status = 400, description = "The body is not JSON (`malformed_json`) or not valid (`validation_failed`, every issue with its JSON path)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn put_job(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let result = async {
        let job = job_body(&body)?;
        let version = store_job(&state, &job).await?;
        Ok::<_, Problem>(
            (
                StatusCode::OK,
                [(header::LOCATION, format!("/api/v2/jobs/{}", job.id))],
                Json(json!({ "id": job.id, "version": version })),
            )
                .into_response(),
        )
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// A stored job version as GET /api/v2/jobs/{id} and its versions show it.
fn version_view(row: &crate::store::JobVersionRow) -> Value {
    let definition: Value = serde_json::from_str(&row.definition).unwrap_or(Value::Null);
    json!({
        "id": row.job_id,
        "version": row.version,
        "created_at": view::instant(Some(row.created_at_us)),
        "definition": definition,
    })
}

/// GET /api/v2/jobs/{id}
#[utoipa::path(
    get,
    path = "/api/v2/jobs/{id}",
    tag = "jobs",
    summary = "Read a job (its current version)",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "The current version", body = doc::JobVersion),
        (status = 404, description = "No such live job (`job_not_found`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn get_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    match state.store.get_job(&id).await {
        Ok(Some(row)) => Json(version_view(&row)).into_response(),
        Ok(None) => {
            Problem::new(StatusCode::NOT_FOUND, "job_not_found", "No such job").into_response()
        }
        Err(e) => internal(e).into_response(),
    }
}

/// POST /api/v2/jobs/validate — every problem, stores nothing.
#[utoipa::path(
    post,
    path = "/api/v2/jobs/validate",
    tag = "jobs",
    summary = "Check a job definition; stores nothing",
    request_body(content = doc::Job, description = "The job definition"),
    responses(
        (status = 200, description = "Every problem, if any", body = doc::Validation),
        (status = 400, description = "The body is not JSON (`malformed_json`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn validate_job(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let job = match job_body(&body) {
        Ok(job) => job,
        Err(p) if p.code == "validation_failed" => {
            return Json(json!({ "valid": false, "errors": p.errors })).into_response();
        }
        Err(p) => return p.into_response(),
    };
    let issues = crate::engine::validate_job(&job, &state.runtime).await;
    Json(json!({ "valid": issues.is_empty(), "errors": issues })).into_response()
}

/// The body of POST /api/v2/jobs/execute.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecuteRequest {
    /// A stored job.
    #[serde(default)]
    job_id: Option<String>,
    /// Or a job definition, stored (as a new version if it changed) first.
    #[serde(default)]
    job: Option<Value>,
    #[serde(default)]
    params: Map<String, Value>,
}

/// POST /api/v2/jobs/execute — run now: 202 with the execution id.
#[utoipa::path(
    post,
    path = "/api/v2/jobs/execute",
    tag = "executions",
    summary = "Run a job now",
    request_body(content = doc::ExecuteRequest),
    responses(
        (status = 202, description = "Queued; `Location` is the execution", body = doc::Accepted, links(
            ("GetExecution" = (operation_id = "get_execution", parameters(("id" = "$response.body#/execution_id")), description = "The execution just queued")),
            ("CancelExecution" = (operation_id = "cancel_execution", parameters(("id" = "$response.body#/execution_id")), description = "Cancel the execution just queued")),
        )),
        (status = 400, description = "The body is not JSON (`malformed_json`) or not valid (`validation_failed`, every issue with its JSON path)", content_type = "application/problem+json", body = doc::Problem),
        (status = 503, description = "The node is shutting down (`shutting_down`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn execute(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let result = async {
        let request: ExecuteRequest = parse_body(&body)?;
        let job_id = match (request.job_id, request.job) {
            (Some(id), None) => id,
            (None, Some(def)) => {
                let job = model::job_from_value(def).map_err(|issues| {
                    Problem::validation(
                        issues
                            .into_iter()
                            .map(|i| Issue {
                                path: model::join_path("job", &i.path),
                                message: i.message,
                            })
                            .collect(),
                    )
                })?;
                store_job(&state, &job).await.map_err(|mut p| {
                    for i in &mut p.errors {
                        i.path = model::join_path("job", &i.path);
                    }
                    p
                })?;
                job.id
            }
            _ => {
                return Err(Problem::validation(vec![Issue {
                    path: String::new(),
                    message: "give either job_id (a stored job) or job (a definition)".into(),
                }]));
            }
        };
        let id = state
            .executions
            .submit(&job_id, &request.params, "api")
            .await
            .map_err(|e| match e {
                SubmitError::JobNotFound(_) => Problem::validation(vec![Issue {
                    path: "job_id".into(),
                    message: format!("no job has the id {job_id:?}"),
                }]),
                SubmitError::Invalid(issues) => Problem::validation(issues),
                SubmitError::ShuttingDown => Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting_down",
                    "The node is shutting down",
                ),
                other => internal(other),
            })?;
        let url = format!("/api/v2/executions/{id}");
        Ok::<_, Problem>(
            (
                StatusCode::ACCEPTED,
                [(header::LOCATION, url.clone())],
                Json(json!({ "execution_id": id, "status": "queued", "status_url": url })),
            )
                .into_response(),
        )
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// GET /api/v2/executions/{id} — with step runs and attempts.
#[utoipa::path(
    get,
    path = "/api/v2/executions/{id}",
    tag = "executions",
    summary = "Read an execution with its step runs and attempts",
    params(("id" = String, Path, description = "The execution id")),
    responses(
        (status = 200, description = "The execution", body = doc::Execution),
        (status = 404, description = "No such execution (`execution_not_found`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn get_execution(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    match view::detail(&state.store, &id).await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => Problem::new(
            StatusCode::NOT_FOUND,
            "execution_not_found",
            "No such execution",
        )
        .into_response(),
        Err(e) => internal(e).into_response(),
    }
}

/// GET /api/v2/executions?job_id=&status=&schedule_id=&limit=&before=
#[utoipa::path(
    get,
    path = "/api/v2/executions",
    tag = "executions",
    summary = "List executions, newest first",
    params(doc::ExecutionListQuery),
    responses(
        (status = 200, description = "A page of executions", body = doc::ExecutionList, links(
            ("GetFirstExecution" = (operation_id = "get_execution", parameters(("id" = "$response.body#/executions/0/id")), description = "The first execution listed")),
            ("CancelFirstExecution" = (operation_id = "cancel_execution", parameters(("id" = "$response.body#/executions/0/id")), description = "Cancel the first execution listed")),
        )),
        (status = 400, description = "A query parameter is not valid or not known (`validation_failed`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn list_executions(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut issues = Vec::new();
    let mut filter = ExecutionFilter {
        limit: 50,
        ..ExecutionFilter::default()
    };
    for (k, v) in &q {
        match k.as_str() {
            "job_id" => filter.job_id = Some(v.clone()),
            "schedule_id" => filter.schedule_id = Some(v.clone()),
            "before" => filter.before_id = Some(v.clone()),
            "status" => {
                if crate::engine::ExecutionStatus::parse(v).is_none() {
                    issues.push(Issue {
                        path: "status".into(),
                        message: format!(
                            "{v:?} is not one of queued, running, succeeded, failed, cancelled, timed_out"
                        ),
                    });
                }
                filter.status = Some(v.clone());
            }
            "limit" => {
                if let Some(n) = super::limit_param(v, &mut issues) {
                    filter.limit = n;
                }
            }
            _ => issues.push(super::unknown_param(k)),
        }
    }
    if !issues.is_empty() {
        return Problem::validation(issues).into_response();
    }
    match state.store.list_executions(&filter).await {
        Ok(rows) => {
            let next = (rows.len() as i64 == filter.limit)
                .then(|| rows.last().map(|r| r.id.clone()))
                .flatten();
            Json(json!({
                "executions": rows.iter().map(view::summary).collect::<Vec<_>>(),
                "next_before": next,
            }))
            .into_response()
        }
        Err(e) => internal(e).into_response(),
    }
}

/// POST /api/v2/executions/{id}/cancel
#[utoipa::path(
    post,
    path = "/api/v2/executions/{id}/cancel",
    tag = "executions",
    summary = "Cancel an execution",
    params(("id" = String, Path, description = "The execution id")),
    responses(
        (status = 200, description = "Cancelled (it had not started)", body = doc::CancelResult),
        (status = 202, description = "Cancelling (it is running)", body = doc::CancelResult),
        (status = 404, description = "No such execution (`execution_not_found`)", content_type = "application/problem+json", body = doc::Problem),
        (status = 409, description = "It has already finished (`execution_finished`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn cancel_execution(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    match state.executions.cancel(&id).await {
        Ok(Some(CancelOutcome::Cancelled)) => {
            Json(json!({ "execution_id": id, "status": "cancelled" })).into_response()
        }
        Ok(Some(CancelOutcome::Cancelling)) => (
            StatusCode::ACCEPTED,
            Json(json!({ "execution_id": id, "status": "cancelling" })),
        )
            .into_response(),
        Ok(Some(CancelOutcome::AlreadyFinished(status))) => Problem::new(
            StatusCode::CONFLICT,
            "execution_finished",
            "The execution has already finished",
        )
        .with_detail(format!("it ended {}", status.as_str()))
        .into_response(),
        Ok(None) => Problem::new(
            StatusCode::NOT_FOUND,
            "execution_not_found",
            "No such execution",
        )
        .into_response(),
        Err(e) => internal(e).into_response(),
    }
}

fn job_not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "job_not_found", "No such job")
}

/// The most rows read from the store per round when listing jobs.
const JOB_SCAN_BATCH: i64 = 200;

/// One job as `GET /api/v2/jobs` lists it.
fn job_item(row: &crate::store::JobVersionRow) -> Result<Value, Problem> {
    let job = model::parse_job(&row.definition).map_err(|issues| {
        internal(format!(
            "stored job {:?} version {} cannot be read: {issues:?}",
            row.job_id, row.version
        ))
    })?;
    Ok(json!({
        "id": row.job_id,
        "version": row.version,
        "name": job.name,
        "timezone": job.timezone,
        "owner": job.owner,
        "tags": job.tags,
        "step_count": job.steps.len(),
        "created_at": view::instant(Some(row.created_at_us)),
    }))
}

/// GET /api/v2/jobs?limit=&after=&tag=&owner= — the current versions of
/// live jobs in id order.
///
/// `after` is a keyset cursor (the `next_after` of the previous page).
/// `tag` and `owner` filter on the stored definitions: the store is read
/// page after page until `limit` jobs match or it is exhausted, so a page
/// is short only when it is the last. `next_after` is `null` on the last
/// page.
#[utoipa::path(
    get,
    path = "/api/v2/jobs",
    tag = "jobs",
    summary = "List the current versions of live jobs",
    params(doc::JobListQuery),
    responses(
        (status = 200, description = "A page of jobs in id order", body = doc::JobList, links(
            ("GetFirstJob" = (operation_id = "get_job", parameters(("id" = "$response.body#/jobs/0/id")), description = "The first job listed")),
            ("DeleteFirstJob" = (operation_id = "delete_job", parameters(("id" = "$response.body#/jobs/0/id")), description = "Delete the first job listed")),
        )),
        (status = 400, description = "A query parameter is not valid or not known (`validation_failed`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn list_jobs(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut issues = Vec::new();
    let mut limit: usize = 50;
    let mut after = None;
    let mut tag = None;
    let mut owner = None;
    for (k, v) in &q {
        match k.as_str() {
            "after" => after = Some(v.clone()),
            "tag" => tag = Some(v.as_str()),
            "owner" => owner = Some(v.as_str()),
            "limit" => {
                if let Some(n) = super::limit_param(v, &mut issues) {
                    limit = usize::try_from(n).unwrap_or(limit);
                }
            }
            _ => issues.push(super::unknown_param(k)),
        }
    }
    if !issues.is_empty() {
        return Problem::validation(issues).into_response();
    }
    let filtered = tag.is_some() || owner.is_some();
    let batch = if filtered {
        JOB_SCAN_BATCH
    } else {
        limit as i64
    };
    let result = async {
        let mut items = Vec::new();
        let mut cursor = after;
        let mut more = false;
        'scan: loop {
            let rows = state
                .store
                .list_jobs(cursor.as_deref(), batch)
                .await
                .map_err(internal)?;
            let exhausted = (rows.len() as i64) < batch;
            for (i, row) in rows.iter().enumerate() {
                cursor = Some(row.job_id.clone());
                let item = job_item(row)?;
                let tag_ok = tag.is_none_or(|t| {
                    item["tags"]
                        .as_array()
                        .is_some_and(|tags| tags.iter().any(|x| x == t))
                });
                let owner_ok = owner.is_none_or(|o| item["owner"] == o);
                if tag_ok && owner_ok {
                    items.push(item);
                    if items.len() == limit {
                        more = !(exhausted && i + 1 == rows.len());
                        break 'scan;
                    }
                }
            }
            if exhausted {
                break;
            }
        }
        let next = if more { cursor } else { None };
        Ok::<_, Problem>(Json(json!({ "jobs": items, "next_after": next })).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// GET /api/v2/jobs/{id}/versions — every version, oldest first; a
/// deleted job's history too.
#[utoipa::path(
    get,
    path = "/api/v2/jobs/{id}/versions",
    tag = "jobs",
    summary = "List a job's versions, oldest first (a deleted job's too)",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "The versions", body = doc::JobVersions),
        (status = 404, description = "No such job (`job_not_found`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn list_job_versions(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let rows = state.store.list_job_versions(&id).await.map_err(internal)?;
        if rows.is_empty() {
            return Err(job_not_found());
        }
        let current = state.store.get_job(&id).await.map_err(internal)?;
        let versions: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "version": r.version,
                    "created_at": view::instant(Some(r.created_at_us)),
                })
            })
            .collect();
        Ok::<_, Problem>(
            Json(json!({
                "id": id,
                "deleted": current.is_none(),
                "current_version": current.map(|c| c.version),
                "versions": versions,
            }))
            .into_response(),
        )
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// GET /api/v2/jobs/{id}/versions/{version} — that version's definition,
/// also of a deleted job.
#[utoipa::path(
    get,
    path = "/api/v2/jobs/{id}/versions/{version}",
    tag = "jobs",
    summary = "Read one version of a job (a deleted job's too)",
    params(("id" = String, Path, description = "The job id"), ("version" = i64, Path, minimum = 1, description = "The version, from 1")),
    responses(
        (status = 200, description = "That version", body = doc::JobVersion),
        (status = 400, description = "`version` is not a whole number from 1 (`validation_failed`)", content_type = "application/problem+json", body = doc::Problem),
        (status = 404, description = "No such job (`job_not_found`) or version (`version_not_found`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn get_job_version(
    State(state): State<Arc<AppState>>,
    Path((id, version)): Path<(String, String)>,
) -> Response {
    let result = async {
        let version = match version.parse::<i64>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(Problem::validation(vec![Issue {
                    path: "version".into(),
                    message: format!("{version:?} is not a whole number from 1"),
                }]));
            }
        };
        let row = match state
            .store
            .get_job_version(&id, version)
            .await
            .map_err(internal)?
        {
            Some(row) => row,
            None => {
                let known = !state
                    .store
                    .list_job_versions(&id)
                    .await
                    .map_err(internal)?
                    .is_empty();
                return Err(if known {
                    Problem::new(
                        StatusCode::NOT_FOUND,
                        "version_not_found",
                        "The job has no such version",
                    )
                } else {
                    job_not_found()
                });
            }
        };
        Ok::<_, Problem>(Json(version_view(&row)).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// DELETE /api/v2/jobs/{id} — soft delete: 204. Its versions and its
/// executions stay readable. Refused with 409 `job_has_schedules` while
/// schedules reference it.
#[utoipa::path(
    delete,
    path = "/api/v2/jobs/{id}",
    tag = "jobs",
    summary = "Delete a job (soft: its versions and executions stay readable)",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such live job (`job_not_found`)", content_type = "application/problem+json", body = doc::Problem),
        (status = 409, description = "Schedules still reference it (`job_has_schedules`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn delete_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        if state.store.get_job(&id).await.map_err(internal)?.is_none() {
            return Err(job_not_found());
        }
        let schedules = state
            .store
            .list_schedules(Some(&id))
            .await
            .map_err(internal)?;
        if !schedules.is_empty() {
            let ids: Vec<&str> = schedules.iter().map(|s| s.id.as_str()).collect();
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "job_has_schedules",
                "Schedules still reference the job",
            )
            .with_detail(format!("delete these schedules first: {}", ids.join(", "))));
        }
        state
            .store
            .delete_job(&id, state.now().timestamp_micros())
            .await
            .map_err(|e| match e {
                crate::store::StoreError::NotFound { .. } => job_not_found(),
                other => internal(other),
            })?;
        Ok::<_, Problem>(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The 1- and 5-minute windows of a queue's finished executions.
#[derive(Debug, Serialize)]
struct RecentWindows {
    #[serde(rename = "1m")]
    one_minute: QueueWindow,
    #[serde(rename = "5m")]
    five_minutes: QueueWindow,
}

/// One queue in `GET /api/v2/queues`: its live figures and, once it has
/// finished an execution, its recent windows.
#[derive(Debug, Serialize)]
struct QueueView {
    #[serde(flatten)]
    stats: QueueStats,
    /// `null` until the queue has finished an execution.
    windows: Option<RecentWindows>,
}

/// GET /api/v2/queues — per-zone queue statistics, ordered by zone.
#[utoipa::path(
    get,
    path = "/api/v2/queues",
    tag = "executions",
    summary = "Per-zone queue statistics",
    responses(
        (status = 200, description = "The queues, by zone", body = doc::Queues),
    ),
)]
pub(super) async fn list_queues(State(state): State<Arc<AppState>>) -> Response {
    let mut windows: HashMap<String, RecentWindows> = state
        .metrics
        .queues()
        .into_iter()
        .map(|q| {
            (
                q.zone,
                RecentWindows {
                    one_minute: q.windows.one_minute,
                    five_minutes: q.windows.five_minutes,
                },
            )
        })
        .collect();
    let queues: Vec<QueueView> = state
        .executions
        .queues()
        .stats()
        .into_iter()
        .map(|stats| {
            let windows = windows.remove(&stats.zone);
            QueueView { stats, windows }
        })
        .collect();
    Json(json!({ "queues": queues })).into_response()
}

/// How many running executions `GET /api/v2/execution/status` lists.
const STATUS_RUNNING_LIMIT: i64 = 100;

/// GET /api/v2/execution/status — what the node is doing now: its queues
/// (compact), up to 100 running executions (newest first) and how many
/// runs wait in its queues.
#[utoipa::path(
    get,
    path = "/api/v2/execution/status",
    tag = "executions",
    summary = "What the node is doing now",
    responses(
        (status = 200, description = "Queues, running executions, queued runs", body = doc::NodeStatus),
    ),
)]
pub(super) async fn execution_status(State(state): State<Arc<AppState>>) -> Response {
    let stats = state.executions.queues().stats();
    let queued: usize = stats.iter().map(|s| s.depth).sum();
    let queues: Vec<Value> = stats
        .iter()
        .map(|s| {
            json!({
                "zone": s.zone,
                "depth": s.depth,
                "running": s.running,
                "workers": s.workers,
                "oldest_wait_ms": s.oldest_wait_ms,
            })
        })
        .collect();
    let filter = ExecutionFilter {
        status: Some("running".into()),
        limit: STATUS_RUNNING_LIMIT,
        ..ExecutionFilter::default()
    };
    match state.store.list_executions(&filter).await {
        Ok(rows) => {
            let running: Vec<Value> = rows
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id,
                        "job_id": r.job_id,
                        "started_at": view::instant(r.started_at_us),
                        "timezone": r.timezone,
                    })
                })
                .collect();
            Json(json!({
                "generated_at": view::instant(Some(state.now().timestamp_micros())),
                "queues": queues,
                "running": running,
                "running_truncated": rows.len() as i64 == STATUS_RUNNING_LIMIT,
                "queued": queued,
            }))
            .into_response()
        }
        Err(e) => internal(e).into_response(),
    }
}
