//! Two `meridian serve` nodes on a PostgreSQL cluster of the test's own
//! ([`PrivatePostgres`]: `initdb` on a free port, run as `postgres`), under
//! the faults that used to hand a live node's work to the other one:
//!
//! - [`two_nodes_ride_out_a_store_outage_longer_than_their_lease`]\: the
//!   store goes down for longer than the lease while a step runs. Before,
//!   whichever node reconnected first found the other's heartbeat stale and
//!   took its run over: the step that had succeeded ran again, and the old
//!   owner could still write its end over the new one's.
//! - [`a_node_whose_clock_runs_ahead_neither_takes_over_nor_fires_early`]\: one
//!   node's clock is set 30 s ahead with `faketime` (libfaketime, from
//!   Debian). Before, leases and heartbeats were stamped with each node's
//!   own clock: that node found the other's heartbeat 30 s old and took
//!   its run over, and it fired every fire 30 s early (so it won them all).
//!
//! Both also check what every cluster test checks: each nominal second of
//! the per-second schedule has exactly one fire, nothing is left `running`
//! afterwards, and no step run has a second attempt.

#![cfg(unix)]

use super::cluster::{command, node_config, post, token};
use super::faults::{HEALTH_WITHIN, health};
use super::node::{Node, Token};
use super::recovery::{client, execute, finished, in_flight, poll_until};
use meridian::store::{ExecutionFilter, Store};
use meridian_tests::fixtures;
use meridian_tests::services::PrivatePostgres;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Short leases, so that an outage or a skew past them is quick to show.
const LEASE_S: u64 = 6;

/// A job whose one step sleeps `ms` and outputs its attempt number.
fn long_job(ms: u64) -> Value {
    json!({
        "id": "long-one", "name": "a long step", "timezone": "UTC",
        "steps": [ { "id": "long", "type": "script", "timeout_ms": 120_000,
                     "retry": { "max_attempts": 3, "initial_interval_ms": 10 },
                     "config": { "sleep_ms": ms, "output": "${execution.attempt}" } } ],
    })
}

/// The per-second schedule every test here runs beside its long step.
async fn every_second(http: &reqwest::Client, node: &Node) {
    post(
        http,
        node,
        "/api/v2/jobs",
        json!({
            "id": "every-second", "name": "every second", "timezone": "UTC",
            "steps": [ { "id": "tick", "type": "script", "config": { "output": "tick" } } ],
        }),
    )
    .await;
    post(
        http,
        node,
        "/api/v2/schedules",
        json!({ "id": "tick", "job_id": "every-second", "cron": "* * * * * *",
                "timezone": "UTC" }),
    )
    .await;
}

/// The long execution ran once, on the node it was submitted to, and was
/// never taken over.
fn assert_ran_once_where_submitted(done: &Value, node: &str, nodes: &[&Node]) {
    let said = || warnings(nodes);
    assert_eq!(done["status"], "succeeded", "{done:#}\n{}", said());
    let attempts = done["steps"][0]["attempts"].as_array().unwrap();
    assert_eq!(
        attempts.len(),
        1,
        "the step ran again: {done:#}\n{}",
        said()
    );
    assert_eq!(attempts[0]["output"], json!(1), "{done:#}");
    assert_eq!(done["recoveries"], 0, "{done:#}\n{}", said());
    assert_eq!(done["node"], node, "{done:#}\n{}", said());
}

