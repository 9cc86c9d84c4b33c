//! An execution's log: GET /api/v2/executions/{id}/logs.
//!
//! The log router writes every event of one execution to
//! `executions/<id>.log` under the log root (JSON lines, already masked).
//! This endpoint serves that file as JSON lines (`format=json`, the
//! default) or as readable text (`format=text`), and with `follow=true` as
//! a live stream of server-sent events: what is there, then each new line as
//! it is written, until the execution has ended and its log is complete
//! (`event: end`). Rotated parts (`<id>.N.log`, or `<id>.N.log.gz` once
//! compressed; 1 is the oldest) are read first, in order.

use super::openapi::schemas as doc;
use super::{AppState, Problem};
use crate::auth::Permission;
use crate::engine::ExecutionStatus;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Read as _;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often a followed log is checked for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// The parts of one execution's log, oldest first: rotated parts
/// (`<id>.N.log` or `<id>.N.log.gz`, numbered from 1 = oldest, see
/// `crate::logging`), then `<id>.log`, the part being written.
fn parts(file: &FsPath) -> Vec<PathBuf> {
    let (Some(dir), Some(stem)) = (
        file.parent(),
        file.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log")),
    ) else {
        return vec![file.to_path_buf()];
    };
    let mut rotated: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let rest = name.strip_prefix(stem)?.strip_prefix('.')?;
            let n = rest
                .strip_suffix(".log.gz")
                .or_else(|| rest.strip_suffix(".log"))?
                .parse::<u32>()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    rotated.sort_by_key(|(n, _)| *n);
    let mut all: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    all.push(file.to_path_buf());
    all
}

/// The whole text of a part; gzip parts are inflated.
fn read_part(path: &FsPath) -> std::io::Result<String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e),
    };
    if path.extension().is_some_and(|e| e == "gz") {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes.as_slice()).read_to_string(&mut text)?;
        Ok(text)
    } else {
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// One JSON log line as readable text: `ts LEVEL message key=value…`.
pub fn render_text(line: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return line.to_owned();
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    let mut out = format!(
        "{} {:<5} {}",
        s("ts"),
        s("level").to_uppercase(),
        s("message")
    );
    if let Some(fields) = v.get("fields").and_then(Value::as_object) {
        for (k, val) in fields {
            match val {
                Value::String(t) => out.push_str(&format!(" {k}={t}")),
                other => out.push_str(&format!(" {k}={other}")),
            }
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Text,
}

/// GET /api/v2/executions/{id}/logs?format=json|text&follow=true|false
#[utoipa::path(
    get,
    path = "/api/v2/executions/{id}/logs",
    extensions(("x-required-permission" = json!(Permission::Read))),
    tag = "executions",
    summary = "An execution's log",
    params(("id" = String, Path, description = "The execution id"), doc::LogQuery),
    responses(
        (status = 200, description = "The log: JSON lines (`format=json`), text (`format=text`), or with `follow=true` server-sent events (`line` per line, then `end`)", content((String = "application/x-ndjson"), (String = "text/plain"), (doc::LogEvent = "text/event-stream"))),
        (status = 400, description = "A query parameter is not valid or not known (`validation_failed`)", content_type = "application/problem+json", body = doc::Problem),
        (status = 404, description = "No such execution (`execution_not_found`)", content_type = "application/problem+json", body = doc::Problem),
        (status = 503, description = "The store is unavailable (`store_unavailable`) or the log file cannot be read now (`logs_unavailable`); `Retry-After` says when to try again", content_type = "application/problem+json", body = doc::Problem),
    ),
)]
pub(super) async fn execution_logs(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut issues = Vec::new();
    let format = match q.get("format").map(String::as_str) {
        None | Some("json") => Format::Json,
        Some("text") => Format::Text,
        Some(other) => {
            issues.push(crate::model::Issue {
                path: "format".into(),
                message: format!("{other:?} is not one of json, text"),
            });
            Format::Json
        }
    };
    let follow = match q.get("follow").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            issues.push(crate::model::Issue {
                path: "follow".into(),
                message: format!("{other:?} is not true or false"),
            });
            false
        }
    };
    for k in q.keys() {
        if k != "format" && k != "follow" {
            issues.push(super::unknown_param(k));
        }
    }
    if !issues.is_empty() {
        return Problem::validation(issues).into_response();
    }
    let exists = match state.store.get_execution(&id).await {
        Ok(row) => row,
        // 503 with Retry-After when the store is down, 500 otherwise.
        Err(e) => return super::internal(e).into_response(),
    };
    let (Some(_), Some(file)) = (
        exists,
        crate::logging::execution_log_path(&state.log_dir, &id),
    ) else {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "execution_not_found",
            "No such execution",
        )
        .into_response();
    };
    // Lines of this log held in memory (its directory cannot be written
    // now): the file has a hole until they are written, so say so.
    if let Some((lines, why)) = state.held_logs.as_ref().and_then(|h| h.execution(&id)) {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "logs_unavailable",
            "The execution's log cannot be read now",
        )
        .with_detail(format!(
            "{lines} lines of this log are held in memory until the log directory can be \
             written again ({why})"
        ))
        .into_response();
    }
    if follow {
        return follow_log(state, id, file, format).into_response();
    }
    let mut lines = Vec::new();
    for part in parts(&file) {
        match read_part(&part) {
            Ok(text) => lines.extend(text.lines().map(str::to_owned)),
            // The file is there but cannot be read (permissions, an I/O
            // error of the volume): a condition of the node that passes
            // when fixed, told by its kind (no server path).
            Err(e) => {
                tracing::error!(path = %part.display(), error = %e, "reading an execution log");
                return Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "logs_unavailable",
                    "The execution's log cannot be read now",
                )
                .with_detail(format!("the log file cannot be read: {}", e.kind()))
                .into_response();
            }
        }
    }
    match format {
        Format::Json => {
            let mut body = lines.join("\n");
            if !body.is_empty() {
                body.push('\n');
            }
            ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
        }
        Format::Text => {
            let mut body = lines
                .iter()
                .map(|l| render_text(l))
                .collect::<Vec<_>>()
                .join("\n");
            if !body.is_empty() {
                body.push('\n');
            }
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
        }
    }
}

