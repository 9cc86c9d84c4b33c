//! The job engine's cost, side by side in one run.
//!
//! Part 1, per step (criterion group `engine`; a 2-worker multi-thread tokio
//! runtime, criterion driving each sample with `block_on`; the store a
//! temp-file SQLite opened with `Store::open_sqlite`: WAL, `synchronous =
//! NORMAL`, 8 connections; one execution at a time):
//! - `execute_trivial`: `Runtime::execute` of the `trivial` fixture alone
//!   (the plugin's own time, as in the dispatch bench);
//! - `run_1_step`: `Engine::run` of a stored one-step job whose step is
//!   `trivial`, with all its store reads and writes;
//! - `run_10_steps`: the same with ten `trivial` steps.
//!
//! The queued execution rows are inserted before each timed batch
//! (`iter_custom`: `Store::insert_executions`, one transaction per batch,
//! not timed), so `run_*` time `Engine::run` alone. After criterion, the
//! three are measured again in interleaved rounds (medians of 7 rounds) to
//! print the overheads `run_1_step − execute_trivial`,
//! `run_10_steps / 10 − execute_trivial` and the marginal step
//! `(run_10_steps − run_1_step) / 9 − execute_trivial`, beside the store
//! calls timed alone in the same rounds: one step's two writes, and the
//! four calls made once per execution.
//!
//! Part 2, throughput (a plain table after criterion): N (default 20,000)
//! one-step no-op executions submitted through `Executions::submit` by 8
//! tasks (real queues, `QueueConfig::default()`: global cap 32, at most 16
//! runs per zone), on one job in one zone and on four jobs in four zones;
//! wall time from the first submit until every execution is final in the
//! store. Completion is read from the queues' counters (the handler returns
//! after `finish_execution` is written), polled every 10 ms; at the end the
//! store is checked (`list_executions`, not timed). Beside them, the raw
//! SQLite rate of the same rows: per execution the store calls the engine
//! writes (`insert_execution`, `start_execution`, `start_attempt`,
//! `finish_attempt`, `finish_execution`), no engine, no queue, no wasm, on
//! 32 tasks; and with the three reads the path also makes. Then variants at
//! N/4 that say where the time goes: attempts on a runtime of their own (as
//! `meridian serve` runs them), executions stored before the service starts
//! (no `submit`), one submitting task, an in-memory store, one raw task.
//!
//! Run: `cargo bench -p meridian-tests --bench engine`
//! Environment: `ENGINE_BENCH_N` (N), `ENGINE_BENCH_SUBMITTERS` (submitting
//! tasks, default 8), `ENGINE_BENCH_ONLY` (only the throughput rows whose
//! name contains it), `ENGINE_BENCH_SKIP_CRITERION=1` (throughput only).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::Criterion;
use meridian::engine::service::Executions;
use meridian::engine::{Cancel, Engine, ExecutionStatus, SystemTimer};
use meridian::queue::QueueConfig;
use meridian::runtime::Runtime;
use meridian::scheduler::{SchedulerConfig, SystemClock};
use meridian::store::{AttemptFinish, AttemptStart, ExecutionFilter, NewExecution, Store};
use meridian_tests::{TestRuntime, fixtures, invocation};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

const DEFAULT_N: usize = 20_000;
/// Tasks writing the raw sequences: the queues' global cap.
const RAW_TASKS: usize = 32;
const ZONES: [&str; 4] = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"];

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let meridian = rt.block_on(TestRuntime::new("", &[fixtures::TRIVIAL]));
    let skip_criterion = std::env::var("ENGINE_BENCH_SKIP_CRITERION").is_ok_and(|v| v == "1");
    if !skip_criterion {
        per_step(&rt, &meridian);
    }
    let n = std::env::var("ENGINE_BENCH_N")
        .ok()
        .map_or(DEFAULT_N, |s| s.parse().unwrap());
    rt.block_on(throughput(&meridian.runtime, n));
}

