//! Executions as a service: submit, cancel, recover — the engine behind the
//! per-timezone queues.
//!
//! [`Executions`] ties the [`Engine`] to the queues the scheduler's
//! [`Dispatcher`] owns, so that scheduled fires and executions started from
//! the API or the CLI wait in the same zone queues under one global cap.
//! Build it with [`Executions::start`]: it creates the dispatcher with the
//! engine as its run handler, spawns the [`Scheduler`] on it, and keeps a
//! handle to the queues for runs that no schedule started.
//!
//! Every execution is stored (`queued`) before it is queued: a fire's
//! execution in the same transaction as the fire (see the scheduler),
//! an API execution before [`Executions::submit`] returns its id.
//!
//! # Cancellation
//!
//! [`Executions::cancel`] of a queued execution takes it out of its queue
//! and stores it `cancelled`; of a running one on this node it trips the
//! run's [`CancellationToken`], which stops the running attempt at once
//! (dropping the attempt stops the wasm and any host call in flight). A
//! cancel request is also stored (`cancel_requested`), and a watcher polls
//! for requests made elsewhere — `meridian cancel` writes to the store
//! directly, so it needs no running API — every [`POLL`].
//!
//! # Recovery at start-up (the documented policy)
//!
//! [`Executions::recover`] runs before anything new is queued:
//! - outcomes the previous process kept on disk while the store was out of
//!   reach ([`super::spool`]) are recorded first, so a step that ended
//!   during an outage is not taken for interrupted;
//! - `queued` executions (stored, never started, or buffered behind an
//!   overlap policy) are queued again, as they were;
//! - `running` executions were cut off by a crash or a kill: their
//!   in-flight attempts and step runs become `interrupted`, then the job's
//!   `on_interrupted` decides: `retry_step` (default) requeues the
//!   execution and the engine resumes it — the interrupted step is
//!   retried if its retry policy has attempts left, else its on-failure
//!   action applies; `fail` ends it `failed` with error kind
//!   `interrupted`. Nothing is silently lost: every interrupted attempt
//!   stays on record.

use super::{Engine, EngineError, ExecutionReport, ExecutionStatus, Fence};
use crate::model::{self, Issue, OnInterrupted};
use crate::queue::{QueueConfig, QueueManager, QueuedRun, RunHandler, RunOutcome};
use crate::scheduler::{
    Clock, ClusterClock, Dispatcher, Origin, RunPayload, Scheduler, SchedulerConfig,
    SchedulerHandle,
};
use crate::store::{NewExecution, Store, StoreError};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the cancel watcher looks for requests made through the store.
pub const POLL: Duration = Duration::from_millis(500);

/// Running executions on this node and their cancel tokens.
#[derive(Debug, Clone, Default)]
struct Running(Arc<Mutex<HashMap<String, CancellationToken>>>);

impl Running {
    fn insert(&self, id: &str) -> CancellationToken {
        let token = CancellationToken::new();
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned(), token.clone());
        token
    }

    fn remove(&self, id: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    fn get(&self, id: &str) -> Option<CancellationToken> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    fn ids(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }
}

/// The queue's run handler: runs the execution whose id is the run id.
#[derive(Clone)]
pub struct EngineHandler {
    engine: Arc<Engine>,
    running: Running,
    /// Set at shutdown: a run dropped from then on stays `running` in the
    /// store, to be recovered at the next start.
    stopping: Arc<AtomicBool>,
}

impl EngineHandler {
    /// A handler running executions with `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        EngineHandler {
            engine,
            running: Running::default(),
            stopping: Arc::default(),
        }
    }
}

