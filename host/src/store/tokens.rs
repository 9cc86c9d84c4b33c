//! API tokens (see [`crate::auth`]): stored by the SHA-256 of the token.

use super::{Store, StoreError};
use crate::audit::{AuditEntry, AuditRecord};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

/// A stored token, without the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub hash: String,
    pub created_at_us: i64,
    pub created_by: String,
    pub last_used_at_us: Option<i64>,
    pub revoked_at_us: Option<i64>,
}

const TOKEN_COLUMNS: &str =
    "id, name, role, hash, created_at_us, created_by, last_used_at_us, revoked_at_us";

impl Store {
    /// Stores a token and its audit record in one transaction; a name
    /// already taken is a [`StoreError::Conflict`].
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

    /// The live (not revoked) token with this hash.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE hash = $1 AND revoked_at_us IS NULL"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_row).transpose()
    }

    /// Every token, revoked ones too, oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at_us, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_row).collect()
    }

    /// Whether any token is live (the first start makes one when none is).
    pub async fn any_live_token(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_tokens WHERE revoked_at_us IS NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Revokes the live token with this id or name, with its audit record,
    /// in one transaction.
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

    /// Notes when a token was last used.
    pub async fn touch_token(&self, id: &str, now_us: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_tokens SET last_used_at_us = $2 WHERE id = $1")
            .bind(id)
            .bind(now_us)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn token_row(r: &SqliteRow) -> Result<TokenRow, StoreError> {
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
