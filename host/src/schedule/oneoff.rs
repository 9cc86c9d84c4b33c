//! One-off runs at a local date-time in a zone.
//!
//! A local time can be ambiguous (a fall-back shows it twice) or not exist
//! (a spring-forward skips it). The caller says what to do with each; the
//! defaults match fixed-time schedules: the earliest of a repeated time,
//! and the first instant after a gap.

use super::zone::{DstFlag, Fire, gap_end};
use chrono::{DateTime, FixedOffset, LocalResult, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// What to do with a local time that occurs twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmbiguousTime {
    /// The first occurrence (before the clocks go back).
    #[default]
    Earliest,
    /// The second occurrence (after the clocks go back).
    Latest,
    /// Refuse, naming both instants.
    Reject,
}

/// What to do with a local time that a DST change skips.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonexistentTime {
    /// Run at the first instant after the gap (`02:30` on a day the clock
    /// jumps from 02:00 to 03:00 runs at 03:00), as a fixed-time schedule
    /// would.
    #[default]
    ShiftForward,
    /// Refuse, naming the first valid instant after it.
    Reject,
}

/// How a one-off run's local time is resolved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OneOffPolicy {
    #[serde(default)]
    pub ambiguous: AmbiguousTime,
    #[serde(default)]
    pub nonexistent: NonexistentTime,
}

/// Why a one-off local time could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OneOffError {
    #[error(
        "{} is ambiguous in {zone}: the clock shows it twice, at {} and at {}; \
         choose earliest or latest",
        .local.format("%Y-%m-%dT%H:%M:%S"), .earliest.to_rfc3339(), .latest.to_rfc3339()
    )]
    Ambiguous {
        local: NaiveDateTime,
        zone: String,
        earliest: DateTime<FixedOffset>,
        latest: DateTime<FixedOffset>,
    },
    #[error(
        "{} does not exist in {zone}: a DST change skips it{}",
        .local.format("%Y-%m-%dT%H:%M:%S"),
        .next_valid.map(|n| format!("; the first valid time after it is {}", n.to_rfc3339())).unwrap_or_default()
    )]
    Nonexistent {
        local: NaiveDateTime,
        zone: String,
        /// The first instant after the gap, where shift-forward would run.
        next_valid: Option<DateTime<FixedOffset>>,
    },
}

/// Resolves a one-off run's local date-time in `tz` to a fire: its instant,
/// the local time as nominal, the offset, and a flag when a DST transition
/// touched it.
pub fn resolve_one_off(
    local: NaiveDateTime,
    tz: Tz,
    policy: OneOffPolicy,
) -> Result<Fire, OneOffError> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(at) => Ok(Fire::new(at, local, None)),
        LocalResult::Ambiguous(earliest, latest) => match policy.ambiguous {
            AmbiguousTime::Earliest => {
                Ok(Fire::new(earliest, local, Some(DstFlag::FirstOfRepeated)))
            }
            AmbiguousTime::Latest => Ok(Fire::new(latest, local, Some(DstFlag::SecondOfRepeated))),
            AmbiguousTime::Reject => Err(OneOffError::Ambiguous {
                local,
                zone: tz.name().to_owned(),
                earliest: earliest.fixed_offset(),
                latest: latest.fixed_offset(),
            }),
        },
        LocalResult::None => {
            let end = gap_end(&tz, local);
            match (policy.nonexistent, end) {
                (NonexistentTime::ShiftForward, Some(end)) => {
                    Ok(Fire::new(end, local, Some(DstFlag::ShiftedFromGap)))
                }
                (_, end) => Err(OneOffError::Nonexistent {
                    local,
                    zone: tz.name().to_owned(),
                    next_valid: end.map(|e| e.fixed_offset()),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America, Asia, Europe, Pacific};

    fn local(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").unwrap()
    }

    fn policy(ambiguous: AmbiguousTime, nonexistent: NonexistentTime) -> OneOffPolicy {
        OneOffPolicy {
            ambiguous,
            nonexistent,
        }
    }

    #[test]
    fn an_ordinary_local_time_has_one_instant() {
        let fire = resolve_one_off(
            local("2026-06-01T09:00:00"),
            Asia::Kolkata,
            OneOffPolicy::default(),
        )
        .unwrap();
        assert_eq!(fire.local().to_rfc3339(), "2026-06-01T09:00:00+05:30");
        assert_eq!(fire.flag, None);
    }

    #[test]
    fn nonexistent_shifts_forward_to_the_first_instant_after_the_gap_or_is_rejected() {
        // Rule: a local time a spring-forward skips runs at the first instant
        // after the gap (as a fixed-time schedule would), or is refused.
        let at = local("2026-03-29T02:30:00");
        let fire = resolve_one_off(at, Europe::Berlin, OneOffPolicy::default()).unwrap();
        assert_eq!(fire.local().to_rfc3339(), "2026-03-29T03:00:00+02:00");
        assert_eq!(fire.nominal, at);
        assert_eq!(fire.flag, Some(DstFlag::ShiftedFromGap));
        let error = resolve_one_off(
            at,
            Europe::Berlin,
            policy(AmbiguousTime::Earliest, NonexistentTime::Reject),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "2026-03-29T02:30:00 does not exist in Europe/Berlin: a DST change skips it; \
             the first valid time after it is 2026-03-29T03:00:00+02:00"
        );
        // A whole missing day shifts to its end.
        let fire = resolve_one_off(
            local("2011-12-30T09:00:00"),
            Pacific::Apia,
            OneOffPolicy::default(),
        )
        .unwrap();
        assert_eq!(fire.local().to_rfc3339(), "2011-12-31T00:00:00+14:00");
    }

    #[test]
    fn ambiguous_takes_the_earliest_the_latest_or_is_rejected() {
        // Rule: a local time a fall-back repeats resolves to its earliest
        // occurrence by default, its latest on request, or is refused.
        let at = local("2026-11-01T01:30:00");
        let tz = America::New_York;
        let earliest = resolve_one_off(at, tz, OneOffPolicy::default()).unwrap();
        assert_eq!(earliest.local().to_rfc3339(), "2026-11-01T01:30:00-04:00");
        assert_eq!(earliest.flag, Some(DstFlag::FirstOfRepeated));
        let latest = resolve_one_off(
            at,
            tz,
            policy(AmbiguousTime::Latest, NonexistentTime::ShiftForward),
        )
        .unwrap();
        assert_eq!(latest.local().to_rfc3339(), "2026-11-01T01:30:00-05:00");
        assert_eq!(latest.flag, Some(DstFlag::SecondOfRepeated));
        let error = resolve_one_off(
            at,
            tz,
            policy(AmbiguousTime::Reject, NonexistentTime::ShiftForward),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "2026-11-01T01:30:00 is ambiguous in America/New_York: the clock shows it twice, \
             at 2026-11-01T01:30:00-04:00 and at 2026-11-01T01:30:00-05:00; \
             choose earliest or latest"
        );
        assert_eq!(
            serde_json::to_value(&error).unwrap()["kind"],
            serde_json::json!("ambiguous")
        );
    }

    #[test]
    fn policy_deserialises_with_defaults() {
        let policy: OneOffPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(policy, OneOffPolicy::default());
        let policy: OneOffPolicy =
            serde_json::from_str(r#"{"ambiguous":"reject","nonexistent":"reject"}"#).unwrap();
        assert_eq!(
            policy,
            self::policy(AmbiguousTime::Reject, NonexistentTime::Reject)
        );
    }
}