/// Pauses the schedule, waits until nothing is unfinished, and checks what
/// every test here promises: one fire per nominal second, no gap, every
/// execution final, no step run with a second attempt; and no node took
/// another's executions over.
async fn assert_fired_once_and_ran_once(http: &reqwest::Client, nodes: &[&Node], store: &Store) {
    post(http, nodes[1], "/api/v2/schedules/tick/pause", json!({})).await;
    // The other node follows the store about once a second.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let unfinished = store.unfinished_executions().await.unwrap();
        if unfinished.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left unfinished: {unfinished:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fires = store.list_fires("tick", 10_000).await.unwrap();
    assert!(fires.len() >= 5, "only {} fires", fires.len());
    let nominal: BTreeSet<&str> = fires.iter().map(|f| f.nominal_local.as_str()).collect();
    assert_eq!(nominal.len(), fires.len(), "a fire identity twice");
    let mut instants: Vec<i64> = fires.iter().map(|f| f.fire_at_us).collect();
    instants.sort_unstable();
    for w in instants.windows(2) {
        assert_eq!(
            w[1] - w[0],
            1_000_000,
            "a second without its fire: {instants:?}"
        );
    }
    let executions = store
        .list_executions(&ExecutionFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    for e in &executions {
        assert_eq!(e.recoveries, 0, "taken over: {e:?}");
        for run in store.list_step_runs(&e.id).await.unwrap() {
            assert_eq!(run.attempts, 1, "{}: ran twice: {run:?}", e.id);
        }
    }
    for node in nodes {
        let log = node.stderr();
        assert!(
            !log.contains("took over executions"),
            "a node took over another's executions; what the nodes said of the store:\n{}",
            warnings(nodes)
        );
    }
}

/// The nodes' WARN and ERROR lines, for a failure's message.
fn warnings(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .flat_map(|n| n.stderr().lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The cluster both tests start: a data and plugins directory, an operator
/// token, and a node config per id.
struct Setup {
    tmp: tempfile::TempDir,
    plugins: PathBuf,
    token: String,
}

impl Setup {
    fn new(pg: &PrivatePostgres, ids: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let plugins = tmp.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::copy(fixtures::SCRIPT, plugins.join("script.wasm")).unwrap();
        for id in ids {
            node_config(tmp.path(), &pg.url(), id, LEASE_S);
        }
        let token = token(
            tmp.path(),
            &plugins,
            &tmp.path().join(ids[0]).join("meridian.toml"),
        );
        Setup {
            tmp,
            plugins,
            token,
        }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn command(&self, id: &str) -> Command {
        let config = self.dir().join(id).join("meridian.toml");
        command(self.dir(), &self.plugins, &config, id)
    }

    async fn start(&self, name: &'static str, cmd: Command) -> Node {
        Node::start(name, cmd, self.dir(), Token::Given(&self.token)).await
    }
}

meridian_tests::needs_services! {
    /// The store goes down for longer than the lease (10 s against 6 s) while
    /// n1 runs a 6 s step, a per-second schedule firing on both nodes. Health
    /// answers within a second on both throughout. When the store is back, n1
    /// stalls for a third of a lease (SIGSTOP) before it reconnects; n2 waits one
    /// lease of steady heartbeats before it takes anything over, so n1 renews
    /// its heartbeat and records its step's outcome first: the step ran once,
    /// on n1, and nothing was taken over. The fires missed meanwhile go through
    /// the misfire policy (`latest`): recorded `missed`, the latest run as a
    /// catch-up fire, said in the log and the audit trail.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_ride_out_a_store_outage_longer_than_their_lease() {
        outage_longer_than_the_lease(PrivatePostgres::start()).await;
    }
}

async fn outage_longer_than_the_lease(pg: PrivatePostgres) {
    let setup = Setup::new(&pg, &["n1", "n2"]);
    let mut n1 = setup.start("n1", setup.command("n1")).await;
    let n2 = setup.start("n2", setup.command("n2")).await;
    let http = client();
    every_second(&http, &n1).await;
    let id = execute(&http, &n1, long_job(6_000)).await;
    poll_until(&http, &n2, &id, "in its long step", |d| {
        in_flight(d, "long")
    })
    .await;

    pg.stop().unwrap();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(10) {
        for node in [&n1, &n2] {
            let (status, body, took) = health(&http, node).await;
            assert!(took < HEALTH_WITHIN, "health took {took:?} in the outage");
            assert_eq!(status, 503, "{body:#}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // n1 comes back slower than n2 (stalled from just before the store
    // returns until a third of a lease after): n2 must not take its run
    // over meanwhile, though n1's heartbeat, stale since the outage began,
    // is older than the lease. n2 waits one lease of steady heartbeats of
    // its own before it takes anything over.
    n1.pause(true);
    pg.start_again().unwrap();
    tokio::time::sleep(Duration::from_secs(LEASE_S / 3)).await;
    n1.pause(false);

    let done = finished(&http, &n1, &id).await;
    assert_ran_once_where_submitted(&done, "n1", &[&n1, &n2]);
    // A few seconds of normal firing after the outage.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let store = Store::open_postgres(&pg.url(), None, 2).await.unwrap();
    assert_fired_once_and_ran_once(&http, &[&n1, &n2], &store).await;
    assert!(
        n2.stderr().contains("the store was out of reach"),
        "n2 did not say why it waited before taking anything over:\n{}",
        warnings(&[&n1, &n2])
    );
    // The fires the outage cost went through the misfire policy (the
    // default, `latest`): the latest ran as a catch-up fire, the others
    // are recorded `missed`, and the log and the audit trail say so.
    // (Which node runs that latest fire, and whether as a catch-up fire or
    // as its next scheduled one, is a race between the two: either way it
    // runs once.)
    let mut fires = store.list_fires("tick", 10_000).await.unwrap();
    fires.sort_by_key(|f| f.fire_at_us);
    let missed: Vec<usize> = (0..fires.len())
        .filter(|&i| fires[i].outcome == "missed")
        .collect();
    assert!(missed.len() >= 5, "{fires:#?}\n{}", warnings(&[&n1, &n2]));
    let after = missed[missed.len() - 1] + 1;
    assert!(
        fires
            .get(after)
            .is_some_and(|f| f.outcome == "enqueued" && f.run_id.is_some()),
        "the latest missed fire did not run: {fires:#?}"
    );
    assert!(
        [&n1, &n2].iter().any(|n| n
            .stderr()
            .contains("fires missed while the store was out of reach")),
        "no node said it missed fires:\n{}",
        warnings(&[&n1, &n2])
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let trail = store.audit_all().await.unwrap();
        if let Some(record) = trail
            .iter()
            .map(|r| &r.entry)
            .find(|e| e.kind == "schedule" && e.decision == "missed")
        {
            assert_eq!(record.target.as_deref(), Some("tick"), "{record:?}");
            assert!(
                record
                    .detail
                    .as_deref()
                    .is_some_and(|d| d.contains("misfire policy latest")),
                "{record:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no audit record of the missed fires"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// libfaketime's multi-threaded preload library, as Debian's `faketime`
/// package installs it (`.ci/run` does); the test fails without it.
fn libfaketime() -> PathBuf {
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|d| d.path().join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.is_file())
        .expect("libfaketime is not installed (apt-get install faketime, as .ci/run does)")
}

meridian_tests::needs_services! {
    /// n2's clock runs 30 s ahead (libfaketime; its monotonic clock is left
    /// alone), n1's is right; the lease is 6 s. n1 runs a 6 s step while a
    /// per-second schedule fires on both. n2 measures its offset against the
    /// store at every heartbeat and follows the store's time: it does not take
    /// n1's run over (heartbeats are stamped and compared on the store's
    /// clock), and no fire is recorded before its time comes (checked against
    /// the test's own clock, which is right). `GET /api/v2/cluster` shows each
    /// node's offset, and n2 says in its log that its clock is off.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_whose_clock_runs_ahead_neither_takes_over_nor_fires_early() {
        clock_ahead(PrivatePostgres::start(), &libfaketime()).await;
    }
}

async fn clock_ahead(pg: PrivatePostgres, libfaketime: &Path) {
    const AHEAD_S: i64 = 30;
    let setup = Setup::new(&pg, &["n1", "n2"]);
    let n1 = setup.start("n1", setup.command("n1")).await;
    let mut skewed = setup.command("n2");
    skewed
        .env("LD_PRELOAD", libfaketime)
        .env("FAKETIME", format!("+{AHEAD_S}s"))
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("FAKETIME_NO_CACHE", "1");
    let n2 = setup.start("n2", skewed).await;
    let http = client();
    let store = Store::open_postgres(&pg.url(), None, 2).await.unwrap();
    every_second(&http, &n2).await;
    let id = execute(&http, &n1, long_job(6_000)).await;

    // While the step runs (and a lease and more after), no fire is
    // recorded for a time that has not come.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(10) {
        let now_us = chrono::Utc::now().timestamp_micros();
        let fires = store.list_fires("tick", 10_000).await.unwrap();
        let early: Vec<_> = fires
            .iter()
            .filter(|f| f.fire_at_us > now_us + 1_000_000)
            .map(|f| &f.nominal_local)
            .collect();
        assert!(early.is_empty(), "fired before their time: {early:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let done = finished(&http, &n1, &id).await;
    assert_ran_once_where_submitted(&done, "n1", &[&n1, &n2]);

    let cluster: Value = http
        .get(n1.url("/api/v2/cluster"))
        .bearer_auth(n1.token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let offset = |id: &str| {
        cluster["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .and_then(|n| n["clock_offset_ms"].as_f64())
            .unwrap_or_else(|| panic!("no offset for {id}: {cluster:#}"))
    };
    assert!(offset("n1").abs() < 1_000.0, "{cluster:#}");
    let ahead_ms = -(AHEAD_S as f64) * 1_000.0;
    assert!((offset("n2") - ahead_ms).abs() < 2_000.0, "{cluster:#}");
    assert!(
        n2.stderr().contains("this node's clock is off the store's"),
        "n2 did not say its clock is off"
    );
    assert_fired_once_and_ran_once(&http, &[&n1, &n2], &store).await;
}

meridian_tests::needs_services! {
    /// Every session of both nodes is terminated (`pg_terminate_backend`, as
    /// an operator or a failover would) four times a second for six seconds,
    /// while n1 runs a 4 s step and the per-second schedule fires on both.
    /// Each read and write cut off is tried again on a new connection, the
    /// heartbeat at once: the step runs once, on n1, each second has its one
    /// fire, nothing is left running, nothing is taken over, and health
    /// answers within a second afterwards. Before, a run whose first read or
    /// start met a killed session was released, and the other node took it
    /// over; a heartbeat that met one waited for the next tick.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_ride_out_their_sessions_being_terminated() {
        sessions_terminated(PrivatePostgres::start()).await;
    }
}

async fn sessions_terminated(pg: PrivatePostgres) {
    let setup = Setup::new(&pg, &["n1", "n2"]);
    let n1 = setup.start("n1", setup.command("n1")).await;
    let n2 = setup.start("n2", setup.command("n2")).await;
    let http = client();
    every_second(&http, &n1).await;
    let id = execute(&http, &n1, long_job(4_000)).await;
    poll_until(&http, &n2, &id, "in its long step", |d| {
        in_flight(d, "long")
    })
    .await;

    let admin = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    let mut terminated = 0;
    for _ in 0..24 {
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND backend_type = 'client backend'",
        )
        .fetch_all(&admin)
        .await
        .unwrap();
        terminated += killed.iter().filter(|k| **k).count();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(terminated >= 24, "only {terminated} sessions terminated");

    let done = finished(&http, &n1, &id).await;
    assert_ran_once_where_submitted(&done, "n1", &[&n1, &n2]);
    for node in [&n1, &n2] {
        let (status, body, took) = health(&http, node).await;
        assert!(took < HEALTH_WITHIN, "health took {took:?}");
        assert_eq!(status, 200, "{body:#}");
    }
    let store = Store::open_postgres(&pg.url(), None, 2).await.unwrap();
    assert_fired_once_and_ran_once(&http, &[&n1, &n2], &store).await;
}
