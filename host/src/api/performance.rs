//! `GET /api/v2/performance/summary`: how the queues and step types have
//! been doing over the last 1, 5 and 15 minutes, next to each queue's live
//! depth.
//!
//! The windows come from [`crate::metrics::Metrics`] (what the engine
//! recorded as executions and attempts finished); depth, running and the
//! oldest wait come from the queues at the moment of the request
//! ([`crate::queue::QueueManager::stats`]). A zone appears when either
//! knows it, so a queue whose first run is still waiting is listed with
//! empty windows.

use super::AppState;
use super::openapi::schemas as doc;
use crate::auth::Permission;
use crate::metrics::{ByWindow, QueueWindow, StepTypeSummary, WINDOWS};
use axum::Json;
use axum::extract::State;
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The response body.
#[derive(Debug, Serialize)]
pub(super) struct Summary {
    /// When the figures were taken (RFC 3339, UTC).
    generated_at: String,
    /// The window labels, shortest first, as used in every `windows` map.
    windows: Vec<&'static str>,
    queues: Vec<QueueEntry>,
    step_types: Vec<StepTypeSummary>,
}

/// One queue: live figures and the recent windows.
#[derive(Debug, Serialize)]
struct QueueEntry {
    zone: String,
    /// Runs waiting now.
    depth: usize,
    /// Runs running now.
    running: usize,
    /// Age of the oldest waiting run; `null` when none waits.
    oldest_wait_ms: Option<f64>,
    windows: ByWindow<QueueWindow>,
}

/// GET /api/v2/performance/summary
#[utoipa::path(
    get,
    path = "/api/v2/performance/summary",
    extensions(("x-required-permission" = json!(Permission::Read))),
    tag = "performance",
    summary = "Recent latencies, throughput and error rates per queue and step type",
    responses(
        (status = 200, description = "The summary", body = doc::PerformanceSummary),
    ),
)]
pub(super) async fn summary(State(state): State<Arc<AppState>>) -> Json<Summary> {
    let mut queues: BTreeMap<String, QueueEntry> = state
        .metrics
        .queues()
        .into_iter()
        .map(|q| {
            let entry = QueueEntry {
                zone: q.zone.clone(),
                depth: 0,
                running: 0,
                oldest_wait_ms: None,
                windows: q.windows,
            };
            (q.zone, entry)
        })
        .collect();
    for live in state.executions.queues().stats() {
        let entry = queues
            .entry(live.zone.clone())
            .or_insert_with(|| QueueEntry {
                zone: live.zone.clone(),
                depth: 0,
                running: 0,
                oldest_wait_ms: None,
                windows: empty_windows(),
            });
        entry.depth = live.depth;
        entry.running = live.running;
        entry.oldest_wait_ms = live.oldest_wait_ms;
    }
    Json(Summary {
        generated_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        windows: WINDOWS.iter().map(|w| w.label).collect(),
        queues: queues.into_values().collect(),
        step_types: state.metrics.step_types(),
    })
}

/// The windows of a queue that has finished nothing yet.
fn empty_windows() -> ByWindow<QueueWindow> {
    let empty = || QueueWindow {
        count: 0,
        throughput_per_s: 0.0,
        error_rate: None,
        wait_ms: Default::default(),
        run_ms: Default::default(),
    };
    ByWindow {
        one_minute: empty(),
        five_minutes: empty(),
        fifteen_minutes: empty(),
    }
}
