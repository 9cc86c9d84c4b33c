use super::*;
use crate::store::{AuditEntry, AuditRecord};

const AUDIT_COLUMNS: &str = "seq, at_us, kind, actor, plugin, digest, job_id, execution_id, \
     step_id, capability, target, decision, detail, grant_hint, duration_us, data, prev_hash, hash";

/// Rows per insert statement.
const INSERT_CHUNK: usize = 512;

impl Backend {
    pub async fn append_audit(
        &self,
        entries: &[AuditEntry],
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let records = append_on(&mut tx, entries).await?;
        tx.commit().await?;
        Ok(records)
    }

    pub async fn audit_head(&self) -> Result<(i64, String), StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.try_get("seq")?, row.try_get("hash")?))
    }

    pub async fn audit_all(&self) -> Result<Vec<AuditRecord>, StoreError> {
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY seq");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(audit_record).collect()
    }

    pub async fn audit_query(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let mut clauses = Vec::new();
        let mut texts: Vec<&str> = Vec::new();
        let mut ints: Vec<(String, i64)> = Vec::new();
        for (column, value) in [
            ("kind", &q.kind),
            ("plugin", &q.plugin),
            ("job_id", &q.job_id),
            ("execution_id", &q.execution_id),
            ("capability", &q.capability),
            ("decision", &q.decision),
        ] {
            if let Some(v) = value {
                texts.push(v);
                clauses.push(format!("{column} = ${}", texts.len()));
            }
        }
        let mut n = texts.len();
        for (clause, value) in [
            ("at_us >= ", q.since_us),
            ("at_us < ", q.until_us),
            ("seq > ", q.after_seq),
        ] {
            if let Some(v) = value {
                n += 1;
                ints.push((format!("{clause}${n}"), v));
            }
        }
        clauses.extend(ints.iter().map(|(c, _)| c.clone()));
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log {filter} ORDER BY seq LIMIT {}",
            q.limit.max(1)
        );
        let mut query = sqlx::query(&sql);
        for t in texts {
            query = query.bind(t);
        }
        for (_, v) in &ints {
            query = query.bind(*v);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(audit_record).collect()
    }

    pub async fn audit_usage(&self, plugin: &str) -> Result<Vec<UsageRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT capability, target, decision, COUNT(*) AS calls, MAX(at_us) AS last_us \
             FROM audit_log WHERE kind = 'capability' AND plugin = $1 \
             GROUP BY capability, target, decision ORDER BY capability, target, decision",
        )
        .bind(plugin)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageRow {
                    capability: r
                        .try_get::<Option<String>, _>("capability")?
                        .unwrap_or_default(),
                    target: r
                        .try_get::<Option<String>, _>("target")?
                        .unwrap_or_default(),
                    decision: r.try_get("decision")?,
                    calls: r.try_get("calls")?,
                    last_us: r.try_get("last_us")?,
                })
            })
            .collect()
    }

    pub async fn insert_grant(
        &self,
        g: &GrantRow,
        audit: &AuditEntry,
    ) -> Result<AuditRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let result = sqlx::query(
            "INSERT INTO grants (id, plugin, spec, created_at_us, created_by) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&g.id)
        .bind(&g.plugin)
        .bind(&g.spec)
        .bind(g.created_at_us)
        .bind(&g.created_by)
        .execute(&mut *tx)
        .await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict {
                    what: "grant",
                    id: g.id.clone(),
                });
            }
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let mut records = append_on(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await?;
        records.pop().ok_or_else(|| StoreError::NotFound {
            what: "audit record",
            id: g.id.clone(),
        })
    }

    pub async fn list_grants(&self) -> Result<Vec<GrantRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, plugin, spec, created_at_us, created_by FROM grants ORDER BY created_at_us, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_row).collect()
    }

    pub async fn replace_grant(
        &self,
        id: &str,
        plugin: &str,
        spec: &str,
        audit: impl FnOnce(&GrantRow, &GrantRow) -> AuditEntry,
    ) -> Result<(GrantRow, AuditRecord), StoreError> {
        let mut tx = self.pool.begin().await?;
        let old = sqlx::query(
            "SELECT id, plugin, spec, created_at_us, created_by FROM grants WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(old) = old else {
            return Err(StoreError::NotFound {
                what: "grant",
                id: id.to_string(),
            });
        };
        let old = grant_row(&old)?;
        sqlx::query("UPDATE grants SET plugin = $2, spec = $3 WHERE id = $1")
            .bind(id)
            .bind(plugin)
            .bind(spec)
            .execute(&mut *tx)
            .await?;
        let new = GrantRow {
            plugin: plugin.to_string(),
            spec: spec.to_string(),
            ..old.clone()
        };
        let mut records = append_on(&mut tx, &[audit(&old, &new)]).await?;
        tx.commit().await?;
        let record = records.pop().ok_or_else(|| StoreError::NotFound {
            what: "audit record",
            id: id.to_string(),
        })?;
        Ok((new, record))
    }

    pub async fn delete_grant(
        &self,
        id: &str,
        audit: impl FnOnce(&GrantRow) -> AuditEntry,
    ) -> Result<(GrantRow, AuditRecord), StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "DELETE FROM grants WHERE id = $1 RETURNING id, plugin, spec, created_at_us, created_by",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound {
                what: "grant",
                id: id.to_string(),
            });
        };
        let grant = grant_row(&row)?;
        let mut records = append_on(&mut tx, &[audit(&grant)]).await?;
        tx.commit().await?;
        let record = records.pop().ok_or_else(|| StoreError::NotFound {
            what: "audit record",
            id: id.to_string(),
        })?;
        Ok((grant, record))
    }
}

