//! What every backend shares: the limits of one call, the result of one
//! statement, and the parsing of the WIT value texts (ISO 8601 dates and
//! times, RFC 3339 instants, decimals, UUIDs, JSON) into driver types.

use crate::capabilities::CapabilityError;
use crate::contract::bindings::meridian::step::sql::{Column, ResultSet, SqlValue};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The limits of one call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Rows kept per result set.
    pub max_rows: u32,
    /// When the whole transaction must be done.
    pub deadline: Instant,
    /// The time limit, for messages.
    pub timeout: Duration,
    /// Run the transaction read-only.
    pub read_only: bool,
    /// A statement of the call could leave state on the session (see
    /// [`super::classify::Class::may_change_session`]): a pool that cannot
    /// reset a session closes it after the call instead of keeping it.
    pub may_change_session: bool,
}

impl Limits {
    /// Milliseconds left until the deadline (at least 1).
    pub fn remaining_ms(&self) -> u64 {
        let left = self.deadline.saturating_duration_since(Instant::now());
        u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// The error for a call that ran out of time.
    pub fn timed_out(&self) -> CapabilityError {
        CapabilityError::TimedOut(format!(
            "the transaction did not finish within {} ms and was rolled back",
            self.timeout.as_millis()
        ))
    }
}

/// What one statement produced, before it becomes a WIT result set.
#[derive(Debug, Default)]
pub struct Outcome {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<SqlValue>>,
    pub rows_affected: u64,
    pub truncated: bool,
}

impl Outcome {
    pub fn into_result_set(self) -> ResultSet {
        ResultSet {
            columns: self.columns,
            rows: self.rows,
            rows_affected: self.rows_affected,
            truncated: self.truncated,
        }
    }
}

/// Whether a database message says a statement was cancelled for time
/// (PostgreSQL, MariaDB, MySQL, SQLite's interrupt).
pub fn is_timeout_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("statement timeout")
        || m.contains("max_statement_time")
        || m.contains("maximum statement execution time")
        || m.contains("query execution was interrupted")
        || m.contains("interrupted")
}

/// Whether a database message says a write was refused because the
/// transaction or connection is read-only.
pub fn is_read_only_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("read-only") || m.contains("read only") || m.contains("readonly")
}

pub fn decimal(s: &str) -> Result<bigdecimal::BigDecimal, String> {
    bigdecimal::BigDecimal::from_str(s.trim()).map_err(|_| format!("{s:?} is not a decimal number"))
}

pub fn date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{s:?} is not an ISO 8601 date like 2026-03-29"))
}

pub fn time(s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(s.trim(), "%H:%M"))
        .map_err(|_| format!("{s:?} is not an ISO 8601 time like 02:30:00"))
}

pub fn datetime(s: &str) -> Result<NaiveDateTime, String> {
    let t = s.trim();
    NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f"))
        .map_err(|_| format!("{s:?} is not a date and time like 2026-03-29T02:30:00"))
}

pub fn timestamp(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{s:?} is not an RFC 3339 instant like 2026-03-29T01:30:00Z"))
}

pub fn uuid(s: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(s.trim()).map_err(|_| format!("{s:?} is not a UUID"))
}

pub fn json(s: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(s).map_err(|e| format!("not a JSON document: {e}"))
}

/// `2026-03-29T02:30:00` (fractional seconds only when there are some).
pub fn datetime_text(t: &NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()
}

/// `2026-03-29T01:30:00Z`.
pub fn timestamp_text(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn texts_parse_and_print_back() {
        assert_eq!(date("2026-03-29").unwrap().to_string(), "2026-03-29");
        assert_eq!(time("02:30:00").unwrap().to_string(), "02:30:00");
        assert_eq!(
            datetime_text(&datetime("2026-03-29T02:30:00").unwrap()),
            "2026-03-29T02:30:00"
        );
        assert_eq!(
            timestamp_text(&timestamp("2026-03-29T03:30:00+02:00").unwrap()),
            "2026-03-29T01:30:00Z"
        );
        assert_eq!(decimal("12.50").unwrap().to_plain_string(), "12.50");
        assert!(date("29.03.2026").is_err());
        assert!(uuid("x").is_err());
    }
}