/// Records a run whose future was dropped before it ended: the queue
/// aborted it (a schedule's `cancel_other` overlap policy replaced it).
/// Its in-flight attempt becomes `interrupted` and the execution
/// `cancelled`. At shutdown nothing is recorded: the execution stays
/// `running` and recovery decides at the next start.
struct AbortGuard {
    engine: Arc<Engine>,
    id: String,
    /// The epoch the run held its execution under.
    fence: Fence,
    stopping: Arc<AtomicBool>,
    armed: bool,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if !self.armed || self.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let engine = Arc::clone(&self.engine);
        let id = std::mem::take(&mut self.id);
        let fence = self.fence.clone();
        handle.spawn(async move {
            let store = engine.store();
            let now_us = engine.timer().now().timestamp_micros();
            let error = json!({"kind": "cancelled", "message": "aborted by the queue: a newer fire of its schedule replaced it (overlap policy cancel_other)"});
            let recorded = async {
                // The aborted run's last write (an attempt starting, say)
                // may still be on its way through the writer: it lands
                // first, then is interrupted.
                store.settle_writes().await?;
                // Dropped before it read its execution: the epoch stored is
                // the one it would have read.
                let epoch = match fence.epoch() {
                    Some(e) => e,
                    None => match store.get_execution(&id).await? {
                        Some(row) => row.epoch,
                        None => return Ok(false),
                    },
                };
                store.interrupt_running(&id, epoch, now_us).await?;
                let runs = store.list_step_runs(&id).await?.len();
                store
                    .finish_execution(
                        &id,
                        ExecutionStatus::Cancelled.as_str(),
                        Some(&error.to_string()),
                        i64::try_from(runs).unwrap_or(i64::MAX),
                        epoch,
                        now_us,
                    )
                    .await
            };
            match recorded.await {
                Ok(_) => tracing::info!(execution_id = %id, "aborted execution recorded as cancelled"),
                Err(e) => tracing::error!(execution_id = %id, "cannot record an aborted execution; recovery will at the next start: {e}"),
            }
        });
    }
}

impl RunHandler<RunPayload> for EngineHandler {
    async fn handle(&self, run: QueuedRun<RunPayload>) -> RunOutcome {
        let (waited, started) = (run.enqueued_at.elapsed(), tokio::time::Instant::now());
        let token = self.running.insert(&run.run_id);
        let fence = Fence::new();
        let mut guard = AbortGuard {
            engine: Arc::clone(&self.engine),
            id: run.run_id.clone(),
            fence: fence.clone(),
            stopping: Arc::clone(&self.stopping),
            armed: true,
        };
        let result = self.engine.run_fenced(&run.run_id, token, &fence).await;
        guard.armed = false;
        self.running.remove(&run.run_id);
        if let Some(metrics) = self.engine.metrics() {
            let ok = matches!(&result, Ok(r) if r.status == ExecutionStatus::Succeeded);
            metrics.record_execution(run.zone.name(), waited, started.elapsed(), ok);
        }
        match result {
            Ok(report) => match report.status {
                ExecutionStatus::Succeeded => RunOutcome::Succeeded,
                status => RunOutcome::Failed(status.as_str().to_owned()),
            },
            Err(e @ EngineError::Superseded(_)) => {
                // Another node holds it now and records the rest: nothing
                // here is this node's to release.
                tracing::warn!(execution_id = %run.run_id, "{e}");
                RunOutcome::Failed(e.to_string())
            }
            Err(e) => {
                // Not left stranded under this node's live lease: released,
                // it is claimed and recovered by policy at the next turn of
                // a cluster loop (or at the next start).
                let released = self.engine.store().release_execution(&run.run_id).await;
                tracing::error!(execution_id = %run.run_id, released = ?released, "execution could not be recorded; released for recovery: {e}");
                RunOutcome::Failed(e.to_string())
            }
        }
    }
}

/// Why an execution could not be submitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("job {0:?} does not exist")]
    JobNotFound(String),
    #[error("the parameters do not fit the job")]
    Invalid(Vec<Issue>),
    #[error("the queues are shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored job {0:?} does not parse")]
    BadJob(String),
}

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was queued and is now cancelled.
    Cancelled,
    /// It is running; its current step is being stopped.
    Cancelling,
    /// It had already ended with this status.
    AlreadyFinished(ExecutionStatus),
}

