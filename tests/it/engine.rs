//! The job engine with real wasm steps (the `script` fixture) and a real
//! SQLite store: flow actions, the goto bound, retries and their backoff
//! (on a recording timer), non-retryable errors, step and execution
//! timeouts, cancellation mid-step, typed variables, secrets that never
//! reach the store, and recovery of interrupted executions.

use meridian::engine::service::{Executions, RecoveryReport};
use meridian::engine::{Cancel, Engine, ExecutionReport, ExecutionStatus, RunStatus, Timer, view};
use meridian::store::{AttemptStart, NewExecution, Store};
use meridian_tests::{TestRuntime, fixtures};
use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The real clock for "now"; every retry wait is recorded and returns at
/// once, so backoff intervals are asserted exactly and cost no time.
#[derive(Default)]
struct RecordingTimer(Mutex<Vec<Duration>>);

impl RecordingTimer {
    fn waits_ms(&self) -> Vec<u64> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_millis() as u64)
            .collect()
    }
}

impl Timer for RecordingTimer {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        self.0.lock().unwrap().push(duration);
        Box::pin(std::future::ready(()))
    }
}

const SECRET: &str = "pw-Zq8-never-in-the-store";

struct Harness {
    rt: TestRuntime,
    store: Store,
    engine: Arc<Engine>,
    timer: Arc<RecordingTimer>,
}

async fn harness_with(config: &str) -> Harness {
    let rt = TestRuntime::new(config, &[fixtures::SCRIPT]).await;
    let store = Store::open_sqlite(&rt.data_dir.path().join("meridian.db"))
        .await
        .unwrap();
    let timer = Arc::new(RecordingTimer::default());
    let engine = Arc::new(Engine::new(
        rt.runtime.clone(),
        store.clone(),
        timer.clone(),
    ));
    Harness {
        rt,
        store,
        engine,
        timer,
    }
}

/// The secret lives in a file outside the data directory, as an operator
/// would keep it, so that the data directory can be searched for it.
fn secret_file() -> &'static std::path::Path {
    static FILE: std::sync::OnceLock<tempfile::TempPath> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), SECRET).unwrap();
        f.into_temp_path()
    })
}

async fn harness() -> Harness {
    harness_with(&format!(
        "[secrets]\ndb_password = {{ file = {:?} }}\n[[grants]]\nplugin = \"script\"\nsecrets = [\"db_password\"]\n",
        secret_file().display().to_string()
    ))
    .await
}

impl Harness {
    /// Validates and stores the job, stores a queued execution.
    async fn queue(&self, job: Value, params: Value) -> String {
        let job = meridian::model::job_from_value(job).unwrap();
        let issues = meridian::engine::validate_job(&job, &self.rt.runtime).await;
        assert!(issues.is_empty(), "{issues:?}");
        let params = meridian::model::resolve_params(&job, params.as_object().unwrap()).unwrap();
        let now = chrono::Utc::now().timestamp_micros();
        self.store
            .put_job(&job.id, &serde_json::to_string(&job).unwrap(), now)
            .await
            .unwrap();
        let id = uuid_like();
        self.store
            .insert_execution(&NewExecution {
                id: id.clone(),
                job_id: job.id.clone(),
                trigger: "api".into(),
                schedule_id: None,
                fire_nominal_local: None,
                fire_utc_offset_s: None,
                timezone: job.timezone.clone(),
                priority: 0,
                params: Value::Object(params).to_string(),
                scheduled_at_us: Some(1_774_746_000_000_000), // 2026-03-29T01:00:00Z
                queued_at_us: now,
            })
            .await
            .unwrap();
        id
    }

    async fn run(&self, job: Value) -> (ExecutionReport, Value) {
        self.run_with(job, json!({})).await
    }

