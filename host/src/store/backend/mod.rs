//! The store's queries, written once and compiled once per database: this
//! module is included by `store/sqlite.rs` and by `store/postgres.rs`, each
//! of which names its database's types (`Db`, `Pool`, `Conn`, `DbRow`) and
//! its [`Dialect`] before including it. So every query exists once in the
//! source, is checked by the compiler against each database's concrete
//! sqlx types (no generic trait bounds, no runtime `Any` conversion), and
//! the few places where the two databases differ branch on `DIALECT`.

use super::{Conn, DIALECT, Db, DbRow, Pool};
use crate::store::*;
use sqlx::Row;
use std::collections::{HashMap, HashSet};

mod audit;
mod checkpoint;
mod cluster;
mod control;
mod executions;
mod jobs;
pub(super) mod json_insert;
mod tokens;
mod writer;

/// The store over one database; `crate::store::Store` dispatches to it.
#[derive(Debug, Clone)]
pub(crate) struct Backend {
    pool: Pool,
    /// Group commit for the execution hot path (`writer.rs`).
    writer: writer::Writer,
    /// The node this handle writes for (shared with the writer).
    node: std::sync::Arc<NodeCell>,
    /// Taken by a batch of fires once its statements are built, before its
    /// transaction: the scheduler stores a burst's next chunk while the
    /// chunk before is still being written, and that one waits here, not
    /// in SQLite's busy handler (which sleeps for up to 100 ms at a time).
    /// Holds when the last batch ended (for the checkpointer) and, on
    /// SQLite, the connection the batches are written with.
    fires_turn: std::sync::Arc<tokio::sync::Mutex<FiresTurn>>,
    /// Whether batches of fires keep a connection of their own (an SQLite
    /// file).
    own_fires_connection: bool,
}

/// What the turn to write a batch of fires holds.
#[derive(Debug, Default)]
struct FiresTurn {
    /// When the last batch ended.
    last_ended: Option<std::time::Instant>,
    /// An SQLite file: one connection, out of the pool, for every batch. A
    /// connection's page cache is dropped whenever another connection has
    /// written since its last transaction; from the pool, each chunk of a
    /// burst would mostly get another connection than the chunk before and
    /// read its index pages again.
    conn: Option<Conn>,
}

impl FiresTurn {
    /// Whether the last batch ended less than `period` ago.
    fn ended_within(&self, period: std::time::Duration) -> bool {
        self.last_ended
            .is_some_and(|ended| ended.elapsed() < period)
    }
}

/// Now on the database's clock, in microseconds since the Unix epoch, as
/// an SQL expression. Leases and heartbeats are stamped and compared with
/// it, never with a node's clock: nodes sharing a database agree on one
/// time whatever their own clocks say (PostgreSQL: the transaction's
/// start; SQLite, embedded, the machine's clock at the statement).
const DB_NOW_US: &str = match DIALECT {
    Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
    Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM now()) * 1000000 AS BIGINT)",
};

type DbQuery<'q> = sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>>;

const SCHEDULE_COLUMNS: &str = "id, job_id, cron, timezone, enabled, start_at_us, end_at_us, \
     misfire_window_s, misfire_policy, overlap_policy, dst_gap, dst_overlap, jitter_s, priority, \
     cursor_us, created_at_us, updated_at_us";

impl Backend {
    /// Begins a transaction that reads and then writes. On SQLite it takes
    /// the write lock at once (`BEGIN IMMEDIATE`): a deferred transaction
    /// that read first cannot take it later once another connection has
    /// written meanwhile (`SQLITE_BUSY_SNAPSHOT`, which no wait cures).
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Db>, sqlx::Error> {
        match DIALECT {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        }
    }

    /// The store over `pool`, its schema brought up to date. `sqlite_file`
    /// for an SQLite database file (opened with `wal_autocheckpoint = 0`):
    /// a task checkpoints its WAL, and batches of fires are written with a
    /// connection of their own (see [`FiresTurn`]). Not for an in-memory
    /// database, which lives in its one connection.
    pub(crate) async fn from_pool(pool: Pool, sqlite_file: bool) -> Result<Self, StoreError> {
        crate::store::migrator(DIALECT).await?.run(&pool).await?;
        let node = std::sync::Arc::new(NodeCell::default());
        let writer = writer::Writer::spawn(pool.clone(), std::sync::Arc::clone(&node));
        let fires_turn = std::sync::Arc::default();
        if sqlite_file {
            let turn = std::sync::Arc::downgrade(&fires_turn);
            tokio::spawn(checkpoint::run(pool.clone(), turn, checkpoint::EVERY));
        }
        Ok(Self {
            pool,
            writer,
            node,
            fires_turn,
            own_fires_connection: sqlite_file,
        })
    }

