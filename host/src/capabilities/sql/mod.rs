//! The `meridian:step/sql` capability: parameterised statements on named
//! connections that the operator configured (`[sql.connections.<name>]`,
//! see [`settings`]) and granted per plugin (`[[grants.sql]]`, see
//! [`grant`]).
//!
//! A grant is enforced twice. Before anything is sent, every statement is
//! parsed in the connection's dialect and classified ([`classify`]): a
//! `read` grant runs only statements that read; `read_write` adds data
//! changes, and the categories its rule names in `allow`; transaction
//! control, `ATTACH`/`DETACH` and a few others are refused under every
//! grant. A refusal is a typed denial naming the connection, the statement
//! and the grant that would allow it (or that none will). Then the
//! database enforces what it can: a read call runs in a read-only
//! transaction (SQLite: a connection opened read-only), and no session
//! state a step sets reaches the next call (PostgreSQL sessions are reset
//! with `DISCARD ALL`; SQLite gets a fresh connection per call; MySQL and
//! SQL Server sessions, which the drivers cannot reset, are kept only after
//! a call of reads).
//!
//! Every call is one transaction: the statements run in order on one
//! connection and any error rolls them all back. Rows are capped per
//! statement (a default and a hard maximum from `[sql]`), and every call
//! has a time limit, enforced by the server where it can (statement
//! timeouts) and by the host's deadline, which closes a connection still
//! busy rather than return it to the pool.
//!
//! Pools are created lazily, one per connection, on first use, and shared by
//! every step of the runtime ([`SqlPools`]). PostgreSQL, MySQL/MariaDB and
//! SQLite go through sqlx ([`sqlx_backend`]); SQL Server through tiberius
//! ([`mssql`]). Values keep their types both ways ([`value`]).

pub mod classify;
pub mod grant;
pub mod login;
pub mod mssql;
pub mod settings;
pub mod sqlx_backend;
pub mod value;

use super::{CapabilityError, StepEnv};
use crate::contract::bindings::meridian::step::sql as wit;
use crate::secrets::SecretStore;
use classify::{Class, Needs, Refusal};
use grant::{SqlAccess, SqlPermit};
pub use settings::{ConnectionSettings, Driver, SqlFile, SqlSettings};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::{HasData, Linker};

/// Statements one call may send.
const MAX_STATEMENTS: usize = 1000;

/// SQL text one call may send, all statements together. Classifying costs
/// about a microsecond a byte, and an operator chain nests the parsed tree
/// as deep as it is long.
pub const MAX_SQL_BYTES: usize = 1 << 20;

/// Up to this much text (all statements of a call) is classified on the
/// calling thread: quick, and the deepest tree it can make fits well within
/// what a host call has of its component's 2 MiB fiber stack (a debug
/// build walks a tree with about 500 bytes of stack per byte of text).
const INLINE_SQL_BYTES: usize = 1 << 10;

/// The stack of the thread that classifies longer texts: enough for the
/// deepest tree [`MAX_SQL_BYTES`] can make (reserved, touched only as used).
const CLASSIFY_STACK_BYTES: usize = 512 << 20;

