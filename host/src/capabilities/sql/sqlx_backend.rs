//! PostgreSQL, MySQL/MariaDB and SQLite through sqlx: one typed pool per
//! connection, statements bound with their types, rows decoded by the
//! column's type into [`SqlValue`]s.
//!
//! One call is one transaction on one connection: read-only where asked
//! (`BEGIN READ ONLY`, `START TRANSACTION READ ONLY`; SQLite: a connection
//! opened with `SQLITE_OPEN_READONLY`), with a server-side time limit where
//! the database has one (`SET LOCAL statement_timeout`, MariaDB's
//! `max_statement_time`, MySQL's `max_execution_time`; SQLite: a progress
//! handler that interrupts the statement at the deadline) and the caller's
//! deadline on top: a connection still busy at the deadline is closed, not
//! returned to the pool.
//!
//! Nothing a step sets on a session reaches the next call. PostgreSQL
//! sessions go back to the pool only after `DISCARD ALL` (and with sqlx's
//! statement cache emptied, since that drops the server's prepared
//! statements); a session that cannot be reset is closed. sqlx has no
//! MySQL `COM_RESET_CONNECTION`, so a MySQL session is kept only after a
//! call of reads; after any other (a write leaves its `LAST_INSERT_ID()`,
//! and settings, variables, temporary tables and locks stay too) it is
//! closed: the cost is a new connection — a MySQL handshake — for the next
//! call. SQLite is
//! not pooled at all: every call opens its own connection — read-only for a
//! read call — and closes it (a few hundred microseconds, a file open and a
//! thread).

use super::login::{self, LoginCheck};
use super::value::{self, Limits, Outcome};
use crate::capabilities::CapabilityError;
use crate::contract::bindings::meridian::step::sql::{Column, ResultSet, SqlValue, Statement};
use futures::TryStreamExt;
use sqlx::mysql::{MySql, MySqlArguments, MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgTypeInfo, Postgres};
use sqlx::query::Query;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteConnectOptions, SqliteConnection};
use sqlx::{Column as _, Connection, Either, Executor, Row, TypeInfo, ValueRef};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Runs one bound statement in the transaction `$tx`, keeping at most
/// `max_rows` rows; for a statement that returned no rows, its columns come
/// from `describe`.
macro_rules! run {
    ($tx:ident, $q:ident, $s:ident, $limits:ident, $decode:path, $affected:expr, $index:ident) => {{
        let mut outcome = Outcome::default();
        let affected = $affected;
        {
            let mut stream = (&mut *$tx).fetch_many($q);
            while let Some(item) = stream
                .try_next()
                .await
                .map_err(|e| statement_error($index, e))?
            {
                match item {
                    Either::Left(done) => outcome.rows_affected += affected(&done),
                    Either::Right(row) => {
                        if outcome.columns.is_empty() {
                            outcome.columns = row
                                .columns()
                                .iter()
                                .map(|c| Column {
                                    name: c.name().to_string(),
                                    type_name: c.type_info().name().to_string(),
                                })
                                .collect();
                        }
                        if outcome.rows.len() < $limits.max_rows as usize {
                            let mut values = Vec::with_capacity(row.len());
                            for i in 0..row.len() {
                                values.push($decode(&row, i).map_err(|m| {
                                    CapabilityError::Failed(format!(
                                        "statement {}: column {:?}: {m}",
                                        $index + 1,
                                        row.columns()[i].name()
                                    ))
                                })?);
                            }
                            outcome.rows.push(values);
                        } else {
                            outcome.truncated = true;
                        }
                    }
                }
            }
        }
        if outcome.columns.is_empty() && outcome.rows_affected == 0 {
            if let Ok(described) = (&mut *$tx).describe(&$s.sql).await {
                outcome.columns = described
                    .columns()
                    .iter()
                    .map(|c| Column {
                        name: c.name().to_string(),
                        type_name: c.type_info().name().to_string(),
                    })
                    .collect();
            }
        }
        outcome.into_result_set()
    }};
}

/// A pool of one of the sqlx drivers.
#[derive(Debug, Clone)]
pub enum SqlxPool {
    Postgres(PgPool),
    MySql(MySqlPool),
    Sqlite(SqliteSource),
}

