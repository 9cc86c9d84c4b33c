//! The loop task: the heap of due fires, batches, commands.
//!
//! Everything here runs in one task, so the state needs no lock, and a
//! batch (plan → store → commit/abandon → next fires) is never interleaved
//! with a command or a run's end.

use super::dispatch::{Dispatcher, Origin, Plan, RunRequest, ShutdownReport};
use super::slot::{self, Load, Slot};
use super::{BackfillReport, Clock, Command, SchedulerConfig, SchedulerError};
use crate::model::schedule::{RunOverlap, ScheduleDef};
use crate::schedule::Fire;
use crate::store::{FireRow, NewExecution, ScheduleRow, Store};
use chrono::{DateTime, Utc};
use foldhash::HashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// A heap entry: a schedule's next fire is due at `due_us`. Stale when the
/// slot's generation has moved on (or the slot is gone).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    due_us: i64,
    generation: u64,
    id: Arc<str>,
}

/// Fires stored by the first transaction of a burst (see
/// [`Runner::fire_due`]): small, so that the first fires are queued within
/// milliseconds. Each next chunk is twice as large, up to
/// [`MAX_FIRES_PER_CHUNK`]: every transaction writes again each index page
/// its rows touch (the executions of 1,000 jobs touch 1,000 pages of one
/// index), so a burst in chunks of 1,024 takes twice as long as in one
/// transaction, and in chunks of 16,384 hardly longer.
const FIRST_FIRES_PER_CHUNK: usize = 2048;

/// The largest chunk of a burst.
const MAX_FIRES_PER_CHUNK: usize = 32_768;

/// One chunk of a batch: the schedules, their plans, and the rows to store
/// (taken by [`Runner::record`]).
struct Chunk {
    ids: Vec<Arc<str>>,
    plans: Vec<Plan>,
    fires: Vec<FireRow>,
    executions: Vec<NewExecution>,
}

/// Per fire whether it was new, and the cursors of the schedules fired.
type RecordResult = Result<(Vec<bool>, Vec<(String, i64)>), String>;

/// A chunk being stored.
type Recording = std::pin::Pin<Box<dyn std::future::Future<Output = RecordResult> + Send>>;

/// What a batch leaves to do once every chunk is settled.
#[derive(Default)]
struct BatchOutcome {
    /// Schedules to move to their next fire: done once every chunk is
    /// queued, as it does not change what they queue.
    fired: Vec<Arc<str>>,
    cursors: Vec<(String, i64)>,
    failed: Vec<Arc<str>>,
}

pub(super) struct Runner {
    store: Store,
    clock: Arc<dyn Clock>,
    dispatcher: Dispatcher,
    config: SchedulerConfig,
    /// Enabled schedules that have a fire ahead.
    slots: HashMap<Arc<str>, Slot>,
    heap: BinaryHeap<Reverse<Entry>>,
    generation: u64,
    commands: mpsc::Receiver<Command>,
    shutdown: mpsc::UnboundedReceiver<oneshot::Sender<ShutdownReport>>,
}

/// What woke the loop.
enum Event {
    Shutdown(Option<oneshot::Sender<ShutdownReport>>),
    Ended(Option<String>),
    Wake,
    Command(Option<Command>),
}

