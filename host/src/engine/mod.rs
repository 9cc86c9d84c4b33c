//! Runs one execution of a job: its steps under flow control, each attempt
//! in the sandbox, with retries, timeouts, cancellation and variables, and
//! every transition recorded in the store before the engine moves on.
//!
//! # One execution
//!
//! An execution is a row in the store (`queued`) before the engine sees it:
//! the API, the CLI and the scheduler create it, and the queue hands its id
//! to [`Engine::run`]. The engine marks it `running` (only a `queued`
//! execution starts, so a run cancelled while it waited never starts), loads
//! the job version it runs (the current one, or on a resumed execution the
//! one it started with), and walks the steps:
//!
//! - Each visit of a step is a **step run** (`seq` 1, 2, … in the order
//!   they happen: a `goto` back makes a new step run of the same step).
//!   Each step run has one or more **attempts**.
//! - Before each attempt the step's config is resolved against the
//!   variables ([`vars`]: `${params.x}`, `${steps.a.output.rows[0].id}`,
//!   `${execution.scheduled_time}`, `${secrets.name}`). A `${secrets.*}`
//!   reference needs the step's plugin to be granted that secret, exactly
//!   as a call to the secrets capability would; otherwise the attempt fails
//!   as `denied`.
//! - The attempt row is written (`running`) before the plugin runs and
//!   finished after it, so after a crash the store says which attempt was
//!   in flight.
//! - A failed attempt is retried when the step's [`RetryPolicy`] has
//!   attempts left and the failure may be retried (`invalid_config` and
//!   `denied` never are, nor the kinds listed in `never_retry`), after the
//!   policy's backoff, waited on the engine's [`Timer`].
//! - Then the step's flow action: `next`, `goto`, `quit_success`,
//!   `quit_failure` (defaults: next on success, quit_failure on failure).
//!   Running past the last step succeeds. The job's `max_step_runs` bounds
//!   goto loops: the step run beyond it fails the execution.
//!
//! # Time limits and cancellation
//!
//! A step's `timeout_ms` bounds each attempt (epoch interruption inside
//! wasm and a timer around host calls, in [`Runtime::execute`]). The job's
//! `timeout_ms` bounds the whole execution, waits between retries
//! included: when it passes, the running attempt is dropped (which stops
//! the wasm and any host call in flight), recorded as `timed_out`, and the
//! execution ends `timed_out`. A [`CancellationToken`] does the same with
//! `cancelled`. Both are checked between attempts and during backoff.
//!
//! # What is stored
//!
//! Outputs, exports, errors and logs of each attempt, as JSON, each capped
//! at [`EngineLimits`] (a larger value is stored as
//! `{"truncated": true, "bytes": n}`); the in-memory variables keep the
//! full value for later steps. Everything a plugin returns has already been
//! through the runtime's secret masker, and a failure to resolve a variable
//! names the expression, never its value: no secret reaches the store.
//!
//! # Resuming a recovered execution
//!
//! [`service::Executions::recover`] puts an execution found `running` at
//! start-up back to `queued` (policy `retry_step`) after marking its
//! in-flight attempt `interrupted`. When the engine runs it again it
//! rebuilds the variables from the stored step runs and continues: an
//! interrupted step counts the interrupted attempt as failed and retries it
//! if its policy has attempts left (the step may run twice: at least once,
//! visible as a second attempt), else applies its on-failure action; a
//! finished last step run continues with its flow action.

pub mod service;
pub mod spool;
pub use service::measure_clock;
mod validate;
pub use validate::validate_job;
pub mod view;

use crate::model::{self, FlowAction, Job, RetryPolicy, Step, vars};
use crate::runtime::{Invocation, LoadedPlugin, Runtime, StepFailure, StepRun};
use crate::store::{AttemptFinish, AttemptStart, ExecutionRow, StepRunRow, Store, StoreError};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub use tokio_util::sync::CancellationToken as Cancel;

/// An execution's state, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl ExecutionStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "timed_out" => Self::TimedOut,
            _ => return None,
        })
    }

    /// Whether the execution has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// A step run's or an attempt's state, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
    /// Its node stopped while it ran (found at start-up).
    Interrupted,
}

impl RunStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
            Self::Interrupted => "interrupted",
        }
    }
}

/// The engine's clock: "now" for the records, and the waits between
/// retries. Tests substitute one that records each wait and returns at once.
pub trait Timer: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The system clock and tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemTimer;

impl Timer for SystemTimer {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// The store's time ([`ClusterClock`](crate::scheduler::ClusterClock)) and
/// tokio's timer: what a node sharing its store stamps its records with.
impl Timer for crate::scheduler::ClusterClock {
    fn now(&self) -> DateTime<Utc> {
        crate::scheduler::Clock::now(self)
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Caps on what is stored per attempt.
#[derive(Debug, Clone, Copy)]
pub struct EngineLimits {
    /// Output and exports, each as JSON text.
    pub max_stored_output_bytes: usize,
    /// The attempt's log lines as a JSON array.
    pub max_stored_log_bytes: usize,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            max_stored_output_bytes: 64 * 1024,
            max_stored_log_bytes: 256 * 1024,
        }
    }
}

/// The engine could not record an execution: the store failed. The
/// execution stays as far as it was recorded (`running`) and is recovered
/// at the next start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("execution {0:?} does not exist")]
    NotFound(String),
    /// A write of the run was refused because the execution's epoch moved
    /// on: another node claimed it (this node had lost its lease, cut off
    /// from the store). The run stopped where it was; the node that took
    /// the execution over records the rest.
    #[error("execution {0:?} was taken over by another node; this node stopped its run")]
    Superseded(String),
}

/// The epoch under which a run holds its execution (see
/// `store/backend/cluster.rs`, fencing), shared with whoever must still
/// write for the run after it was dropped (the queue's abort guard).
#[derive(Debug, Clone, Default)]
pub struct Fence(Arc<std::sync::atomic::AtomicI64>);

impl Fence {
    /// Not known yet: the run has not read its execution.
    const UNSET: i64 = i64::MIN;

    /// A fence whose epoch is not known yet.
    pub fn new() -> Self {
        Fence(Arc::new(std::sync::atomic::AtomicI64::new(Self::UNSET)))
    }

    /// The epoch the run holds, once it read or started its execution.
    pub fn epoch(&self) -> Option<i64> {
        match self.0.load(std::sync::atomic::Ordering::SeqCst) {
            Self::UNSET => None,
            e => Some(e),
        }
    }