/// A job of `steps` trivial steps in `zone`, as the API would store it.
fn job(id: &str, zone: &str, steps: usize) -> Value {
    let steps: Vec<Value> = (0..steps)
        .map(|i| json!({"id": format!("s{i}"), "type": "trivial", "config": {}}))
        .collect();
    json!({"id": id, "name": id, "timezone": zone, "steps": steps})
}

async fn put_job(store: &Store, job: &Value) {
    let parsed = meridian::model::job_from_value(job.clone()).unwrap();
    store
        .put_job(
            &parsed.id,
            &serde_json::to_string(&parsed).unwrap(),
            now_us(),
        )
        .await
        .unwrap();
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Ids that sort by creation, 36 characters like the UUID v7 text the
/// service uses.
fn next_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Relaxed);
    format!("01900000-0000-7000-8000-{n:012x}")
}

/// The row `Executions::submit` stores for a job without parameters.
fn new_execution(id: String, job_id: &str, zone: &str) -> NewExecution {
    let now = now_us();
    NewExecution {
        id,
        job_id: job_id.to_owned(),
        trigger: "api".into(),
        schedule_id: None,
        fire_nominal_local: None,
        fire_utc_offset_s: None,
        timezone: zone.to_owned(),
        priority: 0,
        params: "{}".into(),
        scheduled_at_us: Some(now),
        queued_at_us: now,
    }
}

/// Queued executions of `job_id`, inserted in one transaction.
async fn queue_batch(store: &Store, job_id: &str, n: usize) -> Vec<String> {
    let rows: Vec<NewExecution> = (0..n)
        .map(|_| new_execution(next_id(), job_id, "UTC"))
        .collect();
    store.insert_executions(&rows).await.unwrap();
    rows.into_iter().map(|r| r.id).collect()
}

async fn run_all(engine: &Engine, ids: &[String], steps: usize) {
    for id in ids {
        let report = engine.run(id, Cancel::new()).await.unwrap();
        assert_eq!(report.status, ExecutionStatus::Succeeded);
        assert_eq!(report.steps.len(), steps);
    }
}

async fn execute_n(runtime: &Runtime, n: u64) {
    let plugin = runtime.plugin("trivial").unwrap();
    for _ in 0..n {
        let run = runtime.execute(&plugin, invocation(json!({}))).await;
        assert!(run.result.is_ok());
    }
}

// ---------------------------------------------------------------------------
// Part 1: per step.

