//! Schedule definitions: when a job runs, in which zone, and what happens
//! to fires that were missed or that would overlap a run still going.
//!
//! A [`ScheduleSpec`] is what clients submit; [`ScheduleSpec::compile`]
//! checks every field (each problem with its JSON path) and yields a
//! [`ScheduleDef`]: the spec with its cron expression and zone parsed once.

use super::Issue;
use crate::schedule::{CronExpr, DstPolicy, Schedule};
use crate::store::ScheduleRow;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What happens to fires missed while Meridian was down, or while it could
/// not reach its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MisfirePolicy {
    /// Run every missed fire inside the catch-up window.
    All,
    /// Run only the latest missed fire inside the window.
    #[default]
    Latest,
    /// Run none of them.
    None,
}

/// Catch-up of missed fires: how far back, and which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Misfire {
    /// Missed fires older than this many seconds are never run.
    #[serde(default = "default_window")]
    pub window_s: u64,
    #[serde(default)]
    pub policy: MisfirePolicy,
}

fn default_window() -> u64 {
    3600
}

impl Default for Misfire {
    fn default() -> Self {
        Self {
            window_s: default_window(),
            policy: MisfirePolicy::default(),
        }
    }
}

/// What happens when a fire comes while an earlier run of the same
/// schedule is still queued or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunOverlap {
    /// Start another run alongside.
    Allow,
    /// Drop the new fire (recorded as skipped).
    #[default]
    Skip,
    /// Keep one pending fire to run after the current run; more are dropped.
    BufferOne,
    /// Keep every pending fire and run them one after another.
    BufferAll,
    /// Cancel the running one and start the new one.
    CancelOther,
}

impl RunOverlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Skip => "skip",
            Self::BufferOne => "buffer_one",
            Self::BufferAll => "buffer_all",
            Self::CancelOther => "cancel_other",
        }
    }
}

/// A schedule as clients write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub id: String,
    pub job_id: String,
    /// 5 or 6 fields, or a macro such as `@daily`.
    pub cron: String,
    /// IANA zone the cron expression reads its wall clock in.
    pub timezone: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// No fire before this instant.
    #[serde(default)]
    pub start_at: Option<DateTime<Utc>>,
    /// No fire after this instant.
    #[serde(default)]
    pub end_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub misfire: Misfire,
    #[serde(default)]
    pub overlap: RunOverlap,
    /// DST overrides; by default the rules of docs/time.md for the
    /// expression's kind.
    #[serde(default)]
    pub dst: DstPolicy,
    /// Each run starts up to this many seconds late, at random, to spread
    /// load; the fire's identity keeps its nominal time.
    #[serde(default)]
    pub jitter_s: u64,
    /// Higher runs first within the zone's queue.
    #[serde(default)]
    pub priority: i32,
}

fn yes() -> bool {
    true
}

/// Longest allowed jitter and catch-up window.
const MAX_JITTER_S: u64 = 3600;
const MAX_WINDOW_S: u64 = 366 * 24 * 3600;

/// A checked schedule, parsed once.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleDef {
    pub spec: ScheduleSpec,
    pub schedule: Schedule,
}

impl ScheduleSpec {
    /// Checks every field and compiles the expression in its zone.
    pub fn compile(self) -> Result<ScheduleDef, Vec<Issue>> {
        let mut issues = Vec::new();
        let mut issue = |path: &str, message: String| {
            issues.push(Issue {
                path: path.to_string(),
                message,
            })
        };
        if !super::valid_id(&self.id) {
            issue(
                "id",
                "must be 1-128 characters of letters, digits, '-', '_' and '.'".into(),
            );
        }
        if !super::valid_id(&self.job_id) {
            issue("job_id", "must name a job".into());
        }
        let cron = CronExpr::parse(&self.cron)
            .map_err(|e| issue("cron", e.to_string()))
            .ok();
        let tz = self
            .timezone
            .parse::<chrono_tz::Tz>()
            .map_err(|_| {
                issue(
                    "timezone",
                    format!("{:?} is not an IANA time zone", self.timezone),
                )
            })
            .ok();
        if let (Some(start), Some(end)) = (self.start_at, self.end_at)
            && end <= start
        {
            issue("end_at", "must be after start_at".into());
        }
        if self.misfire.window_s > MAX_WINDOW_S {
            issue(
                "misfire.window_s",
                format!("must be at most {MAX_WINDOW_S} (366 days)"),
            );
        }
        if self.jitter_s > MAX_JITTER_S {
            issue("jitter_s", format!("must be at most {MAX_JITTER_S}"));
        }
        if let Some(c) = &cron
            && !c.can_fire()
        {
            issue(
                "cron",
                "this expression matches no date (e.g. 30 February)".into(),
            );
        }
        match (cron, tz) {
            (Some(cron), Some(tz)) if issues.is_empty() => {
                let schedule = Schedule::new(cron, tz).with_policy(self.dst);
                Ok(ScheduleDef {
                    spec: self,
                    schedule,
                })
            }
            _ => Err(issues),
        }
    }
}

