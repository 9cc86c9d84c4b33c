//! Preview: the next N fires of a schedule, as a person (or the UI) wants
//! to read them, with every DST effect spelled out.
//!
//! Each fire carries its instant on the zone's clock (RFC 3339 with offset),
//! the UTC instant, the nominal local time, the offset, the zone's
//! abbreviation, whether DST is in effect, and a flag when a transition
//! shifted it or repeats its local time. Nominal local times that a gap
//! dropped are listed apart, one entry per gap, because a per-second
//! schedule can lose thousands of them in one gap: `dropped` covers gaps
//! whose end lies within the span of the listed fires.

use super::cron::{CronKind, HORIZON_YEARS};
use super::zone::{DstFlag, Fire, GapPolicy, OverlapPolicy, Schedule, gap_end};
use chrono::{DateTime, Datelike, FixedOffset, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{OffsetComponents, OffsetName};
use serde::Serialize;

/// One upcoming fire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviewFire {
    /// When it runs, on the zone's clock: `2026-03-29T03:00:00+02:00`.
    pub at: DateTime<FixedOffset>,
    /// The same instant in UTC.
    pub utc: DateTime<Utc>,
    /// The local time the expression matched; differs from `at`'s clock
    /// time only for a fire shifted out of a gap.
    pub nominal: NaiveDateTime,
    /// The zone's offset at `at`, seconds east of UTC.
    pub offset_seconds: i32,
    /// The same offset as text, `+02:00`.
    pub offset: String,
    /// The zone's abbreviation at `at` (`CEST`), when the zone has one.
    pub abbreviation: Option<String>,
    /// Whether daylight saving time is in effect at `at`.
    pub dst: bool,
    /// How a DST transition touched this fire, if it did.
    pub flag: Option<DstFlag>,
}

/// Why nominal local times in a gap did not get a fire of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The gap policy is `skip`: they do not run at all.
    SkippedInGap,
    /// The gap policy is `shift`: they run as part of the one fire at the
    /// gap's end (the first skipped time's shifted fire, or a genuine fire
    /// at that instant).
    MergedAtGapEnd,
}

/// The nominal local times one gap dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DroppedFires {
    pub reason: DropReason,
    /// The first dropped nominal local time.
    pub first_nominal: NaiveDateTime,
    /// The last dropped nominal local time.
    pub last_nominal: NaiveDateTime,
    /// How many nominal local times were dropped.
    pub count: u64,
    /// The first instant after the gap, where a shifted fire runs.
    pub gap_end: DateTime<FixedOffset>,
}

/// A schedule's next fires with the rules that produced them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    pub expression: String,
    pub zone: String,
    pub kind: CronKind,
    /// The gap rule in force (override or default for `kind`).
    pub gap: GapPolicy,
    /// The overlap rule in force (override or default for `kind`).
    pub overlap: OverlapPolicy,
    /// Fires are strictly after this instant.
    pub from: DateTime<Utc>,
    pub fires: Vec<PreviewFire>,
    pub dropped: Vec<DroppedFires>,
}

/// The next `count` fires of `schedule` strictly after `from`, and the
/// nominal local times gaps dropped among them.
pub fn preview(schedule: &Schedule, from: DateTime<Utc>, count: usize) -> Preview {
    let fires: Vec<Fire> = schedule.fires_after(from).take(count).collect();
    let dropped = match fires.last() {
        Some(last) => {
            let latest_wall = fires.iter().map(|f| f.local().naive_local()).max();
            latest_wall
                .map(|wall| dropped_between(schedule, from, last.instant, wall))
                .unwrap_or_default()
        }
        None => Vec::new(),
    };
    Preview {
        expression: schedule.cron.as_str().to_owned(),
        zone: schedule.tz.name().to_owned(),
        kind: schedule.cron.kind(),
        gap: schedule.gap_policy(),
        overlap: schedule.overlap_policy(),
        from,
        fires: fires.iter().map(|f| preview_fire(schedule, f)).collect(),
        dropped,
    }
}

