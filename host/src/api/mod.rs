//! The REST API (v2).
//!
//! Errors are `application/problem+json` with a stable `code`; internal
//! details are logged, never sent.

mod access;
mod audit;
mod cluster;
mod compat;
mod docs;
mod executions;
mod jobs;
mod logs;
pub mod openapi;
mod performance;
mod plugins;
mod problem;
pub mod prometheus;
mod queues;
pub use plugins::PluginUploads;
pub use problem::Problem;
use problem::{bare_errors_as_problems, enum_param, internal, parse_body};
pub(crate) use problem::{limit_param, unknown_param};
pub mod refusals;
mod schedules;
pub mod tls;
pub mod web;
pub use access::AuthState;

use crate::auth::Permission;
use crate::model::Issue;
use crate::model::schedule::PreviewRequest;
use crate::runtime::Runtime;
use axum::extract::Query;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
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
    /// The data dir (for its volume's free space in health).
    pub data_dir: std::path::PathBuf,
    /// What the log writer holds in memory because its files cannot be
    /// written (`None` without log files).
    pub held_logs: Option<Arc<crate::logging::HeldLines>>,
    /// Recent latencies, throughput and error rates per queue and step
    /// type, for `/api/v2/performance/summary` (the engine records them).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where refused requests and state changes are recorded.
    pub audit: crate::audit::AuditLog,
    /// The token guard's own state (with the refusals without a valid
    /// token counted in the current window).
    pub access: access::AuthState,
    /// Where uploaded plugins go and how large one may be.
    pub uploads: PluginUploads,
    /// `[audit]`: whose checkpoints GET /api/v2/audit/verify trusts and
    /// how far they may trail the head.
    pub audit_settings: crate::audit::anchor::AuditSettings,
}

/// Seconds a client is told to wait after a 503 (`Retry-After`).
pub const RETRY_AFTER_S: &str = "5";

/// How long a request may take before it is answered 408 (a followed log
/// stream is not cut: this bounds the time to the response's head).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Every route of the API, each registered once: `routes!` takes a
/// handler's method, path and permission from its `#[utoipa::path]`
/// attribute, and the OpenAPI document is what was registered (see
/// [`openapi`]). Handlers of one path share a `routes!` call. The web UI's
/// routes ([`web::ROUTES`]) are the only ones outside the document.
pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<Arc<AppState>> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::with_openapi(<openapi::ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(health))
        .routes(routes!(session))
        .routes(routes!(openapi_json))
        .routes(routes!(docs::docs_page))
        .routes(routes!(step_types))
        .routes(routes!(schedule_preview))
        .routes(routes!(schedules::list_schedules, schedules::create_schedule))
        .routes(routes!(
            schedules::get_schedule,
            schedules::replace_schedule,
            schedules::delete_schedule
        ))
        .routes(routes!(schedules::pause_schedule))
        .routes(routes!(schedules::resume_schedule))
        .routes(routes!(schedules::trigger_schedule))
        .routes(routes!(schedules::backfill_schedule))
        .routes(routes!(performance::summary))
        .routes(routes!(jobs::list_jobs, jobs::put_job))
        .routes(routes!(jobs::validate_job))
        .routes(routes!(executions::execute))
        .routes(routes!(jobs::get_job, jobs::delete_job))
        .routes(routes!(jobs::list_job_versions))
        .routes(routes!(jobs::get_job_version))
        .routes(routes!(queues::list_queues))
        .routes(routes!(cluster::cluster))
        .routes(routes!(executions::execution_status))
        .routes(routes!(executions::list_executions))
        .routes(routes!(executions::get_execution))
        .routes(routes!(logs::execution_logs))
        .routes(routes!(executions::cancel_execution))
        .routes(routes!(audit::query_audit))
        .routes(routes!(audit::verify_audit))
        .routes(routes!(audit::list_grants, access::create_grant))
        .routes(routes!(access::replace_grant, access::revoke_grant))
        .routes(routes!(plugins::list_plugins))
        .routes(routes!(plugins::get_plugin, plugins::delete_plugin))
        .routes(routes!(plugins::plugin_capabilities))
        .routes(routes!(access::list_tokens, access::create_token))
        .routes(routes!(access::revoke_token))
        .routes(routes!(compat::schedule_job))
        .routes(routes!(compat::create_v1_job, compat::list_v1_jobs))
        .routes(routes!(prometheus::scrape))
        // The web UI's assets (public: `web::permission`).
        .merge(web::router().into())
        // The body limit of every route above; the plugin upload below has
        // its own (`[api] max_plugin_bytes`, read by its handler).
        .route_layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .routes(routes!(plugins::upload_plugin))
}

