//! The REST API: through the router, and over a real socket.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use meridian::api::{AppState, router};
use meridian_tests::{TestRuntime, fixtures};
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

async fn state() -> (TestRuntime, Arc<AppState>) {
    let rt = TestRuntime::new("", &[fixtures::TRIVIAL, fixtures::SCRIPT]).await;
    let store = meridian::store::Store::open_sqlite(&rt.data_dir.path().join("meridian.db"))
        .await
        .unwrap();
    let engine = Arc::new(meridian::engine::Engine::new(
        rt.runtime.clone(),
        store.clone(),
        Arc::new(meridian::engine::SystemTimer),
    ));
    let (executions, _) = meridian::engine::service::Executions::start(
        engine,
        meridian::queue::QueueConfig::default(),
        Arc::new(meridian::scheduler::SystemClock),
        meridian::scheduler::SchedulerConfig::default(),
    )
    .await
    .unwrap();
    let state = Arc::new(AppState {
        runtime: rt.runtime.clone(),
        store,
        executions: Arc::new(executions),
        started: std::time::Instant::now(),
    });
    (rt, state)
}

async fn post(state: Arc<AppState>, uri: &str, body: &str) -> (StatusCode, String, Value) {
    let res = router(state)
        .oneshot(
            Request::post(uri)
                .header("content-type", "application/json")
                .body(Body::from(body.to_owned()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        ctype,
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
    let res = router(state)
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        ctype,
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
