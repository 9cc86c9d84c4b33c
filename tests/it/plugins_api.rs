//! Plugins uploaded and removed through the API (PUT and DELETE
//! /api/v2/plugins/{name}), and stored grants replaced (PUT
//! /api/v2/grants/{id}), through the router of a node built as `serve`
//! builds one.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use meridian::api::{AppState, router};
use meridian::runtime::{Digest, PluginSource};
use meridian_tests::{ADMIN_TOKEN, TestNode, fixtures};
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

/// The `trivial` fixture's bytes.
fn trivial() -> Vec<u8> {
    std::fs::read(fixtures::TRIVIAL).unwrap()
}

/// The same component with a custom section appended: it behaves the same
/// and has another digest (a rebuilt binary).
fn rebuilt(bytes: &[u8], tag: &str) -> Vec<u8> {
    let name = b"meridian-test";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(tag.as_bytes());
    assert!(section.len() < 128, "one-byte LEB128 size");
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    out.push(section.len() as u8);
    out.extend(section);
    out
}

/// A node whose upload limit is a little over the `trivial` and `script`
/// components, with a secret for the grant tests.
async fn node() -> (TestNode, Arc<AppState>) {
    let script = std::fs::metadata(fixtures::SCRIPT).unwrap().len() as usize;
    let limit = trivial().len().max(script) + 1024;
    let config =
        format!("[api]\nmax_plugin_bytes = {limit}\n[secrets]\ntoken = \"s3cr3t-token-value\"\n");
    let node = TestNode::start(&config, &[fixtures::SCRIPT]).await;
    let state = Arc::clone(&node.state);
    (node, state)
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: Value,
}

