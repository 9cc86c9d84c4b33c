//! The API's OpenAPI 3.1 document, generated from the code.
//!
//! Each handler carries a `#[utoipa::path]` attribute (method, path, the
//! permission it needs as `x-required-permission`, parameters, request
//! body, its own responses), and that attribute is also its route:
//! [`super::routes`] registers the handlers with `utoipa_axum::routes!`,
//! which takes the method and path from it, and the document is what was
//! registered ([`ApiDoc`] gives only the frame). A route cannot be served
//! undocumented, nor documented and not served; the guard reads the
//! permission from the same place ([`permission`]). The handlers build most bodies
//! with `json!()`, so the shapes they send and accept are described here by
//! doc-only types ([`schemas`]): they are never constructed, they only say
//! what the JSON looks like. Query parameters are described the same way by
//! `IntoParams` types, with the ranges and enums the handlers check.
//!
//! What every guarded route has in common is added once, by [`Common`],
//! rather than repeated on each handler: the role its permission lets in
//! (in the description), the bearer-token
//! security requirement (none for the public routes), and the problem
//! responses the layers around the handlers can give: 401 and 403 from the
//! guard, 408 from the timeout layer, 413 from the body limit (operations
//! with a body) and 500.
//!
//! To add a route: put `#[utoipa::path]` on its handler, with its
//! permission, and register it in [`super::routes`] (one `routes!` per
//! path).

use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::LazyLock;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response as OaResponse, ResponseBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi};

/// The document's frame: its info, the shared components, the bearer
/// security scheme and the tags. The operations are what
/// [`super::routes`] registers; [`Common`] then completes each.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Meridian",
        description = "The REST API (v2) of Meridian, a timezone-aware job scheduler whose steps are sandboxed WebAssembly components. Every route except the health check, this document and its docs page needs `Authorization: Bearer <token>`; errors are `application/problem+json` (RFC 9457) with a stable `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    // Problem and Issue are referenced by the shared responses; the enums
    // by query parameters (utoipa does not collect those by itself).
    components(schemas(
        schemas::Problem,
        schemas::Issue,
        schemas::ExecutionStatus,
        schemas::LogFormat,
        schemas::Decision,
        schemas::GapPolicy,
        schemas::OverlapPolicy,
    )),
    security(("bearer" = [])),
    tags(
        (name = "system", description = "Health, the step types, this document"),
        (name = "jobs", description = "Job definitions and their versions"),
        (name = "executions", description = "Running jobs now, watching and cancelling executions, their logs, the queues"),
        (name = "schedules", description = "Cron schedules in a time zone: create, change, pause, trigger, backfill, preview"),
        (name = "performance", description = "Recent latencies, throughput and error rates"),
        (name = "cluster", description = "The nodes sharing this store and what each holds"),
        (name = "security", description = "The audit trail, capability grants, plugins and API tokens"),
    )
)]
pub struct ApiDoc;

/// Adds what every operation has in common (see the module docs).
struct Common;

/// The name of the bearer security scheme.
const BEARER: &str = "bearer";

impl Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.info.version = env!("CARGO_PKG_VERSION").to_string();
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("mrd_ followed by 64 hex digits")
                .description(Some("An API token (`meridian token create`, or POST /api/v2/tokens); its role decides what it may do"))
                .build()),
        );
        for (name, status, description) in COMMON {
            components
                .responses
                .insert((*name).to_string(), problem_response(status, description));
        }
        for item in doc.paths.paths.values_mut() {
            let ops = [
                item.get.as_mut(),
                item.put.as_mut(),
                item.post.as_mut(),
                item.delete.as_mut(),
                item.patch.as_mut(),
            ];
            for op in ops.into_iter().flatten() {
                complete(op);
            }
        }
    }
}

