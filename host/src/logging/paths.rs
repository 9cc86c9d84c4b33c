//! Where a line goes and what a file's name means: the one place that
//! turns a destination into a path under the log root, and a file name back
//! into its date or id for the cleanup.
//!
//! Names, relative to the root:
//!
//! - `timezones/<zone with / as _>/<YYYY-MM-DD>.log`, dated in the zone;
//! - `executions/<execution id>.log`;
//! - `audit/`, `performance/`, `system/` `<YYYY-MM-DD>.log`, dated in UTC.
//!
//! `<stem>.log` is always the segment being written. A segment that is
//! closed (rotated past `max_file_bytes`, or sealed because its day is over)
//! is renamed to `<stem>.<n>.log` with the next free `n` — so `1` is the
//! oldest and numbers never change once given — and then gzipped to
//! `<stem>.<n>.log.gz`. A whole file reads as segments `1, 2, …` in order,
//! then `<stem>.log`.

use super::settings::Category;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The longest execution id accepted in a file name.
const MAX_EXECUTION_ID: usize = 128;

/// The zone directory of an execution whose `zone` field is not an IANA
/// zone this build knows: its lines still go somewhere, dated in UTC.
pub(crate) const UNKNOWN_ZONE_DIR: &str = "unknown";

/// The file of one line, before it is a path: cheap to hash and compare,
/// and the writer's key for its open files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Dest {
    /// A zone's file for one local date; `zone` is the directory name.
    Zone { zone: Arc<str>, date: NaiveDate },
    /// One execution's file; the id is already checked.
    Execution(Arc<str>),
    /// A UTC-dated file of `audit`, `performance` or `system`.
    Daily { category: Category, date: NaiveDate },
}

impl Dest {
    /// The path of the segment being written, relative to the root.
    pub(crate) fn relative(&self) -> PathBuf {
        match self {
            Dest::Zone { zone, date } => PathBuf::from(Category::Timezones.dir_name())
                .join(&**zone)
                .join(dated_name(*date)),
            Dest::Execution(id) => {
                PathBuf::from(Category::Executions.dir_name()).join(format!("{id}.log"))
            }
            Dest::Daily { category, date } => {
                PathBuf::from(category.dir_name()).join(dated_name(*date))
            }
        }
    }
}

fn dated_name(date: NaiveDate) -> String {
    format!("{}.log", date.format("%Y-%m-%d"))
}

/// Whether `id` may name a file: 1 to 128 of `[A-Za-z0-9-]` (a UUID fits),
/// so no separator, dot or `..` can reach the file system.
pub fn valid_execution_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_EXECUTION_ID
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The file holding every line of one execution, `<root>/executions/<id>.log`
/// (the segment being written; see the module docs for closed ones). `None`
/// when the id is not [`valid_execution_id`]: refused, never sanitised, so
/// a crafted id cannot name another file.
pub fn execution_log_path(root: &Path, execution_id: &str) -> Option<PathBuf> {
    valid_execution_id(execution_id)
        .then(|| root.join(Dest::Execution(Arc::from(execution_id)).relative()))
}

/// A zone's directory name: the IANA name with `/` as `_`
/// (`Asia/Kolkata` → `Asia_Kolkata`).
pub fn zone_dir_name(zone: Tz) -> String {
    zone.name().replace('/', "_")
}

/// The file a line about a job in `zone` goes to when it happens at `at`:
/// `<root>/timezones/<zone dir>/<local date of at in zone>.log`.
pub fn zone_log_path(root: &Path, zone: Tz, at: DateTime<Utc>) -> PathBuf {
    root.join(
        Dest::Zone {
            zone: Arc::from(zone_dir_name(zone)),
            date: at.with_timezone(&zone).date_naive(),
        }
        .relative(),
    )
}

/// The zone a `timezones/` directory is named for (`None` for
/// [`UNKNOWN_ZONE_DIR`] and anything else that is no zone's directory).
pub(crate) fn zone_of_dir(dir: &str) -> Option<Tz> {
    static ZONES: OnceLock<HashMap<String, Tz>> = OnceLock::new();
    ZONES
        .get_or_init(|| {
            chrono_tz::TZ_VARIANTS
                .iter()
                .map(|tz| (zone_dir_name(*tz), *tz))
                .collect()
        })
        .get(dir)
        .copied()
}

