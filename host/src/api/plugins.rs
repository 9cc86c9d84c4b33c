//! Plugins through the API: list, inspect, capabilities, and — for admins —
//! upload (install or replace) and removal of a component at run time.
//!
//! An upload is checked in full before anything is stored: the name is a
//! plugin name (the loader's rule; it becomes a file name), the body fits
//! `[api] max_plugin_bytes` (this route's own limit; every other route
//! keeps the 1 MiB one), an optional `?sha256=` matches the body, the
//! component compiles and its `describe` gives that same name, and no
//! built-in plugin has it. Then the component is written to
//! `<plugins dir>/<name>.wasm` through a temporary file and a rename (so a
//! restart loads it, and never half of it), its audit record is appended,
//! and it is put in force ([`crate::runtime::Runtime::install`]): new steps
//! get it, running steps keep the binary they started with. Its effective
//! grants are computed from the grants in force; a grant pinned to the old
//! binary's digest does not apply to the new one.

use super::openapi::schemas as doc;
use super::problem::internal;
use super::{AppState, Problem};
use crate::audit::AuditEntry;
use crate::auth::Caller;
use crate::auth::Permission;
use crate::model::Issue;
use crate::runtime::{Digest, LoadError, LoadedPlugin, PluginSource, SwapError};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Where uploaded plugins are stored, how large one may be, and the lock
/// that makes one upload or removal at a time.
#[derive(Debug)]
pub struct PluginUploads {
    /// `<dir>/<name>.wasm`; the directory `serve` loads plugins from.
    pub dir: PathBuf,
    /// The largest component accepted (`[api] max_plugin_bytes`).
    pub max_bytes: usize,
    /// Held from the checks to the swap, so two uploads of one name cannot
    /// interleave their file writes and swaps.
    lock: tokio::sync::Mutex<()>,
}

impl PluginUploads {
    pub fn new(dir: PathBuf, max_bytes: usize) -> Self {
        Self {
            dir,
            max_bytes,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The settings of a configuration: its upload directory and limit.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self::new(config.upload_dir(), config.api.max_plugin_bytes)
    }

    fn file_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.wasm"))
    }

    /// Whether a plugin was loaded from a file of the upload directory
    /// (only those are replaced or removed on disk).
    fn holds(&self, source: &PluginSource) -> bool {
        let PluginSource::File { path } = source else {
            return false;
        };
        let canonical = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or(p.to_path_buf());
        path.parent()
            .is_some_and(|parent| canonical(parent) == canonical(&self.dir))
    }
}

/// A component as the OpenAPI document describes a request body.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub(super) struct Component(Vec<u8>);

/// DELETE /api/v2/plugins/{name}.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct PluginRemoved {
    pub name: String,
    /// `sha256:<hex>` of the component removed.
    pub digest: String,
    pub removed: bool,
}

/// GET /api/v2/plugins: the loaded plugins.
#[utoipa::path(
    get,
    path = "/api/v2/plugins",
    extensions(("x-required-permission" = json!(Permission::Read))),
    tag = "security",
    summary = "List the loaded plugins",
    responses(
        (status = 200, description = "The plugins", body = doc::Plugins),
    ),
)]
pub(super) async fn list_plugins(
    State(state): State<Arc<AppState>>,
    caller: Option<axum::Extension<Caller>>,
) -> Response {
    let plugins = state.runtime.plugins();
    let infos: Vec<_> = plugins
        .iter()
        .map(|p| plugin_view(&p.info, caller.as_deref()))
        .collect();
    let unloadable: Vec<_> = state
        .runtime
        .unloadable()
        .iter()
        .map(|u| unloadable_view(u, caller.as_deref()))
        .collect();
    Json(json!({ "plugins": infos, "unloadable": unloadable })).into_response()
}