/// What `method` on `route` (its template: `/api/v2/jobs/{id}`) needs:
/// the permission its `#[utoipa::path]` attribute gives, or the UI's
/// ([`web::permission`]). `None` for a method a route does not serve.
pub fn route_permission(
    method: &axum::http::Method,
    route: &str,
) -> Option<crate::auth::Permission> {
    openapi::permission(method, route).or_else(|| web::permission(method, route))
}

/// The API router.
pub fn router(state: Arc<AppState>) -> Router {
    let (routes, _) = routes().split_for_parts();
    routes
        // Every route above: token, role, audit (`route_permission`).
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            access::guard,
        ))
        // Outside the guard, so that refusals are counted too.
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            prometheus::track,
        ))
        .fallback(not_found)
        .layer(axum::middleware::map_response(bare_errors_as_problems))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "No such resource")
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/api/v2/openapi.json",
    extensions(("x-required-permission" = json!(Permission::Public))),
    tag = "system",
    summary = "This API's OpenAPI 3.1 document",
    responses((status = 200, description = "The document", content_type = "application/json", body = Object)),
)]
async fn openapi_json() -> Response {
    openapi::json_response()
}

/// The node's health, for load balancers (no token needed): the doctor's
/// probe-depth checks ([`crate::doctor::check`]: store, plugins and their
/// grants, secrets, log directories, disk), 200 when none fails (`degraded`
/// when what failed takes out part of the node only), 503 otherwise, within
/// a second whatever the store does (its probe and a presented token's
/// lookup are bounded). Without a token the answer has each check's name
/// and verdict only, and why the store check fails; the details (which plugins ask for what, which grants apply, the
/// digests) are for callers with a token of any role, and details that name
/// paths on the server (log root, data dir) are shown with them to admins
/// only. The audit chain's full verification is left to
/// `meridian doctor` and GET /api/v2/audit/verify: its cost grows with the
/// trail.
#[utoipa::path(
    get,
    path = "/api/v2/health",
    extensions(("x-required-permission" = json!(Permission::Public))),
    tag = "system",
    summary = "Health check",
    responses(
        (status = 200, description = "Healthy", body = openapi::schemas::Health),
        (status = 503, description = "Unhealthy: a check failed (the store does not answer, a log directory is not writable, the disk is full)", body = openapi::schemas::Health),
    ),
)]
async fn health(
    State(state): State<Arc<AppState>>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
) -> Response {
    let plugins: Vec<_> = state
        .runtime
        .plugins()
        .iter()
        .map(|p| json!({ "name": p.info.name, "version": p.info.version, "digest": p.info.digest }))
        .collect();
    let subject = crate::doctor::Subject {
        runtime: &state.runtime,
        store: &state.store,
        data_dir: Some(&state.data_dir),
        log_dir: &state.log_dir,
    };
    let report = crate::doctor::check(subject, crate::doctor::Depth::Probe).await;
    let healthy = !report.failed_whole();
    let status = match (healthy, report.failed()) {
        (false, _) => "fail",
        (true, true) => "degraded",
        (true, false) => "ok",
    };
    let mut body = json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "checks": report.checks,
    });
    let admin = caller
        .as_ref()
        .is_some_and(|c| c.role.allows(crate::auth::Permission::Admin));
    if caller.is_some() {
        body["plugins"] = json!(plugins);
    }
    if !admin && let Some(checks) = body["checks"].as_array_mut() {
        for (c, item) in checks.iter_mut().zip(&report.checks) {
            let Some(o) = c.as_object_mut() else { continue };
            match (&caller, &item.public_detail) {
                // Without a token: each check's name and verdict only
                // (and why the store check fails, which names nothing of
                // the server).
                (None, _) if item.for_anyone => {}
                (None, _) => {
                    o.remove("detail");
                }
                // A detail that names server paths (the data dir, the log
                // root) is for admins; others get it without them.
                (Some(_), Some(public)) => {
                    o.insert("detail".into(), json!(public));
                }
                (Some(_), None) => {}
            }
        }
    }
    let body = Json(body);
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

