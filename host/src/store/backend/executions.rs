use super::writer::Op;
use super::*;

pub(super) const EXECUTION_COLUMNS: &str = "id, job_id, job_version, status, trigger, schedule_id, \
     fire_nominal_local, fire_utc_offset_s, timezone, priority, params, scheduled_at_us, \
     queued_at_us, started_at_us, finished_at_us, error, step_runs, recoveries, \
     cancel_requested, updated_at_us, node_id, epoch";

/// The start of every insert of executions: the columns a new execution
/// sets; the others start NULL or at their defaults.
macro_rules! insert_execution_head {
    () => {
        "INSERT INTO executions (id, job_id, status, trigger, schedule_id, fire_nominal_local, \
         fire_utc_offset_s, timezone, priority, params, scheduled_at_us, queued_at_us, \
         updated_at_us, node_id, lease_until_us)"
    };
}

pub(super) const INSERT_EXECUTION: &str = concat!(insert_execution_head!(), " VALUES ");

/// The head of the SQLite statement that reads its rows from one JSON
/// array (see `insert_executions_on`).
const INSERT_EXECUTION_HEAD: &str = insert_execution_head!();

/// [`Store::start_attempt`] of attempt 1, a batch: `$1` execution id,
/// `$2` seq, `$3` step id, `$4` step type, `$5` attempt, `$6` now, `$7` the
/// writer's epoch. The `RETURNING` row says the execution was running under
/// that epoch; the inserts check the same.
pub(super) const START_FIRST_ATTEMPT: &str = "BEGIN; \
     UPDATE executions SET step_runs = CASE WHEN step_runs < $2 THEN $2 ELSE step_runs END, \
     updated_at_us = $6 WHERE id = $1 AND status = 'running' AND epoch = $7 RETURNING id; \
     INSERT INTO step_runs (execution_id, seq, step_id, step_type, status, attempts, \
     started_at_us) SELECT $1, $2, $3, $4, 'running', $5, $6 \
     WHERE EXISTS (SELECT 1 FROM executions WHERE id = $1 AND status = 'running' \
     AND epoch = $7); \
     INSERT INTO attempts (execution_id, seq, attempt, status, started_at_us) \
     SELECT $1, $2, $5, 'running', $6 \
     WHERE EXISTS (SELECT 1 FROM executions WHERE id = $1 AND status = 'running' \
     AND epoch = $7); \
     COMMIT";

/// [`Store::start_attempt`] of a later attempt, a batch with the same
/// parameters. A missing step run fails the attempt's foreign key.
pub(super) const START_RETRY: &str = "BEGIN; \
     UPDATE executions SET step_runs = CASE WHEN step_runs < $2 THEN $2 ELSE step_runs END, \
     updated_at_us = $6 WHERE id = $1 AND status = 'running' AND epoch = $7 RETURNING id; \
     UPDATE step_runs SET attempts = $5, status = 'running' \
     WHERE execution_id = $1 AND seq = $2 \
     AND EXISTS (SELECT 1 FROM executions WHERE id = $1 AND status = 'running' \
     AND epoch = $7); \
     INSERT INTO attempts (execution_id, seq, attempt, status, started_at_us) \
     SELECT $1, $2, $5, 'running', $6 \
     WHERE EXISTS (SELECT 1 FROM executions WHERE id = $1 AND status = 'running' \
     AND epoch = $7); \
     COMMIT";

/// [`Store::finish_attempt`] of an attempt a retry follows: `$1` execution
/// id, `$2` seq, `$3` attempt, `$4` status, `$5` now, `$6` duration, `$7`
/// output, `$8` exports, `$9` error, `$10` logs, `$11` host calls, `$12`
/// the writer's epoch (nothing changes when the execution's moved on).
pub(super) const FINISH_ATTEMPT: &str = "UPDATE attempts SET status = $4, finished_at_us = $5, \
     duration_us = $6, output = $7, exports = $8, error = $9, logs = $10, host_calls = $11 \
     WHERE execution_id = $1 AND seq = $2 AND attempt = $3 AND status = 'running' \
     AND EXISTS (SELECT 1 FROM executions WHERE id = $1 AND epoch = $12)";

