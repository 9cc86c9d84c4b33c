//! What the grant check and the audit trail add to an HTTP call on
//! loopback, side by side in one run:
//! - `direct`: a GET with a reqwest client configured as the capability's
//!   (no proxy, no redirects) and nothing else: the floor;
//! - `direct_same_work`: the same GET doing what the capability must do
//!   for any call, grants or not: a per-request timeout, the response
//!   headers copied out (to hand to the guest), the body read in chunks
//!   against a size cap. The grant check and the trail are what the
//!   capability adds to this;
//! - `capability`: the same GET through `HttpClient::send` as a step makes
//!   it: the host-call budget, the grant check (scheme, host, port, method,
//!   path segments, the private-address rule), the ledger, the masking of
//!   the target, and the audit record handed to the writer task, which
//!   appends it to a real SQLite store (on the same runtime, so its work is
//!   part of the measured cost);
//! - `capability_no_audit`: the same without the audit trail, to tell the
//!   grant check's share from the trail's.
//!
//! The server runs on a runtime and thread of its own, so each side pays
//! only for the client's work.
//!
//! Run: `cargo bench -p meridian-tests --bench grant_overhead`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use meridian::audit::AuditLog;
use meridian::capabilities::grants::{AskKind, Asks, GrantSpec, Grants};
use meridian::capabilities::http::{HttpClient, HttpLimits, OutboundRequest};
use meridian::capabilities::{StepEnv, StepIdentity};
use meridian::runtime::Digest;
use meridian::secrets::Masker;
use std::sync::Arc;
use std::time::Duration;

fn server() -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = meridian_tests::TestServer::start().await;
            tx.send(server.addr).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

/// What the capability does with any response, grants or not: a
/// per-request timeout, the headers copied out, the body read in chunks
/// against the default cap.
async fn same_work(client: &reqwest::Client, url: &str) -> bytes::Bytes {
    let mut response = client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    assert!(!headers.is_empty());
    let max = HttpLimits::default().max_response_bytes;
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        assert!(body.len() + chunk.len() <= max);
        body.extend_from_slice(&chunk);
    }
    body.freeze()
}

fn grants(port: u16) -> Arc<meridian::capabilities::grants::EffectiveGrants> {
    let specs: Vec<GrantSpec> = serde_json::from_value(serde_json::json!([{
        "plugin": "bench",
        "http": [{
            "scheme": ["http"], "host": "127.0.0.1", "port": [port],
            "methods": ["GET"], "path_prefix": "/json", "allow_private": true
        }]
    }]))
    .unwrap();
    let grants = Grants::parse(&specs, "grants").unwrap();
    let mut asks = Asks::default();
    asks.add(AskKind::Http, "*").unwrap();
    Arc::new(grants.effective("bench", &Digest::of(b"bench"), &asks))
}

