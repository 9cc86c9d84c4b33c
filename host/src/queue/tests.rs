//! Queue tests under a paused tokio clock: every duration is virtual, so the
//! timings asserted here are exact and the tests run in milliseconds.

use super::*;
use chrono_tz::{America, Asia, Europe};
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;
use tokio::time::sleep;

const BERLIN: Tz = Europe::Berlin;
const TOKYO: Tz = Asia::Tokyo;
const NEW_YORK: Tz = America::New_York;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What a test run does.
#[derive(Debug, Clone, Copy)]
struct Work {
    ms: u64,
    how: How,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum How {
    Succeed,
    Fail,
    Panic,
    /// Succeeds, then `finished` panics: kills the worker.
    PanicInFinished,
}

fn work(ms: u64) -> Work {
    Work {
        ms,
        how: How::Succeed,
    }
}

/// What the handler saw.
struct Probe {
    /// Run ids with their zone, in the order the handler started them.
    starts: Mutex<Vec<(String, Tz)>>,
    current: AtomicUsize,
    max: AtomicUsize,
    reports: mpsc::UnboundedSender<RunReport>,
}

struct Handler(Arc<Probe>);

impl RunHandler<Work> for Handler {
    async fn handle(&self, run: QueuedRun<Work>) -> RunOutcome {
        let probe = &self.0;
        probe
            .starts
            .lock()
            .unwrap()
            .push((run.run_id.clone(), run.zone));
        let now = probe.current.fetch_add(1, Ordering::SeqCst) + 1;
        probe.max.fetch_max(now, Ordering::SeqCst);
        sleep(ms(run.payload.ms)).await;
        probe.current.fetch_sub(1, Ordering::SeqCst);
        match run.payload.how {
            How::Succeed | How::PanicInFinished => RunOutcome::Succeeded,
            How::Fail => RunOutcome::Failed("told to fail".into()),
            How::Panic => panic!("boom in {}", run.run_id),
        }
    }

    fn finished(&self, report: &RunReport) {
        self.0.reports.send(report.clone()).unwrap();
        if report.run.run_id.starts_with("die") {
            panic!("finished panics for {}", report.run.run_id);
        }
    }
}

struct Harness {
    queues: QueueManager<Work>,
    probe: Arc<Probe>,
    reports: mpsc::UnboundedReceiver<RunReport>,
}

fn config(cap: usize, min: usize, max: usize) -> QueueConfig {
    QueueConfig {
        min_workers: min,
        max_workers: max,
        idle_timeout: Duration::from_secs(10),
        global_max_concurrent: cap,
        zones: HashMap::new(),
    }
}

fn harness(config: QueueConfig) -> Harness {
    let (tx, reports) = mpsc::unbounded_channel();
    let probe = Arc::new(Probe {
        starts: Mutex::new(Vec::new()),
        current: AtomicUsize::new(0),
        max: AtomicUsize::new(0),
        reports: tx,
    });
    let queues = QueueManager::new(config, Handler(Arc::clone(&probe))).unwrap();
    Harness {
        queues,
        probe,
        reports,
    }
}

impl Harness {
    fn submit(&self, id: &str, zone: Tz, priority: i32, work: Work) {
        self.queues
            .submit(QueuedRun::new(id, "job", zone, priority, work))
            .unwrap();
    }