/// A component that could not be loaded, as this caller may see it: the
/// server path of its file (in `source`, or quoted in the reason) for
/// admins only.
fn unloadable_view(u: &crate::runtime::UnloadablePlugin, caller: Option<&Caller>) -> Value {
    let mut v = serde_json::to_value(u).unwrap_or(Value::Null);
    let admin = caller.is_some_and(|c| c.role.allows(crate::auth::Permission::Admin));
    if !admin && let crate::runtime::PluginSource::File { path } = &u.source {
        if let Some(source) = v.get_mut("source").and_then(Value::as_object_mut) {
            source.remove("path");
        }
        v["reason"] = json!(u.reason.replace(&*path.to_string_lossy(), &u.file));
    }
    v
}

/// A plugin as this caller may see it: the file it was loaded from is a
/// path on the server (it names the data dir, and so the store), shown to
/// admins only; everyone else sees only that it is a file.
pub(super) fn plugin_view(info: &crate::runtime::PluginInfo, caller: Option<&Caller>) -> Value {
    let mut v = serde_json::to_value(info).unwrap_or(Value::Null);
    let admin = caller.is_some_and(|c| c.role.allows(crate::auth::Permission::Admin));
    if !admin && let Some(source) = v.get_mut("source").and_then(Value::as_object_mut) {
        source.remove("path");
    }
    v
}

fn no_such_plugin(name: &str) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "No such plugin")
        .with_detail(format!("no plugin named {name:?} is loaded"))
}

/// GET /api/v2/plugins/{name}: what a loaded plugin is — version, digest,
/// source, config schema, the capabilities it asks for, its imports and
/// exports.
#[utoipa::path(
    get,
    path = "/api/v2/plugins/{name}",
    extensions(("x-required-permission" = json!(Permission::Read))),
    tag = "security",
    summary = "Inspect a loaded plugin",
    params(("name" = String, Path, description = "The plugin's (step type's) name")),
    responses(
        (status = 200, description = "The plugin", body = doc::PluginInfo),
        (status = 404, description = "No plugin of that name is loaded", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn get_plugin(
    State(state): State<Arc<AppState>>,
    caller: Option<axum::Extension<Caller>>,
    Path(name): Path<String>,
) -> Response {
    match state.runtime.plugin(&name) {
        Some(p) => Json(plugin_view(&p.info, caller.as_deref())).into_response(),
        None => match state.runtime.unloadable_step_type(&name) {
            Some(u) => Problem::new(StatusCode::NOT_FOUND, "not_found", "No such plugin")
                .with_detail(format!(
                    "no plugin named {name:?} is loaded: {} could not be loaded ({}); \
                     see GET /api/v2/plugins",
                    u.file,
                    unloadable_view(&u, caller.as_deref())["reason"]
                        .as_str()
                        .unwrap_or_default()
                ))
                .into_response(),
            None => no_such_plugin(&name).into_response(),
        },
    }
}

/// GET /api/v2/plugins/{name}/capabilities
#[utoipa::path(
    get,
    path = "/api/v2/plugins/{name}/capabilities",
    extensions(("x-required-permission" = json!(Permission::Audit))),
    tag = "security",
    summary = "A plugin's capabilities: asked, granted, used",
    params(("name" = String, Path, description = "The plugin's name")),
    responses(
        (status = 200, description = "The capabilities", body = doc::PluginCapabilities),
        (status = 404, description = "No such plugin (`not_found`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn plugin_capabilities(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Response {
    match crate::runtime::view::capabilities(&state.runtime, &state.store, &name).await {
        Ok(Some(view)) => Json(view).into_response(),
        Ok(None) => no_such_plugin(&name).into_response(),
        Err(e) => internal(e).into_response(),
    }
}

/// 400 when the path's name is not a plugin name (it becomes a file name).
fn check_name(name: &str) -> Result<(), Problem> {
    if crate::runtime::valid_plugin_name(name) {
        return Ok(());
    }
    Err(Problem::validation(vec![Issue {
        path: "name".into(),
        message: format!(
            "{name:?} is not a plugin name: use 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter"
        ),
    }]))
}

/// 422: the component cannot be installed; each reason with its path.
fn unusable(path: &str, message: String) -> Problem {
    let mut p = Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_plugin",
        "The component cannot be installed",
    )
    .with_detail(format!("{path}: {message}"));
    p.errors = vec![Issue {
        path: path.into(),
        message,
    }];
    p
}

fn built_in(name: &str) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "plugin_built_in",
        "A built-in plugin cannot be replaced or removed",
    )
    .with_detail(format!("{name:?} is built into this binary"))
}

