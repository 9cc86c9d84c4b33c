//! Fire instants of a cron expression in an IANA zone, under the DST policy.
//!
//! The cron layer proposes nominal local times in order; this layer maps
//! each to zero, one or two instants: a local time that exists once fires
//! once, one that a fall-back repeats fires in the passes the overlap policy
//! allows, one that a spring-forward skips fires at the first instant after
//! the gap or not at all, as the gap policy says. Instants are compared by
//! elapsed time, so an interval schedule runs through a repeated hour in the
//! order the clock passes it twice.

use super::cron::{CronExpr, CronKind, HORIZON_YEARS};
use chrono::{
    DateTime, Datelike, FixedOffset, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc,
};
use chrono_tz::{GapInfo, Tz};
use serde::{Deserialize, Serialize};
use std::iter::FusedIterator;

/// What happens to a nominal local time that a spring-forward skips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GapPolicy {
    /// Run once at the first instant after the gap; several skipped fires of
    /// one schedule in one gap run once. Default for fixed-time schedules.
    Shift,
    /// Do not run. Default for interval schedules.
    Skip,
}

/// Which passes of a local time that a fall-back repeats fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// Only the first pass (the earlier instant). Default for fixed-time.
    First,
    /// Only the second pass (the later instant).
    Last,
    /// Both passes, by elapsed time. Default for interval schedules.
    Both,
}

/// A schedule's DST behaviour. `None` in a field means "the default for the
/// schedule's kind" (docs/time.md): fixed-time shifts and fires on the first
/// pass, interval skips and fires on both passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DstPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<GapPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<OverlapPolicy>,
}

impl DstPolicy {
    /// The gap rule in force for an expression of this kind.
    pub fn gap_for(&self, kind: CronKind) -> GapPolicy {
        self.gap.unwrap_or(match kind {
            CronKind::FixedTime => GapPolicy::Shift,
            CronKind::Interval => GapPolicy::Skip,
        })
    }

    /// The overlap rule in force for an expression of this kind.
    pub fn overlap_for(&self, kind: CronKind) -> OverlapPolicy {
        self.overlap.unwrap_or(match kind {
            CronKind::FixedTime => OverlapPolicy::First,
            CronKind::Interval => OverlapPolicy::Both,
        })
    }
}

/// How a DST transition touched a fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DstFlag {
    /// The nominal local time does not exist (spring-forward gap); the fire
    /// runs at the first instant after the gap.
    ShiftedFromGap,
    /// The nominal local time occurs twice (fall-back); this is the first.
    FirstOfRepeated,
    /// The nominal local time occurs twice (fall-back); this is the second.
    SecondOfRepeated,
}

/// One fire of a schedule. Its identity is (schedule, `nominal`,
/// `offset_seconds`): unique even when a local time repeats, stable across
/// restarts and nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fire {
    /// When it runs.
    pub instant: DateTime<Utc>,
    /// The local time the expression matched. Differs from the wall clock
    /// at `instant` only for a fire shifted out of a gap.
    pub nominal: NaiveDateTime,
    /// The zone's UTC offset at `instant`, in seconds east of UTC; with
    /// `nominal` it tells the two passes of a repeated local time apart.
    pub offset_seconds: i32,
    /// Set when a DST transition shifted the fire or repeats its local time.
    pub flag: Option<DstFlag>,
}

impl Fire {
    pub(super) fn new(at: DateTime<Tz>, nominal: NaiveDateTime, flag: Option<DstFlag>) -> Fire {
        Fire {
            instant: at.with_timezone(&Utc),
            nominal,
            offset_seconds: at.offset().fix().local_minus_utc(),
            flag,
        }
    }

    /// The instant on the zone's wall clock, with its offset
    /// (`2026-03-29T03:00:00+02:00`).
    pub fn local(&self) -> DateTime<FixedOffset> {
        match FixedOffset::east_opt(self.offset_seconds) {
            Some(offset) => self.instant.with_timezone(&offset),
            None => self.instant.fixed_offset(),
        }
    }
}

/// A cron expression in a zone with its DST policy: everything needed to
/// compute fires, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub cron: CronExpr,
    pub tz: Tz,
    pub policy: DstPolicy,
}

