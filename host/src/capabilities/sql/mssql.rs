//! SQL Server over TDS with tiberius: a small pool of clients per
//! connection, SQL logins (user from the connection string, password from
//! the secret), TLS as configured (`encrypt`, `trust_cert`).
//!
//! One call is one transaction (`BEGIN TRANSACTION` … `COMMIT`, `ROLLBACK`
//! on any error). Parameters are `@P1`, `@P2`… and bind with their types.
//! tiberius reports rows affected only for statements run with `execute`
//! and rows only for those run with `query`, so a statement whose first
//! keyword is `SELECT` or `WITH` is run as a query (rows, no count) and any
//! other as a command (count, no rows).
//!
//! SQL Server has no read-only transaction: on top of the classifier, which
//! lets only statements that read into a read-only call, such a call is
//! always rolled back at the end, so a side effect the classifier could not
//! see (a function, a view) leaves nothing behind.
//!
//! tiberius cannot reset a session (`sp_reset_connection` is a flag of the
//! TDS request that it does not expose), so a session goes back to the pool
//! only after a call of reads; after any other (a write leaves
//! `SCOPE_IDENTITY()`; `SET`, `USE`, temporary tables, `EXEC`… more) it is
//! closed, and the next call logs in anew.
//!
//! SQL Server has no per-session statement timeout either: at the deadline
//! the client is dropped (its TCP connection closed, which makes the server
//! abandon the batch) instead of being returned to the pool.

use super::login::{self, LoginCheck};
use super::settings::ConnectionSettings;
use super::value::{self, Limits, Outcome};
use crate::capabilities::CapabilityError;
use crate::contract::bindings::meridian::step::sql::{Column, ResultSet, SqlValue, Statement};
use futures::TryStreamExt;
use std::sync::{Arc, Mutex};
use tiberius::{
    AuthMethod, Client, ColumnData, Config, EncryptionLevel, FromSql, Query, QueryItem,
};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

type MssqlClient = Client<Compat<TcpStream>>;

/// Whether the login is in a role, or has a database permission, that
/// writes (1 or 0 each), and the database's name.
const MSSQL_LOGIN: &str = "SELECT IS_SRVROLEMEMBER('sysadmin'), IS_ROLEMEMBER('db_owner'), \
     IS_ROLEMEMBER('db_datawriter'), IS_ROLEMEMBER('db_ddladmin'), \
     HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'INSERT'), \
     HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'UPDATE'), \
     HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'DELETE'), \
     HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'ALTER'), DB_NAME()";

/// A pool of tiberius clients for one connection.
pub struct MssqlPool {
    config: Config,
    connect_timeout: std::time::Duration,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<MssqlClient>>,
}

impl std::fmt::Debug for MssqlPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MssqlPool")
            .field("addr", &self.config.get_addr())
            .finish()
    }
}

impl MssqlPool {
    /// A pool that connects on first use.
    pub fn new(conn: &ConnectionSettings, password: Option<String>) -> Result<Self, String> {
        let mut config = Config::from_ado_string(&conn.url).map_err(|e| e.to_string())?;
        let user = ado_value(&conn.url, &["user id", "uid", "user", "username"])
            .ok_or("the connection string names no user (user=...)")?;
        config.authentication(AuthMethod::sql_server(user, password.unwrap_or_default()));
        config.encryption(if conn.encrypt {
            EncryptionLevel::Required
        } else {
            EncryptionLevel::NotSupported
        });
        if conn.trust_cert {
            config.trust_cert();
        }
        config.application_name("meridian");
        Ok(Self {
            config,
            connect_timeout: conn.connect_timeout,
            permits: Arc::new(Semaphore::new(conn.max_connections as usize)),
            idle: Mutex::new(Vec::new()),
        })
    }

