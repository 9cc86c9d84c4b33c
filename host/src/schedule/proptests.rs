//! Property tests against brute force.
//!
//! Expressions are generated as a structured spec, rendered to text and
//! parsed; the oracle never looks at the parsed [`CronExpr`]: it matches the
//! spec directly (the definitions of L, W, #, steps and the Vixie rule,
//! written the plain way) and applies the DST rules of docs/time.md by walking
//! every minute of a window around a real transition, in UTC for the fires
//! that exist and in local time for the ones a gap swallows.

use super::*;
use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone,
    Timelike, Utc, Weekday,
};
use chrono_tz::{Africa, America, Asia, Australia, Europe, Pacific, Tz};
use proptest::prelude::*;
use proptest::sample::select;
use std::collections::BTreeMap;

// ---------------------------------------------------------------- the spec

#[derive(Debug, Clone, Copy)]
enum Item {
    Val(u32),
    Range(u32, u32),
    /// `*/s`
    StarStep(u32),
    /// `a/s`
    From(u32, u32),
    /// `a-b/s`
    RangeStep(u32, u32, u32),
}

impl Item {
    /// Membership by definition; `min` and `open_max` are where `*` runs.
    fn contains(self, v: u32, min: u32, open_max: u32) -> bool {
        match self {
            Item::Val(a) => v == a,
            Item::Range(a, b) => a <= v && v <= b,
            Item::StarStep(s) => min <= v && v <= open_max && (v - min).is_multiple_of(s),
            Item::From(a, s) => a <= v && v <= open_max.max(a) && (v - a).is_multiple_of(s),
            Item::RangeStep(a, b, s) => a <= v && v <= b && (v - a).is_multiple_of(s),
        }
    }

