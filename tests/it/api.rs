//! The REST API: through the router, and over a real socket.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use meridian::api::{AppState, router};
use meridian_tests::{ADMIN_TOKEN, TestNode, fixtures};
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

/// A node as `meridian serve` builds one, with the `trivial` and `script`
/// fixtures; every request of these tests sends its admin token.
pub(crate) async fn state() -> (TestNode, Arc<AppState>) {
    let node = TestNode::start("", &[fixtures::TRIVIAL, fixtures::SCRIPT]).await;
    let state = Arc::clone(&node.state);
    (node, state)
}

/// One request through the router: status, headers and the raw body.
async fn request(
    state: Arc<AppState>,
    method: &str,
    uri: &str,
    body: &str,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    request_as(state, Some(ADMIN_TOKEN), method, uri, body).await
}

/// One request with this bearer token (or none).
pub(crate) async fn request_as(
    state: Arc<AppState>,
    token: Option<&str>,
    method: &str,
    uri: &str,
    body: &str,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = router(state)
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, body.to_vec())
}

fn content_type(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn post(state: Arc<AppState>, uri: &str, body: &str) -> (StatusCode, String, Value) {
    let (status, headers, body) = request(state, "POST", uri, body).await;
    (
        status,
        content_type(&headers),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

async fn wait_status(state: &Arc<AppState>, id: &str, want: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, _, body) = get(state.clone(), &format!("/api/v2/executions/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["status"] == want {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {} (want {want}): {body:#}",
            body["status"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn jobs_are_versioned_run_now_and_watched() {
    let (_rt, state) = state().await;
    let job = serde_json::json!({
        "id": "api-job", "name": "API job", "timezone": "Asia/Kolkata",
        "params": { "who": { "type": "string", "default": "ops" } },
        "steps": [
            { "id": "one", "type": "script", "config": { "output": { "n": 1 } } },
            { "id": "two", "type": "script", "config": { "output": "${steps.one.output.n}" } }
        ]
    });
    let (status, _, body) = post(state.clone(), "/api/v2/jobs", &job.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 1);
    // The same definition again: still version 1; an edit: version 2.
    let (_, _, body) = post(state.clone(), "/api/v2/jobs", &job.to_string()).await;
    assert_eq!(body["version"], 1);
    let mut edited = job.clone();
    edited["name"] = "API job, edited".into();
    let (_, _, body) = post(state.clone(), "/api/v2/jobs", &edited.to_string()).await;
    assert_eq!(body["version"], 2);
    let (status, _, body) = get(state.clone(), "/api/v2/jobs/api-job").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["definition"]["name"], "API job, edited");

    let (status, _, body) = post(
        state.clone(),
        "/api/v2/jobs/execute",
        r#"{"job_id":"api-job","params":{"who":"sre"}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(body["status_url"], format!("/api/v2/executions/{id}"));
    let done = wait_status(&state, &id, "succeeded").await;
    assert_eq!(done["job_version"], 2);
    assert_eq!(done["timezone"], "Asia/Kolkata");
    assert_eq!(done["params"]["who"], "sre");
    assert_eq!(done["steps"][1]["output"], 1);
    assert_eq!(done["steps"][1]["attempts"][0]["status"], "succeeded");

    let (status, _, body) = get(state.clone(), "/api/v2/executions?job_id=api-job").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["executions"][0]["id"], id.as_str());
    // Finished: cancelling is a conflict.
    let (status, ctype, body) = post(
        state.clone(),
        &format!("/api/v2/executions/{id}/cancel"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(ctype, "application/problem+json");
}

#[tokio::test]
async fn a_running_execution_is_cancelled_through_the_api() {
    let (_rt, state) = state().await;
    let body = serde_json::json!({ "job": {
        "id": "spin-job", "name": "spins",
        "steps": [ { "id": "spin", "type": "script", "config": { "spin": true }, "timeout_ms": 60000 } ]
    }});
    let (status, _, body) = post(state.clone(), "/api/v2/jobs/execute", &body.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["execution_id"].as_str().unwrap().to_owned();
    wait_status(&state, &id, "running").await;
    let (status, _, body) = post(
        state.clone(),
        &format!("/api/v2/executions/{id}/cancel"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "cancelling");
    let done = wait_status(&state, &id, "cancelled").await;
    assert_eq!(done["steps"][0]["attempts"][0]["status"], "cancelled");
}

#[tokio::test]
async fn bad_job_input_is_refused_with_paths_and_stores_nothing() {
    let (_rt, state) = state().await;
    let (status, ctype, body) = post(state.clone(), "/api/v2/jobs", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(body["code"], "malformed_json");
    let (status, _, body) = post(
        state.clone(),
        "/api/v2/jobs",
        r#"{"id":"x","name":"x","steps":[{"id":"a","type":"script","timeout_ms":"soon"}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["path"], "steps[0].timeout_ms", "{body}");
    let (status, _, body) = post(
        state.clone(),
        "/api/v2/jobs",
        r#"{"id":"x","name":"x","timezone":"Nowhere/City","steps":[{"id":"a","type":"nope"}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let paths: Vec<_> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["timezone", "steps[0].type"], "{body}");
    let (status, _, _) = get(state.clone(), "/api/v2/jobs/x").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Validation alone answers 200 with the problems.
    let (status, _, body) = post(
        state.clone(),
        "/api/v2/jobs/validate",
        r#"{"id":"x","name":"x","steps":[{"id":"a","type":"script","config":{"colour":1}}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["valid"], false);
    assert_eq!(body["errors"][0]["path"], "steps[0].config", "{body}");
    // Parameters are checked against the job before anything is queued.
    let job = r#"{"job":{"id":"p","name":"p","params":{"n":{"type":"integer","required":true}},"steps":[{"id":"a","type":"script"}]},"params":{"n":"three"}}"#;
    let (status, _, body) = post(state.clone(), "/api/v2/jobs/execute", job).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["path"], "params.n", "{body}");
    let (_, _, body) = get(state.clone(), "/api/v2/executions?job_id=p").await;
    assert_eq!(body["executions"], serde_json::json!([]));
}

async fn get(state: Arc<AppState>, uri: &str) -> (StatusCode, String, Value) {
    let (status, headers, body) = request(state, "GET", uri, "").await;
    (
        status,
        content_type(&headers),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn health_reports_loaded_plugins() {
    let (_rt, state) = state().await;
    let (status, _, body) = get(state, "/api/v2/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"][0]["name"], "store");
    assert_eq!(body["checks"][0]["status"], "ok");
    let names: Vec<_> = body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"http") && names.contains(&"trivial"),
        "{names:?}"
    );
}

#[tokio::test]
async fn step_types_carry_their_config_schema() {
    let (_rt, state) = state().await;
    let (status, _, body) = get(state, "/api/v2/steps/types").await;
    assert_eq!(status, StatusCode::OK);
    let http = body["step_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "http")
        .expect("the http step type");
    assert!(http["config_schema"].is_object(), "{http}");
    assert!(http["config_schema"].to_string().contains("url"), "{http}");
    assert!(http["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(http["source"]["kind"], "built_in");
}

#[tokio::test]
async fn unknown_routes_are_problem_json() {
    let (_rt, state) = state().await;
    let (status, ctype, body) = get(state, "/api/v2/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(body["code"], "not_found");
}

#[tokio::test]
async fn serves_over_a_real_socket() {
    let (_rt, state) = state().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(meridian::api::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let body: Value = reqwest::get(format!("http://{addr}/api/v2/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "ok");
    let http = reqwest::Client::new();
    let jobs = format!("http://{addr}/api/v2/jobs");
    let res = http.get(&jobs).send().await.unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert!(res.headers().contains_key("www-authenticate"));
    let res = http
        .get(&jobs)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn schedule_preview_lists_fires_with_offsets_and_flags() {
    let (_rt, state) = state().await;
    let (status, _, body) = get(
        state.clone(),
        "/api/v2/schedules/preview?cron=30%202%20*%20*%20*&tz=Europe/Berlin&count=3&from=2026-03-27T00:00:00Z",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["fires"][2]["at"], "2026-03-29T03:00:00+02:00");
    assert_eq!(body["fires"][2]["flag"], "shifted_from_gap");
    assert_eq!(body["fires"][0]["offset"], "+01:00");

    let (status, ctype, body) = get(
        state,
        "/api/v2/schedules/preview?cron=0%2025%20*%20*%20*&tz=Nowhere&count=x&gap=sideways&colour=red",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(body["code"], "validation_failed");
    let mut paths: Vec<_> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(paths, ["colour", "count", "cron", "gap", "tz"], "{body}");
}

#[tokio::test]
async fn performance_summary_answers_json_with_no_data() {
    let (_rt, state) = state().await;
    let (status, ctype, body) = get(state, "/api/v2/performance/summary").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ctype, "application/json");
    assert_eq!(body["windows"], serde_json::json!(["1m", "5m", "15m"]));
    assert_eq!(body["queues"], serde_json::json!([]));
    assert_eq!(body["step_types"], serde_json::json!([]));
    let generated = body["generated_at"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(generated).unwrap();
}

#[tokio::test]
async fn performance_summary_reports_queues_and_step_types() {
    let (_rt, state) = state().await;
    let job = |id: &str, config: Value| {
        serde_json::json!({ "job": {
            "id": id, "name": id, "timezone": "America/Chicago",
            "steps": [ { "id": "only", "type": "script", "config": config } ]
        }})
        .to_string()
    };
    let runs = [
        (
            "perf-ok",
            serde_json::json!({ "sleep_ms": 30 }),
            "succeeded",
        ),
        (
            "perf-ok",
            serde_json::json!({ "sleep_ms": 30 }),
            "succeeded",
        ),
        (
            "perf-bad",
            serde_json::json!({ "fail": { "kind": "failed" } }),
            "failed",
        ),
    ];
    for (id, config, want) in runs {
        let (status, _, body) = post(state.clone(), "/api/v2/jobs/execute", &job(id, config)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let execution = body["execution_id"].as_str().unwrap().to_owned();
        wait_status(&state, &execution, want).await;
    }
    // The queue's figures are recorded just after the execution's status.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let body = loop {
        let (status, _, body) = get(state.clone(), "/api/v2/performance/summary").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["queues"][0]["windows"]["1m"]["count"] == 3 {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "{body:#}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let sane = |p: &Value| {
        let [p50, p90, p99, max] =
            ["p50", "p90", "p99", "max"].map(|k| p[k].as_f64().unwrap_or_else(|| panic!("{p}")));
        assert!(0.0 <= p50 && p50 <= p90 && p90 <= p99 && p99 <= max, "{p}");
        assert!(max < 30_000.0, "{p}");
    };

    let queue = &body["queues"][0];
    assert_eq!(body["queues"].as_array().unwrap().len(), 1, "{body:#}");
    assert_eq!(queue["zone"], "America/Chicago");
    assert_eq!(queue["depth"], 0);
    assert_eq!(queue["running"], 0);
    assert!(queue["oldest_wait_ms"].is_null(), "{queue}");
    for window in ["1m", "5m", "15m"] {
        let w = &queue["windows"][window];
        assert_eq!(w["count"], 3, "{w}");
        let error_rate = w["error_rate"].as_f64().unwrap();
        assert!((error_rate - 1.0 / 3.0).abs() < 1e-9, "{w}");
        assert!(w["throughput_per_s"].as_f64().unwrap() > 0.0, "{w}");
        sane(&w["wait_ms"]);
        sane(&w["run_ms"]);
        // Two of the three runs busy-waited 30 ms.
        assert!(w["run_ms"]["p90"].as_f64().unwrap() >= 29.0, "{w}");
    }

    let script = body["step_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step_type"] == "script")
        .unwrap_or_else(|| panic!("{body:#}"));
    let w = &script["windows"]["1m"];
    assert_eq!(w["count"], 3, "{w}");
    assert!(
        (w["error_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9,
        "{w}"
    );
    sane(&w["duration_ms"]);
    assert!(w["duration_ms"]["max"].as_f64().unwrap() >= 29.0, "{w}");
    assert_eq!(script["windows"]["15m"]["count"], 3);
}

async fn get_text(state: Arc<AppState>, uri: &str) -> (StatusCode, String, String) {
    let (status, headers, body) = request(state, "GET", uri, "").await;
    (
        status,
        content_type(&headers),
        String::from_utf8(body).unwrap(),
    )
}

/// The log file is written by the log router (tested in `meridian::logging`
/// and end to end by `recovery::`); here it is written as the router
/// would, to check how the API serves it: JSON lines, text, and a followed
/// stream that ends once the execution has.
#[tokio::test]
async fn execution_logs_are_served_as_json_text_and_a_followed_stream() {
    let (_rt, state) = state().await;
    let body = serde_json::json!({ "job": {
        "id": "logged", "name": "logged",
        "steps": [ { "id": "a", "type": "script", "config": { "output": 1 } } ]
    }});
    let (status, _, body) = post(state.clone(), "/api/v2/jobs/execute", &body.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["execution_id"].as_str().unwrap().to_owned();
    wait_status(&state, &id, "succeeded").await;
    let file = meridian::logging::execution_log_path(&state.log_dir, &id).unwrap();
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let lines = [
        r#"{"ts":"2026-03-30T05:20:00.000Z","level":"info","target":"meridian::engine","message":"execution started","fields":{},"span":{}}"#,
        r#"{"ts":"2026-03-30T05:20:00.100Z","level":"info","target":"meridian::engine","message":"attempt succeeded","fields":{"step_id":"a","attempt":1},"span":{}}"#,
    ];
    std::fs::write(&file, format!("{}\n{}\n", lines[0], lines[1])).unwrap();

    let uri = format!("/api/v2/executions/{id}/logs");
    let (status, ctype, text) = get_text(state.clone(), &uri).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype, "application/x-ndjson");
    assert_eq!(text.lines().collect::<Vec<_>>(), lines);
    let (_, ctype, text) = get_text(state.clone(), &format!("{uri}?format=text")).await;
    assert!(ctype.starts_with("text/plain"));
    assert!(
        text.contains("INFO  attempt succeeded attempt=1 step_id=a"),
        "{text}"
    );
    let (_, ctype, text) = get_text(state.clone(), &format!("{uri}?follow=true")).await;
    assert_eq!(ctype, "text/event-stream");
    assert_eq!(text.matches("event: line").count(), 2, "{text}");
    assert!(text.contains(&format!("event: end\ndata: {id}")), "{text}");

    let (status, ctype, _) = get_text(state.clone(), &format!("{uri}?format=xml")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(ctype, "application/problem+json");
    let (status, _, _) = get_text(state.clone(), "/api/v2/executions/nope/logs").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get_text(state, "/api/v2/executions/..%2F..%2Fetc/logs").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn send(
    state: Arc<AppState>,
    method: &str,
    uri: &str,
    body: &str,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let (status, headers, body) = request(state, method, uri, body).await;
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

async fn put(state: Arc<AppState>, uri: &str, body: &str) -> (StatusCode, Value) {
    let (status, _, body) = send(state, "PUT", uri, body).await;
    (status, body)
}

async fn delete(state: Arc<AppState>, uri: &str) -> StatusCode {
    send(state, "DELETE", uri, "").await.0
}

async fn store_script_job(state: &Arc<AppState>, id: &str) {
    let job = serde_json::json!({
        "id": id, "name": id,
        "steps": [{ "id": "one", "type": "script", "config": { "output": { "n": 1 } } }]
    });
    let (status, _, body) = post(state.clone(), "/api/v2/jobs", &job.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn schedule_executions(state: &Arc<AppState>, id: &str) -> Vec<Value> {
    let (status, _, body) = get(
        state.clone(),
        &format!("/api/v2/executions?schedule_id={id}&limit=500"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["executions"].as_array().unwrap().clone()
}

fn error_paths(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {body}"))
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn schedules_fire_pause_resume_trigger_backfill_and_delete() {
    let (_rt, state) = state().await;
    store_script_job(&state, "tick-job").await;
    let spec = serde_json::json!({
        "id": "tick", "job_id": "tick-job", "cron": "* * * * * *", "timezone": "Asia/Kolkata"
    });
    let (status, headers, body) = send(
        state.clone(),
        "POST",
        "/api/v2/schedules",
        &spec.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers["location"], "/api/v2/schedules/tick");
    assert_eq!(body["id"], "tick");
    assert_eq!(body["enabled"], true);
    assert_eq!(body["misfire"]["policy"], "latest");
    assert!(body["created_at"].is_string(), "{body}");
    assert_eq!(body["created_at"], body["updated_at"]);
    let fires = body["next_fires"].as_array().unwrap();
    assert_eq!(fires.len(), 5, "{body}");
    assert!(
        fires[0]["at"].as_str().unwrap().ends_with("+05:30"),
        "{body}"
    );
    assert_eq!(fires[0]["dst"], false);
    assert!(fires[0]["flag"].is_null());
    let created_at =
        chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap()).unwrap();

    // It fires on its own, and the runs succeed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let runs = schedule_executions(&state, "tick").await;
        if runs.iter().any(|r| {
            r["trigger"] == "schedule" && r["schedule_id"] == "tick" && r["status"] == "succeeded"
        }) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no run: {runs:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Paused: no new fires.
    let (status, _, body) = post(state.clone(), "/api/v2/schedules/tick/pause", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["enabled"], false);
    assert_eq!(body["next_fires"], serde_json::json!([]));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let settled = schedule_executions(&state, "tick").await.len();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(schedule_executions(&state, "tick").await.len(), settled);

    let (status, _, body) = post(state.clone(), "/api/v2/schedules/tick/resume", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["enabled"], true);
    assert_eq!(body["next_fires"].as_array().unwrap().len(), 5);

    // A manual run.
    let (status, headers, body) =
        send(state.clone(), "POST", "/api/v2/schedules/tick/trigger", "").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(body["status_url"], format!("/api/v2/executions/{id}"));
    assert_eq!(headers["location"], format!("/api/v2/executions/{id}"));
    let done = wait_status(&state, &id, "succeeded").await;
    assert_eq!(done["trigger"], "manual");
    assert_eq!(done["schedule_id"], "tick");

    // A past 5-second window, before the schedule existed; twice.
    let from = chrono::DateTime::from_timestamp(created_at.timestamp() - 60, 0).unwrap();
    let to = from + chrono::TimeDelta::seconds(4);
    let range = serde_json::json!({ "from": from.to_rfc3339(), "to": to.to_rfc3339() });
    let (status, _, body) = post(
        state.clone(),
        "/api/v2/schedules/tick/backfill",
        &range.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["fires"], 5, "{body}");
    assert_eq!(body["already_recorded"], 0, "{body}");
    let ids = body["execution_ids"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 5);
    for id in &ids {
        let done = wait_status(&state, id.as_str().unwrap(), "succeeded").await;
        assert_eq!(done["trigger"], "backfill");
    }
    let (status, _, body) = post(
        state.clone(),
        "/api/v2/schedules/tick/backfill",
        &range.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["fires"], 5, "{body}");
    assert_eq!(body["already_recorded"], 5, "{body}");
    assert_eq!(body["execution_ids"], serde_json::json!([]));

    assert_eq!(
        delete(state.clone(), "/api/v2/schedules/tick").await,
        StatusCode::NO_CONTENT
    );
    let (status, ctype, body) = get(state.clone(), "/api/v2/schedules/tick").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(body["code"], "schedule_not_found");
    assert_eq!(
        delete(state.clone(), "/api/v2/schedules/tick").await,
        StatusCode::NOT_FOUND
    );
    for action in ["pause", "resume", "trigger"] {
        let (status, _, body) = post(
            state.clone(),
            &format!("/api/v2/schedules/tick/{action}"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}: {body}");
        assert_eq!(body["code"], "schedule_not_found");
    }
}

#[tokio::test]
async fn schedules_are_listed_paged_and_replaced() {
    let (_rt, state) = state().await;
    store_script_job(&state, "a-job").await;
    store_script_job(&state, "b-job").await;
    for (id, job) in [("s1", "a-job"), ("s2", "a-job"), ("s3", "b-job")] {
        let spec = serde_json::json!({
            "id": id, "job_id": job, "cron": "30 2 * * *", "timezone": "Europe/Berlin"
        });
        let (status, _, body) = post(state.clone(), "/api/v2/schedules", &spec.to_string()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let ids = |body: &Value| -> Vec<String> {
        body["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, _, body) = get(state.clone(), "/api/v2/schedules").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids(&body), ["s1", "s2", "s3"]);
    assert!(body["next_after"].is_null());
    let (_, _, body) = get(state.clone(), "/api/v2/schedules?job_id=a-job&limit=1").await;
    assert_eq!(ids(&body), ["s1"]);
    assert_eq!(body["next_after"], "s1");
    let (_, _, body) = get(
        state.clone(),
        "/api/v2/schedules?job_id=a-job&limit=1&after=s1",
    )
    .await;
    assert_eq!(ids(&body), ["s2"]);
    let (status, _, body) = get(state.clone(), "/api/v2/schedules?limit=0&colour=red").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let mut paths = error_paths(&body);
    paths.sort();
    assert_eq!(paths, ["colour", "limit"]);

    let (_, _, before) = get(state.clone(), "/api/v2/schedules/s1").await;
    assert_eq!(
        before["next_fires"][0]["nominal"].as_str().unwrap()[11..],
        *"02:30:00"
    );
    let replacement = serde_json::json!({
        "id": "s1", "job_id": "b-job", "cron": "0 9 * * 1-5", "timezone": "America/New_York",
        "overlap": "buffer_one", "misfire": { "policy": "all", "window_s": 60 }
    });
    let (status, body) = put(
        state.clone(),
        "/api/v2/schedules/s1",
        &replacement.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["job_id"], "b-job");
    assert_eq!(body["overlap"], "buffer_one");
    assert_eq!(body["created_at"], before["created_at"]);
    let (_, _, after) = get(state.clone(), "/api/v2/schedules/s1").await;
    assert_eq!(after["cron"], "0 9 * * 1-5");
    assert_eq!(after["misfire"]["window_s"], 60);
    assert_eq!(after["created_at"], before["created_at"]);
    assert_eq!(
        after["next_fires"][0]["nominal"].as_str().unwrap()[11..],
        *"09:00:00"
    );

    // The body's id must be the URL's; a missing schedule is a 404.
    let (status, body) = put(
        state.clone(),
        "/api/v2/schedules/s2",
        &replacement.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_paths(&body), ["id"]);
    let mut missing = replacement.clone();
    missing["id"] = "nope".into();
    let (status, body) = put(
        state.clone(),
        "/api/v2/schedules/nope",
        &missing.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "schedule_not_found");
    let (status, _, _) = get(state.clone(), "/api/v2/schedules/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_schedule_input_is_refused_with_paths_and_stores_nothing() {
    let (_rt, state) = state().await;
    store_script_job(&state, "real-job").await;
    let refused = |body: Value| {
        let state = state.clone();
        async move {
            let (status, ctype, problem) =
                post(state.clone(), "/api/v2/schedules", &body.to_string()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
            assert_eq!(ctype, "application/problem+json");
            assert_eq!(problem["code"], "validation_failed");
            let id = body["id"].as_str().unwrap();
            let (status, _, _) = get(state, &format!("/api/v2/schedules/{id}")).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{id} was stored");
            error_paths(&problem)
        }
    };
    let paths = refused(serde_json::json!({
        "id": "x1", "job_id": "ghost", "cron": "61 * * * *", "timezone": "Mars/Base"
    }))
    .await;
    assert_eq!(paths, ["cron", "timezone", "job_id"]);
    let paths = refused(serde_json::json!({
        "id": "x2", "job_id": "ghost", "cron": "* * * * *", "timezone": "UTC"
    }))
    .await;
    assert_eq!(paths, ["job_id"]);
    let paths = refused(serde_json::json!({
        "id": "x3", "job_id": "real-job", "cron": "* * * * *", "timezone": "UTC",
        "misfire": { "policy": "sometimes" }
    }))
    .await;
    assert_eq!(paths, ["misfire.policy"]);
    let paths = refused(serde_json::json!({
        "id": "x4", "job_id": "real-job", "cron": "* * * * *", "timezone": "UTC", "colour": "red"
    }))
    .await;
    assert_eq!(paths, ["colour"]);

    // A duplicate id is a conflict; the first one stays as it was.
    let spec = serde_json::json!({
        "id": "dup", "job_id": "real-job", "cron": "* * * * * *", "timezone": "UTC",
        "enabled": false
    });
    let (status, _, body) = post(state.clone(), "/api/v2/schedules", &spec.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut again = spec.clone();
    again["cron"] = "0 0 * * *".into();
    let (status, ctype, body) = post(state.clone(), "/api/v2/schedules", &again.to_string()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(body["code"], "schedule_exists");
    let (_, _, body) = get(state.clone(), "/api/v2/schedules/dup").await;
    assert_eq!(body["cron"], "* * * * * *");
    assert_eq!(body["next_fires"], serde_json::json!([]));

    // Backfill ranges.
    let now = chrono::Utc::now();
    let backfill = |from: String, to: String| {
        let state = state.clone();
        async move {
            post(
                state,
                "/api/v2/schedules/dup/backfill",
                &serde_json::json!({ "from": from, "to": to }).to_string(),
            )
            .await
        }
    };
    let hours_ago = |h: i64| (now - chrono::TimeDelta::hours(h)).to_rfc3339();
    let (status, _, body) = backfill(hours_ago(1), hours_ago(2)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_paths(&body), ["from"]);
    let (status, _, body) = backfill(hours_ago(1), hours_ago(-1)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_paths(&body), ["to"]);
    let (status, _, body) = backfill("yesterday".into(), hours_ago(1)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_paths(&body), ["from"]);
    // Every second for three hours: more than the cap.
    let (status, _, body) = backfill(hours_ago(4), hours_ago(1)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("smaller ranges"),
        "{body}"
    );
    let (_, _, body) = get(state.clone(), "/api/v2/executions?schedule_id=dup").await;
    assert_eq!(body["executions"], serde_json::json!([]));
}

async fn store_tagged_job(state: &Arc<AppState>, id: &str, owner: &str, tags: &[&str]) {
    let job = serde_json::json!({
        "id": id, "name": format!("{id} name"), "timezone": "Europe/Paris",
        "owner": owner, "tags": tags,
        "steps": [
            { "id": "one", "type": "script", "config": { "output": 1 } },
            { "id": "two", "type": "script", "config": { "output": 2 } }
        ]
    });
    let (status, _, body) = post(state.clone(), "/api/v2/jobs", &job.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn job_ids(body: &Value) -> Vec<String> {
    body["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("no jobs in {body}"))
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn jobs_are_listed_paged_and_filtered() {
    let (_rt, state) = state().await;
    store_tagged_job(&state, "j1", "ops", &["nightly", "etl"]).await;
    store_tagged_job(&state, "j2", "data", &["etl"]).await;
    store_tagged_job(&state, "j3", "ops", &[]).await;
    store_tagged_job(&state, "j4", "ops", &["etl"]).await;
    store_tagged_job(&state, "j5", "data", &["nightly"]).await;
    // A second version of j1 is what gets listed.
    store_tagged_job(&state, "j1", "ops", &["nightly", "etl", "new"]).await;

    let (status, _, body) = get(state.clone(), "/api/v2/jobs").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(job_ids(&body), ["j1", "j2", "j3", "j4", "j5"]);
    assert!(body["next_after"].is_null(), "{body}");
    let first = &body["jobs"][0];
    assert_eq!(first["version"], 2);
    assert_eq!(first["name"], "j1 name");
    assert_eq!(first["timezone"], "Europe/Paris");
    assert_eq!(first["owner"], "ops");
    assert_eq!(first["tags"], serde_json::json!(["nightly", "etl", "new"]));
    assert_eq!(first["step_count"], 2);
    assert!(first["created_at"].is_string(), "{first}");

    // Keyset paging.
    let (_, _, body) = get(state.clone(), "/api/v2/jobs?limit=2").await;
    assert_eq!(job_ids(&body), ["j1", "j2"]);
    assert_eq!(body["next_after"], "j2");
    let (_, _, body) = get(state.clone(), "/api/v2/jobs?limit=2&after=j2").await;
    assert_eq!(job_ids(&body), ["j3", "j4"]);
    let (_, _, body) = get(state.clone(), "/api/v2/jobs?limit=2&after=j4").await;
    assert_eq!(job_ids(&body), ["j5"]);
    assert!(body["next_after"].is_null(), "{body}");

    // Filters fill whole pages, reading past jobs that do not match.
    let (_, _, body) = get(state.clone(), "/api/v2/jobs?tag=etl&limit=2").await;
    assert_eq!(job_ids(&body), ["j1", "j2"]);
    assert_eq!(body["next_after"], "j2");
    let (_, _, body) = get(state.clone(), "/api/v2/jobs?tag=etl&limit=2&after=j2").await;
    assert_eq!(job_ids(&body), ["j4"]);
    assert!(body["next_after"].is_null(), "{body}");
    let (_, _, body) = get(state.clone(), "/api/v2/jobs?owner=ops&tag=etl").await;
    assert_eq!(job_ids(&body), ["j1", "j4"]);
    let (_, _, body) = get(state.clone(), "/api/v2/jobs?owner=data").await;
    assert_eq!(job_ids(&body), ["j2", "j5"]);
    let (_, _, body) = get(state.clone(), "/api/v2/jobs?owner=nobody").await;
    assert!(job_ids(&body).is_empty());
    assert!(body["next_after"].is_null(), "{body}");
}

#[tokio::test]
async fn bad_job_list_parameters_are_refused_with_paths() {
    let (_rt, state) = state().await;
    for (uri, want) in [
        ("/api/v2/jobs?limit=0", vec!["limit"]),
        ("/api/v2/jobs?limit=lots", vec!["limit"]),
        ("/api/v2/jobs?limit=501", vec!["limit"]),
        ("/api/v2/jobs?colour=red", vec!["colour"]),
    ] {
        let (status, ctype, body) = get(state.clone(), uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(ctype, "application/problem+json", "{uri}");
        assert_eq!(body["code"], "validation_failed", "{uri}: {body}");
        assert_eq!(error_paths(&body), want, "{uri}: {body}");
    }
    store_script_job(&state, "v-job").await;
    let (status, ctype, body) = get(state.clone(), "/api/v2/jobs/v-job/versions/first").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(error_paths(&body), ["version"]);
}

#[tokio::test]
async fn job_versions_are_listed_and_read() {
    let (_rt, state) = state().await;
    store_tagged_job(&state, "hist", "ops", &["a"]).await;
    store_tagged_job(&state, "hist", "ops", &["b"]).await;
    let (status, _, body) = get(state.clone(), "/api/v2/jobs/hist/versions").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let versions = body["versions"].as_array().unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| v["version"].clone())
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(versions[0]["created_at"].is_string(), "{body}");
    assert_eq!(body["current_version"], 2);
    assert_eq!(body["deleted"], false);

    let (status, _, body) = get(state.clone(), "/api/v2/jobs/hist/versions/1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 1);
    assert_eq!(body["definition"]["tags"], serde_json::json!(["a"]));

    let (status, ctype, body) = get(state.clone(), "/api/v2/jobs/hist/versions/3").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(body["code"], "version_not_found");
    for uri in ["/api/v2/jobs/nope/versions", "/api/v2/jobs/nope/versions/1"] {
        let (status, _, body) = get(state.clone(), uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
        assert_eq!(body["code"], "job_not_found", "{uri}");
    }
}

#[tokio::test]
async fn a_deleted_job_keeps_its_history_and_executions() {
    let (_rt, state) = state().await;
    store_script_job(&state, "gone").await;
    let body = serde_json::json!({ "job_id": "gone" });
    let (status, _, body) = post(state.clone(), "/api/v2/jobs/execute", &body.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let execution = body["execution_id"].as_str().unwrap().to_owned();
    wait_status(&state, &execution, "succeeded").await;

    assert_eq!(
        delete(state.clone(), "/api/v2/jobs/gone").await,
        StatusCode::NO_CONTENT
    );
    let (status, _, body) = get(state.clone(), "/api/v2/jobs/gone").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "job_not_found");
    let (_, _, body) = get(state.clone(), "/api/v2/jobs").await;
    assert!(job_ids(&body).is_empty(), "{body}");
    // Its history stays readable.
    let (status, _, body) = get(state.clone(), "/api/v2/jobs/gone/versions").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["deleted"], true);
    assert!(body["current_version"].is_null(), "{body}");
    let (status, _, body) = get(state.clone(), "/api/v2/jobs/gone/versions/1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["definition"]["id"], "gone");
    let (status, _, body) = get(state.clone(), &format!("/api/v2/executions/{execution}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "succeeded");

    // Deleting again, or a job that never was: 404 problem+json.
    for uri in ["/api/v2/jobs/gone", "/api/v2/jobs/never"] {
        let (status, headers, body) = send(state.clone(), "DELETE", uri, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
        assert_eq!(headers["content-type"], "application/problem+json");
        assert_eq!(body["code"], "job_not_found");
    }
}

#[tokio::test]
async fn a_job_with_schedules_is_not_deleted() {
    let (_rt, state) = state().await;
    store_script_job(&state, "kept").await;
    for id in ["kept-a", "kept-b"] {
        let spec = serde_json::json!({
            "id": id, "job_id": "kept", "cron": "30 2 * * *", "timezone": "Europe/Berlin"
        });
        let (status, _, body) = post(state.clone(), "/api/v2/schedules", &spec.to_string()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, headers, body) = send(state.clone(), "DELETE", "/api/v2/jobs/kept", "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["code"], "job_has_schedules");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("kept-a") && detail.contains("kept-b"),
        "{detail}"
    );
    let (status, _, _) = get(state.clone(), "/api/v2/jobs/kept").await;
    assert_eq!(status, StatusCode::OK);

    for id in ["kept-a", "kept-b"] {
        assert_eq!(
            delete(state.clone(), &format!("/api/v2/schedules/{id}")).await,
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(
        delete(state.clone(), "/api/v2/jobs/kept").await,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn queues_and_execution_status_show_what_runs() {
    let (_rt, state) = state().await;
    let (status, _, body) = get(state.clone(), "/api/v2/queues").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["queues"].as_array().unwrap().is_empty(), "{body}");

    // One finished execution in Tokyo.
    let job = serde_json::json!({ "job": {
        "id": "tokyo", "name": "tokyo", "timezone": "Asia/Tokyo",
        "steps": [ { "id": "a", "type": "script", "config": { "output": 1 } } ]
    }});
    let (status, _, body) = post(state.clone(), "/api/v2/jobs/execute", &job.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let done = body["execution_id"].as_str().unwrap().to_owned();
    wait_status(&state, &done, "succeeded").await;
    // The windows are recorded just after the execution's status.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let body = loop {
        let (status, _, body) = get(state.clone(), "/api/v2/queues").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["queues"][0]["windows"]["1m"]["count"] == 1 {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "{body:#}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let q = &body["queues"][0];
    assert_eq!(q["zone"], "Asia/Tokyo");
    assert_eq!(q["depth"], 0);
    assert_eq!(q["running"], 0);
    assert!(q["workers"].as_u64().is_some(), "{q}");
    assert!(q["oldest_wait_ms"].is_null(), "{q}");
    assert!(q["throughput_per_min"].as_u64().unwrap() >= 1, "{q}");
    assert!(q["wait_p50_ms"].as_f64().is_some(), "{q}");
    assert!(q["wait_p99_ms"].as_f64().is_some(), "{q}");
    assert_eq!(q["submitted"], 1);
    assert_eq!(q["succeeded"], 1);
    assert_eq!(q["windows"]["5m"]["count"], 1, "{q}");

    // A spinning execution shows as running.
    let spin = serde_json::json!({ "job": {
        "id": "spinner", "name": "spins", "timezone": "Asia/Tokyo",
        "steps": [ { "id": "spin", "type": "script", "config": { "spin": true }, "timeout_ms": 60000 } ]
    }});
    let (status, _, body) = post(state.clone(), "/api/v2/jobs/execute", &spin.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let running = body["execution_id"].as_str().unwrap().to_owned();
    wait_status(&state, &running, "running").await;
    let (status, _, body) = get(state.clone(), "/api/v2/execution/status").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let runs = body["running"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{body:#}");
    assert_eq!(runs[0]["id"], running.as_str());
    assert_eq!(runs[0]["job_id"], "spinner");
    assert_eq!(runs[0]["timezone"], "Asia/Tokyo");
    assert!(runs[0]["started_at"].is_string(), "{body}");
    assert_eq!(body["running_truncated"], false);
    assert_eq!(body["queued"], 0);
    assert!(body["generated_at"].is_string(), "{body}");
    let q = &body["queues"][0];
    assert_eq!(q["zone"], "Asia/Tokyo");
    assert_eq!(q["running"], 1, "{body:#}");
    assert_eq!(q["depth"], 0);

    let (status, _, body) = post(
        state.clone(),
        &format!("/api/v2/executions/{running}/cancel"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_status(&state, &running, "cancelled").await;
}

/// The security team's routes: audit query (with its filters checked),
/// verify, grants, plugins and each plugin's capabilities.
#[tokio::test]
async fn audit_grants_and_capabilities_routes() {
    let (_rt, state) = state().await;
    let entry = meridian::audit::AuditEntry {
        kind: "capability".into(),
        plugin: Some("trivial".into()),
        capability: Some("http".into()),
        target: Some("GET https://example.com/".into()),
        decision: "denied".into(),
        at_us: 1_767_225_600_000_000,
        ..Default::default()
    };
    state.store.append_audit(&[entry]).await.unwrap();

    let (status, _, body) = get(
        state.clone(),
        "/api/v2/audit?decision=denied&plugin=trivial",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["records"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["records"][0]["plugin"], "trivial");
    // (The first record is the test token's creation, at the epoch.)
    let (_, _, body) = get(state.clone(), "/api/v2/audit?since=2026-01-02T00:00:00Z").await;
    assert!(body["records"].as_array().unwrap().is_empty(), "{body}");

    let (status, ct, body) = get(
        state.clone(),
        "/api/v2/audit?decision=maybe&since=yesterday&limit=0&colour=red",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(ct, "application/problem+json");
    let mut paths: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(paths, ["colour", "decision", "limit", "since"], "{body}");

    let (status, _, body) = get(state.clone(), "/api/v2/audit/verify").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["chain_ok"], true, "{body}");
    assert_eq!(body["records"], 2);
    // This in-process node mirrors nothing (no log files installed): the
    // mirror is missing, and so is the anchor (its signing key, made at
    // start, has signed no checkpoint yet), so the trail is not verified.
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["mirror"]["ok"], false, "{body}");
    assert_eq!(body["anchor"]["problem"]["fault"], "missing", "{body}");
    let reasons = body["reasons"].to_string();
    assert!(reasons.contains("the mirror is missing"), "{body}");
    assert!(!reasons.contains(state.log_dir.to_str().unwrap()), "{body}");
    // With mirrored files: a record mirrored as stored agrees; one whose
    // mirrored hash is not the store's is named.
    let (_, _, trail) = get(state.clone(), "/api/v2/audit").await;
    let line = |seq: i64, hash: &str| {
        format!(
            "{}\n",
            json!({"ts": "2026-11-30T10:00:00.000Z", "level": "INFO", "target": "meridian::audit",
                   "message": "audit record", "fields": {"seq": seq, "hash": hash}, "span": {}})
        )
    };
    let audit_dir = state.log_dir.join("audit");
    std::fs::create_dir_all(&audit_dir).unwrap();
    let first_hash = trail["records"][0]["hash"].as_str().unwrap();
    std::fs::write(audit_dir.join("2026-11-30.log"), line(1, first_hash)).unwrap();
    let (_, _, body) = get(state.clone(), "/api/v2/audit/verify").await;
    assert_eq!(body["mirror"]["ok"], true, "{body}");
    assert_eq!(body["mirror"]["mirrored"], 1, "{body}");
    assert_eq!(body["mirror"]["not_mirrored"], 1, "{body}");
    std::fs::write(audit_dir.join("2026-12-01.log"), line(2, &"0".repeat(64))).unwrap();
    let (_, _, body) = get(state.clone(), "/api/v2/audit/verify").await;
    assert_eq!(body["chain_ok"], true, "the chain itself is intact: {body}");
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["mirror"]["ok"], false, "{body}");
    assert_eq!(body["mirror"]["problem"]["seq"], 2, "{body}");
    let message = body["mirror"]["problem"]["message"].as_str().unwrap();
    assert!(
        message.contains("2026-12-01.log") && !message.contains(state.log_dir.to_str().unwrap()),
        "{message}"
    );
    std::fs::remove_dir_all(&audit_dir).unwrap();

    let (status, _, body) = get(state.clone(), "/api/v2/grants").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["grants"].is_array(), "{body}");

    let (status, _, body) = get(state.clone(), "/api/v2/plugins").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "trivial"),
        "{body}"
    );

    let (status, _, body) = get(state.clone(), "/api/v2/plugins/trivial/capabilities").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["plugin"], "trivial");
    assert_eq!(body["used"][0]["decision"], "denied");
    assert_eq!(body["denied_calls"], 1);

    let (status, ct, body) = get(state, "/api/v2/plugins/..%2F..%2Fetc/capabilities").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(ct, "application/problem+json");
}

/// Every route, each role: no token is 401 (but the health check), a role
/// without the permission is 403, a role with it gets past the guard; every
/// refusal and every change is on the audit trail with the token's name.
#[tokio::test]
async fn every_route_checks_the_token_and_its_role() {
    use meridian::auth::{Role, create_token};
    let (_rt, state) = state().await;
    let mut tokens = std::collections::HashMap::new();
    for role in Role::ALL {
        let (t, _, _) = create_token(&state.store, Some(role.as_str()), role, "test")
            .await
            .unwrap();
        tokens.insert(role, t);
    }
    // (method, uri, who may): R = any role, O = operator/admin,
    // A = auditor/admin, X = admin, P = public.
    let routes: &[(&str, &str, char)] = &[
        ("GET", "/api/v2/health", 'P'),
        ("GET", "/api/v2/openapi.json", 'P'),
        ("GET", "/api/v2/docs", 'P'),
        ("GET", "/api/v2/steps/types", 'R'),
        ("GET", "/api/v2/schedules/preview?cron=@daily&tz=UTC", 'R'),
        ("GET", "/api/v2/schedules", 'R'),
        ("POST", "/api/v2/schedules", 'O'),
        ("GET", "/api/v2/schedules/s1", 'R'),
        ("PUT", "/api/v2/schedules/s1", 'O'),
        ("DELETE", "/api/v2/schedules/s1", 'O'),
        ("POST", "/api/v2/schedules/s1/pause", 'O'),
        ("POST", "/api/v2/schedules/s1/resume", 'O'),
        ("POST", "/api/v2/schedules/s1/trigger", 'O'),
        ("POST", "/api/v2/schedules/s1/backfill", 'O'),
        ("GET", "/api/v2/performance/summary", 'R'),
        ("GET", "/api/v2/jobs", 'R'),
        ("POST", "/api/v2/jobs", 'O'),
        ("POST", "/api/v2/jobs/validate", 'R'),
        ("POST", "/api/v2/jobs/execute", 'O'),
        ("POST", "/api/v2/jobs/schedule", 'O'),
        ("GET", "/api/v1/jobs", 'R'),
        ("POST", "/api/v1/jobs", 'O'),
        ("GET", "/metrics", 'R'),
        ("GET", "/api/v2/jobs/j1", 'R'),
        ("DELETE", "/api/v2/jobs/j1", 'O'),
        ("GET", "/api/v2/jobs/j1/versions", 'R'),
        ("GET", "/api/v2/jobs/j1/versions/1", 'R'),
        ("GET", "/api/v2/queues", 'R'),
        ("GET", "/api/v2/execution/status", 'R'),
        ("GET", "/api/v2/executions", 'R'),
        ("GET", "/api/v2/executions/e1", 'R'),
        ("GET", "/api/v2/executions/e1/logs", 'R'),
        ("POST", "/api/v2/executions/e1/cancel", 'O'),
        ("GET", "/api/v2/audit", 'A'),
        ("GET", "/api/v2/audit/verify", 'A'),
        ("GET", "/api/v2/grants", 'A'),
        ("POST", "/api/v2/grants", 'X'),
        ("PUT", "/api/v2/grants/g1", 'X'),
        ("DELETE", "/api/v2/grants/g1", 'X'),
        ("GET", "/api/v2/plugins", 'R'),
        ("GET", "/api/v2/plugins/trivial", 'R'),
        ("PUT", "/api/v2/plugins/p1", 'X'),
        ("DELETE", "/api/v2/plugins/p1", 'X'),
        ("GET", "/api/v2/plugins/trivial/capabilities", 'A'),
        ("GET", "/api/v2/tokens", 'X'),
        ("POST", "/api/v2/tokens", 'X'),
        ("DELETE", "/api/v2/tokens/t1", 'X'),
    ];
    let may = |who: char, role: Role| match who {
        'P' | 'R' => true,
        'O' => matches!(role, Role::Operator | Role::Admin),
        'A' => matches!(role, Role::Auditor | Role::Admin),
        _ => role == Role::Admin,
    };
    let mut refusals = 0;
    for &(method, uri, who) in routes {
        let (status, headers, body) = request_as(state.clone(), None, method, uri, "{}").await;
        if who == 'P' {
            assert_eq!(status, StatusCode::OK, "{method} {uri} without a token");
        } else {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} without a token"
            );
            assert_eq!(content_type(&headers), "application/problem+json");
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["code"], "unauthenticated");
            refusals += 1;
        }
        let (status, ..) = request_as(state.clone(), Some("mrd_forged"), method, uri, "{}").await;
        if who != 'P' {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with a forged token"
            );
            refusals += 1;
        }
        for role in Role::ALL {
            let (status, _, body) =
                request_as(state.clone(), Some(&tokens[&role]), method, uri, "{}").await;
            if may(who, role) {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{method} {uri} as {role:?}: {status}"
                );
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri} as {role:?}");
                let body: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(body["code"], "forbidden");
                assert!(
                    body["detail"].as_str().unwrap().contains(role.as_str()),
                    "{body}"
                );
                refusals += 1;
            }
        }
    }
    // The refusals, and the operator's attempted changes, are on the trail:
    // those without a valid token counted in their window's aggregate
    // record, the rest one record each.
    state.flush_refusals();
    state.audit.flush().await;
    let api = |decision: Option<&str>, actor: Option<&str>| {
        let store = state.store.clone();
        let decision = decision.map(String::from);
        let actor = actor.map(String::from);
        async move {
            store
                .audit_query(&meridian::audit::AuditQuery {
                    kind: Some("api".into()),
                    decision,
                    limit: 10_000,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_iter()
                .filter(|r| actor.is_none() || r.entry.actor == actor)
                .collect::<Vec<_>>()
        }
    };
    let aggregated = api(Some("unauthenticated"), None).await;
    assert_eq!(
        aggregated.len(),
        1,
        "one source, one window: {aggregated:#?}"
    );
    let counted: u64 = aggregated
        .iter()
        .map(|r| {
            let data: Value = serde_json::from_str(r.entry.data.as_deref().unwrap()).unwrap();
            data["count"].as_u64().unwrap()
        })
        .sum();
    let refused = counted as usize + api(Some("forbidden"), None).await.len();
    assert_eq!(refused, refusals);
    let by_operator = api(None, Some("token:operator")).await;
    assert!(
        by_operator.iter().any(
            |r| r.entry.target.as_deref() == Some("POST /api/v2/jobs/execute")
                && r.entry.detail.as_deref().unwrap().contains("role operator")
        ),
        "{by_operator:#?}"
    );
    // Reads are not recorded; only changes and refusals.
    assert!(!by_operator.iter().any(
        |r| r.entry.target.as_deref().unwrap().starts_with("GET ") && r.entry.decision == "ok"
    ));
}

/// Tokens and grants through the API (admin only): a token is shown once,
/// authenticates, and stops when revoked; a grant takes effect on this node
/// at once and is audited with the token's name.
#[tokio::test]
async fn admins_manage_tokens_and_grants() {
    let (_rt, state) = state().await;
    let (status, _, body) = post(
        state.clone(),
        "/api/v2/tokens",
        r#"{"role": "viewer", "name": "dash"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let (status, ..) = request_as(state.clone(), Some(&token), "GET", "/api/v2/jobs", "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = get(state.clone(), "/api/v2/tokens").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !body.to_string().contains(&token),
        "a token is listed: {body}"
    );
    let (status, _, body) = post(
        state.clone(),
        "/api/v2/tokens",
        r#"{"role": "root", "nmae": "x"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let mut paths: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(paths, ["nmae", "role"]);
    let (status, ..) = request(state.clone(), "DELETE", "/api/v2/tokens/dash", "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, ..) = request_as(state.clone(), Some(&token), "GET", "/api/v2/jobs", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let url = url::Url::parse("https://api.example.com/x").unwrap();
    assert!(state.runtime.plugin("trivial").is_some());
    let (status, _, body) = post(
        state.clone(),
        "/api/v2/grants",
        r#"{"plugin": "http", "http": [{"host": "api.example.com", "methods": ["GET"]}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["created_by"], "token:test-admin");
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(
        state
            .runtime
            .plugin("http")
            .unwrap()
            .grants()
            .check_http("GET", &url)
            .is_ok()
    );
    let (status, _, body) = post(
        state.clone(),
        "/api/v2/grants",
        r#"{"plugin": "http", "http": [{"host": "a b"}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["path"], "http[0].host");
    let (status, ..) = request(state.clone(), "DELETE", &format!("/api/v2/grants/{id}"), "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        state
            .runtime
            .plugin("http")
            .unwrap()
            .grants()
            .check_http("GET", &url)
            .is_err()
    );
    let (status, ..) = request(state.clone(), "DELETE", &format!("/api/v2/grants/{id}"), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _, body) = get(state.clone(), "/api/v2/audit?kind=grant").await;
    assert_eq!(status, StatusCode::OK);
    let actors: Vec<&str> = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors, ["token:test-admin", "token:test-admin"], "{body}");
    let (_, _, body) = get(state, "/api/v2/audit?kind=token&decision=revoked").await;
    assert_eq!(body["records"][0]["target"], "dash", "{body}");
}

/// An oversized body is a 413 problem and stores nothing.
#[tokio::test]
async fn an_oversized_body_is_refused_as_a_problem() {
    let (_rt, state) = state().await;
    let big = format!(
        r#"{{"id": "big", "name": "{}"}}"#,
        "x".repeat(meridian::api::MAX_BODY_BYTES)
    );
    let (status, headers, body) = request(state.clone(), "POST", "/api/v2/jobs", &big).await;
    assert_eq!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(content_type(&headers), "application/problem+json");
    let (_, _, body) = get(state, "/api/v2/jobs/big").await;
    assert_eq!(body["code"], "job_not_found");
}

/// Without a token the health check gives verdicts only (and the store
/// check's reason, which names nothing of the server); with one, the
/// details and the plugins. A plugin is inspected by name.
#[tokio::test]
async fn health_details_need_a_token_and_plugins_are_inspected() {
    let (_rt, state) = state().await;
    let (status, _, body) = request_as(state.clone(), None, "GET", "/api/v2/health", "").await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(body.get("plugins").is_none(), "{body}");
    let checks = body["checks"].as_array().unwrap();
    assert!(!checks.is_empty());
    assert!(
        checks
            .iter()
            .filter(|c| c["name"] != "store")
            .all(|c| c.get("detail").is_none() && c["status"].is_string()),
        "{body}"
    );
    assert_eq!(checks[0]["name"], "store");
    assert_eq!(
        checks[0]["detail"], "the store answers and takes writes",
        "{body}"
    );
    assert!(!body.to_string().contains("sha256:"), "{body}");

    let (_, _, body) = get(state.clone(), "/api/v2/health").await;
    assert!(
        body["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "trivial"),
        "{body}"
    );
    assert!(
        body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["detail"].is_string()),
        "{body}"
    );

    let (status, _, body) = get(state.clone(), "/api/v2/plugins/trivial").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "trivial");
    assert!(
        body["digest"].as_str().unwrap().starts_with("sha256:"),
        "{body}"
    );
    assert!(body["config_schema"].is_object(), "{body}");
    let (status, ct, _) = get(state, "/api/v2/plugins/..%2Fetc").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(ct, "application/problem+json");
}