fn too_large(limit: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "The request body is too large",
    )
    .with_detail(format!(
        "the limit for a component is {limit} bytes (`[api] max_plugin_bytes`)"
    ))
}

/// `?sha256=<64 hex digits>` (or `sha256:<hex>`), the only parameter.
fn expected_digest(query: &HashMap<String, String>) -> Result<Option<Digest>, Problem> {
    let mut issues = Vec::new();
    let mut digest = None;
    for (k, v) in query {
        if k != "sha256" {
            issues.push(super::unknown_param(k));
            continue;
        }
        let text = v.strip_prefix("sha256:").unwrap_or(v).to_ascii_lowercase();
        match format!("sha256:{text}").parse::<Digest>() {
            Ok(d) => digest = Some(d),
            Err(_) => issues.push(Issue {
                path: "sha256".into(),
                message: format!("{v:?} is not a SHA-256 digest: expected 64 hex digits"),
            }),
        }
    }
    if issues.is_empty() {
        Ok(digest)
    } else {
        Err(Problem::validation(issues))
    }
}

/// The body, up to `limit` bytes; a larger one is 413 (from its
/// `Content-Length` before reading, or while reading).
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, Problem> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(e) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = source {
                if err.is::<http_body_util::LengthLimitError>() {
                    return Err(too_large(limit));
                }
                source = err.source();
            }
            Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed_body",
                "The request body could not be read",
            ))
        }
    }
}

/// The caller the guard put on the request (admin routes only run with
/// one).
fn actor(caller: Option<axum::Extension<Caller>>) -> String {
    caller.map_or_else(|| "anonymous".to_string(), |c| c.actor())
}

/// The audit record of a plugin change: kind `plugin`, the actor, the
/// plugin, the digest now in force (or removed), the previous one.
fn change_record(
    actor: &str,
    plugin: &LoadedPlugin,
    decision: &str,
    previous: Option<&LoadedPlugin>,
) -> AuditEntry {
    let info = &plugin.info;
    AuditEntry {
        at_us: chrono::Utc::now().timestamp_micros(),
        kind: "plugin".into(),
        actor: Some(actor.to_string()),
        plugin: Some(info.name.clone()),
        digest: Some(info.digest.to_string()),
        target: Some(info.name.clone()),
        decision: decision.to_string(),
        detail: Some(match previous {
            Some(p) => format!(
                "version {}, {} bytes; previous {}",
                info.version, info.size_bytes, p.info.digest
            ),
            None => format!("version {}, {} bytes", info.version, info.size_bytes),
        }),
        data: Some(
            json!({
                "version": info.version,
                "size_bytes": info.size_bytes,
                "previous_digest": previous.map(|p| p.info.digest.to_string()),
            })
            .to_string(),
        ),
        ..Default::default()
    }
}

/// Appends one record in its own transaction and mirrors it to the files.
async fn append(state: &AppState, entry: AuditEntry) -> Result<(), Problem> {
    let mut records = state
        .store
        .append_audit(std::slice::from_ref(&entry))
        .await
        .map_err(internal)?;
    if let Some(r) = records.pop() {
        crate::audit::mirror(&r);
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, so the file is either the old one or the whole new one.
async fn write_atomically(path: PathBuf, bytes: Vec<u8>) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let dir = path
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        std::fs::create_dir_all(&dir)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Not `*.wasm`: a left-over temporary file is never loaded.
        let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::now_v7()));
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            // The rename itself is durable once the directory is synced.
            std::fs::File::open(&dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    })
    .await
    .map_err(std::io::Error::other)?
}

