//! The store conformance suite's harness: every test written with
//! [`store_test!`](crate::store_test) runs once on SQLite (in memory) and
//! once on PostgreSQL, each PostgreSQL test in a schema of its own.
//!
//! PostgreSQL comes from `MERIDIAN_TEST_PG_URL` (by default the cluster
//! `.ci/run` starts on 127.0.0.1:5432). Without a reachable server the
//! PostgreSQL half of each test says so loudly and passes — except under
//! `CI=true`, where that is a failure: CI proves both backends.

use super::Store;
use std::sync::atomic::{AtomicU32, Ordering};

const DEFAULT_URL: &str = "postgres://meridian_test:meridian-test-pw@127.0.0.1:5432/meridian_test";

/// A fresh PostgreSQL store in a schema of its own, or `None` (after a
/// loud message) when no server is reachable outside CI.
pub(crate) async fn postgres() -> Option<Store> {
    postgres_nodes(1).await.and_then(|mut v| v.pop())
}

/// `n` stores on one fresh PostgreSQL schema, as `n` nodes would share a
/// database.
pub(crate) async fn postgres_nodes(n: usize) -> Option<Vec<Store>> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let url = std::env::var("MERIDIAN_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_URL.to_string());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let schema = format!(
        "t_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    );
    let mut stores = Vec::with_capacity(n);
    for _ in 0..n {
        match Store::open_postgres_schema(&url, &schema, 4).await {
            Ok(store) => stores.push(store),
            Err(e) => return skip_or_fail(e),
        }
    }
    Some(stores)
}

fn skip_or_fail<T>(e: super::StoreError) -> Option<T> {
    match e {
        e if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true: PostgreSQL at MERIDIAN_TEST_PG_URL is required: {e}")
        }
        e => {
            eprintln!(
                "\n!!! SKIPPED the PostgreSQL half of a store test: {e}\n!!! Start PostgreSQL \
                 (see .ci/run) or set MERIDIAN_TEST_PG_URL.\n"
            );
            None
        }
    }
}

/// Writes a store test once and runs it on each backend:
/// `store_test! { async fn name(store) { … } }` makes `name::sqlite` and
/// `name::postgres`.
#[macro_export]
#[doc(hidden)]
macro_rules! store_test {
    ($(#[$meta:meta])* async fn $name:ident($store:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let $store = $crate::store::Store::open_memory().await.unwrap();
                $body
            }

            #[tokio::test]
            async fn postgres() {
                let Some($store) = $crate::store::testing::postgres().await else {
                    return;
                };
                $body
            }
        }
    };
}
