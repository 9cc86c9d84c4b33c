//! Performance metrics over recent windows: how long executions wait in
//! their zone's queue and run, how long each step type's attempts take, how
//! many there are and how many fail — over the last 1, 5 and 15 minutes.
//!
//! The queue's own [`QueueStats`] answer "what is happening now" (depth,
//! running, the last 1024 waits); this module answers "how has it been
//! going lately", for `GET /api/v2/performance/summary` and for the
//! periodic `meridian::performance` log event ([`spawn_snapshots`]).
//!
//! # How it is kept
//!
//! Every series (one per queue zone, one per step type) is a ring of
//! [`RING`] time buckets of [`BUCKET`] each (15 minutes). A bucket holds a
//! count, an error count and one latency histogram per measured latency (a
//! queue has two: wait and run). A sample lands in the bucket of its
//! 10-second slot; a bucket whose slot has passed out of the ring is
//! cleared and reused, so memory never grows with traffic.
//!
//! The histograms are log-linear like HDR histograms: microsecond values
//! below 32 are counted exactly, and every power of two above is split into
//! 32 equal bins, up to about 19 hours ([`MAX_TRACKED`]; longer values
//! count as that). A percentile is the middle of the bin holding the
//! nearest-rank sample, kept within the window's exact minimum and maximum:
//! at most 1/32 (3.1 %) off, about half that on average. `max` is exact.
//! One histogram is 1024 `u32` bins (4 KiB), allocated the first time its
//! bucket sees a sample and reused after, so a series costs at most
//! `90 × 4 KiB` per latency. The number of series is capped
//! ([`MAX_SERIES`] per kind); later names share the series `(other)`.
//!
//! # Windows
//!
//! A window of `n` buckets holds the current (partial) bucket and the
//! `n - 1` before it. Throughput is its count divided by the seconds it
//! actually covers — from the start of its oldest bucket, or from when the
//! metrics were created if that is later, to now — at least one second, so
//! that a young process or the partial current bucket does not read low.
//!
//! # Time
//!
//! Time comes from a clock function ([`Metrics::with_clock`]), the system's
//! monotonic clock by default, so that tests step through buckets without
//! waiting.
//!
//! [`QueueStats`]: crate::queue::QueueStats

pub mod prometheus;

use crate::queue::QueueManager;
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// The length of one time bucket.
pub const BUCKET: Duration = Duration::from_secs(10);

/// Buckets per series: 90 × 10 s covers the longest window, 15 minutes.
pub const RING: usize = 90;

/// Series kept per kind (zones, step types); samples for names beyond
/// these go to the series named [`OTHER`], so that memory stays bounded
/// whatever names arrive.
pub const MAX_SERIES: usize = 256;

/// The series that names beyond [`MAX_SERIES`] share.
pub const OTHER: &str = "(other)";

/// The longest latency told apart, in microseconds (about 19 hours);
/// longer ones are counted as this.
pub const MAX_TRACKED: Duration = Duration::from_micros(MAX_VALUE);

const BUCKET_SECS: u64 = 10;
/// Bits of sub-bin resolution per power of two: 2^5 = 32 bins.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
const MAX_VALUE: u64 = (1 << 36) - 1;
/// `bin_of(MAX_VALUE) + 1`.
const BINS: usize = 1024;
/// A bucket that has never held a sample.
const UNUSED: u64 = u64::MAX;

/// One reporting window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// How the API and the logs name it.
    pub label: &'static str,
    /// Its length; a whole number of [`BUCKET`]s.
    pub seconds: u64,
}

/// The reporting windows, shortest first.
pub const WINDOWS: [Window; 3] = [
    Window {
        label: "1m",
        seconds: 60,
    },
    Window {
        label: "5m",
        seconds: 300,
    },
    Window {
        label: "15m",
        seconds: 900,
    },
];

/// Latency percentiles of one window, in milliseconds; all `None` when the
/// window has no sample.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    /// Exact, unlike the percentiles.
    pub max: Option<f64>,
}

/// One value per window, serialised under the windows' labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ByWindow<T> {
    #[serde(rename = "1m")]
    pub one_minute: T,
    #[serde(rename = "5m")]
    pub five_minutes: T,
    #[serde(rename = "15m")]
    pub fifteen_minutes: T,
}

impl<T> ByWindow<T> {
    fn from_array([one_minute, five_minutes, fifteen_minutes]: [T; 3]) -> Self {
        ByWindow {
            one_minute,
            five_minutes,
            fifteen_minutes,
        }
    }
}

