//! Faults of the infrastructure under a real `meridian serve` process, on
//! a PostgreSQL cluster of the test's own ([`PrivatePostgres`]: `initdb`
//! on a free port, run as `postgres`), so the test can freeze, stop and
//! restart it without touching the server the other tests share.
//!
//! Before, during an outage every health probe waited the pool's 10 s
//! timeout (a 5 s outage was invisible to a load balancer) and requests
//! that needed the store answered 500 `internal`.

use super::node::{Node, Token, meridian_node};
use super::recovery::{assert_node_still_works, client, execute, execution, finished, poll_until};
use meridian_tests::services::PrivatePostgres;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The health probe's promise: an answer within a second, whatever the
/// store does.
pub(super) const HEALTH_WITHIN: Duration = Duration::from_secs(1);

/// GET /api/v2/health (with the node's token, for the details); the
/// status, the body and how long the answer took.
pub(super) async fn health(http: &reqwest::Client, node: &Node) -> (u16, Value, Duration) {
    let started = Instant::now();
    let resp = http
        .get(node.url("/api/v2/health"))
        .bearer_auth(node.token())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    (status, body, started.elapsed())
}

fn store_detail(body: &Value) -> String {
    body["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "store"))
        .map(|c| format!("{} {}", c["status"], c["detail"]))
        .unwrap_or_else(|| panic!("no store check: {body:#}"))
}

meridian_tests::needs_services! {
    /// The store hangs (every PostgreSQL process frozen: connections are
    /// accepted, nothing answers), then goes down (stopped at once), then
    /// comes back. Health answers within a second throughout and names the
    /// store; a request that needs the store gets 503 `store_unavailable` with
    /// `Retry-After`, not 500; when the store is back, the node serves and runs
    /// jobs again without a restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_outage_is_told_within_a_second_and_answered_503() {
        store_outage(PrivatePostgres::start()).await;
    }
}

async fn store_outage(pg: PrivatePostgres) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        meridian_tests::fixtures::TRIVIAL,
        plugins.join("trivial.wasm"),
    )
    .unwrap();
    let config = dir.path().join("meridian.toml");
    std::fs::write(&config, format!("store = {:?}\n", pg.url())).unwrap();
    let mut cmd = meridian_node(&data, &plugins);
    cmd.arg("--config").arg(&config);
    let node = Node::start("outage", cmd, dir.path(), Token::FirstAdmin).await;
    let http = client();

    let (status, body, _) = health(&http, &node).await;
    assert_eq!(status, 200, "{body:#}");

    // Hung: the probe gives up on the store in time.
    pg.freeze(true).unwrap();
    for _ in 0..3 {
        let (status, body, took) = health(&http, &node).await;
        assert!(
            took < HEALTH_WITHIN,
            "health took {took:?} while the store hung"
        );
        assert_eq!(status, 503, "{body:#}");
        assert_eq!(body["status"], "fail");
        let store = store_detail(&body);
        assert!(
            store.contains("the store is unreachable: no answer within"),
            "{store}"
        );
    }
    pg.freeze(false).unwrap();

    // Down: the same, and the API says 503 with when to come back.
    pg.stop().unwrap();
    for _ in 0..3 {
        let (status, body, took) = health(&http, &node).await;
        assert!(
            took < HEALTH_WITHIN,
            "health took {took:?} while the store was down"
        );
        assert_eq!(status, 503, "{body:#}");
        let store = store_detail(&body);
        assert!(store.contains("\"fail\""), "{store}");
        assert!(store.contains("the store is unreachable"), "{store}");
        // The token could not be checked: served as no token at all, the
        // details for token holders withheld (a token that cannot be
        // checked is never taken as valid).
        assert!(body.get("plugins").is_none(), "{body:#}");
        assert!(
            body["checks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["name"] != "store")
                .all(|c| c.get("detail").is_none()),
            "{body:#}"
        );
    }
    let resp = http
        .get(node.url("/api/v2/jobs"))
        .bearer_auth(node.token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "store_unavailable", "{problem:#}");
    assert_eq!(problem["detail"], "the store is unreachable", "{problem:#}");
    assert!(
        !problem.to_string().contains("127.0.0.1"),
        "server detail reached the client: {problem:#}"
    );

    // Back: the node serves again on its own.
    pg.start_again().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body, took) = health(&http, &node).await;
        assert!(
            took < HEALTH_WITHIN,
            "health took {took:?} after the store returned"
        );
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not healthy 30 s after the store returned: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_node_still_works(&node).await;
}

