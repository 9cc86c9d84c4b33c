#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::store::Store;
use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;

fn entry(i: usize) -> AuditEntry {
    AuditEntry {
        at_us: 1_700_000_000_000_000 + i as i64,
        kind: "capability".into(),
        plugin: Some("http".into()),
        digest: Some("sha256:ab".into()),
        job_id: Some(format!("job-{}", i % 3)),
        execution_id: Some(format!("exec-{i}")),
        step_id: Some("s1".into()),
        capability: Some(
            if i.is_multiple_of(2) {
                "http"
            } else {
                "secrets"
            }
            .into(),
        ),
        target: Some(format!("GET https://example.com/{i}")),
        decision: if i.is_multiple_of(5) {
            "denied"
        } else {
            "allowed"
        }
        .into(),
        duration_us: Some(12),
        ..Default::default()
    }
}

/// A file store with `n` records appended, and a raw connection to the
/// same file for the tampering.
async fn trail(n: usize) -> (tempfile::TempDir, Store, SqliteConnection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meridian.db");
    let store = Store::open_sqlite(&path).await.unwrap();
    let entries: Vec<_> = (1..=n).map(entry).collect();
    store.append_audit(&entries[..n / 2]).await.unwrap();
    store.append_audit(&entries[n / 2..]).await.unwrap();
    let raw = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    (dir, store, raw)
}

async fn exec(raw: &mut SqliteConnection, sql: &str) {
    sqlx::query(sql).execute(&mut *raw).await.unwrap();
}

#[tokio::test]
async fn an_untouched_trail_verifies() {
    let (_d, store, _raw) = trail(10).await;
    let report = verify_store(&store).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.records, 10);
    let all = store.audit_all().await.unwrap();
    assert_eq!(all.first().unwrap().prev_hash, GENESIS);
    assert_eq!(
        all.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    // Each link is the previous record's hash, across both appends.
    for w in all.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash);
    }
    assert_eq!(report.head, all.last().unwrap().hash);
}

#[tokio::test]
async fn an_empty_trail_verifies() {
    let store = Store::open_memory().await.unwrap();
    let report = verify_store(&store).await.unwrap();
    assert!(report.ok);
    assert_eq!(report.records, 0);
}

/// Changing one field of a stored record (here: a denial rewritten as
/// allowed) is found at that record's position.
#[tokio::test]
async fn an_edited_record_is_named() {
    let (_d, store, mut raw) = trail(10).await;
    exec(
        &mut raw,
        "UPDATE audit_log SET decision = 'allowed' WHERE seq = 5",
    )
    .await;
    let report = verify_store(&store).await.unwrap();
    let problem = report.problem.unwrap();
    assert!(!report.ok);
    assert_eq!(problem.tamper, Tamper::Edited);
    assert_eq!((problem.seq, problem.position), (5, 5));
    assert!(problem.message.contains("record 5"), "{}", problem.message);
}

/// Deleting a record in the middle is found at the record after the gap.
#[tokio::test]
async fn a_removed_record_is_named() {
    let (_d, store, mut raw) = trail(10).await;
    exec(&mut raw, "DELETE FROM audit_log WHERE seq = 4").await;
    let problem = verify_store(&store).await.unwrap().problem.unwrap();
    assert_eq!(problem.tamper, Tamper::Removed);
    assert_eq!((problem.seq, problem.position), (5, 4));
    assert!(
        problem.message.contains("records 4..4"),
        "{}",
        problem.message
    );
}

/// Deleting a record and renumbering the rest to hide the gap is still
/// found: the link no longer names the record before it.
#[tokio::test]
async fn a_removal_hidden_by_renumbering_is_named() {
    let (_d, store, mut raw) = trail(10).await;
    exec(&mut raw, "DELETE FROM audit_log WHERE seq = 4").await;
    exec(&mut raw, "UPDATE audit_log SET seq = seq - 1 WHERE seq > 4").await;
    exec(&mut raw, "UPDATE audit_head SET seq = 9").await;
    let problem = verify_store(&store).await.unwrap().problem.unwrap();
    assert_eq!(problem.tamper, Tamper::Removed);
    assert_eq!((problem.seq, problem.position), (4, 4));
}

