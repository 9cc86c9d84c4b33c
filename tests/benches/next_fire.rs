//! Next fire time, side by side in one run, per expression (issue 3):
//! - `meridian_utc`: `meridian::schedule::Schedule::next_after` in UTC, the
//!   like-for-like comparison;
//! - `croner`: croner's `Cron::find_next_occurrence(&DateTime<Utc>, false)`;
//! - `cron`: the `cron` crate's `Schedule::after(&DateTime<Utc>).next()`;
//! - `meridian_berlin`: `next_after` in Europe/Berlin, what a real zone costs
//!   on top (DST-aware mapping; no peer computes the same fires there).
//!
//! Each expression is written in the syntax each crate needs (`cron` wants a
//! leading seconds field and numbers days of the week 1 = Sunday, so it gets
//! names). Every iteration asks for the next fire after one of 64 start
//! instants spread over 2026, taking them in turn, so no implementation is
//! asked the same question twice in a row. Before measuring, a setup check
//! asks all three for the next few fires from every start instant and drops
//! (with a note on stderr) any start instant where they disagree.
//!
//! Run: `cargo bench -p meridian-tests --bench next_fire`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use meridian::schedule::{CronExpr, Schedule};
use std::hint::black_box;
use std::str::FromStr;

/// One expression, as each crate spells it.
struct Case {
    /// The criterion group's name.
    name: &'static str,
    /// Meridian's and croner's syntax (5 fields, 0 or 7 = Sunday).
    five_field: &'static str,
    /// The `cron` crate's: a leading seconds field, 1 = Sunday.
    cron: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "every_minute",
        five_field: "* * * * *",
        cron: "0 * * * * *",
    },
    Case {
        name: "every_15_minutes",
        five_field: "*/15 * * * *",
        cron: "0 */15 * * * *",
    },
    Case {
        name: "daily_02_30",
        five_field: "30 2 * * *",
        cron: "0 30 2 * * *",
    },
    Case {
        name: "weekdays_09_00",
        five_field: "0 9 * * 1-5",
        cron: "0 0 9 * * MON-FRI",
    },
    Case {
        name: "monthly_1st_midnight",
        five_field: "0 0 1 * *",
        cron: "0 0 0 1 * *",
    },
    Case {
        name: "monthly_15th_noon",
        five_field: "0 12 15 * *",
        cron: "0 0 12 15 * *",
    },
    Case {
        name: "leap_day",
        five_field: "0 0 29 2 *",
        cron: "0 0 0 29 2 *",
    },
    Case {
        name: "list_office_hours",
        five_field: "5,35 8-18 * * MON-FRI",
        cron: "0 5,35 8-18 * * MON-FRI",
    },
];

/// How many fires, chained from each start instant, the setup check compares.
const CHECKED_FIRES: usize = 4;

/// 64 instants spread evenly over 2026 (every 5 d 16 h 52 min 30 s, so they
/// fall at many times of day and on every weekday; every other one is on a
/// whole minute, which catches an "at or after" read as "after").
fn start_instants() -> Vec<DateTime<Utc>> {
    let first = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let step = TimeDelta::seconds(365 * 86_400 / 64);
    (0..64).map(|i| first + step * i).collect()
}

/// The start instants from which all three crates give the same next
/// `CHECKED_FIRES` fires; the others are reported and left out.
fn agreed_starts(
    case: &Case,
    meridian: &Schedule,
    croner: &croner::Cron,
    cron: &cron::Schedule,
    starts: &[DateTime<Utc>],
) -> Vec<DateTime<Utc>> {
    let chain = |next: &dyn Fn(DateTime<Utc>) -> Option<DateTime<Utc>>, from| {
        std::iter::successors(next(from), |&at| next(at))
            .take(CHECKED_FIRES)
            .collect::<Vec<_>>()
    };
    let mut kept = Vec::new();
    for &start in starts {
        let m = chain(&|at| meridian.next_after(at).map(|f| f.instant), start);
        let cr = chain(&|at| croner.find_next_occurrence(&at, false).ok(), start);
        let c = chain(&|at| cron.after(&at).next(), start);
        if m.len() == CHECKED_FIRES && m == cr && m == c {
            kept.push(start);
        } else {
            eprintln!(
                "{}: the crates disagree after {start}, excluded:\n  meridian {m:?}\n  croner   {cr:?}\n  cron     {c:?}",
                case.name
            );
        }
    }
    assert!(!kept.is_empty(), "{}: no start instant agreed", case.name);
    kept
}

/// A benchmark body that asks `next` about each start instant in turn.
fn in_turn<T>(
    starts: &[DateTime<Utc>],
    next: impl Fn(DateTime<Utc>) -> T,
) -> impl FnMut(&mut criterion::Bencher<'_>) {
    move |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % starts.len();
            black_box(next(black_box(starts[i])))
        });
    }
}

fn next_fire(c: &mut Criterion) {
    let all_starts = start_instants();
    for case in CASES {
        let expr = CronExpr::parse(case.five_field).unwrap();
        let utc = Schedule::new(expr.clone(), chrono_tz::UTC);
        let berlin = Schedule::new(expr, chrono_tz::Europe::Berlin);
        let croner = croner::Cron::from_str(case.five_field).unwrap();
        let cron = cron::Schedule::from_str(case.cron).unwrap();
        let starts = agreed_starts(case, &utc, &croner, &cron, &all_starts);
        eprintln!(
            "{}: setup check: meridian, croner and cron agree on the next {CHECKED_FIRES} fires \
             from {} of {} start instants; measuring those",
            case.name,
            starts.len(),
            all_starts.len()
        );

        let mut group = c.benchmark_group(case.name);
        group.bench_function("meridian_utc", in_turn(&starts, |at| utc.next_after(at)));
        group.bench_function(
            "croner",
            in_turn(&starts, |at| croner.find_next_occurrence(&at, false)),
        );
        group.bench_function("cron", in_turn(&starts, |at| cron.after(&at).next()));
        group.bench_function(
            "meridian_berlin",
            in_turn(&starts, |at| berlin.next_after(at)),
        );
        group.finish();
    }
}

criterion_group!(benches, next_fire);
criterion_main!(benches);