meridian_tests::needs_services! {
    /// The log volume fills up under a serving node (a tmpfs the test mounts
    /// as the log root). Before, the lines of an execution were dropped for
    /// good and the logs route answered 500. Now they are held in memory: the
    /// route answers 503 `logs_unavailable` saying so (not a log with a hole),
    /// health fails `disk:logs`; once space is freed the held lines reach the
    /// file in order, the route serves the whole log, and a line in `system/`
    /// says the files are writable again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn execution_log_lines_are_held_while_the_log_volume_is_full() {
        full_log_volume(meridian_tests::services::Tmpfs::mount(8 * 1024 * 1024)).await;
    }
}

async fn full_log_volume(volume: meridian_tests::services::Tmpfs) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(meridian_tests::fixtures::HOG, plugins.join("hog.wasm")).unwrap();
    let logs = volume.path().join("logs");
    let config = dir.path().join("meridian.toml");
    std::fs::write(&config, format!("[logging]\ndir = {:?}\n", logs)).unwrap();
    let mut cmd = meridian_node(&data, &plugins);
    cmd.arg("--config").arg(&config);
    let node = Node::start("full-logs", cmd, dir.path(), Token::FirstAdmin).await;
    let http = client();

    let filler = volume.fill();
    let id = execute(
        &http,
        &node,
        json!({ "id": "chatty", "name": "chatty", "timezone": "UTC",
                "steps": [{ "id": "h", "type": "hog",
                            "config": { "log_lines": { "count": 5, "bytes": 40 } } }] }),
    )
    .await;
    let done = finished(&http, &node, &id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");

    let logs_of = |id: String| {
        let http = http.clone();
        let url = node.url(&format!("/api/v2/executions/{id}/logs?format=text"));
        let token = node.token().to_owned();
        async move {
            let resp = http.get(url).bearer_auth(token).send().await.unwrap();
            let status = resp.status().as_u16();
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, retry, resp.text().await.unwrap())
        }
    };
    // The writer holds the lines it could not write.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, retry, body) = loop {
        let (status, retry, body) = logs_of(id.clone()).await;
        if status == 503 || Instant::now() > deadline {
            break (status, retry, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry.as_deref(), Some("5"));
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["code"], "logs_unavailable", "{problem:#}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("held in memory"), "{detail}");
    assert!(
        !detail.contains(&*volume.path().to_string_lossy()),
        "{detail}"
    );
    let (status, body, _) = health(&http, &node).await;
    assert_eq!(status, 503, "{body:#}");
    let disk = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "disk:logs")
        .cloned()
        .unwrap_or_else(|| panic!("no disk:logs check: {body:#}"));
    assert_eq!(disk["status"], "fail", "{disk}");

    // Space again: the held lines are written, in order, within seconds.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let (status, _, body) = logs_of(id.clone()).await;
        if status == 200 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the held lines were not written after space was freed: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let line = "l".repeat(40);
    assert_eq!(text.matches(&line).count(), 5, "{text}");
    let first = text
        .find("execution started")
        .unwrap_or_else(|| panic!("{text}"));
    let logged = text.find(&line).unwrap();
    let finished = text
        .rfind("execution succeeded")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(first < logged && logged < finished, "out of order:\n{text}");
    let system = std::fs::read_dir(logs.join("system"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(system.contains("log files writable again"), "{system}");
}

meridian_tests::needs_services! {
    /// A step ends while the store is down. Before, its outcome could not be
    /// recorded, the execution was released and stayed `running`, and a
    /// restart ran the step that had already succeeded again. Now the outcome
    /// waits in memory and is recorded when the store returns: the execution
    /// ends `succeeded` with the step run once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_step_that_ends_during_an_outage_is_recorded_when_the_store_returns() {
        step_ends_during_outage(PrivatePostgres::start()).await;
    }
}

