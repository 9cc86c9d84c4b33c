//! A worker: takes one run at a time from its zone's queue and supervises it.
//!
//! The run itself executes in a task of its own (spawned when its permit is
//! granted), which the worker awaits: the `JoinHandle` tells a panic or an
//! abort from an outcome, and the worker survives both.

use super::state::{Assignment, Shared};
use super::{RunInfo, RunOutcome};
use chrono_tz::Tz;
use std::any::Any;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// How a worker begins: with a run, or idle in the pool.
pub(super) enum Start {
    Run(Assignment),
    Idle(oneshot::Receiver<Assignment>),
}

pub(super) async fn run<P: Send + 'static>(
    shared: Arc<Shared<P>>,
    zone: Tz,
    id: u64,
    start: Start,
) {
    let mut guard = Guard {
        shared,
        zone,
        id,
        held: None,
        retired: false,
    };
    let mut next = start;
    loop {
        let assignment = match next {
            Start::Run(assignment) => assignment,
            Start::Idle(rx) => match guard.wait(rx).await {
                Some(assignment) => assignment,
                None => return,
            },
        };
        let Assignment {
            info,
            started_at,
            task,
        } = assignment;
        guard.held = Some((info, started_at, task.abort_handle()));
        let outcome = match task.await {
            Ok(outcome) => outcome,
            Err(error) if error.is_panic() => {
                RunOutcome::Panicked(panic_message(error.into_panic()))
            }
            Err(_) => RunOutcome::Aborted,
        };
        let Some((info, started_at, _)) = guard.held.take() else {
            return;
        };
        let (report, idle) = guard.shared.finish(zone, id, info, started_at, outcome);
        guard.retired = idle.is_none();
        guard.shared.handler.finished(&report);
        match idle {
            Some(rx) => next = Start::Idle(rx),
            None => return,
        }
    }
}

/// Keeps the pool's accounting right however the worker's task ends.
struct Guard<P: Send + 'static> {
    shared: Arc<Shared<P>>,
    zone: Tz,
    id: u64,
    /// The run being supervised: reported by the drop guard if the worker
    /// dies with it.
    held: Option<(RunInfo, Instant, AbortHandle)>,
    /// Set once the worker has left the pool's count in the normal way.
    retired: bool,
}

impl<P: Send + 'static> Guard<P> {
    /// Waits idle for a run; `None` when the worker has left the pool (idle
    /// too long above the minimum, or the queues closed).
    async fn wait(&mut self, mut rx: oneshot::Receiver<Assignment>) -> Option<Assignment> {
        let idle_timeout = self.shared.config.idle_timeout;
        loop {
            match tokio::time::timeout(idle_timeout, &mut rx).await {
                Ok(Ok(assignment)) => return Some(assignment),
                Ok(Err(_closed)) => {
                    self.shared.retire(self.zone, self.id);
                    self.retired = true;
                    return None;
                }
                Err(_elapsed) => {
                    if self.shared.idle_expired(self.zone, self.id) {
                        self.retired = true;
                        return None;
                    }
                }
            }
        }
    }
}

impl<P: Send + 'static> Drop for Guard<P> {
    fn drop(&mut self) {
        if self.retired {
            return;
        }
        tracing::error!(
            zone = self.zone.name(),
            worker = self.id,
            "queue worker died; replacing it"
        );
        if let Some(report) = self
            .shared
            .worker_died(self.zone, self.id, self.held.take())
        {
            // Not from here: this may run while unwinding, and a second
            // panic would abort the process.
            self.shared.report_later(report);
        }
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast_ref::<&'static str>()
            .map_or_else(|| "panic without a message".to_owned(), |m| (*m).to_owned()),
    }
}
