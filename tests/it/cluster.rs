//! Several `meridian serve` processes on one PostgreSQL database (issue 9),
//! with real processes and a real PostgreSQL server (`.ci/run` starts one;
//! `MERIDIAN_TEST_PG_URL` points elsewhere; they are ignored where the
//! services are not promised, see `meridian_tests::needs_services!`).
//!
//! - [`three_nodes_fire_a_per_second_schedule_exactly_once`]: three nodes,
//!   one schedule firing every second, created through one node's API (the
//!   others pick it up by polling the store), paused through another node
//!   (no node fires it afterwards). After a bounded run, checked from the
//!   store: every second between the first and the last fire has
//!   exactly one fire, each fire exactly one execution, each execution one
//!   step run with one attempt, all succeeded.
//! - [`kill_9_of_a_node_hands_its_run_to_another`]: `kill -9` of the node
//!   running a long step; the other node takes the execution over once the
//!   lease expires (within the lease plus a heartbeat), the interrupted
//!   attempt stays on record and the step runs again as attempt 2 — the
//!   documented at-least-once case — and the execution succeeds on the
//!   surviving node, which any node's API shows.

#![cfg(unix)]

use super::node::{Node, Token, meridian_node};
use super::recovery::{client, execute, execution, in_flight, is_final, poll_until};
use meridian::store::{ExecutionFilter, Store};
use meridian_tests::fixtures;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A fresh schema on the test PostgreSQL server, migrated, and the URL
/// that makes a node use it.
struct Database {
    url: String,
    store: Store,
}