    fn render(self, name: &dyn Fn(u32) -> String) -> String {
        match self {
            Item::Val(a) => name(a),
            Item::Range(a, b) => format!("{}-{}", name(a), name(b)),
            Item::StarStep(s) => format!("*/{s}"),
            Item::From(a, s) => format!("{}/{s}", name(a)),
            Item::RangeStep(a, b, s) => format!("{}-{}/{s}", name(a), name(b)),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum DomItem {
    Plain(Item),
    /// `L-n`, `L` when 0
    FromLast(u32),
    /// `nW`
    Nearest(u32),
    /// `LW`
    LastWeekday,
}

#[derive(Debug, Clone, Copy)]
enum DowItem {
    Plain(Item),
    /// `wL`
    Last(u32),
    /// `w#k`
    Nth(u32, u32),
}

#[derive(Debug, Clone)]
enum Field<T> {
    Star,
    Question,
    Items(Vec<T>),
}

#[derive(Debug, Clone)]
struct Spec {
    /// `None`: five fields (seconds are 0).
    second: Option<Field<Item>>,
    minute: Field<Item>,
    hour: Field<Item>,
    dom: Field<DomItem>,
    month: Field<Item>,
    dow: Field<DowItem>,
    names: bool,
    lower: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Spec {
    fn render(&self) -> String {
        let case = |s: String| if self.lower { s.to_lowercase() } else { s };
        let number = |v: u32| v.to_string();
        let month = |v: u32| {
            if self.names {
                case(MONTHS[v as usize - 1].to_owned())
            } else {
                v.to_string()
            }
        };
        let day = |v: u32| {
            if self.names && v < 7 {
                case(DAYS[v as usize].to_owned())
            } else {
                v.to_string()
            }
        };
        fn plain(field: &Field<Item>, name: &dyn Fn(u32) -> String) -> String {
            match field {
                Field::Star => "*".to_owned(),
                Field::Question => "?".to_owned(),
                Field::Items(items) => items
                    .iter()
                    .map(|i| i.render(name))
                    .collect::<Vec<_>>()
                    .join(","),
            }
        }
        let dom = match &self.dom {
            Field::Star => "*".to_owned(),
            Field::Question => "?".to_owned(),
            Field::Items(items) => items
                .iter()
                .map(|item| match item {
                    DomItem::Plain(i) => i.render(&number),
                    DomItem::FromLast(0) => case("L".to_owned()),
                    DomItem::FromLast(n) => case(format!("L-{n}")),
                    DomItem::Nearest(d) => case(format!("{d}W")),
                    DomItem::LastWeekday => case("LW".to_owned()),
                })
                .collect::<Vec<_>>()
                .join(","),
        };
        let dow = match &self.dow {
            Field::Star => "*".to_owned(),
            Field::Question => "?".to_owned(),
            Field::Items(items) => items
                .iter()
                .map(|item| match item {
                    DowItem::Plain(i) => i.render(&day),
                    DowItem::Last(w) => case(format!("{}L", day(*w))),
                    DowItem::Nth(w, k) => format!("{}#{k}", day(*w)),
                })
                .collect::<Vec<_>>()
                .join(","),
        };
        let mut fields = Vec::new();
        if let Some(second) = &self.second {
            fields.push(plain(second, &number));
        }
        fields.push(plain(&self.minute, &number));
        fields.push(plain(&self.hour, &number));
        fields.push(dom);
        fields.push(plain(&self.month, &month));
        fields.push(dow);
        fields.join(" ")
    }

    fn kind(&self) -> CronKind {
        let values_only = |f: &Field<Item>| match f {
            Field::Items(items) => items.iter().all(|i| matches!(i, Item::Val(_))),
            _ => false,
        };
        let second = self.second.as_ref().is_none_or(values_only);
        if second && values_only(&self.minute) && values_only(&self.hour) {
            CronKind::FixedTime
        } else {
            CronKind::Interval
        }
    }

    fn second_matches(&self, s: u32) -> bool {
        match &self.second {
            None => s == 0,
            Some(field) => plain_matches(field, s, 0, 59),
        }
    }

    /// Month, day, hour and minute of a local time (not the second).
    fn minute_matches(&self, local: NaiveDateTime) -> bool {
        plain_matches(&self.minute, local.minute(), 0, 59)
            && plain_matches(&self.hour, local.hour(), 0, 23)
            && self.date_matches(local.date())
    }

    fn date_matches(&self, date: NaiveDate) -> bool {
        if !plain_matches(&self.month, date.month(), 1, 12) {
            return false;
        }
        let last = last_day(date);
        let d = date.day();
        let dom = match &self.dom {
            Field::Star | Field::Question => None,
            Field::Items(items) => Some(items.iter().any(|item| match *item {
                DomItem::Plain(i) => i.contains(d, 1, 31),
                DomItem::FromLast(n) => d + n == last,
                DomItem::Nearest(n) => n <= last && nearest_weekday(date, n, last) == d,
                DomItem::LastWeekday => {
                    let mut x = last;
                    while is_weekend(date.with_day(x).unwrap()) {
                        x -= 1;
                    }
                    x == d
                }
            })),
        };
        let w = date.weekday().num_days_from_sunday();
        let dow = match &self.dow {
            Field::Star | Field::Question => None,
            Field::Items(items) => Some(items.iter().any(|item| match *item {
                DowItem::Plain(i) => i.contains(w, 0, 6) || (w == 0 && i.contains(7, 0, 6)),
                DowItem::Last(x) => x % 7 == w && d + 7 > last,
                DowItem::Nth(x, k) => x % 7 == w && (d - 1) / 7 + 1 == k,
            })),
        };
        match (dom, dow) {
            (None, None) => true,
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (Some(a), Some(b)) => a || b,
        }
    }
}

fn plain_matches(field: &Field<Item>, v: u32, min: u32, max: u32) -> bool {
    match field {
        Field::Star | Field::Question => true,
        Field::Items(items) => items.iter().any(|i| i.contains(v, min, max)),
    }
}

fn last_day(date: NaiveDate) -> u32 {
    (28..=31)
        .rev()
        .find(|d| date.with_day(*d).is_some())
        .unwrap()
}

fn is_weekend(date: NaiveDate) -> bool {
    matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

/// The weekday nearest to day `n` of `date`'s month, without leaving it.
fn nearest_weekday(date: NaiveDate, n: u32, last: u32) -> u32 {
    match date.with_day(n).unwrap().weekday() {
        Weekday::Sat if n == 1 => 3,
        Weekday::Sat => n - 1,
        Weekday::Sun if n == last => n - 2,
        Weekday::Sun => n + 1,
        _ => n,
    }
}

// ---------------------------------------------------------- generators

fn item(values: BoxedStrategy<u32>, max_step: u32) -> BoxedStrategy<Item> {
    prop_oneof![
        4 => values.clone().prop_map(Item::Val),
        2 => (values.clone(), values.clone()).prop_map(|(a, b)| Item::Range(a.min(b), a.max(b))),
        2 => (1..=max_step).prop_map(Item::StarStep),
        1 => (values.clone(), 1..=max_step).prop_map(|(a, s)| Item::From(a, s)),
        1 => (values.clone(), values, 1..=max_step)
            .prop_map(|(a, b, s)| Item::RangeStep(a.min(b), a.max(b), s)),
    ]
    .boxed()
}

fn plain_field(item: BoxedStrategy<Item>, star: u32) -> BoxedStrategy<Field<Item>> {
    prop_oneof![
        star => Just(Field::Star),
        3 => prop::collection::vec(item, 1..=3).prop_map(Field::Items),
    ]
    .boxed()
}

fn dom_field(star: u32) -> BoxedStrategy<Field<DomItem>> {
    let day = prop_oneof![1..=31u32, 27..=31u32].boxed();
    let dom_item = prop_oneof![
        4 => item(day.clone(), 31).prop_map(DomItem::Plain),
        1 => prop_oneof![Just(0u32), 0..=30u32].prop_map(DomItem::FromLast),
        2 => day.prop_map(DomItem::Nearest),
        1 => Just(DomItem::LastWeekday),
    ];
    prop_oneof![
        star => Just(Field::Star),
        1 => Just(Field::Question),
        3 => prop::collection::vec(dom_item, 1..=3).prop_map(Field::Items),
    ]
    .boxed()
}

fn dow_field(star: u32) -> BoxedStrategy<Field<DowItem>> {
    let dow_item = prop_oneof![
        4 => item((0..=7u32).boxed(), 7).prop_map(DowItem::Plain),
        1 => (0..=7u32).prop_map(DowItem::Last),
        1 => (0..=7u32, 1..=5u32).prop_map(|(w, k)| DowItem::Nth(w, k)),
    ];
    prop_oneof![
        star => Just(Field::Star),
        1 => Just(Field::Question),
        3 => prop::collection::vec(dow_item, 1..=2).prop_map(Field::Items),
    ]
    .boxed()
}

fn month_field(star: u32) -> BoxedStrategy<Field<Item>> {
    plain_field(item((1..=12u32).boxed(), 12), star)
}

/// Day fields exercised hard; time fixed at midnight.
fn day_spec() -> impl Strategy<Value = Spec> {
    (
        dom_field(1),
        month_field(2),
        dow_field(1),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(dom, month, dow, names, lower)| Spec {
            second: None,
            minute: Field::Items(vec![Item::Val(0)]),
            hour: Field::Items(vec![Item::Val(0)]),
            dom,
            month,
            dow,
            names,
            lower,
        })
}

/// Time fields exercised hard around DST transitions (hours 0-4 and 23
/// are where clocks change); day fields mostly `*`.
fn time_spec() -> impl Strategy<Value = Spec> {
    let minute_values = prop_oneof![0..60u32, select(vec![0u32, 15, 30, 45])].boxed();
    let hour_values = prop_oneof![0..24u32, 0..=4u32, Just(23u32)].boxed();
    // Sparse seconds keep the oracle quick: at most six per minute.
    let second = prop_oneof![
        3 => Just(None),
        1 => prop::collection::vec((0..60u32).prop_map(Item::Val), 1..=2)
            .prop_map(|v| Some(Field::Items(v))),
        1 => (10..=59u32).prop_map(|s| Some(Field::Items(vec![Item::StarStep(s)]))),
        1 => (0..60u32, 10..=59u32).prop_map(|(a, s)| Some(Field::Items(vec![Item::From(a, s)]))),
    ];
    (
        second,
        plain_field(item(minute_values, 59), 1),
        plain_field(item(hour_values, 23), 1),
        dom_field(12),
        month_field(12),
        dow_field(12),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(second, minute, hour, dom, month, dow, names, lower)| Spec {
                second,
                minute,
                hour,
                dom,
                month,
                dow,
                names,
                lower,
            },
        )
}

const ZONES: &[Tz] = &[
    America::New_York,
    Europe::London,
    Europe::Berlin,
    Australia::Sydney,
    Australia::Lord_Howe,
    Asia::Kolkata,
    Pacific::Chatham,
    America::Sao_Paulo,
    Pacific::Apia,
    America::St_Johns,
    America::Santiago,
    Asia::Tehran,
    Africa::Casablanca,
    Europe::Moscow,
    Tz::UTC,
];

/// Midnights (UTC) of the days on which the zone's offset changed during
/// the preceding 24 hours.
fn transition_days(tz: Tz, year: i32) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut day = Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
    let offset = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc()).fix();
    let mut previous = offset(day);
    while day.year() == year {
        day = day + Days::new(1);
        let current = offset(day);
        if current != previous {
            out.push(day);
        }
        previous = current;
    }
    out
}

/// A zone and a window of about a day and a half, usually around a real
/// transition, starting at an arbitrary second.
fn window() -> impl Strategy<Value = (Tz, DateTime<Utc>, DateTime<Utc>)> {
    let around = (
        select(ZONES),
        1995..=2030i32,
        any::<prop::sample::Index>(),
        0..7200i64,
        0..60i64,
    )
        .prop_map(|(tz, year, pick, jitter, second)| {
            let days = transition_days(tz, year);
            let base = if days.is_empty() {
                Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap()
                    + TimeDelta::days(pick.index(365) as i64)
            } else {
                days[pick.index(days.len())] - TimeDelta::hours(26)
            };
            let start = base + TimeDelta::seconds(jitter + second);
            (tz, start, start + TimeDelta::hours(30))
        });
    let apia = (0..7200i64).prop_map(|jitter| {
        let start =
            Utc.with_ymd_and_hms(2011, 12, 29, 0, 0, 0).unwrap() + TimeDelta::seconds(jitter);
        (Pacific::Apia, start, start + TimeDelta::hours(40))
    });
    prop_oneof![8 => around, 1 => apia]
}

fn dst_policy() -> impl Strategy<Value = DstPolicy> {
    let gap = prop_oneof![
        2 => Just(None),
        1 => Just(Some(GapPolicy::Shift)),
        1 => Just(Some(GapPolicy::Skip)),
    ];
    let overlap = prop_oneof![
        2 => Just(None),
        1 => Just(Some(OverlapPolicy::First)),
        1 => Just(Some(OverlapPolicy::Last)),
        1 => Just(Some(OverlapPolicy::Both)),
    ];
    (gap, overlap).prop_map(|(gap, overlap)| DstPolicy { gap, overlap })
}

// --------------------------------------------------------------- oracle

fn offset_at(tz: Tz, t: DateTime<Utc>) -> i32 {
    tz.offset_from_utc_datetime(&t.naive_utc())
        .fix()
        .local_minus_utc()
}

/// Every fire in `(start, end]`, by walking minutes and applying the rules
/// as docs/time.md states them.
fn oracle(
    spec: &Spec,
    tz: Tz,
    gap: GapPolicy,
    overlap: OverlapPolicy,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<Fire> {
    let seconds: Vec<u32> = (0..60).filter(|s| spec.second_matches(*s)).collect();
    let mut fires: BTreeMap<DateTime<Utc>, Fire> = BTreeMap::new();
    let minute = TimeDelta::minutes(1);

    // Local times that exist: walk UTC minutes (offsets are whole minutes).
    let mut t = start.with_second(0).unwrap().with_nanosecond(0).unwrap();
    while t <= end {
        let offset = offset_at(tz, t);
        let wall = t.naive_utc() + TimeDelta::seconds(offset.into());
        if spec.minute_matches(wall) {
            for s in &seconds {
                let instant = t + TimeDelta::seconds((*s).into());
                if instant <= start || instant > end {
                    continue;
                }
                let nominal = wall + TimeDelta::seconds((*s).into());
                let flag = match tz.from_local_datetime(&nominal) {
                    LocalResult::Single(_) => None,
                    LocalResult::Ambiguous(first, _) if first.to_utc() == instant => {
                        Some(DstFlag::FirstOfRepeated)
                    }
                    LocalResult::Ambiguous(..) => Some(DstFlag::SecondOfRepeated),
                    LocalResult::None => panic!("{nominal} is on the clock yet in a gap"),
                };
                let allowed = match (overlap, flag) {
                    (_, None) | (OverlapPolicy::Both, _) => true,
                    (OverlapPolicy::First, f) => f == Some(DstFlag::FirstOfRepeated),
                    (OverlapPolicy::Last, f) => f == Some(DstFlag::SecondOfRepeated),
                };
                if allowed {
                    fires.insert(
                        instant,
                        Fire {
                            instant,
                            nominal,
                            offset_seconds: offset,
                            flag,
                        },
                    );
                }
            }
        }
        t += minute;
    }

    // Local times that do not exist: walk local minutes; with `shift`, each
    // runs at the first instant after its gap unless something already runs
    // then (a genuine fire, or an earlier local time of the same gap).
    if gap == GapPolicy::Shift {
        let wall = |t: DateTime<Utc>| t.with_timezone(&tz).naive_local();
        let mut n = (wall(start) - TimeDelta::hours(26))
            .with_second(0)
            .unwrap()
            .with_nanosecond(0)
            .unwrap();
        let last = wall(end);
        while n <= last {
            if matches!(tz.from_local_datetime(&n), LocalResult::None) && spec.minute_matches(n) {
                let mut m = n + minute;
                while matches!(tz.from_local_datetime(&m), LocalResult::None) {
                    m += minute;
                }
                let after_gap = tz.from_local_datetime(&m).earliest().unwrap().to_utc();
                if after_gap > start && after_gap <= end {
                    for s in &seconds {
                        fires.entry(after_gap).or_insert(Fire {
                            instant: after_gap,
                            nominal: n + TimeDelta::seconds((*s).into()),
                            offset_seconds: offset_at(tz, after_gap),
                            flag: Some(DstFlag::ShiftedFromGap),
                        });
                    }
                }
            }
            n += minute;
        }
    }
    fires.into_values().collect()
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// The day search (L, L-n, W, LW, wL, w#k, steps, names, Vixie) agrees
    /// with checking every day of two years.
    #[test]
    fn day_search_matches_a_walk_over_every_day(spec in day_spec(), year in 1990..2100i32) {
        let text = spec.render();
        let cron = CronExpr::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let first = NaiveDate::from_ymd_opt(year, 1, 1).unwrap();
        let end = NaiveDate::from_ymd_opt(year + 2, 1, 1).unwrap();
        let expected: Vec<NaiveDate> = first
            .iter_days()
            .take_while(|d| *d < end)
            .filter(|d| spec.date_matches(*d))
            .collect();
        let mut got = Vec::new();
        let mut cursor = (first - Days::new(1)).and_hms_opt(0, 0, 0).unwrap();
        while let Some(next) = cron.next_local_after(cursor) {
            if next.date() >= end {
                break;
            }
            prop_assert_eq!(next.time(), chrono::NaiveTime::MIN);
            got.push(next.date());
            cursor = next;
        }
        if let Some(i) = (0..got.len().max(expected.len())).find(|i| got.get(*i) != expected.get(*i)) {
            prop_assert!(
                false,
                "{}: day {} of {}/{} differs: got {:?}, oracle {:?}",
                text, i, got.len(), expected.len(), got.get(i), expected.get(i)
            );
        }
        if !cron.can_fire() {
            prop_assert!(cron.next_local_after(cursor).is_none());
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Fires in a zone, through its DST transitions, under any policy, agree
    /// with walking every minute of the window and applying the written rules.
    #[test]
    fn fires_match_a_minute_walk_with_the_dst_rules(
        spec in time_spec(),
        (tz, start, end) in window(),
        policy in dst_policy(),
    ) {
        let text = spec.render();
        let cron = CronExpr::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(cron.kind(), spec.kind(), "{}", text);
        let schedule = Schedule::new(cron, tz).with_policy(policy);
        let expected = oracle(
            &spec,
            tz,
            schedule.gap_policy(),
            schedule.overlap_policy(),
            start,
            end,
        );
        let got: Vec<Fire> = schedule
            .fires_after(start)
            .take_while(|f| f.instant <= end)
            .take(expected.len() + 3)
            .collect();
        if let Some(i) = (0..got.len().max(expected.len())).find(|i| got.get(*i) != expected.get(*i)) {
            prop_assert!(
                false,
                "{} in {} ({:?}): fire {} of {}/{} differs: got {:?}, oracle {:?}",
                text, tz.name(), policy, i, got.len(), expected.len(), got.get(i), expected.get(i)
            );
        }
    }

    /// One-off resolution: an existing time maps back to itself, a repeated
    /// one has two instants an overlap apart, and a skipped one shifts to
    /// the first instant whose clock reads later than it.
    #[test]
    fn one_off_resolution_is_consistent_with_the_clock(
        (tz, start, _end) in window(),
        minutes in 0..(30 * 60i64),
    ) {
        let local = start.with_timezone(&tz).naive_local() + TimeDelta::minutes(minutes);
        let wall = |t: DateTime<Utc>| t.with_timezone(&tz).naive_local();
        let earliest = resolve_one_off(local, tz, OneOffPolicy::default()).unwrap();
        let latest = resolve_one_off(
            local,
            tz,
            OneOffPolicy { ambiguous: AmbiguousTime::Latest, ..OneOffPolicy::default() },
        )
        .unwrap();
        match earliest.flag {
            None => {
                prop_assert_eq!(wall(earliest.instant), local);
                prop_assert_eq!(earliest, latest);
            }
            Some(DstFlag::FirstOfRepeated) => {
                prop_assert_eq!(wall(earliest.instant), local);
                prop_assert_eq!(wall(latest.instant), local);
                prop_assert!(earliest.instant < latest.instant);
            }
            Some(DstFlag::ShiftedFromGap) => {
                let at = earliest.instant;
                prop_assert!(wall(at) > local);
                prop_assert!(wall(at - TimeDelta::seconds(1)) < local);
                prop_assert_eq!(earliest.nominal, local);
            }
            Some(DstFlag::SecondOfRepeated) => prop_assert!(false, "earliest gave the second pass"),
        }
    }
}
