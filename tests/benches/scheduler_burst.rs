//! The scheduler burst of issue 3: 100,000 schedules due in the same second.
//!
//! Setup (not measured): a file-backed SQLite store in a temp dir (or,
//! with `BURST_STORE=postgres`, a fresh PostgreSQL schema) holding
//! 100,000 enabled schedules `0 * * * * *` (every minute at second 0, so all
//! are due at the same UTC instant whatever their zone), spread over 20
//! zones, misfire policy `none` and created just before the clock starts, so
//! start-up has nothing to catch up or count.
//!
//! The scheduler runs on a [`TokioClock`] that starts [`LEAD`] before a whole
//! minute and then follows real time, so the burst comes `LEAD` real seconds
//! after the clock starts, once the scheduler has loaded every schedule.
//! The queue handler records each run's `enqueued_at` (set by the queue at
//! submit, which the scheduler does only after the fire's identity is
//! stored) and succeeds at once.
//!
//! Measured and printed:
//! - per fire, due → enqueued latency: `enqueued_at` minus the tokio
//!   instant of the due UTC instant; p50, p99, max;
//! - the time until all 100,000 runs were enqueued and the fires per second
//!   that makes;
//! - checks: every schedule ran exactly once, for the expected fire, and the
//!   store holds exactly one fire row per schedule (100,000 in all);
//! - memory per schedule held by the running scheduler: between just before
//!   `Scheduler::spawn` (store already filled) and after its first `flush`
//!   (every schedule loaded, before the burst), the growth of the live heap
//!   (a counting global allocator: Rust allocations only) and of the
//!   resident set (`/proc/self/statm`: also SQLite's own caches and malloc
//!   overhead, and memory malloc kept after start-up freed it), each divided
//!   by 100,000.
//!
//! Run: `cargo bench -p meridian-tests --bench scheduler_burst`
//! (`BURST_LEAD_S` overrides the lead, in seconds, on a slow machine;
//! `BURST_STORE=postgres` runs it on the test PostgreSQL server, a fresh
//! schema, instead of the SQLite file; there `BURST_NODES=N` runs N
//! schedulers, each with a store handle of its own under its own node id,
//! on that schema in this process, as N nodes: every fire must still run
//! once in all.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeDelta, TimeZone, Utc};
use meridian::model::schedule::ScheduleSpec;
use meridian::queue::{QueueConfig, QueuedRun, RunOutcome};
use meridian::scheduler::{Dispatcher, RunPayload, Scheduler, SchedulerConfig, TokioClock};
use meridian::store::Store;
use meridian_tests::memory::{Counting, live_bytes, resident_bytes};
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const COUNT: usize = 100_000;

/// Time between the clock's start and the burst, by default: loading
/// 100,000 schedules takes 1.3 to 4 s on the shared 2-core machine, and
/// they must all be loaded before the burst.
const LEAD: Duration = Duration::from_secs(5);

/// Whole-hour, half-hour and 45-minute offsets, both hemispheres.
const ZONES: [&str; 20] = [
    "UTC",
    "Europe/Berlin",
    "Europe/London",
    "Europe/Moscow",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Asia/Shanghai",
    "Asia/Singapore",
    "Asia/Dubai",
    "Asia/Kathmandu",
    "Australia/Sydney",
    "Australia/Adelaide",
    "Pacific/Auckland",
    "Africa/Cairo",
    "Africa/Johannesburg",
];

#[global_allocator]
static GLOBAL: Counting = Counting;

fn schedule_id(i: usize) -> String {
    format!("s{i:06}")
}

/// What the handler saw of one run.
struct Seen {
    enqueued_at: Instant,
    run_id: String,
    payload: RunPayload,
    /// Which scheduler (node) queued it.
    node: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let lead = std::env::var("BURST_LEAD_S")
        .ok()
        .map_or(LEAD, |s| Duration::from_secs_f64(s.parse().unwrap()));
    // The burst: a whole minute, in UTC and in every zone above.
    let due_utc = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
    let start_utc = due_utc - TimeDelta::from_std(lead).unwrap();

