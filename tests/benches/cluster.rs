//! Persisted executions per second with one, two and three nodes on one
//! PostgreSQL database, side by side with the SQLite single node, in one
//! run.
//!
//! Each node is what `meridian serve` builds, in this process: its own
//! `Store` handle (its own connection pool) with its own node id, its own
//! `Engine`, queues and scheduler (`Executions::start`) and its cluster loop
//! (heartbeats, leases, claims, schedule sync), sharing one wasm runtime
//! (the `trivial` fixture). N one-step no-op executions are submitted
//! through `Executions::submit`, spread round-robin over the nodes by 8
//! tasks per node (each node holds and runs what it was given, as API calls
//! spread by a load balancer would be); wall time from the first submit
//! until every execution is final, read from the nodes' queue counters; the
//! store is checked afterwards (every execution `succeeded`, each held by
//! the node that ran it). Rows run in interleaved rounds (default 3) and the
//! table gives the median.
//!
//! What 2 cores can show: the nodes, their wasm steps and the PostgreSQL
//! server all share the same two cores, so more nodes cannot add CPU here;
//! the numbers show the cost of coordination (leases, fencing, the shared
//! database), not the scaling a cluster of machines would get.
//!
//! Run: `cargo bench -p meridian-tests --bench cluster` (PostgreSQL from
//! `MERIDIAN_TEST_PG_URL`, by default the cluster `.ci/run` starts).
//! Environment: `CLUSTER_BENCH_N` (N per row, default 5,000),
//! `CLUSTER_BENCH_ROUNDS` (default 3).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use meridian::engine::service::Executions;
use meridian::engine::{Engine, SystemTimer};
use meridian::queue::QueueConfig;
use meridian::runtime::Runtime;
use meridian::scheduler::{SchedulerConfig, SystemClock};
use meridian::store::{ExecutionFilter, NodeLease, Store};
use meridian_tests::{TestRuntime, fixtures};
use serde_json::{Map, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

const SUBMITTERS_PER_NODE: usize = 8;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let n: usize = std::env::var("CLUSTER_BENCH_N")
        .ok()
        .map_or(5_000, |s| s.parse().unwrap());
    let rounds: usize = std::env::var("CLUSTER_BENCH_ROUNDS")
        .ok()
        .map_or(3, |s| s.parse().unwrap());
    let pg = match meridian_tests::services::try_postgres() {
        Ok(service) => service.url,
        Err(why) => {
            eprintln!("cluster bench: no PostgreSQL, nothing measured: {why}");
            return;
        }
    };
    let meridian = rt.block_on(TestRuntime::new("", &[fixtures::TRIVIAL]));
    let rows: [(&str, Option<usize>); 4] = [
        ("SQLite file, 1 node", None),
        ("PostgreSQL, 1 node", Some(1)),
        ("PostgreSQL, 2 nodes", Some(2)),
        ("PostgreSQL, 3 nodes", Some(3)),
    ];
    let mut results: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for round in 0..rounds {
        for (name, nodes) in rows {
            let rate = rt.block_on(run(&meridian.runtime, &pg, nodes, n, round));
            println!("  round {round}: {name:<22} {rate:>7.0} executions/s");
            results.entry(name).or_default().push(rate);
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let base = median(&results["SQLite file, 1 node"]);
    println!();
    println!("persisted one-step executions per second, N = {n}, median of {rounds} rounds:");
    for (name, _) in rows {
        let m = median(&results[name]);
        println!(
            "  {name:<22} {m:>7.0} /s   {:.2}× the SQLite node",
            m / base
        );
    }
}

/// One row: `nodes` PostgreSQL nodes (a fresh schema), or with `None` one
/// node on a temp-file SQLite store. Returns executions per second.
async fn run(
    runtime: &Arc<Runtime>,
    pg: &str,
    nodes: Option<usize>,
    n: usize,
    round: usize,
) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<Store> = match nodes {
        None => vec![
            Store::open_sqlite(&dir.path().join("meridian.db"))
                .await
                .unwrap(),
        ],
        Some(k) => {
            let schema = format!("bench_{}_{round}_{k}", std::process::id());
            let mut v = Vec::new();
            for _ in 0..k {
                v.push(Store::open_postgres_schema(pg, &schema, 16).await.unwrap());
            }
            v
        }
    };
    let job = json!({"id": "noop", "name": "noop", "timezone": "UTC",
                     "steps": [{"id": "s", "type": "trivial", "config": {}}]});
    let parsed = meridian::model::job_from_value(job).unwrap();
    stores[0]
        .put_job("noop", &serde_json::to_string(&parsed).unwrap(), 1)
        .await
        .unwrap();
    let mut services = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        store.set_node(NodeLease {
            id: Arc::from(format!("node-{i}")),
            lease_us: 15_000_000,
        });
        let engine = Arc::new(Engine::new(
            runtime.clone(),
            store.clone(),
            Arc::new(SystemTimer),
        ));
        let (executions, _) = Executions::start(
            engine,
            QueueConfig::default(),
            Arc::new(SystemClock),
            SchedulerConfig::default(),
        )
        .await
        .unwrap();
        executions.start_cluster_loop(
            Duration::from_secs(5),
            Arc::new(meridian::scheduler::ClusterClock::new()),
        );
        services.push(Arc::new(executions));
    }
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for executions in &services {
        for _ in 0..SUBMITTERS_PER_NODE {
            let (executions, next) = (executions.clone(), next.clone());
            tasks.spawn(async move {
                let params = Map::new();
                while next.fetch_add(1, Relaxed) < n {
                    executions.submit("noop", &params, "api").await.unwrap();
                }
            });
        }
    }
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        tick.tick().await;
        let ended: u64 = services
            .iter()
            .flat_map(|s| s.queues().stats())
            .map(|s| s.succeeded + s.failed)
            .sum();
        if ended >= n as u64 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(600), "{ended} of {n}");
    }
    let wall = start.elapsed();
    while tasks.join_next().await.is_some() {}
    for s in services {
        Arc::into_inner(s).unwrap().shutdown().await;
    }
    let done = stores[0]
        .list_executions(&ExecutionFilter {
            job_id: Some("noop".into()),
            limit: i64::try_from(n + 1).unwrap(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(done.len(), n);
    let bad: Vec<_> = done.iter().filter(|e| e.status != "succeeded").collect();
    assert!(
        bad.is_empty(),
        "{} not succeeded, e.g. {:?}",
        bad.len(),
        bad.first()
    );
    n as f64 / wall.as_secs_f64()
}
