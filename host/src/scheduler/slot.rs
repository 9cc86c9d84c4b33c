//! One schedule as the loop keeps it, and where its timeline starts.
//!
//! A [`Slot`] holds only what firing needs (the compiled schedule, ids,
//! overlap policy, priority, jitter, end, and the fire waiting in the heap),
//! about 300 bytes; the full definition stays in the store.
//!
//! [`timeline`] decides a schedule's first fire when it is loaded. At
//! start-up the fires between its cursor (or its creation, or `start_at`)
//! and now were missed; only those inside the misfire window count, and the
//! policy picks which of them run: `all` (each, as catch-up fires), `latest`
//! (the last one) or `none`. The work is bounded by the window, not by the
//! downtime: the search starts at the window's edge, and fires before it are
//! only counted, up to [`COUNT_CAP`]. On a reload (a changed definition, a
//! resume) nothing is caught up: the schedule starts from now.

use super::dispatch::{Origin, RunRequest};
use crate::model::schedule::{MisfirePolicy, RunOverlap, ScheduleDef};
use crate::schedule::{Fire, Schedule};
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;

/// Missed fires are counted for the log up to this many per schedule, so
/// that start-up after a long downtime stays cheap.
pub(super) const COUNT_CAP: usize = 100;

const ONE_US: TimeDelta = TimeDelta::microseconds(1);

/// The instant one microsecond before (saturating at the calendar's edge).
pub(super) fn just_before(t: DateTime<Utc>) -> DateTime<Utc> {
    t.checked_sub_signed(ONE_US).unwrap_or(t)
}

fn just_after(t: DateTime<Utc>) -> DateTime<Utc> {
    t.checked_add_signed(ONE_US).unwrap_or(t)
}

/// A loaded, enabled schedule with a fire ahead.
#[derive(Debug)]
pub(super) struct Slot {
    pub id: Arc<str>,
    pub job_id: Arc<str>,
    pub schedule: Schedule,
    pub overlap: RunOverlap,
    pub priority: i32,
    /// Upper bound of the per-fire delay, in milliseconds.
    pub jitter_ms: u32,
    pub end_at: Option<DateTime<Utc>>,
    /// Fires before this instant are start-up catch-up fires.
    pub catch_up_until: Option<DateTime<Utc>>,
    /// Matches the heap entry that stands for `next`; older entries are
    /// stale (lazy deletion).
    pub generation: u64,
    /// The fire waiting in the heap.
    pub next: Fire,
    /// The store could not record `next` (it was out of reach): once it
    /// can be read again, the misfire policy decides what of the fires
    /// missed meanwhile runs ([`missed`]).
    pub stalled: bool,
}

impl Slot {
    pub fn new(def: &ScheduleDef, first: Fire, catch_up_until: Option<DateTime<Utc>>) -> Slot {
        let spec = &def.spec;
        Slot {
            id: Arc::from(spec.id.as_str()),
            job_id: Arc::from(spec.job_id.as_str()),
            schedule: def.schedule.clone(),
            overlap: spec.overlap,
            priority: spec.priority,
            jitter_ms: u32::try_from(spec.jitter_s.saturating_mul(1000)).unwrap_or(u32::MAX),
            end_at: spec.end_at,
            catch_up_until,
            generation: 0,
            next: first,
            stalled: false,
        }
    }

    /// When `next` is due: its instant plus its jitter, in microseconds.
    pub fn due_us(&self) -> i64 {
        due_us(&self.id, &self.next, self.jitter_ms)
    }

    pub fn origin(&self) -> Origin {
        match self.catch_up_until {
            Some(until) if self.next.instant < until => Origin::CatchUp,
            _ => Origin::Scheduled,
        }
    }

    pub fn request(&self) -> RunRequest {
        RunRequest {
            schedule_id: Arc::clone(&self.id),
            job_id: Arc::clone(&self.job_id),
            zone: self.schedule.tz,
            priority: self.priority,
            fire: Some(self.next),
            origin: self.origin(),
        }
    }

    /// Moves to the fire after `next`; `false` when there is none (past
    /// `end_at`, or the expression is exhausted).
    pub fn advance(&mut self) -> bool {
        match next_fire(&self.schedule, self.next.instant, self.end_at) {
            Some(fire) => {
                self.next = fire;
                if self
                    .catch_up_until
                    .is_some_and(|until| fire.instant >= until)
                {
                    self.catch_up_until = None;
                }
                true
            }
            None => false,
        }
    }
}

