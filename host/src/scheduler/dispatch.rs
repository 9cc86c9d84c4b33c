//! From fires to runs: the overlap policy, on top of the per-zone queues.
//!
//! The [`Dispatcher`] turns a fire (or a manual trigger) into a run on the
//! queue of the schedule's zone, and applies the schedule's overlap policy
//! ([`RunOverlap`]) against the runs of that schedule that are still queued
//! or running:
//!
//! | policy         | nothing active | a run active                                   |
//! |----------------|----------------|------------------------------------------------|
//! | `allow`        | enqueue        | enqueue alongside                              |
//! | `skip`         | enqueue        | skip (the fire is recorded as `skipped`)       |
//! | `buffer_one`   | enqueue        | buffer if nothing is buffered yet, else skip   |
//! | `buffer_all`   | enqueue        | buffer (FIFO)                                  |
//! | `cancel_other` | enqueue        | cancel the queued / abort the running ones, enqueue |
//!
//! A buffered fire becomes a run when the schedule has no run left queued or
//! running; buffered fires therefore run one after another, in fire order.
//!
//! # Plan, then commit or abandon
//!
//! A fire may run only once its identity is stored (the primary key of the
//! `fires` table refuses a second one). So deciding and doing are split:
//! [`Dispatcher::plan`] only *decides* (it reads the state and allocates a
//! run id, nothing else), the scheduler stores the fire with the plan's
//! outcome and run id, and then calls [`Dispatcher::commit`] for a fire the
//! store accepted or [`Dispatcher::abandon`] for one it refused. A refused
//! fire therefore never cancels, buffers or queues anything. Plans are
//! independent of each other only when each concerns a different schedule
//! (or uses `allow`): the scheduler puts at most one fire per schedule in a
//! batch, and backfills plan with `allow`.
//!
//! # Learning that a run ended
//!
//! The queue calls [`RunHandler::finished`] once for every run that got a
//! worker. The dispatcher wraps the caller's handler to send the run id down
//! a channel; the scheduler loop receives it ([`Dispatcher::next_ended`]) and
//! calls [`Dispatcher::run_ended`], which releases the next buffered fire.
//! All dispatcher state lives in the scheduler loop's task: no lock.
//!
//! The dispatcher never runs a job itself: the caller's [`RunHandler`] (the
//! engine) gets a [`QueuedRun<RunPayload>`] and decides what it means.

use crate::model::schedule::RunOverlap;
use crate::queue::{
    QueueConfig, QueueError, QueueManager, QueuedRun, RunHandler, RunOutcome, RunReport,
};
use crate::schedule::Fire;
use chrono_tz::Tz;
use foldhash::HashMap;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A fire at its time.
    Scheduled,
    /// A fire missed while the scheduler was down, run under the misfire
    /// policy at start-up.
    CatchUp,
    /// A fire of a past range, asked for with `backfill`.
    Backfill,
    /// `trigger_now`: a run with no fire identity.
    Manual,
}

impl Origin {
    /// The text stored in `fires.origin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Scheduled => "scheduled",
            Origin::CatchUp => "catch_up",
            Origin::Backfill => "backfill",
            Origin::Manual => "manual",
        }
    }
}

/// What a queued run carries for the engine. The run id and the job id are
/// on the [`QueuedRun`] itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPayload {
    pub schedule_id: Arc<str>,
    /// The fire this run is for: with the schedule id, `nominal` and
    /// `offset_seconds` are its identity. `None` for a manual run.
    pub fire: Option<Fire>,
    pub origin: Origin,
}

/// What the scheduler asks the dispatcher about: a run wanted for a
/// schedule.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub schedule_id: Arc<str>,
    pub job_id: Arc<str>,
    /// The queue the run waits in.
    pub zone: Tz,
    pub priority: i32,
    pub fire: Option<Fire>,
    pub origin: Origin,
}

