//! What the log files are configured with: the `[logging]` section of the
//! config file, parsed and checked once by [`crate::config`] into a
//! [`LogConfig`] (defaults here), so the router and the cleanup never look
//! at strings again.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The filter when neither `MERIDIAN_LOG` nor `logging.level` says one:
/// warnings from dependencies, Meridian's own `info` and above.
pub const DEFAULT_LEVEL: &str = "warn,meridian=info";
/// A log file that grows past this many bytes is rotated (64 MiB).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// The smallest `max_file_bytes` accepted: smaller would rotate every few
/// lines.
pub const MIN_MAX_FILE_BYTES: u64 = 4096;
/// How often the retention cleanup runs by default (an hour).
pub const DEFAULT_CLEANUP_INTERVAL: Duration = Duration::from_secs(3600);
/// The longest retention accepted, in days (100 years): beyond it a typo.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// How each line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line (see the module docs of [`crate::logging`]).
    #[default]
    Json,
    /// One human-readable line: `ts LEVEL target{span fields}: message fields`.
    Text,
}

impl LogFormat {
    /// `json` or `text`; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "json" => Some(Self::Json),
            "text" => Some(Self::Text),
            _ => None,
        }
    }

    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
        }
    }
}

/// The directories under the log root, one per kind of file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// `timezones/<Area_City>/<local date>.log`: everything about the jobs
    /// in one zone, dated in that zone.
    Timezones,
    /// `executions/<execution id>.log`: one run, served to clients.
    Executions,
    /// `audit/<UTC date>.log`: targets under `meridian::audit`.
    Audit,
    /// `performance/<UTC date>.log`: targets under `meridian::performance`.
    Performance,
    /// `system/<UTC date>.log`: everything else.
    System,
}

impl Category {
    /// Every category, in the order the cleanup walks them.
    pub const ALL: [Category; 5] = [
        Category::Timezones,
        Category::Executions,
        Category::Audit,
        Category::Performance,
        Category::System,
    ];

    /// The directory's name under the log root (also the key under
    /// `[logging.retention_days]`).
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Timezones => "timezones",
            Self::Executions => "executions",
            Self::Audit => "audit",
            Self::Performance => "performance",
            Self::System => "system",
        }
    }
}

/// How many days each category's files are kept. A dated file is removed
/// once its date is more than this many days before today (for a zone's
/// file, today in that zone); an execution's file once it was last written
/// more than this many days ago.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Zone files: what an operator looks back through (90 days).
    pub timezones: u32,
    /// One run's file (30 days): the store keeps the run's record longer.
    pub executions: u32,
    /// The audit trail: seven years (2,555 days), as audits ask.
    pub audit: u32,
    /// Periodic snapshots (14 days): only recent trends matter.
    pub performance: u32,
    /// Everything else (30 days).
    pub system: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            timezones: 90,
            executions: 30,
            audit: 2555,
            performance: 14,
            system: 30,
        }
    }
}

impl Retention {
    /// The retention of one category, in days.
    pub fn days(&self, category: Category) -> u32 {
        match category {
            Category::Timezones => self.timezones,
            Category::Executions => self.executions,
            Category::Audit => self.audit,
            Category::Performance => self.performance,
            Category::System => self.system,
        }
    }

    /// The retention of one category, mutable (the config sets them by name).
    pub fn days_mut(&mut self, category: Category) -> &mut u32 {
        match category {
            Category::Timezones => &mut self.timezones,
            Category::Executions => &mut self.executions,
            Category::Audit => &mut self.audit,
            Category::Performance => &mut self.performance,
            Category::System => &mut self.system,
        }
    }
}

/// The `[logging]` section, checked: see `examples/meridian.toml` for the
/// file's spelling and [`crate::config`] for the environment overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// The log root; `None` is `<data_dir>/logs` ([`LogConfig::root`]).
    pub dir: Option<PathBuf>,
    /// `EnvFilter` directives for the files and stderr alike, already
    /// checked to parse (`MERIDIAN_LOG` wins over the file).
    pub level: String,
    /// How lines are written to the files.
    pub format: LogFormat,
    /// Whether events are also written to stderr (as before the files).
    pub stderr: bool,
    /// A file about to grow past this is rotated first.
    pub max_file_bytes: u64,
    /// Gzip rotated files and the files of past days.
    pub compress: bool,
    /// Days to keep, per category.
    pub retention: Retention,
    /// How often `serve` runs the retention cleanup.
    pub cleanup_interval: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            dir: None,
            level: DEFAULT_LEVEL.to_string(),
            format: LogFormat::Json,
            stderr: true,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            compress: true,
            retention: Retention::default(),
            cleanup_interval: DEFAULT_CLEANUP_INTERVAL,
        }
    }
}

impl LogConfig {
    /// The log root: `dir`, or `<data_dir>/logs`.
    pub fn root(&self, data_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data_dir.join("logs"))
    }
}

/// Whether `directives` parse as an `EnvFilter`; the parser's message when
/// not. An empty string is refused: it would silence everything.
pub fn check_filter(directives: &str) -> Result<(), String> {
    if directives.trim().is_empty() {
        return Err("is empty; give directives such as \"info\" or \"warn,meridian=debug\"".into());
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(directives)
        .map(|_| ())
        .map_err(|e| {
            format!("{directives:?} is not a filter such as \"info,meridian::engine=debug\": {e}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_formats_parse() {
        assert!(check_filter("info,meridian::engine=debug").is_ok());
        assert!(check_filter("").is_err());
        assert!(check_filter("info,meridian=loud").is_err());
        assert_eq!(LogFormat::parse("text"), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse("yaml"), None);
        let c = LogConfig::default();
        assert_eq!(c.root(Path::new("/d")), PathBuf::from("/d/logs"));
        assert_eq!(c.retention.days(Category::Audit), 2555);
    }
}
