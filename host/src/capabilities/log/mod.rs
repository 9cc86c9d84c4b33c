//! The `meridian:step/log` capability: structured log lines from a step.
//!
//! Lines are masked, kept with the step's result (capped in bytes) and
//! emitted as tracing events carrying the execution and step ids, so the
//! logging layer can route them to the execution's and the zone's files.

use super::StepEnv;
use crate::runtime::bindings::meridian::step::log as wit;
use serde::Serialize;
use wasmtime::component::{HasData, Linker};

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl From<wit::Level> for Level {
    fn from(l: wit::Level) -> Self {
        match l {
            wit::Level::Trace => Self::Trace,
            wit::Level::Debug => Self::Debug,
            wit::Level::Info => Self::Info,
            wit::Level::Warn => Self::Warn,
            wit::Level::Error => Self::Error,
        }
    }
}

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The log capability.
    Step,
    /// The guest's standard output.
    Stdout,
    /// The guest's standard error.
    Stderr,
}

/// One masked log line.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub level: Level,
    pub source: Source,
    pub message: String,
}

/// The lines of one step execution, capped in bytes.
#[derive(Debug, Default)]
pub struct StepLog {
    lines: Vec<LogLine>,
    bytes: usize,
    max_bytes: usize,
    dropped: u64,
}

impl StepLog {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            ..Self::default()
        }
    }

    /// Masks, keeps (within the cap) and emits one line.
    pub fn push(&mut self, env: &StepEnv, level: Level, source: Source, message: &str) {
        let message = env.masker.mask(message).into_owned();
        emit(env, level, source, &message);
        if self.bytes + message.len() > self.max_bytes {
            self.dropped += 1;
            return;
        }
        self.bytes += message.len();
        self.lines.push(LogLine {
            level,
            source,
            message,
        });
    }

    /// The kept lines, and how many were dropped over the cap.
    pub fn finish(self) -> (Vec<LogLine>, u64) {
        (self.lines, self.dropped)
    }
}

fn emit(env: &StepEnv, level: Level, source: Source, message: &str) {
    let id = &env.identity;
    macro_rules! at {
        ($lvl:expr) => {
            tracing::event!(
                target: "meridian::step",
                $lvl,
                plugin = %id.plugin,
                job_id = %id.job_id,
                execution_id = %id.execution_id,
                step_id = %id.step_id,
                source = ?source,
                "{message}"
            )
        };
    }
    match level {
        Level::Trace => at!(tracing::Level::TRACE),
        Level::Debug => at!(tracing::Level::DEBUG),
        Level::Info => at!(tracing::Level::INFO),
        Level::Warn => at!(tracing::Level::WARN),
        Level::Error => at!(tracing::Level::ERROR),
    }
}

/// The log capability as seen by one step execution.
pub struct LogCap<'a> {
    pub env: &'a StepEnv,
    pub log: &'a mut StepLog,
}

impl wit::Host for LogCap<'_> {
    async fn log(&mut self, level: wit::Level, message: String) {
        // A log line counts against the host-call budget like any call; once
        // the budget is gone lines are dropped (the step fails anyway).
        if self.env.count("log").is_ok() {
            self.log
                .push(self.env, level.into(), Source::Step, &message);
        }
    }
}

struct Log;

impl HasData for Log {
    type Data<'a> = LogCap<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> LogCap<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Log>(linker, get)
}
