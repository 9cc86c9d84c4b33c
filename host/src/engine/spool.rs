//! Outcomes that wait for the store, kept on disk as well as in memory.
//!
//! When the store cannot take a run's outcome (an attempt's end, the
//! execution's end) because it is out of reach, the engine keeps the write
//! in memory and retries it until the store returns ([`super::durably`]).
//! That does not survive the node stopping meanwhile: recovery at the next
//! start would find the attempt `running`, interrupt it and run the step
//! again — a step that had succeeded, run twice because of an outage. So a
//! write that has to wait is also written here, one JSON file per write in
//! the data directory's `spool/`, and removed once the store took it. At
//! start-up, before recovery claims anything, [`Spool::replay`] applies the
//! writes a stopped process left, oldest first, each under the epoch it was
//! made with: a write whose execution another node took over meanwhile is
//! refused by the fence like any late write, and dropped.
//!
//! A spool that cannot be written (the data volume full, read-only) costs
//! nothing but this guarantee: the write still waits in memory, and the
//! log says the outcome is not kept on disk.

use crate::store::{AttemptFinish, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A write that waits for the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "write", rename_all = "snake_case")]
pub enum SpooledWrite {
    /// [`Store::finish_attempt`].
    FinishAttempt(AttemptFinish),
    /// [`Store::finish_execution`].
    FinishExecution {
        execution_id: String,
        status: String,
        error: Option<String>,
        step_runs: i64,
        epoch: i64,
        now_us: i64,
    },
}

impl SpooledWrite {
    fn execution_id(&self) -> &str {
        match self {
            SpooledWrite::FinishAttempt(a) => &a.execution_id,
            SpooledWrite::FinishExecution { execution_id, .. } => execution_id,
        }
    }

    /// Applies the write; `Ok(false)` when its guard changed nothing (it
    /// was recorded already, or its epoch moved on).
    pub async fn apply(&self, store: &Store) -> Result<bool, StoreError> {
        match self {
            SpooledWrite::FinishAttempt(a) => store.finish_attempt(a).await,
            SpooledWrite::FinishExecution {
                execution_id,
                status,
                error,
                step_runs,
                epoch,
                now_us,
            } => {
                store
                    .finish_execution(
                        execution_id,
                        status,
                        error.as_deref(),
                        *step_runs,
                        *epoch,
                        *now_us,
                    )
                    .await
            }
        }
    }
}

/// What [`Spool::replay`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Writes the store took.
    pub recorded: usize,
    /// Writes it refused (recorded already, or taken over): dropped.
    pub refused: usize,
    /// Files that could not be read or parsed: left in place, named in
    /// the log.
    pub unreadable: usize,
}

/// The spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    /// Orders the files a process writes (their names sort by it).
    next: AtomicU64,
}

impl Spool {
    /// A spool in `dir` (created when the first write waits).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Spool {
            dir: dir.into(),
            next: AtomicU64::new(0),
        }
    }

    /// Writes `write` to a file of its own (written whole, then renamed
    /// into place, then synced); the file's path, or `None` when it could
    /// not be written (said in the log).
    pub fn keep(&self, write: &SpooledWrite) -> Option<PathBuf> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{:020}-{:06}-{}.json",
            chrono::Utc::now().timestamp_micros().max(0),
            n % 1_000_000,
            write.execution_id()
        );
        let path = self.dir.join(&name);
        match write_synced(&self.dir, &path, write) {
            Ok(()) => Some(path),
            Err(e) => {
                tracing::warn!(
                    execution_id = write.execution_id(),
                    spool = %self.dir.display(),
                    "cannot keep a waiting outcome on disk, only in memory (it is lost if the node stops before the store returns): {e}"
                );
                None
            }
        }
    }

    /// Removes a kept write once the store took it.
    pub fn forget(&self, path: &Path) {
        if let Err(e) = std::fs::remove_file(path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %path.display(), "cannot remove a recorded outcome from the spool: {e}");
        }
    }

    /// Applies every write a previous process left, oldest first, and
    /// removes each the store answered (took or refused). Stops at the
    /// first store error, leaving the rest for the next start.
    pub async fn replay(&self, store: &Store) -> Result<ReplayReport, StoreError> {
        let mut report = ReplayReport::default();
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
            Err(e) => {
                tracing::error!(spool = %self.dir.display(), "cannot read the spool of waiting outcomes: {e}");
                return Ok(report);
            }
        };
        files.sort();
        for path in files {
            let write: SpooledWrite = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
            {
                Ok(w) => w,
                Err(e) => {
                    report.unreadable += 1;
                    tracing::error!(file = %path.display(), "a spooled outcome cannot be read; left in place: {e}");
                    continue;
                }
            };
            if write.apply(store).await? {
                report.recorded += 1;
                tracing::info!(
                    execution_id = write.execution_id(),
                    "an outcome kept on disk while the store was out of reach is recorded"
                );
            } else {
                report.refused += 1;
                tracing::warn!(
                    execution_id = write.execution_id(),
                    "an outcome kept on disk was not recorded: it was recorded already, or another node took the execution over"
                );
            }
            self.forget(&path);
        }
        Ok(report)
    }
}