/// What a plan will do once committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Queue the run now.
    Enqueue,
    /// Keep the run until the schedule's active runs have ended.
    Buffer,
    /// Drop the fire; nothing runs.
    Skip,
    /// Cancel the schedule's queued runs, abort its running ones, drop its
    /// buffered ones, then queue this run.
    Replace,
}

/// A decision about one fire, not yet carried out.
#[derive(Debug)]
#[must_use = "carry a plan out with Dispatcher::commit or drop it with Dispatcher::abandon"]
pub struct Plan {
    action: Action,
    run: QueuedRun<RunPayload>,
}

impl Plan {
    pub fn action(&self) -> Action {
        self.action
    }

    /// The text stored in `fires.outcome`: `enqueued`, `buffered` or
    /// `skipped`.
    pub fn outcome(&self) -> &'static str {
        match self.action {
            Action::Enqueue | Action::Replace => "enqueued",
            Action::Buffer => "buffered",
            Action::Skip => "skipped",
        }
    }

    /// The id the run will have; `None` when the fire is skipped.
    pub fn run_id(&self) -> Option<&str> {
        match self.action {
            Action::Skip => None,
            _ => Some(&self.run.run_id),
        }
    }

    pub fn run(&self) -> &QueuedRun<RunPayload> {
        &self.run
    }
}

/// A committed plan whose run the queue refused (it is shutting down).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("run {run_id} could not be queued: {reason}")]
pub struct DispatchError {
    pub run_id: String,
    pub reason: QueueError,
}

/// What [`Dispatcher::shutdown`] left behind: runs that will not run.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Queued runs that never started.
    pub queued: Vec<String>,
    /// Buffered runs that were never queued.
    pub buffered: Vec<String>,
    /// Runs still running when the grace period ran out; they were aborted.
    pub aborted: Vec<String>,
}

/// A schedule's runs that are queued or running, and its buffered fires.
/// Exists only while one of the two is not empty.
#[derive(Debug, Default)]
struct Activity {
    /// Run ids, queued or running (usually zero or one).
    active: Vec<String>,
    pending: VecDeque<QueuedRun<RunPayload>>,
}

/// Overlap policies over the per-zone queues; see the module docs.
pub struct Dispatcher {
    queues: QueueManager<RunPayload>,
    /// Run ids whose run ended, sent by [`Tracked::finished`].
    ended: mpsc::UnboundedReceiver<String>,
    /// Only schedules with something active or buffered.
    schedules: HashMap<Arc<str>, Activity>,
    /// Active run id → its schedule.
    owners: HashMap<String, Arc<str>>,
    /// Runs `cancel_other` took out before they started (queued or
    /// buffered), for the caller to record: [`Dispatcher::take_dropped`].
    dropped: Vec<String>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("busy_schedules", &self.schedules.len())
            .field("active_runs", &self.owners.len())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Creates the per-zone queues with `handler` executing the runs. Must be
    /// called inside a tokio runtime.
    pub fn new(
        config: QueueConfig,
        handler: impl RunHandler<RunPayload>,
    ) -> Result<Self, QueueError> {
        let (tx, ended) = mpsc::unbounded_channel();
        let queues = QueueManager::new(
            config,
            Tracked {
                inner: handler,
                ended: tx,
            },
        )?;
        Ok(Dispatcher {
            queues,
            ended,
            schedules: HashMap::default(),
            owners: HashMap::default(),
            dropped: Vec::new(),
        })
    }

    /// Decides what a fire does under `overlap`. Has no side effect: the run
    /// id is allocated, nothing is queued, cancelled or buffered.
    pub fn plan(&self, request: RunRequest, overlap: RunOverlap) -> Plan {
        let (active, pending) = self.activity(&request.schedule_id);
        let busy = active + pending > 0;
        let action = match overlap {
            RunOverlap::Allow => Action::Enqueue,
            _ if !busy => Action::Enqueue,
            RunOverlap::Skip => Action::Skip,
            RunOverlap::BufferOne if pending == 0 => Action::Buffer,
            RunOverlap::BufferOne => Action::Skip,
            RunOverlap::BufferAll => Action::Buffer,
            RunOverlap::CancelOther => Action::Replace,
        };
        Plan {
            action,
            run: new_run(request),
        }
    }