impl Runner {
    /// Loads the enabled schedules and places each on its timeline under
    /// its misfire policy.
    pub(super) async fn start(
        store: Store,
        clock: Arc<dyn Clock>,
        dispatcher: Dispatcher,
        config: SchedulerConfig,
        commands: mpsc::Receiver<Command>,
        shutdown: mpsc::UnboundedReceiver<oneshot::Sender<ShutdownReport>>,
    ) -> Result<Runner, SchedulerError> {
        let mut runner = Runner {
            store,
            clock,
            dispatcher,
            config,
            slots: HashMap::default(),
            heap: BinaryHeap::new(),
            generation: 0,
            commands,
            shutdown,
        };
        let now = runner.clock.now();
        let rows = runner.store.list_schedules(None).await?;
        let mut cursors = Vec::new();
        let (mut skipped, mut skipping, mut catching_up, mut broken) =
            (0usize, 0usize, 0usize, 0usize);
        for row in rows.iter().filter(|r| r.enabled) {
            let def = match ScheduleDef::from_row(row) {
                Ok(def) => def,
                Err(issues) => {
                    broken += 1;
                    tracing::error!(schedule_id = %row.id, ?issues, "stored schedule cannot be loaded; it will not fire");
                    continue;
                }
            };
            let timeline = slot::timeline(
                &def,
                row.cursor_us.and_then(DateTime::from_timestamp_micros),
                created_at(row),
                now,
                Load::Startup,
            );
            let lost = timeline.skipped;
            if lost.total() > 0 {
                skipping += 1;
                skipped += lost.total();
                tracing::info!(
                    schedule_id = %row.id,
                    skipped = lost.total(),
                    before_window = lost.before_window,
                    more = lost.capped,
                    policy = ?def.spec.misfire.policy,
                    "missed fires skipped under the misfire policy"
                );
            }
            if let Some(cursor) = timeline.cursor {
                cursors.push((row.id.clone(), cursor.timestamp_micros()));
            }
            if let Some(first) = timeline.first {
                let slot = Slot::new(&def, first, timeline.catch_up_until);
                if slot.origin() == Origin::CatchUp {
                    catching_up += 1;
                }
                runner.install(slot);
            }
        }
        runner.store.advance_cursors(&cursors).await?;
        tracing::info!(
            schedules = runner.slots.len(),
            catching_up,
            skipping_schedules = skipping,
            skipped_fires_at_least = skipped,
            unloadable = broken,
            "scheduler started"
        );
        Ok(runner)
    }

    pub(super) async fn run(mut self) {
        let reply = loop {
            if let Ok(reply) = self.shutdown.try_recv() {
                break Some(reply);
            }
            while let Some(run_id) = self.dispatcher.try_next_ended() {
                self.dispatcher.run_ended(&run_id);
            }
            let now = self.clock.now();
            let next_due = self.next_due();
            if next_due.is_some_and(|due| due <= now.timestamp_micros()) {
                self.fire_due(now).await;
                continue;
            }
            let deadline = self.deadline(now, next_due);
            let event = tokio::select! {
                biased;
                reply = self.shutdown.recv() => Event::Shutdown(reply),
                ended = self.dispatcher.next_ended() => Event::Ended(ended),
                () = tokio::time::sleep_until(deadline) => Event::Wake,
                command = self.commands.recv() => Event::Command(command),
            };
            match event {
                Event::Shutdown(reply) => break reply,
                Event::Ended(Some(run_id)) => self.dispatcher.run_ended(&run_id),
                Event::Wake => {}
                Event::Command(Some(command)) => self.handle(command).await,
                // Every handle is gone (or, impossibly, the queues): stop.
                Event::Ended(None) | Event::Command(None) => break None,
            }
        };
        let report = self.dispatcher.shutdown(self.config.shutdown_grace).await;
        tracing::info!(
            dropped_queued = report.queued.len(),
            dropped_buffered = report.buffered.len(),
            aborted = report.aborted.len(),
            "scheduler stopped"
        );
        if let Some(reply) = reply {
            let _ = reply.send(report);
        }
    }

    /// The due instant of the earliest live entry, dropping stale ones.
    fn next_due(&mut self) -> Option<i64> {
        while let Some(Reverse(top)) = self.heap.peek() {
            if self.is_live(top) {
                return Some(top.due_us);
            }
            self.heap.pop();
        }
        None
    }

    fn is_live(&self, entry: &Entry) -> bool {
        self.slots
            .get(&entry.id)
            .is_some_and(|slot| slot.generation == entry.generation)
    }

