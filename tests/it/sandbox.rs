//! The sandbox: budgets stop misbehaving guests cleanly, WASI grants
//! nothing, and the same host runs the next step normally afterwards.

use meridian::runtime::{SandboxLimits, StepFailure, StepRun};
use meridian_tests::{TestRuntime, fixtures, invocation};
use serde_json::json;
use std::time::{Duration, Instant};

const ALL: &[&str] = &[
    fixtures::TRIVIAL,
    fixtures::SPIN,
    fixtures::MEMBOMB,
    fixtures::TRAP,
    fixtures::PANIC,
    fixtures::SNEAKY,
    fixtures::PROBE,
];

async fn runtime(extra_toml: &str) -> TestRuntime {
    TestRuntime::new(
        &format!("[sandbox]\ntimeout_ms = 2000\nmemory_mb = 64\nmax_host_calls = 50\nmax_output_bytes = 4096\n{extra_toml}"),
        ALL,
    )
    .await
}

/// The trivial step still works: the host is healthy after whatever ran.
async fn assert_host_still_works(rt: &TestRuntime) {
    let run = rt.run("trivial", json!({})).await;
    let ok = run.result.expect("trivial step after a failure");
    assert_eq!(ok.output, json!({"ok": true}));
}

fn failure(run: &StepRun) -> &StepFailure {
    run.result
        .as_ref()
        .expect_err("the step should have failed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_is_stopped_at_its_timeout() {
    let rt = runtime("").await;
    let mut inv = invocation(json!({}));
    inv.timeout = Some(Duration::from_millis(300));
    let started = Instant::now();
    let run = rt.runtime.execute(&rt.plugin("spin"), inv).await;
    let took = started.elapsed();
    assert!(
        matches!(failure(&run), StepFailure::Timeout { limit_ms: 300 }),
        "{:?}",
        run.result
    );
    assert!(took < Duration::from_secs(2), "stopped after {took:?}");
    assert!(failure(&run).to_string().contains("time limit of 300 ms"));
    assert_host_still_works(&rt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_hits_the_cap() {
    let rt = runtime("").await;
    let run = rt.run("membomb", json!({})).await;
    match failure(&run) {
        StepFailure::MemoryLimit { limit_bytes } => assert_eq!(*limit_bytes, 64 * 1024 * 1024),
        other => panic!("expected the memory cap, got {other:?}"),
    }
    assert_host_still_works(&rt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_becomes_a_readable_failure() {
    let rt = runtime("").await;
    let run = rt.run("trap", json!({})).await;
    match failure(&run) {
        StepFailure::Crashed { message } => {
            assert!(message.contains("unreachable"), "{message}")
        }
        other => panic!("expected a crash, got {other:?}"),
    }
    assert_host_still_works(&rt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_becomes_a_failure_with_its_message() {
    let rt = runtime("").await;
    let run = rt.run("panic", json!({})).await;
    match failure(&run) {
        StepFailure::Crashed { message } => {
            assert!(message.contains("fixture panicked on purpose"), "{message}");
            assert!(message.contains("panicked at"), "{message}");
        }
        other => panic!("expected a crash, got {other:?}"),
    }
    assert_host_still_works(&rt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ambient_files_environment_or_sockets() {
    // Something is listening, so a refused connection is the sandbox's doing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let rt = runtime("").await;
    let run = rt.run("sneaky", json!({ "port": port })).await;
    let out = run.result.expect("sneaky reports, it does not fail").output;
    let attempts = out.as_object().expect("an object of attempts");
    for what in [
        "read_passwd",
        "read_dir_root",
        "write_tmp",
        "env_home",
        "env_vars",
        "tcp_connect",
        "udp_bind",
    ] {
        let result = &attempts[what];
        assert_eq!(
            result["ok"],
            json!(false),
            "{what} should have failed: {result}"
        );
    }
    assert!(
        !out.to_string().contains("root:"),
        "read /etc/passwd: {out}"
    );
    assert_host_still_works(&rt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_call_budget_fails_the_step() {
    let rt = runtime("").await;
    let run = rt
        .run("probe", json!({ "calls": [], "log_lines": 500 }))
        .await;
    assert!(
        matches!(failure(&run), StepFailure::HostCallBudget { max_calls: 50 }),
        "{:?}",
        run.result
    );
    assert_host_still_works(&rt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_over_the_cap_fails_the_step() {
    let rt = runtime("").await;
    let run = rt
        .run("probe", json!({ "calls": [], "output_bytes": 100_000 }))
        .await;
    assert!(
        matches!(
            failure(&run),
            StepFailure::OutputTooLarge {
                limit_bytes: 4096,
                ..
            }
        ),
        "{:?}",
        run.result
    );
    let run = rt
        .run("probe", json!({ "calls": [], "output_bytes": 1000 }))
        .await;
    assert!(run.result.is_ok(), "{:?}", run.result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_masked_in_errors_and_logs() {
    let rt = runtime(
        "[secrets]\napi_token = \"tok-5up3r-s3cr3t\"\n[[grants]]\nplugin = \"probe\"\nsecrets = [\"api_token\"]\n",
    )
    .await;
    let run = rt
        .run(
            "probe",
            json!({ "calls": [{"secret": "api_token"}, {"log": {"level": "info", "message": "token is tok-5up3r-s3cr3t"}}], "fail_with_secret": "api_token" }),
        )
        .await;
    let text = serde_json::to_string(&run).unwrap();
    assert!(run.result.is_err(), "{text}");
    assert!(!text.contains("tok-5up3r-s3cr3t"), "secret leaked: {text}");
    assert!(text.contains("***"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungranted_capabilities_are_typed_denials() {
    let rt = runtime("[secrets]\napi_token = \"sekrit-value\"\n").await;
    let run = rt
        .run(
            "probe",
            json!({ "calls": [
                {"secret": "api_token"},
                {"http": {"method": "GET", "url": "https://example.com/"}},
                {"sql": {"connection": "warehouse", "sql": "select 1"}},
                {"process": {"program": "/bin/true"}}
            ]}),
        )
        .await;
    let out = run.result.expect("probe reports").output;
    let results = out["results"].as_array().unwrap();
    let caps: Vec<_> = results
        .iter()
        .map(|r| {
            assert_eq!(r["error"]["kind"], "denied", "{r}");
            r["error"]["capability"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(caps, ["secrets", "http", "sql", "process"]);
    assert_eq!(results[1]["error"]["target"], "GET https://example.com/");
    assert!(
        results[1]["error"]["grant_hint"]
            .as_str()
            .unwrap()
            .contains("host = \"example.com\""),
        "{out}"
    );
    assert_eq!(run.events.len(), 4);
    assert!(
        run.events
            .iter()
            .all(|e| e.decision == meridian::capabilities::Decision::Denied)
    );
}

#[test]
fn defaults_are_sane() {
    let l = SandboxLimits::default();
    assert!(l.memory_bytes >= 64 << 20 && l.timeout >= Duration::from_secs(1));
}