    /// A manual run: queued at once whatever the overlap policy, and
    /// counted as active for the schedule's later fires.
    pub fn plan_manual(&self, request: RunRequest) -> Plan {
        Plan {
            action: Action::Enqueue,
            run: new_run(request),
        }
    }

    /// Carries a plan out (its fire has been stored).
    pub fn commit(&mut self, plan: Plan) -> Result<(), DispatchError> {
        let Plan { action, run } = plan;
        match action {
            Action::Skip => Ok(()),
            Action::Enqueue => self.submit(run),
            Action::Buffer => {
                let schedule = Arc::clone(&run.payload.schedule_id);
                match self.schedules.get_mut(&schedule) {
                    Some(activity) if !activity.active.is_empty() => {
                        activity.pending.push_back(run);
                        Ok(())
                    }
                    // Nothing left to wait for: run it now, behind any
                    // buffered fire.
                    Some(activity) => {
                        activity.pending.push_back(run);
                        self.release(&schedule);
                        Ok(())
                    }
                    None => self.submit(run),
                }
            }
            Action::Replace => {
                let schedule = Arc::clone(&run.payload.schedule_id);
                self.stop_all(&schedule);
                self.submit(run)
            }
        }
    }

    /// Carries plans out in order, as [`Dispatcher::commit`] one by one
    /// would, but queues the runs of consecutive plain enqueues (a burst's
    /// fires, usually all of them) with one
    /// [`QueueManager::submit_many`](crate::queue::QueueManager::submit_many).
    /// Returns the runs that could not be queued.
    pub fn commit_all(&mut self, plans: impl IntoIterator<Item = Plan>) -> Vec<DispatchError> {
        let mut errors = Vec::new();
        let mut runs = Vec::new();
        for plan in plans {
            if matches!(plan.action, Action::Enqueue) {
                runs.push(plan.run);
                continue;
            }
            self.submit_all(std::mem::take(&mut runs), &mut errors);
            if let Err(e) = self.commit(plan) {
                errors.push(e);
            }
        }
        self.submit_all(runs, &mut errors);
        errors
    }

    /// Drops a plan whose fire the store refused (already fired): nothing
    /// happened and nothing needs undoing.
    pub fn abandon(&self, plan: Plan) {
        tracing::debug!(
            schedule_id = %plan.run.payload.schedule_id,
            run_id = %plan.run.run_id,
            "fire already recorded; its plan is abandoned"
        );
    }

    /// The runs that `cancel_other` took out of the queues or the buffer
    /// since the last call: they never started, and their stored
    /// executions are still `queued`.
    pub fn take_dropped(&mut self) -> Vec<String> {
        std::mem::take(&mut self.dropped)
    }

    /// Waits for the next run to end and returns its id (for
    /// [`Dispatcher::run_ended`]). `None` once the queues are gone.
    pub async fn next_ended(&mut self) -> Option<String> {
        self.ended.recv().await
    }

    /// The id of a run that has ended, if one is waiting.
    pub fn try_next_ended(&mut self) -> Option<String> {
        self.ended.try_recv().ok()
    }

    /// A run ended: it is no longer active, and if its schedule has nothing
    /// else active, the next buffered fire is queued.
    pub fn run_ended(&mut self, run_id: &str) {
        let Some(schedule) = self.owners.remove(run_id) else {
            return;
        };
        if let Some(activity) = self.schedules.get_mut(&schedule) {
            activity.active.retain(|id| id != run_id);
        }
        self.release(&schedule);
    }

    /// (runs queued or running, fires buffered) for a schedule.
    pub fn activity(&self, schedule_id: &str) -> (usize, usize) {
        self.schedules
            .get(schedule_id)
            .map_or((0, 0), |a| (a.active.len(), a.pending.len()))
    }

    /// The queues, for their statistics.
    pub fn queues(&self) -> &QueueManager<RunPayload> {
        &self.queues
    }