async fn step_ends_during_outage(pg: PrivatePostgres) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        meridian_tests::fixtures::SCRIPT,
        plugins.join("script.wasm"),
    )
    .unwrap();
    let config = dir.path().join("meridian.toml");
    std::fs::write(&config, format!("store = {:?}\n", pg.url())).unwrap();
    let mut cmd = meridian_node(&data, &plugins);
    cmd.arg("--config").arg(&config);
    let node = Node::start("ends-in-outage", cmd, dir.path(), Token::FirstAdmin).await;
    let http = client();

    let id = execute(
        &http,
        &node,
        json!({ "id": "slow", "name": "slow", "timezone": "UTC",
                "steps": [{ "id": "s", "type": "script",
                            "config": { "sleep_ms": 3000, "output": { "done": true } } }] }),
    )
    .await;
    poll_until(&http, &node, &id, "running its step", |d| {
        d["steps"][0]["attempts"][0]["status"] == "running"
    })
    .await;
    // Down before the step ends, and up again only after the pool's own
    // wait for a connection (10 s) has given up on the outcome's write.
    pg.stop().unwrap();
    tokio::time::sleep(Duration::from_secs(14)).await;
    pg.start_again().unwrap();

    let done = finished(&http, &node, &id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let attempts = done["steps"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "the step ran again: {done:#}");
    assert_eq!(attempts[0]["output"], json!({ "done": true }), "{done:#}");
    assert_eq!(done["recoveries"], 0, "{done:#}");
    assert!(
        node.stderr().contains("the store is back"),
        "no word of the wait in the log"
    );
}

meridian_tests::needs_services! {
    /// The node stops (SIGTERM) during an outage, after its step ended but
    /// before the store could take the outcome: the outcome was kept on disk
    /// (`spool/` in the data directory) as well as in memory, so when the node
    /// starts again with the store back it records the outcome before recovery
    /// looks at the execution. The step that succeeded is not run again; the
    /// execution goes on with the next step. (Before, recovery found the
    /// attempt `running`, interrupted it and ran the step a second time.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_outcome_that_waited_for_the_store_survives_a_restart() {
        outcome_survives_restart(PrivatePostgres::start()).await;
    }
}

async fn outcome_survives_restart(pg: PrivatePostgres) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        meridian_tests::fixtures::SCRIPT,
        plugins.join("script.wasm"),
    )
    .unwrap();
    let config = dir.path().join("meridian.toml");
    std::fs::write(&config, format!("store = {:?}\n", pg.url())).unwrap();
    let command = || {
        let mut cmd = meridian_node(&data, &plugins);
        cmd.arg("--config").arg(&config);
        cmd
    };
    let mut node = Node::start("before-restart", command(), dir.path(), Token::FirstAdmin).await;
    let token = node.token().to_owned();
    let http = client();
    let id = execute(
        &http,
        &node,
        json!({ "id": "two-steps", "name": "two steps", "timezone": "UTC",
                "steps": [
                    { "id": "slow", "type": "script",
                      "retry": { "max_attempts": 3, "initial_interval_ms": 10 },
                      "config": { "sleep_ms": 2000, "output": "${execution.attempt}" } },
                    { "id": "after", "type": "script", "config": { "output": "after" } } ] }),
    )
    .await;
    poll_until(&http, &node, &id, "running its slow step", |d| {
        d["steps"][0]["attempts"][0]["status"] == "running"
    })
    .await;
    pg.stop().unwrap();
    // The step ends; its outcome waits for the store, on disk too.
    let spool = data.join("spool");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&spool).map_or(0, |d| d.count()) == 0 {
        assert!(
            Instant::now() < deadline,
            "the waiting outcome never reached {}",
            spool.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = node.terminate(Duration::from_secs(90)).await;
    assert!(status.success(), "{status}");
    drop(node);

    pg.start_again().unwrap();
    let node = Node::start("after-restart", command(), dir.path(), Token::Given(&token)).await;
    let done = finished(&http, &node, &id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let slow = &done["steps"][0];
    assert_eq!(slow["step_id"], "slow", "{done:#}");
    let attempts = slow["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "the step ran again: {done:#}");
    assert_eq!(attempts[0]["status"], "succeeded", "{done:#}");
    assert_eq!(attempts[0]["output"], json!(1), "{done:#}");
    assert_eq!(done["steps"][1]["output"], "after", "{done:#}");
    assert!(
        node.stderr()
            .contains("an outcome kept on disk while the store was out of reach is recorded"),
        "the restarted node did not say it replayed the outcome"
    );
    assert_eq!(
        std::fs::read_dir(&spool).map_or(0, |d| d.count()),
        0,
        "the spool was not emptied"
    );
}

meridian_tests::needs_services! {
    /// The store answers reads but takes no writes (PostgreSQL switched to
    /// read-only transactions, as a standby or an operator's
    /// `default_transaction_read_only` would make it; a full disk does the
    /// same to writes that need space). Before, the health check's `SELECT 1`
    /// still passed: the store looked healthy while no write could land. Now
    /// the check writes one row too: health answers 503 within a second with
    /// `the store takes no writes`, API writes get 503 `store_unavailable`;
    /// once writes are taken again it passes and the node runs jobs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_that_takes_no_writes_fails_the_health_check() {
        read_only_store(PrivatePostgres::start()).await;
    }
}

async fn read_only_store(pg: PrivatePostgres) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        meridian_tests::fixtures::TRIVIAL,
        plugins.join("trivial.wasm"),
    )
    .unwrap();
    let config = dir.path().join("meridian.toml");
    std::fs::write(&config, format!("store = {:?}\n", pg.url())).unwrap();
    let mut cmd = meridian_node(&data, &plugins);
    cmd.arg("--config").arg(&config);
    let node = Node::start("read-only", cmd, dir.path(), Token::FirstAdmin).await;
    let http = client();
    let (status, body, _) = health(&http, &node).await;
    assert_eq!(status, 200, "{body:#}");
    assert!(store_detail(&body).contains("takes writes"), "{body:#}");

    let admin = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    let read_only = |on: bool| {
        let admin = admin.clone();
        async move {
            let value = if on { "on" } else { "off" };
            sqlx::query(&format!(
                "ALTER SYSTEM SET default_transaction_read_only = {value}"
            ))
            .execute(&admin)
            .await
            .unwrap();
            sqlx::query("SELECT pg_reload_conf()")
                .execute(&admin)
                .await
                .unwrap();
        }
    };
    read_only(true).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let store = loop {
        let (status, body, took) = health(&http, &node).await;
        assert!(took < HEALTH_WITHIN, "health took {took:?}");
        if status == 503 {
            break store_detail(&body);
        }
        assert!(Instant::now() < deadline, "health still passes: {body:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(store.contains("\"fail\""), "{store}");
    assert!(store.contains("the store takes no writes"), "{store}");
    let resp = http
        .post(node.url("/api/v2/jobs"))
        .bearer_auth(node.token())
        .json(
            &json!({ "id": "refused", "name": "refused", "timezone": "UTC",
                       "steps": [{ "id": "t", "type": "trivial" }] }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("5")
    );
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "store_unavailable", "{problem:#}");

    read_only(false).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body, _) = health(&http, &node).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health never passed again: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_node_still_works(&node).await;
}

