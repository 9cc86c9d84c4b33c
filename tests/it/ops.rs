//! Operations: GET /metrics after real executions, `meridian doctor` on
//! real data dirs (fresh, tampered, mis-granted), the V1 compatibility
//! endpoint and POST /api/v2/jobs/schedule — all through the real router,
//! store, engine and plugins.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use meridian::api::{AppState, router};
use meridian_tests::{TestNode, fixtures};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use tower::ServiceExt;

const TOKEN: &str = meridian_tests::ADMIN_TOKEN;

/// A node as `meridian serve` builds one (its runtime records capability
/// calls on the store's audit trail), with the `trivial` and `script`
/// fixtures.
async fn state() -> (TestNode, Arc<AppState>) {
    let node = TestNode::start("", &[fixtures::TRIVIAL, fixtures::SCRIPT]).await;
    let state = Arc::clone(&node.state);
    (node, state)
}

/// One request through the router with the admin token (or none):
/// status, content type, raw body.
async fn call(
    state: &Arc<AppState>,
    token: Option<&str>,
    method: &str,
    uri: &str,
    body: &str,
) -> (StatusCode, String, Vec<u8>) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = router(state.clone())
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(res.into_body(), 1 << 22)
        .await
        .unwrap();
    (status, ctype, body.to_vec())
}

