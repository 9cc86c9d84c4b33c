//! What time it is, for the scheduler.
//!
//! The loop asks a [`Clock`] for "now" in UTC and sleeps on tokio's timer
//! until the next due instant, computed from that clock. In production the
//! clock is the system's ([`SystemClock`]); tests use a [`TokioClock`],
//! which reads tokio's (pausable) time, so `tokio::time::pause` and
//! `tokio::time::advance` drive both "now" and every sleep of the loop and
//! of the run handlers, and a test covers hours in milliseconds.

use chrono::{DateTime, TimeDelta, Utc};
use tokio::time::Instant;

/// The scheduler's source of "now".
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that starts at a chosen UTC instant and then follows tokio's
/// time: `base_utc + (tokio::time::Instant::now() - base_instant)`. Under a
/// paused runtime it stands still until `tokio::time::advance` moves it.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base_utc: DateTime<Utc>,
    base_instant: Instant,
}

impl TokioClock {
    /// A clock that reads `base_utc` now.
    pub fn starting_at(base_utc: DateTime<Utc>) -> Self {
        TokioClock {
            base_utc,
            base_instant: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = Instant::now().saturating_duration_since(self.base_instant);
        let elapsed = TimeDelta::from_std(elapsed).unwrap_or(TimeDelta::MAX);
        self.base_utc
            .checked_add_signed(elapsed)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_moves_with_paused_time() {
        let base = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let clock = TokioClock::starting_at(base);
        assert_eq!(clock.now(), base);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now(), base + TimeDelta::seconds(90));
    }
}