    pub(crate) fn node_cell(&self) -> &NodeCell {
        &self.node
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn probe_write(&self) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO store_probe (id, at_us) VALUES (1, {DB_NOW_US}) \
             ON CONFLICT (id) DO UPDATE SET at_us = excluded.at_us"
        ))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn insert_schedule(&self, s: &ScheduleRow) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_schedule_on(&mut conn, s).await
    }

    pub async fn insert_schedules(&self, schedules: &[ScheduleRow]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for s in schedules {
            insert_schedule_on(&mut tx, s).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn update_schedule(&self, s: &ScheduleRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE schedules SET job_id = $2, cron = $3, timezone = $4, enabled = $5, \
             start_at_us = $6, end_at_us = $7, misfire_window_s = $8, misfire_policy = $9, \
             overlap_policy = $10, dst_gap = $11, dst_overlap = $12, jitter_s = $13, \
             priority = $14, updated_at_us = $15 WHERE id = $1",
        );
        let done = bind_definition(query, s)
            .bind(s.updated_at_us)
            .execute(&self.pool)
            .await?;
        not_found_if_none(done.rows_affected(), "schedule", &s.id)
    }

    pub async fn set_schedule_enabled(
        &self,
        id: &str,
        enabled: bool,
        now_us: i64,
    ) -> Result<(), StoreError> {
        let done =
            sqlx::query("UPDATE schedules SET enabled = $2, updated_at_us = $3 WHERE id = $1")
                .bind(id)
                .bind(enabled)
                .bind(now_us)
                .execute(&self.pool)
                .await?;
        not_found_if_none(done.rows_affected(), "schedule", id)
    }

    pub async fn advance_cursor(&self, id: &str, cursor_us: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE schedules SET cursor_us = $2 WHERE id = $1 AND (cursor_us IS NULL OR cursor_us < $2)",
        )
        .bind(id)
        .bind(cursor_us)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn advance_cursors(&self, cursors: &[(String, i64)]) -> Result<(), StoreError> {
        if cursors.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let cursors: Vec<(&str, i64)> = cursors.iter().map(|(id, c)| (id.as_str(), *c)).collect();
        advance_cursors_on(&mut tx, &cursors).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_schedule(&self, id: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM schedules WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        not_found_if_none(done.rows_affected(), "schedule", id)
    }

    pub async fn get_schedule(&self, id: &str) -> Result<Option<ScheduleRow>, StoreError> {
        let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| schedule_from_row(&r)).transpose()
    }

    pub async fn schedule_fingerprint(&self) -> Result<(i64, i64, i64), StoreError> {
        // The sum (of residues, so it cannot overflow) moves on any change
        // of any row's `updated_at_us`, also one written by a node whose
        // clock is behind (which the maximum would miss).
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, CAST(COALESCE(MAX(updated_at_us), 0) AS BIGINT) AS latest, \
             CAST(COALESCE(SUM(updated_at_us % 1000003), 0) AS BIGINT) AS mix FROM schedules",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((
            row.try_get("n")?,
            row.try_get("latest")?,
            row.try_get("mix")?,
        ))
    }

    pub async fn schedule_versions(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT id, updated_at_us FROM schedules")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("updated_at_us")?)))
            .collect()
    }

    pub async fn list_schedule_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM schedules")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(StoreError::from))
            .collect()
    }

    pub async fn list_schedules(
        &self,
        job_id: Option<&str>,
    ) -> Result<Vec<ScheduleRow>, StoreError> {
        let rows = match job_id {
            Some(job) => {
                let sql = format!(
                    "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE job_id = $1 ORDER BY id"
                );
                sqlx::query(&sql).bind(job).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY id");
                sqlx::query(&sql).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(schedule_from_row).collect()
    }

    pub async fn list_schedules_page(
        &self,
        job_id: Option<&str>,
        after_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ScheduleRow>, StoreError> {
        let sql = format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules \
             WHERE ($1 IS NULL OR job_id = $1) AND ($2 IS NULL OR id > $2) \
             ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(job_id)
            .bind(after_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    pub async fn record_fires(&self, fires: &[FireRow]) -> Result<Vec<bool>, StoreError> {
        self.record_fires_and_executions(fires, &[]).await
    }

    pub async fn record_fires_with_executions(
        &self,
        fires: &[FireRow],
        executions: &[NewExecution],
    ) -> Result<Vec<bool>, StoreError> {
        self.record_fires_and_executions(fires, executions).await
    }

    /// [`Store::record_fires`], then the executions of the new fires.
    async fn record_fires_and_executions(
        &self,
        fires: &[FireRow],
        executions: &[NewExecution],
    ) -> Result<Vec<bool>, StoreError> {
        if fires.is_empty() {
            return Ok(Vec::new());
        }
        // One statement per table, each reading every row from one bound
        // JSON array, built before this batch's turn (while the batch
        // before may still be writing).
        let node = self.node.get();
        let all: Vec<&NewExecution> = executions.iter().collect();
        let fires_statement = fires_json(fires, false)?;
        let executions_statement = if all.is_empty() {
            None
        } else {
            Some(executions::executions_json(&all, &node)?)
        };
        let mut turn = self.fires_turn.lock().await;
        let mut conn = match turn.conn.take() {
            Some(conn) => BatchConn::Own(conn),
            None if self.own_fires_connection => {
                BatchConn::Own(self.pool.acquire().await?.detach())
            }
            None => BatchConn::Pooled(self.pool.acquire().await?),
        };
        let inserted = record_on(
            conn.as_mut(),
            fires,
            &all,
            &node,
            fires_statement,
            executions_statement,
        )
        .await?;
        turn.last_ended = Some(std::time::Instant::now());
        if let BatchConn::Own(conn) = conn {
            turn.conn = Some(conn);
        }
        Ok(inserted)
    }

    pub async fn list_fires(
        &self,
        schedule_id: &str,
        limit: i64,
    ) -> Result<Vec<FireRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT schedule_id, nominal_local, utc_offset_s, fire_at_us, origin, outcome, run_id, \
             created_at_us FROM fires WHERE schedule_id = $1 ORDER BY fire_at_us DESC LIMIT $2",
        )
        .bind(schedule_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FireRow {
                    schedule_id: r.try_get("schedule_id")?,
                    nominal_local: r.try_get("nominal_local")?,
                    utc_offset_s: r.try_get("utc_offset_s")?,
                    fire_at_us: r.try_get("fire_at_us")?,
                    origin: r.try_get("origin")?,
                    outcome: r.try_get("outcome")?,
                    run_id: r.try_get("run_id")?,
                    created_at_us: r.try_get("created_at_us")?,
                })
            })
            .collect()
    }
}