fn overhead(c: &mut Criterion) {
    let addr = server();
    let url = format!("http://{addr}/json");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let audit = rt.block_on(async {
        let store = meridian::store::Store::open_sqlite(&dir.path().join("meridian.db"))
            .await
            .unwrap();
        AuditLog::start(store)
    });
    let client = HttpClient::new(HttpLimits::default()).unwrap();
    let direct = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let effective = grants(addr.port());
    let masker = Arc::new(Masker::new(["not-in-any-request"]));
    let env = |audit: Option<AuditLog>| {
        StepEnv::new(
            StepIdentity {
                plugin: "bench".into(),
                digest: Digest::of(b"bench").to_string(),
                job_id: "bench-job".into(),
                execution_id: "bench-execution".into(),
                step_id: "call".into(),
            },
            Arc::clone(&effective),
            Arc::clone(&masker),
            1_000_000,
        )
        .with_audit(audit)
    };
    let request = || OutboundRequest {
        method: "GET".into(),
        url: url.clone(),
        headers: Vec::new(),
        body: None,
        timeout: Some(Duration::from_secs(5)),
    };

    // Each side once before measuring: connections warm, and the grant
    // really allows the call.
    rt.block_on(async {
        let env = env(Some(audit.clone()));
        let r = client.send(&env, request()).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(direct.get(&url).send().await.unwrap().status(), 200);
    });

    let mut group = c.benchmark_group("grant_overhead");
    group.bench_function("direct", |b| {
        b.to_async(&rt).iter(|| async {
            let response = direct.get(&url).send().await.unwrap();
            let body = response.bytes().await.unwrap();
            assert!(!body.is_empty());
        })
    });
    group.bench_function("direct_same_work", |b| {
        b.to_async(&rt).iter(|| async {
            let body = same_work(&direct, &url).await;
            assert!(!body.is_empty());
        })
    });
    let with_audit = env(Some(audit.clone()));
    group.bench_function("capability", |b| {
        b.to_async(&rt).iter(|| async {
            let r = client.send(&with_audit, request()).await.unwrap();
            assert!(!r.body.is_empty());
        })
    });
    let without = env(None);
    group.bench_function("capability_no_audit", |b| {
        b.to_async(&rt).iter(|| async {
            let r = client.send(&without, request()).await.unwrap();
            assert!(!r.body.is_empty());
        })
    });
    group.finish();

    // Criterion measures one side after the other, and on a shared machine
    // the load moves between them (the first run had `direct` slower than
    // the capability it is the floor of). So the ratio is also measured
    // interleaved: ROUNDS rounds, each timing CALLS calls of every side in
    // a rotating order; the medians of the per-round means, and the median
    // of the per-round ratios against `direct`.
    if std::env::args().any(|a| a == "--bench") {
        const ROUNDS: usize = 40;
        const CALLS: u32 = 500;
        // None: direct; Some(None): direct_same_work; Some(Some(env)): the
        // capability with that env.
        let sides: [(&str, Option<Option<&StepEnv>>); 4] = [
            ("direct", None),
            ("direct_same_work", Some(None)),
            ("capability", Some(Some(&with_audit))),
            ("capability_no_audit", Some(Some(&without))),
        ];
        let mut means = vec![Vec::with_capacity(ROUNDS); sides.len()];
        for round in 0..ROUNDS {
            for k in 0..sides.len() {
                let i = (round + k) % sides.len();
                let (_, env) = sides[i];
                let started = std::time::Instant::now();
                rt.block_on(async {
                    for _ in 0..CALLS {
                        match env {
                            None => {
                                let r = direct.get(&url).send().await.unwrap();
                                assert!(!r.bytes().await.unwrap().is_empty());
                            }
                            Some(None) => {
                                assert!(!same_work(&direct, &url).await.is_empty());
                            }
                            Some(Some(env)) => {
                                let r = client.send(env, request()).await.unwrap();
                                assert!(!r.body.is_empty());
                            }
                        }
                    }
                    // The records of this round stored within it: left
                    // to the writer, they were stored during whichever
                    // side ran next, and counted against it. (Nothing
                    // waits for the sides without the trail.)
                    audit.flush().await;
                });
                means[i].push(started.elapsed().as_secs_f64() * 1e6 / f64::from(CALLS));
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!("\ninterleaved: {ROUNDS} rounds x {CALLS} calls per side, rotating order");
        let mut base = means[0].clone();
        let base_median = median(&mut base);
        for (i, (name, _)) in sides.iter().enumerate() {
            let ratio_to = |base: usize| {
                let mut ratios: Vec<f64> = means[i]
                    .iter()
                    .zip(&means[base])
                    .map(|(m, d)| m / d)
                    .collect();
                median(&mut ratios)
            };
            let mut own = means[i].clone();
            println!(
                "  {name:<20} median {:>7.2} us/call   ratio (median of rounds) to direct {:.3}, to direct_same_work {:.3}",
                median(&mut own),
                ratio_to(0),
                ratio_to(1)
            );
        }
        println!("  (direct median {base_median:.2} us/call)");
    }
    rt.block_on(audit.flush());
}

criterion_group!(benches, overhead);
criterion_main!(benches);
