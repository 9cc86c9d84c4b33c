//! Schedules: create, list, read, replace and delete them, and pause,
//! resume, trigger and backfill one through the node's scheduler.
//!
//! The store holds the definition; after each change the scheduler is told
//! to re-read it (or to drop it), so that the loop fires what is stored.

use super::openapi::schemas as doc;
use super::problem::{internal, parse_body};
use super::{AppState, Problem};
use crate::auth::Permission;
use crate::engine::view;
use crate::model::schedule::{ScheduleDef, ScheduleSpec};
use crate::model::{Issue, valid_id};
use crate::scheduler::SchedulerError;
use crate::store::{ScheduleRow, StoreError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// How many upcoming fires a schedule's view lists.
const NEXT_FIRES: usize = 5;

fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "schedule_not_found",
        "No such schedule",
    )
}

/// Scheduler errors as problems: a missing schedule is a 404, the rest are
/// logged and answered with a 500.
fn scheduler_problem(e: SchedulerError) -> Problem {
    match e {
        SchedulerError::NotFound(_) | SchedulerError::Store(StoreError::NotFound { .. }) => {
            not_found()
        }
        other => internal(other),
    }
}

fn store_problem(e: StoreError) -> Problem {
    match e {
        StoreError::NotFound { .. } => not_found(),
        other => internal(other),
    }
}

