//! The API's guard (every matched route: token, role, audit) and the admin
//! resources it protects: tokens and grant changes.

use super::openapi::schemas as doc;
use super::problem::internal;
use super::refusals::{Refusal, RefusalTally};
use super::{AppState, Problem};
use crate::audit::AuditEntry;
use crate::auth::{self, Caller, Permission, Role, TokenError};
use crate::capabilities::grants::stored::{self, GrantChangeError, GrantOrigin};
use crate::model::Issue;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a token's `last_used_at` is written at most.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// The guard's own state: when each token's use was last written, and the
/// refusals without a valid token counted in the current window.
#[derive(Debug, Default)]
pub struct AuthState {
    touched: Mutex<HashMap<String, Instant>>,
    refusals: Arc<RefusalTally>,
}

impl AuthState {
    /// The guard's state with refusals without a valid token aggregated
    /// per `refusal_window` (`[api] refusal_window_s`).
    pub fn new(refusal_window: Duration) -> Self {
        Self {
            touched: Mutex::default(),
            refusals: Arc::new(RefusalTally::new(refusal_window)),
        }
    }

    /// The refusals without a valid token of the current window.
    pub fn refusals(&self) -> &Arc<RefusalTally> {
        &self.refusals
    }

    fn due(&self, token_id: &str) -> bool {
        let Ok(mut touched) = self.touched.lock() else {
            return false;
        };
        let now = Instant::now();
        match touched.get(token_id) {
            Some(t) if now.duration_since(*t) < TOUCH_EVERY => false,
            _ => {
                touched.insert(token_id.to_string(), now);
                true
            }
        }
    }
}

/// How long a public route waits for its token to be looked up before it
/// serves the caller as anonymous: with the store probe's own timeout
/// ([`crate::doctor::STORE_PROBE_TIMEOUT`]) the health check answers
/// within a second.
const PUBLIC_AUTH_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(200);

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Runs on every matched route: authenticates the bearer token, checks the
/// role against the route's permission ([`super::route_permission`]), hands the [`Caller`] to the handler,
/// and puts refusals and state changes on the audit trail — a refusal
/// without a valid token as a count in its window's aggregate record
/// (see [`super::refusals`]), the rest one record each.
pub(super) async fn guard(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let target = format!("{method} {}", req.uri().path());
    // A method a route does not serve (axum then answers 405), or a route
    // registered without a permission, is an admin's only: nothing gets
    // through for want of a declaration.
    let need = super::route_permission(&method, &route).unwrap_or(Permission::Admin);
    let presented = bearer(req.headers()).is_some();
    let caller = match bearer(req.headers()) {
        // A public route (the health check above all) answers whatever the
        // store does: when the token cannot be looked up in time, the
        // caller is served as one without a token.
        Some(token) if need == Permission::Public => {
            match tokio::time::timeout(PUBLIC_AUTH_TIMEOUT, auth::authenticate(&state.store, token))
                .await
            {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, route = %route, "token not checked: served as anonymous");
                    None
                }
                Err(_) => {
                    tracing::warn!(route = %route, "token not checked in time: served as anonymous");
                    None
                }
            }
        }
        Some(token) => match auth::authenticate(&state.store, token).await {
            Ok(c) => c,
            Err(e) => return internal(e).into_response(),
        },
        None => None,
    };
    if need != Permission::Public {
        let refusal = match &caller {
            None => Some((
                "unauthenticated",
                StatusCode::UNAUTHORIZED,
                "A valid API token is required",
                "send `Authorization: Bearer <token>`; `meridian token create` makes one"
                    .to_string(),
            )),
            Some(c) if !c.role.allows(need) => Some((
                "forbidden",
                StatusCode::FORBIDDEN,
                "This token's role may not do this",
                format!(
                    "the {} role may not {target}; it needs {}",
                    c.role.as_str(),
                    needs(need)
                ),
            )),
            Some(_) => None,
        };
        if let Some((code, status, title, detail)) = refusal {
            if caller.is_some() {
                record(&state, caller.as_ref(), &target, code, status);
            } else {
                // Anyone can send these: counted into the window's
                // aggregate record, so a flood cannot grow the trail.
                let peer = req
                    .extensions()
                    .get::<ConnectInfo<std::net::SocketAddr>>()
                    .map(|c| c.0.ip());
                let why = if presented {
                    Refusal::InvalidToken
                } else {
                    Refusal::NoToken
                };
                state
                    .access
                    .refusals
                    .count(peer, &format!("{method} {route}"), why);
            }
            let mut res = Problem::new(status, code, title)
                .with_detail(detail)
                .into_response();
            if status == StatusCode::UNAUTHORIZED {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"meridian\""),
                );
            }
            return res;
        }
    }
    if let Some(c) = &caller {
        if state.access.due(&c.token_id) {
            let store = state.store.clone();
            let id = c.token_id.clone();
            tokio::spawn(async move {
                if let Err(e) = store
                    .touch_token(&id, chrono::Utc::now().timestamp_micros())
                    .await
                {
                    tracing::warn!(error = %e, "recording a token's last use failed");
                }
            });
        }
        req.extensions_mut().insert(c.clone());
    }
    let res = next.run(req).await;
    if auth::changes_state(&method, need) {
        let decision = match res.status().as_u16() {
            200..=399 => "ok",
            400..=499 => "rejected",
            _ => "failed",
        };
        record(&state, caller.as_ref(), &target, decision, res.status());
    }
    res
}

