//! What classifying a statement costs, beside running it on SQLite, in one
//! run (issue 16: "the cost of classifying a statement, measured against
//! running it on SQLite, side by side").
//!
//! Four representative statements (a point read, a join with aggregates, a
//! CTE, an insert), each measured four ways (criterion group
//! `sql_classify`):
//! - `classify`: `capabilities::sql::classify::classify` in the SQLite
//!   dialect — parse and walk, what the capability does once per statement
//!   before anything is sent;
//! - `sqlite_warm`: the same statement run through sqlx on one open SQLite
//!   connection (its prepared statement cached), rows fetched: the
//!   database's own work;
//! - `sqlite_call`: what the capability does with SQLite per call — open
//!   a connection (read-only for the reads), begin, run, commit, close;
//! - `step`: the whole thing, a `probe` step (a wasm component) making that
//!   one call through the SQL capability on a `read` grant (`read_write` for
//!   the insert): instantiation, grants, classification, the call, audit
//!   ledger.
//!
//! The database: a temp-file SQLite (sqlx's defaults: WAL, `synchronous =
//! FULL`), 100 customers, 10,000 orders with an index on `created`.
//!
//! After criterion, the four are timed again one call at a time in
//! interleaved rounds, and a table prints each one's median and the ratio
//! of classifying to each of the others.
//!
//! Run: `cargo bench -p meridian-tests --bench sql_classify`
//! Environment: `SQL_CLASSIFY_ROUNDS` (calls per way and statement in the
//! table, default 2,000), `SQL_CLASSIFY_SKIP_CRITERION=1` (the table only).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::Criterion;
use meridian::capabilities::sql::classify::{Dialect, classify};
use meridian_tests::{TestRuntime, fixtures};
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Executor};
use std::hint::black_box;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// A statement and the values bound to it.
struct Case {
    name: &'static str,
    sql: &'static str,
    params: Vec<Value>,
    writes: bool,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "point_read",
            sql: "SELECT id, customer_id, total, created FROM orders WHERE id = ?",
            params: vec![json!(4242)],
            writes: false,
        },
        Case {
            name: "join_aggregate",
            sql: "SELECT c.region, COUNT(*) AS n, SUM(o.total) AS total \
                  FROM orders o JOIN customers c ON c.id = o.customer_id \
                  WHERE o.created >= ? AND o.created < ? \
                  GROUP BY c.region HAVING COUNT(*) > ? ORDER BY total DESC LIMIT 20",
            params: vec![json!(1000), json!(1500), json!(1)],
            writes: false,
        },
        Case {
            name: "cte",
            sql: "WITH recent AS (SELECT customer_id, total FROM orders WHERE created >= ?) \
                  SELECT customer_id, SUM(total) AS spent FROM recent \
                  GROUP BY customer_id ORDER BY spent DESC LIMIT 10",
            params: vec![json!(9900)],
            writes: false,
        },
        Case {
            name: "insert",
            sql: "INSERT OR REPLACE INTO orders (id, customer_id, total, created) VALUES (?, ?, ?, ?)",
            params: vec![json!(20000), json!(7), json!(12.5), json!(10001)],
            writes: true,
        },
    ]
}

fn url(db: &Path) -> String {
    format!("sqlite://{}", db.display())
}

async fn fill(db: &Path) {
    let mut c = SqliteConnection::connect(&format!("{}?mode=rwc", url(db)))
        .await
        .unwrap();
    c.execute(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, region TEXT NOT NULL);
         CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL,
                              total REAL NOT NULL, created INTEGER NOT NULL);
         CREATE INDEX orders_created ON orders (created);",
    )
    .await
    .unwrap();
    let mut tx = c.begin().await.unwrap();
    for i in 0..100 {
        sqlx::query("INSERT INTO customers VALUES (?, ?)")
            .bind(i)
            .bind(["eu", "us", "apac", "latam"][i as usize % 4])
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    for i in 0..10_000 {
        sqlx::query("INSERT INTO orders VALUES (?, ?, ?, ?)")
            .bind(i)
            .bind(i % 100)
            .bind((i % 97) as f64 * 1.5)
            .bind(i)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    c.close().await.unwrap();
}

fn bind<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    params: &[Value],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    for p in params {
        q = match p {
            Value::Number(n) if n.is_i64() => q.bind(n.as_i64().unwrap()),
            Value::Number(n) => q.bind(n.as_f64().unwrap()),
            other => q.bind(other.to_string()),
        };
    }
    q
}

/// Runs the statement on an open connection, fetching every row.
async fn run_warm(conn: &mut SqliteConnection, case: &Case) -> usize {
    bind(sqlx::query(case.sql), &case.params)
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .len()
}

