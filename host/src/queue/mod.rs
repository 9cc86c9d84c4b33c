//! Per-timezone work queues: where a fired run waits for a worker.
//!
//! Every run belongs to the IANA zone of its job's schedule, and every zone
//! gets its own queue, created on first use. A queue orders its runs by
//! priority (higher first), then by submission (FIFO). Each queue has its own
//! pool of workers that grows and shrinks between the zone's `min_workers`
//! and `max_workers`, and all queues together run at most
//! `global_max_concurrent` runs at a time. The queue knows nothing of the
//! store or of steps: it hands a [`QueuedRun`] to a [`RunHandler`] (the
//! engine) and reports how it ended.
//!
//! # Scheduling discipline
//!
//! A *permit* is one of the `global_max_concurrent` run slots. A queue is
//! *ready* when it has queued runs and fewer running runs than its
//! `max_workers`. Whenever a permit is free, it is granted to the ready queue
//! that was granted a permit **least recently** (a queue never granted one
//! comes first, in creation order); that queue starts its best run on an idle
//! worker of its own pool, or on a new worker when none is idle. This is
//! round robin across the ready zones, one run per turn, where a zone that
//! becomes ready joins the rotation at the place its last turn left it rather
//! than at the back: a zone that has been quiet while a busy zone kept
//! running is ahead of that busy zone.
//!
//! Fair share is counted in runs started, not in run time: the queue cannot
//! know how long a run will take.
//!
//! # The fairness bound
//!
//! Let R be the number of *other* ready zones when zone Z gets a queued run.
//!
//! * Z is granted a permit at or before the (R+1)-th grant that follows, since
//!   each grant goes to the least recently served ready zone and a served zone
//!   goes behind every other: each other zone can be served at most once
//!   before Z. No zone starves, however deep another zone's backlog.
//! * When Z was quiet while the other ready zones kept being served (the case
//!   of one zone's midnight burst), Z is the least recently served zone, so it
//!   gets the **very next** permit. With the global cap saturated and every
//!   run lasting at most D, some running run finishes within D. So:
//!
//!   **A run submitted to a quiet zone starts within D, the longest time one
//!   run of the busy zones takes, whatever the depth of their queues.**
//!
//! `tests::fairness_burst_in_one_zone_does_not_starve_another` checks this
//! under a paused clock: 10,000 runs of 100 ms in Europe/Berlin with a global
//! cap of 8, and a single run in Asia/Tokyo submitted at several moments
//! while Berlin's backlog is thousands deep: each waits at most 100 ms, and
//! no Berlin run is started between its submission and its start. A global
//! FIFO would have made it wait over two minutes.
//!
//! # Workers and failures
//!
//! A worker takes one run at a time. The run's future executes in its own
//! task, which the worker awaits: a handler that panics ends only that task,
//! the worker sees the panic through the task's `JoinHandle`, reports the run
//! as [`RunOutcome::Panicked`] and carries on, so the pool keeps its size. A
//! panicking run is *reported, not re-queued*: steps have side effects (SQL,
//! HTTP, processes), and whether to try again is the engine's retry policy,
//! not the queue's. Should a worker task itself die (a panic in
//! [`RunHandler::finished`], say), a drop guard takes it out of the pool,
//! reports the run it held, if any, and starts a replacement. Every run that
//! is granted a permit gets exactly one [`RunHandler::finished`] call.
//!
//! The pool grows when a permit is granted to a queue with no idle worker and
//! fewer than `max_workers` workers; an idle worker above `min_workers` exits
//! after `idle_timeout`. `min_workers` are started when the queue is created.
//!
//! # Shutdown
//!
//! [`QueueManager::shutdown`] stops accepting, takes every queued run out and
//! returns it (for the caller to persist), lets running runs finish for up to
//! the grace period and then aborts the rest. Dropping the last handle to the
//! manager closes it the same way without waiting and drops the queued runs.
//!
//! # Example
//!
//! ```
//! use meridian::queue::{QueueConfig, QueueManager, QueuedRun, RunOutcome};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let queues = QueueManager::new(QueueConfig::default(), |run: QueuedRun<String>| async move {
//!     println!("running {} ({})", run.run_id, run.payload);
//!     RunOutcome::Succeeded
//! })?;
//! queues
//!     .submit(QueuedRun::new("run-1", "job-1", chrono_tz::Europe::Berlin, 0, "hello".into()))
//!     .map_err(meridian::queue::QueueError::from)?;
//! let left = queues.shutdown(std::time::Duration::from_secs(5)).await;
//! assert!(left.queued.is_empty());
//! # Ok::<(), meridian::queue::QueueError>(())
//! # }).unwrap();
//! ```

