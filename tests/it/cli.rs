//! The `meridian` command line, driven in-process exactly as `main` does.

use meridian_tests::{TestServer, fixtures};
use std::process::ExitCode;

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

fn sha256_hex(path: &str) -> String {
    meridian::runtime::Digest::of(&std::fs::read(path).unwrap()).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_prints_digest_and_asked_capabilities() {
    let data = tempfile::tempdir().unwrap();
    let (code, out, err) = meridian(&[
        "--data-dir",
        data.path().to_str().unwrap(),
        "plugins",
        "inspect",
        fixtures::GREETER,
    ])
    .await;
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    assert!(out.contains(&sha256_hex(fixtures::GREETER)), "{out}");
    assert!(out.contains("capabilities asked for:"), "{out}");
    assert!(out.contains("http "), "{out}");
    assert!(out.contains("meridian:step/step@0.1.0"), "{out}");
    // The compiled artefact was cached under the data directory.
    let cached = walk(data.path())
        .into_iter()
        .any(|p| p.extension().is_some_and(|e| e == "cwasm"));
    assert!(
        cached,
        "no compiled component cached under {}",
        data.path().display()
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_built_in_and_directory_plugins() {
    let data = tempfile::tempdir().unwrap();
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures::GREETER, plugins.path().join("greeter.wasm")).unwrap();
    let (code, out, err) = meridian(&[
        "--data-dir",
        data.path().to_str().unwrap(),
        "--plugins-dir",
        plugins.path().to_str().unwrap(),
        "plugins",
        "list",
    ])
    .await;
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("http ") && l.contains("built-in")),
        "{out}"
    );
    assert!(out.contains("greeter.wasm"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_executes_a_job_against_a_real_server() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meridian.toml");
    std::fs::write(&config, server.grant("http", &["GET"], "/")).unwrap();
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        serde_json::json!({
            "id": "cli-job", "name": "CLI job", "timezone": "Asia/Kolkata",
            "steps": [
                {"id": "first", "type": "http", "config": {"url": server.url("/json"), "extract": {"indicator": "/status/indicator"}}},
                {"id": "second", "type": "http", "config": {"url": server.url("/status/204"), "expected_status": [204]}}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let data = dir.path().join("data");
    let args: Vec<String> = [
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "run",
        job.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    let run = || {
        let args = args.clone();
        async move { meridian(&args.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    let (code, out, err) = run().await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}\n{err}");
    assert!(out.contains("ok      first (http)"), "{out}");
    assert!(out.contains("ok      second (http)"), "{out}");
    assert!(out.contains("\"indicator\":\"none\""), "{out}");
    assert!(out.contains("status: succeeded"), "{out}");

    // The same job with a step outside the grant fails with a denial.
    std::fs::write(&config, server.grant("http", &["GET"], "/json")).unwrap();
    let (code, out, _) = run().await;
    assert_eq!(code, ExitCode::FAILURE, "{out}");
    assert!(out.contains("FAILED  second (http)"), "{out}");
    assert!(out.contains("denied"), "{out}");

    // Both runs are in the store's history, newest first, with their steps.
    let d = data.to_str().unwrap();
    let (code, out, err) = meridian(&[
        "--data-dir",
        d,
        "executions",
        "list",
        "--job",
        "cli-job",
        "--json",
    ])
    .await;
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let statuses: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["failed", "succeeded"], "{out}");
    assert_eq!(list[0]["trigger"], "cli");
    let id = list[0]["id"].as_str().unwrap();
    let (code, out, _) = meridian(&["--data-dir", d, "executions", "show", id, "--json"]).await;
    assert_eq!(code, ExitCode::SUCCESS);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["steps"][1]["error"]["kind"], "denied", "{out}");
    // A finished execution cannot be cancelled; an unknown one is bad input.
    let (code, _, err) = meridian(&["--data-dir", d, "executions", "cancel", id]).await;
    assert_eq!(code, ExitCode::FAILURE, "{err}");
    assert!(err.contains("already finished"), "{err}");
    let (code, _, _) = meridian(&["--data-dir", d, "executions", "cancel", "nope"]).await;
    assert_eq!(code, ExitCode::from(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_lists_every_problem_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        serde_json::json!({
            "id": "bad job", "name": "x", "timezone": "Mars/Olympus",
            "steps": [
                {"id": "a", "type": "http", "config": {"url": 5}},
                {"id": "a", "type": "nope", "config": {}}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let (code, _, err) = meridian(&[
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "validate",
        job.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, ExitCode::from(2), "{err}");
    for path in [
        "  id:",
        "  timezone:",
        "  steps[0].config.url:",
        "  steps[1].id:",
        "  steps[1].type:",
    ] {
        assert!(err.contains(path), "missing {path:?} in:\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_preview_flags_dst_shifts() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let (code, out, err) = meridian(&[
        "--data-dir",
        d,
        "schedule",
        "preview",
        "--cron",
        "30 2 * * *",
        "--tz",
        "Europe/Berlin",
        "--from",
        "2026-03-28T12:00:00Z",
        "--count",
        "2",
    ])
    .await;
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    assert!(
        out.contains("fixed-time; gap: shift, overlap: first"),
        "{out}"
    );
    assert!(
        out.contains(
            "2026-03-29T03:00:00+02:00  CEST   2026-03-29T01:00:00Z  shifted from 02:30:00"
        ),
        "{out}"
    );
    let (code, out, _) = meridian(&[
        "--data-dir",
        d,
        "schedule",
        "preview",
        "--cron",
        "*/30 1 * * *",
        "--tz",
        "America/New_York",
        "--from",
        "2026-10-31T12:00:00Z",
        "--count",
        "4",
        "--json",
    ])
    .await;
    assert_eq!(code, ExitCode::SUCCESS);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let at: Vec<_> = v["fires"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["at"].as_str().unwrap())
        .collect();
    assert_eq!(
        at,
        [
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T01:30:00-05:00"
        ]
    );
    assert_eq!(v["fires"][2]["flag"], "second_of_repeated");
    let (code, _, err) = meridian(&[
        "--data-dir",
        d,
        "schedule",
        "preview",
        "--cron",
        "61 * * * *",
        "--tz",
        "Mars/Base",
    ])
    .await;
    assert_eq!(code, ExitCode::from(2));
    assert!(
        err.contains("--cron: minute: 61 is out of range 0-59"),
        "{err}"
    );
    assert!(err.contains("--tz: "), "{err}");
}