/// What the capability does with SQLite for one call.
async fn run_call(db: &Path, case: &Case) -> usize {
    let options = SqliteConnectOptions::from_str(&url(db))
        .unwrap()
        .read_only(!case.writes);
    let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let n = bind(sqlx::query(case.sql), &case.params)
        .fetch_all(&mut *tx)
        .await
        .unwrap()
        .len();
    tx.commit().await.unwrap();
    conn.close().await.unwrap();
    n
}

fn probe_config(case: &Case) -> Value {
    let connection = if case.writes { "bench_rw" } else { "bench_ro" };
    json!({ "calls": [{ "sql": { "connection": connection, "sql": case.sql, "params": case.params } }] })
}

async fn run_step(rt: &TestRuntime, case: &Case) {
    let run = rt.run("probe", probe_config(case)).await;
    let out = run.result.unwrap().output;
    assert!(out["results"][0]["ok"].is_array(), "{out}");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    runtime.block_on(fill(&db));
    let config = format!(
        "[sql.connections.bench_ro]\ndriver = \"sqlite\"\nurl = {u:?}\n\
         [sql.connections.bench_rw]\ndriver = \"sqlite\"\nurl = {u:?}\n\
         [[grants]]\nplugin = \"probe\"\n\
         [[grants.sql]]\nconnection = \"bench_ro\"\naccess = \"read\"\n\
         [[grants.sql]]\nconnection = \"bench_rw\"\naccess = \"read_write\"\n",
        u = url(&db)
    );
    let rt = runtime.block_on(TestRuntime::new(&config, &[fixtures::PROBE]));
    let mut warm = runtime
        .block_on(SqliteConnection::connect(&url(&db)))
        .unwrap();
    let cases = cases();
    for case in &cases {
        // Every case is a read or a write, nothing more, and parses.
        let class = classify(Dialect::Sqlite, case.sql);
        assert_eq!(class.statements, 1, "{}", case.name);
        runtime.block_on(run_step(&rt, case));
    }

    if std::env::var("SQL_CLASSIFY_SKIP_CRITERION").as_deref() != Ok("1") {
        let mut c = Criterion::default()
            .configure_from_args()
            .sample_size(30)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        let mut g = c.benchmark_group("sql_classify");
        for case in &cases {
            g.bench_function(format!("classify/{}", case.name), |b| {
                b.iter(|| black_box(classify(Dialect::Sqlite, black_box(case.sql))))
            });
            g.bench_function(format!("sqlite_warm/{}", case.name), |b| {
                b.iter(|| runtime.block_on(run_warm(&mut warm, case)))
            });
            g.bench_function(format!("sqlite_call/{}", case.name), |b| {
                b.iter(|| runtime.block_on(run_call(&db, case)))
            });
            g.bench_function(format!("step/{}", case.name), |b| {
                b.iter(|| runtime.block_on(run_step(&rt, case)))
            });
        }
        g.finish();
        c.final_summary();
    }

    let rounds: usize = std::env::var("SQL_CLASSIFY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    println!(
        "\nmedians of {rounds} calls each, interleaved (classify / other = share of classifying)"
    );
    println!(
        "{:<16} {:>10} {:>12} {:>8} {:>12} {:>8} {:>10} {:>8}",
        "statement", "classify", "sqlite_warm", "ratio", "sqlite_call", "ratio", "step", "ratio"
    );
    for case in &cases {
        let (mut cl, mut wa, mut ca, mut st) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..rounds {
            let t = Instant::now();
            black_box(classify(Dialect::Sqlite, black_box(case.sql)));
            cl.push(t.elapsed());
            let t = Instant::now();
            runtime.block_on(run_warm(&mut warm, case));
            wa.push(t.elapsed());
            let t = Instant::now();
            runtime.block_on(run_call(&db, case));
            ca.push(t.elapsed());
            // The step is slower: a tenth as many.
            if i % 10 == 0 {
                let t = Instant::now();
                runtime.block_on(run_step(&rt, case));
                st.push(t.elapsed());
            }
        }
        let (cl, wa, ca, st) = (median(cl), median(wa), median(ca), median(st));
        let ratio = |d: Duration| cl.as_secs_f64() / d.as_secs_f64();
        println!(
            "{:<16} {:>8.1}µs {:>10.1}µs {:>8.2} {:>10.1}µs {:>8.3} {:>8.1}µs {:>8.3}",
            case.name,
            cl.as_secs_f64() * 1e6,
            wa.as_secs_f64() * 1e6,
            ratio(wa),
            ca.as_secs_f64() * 1e6,
            ratio(ca),
            st.as_secs_f64() * 1e6,
            ratio(st),
        );
    }
    runtime.block_on(warm.close()).unwrap();
}
