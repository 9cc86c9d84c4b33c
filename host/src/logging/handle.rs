//! What the router layer and its [`LogHandle`] share: the writer thread's
//! channel, the clock and the settings; and the handle itself, to flush and
//! to run the retention cleanup.
//!
//! # When the writer falls behind
//!
//! The channel holds [`DEFAULT_CHANNEL_LINES`] lines. A sender that finds it
//! full waits up to [`SEND_WAIT`] for room (the writer usually frees it in
//! microseconds); if none comes, the line is dropped and counted, and until
//! a line goes through again every sender drops at once instead of waiting,
//! so a stuck disk costs a caller 10 ms once, not on every event. The
//! writer reports the count in a `WARN` line of its own (target
//! `meridian::logging`, field `dropped`) in `system/` before the next line
//! it writes.

use super::retention::{self, CleanupReport};
use super::settings::{LogFormat, Retention};
use super::writer::{Callback, Command, Dests};
use super::{Clock, LogError};
use crate::secrets::Masker;
use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Lines the writer's channel holds before senders wait: a burst of
/// 200,000 events a second has 160 ms of room, a normal load many seconds.
/// (Its slots are allocated up front: about 3 MiB.)
pub const DEFAULT_CHANNEL_LINES: usize = 32 * 1024;
/// The longest a sender waits for room in a full channel.
pub const SEND_WAIT: Duration = Duration::from_millis(10);
/// The longest [`LogHandle::flush`] waits for the writer.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// The state shared by the layer, the handle and the cleanup.
pub(crate) struct Shared {
    pub(crate) tx: Sender<Command>,
    pub(crate) root: PathBuf,
    pub(crate) clock: Clock,
    pub(crate) masker: Arc<Masker>,
    pub(crate) format: LogFormat,
    pub(crate) compress: bool,
    pub(crate) retention: Retention,
    pub(crate) cleanup_interval: Duration,
    /// Set when a line was dropped after waiting; cleared by the next line
    /// that goes through. While set, senders do not wait.
    congested: AtomicBool,
    /// Dropped and not yet reported (the writer resets it).
    dropped: Arc<AtomicU64>,
    dropped_total: AtomicU64,
    /// What the writer holds because its files cannot be written.
    held: Arc<super::writer::HeldLines>,
}

/// What [`Shared::new`] takes.
pub(crate) struct SharedParts {
    pub tx: Sender<Command>,
    pub root: PathBuf,
    pub clock: Clock,
    pub masker: Arc<Masker>,
    pub format: LogFormat,
    pub compress: bool,
    pub retention: Retention,
    pub cleanup_interval: Duration,
    pub dropped: Arc<AtomicU64>,
    pub held: Arc<super::writer::HeldLines>,
}

impl Shared {
    pub(crate) fn new(p: SharedParts) -> Self {
        Self {
            tx: p.tx,
            root: p.root,
            clock: p.clock,
            masker: p.masker,
            format: p.format,
            compress: p.compress,
            retention: p.retention,
            cleanup_interval: p.cleanup_interval,
            congested: AtomicBool::new(false),
            dropped: p.dropped,
            dropped_total: AtomicU64::new(0),
            held: p.held,
        }
    }

