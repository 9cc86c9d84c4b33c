//! Group commit for the execution hot path.
//!
//! Every execution makes a handful of small writes (queued, started, each
//! attempt started and finished, finished). Done one transaction each from
//! many tasks, they spend their time not in SQLite but in waiting: SQLite
//! has one writer at a time, the pool's other connections sleep in its
//! busy handler, and each commit is a round trip to a connection's thread
//! plus a WAL append (see BENCHMARKS.md, "Engine").
//!
//! So these writes go to one task instead. It takes every write waiting
//! (up to [`MAX_BATCH`]), applies them in **one** `BEGIN IMMEDIATE` …
//! `COMMIT`, and only then answers each caller: a caller never goes on
//! before its write is durable (as durable as `synchronous = NORMAL` makes
//! any commit), and a write that fails is undone alone — single statements
//! by SQLite's statement rollback, multi-statement writes by their own
//! `SAVEPOINT` — without failing the others. Under load a batch holds
//! dozens of writes; alone, a write waits for nobody.
//!
//! A caller that stops waiting does not stop its write: the writer owns it.

use super::executions::{
    FINISH_ATTEMPT, FINISH_LAST_ATTEMPT, INSERT_EXECUTION, START_FIRST_ATTEMPT, START_RETRY,
};
use super::{Conn, DB_NOW_US, DIALECT, DbQuery, DbRow, Pool};
use crate::store::{
    AttemptFinish, AttemptStart, Dialect, NewExecution, NodeCell, NodeLease, StoreError,
};
use tokio::sync::{mpsc, oneshot};

/// The most writes in one transaction.
pub const MAX_BATCH: usize = 512;

/// Writes waiting for the writer before callers wait to hand theirs over.
const CAPACITY: usize = 8192;

type Reply = oneshot::Sender<Result<bool, StoreError>>;

/// One write and who waits for it.
pub(super) enum Op {
    InsertExecution(Box<NewExecution>, Reply),
    StartExecution {
        id: String,
        job_version: i64,
        epoch: i64,
        now_us: i64,
        reply: Reply,
    },
    FinishExecution {
        id: String,
        status: String,
        error: Option<String>,
        step_runs: i64,
        epoch: i64,
        now_us: i64,
        reply: Reply,
    },
    StartAttempt(Box<AttemptStart>, Reply),
    FinishAttempt(Box<AttemptFinish>, Reply),
    /// Writes nothing: answered once every write handed over before it
    /// has been applied (its batch commits after theirs).
    Barrier(Reply),
}

impl Op {
    fn take_reply(self) -> Reply {
        match self {
            Op::InsertExecution(_, r)
            | Op::StartAttempt(_, r)
            | Op::FinishAttempt(_, r)
            | Op::Barrier(r)
            | Op::StartExecution { reply: r, .. }
            | Op::FinishExecution { reply: r, .. } => r,
        }
    }
}

/// The handle the store keeps: hands writes to the writer task.
#[derive(Debug, Clone)]
pub(super) struct Writer {
    tx: mpsc::Sender<Op>,
}

impl Writer {
    /// Starts the writer task on the current tokio runtime.
    pub(super) fn spawn(pool: Pool, node: std::sync::Arc<NodeCell>) -> Self {
        let (tx, rx) = mpsc::channel(CAPACITY);
        tokio::spawn(run(pool, rx, node));
        Writer { tx }
    }

    /// Hands `op` over (built with `reply`) and waits until it is committed
    /// or has failed.
    pub(super) async fn write(&self, op: impl FnOnce(Reply) -> Op) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(op(reply))
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?;
        answer
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::WorkerCrashed))?
    }
}

/// The writer: one batch per turn, until every handle is gone.
async fn run(pool: Pool, mut rx: mpsc::Receiver<Op>, node: std::sync::Arc<NodeCell>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let ops = std::mem::take(&mut batch);
        commit(&pool, ops, &node.get()).await;
    }
}

