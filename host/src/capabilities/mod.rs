//! Host capabilities: the only way a step reaches anything outside its
//! sandbox.
//!
//! One folder per capability (`http/`, `sql/`, `process/`, `secrets/`,
//! `log/`), each with its host side and one `add_to_linker`, its grant rule
//! (`grant.rs`: what one `[[grants.<name>]]` entry allows, parsed once) and
//! its settings; the decision itself is a question to [`crate::capabilities::grants`]. What every
//! capability of one step execution shares lives in [`StepEnv`]: who is
//! calling, what it was granted, and the [`CallLedger`] that counts calls
//! against the host-call budget and records every use and denial (the
//! material of the audit trail).
//!
//! A step's `validate` runs in a [`StepEnv::validation`]: every capability
//! call is refused before any grant is looked at, whatever the plugin was
//! granted (see [`StepEnv::begin`]).

pub mod grants;
pub mod http;
pub mod log;
pub mod process;
pub mod secrets;
pub mod sql;

use crate::audit::{AuditEntry, AuditLog};
use crate::capabilities::grants::{Denial, EffectiveGrants};
use crate::contract::bindings;
use crate::secrets::Masker;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which run a step execution belongs to; carried into logs and events.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepIdentity {
    pub plugin: String,
    pub digest: String,
    pub job_id: String,
    pub execution_id: String,
    pub step_id: String,
}

/// What all capabilities of one step execution share.
#[derive(Debug)]
pub struct StepEnv {
    pub identity: StepIdentity,
    pub grants: Arc<EffectiveGrants>,
    pub ledger: CallLedger,
    pub masker: Arc<Masker>,
    /// Where every call is recorded; `None` only where no store exists
    /// (plugin inspection, unit tests), and then calls still go to the log.
    pub audit: Option<AuditLog>,
    /// Set for a `validate` call: no capability at all. Holds whether the
    /// first refused call has been put on the audit trail.
    validating: Option<AtomicBool>,
}

/// The most of a call's target or detail that its record keeps.
const MAX_RECORDED_BYTES: usize = 4096;

/// What a call made during `validate` is refused with, and recorded as.
const VALIDATE_TARGET: &str = "(a call made during validate)";

impl StepEnv {
    pub fn new(
        identity: StepIdentity,
        grants: Arc<EffectiveGrants>,
        masker: Arc<Masker>,
        max_host_calls: u32,
    ) -> Self {
        Self {
            identity,
            grants,
            ledger: CallLedger::new(max_host_calls),
            masker,
            audit: None,
            validating: None,
        }
    }

    /// The environment of a `validate` call: every capability call is
    /// refused, whatever the plugin's grants, and nothing is masked. A
    /// config is checked before anything resolves its `${secrets.*}`, so
    /// what validate sees and says is the caller's own input: masking it
    /// would only tell a caller which of its guesses is a secret.
    pub fn validation(identity: StepIdentity, max_host_calls: u32) -> Self {
        Self {
            validating: Some(AtomicBool::new(false)),
            ..Self::new(
                identity,
                Arc::new(EffectiveGrants::none("validate")),
                Arc::new(Masker::default()),
                max_host_calls,
            )
        }
    }

    /// Whether this is a `validate` call's environment.
    pub fn is_validating(&self) -> bool {
        self.validating.is_some()
    }

    /// Records every capability call of this step on the audit trail.
    pub fn with_audit(mut self, audit: Option<AuditLog>) -> Self {
        self.audit = audit;
        self
    }

    /// Counts a call against the budget without recording it (log lines:
    /// they are the execution's log, not a reach outside the sandbox).
    pub(crate) fn count(&self, capability: &'static str) -> Result<(), CapabilityError> {
        self.ledger.count(capability)
    }

