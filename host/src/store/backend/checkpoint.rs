//! SQLite's WAL checkpoints, off the commit path.
//!
//! SQLite by default checkpoints in the connection whose commit grew the
//! write-ahead log past 1,000 pages, before that commit returns: a burst's
//! transaction then also copies the log into the database file (about
//! 150 ms of a 100,000-fire burst). The file store turns that off
//! (`wal_autocheckpoint = 0`) and this task checkpoints instead, every
//! period: `PASSIVE`, so it never waits for or blocks readers and writers;
//! the log restarts from its beginning once a checkpoint has caught up,
//! and `journal_size_limit` truncates the file then.
//!
//! A checkpoint copies pages and syncs the database file on a thread of
//! its own, beside the scheduler and the store's writers, on two cores. So
//! a tick that finds a batch of fires being written, or written less than
//! a period ago (a burst is under way), passes, up to [`MAX_PASSED`] ticks
//! in a row: a store under constant load still checkpoints.

use super::{FiresTurn, Pool};
use std::sync::Weak;
use std::time::Duration;
use tokio::sync::Mutex;

/// How often the file store checkpoints.
pub(super) const EVERY: Duration = Duration::from_secs(1);

/// Ticks a checkpoint may pass because fires are being written.
const MAX_PASSED: u32 = 10;

/// Checkpoints `pool`'s WAL every `every` until the store is gone (`turn`,
/// the store's turn to write a batch of fires, no longer upgrades).
pub(super) async fn run(pool: Pool, turn: Weak<Mutex<FiresTurn>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut passed = 0;
    loop {
        tick.tick().await;
        let Some(turn) = turn.upgrade() else {
            return;
        };
        let writing_fires = match turn.try_lock() {
            Ok(turn) => turn.ended_within(every),
            Err(_) => true,
        };
        drop(turn);
        if writing_fires && passed < MAX_PASSED {
            passed += 1;
            continue;
        }
        passed = 0;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!("WAL checkpoint failed (retried in {every:?}): {e}");
        }
    }
}
