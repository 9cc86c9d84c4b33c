//! The writer thread: the only code that touches log files while they are
//! written, so no tokio worker ever waits on a disk.
//!
//! Lines arrive formatted and masked through a bounded channel (see
//! [`super::handle`] for what a sender does when it is full). The thread
//! keeps up to [`MAX_OPEN_FILES`] files open, buffered, least recently used
//! closed first; it writes a burst into the buffers and flushes them all
//! once the channel is empty. A file about to grow past `max_file_bytes` is
//! closed, renamed to its next segment (`X.<n>.log`) and a fresh `X.log`
//! opened; the closed segment goes to a second thread that gzips it, so a
//! 64 MiB compression never holds lines up.
//!
//! # When a file cannot be written
//!
//! A line whose file cannot be opened or written (the log volume full, the
//! directory gone or read-only) is held in memory, in order, with every
//! later line for the same file, up to [`HELD_MAX_BYTES`] in all (past it
//! the oldest go, counted). The writer tries again every
//! [`RETRY_EVERY`]; once a file takes its lines they are written in their
//! order, and a `WARN` line in `system/` says how many were lost, if any.
//! [`HeldLines`] shows what is held to the rest of the node: the logs route
//! answers 503 for an execution with lines held instead of a log with a
//! hole in it.

use super::Clock;
use super::format::{self, Fields, Value};
use super::paths::{Dest, gz_path, next_segment};
use super::settings::{Category, LogFormat};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Open files kept: a zone's file, the running executions' files and the
/// daily ones fit many times over.
pub(crate) const MAX_OPEN_FILES: usize = 128;
/// Each open file's buffer.
const FILE_BUFFER: usize = 32 * 1024;
/// How long the writer naps when the channel is empty, and how many naps
/// in a row before it blocks: at most a millisecond more before a line is
/// written while lines keep coming.
const NAP: Duration = Duration::from_millis(1);
const IDLE_NAPS: u32 = 10;
/// The same kind of failure is told on stderr at most this often.
const ERROR_REPORT_EVERY: Duration = Duration::from_secs(60);
/// Bytes of lines held in memory while their files cannot be written.
pub(crate) const HELD_MAX_BYTES: usize = 16 * 1024 * 1024;
/// How often held lines are tried again.
pub(crate) const RETRY_EVERY: Duration = Duration::from_secs(1);

/// What the writer holds in memory because its files cannot be written,
/// as the rest of the node sees it (updated by the writer thread).
#[derive(Debug, Default)]
pub struct HeldLines {
    view: std::sync::Mutex<HeldView>,
}

/// A snapshot of [`HeldLines`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeldView {
    /// Lines held now.
    pub lines: u64,
    /// Bytes held now.
    pub bytes: u64,
    /// Lines given up since holding began (the oldest, past the cap).
    pub lost: u64,
    /// Why the last write failed, while lines are held (the error's kind:
    /// no server path).
    pub reason: Option<String>,
    /// Lines held per execution id.
    pub executions: HashMap<String, u64>,
}

