//! The state all queues share, behind one mutex, and the dispatcher that
//! grants permits.
//!
//! The mutex is never held across an `.await`, nor while user code runs
//! (handlers execute in their own tasks; `finished` is called after
//! unlocking). Every change that can free a permit or make a queue ready ends
//! with [`Shared::dispatch`].
//!
//! Pool accounting invariant, true whenever the lock is free: a queue's
//! `workers` = its idle slots + its running runs. A new worker gets its idle
//! slot or its first run in the same critical section that counts it, and a
//! worker leaves the count in the same critical section that removes its
//! slot (or, if it dies, in its drop guard).

use super::stats::{Counters, QueueStats, millis};
use super::worker::{self, Start};
use super::{DynHandler, QueueConfig, QueueError, QueuedRun, RunInfo, RunOutcome, RunReport};
use super::{SubmitError, ZoneLimits};
use chrono_tz::Tz;
use foldhash::HashMap;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::runtime::Handle as Runtime;
use tokio::sync::{Notify, oneshot};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

/// Order inside a queue: priority descending, then submission order.
type Key = (Reverse<i32>, u64);

/// A run handed to a worker: its permit is already counted.
pub(super) struct Assignment {
    pub info: RunInfo,
    pub started_at: Instant,
    /// The task executing the handler.
    pub task: JoinHandle<RunOutcome>,
}

/// An idle worker, waiting on the other end for its next run. Dropping the
/// sender tells the worker to exit.
struct IdleSlot {
    worker: u64,
    tx: oneshot::Sender<Assignment>,
}

enum Location {
    Queued { zone: Tz, key: Key },
    Running { abort: AbortHandle },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    Closed,
}

struct Queue<P> {
    /// Creation order: breaks ties between never-served queues.
    ord: u64,
    limits: ZoneLimits,
    runs: BTreeMap<Key, QueuedRun<P>>,
    /// Last in, first out: the most recently busy worker takes the next run,
    /// so surplus workers stay idle long enough to time out.
    idle: Vec<IdleSlot>,
    workers: usize,
    running: usize,
    /// The grant number of the queue's last permit (0: never).
    last_grant: u64,
    /// The queue's key in [`State::ready`], if it is there.
    ready_key: Option<(u64, u64)>,
    counters: Counters,
}

impl<P> Queue<P> {
    /// The submission instant of the oldest queued run: the first run of
    /// each priority level is that level's oldest.
    fn oldest(&self) -> Option<Instant> {
        let mut oldest: Option<Instant> = None;
        let mut head = self.runs.first_key_value();
        while let Some(((Reverse(priority), _), run)) = head {
            oldest = Some(oldest.map_or(run.enqueued_at, |o| o.min(run.enqueued_at)));
            let next_level = (
                Bound::Excluded((Reverse(*priority), u64::MAX)),
                Bound::Unbounded,
            );
            head = self.runs.range(next_level).next();
        }
        oldest
    }
}

pub(super) struct State<P> {
    phase: Phase,
    queues: HashMap<Tz, Queue<P>>,
    /// Ready queues (runs waiting, below their max), keyed by
    /// (last grant, creation order): the first entry gets the next permit.
    ready: BTreeMap<(u64, u64), Tz>,
    /// Every queued or running run, by id.
    index: HashMap<String, Location>,
    /// Permits in use.
    running: usize,
    /// Permits granted so far; numbers the grants.
    grants: u64,
    next_seq: u64,
    next_worker: u64,
    /// Origin of the per-second throughput buckets.
    epoch: Instant,
}

impl<P> State<P> {
    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }

    /// Puts the queue in, or takes it out of, the ready set, as its state
    /// now requires.
    fn refresh_ready(&mut self, zone: Tz) {
        let Some(q) = self.queues.get_mut(&zone) else {
            return;
        };
        let ready = !q.runs.is_empty() && q.running < q.limits.max_workers;
        let key = (q.last_grant, q.ord);
        if q.ready_key == Some(key) && ready {
            return;
        }
        if let Some(old) = q.ready_key.take() {
            self.ready.remove(&old);
        }
        if ready {
            self.ready.insert(key, zone);
            q.ready_key = Some(key);
        }
    }
}

pub(super) struct Shared<P> {
    state: Mutex<State<P>>,
    pub(super) handler: Arc<dyn DynHandler<P>>,
    pub(super) config: QueueConfig,
    runtime: Runtime,
    /// Signalled when the last running run ends after closing.
    drained: Notify,
}

