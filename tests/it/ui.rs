//! The web UI: its routes and headers through the router, the
//! `/api/v2/session` endpoint it signs in with, and its end-to-end browser
//! tests.
//!
//! [`the_ui_works_end_to_end_in_chromium`] starts a real `meridian serve`
//! process (config: the `http` plugin may reach a loopback [`TestServer`],
//! the `sql` plugin may use an SQLite connection), makes a viewer and an
//! operator token through the API, installs `tests/ui`'s npm packages when
//! `node_modules` is missing (`npm ci`), and runs `node tests/ui/e2e.mjs`,
//! which drives Debian's Chromium (`/usr/bin/chromium`, headless) through
//! every page; screenshots go to `target/ui-screenshots/`. It needs node,
//! npm and Chromium (`.ci/run` installs them): it is ignored where the
//! services are not promised (`meridian_tests::needs_services!`) and fails,
//! naming what is missing, where they are.

#![cfg(unix)]

use super::api::{request_as, state};
use super::node::{Node, Token, meridian_node};
use axum::http::StatusCode;
use meridian_tests::{ADMIN_TOKEN, TestServer};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[tokio::test]
async fn the_session_names_the_token_its_role_and_permissions() {
    let (_node, state) = state().await;
    let (status, _, body) = request_as(state.clone(), None, "GET", "/api/v2/session", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["code"],
        "unauthenticated"
    );
    let (status, _, body) = request_as(
        state.clone(),
        Some(ADMIN_TOKEN),
        "GET",
        "/api/v2/session",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["name"], "test-admin");
    assert_eq!(body["role"], "admin");
    assert_eq!(
        body["permissions"],
        serde_json::json!(["read", "operate", "audit", "admin"])
    );
    for (role, permissions) in [
        (meridian::auth::Role::Viewer, vec!["read"]),
        (meridian::auth::Role::Operator, vec!["read", "operate"]),
        (meridian::auth::Role::Auditor, vec!["read", "audit"]),
    ] {
        let (token, _, _) =
            meridian::auth::create_token(&state.store, Some(role.as_str()), role, "test")
                .await
                .unwrap();
        let (status, _, body) =
            request_as(state.clone(), Some(&token), "GET", "/api/v2/session", "").await;
        assert_eq!(status, StatusCode::OK, "{role:?}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["role"], role.as_str());
        assert_eq!(body["permissions"], serde_json::json!(permissions));
    }
    // A revoked token is nobody.
    meridian::auth::revoke_token(&state.store, "viewer", "test")
        .await
        .unwrap();
    let revoked = state.store.list_tokens().await.unwrap();
    assert!(revoked.iter().any(|t| t.revoked_at_us.is_some()));
    let (status, ..) = request_as(state, Some("mrd_nobody"), "GET", "/api/v2/session", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_ui_is_served_without_a_token_with_strict_headers() {
    let (_node, state) = state().await;
    let (status, headers, _) = request_as(state.clone(), None, "GET", "/", "").await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(headers["location"], "/ui/");
    let (status, headers, _) = request_as(state.clone(), None, "GET", "/ui", "").await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(headers["location"], "/ui/");

    let (status, headers, body) = request_as(state.clone(), None, "GET", "/ui/", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("script-src 'self'") && csp.contains("style-src 'self'"));
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains(r#"<script type="module" src="/ui/app.js">"#));

    let mut total = 0;
    for asset in meridian::api::web::ASSETS {
        let uri = format!("/ui/{}", asset.name);
        let (status, headers, body) = request_as(state.clone(), None, "GET", &uri, "").await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(headers["content-type"], asset.content_type, "{uri}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{uri}");
        assert!(headers.contains_key("content-security-policy"), "{uri}");
        assert_eq!(headers["cache-control"], "no-cache", "{uri}");
        assert_eq!(body, asset.bytes, "{uri}");
        total += body.len();
        // The same ETag again: 304 and no body.
        let etag = headers["etag"].to_str().unwrap().to_owned();
        let res = axum::http::Request::builder()
            .uri(&uri)
            .header("if-none-match", &etag)
            .body(axum::body::Body::empty())
            .unwrap();
        let res = tower::ServiceExt::oneshot(meridian::api::router(state.clone()), res)
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{uri}");
        assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
    }
    assert_eq!(total, meridian::api::web::total_bytes());
    eprintln!(
        "web UI page weight: {total} bytes in {} files, uncompressed",
        meridian::api::web::ASSETS.len()
    );

    // No file outside the list; nothing else about the node leaks.
    for uri in ["/ui/nope.js", "/ui/..%2Fmod.rs", "/ui/%2e%2e"] {
        let (status, headers, body) = request_as(state.clone(), None, "GET", uri, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(headers["content-type"], "application/problem+json", "{uri}");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap()["code"],
            "not_found"
        );
    }
    let (status, ..) = request_as(state, None, "POST", "/ui/", "").await;
    assert!(
        status.is_client_error() && status != StatusCode::NOT_FOUND,
        "{status}"
    );
}

/// What the end-to-end test needs: node, npm and Chromium.
fn tools() -> Result<(PathBuf, PathBuf), String> {
    let find = |name: &str| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    };
    let chromium =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    let mut missing = Vec::new();
    let node = find("node");
    if node.is_none() {
        missing.push("node");
    }
    let npm = find("npm");
    if npm.is_none() {
        missing.push("npm");
    }
    if !chromium.is_file() {
        missing.push("chromium");
    }
    match (node, npm) {
        (Some(node), Some(_)) if missing.is_empty() => Ok((node, chromium)),
        _ => Err(format!(
            "{} not installed: `apt-get install chromium nodejs npm` (as .ci/run does) to run the web UI's browser tests",
            missing.join(", ")
        )),
    }
}

/// Starts a node with `config` on an empty data directory; its requests
/// send the first admin token it printed.
async fn start_node(dir: &Path, config: &str) -> Node {
    let config_path = dir.join("meridian.toml");
    std::fs::write(&config_path, config).unwrap();
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let mut cmd = meridian_node(&dir.join("data"), &plugins);
    cmd.arg("--config").arg(&config_path);
    Node::start("node", cmd, dir, Token::FirstAdmin).await
}

/// A new token of `role`, made through the API with the admin token.
async fn token(base: &str, admin: &str, role: &str) -> String {
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v2/tokens"))
        .bearer_auth(admin)
        .json(&serde_json::json!({ "role": role, "name": format!("ui-{role}") }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let body: Value = res.json().await.unwrap();
    body["token"].as_str().unwrap().to_string()
}

/// How long the whole browser run may take.
const E2E_DEADLINE: Duration = Duration::from_secs(300);

meridian_tests::needs_services! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_ui_works_end_to_end_in_chromium() {
        let (node_bin, chromium) =
            tools().unwrap_or_else(|msg| panic!("{msg} (.ci/run installs them)"));
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let ui = root.join("tests/ui");
        if !ui.join("node_modules/playwright-core").is_dir() {
            let out = std::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&ui)
                .output()
                .expect("run npm ci");
            assert!(
                out.status.success(),
                "npm ci in tests/ui failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }

        let server = TestServer::start().await;
        let tmp = tempfile::tempdir().unwrap();
        let config = format!(
            "[sql.connections.app]\ndriver = \"sqlite\"\nurl = {:?}\n\n\
             [[grants]]\nplugin = \"sql\"\n[[grants.sql]]\nconnection = \"app\"\naccess = \"read_write\"\n\n\
             [[grants]]\nplugin = \"http\"\n[[grants.http]]\nscheme = [\"http\"]\nhost = \"127.0.0.1\"\n\
             port = [{}]\nmethods = [\"GET\"]\npath_prefix = \"/\"\nallow_private = true\n",
            format!("sqlite://{}?mode=rwc", tmp.path().join("app.db").display()),
            server.addr.port()
        );
        let node = start_node(tmp.path(), &config).await;
        let (base, admin) = (node.base(), node.token());
        let operator = token(base, admin, "operator").await;
        let viewer = token(base, admin, "viewer").await;
        let shots = root.join("target/ui-screenshots");

        // A component for the upload scenario, named as the plugin it is.
        let upload = tmp.path().join("upload").join("trivial.wasm");
        std::fs::create_dir_all(upload.parent().unwrap()).unwrap();
        std::fs::copy(meridian_tests::fixtures::TRIVIAL, &upload).unwrap();
        let mut cmd = tokio::process::Command::new(node_bin);
        cmd.arg(ui.join("e2e.mjs"))
            .current_dir(&ui)
            .env("MERIDIAN_URL", base)
            .env("MERIDIAN_ADMIN_TOKEN", admin)
            .env("MERIDIAN_OPERATOR_TOKEN", &operator)
            .env("MERIDIAN_VIEWER_TOKEN", &viewer)
            .env("MERIDIAN_HTTP_BASE", server.url(""))
            .env("MERIDIAN_SQL_CONNECTION", "app")
            .env("MERIDIAN_UPLOAD_WASM", &upload)
            .env("MERIDIAN_SCREENSHOTS", &shots)
            .env("CHROMIUM", &chromium)
            .kill_on_drop(true);
        let out = tokio::time::timeout(E2E_DEADLINE, cmd.output())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the browser tests took longer than {E2E_DEADLINE:?}; node log:\n{}",
                    node.log_tail(40)
                )
            })
            .expect("run node tests/ui/e2e.mjs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            panic!(
                "tests/ui/e2e.mjs failed ({}):\n{stdout}\n{stderr}\nnode log (last 40 lines):\n{}",
                out.status,
                node.log_tail(40)
            );
        }
        eprintln!("{stdout}");
        for name in [
            "01-sign-in",
            "04-builder",
            "05-monitor",
            "07-queues",
            "09-plugins-admin",
        ] {
            assert!(shots.join(format!("{name}.png")).is_file(), "{name}.png");
        }
    }
}