/// The shared problem responses: component name, status, description.
const COMMON: &[(&str, StatusCode, &str)] = &[
    (
        "Unauthenticated",
        StatusCode::UNAUTHORIZED,
        "No valid API token (code `unauthenticated`); `WWW-Authenticate: Bearer` is set",
    ),
    (
        "Forbidden",
        StatusCode::FORBIDDEN,
        "The token's role may not do this (code `forbidden`)",
    ),
    (
        "Timeout",
        StatusCode::REQUEST_TIMEOUT,
        "The request took longer than 30 s (code `timeout`)",
    ),
    (
        "BodyTooLarge",
        StatusCode::PAYLOAD_TOO_LARGE,
        "The body is larger than 1 MiB (code `body_too_large`)",
    ),
    (
        "Internal",
        StatusCode::INTERNAL_SERVER_ERROR,
        "The request could not be completed (code `internal`); details are logged, never sent",
    ),
];

fn problem_response(_status: &StatusCode, description: &str) -> RefOr<OaResponse> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

/// Which roles a permission lets in, for people.
fn permission_roles(p: crate::auth::Permission) -> &'static str {
    use crate::auth::Permission;
    match p {
        Permission::Public => "none: no token needed",
        Permission::Read => "any role (viewer, operator, auditor, admin)",
        Permission::Operate => "operator or admin",
        Permission::Audit => "auditor or admin",
        Permission::Admin => "admin",
    }
}

/// One operation: its permission, security and the shared responses.
fn complete(op: &mut Operation) {
    // A route without a permission is served to admins only (see the
    // guard); the document says so rather than leaving it out.
    let need = operation_permission(op).unwrap_or(crate::auth::Permission::Admin);
    let public = need == crate::auth::Permission::Public;
    let note = format!("Required role: {}.", permission_roles(need));
    op.description = Some(match op.description.take() {
        Some(d) if !d.is_empty() => format!("{d}\n\n{note}"),
        _ => note,
    });
    // The attribute's own declaration stays; only an undeclared route gets
    // the admin default written in.
    let ext = op.extensions.get_or_insert_with(Default::default);
    if !ext.contains_key(PERMISSION_KEY) {
        ext.insert(
            PERMISSION_KEY.to_string(),
            serde_json::to_value(need).unwrap_or_default(),
        );
    }
    let mut shared = vec![("408", "Timeout"), ("500", "Internal")];
    if public {
        // No token needed: an empty requirement list overrides the global one.
        op.security = Some(Vec::new());
    } else {
        shared.extend([("401", "Unauthenticated"), ("403", "Forbidden")]);
    }
    if op.request_body.is_some() {
        shared.push(("413", "BodyTooLarge"));
    }
    for (status, name) in shared {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    }
}

/// The permission an operation's attribute gives (`x-required-permission`).
fn operation_permission(op: &Operation) -> Option<crate::auth::Permission> {
    let value = op.extensions.as_ref()?.get(PERMISSION_KEY)?;
    serde_json::from_value(value.clone()).ok()
}

/// The extension that carries a route's permission.
pub const PERMISSION_KEY: &str = "x-required-permission";

/// The document: what [`super::routes`] registered, completed by
/// [`Common`]; built once.
static API_DOC: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(|| {
    let (_, mut doc) = super::routes().split_for_parts();
    Common.modify(&mut doc);
    doc
});

/// The document, as built (for tests and the docs page).
pub fn api_doc() -> &'static utoipa::openapi::OpenApi {
    &API_DOC
}

/// Each documented path's methods and what they need, from the
/// operations' `x-required-permission`.
static PERMISSIONS: LazyLock<HashMap<String, Vec<(Method, crate::auth::Permission)>>> =
    LazyLock::new(|| {
        let mut map: HashMap<String, Vec<(Method, crate::auth::Permission)>> = HashMap::new();
        for (path, item) in &API_DOC.paths.paths {
            let ops = [
                (Method::GET, item.get.as_ref()),
                (Method::PUT, item.put.as_ref()),
                (Method::POST, item.post.as_ref()),
                (Method::DELETE, item.delete.as_ref()),
                (Method::PATCH, item.patch.as_ref()),
            ];
            for (method, op) in ops {
                if let Some(need) = op.and_then(operation_permission) {
                    map.entry(path.clone()).or_default().push((method, need));
                }
            }
        }
        map
    });