impl<P> Shared<P> {
    pub(super) fn lock(&self) -> MutexGuard<'_, State<P>> {
        // Nothing panics while holding the lock; should it ever, the
        // counters are still the best state there is.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops accepting and dispatching; takes out the queued runs and sends
    /// idle workers home. Running runs carry on.
    pub(super) fn close(&self) -> Vec<QueuedRun<P>> {
        let mut st = self.lock();
        st.phase = Phase::Closed;
        st.ready.clear();
        let mut zones: Vec<Tz> = st.queues.keys().copied().collect();
        zones.sort_by_key(|z| z.name());
        let mut queued = Vec::new();
        for zone in zones {
            if let Some(q) = st.queues.get_mut(&zone) {
                q.ready_key = None;
                // Dropping the senders wakes the idle workers, which leave.
                q.idle.clear();
                queued.extend(std::mem::take(&mut q.runs).into_values());
            }
        }
        st.index
            .retain(|_, location| matches!(location, Location::Running { .. }));
        let drained = st.running == 0;
        drop(st);
        if drained {
            self.drained.notify_waiters();
        }
        queued
    }

    /// Resolves once closed with nothing running.
    pub(super) async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = self.lock();
                if st.phase == Phase::Closed && st.running == 0 {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Aborts every running run's task; returns their ids. Their workers
    /// report them as they end.
    pub(super) fn abort_running(&self) -> Vec<String> {
        let st = self.lock();
        let mut ids: Vec<String> = st
            .index
            .iter()
            .filter_map(|(id, location)| match location {
                Location::Running { abort } => {
                    abort.abort();
                    Some(id.clone())
                }
                Location::Queued { .. } => None,
            })
            .collect();
        ids.sort();
        ids
    }

    /// Aborts one running run's task; its worker reports it as it ends.
    pub(super) fn abort_one(&self, run_id: &str) -> Result<(), QueueError> {
        let st = self.lock();
        match st.index.get(run_id) {
            Some(Location::Running { abort }) => {
                abort.abort();
                Ok(())
            }
            Some(Location::Queued { .. }) => Err(QueueError::NotRunning(run_id.into())),
            None => Err(QueueError::UnknownRun(run_id.into())),
        }
    }

    pub(super) fn cancel(&self, run_id: &str) -> Result<QueuedRun<P>, QueueError> {
        let mut st = self.lock();
        let (zone, key) = match st.index.get(run_id) {
            Some(Location::Queued { zone, key }) => (*zone, *key),
            Some(Location::Running { .. }) => return Err(QueueError::Running(run_id.into())),
            None => return Err(QueueError::UnknownRun(run_id.into())),
        };
        st.index.remove(run_id);
        let run = st
            .queues
            .get_mut(&zone)
            .and_then(|q| {
                q.counters.cancelled += 1;
                q.runs.remove(&key)
            })
            .ok_or_else(|| QueueError::UnknownRun(run_id.into()))?;
        st.refresh_ready(zone);
        Ok(run)
    }

    pub(super) fn stats(&self) -> Vec<QueueStats> {
        let st = self.lock();
        let now = Instant::now();
        let second = st.second(now);
        let mut stats: Vec<QueueStats> = st
            .queues
            .iter()
            .map(|(zone, q)| {
                let c = &q.counters;
                let [p50, p99] = c.waits.percentiles([0.5, 0.99]);
                QueueStats {
                    zone: zone.name().to_owned(),
                    depth: q.runs.len(),
                    running: q.running,
                    workers: q.workers,
                    idle_workers: q.idle.len(),
                    min_workers: q.limits.min_workers,
                    max_workers: q.limits.max_workers,
                    oldest_wait_ms: q.oldest().map(|t| millis(now.saturating_duration_since(t))),
                    throughput_per_min: c.ended.last_minute(second),
                    wait_p50_ms: p50.map(millis),
                    wait_p99_ms: p99.map(millis),
                    submitted: c.submitted,
                    succeeded: c.succeeded,
                    failed: c.failed,
                    panicked: c.panicked,
                    cancelled: c.cancelled,
                }
            })
            .collect();
        stats.sort_by(|a, b| a.zone.cmp(&b.zone));
        stats
    }

    /// A worker that saw its idle slot dropped (closing) leaves the pool.
    pub(super) fn retire(&self, zone: Tz, worker: u64) {
        let mut st = self.lock();
        if let Some(q) = st.queues.get_mut(&zone) {
            q.idle.retain(|slot| slot.worker != worker);
            q.workers = q.workers.saturating_sub(1);
        }
    }

    /// An idle worker's timeout ran out: it leaves if its queue has more
    /// workers than its minimum and it is still idle (not just handed a
    /// run). Returns whether it left.
    pub(super) fn idle_expired(&self, zone: Tz, worker: u64) -> bool {
        let mut st = self.lock();
        let Some(q) = st.queues.get_mut(&zone) else {
            return true;
        };
        let Some(pos) = q.idle.iter().position(|slot| slot.worker == worker) else {
            // Handed a run (or closed) since the timeout fired; the
            // worker's channel says which.
            return false;
        };
        if q.workers <= q.limits.min_workers {
            return false;
        }
        q.idle.remove(pos);
        q.workers -= 1;
        true
    }
}

impl<P: Send + 'static> Shared<P> {
    pub(super) fn new(
        config: QueueConfig,
        handler: Arc<dyn DynHandler<P>>,
        runtime: Runtime,
    ) -> Arc<Self> {
        Arc::new(Shared {
            state: Mutex::new(State {
                phase: Phase::Open,
                queues: HashMap::default(),
                ready: BTreeMap::new(),
                index: HashMap::default(),
                running: 0,
                grants: 0,
                next_seq: 0,
                next_worker: 0,
                epoch: Instant::now(),
            }),
            handler,
            config,
            runtime,
            drained: Notify::new(),
        })
    }