    fn set(&self, epoch: i64) {
        self.0.store(epoch, std::sync::atomic::Ordering::SeqCst);
    }
}

/// One attempt, as the engine saw it.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptReport {
    pub attempt: u32,
    pub status: RunStatus,
    /// The backoff waited before this attempt.
    pub waited_ms: u64,
    #[serde(flatten)]
    pub run: StepRun,
}

/// One step run.
#[derive(Debug, Clone, Serialize)]
pub struct StepRunReport {
    pub seq: i64,
    pub step_id: String,
    pub step_type: String,
    pub status: RunStatus,
    pub attempts: Vec<AttemptReport>,
}

/// What [`Engine::run`] did (the store has the same, durably).
#[derive(Debug, Clone, Serialize)]
pub struct ExecutionReport {
    pub execution_id: String,
    pub job_id: String,
    pub job_version: Option<i64>,
    pub status: ExecutionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// The step runs of this call (a resumed execution's earlier ones are
    /// in the store).
    pub steps: Vec<StepRunReport>,
}

/// Runs executions; cheap to share.
pub struct Engine {
    runtime: Arc<Runtime>,
    store: Store,
    timer: Arc<dyn Timer>,
    limits: EngineLimits,
    /// Where attempts run, when not on the caller's runtime.
    steps: Option<tokio::runtime::Handle>,
    /// Where attempt and execution latencies go, when measured (`serve`).
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Where outcomes that wait for the store are kept on disk (`serve`).
    spool: Option<Arc<spool::Spool>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// How one step run ended.
enum StepOutcome {
    Succeeded,
    Failed(Value),
    Cancelled,
    TimedOut,
}

/// Where the execution goes next.
enum Next {
    Step(usize),
    End(ExecutionStatus, Option<Value>),
}

impl Engine {
    pub fn new(runtime: Arc<Runtime>, store: Store, timer: Arc<dyn Timer>) -> Self {
        Engine {
            runtime,
            store,
            timer,
            limits: EngineLimits::default(),
            steps: None,
            metrics: None,
            spool: None,
        }
    }

    /// Records every attempt's duration and outcome per step type in
    /// `metrics` (and, through [`service::EngineHandler`], every
    /// execution's wait and run time per zone).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Keeps outcomes that wait for the store in `spool` as well as in
    /// memory, so that they survive the node stopping before the store
    /// returns (see [`spool`]); replayed by recovery at the next start.
    pub fn with_spool(mut self, spool: spool::Spool) -> Self {
        self.spool = Some(Arc::new(spool));
        self
    }

    /// The spool given by [`Engine::with_spool`].
    pub fn spool(&self) -> Option<&Arc<spool::Spool>> {
        self.spool.as_ref()
    }

    /// The metrics given by [`Engine::with_metrics`].
    pub fn metrics(&self) -> Option<&Arc<crate::metrics::Metrics>> {
        self.metrics.as_ref()
    }

    /// Runs every attempt on `handle`'s runtime instead of the caller's.
    /// `meridian serve` gives steps a runtime of their own, so that wasm
    /// burning CPU (it yields only at epoch ticks) cannot hold up the API's
    /// tasks; the operating system shares the cores between the two.
    pub fn with_step_runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.steps = Some(handle);
        self
    }

    /// One attempt, on the step runtime when there is one. Dropping the
    /// returned future stops the attempt either way.
    async fn execute(&self, plugin: &Arc<LoadedPlugin>, invocation: Invocation) -> StepRun {
        let Some(handle) = &self.steps else {
            return self.runtime.execute(plugin, invocation).await;
        };
        let runtime = Arc::clone(&self.runtime);
        let plugin = Arc::clone(plugin);
        // A spawned task starts outside every span; it takes the
        // execution's along, so the step's lines, as it logs them, go to the
        // execution's and the zone's files, not to `system/`.
        let attempt = async move { runtime.execute(&plugin, invocation).await }
            .instrument(tracing::Span::current());
        let mut task = AbortOnDrop(handle.spawn(attempt));
        match (&mut task.0).await {
            Ok(run) => run,
            Err(e) => not_run(StepFailure::Crashed {
                message: format!("the attempt's task ended abnormally: {e}"),
            }),
        }
    }