async fn database() -> Database {
    let base = meridian_tests::services::postgres_url();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!("cluster_{}_{}", std::process::id(), nanos % 1_000_000_000);
    let store = Store::open_postgres_schema(&base, &schema, 4)
        .await
        .expect("create the test schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    Database { url, store }
}

/// A node's data directory with its config: the shared store, its node id,
/// short leases so take-over is quick.
pub(super) fn node_config(dir: &Path, url: &str, id: &str, lease_s: u64) -> PathBuf {
    let data = dir.join(id);
    std::fs::create_dir_all(&data).unwrap();
    let config = data.join("meridian.toml");
    std::fs::write(
        &config,
        format!(
            "store = {url:?}\n\n[cluster]\nnode_id = {id:?}\nlease_s = {lease_s}\nheartbeat_s = 1\n",
        ),
    )
    .unwrap();
    config
}

pub(super) fn command(
    dir: &Path,
    plugins: &Path,
    config: &Path,
    id: &str,
) -> std::process::Command {
    let mut cmd = meridian_node(&dir.join(id), plugins);
    cmd.arg("--config").arg(config);
    cmd
}

pub(super) fn token(dir: &Path, plugins: &Path, config: &Path) -> String {
    let out = command(dir, plugins, config, "n1")
        .args([
            "token",
            "create",
            "--role",
            "operator",
            "--name",
            "cluster-test",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "token create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub(super) async fn post(http: &reqwest::Client, node: &Node, path: &str, body: Value) -> Value {
    let resp = http
        .post(node.url(path))
        .bearer_auth(node.token())
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "POST {path}: {status} {body:#}");
    body
}

meridian_tests::needs_services! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_fire_a_per_second_schedule_exactly_once() {
        let db = database().await;
        let tmp = tempfile::tempdir().unwrap();
        let plugins = tmp.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::copy(fixtures::SCRIPT, plugins.join("script.wasm")).unwrap();
        let configs: Vec<PathBuf> = ["n1", "n2", "n3"]
            .iter()
            .map(|id| node_config(tmp.path(), &db.url, id, 6))
            .collect();
        let token = token(tmp.path(), &plugins, &configs[0]);
        let mut nodes = Vec::new();
        for (i, name) in ["n1", "n2", "n3"].into_iter().enumerate() {
            let cmd = command(tmp.path(), &plugins, &configs[i], name);
            nodes.push(Node::start(name, cmd, tmp.path(), Token::Given(&token)).await);
        }
        let http = client();
        post(
            &http,
            &nodes[0],
            "/api/v2/jobs",
            json!({
                "id": "every-second", "name": "every second", "timezone": "Europe/Berlin",
                "steps": [ { "id": "tick", "type": "script", "config": { "output": "tick" } } ],
            }),
        )
        .await;
        post(
            &http,
            &nodes[0],
            "/api/v2/schedules",
            json!({ "id": "tick", "job_id": "every-second", "cron": "* * * * * *",
                    "timezone": "Europe/Berlin" }),
        )
        .await;
        // Every node serves the API and sees the cluster.
        let cluster: Value = http
            .get(nodes[2].url("/api/v2/cluster"))
            .bearer_auth(nodes[2].token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(cluster["this_node"], "n3", "{cluster:#}");
        assert_eq!(cluster["store"], "postgres");
        let states: Vec<(&str, &str)> = cluster["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["id"].as_str().unwrap(), n["state"].as_str().unwrap()))
            .collect();
        assert_eq!(states, [("n1", "alive"), ("n2", "alive"), ("n3", "alive")]);

        // A bounded run, then the schedule is paused and the nodes stop.
        tokio::time::sleep(Duration::from_secs(12)).await;
        post(&http, &nodes[1], "/api/v2/schedules/tick/pause", json!({})).await;
        // The other nodes follow the store about once a second.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        // Let what was fired finish.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let unfinished = db.store.unfinished_executions().await.unwrap();
            if unfinished.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} executions never finished",
                unfinished.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The pause, made through n2, holds on every node once they have
        // followed the store: no fire after that.
        let paused = db.store.list_fires("tick", 10_000).await.unwrap().len();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            db.store.list_fires("tick", 10_000).await.unwrap().len(),
            paused,
            "a node kept firing a schedule paused through another node"
        );
        for node in &mut nodes {
            let status = node.terminate(Duration::from_secs(30)).await;
            assert!(status.success(), "{status}");
        }

        // Checked from the store.
        let fires = db.store.list_fires("tick", 10_000).await.unwrap();
        let executions = db
            .store
            .list_executions(&ExecutionFilter {
                job_id: Some("every-second".into()),
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(fires.len() >= 8, "only {} fires in 12 s", fires.len());
        // One fire per second, none missing, none twice.
        let nominal: BTreeSet<&str> = fires.iter().map(|f| f.nominal_local.as_str()).collect();
        assert_eq!(nominal.len(), fires.len(), "a fire identity twice");
        let instants: Vec<i64> = {
            let mut v: Vec<i64> = fires.iter().map(|f| f.fire_at_us).collect();
            v.sort_unstable();
            v
        };
        for w in instants.windows(2) {
            assert_eq!(
                w[1] - w[0],
                1_000_000,
                "a second without its fire: {instants:?}"
            );
        }
        // Each fire exactly one execution, each execution run once.
        let run_ids: BTreeSet<&str> = fires.iter().filter_map(|f| f.run_id.as_deref()).collect();
        assert_eq!(
            run_ids.len(),
            fires.len(),
            "every fire queued one execution"
        );
        let execution_ids: BTreeSet<&str> = executions.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            run_ids, execution_ids,
            "fires and executions match one to one"
        );
        let mut by_node: BTreeMap<String, usize> = BTreeMap::new();
        for e in &executions {
            assert_eq!(e.status, "succeeded", "{e:?}");
            assert_eq!(e.recoveries, 0, "{e:?}");
            let runs = db.store.list_step_runs(&e.id).await.unwrap();
            assert_eq!(runs.len(), 1, "{}: {runs:?}", e.id);
            assert_eq!(runs[0].attempts, 1, "{}: ran twice: {runs:?}", e.id);
            *by_node
                .entry(e.node_id.clone().unwrap_or_default())
                .or_default() += 1;
        }
        eprintln!(
            "{} fires in 12 s, executions by node: {by_node:?}",
            fires.len()
        );
        assert!(
            by_node
                .keys()
                .all(|n| ["n1", "n2", "n3"].contains(&n.as_str()))
        );
    }
}

meridian_tests::needs_services! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kill_9_of_a_node_hands_its_run_to_another() {
        const LEASE_S: u64 = 3;
        let db = database().await;
        let tmp = tempfile::tempdir().unwrap();
        let plugins = tmp.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::copy(fixtures::SCRIPT, plugins.join("script.wasm")).unwrap();
        let c1 = node_config(tmp.path(), &db.url, "n1", LEASE_S);
        let c2 = node_config(tmp.path(), &db.url, "n2", LEASE_S);
        let token = token(tmp.path(), &plugins, &c1);
        let mut n1 = Node::start(
            "n1",
            command(tmp.path(), &plugins, &c1, "n1"),
            tmp.path(),
            Token::Given(&token),
        )
        .await;
        let n2 = Node::start(
            "n2",
            command(tmp.path(), &plugins, &c2, "n2"),
            tmp.path(),
            Token::Given(&token),
        )
        .await;
        let http = client();
        // Submitted to n1, so n1 holds and runs it.
        let id = execute(
            &http,
            &n1,
            json!({
                "id": "long-one", "name": "a long step", "timezone": "America/New_York",
                "steps": [ { "id": "long", "type": "script", "timeout_ms": 60_000,
                             "retry": { "max_attempts": 2, "initial_interval_ms": 10 },
                             "config": { "sleep_ms": 4_000, "output": "${execution.attempt}" } } ],
            }),
        )
        .await;
        // Watched through the other node's API.
        poll_until(&http, &n2, &id, "in its long step", |d| {
            in_flight(d, "long")
        })
        .await;
        let status = n1.kill_9();
        assert_eq!(status.signal(), Some(9));
        let killed = Instant::now();
        let taken = poll_until(&http, &n2, &id, "taken over", |d| {
            d["steps"][0]["attempts"]
                .as_array()
                .is_some_and(|a| a.len() == 2)
        })
        .await;
        let takeover = killed.elapsed();
        let done = poll_until(&http, &n2, &id, "finished", is_final).await;
        assert_eq!(done["status"], "succeeded", "{done:#}");
        assert_eq!(done["node"], "n2", "{done:#}");
        assert_eq!(done["recoveries"], 1, "{done:#}");
        let attempts = done["steps"][0]["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{done:#}");
        assert_eq!(attempts[0]["status"], "interrupted", "{done:#}");
        assert_eq!(attempts[1]["status"], "succeeded", "{done:#}");
        // Within the lease (from n1's last heartbeat) plus one heartbeat of
        // n2's loop, with slack for a loaded 2-core box.
        let bound = Duration::from_secs(LEASE_S + 1 + 3);
        assert!(
            takeover <= bound,
            "taken over {takeover:?} after the kill (bound {bound:?}): {taken:#}"
        );
        eprintln!("taken over {takeover:?} after kill -9 (lease {LEASE_S} s)");
        let cluster: Value = http
            .get(n2.url("/api/v2/cluster"))
            .bearer_auth(n2.token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let states: Vec<(&str, &str)> = cluster["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["id"].as_str().unwrap(), n["state"].as_str().unwrap()))
            .collect();
        assert_eq!(states, [("n1", "lost"), ("n2", "alive")], "{cluster:#}");
        let _ = execution(&http, &n2, &id).await;
    }
}