impl Schedule {
    /// A schedule with the default DST policy for its kind.
    pub fn new(cron: CronExpr, tz: Tz) -> Schedule {
        Schedule {
            cron,
            tz,
            policy: DstPolicy::default(),
        }
    }

    pub fn with_policy(mut self, policy: DstPolicy) -> Schedule {
        self.policy = policy;
        self
    }

    /// The gap rule in force (the override, or the kind's default).
    pub fn gap_policy(&self) -> GapPolicy {
        self.policy.gap_for(self.cron.kind())
    }

    /// The overlap rule in force (the override, or the kind's default).
    pub fn overlap_policy(&self) -> OverlapPolicy {
        self.policy.overlap_for(self.cron.kind())
    }

    /// The first fire strictly after `after`, or `None` if there is none
    /// within 400 years. Several candidate fires at one instant run once
    /// (a fire shifted out of a gap onto a genuine fire at the gap's end
    /// becomes that genuine fire), so iterating with the previous fire's
    /// instant as `after` yields every fire exactly once.
    ///
    /// Cost: a field-by-field jump in local time plus two zone look-ups;
    /// a little more around a DST transition.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<Fire> {
        if !self.cron.can_fire() {
            return None;
        }
        let after_utc = after.naive_utc();
        let offset = self.tz.offset_from_utc_datetime(&after_utc).fix();
        let wall =
            after_utc.checked_add_signed(TimeDelta::seconds(offset.local_minus_utc().into()))?;
        let last_year = wall.year().checked_add(HORIZON_YEARS)?;
        let ahead = self.first_ahead(after, wall, last_year);
        let repeated = match self.overlap_policy() {
            OverlapPolicy::First => None,
            OverlapPolicy::Last | OverlapPolicy::Both => {
                self.second_pass_behind(after, wall, offset, last_year)
            }
        };
        match (ahead, repeated) {
            (Some(a), Some(r)) => Some(if r.instant < a.instant { r } else { a }),
            (a, r) => a.or(r),
        }
    }

    /// Fires strictly after `after`, in order.
    pub fn fires_after(&self, after: DateTime<Utc>) -> Fires<'_> {
        Fires {
            schedule: self,
            after: Some(after),
        }
    }

    /// The first fire from a nominal local time after the wall clock at
    /// `after`. Local times come in order, and for real zone data (one
    /// transition at a time) so do their instants, except for the second
    /// pass of times at or before `wall`, which `second_pass_behind` covers.
    fn first_ahead(
        &self,
        after: DateTime<Utc>,
        wall: NaiveDateTime,
        last_year: i32,
    ) -> Option<Fire> {
        let overlap = self.overlap_policy();
        let mut cursor = wall;
        loop {
            let nominal = self.cron.next_local_within(cursor, last_year)?;
            cursor = nominal;
            match self.tz.from_local_datetime(&nominal) {
                LocalResult::Single(at) => {
                    if at > after {
                        return Some(Fire::new(at, nominal, None));
                    }
                }
                LocalResult::Ambiguous(first, second) => {
                    if overlap != OverlapPolicy::Last && first > after {
                        return Some(Fire::new(first, nominal, Some(DstFlag::FirstOfRepeated)));
                    }
                    if overlap != OverlapPolicy::First && second > after {
                        return Some(Fire::new(second, nominal, Some(DstFlag::SecondOfRepeated)));
                    }
                }
                LocalResult::None => {
                    let end = gap_end(&self.tz, nominal)?;
                    let end_wall = end.naive_local();
                    if self.gap_policy() == GapPolicy::Shift && end > after {
                        // A genuine fire at the gap's end absorbs the shifted one.
                        if self.cron.matches(end_wall)
                            && let LocalResult::Single(at) = self.tz.from_local_datetime(&end_wall)
                            && at == end
                        {
                            return Some(Fire::new(at, end_wall, None));
                        }
                        return Some(Fire::new(end, nominal, Some(DstFlag::ShiftedFromGap)));
                    }
                    // Skip the rest of the gap: no local time in it exists.
                    let before_end = end_wall - TimeDelta::seconds(1);
                    cursor = cursor.max(before_end);
                }
            }
        }
    }

    /// When `after` lies in the first pass of a repeated hour, the second
    /// pass of local times already passed (from the start of the repeat up
    /// to the wall clock at `after`) is still ahead in elapsed time: the
    /// earliest of those, if any.
    fn second_pass_behind(
        &self,
        after: DateTime<Utc>,
        wall: NaiveDateTime,
        offset: FixedOffset,
        last_year: i32,
    ) -> Option<Fire> {
        let LocalResult::Ambiguous(first, second) = self.tz.from_local_datetime(&wall) else {
            return None;
        };
        if first.offset().fix() != offset {
            return None; // `after` is already in the second pass
        }
        let second_offset = second.offset().fix().local_minus_utc();
        // Binary search for the transition: the first second whose offset
        // is no longer the first pass's. It lies in (after, second].
        let mut lo = after.timestamp();
        let mut hi = second.timestamp();
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let at = DateTime::from_timestamp(mid, 0)?.naive_utc();
            if self.tz.offset_from_utc_datetime(&at).fix() == offset {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let repeat_start =
            DateTime::from_timestamp(hi.checked_add(second_offset.into())?, 0)?.naive_utc();
        let nominal = self
            .cron
            .next_local_within(repeat_start - TimeDelta::seconds(1), last_year)?;
        if nominal > wall {
            return None;
        }
        match self.tz.from_local_datetime(&nominal) {
            LocalResult::Ambiguous(_, second) if second > after => {
                Some(Fire::new(second, nominal, Some(DstFlag::SecondOfRepeated)))
            }
            _ => None,
        }
    }
}