/// A queue's finished executions in one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueWindow {
    /// Executions that finished in the window.
    pub count: u64,
    pub throughput_per_s: f64,
    /// The share of `count` that did not succeed (failed, timed out,
    /// cancelled); `None` when `count` is 0.
    pub error_rate: Option<f64>,
    /// From entering the queue to starting.
    pub wait_ms: Percentiles,
    /// From starting to ending.
    pub run_ms: Percentiles,
}

/// A step type's attempts in one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepWindow {
    /// Attempts that finished in the window.
    pub count: u64,
    pub throughput_per_s: f64,
    /// The share of `count` that did not succeed; `None` when `count` is 0.
    pub error_rate: Option<f64>,
    pub duration_ms: Percentiles,
}

/// One queue (IANA zone) over the windows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueSummary {
    pub zone: String,
    pub windows: ByWindow<QueueWindow>,
}

/// One step type over the windows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepTypeSummary {
    pub step_type: String,
    pub windows: ByWindow<StepWindow>,
}

/// Where "now" comes from.
type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// The recorded series; cheap to share behind an [`Arc`]. Recording takes
/// a read lock on the series map and the mutex of one series.
pub struct Metrics {
    clock: Clock,
    /// Slot 0 starts here; windows never reach back before it.
    origin: Instant,
    /// Per zone: wait, run.
    queues: Registry<2>,
    /// Per step type: attempt duration.
    steps: Registry<1>,
    /// The same events as Prometheus families (GET /metrics); `None` only
    /// if they could not be created.
    prometheus: Option<prometheus::Families>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics on the system's monotonic clock.
    pub fn new() -> Self {
        Self::with_clock(Instant::now)
    }

    /// Metrics on `clock`, which must not go backwards; the first reading
    /// is the start of the first bucket.
    pub fn with_clock(clock: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        let origin = clock();
        Metrics {
            clock: Arc::new(clock),
            origin,
            queues: Registry::default(),
            steps: Registry::default(),
            prometheus: prometheus::Families::new()
                .map_err(|e| tracing::error!(error = %e, "the Prometheus metrics are off"))
                .ok(),
        }
    }

    /// One finished execution of the queue for `zone`: how long it waited
    /// to start, how long it ran, and whether it succeeded.
    pub fn record_execution(&self, zone: &str, wait: Duration, run: Duration, succeeded: bool) {
        if let Some(p) = &self.prometheus {
            p.execution(zone, wait, run, succeeded);
        }
        let slot = self.slot(self.now());
        self.queues
            .series(zone)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(slot, [micros(wait), micros(run)], succeeded);
    }

    /// One finished attempt of a step of `step_type`.
    pub fn record_attempt(&self, step_type: &str, duration: Duration, succeeded: bool) {
        if let Some(p) = &self.prometheus {
            p.attempt(step_type, duration, succeeded);
        }
        let slot = self.slot(self.now());
        self.steps
            .series(step_type)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(slot, [micros(duration)], succeeded);
    }

    /// The Prometheus families fed by the same events (GET /metrics).
    pub fn prometheus(&self) -> Option<&prometheus::Families> {
        self.prometheus.as_ref()
    }

    /// Every queue that has recorded an execution since the metrics were
    /// created, ordered by zone (windows with nothing in them have count 0).
    pub fn queues(&self) -> Vec<QueueSummary> {
        let now = self.now();
        self.queues
            .all()
            .into_iter()
            .map(|(zone, series)| {
                let stats = series
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .windows(self.slot(now));
                let windows =
                    self.per_window(now, stats, |w, [wait_ms, run_ms], throughput| QueueWindow {
                        count: w.count,
                        throughput_per_s: throughput,
                        error_rate: w.error_rate(),
                        wait_ms,
                        run_ms,
                    });
                QueueSummary { zone, windows }
            })
            .collect()
    }

    /// Every step type that has recorded an attempt, ordered by name.
    pub fn step_types(&self) -> Vec<StepTypeSummary> {
        let now = self.now();
        self.steps
            .all()
            .into_iter()
            .map(|(step_type, series)| {
                let stats = series
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .windows(self.slot(now));
                let windows =
                    self.per_window(now, stats, |w, [duration_ms], throughput| StepWindow {
                        count: w.count,
                        throughput_per_s: throughput,
                        error_rate: w.error_rate(),
                        duration_ms,
                    });
                StepTypeSummary { step_type, windows }
            })
            .collect()
    }