/// What [`Executions::recover`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Queued executions queued again.
    pub requeued: Vec<String>,
    /// Interrupted executions resumed under `retry_step`.
    pub resumed: Vec<String>,
    /// Interrupted executions failed under `fail`.
    pub failed: Vec<String>,
    /// Interrupted executions whose cancellation had been requested:
    /// recorded `cancelled`, not resumed.
    pub cancelled: Vec<String>,
}

/// The engine, the queues and the scheduler of one node.
pub struct Executions {
    engine: Arc<Engine>,
    running: Running,
    stopping: Arc<AtomicBool>,
    queues: QueueManager<RunPayload>,
    scheduler: SchedulerHandle,
    watcher: tokio::task::JoinHandle<()>,
    /// The cluster loop, when started.
    cluster: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Executions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executions").finish_non_exhaustive()
    }
}

impl Executions {
    /// Creates the queues with the engine as their handler, recovers what
    /// the last run of this node left unfinished, then starts the scheduler
    /// (which catches up missed fires under their misfire policies).
    pub async fn start(
        engine: Arc<Engine>,
        queue_config: QueueConfig,
        clock: Arc<dyn Clock>,
        scheduler_config: SchedulerConfig,
    ) -> anyhow::Result<(Self, RecoveryReport)> {
        let handler = EngineHandler::new(Arc::clone(&engine));
        let running = handler.running.clone();
        let stopping = Arc::clone(&handler.stopping);
        let dispatcher = Dispatcher::new(queue_config, handler)?;
        let queues = dispatcher.queues().clone();
        // Recovery first: what was queued before the crash keeps its place
        // ahead of the fires the scheduler catches up.
        let report = recover(&engine, &queues).await?;
        let scheduler =
            Scheduler::spawn(engine.store().clone(), clock, dispatcher, scheduler_config).await?;
        let watcher = tokio::spawn(watch_cancel_requests(
            engine.store().clone(),
            running.clone(),
        ));
        Ok((
            Executions {
                engine,
                running,
                stopping,
                queues,
                scheduler,
                watcher,
                cluster: Mutex::new(None),
            },
            report,
        ))
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn scheduler(&self) -> &SchedulerHandle {
        &self.scheduler
    }

    pub fn queues(&self) -> &QueueManager<RunPayload> {
        &self.queues
    }

    /// Stores and queues an execution of the stored job `job_id` with
    /// `params` (checked against the job's declarations; defaults filled
    /// in). Returns the execution id.
    pub async fn submit(
        &self,
        job_id: &str,
        params: &Map<String, Value>,
        trigger: &str,
    ) -> Result<String, SubmitError> {
        let store = self.engine.store();
        let stored = store
            .get_job(job_id)
            .await?
            .ok_or_else(|| SubmitError::JobNotFound(job_id.to_owned()))?;
        let job = model::parse_job(&stored.definition)
            .map_err(|_| SubmitError::BadJob(job_id.to_owned()))?;
        let params = model::resolve_params(&job, params).map_err(SubmitError::Invalid)?;
        let zone: Tz = job.timezone.parse().unwrap_or(chrono_tz::UTC);
        let id = uuid::Uuid::now_v7().to_string();
        let now_us = self.engine.timer().now().timestamp_micros();
        store
            .insert_execution(&NewExecution {
                id: id.clone(),
                job_id: job.id.clone(),
                trigger: trigger.to_owned(),
                schedule_id: None,
                fire_nominal_local: None,
                fire_utc_offset_s: None,
                timezone: job.timezone.clone(),
                priority: job.priority,
                params: Value::Object(params).to_string(),
                scheduled_at_us: Some(now_us),
                queued_at_us: now_us,
            })
            .await?;
        let run = QueuedRun::new(&id, &job.id, zone, job.priority, adhoc_payload());
        if self.queues.submit(run).is_err() {
            let _ = store
                .cancel_queued(&id, &cancel_error("the node is shutting down"), now_us)
                .await;
            return Err(SubmitError::ShuttingDown);
        }
        tracing::info!(execution_id = %id, job_id = %job.id, trigger, "execution queued");
        Ok(id)
    }

    /// Cancels an execution: see the module docs.
    pub async fn cancel(&self, id: &str) -> Result<Option<CancelOutcome>, StoreError> {
        let store = self.engine.store();
        let now_us = self.engine.timer().now().timestamp_micros();
        let Some(status) = store.request_cancel(id, now_us).await? else {
            return Ok(None);
        };
        if let Some(done) = ExecutionStatus::parse(&status).filter(|s| s.is_final()) {
            return Ok(Some(CancelOutcome::AlreadyFinished(done)));
        }
        if let Some(token) = self.running.get(id) {
            token.cancel();
            return Ok(Some(CancelOutcome::Cancelling));
        }
        if status == "queued" {
            let _ = self.queues.cancel(id);
            if store
                .cancel_queued(id, &cancel_error("cancelled while queued"), now_us)
                .await?
            {
                tracing::info!(execution_id = %id, "queued execution cancelled");
                return Ok(Some(CancelOutcome::Cancelled));
            }
        }
        // Running on another node, or it just started here: the watcher
        // delivers the stored request.
        Ok(Some(CancelOutcome::Cancelling))
    }

    /// Starts the cluster loop (see [`cluster_loop`]) that renews this
    /// node's leases, measures `clock` against the store's, and takes over
    /// expired leases every `every`; stopped by [`Executions::shutdown`].
    pub fn start_cluster_loop(&self, every: Duration, clock: Arc<ClusterClock>) {
        let engine = Arc::clone(&self.engine);
        let (queues, scheduler) = (self.queues.clone(), self.scheduler.clone());
        let task = tokio::spawn(async move {
            let sync = sync_schedules(engine.store().clone(), scheduler, SCHEDULE_SYNC);
            tokio::join!(cluster_loop(engine, queues, every, clock), sync);
        });
        let mut slot = self.cluster.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = slot.replace(task) {
            old.abort();
        }
    }

    /// Re-queues and recovers what the previous run of this node left
    /// unfinished; see the module docs for the policy. [`Executions::start`]
    /// does this before the scheduler starts.
    pub async fn recover(&self) -> Result<RecoveryReport, StoreError> {
        recover(&self.engine, &self.queues).await
    }

    /// Stops the scheduler, then the queues: running executions get the
    /// scheduler's [`SchedulerConfig::shutdown_grace`] to finish; the rest
    /// stay `running` in the store and are recovered at the next start, and
    /// queued ones stay `queued`.
    pub async fn shutdown(self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.watcher.abort();
        if let Some(task) = self
            .cluster
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
        match self.scheduler.shutdown().await {
            Ok(report) => tracing::info!(
                queued = report.queued.len(),
                buffered = report.buffered.len(),
                aborted = report.aborted.len(),
                "scheduler and queues stopped; unfinished executions are recovered at the next start or taken over by another node"
            ),
            Err(e) => {
                tracing::warn!("scheduler shutdown: {e}");
                let left = self.queues.shutdown(Duration::ZERO).await;
                tracing::warn!(aborted = ?left.aborted, "queues stopped");
            }
        }
    }

    /// Runs an execution here and now, outside the queues (`meridian run`).
    pub async fn run_inline(
        &self,
        id: &str,
        cancel: CancellationToken,
    ) -> Result<ExecutionReport, EngineError> {
        self.engine.run(id, cancel).await
    }
}

/// How many unfinished executions one claim takes.
const CLAIM_BATCH: i64 = 500;

/// See [`Executions::recover`]: claims what this node id held before (and
/// what nobody holds under a live lease), then recovers each.
async fn recover(
    engine: &Engine,
    queues: &QueueManager<RunPayload>,
) -> Result<RecoveryReport, StoreError> {
    let store = engine.store();
    let mut report = RecoveryReport::default();
    // Outcomes a previous process kept on disk while the store was out of
    // reach go in first, under the epochs they were made with: then the
    // claim below finds those attempts ended, and no step that succeeded
    // runs again.
    if let Some(spool) = engine.spool() {
        let replayed = spool.replay(store).await?;
        if replayed != super::spool::ReplayReport::default() {
            tracing::info!(
                recorded = replayed.recorded,
                refused = replayed.refused,
                unreadable = replayed.unreadable,
                "replayed the outcomes kept on disk during a store outage"
            );
        }
    }
    loop {
        let claimed = store.claim_executions(true, CLAIM_BATCH).await?;
        let last = claimed.len() < usize::try_from(CLAIM_BATCH).unwrap_or(usize::MAX);
        for row in claimed {
            recover_one(engine, queues, row, &mut report).await?;
        }
        if last {
            break;
        }
    }
    if report != RecoveryReport::default() {
        tracing::info!(
            requeued = report.requeued.len(),
            resumed = report.resumed.len(),
            failed = report.failed.len(),
            "recovered unfinished executions"
        );
    }
    Ok(report)
}

/// Recovers one claimed execution under the policy in the module docs.
async fn recover_one(
    engine: &Engine,
    queues: &QueueManager<RunPayload>,
    row: crate::store::ExecutionRow,
    report: &mut RecoveryReport,
) -> Result<(), StoreError> {
    let store = engine.store();
    let now_us = engine.timer().now().timestamp_micros();
    if row.status == "running" {
        let interrupted = store.interrupt_running(&row.id, row.epoch, now_us).await?;
        if row.cancel_requested {
            // Asked to stop before the node died: do not resume.
            let error = json!({"kind": "cancelled", "message": "cancelled; the node stopped before the cancellation completed"});
            store
                .finish_execution(
                    &row.id,
                    ExecutionStatus::Cancelled.as_str(),
                    Some(&error.to_string()),
                    row.step_runs,
                    row.epoch,
                    now_us,
                )
                .await?;
            report.cancelled.push(row.id);
            return Ok(());
        }
        let policy = policy_of(engine.store(), &row.job_id, row.job_version).await?;
        tracing::warn!(execution_id = %row.id, job_id = %row.job_id, ?interrupted, ?policy, "execution was interrupted by a stop of its node");
        match policy {
            OnInterrupted::Fail => {
                let error = json!({"kind": "interrupted", "message": "the node stopped while the execution ran; the job's on_interrupted is fail"});
                store
                    .finish_execution(
                        &row.id,
                        ExecutionStatus::Failed.as_str(),
                        Some(&error.to_string()),
                        row.step_runs,
                        row.epoch,
                        now_us,
                    )
                    .await?;
                report.failed.push(row.id);
                return Ok(());
            }
            OnInterrupted::RetryStep => {
                if !store.requeue_execution(&row.id, row.epoch, now_us).await? {
                    // Claimed again meanwhile: the claimer recovers it.
                    tracing::warn!(execution_id = %row.id, "a recovered execution was claimed by another node before it was queued again");
                    return Ok(());
                }
                report.resumed.push(row.id.clone());
            }
        }
    } else {
        report.requeued.push(row.id.clone());
    }
    let zone: Tz = row.timezone.parse().unwrap_or(chrono_tz::UTC);
    let run = QueuedRun::new(&row.id, &row.job_id, zone, row.priority, adhoc_payload());
    if queues.submit(run).is_err() {
        tracing::error!(execution_id = %row.id, "could not queue a recovered execution: the queues are shutting down");
    }
    Ok(())
}

/// How often a node looks for schedule changes made by other nodes.
pub const SCHEDULE_SYNC: Duration = Duration::from_secs(1);

/// Keeps this node's scheduler in step with schedules created, changed or
/// deleted through other nodes sharing the store: polls the schedules'
/// fingerprint (count and latest change) every `every`, and when it moved,
/// reloads each schedule whose `updated_at_us` changed and removes the
/// deleted ones. Reloading a schedule this node changed itself is
/// harmless: fire identities keep every fire once.
async fn sync_schedules(store: Store, scheduler: SchedulerHandle, every: Duration) {
    let mut known: HashMap<String, i64> = match store.schedule_versions().await {
        Ok(v) => v.into_iter().collect(),
        Err(e) => {
            tracing::warn!("cannot read the schedules to follow other nodes' changes: {e}");
            HashMap::new()
        }
    };
    let mut fingerprint = store.schedule_fingerprint().await.ok();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = match store.schedule_fingerprint().await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("cannot poll the schedules: {e}");
                continue;
            }
        };
        if Some(now) == fingerprint {
            continue;
        }
        let current: HashMap<String, i64> = match store.schedule_versions().await {
            Ok(v) => v.into_iter().collect(),
            Err(e) => {
                tracing::warn!("cannot read the schedules: {e}");
                continue;
            }
        };
        for (id, updated) in &current {
            if known.get(id) != Some(updated) {
                match scheduler.reload(id).await {
                    Ok(_) => {
                        tracing::info!(schedule_id = %id, "schedule changed on another node; reloaded")
                    }
                    Err(e) => {
                        tracing::warn!(schedule_id = %id, "cannot reload a schedule changed on another node: {e}")
                    }
                }
            }
        }
        for id in known.keys().filter(|id| !current.contains_key(*id)) {
            if let Err(e) = scheduler.remove(id).await {
                tracing::warn!(schedule_id = %id, "cannot drop a schedule deleted on another node: {e}");
            }
        }
        known = current;
        fingerprint = Some(now);
    }
}

