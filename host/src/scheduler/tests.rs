//! Scheduler tests under a paused tokio clock.
//!
//! The scheduler's clock is a [`TokioClock`], so `tokio::time::advance`
//! moves "now", the loop's sleep and the run handlers' sleeps together, in
//! steps that land on every instant a test cares about. SQLite answers from
//! its own thread; while a test waits for it, a paused runtime that sees no
//! work would jump its clock to the next timer. [`HoldTime`] keeps a
//! blocking task alive, which tokio treats as "work in progress", so time
//! moves only when a test advances it, and [`Harness::settle`] waits for
//! the loop (a `flush` round trip) instead of for time.

use super::*;
use crate::model::schedule::ScheduleSpec;
use crate::queue::{QueueConfig, QueuedRun, RunHandler, RunOutcome, RunReport};
use crate::store::FireRow;
use chrono::{NaiveDateTime, TimeDelta};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Keeps tokio from auto-advancing the paused clock while the test waits
/// for SQLite; see the module docs.
struct HoldTime {
    _release: std::sync::mpsc::Sender<()>,
}

fn hold_time() -> HoldTime {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    // Returns when the sender is dropped.
    tokio::task::spawn_blocking(move || rx.recv().is_ok());
    HoldTime { _release: tx }
}

/// A run as the handler saw it.
#[derive(Debug, Clone)]
struct Seen {
    run_id: String,
    schedule_id: String,
    fire: Option<(NaiveDateTime, i32)>,
    origin: Origin,
    started: DateTime<Utc>,
}

impl Seen {
    /// The nominal local time as `HH:MM`.
    fn hm(&self) -> String {
        self.fire
            .map(|(n, _)| n.format("%H:%M").to_string())
            .unwrap_or_default()
    }
}

/// The test's run handler: records each run, then takes `run_for`.
#[derive(Clone)]
struct Probe {
    clock: TokioClock,
    run_for: Duration,
    seen: Arc<Mutex<Vec<Seen>>>,
    ended: Arc<Mutex<Vec<(String, RunOutcome)>>>,
    current: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

impl RunHandler<RunPayload> for Probe {
    async fn handle(&self, run: QueuedRun<RunPayload>) -> RunOutcome {
        self.seen.lock().unwrap().push(Seen {
            run_id: run.run_id.clone(),
            schedule_id: run.payload.schedule_id.to_string(),
            fire: run.payload.fire.map(|f| (f.nominal, f.offset_seconds)),
            origin: run.payload.origin,
            started: self.clock.now(),
        });
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        let _leaving = Leaving(Arc::clone(&self.current));
        tokio::time::sleep(self.run_for).await;
        RunOutcome::Succeeded
    }

