//! The REST API (v2).
//!
//! Errors are `application/problem+json` with a stable `code`; internal
//! details are logged, never sent.

mod executions;
mod logs;
mod performance;
mod schedules;

use crate::model::Issue;
use crate::model::schedule::PreviewRequest;
use crate::runtime::{PluginInfo, Runtime};
use axum::extract::Query;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// What every handler can reach.
#[derive(Debug)]
pub struct AppState {
    pub runtime: Arc<Runtime>,
    pub store: crate::store::Store,
    /// Submits, cancels and recovers executions (the node's engine, queues
    /// and scheduler).
    pub executions: Arc<crate::engine::service::Executions>,
    pub started: Instant,
    /// The log root: `executions/<id>.log` is served from here.
    pub log_dir: std::path::PathBuf,
    /// Recent latencies, throughput and error rates per queue and step
    /// type, for `/api/v2/performance/summary` (the engine records them).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The API router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/v2/health", get(health))
        .route("/api/v2/steps/types", get(step_types))
        .route("/api/v2/schedules/preview", get(schedule_preview))
        .route(
            "/api/v2/schedules",
            get(schedules::list_schedules).post(schedules::create_schedule),
        )
        .route(
            "/api/v2/schedules/{id}",
            get(schedules::get_schedule)
                .put(schedules::replace_schedule)
                .delete(schedules::delete_schedule),
        )
        .route(
            "/api/v2/schedules/{id}/pause",
            post(schedules::pause_schedule),
        )
        .route(
            "/api/v2/schedules/{id}/resume",
            post(schedules::resume_schedule),
        )
        .route(
            "/api/v2/schedules/{id}/trigger",
            post(schedules::trigger_schedule),
        )
        .route(
            "/api/v2/schedules/{id}/backfill",
            post(schedules::backfill_schedule),
        )
        .route("/api/v2/performance/summary", get(performance::summary))
        .route(
            "/api/v2/jobs",
            get(executions::list_jobs).post(executions::put_job),
        )
        .route("/api/v2/jobs/validate", post(executions::validate_job))
        .route("/api/v2/jobs/execute", post(executions::execute))
        .route(
            "/api/v2/jobs/{id}",
            get(executions::get_job).delete(executions::delete_job),
        )
        .route(
            "/api/v2/jobs/{id}/versions",
            get(executions::list_job_versions),
        )
        .route(
            "/api/v2/jobs/{id}/versions/{version}",
            get(executions::get_job_version),
        )
        .route("/api/v2/queues", get(executions::list_queues))
        .route(
            "/api/v2/execution/status",
            get(executions::execution_status),
        )
        .route("/api/v2/executions", get(executions::list_executions))
        .route("/api/v2/executions/{id}", get(executions::get_execution))
        .route("/api/v2/executions/{id}/logs", get(logs::execution_logs))
        .route(
            "/api/v2/executions/{id}/cancel",
            post(executions::cancel_execution),
        )
        .fallback(not_found)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(1024 * 1024))
        .with_state(state)
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// Stable, machine-readable error code.
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Every problem with the request, each with its JSON path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Issue>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, title: impl Into<String>) -> Self {
        Self {
            kind: format!("https://meridian.dev/problems/{code}"),
            title: title.into(),
            status: status.as_u16(),
            code,
            detail: None,
            errors: Vec::new(),
        }
    }

    /// 400 with every problem listed.
    pub fn validation(issues: Vec<Issue>) -> Self {
        let mut p = Self::new(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "The request is not valid",
        );
        p.detail = Some(
            issues
                .iter()
                .map(|i| format!("{}: {}", i.path, i.message))
                .collect::<Vec<_>>()
                .join("; "),
        );
        p.errors = issues;
        p
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            Json(self),
        )
            .into_response()
    }
}

