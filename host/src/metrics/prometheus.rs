//! The node's Prometheus metric families, with the `prometheus` crate's
//! registry and encoder; `GET /metrics` ([`crate::api`]) serves their text
//! format (version 0.0.4).
//!
//! # Where the numbers come from
//!
//! Each family is fed at the cheapest point that sees every event, so that
//! nothing is counted twice or missed:
//!
//! - executions finished (by zone and outcome) and their run and queue-wait
//!   durations, step attempts (by step type and outcome) and their
//!   durations: [`crate::metrics::Metrics::record_execution`] and
//!   [`crate::metrics::Metrics::record_attempt`], which the engine already
//!   calls once per finished execution and attempt. The outcome is
//!   `succeeded` or `unsuccessful` (failed, cancelled or timed out: the
//!   engine's hook tells only success apart);
//! - queue depth, running executions, workers and the oldest wait, per
//!   zone: read from the queues at scrape time (gauges of "now");
//! - capability calls by capability and decision: every call's audit
//!   record passes [`crate::audit::AuditLog::record`], which counts it
//!   here ([`count_capability_call`]). The audit log has no handle on a
//!   node's metrics, so this one family is process-wide;
//! - HTTP requests by method, route template (never the raw path: ids
//!   would make unbounded series) and status, and their durations: the
//!   API's `track` middleware on every matched route ([`Families::http_request`]).
//!
//! - runs submitted, succeeded, failed and cancelled per zone: the queues'
//!   own monotonic totals, copied into a counter at scrape time.

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::LazyLock;
use std::time::Duration;

/// Capability calls, process-wide (see the module docs).
static CAPABILITY_CALLS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "meridian_capability_calls_total",
            "Capability calls by plugins, by capability and decision (allowed, denied, failed).",
        ),
        &["capability", "decision"],
    )
    .ok()
});

/// Counts one capability call (from its audit record).
pub fn count_capability_call(capability: &str, decision: &str) {
    if let Some(c) = CAPABILITY_CALLS.as_ref() {
        c.with_label_values(&[capability, decision]).inc();
    }
}

/// Buckets of durations, in seconds: 1 ms to about 9 minutes.
fn duration_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.001, 2.0, 20).unwrap_or_default()
}

/// A node's metric families and the registry that encodes them.
pub struct Families {
    registry: Registry,
    executions_finished: IntCounterVec,
    execution_seconds: HistogramVec,
    queue_wait_seconds: HistogramVec,
    step_attempts: IntCounterVec,
    step_seconds: HistogramVec,
    queue_depth: IntGaugeVec,
    queue_running: IntGaugeVec,
    queue_workers: IntGaugeVec,
    queue_oldest_wait: GaugeVec,
    queue_runs: IntCounterVec,
    /// Serialises copying the queues' totals into `queue_runs`.
    queue_sync: std::sync::Mutex<()>,
    http_requests: IntCounterVec,
    http_seconds: HistogramVec,
}

impl std::fmt::Debug for Families {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Families").finish_non_exhaustive()
    }
}

fn outcome(succeeded: bool) -> &'static str {
    if succeeded {
        "succeeded"
    } else {
        "unsuccessful"
    }
}