fn per_step(rt: &tokio::runtime::Runtime, meridian: &TestRuntime) {
    let dir = tempfile::tempdir().unwrap();
    let (store, engine) = rt.block_on(async {
        let store = Store::open_sqlite(&dir.path().join("meridian.db"))
            .await
            .unwrap();
        put_job(&store, &job("one", "UTC", 1)).await;
        put_job(&store, &job("ten", "UTC", 10)).await;
        let engine = Engine::new(
            meridian.runtime.clone(),
            store.clone(),
            Arc::new(SystemTimer),
        );
        (store, engine)
    });
    let runtime = &meridian.runtime;

    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut group = c.benchmark_group("engine");
    group.bench_function("execute_trivial", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let start = Instant::now();
            execute_n(runtime, iters).await;
            start.elapsed()
        })
    });
    for (name, job_id, steps) in [("run_1_step", "one", 1), ("run_10_steps", "ten", 10)] {
        let (store, engine) = (&store, &engine);
        group.bench_function(name, |b| {
            b.to_async(rt).iter_custom(|iters| async move {
                let ids = queue_batch(store, job_id, usize::try_from(iters).unwrap()).await;
                let start = Instant::now();
                run_all(engine, &ids, steps).await;
                start.elapsed()
            })
        });
    }
    group.finish();
    c.final_summary();

    // The same three again, interleaved, for the overhead figures, with
    // the store calls the engine makes timed alone, one after another, to
    // split the overhead: (d) one step's writes (`start_attempt`,
    // `finish_attempt`), (e) the calls made once per execution
    // (`get_execution`, `get_job`, `start_execution`, `finish_execution`).
    const ROUNDS: usize = 7;
    const PER_ROUND: usize = 200;
    let mut t: [Vec<f64>; 5] = Default::default();
    rt.block_on(async {
        for _ in 0..ROUNDS {
            let start = Instant::now();
            execute_n(runtime, PER_ROUND as u64).await;
            t[0].push(start.elapsed().as_secs_f64() / PER_ROUND as f64);
            let ids = queue_batch(&store, "one", PER_ROUND).await;
            let start = Instant::now();
            run_all(&engine, &ids, 1).await;
            t[1].push(start.elapsed().as_secs_f64() / PER_ROUND as f64);
            let ids = queue_batch(&store, "ten", PER_ROUND / 5).await;
            let start = Instant::now();
            run_all(&engine, &ids, 10).await;
            t[2].push(start.elapsed().as_secs_f64() / (PER_ROUND / 5) as f64);
            // (d): ten steps' writes on each of PER_ROUND / 10 running
            // executions.
            let ids = queue_batch(&store, "ten", PER_ROUND / 10).await;
            for id in &ids {
                assert!(store.start_execution(id, 1, 0, now_us()).await.unwrap());
            }
            let start = Instant::now();
            for id in &ids {
                for seq in 1..=10 {
                    step_writes(&store, id, seq).await;
                }
            }
            t[3].push(start.elapsed().as_secs_f64() / PER_ROUND as f64);
            // (e)
            let ids = queue_batch(&store, "one", PER_ROUND).await;
            let start = Instant::now();
            for id in &ids {
                store.get_execution(id).await.unwrap().unwrap();
                store.get_job("one").await.unwrap().unwrap();
                assert!(store.start_execution(id, 1, 0, now_us()).await.unwrap());
                assert!(
                    store
                        .finish_execution(id, "succeeded", None, 1, 1, now_us())
                        .await
                        .unwrap()
                );
            }
            t[4].push(start.elapsed().as_secs_f64() / PER_ROUND as f64);
        }
    });
    let [a, b, c10, d, e] = t.map(median);
    let us = |s: f64| format!("{:>8.1} µs", s * 1e6);
    let times_a = |s: f64| format!("{:>5.1} × a", s / a);
    let marginal = (c10 - b) / 9.0;
    println!();
    println!(
        "engine overhead per step: {ROUNDS} interleaved rounds, medians; one execution at a time"
    );
    println!("  (a) execute_trivial                      {}", us(a));
    println!("  (b) run_1_step                           {}", us(b));
    println!(
        "  (c) run_10_steps                         {}   ({} per step)",
        us(c10),
        us(c10 / 10.0)
    );
    println!(
        "  overhead b − a                           {}   {}",
        us(b - a),
        times_a(b - a)
    );
    println!(
        "  overhead c/10 − a                        {}   {}",
        us(c10 / 10.0 - a),
        times_a(c10 / 10.0 - a)
    );
    println!(
        "  marginal step (c − b)/9 − a              {}   {}",
        us(marginal - a),
        times_a(marginal - a)
    );
    println!(
        "  fixed per execution b − (c − b)/9        {}",
        us(b - marginal)
    );
    println!("split (store calls timed alone, same rounds)");
    println!("  (d) one step's 2 store writes            {}", us(d));
    println!("  (e) the 4 calls made once per execution  {}", us(e));
    println!(
        "  marginal step − a − d (engine's own)     {}",
        us(marginal - a - d)
    );
    println!(
        "  fixed − e (engine's own)                 {}",
        us(b - marginal - e)
    );
}