    fn per_window<const D: usize, T>(
        &self,
        now: Instant,
        stats: [WindowStats<D>; 3],
        make: impl Fn(&WindowStats<D>, [Percentiles; D], f64) -> T,
    ) -> ByWindow<T> {
        let mut i = 0;
        ByWindow::from_array(stats.map(|w| {
            let seconds = self.covered_seconds(now, WINDOWS[i]);
            i += 1;
            make(&w, w.latencies, w.count as f64 / seconds)
        }))
    }

    fn now(&self) -> Instant {
        (self.clock)()
    }

    /// The 10-second slot `now` falls in, counted from `origin`.
    fn slot(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs() / BUCKET_SECS
    }

    /// The seconds `window` covers at `now` (see the module docs).
    fn covered_seconds(&self, now: Instant, window: Window) -> f64 {
        let elapsed = now.saturating_duration_since(self.origin).as_secs_f64();
        let buckets = window.seconds / BUCKET_SECS;
        let slot = self.slot(now);
        let first = slot.saturating_sub(buckets - 1);
        let start = (first * BUCKET_SECS) as f64;
        (elapsed - start).max(1.0)
    }

    /// Bytes held by histogram bins, for the fixed-memory tests.
    #[cfg(test)]
    fn bin_bytes(&self) -> usize {
        self.queues.bin_bytes() + self.steps.bin_bytes()
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The series of one kind, by name.
struct Registry<const D: usize> {
    series: RwLock<HashMap<String, Arc<Mutex<Series<D>>>>>,
}

impl<const D: usize> Default for Registry<D> {
    fn default() -> Self {
        Registry {
            series: RwLock::default(),
        }
    }
}

impl<const D: usize> Registry<D> {
    fn series(&self, name: &str) -> Arc<Mutex<Series<D>>> {
        if let Some(s) = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Arc::clone(s);
        }
        let mut map = self.series.write().unwrap_or_else(PoisonError::into_inner);
        let name = if map.len() >= MAX_SERIES && !map.contains_key(name) {
            OTHER
        } else {
            name
        };
        Arc::clone(
            map.entry(name.to_owned())
                .or_insert_with(|| Arc::new(Mutex::new(Series::new()))),
        )
    }

    /// Every series, ordered by name.
    fn all(&self) -> Vec<(String, Arc<Mutex<Series<D>>>)> {
        let mut all: Vec<_> = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    #[cfg(test)]
    fn bin_bytes(&self) -> usize {
        self.all()
            .iter()
            .map(|(_, s)| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .buckets
                    .iter()
                    .flat_map(|b| &b.hists)
                    .filter_map(|h| h.bins.as_ref())
                    .map(|b| std::mem::size_of_val(&**b))
                    .sum::<usize>()
            })
            .sum()
    }
}

/// The ring of one series: `D` latencies per sample.
struct Series<const D: usize> {
    buckets: Box<[Bucket<D>]>,
}

struct Bucket<const D: usize> {
    /// Which 10-second slot this bucket holds, or [`UNUSED`].
    slot: u64,
    count: u64,
    errors: u64,
    hists: [Hist; D],
}

impl<const D: usize> Series<D> {
    fn new() -> Self {
        Series {
            buckets: (0..RING)
                .map(|_| Bucket {
                    slot: UNUSED,
                    count: 0,
                    errors: 0,
                    hists: std::array::from_fn(|_| Hist::default()),
                })
                .collect(),
        }
    }

    fn record(&mut self, slot: u64, values: [u64; D], ok: bool) {
        let Some(bucket) = self.buckets.get_mut((slot % RING as u64) as usize) else {
            return;
        };
        if bucket.slot == UNUSED || bucket.slot < slot {
            bucket.slot = slot;
            bucket.count = 0;
            bucket.errors = 0;
            bucket.hists.iter_mut().for_each(Hist::clear);
        } else if bucket.slot > slot {
            // A sample that lost a race with one a whole ring newer: too
            // old for any window.
            return;
        }
        bucket.count += 1;
        bucket.errors += u64::from(!ok);
        for (h, v) in bucket.hists.iter_mut().zip(values) {
            h.record(v);
        }
    }

