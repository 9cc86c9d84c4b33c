//! The `meridian:step/log` capability: structured log lines from a step.
//!
//! Lines are masked, cut to a length cap, kept with the step's result
//! (capped in bytes) and emitted as tracing events carrying the execution
//! and step ids, so the logging layer can route them to the execution's and
//! the zone's files (the engine runs each attempt inside the execution's
//! span, also on `serve`'s step runtime). The caps apply before a line is
//! emitted: a step cannot put more on disk than it may keep.

use super::StepEnv;
use crate::contract::bindings::meridian::step::log as wit;
use crate::secrets::Masker;
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

/// The lines of one step execution, capped in bytes: each line at
/// `max_line_bytes` (cut, with a marker), all of them at `max_bytes`. The
/// caps apply before a line is emitted, so nothing over them reaches a log
/// file or stderr: past the total, lines are only counted, and
/// [`StepLog::finish`] adds one line saying how many were dropped.
#[derive(Debug, Default)]
pub struct StepLog {
    lines: Vec<LogLine>,
    bytes: usize,
    max_bytes: usize,
    max_line_bytes: usize,
    dropped: u64,
    dropped_bytes: u64,
}

impl StepLog {
    pub fn new(max_bytes: usize, max_line_bytes: usize) -> Self {
        Self {
            max_bytes,
            max_line_bytes,
            ..Self::default()
        }
    }

    /// Masks, cuts, keeps and emits one line, or counts it as dropped when
    /// the step's lines already fill the cap.
    pub fn push(&mut self, env: &StepEnv, level: Level, source: Source, message: &str) {
        if self.bytes >= self.max_bytes {
            self.drop_line(message.len());
            return;
        }
        let message = clip_masked(&env.masker, message, self.max_line_bytes);
        if self.bytes + message.len() > self.max_bytes {
            self.drop_line(message.len());
            return;
        }
        self.bytes += message.len();
        emit(env, level, source, &message);
        self.lines.push(LogLine {
            level,
            source,
            message,
        });
    }

    fn drop_line(&mut self, bytes: usize) {
        self.dropped += 1;
        self.dropped_bytes += bytes as u64;
    }

    /// The kept lines, and how many were dropped over the cap. When some
    /// were, one more line (emitted too) says so.
    pub fn finish(mut self, env: &StepEnv) -> (Vec<LogLine>, u64) {
        if self.dropped > 0 {
            let message = format!(
                "{} log lines ({} bytes) dropped: the step's lines reached the cap of {} bytes",
                self.dropped, self.dropped_bytes, self.max_bytes
            );
            emit(env, Level::Warn, Source::Step, &message);
            self.lines.push(LogLine {
                level: Level::Warn,
                source: Source::Step,
                message,
            });
        }
        (self.lines, self.dropped)
    }
}

/// `text` masked and cut to at most `max` bytes (plus a marker naming its
/// full length). Only `max` plus the longest secret form is masked, so a
/// huge line costs no more than a short one, and a secret that starts
/// before the cut is still masked whole.
pub(crate) fn clip_masked(masker: &Masker, text: &str, max: usize) -> String {
    let head = prefix(text, max.saturating_add(masker.longest()));
    let masked = masker.mask(head);
    if masked.len() <= max && head.len() == text.len() {
        return masked.into_owned();
    }
    let kept = prefix(&masked, max);
    format!("{kept}… (cut: {} bytes in all)", text.len())
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
fn prefix(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
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
        // `validate` has no capabilities, logging included: a caller who
        // validates in a loop must not be able to fill the log files.
        if self.env.count("log").is_ok() && !self.env.is_validating() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::StepIdentity;
    use crate::capabilities::grants::EffectiveGrants;
    use std::sync::Arc;

    fn env(secrets: &[&str]) -> StepEnv {
        StepEnv::new(
            StepIdentity::default(),
            Arc::new(EffectiveGrants::none("t")),
            Arc::new(Masker::new(secrets.iter().copied())),
            1000,
        )
    }

    #[test]
    fn lines_are_cut_and_the_total_is_capped_before_emitting() {
        let env = env(&[]);
        let mut log = StepLog::new(64 * 1024, 1024);
        let line = "x".repeat(1024 * 1024);
        for _ in 0..100 {
            log.push(&env, Level::Info, Source::Step, &line);
        }
        let (lines, dropped) = log.finish(&env);
        let kept: usize = lines.iter().map(|l| l.message.len()).sum();
        assert!(kept <= 64 * 1024 + 200, "{kept} bytes kept");
        assert!(lines[0].message.ends_with("… (cut: 1048576 bytes in all)"));
        assert!(lines[0].message.len() < 1100);
        assert_eq!(dropped as usize, 100 - (lines.len() - 1));
        let last = lines.last().unwrap();
        assert_eq!(last.level, Level::Warn);
        assert!(
            last.message.starts_with(&format!("{dropped} log lines (")),
            "{}",
            last.message
        );
    }

    #[test]
    fn a_secret_across_the_cut_is_masked_whole() {
        let m = Masker::new(["0123456789-secret"]);
        let text = format!("{}0123456789-secret and more", "a".repeat(95));
        let cut = clip_masked(&m, &text, 100);
        assert!(!cut.contains("01234"), "{cut}");
        assert!(cut.starts_with(&"a".repeat(95)), "{cut}");
        assert_eq!(clip_masked(&m, "short", 100), "short");
    }
}
