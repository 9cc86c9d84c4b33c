//! The embedded SQLite store (the default): the shared queries of
//! `backend/` compiled for SQLite.

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use super::StoreError;

type Db = sqlx::Sqlite;
type Pool = sqlx::SqlitePool;
type Conn = sqlx::SqliteConnection;
type DbRow = sqlx::sqlite::SqliteRow;
const DIALECT: super::Dialect = super::Dialect::Sqlite;

#[path = "backend/mod.rs"]
mod backend;
pub(super) use backend::Backend;

/// Opens (creating if needed) the SQLite database at `path` and brings its
/// schema up to date.
pub(super) async fn open(path: &Path) -> Result<Backend, StoreError> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        // For a new database (an existing one keeps its own): 8 KiB pages
        // store a burst's fires and executions about 9 % faster than the
        // default 4 KiB (fewer pages split and written per row).
        .page_size(8192)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        // 16 MiB of page cache per connection (SQLite's default is 2 MiB):
        // a burst's inserts touch every page on the insert paths of the
        // executions table's five indexes.
        .pragma("cache_size", "-16384")
        // Checkpoints run on a task of their own (`backend/checkpoint.rs`).
        .pragma("wal_autocheckpoint", "0")
        .pragma("journal_size_limit", "67108864");
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        // A file database cannot drop its connection; the default ping
        // before each acquire is one more round trip to SQLite's thread
        // per query.
        .test_before_acquire(false)
        .connect_with(options)
        .await?;
    Backend::from_pool(pool, true).await
}

/// A private in-memory database (tests, `meridian run`).
pub(super) async fn open_memory() -> Result<Backend, StoreError> {
    let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
    // One connection: every connection to :memory: is its own database, so
    // it must never be closed: the pool's default idle timeout (10 minutes)
    // and maximum lifetime (30 minutes) would drop the data.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await?;
    Backend::from_pool(pool, false).await
}
