//! The audit trail under attack: a flood of requests without a valid token
//! cannot grow it, and a trail rewritten with every hash recomputed is
//! caught by the signed checkpoints of its head, whatever was done to the
//! mirror files (deleted, gzipped) or to the checkpoints (forged, the key
//! gone, the newest ones removed).

use meridian_tests::{ADMIN_TOKEN, TestNode};
use serde_json::Value;
use std::sync::Arc;

/// The API's `api` records with this decision, oldest first.
async fn api_records(
    state: &meridian::api::AppState,
    decision: &str,
) -> Vec<meridian::audit::AuditRecord> {
    state
        .store
        .audit_query(&meridian::audit::AuditQuery {
            kind: Some("api".into()),
            decision: Some(decision.into()),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
}

/// 4,000 requests without a token or with a forged one, sent over real
/// connections to the router `serve` runs: the trail grows by one
/// aggregate record for the source (counts summing to 4,000, with the
/// window and the routes hit most), a token holder's 403 is still a record
/// of its own, and the node still answers a normal request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_requests_without_a_valid_token_adds_a_handful_of_records() {
    let node = TestNode::start("", &[]).await;
    let state = Arc::clone(&node.state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(meridian::api::serve(listener, Arc::clone(&state), async {
        let _ = stopped.await;
    }));
    state.audit.flush().await;
    let before = state.store.audit_head().await.unwrap().0;

    let client = reqwest::Client::new();
    const FLOOD: usize = 4_000;
    let routes = [
        "/api/v2/jobs",
        "/api/v2/audit",
        "/api/v2/tokens",
        "/api/v2/executions",
    ];
    let mut sent = futures_unordered(FLOOD, |i| {
        let client = client.clone();
        let url = format!("{base}{}", routes[i % routes.len()]);
        async move {
            let req = if i % 2 == 0 {
                client.get(url)
            } else {
                client
                    .post(url)
                    .bearer_auth(format!("mrd_forged{i}"))
                    .body("{}")
            };
            req.send().await.unwrap().status()
        }
    })
    .await;
    sent.sort();
    sent.dedup();
    assert_eq!(sent, [reqwest::StatusCode::UNAUTHORIZED]);

    // A viewer trying an admin route: individual, with the token's name.
    let (viewer, _, _) = meridian::auth::create_token(
        &state.store,
        Some("flood-viewer"),
        meridian::auth::Role::Viewer,
        "test",
    )
    .await
    .unwrap();
    let forbidden = client
        .get(format!("{base}/api/v2/tokens"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), reqwest::StatusCode::FORBIDDEN);

    // The host still serves a token holder.
    let ok = client
        .get(format!("{base}/api/v2/jobs"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), reqwest::StatusCode::OK);

    // Stopping flushes the window.
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    state.audit.flush().await;
    let after = state.store.audit_head().await.unwrap().0;
    // The aggregate record, the viewer's token creation and its 403.
    assert_eq!(after - before, 3, "the trail grew by {}", after - before);

    let aggregated = api_records(&state, "unauthenticated").await;
    assert_eq!(aggregated.len(), 1, "{aggregated:#?}");
    let record = &aggregated[0].entry;
    assert_eq!(record.target.as_deref(), Some("127.0.0.1"));
    assert_eq!(record.actor.as_deref(), Some("anonymous"));
    let data: Value = serde_json::from_str(record.data.as_deref().unwrap()).unwrap();
    assert_eq!(data["count"], FLOOD as u64, "{data:#}");
    assert_eq!(data["no_token"], (FLOOD / 2) as u64, "{data:#}");
    assert_eq!(data["invalid_token"], (FLOOD / 2) as u64, "{data:#}");
    let routes_total: u64 = data["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    assert_eq!(routes_total, FLOOD as u64, "{data:#}");
    assert!(data["window_start"].as_str().unwrap() <= data["window_end"].as_str().unwrap());
    assert!(
        record
            .detail
            .as_deref()
            .unwrap()
            .contains("4000 requests without a valid token from 127.0.0.1"),
        "{record:#?}"
    );

    let refused = api_records(&state, "forbidden").await;
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(
        refused[0].entry.actor.as_deref(),
        Some("token:flood-viewer")
    );
    assert_eq!(
        refused[0].entry.target.as_deref(),
        Some("GET /api/v2/tokens")
    );
    assert!(
        meridian::audit::verify_store(&state.store)
            .await
            .unwrap()
            .ok
    );
}

/// Runs `n` futures made by `make`, 64 at a time, and collects their
/// results.
async fn futures_unordered<F, T>(n: usize, make: impl Fn(usize) -> F) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut out = Vec::with_capacity(n);
    let mut running = tokio::task::JoinSet::new();
    for i in 0..n {
        if running.len() >= 64 {
            out.push(running.join_next().await.unwrap().unwrap());
        }
        running.spawn(make(i));
    }
    while let Some(r) = running.join_next().await {
        out.push(r.unwrap());
    }
    out
}