/// What `method` on the documented `route` needs (HEAD as GET, which
/// answers it); `None` when the document has no such operation.
pub fn permission(method: &Method, route: &str) -> Option<crate::auth::Permission> {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    PERMISSIONS
        .get(route)?
        .iter()
        .find(|(m, _)| m == method)
        .map(|(_, need)| *need)
}

/// The document as JSON, built once.
static DOCUMENT: LazyLock<Result<String, String>> = LazyLock::new(|| {
    let mut doc = serde_json::to_value(&*API_DOC).map_err(|e| e.to_string())?;
    camel_case_links(&mut doc);
    serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())
});

/// utoipa 5.5 writes a response link's `operationId` and `operationRef` as
/// `operation_id` and `operation_ref` (its `Link` lacks the camelCase
/// rename), which no OpenAPI tool reads; the links are renamed here.
fn camel_case_links(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let responses = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
        .flat_map(|r| r.values_mut());
    for response in responses {
        let Some(links) = response.get_mut("links").and_then(|l| l.as_object_mut()) else {
            continue;
        };
        for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
            for (snake, camel) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
            ] {
                if let Some(v) = link.remove(snake) {
                    link.insert(camel.to_string(), v);
                }
            }
        }
    }
}

/// The document as JSON text (an error if it cannot be serialized, which
/// would be a bug).
pub fn document_json() -> Result<&'static str, &'static str> {
    match &*DOCUMENT {
        Ok(s) => Ok(s.as_str()),
        Err(e) => Err(e.as_str()),
    }
}

/// The document served: `application/json`.
pub(super) fn json_response() -> Response {
    match document_json() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => super::internal(e).into_response(),
    }
}

/// The JSON shapes of the API: the real types where a handler sends or
/// reads one as it is (re-exported here), and doc-only types, never
/// constructed, where a handler builds its body with `json!()`.
#[allow(dead_code)]
pub mod schemas {
    use serde::{Deserialize, Serialize};
    use serde_json::Value;
    use utoipa::{IntoParams, ToSchema};

    // The real types where the API sends or reads them as they are.
    pub use crate::api::Problem;
    pub use crate::auth::Role;
    pub use crate::engine::ExecutionStatus;
    pub use crate::model::Issue;
    pub use crate::schedule::{GapPolicy, OverlapPolicy};

    /// One checked item (as `meridian doctor` shows it).
    #[derive(Serialize, ToSchema)]
    pub struct HealthCheck {
        /// `store`, `plugins`, `plugin:<name>`, `grant:config[0]`, …
        pub name: String,
        pub status: CheckStatus,
        /// One line; only for a caller with a token (the `store` check's
        /// for anyone), and naming paths on the server (log root, data dir)
        /// only for an admin.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub detail: Option<String>,
    }