/// One step's writes: `start_attempt` and `finish_attempt`, as the engine
/// makes them for a trivial step.
async fn step_writes(store: &Store, id: &str, seq: i64) {
    let started = now_us();
    assert!(
        store
            .start_attempt(&AttemptStart {
                execution_id: id.to_owned(),
                seq,
                step_id: format!("s{}", seq - 1),
                step_type: "trivial".into(),
                attempt: 1,
                now_us: started,
                epoch: 1,
            })
            .await
            .unwrap()
    );
    let finished = now_us();
    assert!(
        store
            .finish_attempt(&AttemptFinish {
                execution_id: id.to_owned(),
                seq,
                attempt: 1,
                status: "succeeded".into(),
                now_us: finished,
                duration_us: finished - started,
                output: Some(r#"{"ok":true}"#.into()),
                exports: Some("{}".into()),
                error: None,
                logs: None,
                host_calls: 0,
                step_done: true,
                epoch: 1,
            })
            .await
            .unwrap()
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

// ---------------------------------------------------------------------------
// Part 2: throughput.

/// How a throughput run ended.
struct Rate {
    n: usize,
    wall: Duration,
    /// When the last submit returned (engine path only).
    submitted: Option<Duration>,
}

impl Rate {
    fn per_s(&self) -> f64 {
        self.n as f64 / self.wall.as_secs_f64()
    }
}

async fn file_store(dir: &tempfile::TempDir) -> Store {
    Store::open_sqlite(&dir.path().join("meridian.db"))
        .await
        .unwrap()
}

/// N one-step no-op executions through `Executions::submit`, the queues and
/// the engine, spread evenly over `zones` (one job per zone), submitted by
/// `submitters` tasks. With `prestored`, the N executions are stored `queued`
/// before the service starts (not timed) and its start-up recovery queues
/// them: the queues and the engine without `submit`. The time then runs
/// from just before `Executions::start`. With `steps`, attempts run on that
/// runtime, as `meridian serve` runs them.
async fn engine_path(
    runtime: &Arc<Runtime>,
    store: Store,
    zones: &[&str],
    n: usize,
    submitters: usize,
    prestored: bool,
    steps: Option<&tokio::runtime::Handle>,
) -> Rate {
    let jobs: Vec<String> = zones
        .iter()
        .map(|z| format!("noop-{}", z.replace('/', "-").to_lowercase()))
        .collect();
    for (id, zone) in jobs.iter().zip(zones) {
        put_job(&store, &job(id, zone, 1)).await;
    }
    let mut engine = Engine::new(runtime.clone(), store.clone(), Arc::new(SystemTimer));
    if let Some(steps) = steps {
        engine = engine.with_step_runtime(steps.clone());
    }
    let engine = Arc::new(engine);
    if prestored {
        let rows: Vec<NewExecution> = (0..n)
            .map(|i| new_execution(next_id(), &jobs[i % jobs.len()], zones[i % zones.len()]))
            .collect();
        for chunk in rows.chunks(1000) {
            store.insert_executions(chunk).await.unwrap();
        }
    }
    let start = Instant::now();
    let (executions, _) = Executions::start(
        engine,
        QueueConfig::default(),
        Arc::new(SystemClock),
        SchedulerConfig::default(),
    )
    .await
    .unwrap();
    let executions = Arc::new(executions);
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let params = Map::new();

    let start = if prestored { start } else { Instant::now() };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..if prestored { 0 } else { submitters } {
        let (executions, jobs, next, params) = (
            executions.clone(),
            jobs.clone(),
            next.clone(),
            params.clone(),
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= n {
                    break;
                }
                executions
                    .submit(&jobs[i % jobs.len()], &params, "api")
                    .await
                    .unwrap();
            }
        });
    }
    let mut submitted = None;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        tick.tick().await;
        while let Some(done) = tasks.try_join_next() {
            done.unwrap();
        }
        if !prestored && submitted.is_none() && tasks.is_empty() {
            submitted = Some(start.elapsed());
        }
        let ended: u64 = executions
            .queues()
            .stats()
            .iter()
            .map(|s| s.succeeded + s.failed)
            .sum();
        if ended >= n as u64 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "{ended} of {n} after 10 min"
        );
    }
    let wall = start.elapsed();
    let failed: u64 = executions.queues().stats().iter().map(|s| s.failed).sum();
    assert_eq!(failed, 0, "failed runs");
    let executions = Arc::into_inner(executions).unwrap();
    executions.shutdown().await;
    check_stored(&store, n).await;
    Rate { n, wall, submitted }
}

