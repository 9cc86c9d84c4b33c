//! The node's queues: one per zone, with depth, workers and recent windows.

use super::AppState;
use super::openapi::schemas as doc;
use crate::auth::Permission;
use crate::metrics::QueueWindow;
use crate::queue::QueueStats;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

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
    extensions(("x-required-permission" = json!(Permission::Read))),
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