    /// The windows of [`WINDOWS`] at slot `now`, each merging its buckets.
    fn windows(&self, now: u64) -> [WindowStats<D>; 3] {
        let mut aged: Vec<(u64, &Bucket<D>)> = self
            .buckets
            .iter()
            .filter(|b| b.slot != UNUSED && b.slot <= now && now - b.slot < RING as u64)
            .map(|b| (now - b.slot, b))
            .collect();
        aged.sort_by_key(|(age, _)| *age);
        let mut acc: [Merged; D] = std::array::from_fn(|_| Merged::new());
        let (mut count, mut errors) = (0, 0);
        let mut next = aged.iter().peekable();
        WINDOWS.map(|window| {
            let buckets = window.seconds / BUCKET_SECS;
            while let Some((_, b)) = next.next_if(|(age, _)| *age < buckets) {
                count += b.count;
                errors += b.errors;
                for (m, h) in acc.iter_mut().zip(&b.hists) {
                    m.add(h);
                }
            }
            WindowStats {
                count,
                errors,
                latencies: std::array::from_fn(|i| acc[i].percentiles()),
            }
        })
    }
}

/// What one series did in one window.
#[derive(Debug, Clone, Copy, PartialEq)]
struct WindowStats<const D: usize> {
    count: u64,
    errors: u64,
    latencies: [Percentiles; D],
}

impl<const D: usize> WindowStats<D> {
    fn error_rate(&self) -> Option<f64> {
        (self.count > 0).then(|| self.errors as f64 / self.count as f64)
    }
}

/// One bucket's histogram of one latency, in microseconds.
#[derive(Debug, Clone)]
struct Hist {
    /// Allocated on the first sample, then reused.
    bins: Option<Box<[u32]>>,
    count: u64,
    min: u64,
    max: u64,
    /// The lowest and highest bins in use, to merge only those.
    lo: usize,
    hi: usize,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            bins: None,
            count: 0,
            min: u64::MAX,
            max: 0,
            lo: BINS,
            hi: 0,
        }
    }
}

impl Hist {
    fn clear(&mut self) {
        if self.count > 0
            && let Some(bins) = &mut self.bins
        {
            bins.iter_mut().for_each(|b| *b = 0);
        }
        let bins = self.bins.take();
        *self = Hist {
            bins,
            ..Hist::default()
        };
    }

    fn record(&mut self, value: u64) {
        let value = value.min(MAX_VALUE);
        let bin = bin_of(value);
        let bins = self
            .bins
            .get_or_insert_with(|| vec![0; BINS].into_boxed_slice());
        if let Some(b) = bins.get_mut(bin) {
            *b = b.saturating_add(1);
        }
        self.count += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.lo = self.lo.min(bin);
        self.hi = self.hi.max(bin);
    }
}

/// Histograms merged over a window.
struct Merged {
    bins: Vec<u64>,
    count: u64,
    min: u64,
    max: u64,
}

impl Merged {
    fn new() -> Self {
        Merged {
            bins: vec![0; BINS],
            count: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    fn add(&mut self, h: &Hist) {
        let Some(bins) = &h.bins else { return };
        if h.count == 0 {
            return;
        }
        for (m, b) in self.bins[h.lo..=h.hi].iter_mut().zip(&bins[h.lo..=h.hi]) {
            *m += u64::from(*b);
        }
        self.count += h.count;
        self.min = self.min.min(h.min);
        self.max = self.max.max(h.max);
    }

    /// The nearest-rank value for `per_mille` (500 = p50), in microseconds.
    fn value_at(&self, per_mille: u64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = nearest_rank(self.count, per_mille);
        let mut seen = 0;
        for (i, n) in self.bins.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bin_mid(i).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    fn percentiles(&self) -> Percentiles {
        let ms = |us: Option<u64>| us.map(|us| us as f64 / 1000.0);
        Percentiles {
            p50: ms(self.value_at(500)),
            p90: ms(self.value_at(900)),
            p99: ms(self.value_at(990)),
            max: ms((self.count > 0).then_some(self.max)),
        }
    }
}

/// The 1-based rank of the nearest-rank percentile: ⌈n·p⌉, at least 1,
/// in integers so that 0.9 × 10 is 9 and not 10.
fn nearest_rank(n: u64, per_mille: u64) -> u64 {
    let rank = (u128::from(n) * u128::from(per_mille)).div_ceil(1000);
    u64::try_from(rank).unwrap_or(n).max(1)
}

/// The bin of a value (at most [`MAX_VALUE`]).
fn bin_of(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros();
    let shift = exponent - SUB_BITS;
    (u64::from(shift) * SUB + (value >> shift)) as usize
}

/// A bin's lowest value and width.
fn bin_range(bin: usize) -> (u64, u64) {
    let bin = bin as u64;
    if bin < SUB {
        return (bin, 1);
    }
    let shift = bin / SUB - 1;
    let mantissa = bin - shift * SUB;
    (mantissa << shift, 1 << shift)
}

/// The value a bin reports: its middle.
fn bin_mid(bin: usize) -> u64 {
    let (low, width) = bin_range(bin);
    low + (width - 1) / 2
}

/// What the process has used so far; `None` where the platform does not
/// tell (anything but Linux).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct ProcessStats {
    /// CPU time in user mode, in seconds.
    pub cpu_user_s: Option<f64>,
    /// CPU time in the kernel on the process's behalf, in seconds.
    pub cpu_system_s: Option<f64>,
    /// Resident memory, in bytes.
    pub rss_bytes: Option<u64>,
}

/// Clock ticks per second in `/proc/self/stat`: the kernel's `USER_HZ`,
/// which is 100 on every architecture Linux runs on today. Asking
/// `sysconf(_SC_CLK_TCK)` would take `unsafe`, which the workspace denies.
const USER_HZ: f64 = 100.0;

/// Reads the process's CPU time from `/proc/self/stat` and its resident
/// memory from `VmRSS` in `/proc/self/status` (in kB, so no page size is
/// needed).
pub async fn process_stats() -> ProcessStats {
    let stat = tokio::fs::read_to_string("/proc/self/stat").await.ok();
    let status = tokio::fs::read_to_string("/proc/self/status").await.ok();
    let (cpu_user_s, cpu_system_s) = stat.as_deref().and_then(parse_cpu).unzip();
    ProcessStats {
        cpu_user_s,
        cpu_system_s,
        rss_bytes: status.as_deref().and_then(parse_rss),
    }
}

/// User and system seconds from the text of `/proc/<pid>/stat`.
fn parse_cpu(stat: &str) -> Option<(f64, f64)> {
    // The command name (field 2) may hold spaces and parentheses: the
    // fields after it start after the last ')', with field 3 (state).
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime as f64 / USER_HZ, stime as f64 / USER_HZ))
}