/// PUT /api/v2/plugins/{name}
#[utoipa::path(
    put,
    path = "/api/v2/plugins/{name}",
    extensions(("x-required-permission" = json!(Permission::Admin))),
    tag = "security",
    summary = "Upload a plugin component (install, or replace one that is not built in)",
    description = "The body is the component's bytes (`wasm32-wasip2`). It must compile and its `describe` must give `{name}`; it is stored as `<plugins dir>/{name}.wasm` (loaded again at start) and put in force for new steps; running steps keep the binary they started with. Its grants are the ones in force for its name: a grant pinned to an earlier binary's digest does not apply. One `plugin` record (`created` or `replaced`, with the new and the previous digest) goes on the audit trail. The size limit is `[api] max_plugin_bytes` (default 64 MiB).",
    params(
        ("name" = String, Path, description = "The plugin's name (1-64 of a-z, 0-9, '-', '_', starting with a letter)"),
        ("sha256" = Option<String>, Query, description = "The body's expected SHA-256 (64 hex digits); a different body is refused"),
    ),
    request_body(
        description = "The component's bytes",
        content(
            (Component = "application/wasm"),
            (Component = "application/octet-stream"),
        ),
    ),
    responses(
        (status = 201, description = "Installed; the plugin as GET /api/v2/plugins/{name} shows it", body = doc::PluginInfo),
        (status = 200, description = "Replaced; the new plugin as GET /api/v2/plugins/{name} shows it", body = doc::PluginInfo),
        (status = 400, description = "The name is not a plugin name, or a query parameter is not valid (`validation_failed`, naming `name` or the parameter)", content_type = "application/problem+json", body = doc::Problem),
        (status = 409, description = "A built-in plugin has this name (`plugin_built_in`)", content_type = "application/problem+json", body = doc::Problem),
        (status = 413, description = "The body is larger than `[api] max_plugin_bytes` (`body_too_large`)", content_type = "application/problem+json", body = doc::Problem),
        (status = 422, description = "The component does not compile or describe itself, describes another name, or does not match `sha256` (`invalid_plugin`, naming `body`, `name` or `sha256`); nothing is stored", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn upload_plugin(
    State(state): State<Arc<AppState>>,
    caller: Option<axum::Extension<Caller>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match upload(&state, actor(caller), &name, &query, &headers, body).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

async fn upload(
    state: &AppState,
    actor: String,
    name: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    check_name(name)?;
    let expected = expected_digest(query)?;
    let uploads = &state.uploads;
    let bytes = read_body(headers, body, uploads.max_bytes).await?;
    if state
        .runtime
        .plugin(name)
        .is_some_and(|p| matches!(p.info.source, PluginSource::BuiltIn))
    {
        return Err(built_in(name));
    }
    let digest = Digest::of(&bytes);
    if let Some(expected) = expected
        && expected != digest
    {
        return Err(unusable(
            "sha256",
            format!("the body's digest is {digest}, not {expected}"),
        ));
    }
    let _one_at_a_time = uploads.lock.lock().await;
    let path = uploads.file_of(name);
    let plugin = match state
        .runtime
        .prepare(
            &bytes,
            PluginSource::File { path: path.clone() },
            &format!("the uploaded component {name:?}"),
        )
        .await
    {
        Ok(p) => p,
        Err(LoadError::Compile { message, .. }) => {
            return Err(unusable(
                "body",
                format!("not a loadable component: {message}"),
            ));
        }
        Err(LoadError::Describe { message, .. }) => return Err(unusable("body", message)),
        Err(e) => return Err(internal(e)),
    };
    if plugin.info.name != name {
        return Err(unusable(
            "name",
            format!(
                "the component describes itself as {:?}, not {name:?}",
                plugin.info.name
            ),
        ));
    }
    let previous = state.runtime.plugin(name);
    if previous
        .as_ref()
        .is_some_and(|p| matches!(p.info.source, PluginSource::BuiltIn))
    {
        return Err(built_in(name));
    }
    let decision = if previous.is_some() {
        "replaced"
    } else {
        "created"
    };
    append(
        state,
        change_record(&actor, &plugin, decision, previous.as_deref()),
    )
    .await?;
    if let Err(e) = write_atomically(path.clone(), bytes).await {
        tracing::error!(plugin = %name, path = %path.display(), error = %e, "storing an uploaded plugin failed");
        state.audit.record(AuditEntry {
            kind: "plugin".into(),
            actor: Some(actor),
            plugin: Some(name.to_string()),
            digest: Some(digest.to_string()),
            target: Some(name.to_string()),
            decision: "failed".into(),
            detail: Some("the component could not be stored; nothing changed".into()),
            ..Default::default()
        });
        return Err(internal(e));
    }
    let replaced = match state.runtime.install(plugin) {
        Ok(r) => r,
        Err(SwapError::BuiltIn(n)) => return Err(built_in(&n)),
        Err(e) => return Err(internal(e)),
    };
    // An earlier file of this plugin under another name would load as a
    // duplicate at the next start.
    if let Some(old) = &replaced
        && let PluginSource::File { path: old_path } = &old.info.source
        && *old_path != path
        && uploads.holds(&old.info.source)
        && let Err(e) = tokio::fs::remove_file(old_path).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(plugin = %name, path = %old_path.display(), error = %e, "removing the replaced plugin's file failed");
    }
    let Some(now) = state.runtime.plugin(name) else {
        return Err(internal(format!("plugin {name:?} vanished after install")));
    };
    let status = if replaced.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(&now.info)).into_response())
}