fn needs(p: Permission) -> &'static str {
    match p {
        Permission::Public | Permission::Read => "any role",
        Permission::Operate => "operator or admin",
        Permission::Audit => "auditor or admin",
        Permission::Admin => "admin",
    }
}

fn record(
    state: &AppState,
    caller: Option<&Caller>,
    target: &str,
    decision: &str,
    status: StatusCode,
) {
    state.audit.record(AuditEntry {
        kind: "api".into(),
        actor: Some(caller.map_or_else(|| "anonymous".to_string(), Caller::actor)),
        target: Some(target.to_string()),
        decision: decision.to_string(),
        detail: Some(format!(
            "role {}, status {}",
            caller.map_or("none", |c| c.role.as_str()),
            status.as_u16()
        )),
        ..Default::default()
    });
}

/// The caller the guard put on the request (admin routes only run with
/// one).
fn actor(caller: Option<axum::Extension<Caller>>) -> String {
    caller.map_or_else(|| "anonymous".to_string(), |c| c.actor())
}

fn body_json(body: &Bytes) -> Result<Value, Problem> {
    super::parse_body(body)
}

/// GET /api/v2/tokens
#[utoipa::path(
    get,
    path = "/api/v2/tokens",
    extensions(("x-required-permission" = json!(Permission::Admin))),
    tag = "security",
    summary = "List the API tokens (never the tokens themselves)",
    responses(
        (status = 200, description = "The tokens", body = doc::Tokens),
    ),
)]
pub(super) async fn list_tokens(State(state): State<Arc<AppState>>) -> Response {
    match state.store.list_tokens().await {
        Ok(rows) => Json(json!({ "tokens": rows.iter().map(auth::view).collect::<Vec<_>>() }))
            .into_response(),
        Err(e) => internal(e).into_response(),
    }
}

