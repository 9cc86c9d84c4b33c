//! Per-queue counters and the windows behind throughput and latency.

use super::RunOutcome;
use serde::Serialize;
use std::time::Duration;

/// A queue's figures at one instant, for the API and UI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueStats {
    /// IANA zone name.
    pub zone: String,
    /// Runs waiting.
    pub depth: usize,
    /// Runs holding a permit.
    pub running: usize,
    /// Workers in the pool, busy or idle.
    pub workers: usize,
    pub idle_workers: usize,
    pub min_workers: usize,
    pub max_workers: usize,
    /// Age of the oldest queued run; `None` when nothing waits.
    pub oldest_wait_ms: Option<f64>,
    /// Runs that ended in the last minute (the current second and the 59
    /// before it).
    pub throughput_per_min: u64,
    /// Wait from submission to start over the last [`WAIT_WINDOW`] starts;
    /// `None` before the first start.
    pub wait_p50_ms: Option<f64>,
    pub wait_p99_ms: Option<f64>,
    pub submitted: u64,
    pub succeeded: u64,
    /// Runs that ended in any other way than success, panics and aborts
    /// included.
    pub failed: u64,
    /// The part of `failed` whose handler panicked.
    pub panicked: u64,
    /// Runs taken out of the queue by `cancel`.
    pub cancelled: u64,
}

/// How many recent waits the latency percentiles are computed over.
pub const WAIT_WINDOW: usize = 1024;

/// Totals and windows kept per queue.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub submitted: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub panicked: u64,
    pub cancelled: u64,
    pub waits: WaitWindow,
    pub ended: Throughput,
}

impl Counters {
    pub fn ended(&mut self, outcome: &RunOutcome, second: u64) {
        match outcome {
            RunOutcome::Succeeded => self.succeeded += 1,
            RunOutcome::Panicked(_) => {
                self.failed += 1;
                self.panicked += 1;
            }
            RunOutcome::Failed(_) | RunOutcome::Aborted => self.failed += 1,
        }
        self.ended.record(second);
    }
}

/// A ring of the last [`WAIT_WINDOW`] waits.
#[derive(Debug, Default)]
pub(super) struct WaitWindow {
    samples: Vec<Duration>,
    next: usize,
}

impl WaitWindow {
    pub fn record(&mut self, wait: Duration) {
        if self.samples.len() < WAIT_WINDOW {
            self.samples.push(wait);
        } else if let Some(slot) = self.samples.get_mut(self.next) {
            *slot = wait;
        }
        self.next = (self.next + 1) % WAIT_WINDOW;
    }

    /// Nearest-rank percentiles, `p` in (0, 1], in the order asked.
    pub fn percentiles<const N: usize>(&self, ps: [f64; N]) -> [Option<Duration>; N] {
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        ps.map(|p| {
            let rank = (p * sorted.len() as f64).ceil() as usize;
            sorted.get(rank.saturating_sub(1)).copied()
        })
    }
}

/// Ended-run counts per second for the last 60 seconds.
#[derive(Debug)]
pub(super) struct Throughput {
    /// Indexed by second modulo 60: (which second, count).
    buckets: [(u64, u64); 60],
}

impl Default for Throughput {
    fn default() -> Self {
        Throughput {
            buckets: [(0, 0); 60],
        }
    }
}

impl Throughput {
    pub fn record(&mut self, second: u64) {
        let slot = &mut self.buckets[(second % 60) as usize];
        if slot.0 != second {
            *slot = (second, 0);
        }
        slot.1 += 1;
    }

    pub fn last_minute(&self, second: u64) -> u64 {
        self.buckets
            .iter()
            .filter(|(s, _)| *s <= second && second < s + 60)
            .map(|(_, n)| n)
            .sum()
    }
}

pub(super) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank_over_the_last_window() {
        let mut w = WaitWindow::default();
        assert_eq!(w.percentiles([0.5]), [None]);
        for ms in 1..=100 {
            w.record(Duration::from_millis(ms));
        }
        let ms = Duration::from_millis;
        assert_eq!(w.percentiles([0.5, 0.99]), [Some(ms(50)), Some(ms(99))]);
        // A full window forgets the oldest samples.
        for _ in 0..WAIT_WINDOW {
            w.record(ms(7));
        }
        assert_eq!(w.percentiles([0.5, 0.99]), [Some(ms(7)), Some(ms(7))]);
    }

    #[test]
    fn throughput_counts_the_last_sixty_seconds() {
        let mut t = Throughput::default();
        t.record(5);
        t.record(5);
        t.record(30);
        assert_eq!(t.last_minute(30), 3);
        assert_eq!(t.last_minute(64), 3);
        assert_eq!(t.last_minute(65), 1);
        t.record(65); // reuses second 5's bucket
        assert_eq!(t.last_minute(65), 2);
        assert_eq!(t.last_minute(200), 0);
    }
}