    /// A check's verdict: `info` is worth knowing, nothing wrong; `warn`
    /// works but probably not as meant; `fail` is broken.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum CheckStatus {
        Ok,
        Info,
        Warn,
        Fail,
    }

    /// A loaded plugin, in the health check.
    #[derive(Serialize, ToSchema)]
    pub struct HealthPlugin {
        pub name: String,
        pub version: String,
        /// SHA-256 of the component, hex.
        pub digest: String,
    }

    /// The health check's body (200 when healthy, 503 when not).
    #[derive(Serialize, ToSchema)]
    pub struct Health {
        /// `ok`; `degraded` (still 200) when a failure takes out part of
        /// the node only, such as a plugin that could not be loaded; `fail`
        /// (503) otherwise.
        pub status: String,
        pub version: String,
        pub uptime_seconds: u64,
        pub checks: Vec<HealthCheck>,
        /// Only for a caller with a token.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub plugins: Option<Vec<HealthPlugin>>,
    }

    /// A loaded plugin (step type).
    #[derive(Serialize, ToSchema)]
    pub struct PluginInfo {
        pub name: String,
        pub version: String,
        pub description: String,
        /// `sha256:<hex>` of the component.
        pub digest: String,
        /// `{"kind": "built_in"}`, or `{"kind": "file"}` for a component
        /// loaded from a file — with its `path` on the server for admins
        /// only.
        #[schema(value_type = Value)]
        pub source: Value,
        /// The JSON Schema of a step's `config`.
        #[schema(value_type = Value)]
        pub config_schema: Value,
        /// The capabilities it asks for.
        #[schema(value_type = Vec<Object>)]
        pub capabilities: Vec<Value>,
        /// The interfaces it imports.
        pub imports: Vec<String>,
        /// The interfaces it exports.
        pub exports: Vec<String>,
        pub size_bytes: u64,
    }

    /// GET /api/v2/steps/types.
    #[derive(Serialize, ToSchema)]
    pub struct StepTypes {
        pub step_types: Vec<PluginInfo>,
    }

    /// GET /api/v2/plugins.
    #[derive(Serialize, ToSchema)]
    pub struct Plugins {
        pub plugins: Vec<PluginInfo>,
        /// Components found at start that could not be loaded: the node
        /// serves without them and their steps fail with the reason.
        pub unloadable: Vec<UnloadablePlugin>,
    }

    /// A component that could not be loaded.
    #[derive(Serialize, ToSchema)]
    pub struct UnloadablePlugin {
        /// The step type it would most likely provide (its described name,
        /// or its file name without `.wasm`).
        pub step_type: String,
        /// The file's name.
        pub file: String,
        /// As for a loaded plugin; `path` for admins only.
        #[schema(value_type = Value)]
        pub source: Value,
        /// Why, in words an operator can act on.
        pub reason: String,
        /// The setting that would let it load, when one would
        /// (`sandbox.memory_mb`).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub setting: Option<String>,
    }

    /// A plugin's capabilities: what it asks for, what is granted, what it
    /// used.
    #[derive(Serialize, ToSchema)]
    pub struct PluginCapabilities {}

    /// A job definition as submitted (`additionalProperties: false`; the
    /// steps and parameters are checked by the job's rules and each step's
    /// plugin).
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct Job {
        /// 1–128 of `A-Z a-z 0-9 . _ -`.
        #[schema(pattern = "^[A-Za-z0-9._-]{1,128}$")]
        pub id: String,
        pub name: String,
        #[serde(default)]
        pub description: Option<String>,
        /// IANA zone; default `UTC`.
        #[serde(default)]
        pub timezone: Option<String>,
        #[serde(default)]
        pub priority: Option<i32>,
        /// Typed parameters by name: `{"type": "string", "default": …}`.
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        pub params: Option<Value>,
        /// The steps in order: `{"id", "type", "config", "on_success",
        /// "on_failure", "retry", "timeout_ms"}`.
        #[schema(value_type = Vec<Object>)]
        pub steps: Vec<Value>,
        #[serde(default)]
        pub tags: Option<Vec<String>>,
        #[serde(default)]
        pub owner: Option<String>,
        #[serde(default)]
        #[schema(minimum = 0)]
        pub timeout_ms: Option<u64>,
        #[serde(default)]
        #[schema(minimum = 0)]
        pub max_step_runs: Option<u32>,
        /// `retry_step`, `fail` or `resume`.
        #[serde(default)]
        pub on_interrupted: Option<String>,
        /// How much execution history to keep.
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        pub retention: Option<Value>,
    }

    /// POST /api/v2/jobs: the stored version.
    #[derive(Serialize, ToSchema)]
    pub struct JobStored {
        pub id: String,
        pub version: i64,
    }

    /// POST /api/v2/jobs/validate.
    #[derive(Serialize, ToSchema)]
    pub struct Validation {
        pub valid: bool,
        pub errors: Vec<Issue>,
    }

    /// A stored job version.
    #[derive(Serialize, ToSchema)]
    pub struct JobVersion {
        pub id: String,
        pub version: i64,
        /// RFC 3339, UTC.
        pub created_at: Option<String>,
        /// The definition as stored.
        #[schema(value_type = Value)]
        pub definition: Value,
    }

    /// One job in GET /api/v2/jobs.
    #[derive(Serialize, ToSchema)]
    pub struct JobItem {
        pub id: String,
        pub version: i64,
        pub name: String,
        pub timezone: String,
        pub owner: Option<String>,
        pub tags: Vec<String>,
        pub step_count: u64,
        pub created_at: Option<String>,
    }

    /// GET /api/v2/jobs.
    #[derive(Serialize, ToSchema)]
    pub struct JobList {
        pub jobs: Vec<JobItem>,
        /// The cursor of the next page; `null` on the last.
        pub next_after: Option<String>,
    }

    /// One version in a job's history.
    #[derive(Serialize, ToSchema)]
    pub struct VersionItem {
        pub version: i64,
        pub created_at: Option<String>,
    }

    /// GET /api/v2/jobs/{id}/versions.
    #[derive(Serialize, ToSchema)]
    pub struct JobVersions {
        pub id: String,
        pub deleted: bool,
        pub current_version: Option<i64>,
        pub versions: Vec<VersionItem>,
    }

    /// POST /api/v2/jobs/execute: a stored job (`job_id`) or a definition
    /// (`job`, stored first), exactly one of them.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct ExecuteRequest {
        #[serde(default)]
        #[schema(pattern = "^[A-Za-z0-9._-]{1,128}$")]
        pub job_id: Option<String>,
        #[serde(default)]
        pub job: Option<Job>,
        /// Parameter values by name.
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        pub params: Option<Value>,
    }

    /// 202: the run is queued.
    #[derive(Serialize, ToSchema)]
    pub struct Accepted {
        pub execution_id: String,
        /// `queued`.
        pub status: String,
        /// Where to watch it (also the `Location` header).
        pub status_url: String,
    }

    /// POST /api/v2/executions/{id}/cancel.
    #[derive(Serialize, ToSchema)]
    pub struct CancelResult {
        pub execution_id: String,
        /// `cancelled` (200) or `cancelling` (202).
        pub status: String,
    }

    /// An execution (lists leave out `steps`).
    #[derive(Serialize, ToSchema)]
    pub struct Execution {
        pub id: String,
        pub job_id: String,
        pub job_version: i64,
        pub status: String,
        /// `api`, `schedule`, `manual`, `backfill`, …
        pub trigger: String,
        pub schedule_id: Option<String>,
        pub timezone: String,
        pub queued_at: Option<String>,
        pub started_at: Option<String>,
        pub finished_at: Option<String>,
        pub duration_ms: Option<f64>,
        /// The step runs with their attempts (detail only).
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<Vec<Object>>)]
        pub steps: Option<Vec<Value>>,
    }

    /// GET /api/v2/executions.
    #[derive(Serialize, ToSchema)]
    pub struct ExecutionList {
        pub executions: Vec<Execution>,
        /// The cursor of the next page; `null` on the last.
        pub next_before: Option<String>,
    }

    /// One queue in GET /api/v2/queues: live figures and the 1m/5m windows
    /// (`null` until it has finished an execution).
    #[derive(Serialize, ToSchema)]
    pub struct Queue {
        pub zone: String,
        pub depth: u64,
        pub running: u64,
        #[schema(value_type = Option<Object>)]
        pub windows: Option<Value>,
    }

    /// GET /api/v2/queues.
    #[derive(Serialize, ToSchema)]
    pub struct Queues {
        pub queues: Vec<Queue>,
    }

    /// A queue in the status view.
    #[derive(Serialize, ToSchema)]
    pub struct QueueBrief {
        pub zone: String,
        pub depth: u64,
        pub running: u64,
        pub workers: u64,
        pub oldest_wait_ms: Option<f64>,
    }

    /// A running execution in the status view.
    #[derive(Serialize, ToSchema)]
    pub struct RunningBrief {
        pub id: String,
        pub job_id: String,
        pub started_at: Option<String>,
        pub timezone: String,
    }

    /// GET /api/v2/execution/status.
    #[derive(Serialize, ToSchema)]
    pub struct NodeStatus {
        pub generated_at: Option<String>,
        pub queues: Vec<QueueBrief>,
        pub running: Vec<RunningBrief>,
        pub running_truncated: bool,
        pub queued: u64,
    }

    /// GET /api/v2/performance/summary: per queue and per step type, the
    /// 1m, 5m and 15m windows.
    #[derive(Serialize, ToSchema)]
    pub struct PerformanceSummary {
        pub generated_at: String,
        pub windows: Vec<String>,
        #[schema(value_type = Vec<Object>)]
        pub queues: Vec<Value>,
        #[schema(value_type = Vec<Object>)]
        pub step_types: Vec<Value>,
    }

    /// A schedule as clients write it (`additionalProperties: false`).
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct ScheduleSpec {
        /// 1–128 of `A-Z a-z 0-9 . _ -`; not `preview`.
        #[schema(pattern = "^[A-Za-z0-9._-]{1,128}$")]
        pub id: String,
        /// A stored job.
        #[schema(pattern = "^[A-Za-z0-9._-]{1,128}$")]
        pub job_id: String,
        /// 5 or 6 fields, or a macro such as `@daily`.
        pub cron: String,
        /// IANA zone the expression reads its wall clock in.
        pub timezone: String,
        #[serde(default)]
        pub enabled: Option<bool>,
        #[serde(default)]
        #[schema(format = DateTime)]
        pub start_at: Option<String>,
        #[serde(default)]
        #[schema(format = DateTime)]
        pub end_at: Option<String>,
        /// `{"window_s": 3600, "policy": "all" | "latest" | "none"}`.
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        pub misfire: Option<Value>,
        /// `allow`, `skip`, `buffer_one`, `buffer_all` or `cancel_other`.
        #[serde(default)]
        pub overlap: Option<String>,
        /// `{"gap": "shift" | "skip", "overlap": "first" | "last" | "both"}`.
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        pub dst: Option<Value>,
        #[serde(default)]
        #[schema(minimum = 0, maximum = 3600)]
        pub jitter_s: Option<u64>,
        #[serde(default)]
        pub priority: Option<i32>,
    }

    /// A schedule: its spec, timestamps and next fires (none while paused).
    #[derive(Serialize, ToSchema)]
    pub struct Schedule {
        pub id: String,
        pub job_id: String,
        pub cron: String,
        pub timezone: String,
        pub enabled: bool,
        pub created_at: Option<String>,
        pub updated_at: Option<String>,
        #[schema(value_type = Vec<Object>)]
        pub next_fires: Vec<Value>,
    }

    /// GET /api/v2/schedules.
    #[derive(Serialize, ToSchema)]
    pub struct ScheduleList {
        pub schedules: Vec<Schedule>,
        /// The cursor of the next page; `null` on the last.
        pub next_after: Option<String>,
    }

    /// POST /api/v2/schedules/{id}/backfill.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct BackfillRequest {
        /// RFC 3339; the first fire may be at this instant.
        #[schema(format = DateTime)]
        pub from: String,
        /// RFC 3339, not in the future; the last fire may be at this instant.
        #[schema(format = DateTime)]
        pub to: String,
    }

    /// What a backfill did.
    #[derive(Serialize, ToSchema)]
    pub struct BackfillReport {
        pub fires: u64,
        pub already_recorded: u64,
        pub execution_ids: Vec<String>,
    }

    /// The fires of a cron expression in a zone, with the DST rules in
    /// force.
    #[derive(Serialize, ToSchema)]
    pub struct Preview {
        pub expression: String,
        pub zone: String,
        pub from: String,
        #[schema(value_type = Vec<Object>)]
        pub fires: Vec<Value>,
        #[schema(value_type = Vec<Object>)]
        pub dropped: Vec<Value>,
    }

    /// An audit record: the entry (`kind`, `decision`, `actor`, `plugin`,
    /// `capability`, `target`, `detail`, …) with its place in the hash
    /// chain.
    #[derive(Serialize, ToSchema)]
    pub struct AuditRecord {
        pub seq: i64,
        pub kind: String,
        pub decision: String,
        /// The hash of the record before it.
        pub prev_hash: String,
        /// SHA-256 of `prev_hash` and this record's body, hex.
        pub hash: String,
    }

    /// GET /api/v2/audit.
    #[derive(Serialize, ToSchema)]
    pub struct AuditPage {
        pub records: Vec<AuditRecord>,
        /// The `after` of the next page; `null` on the last.
        pub next_after: Option<i64>,
    }

    /// GET /api/v2/audit/verify: the chain check, the comparison with the
    /// mirror and the check of the signed checkpoints; `ok` says whether
    /// all of it holds, `reasons` why not.
    #[derive(Serialize, ToSchema)]
    pub struct VerifyReport {
        /// Whether the chain, the mirror and the anchor all hold.
        pub ok: bool,
        /// Every failure, one sentence each (empty when `ok`).
        pub reasons: Vec<String>,
        /// Whether the hash chain itself is intact.
        pub chain_ok: bool,
        /// Records checked.
        pub records: u64,
        /// The hash of the last record checked.
        pub head: String,
        /// The first break in the chain: `{seq, position, tamper, message}`
        /// (`tamper`: `edited`, `removed`, `reordered` or `truncated`).
        #[schema(value_type = Option<Object>)]
        pub problem: Option<Value>,
        /// The comparison with this node's mirrored audit log files
        /// (`.log` and `.gz`): `{files, gzipped, mirrored, not_mirrored,
        /// unread, ok, problem}`, where `problem` (`{seq, message}`) names
        /// the first mirrored record the store contradicts (a trail
        /// rewritten with its hashes recomputed, or a record removed),
        /// `unread` the files that could not be read, and `not_mirrored`
        /// counts the store's records the files lack (older than their
        /// retention, or appended by another node). `ok` is false also when
        /// the mirror holds nothing while the store has records.
        #[schema(value_type = Option<Object>)]
        pub mirror: Option<Value>,
        /// The signed checkpoints of the chain's head: `{ok, checkpoints,
        /// newest: {seq, at, node, key_id}, trusted_keys, problem: {fault,
        /// message}}`, `fault` one of `no_key`, `missing`, `behind`,
        /// `unknown_key`, `forged`, `contradicted`.
        #[schema(value_type = Option<Object>)]
        pub anchor: Option<Value>,
    }

    /// A grant in force, from the config file or stored.
    #[derive(Serialize, ToSchema)]
    pub struct GrantEntry {
        /// `config[N]` for the config's grants, the stored id otherwise.
        pub id: String,
        /// `config` (the config file; changed by editing it) or `stored`
        /// (through the CLI or the API, with who and when).
        pub source: String,
        /// The grant in the `[[grants]]` shape.
        #[schema(value_type = Object)]
        pub grant: Value,
    }

    /// GET /api/v2/grants.
    #[derive(Serialize, ToSchema)]
    pub struct Grants {
        pub grants: Vec<GrantEntry>,
    }

    /// DELETE /api/v2/grants/{id}.
    #[derive(Serialize, ToSchema)]
    pub struct GrantRevoked {
        pub id: String,
        pub plugin: String,
        pub revoked: bool,
    }

    /// POST /api/v2/tokens.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct TokenRequest {
        pub role: Role,
        /// 1–64 of `A-Z a-z 0-9 . _ -`; default `<role>-<8 hex>`.
        #[serde(default)]
        #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
        pub name: Option<String>,
    }

    /// An API token (never the token itself, except once on creation).
    #[derive(Serialize, ToSchema)]
    pub struct Token {
        pub id: String,
        pub name: String,
        pub role: String,
        pub created_at: Option<String>,
        pub created_by: String,
        pub last_used_at: Option<String>,
        pub revoked_at: Option<String>,
        /// Only in the response to POST /api/v2/tokens.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub token: Option<String>,
    }

    /// GET /api/v2/tokens.
    #[derive(Serialize, ToSchema)]
    pub struct Tokens {
        pub tokens: Vec<Token>,
    }

    /// GET /api/v2/schedules/preview.
    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct PreviewQuery {
        /// 5 or 6 fields, or a macro such as `@daily`.
        pub cron: String,
        /// IANA zone.
        pub tz: String,
        /// How many fires (default 10).
        #[param(minimum = 1, maximum = 1000)]
        pub count: Option<u32>,
        /// RFC 3339; fires are strictly after it (default: now).
        #[param(format = DateTime)]
        pub from: Option<String>,
        pub gap: Option<GapPolicy>,
        pub overlap: Option<OverlapPolicy>,
    }

    /// GET /api/v2/schedules.
    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct ScheduleListQuery {
        pub job_id: Option<String>,
        /// The `next_after` of the previous page.
        pub after: Option<String>,
        /// Default 100.
        #[param(minimum = 1, maximum = 500)]
        pub limit: Option<i64>,
    }

    /// GET /api/v2/jobs.
    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct JobListQuery {
        /// Default 50.
        #[param(minimum = 1, maximum = 500)]
        pub limit: Option<i64>,
        /// The `next_after` of the previous page.
        pub after: Option<String>,
        /// Only jobs with this tag.
        pub tag: Option<String>,
        /// Only jobs of this owner.
        pub owner: Option<String>,
    }

    /// GET /api/v2/executions.
    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct ExecutionListQuery {
        pub job_id: Option<String>,
        pub status: Option<ExecutionStatus>,
        pub schedule_id: Option<String>,
        /// Default 50.
        #[param(minimum = 1, maximum = 500)]
        pub limit: Option<i64>,
        /// The `next_before` of the previous page.
        pub before: Option<String>,
    }

    /// The format of an execution's log.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum LogFormat {
        Json,
        Text,
    }

    /// The kind of a followed log's event.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum LogEventKind {
        Line,
        End,
    }

    /// One server-sent event of a followed log: `line` events (the data is
    /// one log line, JSON or text as `format` says), then one `end` (the
    /// data is the execution id) once the execution has ended and its log
    /// is complete.
    #[derive(Serialize, ToSchema)]
    pub struct LogEvent {
        pub event: LogEventKind,
        pub data: String,
    }

    /// GET /api/v2/executions/{id}/logs.
    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct LogQuery {
        /// `json` (JSON lines, the default) or `text`.
        pub format: Option<LogFormat>,
        /// A live stream of server-sent events until the execution ends.
        pub follow: Option<bool>,
    }

    /// An audit decision.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum Decision {
        Allowed,
        Denied,
        Failed,
        Created,
        Replaced,
        Removed,
        Revoked,
        Ok,
        Rejected,
        Unauthenticated,
        Forbidden,
        /// A schedule's fires missed while the store was out of reach.
        Missed,
    }

    /// GET /api/v2/audit.
    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct AuditQuery {
        pub kind: Option<String>,
        pub plugin: Option<String>,
        pub job_id: Option<String>,
        pub execution_id: Option<String>,
        pub capability: Option<String>,
        pub decision: Option<Decision>,
        /// RFC 3339.
        #[param(format = DateTime)]
        pub since: Option<String>,
        /// RFC 3339.
        #[param(format = DateTime)]
        pub until: Option<String>,
        /// The sequence number of the last record seen.
        #[param(minimum = 0)]
        pub after: Option<i64>,
        /// Default 100.
        #[param(minimum = 1, maximum = 500)]
        pub limit: Option<i64>,
    }
}