/// SQLite is not pooled: the options every call opens its own connection
/// with, and permits bounding how many are open at once.
#[derive(Debug, Clone)]
pub struct SqliteSource {
    options: Arc<SqliteConnectOptions>,
    permits: Arc<Semaphore>,
}

/// How long resetting a session may take before it is closed instead.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// What building a pool needs.
pub struct PoolSpec<'a> {
    pub url: &'a str,
    pub password: Option<&'a str>,
    pub max_connections: u32,
    pub connect_timeout: std::time::Duration,
}

/// How a step's PostgreSQL sessions are named to the server
/// (`application_name`) when the connection's URL does not say: apart from
/// the store's own sessions (`meridian`).
pub const APPLICATION_NAME: &str = "meridian-step";

impl SqlxPool {
    /// A pool that connects on first use.
    pub fn postgres(spec: &PoolSpec<'_>) -> Result<Self, String> {
        let mut options = PgConnectOptions::from_str(spec.url).map_err(|e| e.to_string())?;
        if let Some(pw) = spec.password {
            options = options.password(pw);
        }
        // Named in `pg_stat_activity`, unless the URL names it.
        if options.get_application_name().is_none() {
            options = options.application_name(APPLICATION_NAME);
        }
        let pool = PgPoolOptions::new()
            .max_connections(spec.max_connections)
            .acquire_timeout(spec.connect_timeout)
            .connect_lazy_with(options);
        Ok(Self::Postgres(pool))
    }

    pub fn mysql(spec: &PoolSpec<'_>) -> Result<Self, String> {
        let mut options = MySqlConnectOptions::from_str(spec.url).map_err(|e| e.to_string())?;
        if let Some(pw) = spec.password {
            options = options.password(pw);
        }
        let pool = MySqlPoolOptions::new()
            .max_connections(spec.max_connections)
            .acquire_timeout(spec.connect_timeout)
            .connect_lazy_with(options);
        Ok(Self::MySql(pool))
    }

    pub fn sqlite(spec: &PoolSpec<'_>) -> Result<Self, String> {
        let options = SqliteConnectOptions::from_str(spec.url).map_err(|e| e.to_string())?;
        Ok(Self::Sqlite(SqliteSource {
            options: Arc::new(options),
            permits: Arc::new(Semaphore::new(spec.max_connections as usize)),
        }))
    }

