//! The PostgreSQL store (several nodes on one database): the shared queries
//! of `backend/` compiled for PostgreSQL.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

use super::StoreError;

type Db = sqlx::Postgres;
type Pool = sqlx::PgPool;
type Conn = sqlx::PgConnection;
type DbRow = sqlx::postgres::PgRow;
const DIALECT: super::Dialect = super::Dialect::Postgres;

#[path = "backend/mod.rs"]
mod backend;
pub(super) use backend::Backend;

/// Connects to the PostgreSQL database at `url` (`postgres://…`) and
/// brings its schema up to date. Migrations take an advisory lock, so
/// nodes starting together apply each migration once.
///
/// With a `schema`, every table lives in it (created when missing): the
/// connections' `search_path` names it.
pub(super) async fn open(
    url: &str,
    password: Option<&str>,
    schema: Option<&str>,
    max_connections: u32,
) -> Result<Backend, StoreError> {
    let mut options = PgConnectOptions::from_str(url)?.application_name("meridian");
    if let Some(password) = password {
        options = options.password(password);
    }
    if let Some(schema) = schema {
        let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
        let mut conn: sqlx::PgConnection = sqlx::Connection::connect_with(&options).await?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {quoted}"))
            .execute(&mut conn)
            .await?;
        sqlx::Connection::close(conn).await?;
        options = options.options([("search_path", quoted.as_str())]);
    }
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?;
    Backend::from_pool(pool, false).await
}
