//! Jobs: store one (a new version on each change), read, list and delete
//! them with their versions, validate one against the loaded plugins.
//!
//! Bodies are parsed by [`super::problem::parse_body`] rather than by
//! axum's `Json` extractor, so that a malformed or mistyped body gets a
//! problem document naming the JSON path.

use super::openapi::schemas as doc;
use super::problem::{internal, parse_body};
use super::{AppState, Problem};
use crate::auth::Permission;
use crate::engine::view;
use crate::model::{self, Issue};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

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
    extensions(("x-required-permission" = json!(Permission::Operate))),
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
    extensions(("x-required-permission" = json!(Permission::Read))),
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
    extensions(("x-required-permission" = json!(Permission::Read))),
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
    extensions(("x-required-permission" = json!(Permission::Read))),
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
    extensions(("x-required-permission" = json!(Permission::Read))),
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
    extensions(("x-required-permission" = json!(Permission::Read))),
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
    extensions(("x-required-permission" = json!(Permission::Operate))),
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
