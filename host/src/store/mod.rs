//! Persistence: the embedded SQLite store (the default) with a schema that
//! also runs on PostgreSQL.
//!
//! Migrations live in `host/migrations/` and are embedded in the binary.
//! The SQL is portable: `$N` placeholders (sqlx accepts them on SQLite),
//! instants as BIGINT microseconds since the epoch, local date-times as ISO
//! 8601 text. Rows are plain structs of primitive fields; `model` converts
//! them to and from the typed domain values, so the store never interprets
//! a policy or a zone.

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

mod audit;
mod executions;
mod jobs;
mod tokens;

pub use audit::*;
pub use executions::*;
pub use jobs::*;
pub use tokens::*;

mod control;
mod writer;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A store failure. The message is for logs; API clients get a generic
/// problem document.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{what} {id:?} does not exist")]
    NotFound { what: &'static str, id: String },
    #[error("{what} {id:?} already exists")]
    Conflict { what: &'static str, id: String },
}

/// A stored schedule, field for field as in the `schedules` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRow {
    pub id: String,
    pub job_id: String,
    pub cron: String,
    pub timezone: String,
    pub enabled: bool,
    pub start_at_us: Option<i64>,
    pub end_at_us: Option<i64>,
    pub misfire_window_s: i64,
    pub misfire_policy: String,
    pub overlap_policy: String,
    pub dst_gap: String,
    pub dst_overlap: String,
    pub jitter_s: i64,
    pub priority: i32,
    pub cursor_us: Option<i64>,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

/// A fire's identity and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FireRow {
    pub schedule_id: String,
    /// Nominal local date-time, `YYYY-MM-DDTHH:MM:SS`.
    pub nominal_local: String,
    pub utc_offset_s: i32,
    pub fire_at_us: i64,
    /// `scheduled`, `catch_up` or `backfill`.
    pub origin: String,
    /// `enqueued` or `skipped`.
    pub outcome: String,
    pub run_id: Option<String>,
    pub created_at_us: i64,
}

/// The store handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// Group commit for the execution hot path (`writer.rs`).
    writer: writer::Writer,
}

