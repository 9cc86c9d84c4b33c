//! Log lines in the execution's log.
//!
//! The host writes them to the execution's log file with the step's ids and
//! masks every secret the step fetched before anything is written. The
//! formatting macros [`info!`](crate::info), [`warn!`](crate::warn) and friends
//! take `format!` arguments.
//!
//! ```no_run
//! use meridian_sdk::log;
//!
//! log::info("starting the export");
//! meridian_sdk::warn!("{} rows were skipped", 3);
//! ```
//!
//! Outside the Meridian host (a native `cargo test`) lines go to stderr.

/// How important a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Fine detail, normally filtered out.
    Trace,
    /// Detail for whoever debugs the step.
    Debug,
    /// What the step did.
    Info,
    /// Something looked wrong but the step carried on.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    /// The level's name in lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Writes one line at `level`.
pub fn log(level: Level, message: impl AsRef<str>) {
    write(level, message.as_ref());
}

#[cfg(target_arch = "wasm32")]
fn write(level: Level, message: &str) {
    use crate::bindings::meridian::step::log as wit;
    let level = match level {
        Level::Trace => wit::Level::Trace,
        Level::Debug => wit::Level::Debug,
        Level::Info => wit::Level::Info,
        Level::Warn => wit::Level::Warn,
        Level::Error => wit::Level::Error,
    };
    wit::log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
fn write(level: Level, message: &str) {
    eprintln!("[{}] {message}", level.as_str());
}

/// Writes one line at [`Level::Trace`].
pub fn trace(message: impl AsRef<str>) {
    log(Level::Trace, message);
}

/// Writes one line at [`Level::Debug`].
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message);
}

/// Writes one line at [`Level::Info`].
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message);
}

/// Writes one line at [`Level::Warn`].
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message);
}

/// Writes one line at [`Level::Error`].
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message);
}

/// Logs a `format!`-style message at [`Level::Trace`](crate::log::Level::Trace).
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Trace, ::std::format!($($arg)+)) };
}

/// Logs a `format!`-style message at [`Level::Debug`](crate::log::Level::Debug).
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Debug, ::std::format!($($arg)+)) };
}

/// Logs a `format!`-style message at [`Level::Info`](crate::log::Level::Info).
///
/// ```no_run
/// let rows = 12;
/// meridian_sdk::info!("copied {rows} rows");
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Info, ::std::format!($($arg)+)) };
}

/// Logs a `format!`-style message at [`Level::Warn`](crate::log::Level::Warn).
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Warn, ::std::format!($($arg)+)) };
}

/// Logs a `format!`-style message at [`Level::Error`](crate::log::Level::Error).
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Error, ::std::format!($($arg)+)) };
}