/// The transaction of [`Backend::record_fires_with_executions`], on
/// `conn`, with the statements built beforehand.
async fn record_on(
    conn: &mut Conn,
    fires: &[FireRow],
    executions: &[&NewExecution],
    node: &NodeLease,
    fires_statement: json_insert::JsonStatement<'_>,
    executions_statement: Option<json_insert::JsonStatement<'_>>,
) -> Result<Vec<bool>, StoreError> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    let mut inserted = Vec::with_capacity(fires.len());
    // Usually every fire is new: try that first, under one savepoint.
    let mut all_new = sqlx::Connection::begin(&mut *tx).await?;
    let done = fires_statement.query().execute(&mut *all_new).await?;
    if usize::try_from(done.rows_affected()).is_ok_and(|n| n == fires.len()) {
        all_new.commit().await?;
        inserted.resize(fires.len(), true);
    } else {
        // Some were stored already (by another node, or before a
        // restart): the same insert again, returning the identities it
        // stores. A fire whose identity comes twice in the batch is new
        // the first time only.
        all_new.rollback().await?;
        let statement = fires_json(fires, true)?;
        let rows = statement.query().fetch_all(&mut *tx).await?;
        let mut new = HashSet::with_capacity(rows.len());
        for row in &rows {
            let key: (String, String, i32) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            new.insert(key);
        }
        for f in fires {
            let key = (
                f.schedule_id.clone(),
                f.nominal_local.clone(),
                f.utc_offset_s,
            );
            inserted.push(new.remove(&key));
        }
    }
    // The executions of the new fires.
    if !executions.is_empty() {
        let accepted: HashSet<&str> = fires
            .iter()
            .zip(&inserted)
            .filter(|(_, new)| **new)
            .filter_map(|(f, _)| f.run_id.as_deref())
            .collect();
        let queued: Vec<&NewExecution> = executions
            .iter()
            .copied()
            .filter(|e| accepted.contains(e.id.as_str()))
            .collect();
        match executions_statement {
            // Every execution's fire was new: the statement built for all.
            Some(statement) if queued.len() == executions.len() => {
                executions::run_insert(&mut tx, statement.query(), executions).await?;
            }
            _ => executions::insert_executions_on(&mut tx, &queued, node).await?,
        }
    }
    tx.commit().await?;
    Ok(inserted)
}

