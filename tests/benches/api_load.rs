//! The REST API under load, on loopback, in one run.
//!
//! A real node in-process (the built-in plugins plus the `trivial` fixture,
//! a temp-file SQLite store, the engine and its queues, the token guard,
//! the Prometheus layer: what `meridian serve` builds) serves
//! `meridian::api::serve` on `127.0.0.1:0`. A Rust client (reqwest over
//! keep-alive connections, at most `API_LOAD_CONNS` requests in flight per
//! scenario) drives it **open-loop at a fixed rate**: request `i` is due
//! at `start + i / rate` whatever happened to the ones before, and its
//! latency is measured from that due time to the end of its response body
//! (so a stall counts for every request it delays: no coordinated
//! omission). Latencies go into an HDR histogram (`hdrhistogram`, 3
//! significant digits, microseconds).
//!
//! Scenarios, one after the other, each for `API_LOAD_SECONDS` (default
//! 10) after a 1 s warm-up at the same rate:
//! 1. `GET /api/v2/health` at `API_LOAD_RATE` (default 1,000/s): the
//!    baseline (token-free; the doctor's probe checks);
//! 2. `GET /api/v2/execution/status` at the same rate, with a viewer token;
//! 3. `POST /api/v2/jobs/execute` of a stored one-step `trivial` job at
//!    `API_LOAD_EXECUTE_RATE` (default 200/s), with an operator token (the
//!    response is the 202; the executions then run on the node's queues);
//! 4. both at once: status reads at `API_LOAD_RATE` beside executes at
//!    `API_LOAD_EXECUTE_RATE` (the status figures here are the target of
//!    the issue: p99 under 10 ms at 1,000 status reads per second).
//!
//! Printed: a Markdown table of requests, errors (non-2xx or transport),
//! achieved throughput, p50, p90, p99, p99.9 and max, and each p50/p99 as a
//! ratio to the health baseline's.
//!
//! Run: `cargo bench -p meridian-tests --bench api_load`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use hdrhistogram::Histogram;
use meridian::api::AppState;
use meridian_tests::fixtures;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One scenario's request.
#[derive(Clone)]
struct Target {
    method: reqwest::Method,
    url: String,
    token: Option<String>,
    body: Option<String>,
    want: u16,
}

/// What a scenario measured.
struct Outcome {
    hist: Histogram<u64>,
    sent: u64,
    errors: u64,
    elapsed: Duration,
}

/// Drives `target` open-loop at `rate` per second for `seconds`.
async fn drive(
    client: reqwest::Client,
    target: Target,
    rate: f64,
    seconds: f64,
    conns: usize,
) -> Outcome {
    let total = (rate * seconds).round() as u64;
    let period = Duration::from_secs_f64(1.0 / rate);
    let limit = Arc::new(Semaphore::new(conns));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, bool)>();
    let start = tokio::time::Instant::now() + Duration::from_millis(5);
    for i in 0..total {
        let due = start + period.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let (client, target, tx, limit) = (
            client.clone(),
            target.clone(),
            tx.clone(),
            Arc::clone(&limit),
        );
        tokio::spawn(async move {
            let _slot = limit.acquire_owned().await.unwrap();
            let mut req = client.request(target.method.clone(), &target.url);
            if let Some(t) = &target.token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = &target.body {
                req = req
                    .header("content-type", "application/json")
                    .body(b.clone());
            }
            let ok = match req.send().await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    res.bytes().await.is_ok() && status == target.want
                }
                Err(_) => false,
            };
            let us = due.elapsed().as_micros() as u64;
            let _ = tx.send((us.max(1), ok));
        });
    }
    drop(tx);
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let mut errors = 0;
    while let Some((us, ok)) = rx.recv().await {
        hist.record(us).unwrap();
        if !ok {
            errors += 1;
        }
    }
    Outcome {
        hist,
        sent: total,
        errors,
        elapsed: start.elapsed(),
    }
}