/// POST /api/v2/tokens {"role": "...", "name": "..."}: the token is in the
/// response, once.
#[utoipa::path(
    post,
    path = "/api/v2/tokens",
    extensions(("x-required-permission" = json!(Permission::Admin))),
    tag = "security",
    summary = "Create an API token (the token is in the response, once)",
    request_body(content = doc::TokenRequest),
    responses(
        (status = 201, description = "Created, with `token`", body = doc::Token),
        (status = 400, description = "The body is not JSON (`malformed_json`) or not valid (`validation_failed`, every issue with its JSON path)", content_type = "application/problem+json", body = doc::Problem),
        (status = 409, description = "The name is taken (`conflict`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn create_token(
    State(state): State<Arc<AppState>>,
    caller: Option<axum::Extension<Caller>>,
    body: Bytes,
) -> Response {
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    let mut issues = Vec::new();
    let Some(obj) = v.as_object() else {
        return Problem::validation(vec![Issue {
            path: String::new(),
            message: "expected an object with `role` and an optional `name`".into(),
        }])
        .into_response();
    };
    for k in obj.keys() {
        if k != "role" && k != "name" {
            issues.push(super::unknown_param(k));
        }
    }
    let role = match obj.get("role").and_then(Value::as_str) {
        Some(r) => Role::parse(r).or_else(|| {
            issues.push(Issue {
                path: "role".into(),
                message: format!("{r:?} is not one of viewer, operator, auditor, admin"),
            });
            None
        }),
        None => {
            issues.push(Issue {
                path: "role".into(),
                message: "required: viewer, operator, auditor or admin".into(),
            });
            None
        }
    };
    let name = match obj.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => {
            issues.push(Issue {
                path: "name".into(),
                message: "must be a string".into(),
            });
            None
        }
    };
    let (Some(role), true) = (role, issues.is_empty()) else {
        return Problem::validation(issues).into_response();
    };
    match auth::create_token(&state.store, name, role, &actor(caller)).await {
        Ok((token, row, _)) => {
            let mut v = auth::view(&row);
            v["token"] = json!(token);
            (StatusCode::CREATED, Json(v)).into_response()
        }
        Err(TokenError::InvalidName(m)) => Problem::validation(vec![Issue {
            path: "name".into(),
            message: m,
        }])
        .into_response(),
        Err(TokenError::NameTaken(n)) => {
            Problem::new(StatusCode::CONFLICT, "conflict", "The name is taken")
                .with_detail(format!("a token named {n:?} already exists"))
                .into_response()
        }
        Err(e) => internal(e).into_response(),
    }
}