    /// Overrides the storage caps.
    pub fn with_limits(mut self, limits: EngineLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn timer(&self) -> &Arc<dyn Timer> {
        &self.timer
    }

    /// Runs the stored execution `execution_id` to its end. An execution
    /// that is no longer `queued` (cancelled while it waited, or started
    /// elsewhere) is not run: the report carries its stored status.
    pub async fn run(
        &self,
        execution_id: &str,
        cancel: CancellationToken,
    ) -> Result<ExecutionReport, EngineError> {
        self.run_fenced(execution_id, cancel, &Fence::new()).await
    }

    /// [`Engine::run`], keeping in `fence` the epoch the run holds its
    /// execution under. Every write of the run names that epoch; when one
    /// is refused (another node claimed the execution), the run stops with
    /// [`EngineError::Superseded`] and writes nothing more.
    pub async fn run_fenced(
        &self,
        execution_id: &str,
        cancel: CancellationToken,
        fence: &Fence,
    ) -> Result<ExecutionReport, EngineError> {
        let (row, stored) = durably(&cancel, "reading the execution", execution_id, None, |_| {
            self.store.get_execution_with_job(execution_id)
        })
        .await?
        .ok_or_else(|| EngineError::NotFound(execution_id.to_owned()))?;
        fence.set(row.epoch);
        let mut report = ExecutionReport {
            execution_id: row.id.clone(),
            job_id: row.job_id.clone(),
            job_version: row.job_version,
            status: ExecutionStatus::parse(&row.status).unwrap_or(ExecutionStatus::Failed),
            error: None,
            steps: Vec::new(),
        };
        if report.status != ExecutionStatus::Queued {
            return Ok(report);
        }
        if row.cancel_requested {
            let error = json!({"kind": "cancelled", "message": "cancelled before it started"});
            let (now_us, text) = (self.timer.now().timestamp_micros(), error.to_string());
            durably(&cancel, "recording a cancel", &row.id, None, |_| {
                self.store.cancel_queued(&row.id, &text, now_us)
            })
            .await?;
            report.status = ExecutionStatus::Cancelled;
            report.error = Some(error);
            return Ok(report);
        }
        let now_us = self.timer.now().timestamp_micros();
        let Some(stored) = stored else {
            return self
                .fail_early(
                    report,
                    json!({"kind": "job_not_found", "message": format!("job {:?} does not exist", row.job_id)}),
                    row.epoch,
                    now_us,
                    &cancel,
                )
                .await;
        };
        let job = match model::parse_job(&stored.definition) {
            Ok(job) => job,
            Err(issues) => {
                tracing::error!(job_id = %row.job_id, version = stored.version, ?issues, "stored job does not parse");
                return self
                    .fail_early(
                        report,
                        json!({"kind": "invalid_job", "message": "the stored job definition does not parse"}),
                        row.epoch,
                        now_us,
                        &cancel,
                    )
                    .await;
            }
        };
        // Everything from here on is about this execution in the job's zone:
        // the log router files it under both (see `crate::logging`).
        let span = tracing::info_span!(
            "execution",
            execution_id = %row.id,
            job_id = %row.job_id,
            zone = %job.timezone,
        );
        self.started(report, &row, stored.version, job, cancel, fence)
            .instrument(span)
            .await
    }

    /// The part of [`Engine::run`] inside the execution's span.
    async fn started(
        &self,
        mut report: ExecutionReport,
        row: &ExecutionRow,
        version: i64,
        job: Job,
        cancel: CancellationToken,
        fence: &Fence,
    ) -> Result<ExecutionReport, EngineError> {
        let now_us = self.timer.now().timestamp_micros();
        let node = self.store.node().id;
        let own: &str = &node;
        let started = durably(
            &cancel,
            "recording the execution's start",
            &row.id,
            None,
            |retry| async move {
                if self
                    .store
                    .start_execution(&row.id, version, row.epoch, now_us)
                    .await?
                {
                    return Ok(true);
                }
                Ok(retry.0 && start_landed(&self.store, row, own).await?)
            },
        )
        .await?;
        if !started {
            let now = durably(&cancel, "reading the execution", &row.id, None, |_| {
                self.store.get_execution(&row.id)
            })
            .await?;
            report.status = now
                .and_then(|r| ExecutionStatus::parse(&r.status))
                .unwrap_or(report.status);
            return Ok(report);
        }
        let epoch = row.epoch + 1;
        fence.set(epoch);
        report.job_version = Some(version);
        report.status = ExecutionStatus::Running;
        tracing::info!(execution_id = %row.id, job_id = %row.job_id, version = version, epoch, zone = %job.timezone, "execution started");

        let supplied: Map<String, Value> = serde_json::from_str(&row.params).unwrap_or_default();
        let params = match model::resolve_params(&job, &supplied) {
            Ok(p) => p,
            Err(issues) => {
                let error = json!({"kind": "invalid_params", "message": "the execution's parameters do not fit the job", "errors": issues});
                return self
                    .finish(
                        report,
                        &job,
                        (ExecutionStatus::Failed, Some(error)),
                        0,
                        epoch,
                        &cancel,
                    )
                    .await;
            }
        };
        // A resumed execution keeps its first start: its time limit counts
        // from there, downtime included.
        let now = self.timer.now();
        let started = row
            .started_at_us
            .and_then(DateTime::from_timestamp_micros)
            .unwrap_or(now);
        let deadline = job.timeout_ms.map(|ms| {
            let spent = (now - started).to_std().unwrap_or_default();
            tokio::time::Instant::now() + Duration::from_millis(ms).saturating_sub(spent)
        });
        // A stored scope that no longer parses narrows to nothing: deny by
        // default.
        let capability_scope = job.scope.as_ref().map(|spec| {
            Arc::new(crate::capabilities::grants::scope::Scope::parse(spec).unwrap_or_else(|errors| {
                tracing::error!(job_id = %job.id, ?errors, "the job's scope does not parse; its steps reach nothing");
                crate::capabilities::grants::scope::Scope::nothing()
            }))
        });
        let mut run = Run {
            engine: self,
            job: &job,
            capability_scope,
            version,
            row,
            epoch,
            params,
            steps: Map::new(),
            started,
            deadline,
            cancel: &cancel,
            seq: 0,
            reports: Vec::new(),
        };
        let end = run.drive().await?;
        let seq = run.seq;
        report.steps = std::mem::take(&mut run.reports);
        self.finish(report, &job, end, seq, epoch, &cancel).await
    }

    async fn fail_early(
        &self,
        mut report: ExecutionReport,
        error: Value,
        epoch: i64,
        now_us: i64,
        cancel: &CancellationToken,
    ) -> Result<ExecutionReport, EngineError> {
        let end = ExecutionEnd {
            status: ExecutionStatus::Failed,
            error: Some(error.to_string()),
            step_runs: 0,
            epoch,
            now_us,
        };
        if !self.record_end(&report.execution_id, &end, cancel).await? {
            return Err(EngineError::Superseded(report.execution_id));
        }
        tracing::warn!(execution_id = %report.execution_id, job_id = %report.job_id, %error, "execution failed before its first step");
        report.status = ExecutionStatus::Failed;
        report.error = Some(error);
        Ok(report)
    }

    /// Records an execution's end (durably, spooled): whether it was
    /// recorded, `false` when another node has taken the execution over.
    async fn record_end(
        &self,
        execution_id: &str,
        end: &ExecutionEnd,
        cancel: &CancellationToken,
    ) -> Result<bool, StoreError> {
        let spooled = self.spool.as_deref().map(|s| {
            (
                s,
                spool::SpooledWrite::FinishExecution {
                    execution_id: execution_id.to_owned(),
                    status: end.status.as_str().to_owned(),
                    error: end.error.clone(),
                    step_runs: end.step_runs,
                    epoch: end.epoch,
                    now_us: end.now_us,
                },
            )
        });
        durably(
            cancel,
            "recording an execution's end",
            execution_id,
            spooled,
            |retry| async move {
                let store = &self.store;
                if store
                    .finish_execution(
                        execution_id,
                        end.status.as_str(),
                        end.error.as_deref(),
                        end.step_runs,
                        end.epoch,
                        end.now_us,
                    )
                    .await?
                {
                    return Ok(true);
                }
                Ok(retry.0 && execution_end_landed(store, execution_id, end).await?)
            },
        )
        .await
    }

    async fn finish(
        &self,
        mut report: ExecutionReport,
        job: &Job,
        (status, error): (ExecutionStatus, Option<Value>),
        step_runs: i64,
        epoch: i64,
        cancel: &CancellationToken,
    ) -> Result<ExecutionReport, EngineError> {
        let error_text = error.as_ref().map(Value::to_string);
        let end = ExecutionEnd {
            status,
            error: error_text.clone(),
            step_runs,
            epoch,
            now_us: self.timer.now().timestamp_micros(),
        };
        let recorded = self.record_end(&report.execution_id, &end, cancel).await?;
        if !recorded {
            return Err(EngineError::Superseded(report.execution_id));
        }
        match status {
            ExecutionStatus::Succeeded => {
                tracing::info!(execution_id = %report.execution_id, job_id = %report.job_id, step_runs, "execution succeeded")
            }
            _ => {
                tracing::warn!(execution_id = %report.execution_id, job_id = %report.job_id, step_runs, status = status.as_str(), error = %error_text.as_deref().unwrap_or(""), "execution did not succeed")
            }
        }
        if let Some(r) = job.retention {
            let keep = r.keep_last.map(i64::from);
            let age = r.max_age_days.map(|d| i64::from(d) * 86_400 * 1_000_000);
            match self
                .store
                .apply_retention(&job.id, keep, age, end.now_us)
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(job_id = %job.id, deleted = n, "execution history trimmed by the job's retention")
                }
                Err(e) => tracing::warn!(job_id = %job.id, "retention failed: {e}"),
            }
        }
        report.status = status;
        report.error = error;
        Ok(report)
    }
}