/// The fire after `after`, unless it is past `end_at`.
pub(super) fn next_fire(
    schedule: &Schedule,
    after: DateTime<Utc>,
    end_at: Option<DateTime<Utc>>,
) -> Option<Fire> {
    schedule
        .next_after(after)
        .filter(|f| end_at.is_none_or(|end| f.instant <= end))
}

/// A fire's due instant: its instant plus a delay in `[0, jitter_ms]` drawn
/// from its identity, so that every node and every restart agree on it.
pub(super) fn due_us(schedule_id: &str, fire: &Fire, jitter_ms: u32) -> i64 {
    let instant = fire.instant.timestamp_micros();
    if jitter_ms == 0 {
        return instant;
    }
    // FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let nominal = fire.nominal.and_utc().timestamp();
    let bytes = schedule_id
        .bytes()
        .chain(nominal.to_le_bytes())
        .chain(fire.offset_seconds.to_le_bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let delay_ms = hash % (u64::from(jitter_ms) + 1);
    instant.saturating_add(i64::try_from(delay_ms).unwrap_or(0).saturating_mul(1000))
}

/// How a schedule is being loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Load {
    /// Scheduler start-up: missed fires go through the misfire policy.
    Startup,
    /// A changed definition or a resume: no catch-up, start from now.
    Reload,
}

/// Missed fires that will not run (counted up to [`COUNT_CAP`] each way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Skipped {
    /// Before the misfire window.
    pub before_window: usize,
    /// Inside the window, left out by `latest` or `none`.
    pub in_window: usize,
    /// A count reached the cap: there are more.
    pub capped: bool,
}

impl Skipped {
    pub fn total(&self) -> usize {
        self.before_window + self.in_window
    }
}

/// Where a schedule's timeline starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Timeline {
    /// The first fire to put in the heap; `None` when the schedule will
    /// never fire again.
    pub first: Option<Fire>,
    /// Fires before this instant are catch-up fires.
    pub catch_up_until: Option<DateTime<Utc>>,
    /// A cursor to store: past the missed fires that will not run.
    pub cursor: Option<DateTime<Utc>>,
    pub skipped: Skipped,
}

/// Where a schedule's timeline starts, `now` being the load time; see the
/// module docs.
pub(super) fn timeline(
    def: &ScheduleDef,
    cursor: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
    load: Load,
) -> Timeline {
    let schedule = &def.schedule;
    let spec = &def.spec;
    let end = spec.end_at;
    // Fires after this have not been handled.
    let mut handled = cursor.unwrap_or(created_at);
    if let Some(start) = spec.start_at {
        handled = handled.max(just_before(start));
    }
    // A fire at `now` itself is due, not missed.
    let present = just_before(now);
    let from_now = |skipped: Skipped, cursor: Option<DateTime<Utc>>| Timeline {
        first: next_fire(schedule, handled.max(present), end),
        catch_up_until: None,
        cursor,
        skipped,
    };
    if load == Load::Reload || handled >= present {
        return from_now(Skipped::default(), None);
    }
    // Missed: fires in (handled, now). Those before the window's edge
    // never run.
    let window = TimeDelta::seconds(i64::try_from(spec.misfire.window_s).unwrap_or(i64::MAX));
    let edge = now
        .checked_sub_signed(window)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut skipped = Skipped::default();
    let lower = if handled < just_before(edge) {
        let (n, capped) = count(schedule, handled, edge.min(upper(end, now)), COUNT_CAP);
        skipped.before_window = n;
        skipped.capped |= capped;
        just_before(edge)
    } else {
        handled
    };
    let moved = |at: DateTime<Utc>| (at > handled).then_some(at);
    match spec.misfire.policy {
        MisfirePolicy::All => Timeline {
            first: next_fire(schedule, lower, end),
            catch_up_until: Some(now),
            cursor: moved(lower),
            skipped,
        },
        MisfirePolicy::Latest => match latest_before(schedule, lower, upper(end, now)) {
            Some(latest) => {
                let (n, capped) = count(schedule, lower, latest.instant, COUNT_CAP);
                skipped.in_window = n;
                skipped.capped |= capped;
                Timeline {
                    first: Some(latest),
                    catch_up_until: Some(now),
                    cursor: moved(just_before(latest.instant)),
                    skipped,
                }
            }
            None => from_now(skipped, moved(present)),
        },
        MisfirePolicy::None => {
            let (n, capped) = count(schedule, lower, upper(end, now), COUNT_CAP);
            skipped.in_window = n;
            skipped.capped |= capped;
            from_now(skipped, moved(present))
        }
    }
}