fn grant_row(r: &DbRow) -> Result<GrantRow, StoreError> {
    Ok(GrantRow {
        id: r.try_get("id")?,
        plugin: r.try_get("plugin")?,
        spec: r.try_get("spec")?,
        created_at_us: r.try_get("created_at_us")?,
        created_by: r.try_get("created_by")?,
    })
}

/// Appends entries to the chain inside the caller's transaction (see
/// [`Store::append_audit`]).
pub(super) async fn append_on(
    conn: &mut Conn,
    entries: &[AuditEntry],
) -> Result<Vec<AuditRecord>, StoreError> {
    // Taking the write lock before reading the head: on SQLite this
    // makes the transaction a writer (waiting out others through the
    // busy timeout); on PostgreSQL it locks the row.
    sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    let mut seq: i64 = head.try_get("seq")?;
    let mut prev: String = head.try_get("hash")?;
    let mut records = Vec::with_capacity(entries.len());
    for e in entries {
        seq += 1;
        let hash = e.chain_hash(&prev);
        records.push(AuditRecord {
            seq,
            entry: e.clone(),
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
        });
    }
    // One statement per chunk over one bound JSON array (see
    // `json_insert`): bound 18 parameters a row, SQLite's by-name lookup of
    // each parameter (`sqlite3_bind_parameter_name`) made a chunk cost the
    // square of its parameters, half the CPU of a step's HTTP call
    // (BENCHMARKS.md, "Grant and audit overhead").
    for chunk in records.chunks(INSERT_CHUNK) {
        use super::json_insert::{Cell, JsonInsert};
        let mut rows = JsonInsert::new(18, chunk.len());
        for r in chunk {
            let e = &r.entry;
            rows.row::<18>([
                Cell::from(r.seq),
                Cell::from(e.at_us),
                Cell::from(e.kind.as_str()),
                Cell::from(e.actor.as_deref()),
                Cell::from(e.plugin.as_deref()),
                Cell::from(e.digest.as_deref()),
                Cell::from(e.job_id.as_deref()),
                Cell::from(e.execution_id.as_deref()),
                Cell::from(e.step_id.as_deref()),
                Cell::from(e.capability.as_deref()),
                Cell::from(e.target.as_deref()),
                Cell::from(e.decision.as_str()),
                Cell::from(e.detail.as_deref()),
                Cell::from(e.grant_hint.as_deref()),
                Cell::from(e.duration_us),
                Cell::from(e.data.as_deref()),
                Cell::from(r.prev_hash.as_str()),
                Cell::from(r.hash.as_str()),
            ]);
        }
        let statement = rows.finish(
            &format!("INSERT INTO audit_log ({AUDIT_COLUMNS})"),
            "",
            true,
        )?;
        statement.query().execute(&mut *conn).await?;
    }
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(seq)
        .bind(&prev)
        .execute(&mut *conn)
        .await?;
    Ok(records)
}

fn audit_record(r: &DbRow) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        seq: r.try_get("seq")?,
        entry: AuditEntry {
            at_us: r.try_get("at_us")?,
            kind: r.try_get("kind")?,
            actor: r.try_get("actor")?,
            plugin: r.try_get("plugin")?,
            digest: r.try_get("digest")?,
            job_id: r.try_get("job_id")?,
            execution_id: r.try_get("execution_id")?,
            step_id: r.try_get("step_id")?,
            capability: r.try_get("capability")?,
            target: r.try_get("target")?,
            decision: r.try_get("decision")?,
            detail: r.try_get("detail")?,
            grant_hint: r.try_get("grant_hint")?,
            duration_us: r.try_get("duration_us")?,
            data: r.try_get("data")?,
        },
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}