/// Swapping two records' places is found where the chain goes backwards.
#[tokio::test]
async fn reordered_records_are_named() {
    let (_d, store, mut raw) = trail(10).await;
    exec(&mut raw, "UPDATE audit_log SET seq = 100 WHERE seq = 3").await;
    exec(&mut raw, "UPDATE audit_log SET seq = 3 WHERE seq = 6").await;
    exec(&mut raw, "UPDATE audit_log SET seq = 6 WHERE seq = 100").await;
    let problem = verify_store(&store).await.unwrap().problem.unwrap();
    assert_eq!(problem.tamper, Tamper::Reordered);
    assert_eq!((problem.seq, problem.position), (3, 3));
    assert!(
        problem.message.contains("comes later"),
        "{}",
        problem.message
    );
}

/// Cutting off the newest records is found from the head row.
#[tokio::test]
async fn a_cut_off_tail_is_named() {
    let (_d, store, mut raw) = trail(10).await;
    exec(&mut raw, "DELETE FROM audit_log WHERE seq > 7").await;
    let problem = verify_store(&store).await.unwrap().problem.unwrap();
    assert_eq!(problem.tamper, Tamper::Truncated);
    assert_eq!((problem.seq, problem.position), (10, 8));
}

/// Two writers on one database file (a `meridian run` beside a `meridian
/// serve`) append to one chain: the head row serialises them.
#[tokio::test]
async fn two_processes_appending_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meridian.db");
    let a = Store::open_sqlite(&path).await.unwrap();
    let b = Store::open_sqlite(&path).await.unwrap();
    let (la, lb) = (AuditLog::start(a.clone()), AuditLog::start(b.clone()));
    let writers = [la.clone(), lb.clone()].map(|log| {
        tokio::spawn(async move {
            for i in 0..300 {
                log.record(entry(i));
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            log.flush().await;
        })
    });
    for w in writers {
        w.await.unwrap();
    }
    let report = verify_store(&a).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.records, 600);
}