/// Applies `ops` in one transaction and answers each.
async fn commit(pool: &Pool, ops: Vec<Op>, node: &NodeLease) {
    let mut conn = match pool.acquire().await {
        Ok(c) => c,
        Err(e) => {
            for op in ops {
                let _ = op.take_reply().send(Err(failed(&e)));
            }
            return;
        }
    };
    // PostgreSQL: first without a savepoint per write (three round trips
    // instead of one); a failed write aborts that transaction, and the
    // batch is then rolled back and applied again with savepoints, so that
    // only the failed write fails.
    let mut results = None;
    if DIALECT == Dialect::Postgres {
        match apply_fast(&mut conn, &ops, node).await {
            Ok(Some(r)) => results = Some(r),
            Ok(None) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            }
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                for op in ops {
                    let _ = op.take_reply().send(Err(failed(&e)));
                }
                return;
            }
        }
    }
    let results = match results {
        Some(r) => r,
        None => match apply_guarded(&mut conn, &ops, node).await {
            Ok(r) => r,
            Err(e) => {
                for op in ops {
                    let _ = op.take_reply().send(Err(failed(&e)));
                }
                return;
            }
        },
    };
    let done: Vec<(Reply, Result<bool, StoreError>)> =
        ops.into_iter().map(Op::take_reply).zip(results).collect();
    match sqlx::query("COMMIT").execute(&mut *conn).await {
        Ok(_) => {
            for (reply, result) in done {
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            tracing::error!(
                writes = done.len(),
                "a batch of execution writes failed to commit: {e}"
            );
            for (reply, _) in done {
                let _ = reply.send(Err(failed(&e)));
            }
        }
    }
}

/// Begins the writer's transaction; SQLite takes the write lock now, not
/// at the first write.
async fn begin(conn: &mut Conn) -> Result<(), sqlx::Error> {
    let begin = match DIALECT {
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        Dialect::Postgres => "BEGIN",
    };
    sqlx::query(begin).execute(&mut *conn).await.map(|_| ())
}

/// PostgreSQL's fast path: begins and applies `ops` without savepoints;
/// `None` at the first failed write (the transaction is then aborted).
async fn apply_fast(
    conn: &mut Conn,
    ops: &[Op],
    node: &NodeLease,
) -> Result<Option<Vec<Result<bool, StoreError>>>, sqlx::Error> {
    begin(conn).await?;
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        match apply(conn, op, node).await {
            Ok(changed) => results.push(Ok(changed)),
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(results))
}

/// Begins and applies `ops`, each so that its failure undoes it alone
/// ([`apply_alone`]).
async fn apply_guarded(
    conn: &mut Conn,
    ops: &[Op],
    node: &NodeLease,
) -> Result<Vec<Result<bool, StoreError>>, sqlx::Error> {
    begin(conn).await?;
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        results.push(apply_alone(conn, op, node).await);
    }
    Ok(results)
}

/// What each write of a batch that could not commit is answered: the
/// driver error is one value, so each gets its message, and its class when
/// it is a passing condition (the database down, its disk full), so the API
/// answers 503 rather than 500.
fn failed(e: &sqlx::Error) -> StoreError {
    let message = format!("the batch of writes could not commit: {e}");
    match crate::store::classify_sqlx(e) {
        Some(why) => StoreError::Unavailable { why, message },
        None => StoreError::Database(sqlx::Error::Protocol(message)),
    }
}

/// Applies one write so that its failure undoes it alone. SQLite undoes
/// a failed statement by itself (and a batch runs in its own savepoint, see
/// [`batch_statements`]); a failed statement on PostgreSQL aborts the whole
/// transaction, so there every write gets a savepoint.
async fn apply_alone(conn: &mut Conn, op: &Op, node: &NodeLease) -> Result<bool, StoreError> {
    if DIALECT == Dialect::Sqlite {
        return apply(conn, op, node).await;
    }
    sqlx::query("SAVEPOINT op").execute(&mut *conn).await?;
    let result = apply(conn, op, node).await;
    if result.is_err() {
        sqlx::query("ROLLBACK TO op").execute(&mut *conn).await?;
    }
    sqlx::query("RELEASE op").execute(&mut *conn).await?;
    result
}