mod state;
mod stats;
mod worker;

#[cfg(test)]
mod tests;

use chrono_tz::Tz;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub use stats::QueueStats;

use state::Shared;

/// One run waiting in (or taken from) a zone's queue.
#[derive(Debug, Clone)]
pub struct QueuedRun<P> {
    /// Unique per run; the key for [`QueueManager::cancel`] and duplicate
    /// detection.
    pub run_id: String,
    pub job_id: String,
    /// Which queue the run waits in.
    pub zone: Tz,
    /// Higher runs first; equal priorities run in submission order.
    pub priority: i32,
    /// When the run entered its queue; set by [`QueueManager::submit`], and
    /// the start of its wait in the latency statistics.
    pub enqueued_at: Instant,
    /// What the handler needs to execute the run; opaque to the queue.
    pub payload: P,
}

impl<P> QueuedRun<P> {
    pub fn new(
        run_id: impl Into<String>,
        job_id: impl Into<String>,
        zone: Tz,
        priority: i32,
        payload: P,
    ) -> Self {
        QueuedRun {
            run_id: run_id.into(),
            job_id: job_id.into(),
            zone,
            priority,
            enqueued_at: Instant::now(),
            payload,
        }
    }

    /// The run's identity without its payload.
    pub fn info(&self) -> RunInfo {
        RunInfo {
            run_id: self.run_id.clone(),
            job_id: self.job_id.clone(),
            zone: self.zone,
            priority: self.priority,
            enqueued_at: self.enqueued_at,
        }
    }
}

/// A run's identity, kept by the queue while the handler owns the run, so
/// that the run can be reported however its execution ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    pub run_id: String,
    pub job_id: String,
    pub zone: Tz,
    pub priority: i32,
    pub enqueued_at: Instant,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded,
    /// The handler says the run failed.
    Failed(String),
    /// The handler panicked; the text is the panic message. Produced by the
    /// queue, never expected from a handler.
    Panicked(String),
    /// The run was still running when the shutdown grace period ran out, or
    /// its task was cancelled. Produced by the queue.
    Aborted,
}

impl RunOutcome {
    pub fn is_success(&self) -> bool {
        matches!(self, RunOutcome::Succeeded)
    }
}

/// What the queue tells the handler after a run has ended.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run: RunInfo,
    pub outcome: RunOutcome,
    /// From submission to the grant of a permit.
    pub waited: Duration,
    /// From the grant of a permit to the end.
    pub ran: Duration,
}

/// Executes runs; the engine implements it.
///
/// A closure `Fn(QueuedRun<P>) -> impl Future<Output = RunOutcome>` is a
/// handler too (with the default [`RunHandler::finished`]).
pub trait RunHandler<P>: Send + Sync + 'static {
    /// Executes one run. Runs in its own task: a panic here is reported as
    /// [`RunOutcome::Panicked`] and costs only this run.
    fn handle(&self, run: QueuedRun<P>) -> impl Future<Output = RunOutcome> + Send;

    /// Called exactly once for every run that was granted a permit, after it
    /// ended, including runs that panicked or were aborted: the place to
    /// record the outcome of a run the handler could not record itself.
    /// Called on a worker task: it must return quickly and must not block
    /// (send to a channel for anything slow).
    fn finished(&self, report: &RunReport) {
        match &report.outcome {
            RunOutcome::Panicked(message) => tracing::error!(
                run_id = %report.run.run_id,
                job_id = %report.run.job_id,
                zone = %report.run.zone.name(),
                "run panicked: {message}"
            ),
            RunOutcome::Aborted => tracing::warn!(
                run_id = %report.run.run_id,
                job_id = %report.run.job_id,
                "run aborted"
            ),
            RunOutcome::Succeeded | RunOutcome::Failed(_) => {}
        }
    }
}