/// [`Store::finish_attempt`] of the attempt that ends its step run, a batch
/// with the same parameters. The step run ends only when the first
/// statement ended its latest attempt (which now shows this end).
pub(super) const FINISH_LAST_ATTEMPT: &str = "BEGIN; \
     UPDATE attempts SET status = $4, finished_at_us = $5, \
     duration_us = $6, output = $7, exports = $8, error = $9, logs = $10, host_calls = $11 \
     WHERE execution_id = $1 AND seq = $2 AND attempt = $3 AND status = 'running' \
     AND EXISTS (SELECT 1 FROM executions WHERE id = $1 AND epoch = $12) \
     RETURNING attempt; \
     UPDATE step_runs SET status = $4, finished_at_us = $5, output = $7, exports = $8, \
     error = $9 WHERE execution_id = $1 AND seq = $2 AND attempts = $3 AND status = 'running' \
     AND EXISTS (SELECT 1 FROM attempts WHERE execution_id = $1 AND seq = $2 \
     AND attempt = $3 AND status = $4 AND finished_at_us = $5); \
     COMMIT";

const STEP_RUN_COLUMNS: &str = "execution_id, seq, step_id, step_type, status, attempts, \
     started_at_us, finished_at_us, output, exports, error";

const ATTEMPT_COLUMNS: &str = "execution_id, seq, attempt, status, started_at_us, \
     finished_at_us, duration_us, output, exports, error, logs, host_calls";

impl Backend {
    pub async fn insert_execution(&self, e: &NewExecution) -> Result<(), StoreError> {
        self.writer
            .write(|reply| Op::InsertExecution(Box::new(e.clone()), reply))
            .await?;
        Ok(())
    }

    pub async fn insert_executions(&self, executions: &[NewExecution]) -> Result<(), StoreError> {
        if executions.is_empty() {
            return Ok(());
        }
        let executions: Vec<&NewExecution> = executions.iter().collect();
        let mut tx = self.pool.begin().await?;
        insert_executions_on(&mut tx, &executions, &self.node.get()).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn start_execution(
        &self,
        id: &str,
        job_version: i64,
        epoch: i64,
        now_us: i64,
    ) -> Result<bool, StoreError> {
        self.writer
            .write(|reply| Op::StartExecution {
                id: id.to_owned(),
                job_version,
                epoch,
                now_us,
                reply,
            })
            .await
    }

    pub async fn finish_execution(
        &self,
        id: &str,
        status: &str,
        error: Option<&str>,
        step_runs: i64,
        epoch: i64,
        now_us: i64,
    ) -> Result<bool, StoreError> {
        self.writer
            .write(|reply| Op::FinishExecution {
                id: id.to_owned(),
                status: status.to_owned(),
                error: error.map(str::to_owned),
                step_runs,
                epoch,
                now_us,
                reply,
            })
            .await
    }

    pub async fn start_attempt(&self, a: &AttemptStart) -> Result<bool, StoreError> {
        self.writer
            .write(|reply| Op::StartAttempt(Box::new(a.clone()), reply))
            .await
    }

    pub async fn finish_attempt(&self, a: &AttemptFinish) -> Result<bool, StoreError> {
        self.writer
            .write(|reply| Op::FinishAttempt(Box::new(a.clone()), reply))
            .await
    }

    pub async fn settle_writes(&self) -> Result<(), StoreError> {
        self.writer.write(Op::Barrier).await?;
        Ok(())
    }

    pub async fn get_execution_with_job(
        &self,
        id: &str,
    ) -> Result<Option<(ExecutionRow, Option<crate::store::JobVersionRow>)>, StoreError> {
        let columns: String = EXECUTION_COLUMNS
            .split(',')
            .map(|c| format!("e.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns}, v.version AS v_version, v.definition AS v_definition, \
             v.created_at_us AS v_created_at_us \
             FROM executions e \
             LEFT JOIN jobs j ON j.id = e.job_id AND j.deleted_at_us IS NULL \
             LEFT JOIN job_versions v ON v.job_id = e.job_id \
             AND v.version = COALESCE(e.job_version, j.current_version) \
             WHERE e.id = $1"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let execution = execution_from_row(&row)?;
        let version: Option<i64> = row.try_get("v_version")?;
        let job = match version {
            Some(version) => Some(crate::store::JobVersionRow {
                job_id: execution.job_id.clone(),
                version,
                definition: row.try_get("v_definition")?,
                created_at_us: row.try_get("v_created_at_us")?,
            }),
            None => None,
        };
        Ok(Some((execution, job)))
    }

    pub async fn get_execution(&self, id: &str) -> Result<Option<ExecutionRow>, StoreError> {
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| execution_from_row(&r)).transpose()
    }

    pub async fn list_step_runs(&self, execution_id: &str) -> Result<Vec<StepRunRow>, StoreError> {
        let sql = format!(
            "SELECT {STEP_RUN_COLUMNS} FROM step_runs WHERE execution_id = $1 ORDER BY seq"
        );
        let rows = sqlx::query(&sql)
            .bind(execution_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StepRunRow {
                    execution_id: r.try_get("execution_id")?,
                    seq: r.try_get("seq")?,
                    step_id: r.try_get("step_id")?,
                    step_type: r.try_get("step_type")?,
                    status: r.try_get("status")?,
                    attempts: r.try_get("attempts")?,
                    started_at_us: r.try_get("started_at_us")?,
                    finished_at_us: r.try_get("finished_at_us")?,
                    output: r.try_get("output")?,
                    exports: r.try_get("exports")?,
                    error: r.try_get("error")?,
                })
            })
            .collect()
    }