/// The statements to send for a multi-statement write (`BEGIN; …;
/// COMMIT`), which must not end the writer's transaction: on SQLite one
/// batch inside its own savepoint; on PostgreSQL, which prepares one
/// statement at a time, each statement alone (`apply_alone` gives the
/// write its savepoint). Each is bound with every parameter of the batch.
fn batch_statements(batch: &str) -> Vec<String> {
    let body = batch
        .trim()
        .trim_start_matches("BEGIN;")
        .trim_end_matches("COMMIT")
        .trim();
    match DIALECT {
        Dialect::Sqlite => vec![format!("SAVEPOINT op; {body} RELEASE op")],
        Dialect::Postgres => body
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    }
}

/// The parameters of a multi-statement write.
#[derive(Clone, Copy)]
enum Params<'q> {
    Start(&'q AttemptStart),
    Finish(&'q AttemptFinish),
}

impl<'q> Params<'q> {
    fn bind(self, query: DbQuery<'q>) -> DbQuery<'q> {
        match self {
            Params::Start(a) => bind_start(query, a),
            Params::Finish(a) => bind_finish(query, a),
        }
    }
}

/// Runs a multi-statement write, each of its statements bound with
/// `params`, and returns the rows they returned; on failure undoes it
/// alone.
async fn run_batch<'a>(
    conn: &mut Conn,
    statements: &'a [String],
    params: Params<'a>,
) -> Result<Vec<DbRow>, StoreError> {
    let mut rows = Vec::new();
    for sql in statements {
        let query = params.bind(sqlx::query(sql));
        match query.fetch_all(&mut *conn).await {
            Ok(mut r) => rows.append(&mut r),
            Err(e) => {
                if DIALECT == Dialect::Sqlite {
                    let _ = sqlx::query("ROLLBACK TO op; RELEASE op")
                        .execute(&mut *conn)
                        .await;
                }
                return Err(e.into());
            }
        }
    }
    Ok(rows)
}

/// Applies one write; `Ok(false)` when its guard found nothing to change.
async fn apply(conn: &mut Conn, op: &Op, node: &NodeLease) -> Result<bool, StoreError> {
    match op {
        Op::Barrier(_) => Ok(true),
        Op::InsertExecution(e, _) => {
            let sql = format!(
                "{INSERT_EXECUTION}($1, $2, 'queued', $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, \
                 $12, {DB_NOW_US} + $13)"
            );
            sqlx::query(&sql)
                .bind(&e.id)
                .bind(&e.job_id)
                .bind(&e.trigger)
                .bind(&e.schedule_id)
                .bind(&e.fire_nominal_local)
                .bind(e.fire_utc_offset_s)
                .bind(&e.timezone)
                .bind(e.priority)
                .bind(&e.params)
                .bind(e.scheduled_at_us)
                .bind(e.queued_at_us)
                .bind(&*node.id)
                .bind(node.lease_us)
                .execute(&mut *conn)
                .await
                .map_err(|err| match err {
                    sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict {
                        what: "execution",
                        id: e.id.clone(),
                    },
                    other => other.into(),
                })?;
            Ok(true)
        }
        // A start is a claim by the node that runs it: compare-and-set on
        // the epoch the runner read, which moves on, so a node that claims
        // it afterwards fences this runner out.
        Op::StartExecution {
            id,
            job_version,
            epoch,
            now_us,
            ..
        } => {
            let done = sqlx::query(&format!(
                "UPDATE executions SET status = 'running', job_version = $2, \
                 started_at_us = COALESCE(started_at_us, $3), updated_at_us = $3, \
                 epoch = epoch + 1, node_id = $4, lease_until_us = {DB_NOW_US} + $6 \
                 WHERE id = $1 AND status = 'queued' AND epoch = $5 \
                 AND (node_id IS NULL OR node_id = $4)"
            ))
            .bind(id)
            .bind(job_version)
            .bind(now_us)
            .bind(&*node.id)
            .bind(epoch)
            .bind(node.lease_us)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() == 1)
        }
        Op::FinishExecution {
            id,
            status,
            error,
            step_runs,
            epoch,
            now_us,
            ..
        } => {
            let done = sqlx::query(
                "UPDATE executions SET status = $2, error = $3, step_runs = $4, \
                 finished_at_us = $5, updated_at_us = $5 \
                 WHERE id = $1 AND status IN ('queued', 'running') AND epoch = $6",
            )
            .bind(id)
            .bind(status)
            .bind(error)
            .bind(step_runs)
            .bind(now_us)
            .bind(epoch)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() == 1)
        }
        Op::StartAttempt(a, _) => {
            let statements = batch_statements(if a.attempt == 1 {
                START_FIRST_ATTEMPT
            } else {
                START_RETRY
            });
            let id = || format!("{}#{}#{}", a.execution_id, a.seq, a.attempt);
            match run_batch(conn, &statements, Params::Start(a)).await {
                Ok(rows) => Ok(!rows.is_empty()),
                Err(StoreError::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                    Err(StoreError::Conflict {
                        what: "attempt",
                        id: id(),
                    })
                }
                Err(StoreError::Database(sqlx::Error::Database(e)))
                    if e.is_foreign_key_violation() =>
                {
                    Err(StoreError::NotFound {
                        what: "step run",
                        id: id(),
                    })
                }
                Err(e) => Err(e),
            }
        }
        Op::FinishAttempt(a, _) => {
            if a.step_done {
                let statements = batch_statements(FINISH_LAST_ATTEMPT);
                Ok(!run_batch(conn, &statements, Params::Finish(a))
                    .await?
                    .is_empty())
            } else {
                let done = bind_finish(sqlx::query(FINISH_ATTEMPT), a)
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    }
}

/// Binds [`START_FIRST_ATTEMPT`] / [`START_RETRY`]'s parameters.
fn bind_start<'q>(query: DbQuery<'q>, a: &'q AttemptStart) -> DbQuery<'q> {
    query
        .bind(a.execution_id.as_str())
        .bind(a.seq)
        .bind(a.step_id.as_str())
        .bind(a.step_type.as_str())
        .bind(a.attempt)
        .bind(a.now_us)
        .bind(a.epoch)
}

/// Binds [`FINISH_ATTEMPT`] / [`FINISH_LAST_ATTEMPT`]'s parameters.
fn bind_finish<'q>(query: DbQuery<'q>, a: &'q AttemptFinish) -> DbQuery<'q> {
    query
        .bind(a.execution_id.as_str())
        .bind(a.seq)
        .bind(a.attempt)
        .bind(a.status.as_str())
        .bind(a.now_us)
        .bind(a.duration_us)
        .bind(a.output.as_deref())
        .bind(a.exports.as_deref())
        .bind(a.error.as_deref())
        .bind(a.logs.as_deref())
        .bind(a.host_calls)
        .bind(a.epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_lose_their_own_transaction() {
        let statements = batch_statements(START_FIRST_ATTEMPT);
        for s in &statements {
            assert!(!s.contains("BEGIN") && !s.contains("COMMIT"), "{s}");
        }
        match DIALECT {
            Dialect::Sqlite => {
                let [s] = statements.as_slice() else {
                    panic!("one batch: {statements:?}")
                };
                assert!(s.starts_with("SAVEPOINT op; UPDATE executions"), "{s}");
                assert!(s.ends_with("; RELEASE op"), "{s}");
            }
            Dialect::Postgres => {
                assert_eq!(statements.len(), 3, "{statements:?}");
                assert!(statements[0].starts_with("UPDATE executions"));
                assert!(statements[2].starts_with("INSERT INTO attempts"));
            }
        }
    }
}