/// A log file's name taken apart: `<stem>[.<segment>].log[.gz]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogFileName<'a> {
    /// A date (`YYYY-MM-DD`) or an execution id.
    pub stem: &'a str,
    /// The closed segment's number; `None` for the segment being written.
    pub segment: Option<u32>,
    /// Whether the file is gzipped.
    pub gz: bool,
}

impl<'a> LogFileName<'a> {
    /// The parts of `name`, or `None` when it is no log file of ours.
    pub(crate) fn parse(name: &'a str) -> Option<Self> {
        let (rest, gz) = match name.strip_suffix(".gz") {
            Some(rest) => (rest, true),
            None => (name, false),
        };
        let rest = rest.strip_suffix(".log")?;
        let (stem, segment) = match rest.split_once('.') {
            Some((stem, n)) => (stem, Some(n.parse::<u32>().ok().filter(|n| *n > 0)?)),
            None => (rest, None),
        };
        if stem.is_empty() || stem.contains('.') || (gz && segment.is_none()) {
            // `<stem>.log.gz` is never written by us; leave such files be.
            return None;
        }
        Some(Self { stem, segment, gz })
    }

    /// The stem as a date, when it is one.
    pub(crate) fn date(&self) -> Option<NaiveDate> {
        if self.stem.len() != 10 {
            return None;
        }
        NaiveDate::parse_from_str(self.stem, "%Y-%m-%d").ok()
    }
}

/// Closed segment `n` of the file `live` (`…/X.log` → `…/X.<n>.log`).
pub(crate) fn segment_path(live: &Path, n: u32) -> PathBuf {
    let name = live
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".log"))
        .unwrap_or("log");
    live.with_file_name(format!("{name}.{n}.log"))
}

/// The first segment number of `live` that is free, neither as `.log` nor
/// as `.log.gz` (a few `stat`s: segments are few).
pub(crate) fn next_segment(live: &Path) -> PathBuf {
    let mut n = 1;
    loop {
        let candidate = segment_path(live, n);
        if !candidate.exists() && !gz_path(&candidate).exists() {
            return candidate;
        }
        n += 1;
    }
}

/// `X.log` → `X.log.gz`.
pub(crate) fn gz_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".gz");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn execution_ids_are_checked() {
        let root = Path::new("/logs");
        assert_eq!(
            execution_log_path(root, "0192f1a2-7b3c-7d4e-8f90-a1b2c3d4e5f6"),
            Some(PathBuf::from(
                "/logs/executions/0192f1a2-7b3c-7d4e-8f90-a1b2c3d4e5f6.log"
            ))
        );
        for bad in [
            "",
            "..",
            "../etc/passwd",
            "a/b",
            "a\\b",
            "a.b",
            "id with space",
            "é",
            &"x".repeat(129),
        ] {
            assert_eq!(execution_log_path(root, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn zone_files_are_dated_in_the_zone() {
        let at = Utc.with_ymd_and_hms(2026, 3, 29, 23, 50, 0).unwrap();
        assert_eq!(
            zone_log_path(Path::new("r"), chrono_tz::Asia::Kolkata, at),
            PathBuf::from("r/timezones/Asia_Kolkata/2026-03-30.log")
        );
        assert_eq!(
            zone_log_path(Path::new("r"), chrono_tz::America::Los_Angeles, at),
            PathBuf::from("r/timezones/America_Los_Angeles/2026-03-29.log")
        );
        assert_eq!(
            zone_of_dir("America_Los_Angeles"),
            Some(chrono_tz::America::Los_Angeles)
        );
        assert_eq!(zone_of_dir(UNKNOWN_ZONE_DIR), None);
    }

    #[test]
    fn file_names_parse() {
        let p = |n| LogFileName::parse(n);
        let d = p("2026-03-30.log").unwrap();
        assert_eq!((d.segment, d.gz), (None, false));
        assert_eq!(d.date(), NaiveDate::from_ymd_opt(2026, 3, 30));
        let s = p("2026-03-30.3.log.gz").unwrap();
        assert_eq!((s.stem, s.segment, s.gz), ("2026-03-30", Some(3), true));
        assert_eq!(p("abc-1.2.log").unwrap().date(), None);
        for other in [
            "x.txt",
            "x.log.gz",
            "x.0.log",
            "x.a.log",
            ".log",
            "a.b.c.log",
        ] {
            assert_eq!(p(other), None, "{other}");
        }
        assert_eq!(
            segment_path(Path::new("/r/system/2026-03-30.log"), 2),
            PathBuf::from("/r/system/2026-03-30.2.log")
        );
    }
}