    async fn run_with(&self, job: Value, params: Value) -> (ExecutionReport, Value) {
        let id = self.queue(job, params).await;
        let report = self.engine.run(&id, Cancel::new()).await.unwrap();
        let detail = view::detail(&self.store, &id).await.unwrap().unwrap();
        (report, detail)
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{:x}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn job(steps: Value) -> Value {
    json!({ "id": "engine-test", "name": "engine test", "timezone": "Europe/Berlin", "steps": steps })
}

fn ok(id: &str) -> Value {
    json!({ "id": id, "type": "script", "config": { "output": id } })
}

fn fail(id: &str) -> Value {
    json!({ "id": id, "type": "script", "config": { "fail": { "kind": "failed", "message": format!("{id} broke") } } })
}

/// The step ids in the order their step runs happened.
fn path(detail: &Value) -> Vec<String> {
    detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step_id"].as_str().unwrap().to_owned())
        .collect()
}

fn with(mut step: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        step[k] = v.clone();
    }
    step
}

#[tokio::test]
async fn flow_actions_route_the_execution() {
    let h = harness().await;
    // a succeeds → goto c (b is skipped); c fails → next (d); d succeeds →
    // quit_success (e never runs).
    let (report, detail) = h
        .run(job(json!([
            with(ok("a"), json!({"on_success": {"goto": "c"}})),
            fail("b"),
            with(fail("c"), json!({"on_failure": "next"})),
            with(ok("d"), json!({"on_success": "quit_success"})),
            ok("e"),
        ])))
        .await;
    assert_eq!(report.status, ExecutionStatus::Succeeded, "{detail:#}");
    assert_eq!(path(&detail), ["a", "c", "d"]);
    assert_eq!(detail["status"], "succeeded");
    assert_eq!(detail["steps"][1]["status"], "failed");
    assert_eq!(detail["step_runs"], 3);

    // The default on_failure is quit_failure; the error names the step.
    let (report, detail) = h.run(job(json!([ok("a"), fail("b"), ok("c")]))).await;
    assert_eq!(report.status, ExecutionStatus::Failed);
    assert_eq!(path(&detail), ["a", "b"]);
    assert_eq!(detail["error"]["kind"], "step_failed");
    assert_eq!(detail["error"]["step_id"], "b");
    assert!(
        detail["error"]["message"]
            .as_str()
            .unwrap()
            .contains("b broke"),
        "{detail:#}"
    );

    // continue_on_failure is on_failure: next; running off the end succeeds.
    let (report, detail) = h
        .run(job(json!([
            ok("a"),
            with(fail("b"), json!({"continue_on_failure": true}))
        ])))
        .await;
    assert_eq!(report.status, ExecutionStatus::Succeeded);
    assert_eq!(path(&detail), ["a", "b"]);

    // quit_failure after a success fails the execution; on_failure goto
    // runs a clean-up step, which then quits with success.
    let (report, detail) = h
        .run(job(json!([
            with(ok("a"), json!({"on_success": "quit_failure"})),
            ok("b")
        ])))
        .await;
    assert_eq!(report.status, ExecutionStatus::Failed);
    assert_eq!(detail["error"]["kind"], "quit_failure");
    let (report, detail) = h
        .run(job(json!([
            with(fail("a"), json!({"on_failure": {"goto": "cleanup"}})),
            ok("b"),
            with(ok("cleanup"), json!({"on_success": "quit_success"}))
        ])))
        .await;
    assert_eq!(report.status, ExecutionStatus::Succeeded);
    assert_eq!(path(&detail), ["a", "cleanup"]);
}

#[tokio::test]
async fn goto_loops_are_bounded_by_max_step_runs() {
    let h = harness().await;
    let mut j = job(json!([
        ok("a"),
        with(ok("b"), json!({"on_success": {"goto": "a"}}))
    ]));
    j["max_step_runs"] = json!(5);
    let (report, detail) = h.run(j).await;
    assert_eq!(report.status, ExecutionStatus::Failed);
    assert_eq!(detail["error"]["kind"], "max_step_runs");
    assert_eq!(path(&detail), ["a", "b", "a", "b", "a"]);
    let seqs: Vec<i64> = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn retries_back_off_and_record_every_attempt() {
    let h = harness().await;
    let step = json!({
        "id": "flaky", "type": "script",
        "config": { "output": "finally", "fail": { "kind": "retryable", "message": "not yet", "until_attempt": 4 } },
        "retry": { "max_attempts": 5, "initial_interval_ms": 100, "multiplier": 3.0, "max_interval_ms": 500 }
    });
    let (report, detail) = h.run(job(json!([step]))).await;
    assert_eq!(report.status, ExecutionStatus::Succeeded, "{detail:#}");
    // Waits before attempts 2, 3, 4: 100, 300, then capped at 500.
    assert_eq!(h.timer.waits_ms(), [100, 300, 500]);
    let attempts = detail["steps"][0]["attempts"].as_array().unwrap();
    let statuses: Vec<&str> = attempts
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["failed", "failed", "failed", "succeeded"]);
    assert_eq!(attempts[0]["error"]["kind"], "retryable");
    assert_eq!(detail["steps"][0]["attempt_count"], 4);
    assert_eq!(detail["steps"][0]["output"], "finally");
    assert_eq!(report.steps[0].attempts[3].waited_ms, 500);

    // Jitter spreads each wait within ± its fraction, the same way on a
    // replay of the same execution, step run and attempt.
    let h = harness().await;
    let step = json!({
        "id": "flaky", "type": "script",
        "config": { "fail": { "kind": "failed" } },
        "retry": { "max_attempts": 4, "initial_interval_ms": 1000, "multiplier": 1.0, "jitter": 0.2 }
    });
    let (report, _) = h.run(job(json!([step]))).await;
    assert_eq!(report.status, ExecutionStatus::Failed);
    let waits = h.timer.waits_ms();
    assert_eq!(waits.len(), 3, "max_attempts 4: three waits");
    assert!(waits.iter().all(|w| (800..=1200).contains(w)), "{waits:?}");
}

#[tokio::test]
async fn some_errors_never_retry() {
    let h = harness().await;
    let retry = json!({ "max_attempts": 5, "initial_interval_ms": 10 });
    for (kind, never) in [
        ("invalid_config", json!([])),
        ("denied", json!([])),
        ("retryable", json!(["retryable"])),
    ] {
        let mut r = retry.clone();
        r["never_retry"] = never;
        let step = json!({ "id": "s", "type": "script", "config": { "fail": { "kind": kind } }, "retry": r });
        let (report, detail) = h.run(job(json!([step]))).await;
        assert_eq!(report.status, ExecutionStatus::Failed, "{kind}");
        assert_eq!(detail["steps"][0]["attempt_count"], 1, "{kind}: {detail:#}");
        assert_eq!(detail["steps"][0]["error"]["kind"], kind);
    }
    assert!(h.timer.waits_ms().is_empty());
}

#[tokio::test]
async fn a_step_timeout_stops_a_busy_loop_and_may_be_retried() {
    let h = harness().await;
    let step = json!({
        "id": "spin", "type": "script", "config": { "spin": true }, "timeout_ms": 300,
        "retry": { "max_attempts": 2, "initial_interval_ms": 10 }
    });
    let started = Instant::now();
    let (report, detail) = h.run(job(json!([step]))).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(report.status, ExecutionStatus::Failed);
    let attempts = detail["steps"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    for a in attempts {
        assert_eq!(a["status"], "timed_out");
        assert_eq!(a["error"]["kind"], "timeout");
    }
}

#[tokio::test]
async fn an_execution_timeout_ends_the_run_mid_step() {
    let h = harness().await;
    let mut j = job(json!([
        ok("first"),
        { "id": "spin", "type": "script", "config": { "spin": true }, "timeout_ms": 60000 },
        ok("never")
    ]));
    j["timeout_ms"] = json!(700);
    let started = Instant::now();
    let (report, detail) = h.run(j).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(report.status, ExecutionStatus::TimedOut, "{detail:#}");
    assert_eq!(detail["status"], "timed_out");
    assert_eq!(detail["error"]["kind"], "timed_out");
    assert_eq!(path(&detail), ["first", "spin"]);
    assert_eq!(detail["steps"][1]["status"], "timed_out");
    assert_eq!(detail["steps"][1]["attempts"][0]["status"], "timed_out");
}

#[tokio::test]
async fn cancelling_stops_the_running_step_promptly() {
    let h = harness().await;
    let id = h
        .queue(
            job(json!([
                ok("first"),
                { "id": "spin", "type": "script", "config": { "spin": true }, "timeout_ms": 60000 },
                ok("never")
            ])),
            json!({}),
        )
        .await;
    let cancel = Cancel::new();
    let engine = h.engine.clone();
    let run = tokio::spawn({
        let cancel = cancel.clone();
        let id = id.clone();
        async move { engine.run(&id, cancel).await }
    });
    // Wait until the spinning attempt is recorded as running.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = view::detail(&h.store, &id).await.unwrap().unwrap();
        if d["steps"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the spin step never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = Instant::now();
    cancel.cancel();
    let report = run.await.unwrap().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(report.status, ExecutionStatus::Cancelled);
    let d = view::detail(&h.store, &id).await.unwrap().unwrap();
    assert_eq!(d["status"], "cancelled");
    assert_eq!(d["steps"][1]["status"], "cancelled");
    assert_eq!(d["steps"][1]["attempts"][0]["status"], "cancelled");
    assert_eq!(path(&d), ["first", "spin"]);
    assert!(!d["finished_at"].is_null());
}

/// Another process claims the execution while its step runs (here this
/// node id's next process, the one way to move the epoch on SQLite; on
/// PostgreSQL another node, see `cluster_faults`). The first run's next
/// write, the step's outcome, is refused: the run stops with
/// `Superseded` and records nothing more — not the outcome, not the next
/// step, not the execution's end — and the claimer's epoch stands. (On
/// two worker threads: the step's sleep holds the one it runs on.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_execution_was_claimed_away_stops_and_writes_nothing_more() {
    let h = harness().await;
    let id = h
        .queue(
            job(json!([
                { "id": "slow", "type": "script",
                  "config": { "sleep_ms": 1_500, "output": "late" } },
                ok("never")
            ])),
            json!({}),
        )
        .await;
    let engine = h.engine.clone();
    let run = tokio::spawn({
        let id = id.clone();
        async move { engine.run(&id, Cancel::new()).await }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = view::detail(&h.store, &id).await.unwrap().unwrap();
        if d["steps"][0]["attempts"][0]["status"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "the slow step never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = h.store.get_execution(&id).await.unwrap().unwrap();
    let claimed = h.store.claim_executions(true, 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "{before:?}");
    let epoch = claimed[0].epoch;

    let result = run.await.unwrap();
    assert!(
        matches!(&result, Err(meridian::engine::EngineError::Superseded(e)) if *e == id),
        "{result:?}"
    );
    h.store.settle_writes().await.unwrap();
    let d = view::detail(&h.store, &id).await.unwrap().unwrap();
    assert_eq!(d["status"], "running", "{d:#}");
    assert_eq!(d["steps"].as_array().unwrap().len(), 1, "{d:#}");
    assert_eq!(d["steps"][0]["attempts"][0]["status"], "running", "{d:#}");
    assert!(d["steps"][0]["attempts"][0]["output"].is_null(), "{d:#}");
    let row = h.store.get_execution(&id).await.unwrap().unwrap();
    assert_eq!(row.epoch, epoch, "the claimer's epoch moved");
}

#[tokio::test]
async fn step_outputs_reach_later_steps_with_their_types() {
    let h = harness().await;
    let mut j = job(json!([
        { "id": "extract", "type": "script", "config": {
            "output": { "rows": [ { "id": 42, "ratio": 0.5, "ok": true, "tags": ["x"] } ] },
            "exports": { "count": 7, "who": "ops" } } },
        // The echo shows the config as the step received it.
        { "id": "use", "type": "script", "config": { "echo": true, "output": {
            "id": "${steps.extract.output.rows[0].id}",
            "row": "${steps.extract.output.rows[-1]}",
            "label": "row-${steps.extract.output.rows[0].id} by ${steps.extract.exports.who}",
            "count": "${steps.extract.exports.count}",
            "region": "${params.region}",
            "limit": "${params.limit}",
            "execution": "${execution.id}",
            "scheduled": "${execution.scheduled_time}",
            "attempt": "${execution.attempt}",
            "job": "${job.id}@${job.version}",
            "literal": "$${not.a.variable}"
        } } }
    ]));
    j["params"] = json!({
        "region": { "type": "string", "enum": ["eu", "us"] , "default": "eu" },
        "limit": { "type": "integer", "default": 10 }
    });
    let (report, detail) = h.run_with(j, json!({"limit": 25})).await;
    assert_eq!(report.status, ExecutionStatus::Succeeded, "{detail:#}");
    let seen = &detail["steps"][1]["output"]["config"]["output"];
    assert_eq!(seen["id"], json!(42));
    assert!(seen["id"].is_i64());
    assert_eq!(
        seen["row"],
        json!({ "id": 42, "ratio": 0.5, "ok": true, "tags": ["x"] })
    );
    assert_eq!(seen["label"], "row-42 by ops");
    assert_eq!(seen["count"], json!(7));
    assert_eq!(seen["region"], "eu");
    assert_eq!(seen["limit"], json!(25));
    assert_eq!(seen["execution"], detail["id"]);
    // 01:00 UTC on 2026-03-29 is 03:00 CEST in the job's zone, just after
    // the spring-forward gap.
    assert_eq!(seen["scheduled"], "2026-03-29T03:00:00+02:00");
    assert_eq!(seen["attempt"], json!(1));
    assert_eq!(seen["job"], "engine-test@1");
    assert_eq!(seen["literal"], "${not.a.variable}");
    // The plugin also saw the variables themselves.
    let vars = &detail["steps"][1]["output"]["variables"];
    assert_eq!(vars["steps"]["extract"]["exports"]["count"], 7);
    assert_eq!(vars["params"]["region"], "eu");
}

#[tokio::test]
async fn a_reference_to_a_step_that_has_not_run_fails_without_retry() {
    let h = harness().await;
    let (report, detail) = h
        .run(job(json!([
            with(ok("a"), json!({"on_success": {"goto": "c"}})),
            ok("b"),
            { "id": "c", "type": "script", "config": { "output": "${steps.b.output}" },
              "retry": { "max_attempts": 3 } }
        ])))
        .await;
    assert_eq!(report.status, ExecutionStatus::Failed);
    let err = &detail["steps"][1]["error"];
    assert_eq!(err["kind"], "invalid_config", "{detail:#}");
    assert!(
        err["message"].as_str().unwrap().contains("has not run"),
        "{err}"
    );
    assert_eq!(detail["steps"][1]["attempt_count"], 1);
}

/// Every byte under `dir` (the SQLite database, its WAL and everything
/// else), searched for `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(p);
            }
        }
    }
    found
}

#[tokio::test]
async fn secrets_resolve_for_granted_steps_and_never_reach_the_store() {
    let h = harness().await;
    // The log router writes this test's events (a current-thread runtime:
    // the engine runs on this thread) into the data directory's logs/.
    let (layer, logs) = meridian::logging::RouterLayer::builder(
        h.rt.data_dir.path().join("logs"),
        &meridian::logging::LogConfig::default(),
        std::sync::Arc::clone(h.rt.runtime.secrets().masker()),
    )
    .build()
    .unwrap();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::layer::SubscriberExt::with(
        tracing_subscriber::registry(),
        layer,
    ));
    let (report, detail) = h
        .run(job(json!([
            { "id": "use", "type": "script", "config": { "echo": true,
                "output": { "dsn": "Server=db;Password=${secrets.db_password}", "raw": "${secrets.db_password}" } },
              "retry": { "max_attempts": 2, "initial_interval_ms": 1 } },
            { "id": "leak", "type": "script", "config": {
                "fail": { "kind": "retryable", "message": "cannot log in with ${secrets.db_password}", "until_attempt": 2 } },
              "retry": { "max_attempts": 2, "initial_interval_ms": 1 } }
        ])))
        .await;
    assert_eq!(report.status, ExecutionStatus::Succeeded, "{detail:#}");
    let seen = &detail["steps"][0]["output"]["config"]["output"];
    // The step got the value (the echo came back masked).
    assert_eq!(seen["dsn"], "Server=db;Password=***");
    assert_eq!(seen["raw"], "***");
    let api_text = detail.to_string();
    assert!(!api_text.contains(SECRET), "{api_text}");
    assert!(api_text.contains("cannot log in with ***"), "{api_text}");
    let report_text = serde_json::to_string(&report).unwrap();
    assert!(!report_text.contains(SECRET));
    // Flush the logs and checkpoint the WAL, then search every file of the
    // data dir: database, WAL, zone and execution logs.
    logs.flush_async().await.unwrap();
    let execution_log = meridian::logging::execution_log_path(
        &h.rt.data_dir.path().join("logs"),
        &report.execution_id,
    )
    .unwrap();
    let logged = std::fs::read_to_string(&execution_log).unwrap();
    assert!(logged.contains("cannot log in with ***"), "{logged}");
    drop(h.engine);
    h.store.close().await;
    let leaks = files_containing(h.rt.data_dir.path(), SECRET.as_bytes());
    assert!(leaks.is_empty(), "the secret is in {leaks:?}");
}

