//! Small queries for the node's control loops: cancel requests made through
//! the store, and closing the pool.

use super::{Store, StoreError};
use sqlx::Row;

impl Store {
    /// Which of `ids` have a cancel request stored and are still running
    /// (`meridian executions cancel`, or another node's API, asked).
    pub async fn cancel_requested(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let mut found = Vec::new();
        // SQLite binds at most 32,766 parameters; stay far below it.
        for chunk in ids.chunks(500) {
            let marks = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT id FROM executions WHERE cancel_requested AND status = 'running' AND id IN ({marks})"
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for row in q.fetch_all(&self.pool).await? {
                found.push(row.try_get::<String, _>("id")?);
            }
        }
        Ok(found)
    }

    /// Closes the pool: waits for connections in use, then checkpoints and
    /// closes the database.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