    /// Runs the statements in one transaction.
    pub async fn execute(
        &self,
        statements: &[Statement],
        limits: &Limits,
    ) -> Result<Vec<ResultSet>, CapabilityError> {
        let deadline = tokio::time::Instant::from_std(limits.deadline);
        match self {
            Self::Postgres(pool) => {
                let mut conn = tokio::time::timeout_at(deadline, pool.acquire())
                    .await
                    .map_err(|_| limits.timed_out())?
                    .map_err(connect_error)?;
                let work = async {
                    let begin = if limits.read_only {
                        "BEGIN READ ONLY"
                    } else {
                        "BEGIN"
                    };
                    let mut tx = conn.begin_with(begin).await.map_err(sql_error)?;
                    let ms = limits.remaining_ms();
                    sqlx::query(&format!("SET LOCAL statement_timeout = {ms}"))
                        .execute(&mut *tx)
                        .await
                        .map_err(sql_error)?;
                    let mut sets = Vec::new();
                    for (i, s) in statements.iter().enumerate() {
                        let mut q = sqlx::query(&s.sql);
                        for (j, p) in s.params.iter().enumerate() {
                            q = bind_pg(q, p).map_err(|m| param_error(i, j, &m))?;
                        }
                        sets.push(run!(
                            tx,
                            q,
                            s,
                            limits,
                            decode_pg,
                            |r: &sqlx::postgres::PgQueryResult| r.rows_affected(),
                            i
                        ));
                    }
                    tx.commit().await.map_err(sql_error)?;
                    Ok(sets)
                };
                let result = tokio::time::timeout_at(deadline, work).await;
                // Whatever the step set on the session — settings, role,
                // temporary tables, prepared statements, cursors, locks —
                // is dropped before the session serves anyone else.
                if result.is_ok() && !reset_postgres(&mut conn).await {
                    conn.close_on_drop();
                }
                finish(result, limits, || conn.close_on_drop())
            }
            Self::MySql(pool) => {
                let mut conn = tokio::time::timeout_at(deadline, pool.acquire())
                    .await
                    .map_err(|_| limits.timed_out())?
                    .map_err(connect_error)?;
                let work = async {
                    // MariaDB limits in seconds, MySQL in milliseconds (and
                    // SELECTs only); the one the server lacks fails and is
                    // ignored: the deadline below still holds.
                    let ms = limits.remaining_ms();
                    let maria = format!("SET SESSION max_statement_time = {}", ms as f64 / 1000.0);
                    if sqlx::query(&maria).execute(&mut *conn).await.is_err() {
                        let _ = sqlx::query(&format!("SET SESSION max_execution_time = {ms}"))
                            .execute(&mut *conn)
                            .await;
                    }
                    let begin = if limits.read_only {
                        "START TRANSACTION READ ONLY"
                    } else {
                        "START TRANSACTION"
                    };
                    let mut tx = conn.begin_with(begin).await.map_err(sql_error)?;
                    let mut sets = Vec::new();
                    for (i, s) in statements.iter().enumerate() {
                        let mut q = sqlx::query(&s.sql);
                        for (j, p) in s.params.iter().enumerate() {
                            q = bind_mysql(q, p).map_err(|m| param_error(i, j, &m))?;
                        }
                        sets.push(run!(
                            tx,
                            q,
                            s,
                            limits,
                            decode_mysql,
                            |r: &sqlx::mysql::MySqlQueryResult| r.rows_affected(),
                            i
                        ));
                    }
                    tx.commit().await.map_err(sql_error)?;
                    Ok(sets)
                };
                let result = tokio::time::timeout_at(deadline, work).await;
                // sqlx cannot reset a MySQL session: one that may carry the
                // step's state (variables, temporary tables, locks, the last
                // insert id…) is closed rather than handed to the next call.
                if limits.may_change_session {
                    conn.close_on_drop();
                }
                finish(result, limits, || conn.close_on_drop())
            }
            Self::Sqlite(source) => {
                let _permit =
                    tokio::time::timeout_at(deadline, source.permits.clone().acquire_owned())
                        .await
                        .map_err(|_| limits.timed_out())?
                        .map_err(|_| CapabilityError::Failed("the connection is closed".into()))?;
                // A read call opens the file read-only: SQLite itself
                // refuses every write, whatever the statements try.
                let options =
                    SqliteConnectOptions::clone(&source.options).read_only(limits.read_only);
                let mut conn =
                    tokio::time::timeout_at(deadline, SqliteConnection::connect_with(&options))
                        .await
                        .map_err(|_| limits.timed_out())?
                        .map_err(connect_error)?;
                let std_deadline = limits.deadline;
                let work = async {
                    conn.lock_handle()
                        .await
                        .map_err(sql_error)?
                        .set_progress_handler(1000, move || Instant::now() < std_deadline);
                    let mut tx = conn.begin().await.map_err(sql_error)?;
                    let mut sets = Vec::new();
                    for (i, s) in statements.iter().enumerate() {
                        let mut q = sqlx::query(&s.sql);
                        for (j, p) in s.params.iter().enumerate() {
                            q = bind_sqlite(q, p).map_err(|m| param_error(i, j, &m))?;
                        }
                        sets.push(run!(
                            tx,
                            q,
                            s,
                            limits,
                            decode_sqlite,
                            |r: &sqlx::sqlite::SqliteQueryResult| r.rows_affected(),
                            i
                        ));
                    }
                    tx.commit().await.map_err(sql_error)?;
                    Ok(sets)
                };
                let result = tokio::time::timeout_at(deadline, work).await.map(|r| {
                    r.map_err(|e| match e {
                        CapabilityError::Failed(m)
                            if m.contains("interrupted") && Instant::now() >= std_deadline =>
                        {
                            limits.timed_out()
                        }
                        other => other,
                    })
                });
                // The connection served this call only. On time-out it is
                // dropped, which interrupts and closes it.
                if result.is_ok() {
                    let _ = conn.close().await;
                }
                finish(result, limits, || ())
            }
        }
    }

    /// Closes every connection of the pool.
    pub async fn close(&self) {
        match self {
            Self::Postgres(p) => p.close().await,
            Self::MySql(p) => p.close().await,
            Self::Sqlite(s) => s.permits.close(),
        }
    }
}

