//! Crash recovery end to end, with real processes: `kill -9` of a
//! `meridian serve` node while two executions are in the middle of a long
//! step, then a restart on the same data directory.
//!
//! What it proves (the acceptance of "recover interrupted executions"):
//!
//! - Everything node A recorded before it died is in the SQLite file: the
//!   executions are `running`, the finished first step with its output, the
//!   in-flight attempts `running`.
//! - Node B applies the documented recovery policy at start-up
//!   (`host/src/engine/service.rs`): the in-flight attempts become
//!   `interrupted` (error kind `interrupted`); the job with the default
//!   `on_interrupted: retry_step` resumes at the interrupted step, which
//!   is retried as attempt 2 (its retry policy has attempts left) and sees
//!   the output of the step that ran before the crash — that step is not
//!   run again; the job with `on_interrupted: fail` ends `failed` with
//!   error kind `interrupted`.
//! - The store is consistent afterwards: no execution, step run or attempt
//!   is left `queued`/`running`, every row has its end time, each
//!   execution's `step_runs` is its number of step runs, step runs and
//!   attempts are numbered without gaps, and the CLI (another process on
//!   the same file) lists both executions with the statuses the API shows.
//! - Node B stops cleanly on SIGTERM.
//!
//! Each node's stderr goes to a file in the temp dir; when the test fails,
//! their ends are printed (see `super::node::Node`).

#![cfg(unix)]

use super::node::{Node, Token, meridian_node};
use meridian::store::{ExecutionFilter, Store};
use meridian_tests::fixtures;
use serde_json::{Value, json};
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The longest any polled condition may take (a loaded 2-core CI box).
const DEADLINE: Duration = Duration::from_secs(60);
/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(25);
/// The resumable job's long step, on every attempt (the `script` fixture
/// cannot make only attempt 1 slow): long enough that the kill lands while
/// attempt 1 runs, short enough that the resumed attempt 2 is cheap. The
/// kill comes as soon as the API shows the attempt running: 0.05–0.6 s into
/// it on an idle 2-core box, up to 1 s with four extra CPU hogs (the API
/// answers slowly while two busy-waiting steps occupy the node's workers).
/// The test checks, and says, if the kill came too late.
const RESUMED_SLEEP_MS: u64 = 3_000;
/// The failing job's long step: never finishes before the kill.
const FAILED_SLEEP_MS: u64 = 20_000;