/// DELETE /api/v2/tokens/{id}: revokes by id or name.
#[utoipa::path(
    delete,
    path = "/api/v2/tokens/{id}",
    extensions(("x-required-permission" = json!(Permission::Admin))),
    tag = "security",
    summary = "Revoke an API token",
    params(("id" = String, Path, description = "The token's id or name")),
    responses(
        (status = 200, description = "Revoked", body = doc::Token),
        (status = 404, description = "No such live token (`not_found`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn revoke_token(
    State(state): State<Arc<AppState>>,
    caller: Option<axum::Extension<Caller>>,
    Path(id): Path<String>,
) -> Response {
    match auth::revoke_token(&state.store, &id, &actor(caller)).await {
        Ok((row, _)) => Json(auth::view(&row)).into_response(),
        Err(TokenError::NotFound(_)) => {
            Problem::new(StatusCode::NOT_FOUND, "not_found", "No such token")
                .with_detail(format!("no live token with id or name {id:?}"))
                .into_response()
        }
        Err(e) => internal(e).into_response(),
    }
}

/// Re-reads the stored grants and puts them in force on this node at once
/// (other nodes follow within the watch interval).
async fn reapply(state: &AppState) -> Result<(), Problem> {
    let config: Vec<_> = state
        .runtime
        .grant_entries()
        .into_iter()
        .filter(|e| e.origin == GrantOrigin::Config)
        .map(|e| e.grant)
        .collect();
    state
        .runtime
        .apply_grants(&config, &state.store)
        .await
        .map_err(internal)
}

/// POST /api/v2/grants: the body is one grant in the `[[grants]]` shape.
#[utoipa::path(
    post,
    path = "/api/v2/grants",
    extensions(("x-required-permission" = json!(Permission::Admin))),
    tag = "security",
    summary = "Store a capability grant (the `[[grants]]` shape) and put it in force",
    request_body(content = Object, description = "One grant, as in the config file's `[[grants]]`"),
    responses(
        (status = 201, description = "Stored and in force", body = doc::GrantEntry, links(
            ("ReplaceGrant" = (operation_id = "replace_grant", parameters(("id" = "$response.body#/id")), description = "Replace the grant just stored")),
            ("RevokeGrant" = (operation_id = "revoke_grant", parameters(("id" = "$response.body#/id")), description = "Revoke the grant just stored")),
        )),
        (status = 400, description = "The body is not JSON (`malformed_json`) or not valid (`validation_failed`, every issue with its JSON path)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn create_grant(
    State(state): State<Arc<AppState>>,
    caller: Option<axum::Extension<Caller>>,
    body: Bytes,
) -> Response {
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    let spec = match stored::from_json(v) {
        Ok(s) => s,
        Err(errors) => return grant_issues(errors),
    };
    match stored::create(&state.store, spec, &actor(caller)).await {
        Ok((entry, _)) => {
            if let Err(p) = reapply(&state).await {
                return p.into_response();
            }
            (StatusCode::CREATED, Json(entry)).into_response()
        }
        Err(GrantChangeError::Invalid(errors)) => grant_issues(errors),
        Err(e) => internal(e).into_response(),
    }
}

/// PUT /api/v2/grants/{id}: the body is the grant's new definition in the
/// `[[grants]]` shape; applied live like a new grant.
#[utoipa::path(
    put,
    path = "/api/v2/grants/{id}",
    extensions(("x-required-permission" = json!(Permission::Admin))),
    tag = "security",
    summary = "Replace a stored grant's definition and put it in force",
    description = "The grant keeps its id; its definition is replaced in one transaction with its audit record (`grant`, `replaced`, the previous definition in the detail) and applies to the next step that starts.",
    params(("id" = String, Path, description = "The stored grant's id")),
    request_body(content = Object, description = "One grant, as in the config file's `[[grants]]`"),
    responses(
        (status = 200, description = "Replaced and in force", body = doc::GrantEntry),
        (status = 400, description = "The body is not JSON (`malformed_json`) or not valid (`validation_failed`, every issue with its JSON path); nothing changes", content_type = "application/problem+json", body = doc::Problem),
        (status = 404, description = "No stored grant has this id (`not_found`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn replace_grant(
    State(state): State<Arc<AppState>>,
    caller: Option<axum::Extension<Caller>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    let spec = match stored::from_json(v) {
        Ok(s) => s,
        Err(errors) => return grant_issues(errors),
    };
    match stored::replace(&state.store, &id, spec, &actor(caller)).await {
        Ok((entry, _)) => {
            if let Err(p) = reapply(&state).await {
                return p.into_response();
            }
            Json(entry).into_response()
        }
        Err(GrantChangeError::Invalid(errors)) => grant_issues(errors),
        Err(GrantChangeError::NotFound(_)) => no_stored_grant().into_response(),
        Err(e) => internal(e).into_response(),
    }
}

/// A grant that does not parse: 400 `validation_failed`, every issue with
/// its path in the grant.
fn grant_issues(errors: Vec<crate::capabilities::grants::GrantError>) -> Response {
    Problem::validation(
        errors
            .into_iter()
            .map(|e| Issue {
                path: e.path,
                message: e.message,
            })
            .collect(),
    )
    .into_response()
}

fn no_stored_grant() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "No such stored grant").with_detail(
        "no stored grant has this id (grants from the config file are changed by editing it)",
    )
}

/// DELETE /api/v2/grants/{id}
#[utoipa::path(
    delete,
    path = "/api/v2/grants/{id}",
    extensions(("x-required-permission" = json!(Permission::Admin))),
    tag = "security",
    summary = "Revoke a stored grant",
    params(("id" = String, Path, description = "The stored grant's id")),
    responses(
        (status = 200, description = "Revoked", body = doc::GrantRevoked),
        (status = 404, description = "No stored grant has this id (`not_found`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn revoke_grant(
    State(state): State<Arc<AppState>>,
    caller: Option<axum::Extension<Caller>>,
    Path(id): Path<String>,
) -> Response {
    match stored::revoke(&state.store, &id, &actor(caller)).await {
        Ok((row, _)) => {
            if let Err(p) = reapply(&state).await {
                return p.into_response();
            }
            Json(json!({ "id": row.id, "plugin": row.plugin, "revoked": true })).into_response()
        }
        Err(GrantChangeError::NotFound(_)) => no_stored_grant().into_response(),
        Err(e) => internal(e).into_response(),
    }
}