/// What PostgreSQL says the current user may do (see [`super::login`]).
const POSTGRES_LOGIN: &str = r"
SELECT r.rolsuper,
       has_database_privilege(current_database(), 'CREATE'),
       ARRAY(SELECT n.nspname::text FROM pg_namespace n
             WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
               AND has_schema_privilege(n.oid, 'CREATE')
             ORDER BY 1 LIMIT 5),
       ARRAY(SELECT n.nspname || '.' || c.relname
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'v', 'f')
               AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
               AND (has_table_privilege(c.oid, 'INSERT') OR has_table_privilege(c.oid, 'UPDATE')
                    OR has_table_privilege(c.oid, 'DELETE') OR has_table_privilege(c.oid, 'TRUNCATE'))
             ORDER BY 1 LIMIT 5),
       current_database()::text
FROM pg_roles r WHERE r.rolname = current_user";

impl SqlxPool {
    /// What the connection's login may do, asked of the database (only
    /// catalogue reads; SQLite: a write tried on a read-only connection,
    /// inside a transaction rolled back).
    pub async fn login_check(&self, connection: &str) -> LoginCheck {
        match self {
            Self::Postgres(pool) => {
                let mut conn = match pool.acquire().await {
                    Ok(c) => c,
                    Err(e) => return LoginCheck::Unreachable(describe_error(&e)),
                };
                let row = match sqlx::query(POSTGRES_LOGIN).fetch_one(&mut *conn).await {
                    Ok(row) => row,
                    Err(e) => return LoginCheck::Unknown(describe_error(&e)),
                };
                let answer = (|| {
                    Ok::<_, sqlx::Error>(login::PostgresAnswer {
                        superuser: row.try_get(0)?,
                        create_on_database: row.try_get(1)?,
                        create_schemas: row.try_get(2)?,
                        writable_tables: row.try_get(3)?,
                        database: row.try_get(4)?,
                    })
                })();
                match answer {
                    Ok(a) => login::postgres(connection, &a),
                    Err(e) => LoginCheck::Unknown(describe_error(&e)),
                }
            }
            Self::MySql(pool) => {
                let mut conn = match pool.acquire().await {
                    Ok(c) => c,
                    Err(e) => return LoginCheck::Unreachable(describe_error(&e)),
                };
                let rows = match (&mut *conn).fetch_all("SHOW GRANTS").await {
                    Ok(rows) => rows,
                    Err(e) => return LoginCheck::Unknown(describe_error(&e)),
                };
                let grants: Vec<String> = rows
                    .iter()
                    .map(|r| {
                        r.try_get::<String, _>(0).unwrap_or_else(|_| {
                            String::from_utf8_lossy(&r.try_get::<Vec<u8>, _>(0).unwrap_or_default())
                                .into_owned()
                        })
                    })
                    .collect();
                let database = (&mut *conn)
                    .fetch_one("SELECT DATABASE()")
                    .await
                    .ok()
                    .and_then(|r| r.try_get::<Option<String>, _>(0).ok().flatten())
                    .unwrap_or_else(|| "<database>".into());
                login::mysql(connection, &database, &grants)
            }
            Self::Sqlite(source) => {
                let options = SqliteConnectOptions::clone(&source.options).read_only(true);
                let mut conn = match SqliteConnection::connect_with(&options).await {
                    Ok(c) => c,
                    Err(e) => {
                        return LoginCheck::Unreachable(format!(
                            "the file cannot be opened read-only: {}",
                            describe_error(&e)
                        ));
                    }
                };
                let tried = async {
                    let mut tx = conn.begin().await?;
                    let wrote = (&mut *tx)
                        .execute("CREATE TABLE meridian_doctor_probe (a INTEGER)")
                        .await;
                    tx.rollback().await?;
                    Ok::<_, sqlx::Error>(wrote)
                }
                .await;
                let _ = conn.close().await;
                match tried {
                    Ok(Err(_)) => LoginCheck::ReadOnly(
                        "a read call opens the file read-only (SQLITE_OPEN_READONLY), and SQLite refused a write on it".into(),
                    ),
                    Ok(Ok(_)) => LoginCheck::CanWrite {
                        why: "SQLite took a write on a connection opened read-only".into(),
                        fix: "check the file's SQLite build and VFS".into(),
                    },
                    Err(e) => LoginCheck::Unknown(describe_error(&e)),
                }
            }
        }
    }
}

