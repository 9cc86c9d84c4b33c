//! Logging: `tracing` events to stderr and, once the config is loaded, to
//! files under the log root routed by what each event belongs to — so an
//! operator finds everything about the jobs of one zone by that zone's
//! local date, one run in one file, and the audit trail and performance
//! snapshots apart from the rest, each kept as long as it is needed.
//!
//! # Files
//!
//! Under the root (`[logging] dir`, default `<data_dir>/logs`):
//!
//! | file | holds |
//! |------|-------|
//! | `timezones/<Area_City>/<local date>.log` | every event inside an `execution` span, dated in the span's `zone` |
//! | `executions/<execution id>.log` | the same events, one file per execution |
//! | `audit/<UTC date>.log` | targets `meridian::audit` and under |
//! | `performance/<UTC date>.log` | targets `meridian::performance` and under |
//! | `system/<UTC date>.log` | everything else |
//!
//! The rules are in [`router`](RouterLayer); names, segments (`X.<n>.log`,
//! `1` the oldest) and gzip in [`paths`](execution_log_path); retention in
//! [`CleanupReport`]'s module.
//!
//! # Lines
//!
//! JSON (`format = "json"`, the default), one object per line:
//!
//! ```json
//! {"ts":"2026-03-29T23:50:00.000Z","level":"INFO","target":"meridian::step",
//!  "message":"fetched","fields":{"step_id":"fetch","attempt":1},
//!  "span":{"execution_id":"0192…","job_id":"nightly","zone":"Asia/Kolkata"}}
//! ```
//!
//! `ts` is the instant in UTC with milliseconds; `fields` the event's own
//! fields; `span` the fields of its enclosing spans merged, outermost
//! first (an inner span's value wins); both always present. `format =
//! "text"` writes `ts LEVEL target{span fields}: message fields` instead.
//!
//! # Secrets
//!
//! Every string that reaches a line — in a file or on stderr — goes through
//! the config's [`Masker`] first (value by value for the files, before JSON
//! escaping; line by line for stderr), so a secret that reached a log
//! message or field never hits the disk.
//!
//! # Threads
//!
//! Formatting and masking happen on the thread that logs; file IO only on
//! one writer thread fed by a bounded channel (a full channel costs a
//! caller at most [`SEND_WAIT`], then lines are dropped and counted: see
//! [`LogHandle`]'s module) and gzip on another. [`LogHandle::flush`]
//! returns once everything sent before it is written.
//!
//! # Setup
//!
//! [`init_stderr`] installs the process's subscriber before the config is
//! known (stderr, filtered by `MERIDIAN_LOG`); [`install`] then adds the
//! files, the config's filter and the masker, through
//! `tracing_subscriber::reload`.

mod format;
mod handle;
mod paths;
mod retention;
mod router;
mod settings;
mod subscriber;
mod writer;

#[cfg(test)]
mod tests;

pub use handle::{DEFAULT_CHANNEL_LINES, LogHandle, SEND_WAIT};
pub use paths::{execution_log_path, valid_execution_id, zone_dir_name, zone_log_path};
pub use retention::CleanupReport;
pub use router::{RouterBuilder, RouterLayer};
pub use settings::{
    Category, DEFAULT_CLEANUP_INTERVAL, DEFAULT_LEVEL, DEFAULT_MAX_FILE_BYTES, LogConfig,
    LogFormat, MAX_RETENTION_DAYS, MIN_MAX_FILE_BYTES, Retention, check_filter,
};
pub use writer::{HeldLines, HeldView};

use crate::secrets::Masker;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tracing_subscriber::util::SubscriberInitExt as _;

/// What "now" is for the router and the cleanup; tests pass a fixed one.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Why the log files could not be set up or flushed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// [`install`] needs the subscriber of [`init_stderr`]; a program that
    /// set its own (a test driving the CLI in-process) keeps it.
    #[error("logging::init_stderr did not install the process's subscriber")]
    NotInitialised,
    /// The filter directives do not parse.
    #[error("log filter {directives:?}: {message}")]
    Filter { directives: String, message: String },
    /// The log root cannot be created.
    #[error("cannot create the log directory {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The writer thread cannot be started.
    #[error("cannot start the log writer thread: {0}")]
    Thread(std::io::Error),
    /// The subscriber's layers cannot be swapped.
    #[error("cannot install the log files into the subscriber: {0}")]
    Reload(String),
    /// The writer thread has ended.
    #[error("the log writer has stopped")]
    WriterGone,
    /// The writer did not finish in time (a stuck disk).
    #[error("the log writer did not flush within {0:?}")]
    FlushTimeout(Duration),
}

/// The slots of the subscriber [`init_stderr`] installed.
static SLOTS: OnceLock<subscriber::Slots> = OnceLock::new();

/// Installs the process's subscriber: events to stderr, filtered by
/// `MERIDIAN_LOG` (an `EnvFilter` directive, default
/// [`DEFAULT_LEVEL`]), with empty slots for [`install`] to fill. Does
/// nothing if a subscriber is already set.
pub fn init_stderr() {
    let directives = std::env::var("MERIDIAN_LOG")
        .ok()
        .filter(|d| check_filter(d).is_ok())
        .unwrap_or_else(|| DEFAULT_LEVEL.to_string());
    let Ok(filter) = subscriber::LogFilter::parse(&directives) else {
        return;
    };
    let (stack, slots) = subscriber::stack(filter, subscriber::process_stderr());
    if stack.try_init().is_ok() {
        let _ = SLOTS.set(slots);
    }
}

/// Adds the log files to the subscriber of [`init_stderr`], as `config`
/// says, under `config.root(data_dir)`; also switches the filter to
/// `config.level`, and stderr to masked with `masker` (or off). Returns the
/// handle that flushes the files and runs their retention cleanup. Calling
/// it again replaces the files' settings (the previous writer finishes
/// what it was sent, then stops).
pub fn install(
    config: &LogConfig,
    masker: Arc<Masker>,
    data_dir: &Path,
) -> Result<LogHandle, LogError> {
    SLOTS
        .get()
        .ok_or(LogError::NotInitialised)?
        .install(config, masker, data_dir)
}