    /// Starts a capability call: counts it against the budget. The call is
    /// recorded by [`StepEnv::finish`], or, if the call never gets there
    /// (its future was dropped: the step timed out or was cancelled), when
    /// the returned guard is dropped.
    ///
    /// During `validate` every call is refused here, before its target is
    /// even looked at: a plugin that reaches out while checking a config is
    /// a security signal, so the first such call of a validate goes on the
    /// audit trail (its target left out: it is the caller's input, which
    /// validate does not mask), and the rest only count against the budget,
    /// so a caller who validates in a loop cannot flood the trail.
    pub(crate) fn begin(&self, capability: &'static str) -> Result<CallTimer<'_>, CapabilityError> {
        self.ledger.count(capability)?;
        if let Some(recorded) = &self.validating {
            let denial = Denial {
                capability: capability.to_string(),
                target: VALIDATE_TARGET.to_string(),
                reason: "no capability is available while a step validates its config".into(),
                grant_hint: "none: validate gets no capabilities (make the call in execute)".into(),
            };
            if !recorded.swap(true, Ordering::Relaxed) {
                self.record(
                    capability,
                    VALIDATE_TARGET,
                    Decision::Denied,
                    Some(format!(
                        "the plugin called {capability} while validating a config; \
                         later calls of the same validate are not recorded"
                    )),
                    None,
                    Duration::ZERO,
                );
            }
            return Err(CapabilityError::Denied(denial));
        }
        Ok(CallTimer {
            env: self,
            capability,
            target: None,
            started: Instant::now(),
            done: false,
        })
    }

    /// Records the outcome of a call that [`StepEnv::begin`] started.
    pub(crate) fn finish<T>(
        &self,
        mut timer: CallTimer<'_>,
        target: &str,
        result: &Result<T, CapabilityError>,
    ) {
        timer.done = true;
        let (decision, detail, grant_hint) = match result {
            Ok(_) => (Decision::Allowed, None, None),
            Err(CapabilityError::Denied(d)) => (
                Decision::Denied,
                Some(d.reason.clone()),
                Some(d.grant_hint.clone()),
            ),
            Err(e) => (Decision::Failed, Some(e.to_string()), None),
        };
        self.record(
            timer.capability,
            target,
            decision,
            detail,
            grant_hint,
            timer.started.elapsed(),
        );
    }

    fn record(
        &self,
        capability: &'static str,
        target: &str,
        decision: Decision,
        detail: Option<String>,
        grant_hint: Option<String>,
        duration: Duration,
    ) {
        // Masked, and cut to a size a log line and an audit record can
        // carry: a step chooses its URLs and arguments, and every call's
        // record reaches the log files and the trail.
        let mask = |s: String| log::clip_masked(&self.masker, &s, MAX_RECORDED_BYTES);
        let event = CapabilityEvent {
            capability,
            target: log::clip_masked(&self.masker, target, MAX_RECORDED_BYTES),
            decision,
            detail: detail.map(mask),
            grant_hint: grant_hint.map(mask),
            duration,
        };
        if let Some(audit) = &self.audit {
            let id = &self.identity;
            let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
            audit.record(AuditEntry {
                at_us: 0,
                kind: "capability".into(),
                actor: None,
                plugin: some(&id.plugin),
                digest: some(&id.digest),
                job_id: some(&id.job_id),
                execution_id: some(&id.execution_id),
                step_id: some(&id.step_id),
                capability: Some(event.capability.to_string()),
                target: Some(event.target.clone()),
                decision: decision.as_str().to_string(),
                detail: event.detail.clone(),
                grant_hint: event.grant_hint.clone(),
                duration_us: Some(event.duration.as_micros() as i64),
                data: None,
            });
        }
        match decision {
            Decision::Denied => tracing::warn!(
                plugin = %self.identity.plugin, execution_id = %self.identity.execution_id,
                step_id = %self.identity.step_id, capability = event.capability,
                target = %event.target, detail = event.detail.as_deref().unwrap_or(""),
                "capability denied"
            ),
            _ => tracing::debug!(
                plugin = %self.identity.plugin, execution_id = %self.identity.execution_id,
                step_id = %self.identity.step_id, capability = event.capability,
                target = %event.target, decision = ?decision,
                duration_us = event.duration.as_micros() as u64, "capability call"
            ),
        }
        self.ledger.push(event);
    }
}

/// The start of one capability call; records the call as cut short if it
/// is dropped before [`StepEnv::finish`].
pub(crate) struct CallTimer<'a> {
    env: &'a StepEnv,
    capability: &'static str,
    target: Option<String>,
    started: Instant,
    done: bool,
}

impl CallTimer<'_> {
    /// What the call reaches, for the record made if it is cut short.
    pub(crate) fn target(mut self, target: &str) -> Self {
        self.target = Some(target.to_string());
        self
    }
}

impl Drop for CallTimer<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.env.record(
                self.capability,
                self.target
                    .as_deref()
                    .unwrap_or("(not known: the call was cut short)"),
                Decision::Failed,
                Some("the call was cut short: the step timed out or was cancelled".into()),
                None,
                self.started.elapsed(),
            );
        }
    }
}

