//! Executions as the API and the CLI show them: stored rows turned into
//! JSON with RFC 3339 instants and parsed JSON fields.

use crate::store::{AttemptRow, ExecutionRow, StepRunRow, Store, StoreError};
use chrono::{DateTime, SecondsFormat};
use serde_json::{Value, json};

/// An instant stored as microseconds, as RFC 3339 UTC.
pub fn instant(us: Option<i64>) -> Value {
    us.and_then(DateTime::from_timestamp_micros)
        .map_or(Value::Null, |t| {
            Value::String(t.to_rfc3339_opts(SecondsFormat::Millis, true))
        })
}

fn duration_ms(start: Option<i64>, end: Option<i64>) -> Value {
    match (start, end) {
        (Some(s), Some(e)) => json!((e - s) as f64 / 1000.0),
        _ => Value::Null,
    }
}

fn parsed(text: &Option<String>) -> Value {
    text.as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

/// An execution row without its step runs (lists).
pub fn summary(row: &ExecutionRow) -> Value {
    json!({
        "id": row.id,
        "job_id": row.job_id,
        "job_version": row.job_version,
        "status": row.status,
        "trigger": row.trigger,
        "schedule_id": row.schedule_id,
        "fire": row.fire_nominal_local.as_ref().map(|n| json!({
            "nominal_local": n,
            "utc_offset_s": row.fire_utc_offset_s,
        })),
        "timezone": row.timezone,
        "priority": row.priority,
        "params": parsed(&Some(row.params.clone())),
        "scheduled_at": instant(row.scheduled_at_us),
        "queued_at": instant(Some(row.queued_at_us)),
        "started_at": instant(row.started_at_us),
        "finished_at": instant(row.finished_at_us),
        "duration_ms": duration_ms(row.started_at_us, row.finished_at_us),
        "error": parsed(&row.error),
        "step_runs": row.step_runs,
        "recoveries": row.recoveries,
        "cancel_requested": row.cancel_requested,
        "node": row.node_id,
    })
}

fn attempt(a: &AttemptRow) -> Value {
    json!({
        "attempt": a.attempt,
        "status": a.status,
        "started_at": instant(Some(a.started_at_us)),
        "finished_at": instant(a.finished_at_us),
        "duration_ms": a.duration_us.map(|d| d as f64 / 1000.0),
        "output": parsed(&a.output),
        "exports": parsed(&a.exports),
        "error": parsed(&a.error),
        "logs": parsed(&a.logs),
        "host_calls": a.host_calls,
    })
}

fn step_run(r: &StepRunRow, attempts: &[AttemptRow]) -> Value {
    json!({
        "seq": r.seq,
        "step_id": r.step_id,
        "step_type": r.step_type,
        "status": r.status,
        "attempt_count": r.attempts,
        "started_at": instant(Some(r.started_at_us)),
        "finished_at": instant(r.finished_at_us),
        "duration_ms": duration_ms(Some(r.started_at_us), r.finished_at_us),
        "output": parsed(&r.output),
        "exports": parsed(&r.exports),
        "error": parsed(&r.error),
        "attempts": attempts.iter().filter(|a| a.seq == r.seq).map(attempt).collect::<Vec<_>>(),
    })
}

/// One execution with its step runs and their attempts; `None` when it
/// does not exist.
pub async fn detail(store: &Store, id: &str) -> Result<Option<Value>, StoreError> {
    let Some(row) = store.get_execution(id).await? else {
        return Ok(None);
    };
    let runs = store.list_step_runs(id).await?;
    let attempts = store.list_attempts(id).await?;
    let mut v = summary(&row);
    v["steps"] = Value::Array(runs.iter().map(|r| step_run(r, &attempts)).collect());
    Ok(Some(v))
}