    pub(super) fn submit(self: &Arc<Self>, run: QueuedRun<P>) -> Result<(), SubmitError<P>> {
        let mut st = self.lock();
        self.enqueue(&mut st, run)?;
        self.dispatch(&mut st);
        Ok(())
    }

    /// Submits several runs under one lock, then dispatches once: a burst
    /// does not take the lock, and wake the workers, once per run.
    pub(super) fn submit_many(
        self: &Arc<Self>,
        runs: impl IntoIterator<Item = QueuedRun<P>>,
    ) -> Vec<Result<(), SubmitError<P>>> {
        let mut st = self.lock();
        let results = runs
            .into_iter()
            .map(|run| self.enqueue(&mut st, run))
            .collect();
        self.dispatch(&mut st);
        results
    }

    /// Puts a run in its zone's queue (created on first use) without
    /// dispatching it.
    fn enqueue(
        self: &Arc<Self>,
        st: &mut State<P>,
        mut run: QueuedRun<P>,
    ) -> Result<(), SubmitError<P>> {
        if st.phase != Phase::Open {
            return Err(SubmitError {
                reason: QueueError::ShuttingDown,
                run,
            });
        }
        if st.index.contains_key(&run.run_id) {
            return Err(SubmitError {
                reason: QueueError::DuplicateRun(run.run_id.clone()),
                run,
            });
        }
        let zone = run.zone;
        if !st.queues.contains_key(&zone) {
            self.create_queue(st, zone);
        }
        run.enqueued_at = Instant::now();
        let key = (Reverse(run.priority), st.next_seq);
        st.next_seq += 1;
        st.index
            .insert(run.run_id.clone(), Location::Queued { zone, key });
        if let Some(q) = st.queues.get_mut(&zone) {
            q.runs.insert(key, run);
            q.counters.submitted += 1;
        }
        st.refresh_ready(zone);
        Ok(())
    }

    fn create_queue(self: &Arc<Self>, st: &mut State<P>, zone: Tz) {
        let limits = self.config.limits(zone);
        let ord = st.queues.len() as u64;
        st.queues.insert(
            zone,
            Queue {
                ord,
                limits,
                runs: BTreeMap::new(),
                idle: Vec::new(),
                workers: 0,
                running: 0,
                last_grant: 0,
                ready_key: None,
                counters: Counters::default(),
            },
        );
        for _ in 0..limits.min_workers {
            self.spawn_idle_worker(st, zone);
        }
    }

    fn spawn_idle_worker(self: &Arc<Self>, st: &mut State<P>, zone: Tz) {
        let id = st.next_worker;
        st.next_worker += 1;
        let (tx, rx) = oneshot::channel();
        if let Some(q) = st.queues.get_mut(&zone) {
            q.idle.push(IdleSlot { worker: id, tx });
            q.workers += 1;
        }
        self.runtime
            .spawn(worker::run(Arc::clone(self), zone, id, Start::Idle(rx)));
    }

    /// Grants free permits, least recently served ready queue first.
    fn dispatch(self: &Arc<Self>, st: &mut State<P>) {
        while st.phase == Phase::Open && st.running < self.config.global_max_concurrent {
            let Some((_, zone)) = st.ready.pop_first() else {
                break;
            };
            if let Some(q) = st.queues.get_mut(&zone) {
                q.ready_key = None;
            }
            self.start_next(st, zone);
        }
    }