/// Resets a PostgreSQL session for the next call: `DISCARD ALL` (outside
/// any transaction: it fails inside one, as when a step's own `BEGIN` were
/// left open) and sqlx's statement cache emptied to match. False when the
/// session cannot be reset and must be closed.
async fn reset_postgres(conn: &mut sqlx::postgres::PgConnection) -> bool {
    let reset = async {
        conn.execute("DISCARD ALL").await?;
        conn.clear_cached_statements().await
    };
    matches!(tokio::time::timeout(RESET_TIMEOUT, reset).await, Ok(Ok(())))
}

/// The outcome of the guarded work: a late one closes the connection.
fn finish(
    result: Result<Result<Vec<ResultSet>, CapabilityError>, tokio::time::error::Elapsed>,
    limits: &Limits,
    close: impl FnOnce(),
) -> Result<Vec<ResultSet>, CapabilityError> {
    match result {
        Ok(Ok(sets)) => Ok(sets),
        Ok(Err(e)) => {
            if matches!(e, CapabilityError::TimedOut(_)) {
                close();
            }
            Err(e)
        }
        Err(_) => {
            close();
            Err(limits.timed_out())
        }
    }
}

fn connect_error(e: sqlx::Error) -> CapabilityError {
    CapabilityError::Failed(format!("could not connect: {e}"))
}

fn sql_error(e: sqlx::Error) -> CapabilityError {
    CapabilityError::Failed(describe_error(&e))
}

fn statement_error(index: usize, e: sqlx::Error) -> CapabilityError {
    let message = describe_error(&e);
    if value::is_timeout_message(&message) {
        return CapabilityError::TimedOut(format!("statement {}: {message}", index + 1));
    }
    CapabilityError::Failed(format!("statement {}: {message}", index + 1))
}

fn param_error(statement: usize, param: usize, message: &str) -> CapabilityError {
    CapabilityError::InvalidRequest(format!(
        "statement {} parameter {}: {message}",
        statement + 1,
        param + 1
    ))
}

/// The database's own message (with its code) where there is one.
fn describe_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (code {code})", db.message()),
            None => db.message().to_string(),
        },
        other => other.to_string(),
    }
}

/// A NULL parameter whose type PostgreSQL infers from its use (OID 0), as it
/// does for an untyped `NULL` literal.
struct UntypedNull;

impl sqlx::Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

impl sqlx::Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(
        &self,
        _buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }
}

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;
type MyQuery<'q> = Query<'q, MySql, MySqlArguments>;
type LiteQuery<'q> = Query<'q, Sqlite, SqliteArguments<'q>>;

fn bind_pg<'q>(q: PgQuery<'q>, v: &SqlValue) -> Result<PgQuery<'q>, String> {
    Ok(match v {
        SqlValue::Null => q.bind(UntypedNull),
        SqlValue::Boolean(b) => q.bind(*b),
        SqlValue::Int(i) => q.bind(*i),
        SqlValue::Float(f) => q.bind(*f),
        SqlValue::Decimal(d) => q.bind(value::decimal(d)?),
        SqlValue::Text(s) => q.bind(s.clone()),
        SqlValue::Bytes(b) => q.bind(b.clone()),
        SqlValue::Date(s) => q.bind(value::date(s)?),
        SqlValue::Time(s) => q.bind(value::time(s)?),
        SqlValue::Datetime(s) => q.bind(value::datetime(s)?),
        SqlValue::Timestamp(s) => q.bind(value::timestamp(s)?),
        SqlValue::Uuid(s) => q.bind(value::uuid(s)?),
        SqlValue::Json(s) => q.bind(sqlx::types::Json(value::json(s)?)),
    })
}