/// DELETE /api/v2/plugins/{name}
#[utoipa::path(
    delete,
    path = "/api/v2/plugins/{name}",
    extensions(("x-required-permission" = json!(Permission::Admin))),
    tag = "security",
    summary = "Remove an uploaded plugin",
    description = "Deletes `<plugins dir>/{name}.wasm` and takes the plugin out of force: running steps finish with it, new ones (and the validation of jobs using it) find no such step type. One `plugin` record (`removed`) goes on the audit trail. Built-in plugins, and plugins loaded from elsewhere than the plugins directory, are not removed.",
    params(("name" = String, Path, description = "The plugin's name")),
    responses(
        (status = 200, description = "Removed", body = PluginRemoved),
        (status = 400, description = "The name is not a plugin name (`validation_failed`, naming `name`)", content_type = "application/problem+json", body = doc::Problem),
        (status = 404, description = "No plugin of that name is loaded (`not_found`)", content_type = "application/problem+json", body = doc::Problem),
        (status = 409, description = "The plugin is built in (`plugin_built_in`) or was not loaded from the plugins directory (`plugin_not_uploaded`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn delete_plugin(
    State(state): State<Arc<AppState>>,
    caller: Option<axum::Extension<Caller>>,
    Path(name): Path<String>,
) -> Response {
    match remove(&state, actor(caller), &name).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

async fn remove(state: &AppState, actor: String, name: &str) -> Result<Response, Problem> {
    check_name(name)?;
    let uploads = &state.uploads;
    let _one_at_a_time = uploads.lock.lock().await;
    let Some(plugin) = state.runtime.plugin(name) else {
        return Err(no_such_plugin(name));
    };
    let PluginSource::File { path } = &plugin.info.source else {
        return Err(built_in(name));
    };
    if !uploads.holds(&plugin.info.source) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "plugin_not_uploaded",
            "The plugin was not loaded from the plugins directory",
        )
        .with_detail(format!(
            "{name:?} was loaded from a file outside the plugins directory; remove it there"
        )));
    }
    append(state, change_record(&actor, &plugin, "removed", None)).await?;
    if let Err(e) = tokio::fs::remove_file(path).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::error!(plugin = %name, path = %path.display(), error = %e, "removing a plugin's file failed");
        state.audit.record(AuditEntry {
            kind: "plugin".into(),
            actor: Some(actor),
            plugin: Some(name.to_string()),
            digest: Some(plugin.info.digest.to_string()),
            target: Some(name.to_string()),
            decision: "failed".into(),
            detail: Some("the component's file could not be removed; nothing changed".into()),
            ..Default::default()
        });
        return Err(internal(e));
    }
    match state.runtime.remove(name) {
        Ok(_) | Err(SwapError::NotFound(_)) => {}
        Err(SwapError::BuiltIn(n)) => return Err(built_in(&n)),
    }
    Ok(Json(PluginRemoved {
        name: name.to_string(),
        digest: plugin.info.digest.to_string(),
        removed: true,
    })
    .into_response())
}