async fn send(
    state: &Arc<AppState>,
    token: Option<&str>,
    method: &str,
    uri: &str,
    body: Vec<u8>,
    content_length: bool,
) -> Answer {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/wasm");
    if content_length {
        req = req.header("content-length", body.len());
    }
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = router(Arc::clone(state))
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        content_type,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

async fn admin(state: &Arc<AppState>, method: &str, uri: &str, body: Vec<u8>) -> Answer {
    send(state, Some(ADMIN_TOKEN), method, uri, body, true).await
}

async fn json_request(state: &Arc<AppState>, method: &str, uri: &str, body: Value) -> Answer {
    admin(state, method, uri, body.to_string().into_bytes()).await
}

fn listed(state: &Arc<AppState>, name: &str) -> bool {
    state.runtime.plugins().iter().any(|p| p.info.name == name)
}

/// The `.wasm` files (and anything else) in the upload directory.
fn stored_files(node: &TestNode) -> Vec<String> {
    match std::fs::read_dir(node.config().upload_dir()) {
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
        Err(_) => Vec::new(),
    }
}

async fn plugin_records(state: &Arc<AppState>) -> Vec<meridian::audit::AuditRecord> {
    state.audit.flush().await;
    state
        .store
        .audit_query(&meridian::audit::AuditQuery {
            kind: Some("plugin".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn run_job(state: &Arc<AppState>, job_id: &str) -> Value {
    let res = json_request(
        state,
        "POST",
        "/api/v2/jobs/execute",
        json!({ "job_id": job_id }),
    )
    .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    let id = res.body["execution_id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let res = admin(
            state,
            "GET",
            &format!("/api/v2/executions/{id}"),
            Vec::new(),
        )
        .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        let status = res.body["status"].as_str().unwrap().to_owned();
        if !["queued", "running"].contains(&status.as_str()) {
            return res.body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {status}: {:#}",
            res.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// An admin uploads a component: it is stored, listed and runs jobs; a
/// re-upload replaces it (new digest on the trail); a restart loads it
/// again; DELETE takes it away and jobs using it no longer validate.
#[tokio::test]
async fn an_uploaded_plugin_runs_jobs_survives_a_restart_and_is_removed() {
    let (node, state) = node().await;
    let bytes = trivial();
    let first = Digest::of(&bytes);
    assert!(!listed(&state, "trivial"));

    let res = admin(&state, "PUT", "/api/v2/plugins/trivial", bytes.clone()).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["name"], "trivial");
    assert_eq!(res.body["digest"], first.to_string());
    let inspected = admin(&state, "GET", "/api/v2/plugins/trivial", Vec::new()).await;
    assert_eq!(inspected.body, res.body, "the inspect document");
    let list = admin(&state, "GET", "/api/v2/plugins", Vec::new()).await;
    assert!(
        list.body["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "trivial" && p["digest"] == first.to_string()),
        "{}",
        list.body
    );
    let file = node.config().upload_dir().join("trivial.wasm");
    assert_eq!(std::fs::read(&file).unwrap(), bytes);

    // A job using it validates, is stored and runs through the engine.
    let job = json!({
        "id": "uses-trivial", "name": "uses trivial",
        "steps": [{ "id": "one", "type": "trivial", "config": {} }]
    });
    let res = json_request(&state, "POST", "/api/v2/jobs/validate", job.clone()).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["valid"], true, "{}", res.body);
    let res = json_request(&state, "POST", "/api/v2/jobs", job.clone()).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let done = run_job(&state, "uses-trivial").await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["steps"][0]["output"], json!({ "ok": true }));

    // A rebuilt binary replaces it: 200, the new digest, the previous one
    // on the trail, and `?sha256=` checked.
    let second_bytes = rebuilt(&bytes, "v2");
    let second = Digest::of(&second_bytes);
    let res = admin(
        &state,
        "PUT",
        &format!("/api/v2/plugins/trivial?sha256={}", second.hex()),
        second_bytes.clone(),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["digest"], second.to_string());
    assert_eq!(state.runtime.plugin("trivial").unwrap().info.digest, second);
    assert_eq!(std::fs::read(&file).unwrap(), second_bytes);
    assert_eq!(stored_files(&node), ["trivial.wasm"]);
    let done = run_job(&state, "uses-trivial").await;
    assert_eq!(done["status"], "succeeded", "{done:#}");

    let records = plugin_records(&state).await;
    let seen: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r.entry.decision.as_str(),
                r.entry.digest.as_deref().unwrap(),
            )
        })
        .collect();
    let (first_s, second_s) = (first.to_string(), second.to_string());
    assert_eq!(
        seen,
        [
            ("created", first_s.as_str()),
            ("replaced", second_s.as_str())
        ]
    );
    for r in &records {
        assert_eq!(r.entry.actor.as_deref(), Some("token:test-admin"));
        assert_eq!(r.entry.plugin.as_deref(), Some("trivial"));
    }
    let data: Value = serde_json::from_str(records[1].entry.data.as_deref().unwrap()).unwrap();
    assert_eq!(data["previous_digest"], first_s);

    // A restart (the runtime `serve` builds from this config) loads it.
    let restarted = meridian::node::build_runtime(node.config()).await.unwrap();
    let again = restarted.plugin("trivial").expect("loaded at start");
    assert_eq!(again.info.digest, second);
    assert!(
        matches!(&again.info.source, PluginSource::File { path } if *path == file),
        "{:?}",
        again.info.source
    );

    // DELETE: the file and the plugin are gone; the job no longer validates.
    let res = admin(&state, "DELETE", "/api/v2/plugins/trivial", Vec::new()).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["digest"], second_s);
    assert!(!file.exists());
    assert!(!listed(&state, "trivial"));
    let res = json_request(&state, "POST", "/api/v2/jobs/validate", job).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["valid"], false, "{}", res.body);
    assert_eq!(
        res.body["errors"][0]["path"], "steps[0].type",
        "{}",
        res.body
    );
    let res = admin(&state, "DELETE", "/api/v2/plugins/trivial", Vec::new()).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let records = plugin_records(&state).await;
    assert_eq!(records.last().unwrap().entry.decision, "removed");
    assert!(
        meridian::audit::verify_store(&state.store)
            .await
            .unwrap()
            .ok
    );
}

/// Every refused upload is a 4xx problem document naming what is wrong,
/// and stores nothing: no file, no plugin, no plugin record.
#[tokio::test]
async fn bad_uploads_are_refused_and_store_nothing() {
    use meridian::auth::{Role, create_token};
    let (node, state) = node().await;
    let bytes = trivial();
    let limit = state.uploads.max_bytes;
    let (operator, _, _) = create_token(&state.store, Some("op"), Role::Operator, "test")
        .await
        .unwrap();

    let res = send(
        &state,
        None,
        "PUT",
        "/api/v2/plugins/trivial",
        bytes.clone(),
        true,
    )
    .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let res = send(
        &state,
        Some(&operator),
        "PUT",
        "/api/v2/plugins/trivial",
        bytes.clone(),
        true,
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.body["code"], "forbidden");
    let res = send(
        &state,
        Some(&operator),
        "DELETE",
        "/api/v2/plugins/script",
        Vec::new(),
        true,
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    let problem = |res: &Answer, status: StatusCode, path: &str| {
        assert_eq!(res.status, status, "{}", res.body);
        assert_eq!(res.content_type, "application/problem+json");
        assert_eq!(res.body["errors"][0]["path"], path, "{}", res.body);
    };
    let res = admin(
        &state,
        "PUT",
        "/api/v2/plugins/trivial",
        b"\0asm not a component".to_vec(),
    )
    .await;
    problem(&res, StatusCode::UNPROCESSABLE_ENTITY, "body");
    assert_eq!(res.body["code"], "invalid_plugin");
    // The component describes itself as `trivial`.
    let res = admin(&state, "PUT", "/api/v2/plugins/other", bytes.clone()).await;
    problem(&res, StatusCode::UNPROCESSABLE_ENTITY, "name");
    assert!(
        res.body["detail"].as_str().unwrap().contains("trivial"),
        "{}",
        res.body
    );
    let wrong = Digest::of(b"something else").hex();
    let res = admin(
        &state,
        "PUT",
        &format!("/api/v2/plugins/trivial?sha256={wrong}"),
        bytes.clone(),
    )
    .await;
    problem(&res, StatusCode::UNPROCESSABLE_ENTITY, "sha256");
    let res = admin(
        &state,
        "PUT",
        "/api/v2/plugins/trivial?sha256=xyz",
        bytes.clone(),
    )
    .await;
    problem(&res, StatusCode::BAD_REQUEST, "sha256");
    let res = admin(
        &state,
        "PUT",
        "/api/v2/plugins/trivial?shaa256=00",
        bytes.clone(),
    )
    .await;
    problem(&res, StatusCode::BAD_REQUEST, "shaa256");
    for name in ["..%2Fx", "a%2Fb", "..", "Trivial", "x.wasm"] {
        let res = admin(
            &state,
            "PUT",
            &format!("/api/v2/plugins/{name}"),
            bytes.clone(),
        )
        .await;
        problem(&res, StatusCode::BAD_REQUEST, "name");
        let res = admin(
            &state,
            "DELETE",
            &format!("/api/v2/plugins/{name}"),
            Vec::new(),
        )
        .await;
        problem(&res, StatusCode::BAD_REQUEST, "name");
    }
    // Built-in plugins are neither replaced nor removed.
    let res = admin(&state, "PUT", "/api/v2/plugins/http", bytes.clone()).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert_eq!(res.body["code"], "plugin_built_in");
    let res = admin(&state, "DELETE", "/api/v2/plugins/http", Vec::new()).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    // A plugin loaded from elsewhere (the fixture file) is not deleted.
    let res = admin(&state, "DELETE", "/api/v2/plugins/script", Vec::new()).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert_eq!(res.body["code"], "plugin_not_uploaded");
    assert!(std::path::Path::new(fixtures::SCRIPT).exists());
    assert!(listed(&state, "script"));

    // Over the limit: 413, whether the length is declared or only read.
    for declared in [true, false] {
        let res = send(
            &state,
            Some(ADMIN_TOKEN),
            "PUT",
            "/api/v2/plugins/trivial",
            vec![0u8; limit + 1],
            declared,
        )
        .await;
        assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.body);
        assert_eq!(res.content_type, "application/problem+json");
        assert_eq!(res.body["code"], "body_too_large");
        assert!(
            res.body["detail"]
                .as_str()
                .unwrap()
                .contains(&limit.to_string()),
            "{}",
            res.body
        );
    }
    // Other routes keep the 1 MiB limit, this one is not it.
    assert!(limit < meridian::api::MAX_BODY_BYTES);

    assert!(!listed(&state, "trivial") && !listed(&state, "other"));
    assert!(stored_files(&node).is_empty(), "{:?}", stored_files(&node));
    assert!(plugin_records(&state).await.is_empty());
}

/// A stored grant replaced through the API applies to the next step: a
/// secret the job reads is allowed, then (replaced) denied; the change is
/// on the trail; an unknown id is 404, a bad grant 400 naming its path
/// (as creating one), a body that is not JSON 400 `malformed_json`.
#[tokio::test]
async fn a_replaced_grant_applies_to_the_next_step() {
    let (_node, state) = node().await;
    let res = json_request(
        &state,
        "POST",
        "/api/v2/grants",
        json!({ "plugin": "script", "secrets": ["token"] }),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let id = res.body["id"].as_str().unwrap().to_owned();
    let job = json!({
        "id": "reads-secret", "name": "reads a secret",
        "steps": [{ "id": "one", "type": "script", "config": { "output": "${secrets.token}" } }]
    });
    let res = json_request(&state, "POST", "/api/v2/jobs", job).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let done = run_job(&state, "reads-secret").await;
    assert_eq!(done["status"], "succeeded", "{done:#}");

    let res = json_request(
        &state,
        "PUT",
        &format!("/api/v2/grants/{id}"),
        json!({ "plugin": "script", "secrets": ["other"] }),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["id"], id.as_str());
    assert_eq!(res.body["grant"]["secrets"], json!(["other"]));
    let done = run_job(&state, "reads-secret").await;
    assert_eq!(done["status"], "failed", "{done:#}");
    assert!(!done.to_string().contains("s3cr3t-token-value"), "{done:#}");

    // Back again: allowed on the next step.
    let res = json_request(
        &state,
        "PUT",
        &format!("/api/v2/grants/{id}"),
        json!({ "plugin": "script", "secrets": ["token"] }),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let done = run_job(&state, "reads-secret").await;
    assert_eq!(done["status"], "succeeded", "{done:#}");

    let res = json_request(
        &state,
        "PUT",
        &format!("/api/v2/grants/{id}"),
        json!({ "plugin": "script", "http": [{ "host": 3 }] }),
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert_eq!(res.body["code"], "validation_failed", "{}", res.body);
    assert_eq!(
        res.body["errors"][0]["path"], "http[0].host",
        "{}",
        res.body
    );
    let res = admin(
        &state,
        "PUT",
        &format!("/api/v2/grants/{id}"),
        b"{".to_vec(),
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert_eq!(res.body["code"], "malformed_json", "{}", res.body);
    let res = json_request(
        &state,
        "PUT",
        "/api/v2/grants/no-such-grant",
        json!({ "plugin": "script", "secrets": ["token"] }),
    )
    .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
    // The bad replacement changed nothing.
    assert!(
        state
            .runtime
            .plugin("script")
            .unwrap()
            .grants()
            .check_secret("token")
            .is_ok()
    );

    state.audit.flush().await;
    let records = state
        .store
        .audit_query(&meridian::audit::AuditQuery {
            kind: Some("grant".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let decisions: Vec<&str> = records.iter().map(|r| r.entry.decision.as_str()).collect();
    assert_eq!(decisions, ["created", "replaced", "replaced"]);
    assert_eq!(records[1].entry.target.as_deref(), Some(id.as_str()));
    assert_eq!(records[1].entry.actor.as_deref(), Some("token:test-admin"));
    assert!(records[1].entry.data.as_deref().unwrap().contains("other"));
}

/// An uploaded binary gets the grants in force for its name; a grant
/// pinned to the previous binary's digest does not carry over.
#[tokio::test]
async fn a_new_binary_gets_the_grants_for_its_name_but_not_a_pinned_digest() {
    let (_node, state) = node().await;
    let may_read = |state: &Arc<AppState>| {
        state
            .runtime
            .plugin("script")
            .unwrap()
            .grants()
            .check_secret("token")
            .is_ok()
    };
    let old = state.runtime.plugin("script").unwrap().info.digest;
    let res = json_request(
        &state,
        "POST",
        "/api/v2/grants",
        json!({ "plugin": "script", "digest": old.to_string(), "secrets": ["token"] }),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert!(may_read(&state));
    // A running step keeps the plugin (and grants) it started with.
    let running = state.runtime.plugin("script").unwrap();

    let bytes = rebuilt(&std::fs::read(fixtures::SCRIPT).unwrap(), "v2");
    let res = admin(&state, "PUT", "/api/v2/plugins/script", bytes).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(
        !may_read(&state),
        "a grant pinned to {old} applied to the new binary"
    );
    assert!(running.grants().check_secret("token").is_ok());
    assert_eq!(running.info.digest, old);

    let res = json_request(
        &state,
        "POST",
        "/api/v2/grants",
        json!({ "plugin": "script", "secrets": ["token"] }),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert!(may_read(&state));
}

/// The upload has its own limit (64 MiB by default): a body over the 1 MiB
/// every other route keeps reaches the component checks (422 here, the
/// bytes are not a component), while a job of that size is still 413.
#[tokio::test]
async fn the_upload_limit_is_its_own() {
    let node = TestNode::start("", &[]).await;
    let state = Arc::clone(&node.state);
    assert_eq!(
        state.uploads.max_bytes,
        meridian::config::DEFAULT_MAX_PLUGIN_BYTES
    );
    let big = vec![7u8; meridian::api::MAX_BODY_BYTES + 512 * 1024];
    let res = admin(&state, "PUT", "/api/v2/plugins/big", big.clone()).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.body["errors"][0]["path"], "body", "{}", res.body);
    let res = admin(&state, "POST", "/api/v2/jobs", big).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.body);
    assert_eq!(res.content_type, "application/problem+json");
    assert!(
        res.body["detail"]
            .as_str()
            .unwrap()
            .contains(&meridian::api::MAX_BODY_BYTES.to_string()),
        "{}",
        res.body
    );
}