/// How long `meridian doctor` waits for one database's answer.
const LOGIN_CHECK_TIMEOUT: Duration = Duration::from_secs(20);

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
        let permit = env
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
        let bytes: usize = statements.iter().map(|s| s.sql.len()).sum();
        if bytes > MAX_SQL_BYTES {
            return Err(CapabilityError::InvalidRequest(format!(
                "{bytes} bytes of SQL text in one call; the limit is {MAX_SQL_BYTES}"
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
        let read_only = options.read_only || permit.access == SqlAccess::Read || conn.read_only;
        let mut limits = value::Limits {
            max_rows,
            deadline: Instant::now() + timeout,
            timeout,
            read_only,
            may_change_session: true,
        };
        let dialect = conn.driver.dialect();
        let classes = classify_all(dialect, &statements, &limits).await?;
        let level = if read_only {
            SqlAccess::Read
        } else {
            SqlAccess::ReadWrite
        };
        if let Err(refusal) = classify::check(dialect, &classes, level, &permit.allow) {
            return Err(refused(
                &env.identity.plugin,
                conn,
                &permit,
                options.read_only,
                &refusal,
            ));
        }
        limits.may_change_session = classes.iter().any(Class::may_change_session);
        let backend = self.pool(conn)?;
        let result = match &backend {
            Backend::Sqlx(p) => p.execute(&statements, &limits).await,
            Backend::Mssql(p) => p.execute(&statements, &limits).await,
        };
        let by_grant = permit.access == SqlAccess::Read;
        result.map_err(|e| match e {
            // The database refused a write because the grant made the
            // transaction read-only (something the classifier could not
            // see, such as a function that writes): the grant's decision.
            CapabilityError::Failed(m)
                if by_grant
                    && !options.read_only
                    && !conn.read_only
                    && value::is_read_only_message(&m) =>
            {
                CapabilityError::Denied(crate::capabilities::grants::Denial {
                    capability: "sql".into(),
                    target: connection.into(),
                    reason: format!(
                        "the plugin is granted read access only and the statement writes ({m})"
                    ),
                    grant_hint: grant::hint(
                        &env.identity.plugin,
                        connection,
                        SqlAccess::ReadWrite,
                        None,
                    ),
                })
            }
            other => other,
        })
    }

    /// The connections used only to read — `read_only = true`, or named
    /// only by `read` rules among `rules` (every grant's) — each with what
    /// its login may do, asked of the database (`meridian doctor`).
    pub async fn read_only_logins(
        &self,
        rules: &[grant::SqlRule],
    ) -> Vec<(String, login::LoginCheck)> {
        let mut out = Vec::new();
        for conn in self.settings.connections.values() {
            let naming: Vec<_> = rules.iter().filter(|r| r.matches(&conn.name)).collect();
            let read_only = conn.read_only
                || (!naming.is_empty() && naming.iter().all(|r| r.access() == SqlAccess::Read));
            if !read_only {
                continue;
            }
            let check = match self.pool(conn) {
                Ok(Backend::Sqlx(p)) => {
                    tokio::time::timeout(LOGIN_CHECK_TIMEOUT, p.login_check(&conn.name)).await
                }
                Ok(Backend::Mssql(p)) => {
                    tokio::time::timeout(LOGIN_CHECK_TIMEOUT, p.login_check(&conn.name)).await
                }
                Err(e) => Ok(login::LoginCheck::Unreachable(e.to_string())),
            }
            .unwrap_or_else(|_| {
                login::LoginCheck::Unreachable(format!(
                    "no answer within {} s",
                    LOGIN_CHECK_TIMEOUT.as_secs()
                ))
            });
            out.push((conn.name.clone(), check));
        }
        out
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

/// Classifies the text of every statement: short texts here, long ones on
/// a thread with a stack deep enough for any tree they can make, within the
/// call's deadline.
async fn classify_all(
    dialect: classify::Dialect,
    statements: &[wit::Statement],
    limits: &value::Limits,
) -> Result<Vec<Class>, CapabilityError> {
    let bytes: usize = statements.iter().map(|s| s.sql.len()).sum();
    if bytes <= INLINE_SQL_BYTES {
        return Ok(statements
            .iter()
            .map(|s| classify::classify(dialect, &s.sql))
            .collect());
    }
    let texts: Vec<String> = statements.iter().map(|s| s.sql.clone()).collect();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("meridian-sql-classify".into())
        .stack_size(CLASSIFY_STACK_BYTES)
        .spawn(move || {
            let classes: Vec<Class> = texts
                .iter()
                .map(|t| classify::classify(dialect, t))
                .collect();
            let _ = tx.send(classes);
        })
        .map_err(|e| {
            CapabilityError::Failed(format!("the statement classifier did not start: {e}"))
        })?;
    tokio::time::timeout_at(tokio::time::Instant::from_std(limits.deadline), rx)
        .await
        .map_err(|_| limits.timed_out())?
        .map_err(|_| CapabilityError::Failed("the statement classifier stopped".into()))
}

/// The error for a statement the classifier refused: a denial naming the
/// connection, the statement, what it does and the grant that would allow
/// it — or, when the call itself asked for a read-only transaction, an
/// invalid request (the grant would have allowed it).
fn refused(
    plugin: &str,
    conn: &ConnectionSettings,
    permit: &SqlPermit,
    asked_read_only: bool,
    refusal: &Refusal,
) -> CapabilityError {
    let name = conn.name.as_str();
    let does = refusal.describe();
    let denial = |reason: String, grant_hint: String| {
        CapabilityError::Denied(crate::capabilities::grants::Denial {
            capability: "sql".into(),
            target: name.into(),
            reason,
            grant_hint,
        })
    };
    let allow = match &refusal.needs {
        Needs::Nothing(_) => {
            return denial(
                format!("{does}: no grant allows it"),
                "none: refused under every grant".into(),
            );
        }
        Needs::ReadWrite => None,
        Needs::Allow(a) => Some(*a),
    };
    if conn.read_only {
        return denial(
            format!("{does}, and connection {name:?} is read-only"),
            format!(
                "none: [sql.connections.{name}] read_only = true makes every call on it read-only"
            ),
        );
    }
    if permit.access == SqlAccess::Read {
        return denial(
            format!("{does}, and the plugin's grant on connection {name:?} is read"),
            grant::hint(plugin, name, SqlAccess::ReadWrite, allow),
        );
    }
    if asked_read_only {
        return CapabilityError::InvalidRequest(format!(
            "{does}, but the call asked for a read-only transaction"
        ));
    }
    let category = allow.map_or("", grant::Allow::as_str);
    denial(
        format!("{does}, and no read_write grant on connection {name:?} allows {category:?}"),
        grant::hint(plugin, name, SqlAccess::ReadWrite, allow),
    )
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The texts that nest deepest per byte: a long operator chain, of
    /// each kind the parser folds into a left-deep tree.
    fn deep_texts(bytes: usize) -> Vec<String> {
        ["1+", "1*", "a||", "a AND ", "SELECT 1 UNION "]
            .iter()
            .map(|unit| {
                let body = unit.repeat((bytes - 16) / unit.len());
                if unit.starts_with("SELECT") {
                    format!("{body}SELECT 1")
                } else {
                    format!("SELECT {body}1")
                }
            })
            .collect()
    }

    #[test]
    fn refusals_say_what_would_allow_them() {
        use grant::Allow;
        use std::collections::BTreeSet;
        let conn = |read_only| ConnectionSettings {
            name: "etl".into(),
            driver: Driver::Postgres,
            url: "postgres://u@h/db".into(),
            password_secret: None,
            max_connections: 1,
            connect_timeout: Duration::from_secs(1),
            read_only,
            trust_cert: false,
            encrypt: true,
        };
        let permit = |access| SqlPermit {
            access,
            allow: BTreeSet::new(),
        };
        let ddl = Refusal {
            index: 1,
            what: "CREATE TABLE".into(),
            needs: Needs::Allow(Allow::Ddl),
        };
        let denial = |e: CapabilityError| match e {
            CapabilityError::Denied(d) => d,
            other => panic!("not a denial: {other:?}"),
        };
        let d = denial(refused(
            "p",
            &conn(false),
            &permit(SqlAccess::Read),
            false,
            &ddl,
        ));
        assert_eq!(d.target, "etl");
        assert!(
            d.reason
                .starts_with("statement 2 (CREATE TABLE) changes the schema"),
            "{}",
            d.reason
        );
        assert!(
            d.grant_hint
                .ends_with("access = \"read_write\", allow = [\"ddl\"]"),
            "{}",
            d.grant_hint
        );
        let d = denial(refused(
            "p",
            &conn(false),
            &permit(SqlAccess::ReadWrite),
            false,
            &ddl,
        ));
        assert!(d.reason.contains("allows \"ddl\""), "{}", d.reason);
        let d = denial(refused(
            "p",
            &conn(true),
            &permit(SqlAccess::ReadWrite),
            false,
            &ddl,
        ));
        assert!(
            d.grant_hint
                .starts_with("none: [sql.connections.etl] read_only"),
            "{}",
            d.grant_hint
        );
        let e = refused("p", &conn(false), &permit(SqlAccess::ReadWrite), true, &ddl);
        assert!(matches!(e, CapabilityError::InvalidRequest(_)), "{e:?}");
        let commit = Refusal {
            index: 0,
            what: "COMMIT".into(),
            needs: Needs::Nothing("controls the transaction"),
        };
        let d = denial(refused(
            "p",
            &conn(false),
            &permit(SqlAccess::ReadWrite),
            false,
            &commit,
        ));
        assert_eq!(d.grant_hint, "none: refused under every grant");
        assert!(d.reason.ends_with("no grant allows it"), "{}", d.reason);
    }

    #[test]
    fn inline_classification_fits_a_small_stack() {
        // A host call runs on the component's fiber stack (2 MiB, up to
        // 512 KiB of it the guest's): what is classified inline must fit in
        // far less.
        let handle = std::thread::Builder::new()
            .stack_size(512 << 10)
            .spawn(|| {
                for text in deep_texts(INLINE_SQL_BYTES) {
                    for d in [classify::Dialect::Postgres, classify::Dialect::MsSql] {
                        let class = classify::classify(d, &text);
                        assert!(class.statements == 1, "{d:?}: {class:?}");
                    }
                }
            })
            .unwrap();
        handle.join().unwrap();
    }

    #[tokio::test]
    async fn the_longest_text_is_classified_on_a_deep_stack() {
        let limits = value::Limits {
            max_rows: 1,
            deadline: Instant::now() + Duration::from_secs(120),
            timeout: Duration::from_secs(120),
            read_only: true,
            may_change_session: false,
        };
        for text in deep_texts(MAX_SQL_BYTES).into_iter().take(2) {
            let statements = vec![wit::Statement {
                sql: text,
                params: Vec::new(),
            }];
            let classes = classify_all(classify::Dialect::Postgres, &statements, &limits)
                .await
                .unwrap();
            assert_eq!(classes[0].statements, 1);
        }
    }
}