    pub async fn list_attempts(&self, execution_id: &str) -> Result<Vec<AttemptRow>, StoreError> {
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE execution_id = $1 \
             ORDER BY seq, attempt"
        );
        let rows = sqlx::query(&sql)
            .bind(execution_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AttemptRow {
                    execution_id: r.try_get("execution_id")?,
                    seq: r.try_get("seq")?,
                    attempt: r.try_get("attempt")?,
                    status: r.try_get("status")?,
                    started_at_us: r.try_get("started_at_us")?,
                    finished_at_us: r.try_get("finished_at_us")?,
                    duration_us: r.try_get("duration_us")?,
                    output: r.try_get("output")?,
                    exports: r.try_get("exports")?,
                    error: r.try_get("error")?,
                    logs: r.try_get("logs")?,
                    host_calls: r.try_get("host_calls")?,
                })
            })
            .collect()
    }

    pub async fn list_executions(
        &self,
        filter: &ExecutionFilter,
    ) -> Result<Vec<ExecutionRow>, StoreError> {
        // Only the shape of the statement varies; every value is bound.
        let mut conditions: Vec<String> = Vec::new();
        let mut texts: Vec<&str> = Vec::new();
        let mut ints: Vec<i64> = Vec::new();
        // Bound in this order: texts, then ints, then the limit.
        let text_filters = [
            ("job_id =", &filter.job_id),
            ("status =", &filter.status),
            ("schedule_id =", &filter.schedule_id),
            ("id <", &filter.before_id),
        ];
        for (condition, value) in text_filters {
            if let Some(value) = value {
                texts.push(value);
                conditions.push(format!("{condition} ${}", texts.len()));
            }
        }
        let int_filters = [
            ("queued_at_us >=", filter.since_us),
            ("queued_at_us <", filter.until_us),
        ];
        for (condition, value) in int_filters {
            if let Some(value) = value {
                ints.push(value);
                conditions.push(format!("{condition} ${}", texts.len() + ints.len()));
            }
        }
        let mut sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions");
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(&format!(
            " ORDER BY id DESC LIMIT ${}",
            texts.len() + ints.len() + 1
        ));
        let mut query = sqlx::query(&sql);
        for text in texts {
            query = query.bind(text);
        }
        for int in ints {
            query = query.bind(int);
        }
        let rows = query.bind(filter.limit).fetch_all(&self.pool).await?;
        rows.iter().map(execution_from_row).collect()
    }

    pub async fn request_cancel(
        &self,
        id: &str,
        now_us: i64,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "UPDATE executions SET cancel_requested = TRUE, updated_at_us = $2 \
             WHERE id = $1 AND status IN ('queued', 'running') RETURNING status",
        )
        .bind(id)
        .bind(now_us)
        .fetch_optional(&self.pool)
        .await?;
        let row = match row {
            Some(row) => Some(row),
            None => {
                sqlx::query("SELECT status FROM executions WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        Ok(row.map(|r| r.try_get("status")).transpose()?)
    }

    pub async fn cancel_queued(
        &self,
        id: &str,
        error: &str,
        now_us: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE executions SET status = 'cancelled', error = $2, finished_at_us = $3, \
             updated_at_us = $3 WHERE id = $1 AND status = 'queued'",
        )
        .bind(id)
        .bind(error)
        .bind(now_us)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn unfinished_executions(&self) -> Result<Vec<ExecutionRow>, StoreError> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions WHERE status IN ('queued', 'running') \
             ORDER BY queued_at_us, id"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(execution_from_row).collect()
    }

    pub async fn interrupt_running(
        &self,
        execution_id: &str,
        epoch: i64,
        now_us: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "UPDATE attempts SET status = 'interrupted', finished_at_us = $2, \
             duration_us = NULL, error = $3 \
             WHERE execution_id = $1 AND status = 'running' \
             AND EXISTS (SELECT 1 FROM executions WHERE id = $1 AND epoch = $4) \
             RETURNING seq, attempt",
        )
        .bind(execution_id)
        .bind(now_us)
        .bind(INTERRUPTED)
        .bind(epoch)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE step_runs SET status = 'interrupted', finished_at_us = $2, error = $3 \
             WHERE execution_id = $1 AND status = 'running' \
             AND EXISTS (SELECT 1 FROM executions WHERE id = $1 AND epoch = $4)",
        )
        .bind(execution_id)
        .bind(now_us)
        .bind(INTERRUPTED)
        .bind(epoch)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut interrupted = rows
            .iter()
            .map(|r| Ok((r.try_get("seq")?, r.try_get("attempt")?)))
            .collect::<Result<Vec<(i64, i64)>, StoreError>>()?;
        interrupted.sort_unstable();
        Ok(interrupted)
    }

    pub async fn requeue_execution(
        &self,
        id: &str,
        epoch: i64,
        now_us: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE executions SET status = 'queued', recoveries = recoveries + 1, \
             updated_at_us = $2 WHERE id = $1 AND status = 'running' AND epoch = $3",
        )
        .bind(id)
        .bind(now_us)
        .bind(epoch)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn apply_retention(
        &self,
        job_id: &str,
        keep_last: Option<i64>,
        max_age_us: Option<i64>,
        now_us: i64,
    ) -> Result<u64, StoreError> {
        if keep_last.is_none() && max_age_us.is_none() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        let mut deleted = 0;
        if let Some(keep_last) = keep_last {
            // Everything from the (keep_last + 1)-th newest finished one
            // back; nothing when there are not that many.
            let done = sqlx::query(
                "DELETE FROM executions WHERE job_id = $1 \
                 AND status NOT IN ('queued', 'running') \
                 AND id <= (SELECT id FROM executions WHERE job_id = $1 \
                 AND status NOT IN ('queued', 'running') ORDER BY id DESC LIMIT 1 OFFSET $2)",
            )
            .bind(job_id)
            .bind(keep_last.max(0))
            .execute(&mut *tx)
            .await?;
            deleted += done.rows_affected();
        }
        if let Some(max_age_us) = max_age_us {
            let done = sqlx::query(
                "DELETE FROM executions WHERE job_id = $1 \
                 AND status NOT IN ('queued', 'running') AND finished_at_us < $2",
            )
            .bind(job_id)
            .bind(now_us.saturating_sub(max_age_us))
            .execute(&mut *tx)
            .await?;
            deleted += done.rows_affected();
        }
        tx.commit().await?;
        Ok(deleted)
    }
}

