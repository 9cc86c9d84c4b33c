//! The retention cleanup: removes the files past their category's age and
//! closes and gzips the files of days that are over.
//!
//! Age comes from the name where there is a date in it (a zone's file is
//! dated in its zone, so its "today" is the zone's; a directory that names
//! no known zone is given the earliest date anywhere on Earth, UTC−12, so
//! nothing is removed early), and from the modification time for
//! `executions/<id>.log`. A file is removed once it is more than its
//! retention's days old; `audit/` has seven years by default and is never
//! touched before its retention, whatever the other categories say. Only
//! names this module writes are touched; anything else under the root is
//! left alone.
//!
//! Removal runs here (the files are weeks old: nothing writes to them);
//! closing a live file goes through the writer thread ([`Command::Seal`]),
//! so a late line for that day starts a new segment instead of being lost.

use super::handle::Shared;
use super::paths::{LogFileName, valid_execution_id, zone_of_dir};
use super::settings::Category;
use super::writer::Command;
use chrono::{DateTime, NaiveDate, Utc};
use std::path::{Path, PathBuf};

/// A `.gz.tmp` left by a crash mid-gzip is removed once this old.
const STALE_TMP: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// What one cleanup did; paths are relative to the log root.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    /// Files removed because they were past their retention.
    pub removed: Vec<PathBuf>,
    /// Live files of days that are over, handed to the writer to be closed
    /// and gzipped.
    pub sealed: Vec<PathBuf>,
    /// Closed segments found uncompressed (after a crash, or with `compress`
    /// just turned on), queued for gzip.
    pub compressed: Vec<PathBuf>,
    /// What could not be read or removed, and why.
    pub errors: Vec<String>,
}

pub(crate) fn run(shared: &Shared) -> CleanupReport {
    let now = (shared.clock)();
    let mut run = Run {
        shared,
        now,
        report: CleanupReport::default(),
    };
    for category in Category::ALL {
        let dir = shared.root.join(category.dir_name());
        match category {
            Category::Timezones => {
                for zone_dir in run.list(&dir) {
                    if !zone_dir.is_dir() {
                        continue;
                    }
                    let name = zone_dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    let today = match zone_of_dir(name) {
                        Some(tz) => now.with_timezone(&tz).date_naive(),
                        None => earliest_today(now),
                    };
                    run.dated(category, &zone_dir, today);
                    // Gone once its last file is: a zone no job uses anymore.
                    let _ = std::fs::remove_dir(&zone_dir);
                }
            }
            Category::Executions => run.executions(&dir),
            Category::Audit | Category::Performance | Category::System => {
                run.dated(category, &dir, now.date_naive());
            }
        }
    }
    let report = run.report;
    for file in &report.removed {
        tracing::info!(
            target: "meridian::logging",
            file = %file.display(),
            "log file removed: past its retention"
        );
    }
    for error in &report.errors {
        tracing::warn!(target: "meridian::logging", %error, "log retention cleanup");
    }
    report
}

/// The earliest calendar date anywhere now (UTC−12).
fn earliest_today(now: DateTime<Utc>) -> NaiveDate {
    (now - chrono::TimeDelta::hours(12)).date_naive()
}

struct Run<'a> {
    shared: &'a Shared,
    now: DateTime<Utc>,
    report: CleanupReport,
}

impl Run<'_> {
    /// The entries of `dir`; none when it does not exist (yet).
    fn list(&mut self, dir: &Path) -> Vec<PathBuf> {
        match std::fs::read_dir(dir) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                self.report.errors.push(format!("{}: {e}", dir.display()));
                Vec::new()
            }
        }
    }

    fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.shared.root)
            .unwrap_or(path)
            .to_path_buf()
    }

    fn remove(&mut self, path: &Path) {
        match std::fs::remove_file(path) {
            Ok(()) => {
                let rel = self.relative(path);
                self.report.removed.push(rel);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => self.report.errors.push(format!("{}: {e}", path.display())),
        }
    }

    /// A directory of files named by date; `today` in their calendar.
    fn dated(&mut self, category: Category, dir: &Path, today: NaiveDate) {
        let days = i64::from(self.shared.retention.days(category));
        for path in self.list(dir) {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if self.stale_tmp(&path, name) {
                continue;
            }
            let Some(file) = LogFileName::parse(name) else {
                continue;
            };
            let Some(date) = file.date() else {
                continue;
            };
            if (today - date).num_days() > days {
                self.remove(&path);
            } else if self.shared.compress {
                if file.segment.is_none() && date < today {
                    self.seal(path);
                } else if file.segment.is_some() && !file.gz {
                    self.compress(path);
                }
            }
        }
    }

    /// `executions/`: by modification time.
    fn executions(&mut self, dir: &Path) {
        let days = i64::from(self.shared.retention.days(Category::Executions));
        for path in self.list(dir) {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if self.stale_tmp(&path, name) {
                continue;
            }
            let Some(file) = LogFileName::parse(name) else {
                continue;
            };
            if !valid_execution_id(file.stem) {
                continue;
            }
            let Some(modified) = self.modified(&path) else {
                continue;
            };
            if (self.now - modified).num_days() > days {
                self.remove(&path);
            } else if self.shared.compress && file.segment.is_some() && !file.gz {
                self.compress(path);
            }
        }
    }

    fn modified(&mut self, path: &Path) -> Option<DateTime<Utc>> {
        match std::fs::metadata(path).and_then(|m| m.modified()) {
            Ok(t) => Some(t.into()),
            Err(e) => {
                self.report.errors.push(format!("{}: {e}", path.display()));
                None
            }
        }
    }

    /// Removes a `.gz.tmp` that a crash left; whether `name` is one.
    fn stale_tmp(&mut self, path: &Path, name: &str) -> bool {
        if !name.ends_with(".gz.tmp") {
            return false;
        }
        if self
            .modified(path)
            .is_some_and(|t| self.now - t > STALE_TMP)
        {
            self.remove(path);
        }
        true
    }

    fn seal(&mut self, path: PathBuf) {
        let rel = self.relative(&path);
        match self.shared.send_command(Command::Seal(path)) {
            Ok(()) => self.report.sealed.push(rel),
            Err(e) => self.report.errors.push(format!("{}: {e}", rel.display())),
        }
    }

    fn compress(&mut self, path: PathBuf) {
        let rel = self.relative(&path);
        match self.shared.send_command(Command::Compress(path)) {
            Ok(()) => self.report.compressed.push(rel),
            Err(e) => self.report.errors.push(format!("{}: {e}", rel.display())),
        }
    }
}
