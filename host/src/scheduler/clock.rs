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

/// The system's clock corrected by how far it is from the store's clock,
/// which the node measures at start and at every heartbeat
/// ([`ClusterClock::set_offset`]). Nodes sharing a database fire and stamp
/// on one time this way: a node whose own clock runs ahead does not fire
/// early and win every fire, nor stamp its records in the future. With no
/// measurement yet (or an embedded store on the same machine) it is the
/// system's clock.
#[derive(Debug, Default)]
pub struct ClusterClock {
    offset_us: std::sync::atomic::AtomicI64,
}

impl ClusterClock {
    /// The system's clock, not corrected yet.
    pub fn new() -> Self {
        ClusterClock::default()
    }

    /// How far the system's clock is behind the store's (negative: ahead).
    pub fn offset(&self) -> TimeDelta {
        TimeDelta::microseconds(self.offset_us.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Records a measured offset: from now on this clock reads the
    /// system's clock plus `offset`.
    pub fn set_offset(&self, offset: TimeDelta) {
        let us = offset.num_microseconds().unwrap_or(0);
        self.offset_us
            .store(us, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clock for ClusterClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
            .checked_add_signed(self.offset())
            .unwrap_or_else(Utc::now)
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

    #[test]
    fn the_cluster_clock_reads_the_system_clock_plus_its_offset() {
        let clock = ClusterClock::new();
        let drift = |c: &ClusterClock| (c.now() - Utc::now()).num_milliseconds();
        assert!(drift(&clock).abs() < 50, "{}", drift(&clock));
        clock.set_offset(TimeDelta::seconds(-90));
        assert!((drift(&clock) + 90_000).abs() < 50, "{}", drift(&clock));
        assert_eq!(clock.offset(), TimeDelta::seconds(-90));
    }

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_moves_with_paused_time() {
        let base = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let clock = TokioClock::starting_at(base);
        assert_eq!(clock.now(), base);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now(), base + TimeDelta::seconds(90));
    }
}