/// The cluster loop of a node sharing its store with others: every
/// `every`, renews this node's heartbeat (which keeps its leases) on the
/// store's clock, measures this node's clock against the store's for
/// `clock`, then claims and recovers what other nodes let expire (a node
/// killed or cut off), under the same policy as recovery at start-up.
///
/// The loop claims nothing until this node's own heartbeats have gone on
/// without a gap for one lease (on the store's clock). A gap means the
/// store was out of reach — down, restarting, or slow enough that the
/// heartbeat waited for a connection — and then it most likely was for
/// every node: each lease looks expired the moment the store is back, and
/// the nodes that hold them need a heartbeat's time to renew them and to
/// record what their runs did meanwhile. Without this, an outage longer
/// than the lease handed live nodes' runs to whichever node reconnected
/// first, and finished steps ran again.
async fn cluster_loop(
    engine: Arc<Engine>,
    queues: QueueManager<RunPayload>,
    every: Duration,
    clock: Arc<ClusterClock>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lease_us = engine.store().node().lease_us;
    // Beats further apart than two periods are a gap.
    let max_gap_us = i64::try_from(every.as_micros().saturating_mul(2)).unwrap_or(i64::MAX);
    let mut failing = false;
    // The store's time of the last heartbeat, and since when they have
    // gone on without a gap.
    let mut last: Option<i64> = None;
    let mut steady_since = 0;
    loop {
        tick.tick().await;
        let store = engine.store();
        let beat = match renew_heartbeat(store, &clock, every / 2).await {
            Ok(Some(at)) => at.timestamp_micros(),
            Ok(None) => continue,
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!("cannot renew this node's heartbeat and leases: {e}");
                }
                continue;
            }
        };
        failing = false;
        match last {
            Some(previous) if beat - previous <= max_gap_us => {}
            Some(previous) => {
                tracing::warn!(
                    gap_ms = (beat - previous) / 1_000,
                    wait_ms = lease_us / 1_000,
                    "the store was out of reach; heartbeat renewed now; taking over no other node's executions for one lease, so that their nodes renew theirs first"
                );
                steady_since = beat;
            }
            None => steady_since = beat,
        }
        last = Some(beat);
        if beat - steady_since < lease_us {
            continue;
        }
        let claimed = match store.claim_executions(false, CLAIM_BATCH).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot claim expired executions: {e}");
                continue;
            }
        };
        if claimed.is_empty() {
            continue;
        }
        let mut report = RecoveryReport::default();
        for row in claimed {
            let id = row.id.clone();
            if let Err(e) = recover_one(&engine, &queues, row, &mut report).await {
                tracing::error!(execution_id = %id, "cannot take over an execution: {e}");
            }
        }
        tracing::warn!(
            requeued = report.requeued.len(),
            resumed = report.resumed.len(),
            failed = report.failed.len(),
            cancelled = report.cancelled.len(),
            "took over executions whose node's lease expired"
        );
    }
}