async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "No such resource")
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let plugins: Vec<_> = state
        .runtime
        .plugins()
        .map(|p| json!({ "name": p.info.name, "version": p.info.version, "digest": p.info.digest }))
        .collect();
    let store = match state.store.ping().await {
        Ok(()) => json!({ "name": "store", "status": "ok" }),
        Err(e) => {
            tracing::error!(error = %e, "health check: store unreachable");
            json!({ "name": "store", "status": "fail", "detail": "the store does not answer" })
        }
    };
    let healthy = store["status"] == "ok";
    let body = Json(json!({
        "status": if healthy { "ok" } else { "fail" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "checks": [
            store,
            { "name": "plugins", "status": if plugins.is_empty() { "warn" } else { "ok" }, "detail": format!("{} step types loaded", plugins.len()) },
        ],
        "plugins": plugins,
    }));
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

/// A step type as the API lists it.
#[derive(Debug, Serialize)]
struct StepType<'a> {
    #[serde(flatten)]
    info: &'a PluginInfo,
}

async fn step_types(State(state): State<Arc<AppState>>) -> Response {
    let types: Vec<StepType<'_>> = state
        .runtime
        .plugins()
        .map(|p| StepType { info: &p.info })
        .collect();
    Json(json!({ "step_types": types })).into_response()
}

/// Serves the API on a bound listener until `shutdown` resolves, then lets
/// requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// GET /api/v2/schedules/preview?cron=…&tz=…&count=N&from=…&gap=…&overlap=…
async fn schedule_preview(Query(params): Query<HashMap<String, String>>) -> Response {
    let mut issues = Vec::new();
    let take = |name: &str| params.get(name).cloned();
    let required = |name: &str, v: Option<String>, issues: &mut Vec<Issue>| {
        v.unwrap_or_else(|| {
            issues.push(Issue {
                path: name.into(),
                message: "required".into(),
            });
            String::new()
        })
    };
    let cron = required("cron", take("cron"), &mut issues);
    let tz = required("tz", take("tz"), &mut issues);
    let count = take("count").and_then(|c| {
        c.parse::<usize>()
            .map_err(|_| {
                issues.push(Issue {
                    path: "count".into(),
                    message: format!("{c:?} is not a whole number"),
                })
            })
            .ok()
    });
    let gap = enum_param(take("gap"), "gap", "shift, skip", &mut issues);
    let overlap = enum_param(take("overlap"), "overlap", "first, last, both", &mut issues);
    for key in params.keys() {
        if !["cron", "tz", "count", "from", "gap", "overlap"].contains(&key.as_str()) {
            issues.push(unknown_param(key));
        }
    }
    let request = PreviewRequest {
        cron,
        tz,
        count,
        from: params.get("from").cloned(),
        gap,
        overlap,
    };
    match request.run(chrono::Utc::now()) {
        Ok(preview) if issues.is_empty() => Json(preview).into_response(),
        Ok(_) => Problem::validation(issues).into_response(),
        Err(more) => {
            // One problem per parameter: what the query itself got wrong
            // (missing, not a number) comes first.
            let seen: Vec<String> = issues.iter().map(|i| i.path.clone()).collect();
            issues.extend(more.into_iter().filter(|m| !seen.contains(&m.path)));
            Problem::validation(issues).into_response()
        }
    }
}

/// The `limit` of a list request: a whole number from 1 to 500; `None`
/// (and an issue) otherwise.
pub(crate) fn limit_param(value: &str, issues: &mut Vec<Issue>) -> Option<i64> {
    match value.parse::<i64>() {
        Ok(n) if (1..=500).contains(&n) => Some(n),
        _ => {
            issues.push(Issue {
                path: "limit".into(),
                message: "must be a whole number from 1 to 500".into(),
            });
            None
        }
    }
}

/// The issue for a query parameter the endpoint does not take.
pub(crate) fn unknown_param(name: &str) -> Issue {
    Issue {
        path: name.to_owned(),
        message: "unknown parameter".into(),
    }
}

/// A query parameter naming one variant of a snake_case enum.
fn enum_param<T: serde::de::DeserializeOwned>(
    value: Option<String>,
    name: &str,
    allowed: &str,
    issues: &mut Vec<Issue>,
) -> Option<T> {
    let v = value?;
    serde_json::from_value(serde_json::Value::String(v.clone()))
        .map_err(|_| {
            issues.push(Issue {
                path: name.into(),
                message: format!("{v:?} is not one of {allowed}"),
            })
        })
        .ok()
}