#[tokio::test]
async fn a_secret_the_plugin_was_not_granted_is_denied() {
    let h = harness_with(&format!(
        "[secrets]\ndb_password = {{ file = {:?} }}\n",
        secret_file().display().to_string()
    ))
    .await;
    // Validation refuses it up front...
    let j = meridian::model::job_from_value(job(json!([
        { "id": "s", "type": "script", "config": { "output": "${secrets.db_password}" } }
    ])))
    .unwrap();
    let issues = meridian::engine::validate_job(&j, &h.rt.runtime).await;
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].path, "steps[0].config.output");
    assert!(issues[0].message.contains("may not read it"), "{issues:?}");
    // ...and the engine denies it if a stored job still asks.
    let now = chrono::Utc::now().timestamp_micros();
    h.store
        .put_job(&j.id, &serde_json::to_string(&j).unwrap(), now)
        .await
        .unwrap();
    let id = uuid_like();
    h.store
        .insert_execution(&NewExecution {
            id: id.clone(),
            job_id: j.id.clone(),
            trigger: "api".into(),
            schedule_id: None,
            fire_nominal_local: None,
            fire_utc_offset_s: None,
            timezone: "UTC".into(),
            priority: 0,
            params: "{}".into(),
            scheduled_at_us: None,
            queued_at_us: now,
        })
        .await
        .unwrap();
    let report = h.engine.run(&id, Cancel::new()).await.unwrap();
    assert_eq!(report.status, ExecutionStatus::Failed);
    let d = view::detail(&h.store, &id).await.unwrap().unwrap();
    assert_eq!(d["steps"][0]["error"]["kind"], "denied", "{d:#}");
}

