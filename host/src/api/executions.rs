//! Executions: run a job now, read, list and cancel executions, and what
//! the node is doing now.

use super::jobs::store_job;
use super::openapi::schemas as doc;
use super::problem::{internal, parse_body};
use super::{AppState, Problem};
use crate::auth::Permission;
use crate::engine::service::{CancelOutcome, SubmitError};
use crate::engine::view;
use crate::model::{self, Issue};
use crate::store::ExecutionFilter;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

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
    extensions(("x-required-permission" = json!(Permission::Operate))),
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
    extensions(("x-required-permission" = json!(Permission::Read))),
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
    extensions(("x-required-permission" = json!(Permission::Read))),
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
    extensions(("x-required-permission" = json!(Permission::Operate))),
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

/// How many running executions `GET /api/v2/execution/status` lists.
const STATUS_RUNNING_LIMIT: i64 = 100;

/// GET /api/v2/execution/status — what the node is doing now: its queues
/// (compact), up to 100 running executions (newest first) and how many
/// runs wait in its queues.
#[utoipa::path(
    get,
    path = "/api/v2/execution/status",
    extensions(("x-required-permission" = json!(Permission::Read))),
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