meridian_tests::needs_services! {
    /// The data volume fills up under a node on the embedded SQLite store (its
    /// data directory on a small tmpfs; the logs elsewhere) and is freed
    /// again. While it is full, health answers 503 within a second and names
    /// `disk:data`; nothing already stored is lost; once space is freed the
    /// check passes again and the node runs jobs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_data_volume_is_told_and_survived() {
        full_data_volume(meridian_tests::services::Tmpfs::mount(64 * 1024 * 1024)).await;
    }
}

async fn full_data_volume(volume: meridian_tests::services::Tmpfs) {
    let dir = tempfile::tempdir().unwrap();
    let data = volume.path().join("data");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        meridian_tests::fixtures::TRIVIAL,
        plugins.join("trivial.wasm"),
    )
    .unwrap();
    let config = dir.path().join("meridian.toml");
    std::fs::write(
        &config,
        format!("[logging]\ndir = {:?}\n", dir.path().join("logs")),
    )
    .unwrap();
    let mut cmd = meridian_node(&data, &plugins);
    cmd.arg("--config").arg(&config);
    let node = Node::start("full-data", cmd, dir.path(), Token::FirstAdmin).await;
    let http = client();
    let before = execute(
        &http,
        &node,
        json!({ "id": "before", "name": "before", "timezone": "UTC",
                "steps": [{ "id": "t", "type": "trivial" }] }),
    )
    .await;
    assert_eq!(finished(&http, &node, &before).await["status"], "succeeded");

    let filler = volume.fill();
    let (status, body, took) = health(&http, &node).await;
    assert!(took < HEALTH_WITHIN, "health took {took:?}");
    assert_eq!(status, 503, "{body:#}");
    let data_check = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "disk:data")
        .unwrap_or_else(|| panic!("no disk:data check: {body:#}"));
    assert_eq!(data_check["status"], "fail", "{body:#}");
    // What was stored is still there.
    assert_eq!(
        execution(&http, &node, &before).await["status"],
        "succeeded"
    );

    std::fs::remove_file(filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body, _) = health(&http, &node).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health never passed again: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_node_still_works(&node).await;
}