#[tokio::test]
async fn validation_reports_every_problem_with_its_path() {
    let h = harness().await;
    let j = meridian::model::job_from_value(json!({
        "id": "bad", "name": "bad", "timezone": "Mars/Olympus",
        "params": { "n": { "type": "integer", "default": "x" } },
        "steps": [
            { "id": "a", "type": "script", "config": { "output": "${params.missing}", "sleep_ms": "${params.n}" },
              "on_success": { "goto": "nowhere" }, "retry": { "max_attempts": 0, "never_retry": ["bogus"] } },
            { "id": "a", "type": "script", "config": { "output": "${steps.zzz.output}", "colour": 1 },
              "continue_on_failure": true, "on_failure": "next" },
            { "id": "c", "type": "nope" }
        ]
    }))
    .unwrap();
    let issues = meridian::engine::validate_job(&j, &h.rt.runtime).await;
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    for expected in [
        "timezone",
        "params.n.default",
        "steps[1].id",
        "steps[0].retry.max_attempts",
        "steps[0].retry.never_retry[0]",
        "steps[1].continue_on_failure",
        "steps[0].on_success.goto",
        "steps[0].config.output",
        "steps[1].config.output",
        "steps[1].config",
        "steps[2].type",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {issues:#?}"
        );
    }
    // `sleep_ms` holds an expression: its type is checked at run time, not
    // reported now.
    assert!(!paths.contains(&"steps[0].config.sleep_ms"), "{issues:#?}");
}