/// Counts host calls against the step's budget and records each call.
#[derive(Debug)]
pub struct CallLedger {
    max_calls: u32,
    calls: AtomicU32,
    exhausted: AtomicBool,
    events: Mutex<Vec<CapabilityEvent>>,
}

/// Events kept per step; calls beyond this are counted but not itemised.
const MAX_EVENTS: usize = 1000;

impl CallLedger {
    fn new(max_calls: u32) -> Self {
        Self {
            max_calls,
            calls: AtomicU32::new(0),
            exhausted: AtomicBool::new(false),
            events: Mutex::new(Vec::new()),
        }
    }

    fn count(&self, capability: &str) -> Result<(), CapabilityError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.max_calls {
            self.exhausted.store(true, Ordering::Relaxed);
            return Err(CapabilityError::BudgetExceeded(format!(
                "{capability} call refused: the step used its budget of {} host calls",
                self.max_calls
            )));
        }
        Ok(())
    }

    fn push(&self, event: CapabilityEvent) {
        if let Ok(mut events) = self.events.lock()
            && events.len() < MAX_EVENTS
        {
            events.push(event);
        }
    }

    /// Host calls made (including refused ones).
    pub fn calls(&self) -> u32 {
        self.calls
            .load(Ordering::Relaxed)
            .min(self.max_calls.saturating_add(1))
    }

    /// Whether the step ran out of host calls; it fails whatever it returns.
    pub fn exhausted(&self) -> bool {
        self.exhausted.load(Ordering::Relaxed)
    }

    pub fn max_calls(&self) -> u32 {
        self.max_calls
    }

    pub fn take_events(&self) -> Vec<CapabilityEvent> {
        self.events
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default()
    }
}

/// The decision on one capability call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allowed,
    Denied,
    /// Allowed, but the call itself failed.
    Failed,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Failed => "failed",
        }
    }
}

/// One capability call, as the audit trail will record it.
#[derive(Debug, Clone, Serialize)]
pub struct CapabilityEvent {
    pub capability: &'static str,
    pub target: String,
    pub decision: Decision,
    pub detail: Option<String>,
    /// For a denial, the grant that would have allowed the call.
    pub grant_hint: Option<String>,
    #[serde(with = "duration_micros")]
    pub duration: Duration,
}

mod duration_micros {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_micros() as u64)
    }
}

/// The host-side error of a capability call, the same cases as the WIT
/// `capability-error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CapabilityError {
    #[error("{0}")]
    Denied(Denial),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Failed(String),
    #[error("timed out: {0}")]
    TimedOut(String),
    #[error("budget exceeded: {0}")]
    BudgetExceeded(String),
}

impl From<Denial> for bindings::Denial {
    fn from(d: Denial) -> Self {
        Self {
            capability: d.capability,
            target: d.target,
            reason: d.reason,
            grant_hint: d.grant_hint,
        }
    }
}

impl From<bindings::Denial> for Denial {
    fn from(d: bindings::Denial) -> Self {
        Self {
            capability: d.capability,
            target: d.target,
            reason: d.reason,
            grant_hint: d.grant_hint,
        }
    }
}

impl CapabilityError {
    /// The WIT value, with secrets masked out of every message.
    pub(crate) fn into_wit(self, masker: &Masker) -> bindings::CapabilityError {
        let m = |s: String| masker.mask(&s).into_owned();
        match self {
            Self::Denied(d) => bindings::CapabilityError::Denied(
                Denial {
                    target: m(d.target),
                    reason: m(d.reason),
                    grant_hint: m(d.grant_hint),
                    capability: d.capability,
                }
                .into(),
            ),
            Self::InvalidRequest(s) => bindings::CapabilityError::InvalidRequest(m(s)),
            Self::Failed(s) => bindings::CapabilityError::Failed(m(s)),
            Self::TimedOut(s) => bindings::CapabilityError::TimedOut(m(s)),
            Self::BudgetExceeded(s) => bindings::CapabilityError::BudgetExceeded(m(s)),
        }
    }
}

/// Registers the shared `types` interface (types only, no functions).
pub fn add_types_to_linker<T: 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    bindings::meridian::step::types::add_to_linker::<T, TypesOnly>(linker, |_| TypesOnly)
}

/// The `types` interface has no functions; this is its (empty) host.
pub struct TypesOnly;

impl wasmtime::component::HasData for TypesOnly {
    type Data<'a> = TypesOnly;
}

impl bindings::meridian::step::types::Host for TypesOnly {}
