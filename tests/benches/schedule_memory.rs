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
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

const COUNT: usize = 100_000;

/// Bytes currently allocated through the global allocator.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// `System`, counting the bytes handed out and given back.
struct Counting;

// SAFETY: every method forwards its arguments unchanged to `System`, which
// upholds the `GlobalAlloc` contract; the counter has no effect on memory.
// `realloc` and `alloc_zeroed` keep their default bodies, which go through
// `alloc` and `dealloc` here and so are counted too.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

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

/// The resident set size in bytes, where `/proc` tells it.
fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() {
    let zones = chrono_tz::TZ_VARIANTS;
    let texts: Vec<String> = (0..COUNT).map(expression).collect();

    let live_before = LIVE.load(Relaxed);
    let rss_before = resident_bytes();
    let schedules: Vec<Schedule> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| Schedule::new(CronExpr::parse(text).unwrap(), zones[i % zones.len()]))
        .collect();
    let live = LIVE.load(Relaxed) - live_before;
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