    /// Starts the queue's best run on an idle worker, or a new one.
    fn start_next(self: &Arc<Self>, st: &mut State<P>, zone: Tz) {
        let now = Instant::now();
        let Some(q) = st.queues.get_mut(&zone) else {
            return;
        };
        let Some((_, run)) = q.runs.pop_first() else {
            return;
        };
        st.grants += 1;
        q.last_grant = st.grants;
        q.running += 1;
        st.running += 1;
        q.counters
            .waits
            .record(now.saturating_duration_since(run.enqueued_at));
        let info = run.info();
        let handler = Arc::clone(&self.handler);
        let task = self.runtime.spawn(async move { handler.call(run).await });
        st.index.insert(
            info.run_id.clone(),
            Location::Running {
                abort: task.abort_handle(),
            },
        );
        let mut unhanded = Some(Assignment {
            info,
            started_at: now,
            task,
        });
        // A slot whose worker died before its guard removed it refuses the
        // run; the guard does that worker's accounting.
        while let Some(a) = unhanded.take() {
            let Some(slot) = q.idle.pop() else {
                unhanded = Some(a);
                break;
            };
            if let Err(back) = slot.tx.send(a) {
                unhanded = Some(back);
            }
        }
        if let Some(a) = unhanded {
            q.workers += 1;
            let id = st.next_worker;
            st.next_worker += 1;
            self.runtime
                .spawn(worker::run(Arc::clone(self), zone, id, Start::Run(a)));
        }
        st.refresh_ready(zone);
    }

    /// A worker's run ended: count it, free its permit, make the worker idle
    /// (or retire it when closed) and grant what can be granted. Returns the
    /// report and, unless the worker is to leave, its new idle channel.
    pub(super) fn finish(
        self: &Arc<Self>,
        zone: Tz,
        worker: u64,
        info: RunInfo,
        started_at: Instant,
        outcome: RunOutcome,
    ) -> (RunReport, Option<oneshot::Receiver<Assignment>>) {
        let now = Instant::now();
        let mut st = self.lock();
        let second = st.second(now);
        st.index.remove(&info.run_id);
        st.running = st.running.saturating_sub(1);
        let open = st.phase == Phase::Open;
        let mut idle = None;
        if let Some(q) = st.queues.get_mut(&zone) {
            q.running = q.running.saturating_sub(1);
            q.counters.ended(&outcome, second);
            if open {
                let (tx, rx) = oneshot::channel();
                q.idle.push(IdleSlot { worker, tx });
                idle = Some(rx);
            } else {
                q.workers = q.workers.saturating_sub(1);
            }
        }
        self.settle(st, zone, open);
        let report = RunReport {
            waited: started_at.saturating_duration_since(info.enqueued_at),
            ran: now.saturating_duration_since(started_at),
            run: info,
            outcome,
        };
        (report, idle)
    }

    /// A worker task ended without retiring (it panicked, or was dropped):
    /// take it out of the pool, end the run it held as panicked, and start a
    /// replacement so that the pool keeps its size.
    pub(super) fn worker_died(
        self: &Arc<Self>,
        zone: Tz,
        worker: u64,
        held: Option<(RunInfo, Instant, AbortHandle)>,
    ) -> Option<RunReport> {
        let now = Instant::now();
        let mut st = self.lock();
        let second = st.second(now);
        let open = st.phase == Phase::Open;
        let mut report = None;
        if let Some((info, started_at, abort)) = held {
            // The run must not go on unsupervised once reported.
            abort.abort();
            st.index.remove(&info.run_id);
            st.running = st.running.saturating_sub(1);
            let outcome = RunOutcome::Panicked("its worker died".into());
            if let Some(q) = st.queues.get_mut(&zone) {
                q.running = q.running.saturating_sub(1);
                q.counters.ended(&outcome, second);
            }
            report = Some(RunReport {
                waited: started_at.saturating_duration_since(info.enqueued_at),
                ran: now.saturating_duration_since(started_at),
                run: info,
                outcome,
            });
        }
        if let Some(q) = st.queues.get_mut(&zone) {
            q.idle.retain(|slot| slot.worker != worker);
            q.workers = q.workers.saturating_sub(1);
        }
        if open {
            self.spawn_idle_worker(&mut st, zone);
        }
        self.settle(st, zone, open);
        report
    }

    /// After a run or a worker left `zone`: hand out the freed slot, and
    /// wake a shutdown waiting for the last run to end.
    fn settle(self: &Arc<Self>, mut st: MutexGuard<'_, State<P>>, zone: Tz, open: bool) {
        st.refresh_ready(zone);
        self.dispatch(&mut st);
        let drained = !open && st.running == 0;
        drop(st);
        if drained {
            self.drained.notify_waiters();
        }
    }

    /// Calls `finished` from a task of its own.
    pub(super) fn report_later(self: &Arc<Self>, report: RunReport) {
        let shared = Arc::clone(self);
        self.runtime
            .spawn(async move { shared.handler.finished(&report) });
    }
}