    /// When to wake for a fire due at `due_us`: computed from the clock,
    /// never further than `max_sleep` away.
    fn deadline(&self, now: DateTime<Utc>, due_us: Option<i64>) -> Instant {
        let max = self.config.max_sleep;
        let wait = due_us.map_or(max, |due| {
            let micros = due.saturating_sub(now.timestamp_micros()).max(0);
            std::time::Duration::from_micros(micros.unsigned_abs()).min(max)
        });
        Instant::now() + wait
    }

    /// Puts a slot (new or replacing one) in the loop with a fresh
    /// generation and pushes its next fire.
    fn install(&mut self, mut slot: Slot) {
        self.generation += 1;
        slot.generation = self.generation;
        self.heap.push(Reverse(Entry {
            due_us: slot.due_us(),
            generation: slot.generation,
            id: Arc::clone(&slot.id),
        }));
        self.slots.insert(Arc::clone(&slot.id), slot);
        // Reloads leave stale entries behind; drop them before they
        // outnumber the live ones.
        if self.heap.len() > 2 * self.slots.len() + 1024 {
            let slots = &self.slots;
            self.heap.retain(|Reverse(e)| {
                slots
                    .get(&e.id)
                    .is_some_and(|slot| slot.generation == e.generation)
            });
        }
    }

    /// Fires every due entry as one batch, stored and queued in growing
    /// chunks (see [`FIRST_FIRES_PER_CHUNK`]) through a pipeline: a chunk
    /// is handed to a task that builds its statements and then waits for
    /// its turn to write (the store writes one batch of fires at a time)
    /// while the loop waits for the chunk before, queues it, and takes the
    /// next chunk off the heap and plans it. So the first fires of a burst
    /// are queued after one small chunk, not after all of it, and everything
    /// else overlaps with writing. Once the batch is queued, the schedules move to their next
    /// fires and their cursors move, in one more write.
    async fn fire_due(&mut self, now: DateTime<Utc>) {
        let now_us = now.timestamp_micros();
        let mut outcome = BatchOutcome::default();
        let mut storing: Option<(Chunk, Recording)> = None;
        let mut size = FIRST_FIRES_PER_CHUNK;
        loop {
            let ids = self.pop_due(now_us, size);
            if ids.is_empty() {
                break;
            }
            // Schedules whose fires the store could not record: what they
            // missed meanwhile goes through their misfire policy first,
            // and they come back due (or wait for the next retry).
            let (stalled, ids): (Vec<_>, Vec<_>) = ids
                .into_iter()
                .partition(|id| self.slots.get(id).is_some_and(|s| s.stalled));
            if !stalled.is_empty() {
                self.after_outage(stalled, now).await;
                if ids.is_empty() {
                    continue;
                }
            }
            size = (size * 2).min(MAX_FIRES_PER_CHUNK);
            let mut chunk = self.build_chunk(ids, now_us);
            let recording = self.record(&mut chunk);
            if let Some((previous, recording)) = storing.replace((chunk, recording)) {
                let result = recording.await;
                self.settle(previous, result, &mut outcome);
            }
        }
        if let Some((last, recording)) = storing {
            let result = recording.await;
            self.settle(last, result, &mut outcome);
        }
        for id in &outcome.fired {
            self.advance(id);
        }
        self.record_dropped(now_us).await;
        if !outcome.cursors.is_empty()
            && let Err(e) = self.store.advance_cursors(&outcome.cursors).await
        {
            // Safe to leave behind: these fires are stored, so a start
            // that catches up from the old cursor finds them handled.
            tracing::warn!(
                schedules = outcome.cursors.len(),
                "could not move cursors: {e}"
            );
        }
        if !outcome.failed.is_empty() {
            self.retry_later(outcome.failed, now_us).await;
        }
    }