impl<P, F, Fut> RunHandler<P> for F
where
    F: Fn(QueuedRun<P>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = RunOutcome> + Send + 'static,
{
    fn handle(&self, run: QueuedRun<P>) -> impl Future<Output = RunOutcome> + Send {
        self(run)
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`RunHandler`] made object safe, so the manager needs no handler type
/// parameter.
trait DynHandler<P>: Send + Sync {
    fn call(&self, run: QueuedRun<P>) -> BoxFuture<'_, RunOutcome>;
    fn finished(&self, report: &RunReport);
}

impl<P: Send + 'static, H: RunHandler<P>> DynHandler<P> for H {
    fn call(&self, run: QueuedRun<P>) -> BoxFuture<'_, RunOutcome> {
        Box::pin(self.handle(run))
    }

    fn finished(&self, report: &RunReport) {
        RunHandler::finished(self, report);
    }
}

/// A zone's pool bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneLimits {
    /// Workers kept even when idle, so a zone's first run after a quiet spell
    /// does not wait for a worker to start.
    pub min_workers: usize,
    /// The most runs of this zone that run at once, whatever the global cap
    /// leaves free.
    pub max_workers: usize,
}

/// Queue and pool settings.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Default pool minimum for every zone.
    pub min_workers: usize,
    /// Default pool maximum for every zone; below the global cap by default,
    /// so one zone alone cannot take every permit.
    pub max_workers: usize,
    /// How long a worker above the minimum stays idle before it exits.
    pub idle_timeout: Duration,
    /// The most runs running at once across all zones.
    pub global_max_concurrent: usize,
    /// Zones whose pool bounds differ from the defaults.
    pub zones: HashMap<Tz, ZoneLimits>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            min_workers: 1,
            max_workers: 16,
            idle_timeout: Duration::from_secs(30),
            global_max_concurrent: 32,
            zones: HashMap::new(),
        }
    }
}

impl QueueConfig {
    /// The pool bounds of a zone: its override, else the defaults.
    pub fn limits(&self, zone: Tz) -> ZoneLimits {
        self.zones.get(&zone).copied().unwrap_or(ZoneLimits {
            min_workers: self.min_workers,
            max_workers: self.max_workers,
        })
    }

    fn validate(&self) -> Result<(), QueueError> {
        if self.global_max_concurrent == 0 {
            return Err(QueueError::Config(
                "global_max_concurrent must be at least 1".into(),
            ));
        }
        let defaults = (
            "defaults".to_owned(),
            ZoneLimits {
                min_workers: self.min_workers,
                max_workers: self.max_workers,
            },
        );
        let zones = self.zones.iter().map(|(z, l)| (z.name().to_owned(), *l));
        for (name, limits) in std::iter::once(defaults).chain(zones) {
            if limits.max_workers == 0 {
                return Err(QueueError::Config(format!(
                    "{name}: max_workers must be at least 1"
                )));
            }
            if limits.min_workers > limits.max_workers {
                return Err(QueueError::Config(format!(
                    "{name}: min_workers ({}) exceeds max_workers ({})",
                    limits.min_workers, limits.max_workers
                )));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("invalid queue configuration: {0}")]
    Config(String),
    #[error("the queue manager must be created inside a tokio runtime")]
    NoRuntime,
    #[error("the queues are shutting down and accept no new runs")]
    ShuttingDown,
    #[error("run {0} is already queued or running")]
    DuplicateRun(String),
    #[error("run {0} is already running")]
    Running(String),
    #[error("run {0} is not queued")]
    UnknownRun(String),
    #[error("run {0} is not running")]
    NotRunning(String),
}

/// A submission that was refused, with the run handed back so that it is
/// not lost.
pub struct SubmitError<P> {
    pub reason: QueueError,
    pub run: QueuedRun<P>,
}

impl<P> fmt::Debug for SubmitError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitError")
            .field("reason", &self.reason)
            .field("run_id", &self.run.run_id)
            .finish_non_exhaustive()
    }
}

