//! The REST API (v2).
//!
//! Errors are `application/problem+json` with a stable `code`; internal
//! details are logged, never sent.

use crate::runtime::{PluginInfo, Runtime};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// What every handler can reach.
#[derive(Debug)]
pub struct AppState {
    pub runtime: Arc<Runtime>,
    pub started: Instant,
}

/// The API router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/v2/health", get(health))
        .route("/api/v2/steps/types", get(step_types))
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
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, title: impl Into<String>) -> Self {
        Self {
            kind: format!("https://meridian.dev/problems/{code}"),
            title: title.into(),
            status: status.as_u16(),
            code,
            detail: None,
        }
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

async fn health(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let plugins: Vec<_> = state
        .runtime
        .plugins()
        .map(|p| json!({ "name": p.info.name, "version": p.info.version, "digest": p.info.digest }))
        .collect();
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "checks": [
            { "name": "plugins", "status": if plugins.is_empty() { "warn" } else { "ok" }, "detail": format!("{} step types loaded", plugins.len()) },
        ],
        "plugins": plugins,
    }))
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