/// A connection of the pool, or one of the store's own.
enum BatchConn {
    Pooled(sqlx::pool::PoolConnection<Db>),
    Own(Conn),
}

impl BatchConn {
    fn as_mut(&mut self) -> &mut Conn {
        match self {
            BatchConn::Pooled(conn) => conn,
            BatchConn::Own(conn) => conn,
        }
    }
}

async fn insert_schedule_on(conn: &mut Conn, s: &ScheduleRow) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
    );
    let result = bind_definition(sqlx::query(&sql), s)
        .bind(s.cursor_us)
        .bind(s.created_at_us)
        .bind(s.updated_at_us)
        .execute(conn)
        .await;
    match result {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict {
            what: "schedule",
            id: s.id.clone(),
        }),
        other => other.map(|_| ()).map_err(Into::into),
    }
}

/// Schedules per multi-row cursor update.
const CURSORS_PER_UPDATE: usize = 200;

/// A value bound to a multi-row statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Value<'q> {
    Text(&'q str),
    Int(i64),
}

/// The `VALUES` list of a multi-row statement, each distinct value bound
/// once and referred to by its `$N` wherever it recurs.
///
/// Why: sqlx binds SQLite parameters by name, and SQLite finds a
/// parameter's name by a linear search, so binding a statement costs the
/// square of its distinct parameters. The cursors of a burst (its one
/// use now) mostly share one instant; interned, a schedule costs about one
/// parameter (its id) instead of two.
struct Values<'q> {
    sql: String,
    values: Vec<Value<'q>>,
    index: HashMap<Value<'q>, usize>,
    rows: usize,
}

impl<'q> Values<'q> {
    /// Starts the statement with `head`, which ends before its first tuple.
    fn new(head: &str) -> Self {
        Values {
            sql: head.to_owned(),
            values: Vec::new(),
            index: HashMap::new(),
            rows: 0,
        }
    }

    /// Appends one `(…)` tuple; `None` is written as `NULL`.
    fn row(&mut self, row: &[Option<Value<'q>>]) {
        use std::fmt::Write;
        self.sql.push_str(if self.rows == 0 { "(" } else { ", (" });
        self.rows += 1;
        for (col, value) in row.iter().enumerate() {
            if col > 0 {
                self.sql.push_str(", ");
            }
            let Some(value) = *value else {
                self.sql.push_str("NULL");
                continue;
            };
            let n = *self.index.entry(value).or_insert_with(|| {
                self.values.push(value);
                self.values.len()
            });
            let _ = write!(self.sql, "${n}");
        }
        self.sql.push(')');
    }

    /// The statement's text, `tail` appended, and its values.
    fn finish(mut self, tail: &str) -> Statement<'q> {
        self.sql.push_str(tail);
        Statement {
            sql: self.sql,
            values: self.values,
        }
    }
}

/// A multi-row statement built by [`Values`].
struct Statement<'q> {
    sql: String,
    values: Vec<Value<'q>>,
}

impl Statement<'_> {
    /// The query with its values bound. Not kept prepared: its text
    /// changes with the pattern of the values.
    fn query(&self) -> DbQuery<'_> {
        let mut query = sqlx::query(&self.sql).persistent(false);
        for value in &self.values {
            query = match *value {
                Value::Text(text) => query.bind(text),
                Value::Int(int) => query.bind(int),
            };
        }
        query
    }
}