async fn node() -> (meridian_tests::TestNode, Arc<AppState>, String, String) {
    let node = meridian_tests::TestNode::start("", &[fixtures::TRIVIAL]).await;
    let state = Arc::clone(&node.state);
    let store = state.store.clone();
    let (viewer, _, _) = meridian::auth::create_token(
        &store,
        Some("bench-viewer"),
        meridian::auth::Role::Viewer,
        "bench",
    )
    .await
    .unwrap();
    let (operator, _, _) = meridian::auth::create_token(
        &store,
        Some("bench-operator"),
        meridian::auth::Role::Operator,
        "bench",
    )
    .await
    .unwrap();
    (node, state, viewer, operator)
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn main() {
    let seconds: f64 = env_or("API_LOAD_SECONDS", 10.0);
    let rate: f64 = env_or("API_LOAD_RATE", 1000.0);
    let exec_rate: f64 = env_or("API_LOAD_EXECUTE_RATE", 200.0);
    let conns: usize = env_or("API_LOAD_CONNS", 64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (_data, state, viewer, operator) = node().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(meridian::api::serve(
            listener,
            Arc::clone(&state),
            async {
                let _ = stopped.await;
            },
        ));
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(conns)
            .build()
            .unwrap();
        let base = format!("http://{addr}");
        // The job the executes run: stored once.
        let job = serde_json::json!({
            "id": "bench-trivial", "name": "Bench", "timezone": "UTC",
            "steps": [{ "id": "one", "type": "trivial" }]
        });
        let res = client
            .post(format!("{base}/api/v2/jobs"))
            .bearer_auth(&operator)
            .json(&job)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.text().await.unwrap());
        let health = Target {
            method: reqwest::Method::GET,
            url: format!("{base}/api/v2/health"),
            token: None,
            body: None,
            want: 200,
        };
        let status = Target {
            method: reqwest::Method::GET,
            url: format!("{base}/api/v2/execution/status"),
            token: Some(viewer.clone()),
            body: None,
            want: 200,
        };
        let execute = Target {
            method: reqwest::Method::POST,
            url: format!("{base}/api/v2/jobs/execute"),
            token: Some(operator.clone()),
            body: Some(r#"{"job_id":"bench-trivial"}"#.to_string()),
            want: 202,
        };
        let mut rows: Vec<(String, f64, Outcome)> = Vec::new();
        let solo = [
            ("GET /api/v2/health (baseline)", health, rate),
            ("GET /api/v2/execution/status", status.clone(), rate),
            ("POST /api/v2/jobs/execute", execute.clone(), exec_rate),
        ];
        for (name, target, r) in solo {
            drive(client.clone(), target.clone(), r, 1.0, conns).await;
            let out = drive(client.clone(), target, r, seconds, conns).await;
            rows.push((name.to_string(), r, out));
        }
        // Both at once.
        let (a, b) = tokio::join!(
            drive(client.clone(), status, rate, seconds, conns),
            drive(client.clone(), execute, exec_rate, seconds, conns),
        );
        rows.push(("GET /api/v2/execution/status (beside executes)".into(), rate, a));
        rows.push(("POST /api/v2/jobs/execute (beside status reads)".into(), exec_rate, b));

        let (base_p50, base_p99) = {
            let h = &rows[0].2.hist;
            (
                h.value_at_quantile(0.5) as f64,
                h.value_at_quantile(0.99) as f64,
            )
        };
        println!(
            "\n{seconds} s per scenario, open-loop, at most {conns} requests in flight per scenario\n"
        );
        println!(
            "| scenario | target rate/s | requests | errors | achieved/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | p50 × health | p99 × health |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (name, r, o) in &rows {
            let h = &o.hist;
            println!(
                "| {name} | {r:.0} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.2} | {:.2} |",
                o.sent,
                o.errors,
                h.len() as f64 / o.elapsed.as_secs_f64(),
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.9)),
                ms(h.value_at_quantile(0.99)),
                ms(h.value_at_quantile(0.999)),
                ms(h.max()),
                h.value_at_quantile(0.5) as f64 / base_p50,
                h.value_at_quantile(0.99) as f64 / base_p99,
            );
        }
        let stats = state.executions.queues().stats();
        let submitted: u64 = stats.iter().map(|s| s.submitted).sum();
        let succeeded: u64 = stats.iter().map(|s| s.succeeded).sum();
        println!(
            "\nexecutions: {submitted} submitted, {succeeded} succeeded by the end of the run"
        );
        let _ = stop.send(());
        let _ = server.await;
    });
}