fn bind_mysql<'q>(q: MyQuery<'q>, v: &SqlValue) -> Result<MyQuery<'q>, String> {
    Ok(match v {
        SqlValue::Null => q.bind(None::<String>),
        SqlValue::Boolean(b) => q.bind(*b),
        SqlValue::Int(i) => q.bind(*i),
        SqlValue::Float(f) => q.bind(*f),
        SqlValue::Decimal(d) => q.bind(value::decimal(d)?),
        SqlValue::Text(s) => q.bind(s.clone()),
        SqlValue::Bytes(b) => q.bind(b.clone()),
        SqlValue::Date(s) => q.bind(value::date(s)?),
        SqlValue::Time(s) => q.bind(value::time(s)?),
        SqlValue::Datetime(s) => q.bind(value::datetime(s)?),
        SqlValue::Timestamp(s) => q.bind(value::timestamp(s)?),
        // UUIDs are text in MySQL schemas far more often than BINARY(16).
        SqlValue::Uuid(s) => q.bind(value::uuid(s)?.hyphenated().to_string()),
        SqlValue::Json(s) => q.bind(sqlx::types::Json(value::json(s)?)),
    })
}

fn bind_sqlite<'q>(q: LiteQuery<'q>, v: &SqlValue) -> Result<LiteQuery<'q>, String> {
    Ok(match v {
        SqlValue::Null => q.bind(None::<String>),
        SqlValue::Boolean(b) => q.bind(*b),
        SqlValue::Int(i) => q.bind(*i),
        SqlValue::Float(f) => q.bind(*f),
        // SQLite has no exact decimal type: the text is kept as given.
        SqlValue::Decimal(d) => q.bind(value::decimal(d)?.to_string()),
        SqlValue::Text(s) => q.bind(s.clone()),
        SqlValue::Bytes(b) => q.bind(b.clone()),
        SqlValue::Date(s) => q.bind(value::date(s)?.to_string()),
        SqlValue::Time(s) => q.bind(value::time(s)?.to_string()),
        SqlValue::Datetime(s) => q.bind(
            value::datetime(s)?
                .format("%Y-%m-%dT%H:%M:%S%.f")
                .to_string(),
        ),
        SqlValue::Timestamp(s) => q.bind(value::timestamp_text(&value::timestamp(s)?)),
        SqlValue::Uuid(s) => q.bind(value::uuid(s)?.hyphenated().to_string()),
        SqlValue::Json(s) => q.bind(value::json(s)?.to_string()),
    })
}

fn get<'r, T, R>(row: &'r R, i: usize) -> Result<T, String>
where
    R: Row,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    row.try_get::<T, usize>(i).map_err(|e| e.to_string())
}

fn decode_pg(row: &sqlx::postgres::PgRow, i: usize) -> Result<SqlValue, String> {
    if row.try_get_raw(i).map_err(|e| e.to_string())?.is_null() {
        return Ok(SqlValue::Null);
    }
    let ty = row.columns()[i].type_info().name().to_string();
    Ok(match ty.as_str() {
        "BOOL" => SqlValue::Boolean(get(row, i)?),
        "INT2" => SqlValue::Int(get::<i16, _>(row, i)?.into()),
        "INT4" => SqlValue::Int(get::<i32, _>(row, i)?.into()),
        "INT8" => SqlValue::Int(get(row, i)?),
        "OID" => SqlValue::Int(get::<sqlx::postgres::types::Oid, _>(row, i)?.0.into()),
        "FLOAT4" => SqlValue::Float(get::<f32, _>(row, i)?.into()),
        "FLOAT8" => SqlValue::Float(get(row, i)?),
        "NUMERIC" => {
            // sqlx drops the value's display scale (12.50 reads as 12.5000):
            // take it from the binary value's header (ndigits, weight, sign,
            // dscale; 2 bytes each).
            let d: bigdecimal::BigDecimal = get(row, i)?;
            let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
            let scale = match raw.format() {
                sqlx::postgres::PgValueFormat::Binary => raw
                    .as_bytes()
                    .ok()
                    .and_then(|b| b.get(6..8))
                    .map(|s| u16::from_be_bytes([s[0], s[1]])),
                sqlx::postgres::PgValueFormat::Text => None,
            };
            SqlValue::Decimal(match scale {
                Some(s) => d.with_scale(s.into()).to_plain_string(),
                None => d.to_plain_string(),
            })
        }
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" | "\"CHAR\"" | "UNKNOWN" => {
            SqlValue::Text(get(row, i)?)
        }
        "BYTEA" => SqlValue::Bytes(get(row, i)?),
        "DATE" => SqlValue::Date(get::<chrono::NaiveDate, _>(row, i)?.to_string()),
        "TIME" => SqlValue::Time(get::<chrono::NaiveTime, _>(row, i)?.to_string()),
        "TIMESTAMP" => SqlValue::Datetime(value::datetime_text(&get(row, i)?)),
        "TIMESTAMPTZ" => SqlValue::Timestamp(value::timestamp_text(&get(row, i)?)),
        "UUID" => SqlValue::Uuid(get::<uuid::Uuid, _>(row, i)?.hyphenated().to_string()),
        "JSON" | "JSONB" => SqlValue::Json(get::<sqlx::types::JsonValue, _>(row, i)?.to_string()),
        other => {
            return Err(format!(
                "type {other} cannot be read by this host; cast it in the query (e.g. ::text)"
            ));
        }
    })
}