/// An operator token made with `meridian token create` on the data
/// directory (so the nodes print no first admin token).
fn operator_token(data: &Path, plugins: &Path) -> String {
    let out = meridian_node(data, plugins)
        .args([
            "token",
            "create",
            "--role",
            "operator",
            "--name",
            "recovery-test",
        ])
        .output()
        .expect("run meridian-node token create");
    assert!(
        out.status.success(),
        "token create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub(super) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Stores the job and queues an execution of it; returns its id.
pub(super) async fn execute(http: &reqwest::Client, node: &Node, job: Value) -> String {
    let resp = http
        .post(node.url("/api/v2/jobs/execute"))
        .bearer_auth(node.token())
        .json(&json!({ "job": job, "params": {} }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body:#}");
    let id = body["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(body["status_url"], format!("/api/v2/executions/{id}"));
    id
}

pub(super) async fn execution(http: &reqwest::Client, node: &Node, id: &str) -> Value {
    match try_execution(http, node, id).await {
        Ok(detail) => detail,
        Err(status) => panic!("GET execution {id}: {status}"),
    }
}

/// GET an execution: its detail, or the status of an answer that is not a
/// success.
async fn try_execution(
    http: &reqwest::Client,
    node: &Node,
    id: &str,
) -> Result<Value, reqwest::StatusCode> {
    let resp = http
        .get(node.url(&format!("/api/v2/executions/{id}")))
        .bearer_auth(node.token())
        .send()
        .await
        .unwrap();
    if !resp.status().is_success() {
        return Err(resp.status());
    }
    Ok(resp.json().await.unwrap())
}

/// Polls an execution until `done` holds; returns it.
pub(super) async fn poll_until(
    http: &reqwest::Client,
    node: &Node,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        // A 503 (the store out of reach, as right after an outage) is
        // asked again, as its Retry-After tells a client to.
        let detail = match try_execution(http, node, id).await {
            Ok(detail) if done(&detail) => return detail,
            Ok(detail) => detail,
            Err(reqwest::StatusCode::SERVICE_UNAVAILABLE) => {
                json!({ "answer": 503 })
            }
            Err(status) => panic!("GET execution {id}: {status}"),
        };
        assert!(
            Instant::now() < deadline,
            "{id} not {what} within {DEADLINE:?}:\n{detail:#}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls an execution until it has ended (neither queued nor running);
/// returns it.
pub(super) async fn finished(http: &reqwest::Client, node: &Node, id: &str) -> Value {
    poll_until(http, node, id, "finished", |d| {
        d["status"] != "queued" && d["status"] != "running"
    })
    .await
}

/// The node still runs a normal step (a `trivial` one, which the node must
/// have loaded) to success.
pub(super) async fn assert_node_still_works(node: &Node) {
    let http = client();
    let id = execute(
        &http,
        node,
        json!({ "id": "after", "name": "after", "timezone": "UTC",
                "steps": [{ "id": "t", "type": "trivial", "config": {} }] }),
    )
    .await;
    let done = finished(&http, node, &id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
}

/// The step run of `step_id` that is in flight: its latest attempt runs.
pub(super) fn in_flight(detail: &Value, step_id: &str) -> bool {
    detail["status"] == "running"
        && detail["steps"].as_array().is_some_and(|steps| {
            steps.last().is_some_and(|s| {
                s["step_id"] == step_id
                    && s["attempts"]
                        .as_array()
                        .and_then(|a| a.last())
                        .is_some_and(|a| a["status"] == "running")
            })
        })
}

pub(super) fn is_final(detail: &Value) -> bool {
    !matches!(detail["status"].as_str(), Some("queued" | "running") | None)
}

/// The step ids in the order of their step runs.
pub(super) fn path(detail: &Value) -> Vec<&str> {
    detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step_id"].as_str().unwrap())
        .collect()
}

/// Checks the stored rows of every execution against each other; returns
/// how many executions there are.
async fn assert_store_consistent(store: &Store) -> usize {
    let rows = store
        .list_executions(&ExecutionFilter {
            limit: 1000,
            ..ExecutionFilter::default()
        })
        .await
        .unwrap();
    for e in &rows {
        let id = &e.id;
        assert!(
            !matches!(e.status.as_str(), "queued" | "running"),
            "execution {id} left {}",
            e.status
        );
        assert!(e.started_at_us.is_some(), "execution {id} has no start");
        assert!(e.finished_at_us.is_some(), "execution {id} has no end");
        assert!(e.job_version.is_some(), "execution {id} has no job version");
        let runs = store.list_step_runs(id).await.unwrap();
        let attempts = store.list_attempts(id).await.unwrap();
        assert_eq!(
            e.step_runs,
            runs.len() as i64,
            "execution {id}: step_runs vs stored step runs"
        );
        for (i, run) in runs.iter().enumerate() {
            let seq = run.seq;
            assert_eq!(
                seq,
                i as i64 + 1,
                "execution {id}: step runs numbered with gaps"
            );
            assert!(
                !matches!(run.status.as_str(), "queued" | "running"),
                "step run {id}#{seq} left {}",
                run.status
            );
            assert!(
                run.finished_at_us.is_some(),
                "step run {id}#{seq} has no end"
            );
            let mine: Vec<_> = attempts.iter().filter(|a| a.seq == seq).collect();
            assert_eq!(
                run.attempts,
                mine.len() as i64,
                "step run {id}#{seq}: attempt count vs stored attempts"
            );
            for (j, a) in mine.iter().enumerate() {
                let n = a.attempt;
                assert_eq!(
                    n,
                    j as i64 + 1,
                    "step run {id}#{seq}: attempts numbered with gaps"
                );
                assert!(
                    !matches!(a.status.as_str(), "queued" | "running"),
                    "attempt {id}#{seq}#{n} left {}",
                    a.status
                );
                let end = a
                    .finished_at_us
                    .unwrap_or_else(|| panic!("attempt {id}#{seq}#{n} has no end"));
                assert!(
                    end >= a.started_at_us,
                    "attempt {id}#{seq}#{n} ends before it starts"
                );
                // An interrupted attempt ended somewhere in the downtime:
                // its duration is unknown.
                assert_eq!(
                    a.duration_us.is_some(),
                    a.status != "interrupted",
                    "attempt {id}#{seq}#{n} ({}) duration {:?}",
                    a.status,
                    a.duration_us
                );
            }
            let last = mine.last().unwrap();
            assert_eq!(
                run.status, last.status,
                "step run {id}#{seq} ends with its last attempt"
            );
            assert_eq!(run.error, last.error, "step run {id}#{seq}: error");
            assert_eq!(run.output, last.output, "step run {id}#{seq}: output");
        }
        assert!(
            attempts.iter().all(|a| runs.iter().any(|r| r.seq == a.seq)),
            "execution {id} has attempts without a step run"
        );
    }
    rows.len()
}

fn error_kind(v: &Value) -> &str {
    v["error"]["kind"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_step_then_restart_recovers_by_policy() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(fixtures::SCRIPT, plugins.join("script.wasm")).unwrap();
    let http = client();

    // Node A, and two executions in their long step.
    let token = operator_token(&data, &plugins);
    let start = |name| {
        Node::start(
            name,
            meridian_node(&data, &plugins),
            tmp.path(),
            Token::Given(&token),
        )
    };
    let mut a = start("a").await;
    let a_ready = t0.elapsed();
    // The failing job first: its 20 s step is surely in flight at the
    // kill. Then the resumable one, killed as soon as its long step is
    // seen running, so the kill does not wait on anything else.
    let failing = execute(
        &http,
        &a,
        json!({
            "id": "recovery-fail",
            "name": "failed after a crash",
            "timezone": "UTC",
            "on_interrupted": "fail",
            "steps": [
                { "id": "long", "type": "script", "timeout_ms": 60_000,
                  "config": { "sleep_ms": FAILED_SLEEP_MS, "output": "never" } },
            ],
        }),
    )
    .await;
    let before_f = poll_until(&http, &a, &failing, "in its long step", |d| {
        in_flight(d, "long")
    })
    .await;
    let t_submitted = Instant::now();
    let resumable = execute(
        &http,
        &a,
        json!({
            "id": "recovery-resume",
            "name": "resumed after a crash",
            "timezone": "UTC",
            "steps": [
                { "id": "first", "type": "script",
                  "config": { "output": "first-${execution.id}" } },
                { "id": "long", "type": "script", "timeout_ms": 60_000,
                  "retry": { "max_attempts": 2, "initial_interval_ms": 10 },
                  "config": { "sleep_ms": RESUMED_SLEEP_MS,
                              "output": { "from_first": "${steps.first.output}",
                                          "attempt": "${execution.attempt}" } } },
            ],
        }),
    )
    .await;
    let before_r = poll_until(&http, &a, &resumable, "in its long step", |d| {
        in_flight(d, "long")
    })
    .await;
    let seen_running = t_submitted.elapsed();
    assert_eq!(path(&before_r), ["first", "long"], "{before_r:#}");
    assert_eq!(before_r["steps"][0]["status"], "succeeded", "{before_r:#}");
    assert_eq!(path(&before_f), ["long"], "{before_f:#}");

    // kill -9 mid-step.
    let status = a.kill_9();
    assert_eq!(status.signal(), Some(9), "node a: {status}");
    let killed_at = Instant::now();
    // How far into its attempt 1 the resumable long step was killed (the
    // margin left is RESUMED_SLEEP_MS minus this).
    let killed_into = before_r["steps"][1]["attempts"][0]["started_at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            chrono::Utc::now()
                .signed_duration_since(t)
                .num_milliseconds()
        })
        .unwrap();

    // What A recorded survived the kill: both still running, the long
    // attempts in flight (else the kill came too late: see RESUMED_SLEEP_MS).
    {
        let store = Store::open_sqlite(&data.join("meridian.db")).await.unwrap();
        for (id, seq) in [(&resumable, 2), (&failing, 1)] {
            let e = store.get_execution(id).await.unwrap().unwrap();
            assert_eq!(e.status, "running", "execution {id} after the kill");
            assert_eq!(e.step_runs, seq, "execution {id} after the kill");
            let attempts = store.list_attempts(id).await.unwrap();
            let last = attempts.last().unwrap();
            assert_eq!(
                (last.seq, last.attempt, last.status.as_str()),
                (seq, 1, "running"),
                "execution {id}: the long step was not in flight at the kill \
                 ({killed_into} ms into the resumable one's attempt 1)"
            );
        }
        let first = &store.list_step_runs(&resumable).await.unwrap()[0];
        assert_eq!(first.status, "succeeded");
        assert_eq!(
            first.output.as_deref(),
            Some(format!("\"first-{resumable}\"").as_str())
        );
    }

    // Node B on the same data directory recovers both.
    let mut b = start("b").await;
    let b_ready = killed_at.elapsed();
    let log = b.stderr();
    assert!(
        log.contains("recovered executions: 0 queued again, 1 resumed, 1 failed (interrupted)"),
        "node b did not report the recovery"
    );
    let r = poll_until(&http, &b, &resumable, "final", is_final).await;
    let f = poll_until(&http, &b, &failing, "final", is_final).await;
    let recovered = killed_at.elapsed();

    // retry_step: resumed at "long", attempt 2 succeeds with the output
    // of "first", which ran once (on node A).
    assert_eq!(r["status"], "succeeded", "{r:#}");
    assert_eq!(r["error"], Value::Null, "{r:#}");
    assert_eq!(r["recoveries"], 1, "{r:#}");
    assert_eq!(r["step_runs"], 2, "{r:#}");
    assert_eq!(path(&r), ["first", "long"], "{r:#}");
    let first = &r["steps"][0];
    assert_eq!(first["attempt_count"], 1, "{r:#}");
    assert_eq!(first["attempts"].as_array().unwrap().len(), 1, "{r:#}");
    for key in ["status", "started_at", "finished_at", "output"] {
        assert_eq!(first[key], before_r["steps"][0][key], "first.{key}: {r:#}");
    }
    let long = &r["steps"][1];
    assert_eq!(long["status"], "succeeded", "{r:#}");
    assert_eq!(long["attempt_count"], 2, "{r:#}");
    let attempts = long["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{r:#}");
    assert_eq!(attempts[0]["status"], "interrupted", "{r:#}");
    assert_eq!(error_kind(&attempts[0]), "interrupted", "{r:#}");
    assert_eq!(
        attempts[0]["started_at"], before_r["steps"][1]["attempts"][0]["started_at"],
        "{r:#}"
    );
    assert!(!attempts[0]["finished_at"].is_null(), "{r:#}");
    assert_eq!(attempts[1]["status"], "succeeded", "{r:#}");
    let expected = json!({ "from_first": format!("first-{resumable}"), "attempt": 2 });
    assert_eq!(attempts[1]["output"], expected, "{r:#}");
    assert_eq!(long["output"], expected, "{r:#}");

    // fail: failed with kind interrupted, its attempt interrupted.
    assert_eq!(f["status"], "failed", "{f:#}");
    assert_eq!(error_kind(&f), "interrupted", "{f:#}");
    assert_eq!(f["recoveries"], 0, "{f:#}");
    assert_eq!(f["step_runs"], 1, "{f:#}");
    assert_eq!(path(&f), ["long"], "{f:#}");
    let long = &f["steps"][0];
    assert_eq!(long["status"], "interrupted", "{f:#}");
    assert_eq!(long["attempt_count"], 1, "{f:#}");
    assert_eq!(long["attempts"].as_array().unwrap().len(), 1, "{f:#}");
    let attempt = &long["attempts"][0];
    assert_eq!(attempt["status"], "interrupted", "{f:#}");
    assert_eq!(error_kind(attempt), "interrupted", "{f:#}");
    assert!(!attempt["finished_at"].is_null(), "{f:#}");
    assert!(!f["finished_at"].is_null(), "{f:#}");

    // Its log, written by both nodes (the router flushes as it goes), is
    // served by the API: node A's first attempt and node B's second, each
    // in the execution's log; and the zone's log of the day has them too.
    let text = http
        .get(b.url(&format!("/api/v2/executions/{resumable}/logs?format=text")))
        .bearer_auth(b.token())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("execution started"), "{text}");
    assert!(text.contains("resuming a recovered execution"), "{text}");
    assert!(text.contains("attempt succeeded"), "{text}");
    let zone_dir = data.join("logs").join("timezones").join("UTC");
    let zone_files: Vec<_> = std::fs::read_dir(&zone_dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        !zone_files.is_empty(),
        "no zone log in {}",
        zone_dir.display()
    );

    // The store, read directly while B still runs (WAL), is consistent.
    let store = Store::open_sqlite(&data.join("meridian.db")).await.unwrap();
    assert_eq!(assert_store_consistent(&store).await, 2);

    // The CLI, another process on the same file, lists both as the API does.
    let out = meridian_node(&data, &plugins)
        .args(["executions", "list", "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "executions list: {}: {stderr}",
        out.status
    );
    let listed: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("executions list --json: {e}: {stderr}"));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:#?}");
    for d in [&r, &f] {
        let row = listed
            .iter()
            .find(|e| e["id"] == d["id"])
            .unwrap_or_else(|| panic!("{} not listed: {listed:#?}", d["id"]));
        for key in [
            "status",
            "job_id",
            "step_runs",
            "recoveries",
            "error",
            "finished_at",
        ] {
            assert_eq!(row[key], d[key], "{key} of {}", d["id"]);
        }
    }

    // SIGTERM: B stops cleanly, and leaves the store as it was.
    let status = b.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "node b on SIGTERM: {status}");
    assert_eq!(assert_store_consistent(&store).await, 2);

    println!(
        "recovery timings: node a ready {a_ready:?}; the resumable one in its long step {seen_running:?} \
         after submitting it; killed {killed_into} ms into the resumable attempt 1 \
         (of {RESUMED_SLEEP_MS} ms); node b ready {b_ready:?} after the kill; both final {recovered:?} \
         after the kill; total {:?}",
        t0.elapsed()
    );
}