/// The statement inserting `executions` (at least one), held by `node`,
/// that reads them from one bound JSON array.
pub(super) fn executions_json<'a>(
    executions: &[&'a NewExecution],
    node: &'a NodeLease,
) -> Result<super::json_insert::JsonStatement<'a>, StoreError> {
    use super::json_insert::{Cell, JsonInsert};
    let mut rows = JsonInsert::new(15, executions.len());
    for e in executions {
        rows.row::<15>([
            Cell::from(e.id.as_str()),
            Cell::from(e.job_id.as_str()),
            Cell::from("queued"),
            Cell::from(e.trigger.as_str()),
            Cell::from(e.schedule_id.as_deref()),
            Cell::from(e.fire_nominal_local.as_deref()),
            Cell::from(e.fire_utc_offset_s),
            Cell::from(e.timezone.as_str()),
            Cell::from(e.priority),
            Cell::from(e.params.as_str()),
            Cell::from(e.scheduled_at_us),
            Cell::from(e.queued_at_us),
            Cell::from(e.queued_at_us),
            Cell::from(&*node.id),
            Cell::from(e.queued_at_us.saturating_add(node.lease_us)),
        ]);
    }
    rows.finish(INSERT_EXECUTION_HEAD, "", true)
}

/// Runs an insert of `executions` on `conn` (the caller's transaction); a
/// duplicate id is a conflict, named by the first of them.
pub(super) async fn run_insert(
    conn: &mut Conn,
    insert: DbQuery<'_>,
    executions: &[&NewExecution],
) -> Result<(), StoreError> {
    let first = executions
        .first()
        .map(|e| e.id.as_str())
        .unwrap_or_default();
    insert
        .execute(&mut *conn)
        .await
        .map_err(|err| conflict_on_unique(err, first))?;
    Ok(())
}