/// Renews this node's heartbeat ([`measure_clock`]), trying again at once
/// (after 50 ms, then twice as long each time, for up to `within`) when
/// the store is unavailable. A session the database terminated (an
/// operator's `pg_terminate_backend`, a failover, a proxy restarting) fails
/// the call it was running; the pool opens a new one for the next try. A
/// node whose heartbeat waited for its next tick after each such failure
/// could miss a whole lease while its sessions were being killed, and
/// another node would take its live runs over.
async fn renew_heartbeat(
    store: &Store,
    clock: &ClusterClock,
    within: Duration,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
    let since = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        match measure_clock(store, clock).await {
            Err(e) if e.unavailable().is_some() && since.elapsed() + delay <= within => {
                tracing::debug!("heartbeat failed, trying again at once: {e}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            r => return r,
        }
    }
}

/// How far a node's clock may be from the store's before it says so.
pub const CLOCK_SKEW_WARN: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

/// Renews this node's heartbeat and measures its clock against the
/// store's with it: the store stamps the heartbeat with its own time,
/// which is compared with the middle of the round trip. `clock` is set to
/// follow the store's time, and the offset is stored with the next
/// heartbeat for operators (`GET /api/v2/cluster`). Says so in the log
/// when the offset passes [`CLOCK_SKEW_WARN`] (or comes back under it).
///
/// Returns the store's time of the heartbeat; `None` when this node is not
/// registered.
pub async fn measure_clock(
    store: &Store,
    clock: &ClusterClock,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
    let previous = clock.offset();
    let before = chrono::Utc::now();
    let db = store.heartbeat(previous.num_microseconds()).await?;
    let after = chrono::Utc::now();
    let Some(db) = db.and_then(chrono::DateTime::from_timestamp_micros) else {
        return Ok(None);
    };
    let middle = before + (after - before) / 2;
    let offset = db - middle;
    clock.set_offset(offset);
    let skewed = |d: chrono::TimeDelta| d.abs() > CLOCK_SKEW_WARN;
    if skewed(offset) && (!skewed(previous) || (offset - previous).abs() > CLOCK_SKEW_WARN) {
        tracing::warn!(
            offset_ms = offset.num_milliseconds(),
            "this node's clock is off the store's; it schedules and stamps on the store's time, but fix its time sync (NTP)"
        );
    } else if skewed(previous) && !skewed(offset) {
        tracing::info!(
            offset_ms = offset.num_milliseconds(),
            "this node's clock agrees with the store's again"
        );
    }
    Ok(Some(db))
}

async fn policy_of(
    store: &Store,
    job_id: &str,
    version: Option<i64>,
) -> Result<OnInterrupted, StoreError> {
    let stored = match version {
        Some(v) => store.get_job_version(job_id, v).await?,
        None => store.get_job(job_id).await?,
    };
    Ok(stored
        .and_then(|s| model::parse_job(&s.definition).ok())
        .map(|j| j.on_interrupted)
        .unwrap_or_default())
}

fn cancel_error(message: &str) -> String {
    json!({"kind": "cancelled", "message": message}).to_string()
}

/// The payload of a run that no schedule started.
fn adhoc_payload() -> RunPayload {
    RunPayload {
        schedule_id: Arc::from(""),
        fire: None,
        origin: Origin::Manual,
    }
}

/// Delivers cancel requests written to the store (by `meridian cancel`, or
/// by another node's API) to the runs of this node.
async fn watch_cancel_requests(store: Store, running: Running) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ids = running.ids();
        if ids.is_empty() {
            continue;
        }
        match store.cancel_requested(&ids).await {
            Ok(requested) => {
                for id in requested {
                    if let Some(token) = running.get(&id)
                        && !token.is_cancelled()
                    {
                        tracing::info!(execution_id = %id, "cancel requested through the store");
                        token.cancel();
                    }
                }
            }
            Err(e) => tracing::warn!("cannot read cancel requests: {e}"),
        }
    }
}
