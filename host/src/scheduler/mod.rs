//! The firing loop: turns stored schedules into runs on the per-zone queues,
//! each fire exactly once.
//!
//! [`Scheduler::spawn`] loads the enabled schedules from the [`Store`],
//! works out what each one missed while the scheduler was down (its misfire
//! policy), and starts one task, the loop, which owns all scheduling state.
//! A [`SchedulerHandle`] talks to it: reload, remove, pause, resume,
//! trigger now, backfill, shutdown.
//!
//! # The loop
//!
//! The loop keeps one entry per schedule in a binary heap, ordered by the
//! due instant of the schedule's next fire (its instant plus its jitter).
//! It `select!`s over: sleeping until the earliest due instant, a run that
//! ended, a command from a handle, and shutdown. When entries are due it
//! takes **all** of them as one batch (at most one fire per schedule), in
//! chunks of 2,048 growing to 32,768: for each chunk it asks the
//! [`Dispatcher`] for a [`Plan`](dispatch::Plan) per fire under the
//! schedule's overlap policy, stores the chunk with one
//! [`Store::record_fires_with_executions`] transaction, commits the plans
//! of the fires the store accepted and abandons the others. Storing a
//! chunk overlaps with building the next and queueing the one before.
//! Then it computes each schedule's next fire and pushes it, and moves the
//! schedules' cursors. A stale heap entry (the schedule was reloaded,
//! paused or removed) is recognised by its generation number and dropped when
//! it surfaces: no per-tick scan, O(log n) per fire, a few hundred bytes per
//! schedule (see `slot.rs`). Its sleep is computed from the [`Clock`], and
//! capped by [`SchedulerConfig::max_sleep`] so that a wall clock that jumps
//! is noticed.
//!
//! # Invariants
//!
//! - **A fire runs only after its identity is stored.** The identity
//!   (schedule, nominal local time, UTC offset) is the `fires` primary key;
//!   a fire the store refuses (fired before a restart, or by another node)
//!   is abandoned before anything happened for it, so no fire runs twice.
//! - **The scheduler never calls a plugin** and never runs a job: it hands
//!   a [`RunPayload`] to the queue, whose [`RunHandler`](crate::queue::RunHandler)
//!   (the engine) does.
//! - Each schedule's cursor moves to its fires once their batch is queued;
//!   the next start resumes after it, so no fire is lost either, up to the
//!   misfire policy. A cursor left behind by a crash before it moved is
//!   safe: the fires after it are stored, so catch-up finds them handled.
//!
//! # Start-up and misfires
//!
//! Fires between a schedule's cursor (or its creation, or `start_at`) and
//! now were missed. Only those inside the misfire window (now − `window_s`)
//! count: `all` runs each (origin `catch_up`), `latest` only the last,
//! `none` none. The cursor is moved past the rest without a row per skipped
//! fire, and how many were skipped is logged (counted up to a cap). Work is
//! bounded by the window, not by the downtime. A reload or a resume never
//! catches up: a paused schedule does not run what it missed while paused.
//!
//! The same policy applies to what an outage of the store cost a running
//! scheduler: a schedule whose fire could not be recorded is marked
//! stalled and retried every `retry_delay`; once its definition can be
//! read again, the fires after the last one handled go through its misfire
//! policy as at start-up, and those that will not run are stored with the
//! outcome `missed` (up to the cap), said in the log and, when the loop has
//! an audit trail, in one record per schedule (kind `schedule`, decision
//! `missed`). Before, they were fired late one by one as ordinary fires and
//! mostly dropped by the overlap policy, and nothing said "missed".
//!
//! # Fire outcomes and origins
//!
//! A stored fire has an origin (`scheduled`, `catch_up`, `backfill`) and an
//! outcome: `enqueued`, `buffered` (waits for the schedule's active run),
//! `skipped` (the overlap policy dropped it) or `missed` (the store was out
//! of reach when it fell due and the misfire policy did not run it). Manual runs
//! ([`SchedulerHandle::trigger_now`]) have no fire identity and no row.
//! Backfilled fires are planned with `allow`: each fire asked for runs,
//! whatever the schedule's overlap policy; they do count as active runs for
//! the schedule's own later fires.
//!
//! # Executions
//!
//! Each fire that will run (outcome `enqueued` or `buffered`) is stored with
//! its `queued` execution row (id = the run id) in the same transaction
//! ([`Store::record_fires_with_executions`]); a manual run stores its
//! execution before it is queued. A crash after that loses nothing: the
//! engine's service ([`crate::engine::service`]) queues stored executions
//! again at start-up.
//!
//! # Example
//!
//! ```
//! use meridian::queue::{QueueConfig, QueuedRun, RunOutcome};
//! use meridian::scheduler::{Dispatcher, RunPayload, Scheduler, SchedulerConfig, SystemClock};
//! use meridian::store::Store;
//! use std::sync::Arc;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = Store::open_memory().await?;
//! let dispatcher = Dispatcher::new(QueueConfig::default(), |run: QueuedRun<RunPayload>| async move {
//!     println!("run {} of {}", run.run_id, run.payload.schedule_id);
//!     RunOutcome::Succeeded
//! })?;
//! let scheduler =
//!     Scheduler::spawn(store, Arc::new(SystemClock), dispatcher, SchedulerConfig::default()).await?;
//! // … after storing a schedule: scheduler.reload("nightly").await?;
//! scheduler.shutdown().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod clock;
pub mod dispatch;
mod runner;
mod slot;