/// The state of one execution while it runs.
struct Run<'a> {
    engine: &'a Engine,
    job: &'a Job,
    /// The job's capability scope, compiled once per execution.
    capability_scope: Option<Arc<crate::capabilities::grants::scope::Scope>>,
    version: i64,
    row: &'a ExecutionRow,
    /// The epoch the run holds its execution under: every write names it.
    epoch: i64,
    params: Map<String, Value>,
    /// `steps.<id>` variables: the latest step run of each step.
    steps: Map<String, Value>,
    started: DateTime<Utc>,
    deadline: Option<tokio::time::Instant>,
    cancel: &'a CancellationToken,
    /// The latest step run's number.
    seq: i64,
    reports: Vec<StepRunReport>,
}

impl Run<'_> {
    fn max_step_runs(&self) -> i64 {
        i64::from(
            self.job
                .max_step_runs
                .unwrap_or(model::DEFAULT_MAX_STEP_RUNS),
        )
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        self.job.steps.iter().position(|s| s.id == id)
    }

    /// Runs steps until the flow ends the execution.
    async fn drive(&mut self) -> Result<(ExecutionStatus, Option<Value>), EngineError> {
        let (mut next, mut resume) = self.resume_point().await?;
        loop {
            let pos = match next {
                Next::End(status, error) => return Ok((status, error)),
                Next::Step(pos) if pos >= self.job.steps.len() => {
                    return Ok((ExecutionStatus::Succeeded, None));
                }
                Next::Step(pos) => pos,
            };
            let (seq, first_attempt) = match resume.take() {
                Some(r) => r,
                None => (self.seq + 1, 1),
            };
            if seq > self.max_step_runs() {
                let limit = self.max_step_runs();
                return Ok((
                    ExecutionStatus::Failed,
                    Some(json!({
                        "kind": "max_step_runs",
                        "message": format!("the execution reached its limit of {limit} step runs (a goto loop?)"),
                        "limit": limit,
                    })),
                ));
            }
            self.seq = seq;
            let outcome = self.run_step(pos, seq, first_attempt).await?;
            next = self.after(pos, outcome);
        }
    }

    /// The flow action after step `pos` ended with `outcome`.
    fn after(&self, pos: usize, outcome: StepOutcome) -> Next {
        let step = &self.job.steps[pos];
        let (action, failure) = match outcome {
            StepOutcome::Cancelled => {
                return Next::End(
                    ExecutionStatus::Cancelled,
                    Some(
                        json!({"kind": "cancelled", "message": "the execution was cancelled", "step_id": step.id}),
                    ),
                );
            }
            StepOutcome::TimedOut => {
                return Next::End(
                    ExecutionStatus::TimedOut,
                    Some(json!({
                        "kind": "timed_out",
                        "message": format!("the execution exceeded its time limit of {} ms", self.job.timeout_ms.unwrap_or(0)),
                        "step_id": step.id,
                    })),
                );
            }
            StepOutcome::Succeeded => (step.success_action(), None),
            StepOutcome::Failed(error) => (step.failure_action(), Some(error)),
        };
        match action {
            FlowAction::Next => Next::Step(pos + 1),
            FlowAction::QuitSuccess => Next::End(ExecutionStatus::Succeeded, None),
            FlowAction::QuitFailure => Next::End(
                ExecutionStatus::Failed,
                Some(match failure {
                    Some(error) => json!({
                        "kind": "step_failed",
                        "message": format!("step {:?} failed: {}", step.id, error.get("message").and_then(Value::as_str).unwrap_or("")),
                        "step_id": step.id,
                        "step_error": error,
                    }),
                    None => json!({
                        "kind": "quit_failure",
                        "message": format!("step {:?} succeeded and its on_success is quit_failure", step.id),
                        "step_id": step.id,
                    }),
                }),
            ),
            FlowAction::Goto(target) => match self.index_of(&target) {
                Some(i) => Next::Step(i),
                None => Next::End(
                    ExecutionStatus::Failed,
                    Some(
                        json!({"kind": "invalid_job", "message": format!("step {:?} goes to unknown step {target:?}", step.id)}),
                    ),
                ),
            },
        }
    }

    /// Where a (possibly resumed) execution starts: the first step, or
    /// after the stored step runs of an earlier, interrupted run.
    async fn resume_point(&mut self) -> Result<(Next, Option<(i64, u32)>), EngineError> {
        if self.row.step_runs == 0 {
            return Ok((Next::Step(0), None));
        }
        let runs = self.engine.store.list_step_runs(&self.row.id).await?;
        let Some(last) = runs.last().cloned() else {
            return Ok((Next::Step(0), None));
        };
        for r in &runs {
            self.remember(r);
        }
        self.seq = last.seq;
        let Some(pos) = self.index_of(&last.step_id) else {
            return Ok((
                Next::End(
                    ExecutionStatus::Failed,
                    Some(
                        json!({"kind": "invalid_job", "message": format!("the resumed execution was at step {:?}, which its job version lacks", last.step_id)}),
                    ),
                ),
                None,
            ));
        };
        let step = &self.job.steps[pos];
        tracing::info!(execution_id = %self.row.id, seq = last.seq, step_id = %last.step_id, status = %last.status, "resuming a recovered execution");
        Ok(match last.status.as_str() {
            "succeeded" => (self.after(pos, StepOutcome::Succeeded), None),
            "cancelled" => (self.after(pos, StepOutcome::Cancelled), None),
            "timed_out" if self.expired() => (self.after(pos, StepOutcome::TimedOut), None),
            "interrupted" | "running" => {
                let attempts = u32::try_from(last.attempts).unwrap_or(u32::MAX);
                if attempts < step.retry_policy().max_attempts {
                    (Next::Step(pos), Some((last.seq, attempts + 1)))
                } else {
                    let error = json!({"kind": "interrupted", "message": "the node stopped while this step ran, and its retry policy has no attempts left"});
                    (self.after(pos, StepOutcome::Failed(error)), None)
                }
            }
            _ => {
                let error = last
                    .error
                    .as_deref()
                    .and_then(|e| serde_json::from_str(e).ok())
                    .unwrap_or(Value::Null);
                (self.after(pos, StepOutcome::Failed(error)), None)
            }
        })
    }

    /// Rebuilds `steps.<id>` from a stored step run.
    fn remember(&mut self, r: &StepRunRow) {
        let parse = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
                .unwrap_or(Value::Null)
        };
        self.steps.insert(
            r.step_id.clone(),
            json!({
                "output": parse(&r.output),
                "exports": match parse(&r.exports) { Value::Null => json!({}), v => v },
                "status": r.status,
                "error": parse(&r.error),
                "attempts": r.attempts,
            }),
        );
    }

    /// The variables an attempt sees (secrets aside).
    fn scope(&self, step: &Step, seq: i64, attempt: u32) -> Value {
        let tz: chrono_tz::Tz = self.job.timezone.parse().unwrap_or(chrono_tz::UTC);
        let scheduled = self
            .row
            .scheduled_at_us
            .and_then(DateTime::from_timestamp_micros);
        json!({
            "params": self.params,
            "steps": self.steps,
            "execution": {
                "id": self.row.id,
                "attempt": attempt,
                "step_id": step.id,
                "step_run": seq,
                "trigger": self.row.trigger,
                "scheduled_time": scheduled.map(|t| t.with_timezone(&tz).to_rfc3339_opts(SecondsFormat::AutoSi, true)),
                "scheduled_time_utc": scheduled.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
                "started_at": self.started.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                "schedule_id": self.row.schedule_id,
            },
            "job": {
                "id": self.job.id,
                "name": self.job.name,
                "version": self.version,
                "timezone": self.job.timezone,
                "priority": self.job.priority,
                "owner": self.job.owner,
                "tags": self.job.tags,
            },
        })
    }

    /// Resolves a step's config for one attempt; secrets need the plugin's
    /// grant.
    fn resolve(
        &self,
        plugin: &LoadedPlugin,
        config: &Value,
        scope: &Value,
    ) -> Result<Value, StepFailure> {
        // Checked before anything is resolved: a job stored before its
        // plugin marked a field as code fails here rather than splice.
        let spliced = plugin.literal_fields().check(config);
        if !spliced.is_empty() {
            return Err(StepFailure::InvalidConfig {
                issues: spliced
                    .into_iter()
                    .map(|s| crate::runtime::ConfigIssue {
                        path: s.path,
                        message: s.message,
                    })
                    .collect(),
            });
        }
        let grants = match &self.capability_scope {
            Some(scope) => Arc::new(plugin.grants().with_scope(Arc::clone(scope))),
            None => plugin.grants(),
        };
        for name in vars::secret_names(config) {
            grants
                .check_secret(&name)
                .map_err(|denial| StepFailure::Denied { denial })?;
        }
        let secrets = self.engine.runtime.secrets();
        vars::resolve(config, scope, &mut |name| {
            secrets
                .get(name)
                .map(|s| s.expose().to_owned())
                .ok_or_else(|| vars::SecretError {
                    message: format!("no secret {name:?} is configured"),
                })
        })
        .map_err(|issues| StepFailure::InvalidConfig {
            issues: issues
                .into_iter()
                .map(|i| crate::runtime::ConfigIssue {
                    path: i.path,
                    message: i.message,
                })
                .collect(),
        })
    }

    /// Runs one step run: its attempts, with backoff between them.
    async fn run_step(
        &mut self,
        pos: usize,
        seq: i64,
        first_attempt: u32,
    ) -> Result<StepOutcome, EngineError> {
        let engine = self.engine;
        let step = &self.job.steps[pos];
        let policy: RetryPolicy = step.retry_policy();
        let plugin = engine.runtime.plugin(&step.step_type);
        let mut report = StepRunReport {
            seq,
            step_id: step.id.clone(),
            step_type: step.step_type.clone(),
            status: RunStatus::Running,
            attempts: Vec::new(),
        };
        let mut attempt = first_attempt;
        let mut waited_ms = 0;
        let outcome = loop {
            if self.cancel.is_cancelled() {
                break StepOutcome::Cancelled;
            }
            if self.expired() {
                break StepOutcome::TimedOut;
            }
            let scope = self.scope(step, seq, attempt);
            let started_at = engine.timer.now();
            let start = AttemptStart {
                execution_id: self.row.id.clone(),
                seq,
                step_id: step.id.clone(),
                step_type: step.step_type.clone(),
                attempt: i64::from(attempt),
                now_us: started_at.timestamp_micros(),
                epoch: self.epoch,
            };
            let start = &start;
            let started = durably(
                self.cancel,
                "recording an attempt's start",
                &self.row.id,
                None,
                |retry| async move {
                    match engine.store.start_attempt(start).await {
                        // A try that failed landed: the attempt is there,
                        // inserted under this epoch (another node's would
                        // have moved the epoch on, and this insert would
                        // have found no row to insert, not a duplicate).
                        Err(StoreError::Conflict {
                            what: "attempt", ..
                        }) if retry.0 => Ok(true),
                        r => r,
                    }
                },
            )
            .await?;
            if !started {
                return Err(EngineError::Superseded(self.row.id.clone()));
            }
            let clock = std::time::Instant::now();
            // Ok(run) ran; Err(outcome): cancelled or out of time mid-run.
            let ran: Result<StepRun, StepOutcome> = match &plugin {
                None => Ok(not_run(StepFailure::Unavailable {
                    message: not_loaded(&engine.runtime, &step.step_type),
                })),
                Some(plugin) => match self.resolve(plugin, &step.config, &scope) {
                    Err(failure) => Ok(not_run(failure)),
                    Ok(config) => {
                        let invocation = Invocation {
                            job_id: self.job.id.clone(),
                            execution_id: self.row.id.clone(),
                            step_id: step.id.clone(),
                            attempt,
                            timezone: self.job.timezone.clone(),
                            scheduled_time: scope["execution"]["scheduled_time"]
                                .as_str()
                                .map(str::to_owned),
                            config,
                            variables: scope,
                            timeout: step.timeout_ms.map(Duration::from_millis),
                            scope: self.capability_scope.clone(),
                        };
                        let deadline = self.deadline;
                        tokio::select! {
                            biased;
                            () = self.cancel.cancelled() => Err(StepOutcome::Cancelled),
                            () = until(deadline) => Err(StepOutcome::TimedOut),
                            run = engine.execute(plugin, invocation) => Ok(run),
                        }
                    }
                },
            };
            let (run, status, done) = match ran {
                Ok(run) => {
                    let status = match &run.result {
                        Ok(_) => RunStatus::Succeeded,
                        Err(StepFailure::Timeout { .. } | StepFailure::TimedOut { .. }) => {
                            RunStatus::TimedOut
                        }
                        Err(_) => RunStatus::Failed,
                    };
                    let done = match &run.result {
                        Ok(_) => true,
                        Err(f) => {
                            plugin.is_none()
                                || attempt >= policy.max_attempts
                                || !(f.is_retryable() && policy.may_retry(f.kind()))
                        }
                    };
                    (run, status, done)
                }
                Err(outcome) => {
                    let (status, message) = match outcome {
                        StepOutcome::Cancelled => {
                            (RunStatus::Cancelled, "cancelled while the step ran")
                        }
                        _ => (
                            RunStatus::TimedOut,
                            "the execution's time limit passed while the step ran",
                        ),
                    };
                    let mut run = not_run(StepFailure::Failed {
                        message: message.to_owned(),
                    });
                    run.duration = clock.elapsed();
                    (run, status, true)
                }
            };
            let finished_at = engine.timer.now();
            self.record(seq, attempt, &run, status, done, finished_at)
                .await?;
            trace_attempt(step, seq, attempt, status, &run);
            let succeeded = status == RunStatus::Succeeded;
            if let Some(metrics) = &engine.metrics {
                metrics.record_attempt(&step.step_type, run.duration, succeeded);
            }
            let result = run.result.clone();
            report.attempts.push(AttemptReport {
                attempt,
                status,
                waited_ms,
                run,
            });
            report.status = status;
            match (status, result) {
                (RunStatus::Cancelled, _) => break StepOutcome::Cancelled,
                (RunStatus::Succeeded, Ok(success)) => {
                    self.steps.insert(
                        step.id.clone(),
                        json!({
                            "output": success.output,
                            "exports": success.exports,
                            "status": "succeeded",
                            "error": null,
                            "attempts": attempt,
                        }),
                    );
                    break StepOutcome::Succeeded;
                }
                (RunStatus::TimedOut, _) if done && self.expired() => break StepOutcome::TimedOut,
                (_, result) => {
                    let error = match &result {
                        Err(f) => failure_json(f),
                        Ok(_) => Value::Null,
                    };
                    if done {
                        self.steps.insert(
                            step.id.clone(),
                            json!({
                                "output": null,
                                "exports": {},
                                "status": status.as_str(),
                                "error": error,
                                "attempts": attempt,
                            }),
                        );
                        break StepOutcome::Failed(error);
                    }
                }
            }
            // A retry: wait the backoff, unless cancelled or out of time.
            let unit = jitter_unit(&self.row.id, seq, attempt);
            let delay = policy.delay_ms(attempt, unit);
            tracing::info!(execution_id = %self.row.id, step_id = %step.id, attempt, delay_ms = delay, "step attempt failed; retrying");
            let deadline = self.deadline;
            let interrupted = tokio::select! {
                biased;
                () = self.cancel.cancelled() => Some(StepOutcome::Cancelled),
                () = until(deadline) => Some(StepOutcome::TimedOut),
                () = engine.timer.sleep(Duration::from_millis(delay)) => None,
            };
            if let Some(outcome) = interrupted {
                // The step run ends with its last (failed) attempt.
                if let Some(last) = report.attempts.last() {
                    let run = last.run.clone();
                    let now = engine.timer.now();
                    self.record(seq, attempt, &run, last.status, true, now)
                        .await?;
                }
                break outcome;
            }
            waited_ms = delay;
            attempt += 1;
        };
        if report.attempts.is_empty() {
            // Cancelled or out of time before the step started: no step run.
            self.seq -= 1;
        } else {
            self.reports.push(report);
        }
        Ok(outcome)
    }

    fn expired(&self) -> bool {
        self.deadline
            .is_some_and(|d| tokio::time::Instant::now() >= d)
    }

    /// Finishes an attempt row (and the step run when `done`).
    async fn record(
        &self,
        seq: i64,
        attempt: u32,
        run: &StepRun,
        status: RunStatus,
        done: bool,
        at: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let limits = self.engine.limits;
        let (output, exports, error) = match &run.result {
            Ok(s) => (
                Some(capped(&s.output, limits.max_stored_output_bytes)),
                Some(capped(
                    &serde_json::to_value(&s.exports).unwrap_or(Value::Null),
                    limits.max_stored_output_bytes,
                )),
                None,
            ),
            Err(f) => (None, None, Some(failure_json(f).to_string())),
        };
        let logs = if run.logs.is_empty() {
            None
        } else {
            Some(capped(
                &serde_json::to_value(&run.logs).unwrap_or(Value::Null),
                limits.max_stored_log_bytes,
            ))
        };
        let finish = AttemptFinish {
            execution_id: self.row.id.clone(),
            seq,
            attempt: i64::from(attempt),
            status: status.as_str().to_owned(),
            now_us: at.timestamp_micros(),
            duration_us: i64::try_from(run.duration.as_micros()).unwrap_or(i64::MAX),
            output,
            exports,
            error,
            logs,
            host_calls: i64::from(run.host_calls),
            step_done: done,
            epoch: self.epoch,
        };
        let spooled = self
            .engine
            .spool
            .as_deref()
            .map(|s| (s, spool::SpooledWrite::FinishAttempt(finish.clone())));
        let finish = &finish;
        let recorded = durably(
            self.cancel,
            "recording an attempt's outcome",
            &self.row.id,
            spooled,
            |retry| async move {
                let store = &self.engine.store;
                if store.finish_attempt(finish).await? {
                    return Ok(true);
                }
                Ok(retry.0 && attempt_end_landed(store, finish).await?)
            },
        )
        .await?;
        if !recorded {
            return Err(EngineError::Superseded(self.row.id.clone()));
        }
        Ok(())
    }
}

