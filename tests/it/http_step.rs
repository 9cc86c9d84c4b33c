//! The built-in http step and the HTTP capability against a real server on
//! loopback: success and extraction, unexpected statuses, typed denials,
//! address re-checks, secrets for auth, timeouts, and components that use
//! the standard wasi:http interface instead.

use meridian::runtime::StepFailure;
use meridian_tests::{TestRuntime, TestServer, fixtures, invocation};
use serde_json::json;
use std::time::{Duration, Instant};

const SECRETS: &str = "[secrets]\napi_token = \"letmein\"\nbasic_pw = \"letmein\"\n";

async fn setup(methods: &[&str], path_prefix: &str) -> (TestServer, TestRuntime) {
    let server = TestServer::start().await;
    let toml = format!(
        "{SECRETS}{}{}",
        server.grant("http", methods, path_prefix),
        server.grant("wasi-http", methods, path_prefix)
    );
    let rt = TestRuntime::new(&toml, &[fixtures::WASI_HTTP]).await;
    (server, rt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn succeeds_and_extracts_values_with_their_types() {
    let (server, rt) = setup(&["GET"], "/").await;
    let run = rt
        .run(
            "http",
            json!({ "url": server.url("/json"), "extract": { "indicator": "/status/indicator", "first_id": "/items/0/id" } }),
        )
        .await;
    let ok = run.result.expect("the request succeeds");
    assert_eq!(ok.output["status"], 200);
    assert_eq!(ok.output["extracted"]["indicator"], "none");
    assert_eq!(ok.exports["first_id"], json!(41), "numbers stay numbers");
    assert_eq!(ok.output["body"]["status"]["code"], 7);
    assert_eq!(run.events.len(), 1);
    assert_eq!(run.events[0].capability, "http");
    assert_eq!(
        run.events[0].decision,
        meridian::capabilities::Decision::Allowed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unexpected_status_fails_naming_expected_and_got() {
    let (server, rt) = setup(&["GET"], "/").await;
    let run = rt
        .run("http", json!({ "url": server.url("/status/404") }))
        .await;
    match run.result {
        Err(StepFailure::Failed { message }) => {
            assert!(message.contains("404"), "{message}");
            assert!(message.contains("2xx"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let run = rt
        .run("http", json!({ "url": server.url("/status/503") }))
        .await;
    assert!(
        matches!(run.result, Err(StepFailure::Retryable { .. })),
        "503 may be retried: {:?}",
        run.result
    );
    let run = rt
        .run(
            "http",
            json!({ "url": server.url("/status/404"), "expected_status": [404] }),
        )
        .await;
    assert!(run.result.is_ok(), "{:?}", run.result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_outside_the_allow_list_is_a_typed_denial() {
    let (server, rt) = setup(&["GET"], "/json").await;
    for (method, path) in [("GET", "/echo"), ("POST", "/json")] {
        let run = rt
            .run(
                "http",
                json!({ "method": method, "url": server.url(path), "body": "x" }),
            )
            .await;
        match &run.result {
            Err(StepFailure::Denied { denial }) => {
                assert_eq!(denial.capability, "http");
                assert_eq!(denial.target, format!("{method} {}", server.url(path)));
                assert!(denial.grant_hint.contains("[[grants.http]]"), "{denial:?}");
                assert!(
                    denial
                        .grant_hint
                        .contains(&format!("methods = [\"{method}\"]")),
                    "{denial:?}"
                );
            }
            other => panic!("{method} {path}: expected a denial, got {other:?}"),
        }
        assert_eq!(
            run.events[0].decision,
            meridian::capabilities::Decision::Denied
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_and_each_hop_is_checked() {
    let (server, rt) = setup(&["GET", "POST"], "/").await;
    let run = rt
        .run("http", json!({ "url": server.url("/redirect?to=/json"), "extract": { "i": "/status/indicator" } }))
        .await;
    let ok = run.result.expect("followed");
    assert_eq!(ok.output["url"], server.url("/json"));
    assert_eq!(ok.exports["i"], "none");
    assert_eq!(run.events.len(), 2, "one capability call per hop");
    // A 303 after a POST continues as a GET without the body.
    let run = rt
        .run("http", json!({ "method": "POST", "url": server.url("/redirect?to=/echo&status=303"), "body": "x" }))
        .await;
    let ok = run.result.expect("303");
    assert_eq!(ok.output["body"]["method"], "GET");
    assert_eq!(ok.output["body"]["body"], "");
    // Expecting the redirect itself returns it.
    let run = rt
        .run(
            "http",
            json!({ "url": server.url("/redirect"), "expected_status": [302] }),
        )
        .await;
    assert_eq!(run.result.expect("302 expected").output["status"], 302);

    // With a grant for /redirect only, the hop to /json is refused.
    let (server, rt) = setup(&["GET"], "/redirect").await;
    let run = rt
        .run("http", json!({ "url": server.url("/redirect?to=/json") }))
        .await;
    match &run.result {
        Err(StepFailure::Denied { denial }) => {
            assert_eq!(denial.target, format!("GET {}", server.url("/json")))
        }
        other => panic!("expected the hop to be denied, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_needs_allow_private_also_behind_a_name() {
    let server = TestServer::start().await;
    let port = server.addr.port();
    let toml = format!(
        "[[grants]]\nplugin = \"http\"\n[[grants.http]]\nscheme = [\"http\"]\nhost = \"*\"\nport = [{port}]\n"
    );
    let rt = TestRuntime::new(&toml, &[]).await;
    for url in [server.url("/json"), format!("http://localhost:{port}/json")] {
        let run = rt.run("http", json!({ "url": url })).await;
        match &run.result {
            Err(StepFailure::Denied { denial }) => {
                assert!(denial.reason.contains("loopback"), "{denial:?}");
                assert!(
                    denial.grant_hint.contains("allow_private = true"),
                    "{denial:?}"
                );
            }
            other => panic!("{url}: expected a denial, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_comes_from_secrets_and_never_shows() {
    let (server, rt) = setup(&["GET", "POST"], "/").await;
    let run = rt
        .run(
            "http",
            json!({ "url": server.url("/auth"), "auth": { "bearer": { "token_secret": "api_token" } } }),
        )
        .await;
    let ok = run.result.expect("bearer auth");
    assert_eq!(ok.output["body"]["authorized"], true);
    let run = rt
        .run(
            "http",
            json!({ "url": server.url("/auth"), "auth": { "basic": { "username": "ops", "password_secret": "basic_pw" } } }),
        )
        .await;
    assert!(run.result.is_ok(), "basic auth: {:?}", run.result);
    // The echo shows what was sent: the token is masked in the output.
    let run = rt
        .run(
            "http",
            json!({ "method": "POST", "url": server.url("/echo"), "json": {"a": 1}, "auth": { "bearer": { "token_secret": "api_token" } } }),
        )
        .await;
    let text = serde_json::to_string(&run).unwrap();
    let ok = run.result.expect("echo");
    assert_eq!(ok.output["body"]["method"], "POST");
    assert_eq!(ok.output["body"]["body"], "{\"a\":1}");
    assert!(!text.contains("letmein"), "secret leaked: {text}");
    // A secret that is not granted is denied.
    let run = rt
        .run(
            "http",
            json!({ "url": server.url("/auth"), "auth": { "bearer": { "token_secret": "not_granted" } } }),
        )
        .await;
    match run.result {
        Err(StepFailure::Denied { denial }) => assert_eq!(denial.capability, "secrets"),
        other => panic!("expected a secrets denial, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_servers_time_out() {
    let (server, rt) = setup(&["GET"], "/").await;
    let run = rt
        .run(
            "http",
            json!({ "url": server.url("/slow?ms=5000"), "timeout_ms": 200 }),
        )
        .await;
    assert!(
        matches!(run.result, Err(StepFailure::TimedOut { .. })),
        "{:?}",
        run.result
    );
    // The step's own time limit cancels a host call in flight.
    let mut inv = invocation(json!({ "url": server.url("/slow?ms=5000") }));
    inv.timeout = Some(Duration::from_millis(300));
    let started = Instant::now();
    let run = rt.runtime.execute(&rt.plugin("http"), inv).await;
    assert!(
        matches!(run.result, Err(StepFailure::Timeout { limit_ms: 300 })),
        "{:?}",
        run.result
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_wasi_http_meets_the_same_grants() {
    let (server, rt) = setup(&["GET"], "/json").await;
    let run = rt
        .run("wasi-http", json!({ "url": server.url("/json") }))
        .await;
    let ok = run.result.expect("allowed through wasi:http");
    assert_eq!(ok.output["status"], 200);
    assert!(ok.output["body"].as_str().unwrap().contains("indicator"));
    assert_eq!(run.events[0].capability, "http");

    let run = rt
        .run("wasi-http", json!({ "url": server.url("/echo") }))
        .await;
    match &run.result {
        Err(StepFailure::Failed { message }) => {
            assert!(message.contains("HttpRequestDenied"), "{message}")
        }
        other => panic!("expected the denial to surface, got {other:?}"),
    }
    assert_eq!(
        run.events[0].decision,
        meridian::capabilities::Decision::Denied
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_carry_json_paths() {
    let (_server, rt) = setup(&["GET"], "/").await;
    let issues = rt
        .runtime
        .validate_config(
            &rt.plugin("http"),
            &json!({ "url": "ftp://x", "extract": { "a": "no-slash" } }),
        )
        .await;
    let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
    assert!(paths.contains(&"url"), "{issues:?}");
    assert!(paths.iter().any(|p| p.starts_with("extract")), "{issues:?}");
}
