//! Nodes and the leases under which they hold unfinished executions.
//!
//! Every execution a node stores (queued by its scheduler or its API),
//! starts or claims is held by it: `node_id`, and `lease_until_us` (the
//! lease it was given). A registered node's heartbeat (one row in `nodes`)
//! keeps every execution it holds, so a heartbeat costs one UPDATE however
//! much the node holds, and it never contends with the execution writes.
//! An execution held by a registered node can be claimed by another once
//! that node has no heartbeat within the lease (or stopped cleanly); one
//! held by no registered node (`meridian run`) lives by its own lease,
//! which that process renews (`renew_leases`). Claims lock the rows (`FOR
//! UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one writer at a time
//! anyway), so two nodes claiming at once get disjoint sets.
//!
//! Every time is the database's ([`DB_NOW_US`]), never a node's: a node
//! whose clock runs ahead cannot find live nodes' heartbeats stale.
//!
//! **Fencing.** A claim and a start move the execution's `epoch` on; every
//! later write of the execution (`start_attempt`, `finish_attempt`,
//! `finish_execution`, `interrupt_running`, `requeue_execution`) names the
//! epoch its writer holds and changes nothing when it moved. So a node that
//! lost an execution while cut off (a partition, a stall longer than the
//! lease) cannot record over the node that took it over: its write is
//! refused, and its engine stops the run.

use super::executions::{EXECUTION_COLUMNS, execution_from_row};
use super::*;

const NODE_COLUMNS: &str = "id, instance, hostname, pid, version, listen, started_at_us, \
     heartbeat_at_us, stopped_at_us, clock_offset_us";

/// Whether no live holder keeps the unfinished execution of the row in
/// `executions`, on the database's clock: `$lease` names the bound lease
/// in microseconds.
fn unheld(lease: &str) -> String {
    format!(
        "(executions.node_id IS NULL OR executions.lease_until_us IS NULL \
         OR CASE WHEN EXISTS (SELECT 1 FROM nodes n WHERE n.id = executions.node_id) \
           THEN NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = executions.node_id \
             AND n.stopped_at_us IS NULL AND n.heartbeat_at_us >= {DB_NOW_US} - {lease}) \
           ELSE executions.lease_until_us < {DB_NOW_US} END)"
    )
}

