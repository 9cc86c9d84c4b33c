//! The security team's resources: the audit trail (query, verify) and the
//! grants in force (plugins and their capabilities are in `plugins.rs`).

use super::openapi::schemas as doc;
use super::problem::internal;
use super::{AppState, Problem};
use crate::audit::AuditQuery;
use crate::auth::Permission;
use crate::model::Issue;
use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// GET /api/v2/audit?kind=&plugin=&job_id=&execution_id=&capability=&decision=&since=&until=&after=&limit=
#[utoipa::path(
    get,
    path = "/api/v2/audit",
    extensions(("x-required-permission" = json!(Permission::Audit))),
    tag = "security",
    summary = "Query the audit trail",
    params(doc::AuditQuery),
    responses(
        (status = 200, description = "A page of records in sequence order", body = doc::AuditPage),
        (status = 400, description = "A query parameter is not valid or not known (`validation_failed`)", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn query_audit(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut issues = Vec::new();
    let mut query = AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    let instant = |name: &str, v: &str, issues: &mut Vec<Issue>| {
        chrono::DateTime::parse_from_rfc3339(v)
            .map(|t| t.timestamp_micros())
            .map_err(|_| {
                issues.push(Issue {
                    path: name.into(),
                    message: format!("{v:?} is not an RFC 3339 instant"),
                })
            })
            .ok()
    };
    for (k, v) in &q {
        match k.as_str() {
            "kind" => query.kind = Some(v.clone()),
            "plugin" => query.plugin = Some(v.clone()),
            "job_id" => query.job_id = Some(v.clone()),
            "execution_id" => query.execution_id = Some(v.clone()),
            "capability" => query.capability = Some(v.clone()),
            "decision" => {
                const DECISIONS: [&str; 12] = [
                    "allowed",
                    "denied",
                    "failed",
                    "created",
                    "replaced",
                    "removed",
                    "revoked",
                    "ok",
                    "rejected",
                    "unauthenticated",
                    "forbidden",
                    "missed",
                ];
                if !DECISIONS.contains(&v.as_str()) {
                    issues.push(Issue {
                        path: "decision".into(),
                        message: format!("{v:?} is not one of {}", DECISIONS.join(", ")),
                    });
                }
                query.decision = Some(v.clone());
            }
            "since" => query.since_us = instant("since", v, &mut issues),
            "until" => query.until_us = instant("until", v, &mut issues),
            "after" => match v.parse::<i64>() {
                Ok(n) if n >= 0 => query.after_seq = Some(n),
                _ => issues.push(Issue {
                    path: "after".into(),
                    message: "must be a record's sequence number".into(),
                }),
            },
            "limit" => {
                if let Some(n) = super::limit_param(v, &mut issues) {
                    query.limit = n as u32;
                }
            }
            _ => issues.push(super::unknown_param(k)),
        }
    }
    if !issues.is_empty() {
        return Problem::validation(issues).into_response();
    }
    match crate::audit::query(&state.store, &query).await {
        Ok(records) => {
            let next = (records.len() as u32 == query.limit)
                .then(|| records.last().map(|r| r.seq))
                .flatten();
            Json(json!({ "records": records, "next_after": next })).into_response()
        }
        Err(e) => internal(e).into_response(),
    }
}

/// GET /api/v2/audit/verify: the chain check, the comparison with this
/// node's mirrored audit log files (`.log` and `.gz`) and the check of the
/// signed checkpoints there; 200 either way, `ok` says whether all of it
/// holds and `reasons` why not.
#[utoipa::path(
    get,
    path = "/api/v2/audit/verify",
    extensions(("x-required-permission" = json!(Permission::Audit))),
    tag = "security",
    summary = "Verify the audit trail: its hash chain, its mirrored log files and the signed checkpoints of its head",
    responses(
        (status = 200, description = "The check; `ok` is false (with `reasons`) when the chain is broken, the mirror differs, is missing or holds files that cannot be read, or the anchor is missing, behind, signed by an unknown key, forged or contradicted by the store", body = doc::VerifyReport),
    ),
)]
pub(super) async fn verify_audit(State(state): State<Arc<AppState>>) -> Response {
    use crate::audit::anchor;
    let settings = &state.audit_settings;
    let options = crate::audit::mirror::VerifyOptions {
        mirrors: vec![
            state
                .log_dir
                .join(crate::logging::Category::Audit.dir_name()),
        ],
        keys: anchor::TrustedKeys::resolve(&settings.trusted_keys, &settings.signing_key),
        witness: Vec::new(),
        max_lag: anchor::max_lag(settings.checkpoint_interval),
    };
    match crate::audit::mirror::verify_all(&state.store, &options).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => internal(e).into_response(),
    }
}

/// GET /api/v2/grants: every grant in force, the config's and the stored.
#[utoipa::path(
    get,
    path = "/api/v2/grants",
    extensions(("x-required-permission" = json!(Permission::Audit))),
    tag = "security",
    summary = "List the grants in force (config and stored)",
    responses(
        (status = 200, description = "The grants", body = doc::Grants, links(
            ("ReplaceFirstGrant" = (operation_id = "replace_grant", parameters(("id" = "$response.body#/grants/0/id")), description = "Replace the first grant listed (a stored one; a config grant's id is refused)")),
            ("RevokeFirstGrant" = (operation_id = "revoke_grant", parameters(("id" = "$response.body#/grants/0/id")), description = "Revoke the first grant listed")),
        )),
    ),
)]
pub(super) async fn list_grants(State(state): State<Arc<AppState>>) -> Response {
    Json(json!({ "grants": state.runtime.grant_entries() })).into_response()
}