/// Resident bytes from the text of `/proc/<pid>/status`.
fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => value.checked_mul(1024),
        Some(_) => None,
    }
}

/// Logs a performance snapshot every `every` (at least one second): one
/// `info` event with target `meridian::performance` (the log router files
/// it under `performance/`), with the process's CPU time and memory, the
/// last minute of each queue and step type, and each queue's live depth.
/// Runs until aborted.
///
/// Fields: `cpu_user_s`, `cpu_system_s` (cumulative), `cpu_percent` (of
/// one core since the previous snapshot; from the second snapshot on) and
/// `rss_bytes` — each absent where the platform does not tell — then
/// `queues` and `step_types`, JSON arrays: per zone `depth`, `running`,
/// `oldest_wait_ms`, `count_1m`, `throughput_per_s_1m`, `error_rate_1m`,
/// `wait_p99_ms_1m`, `run_p99_ms_1m`; per step type `count_1m`,
/// `throughput_per_s_1m`, `error_rate_1m`, `duration_p99_ms_1m`.
pub fn spawn_snapshots<P: Send + 'static>(
    metrics: Arc<Metrics>,
    queues: QueueManager<P>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let every = every.max(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<(tokio::time::Instant, f64)> = None;
        loop {
            tick.tick().await;
            let process = process_stats().await;
            let now = tokio::time::Instant::now();
            let cpu = process
                .cpu_user_s
                .zip(process.cpu_system_s)
                .map(|(u, s)| u + s);
            // The share of one core used since the last snapshot.
            let cpu_percent = match (last, cpu) {
                (Some((then, before)), Some(cpu)) => {
                    let wall = now.duration_since(then).as_secs_f64();
                    (wall > 0.0).then(|| (cpu - before) / wall * 100.0)
                }
                _ => None,
            };
            last = cpu.map(|cpu| (now, cpu));
            let snapshot = snapshot(&metrics, &queues);
            tracing::info!(
                target: "meridian::performance",
                cpu_user_s = process.cpu_user_s,
                cpu_system_s = process.cpu_system_s,
                cpu_percent,
                rss_bytes = process.rss_bytes,
                queues = %snapshot.queues,
                step_types = %snapshot.step_types,
                "performance snapshot"
            );
        }
    })
}

/// The per-queue and per-step-type parts of a snapshot, as JSON.
struct Snapshot {
    queues: serde_json::Value,
    step_types: serde_json::Value,
}