/// State of a followed log.
struct Follow {
    state: Arc<AppState>,
    id: String,
    file: PathBuf,
    format: Format,
    /// Lines already sent from the live file.
    sent: usize,
    /// Whether the rotated parts were sent.
    started: bool,
    /// Lines waiting to go out.
    pending: std::collections::VecDeque<String>,
    done: bool,
}

fn follow_log(
    state: Arc<AppState>,
    id: String,
    file: PathBuf,
    format: Format,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let start = Follow {
        state,
        id,
        file,
        format,
        sent: 0,
        started: false,
        pending: Default::default(),
        done: false,
    };
    let stream = futures::stream::unfold(start, |mut f| async move {
        loop {
            if let Some(line) = f.pending.pop_front() {
                let data = match f.format {
                    Format::Json => line,
                    Format::Text => render_text(&line),
                };
                return Some((Ok(Event::default().event("line").data(data)), f));
            }
            if f.done {
                return None;
            }
            if !f.started {
                f.started = true;
                let all = parts(&f.file);
                for part in &all[..all.len().saturating_sub(1)] {
                    if let Ok(text) = read_part(part) {
                        f.pending.extend(text.lines().map(str::to_owned));
                    }
                }
            }
            // Read whether it has ended first, then the file: a line
            // written before the end is then never missed.
            let ended = matches!(
                f.state.store.get_execution(&f.id).await,
                Ok(Some(row)) if ExecutionStatus::parse(&row.status).is_some_and(ExecutionStatus::is_final)
            );
            let text = read_part(&f.file).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            // A line without its newline is still being written.
            let complete = if text.ends_with('\n') {
                lines.len()
            } else {
                lines.len().saturating_sub(1)
            };
            if complete < f.sent {
                // Rotated under us: start over on the new file.
                f.sent = 0;
            }
            f.pending
                .extend(lines[f.sent..complete].iter().map(|l| (*l).to_owned()));
            f.sent = complete;
            if !f.pending.is_empty() {
                continue;
            }
            if ended {
                f.done = true;
                return Some((Ok(Event::default().event("end").data(f.id.clone())), f));
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rendering_shows_level_message_and_fields() {
        let line = r#"{"ts":"2026-03-30T05:20:00.000Z","level":"info","target":"meridian::engine","message":"attempt succeeded","fields":{"step_id":"a","attempt":1}}"#;
        let t = render_text(line);
        assert!(
            t.starts_with("2026-03-30T05:20:00.000Z INFO  attempt succeeded"),
            "{t}"
        );
        assert!(t.contains("step_id=a") && t.contains("attempt=1"), "{t}");
        assert_eq!(render_text("not json"), "not json");
    }

    #[test]
    fn rotated_parts_come_first_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("abc.log");
        for name in [
            "abc.log",
            "abc.2.log",
            "abc.1.log.gz",
            "abc.10.log",
            "abcd.1.log",
            "other.log",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let names: Vec<String> = parts(&live)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["abc.1.log.gz", "abc.2.log", "abc.10.log", "abc.log"]
        );
    }
}