impl ScheduleDef {
    pub fn misfire_window(&self) -> Duration {
        Duration::from_secs(self.spec.misfire.window_s)
    }

    /// The row to store, with the given timestamps and cursor.
    pub fn to_row(
        &self,
        created_at_us: i64,
        updated_at_us: i64,
        cursor_us: Option<i64>,
    ) -> ScheduleRow {
        let s = &self.spec;
        ScheduleRow {
            id: s.id.clone(),
            job_id: s.job_id.clone(),
            cron: s.cron.clone(),
            timezone: s.timezone.clone(),
            enabled: s.enabled,
            start_at_us: s.start_at.map(|t| t.timestamp_micros()),
            end_at_us: s.end_at.map(|t| t.timestamp_micros()),
            misfire_window_s: i64::try_from(s.misfire.window_s).unwrap_or(i64::MAX),
            misfire_policy: enum_text(&s.misfire.policy),
            overlap_policy: s.overlap.as_str().to_string(),
            dst_gap: s.dst.gap.map(|g| enum_text(&g)).unwrap_or_default(),
            dst_overlap: s.dst.overlap.map(|o| enum_text(&o)).unwrap_or_default(),
            jitter_s: i64::try_from(s.jitter_s).unwrap_or(i64::MAX),
            priority: s.priority,
            cursor_us,
            created_at_us,
            updated_at_us,
        }
    }

    /// Reads a stored row back; a row that no longer compiles (edited by
    /// hand, or a zone that left the database) is reported, not panicked on.
    pub fn from_row(row: &ScheduleRow) -> Result<Self, Vec<Issue>> {
        let enum_of = |path: &str, text: &str| -> Result<serde_json::Value, Vec<Issue>> {
            if text.is_empty() {
                Ok(serde_json::Value::Null)
            } else {
                Ok(serde_json::Value::String(text.to_string()))
            }
            .map_err(|()| {
                vec![Issue {
                    path: path.into(),
                    message: String::new(),
                }]
            })
        };
        let value = serde_json::json!({
            "id": row.id,
            "job_id": row.job_id,
            "cron": row.cron,
            "timezone": row.timezone,
            "enabled": row.enabled,
            "start_at": row.start_at_us.and_then(DateTime::<Utc>::from_timestamp_micros),
            "end_at": row.end_at_us.and_then(DateTime::<Utc>::from_timestamp_micros),
            "misfire": { "window_s": row.misfire_window_s.max(0), "policy": row.misfire_policy },
            "overlap": row.overlap_policy,
            "dst": { "gap": enum_of("dst.gap", &row.dst_gap)?, "overlap": enum_of("dst.overlap", &row.dst_overlap)? },
            "jitter_s": row.jitter_s.max(0),
            "priority": row.priority,
        });
        let spec: ScheduleSpec = serde_json::from_value(value).map_err(|e| {
            vec![Issue {
                path: String::new(),
                message: format!("stored schedule {:?} is unreadable: {e}", row.id),
            }]
        })?;
        spec.compile()
    }
}