/// Every execution is stored `succeeded` (not timed).
async fn check_stored(store: &Store, n: usize) {
    let done = store
        .list_executions(&ExecutionFilter {
            status: Some("succeeded".into()),
            limit: i64::try_from(n).unwrap() + 1,
            ..ExecutionFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(done.len(), n, "executions stored as succeeded");
}

/// Which store calls one raw sequence makes.
#[derive(Clone, Copy, PartialEq)]
enum Sequence {
    /// The five writes.
    Writes,
    /// The five writes and the reads the service and the engine make
    /// (`get_job` at submit, `get_execution` and `get_job` at start): the
    /// engine path's store calls exactly.
    EngineCalls,
}

/// Cumulative time spent in each store call, over all tasks.
#[derive(Default)]
struct CallTimes([AtomicU64; 8]);

const CALLS: [&str; 8] = [
    "get_job (submit)",
    "insert_execution",
    "get_execution",
    "get_job (engine)",
    "start_execution",
    "start_attempt",
    "finish_attempt",
    "finish_execution",
];

impl CallTimes {
    fn add(&self, i: usize, since: Instant) -> Instant {
        let now = Instant::now();
        self.0[i].fetch_add(u64::try_from((now - since).as_nanos()).unwrap(), Relaxed);
        now
    }
}

/// One execution's store calls, as the engine path makes them.
async fn raw_sequence(store: &Store, job_id: &str, seq: Sequence, times: &CallTimes) {
    let full = seq == Sequence::EngineCalls;
    let mut t = Instant::now();
    if full {
        store.get_job(job_id).await.unwrap().unwrap();
        t = times.add(0, t);
    }
    let id = next_id();
    store
        .insert_execution(&new_execution(id.clone(), job_id, "UTC"))
        .await
        .unwrap();
    t = times.add(1, t);
    if full {
        store.get_execution(&id).await.unwrap().unwrap();
        t = times.add(2, t);
        store.get_job(job_id).await.unwrap().unwrap();
        t = times.add(3, t);
    }
    assert!(store.start_execution(&id, 1, 0, now_us()).await.unwrap());
    t = times.add(4, t);
    let started = now_us();
    assert!(
        store
            .start_attempt(&AttemptStart {
                execution_id: id.clone(),
                seq: 1,
                step_id: "s0".into(),
                step_type: "trivial".into(),
                attempt: 1,
                now_us: started,
                epoch: 1,
            })
            .await
            .unwrap()
    );
    t = times.add(5, t);
    let finished = now_us();
    assert!(
        store
            .finish_attempt(&AttemptFinish {
                execution_id: id.clone(),
                seq: 1,
                attempt: 1,
                status: "succeeded".into(),
                now_us: finished,
                duration_us: finished - started,
                output: Some(r#"{"ok":true}"#.into()),
                exports: Some("{}".into()),
                error: None,
                logs: None,
                host_calls: 0,
                step_done: true,
                epoch: 1,
            })
            .await
            .unwrap()
    );
    t = times.add(6, t);
    assert!(
        store
            .finish_execution(&id, "succeeded", None, 1, 1, now_us())
            .await
            .unwrap()
    );
    times.add(7, t);
}

/// N raw sequences on `tasks` tasks; returns the rate and the time spent in
/// each call.
async fn raw_path(store: Store, n: usize, tasks: usize, seq: Sequence) -> (Rate, CallTimes) {
    put_job(&store, &job("noop", "UTC", 1)).await;
    let store = Arc::new(store);
    let times = Arc::new(CallTimes::default());
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (store, times, next) = (store.clone(), times.clone(), next.clone());
        set.spawn(async move {
            while next.fetch_add(1, Relaxed) < n {
                raw_sequence(&store, "noop", seq, &times).await;
            }
        });
    }
    set.join_all().await;
    let wall = start.elapsed();
    check_stored(&store, n).await;
    let times = Arc::into_inner(times).unwrap();
    (
        Rate {
            n,
            wall,
            submitted: None,
        },
        times,
    )
}

async fn throughput(runtime: &Arc<Runtime>, n: usize) {
    // Submitting tasks: like concurrent API requests. One sequential
    // submitter makes submission itself the limit.
    let submitters: usize = std::env::var("ENGINE_BENCH_SUBMITTERS")
        .ok()
        .map_or(8, |s| s.parse().unwrap());
    // Runs only the rows whose name contains this (profiling).
    let only = std::env::var("ENGINE_BENCH_ONLY").unwrap_or_default();
    let want = |name: &str| name.contains(only.as_str());
    let small = n / 4;
    // `meridian serve` runs attempts on a runtime of their own, with a
    // worker per core.
    let step_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .thread_name("meridian-step")
        .enable_all()
        .build()
        .unwrap();
    println!();
    println!(
        "throughput: {n} one-step no-op executions per row (N/4 = {small} where marked); \
         engine rows submitted by {submitters} tasks, raw rows on {RAW_TASKS} tasks"
    );
    let mut rows: Vec<(&str, Rate)> = Vec::new();
    let mut times: Vec<(&str, CallTimes, usize)> = Vec::new();
    let report = |name: &str, rate: &Rate| {
        println!(
            "  {name:<66} {:>6.0} /s  ({:.2} s{})",
            rate.per_s(),
            rate.wall.as_secs_f64(),
            rate.submitted
                .map(|s| format!(", last submit returned at {:.2} s", s.as_secs_f64()))
                .unwrap_or_default()
        );
    };

    const ENGINE_1: &str = "engine, file store, 1 zone";
    const ENGINE_4: &str = "engine, file store, 4 zones";
    const RAW_5: &str = "raw, file store, 5 writes, 32 tasks";
    const RAW_8: &str = "raw, file store, engine's 8 calls, 32 tasks";
    const ENGINE_SERVE: &str = "engine, file store, 4 zones, steps on their own runtime (N/4)";
    const ENGINE_PRE: &str = "engine, file store, 4 zones, pre-stored, no submit (N/4)";
    const ENGINE_SUB1: &str = "engine, file store, 4 zones, 1 submitting task (N/4)";
    const ENGINE_MEM: &str = "engine, :memory: (1 connection), 4 zones (N/4)";
    const RAW_5_1: &str = "raw, file store, 5 writes, 1 task (N/4)";
    const RAW_8_1: &str = "raw, file store, engine's 8 calls, 1 task (N/4)";
    const RAW_5_MEM: &str = "raw, :memory: (1 connection), 5 writes, 32 tasks (N/4)";

    enum Row {
        Engine {
            zones: &'static [&'static str],
            count: usize,
            submitters: usize,
            prestored: bool,
            own_runtime: bool,
            memory: bool,
        },
        Raw {
            count: usize,
            tasks: usize,
            seq: Sequence,
            memory: bool,
        },
    }
    let engine = |zones, count| Row::Engine {
        zones,
        count,
        submitters,
        prestored: false,
        own_runtime: false,
        memory: false,
    };
    let raw = |count, tasks, seq| Row::Raw {
        count,
        tasks,
        seq,
        memory: false,
    };
    let plan: Vec<(&str, Row)> = vec![
        (ENGINE_4, engine(&ZONES[..], n)),
        (RAW_5, raw(n, RAW_TASKS, Sequence::Writes)),
        (ENGINE_1, engine(&ZONES[..1], n)),
        (RAW_8, raw(n, RAW_TASKS, Sequence::EngineCalls)),
        (
            ENGINE_SERVE,
            Row::Engine {
                zones: &ZONES[..],
                count: small,
                submitters,
                prestored: false,
                own_runtime: true,
                memory: false,
            },
        ),
        (
            ENGINE_PRE,
            Row::Engine {
                zones: &ZONES[..],
                count: small,
                submitters: 0,
                prestored: true,
                own_runtime: false,
                memory: false,
            },
        ),
        (
            ENGINE_SUB1,
            Row::Engine {
                zones: &ZONES[..],
                count: small,
                submitters: 1,
                prestored: false,
                own_runtime: false,
                memory: false,
            },
        ),
        (
            ENGINE_MEM,
            Row::Engine {
                zones: &ZONES[..],
                count: small,
                submitters,
                prestored: false,
                own_runtime: false,
                memory: true,
            },
        ),
        (RAW_5_1, raw(small, 1, Sequence::Writes)),
        (RAW_8_1, raw(small, 1, Sequence::EngineCalls)),
        (
            RAW_5_MEM,
            Row::Raw {
                count: small,
                tasks: RAW_TASKS,
                seq: Sequence::Writes,
                memory: true,
            },
        ),
    ];
    for (name, row) in plan {
        if !want(name) {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let store = |memory: bool| {
            let dir = &dir;
            async move {
                if memory {
                    Store::open_memory().await.unwrap()
                } else {
                    file_store(dir).await
                }
            }
        };
        let rate = match row {
            Row::Engine {
                zones,
                count,
                submitters,
                prestored,
                own_runtime,
                memory,
            } => {
                let steps = own_runtime.then(|| step_runtime.handle());
                let store = store(memory).await;
                engine_path(runtime, store, zones, count, submitters, prestored, steps).await
            }
            Row::Raw {
                count,
                tasks,
                seq,
                memory,
            } => {
                let (rate, t) = raw_path(store(memory).await, count, tasks, seq).await;
                times.push((name, t, count));
                rate
            }
        };
        report(name, &rate);
        rows.push((name, rate));
    }

    let get = |name: &str| {
        rows.iter()
            .find(|(r, _)| *r == name)
            .map(|(_, r)| r.per_s())
    };
    println!();
    println!("ratios (same run)");
    for (a, b) in [
        (ENGINE_4, RAW_5),
        (ENGINE_1, RAW_5),
        (ENGINE_4, RAW_8),
        (RAW_8, RAW_5),
        (ENGINE_SERVE, ENGINE_4),
        (ENGINE_PRE, ENGINE_4),
    ] {
        if let (Some(x), Some(y)) = (get(a), get(b)) {
            println!("  {a:<62} / {b:<45} {:.2}", x / y);
        }
    }

    if !times.is_empty() {
        println!();
        println!("raw rows: mean time in each store call, µs per execution");
        print!("  {:<20}", "");
        for i in 0..times.len() {
            print!(" {:>9}", format!("row {}", i + 1));
        }
        println!();
        for (i, call) in CALLS.iter().enumerate() {
            print!("  {call:<20}");
            for (_, t, count) in &times {
                let total = t.0[i].load(Relaxed);
                if total > 0 {
                    print!(" {:>9.1}", total as f64 / *count as f64 / 1e3);
                } else {
                    print!(" {:>9}", "-");
                }
            }
            println!();
        }
        for (i, (name, _, _)) in times.iter().enumerate() {
            println!("  row {}: {name}", i + 1);
        }
    }
    println!();
    println!(
        "store calls per one-step execution on the engine path: 8 (submit: get_job, \
         insert_execution; engine: get_execution, get_job, start_execution, start_attempt, \
         finish_attempt, finish_execution), 5 of them write transactions; each further step \
         adds 2 (start_attempt, finish_attempt)"
    );
    step_runtime.shutdown_background();
}