async fn json_call(
    state: &Arc<AppState>,
    method: &str,
    uri: &str,
    body: &str,
) -> (StatusCode, Value) {
    let (status, _, body) = call(state, Some(TOKEN), method, uri, body).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn wait_finished(state: &Arc<AppState>, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, body) = json_call(state, "GET", &format!("/api/v2/executions/{id}"), "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["status"] == "succeeded" || body["status"] == "failed" {
            return body;
        }
        assert!(std::time::Instant::now() < deadline, "{body:#}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// One sample: its name, its labels, its value.
type Sample = (String, HashMap<String, String>, f64);

/// The samples of a Prometheus 0.0.4 text exposition: `name{labels}` →
/// value, with `# TYPE` lines checked to precede their samples.
fn parse_exposition(text: &str) -> (HashMap<String, String>, Vec<Sample>) {
    let mut types = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value of {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap();
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once("=\"").unwrap();
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
            None => (series.to_string(), HashMap::new()),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
            .unwrap_or(&name)
            .to_string();
        assert!(types.contains_key(&family), "no # TYPE before {line:?}");
        samples.push((name, labels, value));
    }
    (types, samples)
}

fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_executions_attempts_queues_and_requests() {
    let (_rt, state) = state().await;
    let (status, _, _) = call(&state, None, "GET", "/metrics", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a scrape needs a token");
    let job = json!({
        "id": "metered", "name": "Metered", "timezone": "Europe/Paris",
        "steps": [{ "id": "one", "type": "trivial" }]
    });
    let (status, body) = json_call(
        &state,
        "POST",
        "/api/v2/jobs/execute",
        &json!({ "job": job }).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let done = wait_finished(&state, body["execution_id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    // The engine records the execution just after it is stored as finished.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (types, samples) = loop {
        let (status, ctype, body) = call(&state, Some(TOKEN), "GET", "/metrics", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ctype, "text/plain; version=0.0.4");
        let text = String::from_utf8(body).unwrap();
        let (types, samples) = parse_exposition(&text);
        let finished = sample(
            &samples,
            "meridian_executions_finished_total",
            &[("zone", "Europe/Paris"), ("outcome", "succeeded")],
        );
        if finished == Some(1.0) {
            break (types, samples);
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(types["meridian_executions_finished_total"], "counter");
    assert_eq!(types["meridian_step_attempt_duration_seconds"], "histogram");
    assert_eq!(types["meridian_queue_depth"], "gauge");
    assert_eq!(
        sample(
            &samples,
            "meridian_step_attempts_total",
            &[("step_type", "trivial"), ("outcome", "succeeded")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &samples,
            "meridian_step_attempt_duration_seconds_count",
            &[("step_type", "trivial")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &samples,
            "meridian_execution_duration_seconds_bucket",
            &[("zone", "Europe/Paris"), ("le", "+Inf")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &samples,
            "meridian_queue_runs_total",
            &[("zone", "Europe/Paris"), ("event", "submitted")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &samples,
            "meridian_queue_depth",
            &[("zone", "Europe/Paris")]
        ),
        Some(0.0)
    );
    // Requests by route template, not by raw path; the refused scrape too.
    assert_eq!(
        sample(
            &samples,
            "meridian_http_requests_total",
            &[
                ("route", "/api/v2/jobs/execute"),
                ("method", "POST"),
                ("status", "202")
            ]
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &samples,
            "meridian_http_requests_total",
            &[("route", "/api/v2/executions/{id}"), ("status", "200")]
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        sample(
            &samples,
            "meridian_http_requests_total",
            &[("route", "/metrics"), ("status", "401")]
        ),
        Some(1.0)
    );
    assert!(
        !samples.iter().any(|(_, l, _)| l
            .get("route")
            .is_some_and(|r| r.contains(done["id"].as_str().unwrap()))),
        "a raw path leaked into a label"
    );
}

/// A capability call counted by capability and decision: the `http`
/// plugin, ungranted, asks for a URL and is denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_capability_calls_by_decision() {
    let (_rt, state) = state().await;
    let scrape = |state: Arc<AppState>| async move {
        let (_, _, body) = call(&state, Some(TOKEN), "GET", "/metrics", "").await;
        let (_, samples) = parse_exposition(&String::from_utf8(body).unwrap());
        sample(
            &samples,
            "meridian_capability_calls_total",
            &[("capability", "http"), ("decision", "denied")],
        )
        .unwrap_or(0.0)
    };
    let before = scrape(state.clone()).await;
    let job = json!({
        "id": "denied-call", "name": "Denied call",
        "steps": [{ "id": "get", "type": "http", "config": { "url": "http://127.0.0.1:9/nothing" } }]
    });
    let (status, body) = json_call(
        &state,
        "POST",
        "/api/v2/jobs/execute",
        &json!({ "job": job }).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_finished(&state, body["execution_id"].as_str().unwrap()).await;
    let after = scrape(state.clone()).await;
    assert!(after >= before + 1.0, "before {before}, after {after}");
}

async fn meridian(args: &[&str]) -> (ExitCode, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = std::iter::once("meridian").chain(args.iter().copied());
    let code = meridian::cli::run_args(argv, &mut out, &mut err).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn verdict_of<'a>(report: &'a Value, name: &str) -> &'a str {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no item {name}: {report:#}"))["status"]
        .as_str()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_fresh_data_dir_and_fails_a_tampered_audit_trail() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let (code, out, err) = meridian(&["--data-dir", dir, "doctor"]).await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}{err}");
    for item in [
        "config",
        "data-dir",
        "store-open",
        "store",
        "audit",
        "plugins",
        "logs",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("ok ") && l.split_whitespace().nth(1) == Some(item)),
            "{item} not ok:\n{out}"
        );
    }
    // Free space is the machine's, not the data dir's: a shared CI volume
    // under 10 % free is a correct `warn` (the thresholds are unit-tested in
    // doctor.rs). Here each volume is measured and not failed.
    for item in ["disk:data", "disk:logs"] {
        assert!(
            out.lines().any(|l| {
                let mut words = l.split_whitespace();
                matches!(words.next(), Some("ok" | "warn"))
                    && words.next() == Some(item)
                    && l.contains(" MiB free of ")
            }),
            "{item} not measured or failed:\n{out}"
        );
    }
    // Something on the trail (a token made), then edited in the database.
    let (code, _, err) =
        meridian(&["--data-dir", dir, "token", "create", "--role", "viewer"]).await;
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    let (code, out, _) = meridian(&["--data-dir", dir, "doctor", "--json"]).await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    use sqlx::Connection;
    let db = data.path().join("meridian.db");
    let mut raw = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET decision = 'revoked'")
        .execute(&mut raw)
        .await
        .unwrap();
    raw.close().await.unwrap();
    let (code, out, err) = meridian(&["--data-dir", dir, "doctor", "--json"]).await;
    assert_eq!(code, ExitCode::FAILURE, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["status"], "fail");
    assert_eq!(verdict_of(&report, "audit"), "fail");
    assert_eq!(verdict_of(&report, "store"), "ok");
    // A config that does not parse is an item too, not a crash.
    let bad = data.path().join("bad.toml");
    std::fs::write(&bad, "listen = 12\n").unwrap();
    let (code, out, _) = meridian(&[
        "--data-dir",
        dir,
        "--config",
        bad.to_str().unwrap(),
        "doctor",
    ])
    .await;
    assert_eq!(code, ExitCode::FAILURE, "{out}");
    assert!(out.starts_with("fail  config"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_warns_of_grants_that_apply_to_nothing() {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("meridian.toml");
    let other = format!("sha256:{}", "0".repeat(64));
    std::fs::write(
        &config,
        format!(
            r#"
[[grants]]
plugin = "no-such-plugin"
secrets = ["x"]

[[grants]]
plugin = "http"
digest = "{other}"
http = [{{ methods = ["GET"], host = "example.com" }}]

[[grants]]
plugin = "powershell"
secrets = ["missing-secret"]
"#
        ),
    )
    .unwrap();
    let (code, out, err) = meridian(&[
        "--data-dir",
        data.path().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "doctor",
        "--json",
    ])
    .await;
    assert_eq!(code, ExitCode::SUCCESS, "warnings do not fail: {out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["status"], "warn", "{report:#}");
    let item = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {report:#}"))
            .clone()
    };
    let unknown = item("grant:config[0]");
    assert_eq!(unknown["status"], "warn");
    assert!(
        unknown["detail"].as_str().unwrap().contains("not loaded"),
        "{unknown}"
    );
    let pinned = item("grant:config[1]");
    assert_eq!(pinned["status"], "warn");
    assert!(
        pinned["detail"].as_str().unwrap().contains(&other),
        "{pinned}"
    );
    let secret = item("grant:config[2]");
    assert_eq!(secret["status"], "warn");
    assert!(
        secret["detail"]
            .as_str()
            .unwrap()
            .contains("missing-secret"),
        "{secret}"
    );
    // The pinned grant does not apply: http asks for http and nothing gives it.
    assert_eq!(item("plugin:http")["status"], "info");
}

#[tokio::test]
async fn health_runs_the_probe_checks() {
    let (_rt, state) = state().await;
    let (status, body) = json_call(&state, "GET", "/api/v2/health", "").await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"logs")
            && names.contains(&"disk:data")
            && names.contains(&"disk:logs")
            && names.contains(&"plugin:trivial"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"audit"),
        "the probe does not verify the trail: {names:?}"
    );
    // A log root that is a file cannot take logs: the node is unhealthy.
    std::fs::write(&state.log_dir, "not a directory").unwrap();
    let (status, body) = json_call(&state, "GET", "/api/v2/health", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body:#}");
    assert_eq!(body["status"], "fail");
}

#[tokio::test]
async fn v1_jobs_become_v2_jobs_and_schedules() {
    let (_rt, state) = state().await;
    let v1 = json!({
        "name": "Nightly Cleanup", "type": "sql", "connection": "warehouse",
        "command": "DELETE FROM staging WHERE loaded < date('now', '-7 days')",
        "schedule": "0 2 * * *", "timezone": "Europe/Berlin"
    });
    let (status, body) = json_call(&state, "POST", "/api/v1/jobs", &v1.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body:#}");
    assert_eq!(body["job_id"], "nightly-cleanup");
    assert_eq!(body["version"], 1);
    assert_eq!(body["schedule_id"], "nightly-cleanup");
    assert_eq!(body["links"]["job"], "/api/v2/jobs/nightly-cleanup");
    assert_eq!(body["next_fires"].as_array().unwrap().len(), 5);
    let (_, job) = json_call(&state, "GET", "/api/v2/jobs/nightly-cleanup", "").await;
    let def = &job["definition"];
    assert_eq!(def["timezone"], "Europe/Berlin");
    assert_eq!(def["steps"][0]["id"], "main");
    assert_eq!(def["steps"][0]["type"], "sql");
    assert_eq!(def["steps"][0]["config"]["connection"], "warehouse");
    assert_eq!(def["steps"][0]["config"]["query"], v1["command"]);
    let (_, schedule) = json_call(&state, "GET", "/api/v2/schedules/nightly-cleanup", "").await;
    assert_eq!(schedule["cron"], "0 2 * * *");
    assert_eq!(schedule["timezone"], "Europe/Berlin");
    assert_eq!(schedule["job_id"], "nightly-cleanup");

    // PowerShell, unscheduled.
    let ps = json!({ "name": "Rotate", "type": "powershell", "command": "Get-Date" });
    let (status, body) = json_call(&state, "POST", "/api/v1/jobs", &ps.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body:#}");
    assert_eq!(body["schedule_id"], Value::Null);
    // Again: the name is taken.
    let (status, body) = json_call(&state, "POST", "/api/v1/jobs", &ps.to_string()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body:#}");
    assert_eq!(body["code"], "job_exists");

    // Listed back in the V1 shape; a multi-step v2 job is left out.
    let (status, _) = json_call(
        &state,
        "POST",
        "/api/v2/jobs",
        &json!({ "id": "two-steps", "name": "Two", "steps": [
            { "id": "a", "type": "trivial" }, { "id": "b", "type": "trivial" }
        ] })
        .to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, list) = json_call(&state, "GET", "/api/v1/jobs", "").await;
    assert_eq!(status, StatusCode::OK);
    let jobs = list["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{list:#}");
    assert_eq!(list["not_v1"], 1);
    let nightly = jobs.iter().find(|j| j["id"] == "nightly-cleanup").unwrap();
    assert_eq!(nightly["type"], "sql");
    assert_eq!(nightly["command"], v1["command"]);
    assert_eq!(nightly["schedule"], "0 2 * * *");
    assert_eq!(nightly["connection"], "warehouse");
    let rotate = jobs.iter().find(|j| j["id"] == "rotate").unwrap();
    assert_eq!(rotate["command"], "Get-Date");
}

#[tokio::test]
async fn bad_v1_jobs_name_v1_fields_and_store_nothing() {
    let (_rt, state) = state().await;
    let cases = [
        (
            json!({ "name": "x", "type": "sql", "connection": "c", "command": "SELECT 1", "colour": "red" }),
            "colour",
        ),
        (
            json!({ "name": "Bad cron", "type": "powershell", "command": "Get-Date", "schedule": "61 * * * *" }),
            "schedule",
        ),
        (
            json!({ "name": "Empty", "type": "powershell", "command": "  " }),
            "command",
        ),
        (
            json!({ "name": "No conn", "type": "sql", "command": "SELECT 1" }),
            "connection",
        ),
        (
            json!({ "name": "Zone", "type": "powershell", "command": "x", "timezone": "Mars/Olympus" }),
            "timezone",
        ),
        (
            json!({ "name": "Kind", "type": "bash", "command": "ls" }),
            "type",
        ),
    ];
    for (body, path) in cases {
        let (status, problem) = json_call(&state, "POST", "/api/v1/jobs", &body.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem:#}");
        assert_eq!(problem["code"], "validation_failed");
        let paths: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap())
            .collect();
        assert!(
            paths.iter().any(|p| p.starts_with(path)),
            "{body}: want {path}, got {paths:?}"
        );
    }
    let (_, list) = json_call(&state, "GET", "/api/v2/jobs", "").await;
    assert_eq!(list["jobs"], json!([]), "nothing stored");
    let (_, list) = json_call(&state, "GET", "/api/v2/schedules", "").await;
    assert_eq!(list["schedules"], json!([]), "nothing stored");
}

#[tokio::test]
async fn a_job_and_its_schedule_in_one_call() {
    let (_rt, state) = state().await;
    let job = json!({ "id": "daily", "name": "Daily", "timezone": "Asia/Tokyo",
        "steps": [{ "id": "one", "type": "trivial" }] });
    // A bad schedule: 400 with the schedule's path, and the job not stored.
    let (status, problem) = json_call(
        &state,
        "POST",
        "/api/v2/jobs/schedule",
        &json!({ "job": job, "schedule": { "cron": "0 25 * * *", "timezone": "Asia/Tokyo" } })
            .to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem:#}");
    assert!(
        problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "schedule.cron"),
        "{problem:#}"
    );
    let (status, _) = json_call(&state, "GET", "/api/v2/jobs/daily", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = json_call(
        &state,
        "POST",
        "/api/v2/jobs/schedule",
        &json!({ "job": job, "schedule": { "cron": "30 9 * * *", "timezone": "Asia/Tokyo", "jitter_s": 5 } })
            .to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body:#}");
    assert_eq!(body["job_id"], "daily");
    assert_eq!(body["job_version"], 1);
    assert_eq!(body["schedule_id"], "daily");
    let fires = body["next_fires"].as_array().unwrap();
    assert_eq!(fires.len(), 5);
    assert!(
        fires[0]["nominal"].as_str().unwrap().contains("09:30"),
        "{fires:?}"
    );
    // A second schedule for the stored job, by id.
    let (status, body) = json_call(
        &state,
        "POST",
        "/api/v2/jobs/schedule",
        &json!({ "job_id": "daily", "schedule": { "id": "daily-evening", "cron": "0 18 * * *", "timezone": "Asia/Tokyo" } })
            .to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body:#}");
    assert_eq!(body["job_version"], Value::Null);
    let (_, list) = json_call(&state, "GET", "/api/v2/schedules?job_id=daily", "").await;
    assert_eq!(list["schedules"].as_array().unwrap().len(), 2);
    // An unknown job, and a job_id that contradicts the outer one.
    let (status, problem) = json_call(
        &state,
        "POST",
        "/api/v2/jobs/schedule",
        &json!({ "job_id": "nope", "schedule": { "cron": "@daily", "timezone": "UTC" } })
            .to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem:#}");
    assert_eq!(problem["errors"][0]["path"], "job_id");
    let (status, problem) = json_call(
        &state,
        "POST",
        "/api/v2/jobs/schedule",
        &json!({ "job_id": "daily", "schedule": { "id": "x", "job_id": "other", "cron": "@daily", "timezone": "UTC" } }).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem:#}");
    assert_eq!(problem["errors"][0]["path"], "schedule.job_id");
}