/// A node died mid-step: recovery marks the attempt interrupted, and the
/// policy decides. With attempts left the step runs again (attempt 2);
/// with `on_interrupted: fail` the execution fails.
#[tokio::test]
async fn interrupted_executions_are_recovered_by_policy() {
    let h = harness().await;
    let step = json!({ "id": "work", "type": "script", "config": { "output": "done" },
                       "retry": { "max_attempts": 2, "initial_interval_ms": 1 } });
    let resumable = h
        .queue(job(json!([ok("before"), step.clone()])), json!({}))
        .await;
    let mut failing_job = job(json!([step]));
    failing_job["id"] = json!("engine-test-fail");
    failing_job["on_interrupted"] = json!("fail");
    let failing = h.queue(failing_job, json!({})).await;
    let queued = h.queue(job(json!([ok("only")])), json!({})).await;
    let mut cancelling_job = job(json!([step.clone()]));
    cancelling_job["id"] = json!("engine-test-cancel");
    let cancelling = h.queue(cancelling_job, json!({})).await;
    // Simulate the crash: all started, "before" finished, "work" was in
    // flight when the node died; one had been asked to cancel.
    let now = chrono::Utc::now().timestamp_micros();
    for (id, seq) in [(&resumable, 2), (&failing, 1), (&cancelling, 1)] {
        assert!(h.store.start_execution(id, 1, 0, now).await.unwrap());
        if seq == 2 {
            start(&h.store, id, 1, "before", now).await;
            h.store
                .finish_attempt(&meridian::store::AttemptFinish {
                    execution_id: id.clone(),
                    seq: 1,
                    attempt: 1,
                    status: "succeeded".into(),
                    now_us: now,
                    duration_us: 10,
                    output: Some("\"before\"".into()),
                    exports: Some("{}".into()),
                    error: None,
                    logs: None,
                    host_calls: 0,
                    step_done: true,
                    epoch: 1,
                })
                .await
                .unwrap();
        }
        start(&h.store, id, seq, "work", now).await;
    }
    assert_eq!(
        h.store
            .request_cancel(&cancelling, now)
            .await
            .unwrap()
            .as_deref(),
        Some("running")
    );
    let (executions, report) = start_executions(&h).await;
    assert_eq!(
        report,
        RecoveryReport {
            requeued: vec![queued.clone()],
            resumed: vec![resumable.clone()],
            failed: vec![failing.clone()],
            cancelled: vec![cancelling.clone()],
        }
    );
    let d = view::detail(&h.store, &cancelling).await.unwrap().unwrap();
    assert_eq!(d["status"], "cancelled", "{d:#}");
    assert_eq!(d["steps"][0]["attempts"][0]["status"], "interrupted");
    for id in [&resumable, &queued] {
        wait_final(&h.store, id).await;
    }
    let d = view::detail(&h.store, &resumable).await.unwrap().unwrap();
    assert_eq!(d["status"], "succeeded", "{d:#}");
    assert_eq!(d["recoveries"], 1);
    assert_eq!(path(&d), ["before", "work"]);
    let attempts = d["steps"][1]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{d:#}");
    assert_eq!(attempts[0]["status"], "interrupted");
    assert_eq!(attempts[1]["status"], "succeeded");
    // The "before" output survived the restart (it is in the store).
    assert_eq!(d["steps"][0]["output"], "before");
    let d = view::detail(&h.store, &failing).await.unwrap().unwrap();
    assert_eq!(d["status"], "failed");
    assert_eq!(d["error"]["kind"], "interrupted");
    assert_eq!(d["steps"][0]["attempts"][0]["status"], "interrupted");
    let d = view::detail(&h.store, &queued).await.unwrap().unwrap();
    assert_eq!(d["status"], "succeeded");
    executions.shutdown().await;
}

/// The node's engine, queues and scheduler on the harness's store; at
/// shutdown running executions get one second.
async fn start_executions(h: &Harness) -> (Executions, RecoveryReport) {
    Executions::start(
        h.engine.clone(),
        meridian::queue::QueueConfig::default(),
        Arc::new(meridian::scheduler::SystemClock),
        meridian::scheduler::SchedulerConfig {
            shutdown_grace: Duration::from_secs(1),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

async fn start(store: &Store, id: &str, seq: i64, step: &str, now: i64) {
    store
        .start_attempt(&AttemptStart {
            execution_id: id.to_owned(),
            seq,
            step_id: step.to_owned(),
            step_type: "script".into(),
            attempt: 1,
            now_us: now,
            // Started once, from the epoch it was stored with.
            epoch: 1,
        })
        .await
        .unwrap();
}

async fn wait_final(store: &Store, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = store.get_execution(id).await.unwrap().unwrap();
        if ExecutionStatus::parse(&row.status).is_some_and(ExecutionStatus::is_final) {
            return;
        }
        assert!(Instant::now() < deadline, "{id} still {}", row.status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn run_statuses_have_stored_names() {
    assert_eq!(RunStatus::Interrupted.as_str(), "interrupted");
    assert_eq!(ExecutionStatus::TimedOut.as_str(), "timed_out");
}

/// Stores `job` and `schedule` (created now, with its cursor at now, so it
/// does not catch up), as the API would.
async fn store_job_and_schedule(h: &Harness, job: Value, schedule: Value) {
    let j = meridian::model::job_from_value(job).unwrap();
    let now = chrono::Utc::now().timestamp_micros();
    h.store
        .put_job(&j.id, &serde_json::to_string(&j).unwrap(), now)
        .await
        .unwrap();
    let spec: meridian::model::schedule::ScheduleSpec = serde_json::from_value(schedule).unwrap();
    let row = spec.compile().unwrap().to_row(now, now, Some(now));
    h.store.insert_schedule(&row).await.unwrap();
}

/// Waits (30 s at most) until `job` has at least `count` executions with
/// `status`; returns them, newest first.
async fn wait_for_executions(
    h: &Harness,
    job: &str,
    status: &str,
    count: usize,
) -> Vec<meridian::store::ExecutionRow> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = h
            .store
            .list_executions(&meridian::store::ExecutionFilter {
                job_id: Some(job.into()),
                status: Some(status.into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        if rows.len() >= count {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "{job}: fewer than {count} executions {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stored schedule fires (every second, in Asia/Kolkata) and each fire
/// becomes an execution of the schedule's job, stored with the fire's
/// identity in the same transaction, queued in the schedule's zone and run
/// by the engine; `${execution.scheduled_time}` is the fire's instant in
/// the job's zone.
#[tokio::test]
async fn a_fired_schedule_becomes_an_execution() {
    let h = harness().await;
    store_job_and_schedule(&h, json!({
        "id": "ticker", "name": "ticker", "timezone": "Asia/Kolkata",
        "steps": [ { "id": "tick", "type": "script",
                     "config": { "output": { "at": "${execution.scheduled_time}", "by": "${execution.trigger}" } } } ]
    }), json!({
        "id": "every-second", "job_id": "ticker", "cron": "* * * * * *", "timezone": "Asia/Kolkata"
    })).await;
    let (executions, _) = start_executions(&h).await;
    let done = wait_for_executions(&h, "ticker", "succeeded", 2).await;
    executions.shutdown().await;
    // A machine slow enough that a second passes between the schedule's
    // store and the scheduler's start gets the latest of those fires as a
    // catch-up fire (misfire policy `latest`), at most one; the rest are
    // ordinary fires.
    assert!(
        done.iter().filter(|r| r.trigger == "catch_up").count() <= 1,
        "{done:#?}"
    );
    for row in &done {
        assert!(
            matches!(row.trigger.as_str(), "schedule" | "catch_up"),
            "{row:?}"
        );
        assert_eq!(row.schedule_id.as_deref(), Some("every-second"));
        assert_eq!(row.timezone, "Asia/Kolkata");
        assert_eq!(row.fire_utc_offset_s, Some(19_800));
        let d = view::detail(&h.store, &row.id).await.unwrap().unwrap();
        let at = d["steps"][0]["output"]["at"].as_str().unwrap();
        assert!(at.ends_with("+05:30"), "{at}");
        let nominal = row.fire_nominal_local.as_deref().unwrap();
        assert!(at.starts_with(nominal), "{at} vs {nominal}");
        assert_eq!(d["steps"][0]["output"]["by"], row.trigger.as_str());
    }
    // Every fire has exactly one execution.
    let fires = h.store.list_fires("every-second", 1000).await.unwrap();
    assert!(fires.len() >= 2);
    for fire in fires.iter().filter(|f| f.outcome == "enqueued") {
        let id = fire.run_id.as_deref().unwrap();
        assert!(
            h.store.get_execution(id).await.unwrap().is_some(),
            "fire {fire:?} has no execution"
        );
    }
}

/// `cancel_other`: each second's fire replaces the schedule's run that is
/// still going. The replaced running execution is recorded `cancelled`
/// (its attempt `interrupted`), not left `running`.
///
/// On two worker threads, as `serve` runs steps on a runtime of their own:
/// the step busy-waits, and on the test's one thread it left the scheduler
/// and the store's replies a turn only at each epoch tick, so fires came
/// seconds late (5 s in one CI run) and the test took up to two minutes
/// beside other tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_replaced_by_cancel_other_is_recorded_cancelled() {
    let h = harness().await;
    store_job_and_schedule(&h, json!({
        "id": "slow", "name": "slow",
        "steps": [ { "id": "work", "type": "script", "config": { "sleep_ms": 10000 }, "timeout_ms": 30000 } ]
    }), json!({
        "id": "replacing", "job_id": "slow", "cron": "* * * * * *", "timezone": "UTC",
        "overlap": "cancel_other"
    })).await;
    let (executions, _) = start_executions(&h).await;
    let cancelled = wait_for_executions(&h, "slow", "cancelled", 1)
        .await
        .remove(0);
    let d = view::detail(&h.store, &cancelled.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        d["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cancel_other"),
        "{d:#}"
    );
    for s in d["steps"].as_array().unwrap() {
        assert_ne!(s["status"], "running", "{d:#}");
    }
    // Pause it, stop, and nothing of it stays running.
    executions.scheduler().pause("replacing").await.unwrap();
    executions.shutdown().await;
}

#[tokio::test]
async fn retention_keeps_the_newest_finished_executions() {
    let h = harness().await;
    let mut j = job(json!([ok("a")]));
    j["retention"] = json!({ "keep_last": 2 });
    let mut ids = Vec::new();
    for _ in 0..4 {
        let (report, _) = h.run(j.clone()).await;
        ids.push(report.execution_id);
    }
    let left: Vec<String> = h
        .store
        .list_executions(&meridian::store::ExecutionFilter {
            job_id: Some("engine-test".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let mut newest: Vec<String> = ids[2..].to_vec();
    newest.sort();
    let mut left_sorted = left.clone();
    left_sorted.sort();
    assert_eq!(left_sorted, newest, "kept {left:?} of {ids:?}");
    // Their step runs and attempts went with them.
    assert!(h.store.list_step_runs(&ids[0]).await.unwrap().is_empty());
}
