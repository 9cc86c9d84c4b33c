//! The audit trail and run-time grants, end to end: real steps calling a
//! real HTTP server on loopback through the CLI, the trail read back,
//! verified, tampered with in the SQLite file and caught; grants stored
//! from the CLI, applied and revoked, each change on the trail.

use meridian_tests::{TestRuntime, TestServer};
use serde_json::{Value, json};
use sqlx::Connection;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

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

/// `meridian --config C --data-dir D <args>`; asserts the exit code.
async fn cli(config: &Path, data: &Path, args: &[&str], expect: ExitCode) -> (String, String) {
    let mut all = vec![
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let (code, out, err) = meridian(&all).await;
    assert_eq!(
        code, expect,
        "meridian {args:?}\nstdout:\n{out}\nstderr:\n{err}"
    );
    (out, err)
}

/// A job of two HTTP steps: `/json` then `/status/204`.
fn write_job(dir: &Path, server: &TestServer) -> std::path::PathBuf {
    let job = dir.join("job.json");
    std::fs::write(
        &job,
        json!({
            "id": "audited", "name": "Audited job", "timezone": "Europe/Berlin",
            "steps": [
                {"id": "first", "type": "http", "config": {"url": server.url("/json")}},
                {"id": "second", "type": "http", "config": {"url": server.url("/status/204"), "expected_status": [204]}}
            ]
        })
        .to_string(),
    )
    .unwrap();
    job
}

async fn records(config: &Path, data: &Path, filters: &[&str]) -> Vec<Value> {
    let mut args = vec!["audit", "query", "--json"];
    args.extend_from_slice(filters);
    let (out, _) = cli(config, data, &args, ExitCode::SUCCESS).await;
    serde_json::from_str::<Vec<Value>>(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_on_a_trail_that_verifies_and_catches_an_edit() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meridian.toml");
    // GET under /json only: the second step is denied.
    std::fs::write(&config, server.grant("http", &["GET"], "/json")).unwrap();
    let data = dir.path().join("data");
    let job = write_job(dir.path(), &server);
    let (out, _) = cli(
        &config,
        &data,
        &["run", job.to_str().unwrap()],
        ExitCode::FAILURE,
    )
    .await;
    assert!(out.contains("FAILED  second (http)"), "{out}");

    // The denial, with who asked, for what, and the grant that would allow it.
    let denied = records(&config, &data, &["--decision", "denied"]).await;
    assert_eq!(denied.len(), 1, "{denied:#?}");
    let d = &denied[0];
    assert_eq!(d["kind"], "capability");
    assert_eq!(d["plugin"], "http");
    assert_eq!(d["capability"], "http");
    assert_eq!(d["job_id"], "audited");
    assert_eq!(d["step_id"], "second");
    assert!(d["digest"].as_str().unwrap().starts_with("sha256:"), "{d}");
    assert!(d["target"].as_str().unwrap().contains("/status/204"), "{d}");
    assert!(
        d["grant_hint"].as_str().unwrap().contains("path_prefix"),
        "{d}"
    );
    let execution = d["execution_id"].as_str().unwrap().to_owned();
    // The allowed call of the same execution.
    let allowed = records(
        &config,
        &data,
        &["--execution", &execution, "--decision", "allowed"],
    )
    .await;
    assert_eq!(allowed.len(), 1, "{allowed:#?}");
    assert_eq!(allowed[0]["step_id"], "first");
    assert!(allowed[0]["duration_us"].as_i64().unwrap() > 0);
    // Filters narrow: nothing from another plugin.
    assert!(
        records(&config, &data, &["--plugin", "sql"])
            .await
            .is_empty()
    );

    // (In-process the commands write no log files: there is no mirror, so
    // the chain alone is checked here; `audit verify` without the flag
    // fails for the missing mirror, see `hostile::audit`.)
    let (out, _) = cli(
        &config,
        &data,
        &["audit", "verify", "--no-mirror"],
        ExitCode::SUCCESS,
    )
    .await;
    assert!(out.contains("intact: 2 records"), "{out}");
    assert!(out.contains("not checked (--no-mirror)"), "{out}");
    let (_, err) = cli(&config, &data, &["audit", "verify"], ExitCode::FAILURE).await;
    assert!(err.contains("the mirror is missing"), "{err}");

    // The security team's page: asked, granted, used.
    let (out, _) = cli(
        &config,
        &data,
        &["plugins", "capabilities", "http", "--json"],
        ExitCode::SUCCESS,
    )
    .await;
    let view: Value = serde_json::from_str(&out).unwrap();
    assert!(
        view["asked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "http"),
        "{view:#}"
    );
    let granted = view["granted"].as_array().unwrap();
    assert_eq!(granted.len(), 1, "{view:#}");
    assert_eq!(granted[0]["source"], "config");
    assert_eq!(granted[0]["applies"], true);
    let used = view["used"].as_array().unwrap();
    assert!(
        used.iter()
            .any(|u| u["decision"] == "denied" && u["calls"] == 1),
        "{view:#}"
    );
    assert_eq!(view["denied_calls"], 1);
    let (text, _) = cli(
        &config,
        &data,
        &["plugins", "capabilities", "http"],
        ExitCode::SUCCESS,
    )
    .await;
    assert!(text.contains("used (audit trail):"), "{text}");

    // Someone rewrites the denial as allowed, straight in the database.
    let db = data.join("meridian.db");
    let mut raw = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET decision = 'allowed' WHERE decision = 'denied'")
        .execute(&mut raw)
        .await
        .unwrap();
    let seq = d["seq"].as_i64().unwrap();
    let (_, err) = cli(
        &config,
        &data,
        &["audit", "verify", "--no-mirror"],
        ExitCode::FAILURE,
    )
    .await;
    assert!(
        err.contains(&format!("(record {seq})")) && err.contains("Edited"),
        "{err}"
    );
    let (out, _) = cli(
        &config,
        &data,
        &["audit", "verify", "--no-mirror", "--json"],
        ExitCode::FAILURE,
    )
    .await;
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["chain_ok"], false);
    assert_eq!(report["problem"]["tamper"], "edited");
    assert_eq!(report["problem"]["seq"], seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_stored_from_the_cli_apply_and_their_changes_are_audited() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    // No grants in the config at all.
    let config = dir.path().join("meridian.toml");
    std::fs::write(&config, "").unwrap();
    let data = dir.path().join("data");
    let job = write_job(dir.path(), &server);
    let (out, _) = cli(
        &config,
        &data,
        &["run", job.to_str().unwrap()],
        ExitCode::FAILURE,
    )
    .await;
    assert!(out.contains("FAILED  first (http)"), "{out}");

    // A bad grant names its field and stores nothing.
    let (_, err) = cli(
        &config,
        &data,
        &[
            "grants",
            "add",
            "--spec",
            r#"{"plugin": "http", "http": [{"host": 3}]}"#,
        ],
        ExitCode::from(2),
    )
    .await;
    assert!(err.contains("http[0].host"), "{err}");

    // The grant as a TOML file, the shape of a [[grants]] table.
    let grant = dir.path().join("grant.toml");
    std::fs::write(
        &grant,
        format!(
            "plugin = \"http\"\n[[http]]\nscheme = [\"http\"]\nhost = \"127.0.0.1\"\nport = [{}]\nmethods = [\"GET\"]\nallow_private = true\n",
            server.addr.port()
        ),
    )
    .unwrap();
    let (out, _) = cli(
        &config,
        &data,
        &["grants", "add", "--file", grant.to_str().unwrap()],
        ExitCode::SUCCESS,
    )
    .await;
    let id = out.split_whitespace().nth(1).unwrap().to_owned();
    let (out, _) = cli(
        &config,
        &data,
        &["grants", "list", "--json"],
        ExitCode::SUCCESS,
    )
    .await;
    let list: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(list.len(), 1, "{out}");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["source"], "stored");
    assert!(
        list[0]["created_by"].as_str().unwrap().starts_with("cli:"),
        "{out}"
    );

    // Now the job runs.
    let (out, _) = cli(
        &config,
        &data,
        &["run", job.to_str().unwrap()],
        ExitCode::SUCCESS,
    )
    .await;
    assert!(out.contains("status: succeeded"), "{out}");

    cli(
        &config,
        &data,
        &["grants", "revoke", &id],
        ExitCode::SUCCESS,
    )
    .await;
    cli(
        &config,
        &data,
        &["grants", "revoke", &id],
        ExitCode::from(2),
    )
    .await;
    let (out, _) = cli(
        &config,
        &data,
        &["run", job.to_str().unwrap()],
        ExitCode::FAILURE,
    )
    .await;
    assert!(out.contains("FAILED  first (http)"), "{out}");

    // Both changes are on the trail, with who made them and the grant.
    let changes = records(&config, &data, &["--kind", "grant"]).await;
    let decisions: Vec<&str> = changes
        .iter()
        .map(|r| r["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["created", "revoked"], "{changes:#?}");
    for c in &changes {
        assert_eq!(c["target"], id.as_str());
        assert_eq!(c["plugin"], "http");
        assert!(c["actor"].as_str().unwrap().starts_with("cli:"), "{c}");
        assert!(c["data"].as_str().unwrap().contains("127.0.0.1"), "{c}");
    }
    let (out, _) = cli(
        &config,
        &data,
        &["audit", "verify", "--no-mirror"],
        ExitCode::SUCCESS,
    )
    .await;
    assert!(out.contains("intact"), "{out}");
}

/// A serving node applies a grant stored by another process within the
/// watch interval, and drops it again on revocation, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_node_applies_stored_grant_changes_live() {
    let rt = TestRuntime::new("", &[]).await;
    let store = meridian::store::Store::open_sqlite(&rt.data_dir.path().join("meridian.db"))
        .await
        .unwrap();
    let runtime = rt.runtime.clone();
    let watch =
        meridian::capabilities::grants::stored::watch(Vec::new(), store.clone(), move |entries| {
            runtime.replace_grants(entries)
        });
    let url = url::Url::parse("https://api.example.com/v1/items").unwrap();
    let allowed = || rt.plugin("http").grants().check_http("GET", &url).is_ok();
    assert!(!allowed());

    let spec = meridian::capabilities::grants::stored::from_json(json!({
        "plugin": "http",
        "http": [{"host": "api.example.com", "methods": ["GET"], "path_prefix": "/v1/"}]
    }))
    .unwrap();
    let (entry, _) = meridian::capabilities::grants::stored::create(&store, spec, "test")
        .await
        .unwrap();
    wait_for(allowed, "the stored grant to apply").await;
    assert!(rt.runtime.grant_entries().iter().any(|e| e.id == entry.id));
    meridian::capabilities::grants::stored::revoke(&store, &entry.id, "test")
        .await
        .unwrap();
    wait_for(|| !allowed(), "the revoked grant to go").await;
    watch.abort();
}

async fn wait_for(cond: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + meridian::capabilities::grants::stored::WATCH_INTERVAL * 5;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Effective = asked ∩ granted ∩ job scope: a job's scope narrows a grant
/// (never widens it), and the refusal says it was the job's scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_scope_narrows_what_its_steps_reach() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meridian.toml");
    // The grant allows every path on the server.
    std::fs::write(&config, server.grant("http", &["GET"], "/")).unwrap();
    let data = dir.path().join("data");
    let job = dir.path().join("scoped.json");
    std::fs::write(
        &job,
        json!({
            "id": "scoped", "name": "Scoped job", "timezone": "UTC",
            "scope": { "http": [server.url("/json*")], "secrets": [] },
            "steps": [
                {"id": "inside", "type": "http", "config": {"url": server.url("/json")}},
                {"id": "outside", "type": "http", "config": {"url": server.url("/status/204"), "expected_status": [204]}}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let (out, _) = cli(
        &config,
        &data,
        &["run", job.to_str().unwrap(), "--json"],
        ExitCode::FAILURE,
    )
    .await;
    let report: Value = serde_json::from_str(&out).unwrap();
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps[0]["status"], "succeeded", "{report:#}");
    let event = &steps[1]["attempts"][0]["events"][0];
    assert_eq!(event["decision"], "denied", "{report:#}");
    assert_eq!(event["detail"], "the job's scope does not include this");
    let denied = records(&config, &data, &["--decision", "denied"]).await;
    assert_eq!(denied.len(), 1);
    assert!(
        denied[0]["grant_hint"]
            .as_str()
            .unwrap()
            .contains("\"scope\""),
        "{:#}",
        denied[0]
    );

    // A bad pattern is a validation error at its path.
    std::fs::write(
        &job,
        json!({
            "id": "scoped", "name": "Scoped job",
            "scope": { "sql": ["a[b"] },
            "steps": [{"id": "s", "type": "http", "config": {"url": server.url("/json")}}]
        })
        .to_string(),
    )
    .unwrap();
    let (_, err) = cli(
        &config,
        &data,
        &["validate", job.to_str().unwrap()],
        ExitCode::from(2),
    )
    .await;
    assert!(err.contains("scope.sql[0]"), "{err}");
}

/// A call cut short by the step's timeout (its future dropped mid-request)
/// is still on the trail, as failed, with its target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cut_short_by_the_steps_timeout_is_recorded() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meridian.toml");
    std::fs::write(&config, server.grant("http", &["GET"], "/")).unwrap();
    let data = dir.path().join("data");
    let job = dir.path().join("slow.json");
    std::fs::write(
        &job,
        json!({
            "id": "slow", "name": "Slow job",
            "steps": [{"id": "wait", "type": "http", "timeout_ms": 500,
                       "config": {"url": server.url("/slow?ms=5000")}}]
        })
        .to_string(),
    )
    .unwrap();
    cli(
        &config,
        &data,
        &["run", job.to_str().unwrap()],
        ExitCode::FAILURE,
    )
    .await;
    let failed = records(&config, &data, &["--decision", "failed"]).await;
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert!(
        failed[0]["target"]
            .as_str()
            .unwrap()
            .contains("/slow?ms=5000"),
        "{:#}",
        failed[0]
    );
    assert!(
        failed[0]["detail"].as_str().unwrap().contains("cut short"),
        "{:#}",
        failed[0]
    );
    cli(
        &config,
        &data,
        &["audit", "verify", "--no-mirror"],
        ExitCode::SUCCESS,
    )
    .await;
}

/// `meridian audit verify`, as a process, against the mirrored copy the
/// commands wrote to `<data>/logs/audit/`: someone who rewrites a record in
/// the database *and* recomputes every hash after it fools the chain check
/// alone (`--no-mirror` says intact), but not the comparison with the
/// mirror, which names the record; a record cut off the end (the head row
/// moved back to match) is named as removed.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_and_rehashed_trail_is_caught_by_its_mirror() {
    use super::node::meridian_node;
    let dir = tempfile::tempdir().unwrap();
    let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins"));
    std::fs::create_dir_all(&plugins).unwrap();
    let run = |args: &[&str]| {
        let out = meridian_node(&data, &plugins).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Three token changes, each an audit record mirrored by its process.
    for name in ["one", "two", "three"] {
        let (code, _, err) = run(&["token", "create", "--role", "viewer", "--name", name]);
        assert_eq!(code, Some(0), "{err}");
    }
    let (code, out, err) = run(&["audit", "verify"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("intact: 3 records"), "{out}");
    assert!(out.contains("agrees: 3 records"), "{out}");
    // Each command signed a checkpoint of the head as it ended.
    assert!(out.contains("anchor holds: 3 checkpoints"), "{out}");

    // Rewrite record 2 and recompute its hash and every one after it.
    let db = data.join("meridian.db");
    let store = meridian::store::Store::open_sqlite(&db).await.unwrap();
    let mut records = store.audit_all().await.unwrap();
    store.close().await;
    assert_eq!(records.len(), 3);
    let mut raw = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    records[1].entry.actor = Some("nobody".into());
    let mut prev = records[0].hash.clone();
    for r in &mut records[1..] {
        r.prev_hash = prev.clone();
        r.hash = r.entry.chain_hash(&prev);
        sqlx::query("UPDATE audit_log SET actor = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(&r.entry.actor)
            .bind(&r.prev_hash)
            .bind(&r.hash)
            .bind(r.seq)
            .execute(&mut raw)
            .await
            .unwrap();
        prev = r.hash.clone();
    }
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(&prev)
        .execute(&mut raw)
        .await
        .unwrap();
    let (code, out, err) = run(&["audit", "verify", "--no-mirror"]);
    assert_eq!(code, Some(0), "the chain alone cannot tell: {out}{err}");
    assert!(out.contains("intact: 3 records"), "{out}");
    let (code, out, err) = run(&["audit", "verify"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("intact: 3 records"), "{out}");
    assert!(
        err.contains("DIFFERS from its mirror: record 2 differs"),
        "{err}"
    );
    let (code, out, _) = run(&["audit", "verify", "--json"]);
    assert_eq!(code, Some(1));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], false, "{report:#}");
    assert_eq!(report["chain_ok"], true, "{report:#}");
    assert_eq!(report["mirror"]["ok"], false, "{report:#}");
    assert_eq!(
        report["anchor"]["problem"]["fault"], "contradicted",
        "{report:#}"
    );
    assert_eq!(report["mirror"]["problem"]["seq"], 2, "{report:#}");
    assert_eq!(report["mirror"]["mirrored"], 3, "{report:#}");

    // Cut the last record off and move the head back to match.
    sqlx::query("DELETE FROM audit_log WHERE seq = 3")
        .execute(&mut raw)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_head SET seq = 2, hash = $1 WHERE id = 1")
        .bind(&records[1].hash)
        .execute(&mut raw)
        .await
        .unwrap();
    // (Record 2 still differs; compare another copy of the mirror that
    // only holds the last line.)
    let audit_dir = data.join("logs").join("audit");
    let copy = dir.path().join("mirror-copy");
    std::fs::create_dir_all(&copy).unwrap();
    for file in std::fs::read_dir(&audit_dir).unwrap() {
        let file = file.unwrap().path();
        let text = std::fs::read_to_string(&file).unwrap();
        let kept: Vec<&str> = text.lines().filter(|l| l.contains("\"seq\":3")).collect();
        std::fs::write(copy.join(file.file_name().unwrap()), kept.join("\n")).unwrap();
    }
    let (code, out, err) = run(&["audit", "verify", "--mirror", copy.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("intact: 2 records"), "{out}");
    assert!(
        err.contains("record 3 is in") && err.contains("not in the store: it was removed"),
        "{err}"
    );
}