const SCHEDULE_COLUMNS: &str = "id, job_id, cron, timezone, enabled, start_at_us, end_at_us, \
     misfire_window_s, misfire_policy, overlap_policy, dst_gap, dst_overlap, jitter_s, priority, \
     cursor_us, created_at_us, updated_at_us";

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and brings
    /// its schema up to date.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // A file database cannot drop its connection; the default ping
            // before each acquire is one more round trip to SQLite's
            // thread per query.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Self::with_pool(pool).await
    }

    /// A private in-memory database (tests, `meridian run`).
    pub async fn open_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        // One connection: every connection to :memory: is its own database,
        // so it must never be closed: the pool's default idle timeout (10
        // minutes) and maximum lifetime (30 minutes) would drop the data.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::with_pool(pool).await
    }

    async fn with_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        MIGRATOR.run(&pool).await?;
        let writer = writer::Writer::spawn(pool.clone());
        Ok(Self { pool, writer })
    }

    /// Checks that the database answers (for health checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn insert_schedule(&self, s: &ScheduleRow) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_schedule_on(&mut conn, s).await
    }

    /// Inserts many schedules in one transaction: all of them, or none
    /// when one fails (an id already stored is a [`StoreError::Conflict`]).
    pub async fn insert_schedules(&self, schedules: &[ScheduleRow]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for s in schedules {
            insert_schedule_on(&mut tx, s).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a schedule's definition, keeping its creation time and
    /// cursor.
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

    /// Moves a schedule's cursor forward (never back).
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

    /// Moves several schedules' cursors forward (never back) in one
    /// transaction: the scheduler's start-up, past fires it will not run.
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

    /// The ids of every stored schedule.
    pub async fn list_schedule_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM schedules")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(StoreError::from))
            .collect()
    }

    /// Every schedule, or a job's schedules, in id order.
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

    /// One page of schedules in id order: every schedule or a job's, with
    /// an id after `after_id` (keyset cursor: the last id of the previous
    /// page), at most `limit` of them.
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

    /// Records fires in one transaction and moves each schedule's cursor to
    /// its latest fire. Returns, per fire, whether it was new: a fire whose
    /// identity is already stored was handled before (by this node before a
    /// restart, or by another node) and must not run again.
    ///
    /// A burst of fires costs a few statements, not two per fire: the fires
    /// go in with multi-row inserts of [`FIRES_PER_INSERT`] rows, under a
    /// savepoint. When every insert stores all its rows (the usual case),
    /// every fire was new. Otherwise that is rolled back, and each chunk is
    /// tried again under its own savepoint; a chunk that still stores fewer
    /// rows than it has is rolled back and inserted row by row, to learn
    /// which fires were new. The cursors move with multi-row updates, once
    /// per schedule.
    pub async fn record_fires(&self, fires: &[FireRow]) -> Result<Vec<bool>, StoreError> {
        self.record_fires_and_executions(fires, &[]).await
    }

    /// Records fires exactly as [`Store::record_fires`] does and, in the
    /// same transaction, queues the execution of each new fire: every
    /// execution whose `id` is the `run_id` of a fire that was new. The
    /// others (their fire was handled before) are not stored. A fire and
    /// its execution are stored together or not at all.
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
        let mut tx = self.pool.begin().await?;
        let mut inserted = Vec::with_capacity(fires.len());
        // Usually every fire is new: try that first, under one savepoint.
        let mut all_new = sqlx::Connection::begin(&mut *tx).await?;
        let mut fast = true;
        for chunk in fires.chunks(FIRES_PER_INSERT) {
            let done = insert_fires(chunk).query().execute(&mut *all_new).await?;
            if !usize::try_from(done.rows_affected()).is_ok_and(|n| n == chunk.len()) {
                fast = false;
                break;
            }
        }
        if fast {
            all_new.commit().await?;
            inserted.resize(fires.len(), true);
        } else {
            all_new.rollback().await?;
        }
        // Some were stored already: find out which, chunk by chunk.
        for chunk in fires.chunks(FIRES_PER_INSERT).filter(|_| !fast) {
            let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
            let done = insert_fires(chunk).query().execute(&mut *savepoint).await?;
            if usize::try_from(done.rows_affected()).is_ok_and(|n| n == chunk.len()) {
                savepoint.commit().await?;
                inserted.extend(std::iter::repeat_n(true, chunk.len()));
                continue;
            }
            savepoint.rollback().await?;
            for f in chunk {
                let done = insert_fires(std::slice::from_ref(f))
                    .query()
                    .execute(&mut *tx)
                    .await?;
                inserted.push(done.rows_affected() == 1);
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
                .filter(|e| accepted.contains(e.id.as_str()))
                .collect();
            executions::insert_executions_on(&mut tx, &queued).await?;
        }
        // Each schedule's latest fire, backfills aside, in first-seen order.
        let mut latest: Vec<(&str, i64)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for f in fires.iter().filter(|f| f.origin != "backfill") {
            match index.get(f.schedule_id.as_str()) {
                Some(&i) => latest[i].1 = latest[i].1.max(f.fire_at_us),
                None => {
                    index.insert(&f.schedule_id, latest.len());
                    latest.push((&f.schedule_id, f.fire_at_us));
                }
            }
        }
        advance_cursors_on(&mut tx, &latest).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    /// A schedule's fires, newest first.
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

async fn insert_schedule_on(
    conn: &mut sqlx::SqliteConnection,
    s: &ScheduleRow,
) -> Result<(), StoreError> {
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

/// Rows per multi-row insert of fires. See [`Values`] for why a statement
/// stays small: its binding costs grow with the square of its parameters.
const FIRES_PER_INSERT: usize = 100;

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
/// square of its distinct parameters. The fires of one batch share their
/// instant, origin, outcome and creation time, and their nominal times and
/// offsets take a few values only; interned, a fire costs about two
/// parameters (schedule and run ids) instead of eight.
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
    fn query(&self) -> SqliteQuery<'_> {
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

/// One `INSERT INTO fires` of `fires` that skips identities already
/// stored.
fn insert_fires(fires: &[FireRow]) -> Statement<'_> {
    let mut values = Values::new(
        "INSERT INTO fires (schedule_id, nominal_local, utc_offset_s, fire_at_us, origin, \
         outcome, run_id, created_at_us) VALUES ",
    );
    for f in fires {
        values.row(&[
            Some(Value::Text(&f.schedule_id)),
            Some(Value::Text(&f.nominal_local)),
            Some(Value::Int(i64::from(f.utc_offset_s))),
            Some(Value::Int(f.fire_at_us)),
            Some(Value::Text(&f.origin)),
            Some(Value::Text(&f.outcome)),
            f.run_id.as_deref().map(Value::Text),
            Some(Value::Int(f.created_at_us)),
        ]);
    }
    values.finish(" ON CONFLICT (schedule_id, nominal_local, utc_offset_s) DO NOTHING")
}

/// Moves each schedule's cursor forward to its value (never back), with
/// multi-row `UPDATE … FROM (VALUES …)`: SQLite ≥ 3.33 and PostgreSQL both
/// name the columns of a `VALUES` list `column1`, `column2`. Ids must be
/// distinct.
async fn advance_cursors_on(
    conn: &mut sqlx::SqliteConnection,
    cursors: &[(&str, i64)],
) -> Result<(), StoreError> {
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

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds `$1`..`$14`: the id and the definition columns, in the order of
/// `SCHEDULE_COLUMNS`, shared by insert and update.
fn bind_definition<'q>(query: SqliteQuery<'q>, s: &'q ScheduleRow) -> SqliteQuery<'q> {
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

fn schedule_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<ScheduleRow, StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(id: &str) -> ScheduleRow {
        ScheduleRow {
            id: id.into(),
            job_id: "job".into(),
            cron: "30 2 * * *".into(),
            timezone: "Europe/Berlin".into(),
            enabled: true,
            start_at_us: None,
            end_at_us: None,
            misfire_window_s: 3600,
            misfire_policy: "latest".into(),
            overlap_policy: "skip".into(),
            dst_gap: "shift".into(),
            dst_overlap: "first".into(),
            jitter_s: 0,
            priority: 0,
            cursor_us: None,
            created_at_us: 1,
            updated_at_us: 1,
        }
    }

    fn fire(nominal: &str, offset: i32, at: i64) -> FireRow {
        FireRow {
            schedule_id: "s1".into(),
            nominal_local: nominal.into(),
            utc_offset_s: offset,
            fire_at_us: at,
            origin: "scheduled".into(),
            outcome: "enqueued".into(),
            run_id: None,
            created_at_us: at,
        }
    }

    #[tokio::test]
    async fn schedules_round_trip() {
        let store = Store::open_memory().await.unwrap();
        let s = schedule("s1");
        store.insert_schedule(&s).await.unwrap();
        assert!(matches!(
            store.insert_schedule(&s).await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(store.get_schedule("s1").await.unwrap(), Some(s.clone()));
        store.set_schedule_enabled("s1", false, 5).await.unwrap();
        let got = store.get_schedule("s1").await.unwrap().unwrap();
        assert!(!got.enabled);
        assert_eq!(got.updated_at_us, 5);
        assert!(matches!(
            store.set_schedule_enabled("nope", false, 5).await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(store.list_schedules(Some("job")).await.unwrap().len(), 1);
        assert!(
            store
                .list_schedules(Some("other"))
                .await
                .unwrap()
                .is_empty()
        );
        store.delete_schedule("s1").await.unwrap();
        assert_eq!(store.get_schedule("s1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_fire_identity_is_recorded_once() {
        let store = Store::open_memory().await.unwrap();
        store.insert_schedule(&schedule("s1")).await.unwrap();
        // The repeated 01:30 of a fall-back night: same local time, two offsets.
        let first = fire("2026-11-01T01:30:00", -4 * 3600, 100);
        let second = fire("2026-11-01T01:30:00", -5 * 3600, 200);
        assert_eq!(
            store.record_fires(&[first.clone(), second]).await.unwrap(),
            [true, true]
        );
        assert_eq!(store.record_fires(&[first]).await.unwrap(), [false]);
        assert_eq!(
            store.get_schedule("s1").await.unwrap().unwrap().cursor_us,
            Some(200)
        );
        assert_eq!(store.list_fires("s1", 10).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_large_batch_tells_new_fires_from_stored_ones() {
        let store = Store::open_memory().await.unwrap();
        let schedules: Vec<_> = (0..3).map(|i| schedule(&format!("s{i}"))).collect();
        store.insert_schedules(&schedules).await.unwrap();
        assert!(matches!(
            store.insert_schedules(&schedules[..1]).await,
            Err(StoreError::Conflict { .. })
        ));
        // More than one multi-row insert, over three schedules.
        let fires: Vec<FireRow> = (0..2 * FIRES_PER_INSERT + 7)
            .map(|i| FireRow {
                schedule_id: format!("s{}", i % 3),
                ..fire(&format!("2026-01-01T00:00:{i:04}"), 0, i as i64)
            })
            .collect();
        // Some already stored, in the first chunk and in the last one.
        let stored = [3, 2 * FIRES_PER_INSERT + 5];
        let early: Vec<FireRow> = stored.iter().map(|&i| fires[i].clone()).collect();
        assert_eq!(store.record_fires(&early).await.unwrap(), [true, true]);
        let new = store.record_fires(&fires).await.unwrap();
        let expected: Vec<bool> = (0..fires.len()).map(|i| !stored.contains(&i)).collect();
        assert_eq!(new, expected);
        assert!(store.record_fires(&fires).await.unwrap().iter().all(|n| !n));
        for i in 0..3 {
            let latest = (0..fires.len()).filter(|j| j % 3 == i).max().unwrap();
            let got = store.get_schedule(&format!("s{i}")).await.unwrap().unwrap();
            assert_eq!(got.cursor_us, Some(latest as i64));
        }
        // Backfills never move the cursor, and cursors never move back.
        let before = store.get_schedule("s1").await.unwrap().unwrap().cursor_us;
        let backfill = FireRow {
            origin: "backfill".into(),
            ..fire("2030-01-01T00:00:00", 0, 1 << 50)
        };
        let old = fire("2025-01-01T00:00:00", 0, -5);
        assert_eq!(
            store.record_fires(&[backfill, old]).await.unwrap(),
            [true, true]
        );
        let after = store.get_schedule("s1").await.unwrap().unwrap().cursor_us;
        assert_eq!(after, before);
    }

    #[tokio::test]
    async fn the_file_store_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store").join("meridian.db");
        {
            let store = Store::open_sqlite(&path).await.unwrap();
            store.insert_schedule(&schedule("s1")).await.unwrap();
            store
                .record_fires(&[fire("2026-01-01T00:00:00", 0, 1)])
                .await
                .unwrap();
        }
        let store = Store::open_sqlite(&path).await.unwrap();
        assert!(store.get_schedule("s1").await.unwrap().is_some());
        assert_eq!(
            store
                .record_fires(&[fire("2026-01-01T00:00:00", 0, 1)])
                .await
                .unwrap(),
            [false]
        );
    }
}
