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
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

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
        Ok(Self { pool })
    }

    /// Checks that the database answers (for health checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn insert_schedule(&self, s: &ScheduleRow) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        );
        let result = bind_definition(sqlx::query(&sql), s)
            .bind(s.cursor_us)
            .bind(s.created_at_us)
            .bind(s.updated_at_us)
            .execute(&self.pool)
            .await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict {
                what: "schedule",
                id: s.id.clone(),
            }),
            other => other.map(|_| ()).map_err(Into::into),
        }
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
        for (id, cursor_us) in cursors {
            sqlx::query(
                "UPDATE schedules SET cursor_us = $2 WHERE id = $1 AND (cursor_us IS NULL OR cursor_us < $2)",
            )
            .bind(id)
            .bind(cursor_us)
            .execute(&mut *tx)
            .await?;
        }
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

    /// Records fires in one transaction and moves each schedule's cursor to
    /// its latest fire. Returns, per fire, whether it was new: a fire whose
    /// identity is already stored was handled before (by this node before a
    /// restart, or by another node) and must not run again.
    pub async fn record_fires(&self, fires: &[FireRow]) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut inserted = Vec::with_capacity(fires.len());
        for f in fires {
            let done = sqlx::query(
                "INSERT INTO fires (schedule_id, nominal_local, utc_offset_s, fire_at_us, origin, \
                 outcome, run_id, created_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (schedule_id, nominal_local, utc_offset_s) DO NOTHING",
            )
            .bind(&f.schedule_id)
            .bind(&f.nominal_local)
            .bind(f.utc_offset_s)
            .bind(f.fire_at_us)
            .bind(&f.origin)
            .bind(&f.outcome)
            .bind(&f.run_id)
            .bind(f.created_at_us)
            .execute(&mut *tx)
            .await?;
            inserted.push(done.rows_affected() == 1);
            if f.origin != "backfill" {
                sqlx::query(
                    "UPDATE schedules SET cursor_us = $2 WHERE id = $1 AND (cursor_us IS NULL OR cursor_us < $2)",
                )
                .bind(&f.schedule_id)
                .bind(f.fire_at_us)
                .execute(&mut *tx)
                .await?;
            }
        }
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