/// The attempt as log events, inside the execution's span: each capability
/// call with its decision, and the outcome. The step's own lines (and what
/// it printed) were emitted as it ran, within its log caps
/// ([`crate::capabilities::log::StepLog`]). Everything here was masked by
/// the runtime.
fn trace_attempt(step: &Step, seq: i64, attempt: u32, status: RunStatus, run: &StepRun) {
    let (step_id, step_type) = (step.id.as_str(), step.step_type.as_str());
    for ev in &run.events {
        let decision = match ev.decision {
            crate::capabilities::Decision::Allowed => "allowed",
            crate::capabilities::Decision::Denied => "denied",
            crate::capabilities::Decision::Failed => "failed",
        };
        tracing::info!(
            target: "meridian::capability",
            step_id,
            seq,
            attempt,
            capability = ev.capability,
            target_resource = %ev.target,
            decision,
            detail = ev.detail.as_deref().unwrap_or(""),
            duration_us = ev.duration.as_micros() as u64,
            "capability call"
        );
    }
    let duration_ms = run.duration.as_secs_f64() * 1000.0;
    match &run.result {
        Ok(_) => tracing::info!(
            step_id,
            step_type,
            seq,
            attempt,
            status = status.as_str(),
            duration_ms,
            host_calls = run.host_calls,
            "attempt succeeded"
        ),
        Err(f) => {
            tracing::warn!(step_id, step_type, seq, attempt, status = status.as_str(), duration_ms, kind = f.kind(), error = %f, "attempt did not succeed")
        }
    }
}

