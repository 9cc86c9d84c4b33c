//! The engine's writes for one-step executions on the SQLite file store,
//! through the group-commit writer: insert, start, attempt start, attempt
//! end, execution end; 20,000 executions, a few at a time
//! (`MERIDIAN_BENCH_WORKERS`, 8 by default). Prints executions per second
//! and the process's CPU time per execution.
//!
//! Each round runs the workload twice, side by side on fresh stores: as
//! migrated, and with the triggers that check the enumerated columns on
//! SQLite (migration 0008) dropped, so the ratio is what those checks cost
//! (`MERIDIAN_BENCH_ROUNDS`, 5 by default; the median of the per-round
//! ratios is printed).
//!
//! Run: `cargo bench -p meridian-tests --bench store_writes`. Compare two
//! commits by building both binaries first and running them alternately
//! (BENCHMARKS.md, "What fencing costs").

#![allow(clippy::unwrap_used, clippy::expect_used)]

use meridian::store::{AttemptFinish, AttemptStart, NewExecution, Store};

const TOTAL: usize = 20_000;

/// This process's CPU time so far (all threads), where /proc tells it.
async fn cpu_s() -> Option<f64> {
    let p = meridian::metrics::process_stats().await;
    Some(p.cpu_user_s? + p.cpu_system_s?)
}

/// One execution's five writes, as the engine makes them for a step that
/// succeeds at its first attempt.
async fn one_step_execution(store: &Store, i: usize) {
    let id = format!("e{i:08}");
    let now = i64::try_from(i).unwrap();
    store
        .insert_execution(&NewExecution {
            id: id.clone(),
            job_id: "job".into(),
            trigger: "api".into(),
            schedule_id: None,
            fire_nominal_local: None,
            fire_utc_offset_s: None,
            timezone: "Europe/Berlin".into(),
            priority: 0,
            params: "{}".into(),
            scheduled_at_us: None,
            queued_at_us: now,
        })
        .await
        .unwrap();
    assert!(store.start_execution(&id, 1, 0, now).await.unwrap());
    let start = AttemptStart {
        execution_id: id.clone(),
        seq: 1,
        step_id: "a".into(),
        step_type: "http".into(),
        attempt: 1,
        now_us: now,
        epoch: 1,
    };
    assert!(store.start_attempt(&start).await.unwrap());
    let end = AttemptFinish {
        execution_id: id.clone(),
        seq: 1,
        attempt: 1,
        status: "succeeded".into(),
        now_us: now + 1,
        duration_us: 7,
        output: Some(r#"{"seq":1,"attempt":1}"#.into()),
        exports: Some("{}".into()),
        error: None,
        logs: Some("[]".into()),
        host_calls: 3,
        step_done: true,
        epoch: 1,
    };
    assert!(store.finish_attempt(&end).await.unwrap());
    let finished = store.finish_execution(&id, "succeeded", None, 1, 1, now + 1);
    assert!(finished.await.unwrap());
}

/// A fresh store in `dir`, as migrated or with the enumerated columns'
/// triggers dropped.
async fn store(dir: &std::path::Path, checked: bool) -> Store {
    let path = dir.join("meridian.db");
    drop(Store::open_sqlite(&path).await.unwrap());
    if !checked {
        let url = format!("sqlite://{}", path.display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '%_allowed_%'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert!(!names.is_empty(), "no enumeration triggers to drop");
        for name in names {
            sqlx::query(&format!("DROP TRIGGER {name}"))
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    }
    Store::open_sqlite(&path).await.unwrap()
}

/// One run of the workload: executions per second and CPU µs each.
async fn run(store: &Store, workers: usize) -> (f64, Option<f64>) {
    let cpu_before = cpu_s().await;
    let start = std::time::Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (w..TOTAL).step_by(workers) {
                    one_step_execution(&store, i).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let rate = TOTAL as f64 / start.elapsed().as_secs_f64();
    let cpu = match (cpu_before, cpu_s().await) {
        (Some(before), Some(after)) => Some((after - before) * 1e6 / TOTAL as f64),
        _ => None,
    };
    (rate, cpu)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|w| w.parse().ok())
            .unwrap_or(default)
    };
    let workers = env("MERIDIAN_BENCH_WORKERS", 8);
    let rounds = env("MERIDIAN_BENCH_ROUNDS", 5);
    runtime.block_on(async {
        println!("{TOTAL} one-step executions, {workers} at a time, per run");
        println!("| round | checked /s | unchecked /s | checked ÷ unchecked | CPU µs checked | unchecked |");
        println!("|-------|-----------:|-------------:|--------------------:|---------------:|----------:|");
        let (mut rates, mut cpus) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            let mut row = Vec::new();
            // Alternate which goes first, so neither always meets a warmer
            // or busier machine.
            let order = if round % 2 == 1 { [true, false] } else { [false, true] };
            for checked in order {
                let dir = tempfile::tempdir().unwrap();
                let store = store(dir.path(), checked).await;
                row.push((checked, run(&store, workers).await));
            }
            row.sort_by_key(|(checked, _)| !checked);
            let [(_, (with, with_cpu)), (_, (without, without_cpu))] = [row[0], row[1]];
            rates.push(with / without);
            if let (Some(a), Some(b)) = (with_cpu, without_cpu) {
                cpus.push(a / b);
            }
            let cpu = |c: Option<f64>| c.map_or("?".to_string(), |c| format!("{c:.0}"));
            println!(
                "| {round} | {with:.0} | {without:.0} | {:.3} | {} | {} |",
                with / without,
                cpu(with_cpu),
                cpu(without_cpu)
            );
        }
        println!("median throughput ratio (checked ÷ unchecked): {:.3}", median(rates));
        if !cpus.is_empty() {
            println!("median CPU ratio (checked ÷ unchecked): {:.3}", median(cpus));
        }
    });
}