impl Backend {
    pub async fn register_node(
        &self,
        row: &NodeRow,
        replacing: Option<&str>,
    ) -> Result<(), StoreError> {
        let lease_us = self.node.get().lease_us;
        let mut tx = self.begin_write().await?;
        let lock = match DIALECT {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        };
        let existing = sqlx::query(&format!(
            "SELECT instance, stopped_at_us IS NULL AND heartbeat_at_us + $2 > {DB_NOW_US} \
             AS live FROM nodes WHERE id = $1{lock}"
        ))
        .bind(&row.id)
        .bind(lease_us)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(existing) = existing {
            let instance: String = existing.try_get("instance")?;
            let live: bool = existing.try_get("live")?;
            if live && instance != row.instance && replacing != Some(instance.as_str()) {
                return Err(StoreError::Conflict {
                    what: "live node",
                    id: row.id.clone(),
                });
            }
        }
        sqlx::query(&format!(
            "INSERT INTO nodes ({NODE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, {DB_NOW_US}, {DB_NOW_US}, NULL, NULL) \
             ON CONFLICT (id) DO UPDATE SET instance = $2, hostname = $3, pid = $4, \
             version = $5, listen = $6, started_at_us = {DB_NOW_US}, \
             heartbeat_at_us = {DB_NOW_US}, stopped_at_us = NULL, clock_offset_us = NULL"
        ))
        .bind(&row.id)
        .bind(&row.instance)
        .bind(&row.hostname)
        .bind(row.pid)
        .bind(&row.version)
        .bind(&row.listen)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn heartbeat(&self, clock_offset_us: Option<i64>) -> Result<Option<i64>, StoreError> {
        let node = self.node.get();
        let row = sqlx::query(&format!(
            "UPDATE nodes SET heartbeat_at_us = {DB_NOW_US}, \
             clock_offset_us = COALESCE($2, clock_offset_us) \
             WHERE id = $1 RETURNING heartbeat_at_us"
        ))
        .bind(&*node.id)
        .bind(clock_offset_us)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("heartbeat_at_us")).transpose()?)
    }

    pub async fn renew_leases(&self) -> Result<u64, StoreError> {
        let node = self.node.get();
        // Rows a transaction holds right now are skipped, not waited for:
        // renewing never waits, so it can never deadlock with the writer.
        let lock = match DIALECT {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let renewed = sqlx::query(&format!(
            "UPDATE executions SET lease_until_us = {DB_NOW_US} + $2 WHERE id IN (SELECT id \
             FROM executions WHERE node_id = $1 AND status IN ('queued', 'running'){lock})"
        ))
        .bind(&*node.id)
        .bind(node.lease_us)
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected())
    }

    pub async fn claim_executions(
        &self,
        own: bool,
        limit: i64,
    ) -> Result<Vec<ExecutionRow>, StoreError> {
        let node = self.node.get();
        let lock = match DIALECT {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions \
             WHERE status IN ('queued', 'running') AND ($1 AND node_id = $2 OR {unheld}) \
             ORDER BY queued_at_us, id LIMIT $3{lock}",
            unheld = unheld("$4"),
        ))
        .bind(own)
        .bind(&*node.id)
        .bind(limit)
        .bind(node.lease_us)
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed: Vec<ExecutionRow> = rows
            .iter()
            .map(execution_from_row)
            .collect::<Result<_, _>>()?;
        for chunk in claimed.chunks(500) {
            let marks = (3..3 + chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "UPDATE executions SET node_id = $1, lease_until_us = {DB_NOW_US} + $2, \
                 updated_at_us = {DB_NOW_US}, epoch = epoch + 1 WHERE id IN ({marks})"
            );
            let mut q = sqlx::query(&sql).bind(&*node.id).bind(node.lease_us);
            for e in chunk {
                q = q.bind(&e.id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        for e in &mut claimed {
            e.epoch += 1;
        }
        Ok(claimed)
    }

    pub async fn release_execution(&self, id: &str) -> Result<bool, StoreError> {
        let node = self.node.get();
        let done = sqlx::query(
            "UPDATE executions SET node_id = NULL, lease_until_us = NULL \
             WHERE id = $1 AND node_id = $2 AND status IN ('queued', 'running')",
        )
        .bind(id)
        .bind(&*node.id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn stop_node(&self) -> Result<(), StoreError> {
        let node = self.node.get();
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "UPDATE nodes SET stopped_at_us = {DB_NOW_US}, heartbeat_at_us = {DB_NOW_US} \
             WHERE id = $1"
        ))
        .bind(&*node.id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "UPDATE executions SET lease_until_us = {DB_NOW_US} \
             WHERE node_id = $1 AND status IN ('queued', 'running')"
        ))
        .bind(&*node.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {NODE_COLUMNS}, \
             stopped_at_us IS NULL AND heartbeat_at_us + $1 >= {DB_NOW_US} AS live, \
             (SELECT COUNT(*) FROM executions e WHERE e.node_id = n.id \
              AND e.status IN ('queued', 'running')) AS held, \
             (SELECT COUNT(*) FROM executions e WHERE e.node_id = n.id \
              AND e.status = 'running') AS running \
             FROM nodes n ORDER BY id"
        ))
        .bind(self.node.get().lease_us)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NodeRow {
                    id: r.try_get("id")?,
                    instance: r.try_get("instance")?,
                    hostname: r.try_get("hostname")?,
                    pid: r.try_get("pid")?,
                    version: r.try_get("version")?,
                    listen: r.try_get("listen")?,
                    started_at_us: r.try_get("started_at_us")?,
                    heartbeat_at_us: r.try_get("heartbeat_at_us")?,
                    stopped_at_us: r.try_get("stopped_at_us")?,
                    clock_offset_us: r.try_get("clock_offset_us")?,
                    live: r.try_get("live")?,
                    held: r.try_get("held")?,
                    running: r.try_get("running")?,
                })
            })
            .collect()
    }
}