#[tokio::test]
async fn queries_filter_and_page() {
    let (_d, store, _raw) = trail(30).await;
    let denied = query(
        &store,
        &AuditQuery {
            decision: Some("denied".into()),
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        denied.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![5, 10, 15, 20, 25, 30]
    );
    let page = query(
        &store,
        &AuditQuery {
            job_id: Some("job-1".into()),
            capability: Some("http".into()),
            after_seq: Some(4),
            since_us: Some(1_700_000_000_000_000),
            limit: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // job-1 and even i: 4, 10, 16, ... ; after seq 4 → 10, 16.
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![10, 16]);
    let usage = store.audit_usage("http").await.unwrap();
    assert_eq!(usage.iter().map(|u| u.calls).sum::<i64>(), 30);
}

crate::store_test! {
    /// The chain, its queries and its usage counts, on each backend.
    async fn each_backend_keeps_the_chain_and_answers_queries(store) {
        let log = AuditLog::start(store.clone());
        for i in 1..=30 {
            log.record(entry(i));
        }
        log.flush().await;
        let report = verify_store(&store).await.unwrap();
        assert!(report.ok, "{report:?}");
        assert_eq!(report.records, 30);
        let denied = query(
            &store,
            &AuditQuery {
                decision: Some("denied".into()),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            denied.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![5, 10, 15, 20, 25, 30]
        );
        let usage = store.audit_usage("http").await.unwrap();
        assert_eq!(usage.iter().map(|u| u.calls).sum::<i64>(), 30);
        assert_eq!(store.audit_head().await.unwrap().0, 30);
    }
}

/// Two nodes on one PostgreSQL database append to one chain: the head
/// row's lock makes them take turns.
#[tokio::test]
#[cfg_attr(
    not(meridian_test_pg),
    ignore = "needs PostgreSQL: set MERIDIAN_TEST_PG_URL (or CI=true), or run with --ignored"
)]
async fn two_nodes_on_postgres_keep_one_chain() {
    let nodes = crate::store::testing::postgres_nodes(2).await;
    let logs = nodes.iter().map(|s| AuditLog::start(s.clone()));
    let writers: Vec<_> = logs
        .map(|log| {
            tokio::spawn(async move {
                for i in 0..300 {
                    log.record(entry(i));
                    if i % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                log.flush().await;
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let report = verify_store(&nodes[0]).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.records, 600);
}

/// The hash covers every field: changing any one of them changes it.
#[test]
fn the_hash_covers_every_field() {
    let base = entry(1);
    let h = base.chain_hash(GENESIS);
    type Change = Box<dyn Fn(&mut AuditEntry)>;
    let variants: Vec<Change> = vec![
        Box::new(|e| e.at_us += 1),
        Box::new(|e| e.kind = "grant".into()),
        Box::new(|e| e.actor = Some("x".into())),
        Box::new(|e| e.plugin = None),
        Box::new(|e| e.digest = Some("sha256:cd".into())),
        Box::new(|e| e.job_id = None),
        Box::new(|e| e.execution_id = Some("other".into())),
        Box::new(|e| e.step_id = Some("s2".into())),
        Box::new(|e| e.capability = Some("sql".into())),
        Box::new(|e| e.target = Some("GET https://example.com/2".into())),
        Box::new(|e| e.decision = "denied".into()),
        Box::new(|e| e.detail = Some("why".into())),
        Box::new(|e| e.grant_hint = Some("hint".into())),
        Box::new(|e| e.duration_us = Some(13)),
        Box::new(|e| e.data = Some("{}".into())),
    ];
    for (i, change) in variants.iter().enumerate() {
        let mut e = base.clone();
        change(&mut e);
        assert_ne!(e.chain_hash(GENESIS), h, "field {i} is not covered");
    }
    assert_ne!(
        base.chain_hash(&"1".repeat(64)),
        h,
        "the link is not covered"
    );
}

/// The encoding the hash covers is pinned, byte for byte: a trail stored by
/// an earlier version verifies only while it stays the same. Quotes,
/// control characters, non-ASCII text, absent fields and negative numbers
/// included.
#[test]
fn the_hashed_encoding_is_pinned() {
    let e = AuditEntry {
        at_us: -5,
        kind: "capability".into(),
        actor: None,
        plugin: Some("p\"q".into()),
        digest: Some("sha256:ab".into()),
        job_id: Some("j\n\u{1}".into()),
        execution_id: Some("é/€".into()),
        step_id: None,
        capability: Some("http".into()),
        target: Some("GET http://h/\\x".into()),
        decision: "allowed".into(),
        detail: None,
        grant_hint: Some(String::new()),
        duration_us: Some(i64::MAX),
        data: None,
    };
    assert_eq!(
        e.body(),
        r#"[-5,"capability",null,"p\"q","sha256:ab","j\n\u0001","é/€",null,"http","GET http://h/\\x","allowed",null,"",9223372036854775807,null]"#
    );
    // What versions before it hashed: the fields as a `json!` value.
    let value_tree = serde_json::json!([
        e.at_us,
        e.kind,
        e.actor,
        e.plugin,
        e.digest,
        e.job_id,
        e.execution_id,
        e.step_id,
        e.capability,
        e.target,
        e.decision,
        e.detail,
        e.grant_hint,
        e.duration_us,
        e.data,
    ]);
    assert_eq!(e.body(), value_tree.to_string());
    assert_eq!(e.chain_hash(GENESIS), {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(format!("{GENESIS}\n{}", e.body()).as_bytes());
        hex::encode(h.finalize())
    });
}