    /// Drops the buffered fires, stops the queues (see
    /// [`QueueManager::shutdown`]) and reports what did not run.
    pub async fn shutdown(&mut self, grace: Duration) -> ShutdownReport {
        let buffered = self
            .schedules
            .drain()
            .flat_map(|(_, a)| a.pending.into_iter().map(|r| r.run_id))
            .collect();
        self.owners.clear();
        let left = self.queues.shutdown(grace).await;
        ShutdownReport {
            queued: left.queued.into_iter().map(|r| r.run_id).collect(),
            buffered,
            aborted: left.aborted,
        }
    }

    fn submit(&mut self, run: QueuedRun<RunPayload>) -> Result<(), DispatchError> {
        let run_id = run.run_id.clone();
        let schedule = Arc::clone(&run.payload.schedule_id);
        match self.queues.submit(run) {
            Ok(()) => {
                self.track(run_id, schedule);
                Ok(())
            }
            Err(e) => Err(DispatchError {
                run_id,
                reason: e.reason,
            }),
        }
    }

    /// [`Dispatcher::submit`] of several runs, with one call to the queues.
    fn submit_all(&mut self, runs: Vec<QueuedRun<RunPayload>>, errors: &mut Vec<DispatchError>) {
        if runs.is_empty() {
            return;
        }
        let keys: Vec<(String, Arc<str>)> = runs
            .iter()
            .map(|run| (run.run_id.clone(), Arc::clone(&run.payload.schedule_id)))
            .collect();
        let results = self.queues.submit_many(runs);
        for ((run_id, schedule), result) in keys.into_iter().zip(results) {
            match result {
                Ok(()) => self.track(run_id, schedule),
                Err(e) => errors.push(DispatchError {
                    run_id,
                    reason: e.reason,
                }),
            }
        }
    }

    /// Counts a queued run as its schedule's active run until it ends.
    fn track(&mut self, run_id: String, schedule: Arc<str>) {
        self.owners.insert(run_id.clone(), Arc::clone(&schedule));
        self.schedules
            .entry(schedule)
            .or_default()
            .active
            .push(run_id);
    }

    /// Queues the schedule's next buffered fire if nothing of it is active;
    /// forgets the schedule once idle.
    fn release(&mut self, schedule: &Arc<str>) {
        loop {
            let Some(activity) = self.schedules.get_mut(schedule) else {
                return;
            };
            if !activity.active.is_empty() {
                return;
            }
            let Some(next) = activity.pending.pop_front() else {
                self.schedules.remove(schedule);
                return;
            };
            match self.submit(next) {
                Ok(()) => return,
                Err(e) => tracing::error!(schedule_id = %schedule, "buffered fire lost: {e}"),
            }
        }
    }

    /// `cancel_other`: takes the schedule's queued runs out, aborts its
    /// running ones (they stay active until the queue reports their end)
    /// and drops its buffered fires.
    fn stop_all(&mut self, schedule: &Arc<str>) {
        let Some(activity) = self.schedules.get_mut(schedule) else {
            return;
        };
        let pending = std::mem::take(&mut activity.pending);
        if !pending.is_empty() {
            tracing::info!(schedule_id = %schedule, dropped = pending.len(), "cancel_other drops buffered fires");
        }
        self.dropped
            .extend(pending.into_iter().map(|run| run.run_id));
        let mut still_running = Vec::new();
        for run_id in std::mem::take(&mut activity.active) {
            match self.queues.cancel(&run_id) {
                Ok(_) => {
                    tracing::info!(schedule_id = %schedule, %run_id, "cancel_other: queued run cancelled");
                    self.owners.remove(&run_id);
                    self.dropped.push(run_id);
                }
                Err(QueueError::Running(_)) => {
                    if self.queues.abort_running(&run_id).is_ok() {
                        tracing::info!(schedule_id = %schedule, %run_id, "cancel_other: running run aborted");
                    }
                    still_running.push(run_id);
                }
                // Ended already; its end report is on its way.
                Err(_) => still_running.push(run_id),
            }
        }
        activity.active = still_running;
    }
}

