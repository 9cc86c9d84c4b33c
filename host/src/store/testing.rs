//! The store conformance suite's harness: every test written with
//! [`store_test!`](crate::store_test) runs once on SQLite (in memory) and
//! once on PostgreSQL, each PostgreSQL test in a schema of its own.
//!
//! PostgreSQL comes from `MERIDIAN_TEST_PG_URL` (by default the cluster
//! `.ci/run` starts on 127.0.0.1:5432). The PostgreSQL tests run where a
//! server is promised: under `CI=true` or with `MERIDIAN_TEST_PG_URL` set
//! when the crate is built (`build.rs` then sets `cfg(meridian_test_pg)`),
//! and there a server that cannot be reached fails them. Elsewhere they
//! are reported as ignored, with the reason, never as passed; `cargo test
//! -- --ignored` runs them.

use super::Store;
use std::sync::atomic::{AtomicU32, Ordering};

const DEFAULT_URL: &str = "postgres://meridian_test:meridian-test-pw@127.0.0.1:5432/meridian_test";

/// A fresh PostgreSQL store in a schema of its own.
///
/// # Panics
/// When no server is reachable (see the module docs).
pub(crate) async fn postgres() -> Store {
    let mut stores = postgres_nodes(1).await;
    stores.remove(0)
}

/// `n` stores on one fresh PostgreSQL schema, as `n` nodes would share a
/// database.
///
/// # Panics
/// When no server is reachable (see the module docs).
pub(crate) async fn postgres_nodes(n: usize) -> Vec<Store> {
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
            Err(e) => panic!(
                "PostgreSQL at MERIDIAN_TEST_PG_URL (or the server .ci/run starts) cannot be reached: {e}. \
                 Start it (see .ci/run), or build without CI=true and MERIDIAN_TEST_PG_URL to \
                 have the PostgreSQL tests reported as ignored"
            ),
        }
    }
    stores
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
            #[cfg_attr(
                not(meridian_test_pg),
                ignore = "needs PostgreSQL: set MERIDIAN_TEST_PG_URL (or CI=true), or run with --ignored"
            )]
            async fn postgres() {
                let $store = $crate::store::testing::postgres().await;
                $body
            }
        }
    };
}
