//! Events per second through Meridian's log router against `tracing` to a
//! single plain file, in one run.
//!
//! The same 200,000 events, emitted on one thread by the same code, through
//! two subscribers:
//!
//! - `router`: `Registry` + [`RouterLayer`] (JSON lines, default config,
//!   a masker holding three secrets that never match): each execution event
//!   is written twice, to its zone's file and to its execution's file;
//! - `fmt_json_file`: `Registry` + `tracing_subscriber::fmt` JSON layer
//!   writing through `tracing_appender::non_blocking` (blocking when full,
//!   not lossy, so nothing is dropped) to one file: the usual setup, and the
//!   floor of "JSON lines to a file off the calling thread".
//!
//! Events: 1,000 executions across 10 zones, 190 step log lines each
//! (`info!` with target `meridian::step`, three fields and a formatted
//! message, inside the execution's span and a step span), run in waves of
//! 50 at a time with their lines interleaved (as concurrent executions
//! are), plus 10,000 events outside any execution (one after every 19
//! execution lines). Time is from the first event to the end of the final
//! flush (`LogHandle::flush`; dropping the appender's guard, which joins its
//! worker), so the file IO is counted. Each subscriber runs [`ROUNDS`]
//! times, alternating, each time into a fresh temp dir; the table shows the
//! median round and the fastest, and the lines the router dropped over all
//! rounds (its channel was full for longer than it waits: see
//! `meridian::logging`; the appender never drops, it blocks).
//!
//! Run: `cargo bench -p meridian-tests --bench log_routing`
//! (`LOG_BENCH_REMOVE_DIRS=1` removes each round's files before the next.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use meridian::logging::{LogConfig, RouterLayer};
use meridian::secrets::Masker;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::SubscriberExt as _;

const EXECUTIONS: usize = 1_000;
const LINES_PER_EXECUTION: usize = 190;
const WAVE: usize = 50;
const SYSTEM_EVERY: usize = 19;
const ROUNDS: usize = 5;
const ZONES: [&str; 10] = [
    "UTC",
    "Europe/Berlin",
    "Asia/Kolkata",
    "America/Los_Angeles",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Sydney",
    "America/Sao_Paulo",
    "Africa/Nairobi",
    "Asia/Kathmandu",
];

/// Emits the whole workload into the current subscriber; the number of
/// events.
fn workload() -> usize {
    let mut events = 0;
    let mut since_system = 0;
    for wave in 0..EXECUTIONS / WAVE {
        let spans: Vec<tracing::Span> = (0..WAVE)
            .map(|i| {
                let n = wave * WAVE + i;
                tracing::info_span!(
                    "execution",
                    execution_id = %format!("0192f1a2-7b3c-7d4e-8f90-{n:012}"),
                    job_id = %format!("job-{}", n % 97),
                    zone = ZONES[n % ZONES.len()],
                )
            })
            .collect();
        for line in 0..LINES_PER_EXECUTION {
            for span in &spans {
                span.in_scope(|| {
                    let step = tracing::info_span!("step", step_id = "fetch", seq = line / 10);
                    step.in_scope(|| {
                        tracing::info!(
                            target: "meridian::step",
                            attempt = 1u32,
                            source = "stdout",
                            bytes = line * 7,
                            "fetched page {line} of the report: {} rows",
                            line * 31
                        );
                    });
                });
                events += 1;
                since_system += 1;
                if since_system == SYSTEM_EVERY {
                    since_system = 0;
                    tracing::info!(target: "meridian::scheduler", due = events, "scheduler tick");
                    events += 1;
                }
            }
        }
    }
    events
}

struct Round {
    elapsed: Duration,
    events: usize,
    lines: usize,
    bytes: u64,
    /// Lines the router dropped because its writer fell behind.
    dropped: u64,
}

fn count(dir: &Path) -> (usize, u64) {
    let mut lines = 0;
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let (l, b) = count(&path);
            lines += l;
            bytes += b;
        } else {
            let data = std::fs::read(&path).unwrap();
            lines += data.iter().filter(|b| **b == b'\n').count();
            bytes += data.len() as u64;
        }
    }
    (lines, bytes)
}