    /// Takes up to `max` live entries due by `now_us` off the heap.
    fn pop_due(&mut self, now_us: i64, max: usize) -> Vec<Arc<str>> {
        let mut due = Vec::new();
        while due.len() < max
            && let Some(Reverse(top)) = self.heap.peek()
            && top.due_us <= now_us
        {
            if let Some(Reverse(entry)) = self.heap.pop()
                && self.is_live(&entry)
            {
                due.push(entry.id);
            }
        }
        due
    }

    /// Plans one chunk of due schedules and builds its rows.
    fn build_chunk(&self, ids: Vec<Arc<str>>, now_us: i64) -> Chunk {
        let mut chunk = Chunk {
            ids: Vec::with_capacity(ids.len()),
            plans: Vec::with_capacity(ids.len()),
            fires: Vec::with_capacity(ids.len()),
            executions: Vec::with_capacity(ids.len()),
        };
        // A burst's fires share few nominal local times: format each once.
        let mut nominal = HashMap::default();
        for id in ids {
            let Some(slot) = self.slots.get(&id) else {
                continue;
            };
            let plan = self.dispatcher.plan(slot.request(), slot.overlap);
            let local: &String = nominal
                .entry(slot.next.nominal)
                .or_insert_with(|| nominal_text(&slot.next));
            let fire = fire_row(&id, &slot.next, local, slot.origin(), &plan, now_us);
            chunk.executions.extend(execution_row(
                &plan,
                Some((&slot.next, local)),
                slot.origin(),
                now_us,
            ));
            chunk.fires.push(fire);
            chunk.plans.push(plan);
            chunk.ids.push(id);
        }
        chunk
    }