/// Inserts executions on `conn` (the caller's transaction) with one
/// statement over one JSON array.
pub(super) async fn insert_executions_on(
    conn: &mut Conn,
    executions: &[&NewExecution],
    node: &NodeLease,
) -> Result<(), StoreError> {
    if executions.is_empty() {
        return Ok(());
    }
    let statement = executions_json(executions, node)?;
    run_insert(conn, statement.query(), executions).await
}

fn conflict_on_unique(e: sqlx::Error, id: &str) -> StoreError {
    match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict {
            what: "execution",
            id: id.to_string(),
        },
        other => other.into(),
    }
}

pub(super) fn execution_from_row(r: &DbRow) -> Result<ExecutionRow, StoreError> {
    Ok(ExecutionRow {
        id: r.try_get("id")?,
        job_id: r.try_get("job_id")?,
        job_version: r.try_get("job_version")?,
        status: r.try_get("status")?,
        trigger: r.try_get("trigger")?,
        schedule_id: r.try_get("schedule_id")?,
        fire_nominal_local: r.try_get("fire_nominal_local")?,
        fire_utc_offset_s: r.try_get("fire_utc_offset_s")?,
        timezone: r.try_get("timezone")?,
        priority: r.try_get("priority")?,
        params: r.try_get("params")?,
        scheduled_at_us: r.try_get("scheduled_at_us")?,
        queued_at_us: r.try_get("queued_at_us")?,
        started_at_us: r.try_get("started_at_us")?,
        finished_at_us: r.try_get("finished_at_us")?,
        error: r.try_get("error")?,
        step_runs: r.try_get("step_runs")?,
        recoveries: r.try_get("recoveries")?,
        cancel_requested: r.try_get("cancel_requested")?,
        updated_at_us: r.try_get("updated_at_us")?,
        node_id: r.try_get("node_id")?,
        epoch: r.try_get("epoch")?,
    })
}
