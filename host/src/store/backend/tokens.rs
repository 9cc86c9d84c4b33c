use super::*;
use crate::store::{AuditEntry, AuditRecord};

const TOKEN_COLUMNS: &str =
    "id, name, role, hash, created_at_us, created_by, last_used_at_us, revoked_at_us";

impl Backend {
    pub async fn insert_token(
        &self,
        t: &TokenRow,
        audit: &AuditEntry,
    ) -> Result<AuditRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let result = sqlx::query(&format!(
            "INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&t.id)
        .bind(&t.name)
        .bind(&t.role)
        .bind(&t.hash)
        .bind(t.created_at_us)
        .bind(&t.created_by)
        .bind(t.last_used_at_us)
        .bind(t.revoked_at_us)
        .execute(&mut *tx)
        .await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict {
                    what: "token",
                    id: t.name.clone(),
                });
            }
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let mut records = super::audit::append_on(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await?;
        records.pop().ok_or_else(|| StoreError::NotFound {
            what: "audit record",
            id: t.id.clone(),
        })
    }

    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE hash = $1 AND revoked_at_us IS NULL"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_row).transpose()
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at_us, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_row).collect()
    }

    pub async fn any_live_token(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_tokens WHERE revoked_at_us IS NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    pub async fn revoke_token(
        &self,
        id_or_name: &str,
        now_us: i64,
        audit: impl FnOnce(&TokenRow) -> AuditEntry,
    ) -> Result<(TokenRow, AuditRecord), StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE api_tokens SET revoked_at_us = $2 \
             WHERE (id = $1 OR name = $1) AND revoked_at_us IS NULL RETURNING {TOKEN_COLUMNS}"
        ))
        .bind(id_or_name)
        .bind(now_us)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound {
                what: "token",
                id: id_or_name.to_string(),
            });
        };
        let token = token_row(&row)?;
        let mut records = super::audit::append_on(&mut tx, &[audit(&token)]).await?;
        tx.commit().await?;
        let record = records.pop().ok_or_else(|| StoreError::NotFound {
            what: "audit record",
            id: token.id.clone(),
        })?;
        Ok((token, record))
    }

    pub async fn touch_token(&self, id: &str, now_us: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_tokens SET last_used_at_us = $2 WHERE id = $1")
            .bind(id)
            .bind(now_us)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn token_row(r: &DbRow) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: r.try_get("role")?,
        hash: r.try_get("hash")?,
        created_at_us: r.try_get("created_at_us")?,
        created_by: r.try_get("created_by")?,
        last_used_at_us: r.try_get("last_used_at_us")?,
        revoked_at_us: r.try_get("revoked_at_us")?,
    })
}
