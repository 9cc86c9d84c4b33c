//! Nodes and the leases under which they hold unfinished executions.
//!
//! Every execution a node stores (queued by its scheduler or its API) or
//! claims is held by it under a lease: `node_id`, and `lease_until_us` (the
//! lease it was given, which claims and stores set). A registered node's
//! heartbeat (one row in `nodes`) keeps every lease it holds alive, so a
//! heartbeat costs one UPDATE however much the node holds, and it never
//! contends with the execution writes. An execution can be claimed by
//! another node when its lease has passed *and* its holder has no live
//! heartbeat (none within the lease, or a clean stop); one held by no
//! registered node (`meridian run`) lives by its own lease, which that
//! process renews (`renew_leases`). Claims lock the rows (`FOR UPDATE SKIP
//! LOCKED` on PostgreSQL; SQLite has one writer at a time anyway), so two
//! nodes claiming at once get disjoint sets.

use super::executions::{EXECUTION_COLUMNS, execution_from_row};
use super::*;

const NODE_COLUMNS: &str = "id, instance, hostname, pid, version, listen, started_at_us, \
     heartbeat_at_us, stopped_at_us";

impl Backend {
    pub async fn register_node(
        &self,
        row: &NodeRow,
        now_us: i64,
        replacing: Option<&str>,
    ) -> Result<(), StoreError> {
        let lease_us = self.node.get().lease_us;
        let mut tx = self.pool.begin().await?;
        let lock = match DIALECT {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        };
        let existing = sqlx::query(&format!(
            "SELECT instance, heartbeat_at_us, stopped_at_us FROM nodes WHERE id = $1{lock}"
        ))
        .bind(&row.id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(existing) = existing {
            let instance: String = existing.try_get("instance")?;
            let heartbeat: i64 = existing.try_get("heartbeat_at_us")?;
            let stopped: Option<i64> = existing.try_get("stopped_at_us")?;
            let live = stopped.is_none() && heartbeat + lease_us > now_us;
            if live && instance != row.instance && replacing != Some(instance.as_str()) {
                return Err(StoreError::Conflict {
                    what: "live node",
                    id: row.id.clone(),
                });
            }
        }
        sqlx::query(&format!(
            "INSERT INTO nodes ({NODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, NULL) \
             ON CONFLICT (id) DO UPDATE SET instance = $2, hostname = $3, pid = $4, \
             version = $5, listen = $6, started_at_us = $7, heartbeat_at_us = $7, \
             stopped_at_us = NULL"
        ))
        .bind(&row.id)
        .bind(&row.instance)
        .bind(&row.hostname)
        .bind(row.pid)
        .bind(&row.version)
        .bind(&row.listen)
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn heartbeat(&self, now_us: i64) -> Result<u64, StoreError> {
        let node = self.node.get();
        let done = sqlx::query("UPDATE nodes SET heartbeat_at_us = $2 WHERE id = $1")
            .bind(&*node.id)
            .bind(now_us)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn renew_leases(&self, now_us: i64) -> Result<u64, StoreError> {
        let node = self.node.get();
        // Rows a transaction holds right now are skipped, not waited for:
        // renewing never waits, so it can never deadlock with the writer.
        let lock = match DIALECT {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let renewed = sqlx::query(&format!(
            "UPDATE executions SET lease_until_us = $2 WHERE id IN (SELECT id FROM executions \
             WHERE node_id = $1 AND status IN ('queued', 'running'){lock})"
        ))
        .bind(&*node.id)
        .bind(now_us.saturating_add(node.lease_us))
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected())
    }

    pub async fn claim_executions(
        &self,
        now_us: i64,
        own: bool,
        limit: i64,
    ) -> Result<Vec<ExecutionRow>, StoreError> {
        let node = self.node.get();
        let lock = match DIALECT {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions \
             WHERE status IN ('queued', 'running') AND ($2 AND node_id = $3 \
               OR node_id IS NULL OR lease_until_us IS NULL \
               OR lease_until_us < $1 AND NOT EXISTS (SELECT 1 FROM nodes n \
                 WHERE n.id = executions.node_id AND n.stopped_at_us IS NULL \
                 AND n.heartbeat_at_us >= $5)) \
             ORDER BY queued_at_us, id LIMIT $4{lock}"
        ))
        .bind(now_us)
        .bind(own)
        .bind(&*node.id)
        .bind(limit)
        .bind(now_us.saturating_sub(node.lease_us))
        .fetch_all(&mut *tx)
        .await?;
        let claimed: Vec<ExecutionRow> = rows
            .iter()
            .map(execution_from_row)
            .collect::<Result<_, _>>()?;
        for chunk in claimed.chunks(500) {
            let marks = (4..4 + chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "UPDATE executions SET node_id = $1, lease_until_us = $2, updated_at_us = $3 \
                 WHERE id IN ({marks})"
            );
            let mut q = sqlx::query(&sql)
                .bind(&*node.id)
                .bind(now_us.saturating_add(node.lease_us))
                .bind(now_us);
            for e in chunk {
                q = q.bind(&e.id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
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

    pub async fn stop_node(&self, now_us: i64) -> Result<(), StoreError> {
        let node = self.node.get();
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE nodes SET stopped_at_us = $2, heartbeat_at_us = $2 WHERE id = $1")
            .bind(&*node.id)
            .bind(now_us)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE executions SET lease_until_us = $2 \
             WHERE node_id = $1 AND status IN ('queued', 'running')",
        )
        .bind(&*node.id)
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {NODE_COLUMNS}, \
             (SELECT COUNT(*) FROM executions e WHERE e.node_id = n.id \
              AND e.status IN ('queued', 'running')) AS held, \
             (SELECT COUNT(*) FROM executions e WHERE e.node_id = n.id \
              AND e.status = 'running') AS running \
             FROM nodes n ORDER BY id"
        ))
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
                    held: r.try_get("held")?,
                    running: r.try_get("running")?,
                })
            })
            .collect()
    }
}