/// The fires after `handled` that a `timeline` computed at `now` leaves
/// out — before the misfire window, or passed over by `latest` or `none`
/// — up to [`COUNT_CAP`]; `true` when there are more.
pub(super) fn missed(
    def: &ScheduleDef,
    handled: DateTime<Utc>,
    timeline: &Timeline,
    now: DateTime<Utc>,
) -> (Vec<Fire>, bool) {
    let until = match timeline.first {
        Some(first) if first.instant < now => first.instant,
        _ => now,
    };
    let until = upper(def.spec.end_at, until);
    let mut fires: Vec<Fire> = def
        .schedule
        .fires_after(handled)
        .take_while(|f| f.instant < until)
        .take(COUNT_CAP + 1)
        .collect();
    let more = fires.len() > COUNT_CAP;
    fires.truncate(COUNT_CAP);
    (fires, more)
}

/// The exclusive upper bound of missed fires: `now`, or just after
/// `end_at`.
fn upper(end: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    end.map_or(now, |e| now.min(just_after(e)))
}

/// Fires in (after, before), up to `cap`; `true` if there are more.
fn count(
    schedule: &Schedule,
    after: DateTime<Utc>,
    before: DateTime<Utc>,
    cap: usize,
) -> (usize, bool) {
    let n = schedule
        .fires_after(after)
        .take_while(|f| f.instant < before)
        .take(cap + 1)
        .count();
    (n.min(cap), n > cap)
}

