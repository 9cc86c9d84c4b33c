//! Jobs and their version history.
//!
//! A job is an id and a numbered list of definitions (its JSON, kept as
//! put). Putting a different definition adds a version; deleting is soft,
//! so the history stays and putting the job again continues its numbering.

use super::{Store, StoreError, not_found_if_none};
use sqlx::Row;

/// One version of a job, field for field as in the `job_versions` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobVersionRow {
    /// The job's id.
    pub job_id: String,
    /// The version number, from 1.
    pub version: i64,
    /// The job's JSON, byte for byte as put.
    pub definition: String,
    /// When this version was put.
    pub created_at_us: i64,
}

const VERSION_COLUMNS: &str = "v.job_id, v.version, v.definition, v.created_at_us";

impl Store {
    /// Stores `definition` as the job's current version and returns its
    /// number: version 1 for a new job, the current version when
    /// `definition` is byte for byte the current one, the next version
    /// otherwise. A deleted job comes back (with the same version when the
    /// definition is unchanged), its numbering continued. One transaction.
    pub async fn put_job(
        &self,
        id: &str,
        definition: &str,
        now_us: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        // A write first: it takes SQLite's write lock (and PostgreSQL's row
        // lock) before the read, so two puts of one job cannot interleave.
        let current = sqlx::query(
            "UPDATE jobs SET current_version = current_version WHERE id = $1 \
             RETURNING current_version, deleted_at_us",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(current) = current else {
            sqlx::query(
                "INSERT INTO jobs (id, current_version, deleted_at_us, created_at_us, \
                 updated_at_us) VALUES ($1, 1, NULL, $2, $2)",
            )
            .bind(id)
            .bind(now_us)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_on_unique(e, id))?;
            insert_version(&mut tx, id, 1, definition, now_us).await?;
            tx.commit().await?;
            return Ok(1);
        };
        let version: i64 = current.try_get("current_version")?;
        let deleted_at_us: Option<i64> = current.try_get("deleted_at_us")?;
        let stored: Option<String> =
            sqlx::query("SELECT definition FROM job_versions WHERE job_id = $1 AND version = $2")
                .bind(id)
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get("definition"))
                .transpose()?;
        if stored.as_deref() == Some(definition) {
            if deleted_at_us.is_some() {
                sqlx::query(
                    "UPDATE jobs SET deleted_at_us = NULL, updated_at_us = $2 WHERE id = $1",
                )
                .bind(id)
                .bind(now_us)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            return Ok(version);
        }
        let next = version + 1;
        sqlx::query(
            "UPDATE jobs SET current_version = $2, deleted_at_us = NULL, updated_at_us = $3 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(next)
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
        insert_version(&mut tx, id, next, definition, now_us).await?;
        tx.commit().await?;
        Ok(next)
    }

    /// A job's current version; `None` when the job does not exist or is
    /// deleted.
    pub async fn get_job(&self, id: &str) -> Result<Option<JobVersionRow>, StoreError> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM jobs j JOIN job_versions v \
             ON v.job_id = j.id AND v.version = j.current_version \
             WHERE j.id = $1 AND j.deleted_at_us IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| version_from_row(&r)).transpose()
    }

    /// One version of a job, also of a deleted job (history).
    pub async fn get_job_version(
        &self,
        id: &str,
        version: i64,
    ) -> Result<Option<JobVersionRow>, StoreError> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM job_versions v WHERE v.job_id = $1 AND v.version = $2"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| version_from_row(&r)).transpose()
    }

    /// The current versions of live jobs in id order, at most `limit`,
    /// starting after `after_id` (keyset pagination: pass the last id of
    /// the previous page).
    pub async fn list_jobs(
        &self,
        after_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<JobVersionRow>, StoreError> {
        let from = "FROM jobs j JOIN job_versions v \
                    ON v.job_id = j.id AND v.version = j.current_version \
                    WHERE j.deleted_at_us IS NULL";
        let rows = match after_id {
            Some(after) => {
                let sql =
                    format!("SELECT {VERSION_COLUMNS} {from} AND j.id > $1 ORDER BY j.id LIMIT $2");
                sqlx::query(&sql)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = format!("SELECT {VERSION_COLUMNS} {from} ORDER BY j.id LIMIT $1");
                sqlx::query(&sql).bind(limit).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(version_from_row).collect()
    }

    /// Every version of a job, oldest first (empty when it never existed).
    pub async fn list_job_versions(&self, id: &str) -> Result<Vec<JobVersionRow>, StoreError> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM job_versions v WHERE v.job_id = $1 ORDER BY v.version"
        );
        let rows = sqlx::query(&sql).bind(id).fetch_all(&self.pool).await?;
        rows.iter().map(version_from_row).collect()
    }

    /// Deletes a job softly: its versions stay, as history. A
    /// [`StoreError::NotFound`] when it does not exist or is deleted
    /// already.
    pub async fn delete_job(&self, id: &str, now_us: i64) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET deleted_at_us = $2, updated_at_us = $2 \
             WHERE id = $1 AND deleted_at_us IS NULL",
        )
        .bind(id)
        .bind(now_us)
        .execute(&self.pool)
        .await?;
        not_found_if_none(done.rows_affected(), "job", id)
    }
}