fn snapshot<P: Send + 'static>(metrics: &Metrics, queues: &QueueManager<P>) -> Snapshot {
    let live = queues.stats();
    let recent = metrics.queues();
    let mut zones: Vec<&str> = live
        .iter()
        .map(|q| q.zone.as_str())
        .chain(recent.iter().map(|q| q.zone.as_str()))
        .collect();
    zones.sort_unstable();
    zones.dedup();
    let queues = zones
        .into_iter()
        .map(|zone| {
            let now = live.iter().find(|q| q.zone == zone);
            let minute = recent
                .iter()
                .find(|q| q.zone == zone)
                .map(|q| &q.windows.one_minute);
            json!({
                "zone": zone,
                "depth": now.map_or(0, |q| q.depth),
                "running": now.map_or(0, |q| q.running),
                "oldest_wait_ms": now.and_then(|q| q.oldest_wait_ms),
                "count_1m": minute.map_or(0, |m| m.count),
                "throughput_per_s_1m": minute.map_or(0.0, |m| m.throughput_per_s),
                "error_rate_1m": minute.and_then(|m| m.error_rate),
                "wait_p99_ms_1m": minute.and_then(|m| m.wait_ms.p99),
                "run_p99_ms_1m": minute.and_then(|m| m.run_ms.p99),
            })
        })
        .collect();
    let step_types = metrics
        .step_types()
        .into_iter()
        .map(|s| {
            let m = &s.windows.one_minute;
            json!({
                "step_type": s.step_type,
                "count_1m": m.count,
                "throughput_per_s_1m": m.throughput_per_s,
                "error_rate_1m": m.error_rate,
                "duration_p99_ms_1m": m.duration_ms.p99,
            })
        })
        .collect();
    Snapshot { queues, step_types }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Metrics on a clock that moves only when told, in milliseconds.
    fn manual() -> (Metrics, Arc<AtomicU64>) {
        let base = Instant::now();
        let offset = Arc::new(AtomicU64::new(0));
        let at = Arc::clone(&offset);
        let metrics =
            Metrics::with_clock(move || base + Duration::from_millis(at.load(Ordering::SeqCst)));
        (metrics, offset)
    }

    fn set(clock: &AtomicU64, secs: f64) {
        clock.store((secs * 1000.0) as u64, Ordering::SeqCst);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn counts(step: &StepTypeSummary) -> [u64; 3] {
        let w = &step.windows;
        [
            w.one_minute.count,
            w.five_minutes.count,
            w.fifteen_minutes.count,
        ]
    }

    #[test]
    fn bins_are_contiguous_and_within_the_promised_error() {
        let mut prev = 0;
        for bin in 0..BINS {
            let (low, width) = bin_range(bin);
            assert_eq!(bin_of(low), bin);
            assert_eq!(bin_of(low + width - 1), bin);
            if bin > 0 {
                assert_eq!(low, prev, "bin {bin} starts where the last ended");
            }
            prev = low + width;
            if low >= SUB {
                assert!(width as f64 / low as f64 <= 1.0 / SUB as f64);
            }
        }
        assert_eq!(prev, MAX_VALUE + 1);
        assert_eq!(bin_of(MAX_VALUE), BINS - 1);
    }

    #[test]
    fn nearest_rank_uses_integer_arithmetic() {
        assert_eq!(nearest_rank(10, 900), 9);
        assert_eq!(nearest_rank(10, 990), 10);
        assert_eq!(nearest_rank(1, 500), 1);
        assert_eq!(nearest_rank(100, 500), 50);
        assert_eq!(nearest_rank(101, 500), 51);
    }

    #[test]
    fn windows_hold_the_current_bucket_and_those_before_it() {
        let (m, clock) = manual();
        // t = 5 s: slot 0.
        set(&clock, 5.0);
        m.record_attempt("script", ms(10), true);
        // t = 55 s: slot 5, still inside the 1-minute window of slot 5.
        set(&clock, 55.0);
        m.record_attempt("script", ms(20), false);
        assert_eq!(counts(&m.step_types()[0]), [2, 2, 2]);
        // t = 60 s: slot 6; slot 0 has left the 1-minute window.
        set(&clock, 60.0);
        assert_eq!(counts(&m.step_types()[0]), [1, 2, 2]);
        // t = 299.9 s: slot 29, the last slot whose 5-minute window holds slot 0.
        set(&clock, 299.9);
        assert_eq!(counts(&m.step_types()[0]), [0, 2, 2]);
        set(&clock, 300.0);
        assert_eq!(counts(&m.step_types()[0]), [0, 1, 2]);
        set(&clock, 899.0);
        assert_eq!(counts(&m.step_types()[0]), [0, 0, 2]);
        set(&clock, 900.0);
        assert_eq!(counts(&m.step_types()[0]), [0, 0, 1]);
        // The 55 s sample (slot 5) leaves at slot 95.
        set(&clock, 949.9);
        assert_eq!(counts(&m.step_types()[0]), [0, 0, 1]);
        set(&clock, 950.0);
        let s = &m.step_types()[0];
        assert_eq!(counts(s), [0, 0, 0]);
        assert_eq!(
            s.windows.fifteen_minutes.duration_ms,
            Percentiles::default()
        );
        assert_eq!(s.windows.fifteen_minutes.error_rate, None);
        assert_eq!(s.windows.fifteen_minutes.throughput_per_s, 0.0);
    }

    #[test]
    fn a_reused_bucket_forgets_its_old_slot() {
        let (m, clock) = manual();
        set(&clock, 1.0);
        for _ in 0..5 {
            m.record_attempt("script", ms(1000), false);
        }
        // Slot 90 reuses slot 0's bucket.
        set(&clock, 901.0);
        m.record_attempt("script", ms(2), true);
        let w = &m.step_types()[0].windows.fifteen_minutes;
        assert_eq!(w.count, 1);
        assert_eq!(w.error_rate, Some(0.0));
        assert_eq!(w.duration_ms.max, Some(2.0));
        assert_eq!(w.duration_ms.p50, Some(2.0));
    }

    #[test]
    fn throughput_divides_by_the_seconds_covered_and_errors_by_the_count() {
        let (m, clock) = manual();
        set(&clock, 2.0);
        for i in 0..4 {
            m.record_execution("Europe/Paris", ms(5), ms(50), i != 0);
        }
        set(&clock, 20.0);
        let q = &m.queues()[0];
        assert_eq!(q.zone, "Europe/Paris");
        // The metrics are 20 s old: every window covers 20 s.
        assert_eq!(q.windows.one_minute.throughput_per_s, 4.0 / 20.0);
        assert_eq!(q.windows.fifteen_minutes.throughput_per_s, 4.0 / 20.0);
        assert_eq!(q.windows.one_minute.error_rate, Some(0.25));
        assert_eq!(q.windows.one_minute.wait_ms.max, Some(5.0));
        assert_eq!(q.windows.one_minute.run_ms.p99, Some(50.0));
        // At 125 s (slot 12) the 1-minute window starts at slot 7 (70 s).
        set(&clock, 125.0);
        m.record_execution("Europe/Paris", ms(5), ms(50), true);
        let q = &m.queues()[0];
        assert_eq!(q.windows.one_minute.count, 1);
        assert_eq!(q.windows.one_minute.throughput_per_s, 1.0 / 55.0);
        assert_eq!(q.windows.five_minutes.throughput_per_s, 5.0 / 125.0);
    }

    #[test]
    fn series_are_ordered_and_capped() {
        let m = Metrics::new();
        for i in (0..MAX_SERIES + 10).rev() {
            m.record_attempt(&format!("type-{i:04}"), ms(1), true);
        }
        let names: Vec<_> = m.step_types().into_iter().map(|s| s.step_type).collect();
        assert_eq!(names.len(), MAX_SERIES + 1);
        assert!(names.contains(&OTHER.to_owned()));
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn memory_stays_fixed_however_long_it_runs() {
        let (m, clock) = manual();
        let bound = RING * (2 + 1) * BINS * std::mem::size_of::<u32>();
        let mut after_one_ring = 0;
        // Four hours, one sample of each kind every 3 s, values all over.
        for i in 0..4 * 3600 / 3u64 {
            set(&clock, (i * 3) as f64);
            let v = Duration::from_micros(i.wrapping_mul(2_654_435_761) % 10_000_000_000);
            m.record_execution("UTC", v, v / 2, i % 7 != 0);
            m.record_attempt("script", v, true);
            if i * 3 == 999 {
                after_one_ring = m.bin_bytes();
            }
        }
        assert_eq!(after_one_ring, bound);
        assert_eq!(m.bin_bytes(), bound);
        let w = &m.step_types()[0].windows;
        assert_eq!(w.fifteen_minutes.count, 300);
        assert_eq!(w.one_minute.count, 20);
    }

    #[test]
    fn process_files_parse() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 3213 0 0 0 250 75 0 0 20 0 9 0 12345 1000000 2000 18446744073709551615";
        assert_eq!(parse_cpu(stat), Some((2.5, 0.75)));
        assert_eq!(parse_cpu("garbage"), None);
        let status = "Name:\tmeridian\nVmPeak:\t  10 kB\nVmRSS:\t   2048 kB\nThreads: 9\n";
        assert_eq!(parse_rss(status), Some(2048 * 1024));
        assert_eq!(parse_rss("Name: x\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn this_process_reports_cpu_and_memory() {
        let p = process_stats().await;
        assert!(p.cpu_user_s.is_some_and(|s| s >= 0.0));
        assert!(p.cpu_system_s.is_some());
        assert!(p.rss_bytes.is_some_and(|b| b > 1024 * 1024));
    }

    struct Idle;

    impl crate::queue::RunHandler<()> for Idle {
        async fn handle(&self, _run: crate::queue::QueuedRun<()>) -> crate::queue::RunOutcome {
            crate::queue::RunOutcome::Succeeded
        }
    }

    #[tokio::test]
    async fn snapshots_are_logged_every_interval() {
        use tracing_subscriber::layer::SubscriberExt as _;

        #[derive(Clone, Default)]
        struct Capture(Arc<Mutex<Vec<String>>>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
            fn on_event(
                &self,
                event: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                if event.metadata().target() != "meridian::performance" {
                    return;
                }
                struct Fields(String);
                impl tracing::field::Visit for Fields {
                    fn record_debug(
                        &mut self,
                        field: &tracing::field::Field,
                        value: &dyn std::fmt::Debug,
                    ) {
                        self.0.push_str(&format!("{}={:?} ", field.name(), value));
                    }
                }
                let mut fields = Fields(String::new());
                event.record(&mut fields);
                self.0.lock().unwrap().push(fields.0);
            }
        }

        let capture = Capture::default();
        let _guard =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
        tokio::time::pause();
        let metrics = Arc::new(Metrics::new());
        metrics.record_execution("Asia/Tokyo", ms(3), ms(40), true);
        metrics.record_attempt("script", ms(39), true);
        let queues = QueueManager::new(crate::queue::QueueConfig::default(), Idle).unwrap();
        let task = spawn_snapshots(Arc::clone(&metrics), queues, Duration::from_secs(60));
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(capture.0.lock().unwrap().is_empty());
        tokio::time::sleep(Duration::from_secs(62)).await;
        task.abort();
        let events = capture.0.lock().unwrap().clone();
        assert_eq!(events.len(), 2, "{events:?}");
        let first = &events[0];
        assert!(first.contains("Asia/Tokyo"), "{first}");
        assert!(first.contains("\"step_type\":\"script\""), "{first}");
        assert!(first.contains("run_p99_ms_1m"), "{first}");
        if cfg!(target_os = "linux") {
            assert!(first.contains("rss_bytes="), "{first}");
            assert!(first.contains("cpu_user_s="), "{first}");
        }
    }

    /// Latencies spread over many orders of magnitude, in microseconds.
    fn latency() -> impl Strategy<Value = u64> {
        (0u32..36, any::<u64>()).prop_map(|(octave, r)| {
            let low = 1u64 << octave;
            low + r % low
        })
    }

    proptest! {
        #[test]
        fn percentiles_are_within_a_bin_of_the_sorted_oracle(
            values in prop::collection::vec(latency(), 1..400),
        ) {
            let (m, _clock) = manual();
            for v in &values {
                m.record_attempt("x", Duration::from_micros(*v), true);
            }
            let p = m.step_types()[0].windows.one_minute.duration_ms;
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let n = sorted.len() as u64;
            for (got, per_mille) in [(p.p50, 500), (p.p90, 900), (p.p99, 990)] {
                let want = sorted[(nearest_rank(n, per_mille) - 1) as usize].min(MAX_VALUE);
                let got = (got.unwrap() * 1000.0).round() as u64;
                let allowed = want / SUB; // one bin: at most 1/32 of the value
                prop_assert!(got.abs_diff(want) <= allowed,
                    "p{} = {got} µs, oracle {want} µs", per_mille / 10);
            }
            let max = sorted[sorted.len() - 1].min(MAX_VALUE);
            prop_assert_eq!(p.max, Some(max as f64 / 1000.0));
        }

        #[test]
        fn window_counts_match_a_brute_force_oracle(
            times in prop::collection::vec(0u64..3000, 1..200),
            at in 0u64..3000,
        ) {
            let (m, clock) = manual();
            let mut times = times;
            times.sort_unstable();
            let mut recorded = Vec::new();
            for t in times.iter().copied().filter(|t| *t <= at) {
                set(&clock, t as f64);
                m.record_attempt("x", ms(1), t % 3 == 0);
                recorded.push(t);
            }
            set(&clock, at as f64);
            let Some(s) = m.step_types().into_iter().next() else {
                prop_assert!(recorded.is_empty());
                return Ok(());
            };
            let got = counts(&s);
            for (i, w) in WINDOWS.iter().enumerate() {
                let first_slot = (at / 10).saturating_sub(w.seconds / 10 - 1);
                let want = recorded.iter().filter(|t| *t / 10 >= first_slot).count() as u64;
                prop_assert_eq!(got[i], want, "window {}", w.label);
            }
        }
    }
}
