//! Memory per schedule (issue 3, target under 1 KiB): builds 100,000
//! `meridian::schedule::Schedule` values from varied expressions in every
//! IANA zone chrono-tz knows, kept in one `Vec`, and prints the bytes they
//! hold: the heap bytes live after building them (counted by a global
//! allocator wrapper, so the `Vec`'s own slots are included) divided by the
//! count, and, as a cross-check that includes allocator overhead, the
//! growth of the resident set.
//!
//! Run: `cargo bench -p meridian-tests --bench schedule_memory`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use meridian::schedule::{CronExpr, Schedule};
use meridian_tests::memory::{Counting, live_bytes, resident_bytes};
use std::hint::black_box;

const COUNT: usize = 100_000;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Varied expressions: fixed times, intervals, lists, ranges, `L`, `W`, `#`,
/// seconds and macros, with numbers that change from one to the next.
fn expression(i: usize) -> String {
    let (m, h, d) = (i % 60, (i / 60) % 24, 1 + i % 28);
    match i % 8 {
        0 => format!("{m} {h} * * *"),
        1 => format!("*/{} * * * *", 1 + i % 30),
        2 => format!(
            "{m},{} {}-{} * * MON-FRI",
            (m + 30) % 60,
            h % 12,
            12 + h % 12
        ),
        3 => format!("0 {h} {d} * *"),
        4 => format!("{m} {h} L * *"),
        5 => format!("{} {m} {h} {d}W * ?", i % 60),
        6 => format!("0 {h} ? * {}#{}", i % 7, 1 + i % 5),
        _ => ["@daily", "@hourly", "@weekly", "@monthly"][i % 4].to_owned(),
    }
}

fn main() {
    let zones = chrono_tz::TZ_VARIANTS;
    let texts: Vec<String> = (0..COUNT).map(expression).collect();

    let live_before = live_bytes();
    let rss_before = resident_bytes();
    let schedules: Vec<Schedule> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| Schedule::new(CronExpr::parse(text).unwrap(), zones[i % zones.len()]))
        .collect();
    let live = live_bytes() - live_before;
    let rss = resident_bytes()
        .zip(rss_before)
        .map(|(after, before)| after.saturating_sub(before));
    black_box(&schedules);

    let inline = std::mem::size_of::<Schedule>();
    println!(
        "{COUNT} schedules ({} expressions, {} zones)",
        texts.len(),
        zones.len()
    );
    println!("size_of::<Schedule>()       {inline} bytes");
    println!(
        "heap beyond the Vec slot    {:.1} bytes per schedule",
        (live - inline * COUNT) as f64 / COUNT as f64
    );
    println!(
        "live heap bytes             {:.1} bytes per schedule (target < 1024)",
        live as f64 / COUNT as f64
    );
    match rss {
        Some(rss) => println!(
            "resident set growth         {:.1} bytes per schedule",
            rss as f64 / COUNT as f64
        ),
        None => println!("resident set growth         unknown (no /proc/self/statm)"),
    }
}
