use super::*;

const VERSION_COLUMNS: &str = "v.job_id, v.version, v.definition, v.created_at_us";

impl Backend {
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

    pub async fn list_job_versions(&self, id: &str) -> Result<Vec<JobVersionRow>, StoreError> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM job_versions v WHERE v.job_id = $1 ORDER BY v.version"
        );
        let rows = sqlx::query(&sql).bind(id).fetch_all(&self.pool).await?;
        rows.iter().map(version_from_row).collect()
    }

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
    conn: &mut Conn,
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

fn version_from_row(r: &DbRow) -> Result<JobVersionRow, StoreError> {
    Ok(JobVersionRow {
        job_id: r.try_get("job_id")?,
        version: r.try_get("version")?,
        definition: r.try_get("definition")?,
        created_at_us: r.try_get("created_at_us")?,
    })
}