impl HeldLines {
    /// What is held now.
    pub fn view(&self) -> HeldView {
        match self.view.lock() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Lines of this execution's log held now, and why (`None` when none).
    pub fn execution(&self, id: &str) -> Option<(u64, String)> {
        let view = match self.view.lock() {
            Ok(v) => v,
            Err(poisoned) => poisoned.into_inner(),
        };
        let n = *view.executions.get(id)?;
        Some((n, view.reason.clone().unwrap_or_default()))
    }

    fn set(&self, view: HeldView) {
        match self.view.lock() {
            Ok(mut v) => *v = view,
            Err(poisoned) => *poisoned.into_inner() = view,
        }
    }
}

impl Held {
    fn add(&mut self, dest: Dest, line: Vec<u8>) {
        self.bytes += line.len();
        *self.lines_per_dest.entry(dest.clone()).or_default() += count_lines(&line);
        *self.per_dest.entry(dest.clone()).or_default() += 1;
        self.queue.push_back((dest, line));
    }
}

/// Lines in a held entry (each ends with a newline).
fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// The writer's own queue of held lines (see the module docs).
#[derive(Default)]
struct Held {
    queue: std::collections::VecDeque<(Dest, Vec<u8>)>,
    /// Lines held per destination: a destination with any holds every
    /// later line too, so its file keeps their order.
    per_dest: HashMap<Dest, usize>,
    /// Lines held per destination (an entry can hold several: a file's
    /// unwritten buffer).
    lines_per_dest: HashMap<Dest, u64>,
    bytes: usize,
    lost: u64,
    reason: Option<io::ErrorKind>,
    last_try: Option<Instant>,
}

/// Called once the work before it is done (a flush).
pub(crate) type Callback = Box<dyn FnOnce() + Send>;

/// The files one line goes to: at most a zone's, an execution's and a
/// daily one.
#[derive(Debug, Default)]
pub(crate) struct Dests([Option<Dest>; 3]);

impl Dests {
    pub(crate) fn push(&mut self, dest: Dest) {
        if let Some(slot) = self.0.iter_mut().find(|d| d.is_none()) {
            *slot = Some(dest);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0[0].is_none()
    }

    fn iter(&self) -> impl Iterator<Item = &Dest> {
        self.0.iter().flatten()
    }
}

/// What the writer thread is asked to do, in order.
pub(crate) enum Command {
    /// Append one line (with its newline) to each destination.
    Line { dests: Dests, line: Vec<u8> },
    /// Close this live file and rename it to its next segment (its day is
    /// over), then gzip that segment.
    Seal(PathBuf),
    /// Gzip this closed segment (one left uncompressed).
    Compress(PathBuf),
    /// Flush every buffer, wait for the gzips queued so far, then call back.
    Flush(Callback),
}

/// What the writer thread needs to know.
pub(crate) struct WriterSettings {
    pub root: PathBuf,
    pub max_file_bytes: u64,
    pub compress: bool,
    pub format: LogFormat,
    pub clock: Clock,
    /// Lines the senders dropped since the last report; the writer reports
    /// and resets it.
    pub dropped: Arc<AtomicU64>,
    /// What the writer holds because its files cannot be written.
    pub held: Arc<HeldLines>,
}

/// Starts the writer thread (and its gzip thread) reading `rx`; both end
/// once every sender is gone and the work queued is done.
pub(crate) fn spawn(rx: Receiver<Command>, settings: WriterSettings) -> io::Result<()> {
    let (jobs, job_rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("meridian-log-gzip".into())
        .spawn(move || compressor(job_rx))?;
    let mut writer = Writer {
        files: Files {
            map: HashMap::new(),
            tick: 0,
            root: settings.root.clone(),
        },
        settings,
        jobs,
        errors: ErrorReport::default(),
        held: Held::default(),
    };
    std::thread::Builder::new()
        .name("meridian-log-writer".into())
        .spawn(move || writer.run(rx))?;
    Ok(())
}

struct Writer {
    files: Files,
    settings: WriterSettings,
    /// The gzip thread's queue.
    jobs: Sender<Job>,
    errors: ErrorReport,
    held: Held,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Command>) {
        'run: loop {
            match rx.try_recv() {
                Ok(command) => {
                    self.handle(command);
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {}
            }
            // Idle: what was written reaches the files now, and what is
            // held is tried again (at most every RETRY_EVERY).
            self.flush_all();
            self.retry_held(false);
            // While lines keep coming, nap and take them in batches: a
            // sender then never pays for waking this thread (a futex call
            // and a context switch per line). Once it is quiet, block.
            for _ in 0..IDLE_NAPS {
                std::thread::sleep(NAP);
                match rx.try_recv() {
                    Ok(command) => {
                        self.handle(command);
                        continue 'run;
                    }
                    Err(TryRecvError::Disconnected) => break 'run,
                    Err(TryRecvError::Empty) => {}
                }
            }
            if self.held.queue.is_empty() {
                match rx.recv() {
                    Ok(command) => self.handle(command),
                    Err(_) => break,
                }
            } else {
                match rx.recv_timeout(RETRY_EVERY) {
                    Ok(command) => self.handle(command),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => self.retry_held(false),
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        self.flush_all();
        self.retry_held(true);
        if !self.held.queue.is_empty() {
            eprintln!(
                "meridian: log files: {} lines could not be written before the writer stopped ({:?})",
                self.held.lines_per_dest.values().sum::<u64>(),
                self.held.reason
            );
        }
    }

    /// Writes `line`, or holds it when its file has lines held already or
    /// cannot take it now.
    fn write_or_hold(&mut self, dest: &Dest, line: Vec<u8>) {
        if self.held.per_dest.contains_key(dest) {
            self.hold(dest, line, None);
        } else if let Err(why) = self.write(dest, &line) {
            self.block(dest, why);
            self.hold(dest, line, Some(why));
        }
    }

    /// `dest`'s file cannot be written: what its buffer still holds (lines
    /// taken earlier, which a failed flush left unwritten) is held first,
    /// ahead of anything later, and the file is closed until a retry.
    fn block(&mut self, dest: &Dest, why: io::ErrorKind) {
        if let Some(unwritten) = self.files.take_unwritten(dest)
            && !unwritten.is_empty()
        {
            self.hold(dest, unwritten, Some(why));
        }
    }

    /// Holds `line` for `dest` (see the module docs), the oldest held
    /// going past [`HELD_MAX_BYTES`].
    fn hold(&mut self, dest: &Dest, line: Vec<u8>, why: Option<io::ErrorKind>) {
        if why.is_some() {
            self.held.reason = why;
        }
        self.held.add(dest.clone(), line);
        while self.held.bytes > HELD_MAX_BYTES {
            let Some((old, line)) = self.held.queue.pop_front() else {
                break;
            };
            let lines = count_lines(&line);
            self.held.bytes -= line.len();
            self.held.lost += lines;
            if let Some(n) = self.held.per_dest.get_mut(&old) {
                *n -= 1;
                if *n == 0 {
                    self.held.per_dest.remove(&old);
                    self.held.lines_per_dest.remove(&old);
                } else if let Some(l) = self.held.lines_per_dest.get_mut(&old) {
                    *l = l.saturating_sub(lines);
                }
            }
        }
        self.publish_held();
    }

    /// Writes what is held, in order, to every file that takes it now;
    /// `now` ignores the retry interval (at the end).
    fn retry_held(&mut self, now: bool) {
        if self.held.queue.is_empty()
            || (!now
                && self
                    .held
                    .last_try
                    .is_some_and(|t| t.elapsed() < RETRY_EVERY))
        {
            return;
        }
        self.held.last_try = Some(Instant::now());
        let queue = std::mem::take(&mut self.held.queue);
        self.held.per_dest.clear();
        self.held.lines_per_dest.clear();
        self.held.bytes = 0;
        let mut blocked: std::collections::HashSet<Dest> = std::collections::HashSet::new();
        let mut keep = std::collections::VecDeque::new();
        for (dest, line) in queue {
            if blocked.contains(&dest) {
                keep.push_back((dest, line));
                continue;
            }
            if let Err(e) = self.write(&dest, &line) {
                self.held.reason = Some(e);
                // Whatever this retry buffered for it goes back first.
                if let Some(unwritten) = self.files.take_unwritten(&dest)
                    && !unwritten.is_empty()
                {
                    keep.push_back((dest.clone(), unwritten));
                }
                blocked.insert(dest.clone());
                keep.push_back((dest, line));
            }
        }
        for (dest, line) in keep {
            self.held.add(dest, line);
        }
        self.flush_all();
        if self.held.queue.is_empty() {
            let lost = std::mem::take(&mut self.held.lost);
            self.held.reason = None;
            self.report_held_done(lost);
        }
        self.publish_held();
    }

    fn publish_held(&self) {
        let mut executions: HashMap<String, u64> = HashMap::new();
        for (dest, n) in &self.held.lines_per_dest {
            if let Dest::Execution(id) = dest {
                executions.insert(id.to_string(), *n);
            }
        }
        self.settings.held.set(HeldView {
            lines: self.held.lines_per_dest.values().sum(),
            bytes: self.held.bytes as u64,
            lost: self.held.lost,
            reason: self.held.reason.map(|k| k.to_string()),
            executions,
        });
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Line { dests, line } => {
                let dropped = self.settings.dropped.load(Ordering::Relaxed);
                if dropped > 0 {
                    let dropped = self.settings.dropped.swap(0, Ordering::Relaxed);
                    self.report_dropped(dropped);
                }
                for dest in dests.iter() {
                    self.write_or_hold(dest, line.clone());
                }
            }
            Command::Seal(path) => {
                if let Err(e) = self.seal(&path) {
                    self.errors
                        .report(format_args!("cannot close {}: {e}", path.display()));
                }
            }
            Command::Compress(path) => self.gzip(path),
            Command::Flush(done) => {
                self.flush_all();
                if let Err(crossbeam_channel::SendError(Job::Notify(done))) =
                    self.jobs.send(Job::Notify(done))
                {
                    done();
                }
            }
        }
    }

    /// Writes one line to its file; the error's kind when the line did
    /// not go (the caller holds it).
    fn write(&mut self, dest: &Dest, line: &[u8]) -> Result<(), io::ErrorKind> {
        let max = self.settings.max_file_bytes;
        let file = match self.files.get(dest) {
            Ok(f) => f,
            Err(e) => {
                let path = self.files.root.join(dest.relative());
                self.errors
                    .report(format_args!("cannot open {}: {e}", path.display()));
                return Err(e.kind());
            }
        };
        let mut rotated = None;
        if file.size > 0 && file.size + line.len() as u64 > max {
            match file.rotate() {
                Ok(segment) => rotated = Some(segment),
                Err(e) => {
                    let path = file.path.display().to_string();
                    self.errors
                        .report(format_args!("cannot rotate {path}: {e}"));
                    return Err(e.kind());
                }
            }
        }
        // A buffered writer whose flush fails keeps what it could not
        // write and returns before taking this line: the line is held.
        let result = file.out.write_all(line);
        if result.is_ok() {
            file.size += line.len() as u64;
        }
        let written = match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let path = file.path.display().to_string();
                self.errors.report(format_args!("cannot write {path}: {e}"));
                Err(e.kind())
            }
        };
        if let Some(segment) = rotated {
            self.gzip(segment);
        }
        written
    }

    /// Closes `path` if open and renames it to its next segment.
    fn seal(&mut self, path: &Path) -> io::Result<()> {
        self.files.close(path)?;
        match fs::metadata(path) {
            Ok(m) if m.len() == 0 => return fs::remove_file(path),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        let segment = next_segment(path);
        fs::rename(path, &segment)?;
        self.gzip(segment);
        Ok(())
    }

    fn gzip(&mut self, segment: PathBuf) {
        if self.settings.compress {
            // The gzip thread only ends after this one.
            let _ = self.jobs.send(Job::Compress(segment));
        }
    }

    /// Flushes every open file; one that fails keeps its unwritten bytes
    /// as held lines (see [`Writer::block`]).
    fn flush_all(&mut self) {
        let mut failed = Vec::new();
        for (dest, file) in &mut self.files.map {
            if let Err(e) = file.out.flush() {
                let path = file.path.display().to_string();
                self.errors.report(format_args!("cannot write {path}: {e}"));
                failed.push((dest.clone(), e.kind()));
            }
        }
        for (dest, why) in failed {
            self.block(&dest, why);
        }
    }

    /// The line that says the files take lines again, in `system`, with
    /// how many were lost meanwhile (past the cap).
    fn report_held_done(&mut self, lost: u64) {
        let fields = Fields {
            message: Some("log files writable again: the lines held in memory are written".into()),
            list: vec![("lost", Value::U64(lost))],
        };
        self.system_line(&fields);
    }

    /// The line that says how many lines were lost, in `system`.
    fn report_dropped(&mut self, dropped: u64) {
        let fields = Fields {
            message: Some("log lines dropped: the log writer fell behind".into()),
            list: vec![("dropped", Value::U64(dropped))],
        };
        self.system_line(&fields);
    }

    /// A `WARN` line of the writer's own in today's `system` file.
    fn system_line(&mut self, fields: &Fields) {
        let now = (self.settings.clock)();
        let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let line = format::Line {
            ts: &ts,
            level: "WARN",
            target: "meridian::logging",
            fields,
            span: &[],
        };
        let mut out = Vec::with_capacity(200);
        match self.settings.format {
            LogFormat::Json => format::json(&mut out, &line),
            LogFormat::Text => format::text(&mut out, &line),
        }
        let dest = Dest::Daily {
            category: Category::System,
            date: now.date_naive(),
        };
        self.write_or_hold(&dest, out);
    }
}

/// The open files, least recently used closed first.
struct Files {
    map: HashMap<Dest, OpenFile>,
    /// Counts uses, for the least recently used.
    tick: u64,
    root: PathBuf,
}

struct OpenFile {
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes in the file, written or buffered.
    size: u64,
    last_used: u64,
}

impl Files {
    fn get(&mut self, dest: &Dest) -> io::Result<&mut OpenFile> {
        self.tick += 1;
        if !self.map.contains_key(dest) {
            if self.map.len() >= MAX_OPEN_FILES {
                self.evict();
            }
            let path = self.root.join(dest.relative());
            let (file, size) = open_append(&path)?;
            self.map.insert(
                dest.clone(),
                OpenFile {
                    path,
                    out: BufWriter::with_capacity(FILE_BUFFER, file),
                    size,
                    last_used: 0,
                },
            );
        }
        let tick = self.tick;
        let file = self
            .map
            .get_mut(dest)
            .ok_or_else(|| io::Error::other("an open file vanished from the cache"))?;
        file.last_used = tick;
        Ok(file)
    }

    /// Closes `dest`'s file without writing what its buffer holds, and
    /// returns those bytes.
    fn take_unwritten(&mut self, dest: &Dest) -> Option<Vec<u8>> {
        let file = self.map.remove(dest)?;
        let (_file, buffer) = file.out.into_parts();
        Some(buffer.unwrap_or_else(|panicked| panicked.into_inner()))
    }

    fn evict(&mut self) {
        let oldest = self
            .map
            .iter()
            .min_by_key(|(_, f)| f.last_used)
            .map(|(d, _)| d.clone());
        if let Some(dest) = oldest
            && let Some(mut file) = self.map.remove(&dest)
        {
            // A failed flush was already told when the line was written.
            let _ = file.out.flush();
        }
    }

    /// Flushes and closes `path` if it is open.
    fn close(&mut self, path: &Path) -> io::Result<()> {
        let dest = self
            .map
            .iter()
            .find(|(_, f)| f.path == path)
            .map(|(d, _)| d.clone());
        match dest.and_then(|d| self.map.remove(&d)) {
            Some(mut file) => file.out.flush(),
            None => Ok(()),
        }
    }
}

impl OpenFile {
    /// Closes this segment as `X.<n>.log` and starts a fresh `X.log`.
    fn rotate(&mut self) -> io::Result<PathBuf> {
        self.out.flush()?;
        let segment = next_segment(&self.path);
        fs::rename(&self.path, &segment)?;
        let (file, size) = open_append(&self.path)?;
        self.out = BufWriter::with_capacity(FILE_BUFFER, file);
        self.size = size;
        Ok(segment)
    }
}

/// Opens `path` for appending, creating it and its directories; with its
/// current size.
fn open_append(path: &Path) -> io::Result<(File, u64)> {
    let open = || OpenOptions::new().create(true).append(true).open(path);
    let file = match open() {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            open()?
        }
        Err(e) => return Err(e),
    };
    let size = file.metadata()?.len();
    Ok((file, size))
}

/// The gzip thread's work.
enum Job {
    Compress(PathBuf),
    Notify(Callback),
}

fn compressor(jobs: Receiver<Job>) {
    let mut errors = ErrorReport::default();
    for job in jobs {
        match job {
            Job::Compress(path) => {
                if let Err(e) = gzip_file(&path) {
                    errors.report(format_args!("cannot gzip {}: {e}", path.display()));
                }
            }
            Job::Notify(done) => done(),
        }
    }
}

/// Gzips a closed segment `X.log` into `X.log.gz` (through a `.tmp` file,
/// so a crash never leaves a truncated `.gz`), keeping its modification
/// time (the executions' retention goes by it), then removes `X.log`. A
/// segment already gone is no error: it was gzipped before.
pub(crate) fn gzip_file(src: &Path) -> io::Result<()> {
    let input = match File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let modified = input.metadata()?.modified().ok();
    let dst = gz_path(src);
    let mut tmp = dst.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let out = BufWriter::new(File::create(&tmp)?);
        let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        io::copy(&mut BufReader::new(input), &mut gz)?;
        let file = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
        if let Some(t) = modified {
            file.set_modified(t)?;
        }
        fs::rename(&tmp, &dst)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::remove_file(src)
}

/// Tells failures on stderr (the logs may be what is failing), at most
/// once a minute, with how many were not told in between.
#[derive(Default)]
struct ErrorReport {
    last: Option<Instant>,
    untold: u64,
}

impl ErrorReport {
    fn report(&mut self, what: std::fmt::Arguments<'_>) {
        if self.last.is_some_and(|t| t.elapsed() < ERROR_REPORT_EVERY) {
            self.untold += 1;
            return;
        }
        let untold = std::mem::take(&mut self.untold);
        if untold > 0 {
            eprintln!("meridian: log files: {what} ({untold} more failures not shown)");
        } else {
            eprintln!("meridian: log files: {what}");
        }
        self.last = Some(Instant::now());
    }
}
