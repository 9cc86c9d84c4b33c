//! Problem documents (RFC 9457) and the parsing every handler shares: a
//! body or a query parameter that does not parse is a problem naming its
//! JSON path; a failure that is not the caller's is logged in full and
//! answered without internal text.

use super::{MAX_BODY_BYTES, REQUEST_TIMEOUT, RETRY_AFTER_S};
use crate::model::Issue;
use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An RFC 9457 problem document (`application/problem+json`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `https://meridian.dev/problems/<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// Stable, machine-readable error code (`validation_failed`,
    /// `malformed_json`, `not_found`, `job_not_found`, …).
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Every problem with the request, each with its JSON path (only on
    /// `validation_failed`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Issue>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, title: impl Into<String>) -> Self {
        Self {
            kind: format!("https://meridian.dev/problems/{code}"),
            title: title.into(),
            status: status.as_u16(),
            code,
            detail: None,
            errors: Vec::new(),
        }
    }

    /// The same problem with a human explanation of this occurrence.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// 400 with every problem listed.
    pub fn validation(issues: Vec<Issue>) -> Self {
        let mut p = Self::new(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "The request is not valid",
        );
        p.detail = Some(
            issues
                .iter()
                .map(|i| format!("{}: {}", i.path, i.message))
                .collect::<Vec<_>>()
                .join("; "),
        );
        p.errors = issues;
        p
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            Json(self),
        )
            .into_response();
        // A 503 is a passing condition (the store restarting, a disk
        // freed): say when to come back.
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from_static(RETRY_AFTER_S),
            );
        }
        response
    }
}

/// Parses a JSON body into `T`; errors name the path where it broke.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = meridian_json_path::JsonPath::from_serde(e.path()).into();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "The request body is not valid JSON",
            )
            .with_detail(inner.to_string())
        } else {
            Problem::validation(vec![Issue {
                path,
                message: inner.to_string(),
            }])
        }
    })
}

/// The problem document for a failure that is not the caller's: 503
/// `store_unavailable` (with `Retry-After`) when the store is in one of its
/// passing conditions ([`crate::store::Unavailable`]: unreachable, disk
/// full, read-only, busy), 500 `internal` otherwise. Either way the client
/// gets no internal text; the log gets all of it.
pub(crate) fn internal<E: std::fmt::Display + 'static>(e: E) -> Problem {
    if let Some(why) = store_unavailable(&e) {
        tracing::warn!(error = %e, reason = why.describe(), "request refused: the store is unavailable");
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "The store is unavailable; retry later",
        )
        .with_detail(why.describe());
    }
    tracing::error!(error = %e, "request failed");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "The request could not be completed",
    )
}

/// The store's passing condition behind an error, if that is what it is:
/// a store error itself, the engine's or the queues' wrapping of one, or
/// one in an `anyhow` chain.
fn store_unavailable(e: &dyn std::any::Any) -> Option<crate::store::Unavailable> {
    use crate::store::StoreError;
    if let Some(e) = e.downcast_ref::<StoreError>() {
        return e.unavailable();
    }
    if let Some(crate::engine::EngineError::Store(e)) =
        e.downcast_ref::<crate::engine::EngineError>()
    {
        return e.unavailable();
    }
    if let Some(crate::engine::service::SubmitError::Store(e)) =
        e.downcast_ref::<crate::engine::service::SubmitError>()
    {
        return e.unavailable();
    }
    if let Some(e) = e.downcast_ref::<anyhow::Error>() {
        return e
            .chain()
            .find_map(|c| c.downcast_ref::<StoreError>())
            .and_then(StoreError::unavailable);
    }
    None
}

/// The body-limit and timeout layers answer with a bare status; clients
/// get a problem document like everywhere else.
pub(super) async fn bare_errors_as_problems(res: Response) -> Response {
    let content_type = res.headers().get(header::CONTENT_TYPE);
    if content_type.is_some_and(|t| t == "application/problem+json")
        || (content_type.is_some() && res.status() != StatusCode::PAYLOAD_TOO_LARGE)
    {
        return res;
    }
    match res.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "The request body is too large",
        )
        .with_detail(format!("the limit is {MAX_BODY_BYTES} bytes"))
        .into_response(),
        StatusCode::REQUEST_TIMEOUT => Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "The request took too long",
        )
        .with_detail(format!("the limit is {} s", REQUEST_TIMEOUT.as_secs()))
        .into_response(),
        _ => res,
    }
}

/// The `limit` of a list request: a whole number from 1 to 500; `None`
/// (and an issue) otherwise.
pub(crate) fn limit_param(value: &str, issues: &mut Vec<Issue>) -> Option<i64> {
    match value.parse::<i64>() {
        Ok(n) if (1..=500).contains(&n) => Some(n),
        _ => {
            issues.push(Issue {
                path: "limit".into(),
                message: "must be a whole number from 1 to 500".into(),
            });
            None
        }
    }
}

/// The issue for a query parameter the endpoint does not take.
pub(crate) fn unknown_param(name: &str) -> Issue {
    Issue {
        path: name.to_owned(),
        message: "unknown parameter".into(),
    }
}

/// A query parameter naming one variant of a snake_case enum.
pub(crate) fn enum_param<T: serde::de::DeserializeOwned>(
    value: Option<String>,
    name: &str,
    allowed: &str,
    issues: &mut Vec<Issue>,
) -> Option<T> {
    let v = value?;
    serde_json::from_value(serde_json::Value::String(v.clone()))
        .map_err(|_| {
            issues.push(Issue {
                path: name.into(),
                message: format!("{v:?} is not one of {allowed}"),
            })
        })
        .ok()
}