fn new_run(request: RunRequest) -> QueuedRun<RunPayload> {
    QueuedRun::new(
        uuid::Uuid::now_v7().to_string(),
        request.job_id.as_ref(),
        request.zone,
        request.priority,
        RunPayload {
            schedule_id: request.schedule_id,
            fire: request.fire,
            origin: request.origin,
        },
    )
}

/// The caller's handler, plus a message to the dispatcher when a run ends.
struct Tracked<H> {
    inner: H,
    ended: mpsc::UnboundedSender<String>,
}

impl<H: RunHandler<RunPayload>> RunHandler<RunPayload> for Tracked<H> {
    fn handle(&self, run: QueuedRun<RunPayload>) -> impl Future<Output = RunOutcome> + Send {
        self.inner.handle(run)
    }

    fn finished(&self, report: &RunReport) {
        // First, so that a panicking inner `finished` cannot leave the
        // schedule "active" for ever. A closed channel means the scheduler
        // has stopped: nothing is waiting for the news.
        let _ = self.ended.send(report.run.run_id.clone());
        self.inner.finished(report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use std::sync::Mutex;
    use tokio::time::sleep;

    /// Records starts; each run sleeps 10 s.
    #[derive(Clone, Default)]
    struct Probe(Arc<Mutex<Vec<String>>>);

    impl RunHandler<RunPayload> for Probe {
        async fn handle(&self, run: QueuedRun<RunPayload>) -> RunOutcome {
            self.0.lock().unwrap().push(run.run_id.clone());
            sleep(Duration::from_secs(10)).await;
            RunOutcome::Succeeded
        }
    }

    fn request(minute: u32) -> RunRequest {
        let instant = Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap();
        RunRequest {
            schedule_id: Arc::from("s"),
            job_id: Arc::from("j"),
            zone: chrono_tz::UTC,
            priority: 0,
            fire: Some(Fire {
                instant,
                nominal: instant.naive_utc(),
                offset_seconds: 0,
                flag: None,
            }),
            origin: Origin::Scheduled,
        }
    }

    async fn settle(d: &mut Dispatcher) {
        for _ in 0..3 {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            while let Some(id) = d.try_next_ended() {
                d.run_ended(&id);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_plan_leaves_no_trace() {
        let probe = Probe::default();
        let mut d = Dispatcher::new(QueueConfig::default(), probe.clone()).unwrap();
        let plan = d.plan(request(0), RunOverlap::Skip);
        assert_eq!(plan.action(), Action::Enqueue);
        d.abandon(plan);
        assert_eq!(d.activity("s"), (0, 0));
        // The next fire is not skipped: nothing is active.
        let plan = d.plan(request(1), RunOverlap::Skip);
        assert_eq!(plan.action(), Action::Enqueue);
        let id = plan.run_id().unwrap().to_string();
        d.commit(plan).unwrap();
        settle(&mut d).await;
        assert_eq!(*probe.0.lock().unwrap(), [id]);
    }

    #[tokio::test(start_paused = true)]
    async fn buffered_fires_run_in_order_when_the_active_run_ends() {
        let probe = Probe::default();
        let mut d = Dispatcher::new(QueueConfig::default(), probe.clone()).unwrap();
        let mut ids = Vec::new();
        for minute in 0..3 {
            let plan = d.plan(request(minute), RunOverlap::BufferAll);
            ids.push(plan.run_id().unwrap().to_string());
            d.commit(plan).unwrap();
        }
        assert_eq!(d.activity("s"), (1, 2));
        for step in 1..=3 {
            settle(&mut d).await;
            assert_eq!(probe.0.lock().unwrap().len(), step);
            tokio::time::advance(Duration::from_secs(10)).await;
        }
        settle(&mut d).await;
        assert_eq!(*probe.0.lock().unwrap(), ids);
        assert_eq!(d.activity("s"), (0, 0));
    }
}