/// Aborts a spawned attempt when its awaiting future is dropped
/// (cancellation, the execution's time limit).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A step run that never reached the plugin.
fn not_run(failure: StepFailure) -> StepRun {
    StepRun {
        result: Err(failure),
        logs: Vec::new(),
        logs_dropped: 0,
        events: Vec::new(),
        host_calls: 0,
        duration: Duration::ZERO,
    }
}

/// A failure as stored and as `${steps.<id>.error}`: its JSON form plus a
/// `message`.
fn failure_json(f: &StepFailure) -> Value {
    let mut v = serde_json::to_value(f).unwrap_or_else(|_| json!({"kind": f.kind()}));
    if let Value::Object(m) = &mut v {
        m.insert("message".into(), Value::String(f.to_string()));
    }
    v
}

/// JSON text of `value`, or a truncation marker when longer than `cap`.
fn capped(value: &Value, cap: usize) -> String {
    let text = value.to_string();
    if text.len() <= cap {
        text
    } else {
        json!({"truncated": true, "bytes": text.len()}).to_string()
    }
}

/// Resolves at `deadline`, never without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A number in [0, 1) fixed by the execution, step run and attempt: the
/// jitter of one backoff, the same if the history is replayed.
fn jitter_unit(execution_id: &str, seq: i64, attempt: u32) -> f64 {
    let mut h = Sha256::new();
    h.update(execution_id.as_bytes());
    h.update(seq.to_le_bytes());
    h.update(attempt.to_le_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// The longest wait between two tries of a write [`durably`] retries.
const DURABLE_RETRY_MAX: Duration = Duration::from_secs(5);

/// Retries a store call the run cannot go on without while the store is in
/// a passing condition ([`crate::store::Unavailable`]: down, restarting,
/// its disk full, busy, or this node's session terminated): the outcome
/// stays in memory and is recorded when the store is back, so a step that
/// succeeded during an outage is not run again, an execution does not stay
/// `running` because its last write came at the wrong moment, and a run is
/// not handed to another node because one read or write met a killed
/// session. Gives up, with the error, when the run is cancelled (the node
/// stopping: recovery decides at the next start) and at once on any other
/// error.
///
/// `call` is told whether an earlier try failed ([`Retry`]): a write whose
/// session was cut between its commit and its answer has landed though it
/// failed, and its next try then finds it done (no row left to change, or
/// a duplicate). Each write checks for its own landing in that case.
async fn durably<T, Fut>(
    cancel: &CancellationToken,
    what: &str,
    execution_id: &str,
    spooled: Option<(&spool::Spool, spool::SpooledWrite)>,
    mut call: impl FnMut(Retry) -> Fut,
) -> Result<T, StoreError>
where
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut delay = Duration::from_millis(100);
    let mut since: Option<std::time::Instant> = None;
    // The write's file in the spool while it waits.
    let mut kept: Option<(&spool::Spool, std::path::PathBuf)> = None;
    let forget = |kept: Option<(&spool::Spool, std::path::PathBuf)>| {
        if let Some((spool, path)) = kept {
            spool.forget(&path);
        }
    };
    loop {
        match call(Retry(since.is_some())).await {
            Ok(v) => {
                if let Some(t) = since {
                    tracing::info!(
                        execution_id,
                        waited_ms = t.elapsed().as_millis() as u64,
                        "the store is back: {what} done"
                    );
                }
                forget(kept);
                return Ok(v);
            }
            Err(e) if e.unavailable().is_some() && !cancel.is_cancelled() => {
                if since.is_none() {
                    since = Some(std::time::Instant::now());
                    kept = spooled
                        .as_ref()
                        .and_then(|(spool, w)| spool.keep(w).map(|path| (*spool, path)));
                    tracing::warn!(
                        execution_id,
                        error = %e,
                        spooled = kept.is_some(),
                        "{what} failed: the store is unavailable; kept in memory and retried until it is back"
                    );
                }
                // Given up when the run is cancelled (the node stopping):
                // the spooled write stays for the next start to replay.
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = cancel.cancelled() => return Err(e),
                }
                delay = (delay * 2).min(DURABLE_RETRY_MAX);
            }
            Err(e) => {
                forget(kept);
                return Err(e);
            }
        }
    }
}