fn respond(result: Result<Response, Problem>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The schedule as the API shows it: its spec, its timestamps and its
/// next fires (none while it is paused).
fn schedule_view(row: &ScheduleRow, def: &ScheduleDef, now: DateTime<Utc>) -> Value {
    let mut value = serde_json::to_value(&def.spec).unwrap_or(Value::Null);
    let next_fires = if def.spec.enabled {
        // The scheduler fires at `start_at` itself, so start just before it.
        let from = match def.spec.start_at {
            Some(start) => now.max(start - TimeDelta::microseconds(1)),
            None => now,
        };
        let mut fires = crate::schedule::preview(&def.schedule, from, NEXT_FIRES).fires;
        if let Some(end) = def.spec.end_at {
            fires.retain(|f| f.utc <= end);
        }
        fires
    } else {
        Vec::new()
    };
    if let Value::Object(map) = &mut value {
        map.insert("created_at".into(), view::instant(Some(row.created_at_us)));
        map.insert("updated_at".into(), view::instant(Some(row.updated_at_us)));
        map.insert(
            "next_fires".into(),
            serde_json::to_value(next_fires).unwrap_or(Value::Null),
        );
    }
    value
}

/// A stored row as a view; a row that no longer compiles is a 500.
fn row_view(row: &ScheduleRow, now: DateTime<Utc>) -> Result<Value, Problem> {
    let def = ScheduleDef::from_row(row).map_err(|issues| {
        internal(format!(
            "stored schedule {:?} cannot be read: {issues:?}",
            row.id
        ))
    })?;
    Ok(schedule_view(row, &def, now))
}

/// Checks every field of a schedule without looking at the store (its
/// job may be about to be stored: POST /api/v2/jobs/schedule).
pub(super) fn compile_spec(spec: ScheduleSpec) -> Result<ScheduleDef, Vec<Issue>> {
    // `/api/v2/schedules/preview` is the preview endpoint.
    let reserved = spec.id == "preview";
    let compiled = spec.compile();
    let mut issues = match &compiled {
        Ok(_) => Vec::new(),
        Err(issues) => issues.clone(),
    };
    if reserved {
        issues.push(Issue {
            path: "id".into(),
            message: "\"preview\" is reserved (GET /api/v2/schedules/preview)".into(),
        });
    }
    match compiled {
        Ok(def) if issues.is_empty() => Ok(def),
        _ => Err(issues),
    }
}

/// Parses and checks a schedule body: every field, and that its job is
/// stored.
async fn checked_spec(state: &AppState, body: &[u8]) -> Result<ScheduleDef, Problem> {
    let spec: ScheduleSpec = parse_body(body)?;
    let job_id = spec.job_id.clone();
    let compiled = compile_spec(spec);
    let mut issues = match &compiled {
        Ok(_) => Vec::new(),
        Err(issues) => issues.clone(),
    };
    if valid_id(&job_id)
        && state
            .store
            .get_job(&job_id)
            .await
            .map_err(internal)?
            .is_none()
    {
        issues.push(Issue {
            path: "job_id".into(),
            message: format!("no job has the id {job_id:?}"),
        });
    }
    match compiled {
        Ok(def) if issues.is_empty() => Ok(def),
        _ => Err(Problem::validation(issues)),
    }
}

/// POST /api/v2/schedules — create a schedule: 201 with its view.
#[utoipa::path(
    post,
    path = "/api/v2/schedules",
    extensions(("x-required-permission" = json!(Permission::Operate))),
    tag = "schedules",
    summary = "Create a schedule",
    request_body(content = doc::ScheduleSpec),
    responses(
        (status = 201, description = "Created; `Location` is the schedule", body = doc::Schedule),
        (status = 400, description = "The body is not JSON (`malformed_json`) or not valid (`validation_failed`, every issue with its JSON path)", content_type = "application/problem+json", body = doc::Problem),
        (status = 409, description = "A schedule with this id exists (`schedule_exists`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn create_schedule(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    respond(
        async {
            let def = checked_spec(&state, &body).await?;
            let (row, view) = insert_new(&state, &def).await?;
            Ok((
                StatusCode::CREATED,
                [(header::LOCATION, format!("/api/v2/schedules/{}", row.id))],
                Json(view),
            )
                .into_response())
        }
        .await,
    )
}

/// Stores a new, checked schedule (409 `schedule_exists` when its id is
/// taken) and has the scheduler load it; its row and its view.
pub(super) async fn insert_new(
    state: &AppState,
    def: &ScheduleDef,
) -> Result<(ScheduleRow, Value), Problem> {
    let now = state.now();
    let now_us = now.timestamp_micros();
    // The cursor at now: a new schedule does not catch up on its past.
    let row = def.to_row(now_us, now_us, Some(now_us));
    state
        .store
        .insert_schedule(&row)
        .await
        .map_err(|e| match e {
            StoreError::Conflict { id, .. } => Problem::new(
                StatusCode::CONFLICT,
                "schedule_exists",
                "A schedule with this id already exists",
            )
            .with_detail(format!("schedule {id:?} already exists")),
            other => internal(other),
        })?;
    state
        .executions
        .scheduler()
        .reload(&row.id)
        .await
        .map_err(scheduler_problem)?;
    let view = schedule_view(&row, def, now);
    Ok((row, view))
}

/// GET /api/v2/schedules?job_id=&limit=&after=
#[utoipa::path(
    get,
    path = "/api/v2/schedules",
    extensions(("x-required-permission" = json!(Permission::Read))),
    tag = "schedules",
    summary = "List schedules in id order",
    params(doc::ScheduleListQuery),
    responses(
        (status = 200, description = "A page of schedules", body = doc::ScheduleList),
        (status = 400, description = "A query parameter is not valid or not known (`validation_failed`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn list_schedules(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut issues = Vec::new();
    let mut job_id = None;
    let mut after = None;
    let mut limit = 100;
    for (k, v) in &q {
        match k.as_str() {
            "job_id" => job_id = Some(v.as_str()),
            "after" => after = Some(v.as_str()),
            "limit" => {
                if let Some(n) = super::limit_param(v, &mut issues) {
                    limit = n;
                }
            }
            _ => issues.push(super::unknown_param(k)),
        }
    }
    if !issues.is_empty() {
        return Problem::validation(issues).into_response();
    }
    respond(
        async {
            let rows = state
                .store
                .list_schedules_page(job_id, after, limit)
                .await
                .map_err(internal)?;
            let now = state.now();
            let views = rows
                .iter()
                .map(|r| row_view(r, now))
                .collect::<Result<Vec<_>, _>>()?;
            let next = (rows.len() as i64 == limit)
                .then(|| rows.last().map(|r| r.id.clone()))
                .flatten();
            Ok(Json(json!({ "schedules": views, "next_after": next })).into_response())
        }
        .await,
    )
}

/// GET /api/v2/schedules/{id}
#[utoipa::path(
    get,
    path = "/api/v2/schedules/{id}",
    extensions(("x-required-permission" = json!(Permission::Read))),
    tag = "schedules",
    summary = "Read a schedule",
    params(("id" = String, Path, description = "The schedule id")),
    responses(
        (status = 200, description = "The schedule", body = doc::Schedule),
        (status = 404, description = "No such schedule (`schedule_not_found`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn get_schedule(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    respond(
        async {
            let row = state
                .store
                .get_schedule(&id)
                .await
                .map_err(internal)?
                .ok_or_else(not_found)?;
            Ok(Json(row_view(&row, state.now())?).into_response())
        }
        .await,
    )
}

/// PUT /api/v2/schedules/{id} — replace the definition, keeping its
/// creation time and cursor.
#[utoipa::path(
    put,
    path = "/api/v2/schedules/{id}",
    extensions(("x-required-permission" = json!(Permission::Operate))),
    tag = "schedules",
    summary = "Replace a schedule's definition (keeps its creation time and cursor)",
    params(("id" = String, Path, description = "The schedule id")), request_body(content = doc::ScheduleSpec),
    responses(
        (status = 200, description = "The schedule", body = doc::Schedule),
        (status = 400, description = "The body is not JSON (`malformed_json`) or not valid (`validation_failed`, every issue with its JSON path)", content_type = "application/problem+json", body = doc::Problem),
        (status = 404, description = "No such schedule (`schedule_not_found`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn replace_schedule(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    respond(
        async {
            let def = checked_spec(&state, &body).await?;
            if def.spec.id != id {
                return Err(Problem::validation(vec![Issue {
                    path: "id".into(),
                    message: format!("must be the id in the URL, {id:?}"),
                }]));
            }
            let existing = state
                .store
                .get_schedule(&id)
                .await
                .map_err(internal)?
                .ok_or_else(not_found)?;
            let now = state.now();
            let row = def.to_row(
                existing.created_at_us,
                now.timestamp_micros(),
                existing.cursor_us,
            );
            state
                .store
                .update_schedule(&row)
                .await
                .map_err(store_problem)?;
            state
                .executions
                .scheduler()
                .reload(&id)
                .await
                .map_err(scheduler_problem)?;
            Ok(Json(schedule_view(&row, &def, now)).into_response())
        }
        .await,
    )
}

/// DELETE /api/v2/schedules/{id} — 204; runs already queued carry on.
#[utoipa::path(
    delete,
    path = "/api/v2/schedules/{id}",
    extensions(("x-required-permission" = json!(Permission::Operate))),
    tag = "schedules",
    summary = "Delete a schedule (runs already queued carry on)",
    params(("id" = String, Path, description = "The schedule id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such schedule (`schedule_not_found`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn delete_schedule(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    respond(
        async {
            state
                .store
                .delete_schedule(&id)
                .await
                .map_err(store_problem)?;
            state
                .executions
                .scheduler()
                .remove(&id)
                .await
                .map_err(internal)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

/// The schedule's view after a change the scheduler made.
async fn current_view(state: &AppState, id: &str) -> Result<Response, Problem> {
    let row = state
        .store
        .get_schedule(id)
        .await
        .map_err(internal)?
        .ok_or_else(not_found)?;
    Ok(Json(row_view(&row, state.now())?).into_response())
}

/// POST /api/v2/schedules/{id}/pause — stops firing; runs already queued
/// carry on.
#[utoipa::path(
    post,
    path = "/api/v2/schedules/{id}/pause",
    extensions(("x-required-permission" = json!(Permission::Operate))),
    tag = "schedules",
    summary = "Pause a schedule",
    params(("id" = String, Path, description = "The schedule id")),
    responses(
        (status = 200, description = "The schedule", body = doc::Schedule),
        (status = 404, description = "No such schedule (`schedule_not_found`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn pause_schedule(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    respond(
        async {
            state
                .executions
                .scheduler()
                .pause(&id)
                .await
                .map_err(scheduler_problem)?;
            current_view(&state, &id).await
        }
        .await,
    )
}

/// POST /api/v2/schedules/{id}/resume — fires again from now; what it
/// missed while paused does not run.
#[utoipa::path(
    post,
    path = "/api/v2/schedules/{id}/resume",
    extensions(("x-required-permission" = json!(Permission::Operate))),
    tag = "schedules",
    summary = "Resume a schedule (from now)",
    params(("id" = String, Path, description = "The schedule id")),
    responses(
        (status = 200, description = "The schedule", body = doc::Schedule),
        (status = 404, description = "No such schedule (`schedule_not_found`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn resume_schedule(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    respond(
        async {
            state
                .executions
                .scheduler()
                .resume(&id)
                .await
                .map_err(scheduler_problem)?;
            current_view(&state, &id).await
        }
        .await,
    )
}

/// POST /api/v2/schedules/{id}/trigger — a manual run now: 202 with the
/// execution id.
#[utoipa::path(
    post,
    path = "/api/v2/schedules/{id}/trigger",
    extensions(("x-required-permission" = json!(Permission::Operate))),
    tag = "schedules",
    summary = "Run a schedule's job now",
    params(("id" = String, Path, description = "The schedule id")),
    responses(
        (status = 202, description = "Queued; `Location` is the execution", body = doc::Accepted),
        (status = 404, description = "No such schedule (`schedule_not_found`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn trigger_schedule(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    respond(
        async {
            let run_id = state
                .executions
                .scheduler()
                .trigger_now(&id)
                .await
                .map_err(scheduler_problem)?;
            let url = format!("/api/v2/executions/{run_id}");
            Ok((
                StatusCode::ACCEPTED,
                [(header::LOCATION, url.clone())],
                Json(json!({ "execution_id": run_id, "status": "queued", "status_url": url })),
            )
                .into_response())
        }
        .await,
    )
}

/// The body of POST /api/v2/schedules/{id}/backfill.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillRequest {
    /// RFC 3339; the first fire may be at this instant.
    from: DateTime<Utc>,
    /// RFC 3339, not in the future; the last fire may be at this instant.
    to: DateTime<Utc>,
}

/// POST /api/v2/schedules/{id}/backfill — records and runs every fire in
/// `[from, to]` not recorded before: 202 with what it did.
#[utoipa::path(
    post,
    path = "/api/v2/schedules/{id}/backfill",
    extensions(("x-required-permission" = json!(Permission::Operate))),
    tag = "schedules",
    summary = "Run every fire of a past range not recorded before",
    params(("id" = String, Path, description = "The schedule id")), request_body(content = doc::BackfillRequest),
    responses(
        (status = 202, description = "What it recorded and queued", body = doc::BackfillReport),
        (status = 400, description = "The body is not JSON (`malformed_json`) or not valid (`validation_failed`, every issue with its JSON path)", content_type = "application/problem+json", body = doc::Problem),
        (status = 404, description = "No such schedule (`schedule_not_found`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn backfill_schedule(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    respond(
        async {
            let request: BackfillRequest = parse_body(&body)?;
            let mut issues = Vec::new();
            if request.from > request.to {
                issues.push(Issue {
                    path: "from".into(),
                    message: "must not be after to".into(),
                });
            }
            if request.to > state.now() {
                issues.push(Issue {
                    path: "to".into(),
                    message: "must not be in the future; future fires run at their time".into(),
                });
            }
            if !issues.is_empty() {
                return Err(Problem::validation(issues));
            }
            let report = state
                .executions
                .scheduler()
                .backfill(&id, request.from, request.to)
                .await
                .map_err(|e| match e {
                    SchedulerError::BackfillRange(message) => Problem::validation(vec![Issue {
                        path: "to".into(),
                        message,
                    }]),
                    SchedulerError::BackfillTooLarge { cap, .. } => {
                        Problem::validation(vec![Issue {
                            path: String::new(),
                            message: format!(
                                "the range covers more than {cap} fires; backfill smaller ranges"
                            ),
                        }])
                    }
                    other => scheduler_problem(other),
                })?;
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({
                    "fires": report.fires,
                    "already_recorded": report.already_recorded,
                    "execution_ids": report.run_ids,
                })),
            )
                .into_response())
        }
        .await,
    )
}