#[cfg(test)]
mod tests;

pub use clock::{Clock, ClusterClock, SystemClock, TokioClock};
pub use dispatch::{DispatchError, Dispatcher, Origin, RunPayload, RunRequest, ShutdownReport};

use crate::model::Issue;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Loop settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The longest the loop sleeps before it looks at the clock again, so
    /// that a wall clock that jumps forward is noticed.
    pub max_sleep: Duration,
    /// How long a batch waits before it is tried again after the store
    /// failed to record it.
    pub retry_delay: Duration,
    /// The most fires one backfill may cover.
    pub backfill_cap: usize,
    /// How long running runs get to finish at shutdown before they are
    /// aborted.
    pub shutdown_grace: Duration,
    /// Commands waiting for the loop before senders wait.
    pub command_capacity: usize,
    /// Where fires missed during a store outage are recorded (kind
    /// `schedule`, decision `missed`); `None` records them in the log and
    /// the fires only.
    pub audit: Option<crate::audit::AuditLog>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_sleep: Duration::from_secs(60),
            retry_delay: Duration::from_secs(1),
            backfill_cap: 10_000,
            shutdown_grace: Duration::from_secs(30),
            command_capacity: 1024,
            audit: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("schedule {0:?} does not exist")]
    NotFound(String),
    #[error("stored schedule {id:?} cannot be loaded: {issues:?}")]
    Invalid { id: String, issues: Vec<Issue> },
    #[error("backfill of {id:?} covers more than {cap} fires; backfill smaller ranges")]
    BackfillTooLarge { id: String, cap: usize },
    #[error("invalid backfill range: {0}")]
    BackfillRange(String),
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    #[error("the scheduler has stopped")]
    Stopped,
}

/// What a backfill did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillReport {
    /// Fires of the schedule in the range (within its start and end).
    pub fires: usize,
    /// Fires whose identity was already stored: not run again.
    pub already_recorded: usize,
    /// The runs queued, one per newly recorded fire, in fire order.
    pub run_ids: Vec<String>,
}

/// Starts the loop; see the module docs.
#[derive(Debug)]
pub struct Scheduler;

impl Scheduler {
    /// Loads the enabled schedules, applies their misfire policies, stores
    /// the cursors moved past skipped fires and starts the loop. Must be
    /// called inside a tokio runtime.
    pub async fn spawn(
        store: Store,
        clock: Arc<dyn Clock>,
        dispatcher: Dispatcher,
        config: SchedulerConfig,
    ) -> Result<SchedulerHandle, SchedulerError> {
        let (commands_tx, commands) = mpsc::channel(config.command_capacity.max(1));
        let (shutdown_tx, shutdown) = mpsc::unbounded_channel();
        let runner =
            runner::Runner::start(store, clock, dispatcher, config, commands, shutdown).await?;
        tokio::spawn(runner.run());
        Ok(SchedulerHandle {
            commands: commands_tx,
            shutdown: shutdown_tx,
        })
    }
}

type Reply<T> = oneshot::Sender<Result<T, SchedulerError>>;