/// The last fire in (after, before), found by searching back from `before`
/// in doubling spans: the cost follows the schedule's interval, not the
/// length of (after, before).
fn latest_before(schedule: &Schedule, after: DateTime<Utc>, before: DateTime<Utc>) -> Option<Fire> {
    let mut span = TimeDelta::seconds(1);
    loop {
        let from = before.checked_sub_signed(span).unwrap_or(after).max(after);
        if let Some(found) = schedule.next_after(from).filter(|f| f.instant < before) {
            let last = schedule
                .fires_after(found.instant)
                .take_while(|f| f.instant < before)
                .last();
            return Some(last.unwrap_or(found));
        }
        if from <= after {
            return None;
        }
        span = span.checked_mul(2).unwrap_or(TimeDelta::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::schedule::ScheduleSpec;
    use chrono::TimeZone;
    use serde_json::json;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn def(extra: serde_json::Value) -> ScheduleDef {
        let mut v = json!({"id": "s", "job_id": "j", "cron": "* * * * *", "timezone": "UTC"});
        if let (Some(base), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value::<ScheduleSpec>(v)
            .unwrap()
            .compile()
            .unwrap()
    }

    fn startup(def: &ScheduleDef, cursor: &str, now: &str) -> Timeline {
        timeline(
            def,
            Some(utc(cursor)),
            utc("2020-01-01T00:00:00Z"),
            utc(now),
            Load::Startup,
        )
    }

    #[test]
    fn all_starts_at_the_window_edge_and_counts_what_is_before_it() {
        let d = def(json!({"misfire": {"window_s": 300, "policy": "all"}}));
        let t = startup(&d, "2026-01-01T00:00:00Z", "2026-01-01T00:10:30Z");
        // Missed: 00:01 … 00:10; the window starts at 00:05:30.
        assert_eq!(t.first.unwrap().instant, utc("2026-01-01T00:06:00Z"));
        assert_eq!(t.catch_up_until, Some(utc("2026-01-01T00:10:30Z")));
        assert_eq!(t.skipped.before_window, 5);
        assert_eq!(t.cursor, Some(utc("2026-01-01T00:05:30Z") - ONE_US));
    }

    #[test]
    fn latest_picks_the_last_missed_fire() {
        let d = def(json!({"misfire": {"window_s": 300, "policy": "latest"}}));
        let t = startup(&d, "2026-01-01T00:00:00Z", "2026-01-01T00:10:30Z");
        assert_eq!(t.first.unwrap().instant, utc("2026-01-01T00:10:00Z"));
        assert_eq!(
            t.skipped,
            Skipped {
                before_window: 5,
                in_window: 4,
                capped: false
            }
        );
    }

    #[test]
    fn none_starts_from_now() {
        let d = def(json!({"misfire": {"window_s": 300, "policy": "none"}}));
        let t = startup(&d, "2026-01-01T00:00:00Z", "2026-01-01T00:10:30Z");
        assert_eq!(t.first.unwrap().instant, utc("2026-01-01T00:11:00Z"));
        assert_eq!(t.catch_up_until, None);
        assert_eq!(t.skipped.total(), 10);
        assert_eq!(t.cursor, Some(utc("2026-01-01T00:10:30Z") - ONE_US));
    }

    #[test]
    fn a_year_down_costs_no_more_than_the_window() {
        // Every second for a year: 31 million missed fires, counted up to
        // the cap, and the latest found without walking the year.
        let d =
            def(json!({"cron": "* * * * * *", "misfire": {"window_s": 3600, "policy": "latest"}}));
        let t = startup(&d, "2025-01-01T00:00:00Z", "2026-01-01T00:00:00.5Z");
        assert_eq!(t.first.unwrap().instant, utc("2026-01-01T00:00:00Z"));
        assert!(t.skipped.capped);
        assert_eq!(t.skipped.before_window, COUNT_CAP);
    }

    #[test]
    fn start_and_end_bound_the_missed_fires() {
        let d = def(json!({"misfire": {"window_s": 3600, "policy": "all"},
                           "start_at": "2026-01-01T00:03:00Z", "end_at": "2026-01-01T00:05:00Z"}));
        let t = timeline(
            &d,
            None,
            utc("2025-12-01T00:00:00Z"),
            utc("2026-01-01T00:10:30Z"),
            Load::Startup,
        );
        let first = t.first.unwrap();
        assert_eq!(first.instant, utc("2026-01-01T00:03:00Z"));
        assert_eq!(
            next_fire(&d.schedule, utc("2026-01-01T00:05:00Z"), d.spec.end_at),
            None
        );
    }

    /// What an outage leaves out: the fires after the last one handled
    /// that the policy does not run — each policy, and the window's edge.
    #[test]
    fn the_missed_fires_are_those_the_policy_leaves_out() {
        let minutes = |fires: Vec<Fire>| {
            fires
                .iter()
                .map(|f| f.instant.format("%H:%M").to_string())
                .collect::<Vec<_>>()
        };
        let handled = utc("2026-01-01T00:00:00Z");
        let now = utc("2026-01-01T00:04:30Z");
        let case = |policy: &str, window_s: u64| {
            let d = def(json!({"misfire": {"window_s": window_s, "policy": policy}}));
            let t = startup(&d, "2026-01-01T00:00:00Z", "2026-01-01T00:04:30Z");
            let (fires, more) = missed(&d, handled, &t, now);
            assert!(!more);
            minutes(fires)
        };
        // Missed: 00:01 … 00:04.
        assert!(case("all", 3600).is_empty(), "all runs each");
        // The window reaches back to 00:02:00: 00:02 runs, 00:01 does not.
        assert_eq!(case("all", 150), ["00:01"], "before the edge");
        assert_eq!(case("latest", 3600), ["00:01", "00:02", "00:03"]);
        assert_eq!(case("none", 3600), ["00:01", "00:02", "00:03", "00:04"]);
        // A long outage: recorded up to the cap, and said that there are more.
        let d = def(json!({"cron": "* * * * * *", "misfire": {"policy": "none"}}));
        let t = startup(&d, "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z");
        let (fires, more) = missed(&d, handled, &t, utc("2026-01-01T01:00:00Z"));
        assert_eq!(fires.len(), COUNT_CAP);
        assert!(more);
    }

    #[test]
    fn a_reload_never_catches_up() {
        let d = def(json!({"misfire": {"window_s": 3600, "policy": "all"}}));
        let t = timeline(
            &d,
            Some(utc("2026-01-01T00:00:00Z")),
            utc("2020-01-01T00:00:00Z"),
            utc("2026-01-01T00:10:00Z"),
            Load::Reload,
        );
        // A fire at the load instant itself is due.
        assert_eq!(t.first.unwrap().instant, utc("2026-01-01T00:10:00Z"));
        assert_eq!(t.catch_up_until, None);
    }

    #[test]
    fn jitter_is_bounded_and_stable() {
        let instant = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let fire = Fire {
            instant,
            nominal: instant.naive_utc(),
            offset_seconds: 0,
            flag: None,
        };
        let base = instant.timestamp_micros();
        assert_eq!(due_us("s", &fire, 0), base);
        let due = due_us("s", &fire, 60_000);
        assert!((base..=base + 60_000_000).contains(&due));
        assert_eq!(due, due_us("s", &fire, 60_000));
        assert_ne!(due, due_us("t", &fire, 60_000));
    }
}