    async fn connect(&self) -> Result<MssqlClient, CapabilityError> {
        let fail = |e: String| CapabilityError::Failed(format!("could not connect: {e}"));
        let work = async {
            let tcp = TcpStream::connect(self.config.get_addr())
                .await
                .map_err(|e| fail(e.to_string()))?;
            tcp.set_nodelay(true).map_err(|e| fail(e.to_string()))?;
            Client::connect(self.config.clone(), tcp.compat_write())
                .await
                .map_err(|e| fail(e.to_string()))
        };
        tokio::time::timeout(self.connect_timeout, work)
            .await
            .map_err(|_| fail(format!("no connection within {:?}", self.connect_timeout)))?
    }

    /// Runs the statements in one transaction.
    pub async fn execute(
        &self,
        statements: &[Statement],
        limits: &Limits,
    ) -> Result<Vec<ResultSet>, CapabilityError> {
        let deadline = tokio::time::Instant::from_std(limits.deadline);
        let _permit = tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| limits.timed_out())?
            .map_err(|_| CapabilityError::Failed("the connection pool is closed".into()))?;
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut client = match idle {
            Some(c) => c,
            None => tokio::time::timeout_at(deadline, self.connect())
                .await
                .map_err(|_| limits.timed_out())??,
        };
        // On the deadline the future is dropped and the client with it.
        let result = tokio::time::timeout_at(deadline, async {
            for setup in ["SET XACT_ABORT ON", "BEGIN TRANSACTION"] {
                client
                    .simple_query(setup)
                    .await
                    .map_err(|e| (tds_error(e), false))?
                    .into_results()
                    .await
                    .map_err(|e| (tds_error(e), false))?;
            }
            let result = run_all(&mut client, statements, limits).await;
            let end = match (&result, limits.read_only) {
                (Ok(_), false) => "COMMIT TRANSACTION",
                _ => "ROLLBACK TRANSACTION",
            };
            let ended = match client.simple_query(end).await {
                Ok(stream) => stream.into_results().await.map(|_| ()),
                Err(e) => Err(e),
            };
            match (result, ended) {
                (Err(e), ended) => Err((e, ended.is_ok())),
                (Ok(_), Err(e)) => Err((tds_error(e), false)),
                (Ok(sets), Ok(())) => Ok(sets),
            }
        })
        .await;
        let keep = !limits.may_change_session;
        match result {
            Ok(Ok(sets)) => {
                if keep {
                    self.put_back(client);
                }
                Ok(sets)
            }
            Ok(Err((e, reusable))) => {
                if reusable && keep {
                    self.put_back(client);
                }
                Err(e)
            }
            Err(_) => Err(limits.timed_out()),
        }
    }

    /// What the connection's login may do (see [`super::login`]): server
    /// and database roles and database permissions, read from functions
    /// that change nothing.
    pub async fn login_check(&self, connection: &str) -> LoginCheck {
        let mut client = match self.connect().await {
            Ok(c) => c,
            Err(e) => return LoginCheck::Unreachable(e.to_string()),
        };
        let row = async { client.simple_query(MSSQL_LOGIN).await?.into_row().await }.await;
        let row = match row {
            Ok(Some(row)) => row,
            Ok(None) => return LoginCheck::Unknown("SQL Server returned no row".into()),
            Err(e) => return LoginCheck::Unknown(describe_error(&e)),
        };
        let flag = |i: usize| -> Result<bool, String> {
            match row.try_get::<i32, usize>(i) {
                Ok(Some(v)) => Ok(v == 1),
                Ok(None) => Err(format!("column {} is NULL", i + 1)),
                Err(e) => Err(e.to_string()),
            }
        };
        let answer = (|| {
            let mut a = login::MssqlAnswer::default();
            for (i, role) in ["sysadmin", "db_owner", "db_datawriter", "db_ddladmin"]
                .iter()
                .enumerate()
            {
                if flag(i)? {
                    a.roles.push((*role).to_string());
                }
            }
            for (i, permission) in ["INSERT", "UPDATE", "DELETE", "ALTER"].iter().enumerate() {
                if flag(i + 4)? {
                    a.permissions.push((*permission).to_string());
                }
            }
            a.database = row
                .try_get::<&str, usize>(8)
                .map_err(|e| e.to_string())?
                .unwrap_or("<database>")
                .to_string();
            Ok::<_, String>(a)
        })();
        match answer {
            Ok(a) => login::mssql(connection, &a),
            Err(e) => LoginCheck::Unknown(format!("SQL Server did not answer: {e}")),
        }
    }

    fn put_back(&self, client: MssqlClient) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(client);
        }
    }
}