fn preview_fire(schedule: &Schedule, fire: &Fire) -> PreviewFire {
    let zone_offset = schedule
        .tz
        .offset_from_utc_datetime(&fire.instant.naive_utc());
    let at = fire.local();
    PreviewFire {
        at,
        utc: fire.instant,
        nominal: fire.nominal,
        offset_seconds: zone_offset.fix().local_minus_utc(),
        offset: at.offset().to_string(),
        abbreviation: zone_offset.abbreviation().map(str::to_owned),
        dst: !zone_offset.dst_offset().is_zero(),
        flag: fire.flag,
    }
}

/// Gaps whose end lies in `(from, until]`, with the nominal local times
/// each dropped. Walks matching local times from the clock at `from` up to
/// `latest_wall`, the latest clock time the listed fires reached.
fn dropped_between(
    schedule: &Schedule,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    latest_wall: NaiveDateTime,
) -> Vec<DroppedFires> {
    let tz = &schedule.tz;
    let cron = &schedule.cron;
    let mut out = Vec::new();
    let mut cursor = from.with_timezone(tz).naive_local();
    let Some(last_year) = latest_wall.year().checked_add(HORIZON_YEARS) else {
        return out;
    };
    while let Some(nominal) = cron.next_local_within(cursor, last_year) {
        if nominal > latest_wall {
            break;
        }
        cursor = nominal;
        if !matches!(tz.from_local_datetime(&nominal), LocalResult::None) {
            continue;
        }
        let Some(end) = gap_end(tz, nominal) else {
            continue;
        };
        let end_wall = end.naive_local();
        // Every matching local time in this gap, in order.
        let mut in_gap = vec![nominal];
        let mut count = 1u64;
        let mut last = nominal;
        while let Some(next) = cron.next_local_within(last, last_year) {
            if next >= end_wall {
                break;
            }
            if in_gap.len() < 2 {
                in_gap.push(next);
            }
            last = next;
            count += 1;
        }
        cursor = last;
        if end <= from || end > until {
            continue;
        }
        let gap_end = end.fixed_offset();
        let absorbed_by_genuine = cron.matches(end_wall)
            && matches!(tz.from_local_datetime(&end_wall), LocalResult::Single(at) if at == end);
        let entry = match schedule.gap_policy() {
            GapPolicy::Skip => Some((DropReason::SkippedInGap, nominal, count)),
            GapPolicy::Shift if absorbed_by_genuine => {
                Some((DropReason::MergedAtGapEnd, nominal, count))
            }
            // The first runs shifted; the rest merge into it.
            GapPolicy::Shift => in_gap
                .get(1)
                .map(|second| (DropReason::MergedAtGapEnd, *second, count - 1)),
        };
        if let Some((reason, first_nominal, count)) = entry {
            out.push(DroppedFires {
                reason,
                first_nominal,
                last_nominal: last,
                count,
                gap_end,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{CronExpr, DstPolicy};
    use chrono_tz::{America, Asia, Europe, Pacific, Tz};
    use serde_json::{Value, json};

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn preview_json(expr: &str, tz: Tz, from: &str, count: usize) -> Value {
        let schedule = Schedule::new(CronExpr::parse(expr).unwrap(), tz);
        serde_json::to_value(preview(&schedule, utc(from), count)).unwrap()
    }

    #[test]
    fn a_shifted_fire_shows_its_instant_nominal_time_offset_and_flag() {
        let json = preview_json("30 2 * * *", Europe::Berlin, "2026-03-28T12:00:00Z", 2);
        assert_eq!(json["kind"], "fixed_time");
        assert_eq!(json["gap"], "shift");
        assert_eq!(json["overlap"], "first");
        assert_eq!(
            json["fires"][0],
            json!({
                "at": "2026-03-29T03:00:00+02:00",
                "utc": "2026-03-29T01:00:00Z",
                "nominal": "2026-03-29T02:30:00",
                "offset_seconds": 7200,
                "offset": "+02:00",
                "abbreviation": "CEST",
                "dst": true,
                "flag": "shifted_from_gap",
            })
        );
        assert_eq!(json["fires"][1]["flag"], Value::Null);
        assert_eq!(json["dropped"], json!([]));
    }

    #[test]
    fn interval_ticks_skipped_by_a_gap_are_reported_once_per_gap() {
        let json = preview_json("*/15 * * * *", Europe::Berlin, "2026-03-29T00:30:00Z", 3);
        let at: Vec<&str> = json["fires"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["at"].as_str().unwrap())
            .collect();
        assert_eq!(
            at,
            [
                "2026-03-29T01:45:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:15:00+02:00"
            ]
        );
        assert_eq!(
            json["dropped"],
            json!([{
                "reason": "skipped_in_gap",
                "first_nominal": "2026-03-29T02:00:00",
                "last_nominal": "2026-03-29T02:45:00",
                "count": 4,
                "gap_end": "2026-03-29T03:00:00+02:00",
            }])
        );
    }

    #[test]
    fn fixed_time_fires_merged_in_a_gap_are_reported() {
        let json = preview_json("0,20,40 2 * * *", Europe::Berlin, "2026-03-28T12:00:00Z", 1);
        assert_eq!(json["fires"][0]["nominal"], "2026-03-29T02:00:00");
        assert_eq!(json["fires"][0]["flag"], "shifted_from_gap");
        assert_eq!(
            json["dropped"],
            json!([{
                "reason": "merged_at_gap_end",
                "first_nominal": "2026-03-29T02:20:00",
                "last_nominal": "2026-03-29T02:40:00",
                "count": 2,
                "gap_end": "2026-03-29T03:00:00+02:00",
            }])
        );
        // Apia's @daily: the missing day's midnight merges into the next one.
        let json = preview_json("@daily", Pacific::Apia, "2011-12-29T11:00:00Z", 1);
        assert_eq!(json["fires"][0]["at"], "2011-12-31T00:00:00+14:00");
        assert_eq!(json["fires"][0]["flag"], Value::Null);
        assert_eq!(json["dropped"][0]["reason"], "merged_at_gap_end");
        assert_eq!(json["dropped"][0]["first_nominal"], "2011-12-30T00:00:00");
        assert_eq!(json["dropped"][0]["count"], 1);
    }

    #[test]
    fn overlap_passes_are_flagged_with_their_offsets() {
        let json = preview_json("*/30 * * * *", America::New_York, "2026-11-01T04:50:00Z", 5);
        let rows: Vec<(String, String, Value)> = json["fires"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["at"].as_str().unwrap().to_owned(),
                    f["abbreviation"].as_str().unwrap().to_owned(),
                    f["flag"].clone(),
                )
            })
            .collect();
        let expected = [
            (
                "2026-11-01T01:00:00-04:00",
                "EDT",
                json!("first_of_repeated"),
            ),
            (
                "2026-11-01T01:30:00-04:00",
                "EDT",
                json!("first_of_repeated"),
            ),
            (
                "2026-11-01T01:00:00-05:00",
                "EST",
                json!("second_of_repeated"),
            ),
            (
                "2026-11-01T01:30:00-05:00",
                "EST",
                json!("second_of_repeated"),
            ),
            ("2026-11-01T02:00:00-05:00", "EST", Value::Null),
        ]
        .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c));
        assert_eq!(rows, expected);
        assert_eq!(json["fires"][0]["dst"], true);
        assert_eq!(json["fires"][2]["dst"], false);
    }

    #[test]
    fn a_zone_without_dst_and_a_never_firing_expression() {
        let json = preview_json("30 2 * * *", Asia::Kolkata, "2026-03-27T12:00:00Z", 1);
        assert_eq!(json["fires"][0]["offset"], "+05:30");
        assert_eq!(json["fires"][0]["dst"], false);
        assert_eq!(json["fires"][0]["abbreviation"], "IST");
        let json = preview_json("0 0 30 2 *", Asia::Kolkata, "2026-03-27T12:00:00Z", 5);
        assert_eq!(json["fires"], json!([]));
        assert_eq!(json["dropped"], json!([]));
    }

    #[test]
    fn the_policy_in_force_is_reported() {
        let schedule = Schedule::new(CronExpr::parse("*/5 * * * *").unwrap(), Europe::Berlin)
            .with_policy(DstPolicy {
                gap: Some(GapPolicy::Shift),
                overlap: None,
            });
        let p = preview(&schedule, utc("2026-03-29T00:50:00Z"), 2);
        assert_eq!((p.gap, p.overlap), (GapPolicy::Shift, OverlapPolicy::Both));
        assert_eq!(p.dropped.len(), 1);
        assert_eq!(p.dropped[0].reason, DropReason::MergedAtGapEnd);
        assert_eq!(p.dropped[0].count, 12);
    }
}