/// A request to the loop, with where to send the answer.
enum Command {
    Reload(String, Reply<Option<DateTime<Utc>>>),
    Remove(String, Reply<bool>),
    Pause(String, Reply<()>),
    Resume(String, Reply<Option<DateTime<Utc>>>),
    TriggerNow(String, Reply<String>),
    Backfill {
        id: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        reply: Reply<BackfillReport>,
    },
    NextFire(String, Reply<Option<DateTime<Utc>>>),
    Flush(Reply<()>),
}

/// Talks to the loop. Cheap to clone; the loop shuts down when the last
/// clone is dropped (or on [`SchedulerHandle::shutdown`]).
#[derive(Debug, Clone)]
pub struct SchedulerHandle {
    commands: mpsc::Sender<Command>,
    /// Apart from the commands, so that shutdown does not wait behind them.
    shutdown: mpsc::UnboundedSender<oneshot::Sender<ShutdownReport>>,
}

impl SchedulerHandle {
    async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, SchedulerError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .await
            .map_err(|_| SchedulerError::Stopped)?;
        rx.await.map_err(|_| SchedulerError::Stopped)?
    }

    /// Re-reads a schedule after it was created or changed: an enabled one
    /// (re)starts from now, without catching up; a disabled one leaves the
    /// loop (`Ok(None)`), and so does a deleted one
    /// ([`SchedulerError::NotFound`]). Returns its next fire instant, if it
    /// has one.
    pub async fn reload(&self, id: &str) -> Result<Option<DateTime<Utc>>, SchedulerError> {
        self.ask(|r| Command::Reload(id.to_owned(), r)).await
    }

    /// Takes a deleted schedule out of the loop; `false` if it was not in
    /// it. Its runs already queued, running or buffered carry on.
    pub async fn remove(&self, id: &str) -> Result<bool, SchedulerError> {
        self.ask(|r| Command::Remove(id.to_owned(), r)).await
    }

    /// Stores the schedule as disabled and stops firing it. Its runs
    /// already queued, running or buffered carry on.
    pub async fn pause(&self, id: &str) -> Result<(), SchedulerError> {
        self.ask(|r| Command::Pause(id.to_owned(), r)).await
    }

    /// Moves the schedule's cursor to now (what it missed while paused does
    /// not run), stores it as enabled and fires it again. Returns its next
    /// fire instant.
    pub async fn resume(&self, id: &str) -> Result<Option<DateTime<Utc>>, SchedulerError> {
        self.ask(|r| Command::Resume(id.to_owned(), r)).await
    }

    /// Queues a manual run of the schedule's job now, paused or not,
    /// whatever its overlap policy; returns the run id. A manual run has no
    /// fire identity.
    pub async fn trigger_now(&self, id: &str) -> Result<String, SchedulerError> {
        self.ask(|r| Command::TriggerNow(id.to_owned(), r)).await
    }

    /// Records every fire of the schedule in `[from, to]` (within its start
    /// and end; `to` not in the future) with origin `backfill` and runs the
    /// new ones; fires already recorded are not run again. At most
    /// [`SchedulerConfig::backfill_cap`] fires.
    pub async fn backfill(
        &self,
        id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<BackfillReport, SchedulerError> {
        self.ask(|reply| Command::Backfill {
            id: id.to_owned(),
            from,
            to,
            reply,
        })
        .await
    }

    /// The instant of the schedule's next fire, if it is in the loop.
    pub async fn next_fire(&self, id: &str) -> Result<Option<DateTime<Utc>>, SchedulerError> {
        self.ask(|r| Command::NextFire(id.to_owned(), r)).await
    }

    /// Resolves once the loop has handled every command sent before this
    /// one, every run end it had been told of, and every fire due by then.
    pub async fn flush(&self) -> Result<(), SchedulerError> {
        self.ask(Command::Flush).await
    }

    /// Stops the loop, then the queues: queued and buffered runs are
    /// dropped, running ones get [`SchedulerConfig::shutdown_grace`] to
    /// finish. Returns what did not run.
    pub async fn shutdown(&self) -> Result<ShutdownReport, SchedulerError> {
        let (tx, rx) = oneshot::channel();
        self.shutdown
            .send(tx)
            .map_err(|_| SchedulerError::Stopped)?;
        rx.await.map_err(|_| SchedulerError::Stopped)
    }
}