/// Every fire of a batch in one statement over one JSON array, skipping
/// identities already stored; with `returning`, the statement returns the
/// identities it stored. (`WHERE true` keeps SQLite from reading `ON
/// CONFLICT` as a join constraint.)
fn fires_json(
    fires: &[FireRow],
    returning: bool,
) -> Result<json_insert::JsonStatement<'_>, StoreError> {
    use json_insert::Cell;
    let mut rows = json_insert::JsonInsert::new(8, fires.len());
    for f in fires {
        rows.row::<8>([
            Cell::from(f.schedule_id.as_str()),
            Cell::from(f.nominal_local.as_str()),
            Cell::from(f.utc_offset_s),
            Cell::from(f.fire_at_us),
            Cell::from(f.origin.as_str()),
            Cell::from(f.outcome.as_str()),
            Cell::from(f.run_id.as_deref()),
            Cell::from(f.created_at_us),
        ]);
    }
    let tail = "WHERE true ON CONFLICT (schedule_id, nominal_local, utc_offset_s) DO NOTHING";
    rows.finish(
        "INSERT INTO fires (schedule_id, nominal_local, utc_offset_s, fire_at_us, origin, \
         outcome, run_id, created_at_us)",
        &if returning {
            format!("{tail} RETURNING schedule_id, nominal_local, utc_offset_s")
        } else {
            tail.to_owned()
        },
        false,
    )
}

/// Moves each schedule's cursor forward to its value (never back), with
/// multi-row `UPDATE … FROM (VALUES …)`: SQLite ≥ 3.33 and PostgreSQL both
/// name the columns of a `VALUES` list `column1`, `column2`. Ids must be
/// distinct.
async fn advance_cursors_on(conn: &mut Conn, cursors: &[(&str, i64)]) -> Result<(), StoreError> {
    for chunk in cursors.chunks(CURSORS_PER_UPDATE) {
        let mut values = Values::new("UPDATE schedules SET cursor_us = v.column2 FROM (VALUES ");
        for (id, cursor_us) in chunk {
            values.row(&[Some(Value::Text(id)), Some(Value::Int(*cursor_us))]);
        }
        let statement = values.finish(
            ") AS v WHERE schedules.id = v.column1 \
             AND (schedules.cursor_us IS NULL OR schedules.cursor_us < v.column2)",
        );
        statement.query().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Binds `$1`..`$14`: the id and the definition columns, in the order of
/// `SCHEDULE_COLUMNS`, shared by insert and update.
fn bind_definition<'q>(query: DbQuery<'q>, s: &'q ScheduleRow) -> DbQuery<'q> {
    query
        .bind(&s.id)
        .bind(&s.job_id)
        .bind(&s.cron)
        .bind(&s.timezone)
        .bind(s.enabled)
        .bind(s.start_at_us)
        .bind(s.end_at_us)
        .bind(s.misfire_window_s)
        .bind(&s.misfire_policy)
        .bind(&s.overlap_policy)
        .bind(&s.dst_gap)
        .bind(&s.dst_overlap)
        .bind(s.jitter_s)
        .bind(s.priority)
}

fn not_found_if_none(affected: u64, what: &'static str, id: &str) -> Result<(), StoreError> {
    if affected == 0 {
        Err(StoreError::NotFound {
            what,
            id: id.to_string(),
        })
    } else {
        Ok(())
    }
}

fn schedule_from_row(r: &DbRow) -> Result<ScheduleRow, StoreError> {
    Ok(ScheduleRow {
        id: r.try_get("id")?,
        job_id: r.try_get("job_id")?,
        cron: r.try_get("cron")?,
        timezone: r.try_get("timezone")?,
        enabled: r.try_get("enabled")?,
        start_at_us: r.try_get("start_at_us")?,
        end_at_us: r.try_get("end_at_us")?,
        misfire_window_s: r.try_get("misfire_window_s")?,
        misfire_policy: r.try_get("misfire_policy")?,
        overlap_policy: r.try_get("overlap_policy")?,
        dst_gap: r.try_get("dst_gap")?,
        dst_overlap: r.try_get("dst_overlap")?,
        jitter_s: r.try_get("jitter_s")?,
        priority: r.try_get("priority")?,
        cursor_us: r.try_get("cursor_us")?,
        created_at_us: r.try_get("created_at_us")?,
        updated_at_us: r.try_get("updated_at_us")?,
    })
}