/// The first instant after the spring-forward gap that contains `local`.
pub(super) fn gap_end(tz: &Tz, local: NaiveDateTime) -> Option<DateTime<Tz>> {
    GapInfo::new(&local, tz)?.end
}

/// Fires of a schedule in order; see [`Schedule::fires_after`].
#[derive(Debug, Clone)]
pub struct Fires<'a> {
    schedule: &'a Schedule,
    after: Option<DateTime<Utc>>,
}

impl Iterator for Fires<'_> {
    type Item = Fire;

    fn next(&mut self) -> Option<Fire> {
        let fire = self.schedule.next_after(self.after?);
        self.after = fire.map(|f| f.instant);
        fire
    }
}

impl FusedIterator for Fires<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America, Asia, Australia, Europe, Pacific};

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn schedule(expr: &str, tz: Tz) -> Schedule {
        Schedule::new(CronExpr::parse(expr).unwrap(), tz)
    }

    fn with(
        expr: &str,
        tz: Tz,
        gap: Option<GapPolicy>,
        overlap: Option<OverlapPolicy>,
    ) -> Schedule {
        schedule(expr, tz).with_policy(DstPolicy { gap, overlap })
    }

    /// The next `n` fires after `from` as `<local RFC 3339> <flag>`.
    fn fires(schedule: &Schedule, from: &str, n: usize) -> Vec<String> {
        schedule
            .fires_after(utc(from))
            .take(n)
            .map(|f| {
                let flag = match f.flag {
                    None => "",
                    Some(DstFlag::ShiftedFromGap) => " shifted",
                    Some(DstFlag::FirstOfRepeated) => " first",
                    Some(DstFlag::SecondOfRepeated) => " second",
                };
                format!("{}{flag}", f.local().to_rfc3339())
            })
            .collect()
    }

    #[test]
    fn gap_fixed_time_runs_once_at_the_first_instant_after_the_gap() {
        // Rule: a fixed-time fire whose local time does not exist runs once, at
        // the first instant after the gap. Europe/Berlin jumps from 02:00 to
        // 03:00 on 2026-03-29, so 02:30 runs at 03:00 CEST.
        let s = schedule("30 2 * * *", Europe::Berlin);
        assert_eq!(
            fires(&s, "2026-03-28T12:00:00Z", 2),
            [
                "2026-03-29T03:00:00+02:00 shifted",
                "2026-03-30T02:30:00+02:00"
            ]
        );
        // Its identity keeps the nominal local time and the offset it ran at.
        let fire = s.next_after(utc("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(fire.nominal.to_string(), "2026-03-29 02:30:00");
        assert_eq!(fire.offset_seconds, 7200);
        assert_eq!(fire.instant, utc("2026-03-29T01:00:00Z"));
    }

    #[test]
    fn gap_several_fixed_time_fires_in_one_gap_run_once() {
        // Rule: several fixed-time fires of one schedule in one gap run once,
        // under the first skipped local time (02:00, not 02:30).
        let s = schedule("0,30 2 * * *", Europe::Berlin);
        let got = fires(&s, "2026-03-28T12:00:00Z", 3);
        assert_eq!(
            got,
            [
                "2026-03-29T03:00:00+02:00 shifted",
                "2026-03-30T02:00:00+02:00",
                "2026-03-30T02:30:00+02:00"
            ]
        );
        let fire = s.next_after(utc("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(fire.nominal.to_string(), "2026-03-29 02:00:00");
    }

    #[test]
    fn gap_a_shifted_fire_landing_on_a_genuine_fire_runs_once() {
        // Decided here: 02:00 shifts onto 03:00, where the schedule fires anyway;
        // it runs once, as the genuine 03:00 fire.
        let s = schedule("0 2,3 * * *", Europe::Berlin);
        assert_eq!(
            fires(&s, "2026-03-28T12:00:00Z", 3),
            [
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:00:00+02:00",
                "2026-03-30T03:00:00+02:00"
            ]
        );
    }

    #[test]
    fn gap_interval_ticks_that_do_not_exist_are_skipped() {
        // Rule: interval ticks inside the gap are skipped: `*/15` in Berlin on
        // 2026-03-29 goes from 01:45 CET straight to 03:00 CEST.
        let s = schedule("*/15 * * * *", Europe::Berlin);
        assert_eq!(
            fires(&s, "2026-03-29T00:40:00Z", 4),
            [
                "2026-03-29T01:45:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:15:00+02:00",
                "2026-03-29T03:30:00+02:00"
            ]
        );
    }

    #[test]
    fn gap_overrides_skip_for_fixed_time_and_shift_for_interval() {
        // Override `skip`: the fixed-time 02:30 simply does not run that day.
        let s = with("30 2 * * *", Europe::Berlin, Some(GapPolicy::Skip), None);
        assert_eq!(
            fires(&s, "2026-03-28T12:00:00Z", 1),
            ["2026-03-30T02:30:00+02:00"]
        );
        // Override `shift` on an interval schedule: the ticks in the gap merge
        // into one fire at the gap's end, here the genuine 03:00 tick.
        let s = with("*/15 * * * *", Europe::Berlin, Some(GapPolicy::Shift), None);
        assert_eq!(
            fires(&s, "2026-03-29T00:40:00Z", 2),
            ["2026-03-29T01:45:00+01:00", "2026-03-29T03:00:00+02:00"]
        );
        // An hourly-at-:20 interval has no genuine 03:00 tick: 02:20 shifts.
        let s = with("20 * * * *", Europe::Berlin, Some(GapPolicy::Shift), None);
        assert_eq!(
            fires(&s, "2026-03-29T00:40:00Z", 2),
            [
                "2026-03-29T03:00:00+02:00 shifted",
                "2026-03-29T03:20:00+02:00"
            ]
        );
    }

    #[test]
    fn overlap_fixed_time_runs_once_at_the_first_occurrence() {
        // Rule: a fixed-time fire whose local time repeats runs once, at its
        // first occurrence. America/New_York falls back from 02:00 EDT to
        // 01:00 EST on 2026-11-01, so 01:30 runs at 01:30 EDT only.
        let s = schedule("30 1 * * *", America::New_York);
        assert_eq!(
            fires(&s, "2026-10-31T12:00:00Z", 2),
            [
                "2026-11-01T01:30:00-04:00 first",
                "2026-11-02T01:30:00-05:00"
            ]
        );
    }

    #[test]
    fn overlap_override_last_runs_only_the_second_occurrence() {
        let s = with(
            "30 1 * * *",
            America::New_York,
            None,
            Some(OverlapPolicy::Last),
        );
        assert_eq!(
            fires(&s, "2026-10-31T12:00:00Z", 2),
            [
                "2026-11-01T01:30:00-05:00 second",
                "2026-11-02T01:30:00-05:00"
            ]
        );
    }

    #[test]
    fn overlap_override_both_runs_a_fixed_time_fire_twice() {
        let s = with(
            "30 1 * * *",
            America::New_York,
            None,
            Some(OverlapPolicy::Both),
        );
        assert_eq!(
            fires(&s, "2026-10-31T12:00:00Z", 3),
            [
                "2026-11-01T01:30:00-04:00 first",
                "2026-11-01T01:30:00-05:00 second",
                "2026-11-02T01:30:00-05:00"
            ]
        );
        // Two fires, two identities: same nominal time, different offsets.
        let all: Vec<Fire> = s.fires_after(utc("2026-10-31T12:00:00Z")).take(2).collect();
        assert_eq!(all[0].nominal, all[1].nominal);
        assert_eq!(
            (all[0].offset_seconds, all[1].offset_seconds),
            (-14400, -18000)
        );
    }

    #[test]
    fn overlap_interval_fires_in_both_passes_by_elapsed_time() {
        // Rule: an interval schedule fires in both passes, in the order the
        // clock passes them: 01:00..01:45 EDT, then 01:00..01:45 EST.
        let s = schedule("*/15 * * * *", America::New_York);
        assert_eq!(
            fires(&s, "2026-11-01T04:50:00Z", 9),
            [
                "2026-11-01T01:00:00-04:00 first",
                "2026-11-01T01:15:00-04:00 first",
                "2026-11-01T01:30:00-04:00 first",
                "2026-11-01T01:45:00-04:00 first",
                "2026-11-01T01:00:00-05:00 second",
                "2026-11-01T01:15:00-05:00 second",
                "2026-11-01T01:30:00-05:00 second",
                "2026-11-01T01:45:00-05:00 second",
                "2026-11-01T02:00:00-05:00"
            ]
        );
    }

    #[test]
    fn overlap_starting_inside_either_pass() {
        // From 01:20 EDT (first pass) the second pass of 01:00 is still ahead.
        let s = schedule("*/15 * * * *", America::New_York);
        assert_eq!(
            fires(&s, "2026-11-01T05:20:00Z", 4),
            [
                "2026-11-01T01:30:00-04:00 first",
                "2026-11-01T01:45:00-04:00 first",
                "2026-11-01T01:00:00-05:00 second",
                "2026-11-01T01:15:00-05:00 second"
            ]
        );
        // From 01:20 EST (second pass) only the rest of the second pass is.
        assert_eq!(
            fires(&s, "2026-11-01T06:20:00Z", 2),
            [
                "2026-11-01T01:30:00-05:00 second",
                "2026-11-01T01:45:00-05:00 second"
            ]
        );
        // A fixed-time 01:10 asked from 01:20 EDT: its first occurrence has
        // passed, so by default it waits for the next day; with `last` the
        // second occurrence is still ahead.
        let fixed = schedule("10 1 * * *", America::New_York);
        assert_eq!(
            fires(&fixed, "2026-11-01T05:20:00Z", 1),
            ["2026-11-02T01:10:00-05:00"]
        );
        let last = with(
            "10 1 * * *",
            America::New_York,
            None,
            Some(OverlapPolicy::Last),
        );
        assert_eq!(
            fires(&last, "2026-11-01T05:20:00Z", 1),
            ["2026-11-01T01:10:00-05:00 second"]
        );
    }

    #[test]
    fn overlap_interval_overrides_first_and_last() {
        let first = with(
            "*/30 * * * *",
            America::New_York,
            None,
            Some(OverlapPolicy::First),
        );
        assert_eq!(
            fires(&first, "2026-11-01T04:50:00Z", 3),
            [
                "2026-11-01T01:00:00-04:00 first",
                "2026-11-01T01:30:00-04:00 first",
                "2026-11-01T02:00:00-05:00"
            ]
        );
        let last = with(
            "*/30 * * * *",
            America::New_York,
            None,
            Some(OverlapPolicy::Last),
        );
        assert_eq!(
            fires(&last, "2026-11-01T04:20:00Z", 3),
            [
                "2026-11-01T00:30:00-04:00",
                "2026-11-01T01:00:00-05:00 second",
                "2026-11-01T01:30:00-05:00 second"
            ]
        );
    }

    #[test]
    fn whole_missing_day_pacific_apia_2011_12_30() {
        // Rule: the gap rule holds for a whole missing day. Samoa skipped
        // 2011-12-30 (23:59:59-10:00 was followed by 00:00+14:00 on the 31st):
        // a fixed-time fire due that day runs at 2011-12-31T00:00+14:00.
        let noon = schedule("0 12 * * *", Pacific::Apia);
        assert_eq!(
            fires(&noon, "2011-12-29T12:00:00-10:00", 3),
            [
                "2011-12-31T00:00:00+14:00 shifted",
                "2011-12-31T12:00:00+14:00",
                "2012-01-01T12:00:00+14:00"
            ]
        );
        // @daily's 12-30 fire lands on the genuine 12-31 midnight: one run.
        let daily = schedule("@daily", Pacific::Apia);
        assert_eq!(
            fires(&daily, "2011-12-29T01:00:00-10:00", 2),
            ["2011-12-31T00:00:00+14:00", "2012-01-01T00:00:00+14:00"]
        );
        // Interval ticks of the missing day are skipped.
        let hourly = schedule("@hourly", Pacific::Apia);
        assert_eq!(
            fires(&hourly, "2011-12-29T22:30:00-10:00", 2),
            ["2011-12-29T23:00:00-10:00", "2011-12-31T00:00:00+14:00"]
        );
    }

    #[test]
    fn lord_howe_thirty_minute_shift() {
        // Australia/Lord_Howe moves by 30 minutes: 02:00 → 02:30 (+10:30 →
        // +11:00) on 2026-10-04, and 02:00 → 01:30 on 2026-04-05.
        let fixed = schedule("15 2 * * *", Australia::Lord_Howe);
        assert_eq!(
            fires(&fixed, "2026-10-03T12:00:00Z", 2),
            [
                "2026-10-04T02:30:00+11:00 shifted",
                "2026-10-05T02:15:00+11:00"
            ]
        );
        let ticks = schedule("*/10 * * * *", Australia::Lord_Howe);
        assert_eq!(
            fires(&ticks, "2026-10-04T01:45:00+10:30", 3),
            [
                "2026-10-04T01:50:00+10:30",
                "2026-10-04T02:30:00+11:00",
                "2026-10-04T02:40:00+11:00"
            ]
        );
        let fixed = schedule("45 1 * * *", Australia::Lord_Howe);
        assert_eq!(
            fires(&fixed, "2026-04-04T12:00:00Z", 2),
            [
                "2026-04-05T01:45:00+11:00 first",
                "2026-04-06T01:45:00+10:30"
            ]
        );
        let ticks = schedule("*/15 * * * *", Australia::Lord_Howe);
        assert_eq!(
            fires(&ticks, "2026-04-05T01:20:00+11:00", 5),
            [
                "2026-04-05T01:30:00+11:00 first",
                "2026-04-05T01:45:00+11:00 first",
                "2026-04-05T01:30:00+10:30 second",
                "2026-04-05T01:45:00+10:30 second",
                "2026-04-05T02:00:00+10:30"
            ]
        );
    }

    #[test]
    fn southern_hemisphere_sydney_and_sao_paulo() {
        // Australia/Sydney springs forward 02:00 → 03:00 in October and falls
        // back 03:00 → 02:00 in April: the reverse of the calendar up north.
        let s = schedule("30 2 * * *", Australia::Sydney);
        assert_eq!(
            fires(&s, "2026-10-03T00:00:00Z", 2),
            [
                "2026-10-04T03:00:00+11:00 shifted",
                "2026-10-05T02:30:00+11:00"
            ]
        );
        assert_eq!(
            fires(&s, "2026-04-04T00:00:00Z", 2),
            [
                "2026-04-05T02:30:00+11:00 first",
                "2026-04-06T02:30:00+10:00"
            ]
        );
        // America/Sao_Paulo changed clocks at midnight: on 2018-11-04 00:00
        // became 01:00, so midnight did not exist; on 2019-02-17 the clock went
        // from 00:00 back to 23:00 on the 16th, so 23:30 happened twice.
        let midnight = schedule("0 0 * * *", America::Sao_Paulo);
        assert_eq!(
            fires(&midnight, "2018-11-03T12:00:00Z", 2),
            [
                "2018-11-04T01:00:00-02:00 shifted",
                "2018-11-05T00:00:00-02:00"
            ]
        );
        let late = schedule("30 23 * * *", America::Sao_Paulo);
        assert_eq!(
            fires(&late, "2019-02-16T12:00:00Z", 2),
            [
                "2019-02-16T23:30:00-02:00 first",
                "2019-02-17T23:30:00-03:00"
            ]
        );
    }

    #[test]
    fn chatham_quarter_hour_offsets() {
        // Pacific/Chatham (+12:45 / +13:45) jumps from 02:45 to 03:45 on
        // 2026-09-27: 03:00 does not exist.
        let s = schedule("0 3 * * *", Pacific::Chatham);
        assert_eq!(
            fires(&s, "2026-09-26T00:00:00Z", 2),
            [
                "2026-09-27T03:45:00+13:45 shifted",
                "2026-09-28T03:00:00+13:45"
            ]
        );
    }

    #[test]
    fn kolkata_has_no_dst_and_a_half_hour_offset() {
        let s = schedule("30 2 * * *", Asia::Kolkata);
        let got: Vec<Fire> = s.fires_after(utc("2026-03-27T12:00:00Z")).take(3).collect();
        assert!(
            got.iter()
                .all(|f| f.flag.is_none() && f.offset_seconds == 19800)
        );
        assert_eq!(got[0].local().to_rfc3339(), "2026-03-28T02:30:00+05:30");
        assert_eq!(got[0].instant, utc("2026-03-27T21:00:00Z"));
    }

    #[test]
    fn defaults_depend_on_the_kind() {
        let fixed = schedule("30 2 * * *", Europe::Berlin);
        assert_eq!(
            (fixed.gap_policy(), fixed.overlap_policy()),
            (GapPolicy::Shift, OverlapPolicy::First)
        );
        let interval = schedule("*/5 * * * *", Europe::Berlin);
        assert_eq!(
            (interval.gap_policy(), interval.overlap_policy()),
            (GapPolicy::Skip, OverlapPolicy::Both)
        );
        let policy: DstPolicy = serde_json::from_str(r#"{"overlap":"both"}"#).unwrap();
        assert_eq!(policy.gap, None);
        assert_eq!(policy.overlap, Some(OverlapPolicy::Both));
        assert_eq!(serde_json::to_string(&DstPolicy::default()).unwrap(), "{}");
    }

    #[test]
    fn never_firing_expressions_answer_none_at_once() {
        let s = schedule("0 0 30 2 *", America::New_York);
        assert_eq!(s.next_after(utc("2026-01-01T00:00:00Z")), None);
        assert_eq!(s.fires_after(utc("2026-01-01T00:00:00Z")).count(), 0);
        // Rare but possible: the next fifth Monday of February is in 2044.
        let rare = schedule("0 9 ? 2 MON#5", America::New_York);
        assert_eq!(
            fires(&rare, "2017-01-01T00:00:00Z", 1),
            ["2044-02-29T09:00:00-05:00"]
        );
    }

    #[test]
    fn fires_are_strictly_increasing_and_after_is_exclusive() {
        let s = schedule("*/20 * * * * *", Europe::London);
        let from = utc("2026-10-25T00:59:30Z");
        let got: Vec<Fire> = s.fires_after(from).take(200).collect();
        assert!(got.windows(2).all(|w| w[0].instant < w[1].instant));
        assert!(got[0].instant > from);
        let again = s.next_after(got[0].instant).unwrap();
        assert_eq!(again, got[1]);
        // Sub-second `after`.
        let half = utc("2026-10-25T00:59:40.5Z");
        assert_eq!(
            s.next_after(half).unwrap().instant,
            utc("2026-10-25T01:00:00Z")
        );
    }

    #[test]
    fn fire_serialises_with_instant_nominal_offset_and_flag() {
        let s = schedule("30 2 * * *", Europe::Berlin);
        let fire = s.next_after(utc("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(
            serde_json::to_value(fire).unwrap(),
            serde_json::json!({
                "instant": "2026-03-29T01:00:00Z",
                "nominal": "2026-03-29T02:30:00",
                "offset_seconds": 7200,
                "flag": "shifted_from_gap",
            })
        );
    }
}