fn write_synced(dir: &Path, path: &Path, write: &SpooledWrite) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let bytes = serde_json::to_vec(write).map_err(std::io::Error::other)?;
    let partial = path.with_extension("partial");
    let mut file = std::fs::File::create(&partial)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A stored execution `id`, started (epoch 1), its first attempt running.
    pub(in crate::engine) async fn running_attempt(store: &Store, id: &str) {
        use crate::store::{AttemptStart, NewExecution};
        store
            .insert_execution(&NewExecution {
                id: id.into(),
                job_id: "job".into(),
                trigger: "api".into(),
                schedule_id: None,
                fire_nominal_local: None,
                fire_utc_offset_s: None,
                timezone: "UTC".into(),
                priority: 0,
                params: "{}".into(),
                scheduled_at_us: None,
                queued_at_us: 1,
            })
            .await
            .unwrap();
        assert!(store.start_execution(id, 1, 0, 2).await.unwrap());
        let start = AttemptStart {
            execution_id: id.into(),
            seq: 1,
            step_id: "s".into(),
            step_type: "script".into(),
            attempt: 1,
            now_us: 3,
            epoch: 1,
        };
        assert!(store.start_attempt(&start).await.unwrap());
    }

    /// The end of that attempt, made under epoch 1.
    pub(in crate::engine) fn finish(id: &str) -> AttemptFinish {
        AttemptFinish {
            execution_id: id.into(),
            seq: 1,
            attempt: 1,
            status: "succeeded".into(),
            now_us: 4,
            duration_us: 1,
            output: Some("\"done\"".into()),
            exports: Some("{}".into()),
            error: None,
            logs: None,
            host_calls: 0,
            step_done: true,
            epoch: 1,
        }
    }

    #[test]
    fn a_kept_write_reads_back_and_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool"));
        let write = SpooledWrite::FinishExecution {
            execution_id: "e1".into(),
            status: "succeeded".into(),
            error: None,
            step_runs: 2,
            epoch: 3,
            now_us: 4,
        };
        let path = spool.keep(&write).unwrap();
        let back: SpooledWrite = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, write);
        spool.forget(&path);
        assert!(!path.exists());
    }

    /// What a stopped process left is applied under the epochs it was
    /// made with: writes of executions claimed since are refused (the
    /// claimer's own record stands) and their files go; a file that does
    /// not parse stays, named in the log.
    #[tokio::test]
    async fn replay_drops_what_was_taken_over_and_keeps_what_does_not_parse() {
        let store = Store::open_memory().await.unwrap();
        for id in ["kept", "taken"] {
            running_attempt(&store, id).await;
        }
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool"));
        spool
            .keep(&SpooledWrite::FinishAttempt(finish("kept")))
            .unwrap();
        spool
            .keep(&SpooledWrite::FinishAttempt(finish("taken")))
            .unwrap();
        std::fs::write(dir.path().join("spool/zz-garbage.json"), b"{").unwrap();
        // Another process of this node id claims both meanwhile (their
        // epochs move on), and records "kept"'s attempt as it saw it.
        store.claim_executions(true, 10).await.unwrap();
        let kept = store.get_execution("kept").await.unwrap().unwrap();
        assert!(
            store
                .finish_attempt(&AttemptFinish {
                    epoch: kept.epoch,
                    status: "failed".into(),
                    ..finish("kept")
                })
                .await
                .is_ok()
        );
        let report = spool.replay(&store).await.unwrap();
        assert_eq!(
            report,
            ReplayReport {
                recorded: 0,
                refused: 2,
                unreadable: 1
            }
        );
        let left: Vec<_> = std::fs::read_dir(dir.path().join("spool"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["zz-garbage.json"]);
        let attempts = store.list_attempts("kept").await.unwrap();
        assert_eq!(attempts[0].status, "failed");
    }

    /// A write made under the epoch its execution still has is recorded
    /// by the replay, and its file goes.
    #[tokio::test]
    async fn replay_records_a_write_whose_epoch_still_holds() {
        let store = Store::open_memory().await.unwrap();
        running_attempt(&store, "e").await;
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool"));
        spool
            .keep(&SpooledWrite::FinishAttempt(finish("e")))
            .unwrap();
        let report = spool.replay(&store).await.unwrap();
        assert_eq!(report.recorded, 1, "{report:?}");
        let attempts = store.list_attempts("e").await.unwrap();
        assert_eq!(attempts[0].status, "succeeded");
        assert_eq!(attempts[0].output.as_deref(), Some("\"done\""));
        assert_eq!(
            std::fs::read_dir(dir.path().join("spool")).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_spool_that_cannot_be_written_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the directory should be.
        let blocked = dir.path().join("spool");
        std::fs::write(&blocked, b"").unwrap();
        let spool = Spool::new(&blocked);
        let write = SpooledWrite::FinishExecution {
            execution_id: "e1".into(),
            status: "failed".into(),
            error: Some("{}".into()),
            step_runs: 0,
            epoch: 1,
            now_us: 1,
        };
        assert_eq!(spool.keep(&write), None);
    }
}