fn decode_mysql(row: &sqlx::mysql::MySqlRow, i: usize) -> Result<SqlValue, String> {
    if row.try_get_raw(i).map_err(|e| e.to_string())?.is_null() {
        return Ok(SqlValue::Null);
    }
    let ty = row.columns()[i].type_info().name().to_string();
    Ok(match ty.as_str() {
        "BOOLEAN" => SqlValue::Boolean(get(row, i)?),
        "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" | "YEAR" => {
            SqlValue::Int(get(row, i)?)
        }
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "INT UNSIGNED" | "MEDIUMINT UNSIGNED"
        | "BIGINT UNSIGNED" => {
            let v: u64 = get(row, i)?;
            match i64::try_from(v) {
                Ok(v) => SqlValue::Int(v),
                Err(_) => SqlValue::Decimal(v.to_string()),
            }
        }
        "FLOAT" => SqlValue::Float(get::<f32, _>(row, i)?.into()),
        "DOUBLE" => SqlValue::Float(get(row, i)?),
        "DECIMAL" => SqlValue::Decimal(get::<bigdecimal::BigDecimal, _>(row, i)?.to_plain_string()),
        "DATE" => SqlValue::Date(get::<chrono::NaiveDate, _>(row, i)?.to_string()),
        "TIME" => SqlValue::Time(get::<chrono::NaiveTime, _>(row, i)?.to_string()),
        "DATETIME" => SqlValue::Datetime(value::datetime_text(&get(row, i)?)),
        "TIMESTAMP" => SqlValue::Timestamp(value::timestamp_text(&get(row, i)?)),
        "JSON" => SqlValue::Json(get::<sqlx::types::JsonValue, _>(row, i)?.to_string()),
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BIT"
        | "GEOMETRY" => SqlValue::Bytes(get(row, i)?),
        _ => match get::<String, _>(row, i) {
            Ok(s) => SqlValue::Text(s),
            Err(_) => SqlValue::Bytes(get(row, i)?),
        },
    })
}

fn decode_sqlite(row: &sqlx::sqlite::SqliteRow, i: usize) -> Result<SqlValue, String> {
    let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(SqlValue::Null);
    }
    // The storage class of this value, refined by the declared type.
    let storage = raw.type_info().name().to_string();
    let declared = row.columns()[i].type_info().name().to_ascii_uppercase();
    Ok(match storage.as_str() {
        "INTEGER" | "BOOLEAN" => {
            let v: i64 = get(row, i)?;
            if declared == "BOOLEAN" || declared == "BOOL" {
                SqlValue::Boolean(v != 0)
            } else {
                SqlValue::Int(v)
            }
        }
        "REAL" => SqlValue::Float(get(row, i)?),
        "BLOB" => SqlValue::Bytes(get(row, i)?),
        _ => {
            let s: String = get(row, i)?;
            match declared.as_str() {
                "DATE" => SqlValue::Date(s),
                "TIME" => SqlValue::Time(s),
                "DATETIME" => SqlValue::Datetime(s),
                "TIMESTAMP" | "TIMESTAMPTZ" => SqlValue::Timestamp(s),
                "UUID" => SqlValue::Uuid(s),
                "JSON" | "JSONB" => SqlValue::Json(s),
                d if d.starts_with("DECIMAL") || d.starts_with("NUMERIC") => SqlValue::Decimal(s),
                _ => SqlValue::Text(s),
            }
        }
    })
}
