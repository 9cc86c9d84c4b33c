//! `GET /metrics`: the node's metrics ([`crate::metrics::prometheus`]) in
//! the Prometheus text format (version 0.0.4), and the middleware that
//! counts API requests by route template.

use super::AppState;
use crate::auth::Permission;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::TEXT_FORMAT;
use std::sync::Arc;
use std::time::Instant;

/// GET /metrics
#[utoipa::path(
    get,
    path = "/metrics",
    extensions(("x-required-permission" = json!(Permission::Read))),
    tag = "performance",
    summary = "Prometheus metrics (text format 0.0.4)",
    responses((status = 200, description = "The metrics", content_type = "text/plain; version=0.0.4", body = String)),
)]
pub(super) async fn scrape(State(state): State<Arc<AppState>>) -> Response {
    let queues = state.executions.queues().stats();
    match state.metrics.prometheus().map(|f| f.encode(&queues)) {
        Some(Ok(text)) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, TEXT_FORMAT)], text).into_response()
        }
        Some(Err(e)) => super::internal(e).into_response(),
        None => super::internal("the metric families could not be created").into_response(),
    }
}

/// Counts every matched request by its route template, and times it.
pub(super) async fn track(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let started = Instant::now();
    let res = next.run(req).await;
    if let Some(f) = state.metrics.prometheus() {
        f.http_request(&method, &route, res.status().as_str(), started.elapsed());
    }
    res
}