fn router_round(dirs: &mut Vec<tempfile::TempDir>) -> Round {
    let dir = tempfile::tempdir().unwrap();
    let masker = Arc::new(Masker::new([
        "sk_live_51Habcdefghijklmnop",
        "hunter2-db-password",
        "ghp_0123456789abcdefghijklmnopqrstuvwxyz",
    ]));
    let (layer, handle) = RouterLayer::builder(dir.path(), &LogConfig::default(), masker)
        .build()
        .unwrap();
    let subscriber = Registry::default().with(layer);
    let started = Instant::now();
    let events = tracing::subscriber::with_default(subscriber, workload);
    handle.flush().unwrap();
    let elapsed = started.elapsed();
    let dropped = handle.dropped();
    let (lines, bytes) = count(dir.path());
    let round = Round {
        elapsed,
        events,
        lines,
        bytes,
        dropped,
    };
    keep(dirs, dir);
    round
}

/// Keeps a round's files until the end of the run, unless
/// `LOG_BENCH_REMOVE_DIRS` is set (then they go now: see `main`).
fn keep(dirs: &mut Vec<tempfile::TempDir>, dir: tempfile::TempDir) {
    if std::env::var_os("LOG_BENCH_REMOVE_DIRS").is_none() {
        dirs.push(dir);
    }
}

fn fmt_round(dirs: &mut Vec<tempfile::TempDir>) -> Round {
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(dir.path().join("all.log")).unwrap();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(file);
    let subscriber =
        Registry::default().with(tracing_subscriber::fmt::layer().json().with_writer(writer));
    let started = Instant::now();
    let events = tracing::subscriber::with_default(subscriber, workload);
    drop(guard);
    let elapsed = started.elapsed();
    let (lines, bytes) = count(dir.path());
    keep(dirs, dir);
    Round {
        elapsed,
        events,
        lines,
        bytes,
        dropped: 0,
    }
}

fn summary(name: &str, mut rounds: Vec<Round>) -> (String, f64) {
    rounds.sort_by_key(|r| r.elapsed);
    let median = &rounds[rounds.len() / 2];
    let best = &rounds[0];
    let dropped: u64 = rounds.iter().map(|r| r.dropped).sum();
    for r in &rounds {
        assert_eq!(r.events, median.events);
        if r.dropped == 0 && median.dropped == 0 {
            assert_eq!(r.lines, median.lines, "every round writes the same lines");
        }
    }
    let rate = |r: &Round| r.events as f64 / r.elapsed.as_secs_f64();
    let row = format!(
        "| {name:<15} | {:>7} | {:>7} | {:>7} | {:>8.1} MB | {:>8.0} ms | {:>17.0} | {:>15.0} |",
        median.events,
        dropped,
        median.lines,
        median.bytes as f64 / 1e6,
        median.elapsed.as_secs_f64() * 1e3,
        rate(median),
        rate(best),
    );
    (row, rate(median))
}

fn main() {
    // Every round's files stay until the end: removing thousands of files
    // between rounds makes creating the next ones slower (ext4 skips
    // recently freed inodes), which only the router would pay. Set
    // LOG_BENCH_REMOVE_DIRS=1 to see that case.
    let mut dirs = Vec::new();
    // Warm-up: page cache, allocator, lazily built zone tables.
    let _ = router_round(&mut dirs);
    let _ = fmt_round(&mut dirs);
    let mut router = Vec::new();
    let mut fmt = Vec::new();
    for _ in 0..ROUNDS {
        router.push(router_round(&mut dirs));
        fmt.push(fmt_round(&mut dirs));
    }
    let (router_row, router_rate) = summary("router", router);
    let (fmt_row, fmt_rate) = summary("fmt_json_file", fmt);
    println!(
        "| subscriber      |  events | dropped |   lines |    bytes    | median time | events/s (median) | events/s (best) |"
    );
    println!(
        "|-----------------|---------|---------|---------|-------------|-------------|-------------------|-----------------|"
    );
    println!("{router_row}");
    println!("{fmt_row}");
    println!(
        "router / fmt_json_file events per second (medians): {:.2}",
        router_rate / fmt_rate
    );
}