    async fn reports(&mut self, n: usize) -> Vec<RunReport> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.reports.recv().await.unwrap());
        }
        out
    }

    fn started(&self) -> Vec<String> {
        let starts = self.probe.starts.lock().unwrap();
        starts.iter().map(|(id, _)| id.clone()).collect()
    }

    fn max_concurrent(&self) -> usize {
        self.probe.max.load(Ordering::SeqCst)
    }

    fn stats(&self, zone: Tz) -> QueueStats {
        self.queues
            .stats()
            .into_iter()
            .find(|s| s.zone == zone.name())
            .unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn higher_priority_runs_start_first() {
    let mut h = harness(config(1, 1, 1));
    h.submit("blocker", BERLIN, 0, work(100));
    h.submit("low", BERLIN, 1, work(10));
    h.submit("high", BERLIN, 5, work(10));
    h.submit("negative", BERLIN, -3, work(10));
    h.submit("mid", BERLIN, 3, work(10));
    h.reports(5).await;
    assert_eq!(h.started(), ["blocker", "high", "mid", "low", "negative"]);
}

#[tokio::test(start_paused = true)]
async fn equal_priorities_start_in_submission_order() {
    let mut h = harness(config(1, 1, 1));
    h.submit("blocker", BERLIN, 9, work(100));
    let ids: Vec<String> = (0..20).map(|i| format!("run-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        // Interleave another priority to show FIFO holds inside a level.
        h.submit(id, BERLIN, 2, work(1));
        h.submit(&format!("other-{i}"), BERLIN, 1, work(1));
    }
    h.reports(41).await;
    let started = h.started();
    assert_eq!(started[1..21], ids[..]);
    assert!(started[21..].iter().all(|id| id.starts_with("other-")));
}

#[tokio::test(start_paused = true)]
async fn pool_grows_to_max_under_load_and_shrinks_to_min_when_idle() {
    let mut h = harness(config(16, 1, 4));
    h.submit("warm-up", BERLIN, 0, work(1));
    h.reports(1).await;
    let s = h.stats(BERLIN);
    assert_eq!((s.workers, s.idle_workers), (1, 1), "starts at min");

    for i in 0..20 {
        h.submit(&format!("r{i}"), BERLIN, 0, work(100));
    }
    sleep(ms(1)).await;
    let s = h.stats(BERLIN);
    assert_eq!((s.workers, s.running, s.depth), (4, 4, 16), "grew to max");

    h.reports(20).await; // 5 rounds of 4: ends 500 ms later
    let s = h.stats(BERLIN);
    assert_eq!((s.workers, s.idle_workers, s.running), (4, 4, 0));
    assert_eq!(h.max_concurrent(), 4);

    sleep(Duration::from_secs(9)).await;
    assert_eq!(
        h.stats(BERLIN).workers,
        4,
        "idle for less than idle_timeout"
    );
    sleep(Duration::from_secs(2)).await;
    let s = h.stats(BERLIN);
    assert_eq!((s.workers, s.idle_workers), (1, 1), "shrank to min");

    // And grows again.
    for i in 0..8 {
        h.submit(&format!("again{i}"), BERLIN, 0, work(100));
    }
    sleep(ms(1)).await;
    assert_eq!(h.stats(BERLIN).workers, 4);
}

#[tokio::test(start_paused = true)]
async fn global_cap_is_never_exceeded() {
    let mut h = harness(config(3, 0, 4));
    let zones = [BERLIN, TOKYO, NEW_YORK, Europe::London, Asia::Kolkata];
    let mut n = 0;
    for round in 0..20u64 {
        for zone in zones {
            h.submit(&format!("{n}"), zone, 0, work(10 + (round * 7 + n) % 41));
            n += 1;
        }
    }
    sleep(ms(1)).await;
    let running: usize = h.queues.stats().iter().map(|s| s.running).sum();
    assert_eq!(running, 3);
    let reports = h.reports(n as usize).await;
    assert!(reports.iter().all(|r| r.outcome.is_success()));
    assert_eq!(h.max_concurrent(), 3);
}

/// The acceptance test for fairness: see "The fairness bound" in the module
/// docs. Berlin's 10,000 runs of D = 100 ms saturate a global cap of 8; a
/// Tokyo run submitted at any moment must start within D, before any Berlin
/// run that was waiting, and every run must still run exactly once.
#[tokio::test(start_paused = true)]
async fn fairness_burst_in_one_zone_does_not_starve_another() {
    const BURST: usize = 10_000;
    const D: Duration = Duration::from_millis(100);
    let mut h = harness(config(8, 1, 16));
    for i in 0..BURST {
        h.submit(&format!("berlin-{i}"), BERLIN, 0, work(100));
    }
    let mut seen = HashSet::new();
    // Different offsets into Berlin's 100 ms rhythm.
    let pauses = [1_050, 2_317, 5_001, 7_499, 20, 99];
    for (k, pause) in pauses.iter().enumerate() {
        sleep(ms(*pause)).await;
        let tokyo = format!("tokyo-{k}");
        let started_before = h.started().len();
        let submitted_at = Instant::now();
        h.submit(&tokyo, TOKYO, 0, work(100));
        let report = loop {
            let report = h.reports.recv().await.unwrap();
            assert!(seen.insert(report.run.run_id.clone()));
            if report.run.run_id == tokyo {
                break report;
            }
        };
        assert!(
            report.waited <= D,
            "{tokyo} waited {:?}, more than the bound {D:?}",
            report.waited
        );
        assert_eq!(report.run.enqueued_at, submitted_at);
        // The very next start after its submission was Tokyo's.
        assert_eq!(h.started()[started_before], tokyo);
        let berlin = h.stats(BERLIN);
        assert!(berlin.depth > BURST / 2, "Berlin still deeply backlogged");
        assert_eq!(berlin.running, 8);
    }
    // Nothing lost or run twice, and the cap held throughout.
    let rest = h.reports(BURST + pauses.len() - seen.len()).await;
    for report in &rest {
        assert!(seen.insert(report.run.run_id.clone()));
    }
    assert_eq!(seen.len(), BURST + pauses.len());
    assert_eq!(h.max_concurrent(), 8);
    let berlin = h.stats(BERLIN);
    assert_eq!((berlin.succeeded, berlin.depth), (BURST as u64, 0));
}

#[tokio::test(start_paused = true)]
async fn backlogged_zones_take_turns() {
    let mut h = harness(config(1, 1, 4));
    for i in 0..4 {
        h.submit(&format!("b{i}"), BERLIN, 0, work(10));
        h.submit(&format!("t{i}"), TOKYO, 0, work(10));
        h.submit(&format!("n{i}"), NEW_YORK, 0, work(10));
    }
    h.reports(12).await;
    let zones: String = h
        .started()
        .iter()
        .map(|id| id.chars().next().unwrap())
        .collect();
    assert_eq!(zones, "btnbtnbtnbtn");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_run_is_reported_and_the_pool_keeps_its_size() {
    let mut h = harness(config(4, 2, 2));
    h.submit("ok-1", BERLIN, 0, work(10));
    h.submit(
        "boom",
        BERLIN,
        0,
        Work {
            ms: 10,
            how: How::Panic,
        },
    );
    h.submit("ok-2", BERLIN, 0, work(10));
    let reports = h.reports(3).await;
    let boom = reports.iter().find(|r| r.run.run_id == "boom").unwrap();
    assert_eq!(boom.outcome, RunOutcome::Panicked("boom in boom".into()));
    assert_eq!(boom.ran, ms(10));
    let s = h.stats(BERLIN);
    assert_eq!((s.workers, s.idle_workers, s.running), (2, 2, 0));
    assert_eq!((s.succeeded, s.failed, s.panicked), (2, 1, 1));

    for i in 0..4 {
        h.submit(&format!("after-{i}"), BERLIN, 0, work(10));
    }
    let reports = h.reports(4).await;
    assert!(reports.iter().all(|r| r.outcome.is_success()));
    assert_eq!(h.stats(BERLIN).workers, 2);
    assert_eq!(h.max_concurrent(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_dies_is_replaced() {
    let mut h = harness(config(4, 2, 2));
    let dying = Work {
        ms: 10,
        how: How::PanicInFinished,
    };
    h.submit("die-1", BERLIN, 0, dying);
    h.submit("die-2", BERLIN, 0, dying);
    h.reports(2).await;
    sleep(ms(1)).await;
    let s = h.stats(BERLIN);
    assert_eq!((s.workers, s.idle_workers), (2, 2), "both replaced");
    assert_eq!(s.succeeded, 2);

    for i in 0..6 {
        h.submit(&format!("after-{i}"), BERLIN, 0, work(10));
    }
    let reports = h.reports(6).await;
    assert!(reports.iter().all(|r| r.outcome.is_success()));
    assert_eq!(h.max_concurrent(), 2);
    assert_eq!(h.stats(BERLIN).workers, 2);
}

#[tokio::test(start_paused = true)]
async fn abort_running_ends_a_running_run_as_aborted() {
    let mut h = harness(config(1, 1, 1));
    h.submit("long", BERLIN, 0, work(10_000));
    h.submit("next", BERLIN, 0, work(10));
    tokio::task::yield_now().await;
    assert_eq!(
        h.queues.abort_running("next").unwrap_err(),
        QueueError::NotRunning("next".into())
    );
    assert_eq!(
        h.queues.abort_running("nope").unwrap_err(),
        QueueError::UnknownRun("nope".into())
    );
    h.queues.abort_running("long").unwrap();
    let reports = h.reports(2).await;
    assert_eq!(reports[0].run.run_id, "long");
    assert_eq!(reports[0].outcome, RunOutcome::Aborted);
    assert_eq!(reports[1].run.run_id, "next");
    assert_eq!(reports[1].outcome, RunOutcome::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn cancel_takes_a_queued_run_out() {
    let mut h = harness(config(1, 1, 1));
    h.submit("running", BERLIN, 0, work(100));
    h.submit("a", BERLIN, 0, work(10));
    h.submit("b", BERLIN, 0, work(77));
    h.submit("c", BERLIN, 0, work(10));

    let b = h.queues.cancel("b").unwrap();
    assert_eq!((b.run_id.as_str(), b.payload.ms), ("b", 77));
    assert_eq!(
        h.queues.cancel("b").unwrap_err(),
        QueueError::UnknownRun("b".into())
    );
    assert_eq!(
        h.queues.cancel("running").unwrap_err(),
        QueueError::Running("running".into())
    );
    assert_eq!(
        h.queues.cancel("nope").unwrap_err(),
        QueueError::UnknownRun("nope".into())
    );

    h.reports(3).await;
    assert_eq!(h.started(), ["running", "a", "c"]);
    let s = h.stats(BERLIN);
    assert_eq!(
        (s.submitted, s.succeeded, s.cancelled, s.depth),
        (4, 3, 1, 0)
    );

    // A cancelled id may be submitted again.
    h.submit("b", BERLIN, 0, work(1));
    assert_eq!(h.reports(1).await[0].run.run_id, "b");
}

#[tokio::test(start_paused = true)]
async fn shutdown_returns_queued_runs_and_lets_running_ones_finish() {
    let mut h = harness(config(2, 1, 2));
    h.submit("run-1", BERLIN, 0, work(100));
    h.submit("run-2", TOKYO, 0, work(100));
    h.submit("q-low", BERLIN, 0, work(100));
    h.submit("q-high", BERLIN, 5, work(100));
    h.submit("q-tokyo", TOKYO, 0, work(100));
    sleep(ms(10)).await;

    let begun = Instant::now();
    let left = h.queues.shutdown(Duration::from_secs(1)).await;
    assert_eq!(
        begun.elapsed(),
        ms(90),
        "returned as the running runs ended"
    );
    let ids: Vec<&str> = left.queued.iter().map(|r| r.run_id.as_str()).collect();
    // Per zone, by zone name; in start order within a zone.
    assert_eq!(ids, ["q-tokyo", "q-high", "q-low"]);
    assert!(left.aborted.is_empty());
    let reports = h.reports(2).await;
    assert!(reports.iter().all(|r| r.outcome.is_success()));

    let refused = h
        .queues
        .submit(QueuedRun::new("late", "job", BERLIN, 0, work(1)))
        .unwrap_err();
    assert_eq!(refused.reason, QueueError::ShuttingDown);
    assert_eq!(refused.run.run_id, "late");

    sleep(ms(1)).await;
    assert!(
        h.queues
            .stats()
            .iter()
            .all(|s| s.workers == 0 && s.depth == 0)
    );
    assert!(h.queues.shutdown(Duration::ZERO).await.queued.is_empty());
    assert_eq!(h.started(), ["run-1", "run-2"]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_aborts_runs_still_running_after_the_grace_period() {
    let mut h = harness(config(2, 1, 2));
    h.submit("long", BERLIN, 0, work(10_000));
    h.submit("short", BERLIN, 0, work(50));
    let begun = Instant::now();
    let left = h.queues.shutdown(Duration::from_secs(1)).await;
    assert_eq!(begun.elapsed(), Duration::from_secs(1));
    assert_eq!(left.aborted, ["long"]);
    let mut reports = h.reports(2).await;
    reports.sort_by(|a, b| a.run.run_id.cmp(&b.run.run_id));
    assert_eq!(reports[0].outcome, RunOutcome::Aborted);
    assert_eq!(reports[1].outcome, RunOutcome::Succeeded);
    let s = h.stats(BERLIN);
    assert_eq!((s.running, s.succeeded, s.failed), (0, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn stats_report_depth_running_oldest_wait_throughput_and_latency() {
    let mut h = harness(config(1, 1, 1));
    h.submit("a", BERLIN, 0, work(100));
    h.submit("low", BERLIN, 0, work(100));
    sleep(ms(20)).await;
    h.submit("high", BERLIN, 9, work(100));
    sleep(ms(30)).await;

    let s = h.stats(BERLIN);
    assert_eq!(s.zone, "Europe/Berlin");
    assert_eq!((s.depth, s.running, s.workers, s.submitted), (2, 1, 1, 3));
    // The oldest is the low-priority run, though "high" runs next.
    assert_eq!(s.oldest_wait_ms, Some(50.0));
    assert_eq!((s.wait_p50_ms, s.throughput_per_min), (Some(0.0), 0));

    h.reports(3).await; // a: waited 0; high: 80 ms; low: 200 ms
    let s = h.stats(BERLIN);
    assert_eq!((s.depth, s.running, s.oldest_wait_ms), (0, 0, None));
    assert_eq!((s.wait_p50_ms, s.wait_p99_ms), (Some(80.0), Some(200.0)));
    assert_eq!((s.succeeded, s.failed, s.throughput_per_min), (3, 0, 3));

    let fail = Work {
        ms: 1,
        how: How::Fail,
    };
    h.submit("f", BERLIN, 0, fail);
    assert_eq!(
        h.reports(1).await[0].outcome,
        RunOutcome::Failed("told to fail".into())
    );
    let s = h.stats(BERLIN);
    assert_eq!((s.failed, s.panicked, s.throughput_per_min), (1, 0, 4));

    sleep(Duration::from_secs(61)).await;
    assert_eq!(h.stats(BERLIN).throughput_per_min, 0);

    let json = serde_json::to_value(h.queues.stats()).unwrap();
    assert_eq!(json[0]["zone"], "Europe/Berlin");
    assert_eq!(json[0]["oldest_wait_ms"], serde_json::Value::Null);
    assert_eq!(json[0]["wait_p99_ms"], 200.0);
}

#[tokio::test(start_paused = true)]
async fn queues_are_created_on_first_use_with_their_own_limits() {
    let mut cfg = config(8, 1, 4);
    cfg.zones.insert(
        TOKYO,
        ZoneLimits {
            min_workers: 3,
            max_workers: 5,
        },
    );
    let mut h = harness(cfg);
    assert!(h.queues.stats().is_empty());
    h.submit("t", TOKYO, 0, work(1));
    h.submit("b", BERLIN, 0, work(1));
    h.reports(2).await;
    let stats = h.queues.stats();
    let shape: Vec<_> = stats
        .iter()
        .map(|s| (s.zone.as_str(), s.workers, s.min_workers, s.max_workers))
        .collect();
    assert_eq!(shape, [("Asia/Tokyo", 3, 3, 5), ("Europe/Berlin", 1, 1, 4)]);
}

#[tokio::test(start_paused = true)]
async fn duplicate_run_ids_are_refused() {
    let mut h = harness(config(1, 1, 1));
    h.submit("x", BERLIN, 0, work(100));
    h.submit("y", BERLIN, 0, work(100));
    for id in ["x", "y"] {
        let err = h
            .queues
            .submit(QueuedRun::new(id, "job", TOKYO, 0, work(1)))
            .unwrap_err();
        assert_eq!(err.reason, QueueError::DuplicateRun(id.into()));
    }
    h.reports(2).await;
    h.submit("x", BERLIN, 0, work(1)); // finished ids are free again
    h.reports(1).await;
}

/// `submit_many` is `submit` run by run under one lock: the same order,
/// priorities and refusals, one result per run.
#[tokio::test(start_paused = true)]
async fn submit_many_queues_in_order_and_refuses_like_submit() {
    let mut h = harness(config(1, 1, 1));
    h.submit("blocker", BERLIN, 9, work(100));
    let runs = ["a", "b", "blocker", "c", "a", "urgent", "d"].map(|id| {
        let priority = if id == "urgent" { 5 } else { 0 };
        QueuedRun::new(id, "job", BERLIN, priority, work(1))
    });
    let results = h.queues.submit_many(runs);
    let refused: Vec<(usize, QueueError)> = results
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.err().map(|e| (i, e.reason)))
        .collect();
    assert_eq!(
        refused,
        [
            (2, QueueError::DuplicateRun("blocker".into())),
            (4, QueueError::DuplicateRun("a".into())),
        ]
    );
    h.reports(6).await;
    assert_eq!(h.started(), ["blocker", "urgent", "a", "b", "c", "d"]);
    assert_eq!(h.stats(BERLIN).submitted, 6);
}

#[tokio::test]
async fn invalid_configuration_is_refused() {
    let handler = |_: QueuedRun<()>| async { RunOutcome::Succeeded };
    for (cfg, fragment) in [
        (config(0, 1, 1), "global_max_concurrent"),
        (
            config(1, 2, 1),
            "defaults: min_workers (2) exceeds max_workers (1)",
        ),
        (config(1, 0, 0), "max_workers must be at least 1"),
    ] {
        let err = QueueManager::new(cfg, handler).unwrap_err();
        assert!(err.to_string().contains(fragment), "{err}");
    }
    let mut cfg = config(1, 1, 1);
    cfg.zones.insert(
        TOKYO,
        ZoneLimits {
            min_workers: 4,
            max_workers: 2,
        },
    );
    let err = QueueManager::new(cfg, handler).unwrap_err();
    assert!(err.to_string().contains("Asia/Tokyo"), "{err}");
}

#[test]
fn creating_a_manager_outside_a_runtime_is_an_error() {
    let handler = |_: QueuedRun<()>| async { RunOutcome::Succeeded };
    let err = QueueManager::new(QueueConfig::default(), handler).unwrap_err();
    assert_eq!(err, QueueError::NoRuntime);
}

#[tokio::test(start_paused = true)]
async fn a_closure_is_a_handler() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let queues = QueueManager::new(QueueConfig::default(), move |run: QueuedRun<u32>| {
        let tx = tx.clone();
        async move {
            tx.send(run.payload * 2).unwrap();
            RunOutcome::Succeeded
        }
    })
    .unwrap();
    queues
        .submit(QueuedRun::new("r", "j", BERLIN, 0, 21))
        .unwrap();
    assert_eq!(rx.recv().await, Some(42));
}