    fn finished(&self, report: &RunReport) {
        self.ended
            .lock()
            .unwrap()
            .push((report.run.run_id.clone(), report.outcome.clone()));
    }
}

/// Counts a run out of `current` however it ends (aborted runs too).
struct Leaving(Arc<AtomicUsize>);

impl Drop for Leaving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn probe(clock: TokioClock, run_for: Duration) -> Probe {
    Probe {
        clock,
        run_for,
        seen: Arc::default(),
        ended: Arc::default(),
        current: Arc::default(),
        max: Arc::default(),
    }
}

fn def(id: &str, cron: &str, tz: &str, extra: Value) -> crate::model::schedule::ScheduleDef {
    let mut v =
        json!({"id": id, "job_id": "job", "cron": cron, "timezone": tz, "overlap": "allow"});
    if let (Some(base), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    serde_json::from_value::<ScheduleSpec>(v)
        .unwrap()
        .compile()
        .unwrap()
}

/// Stores a schedule as the API would, created at `created`, with a cursor.
async fn insert(
    store: &Store,
    id: &str,
    cron: &str,
    tz: &str,
    extra: Value,
    created: DateTime<Utc>,
    cursor: Option<DateTime<Utc>>,
) {
    let c = created.timestamp_micros();
    let row = def(id, cron, tz, extra).to_row(c, c, cursor.map(|t| t.timestamp_micros()));
    store.insert_schedule(&row).await.unwrap();
}

struct Harness {
    store: Store,
    clock: TokioClock,
    probe: Probe,
    sched: SchedulerHandle,
    _hold: HoldTime,
}

async fn start(store: Store, clock: TokioClock, probe: Probe) -> SchedulerHandle {
    let dispatcher = Dispatcher::new(QueueConfig::default(), probe).unwrap();
    Scheduler::spawn(
        store,
        Arc::new(clock),
        dispatcher,
        SchedulerConfig::default(),
    )
    .await
    .unwrap()
}

/// A scheduler on a fresh in-memory store whose clock reads `now`, with
/// runs that take `run_for`.
async fn harness(now: &str, run_for: Duration) -> Harness {
    let hold = hold_time();
    let store = Store::open_memory().await.unwrap();
    harness_on(store, now, run_for, hold).await
}

async fn harness_on(store: Store, now: &str, run_for: Duration, hold: HoldTime) -> Harness {
    let clock = TokioClock::starting_at(utc(now));
    let probe = probe(clock, run_for);
    let sched = start(store.clone(), clock, probe.clone()).await;
    let h = Harness {
        store,
        clock,
        probe,
        sched,
        _hold: hold,
    };
    h.settle().await;
    h
}

impl Harness {
    /// Creates a schedule now and tells the scheduler.
    async fn add(&self, id: &str, cron: &str, tz: &str, extra: Value) {
        insert(&self.store, id, cron, tz, extra, self.clock.now(), None).await;
        self.sched.reload(id).await.unwrap();
    }

    /// Lets the loop and the runs catch up with the current instant.
    async fn settle(&self) {
        for _ in 0..3 {
            self.sched.flush().await.unwrap();
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Advances the clock by `total`, `step` at a time.
    async fn run_for(&self, total: Duration, step: Duration) {
        let mut done = Duration::ZERO;
        while done < total {
            let d = step.min(total - done);
            tokio::time::advance(d).await;
            self.settle().await;
            done += d;
        }
    }

    /// Advances the clock to `until` in steps.
    async fn run_until(&self, until: &str, step: Duration) {
        let left = (utc(until) - self.clock.now()).to_std().unwrap();
        self.run_for(left, step).await;
    }

    fn seen(&self) -> Vec<Seen> {
        self.probe.seen.lock().unwrap().clone()
    }

    /// `HH:MM@HH:MM:SS` for each run: its nominal time and when it started.
    fn starts(&self) -> Vec<String> {
        self.seen()
            .iter()
            .map(|s| format!("{}@{}", s.hm(), s.started.format("%H:%M:%S")))
            .collect()
    }

    fn ended(&self) -> Vec<(String, RunOutcome)> {
        self.probe.ended.lock().unwrap().clone()
    }

    /// The schedule's fires, oldest first.
    async fn fires(&self, id: &str) -> Vec<FireRow> {
        let mut fires = self.store.list_fires(id, 100_000).await.unwrap();
        fires.reverse();
        fires
    }

    /// `HH:MM outcome` for each stored fire.
    async fn outcomes(&self, id: &str) -> Vec<String> {
        self.fires(id)
            .await
            .iter()
            .map(|f| format!("{} {}", &f.nominal_local[11..16], f.outcome))
            .collect()
    }

    async fn cursor(&self, id: &str) -> Option<DateTime<Utc>> {
        let row = self.store.get_schedule(id).await.unwrap().unwrap();
        row.cursor_us.and_then(DateTime::from_timestamp_micros)
    }
}

fn assert_unique_identities(fires: &[FireRow]) {
    let ids: HashSet<_> = fires
        .iter()
        .map(|f| (&f.schedule_id, &f.nominal_local, f.utc_offset_s))
        .collect();
    assert_eq!(ids.len(), fires.len(), "duplicate fire identity: {fires:?}");
}

// --- firing ---------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_per_minute_schedule_fires_once_a_minute_and_stores_each_identity_once() {
    let h = harness("2026-01-01T00:00:30Z", Duration::ZERO).await;
    h.add("every-minute", "* * * * *", "UTC", json!({})).await;
    h.run_for(secs(600), secs(15)).await;

    let seen = h.seen();
    let want: Vec<String> = (1..=10)
        .map(|m| format!("00:{m:02}@00:{m:02}:00"))
        .collect();
    assert_eq!(h.starts(), want, "each run starts on its minute");
    assert!(seen.iter().all(|s| s.origin == Origin::Scheduled));

    let fires = h.fires("every-minute").await;
    assert_eq!(fires.len(), 10);
    assert_unique_identities(&fires);
    for (fire, run) in fires.iter().zip(&seen) {
        assert_eq!(fire.origin, "scheduled");
        assert_eq!(fire.outcome, "enqueued");
        assert_eq!(fire.run_id.as_deref(), Some(run.run_id.as_str()));
    }
    assert_eq!(
        h.cursor("every-minute").await,
        Some(utc("2026-01-01T00:10:00Z"))
    );
    assert_eq!(
        h.sched.next_fire("every-minute").await.unwrap(),
        Some(utc("2026-01-01T00:11:00Z"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_fire_already_stored_elsewhere_does_not_run_and_leaves_no_trace() {
    let h = harness("2026-01-01T00:00:30Z", secs(10)).await;
    h.add("s", "* * * * *", "UTC", json!({"overlap": "skip"}))
        .await;
    // Another node fired 00:03 (origin backfill: the cursor stays put).
    let other = FireRow {
        schedule_id: "s".into(),
        nominal_local: "2026-01-01T00:03:00".into(),
        utc_offset_s: 0,
        fire_at_us: utc("2026-01-01T00:03:00Z").timestamp_micros(),
        origin: "backfill".into(),
        outcome: "enqueued".into(),
        run_id: Some("elsewhere".into()),
        created_at_us: 0,
    };
    assert_eq!(h.store.record_fires(&[other]).await.unwrap(), [true]);

    h.run_for(secs(300), secs(10)).await;
    let minutes: Vec<String> = h.seen().iter().map(Seen::hm).collect();
    assert_eq!(minutes, ["00:01", "00:02", "00:04", "00:05"]);
    let fires = h.fires("s").await;
    assert_eq!(fires.len(), 5);
    assert_eq!(fires[2].run_id.as_deref(), Some("elsewhere"));
    // Its abandoned plan queued nothing, so 00:04 was not skipped.
    assert!(fires.iter().all(|f| f.outcome == "enqueued"));
}

#[tokio::test(start_paused = true)]
async fn start_at_and_end_at_bound_the_fires() {
    let h = harness("2026-01-01T00:00:30Z", Duration::ZERO).await;
    h.add(
        "s",
        "* * * * *",
        "UTC",
        json!({"start_at": "2026-01-01T00:03:00Z", "end_at": "2026-01-01T00:05:00Z"}),
    )
    .await;
    h.run_for(secs(480), secs(30)).await;
    let minutes: Vec<String> = h.seen().iter().map(Seen::hm).collect();
    assert_eq!(minutes, ["00:03", "00:04", "00:05"]);
    assert_eq!(h.sched.next_fire("s").await.unwrap(), None);
}

/// 5,000 schedules due at once: one batch, stored and queued in chunks of
/// 2,048 and then 2,952 fires (the pipeline of `Runner::fire_due`). Each
/// runs once, each identity is stored once, and each cursor moves to the
/// fire once the batch is queued.
#[tokio::test(start_paused = true)]
async fn five_thousand_schedules_due_in_the_same_second_fire_once_each_in_chunks() {
    let hold = hold_time();
    let store = Store::open_memory().await.unwrap();
    let created = utc("2026-01-01T00:00:00Z");
    for i in 0..5000 {
        insert(
            &store,
            &format!("s{i}"),
            "* * * * *",
            "UTC",
            json!({}),
            created,
            None,
        )
        .await;
    }
    let h = harness_on(store, "2026-01-01T00:00:30Z", Duration::ZERO, hold).await;
    h.run_for(secs(30), secs(30)).await;
    // The queue's concurrency cap starts them in waves; time stands still.
    for _ in 0..200 {
        if h.seen().len() >= 5000 {
            break;
        }
        h.settle().await;
    }
    let seen = h.seen();
    assert_eq!(seen.len(), 5000);
    let due = utc("2026-01-01T00:01:00Z");
    assert!(seen.iter().all(|s| s.started == due));
    let schedules: HashSet<_> = seen.iter().map(|s| s.schedule_id.clone()).collect();
    assert_eq!(schedules.len(), 5000);
    for i in [0, 2047, 2048, 4999] {
        let id = format!("s{i}");
        let fires = h.fires(&id).await;
        assert_eq!(fires.len(), 1, "{id}");
        assert_eq!(fires[0].fire_at_us, due.timestamp_micros(), "{id}");
        assert_eq!(h.cursor(&id).await, Some(due), "{id}");
        assert_eq!(
            h.sched.next_fire(&id).await.unwrap(),
            Some(utc("2026-01-01T00:02:00Z"))
        );
    }
}

/// A burst whose second chunk cannot be stored (one of its schedules was
/// deleted from the store behind the scheduler's back): the first chunk's
/// fires run on time, the second chunk's a retry delay later without the
/// deleted schedule, and nothing runs twice.
#[tokio::test(start_paused = true)]
async fn a_chunk_that_cannot_be_stored_is_retried_without_holding_up_the_others() {
    let h = harness("2026-01-01T00:00:30Z", Duration::ZERO).await;
    // Installed in this order, so due in this order: the first 2,048 make
    // the first chunk.
    for i in 0..2100 {
        h.add(&format!("a{i:04}"), "* * * * *", "UTC", json!({}))
            .await;
        if i == 2060 {
            h.add("deleted", "* * * * *", "UTC", json!({})).await;
        }
    }
    h.store.delete_schedule("deleted").await.unwrap();
    h.run_until("2026-01-01T00:01:30Z", secs(1)).await;
    for _ in 0..200 {
        if h.seen().len() >= 2100 {
            break;
        }
        h.settle().await;
    }
    let seen = h.seen();
    let at = |s: &str| seen.iter().find(|r| &*r.schedule_id == s).unwrap().started;
    assert_eq!(seen.len(), 2100);
    let runs: HashSet<_> = seen.iter().map(|s| s.schedule_id.clone()).collect();
    assert_eq!(runs.len(), 2100, "each schedule ran once");
    assert_eq!(at("a0000"), utc("2026-01-01T00:01:00Z"));
    assert_eq!(at("a2047"), utc("2026-01-01T00:01:00Z"));
    assert_eq!(at("a2048"), utc("2026-01-01T00:01:01Z"));
    assert_eq!(at("a2099"), utc("2026-01-01T00:01:01Z"));
    assert_eq!(h.sched.next_fire("deleted").await.unwrap(), None);
    for id in ["a0000", "a2048"] {
        assert_eq!(h.fires(id).await.len(), 1, "{id}");
    }
}

// --- restarts ---------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn exactly_once_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meridian.db");
    let hold = hold_time();
    let store = Store::open_sqlite(&path).await.unwrap();
    let a = harness_on(store, "2026-01-01T00:00:30Z", Duration::ZERO, hold).await;
    a.add(
        "s",
        "* * * * *",
        "UTC",
        json!({"misfire": {"window_s": 3600, "policy": "all"}}),
    )
    .await;
    a.run_until("2026-01-01T00:03:30Z", secs(30)).await;
    let report = a.sched.shutdown().await.unwrap();
    assert!(report.queued.is_empty() && report.aborted.is_empty());
    let Harness {
        probe: first,
        clock,
        _hold: hold,
        ..
    } = a;

    // Down for two minutes: 00:04 and 00:05 are missed. Meanwhile another
    // node fired 00:05 (recorded without moving this node's cursor).
    tokio::time::advance(secs(120)).await;
    assert_eq!(clock.now(), utc("2026-01-01T00:05:30Z"));
    let store = Store::open_sqlite(&path).await.unwrap();
    let other = FireRow {
        schedule_id: "s".into(),
        nominal_local: "2026-01-01T00:05:00".into(),
        utc_offset_s: 0,
        fire_at_us: utc("2026-01-01T00:05:00Z").timestamp_micros(),
        origin: "backfill".into(),
        outcome: "enqueued".into(),
        run_id: Some("elsewhere".into()),
        created_at_us: 0,
    };
    assert_eq!(store.record_fires(&[other]).await.unwrap(), [true]);

    let b = harness_on(store, "2026-01-01T00:05:30Z", Duration::ZERO, hold).await;
    b.run_until("2026-01-01T00:08:30Z", secs(30)).await;

    let label = |s: &Seen| format!("{} {:?}", s.hm(), s.origin);
    let before: Vec<String> = first.seen.lock().unwrap().iter().map(label).collect();
    let after: Vec<String> = b.seen().iter().map(label).collect();
    assert_eq!(
        before,
        ["00:01 Scheduled", "00:02 Scheduled", "00:03 Scheduled"]
    );
    assert_eq!(
        after,
        [
            "00:04 CatchUp",
            "00:06 Scheduled",
            "00:07 Scheduled",
            "00:08 Scheduled"
        ]
    );
    let fires = b.fires("s").await;
    assert_unique_identities(&fires);
    let minutes: Vec<&str> = fires.iter().map(|f| &f.nominal_local[11..16]).collect();
    assert_eq!(
        minutes,
        [
            "00:01", "00:02", "00:03", "00:04", "00:05", "00:06", "00:07", "00:08"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn two_schedulers_on_one_store_run_each_fire_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meridian.db");
    let hold = hold_time();
    let store = Store::open_sqlite(&path).await.unwrap();
    insert(
        &store,
        "s",
        "* * * * *",
        "UTC",
        json!({}),
        utc("2026-01-01T00:00:00Z"),
        None,
    )
    .await;
    let a = harness_on(store, "2026-01-01T00:00:30Z", Duration::ZERO, hold).await;
    let store = Store::open_sqlite(&path).await.unwrap();
    let b = harness_on(store, "2026-01-01T00:00:30Z", Duration::ZERO, hold_time()).await;
    for _ in 0..10 {
        tokio::time::advance(secs(30)).await;
        a.settle().await;
        b.settle().await;
    }
    let mut minutes: Vec<String> = a.seen().iter().chain(&b.seen()).map(Seen::hm).collect();
    minutes.sort();
    let want: Vec<String> = (1..=5).map(|m| format!("00:{m:02}")).collect();
    assert_eq!(minutes, want, "each fire ran on exactly one of the two");
    assert_unique_identities(&a.fires("s").await);
}

// --- misfire policies -------------------------------------------------------

/// A per-minute schedule whose last fire was 00:00 (or, with no cursor,
/// created at 00:00), a scheduler starting at 00:10:30 with a 300 s
/// window: 00:01 … 00:10 were missed, and only 00:06 … 00:10 are inside
/// the window. Runs until 00:12:30.
async fn misfire_case(policy: &str, fired_before: bool) -> (Vec<String>, Harness) {
    let hold = hold_time();
    let store = Store::open_memory().await.unwrap();
    let t0 = utc("2026-01-01T00:00:00Z");
    let misfire = json!({"misfire": {"window_s": 300, "policy": policy}});
    let cursor = fired_before.then_some(t0);
    insert(&store, "s", "* * * * *", "UTC", misfire, t0, cursor).await;
    let h = harness_on(store, "2026-01-01T00:10:30Z", Duration::ZERO, hold).await;
    h.run_until("2026-01-01T00:12:30Z", secs(30)).await;
    let runs = h
        .seen()
        .iter()
        .map(|s| {
            format!(
                "{} {:?} @{}",
                s.hm(),
                s.origin,
                s.started.format("%H:%M:%S")
            )
        })
        .collect();
    (runs, h)
}

#[tokio::test(start_paused = true)]
async fn misfire_all_runs_every_missed_fire_inside_the_window() {
    let (runs, h) = misfire_case("all", true).await;
    assert_eq!(
        runs,
        [
            "00:06 CatchUp @00:10:30",
            "00:07 CatchUp @00:10:30",
            "00:08 CatchUp @00:10:30",
            "00:09 CatchUp @00:10:30",
            "00:10 CatchUp @00:10:30",
            "00:11 Scheduled @00:11:00",
            "00:12 Scheduled @00:12:00",
        ]
    );
    let origins: Vec<String> = h
        .fires("s")
        .await
        .iter()
        .map(|f| f.origin.clone())
        .collect();
    assert_eq!(origins[..5], ["catch_up"; 5]);
    assert_eq!(origins[5..], ["scheduled"; 2]);
}

#[tokio::test(start_paused = true)]
async fn misfire_latest_runs_only_the_last_missed_fire() {
    let (runs, h) = misfire_case("latest", true).await;
    assert_eq!(
        runs,
        [
            "00:10 CatchUp @00:10:30",
            "00:11 Scheduled @00:11:00",
            "00:12 Scheduled @00:12:00"
        ]
    );
    // No row for the nine skipped fires.
    assert_eq!(h.fires("s").await.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn misfire_none_runs_nothing_missed_and_moves_the_cursor() {
    let hold = hold_time();
    let store = Store::open_memory().await.unwrap();
    let t0 = utc("2026-01-01T00:00:00Z");
    let misfire = json!({"misfire": {"window_s": 300, "policy": "none"}});
    insert(&store, "s", "* * * * *", "UTC", misfire, t0, Some(t0)).await;
    let h = harness_on(store, "2026-01-01T00:10:30Z", Duration::ZERO, hold).await;
    // The cursor is past the missed fires before anything fires.
    assert_eq!(
        h.cursor("s").await,
        Some(utc("2026-01-01T00:10:30Z") - TimeDelta::microseconds(1))
    );
    assert!(h.seen().is_empty());
    h.run_until("2026-01-01T00:12:30Z", secs(30)).await;
    let minutes: Vec<String> = h.seen().iter().map(Seen::hm).collect();
    assert_eq!(minutes, ["00:11", "00:12"]);
    assert!(h.fires("s").await.iter().all(|f| f.origin == "scheduled"));
}

#[tokio::test(start_paused = true)]
async fn a_schedule_that_never_fired_catches_up_from_its_creation() {
    let (runs, _h) = misfire_case("all", false).await;
    // Created at 00:00: the same missed fires, the same window.
    assert_eq!(runs.len(), 7);
    assert_eq!(runs[0], "00:06 CatchUp @00:10:30");
}

// --- overlap policies -------------------------------------------------------

/// A per-minute schedule whose runs take 130 s (over two intervals), from
/// 00:00:30 to 00:07:40 in 10 s steps. Returns the runs as
/// `nominal@started` and the stored fires as `nominal outcome`.
async fn overlap_case(policy: &str) -> (Vec<String>, Vec<String>, Harness) {
    let h = harness("2026-01-01T00:00:30Z", secs(130)).await;
    h.add("s", "* * * * *", "UTC", json!({"overlap": policy}))
        .await;
    h.run_until("2026-01-01T00:07:40Z", secs(10)).await;
    let starts = h.starts();
    let outcomes = h.outcomes("s").await;
    (starts, outcomes, h)
}

#[tokio::test(start_paused = true)]
async fn overlap_allow_runs_alongside() {
    let (starts, outcomes, h) = overlap_case("allow").await;
    let want: Vec<String> = (1..=7).map(|m| format!("00:0{m}@00:0{m}:00")).collect();
    assert_eq!(starts, want);
    assert!(outcomes.iter().all(|o| o.ends_with("enqueued")));
    assert_eq!(h.probe.max.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn overlap_skip_drops_fires_while_a_run_is_active() {
    let (starts, outcomes, _h) = overlap_case("skip").await;
    assert_eq!(
        starts,
        ["00:01@00:01:00", "00:04@00:04:00", "00:07@00:07:00"]
    );
    assert_eq!(
        outcomes,
        [
            "00:01 enqueued",
            "00:02 skipped",
            "00:03 skipped",
            "00:04 enqueued",
            "00:05 skipped",
            "00:06 skipped",
            "00:07 enqueued",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn overlap_buffer_one_keeps_one_pending_fire() {
    let (starts, outcomes, _h) = overlap_case("buffer_one").await;
    // 00:02 waits for 00:01 (ends 00:03:10); 00:03 finds the buffer full.
    assert_eq!(
        starts,
        [
            "00:01@00:01:00",
            "00:02@00:03:10",
            "00:04@00:05:20",
            "00:06@00:07:30"
        ]
    );
    assert_eq!(
        outcomes,
        [
            "00:01 enqueued",
            "00:02 buffered",
            "00:03 skipped",
            "00:04 buffered",
            "00:05 skipped",
            "00:06 buffered",
            "00:07 skipped",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn overlap_buffer_all_runs_every_fire_in_turn() {
    let (starts, outcomes, h) = overlap_case("buffer_all").await;
    assert_eq!(
        starts,
        [
            "00:01@00:01:00",
            "00:02@00:03:10",
            "00:03@00:05:20",
            "00:04@00:07:30"
        ]
    );
    assert_eq!(outcomes[0], "00:01 enqueued");
    assert!(outcomes[1..].iter().all(|o| o.ends_with("buffered")));
    assert_eq!(outcomes.len(), 7);
    assert_eq!(h.probe.max.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn overlap_cancel_other_aborts_the_running_run() {
    let (starts, outcomes, h) = overlap_case("cancel_other").await;
    let want: Vec<String> = (1..=7).map(|m| format!("00:0{m}@00:0{m}:00")).collect();
    assert_eq!(starts, want);
    assert!(outcomes.iter().all(|o| o.ends_with("enqueued")));
    let seen = h.seen();
    let ended = h.ended();
    // Runs 1 to 6 were each aborted by the next fire; run 7 is running.
    let aborted: Vec<&str> = ended
        .iter()
        .filter(|(_, outcome)| *outcome == RunOutcome::Aborted)
        .map(|(id, _)| id.as_str())
        .collect();
    let first_six: Vec<&str> = seen[..6].iter().map(|s| s.run_id.as_str()).collect();
    assert_eq!(aborted, first_six);
    assert_eq!(ended.len(), 6);
    assert_eq!(h.probe.max.load(Ordering::SeqCst), 1);
}

// --- commands -------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn pause_stops_firing_and_resume_does_not_catch_up() {
    let h = harness("2026-01-01T00:00:30Z", Duration::ZERO).await;
    let misfire = json!({"misfire": {"window_s": 3600, "policy": "all"}});
    h.add("s", "* * * * *", "UTC", misfire).await;
    h.run_until("2026-01-01T00:02:30Z", secs(30)).await;

    h.sched.pause("s").await.unwrap();
    assert!(!h.store.get_schedule("s").await.unwrap().unwrap().enabled);
    assert_eq!(h.sched.next_fire("s").await.unwrap(), None);
    h.run_until("2026-01-01T00:06:30Z", secs(30)).await;
    assert_eq!(h.seen().len(), 2);

    let next = h.sched.resume("s").await.unwrap();
    assert_eq!(next, Some(utc("2026-01-01T00:07:00Z")));
    assert!(h.store.get_schedule("s").await.unwrap().unwrap().enabled);
    assert_eq!(
        h.cursor("s").await,
        Some(utc("2026-01-01T00:06:30Z") - TimeDelta::microseconds(1))
    );
    h.run_until("2026-01-01T00:08:30Z", secs(30)).await;
    let minutes: Vec<String> = h.seen().iter().map(Seen::hm).collect();
    assert_eq!(minutes, ["00:01", "00:02", "00:07", "00:08"]);
    assert!(matches!(
        h.sched.pause("nope").await,
        Err(SchedulerError::Store(
            crate::store::StoreError::NotFound { .. }
        ))
    ));
}

#[tokio::test(start_paused = true)]
async fn reload_picks_up_a_changed_definition_and_remove_stops_it() {
    let h = harness("2026-01-01T00:00:30Z", Duration::ZERO).await;
    h.add("s", "* * * * *", "UTC", json!({})).await;
    h.run_until("2026-01-01T00:01:30Z", secs(30)).await;
    let now = h.clock.now().timestamp_micros();
    let row = def("s", "*/5 * * * *", "UTC", json!({})).to_row(now, now, None);
    h.store.update_schedule(&row).await.unwrap();
    let next = h.sched.reload("s").await.unwrap();
    assert_eq!(next, Some(utc("2026-01-01T00:05:00Z")));
    h.run_until("2026-01-01T00:10:30Z", secs(30)).await;
    let minutes: Vec<String> = h.seen().iter().map(Seen::hm).collect();
    assert_eq!(minutes, ["00:01", "00:05", "00:10"]);

    assert!(h.sched.remove("s").await.unwrap());
    h.run_until("2026-01-01T00:20:30Z", secs(60)).await;
    assert_eq!(h.seen().len(), 3);
    assert!(!h.sched.remove("s").await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn trigger_now_queues_a_manual_run_that_counts_as_active() {
    let h = harness("2026-01-01T00:00:30Z", secs(45)).await;
    h.add("s", "* * * * *", "UTC", json!({"overlap": "skip"}))
        .await;
    let run_id = h.sched.trigger_now("s").await.unwrap();
    h.settle().await;
    let seen = h.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].run_id, run_id);
    assert_eq!(seen[0].origin, Origin::Manual);
    assert_eq!(seen[0].fire, None);
    assert!(h.fires("s").await.is_empty(), "a manual run has no fire");

    // Still running at 00:01 (until 00:01:15): the fire is skipped.
    h.run_until("2026-01-01T00:02:30Z", secs(15)).await;
    assert_eq!(h.outcomes("s").await, ["00:01 skipped", "00:02 enqueued"]);

    // A paused schedule can be run by hand too.
    h.sched.pause("s").await.unwrap();
    h.sched.trigger_now("s").await.unwrap();
    assert!(matches!(
        h.sched.trigger_now("nope").await,
        Err(SchedulerError::NotFound(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn backfill_records_and_runs_each_fire_once() {
    let h = harness("2026-01-02T00:30:00Z", Duration::ZERO).await;
    h.add("s", "0 * * * *", "UTC", json!({"overlap": "skip"}))
        .await;
    let report = h
        .sched
        .backfill(
            "s",
            utc("2026-01-01T10:00:00Z"),
            utc("2026-01-01T14:00:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(
        (report.fires, report.already_recorded, report.run_ids.len()),
        (5, 0, 5)
    );
    h.settle().await;
    let seen = h.seen();
    let hours: Vec<String> = seen.iter().map(Seen::hm).collect();
    assert_eq!(hours, ["10:00", "11:00", "12:00", "13:00", "14:00"]);
    assert!(seen.iter().all(|s| s.origin == Origin::Backfill));
    // Backfill ignores the skip policy among its own fires, and does not
    // move the cursor.
    assert_eq!(h.cursor("s").await, None);

    // Overlapping range: 12:00 … 14:00 are already stored.
    let report = h
        .sched
        .backfill(
            "s",
            utc("2026-01-01T12:00:00Z"),
            utc("2026-01-01T15:30:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(
        (report.fires, report.already_recorded, report.run_ids.len()),
        (4, 3, 1)
    );
    h.settle().await;
    let hours: Vec<String> = h.seen().iter().map(Seen::hm).collect();
    assert_eq!(
        hours,
        ["10:00", "11:00", "12:00", "13:00", "14:00", "15:00"]
    );
    let fires = h.fires("s").await;
    assert_eq!(fires.len(), 6);
    assert_unique_identities(&fires);
    assert!(fires.iter().all(|f| f.origin == "backfill"));

    // Refused: the future, a reversed range, too many fires.
    let future = h.sched.backfill(
        "s",
        utc("2026-01-01T00:00:00Z"),
        utc("2026-01-03T00:00:00Z"),
    );
    assert!(matches!(
        future.await,
        Err(SchedulerError::BackfillRange(_))
    ));
    let reversed = h.sched.backfill(
        "s",
        utc("2026-01-01T02:00:00Z"),
        utc("2026-01-01T01:00:00Z"),
    );
    assert!(matches!(
        reversed.await,
        Err(SchedulerError::BackfillRange(_))
    ));
    h.add("minutely", "* * * * *", "UTC", json!({})).await;
    let big = h.sched.backfill(
        "minutely",
        utc("2025-12-20T00:00:00Z"),
        utc("2026-01-01T00:00:00Z"),
    );
    assert!(matches!(
        big.await,
        Err(SchedulerError::BackfillTooLarge { cap: 10_000, .. })
    ));
    assert!(h.fires("minutely").await.is_empty());
}

// --- DST ----------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn berlin_spring_forward_runs_the_missing_0230_once_at_0300() {
    let h = harness("2026-03-28T22:00:00Z", Duration::ZERO).await;
    h.add("s", "30 2 * * *", "Europe/Berlin", json!({})).await;
    h.run_until("2026-03-30T01:00:00Z", secs(900)).await;
    let seen = h.seen();
    let starts: Vec<String> = seen.iter().map(|s| s.started.to_rfc3339()).collect();
    // 2026-03-29 02:30 does not exist: 03:00+02:00 = 01:00Z; next day 02:30+02:00.
    assert_eq!(
        starts,
        ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]
    );
    let fires = h.fires("s").await;
    assert_eq!(fires[0].nominal_local, "2026-03-29T02:30:00");
    assert_eq!(fires[0].utc_offset_s, 7200);
}

#[tokio::test(start_paused = true)]
async fn new_york_fall_back_runs_an_interval_schedule_in_both_passes() {
    let h = harness("2026-11-01T04:30:00Z", Duration::ZERO).await;
    h.add("s", "*/30 1 * * *", "America/New_York", json!({}))
        .await;
    h.run_until("2026-11-01T07:30:00Z", secs(300)).await;
    let starts: Vec<String> = h.seen().iter().map(|s| s.started.to_rfc3339()).collect();
    assert_eq!(
        starts,
        [
            "2026-11-01T05:00:00+00:00",
            "2026-11-01T05:30:00+00:00",
            "2026-11-01T06:00:00+00:00",
            "2026-11-01T06:30:00+00:00",
        ]
    );
    let fires = h.fires("s").await;
    let ids: Vec<String> = fires
        .iter()
        .map(|f| format!("{} {}", &f.nominal_local[11..16], f.utc_offset_s))
        .collect();
    assert_eq!(
        ids,
        [
            "01:00 -14400",
            "01:30 -14400",
            "01:00 -18000",
            "01:30 -18000"
        ]
    );
    assert_unique_identities(&fires);
}

// --- scale --------------------------------------------------------------------

#[test]
fn a_schedule_costs_the_loop_under_one_kib() {
    let d = def(
        "nightly-report.eu-west.42",
        "0 30 2 * * MON-FRI",
        "Europe/Berlin",
        json!({}),
    );
    let first = d.schedule.next_after(utc("2026-01-01T00:00:00Z")).unwrap();
    let slot = slot::Slot::new(&d, first, None);
    // The map entry (key + slot, ~8/7 for the hash table's spare room and
    // control byte), one heap entry, and the slot's own allocations: the id
    // (shared by map key, slot and heap entry), the job id, the cron text.
    let map_entry = (size_of::<Arc<str>>() + size_of::<slot::Slot>() + 1) * 8 / 7;
    let heap_entry = size_of::<std::cmp::Reverse<(i64, u64, Arc<str>)>>();
    let owned = 16 + slot.id.len() + 16 + slot.job_id.len() + slot.schedule.cron.as_str().len();
    let total = map_entry + heap_entry + owned;
    println!("about {total} bytes per schedule");
    assert!(total < 1024, "{total} bytes per schedule");
}

#[tokio::test(start_paused = true)]
async fn a_schedule_deleted_without_remove_does_not_stall_the_others() {
    let h = harness("2026-01-01T00:00:30Z", Duration::ZERO).await;
    h.add("kept", "* * * * *", "UTC", json!({})).await;
    h.add("deleted", "* * * * *", "UTC", json!({})).await;
    h.store.delete_schedule("deleted").await.unwrap();
    // 00:01: the batch fails on the deleted schedule's foreign key; the
    // retry a second later goes without it.
    h.run_until("2026-01-01T00:02:30Z", secs(1)).await;
    let starts: Vec<String> = h
        .seen()
        .iter()
        .map(|s| format!("{} {}", s.schedule_id, s.started.format("%H:%M:%S")))
        .collect();
    assert_eq!(starts, ["kept 00:01:01", "kept 00:02:00"]);
    assert_eq!(h.sched.next_fire("deleted").await.unwrap(), None);
}