    /// Hands a formatted line to the writer; never waits longer than
    /// [`SEND_WAIT`] (see the module docs).
    pub(crate) fn send_line(&self, dests: Dests, line: Vec<u8>) {
        let command = match self.tx.try_send(Command::Line { dests, line }) {
            Ok(()) => {
                if self.congested.load(Ordering::Relaxed) {
                    self.congested.store(false, Ordering::Relaxed);
                }
                return;
            }
            Err(TrySendError::Disconnected(_)) => return,
            Err(TrySendError::Full(command)) => command,
        };
        if !self.congested.load(Ordering::Relaxed) {
            match self.tx.send_timeout(command, SEND_WAIT) {
                Ok(()) | Err(SendTimeoutError::Disconnected(_)) => return,
                Err(SendTimeoutError::Timeout(_)) => self.congested.store(true, Ordering::Relaxed),
            }
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.dropped_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts lines as dropped, as a full channel does (for tests).
    #[cfg(test)]
    pub(crate) fn count_dropped(&self, lines: u64) {
        self.dropped.fetch_add(lines, Ordering::Relaxed);
        self.dropped_total.fetch_add(lines, Ordering::Relaxed);
    }

    /// Hands the writer a command that must not be lost (it waits for room).
    pub(crate) fn send_command(&self, command: Command) -> Result<(), LogError> {
        self.tx.send(command).map_err(|_| LogError::WriterGone)
    }
}

/// Controls the log files of one [`super::RouterLayer`]: flush them, run the
/// retention cleanup. Cheap to clone; the files are written as long as the
/// layer is installed, whether or not a handle is kept.
#[derive(Clone)]
pub struct LogHandle {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for LogHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogHandle")
            .field("root", &self.shared.root)
            .field("format", &self.shared.format)
            .finish_non_exhaustive()
    }
}

impl LogHandle {
    /// The log root.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// Returns once every line sent before the call is written to its file
    /// (handed to the OS, not fsynced) and every segment closed before it is
    /// gzipped. Blocks the calling thread: from async code use
    /// [`LogHandle::flush_async`].
    pub fn flush(&self) -> Result<(), LogError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let done: Callback = Box::new(move || {
            let _ = tx.send(());
        });
        self.shared.send_command(Command::Flush(done))?;
        rx.recv_timeout(FLUSH_TIMEOUT).map_err(|e| match e {
            std::sync::mpsc::RecvTimeoutError::Timeout => LogError::FlushTimeout(FLUSH_TIMEOUT),
            std::sync::mpsc::RecvTimeoutError::Disconnected => LogError::WriterGone,
        })
    }

    /// [`LogHandle::flush`] on a blocking thread, for async callers.
    pub async fn flush_async(&self) -> Result<(), LogError> {
        let handle = self.clone();
        tokio::task::spawn_blocking(move || handle.flush())
            .await
            .map_err(|_| LogError::WriterGone)?
    }

    /// What the writer holds in memory because its files cannot be
    /// written now (see [`super::writer`]).
    pub fn held(&self) -> Arc<super::writer::HeldLines> {
        Arc::clone(&self.shared.held)
    }

    /// Lines dropped so far because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped_total.load(Ordering::Relaxed)
    }

    /// Runs the retention cleanup once, now (blocking: it walks and removes
    /// files): removes what is past its category's retention, and when
    /// `compress` is on, has the live files of past days closed and gzipped.
    /// Logs each removal (target `meridian::logging`, so to `system/`).
    pub fn cleanup(&self) -> CleanupReport {
        retention::run(&self.shared)
    }

    /// Runs [`LogHandle::cleanup`] now and then every `cleanup_interval`, on
    /// tokio's blocking pool, until the returned task is aborted.
    pub fn spawn_cleanup(&self) -> tokio::task::JoinHandle<()> {
        let handle = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(handle.shared.cleanup_interval);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let h = handle.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || h.cleanup()).await {
                    tracing::warn!(target: "meridian::logging", error = %e, "log retention cleanup failed");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_full_channel_costs_one_short_wait_then_drops_and_counts() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let shared = Shared::new(SharedParts {
            tx,
            root: PathBuf::from("/nowhere"),
            clock: Arc::new(chrono::Utc::now),
            masker: Arc::new(Masker::default()),
            format: LogFormat::Json,
            compress: false,
            retention: Retention::default(),
            cleanup_interval: Duration::from_secs(1),
            dropped: Arc::new(AtomicU64::new(0)),
            held: Default::default(),
        });
        let handle = LogHandle {
            shared: Arc::new(shared),
        };
        let send = || handle.shared.send_line(Dests::default(), b"x\n".to_vec());
        send(); // fills the channel
        let started = Instant::now();
        send(); // waits SEND_WAIT, then drops
        assert!(started.elapsed() >= SEND_WAIT);
        let started = Instant::now();
        for _ in 0..100 {
            send(); // congested: dropped at once
        }
        assert!(
            started.elapsed() < SEND_WAIT * 10,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(handle.dropped(), 101);
        assert_eq!(handle.shared.dropped.load(Ordering::Relaxed), 101);
        // Room again: the next line goes through and ends the congestion.
        drop(rx.try_recv());
        send();
        assert!(!handle.shared.congested.load(Ordering::Relaxed));
        assert_eq!(handle.dropped(), 101);
    }
}
