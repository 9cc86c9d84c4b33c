//! The `meridian:step/sql` capability: parameterised statements on named
//! connections that the operator configured (`[sql.connections.<name>]`,
//! see [`settings`]) and granted per plugin (`[[grants.sql]]`, see
//! [`grant`]).
//!
//! Every call is one transaction: the statements run in order on one pooled
//! connection and any error rolls them all back. The grants decide first
//! (connection name, and `read` or `read_write`); a `read` grant, the
//! connection's `read_only` setting or the step's own `read-only` option make
//! the transaction read-only, so the database itself refuses a write (which
//! is then reported as a denial naming the grant that would allow it). Rows
//! are capped per statement (a default and a hard maximum from `[sql]`), and
//! every call has a time limit, enforced by the server where it can
//! (statement timeouts) and by the host's deadline, which closes a connection
//! still busy rather than return it to the pool.
//!
//! Pools are created lazily, one per connection, on first use, and shared by
//! every step of the runtime ([`SqlPools`]). PostgreSQL, MySQL/MariaDB and
//! SQLite go through sqlx ([`sqlx_backend`]); SQL Server through tiberius
//! ([`mssql`]). Values keep their types both ways ([`value`]).

pub mod grant;
pub mod mssql;
pub mod settings;
pub mod sqlx_backend;
pub mod value;

use super::{CapabilityError, StepEnv};
use crate::runtime::bindings::meridian::step::sql as wit;
use crate::secrets::SecretStore;
use grant::SqlAccess;
pub use settings::{ConnectionSettings, Driver, SqlFile, SqlSettings};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::{HasData, Linker};

/// Statements one call may send.
const MAX_STATEMENTS: usize = 1000;

/// A connection's pool.
#[derive(Debug, Clone)]
enum Backend {
    Sqlx(sqlx_backend::SqlxPool),
    Mssql(Arc<mssql::MssqlPool>),
}

/// The pools of every configured connection, created on first use and
/// shared by all steps.
pub struct SqlPools {
    settings: SqlSettings,
    secrets: Arc<SecretStore>,
    pools: Mutex<HashMap<String, Backend>>,
}

