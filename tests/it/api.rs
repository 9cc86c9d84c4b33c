//! The REST API: through the router, and over a real socket.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use meridian::api::{AppState, router};
use meridian_tests::{TestRuntime, fixtures};
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

async fn state() -> (TestRuntime, Arc<AppState>) {
    let rt = TestRuntime::new("", &[fixtures::TRIVIAL]).await;
    let state = Arc::new(AppState {
        runtime: rt.runtime.clone(),
        store: meridian::store::Store::open_memory().await.unwrap(),
        started: std::time::Instant::now(),
    });
    (rt, state)
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