/// Whether a start of `row` (read at `row.epoch`) that failed landed all
/// the same: the execution runs under node `own`, one epoch on. No other
/// write leaves it so: a claim by another node names that node, and this
/// node claims only at start-up, before it runs anything.
async fn start_landed(store: &Store, row: &ExecutionRow, own: &str) -> Result<bool, StoreError> {
    Ok(store.get_execution(&row.id).await?.is_some_and(|now| {
        now.status == "running" && now.epoch == row.epoch + 1 && now.node_id.as_deref() == Some(own)
    }))
}

/// Whether an attempt's end that failed landed all the same: the attempt
/// shows this very end (its status and end time, to the microsecond), and
/// the execution is still at the epoch it was written under.
async fn attempt_end_landed(store: &Store, finish: &AttemptFinish) -> Result<bool, StoreError> {
    let Some(execution) = store.get_execution(&finish.execution_id).await? else {
        return Ok(false);
    };
    Ok(execution.epoch == finish.epoch
        && store
            .list_attempts(&finish.execution_id)
            .await?
            .iter()
            .any(|a| {
                a.seq == finish.seq
                    && a.attempt == finish.attempt
                    && a.status == finish.status
                    && a.finished_at_us == Some(finish.now_us)
            }))
}

/// Whether an execution's end that failed landed all the same: the row
/// shows this very end, at the epoch it was written under.
async fn execution_end_landed(
    store: &Store,
    execution_id: &str,
    end: &ExecutionEnd,
) -> Result<bool, StoreError> {
    Ok(store.get_execution(execution_id).await?.is_some_and(|now| {
        now.epoch == end.epoch
            && now.status == end.status.as_str()
            && now.finished_at_us == Some(end.now_us)
    }))
}