impl Families {
    /// Every family, registered.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(duration_buckets()),
                labels,
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["zone"])?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let families = Self {
            executions_finished: counter(
                "meridian_executions_finished_total",
                "Executions finished, by queue zone and outcome (succeeded, unsuccessful).",
                &["zone", "outcome"],
            )?,
            execution_seconds: histogram(
                "meridian_execution_duration_seconds",
                "How long finished executions ran, by queue zone.",
                &["zone"],
            )?,
            queue_wait_seconds: histogram(
                "meridian_queue_wait_seconds",
                "How long finished executions waited in their zone's queue.",
                &["zone"],
            )?,
            step_attempts: counter(
                "meridian_step_attempts_total",
                "Step attempts finished, by step type and outcome (succeeded, unsuccessful).",
                &["step_type", "outcome"],
            )?,
            step_seconds: histogram(
                "meridian_step_attempt_duration_seconds",
                "How long step attempts took, by step type.",
                &["step_type"],
            )?,
            queue_depth: gauge("meridian_queue_depth", "Executions waiting, per zone.")?,
            queue_running: gauge("meridian_queue_running", "Executions running, per zone.")?,
            queue_workers: gauge("meridian_queue_workers", "Worker slots, per zone.")?,
            queue_oldest_wait: {
                let g = GaugeVec::new(
                    Opts::new(
                        "meridian_queue_oldest_wait_seconds",
                        "How long the oldest waiting execution has waited, per zone.",
                    ),
                    &["zone"],
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            queue_runs: counter(
                "meridian_queue_runs_total",
                "Runs through each zone's queue since the node started, by event \
                 (submitted, succeeded, failed, cancelled: the queue's own totals).",
                &["zone", "event"],
            )?,
            queue_sync: std::sync::Mutex::new(()),
            http_requests: counter(
                "meridian_http_requests_total",
                "API requests, by method, route template and status.",
                &["method", "route", "status"],
            )?,
            http_seconds: histogram(
                "meridian_http_request_duration_seconds",
                "API request durations (to the response's head), by method and route template.",
                &["method", "route"],
            )?,
            registry,
        };
        if let Some(c) = CAPABILITY_CALLS.as_ref() {
            families.registry.register(Box::new(c.clone()))?;
        }
        Ok(families)
    }

    /// One finished execution (from [`crate::metrics::Metrics`]).
    pub fn execution(&self, zone: &str, wait: Duration, run: Duration, succeeded: bool) {
        self.executions_finished
            .with_label_values(&[zone, outcome(succeeded)])
            .inc();
        self.execution_seconds
            .with_label_values(&[zone])
            .observe(run.as_secs_f64());
        self.queue_wait_seconds
            .with_label_values(&[zone])
            .observe(wait.as_secs_f64());
    }

    /// One finished step attempt (from [`crate::metrics::Metrics`]).
    pub fn attempt(&self, step_type: &str, duration: Duration, succeeded: bool) {
        self.step_attempts
            .with_label_values(&[step_type, outcome(succeeded)])
            .inc();
        self.step_seconds
            .with_label_values(&[step_type])
            .observe(duration.as_secs_f64());
    }

    /// One API request, by its route template (from the API's middleware).
    pub fn http_request(&self, method: &str, route: &str, status: &str, took: Duration) {
        self.http_requests
            .with_label_values(&[method, route, status])
            .inc();
        self.http_seconds
            .with_label_values(&[method, route])
            .observe(took.as_secs_f64());
    }

    /// The text of a scrape, after reading the queues' figures of now.
    pub fn encode(&self, queues: &[crate::queue::QueueStats]) -> prometheus::Result<String> {
        let _sync = self
            .queue_sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for q in queues {
            // The queue keeps monotonic totals; the counter catches up.
            for (event, total) in [
                ("submitted", q.submitted),
                ("succeeded", q.succeeded),
                ("failed", q.failed),
                ("cancelled", q.cancelled),
            ] {
                let c = self.queue_runs.with_label_values(&[q.zone.as_str(), event]);
                c.inc_by(total.saturating_sub(c.get()));
            }
            let zone = [q.zone.as_str()];
            self.queue_depth
                .with_label_values(&zone)
                .set(i64::try_from(q.depth).unwrap_or(i64::MAX));
            self.queue_running
                .with_label_values(&zone)
                .set(i64::try_from(q.running).unwrap_or(i64::MAX));
            self.queue_workers
                .with_label_values(&zone)
                .set(i64::try_from(q.workers).unwrap_or(i64::MAX));
            self.queue_oldest_wait
                .with_label_values(&zone)
                .set(q.oldest_wait_ms.unwrap_or(0.0) / 1000.0);
        }
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}