impl std::fmt::Debug for SqlPools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlPools")
            .field(
                "connections",
                &self.settings.connections.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SqlPools {
    pub fn new(settings: SqlSettings, secrets: Arc<SecretStore>) -> Self {
        Self {
            settings,
            secrets,
            pools: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &SqlSettings {
        &self.settings
    }

    fn pool(&self, conn: &ConnectionSettings) -> Result<Backend, CapabilityError> {
        let mut pools = self
            .pools
            .lock()
            .map_err(|_| CapabilityError::Failed("the SQL pool registry is unavailable".into()))?;
        if let Some(p) = pools.get(&conn.name) {
            return Ok(p.clone());
        }
        let password = match &conn.password_secret {
            Some(name) => Some(
                self.secrets
                    .get(name)
                    .ok_or_else(|| {
                        CapabilityError::Failed(format!(
                            "connection {:?}: its password secret {name:?} is not configured",
                            conn.name
                        ))
                    })?
                    .expose()
                    .to_string(),
            ),
            None => None,
        };
        let spec = sqlx_backend::PoolSpec {
            url: &conn.url,
            password: password.as_deref(),
            max_connections: conn.max_connections,
            connect_timeout: conn.connect_timeout,
        };
        let built = match conn.driver {
            Driver::Postgres => sqlx_backend::SqlxPool::postgres(&spec).map(Backend::Sqlx),
            Driver::Mysql => sqlx_backend::SqlxPool::mysql(&spec).map(Backend::Sqlx),
            Driver::Sqlite => sqlx_backend::SqlxPool::sqlite(&spec).map(Backend::Sqlx),
            Driver::Mssql => {
                mssql::MssqlPool::new(conn, password).map(|p| Backend::Mssql(Arc::new(p)))
            }
        }
        .map_err(|e| {
            CapabilityError::Failed(format!(
                "connection {:?}: its {} settings are not usable: {e}",
                conn.name,
                conn.driver.as_str()
            ))
        })?;
        pools.insert(conn.name.clone(), built.clone());
        Ok(built)
    }

    /// Checks the call against the grants, runs the statements in one
    /// transaction and records the call on the step's ledger.
    pub async fn execute(
        &self,
        env: &StepEnv,
        connection: &str,
        statements: Vec<wit::Statement>,
        options: wit::QueryOptions,
    ) -> Result<Vec<wit::ResultSet>, CapabilityError> {
        let timer = env.begin("sql")?.target(connection);
        let result = self
            .execute_checked(env, connection, statements, options)
            .await;
        env.finish(timer, connection, &result);
        result
    }

    async fn execute_checked(
        &self,
        env: &StepEnv,
        connection: &str,
        statements: Vec<wit::Statement>,
        options: wit::QueryOptions,
    ) -> Result<Vec<wit::ResultSet>, CapabilityError> {
        let access = env
            .grants
            .check_sql(connection, options.read_only)
            .map_err(CapabilityError::Denied)?;
        if statements.is_empty() {
            return Err(CapabilityError::InvalidRequest(
                "no statements to run".into(),
            ));
        }
        if statements.len() > MAX_STATEMENTS {
            return Err(CapabilityError::InvalidRequest(format!(
                "{} statements in one call; the limit is {MAX_STATEMENTS}",
                statements.len()
            )));
        }
        if let Some(i) = statements.iter().position(|s| s.sql.trim().is_empty()) {
            return Err(CapabilityError::InvalidRequest(format!(
                "statement {} is empty",
                i + 1
            )));
        }
        let conn = self.settings.connections.get(connection).ok_or_else(|| {
            CapabilityError::Failed(format!(
                "connection {connection:?} is granted but not configured on this host ([sql.connections.{connection}])"
            ))
        })?;
        let s = &self.settings;
        let max_rows = options
            .max_rows
            .unwrap_or(s.default_max_rows)
            .clamp(1, s.max_rows);
        let timeout = options
            .timeout_ms
            .map(|ms| Duration::from_millis(ms.into()))
            .unwrap_or(s.default_timeout)
            .clamp(Duration::from_millis(1), s.max_timeout);
        let by_grant = access == SqlAccess::Read;
        let limits = value::Limits {
            max_rows,
            deadline: Instant::now() + timeout,
            timeout,
            read_only: options.read_only || by_grant || conn.read_only,
        };
        let backend = self.pool(conn)?;
        let result = match &backend {
            Backend::Sqlx(p) => p.execute(&statements, &limits).await,
            Backend::Mssql(p) => p.execute(&statements, &limits).await,
        };
        result.map_err(|e| match e {
            // The database refused a write because the grant made the
            // transaction read-only: that is the grant's decision.
            CapabilityError::Failed(m)
                if by_grant
                    && !options.read_only
                    && !conn.read_only
                    && value::is_read_only_message(&m) =>
            {
                CapabilityError::Denied(crate::grants::Denial {
                    capability: "sql".into(),
                    target: connection.into(),
                    reason: format!(
                        "the plugin is granted read access only and the statement writes ({m})"
                    ),
                    grant_hint: grant::hint(&env.identity.plugin, connection, SqlAccess::ReadWrite),
                })
            }
            other => other,
        })
    }

    /// Closes every pool (at shutdown).
    pub async fn close(&self) {
        let pools: Vec<Backend> = match self.pools.lock() {
            Ok(mut p) => p.drain().map(|(_, b)| b).collect(),
            Err(_) => return,
        };
        for p in pools {
            if let Backend::Sqlx(p) = p {
                p.close().await;
            }
        }
    }
}

/// The SQL capability as seen by one step execution.
pub struct SqlCap<'a> {
    pub env: &'a StepEnv,
    pub pools: &'a SqlPools,
}

impl wit::Host for SqlCap<'_> {
    async fn execute(
        &mut self,
        connection: String,
        statements: Vec<wit::Statement>,
        options: wit::QueryOptions,
    ) -> Result<Vec<wit::ResultSet>, wit::CapabilityError> {
        self.pools
            .execute(self.env, &connection, statements, options)
            .await
            .map_err(|e| e.into_wit(&self.env.masker))
    }
}

struct Sql;

impl HasData for Sql {
    type Data<'a> = SqlCap<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> SqlCap<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Sql>(linker, get)
}
