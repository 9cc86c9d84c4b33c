//! GET /api/v2/cluster: the nodes sharing this store, their heartbeats and
//! what each holds.

use super::AppState;
use super::problem::internal;
use crate::auth::Permission;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;

/// The cluster as the store sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct ClusterView {
    /// The node answering.
    this_node: String,
    /// `sqlite` (one node) or `postgres`.
    store: &'static str,
    /// How long a node holds an execution without renewing, seconds.
    lease_s: f64,
    nodes: Vec<NodeView>,
}

/// One node.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct NodeView {
    id: String,
    hostname: String,
    pid: i64,
    version: String,
    /// Where its API listens, as the node sees it.
    listen: String,
    /// RFC 3339.
    started_at: String,
    /// RFC 3339.
    last_heartbeat: String,
    /// `alive` (heartbeat within the lease), `stopped` (a clean stop) or
    /// `lost` (no heartbeat within the lease: its work is taken over).
    state: &'static str,
    /// Unfinished executions it holds.
    held: i64,
    /// Of those, running.
    running: i64,
    /// How far its clock was from the store's at its last heartbeat, in
    /// milliseconds: positive when it is behind, negative when ahead. It
    /// schedules and stamps on the store's time either way; past a second
    /// it says so in its log. `null` until it measured.
    clock_offset_ms: Option<f64>,
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[utoipa::path(
    get,
    path = "/api/v2/cluster",
    extensions(("x-required-permission" = json!(Permission::Read))),
    tag = "cluster",
    summary = "The nodes sharing this store",
    responses(
        (status = 200, description = "Nodes, heartbeats and the executions each holds", body = ClusterView),
    ),
)]
pub(super) async fn cluster(State(state): State<Arc<AppState>>) -> Response {
    let store = &state.store;
    let node = store.node();
    let nodes = match store.list_nodes().await {
        Ok(n) => n,
        Err(e) => return internal(e).into_response(),
    };
    let nodes = nodes
        .into_iter()
        .map(|n| NodeView {
            state: if n.stopped_at_us.is_some() {
                "stopped"
            } else if n.live {
                "alive"
            } else {
                "lost"
            },
            clock_offset_ms: n.clock_offset_us.map(|us| us as f64 / 1e3),
            started_at: rfc3339(n.started_at_us),
            last_heartbeat: rfc3339(n.heartbeat_at_us),
            id: n.id,
            hostname: n.hostname,
            pid: n.pid,
            version: n.version,
            listen: n.listen,
            held: n.held,
            running: n.running,
        })
        .collect();
    Json(ClusterView {
        this_node: node.id.to_string(),
        store: store.kind(),
        lease_s: node.lease_us as f64 / 1e6,
        nodes,
    })
    .into_response()
}