async fn run_all(
    client: &mut MssqlClient,
    statements: &[Statement],
    limits: &Limits,
) -> Result<Vec<ResultSet>, CapabilityError> {
    let mut sets = Vec::with_capacity(statements.len());
    for (i, s) in statements.iter().enumerate() {
        let mut query = Query::new(s.sql.as_str());
        for (j, p) in s.params.iter().enumerate() {
            bind(&mut query, p).map_err(|m| {
                CapabilityError::InvalidRequest(format!(
                    "statement {} parameter {}: {m}",
                    i + 1,
                    j + 1
                ))
            })?;
        }
        let at = |e: tiberius::error::Error| {
            CapabilityError::Failed(format!("statement {}: {}", i + 1, describe_error(&e)))
        };
        let mut outcome = Outcome::default();
        if is_query(&s.sql) {
            let mut stream = query.query(client).await.map_err(at)?;
            // The first result set is the statement's; later ones (a batch)
            // are read and dropped.
            let mut result_index = None;
            while let Some(item) = stream.try_next().await.map_err(at)? {
                match item {
                    QueryItem::Metadata(meta) => {
                        if result_index.is_none() {
                            result_index = Some(meta.result_index());
                            outcome.columns = meta
                                .columns()
                                .iter()
                                .map(|c| Column {
                                    name: c.name().to_string(),
                                    type_name: format!("{:?}", c.column_type()),
                                })
                                .collect();
                        }
                    }
                    QueryItem::Row(row) => {
                        if Some(row.result_index()) != result_index {
                            continue;
                        }
                        if outcome.rows.len() < limits.max_rows as usize {
                            let mut values = Vec::with_capacity(row.len());
                            for (column, data) in row.cells() {
                                values.push(decode(data).map_err(|m| {
                                    CapabilityError::Failed(format!(
                                        "statement {}: column {:?}: {m}",
                                        i + 1,
                                        column.name()
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
        } else {
            let done = query.execute(client).await.map_err(at)?;
            outcome.rows_affected = done.total();
        }
        sets.push(outcome.into_result_set());
    }
    Ok(sets)
}

/// Whether the statement's first keyword is SELECT or WITH.
fn is_query(sql: &str) -> bool {
    let mut rest = sql.trim_start();
    // Skip leading comments.
    loop {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r
                .split_once('\n')
                .map_or("", |(_, after)| after)
                .trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r
                .split_once("*/")
                .map_or("", |(_, after)| after)
                .trim_start();
        } else {
            break;
        }
    }
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    word == "SELECT" || word == "WITH"
}

fn describe_error(e: &tiberius::error::Error) -> String {
    match e {
        tiberius::error::Error::Server(token) => {
            format!("{} (code {})", token.message(), token.code())
        }
        other => other.to_string(),
    }
}

fn tds_error(e: tiberius::error::Error) -> CapabilityError {
    CapabilityError::Failed(describe_error(&e))
}

/// The value of the first of `keys` in an ADO-style connection string.
fn ado_value(ado: &str, keys: &[&str]) -> Option<String> {
    ado.split(';').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        let k = k.trim().to_ascii_lowercase();
        keys.contains(&k.as_str()).then(|| v.trim().to_string())
    })
}

fn bind<'a>(q: &mut Query<'a>, v: &SqlValue) -> Result<(), String> {
    match v {
        SqlValue::Null => q.bind(None::<&str>),
        SqlValue::Boolean(b) => q.bind(*b),
        SqlValue::Int(i) => q.bind(*i),
        SqlValue::Float(f) => q.bind(*f),
        SqlValue::Decimal(d) => {
            let d = value::decimal(d)?;
            let (digits, scale) = d.as_bigint_and_exponent();
            let scale = u8::try_from(scale.max(0))
                .map_err(|_| "the decimal has too many digits after the point")?;
            let digits = i128::try_from(digits)
                .map_err(|_| "the decimal has too many digits for SQL Server (38 at most)")?;
            let digits = if scale == 0 {
                // A negative exponent means trailing zeros before the point.
                let exp = u32::try_from(-d.as_bigint_and_exponent().1).unwrap_or(0);
                digits
                    .checked_mul(10i128.pow(exp))
                    .ok_or("the decimal has too many digits for SQL Server")?
            } else {
                digits
            };
            q.bind(tiberius::numeric::Numeric::new_with_scale(digits, scale))
        }
        SqlValue::Text(s) => q.bind(s.clone()),
        SqlValue::Bytes(b) => q.bind(b.clone()),
        SqlValue::Date(s) => q.bind(value::date(s)?),
        SqlValue::Time(s) => q.bind(value::time(s)?),
        SqlValue::Datetime(s) => q.bind(value::datetime(s)?),
        SqlValue::Timestamp(s) => q.bind(value::timestamp(s)?),
        SqlValue::Uuid(s) => q.bind(value::uuid(s)?),
        SqlValue::Json(s) => q.bind(value::json(s)?.to_string()),
    }
    Ok(())
}

fn decode(data: &ColumnData<'static>) -> Result<SqlValue, String> {
    let null = || SqlValue::Null;
    let err = |e: tiberius::error::Error| e.to_string();
    Ok(match data {
        ColumnData::U8(v) => v.map_or_else(null, |v| SqlValue::Int(v.into())),
        ColumnData::I16(v) => v.map_or_else(null, |v| SqlValue::Int(v.into())),
        ColumnData::I32(v) => v.map_or_else(null, |v| SqlValue::Int(v.into())),
        ColumnData::I64(v) => v.map_or_else(null, SqlValue::Int),
        ColumnData::F32(v) => v.map_or_else(null, |v| SqlValue::Float(v.into())),
        ColumnData::F64(v) => v.map_or_else(null, SqlValue::Float),
        ColumnData::Bit(v) => v.map_or_else(null, SqlValue::Boolean),
        ColumnData::String(v) => v
            .as_ref()
            .map_or_else(null, |s| SqlValue::Text(s.to_string())),
        ColumnData::Guid(v) => v.map_or_else(null, |u| SqlValue::Uuid(u.hyphenated().to_string())),
        ColumnData::Binary(v) => v
            .as_ref()
            .map_or_else(null, |b| SqlValue::Bytes(b.to_vec())),
        ColumnData::Numeric(v) => v.map_or_else(null, |n| SqlValue::Decimal(n.to_string())),
        ColumnData::Xml(v) => v
            .as_ref()
            .map_or_else(null, |x| SqlValue::Text(x.to_string())),
        ColumnData::DateTime(_) | ColumnData::SmallDateTime(_) | ColumnData::DateTime2(_) => {
            chrono::NaiveDateTime::from_sql(data)
                .map_err(err)?
                .map_or_else(null, |t| SqlValue::Datetime(value::datetime_text(&t)))
        }
        ColumnData::Time(_) => chrono::NaiveTime::from_sql(data)
            .map_err(err)?
            .map_or_else(null, |t| SqlValue::Time(t.to_string())),
        ColumnData::Date(_) => chrono::NaiveDate::from_sql(data)
            .map_err(err)?
            .map_or_else(null, |d| SqlValue::Date(d.to_string())),
        ColumnData::DateTimeOffset(_) => chrono::DateTime::<chrono::Utc>::from_sql(data)
            .map_err(err)?
            .map_or_else(null, |t| SqlValue::Timestamp(value::timestamp_text(&t))),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn queries_are_told_from_commands() {
        assert!(is_query("  select 1"));
        assert!(is_query("-- c\nWITH x AS (SELECT 1) SELECT * FROM x"));
        assert!(is_query("/* x */ SELECT 1"));
        assert!(!is_query("INSERT INTO t VALUES (1)"));
        assert!(!is_query("WAITFOR DELAY '00:00:05'"));
        assert_eq!(
            ado_value("server=tcp:h,1433;User Id=sa;x=y", &["user id", "user"]),
            Some("sa".into())
        );
    }
}
