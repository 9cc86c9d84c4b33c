//! The engine's writes for one-step executions on the SQLite file store,
//! through the group-commit writer: insert, start, attempt start, attempt
//! end, execution end; 20,000 executions, a few at a time
//! (`MERIDIAN_BENCH_WORKERS`, 8 by default). Prints executions per second
//! and the process's CPU time per execution.
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

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("meridian.db"))
            .await
            .unwrap();
        let workers: usize = std::env::var("MERIDIAN_BENCH_WORKERS")
            .ok()
            .and_then(|w| w.parse().ok())
            .unwrap_or(8);
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
        let elapsed = start.elapsed();
        println!(
            "{TOTAL} one-step executions, {workers} at a time, in {elapsed:?}: {:.0}/s",
            TOTAL as f64 / elapsed.as_secs_f64()
        );
        if let (Some(before), Some(after)) = (cpu_before, cpu_s().await) {
            let per = (after - before) * 1e6 / TOTAL as f64;
            println!("CPU (all threads): {per:.0} µs per execution");
        }
    });
}