    // Setup: the store.
    let dir = tempfile::tempdir().unwrap();
    let nodes: usize = std::env::var("BURST_NODES")
        .ok()
        .map_or(1, |s| s.parse().expect("BURST_NODES: a whole number"));
    let mut stores = Vec::new();
    match std::env::var("BURST_STORE").as_deref() {
        Ok("postgres") => {
            // Fails, saying what is missing, without a server.
            let url = meridian_tests::services::postgres_url();
            let schema = format!("bench_burst_{}", std::process::id());
            println!("store: PostgreSQL, schema {schema}, {nodes} node(s)");
            for _ in 0..nodes {
                stores.push(
                    Store::open_postgres_schema(&url, &schema, 16)
                        .await
                        .unwrap(),
                );
            }
        }
        Ok("sqlite") | Err(_) => {
            assert_eq!(nodes, 1, "several nodes share a PostgreSQL store only");
            println!("store: SQLite file");
            stores.push(
                Store::open_sqlite(&dir.path().join("meridian.db"))
                    .await
                    .unwrap(),
            );
        }
        Ok(other) => panic!("BURST_STORE={other}: expected sqlite or postgres"),
    }
    for (k, store) in stores.iter().enumerate() {
        store.set_node(meridian::store::NodeLease {
            id: Arc::from(format!("bench-{k}")),
            lease_us: 30_000_000,
        });
    }
    let store = stores[0].clone();
    let created_us = (start_utc - TimeDelta::seconds(1)).timestamp_micros();
    let setup = std::time::Instant::now();
    let rows: Vec<_> = (0..COUNT)
        .map(|i| {
            let spec: ScheduleSpec = serde_json::from_value(json!({
                "id": schedule_id(i),
                "job_id": format!("job{:03}", i % 1000),
                "cron": "0 * * * * *",
                "timezone": ZONES[i % ZONES.len()],
                "misfire": {"policy": "none"},
            }))
            .unwrap();
            spec.compile().unwrap().to_row(created_us, created_us, None)
        })
        .collect();
    store.insert_schedules(&rows).await.unwrap();
    drop(rows);
    println!(
        "setup: {COUNT} schedules over {} zones stored in {:.1} s",
        ZONES.len(),
        setup.elapsed().as_secs_f64()
    );

    // The handler: what was enqueued when.
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::new(Mutex::new(Vec::with_capacity(COUNT)));
    let ran = Arc::new(AtomicUsize::new(0));
    let handler = |node: usize| {
        let (seen, ran) = (Arc::clone(&seen), Arc::clone(&ran));
        move |run: QueuedRun<RunPayload>| {
            seen.lock().unwrap().push(Seen {
                enqueued_at: run.enqueued_at,
                run_id: run.run_id,
                payload: run.payload,
                node,
            });
            ran.fetch_add(1, Relaxed);
            async { RunOutcome::Succeeded }
        }
    };
    let queue_config = QueueConfig {
        min_workers: 1,
        max_workers: 8,
        global_max_concurrent: 64,
        ..QueueConfig::default()
    };

    // Memory before the scheduler exists (store filled, handler ready).
    let live_before = live_bytes();
    let rss_before = resident_bytes();

    let clock_instant = Instant::now();
    let clock = Arc::new(TokioClock::starting_at(start_utc));
    let due_instant = clock_instant + lead;
    let mut schedulers = Vec::new();
    for (k, store) in stores.iter().enumerate() {
        let dispatcher = Dispatcher::new(queue_config.clone(), handler(k)).unwrap();
        let scheduler = Scheduler::spawn(
            store.clone(),
            Arc::clone(&clock) as Arc<dyn meridian::scheduler::Clock>,
            dispatcher,
            SchedulerConfig::default(),
        )
        .await
        .unwrap();
        scheduler.flush().await.unwrap();
        schedulers.push(scheduler);
    }
    let scheduler = &schedulers[0];
    let loaded = clock_instant.elapsed();
    let live = live_bytes().saturating_sub(live_before);
    let rss = resident_bytes()
        .zip(rss_before)
        .map(|(after, before)| after.saturating_sub(before));
    assert!(
        Instant::now() < due_instant,
        "the scheduler took {loaded:?} to load, longer than the lead of {lead:?}: \
         set BURST_LEAD_S higher"
    );
    assert_eq!(
        scheduler.next_fire(&schedule_id(0)).await.unwrap(),
        Some(due_utc)
    );
    println!(
        "scheduler loaded {COUNT} schedules in {} (burst due {} after the clock started)",
        ms(loaded),
        ms(lead)
    );

