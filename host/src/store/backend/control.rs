//! Small queries for the node's control loops: cancel requests made through
//! the store, and closing the pool.

use super::Backend;
use crate::store::StoreError;
use sqlx::Row;

impl Backend {
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

    pub async fn close(&self) {
        if let Some(conn) = self.fires_turn.lock().await.conn.take() {
            let _ = sqlx::Connection::close(conn).await;
        }
        self.pool.close().await;
    }
}