/// An execution's end, as [`Engine::record_end`] writes it.
struct ExecutionEnd {
    status: ExecutionStatus,
    error: Option<String>,
    step_runs: i64,
    epoch: i64,
    now_us: i64,
}

/// Whether [`durably`] tries a call again after it failed: a write may
/// then have landed already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Retry(bool);

/// Why a step type has no plugin: the reason its component could not be
/// loaded, when one was found, or that none is loaded.
fn not_loaded(runtime: &crate::runtime::Runtime, step_type: &str) -> String {
    match runtime.unloadable_step_type(step_type) {
        Some(u) => format!(
            "step type {step_type:?} is not loaded: its plugin could not be loaded ({})",
            u.describe()
        ),
        None => format!("step type {step_type:?} is not loaded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `durably` tells each try after a failure that it is a retry, and
    /// goes on past an unavailable store until the call succeeds.
    #[tokio::test(start_paused = true)]
    async fn durably_tells_a_retry_after_a_failure() {
        let tries = std::sync::Mutex::new(Vec::new());
        let cancel = CancellationToken::new();
        let out = durably(&cancel, "testing", "e", None, |retry| {
            let mut seen = tries.lock().unwrap();
            seen.push(retry.0);
            let n = seen.len();
            async move {
                if n < 3 {
                    Err(StoreError::Unavailable {
                        why: crate::store::Unavailable::Unreachable,
                        message: "session terminated".into(),
                    })
                } else {
                    Ok(n)
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(out, 3);
        assert_eq!(*tries.lock().unwrap(), [false, true, true]);
    }

    /// Each write's own landing is recognised after a try whose answer
    /// was lost (it landed; its next try finds nothing left to change),
    /// and only its own: another end, another node's start or a moved
    /// epoch is not taken for it.
    #[tokio::test]
    async fn a_write_whose_answer_was_lost_is_recognised_as_landed() {
        use super::spool::tests::{finish, running_attempt};
        let store = Store::open_memory().await.unwrap();
        running_attempt(&store, "e").await;
        let own = store.node().id;

        // The start (epoch 0 → 1, this node) landed; read at epoch 0.
        let mut before = store.get_execution("e").await.unwrap().unwrap();
        before.epoch = 0;
        assert!(!store.start_execution("e", 1, 0, 2).await.unwrap());
        assert!(start_landed(&store, &before, &own).await.unwrap());
        assert!(!start_landed(&store, &before, "another-node").await.unwrap());

        // The attempt's end landed; the same write again changes nothing.
        let end = finish("e");
        assert!(store.finish_attempt(&end).await.unwrap());
        assert!(!store.finish_attempt(&end).await.unwrap());
        assert!(attempt_end_landed(&store, &end).await.unwrap());
        let other = AttemptFinish {
            status: "failed".into(),
            ..finish("e")
        };
        assert!(!attempt_end_landed(&store, &other).await.unwrap());
        let later = AttemptFinish {
            now_us: 5,
            ..finish("e")
        };
        assert!(!attempt_end_landed(&store, &later).await.unwrap());

        // The execution's end landed.
        let end = ExecutionEnd {
            status: ExecutionStatus::Succeeded,
            error: None,
            step_runs: 1,
            epoch: 1,
            now_us: 6,
        };
        assert!(
            store
                .finish_execution("e", "succeeded", None, 1, 1, 6)
                .await
                .unwrap()
        );
        assert!(execution_end_landed(&store, "e", &end).await.unwrap());
        let failed = ExecutionEnd {
            status: ExecutionStatus::Failed,
            ..end
        };
        assert!(!execution_end_landed(&store, "e", &failed).await.unwrap());

        // Once a claim moved the epoch on, nothing of epoch 1 is taken
        // for landed.
        running_attempt(&store, "f").await;
        assert!(store.finish_attempt(&finish("f")).await.unwrap());
        assert_eq!(store.claim_executions(true, 10).await.unwrap().len(), 1);
        let mut f = store.get_execution("f").await.unwrap().unwrap();
        f.epoch = 0;
        assert!(!start_landed(&store, &f, &own).await.unwrap());
        assert!(!attempt_end_landed(&store, &finish("f")).await.unwrap());
    }

    #[test]
    fn jitter_units_are_stable_and_in_range() {
        let a = jitter_unit("e", 1, 1);
        assert_eq!(a, jitter_unit("e", 1, 1));
        assert_ne!(a, jitter_unit("e", 1, 2));
        for i in 0..1000 {
            let u = jitter_unit("x", i, 3);
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn large_values_are_stored_as_a_marker() {
        let v = json!({"a": "x".repeat(100)});
        assert_eq!(capped(&v, 1000), v.to_string());
        let m: Value = serde_json::from_str(&capped(&v, 10)).unwrap();
        assert_eq!(m["truncated"], true);
    }
}