/// Who the presented token is, and what it may do.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Session {
    /// The token's name.
    name: String,
    /// viewer, operator, auditor or admin.
    role: &'static str,
    /// What the role allows: `read` always, then `operate`, `audit`,
    /// `admin` (see `x-required-permission` on each operation).
    permissions: Vec<crate::auth::Permission>,
}

/// The caller's token: its name, role and permissions (the web UI decides
/// from them what to show).
#[utoipa::path(
    get,
    path = "/api/v2/session",
    extensions(("x-required-permission" = json!(Permission::Read))),
    tag = "security",
    summary = "Who this token is: its name, role and permissions",
    responses((status = 200, description = "The token's name, role and permissions", body = Session)),
)]
async fn session(caller: Option<axum::Extension<crate::auth::Caller>>) -> Response {
    use crate::auth::Permission;
    let Some(axum::Extension(c)) = caller else {
        return Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "A valid API token is required",
        )
        .into_response();
    };
    let permissions = [
        Permission::Read,
        Permission::Operate,
        Permission::Audit,
        Permission::Admin,
    ]
    .into_iter()
    .filter(|p| c.role.allows(*p))
    .collect();
    Json(Session {
        name: c.name,
        role: c.role.as_str(),
        permissions,
    })
    .into_response()
}

/// The step types: the loaded plugins with their config schemas.
#[utoipa::path(
    get,
    path = "/api/v2/steps/types",
    extensions(("x-required-permission" = json!(Permission::Read))),
    tag = "system",
    summary = "List the step types",
    responses((status = 200, description = "The step types", body = openapi::schemas::StepTypes)),
)]
async fn step_types(
    State(state): State<Arc<AppState>>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
) -> Response {
    let plugins = state.runtime.plugins();
    let types: Vec<_> = plugins
        .iter()
        .map(|p| plugins::plugin_view(&p.info, caller.as_deref()))
        .collect();
    Json(json!({ "step_types": types })).into_response()
}

impl AppState {
    /// Now, on the clock this node schedules with: the store's time (see
    /// [`crate::scheduler::ClusterClock`]), so that a schedule created or
    /// moved through a node whose own clock is off starts from the right
    /// instant.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.executions.engine().timer().now()
    }

    /// Ends the current window of refusals without a valid token: its
    /// aggregate records go to the audit trail now (`serve` does this at
    /// each window's end and when it stops).
    pub fn flush_refusals(&self) {
        self.access.refusals().flush(&self.audit);
    }
}

/// Serves the API on a bound listener until `shutdown` resolves, then lets
/// requests in flight finish. Each connection's peer address reaches the
/// guard (the source of an aggregated refusal); the refusals' windows are
/// flushed as they end and once more when serving stops.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given (the certificate reloaded when
/// its files change; in-flight requests get up to [`REQUEST_TIMEOUT`] to
/// finish at shutdown).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    tls: Option<tls::Tls>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let flusher = Arc::clone(state.access.refusals()).spawn_flusher(state.audit.clone());
    let app =
        router(Arc::clone(&state)).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(tls) => {
            let reload = tls.spawn_reload();
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            let stop = tokio::spawn(async move {
                shutdown.await;
                stopper.graceful_shutdown(Some(REQUEST_TIMEOUT));
            });
            let served = match axum_server::from_tcp_rustls(listener.into_std()?, tls.config) {
                Ok(server) => server.handle(handle).serve(app).await,
                Err(e) => Err(e),
            };
            reload.abort();
            stop.abort();
            served
        }
    };
    flusher.abort();
    state.flush_refusals();
    served
}

/// GET /api/v2/schedules/preview?cron=…&tz=…&count=N&from=…&gap=…&overlap=…
#[utoipa::path(
    get,
    path = "/api/v2/schedules/preview",
    extensions(("x-required-permission" = json!(Permission::Read))),
    tag = "schedules",
    summary = "Preview the fires of a cron expression in a time zone",
    description = "The next `count` fires strictly after `from`, with the DST rules in force; nothing is stored.",
    params(openapi::schemas::PreviewQuery),
    responses(
        (status = 200, description = "The fires", body = openapi::schemas::Preview),
        (status = 400, description = "A parameter is missing or not valid (`validation_failed`, one issue per parameter)", content_type = "application/problem+json", body = openapi::schemas::Problem),
    ),
)]
async fn schedule_preview(
    State(state): State<Arc<AppState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
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
    match request.run(state.now()) {
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