    /// Starts storing a chunk's fires and executions on a task of its own,
    /// so that the loop can go on meanwhile.
    fn record(&self, chunk: &mut Chunk) -> Recording {
        let store = self.store.clone();
        let fires = std::mem::take(&mut chunk.fires);
        let executions = std::mem::take(&mut chunk.executions);
        let task = tokio::spawn(async move {
            let inserted = store
                .record_fires_with_executions(&fires, &executions)
                .await;
            inserted.map(|inserted| {
                // Handled, new or not; backfills never move a cursor.
                let cursors = fires
                    .into_iter()
                    .filter(|f| f.origin != Origin::Backfill.as_str())
                    .map(|f| (f.schedule_id, f.fire_at_us))
                    .collect();
                (inserted, cursors)
            })
        });
        Box::pin(async move {
            match task.await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(e) => Err(format!("the task storing fires failed: {e}")),
            }
        })
    }

    /// Queues the plans of a stored chunk's new fires and abandons the
    /// others (its schedules move to their next fire once the batch is
    /// queued); or, when the chunk could not be stored, abandons every
    /// plan for a retry.
    fn settle(&mut self, chunk: Chunk, result: RecordResult, outcome: &mut BatchOutcome) {
        match result {
            Ok((inserted, cursors)) => {
                let mut queued = Vec::with_capacity(chunk.plans.len());
                for (plan, new) in chunk.plans.into_iter().zip(inserted) {
                    if new {
                        queued.push(plan);
                    } else {
                        tracing::info!(
                            schedule_id = %plan.run().payload.schedule_id,
                            "fire already recorded (before a restart, or by another node): not run again"
                        );
                        self.dispatcher.abandon(plan);
                    }
                }
                for e in self.dispatcher.commit_all(queued) {
                    tracing::error!("stored fire will not run: {e}");
                }
                outcome.cursors.extend(cursors);
                outcome.fired.extend(chunk.ids);
            }
            Err(e) => {
                tracing::error!(
                    fires = chunk.ids.len(),
                    "could not record fires, retrying: {e}"
                );
                for plan in chunk.plans {
                    self.dispatcher.abandon(plan);
                }
                for id in &chunk.ids {
                    if let Some(slot) = self.slots.get_mut(id) {
                        slot.stalled = true;
                    }
                }
                outcome.failed.extend(chunk.ids);
            }
        }
    }

    /// Applies each stalled schedule's misfire policy to the fires it
    /// missed while the store was out of reach, once the store answers
    /// again (its definition can be read): as at start-up, `all` runs each
    /// missed fire inside the window as a catch-up fire, `latest` the last
    /// one, `none` none. The fires that will not run are recorded with the
    /// outcome `missed` (up to [`slot::COUNT_CAP`] per schedule; a fire
    /// another node recorded stays as it recorded it), and the log and the
    /// audit trail say what was missed and what runs. A schedule whose
    /// definition cannot be read yet waits for the next retry.
    async fn after_outage(&mut self, ids: Vec<Arc<str>>, now: DateTime<Utc>) {
        let now_us = now.timestamp_micros();
        let mut retry = Vec::new();
        let mut ids = ids.into_iter();
        while let Some(id) = ids.next() {
            let Some(handled) = self
                .slots
                .get(&id)
                .map(|s| slot::just_before(s.next.instant))
            else {
                continue;
            };
            let (row, def) = match self.load(&id).await {
                Ok(loaded) => loaded,
                Err(SchedulerError::NotFound(_)) => {
                    self.slots.remove(&id);
                    continue;
                }
                Err(e) => {
                    // One wait for the store per retry, not one per
                    // schedule: the others wait for the next retry too.
                    tracing::debug!(schedule_id = %id, "the store is still out of reach: {e}");
                    retry.push(id);
                    retry.extend(ids.by_ref());
                    break;
                }
            };
            if !row.enabled {
                self.slots.remove(&id);
                continue;
            }
            let timeline =
                slot::timeline(&def, Some(handled), created_at(&row), now, Load::Startup);
            let (missed, more) = slot::missed(&def, handled, &timeline, now);
            let rows: Vec<FireRow> = missed
                .iter()
                .map(|fire| FireRow {
                    schedule_id: id.to_string(),
                    nominal_local: nominal_text(fire),
                    utc_offset_s: fire.offset_seconds,
                    fire_at_us: fire.instant.timestamp_micros(),
                    origin: Origin::Scheduled.as_str().to_owned(),
                    outcome: "missed".to_owned(),
                    run_id: None,
                    created_at_us: now_us,
                })
                .collect();
            if let Err(e) = self.store.record_fires(&rows).await {
                tracing::debug!(schedule_id = %id, "cannot record missed fires yet: {e}");
                retry.push(id);
                retry.extend(ids.by_ref());
                break;
            }
            if let Some(cursor) = timeline.cursor
                && let Err(e) = self
                    .store
                    .advance_cursors(&[(id.to_string(), cursor.timestamp_micros())])
                    .await
            {
                tracing::warn!(schedule_id = %id, "could not move the cursor past missed fires: {e}");
            }
            let runs = match timeline.first {
                Some(first) if first.instant < now => match def.spec.misfire.policy {
                    crate::model::schedule::MisfirePolicy::All => {
                        "each missed fire inside the window runs as a catch-up fire"
                    }
                    _ => "the latest missed fire runs as a catch-up fire",
                },
                _ => "none of them runs",
            };
            if !missed.is_empty() {
                let policy = def.spec.misfire.policy;
                tracing::warn!(
                    schedule_id = %id,
                    missed = missed.len(),
                    more,
                    ?policy,
                    "fires missed while the store was out of reach, recorded as missed; {runs}"
                );
                if let Some(audit) = &self.config.audit {
                    let (first, last) = (&rows[0], &rows[rows.len() - 1]);
                    audit.record(crate::audit::AuditEntry {
                        kind: "schedule".into(),
                        actor: Some("scheduler".into()),
                        job_id: Some(def.spec.job_id.clone()),
                        target: Some(id.to_string()),
                        decision: "missed".into(),
                        detail: Some(format!(
                            "{}{} fires missed while the store was out of reach; misfire policy {}: {runs}",
                            missed.len(),
                            if more { "+" } else { "" },
                            serde_json::to_value(policy)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default(),
                        )),
                        data: Some(
                            serde_json::json!({
                                "missed": missed.len(),
                                "more": more,
                                "first": first.nominal_local,
                                "last": last.nominal_local,
                            })
                            .to_string(),
                        ),
                        ..Default::default()
                    });
                }
            }
            match timeline.first {
                Some(first) => self.install(Slot::new(&def, first, timeline.catch_up_until)),
                None => {
                    self.slots.remove(&id);
                }
            }
        }
        if !retry.is_empty() {
            self.retry_later(retry, now_us).await;
        }
    }

    /// Puts the schedules of chunks that could not be stored back in the
    /// heap, due again after the retry delay.
    async fn retry_later(&mut self, ids: Vec<Arc<str>>, now_us: i64) {
        self.forget_deleted().await;
        let retry_us = i64::try_from(self.config.retry_delay.as_micros()).unwrap_or(i64::MAX);
        let due_us = now_us.saturating_add(retry_us.max(1));
        for id in ids {
            if let Some(slot) = self.slots.get(&id) {
                let generation = slot.generation;
                self.heap.push(Reverse(Entry {
                    due_us,
                    generation,
                    id,
                }));
            }
        }
    }

    /// Records the runs `cancel_other` dropped before they started as
    /// cancelled executions (they were stored `queued` with their fires).
    async fn record_dropped(&mut self, now_us: i64) {
        let dropped = self.dispatcher.take_dropped();
        self.cancel_dropped(dropped, now_us).await;
    }

    async fn cancel_dropped(&mut self, dropped: Vec<String>, now_us: i64) {
        let error = serde_json::json!({
            "kind": "cancelled",
            "message": "replaced before it started by a newer fire of its schedule (overlap policy cancel_other)",
        })
        .to_string();
        for id in dropped {
            if let Err(e) = self.store.cancel_queued(&id, &error, now_us).await {
                tracing::warn!(execution_id = %id, "cannot record a dropped run as cancelled: {e}");
            }
        }
    }

    /// Takes out of the loop the schedules deleted from the store without
    /// a `remove`: their fires break the batch's foreign key, and the batch
    /// must not be retried with them for ever.
    async fn forget_deleted(&mut self) {
        let Ok(ids) = self.store.list_schedule_ids().await else {
            return; // the store is down; retry as is
        };
        let ids: std::collections::HashSet<String> = ids.into_iter().collect();
        self.slots.retain(|id, _| {
            let keep = ids.contains(id.as_ref());
            if !keep {
                tracing::warn!(schedule_id = %id, "schedule deleted from the store without remove; dropped");
            }
            keep
        });
    }

    /// Moves a slot to its next fire, or out of the loop when it has none.
    fn advance(&mut self, id: &Arc<str>) {
        let Some(mut slot) = self.slots.remove(id) else {
            return;
        };
        if slot.advance() {
            self.install(slot);
        } else {
            tracing::info!(schedule_id = %id, "schedule has no fire left (end_at passed)");
        }
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Reload(id, reply) => {
                let _ = reply.send(self.reload(&id).await);
            }
            Command::Remove(id, reply) => {
                let _ = reply.send(Ok(self.slots.remove(id.as_str()).is_some()));
            }
            Command::Pause(id, reply) => {
                let _ = reply.send(self.pause(&id).await);
            }
            Command::Resume(id, reply) => {
                let _ = reply.send(self.resume(&id).await);
            }
            Command::TriggerNow(id, reply) => {
                let _ = reply.send(self.trigger_now(&id).await);
            }
            Command::Backfill {
                id,
                from,
                to,
                reply,
            } => {
                let _ = reply.send(self.backfill(&id, from, to).await);
            }
            Command::NextFire(id, reply) => {
                let next = self.slots.get(id.as_str()).map(|s| s.next.instant);
                let _ = reply.send(Ok(next));
            }
            Command::Flush(reply) => {
                let _ = reply.send(Ok(()));
            }
        }
    }

    async fn load(&self, id: &str) -> Result<(ScheduleRow, ScheduleDef), SchedulerError> {
        let row = self
            .store
            .get_schedule(id)
            .await?
            .ok_or_else(|| SchedulerError::NotFound(id.to_owned()))?;
        let def = ScheduleDef::from_row(&row).map_err(|issues| SchedulerError::Invalid {
            id: id.to_owned(),
            issues,
        })?;
        Ok((row, def))
    }

    async fn reload(&mut self, id: &str) -> Result<Option<DateTime<Utc>>, SchedulerError> {
        // Whatever happens next, the old definition stops firing.
        self.slots.remove(id);
        let (row, def) = self.load(id).await?;
        if !row.enabled {
            return Ok(None);
        }
        let cursor = row.cursor_us.and_then(DateTime::from_timestamp_micros);
        let timeline = slot::timeline(
            &def,
            cursor,
            created_at(&row),
            self.clock.now(),
            Load::Reload,
        );
        let Some(first) = timeline.first else {
            return Ok(None);
        };
        self.install(Slot::new(&def, first, None));
        Ok(Some(first.instant))
    }

    async fn pause(&mut self, id: &str) -> Result<(), SchedulerError> {
        let now_us = self.clock.now().timestamp_micros();
        self.store.set_schedule_enabled(id, false, now_us).await?;
        self.slots.remove(id);
        Ok(())
    }

    async fn resume(&mut self, id: &str) -> Result<Option<DateTime<Utc>>, SchedulerError> {
        let now_us = self.clock.now().timestamp_micros();
        // Cursor first: should we stop in between, the schedule is still
        // disabled, and nothing it missed is caught up later either.
        self.store.advance_cursor(id, now_us - 1).await?;
        self.store.set_schedule_enabled(id, true, now_us).await?;
        self.reload(id).await
    }

    async fn trigger_now(&mut self, id: &str) -> Result<String, SchedulerError> {
        let (_, def) = self.load(id).await?;
        let plan = self.dispatcher.plan_manual(RunRequest {
            schedule_id: Arc::from(id),
            job_id: Arc::from(def.spec.job_id.as_str()),
            zone: def.schedule.tz,
            priority: def.spec.priority,
            fire: None,
            origin: Origin::Manual,
        });
        let run_id = plan.run().run_id.clone();
        let now_us = self.clock.now().timestamp_micros();
        if let Some(execution) = execution_row(&plan, None, Origin::Manual, now_us)
            && let Err(e) = self.store.insert_execution(&execution).await
        {
            self.dispatcher.abandon(plan);
            return Err(e.into());
        }
        self.dispatcher.commit(plan)?;
        tracing::info!(schedule_id = %id, %run_id, "manual run queued");
        Ok(run_id)
    }

    async fn backfill(
        &mut self,
        id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<BackfillReport, SchedulerError> {
        let now = self.clock.now();
        if from > to {
            return Err(SchedulerError::BackfillRange(format!(
                "from ({from}) is after to ({to})"
            )));
        }
        if to > now {
            return Err(SchedulerError::BackfillRange(format!(
                "to ({to}) is in the future; future fires run at their time"
            )));
        }
        let (_, def) = self.load(id).await?;
        let from = def.spec.start_at.map_or(from, |start| from.max(start));
        let to = def.spec.end_at.map_or(to, |end| to.min(end));
        let cap = self.config.backfill_cap;
        let mut fires = Vec::new();
        for fire in def.schedule.fires_after(slot::just_before(from)) {
            if fire.instant > to {
                break;
            }
            if fires.len() == cap {
                return Err(SchedulerError::BackfillTooLarge {
                    id: id.to_owned(),
                    cap,
                });
            }
            fires.push(fire);
        }
        let schedule_id: Arc<str> = Arc::from(id);
        let job_id: Arc<str> = Arc::from(def.spec.job_id.as_str());
        let now_us = now.timestamp_micros();
        let mut plans = Vec::with_capacity(fires.len());
        let mut rows = Vec::with_capacity(fires.len());
        let mut executions = Vec::with_capacity(fires.len());
        for fire in &fires {
            let request = RunRequest {
                schedule_id: Arc::clone(&schedule_id),
                job_id: Arc::clone(&job_id),
                zone: def.schedule.tz,
                priority: def.spec.priority,
                fire: Some(*fire),
                origin: Origin::Backfill,
            };
            let plan = self.dispatcher.plan(request, RunOverlap::Allow);
            let local = nominal_text(fire);
            rows.push(fire_row(
                &schedule_id,
                fire,
                &local,
                Origin::Backfill,
                &plan,
                now_us,
            ));
            executions.extend(execution_row(
                &plan,
                Some((fire, &local)),
                Origin::Backfill,
                now_us,
            ));
            plans.push(plan);
        }
        let inserted = self
            .store
            .record_fires_with_executions(&rows, &executions)
            .await?;
        let mut report = BackfillReport {
            fires: fires.len(),
            already_recorded: 0,
            run_ids: Vec::new(),
        };
        for (plan, new) in plans.into_iter().zip(inserted) {
            if new {
                let run_id = plan.run().run_id.clone();
                self.dispatcher.commit(plan)?;
                report.run_ids.push(run_id);
            } else {
                report.already_recorded += 1;
                self.dispatcher.abandon(plan);
            }
        }
        tracing::info!(
            schedule_id = %id,
            fires = report.fires,
            already_recorded = report.already_recorded,
            "backfill queued"
        );
        Ok(report)
    }
}