    // The burst.
    let deadline = due_instant + Duration::from_secs(60);
    while ran.load(Relaxed) < COUNT {
        assert!(
            Instant::now() < deadline,
            "only {} of {COUNT} runs after a minute",
            ran.load(Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Anything extra would show up now.
    for scheduler in &schedulers {
        scheduler.flush().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for scheduler in &schedulers {
        let report = scheduler.shutdown().await.unwrap();
        assert!(
            report.queued.is_empty() && report.buffered.is_empty() && report.aborted.is_empty()
        );
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.len(), COUNT, "runs handled");
    if nodes > 1 {
        let per_node: Vec<usize> = (0..nodes)
            .map(|k| seen.iter().filter(|s| s.node == k).count())
            .collect();
        println!("runs per node: {per_node:?}");
    }
    let schedules: HashSet<&str> = seen.iter().map(|s| &*s.payload.schedule_id).collect();
    assert_eq!(schedules.len(), COUNT, "distinct schedules run");
    let run_ids: HashSet<&str> = seen.iter().map(|s| s.run_id.as_str()).collect();
    assert_eq!(run_ids.len(), COUNT, "distinct run ids");
    for s in &seen {
        let fire = s.payload.fire.expect("a scheduled run has a fire");
        assert_eq!(fire.instant, due_utc, "{}", s.payload.schedule_id);
    }

    let mut latencies: Vec<Duration> = seen
        .iter()
        .map(|s| {
            assert!(s.enqueued_at >= due_instant, "enqueued before due");
            s.enqueued_at - due_instant
        })
        .collect();
    latencies.sort_unstable();
    let total = *latencies.last().unwrap();
    let first = latencies[0];

    // Persisted identities: one fire row per schedule, for that minute.
    let check = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for part in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut rows = 0;
            for i in (part..COUNT).step_by(8) {
                let fires = store.list_fires(&schedule_id(i), 10).await.unwrap();
                assert_eq!(fires.len(), 1, "fires of {}", schedule_id(i));
                assert_eq!(fires[0].fire_at_us, due_utc.timestamp_micros());
                assert_eq!(fires[0].outcome, "enqueued");
                rows += fires.len();
            }
            rows
        });
    }
    let stored: usize = tasks.join_all().await.into_iter().sum();
    assert_eq!(stored, COUNT, "fire rows stored");
    println!(
        "checked: {COUNT} runs, each schedule once, {stored} fire rows in the store ({:.1} s)",
        check.elapsed().as_secs_f64()
    );

    println!();
    println!("due -> enqueued latency over {COUNT} fires");
    println!("  first   {}", ms(first));
    println!("  p50     {}", ms(percentile(&latencies, 50.0)));
    println!(
        "  p99     {}   (target < 1000 ms)",
        ms(percentile(&latencies, 99.0))
    );
    println!("  max     {}", ms(total));
    println!(
        "all {COUNT} enqueued {} after due: {:.0} fires/s (target >= 100000)",
        ms(total),
        COUNT as f64 / total.as_secs_f64()
    );
    println!();
    println!("memory held by the loaded scheduler (per node)");
    let held = (COUNT * nodes) as f64;
    println!(
        "  live heap growth      {:.1} bytes per schedule (target < 1024)",
        live as f64 / held
    );
    match rss {
        Some(rss) => println!(
            "  resident set growth   {:.1} bytes per schedule",
            rss as f64 / held
        ),
        None => println!("  resident set growth   unknown (no /proc/self/statm)"),
    }
}