/// The serde name of a unit enum variant (`"buffer_one"`).
fn enum_text<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> ScheduleSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_and_round_trip_through_a_row() {
        let def = spec(
            json!({"id": "s", "job_id": "j", "cron": "30 2 * * *", "timezone": "Europe/Berlin",
                              "overlap": "buffer_one", "dst": {"gap": "skip"}}),
        )
        .compile()
        .unwrap();
        assert_eq!(
            def.spec.misfire,
            Misfire {
                window_s: 3600,
                policy: MisfirePolicy::Latest
            }
        );
        assert!(def.spec.enabled);
        let row = def.to_row(1, 2, None);
        assert_eq!(row.overlap_policy, "buffer_one");
        assert_eq!(row.dst_gap, "skip");
        assert_eq!(row.dst_overlap, "");
        let back = ScheduleDef::from_row(&row).unwrap();
        assert_eq!(back, def);
    }

    #[test]
    fn every_problem_has_its_path() {
        let issues = spec(json!({"id": "bad id", "job_id": "j", "cron": "61 * * * *", "timezone": "Mars/Base",
                                 "start_at": "2026-02-01T00:00:00Z", "end_at": "2026-01-01T00:00:00Z",
                                 "jitter_s": 99999}))
        .compile()
        .unwrap_err();
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["id", "cron", "timezone", "end_at", "jitter_s"]);
        assert!(issues[1].message.contains("minute"), "{:?}", issues[1]);
    }

    #[test]
    fn impossible_dates_are_refused() {
        let issues =
            spec(json!({"id": "s", "job_id": "j", "cron": "0 0 30 2 *", "timezone": "UTC"}))
                .compile()
                .unwrap_err();
        assert_eq!(issues[0].path, "cron");
    }
}

/// A request for a preview of fire times, as the CLI and the API take it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    pub cron: String,
    pub tz: String,
    /// How many fires (default 10, at most 1000).
    #[serde(default)]
    pub count: Option<usize>,
    /// RFC 3339 instant; fires are strictly after it (default: now).
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub gap: Option<crate::schedule::GapPolicy>,
    #[serde(default)]
    pub overlap: Option<crate::schedule::OverlapPolicy>,
}

/// Most fires one preview lists.
pub const MAX_PREVIEW: usize = 1000;

impl PreviewRequest {
    /// The preview, or every problem with the request (paths are the
    /// parameter names).
    pub fn run(&self, now: DateTime<Utc>) -> Result<crate::schedule::Preview, Vec<Issue>> {
        let mut issues = Vec::new();
        let cron = CronExpr::parse(&self.cron)
            .map_err(|e| {
                issues.push(Issue {
                    path: "cron".into(),
                    message: e.to_string(),
                })
            })
            .ok();
        let tz = self
            .tz
            .parse::<chrono_tz::Tz>()
            .map_err(|_| {
                issues.push(Issue {
                    path: "tz".into(),
                    message: format!("{:?} is not an IANA time zone", self.tz),
                })
            })
            .ok();
        let count = self.count.unwrap_or(10);
        if !(1..=MAX_PREVIEW).contains(&count) {
            issues.push(Issue {
                path: "count".into(),
                message: format!("must be between 1 and {MAX_PREVIEW}"),
            });
        }
        let from = match &self.from {
            None => Some(now),
            Some(text) => DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    issues.push(Issue {
                        path: "from".into(),
                        message: format!("{text:?} is not an RFC 3339 instant: {e}"),
                    })
                })
                .ok(),
        };
        match (cron, tz, from) {
            (Some(cron), Some(tz), Some(from)) if issues.is_empty() => {
                let policy = DstPolicy {
                    gap: self.gap,
                    overlap: self.overlap,
                };
                let schedule = Schedule::new(cron, tz).with_policy(policy);
                Ok(crate::schedule::preview(&schedule, from, count))
            }
            _ => Err(issues),
        }
    }
}

#[cfg(test)]
mod preview_tests {
    use super::*;

    #[test]
    fn preview_requests_check_every_parameter() {
        let req = PreviewRequest {
            cron: "30 2 * * *".into(),
            tz: "Europe/Berlin".into(),
            count: Some(2),
            from: Some("2026-03-28T12:00:00Z".into()),
            ..PreviewRequest::default()
        };
        let p = req.run(Utc::now()).unwrap();
        assert_eq!(p.fires[0].at.to_rfc3339(), "2026-03-29T03:00:00+02:00");
        assert_eq!(p.fires.len(), 2);
        let bad = PreviewRequest {
            cron: "x".into(),
            tz: "Nowhere/Land".into(),
            count: Some(0),
            from: Some("yesterday".into()),
            ..PreviewRequest::default()
        };
        let paths: Vec<_> = bad
            .run(Utc::now())
            .unwrap_err()
            .into_iter()
            .map(|i| i.path)
            .collect();
        assert_eq!(paths, ["cron", "tz", "count", "from"]);
    }
}