fn created_at(row: &ScheduleRow) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(row.created_at_us).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The `queued` execution stored with a fire (or a manual run), in the same
/// transaction: a fire whose identity is stored always has its execution.
/// `None` for a skipped fire.
fn execution_row(
    plan: &Plan,
    fire: Option<(&Fire, &str)>,
    origin: Origin,
    now_us: i64,
) -> Option<NewExecution> {
    let id = plan.run_id()?;
    let run = plan.run();
    Some(NewExecution {
        id: id.to_owned(),
        job_id: run.job_id.clone(),
        trigger: match origin {
            Origin::Scheduled => "schedule",
            Origin::CatchUp => "catch_up",
            Origin::Backfill => "backfill",
            Origin::Manual => "manual",
        }
        .to_owned(),
        schedule_id: Some(run.payload.schedule_id.to_string()),
        fire_nominal_local: fire.map(|(_, local)| local.to_owned()),
        fire_utc_offset_s: fire.map(|(f, _)| f.offset_seconds),
        timezone: run.zone.name().to_owned(),
        priority: run.priority,
        params: "{}".to_owned(),
        scheduled_at_us: Some(fire.map_or(now_us, |(f, _)| f.instant.timestamp_micros())),
        queued_at_us: now_us,
    })
}

/// A fire's nominal local time as stored: `2026-03-29T02:30:00`.
fn nominal_text(fire: &Fire) -> String {
    fire.nominal.format("%Y-%m-%dT%H:%M:%S").to_string()
}

fn fire_row(
    schedule_id: &str,
    fire: &Fire,
    nominal_local: &str,
    origin: Origin,
    plan: &Plan,
    now_us: i64,
) -> FireRow {
    FireRow {
        schedule_id: schedule_id.to_owned(),
        nominal_local: nominal_local.to_owned(),
        utc_offset_s: fire.offset_seconds,
        fire_at_us: fire.instant.timestamp_micros(),
        origin: origin.as_str().to_owned(),
        outcome: plan.outcome().to_owned(),
        run_id: plan.run_id().map(str::to_owned),
        created_at_us: now_us,
    }
}