async fn insert_version(
    conn: &mut sqlx::SqliteConnection,
    id: &str,
    version: i64,
    definition: &str,
    now_us: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO job_versions (job_id, version, definition, created_at_us) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(version)
    .bind(definition)
    .bind(now_us)
    .execute(conn)
    .await
    .map_err(|e| conflict_on_unique(e, id))?;
    Ok(())
}

/// A unique violation: another writer created the same job or version
/// first (PostgreSQL; SQLite serialises writers).
fn conflict_on_unique(e: sqlx::Error, id: &str) -> StoreError {
    match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict {
            what: "job",
            id: id.to_string(),
        },
        other => other.into(),
    }
}

fn version_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<JobVersionRow, StoreError> {
    Ok(JobVersionRow {
        job_id: r.try_get("job_id")?,
        version: r.try_get("version")?,
        definition: r.try_get("definition")?,
        created_at_us: r.try_get("created_at_us")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn versions_are_added_only_when_the_definition_changes() {
        let store = Store::open_memory().await.unwrap();
        assert_eq!(store.put_job("a", r#"{"v":1}"#, 10).await.unwrap(), 1);
        assert_eq!(store.put_job("a", r#"{"v":1}"#, 11).await.unwrap(), 1);
        // Byte for byte: the same JSON spelt differently is a new version.
        assert_eq!(store.put_job("a", r#"{ "v":1}"#, 12).await.unwrap(), 2);
        assert_eq!(store.put_job("a", r#"{"v":3}"#, 13).await.unwrap(), 3);
        let current = store.get_job("a").await.unwrap().unwrap();
        assert_eq!(
            current,
            JobVersionRow {
                job_id: "a".into(),
                version: 3,
                definition: r#"{"v":3}"#.into(),
                created_at_us: 13,
            }
        );
        let versions = store.list_job_versions("a").await.unwrap();
        assert_eq!(
            versions.iter().map(|v| v.version).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(versions[0].created_at_us, 10);
        assert_eq!(
            store
                .get_job_version("a", 2)
                .await
                .unwrap()
                .unwrap()
                .definition,
            r#"{ "v":1}"#
        );
        assert_eq!(store.get_job_version("a", 4).await.unwrap(), None);
        assert_eq!(store.get_job("missing").await.unwrap(), None);
        assert!(store.list_job_versions("missing").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_deleted_job_keeps_its_history_and_continues_its_numbering() {
        let store = Store::open_memory().await.unwrap();
        store.put_job("a", "one", 1).await.unwrap();
        store.put_job("a", "two", 2).await.unwrap();
        store.delete_job("a", 3).await.unwrap();
        assert_eq!(store.get_job("a").await.unwrap(), None);
        assert!(matches!(
            store.delete_job("a", 4).await,
            Err(StoreError::NotFound { what: "job", .. })
        ));
        assert!(matches!(
            store.delete_job("missing", 4).await,
            Err(StoreError::NotFound { .. })
        ));
        // History stays readable.
        assert_eq!(
            store
                .get_job_version("a", 1)
                .await
                .unwrap()
                .unwrap()
                .definition,
            "one"
        );
        assert_eq!(store.list_job_versions("a").await.unwrap().len(), 2);
        assert!(store.list_jobs(None, 10).await.unwrap().is_empty());
        // Put again: it comes back with the next version.
        assert_eq!(store.put_job("a", "three", 5).await.unwrap(), 3);
        assert_eq!(store.get_job("a").await.unwrap().unwrap().version, 3);
        // Deleted then put unchanged: it comes back at the same version.
        store.delete_job("a", 6).await.unwrap();
        assert_eq!(store.put_job("a", "three", 7).await.unwrap(), 3);
        assert_eq!(
            store.get_job("a").await.unwrap().unwrap().definition,
            "three"
        );
        assert_eq!(store.list_job_versions("a").await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn live_jobs_page_by_id() {
        let store = Store::open_memory().await.unwrap();
        for id in ["d", "b", "a", "e", "c"] {
            store.put_job(id, id, 1).await.unwrap();
        }
        store.put_job("b", "b2", 2).await.unwrap();
        store.delete_job("c", 3).await.unwrap();
        let first = store.list_jobs(None, 2).await.unwrap();
        assert_eq!(
            first.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!((first[1].version, first[1].definition.as_str()), (2, "b2"));
        let second = store.list_jobs(Some("b"), 2).await.unwrap();
        assert_eq!(
            second.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(),
            ["d", "e"]
        );
        assert!(store.list_jobs(Some("e"), 2).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn jobs_persist_in_the_file_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meridian.db");
        {
            let store = Store::open_sqlite(&path).await.unwrap();
            assert_eq!(store.put_job("a", "one", 1).await.unwrap(), 1);
            assert_eq!(store.put_job("a", "two", 2).await.unwrap(), 2);
        }
        let store = Store::open_sqlite(&path).await.unwrap();
        assert_eq!(store.get_job("a").await.unwrap().unwrap().definition, "two");
        assert_eq!(store.put_job("a", "two", 3).await.unwrap(), 2);
        // Concurrent puts of one job serialise: each gets its own version.
        let puts = (0..8).map(|i| {
            let store = store.clone();
            async move { store.put_job("a", &format!("v{i}"), 10 + i).await }
        });
        let mut got: Vec<i64> = futures::future::join_all(puts)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        got.sort();
        assert_eq!(got, (3..=10).collect::<Vec<_>>());
    }
}