impl<P> fmt::Display for SubmitError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.reason, f)
    }
}

impl<P> std::error::Error for SubmitError<P> {}

impl<P> From<SubmitError<P>> for QueueError {
    fn from(error: SubmitError<P>) -> Self {
        error.reason
    }
}

/// What [`QueueManager::shutdown`] leaves to the caller.
#[derive(Debug)]
pub struct Shutdown<P> {
    /// Runs that never started, per zone (by name) in the order they would
    /// have started.
    pub queued: Vec<QueuedRun<P>>,
    /// Run ids still running when the grace period ran out; they were
    /// aborted and are reported to [`RunHandler::finished`] as they end.
    pub aborted: Vec<String>,
}

/// The per-zone queues and their workers. Cheap to clone; the queues close
/// when the last clone is dropped.
pub struct QueueManager<P> {
    handle: Arc<Handle<P>>,
}

/// Owned by the manager's clones only (workers hold the [`Shared`] state), so
/// that dropping the last clone can close the queues.
struct Handle<P> {
    shared: Arc<Shared<P>>,
}

impl<P> Drop for Handle<P> {
    fn drop(&mut self) {
        let dropped = self.shared.close().len();
        if dropped > 0 {
            tracing::warn!(dropped, "queue manager dropped with runs still queued");
        }
    }
}

impl<P> Clone for QueueManager<P> {
    fn clone(&self) -> Self {
        QueueManager {
            handle: Arc::clone(&self.handle),
        }
    }
}

impl<P> fmt::Debug for QueueManager<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueManager").finish_non_exhaustive()
    }
}

impl<P: Send + 'static> QueueManager<P> {
    /// Must be called inside a tokio runtime: workers are spawned on it.
    pub fn new(config: QueueConfig, handler: impl RunHandler<P>) -> Result<Self, QueueError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| QueueError::NoRuntime)?;
        let shared = Shared::new(config, Arc::new(handler), runtime);
        Ok(QueueManager {
            handle: Arc::new(Handle { shared }),
        })
    }

    /// Queues a run in its zone's queue (created on first use) and starts it
    /// at once if a permit is free. Never blocks. Refused while shutting
    /// down, or when a run with the same id is queued or running.
    pub fn submit(&self, run: QueuedRun<P>) -> Result<(), SubmitError<P>> {
        self.handle.shared.submit(run)
    }

    /// Submits runs in order, as [`QueueManager::submit`] would one by one,
    /// but under one lock and with one dispatch at the end. One result per
    /// run, in order.
    pub fn submit_many(
        &self,
        runs: impl IntoIterator<Item = QueuedRun<P>>,
    ) -> Vec<Result<(), SubmitError<P>>> {
        self.handle.shared.submit_many(runs)
    }

    /// Takes a queued run out of its queue and returns it. A run already
    /// running cannot be cancelled here ([`QueueError::Running`]).
    pub fn cancel(&self, run_id: &str) -> Result<QueuedRun<P>, QueueError> {
        self.handle.shared.cancel(run_id)
    }

    /// Aborts a running run's task (the scheduler's `cancel_other` overlap
    /// policy). The run ends as [`RunOutcome::Aborted`] and is reported to
    /// [`RunHandler::finished`] like any other. A queued run is not touched
    /// ([`QueueError::NotRunning`]): take it out with [`QueueManager::cancel`].
    pub fn abort_running(&self, run_id: &str) -> Result<(), QueueError> {
        self.handle.shared.abort_one(run_id)
    }

    /// One entry per zone that has had a run, ordered by zone name.
    pub fn stats(&self) -> Vec<QueueStats> {
        self.handle.shared.stats()
    }

    /// Stops accepting runs, takes out and returns the queued ones, waits up
    /// to `grace` for running runs to finish and aborts those still running.
    /// A second call returns nothing more.
    pub async fn shutdown(&self, grace: Duration) -> Shutdown<P> {
        let shared = &self.handle.shared;
        let queued = shared.close();
        let aborted = if tokio::time::timeout(grace, shared.drained()).await.is_err() {
            shared.abort_running()
        } else {
            Vec::new()
        };
        Shutdown { queued, aborted }
    }
}
