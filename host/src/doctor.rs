//! The node's self-check: `meridian doctor` and `GET /api/v2/health` run
//! the same checks through one function, [`check`], and get one typed
//! [`Report`] back — a list of items, each with a plain verdict (ok, info,
//! warn, fail) and one line of detail.
//!
//! # Depth
//!
//! A load balancer probes the health endpoint every few seconds, so the
//! checks come in two depths ([`Depth`]):
//!
//! - [`Depth::Probe`] (the health endpoint): the store answers, the loaded
//!   plugins and the grants that apply to them, the secrets those grants
//!   name, the log directories and the free disk space. All of it is in
//!   memory or one cheap system call, apart from one `SELECT 1`.
//! - [`Depth::Full`] (`meridian doctor`): the same plus the whole audit
//!   chain verified record by record ([`crate::audit::verify_store`]),
//!   whose cost grows with the trail, and, for each SQL connection used
//!   only to read, whether its login really cannot write (asked of each
//!   database, see [`crate::capabilities::sql::login`]). The probe leaves
//!   them out rather than caching results that would go stale between runs
//!   (or connecting to every database on every probe).
//!
//! The checks that need the configuration itself (it parses, the data dir
//! is writable, the store opens) are run by the CLI before the rest, since
//! a serving node has passed them already; see [`config_item`],
//! [`writable_dir`] and [`store_opened`].
//!
//! A report fails when any item fails; `warn` and `info` never fail it.
//! Some failures take out part of the node only (a plugin that could not
//! be loaded: its steps fail, every other step type works): such an item
//! is [`Item::partial`], and the health endpoint answers `degraded` with
//! 200 for it, so a load balancer keeps the node, while `doctor` fails.

use crate::runtime::Runtime;
use crate::store::Store;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::Path;

/// A volume (the data dir's, the log root's) with less free than this
/// share of its size fails; a fixed number would be all of a small volume
/// or nothing of a large one.
pub const DISK_FAIL_PERCENT: u64 = 2;
/// … and with less than this share, warns.
pub const DISK_WARN_PERCENT: u64 = 10;
/// Below this much free space a volume fails whatever its size: one
/// SQLite checkpoint or a few log lines could not be written.
pub const DISK_FAIL_FLOOR_BYTES: u64 = 8 * 1024 * 1024;

/// How long the health probe waits for the store: the whole answer comes
/// within a second, so a load balancer's probe sees an outage as it
/// happens (the pool's own wait is 10 s).
pub const STORE_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(600);

/// How plain the news is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    /// Worth knowing, nothing wrong (a plugin asks for something no grant
    /// gives: its calls will be denied, which may be intended).
    Info,
    /// Works, but probably not as meant (a grant that applies to nothing).
    Warn,
    /// Broken: the node cannot do its work, or cannot be trusted.
    Fail,
}

impl Verdict {
    /// `ok`, `info`, `warn` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

/// One checked item.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// What was checked: `store`, `plugins`, `plugin:http`, `grant:config[0]`…
    pub name: String,
    #[serde(rename = "status")]
    pub verdict: Verdict,
    /// One line.
    pub detail: String,
    /// The line without server paths, when `detail` names one: what the
    /// health endpoint shows callers who are not admins (a path names the
    /// data dir, and so the store's file).
    #[serde(skip)]
    pub public_detail: Option<String>,
    /// A failure here takes out part of the node, not all of it.
    #[serde(skip)]
    pub partial: bool,
    /// The detail is shown even to callers without a token (it names no
    /// server detail and is what a load balancer's operator needs: why the
    /// store check fails).
    #[serde(skip)]
    pub for_anyone: bool,
}

impl Item {
    /// An item.
    pub fn new(name: impl Into<String>, verdict: Verdict, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            verdict,
            detail: detail.into(),
            public_detail: None,
            partial: false,
            for_anyone: false,
        }
    }

    /// The same item, whose detail anyone may see.
    pub fn for_anyone(mut self) -> Self {
        self.for_anyone = true;
        self
    }

    /// The same item, whose failure takes out part of the node only.
    pub fn partial(mut self) -> Self {
        self.partial = true;
        self
    }

    /// The same item, whose detail names server paths, with a line that
    /// does not.
    pub fn without_paths(mut self, public: impl Into<String>) -> Self {
        self.public_detail = Some(public.into());
        self
    }
}

/// Every item, in the order checked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Item>,
}

impl Report {
    /// Whether any item failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.verdict == Verdict::Fail)
    }

    /// Whether an item failed that takes out the whole node (the health
    /// endpoint's 503); [`Report::failed`] counts partial ones too.
    pub fn failed_whole(&self) -> bool {
        self.checks
            .iter()
            .any(|c| c.verdict == Verdict::Fail && !c.partial)
    }

    /// The worst verdict (ok for an empty report).
    pub fn worst(&self) -> Verdict {
        self.checks
            .iter()
            .map(|c| c.verdict)
            .max()
            .unwrap_or(Verdict::Ok)
    }

    /// One line per item: `ok    store  the store answers`.
    pub fn text(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "{:<5} {:<width$}  {}\n",
                c.verdict.as_str(),
                c.name,
                c.detail
            ));
        }
        out
    }
}

/// How far [`check`] goes (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Cheap enough for a load-balancer probe.
    Probe,
    /// Everything, the audit chain included.
    Full,
}

impl Depth {
    /// How long the store item waits for the store: a load balancer's
    /// probe must see an outage within a second; an operator running
    /// `meridian doctor` on a busy machine wants the store's real answer,
    /// not a timeout.
    fn store_budget(self) -> std::time::Duration {
        match self {
            Self::Probe => STORE_PROBE_TIMEOUT,
            Self::Full => DOCTOR_STORE_TIMEOUT,
        }
    }
}

/// How long `meridian doctor` waits for the store (see [`Depth::store_budget`]).
pub const DOCTOR_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What [`check`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub runtime: &'a Runtime,
    pub store: &'a Store,
    /// The data dir, for its free space; `None` skips that item.
    pub data_dir: Option<&'a Path>,
    /// The log root.
    pub log_dir: &'a Path,
}

/// Runs the checks on a loaded node: store, audit chain (full depth
/// only), plugins and their grants, secrets named by grants, log
/// directories, disk space.
pub async fn check(subject: Subject<'_>, depth: Depth) -> Report {
    let mut report = Report::default();
    report
        .checks
        .push(store_item(subject.store, depth.store_budget()).await);
    if depth == Depth::Full {
        report.checks.push(audit_item(subject.store).await);
    }
    plugin_items(subject.runtime, &mut report.checks);
    if depth == Depth::Full {
        report.checks.extend(sql_login_items(subject.runtime).await);
    }
    report.checks.push(log_dir_item(subject.log_dir));
    if let Some(dir) = subject.data_dir {
        report.checks.push(disk_item("disk:data", dir));
    }
    report.checks.push(disk_item("disk:logs", subject.log_dir));
    report
}

/// The store, within `budget` in all: it answers a read,
/// then takes a write (one row, overwritten). A store that answers but
/// takes no writes — its disk full, read-only — fails with the reason; one
/// whose write is merely slow (busy with a large batch) is a warning, not
/// an outage.
async fn store_item(store: &Store, budget: std::time::Duration) -> Item {
    let started = std::time::Instant::now();
    let unreachable = || {
        tracing::error!(
            timeout_ms = budget.as_millis() as u64,
            "health check: the store did not answer in time"
        );
        Item::new(
            "store",
            Verdict::Fail,
            format!(
                "the store is unreachable: no answer within {} ms",
                budget.as_millis()
            ),
        )
        .for_anyone()
    };
    match tokio::time::timeout(budget, store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "health check: the store fails");
            let why = e
                .unavailable()
                .map_or("the store does not answer", |u| u.describe());
            return Item::new("store", Verdict::Fail, why).for_anyone();
        }
        Err(_) => return unreachable(),
    }
    let left = budget.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, store.probe_write()).await {
        Ok(Ok(())) => {
            Item::new("store", Verdict::Ok, "the store answers and takes writes").for_anyone()
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "health check: the store answers but fails a write");
            let why = e
                .unavailable()
                .map_or("the store answers but takes no writes", |u| u.describe());
            Item::new("store", Verdict::Fail, why).for_anyone()
        }
        Err(_) => Item::new(
            "store",
            Verdict::Warn,
            format!(
                "the store answers, but a write did not complete within {} ms (busy)",
                budget.as_millis()
            ),
        )
        .for_anyone(),
    }
}

/// The audit chain, verified record by record.
async fn audit_item(store: &Store) -> Item {
    match crate::audit::verify_store(store).await {
        Ok(r) if r.ok => Item::new(
            "audit",
            Verdict::Ok,
            format!("the chain of {} records verifies", r.records),
        ),
        Ok(r) => Item::new(
            "audit",
            Verdict::Fail,
            match &r.problem {
                Some(p) => format!(
                    "the chain is broken at position {} (record {}): {}",
                    p.position, p.seq, p.message
                ),
                None => "the chain does not verify".to_string(),
            },
        ),
        Err(e) => Item::new(
            "audit",
            Verdict::Fail,
            format!("the audit trail cannot be read: {e}"),
        ),
    }
}

/// One item per SQL connection used only to read (`read_only = true`, or
/// named only by `read` grants): ok when its login cannot write, warn when
/// it can (with the statements that make one that cannot) or the database
/// cannot be reached, info when the database does not tell.
async fn sql_login_items(runtime: &Runtime) -> Vec<Item> {
    use crate::capabilities::sql::grant::SqlRule;
    use crate::capabilities::sql::login::LoginCheck;
    let rules: Vec<SqlRule> = runtime
        .grant_entries()
        .iter()
        .flat_map(|e| e.grant.sql.iter())
        .filter_map(|spec| SqlRule::parse(spec).ok())
        .collect();
    let mut items = Vec::new();
    for (name, check) in runtime.sql().read_only_logins(&rules).await {
        let item = format!("sql:{name}");
        items.push(match check {
            LoginCheck::ReadOnly(what) => Item::new(
                item,
                Verdict::Ok,
                format!("used read-only, and its login cannot write: {what}"),
            ),
            LoginCheck::CanWrite { why, fix } => Item::new(
                item,
                Verdict::Warn,
                format!(
                    "used read-only, but {why}; only Meridian's checks stand between a read grant and a write. A login that cannot write: {fix}"
                ),
            ),
            LoginCheck::Unknown(why) => Item::new(
                item,
                Verdict::Info,
                format!(
                    "used read-only; whether its login can write is not known ({why}); Meridian's checks still apply"
                ),
            ),
            LoginCheck::Unreachable(why) => Item::new(
                item,
                Verdict::Warn,
                format!("used read-only, but its login could not be checked: {why}"),
            ),
        });
    }
    items
}

/// The capability kinds a grant gives something for.
fn granted_kinds(g: &crate::capabilities::grants::GrantSpec) -> BTreeSet<&'static str> {
    let mut kinds = BTreeSet::new();
    if !g.secrets.is_empty() {
        kinds.insert("secrets");
    }
    if !g.http.is_empty() {
        kinds.insert("http");
    }
    if !g.sql.is_empty() {
        kinds.insert("sql");
    }
    if !g.process.is_empty() {
        kinds.insert("process");
    }
    kinds
}

/// One item for the plugin set, one per plugin (its digest, and what it
/// asks that no grant gives), one per grant that applies to nothing, one
/// per secret a grant names that the host does not have.
fn plugin_items(runtime: &Runtime, items: &mut Vec<Item>) {
    let plugins = runtime.plugins();
    items.push(Item::new(
        "plugins",
        if plugins.is_empty() {
            Verdict::Warn
        } else {
            Verdict::Ok
        },
        format!("{} step types loaded", plugins.len()),
    ));
    for u in runtime.unloadable() {
        let detail = format!(
            "could not be loaded, its steps ({:?}) fail: {}",
            u.step_type,
            u.describe()
        );
        let mut item = Item::new(format!("plugin-file:{}", u.file), Verdict::Fail, detail);
        // wasmtime's text may name the file's path.
        if let crate::runtime::PluginSource::File { path } = &u.source
            && item.detail.contains(&*path.to_string_lossy())
        {
            let public = item.detail.replace(&*path.to_string_lossy(), &u.file);
            item = item.without_paths(public);
        }
        items.push(item.partial());
    }
    let entries = runtime.grant_entries();
    for p in &plugins {
        let digest = p.info.digest.to_string();
        let applying: Vec<_> = entries
            .iter()
            .filter(|e| {
                e.grant.plugin == p.info.name
                    && e.grant.digest.as_deref().is_none_or(|d| d == digest)
            })
            .collect();
        let granted: BTreeSet<&str> = applying
            .iter()
            .flat_map(|e| granted_kinds(&e.grant))
            .collect();
        let ungranted: Vec<String> = p
            .info
            .capabilities
            .iter()
            .filter(|a| a.kind != "log" && !granted.contains(a.kind))
            .map(|a| format!("{} {}", a.kind, a.target))
            .collect();
        let name = format!("plugin:{}", p.info.name);
        items.push(if ungranted.is_empty() {
            Item::new(
                name,
                Verdict::Ok,
                format!(
                    "{} {}, {} grant(s) apply",
                    p.info.version,
                    digest,
                    applying.len()
                ),
            )
        } else {
            Item::new(
                name,
                Verdict::Info,
                format!(
                    "{} {}; asks for {} which no grant gives (those calls are denied)",
                    p.info.version,
                    digest,
                    ungranted.join(", ")
                ),
            )
        });
    }
    for e in &entries {
        let name = format!("grant:{}", e.id);
        let Some(p) = runtime.plugin(&e.grant.plugin) else {
            items.push(Item::new(
                name,
                Verdict::Warn,
                format!(
                    "for plugin {:?}, which is not loaded: it applies to nothing",
                    e.grant.plugin
                ),
            ));
            continue;
        };
        let digest = p.info.digest.to_string();
        if let Some(pinned) = e.grant.digest.as_deref()
            && pinned != digest
        {
            items.push(Item::new(
                name,
                Verdict::Warn,
                format!(
                    "pinned to {pinned}, but the loaded {} is {digest}: it does not apply",
                    e.grant.plugin
                ),
            ));
            continue;
        }
        let missing: Vec<&str> = e
            .grant
            .secrets
            .iter()
            .map(String::as_str)
            .filter(|s| runtime.secrets().get(s).is_none())
            .collect();
        if !missing.is_empty() {
            items.push(Item::new(
                name,
                Verdict::Warn,
                format!(
                    "names secrets the host does not have: {}",
                    missing.join(", ")
                ),
            ));
        }
    }
}

/// Whether a file can be created in `dir` (created and removed again).
fn probe_write(dir: &Path) -> std::io::Result<()> {
    tempfile::Builder::new()
        .prefix(".meridian-doctor-")
        .tempfile_in(dir)
        .map(drop)
}

/// A directory that must be writable: it exists and takes a file, or it
/// does not exist yet and its nearest existing ancestor takes one (the
/// node creates it).
pub fn writable_dir(name: &str, dir: &Path) -> Item {
    if dir.is_dir() {
        return match probe_write(dir) {
            Ok(()) => Item::new(name, Verdict::Ok, format!("{} is writable", dir.display()))
                .without_paths("the directory is writable"),
            Err(e) => Item::new(
                name,
                Verdict::Fail,
                format!("{} is not writable: {e}", dir.display()),
            )
            .without_paths(format!("the directory is not writable: {}", e.kind())),
        };
    }
    if dir.exists() {
        return Item::new(
            name,
            Verdict::Fail,
            format!("{} is not a directory", dir.display()),
        )
        .without_paths("the path is not a directory");
    }
    let Some(parent) = dir.ancestors().skip(1).find(|a| a.is_dir()) else {
        return Item::new(
            name,
            Verdict::Fail,
            format!("{} cannot be created", dir.display()),
        )
        .without_paths("the directory cannot be created");
    };
    match probe_write(parent) {
        Ok(()) => Item::new(
            name,
            Verdict::Ok,
            format!("{} does not exist yet; it will be created", dir.display()),
        )
        .without_paths("the directory does not exist yet; it will be created"),
        Err(e) => Item::new(
            name,
            Verdict::Fail,
            format!(
                "{} does not exist and {} is not writable: {e}",
                dir.display(),
                parent.display()
            ),
        )
        .without_paths(format!(
            "the directory does not exist and its parent is not writable: {}",
            e.kind()
        )),
    }
}

/// The log root and each directory directly in it (`executions/`,
/// `audit/`…).
fn log_dir_item(root: &Path) -> Item {
    let item = writable_dir("logs", root);
    if item.verdict != Verdict::Ok || !root.is_dir() {
        return item;
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return Item::new(
            "logs",
            Verdict::Fail,
            format!("{} cannot be listed", root.display()),
        )
        .without_paths("the log root cannot be listed");
    };
    let mut checked = 1;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Err(e) = probe_write(&path) {
                let dir = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                return Item::new(
                    "logs",
                    Verdict::Fail,
                    format!("{} is not writable: {e}", path.display()),
                )
                .without_paths(format!(
                    "the log directory {dir}/ is not writable: {}",
                    e.kind()
                ));
            }
            checked += 1;
        }
    }
    Item::new(
        "logs",
        Verdict::Ok,
        format!(
            "{} and its {} directories are writable",
            root.display(),
            checked - 1
        ),
    )
    .without_paths(format!(
        "the log root and its {} directories are writable",
        checked - 1
    ))
}

/// Free space on the file system holding `dir` (or its nearest existing
/// ancestor).
fn disk_item(name: &str, dir: &Path) -> Item {
    let Some(existing) = dir.ancestors().find(|a| a.exists()) else {
        return Item::new(name, Verdict::Warn, "no existing directory to measure");
    };
    match nix::sys::statvfs::statvfs(existing) {
        Ok(s) => {
            let unit: u64 = s.fragment_size();
            let free = s.blocks_available().saturating_mul(unit);
            let total = s.blocks().saturating_mul(unit);
            let verdict = disk_verdict(free, total);
            let mib = |b: u64| b / (1024 * 1024);
            let percent = (free.saturating_mul(100)).checked_div(total).unwrap_or(0);
            let line = format!("{} MiB free of {} MiB ({percent}%)", mib(free), mib(total));
            let advice = match verdict {
                Verdict::Fail => format!(
                    "; below {DISK_FAIL_PERCENT}% writes fail: free space or grow the volume"
                ),
                Verdict::Warn => format!("; below {DISK_WARN_PERCENT}%"),
                _ => String::new(),
            };
            Item::new(
                name,
                verdict,
                format!("{line} at {}{advice}", existing.display()),
            )
            .without_paths(format!("{line}{advice}"))
        }
        Err(e) => Item::new(
            name,
            Verdict::Warn,
            format!("free space at {} unknown: {e}", existing.display()),
        )
        .without_paths("free space unknown"),
    }
}

/// A volume's verdict by its free share (see [`DISK_FAIL_PERCENT`]).
fn disk_verdict(free: u64, total: u64) -> Verdict {
    if free < DISK_FAIL_FLOOR_BYTES
        || free.saturating_mul(100) < total.saturating_mul(DISK_FAIL_PERCENT)
    {
        Verdict::Fail
    } else if free.saturating_mul(100) < total.saturating_mul(DISK_WARN_PERCENT) {
        Verdict::Warn
    } else {
        Verdict::Ok
    }
}

/// The config item: loaded, or why not.
pub fn config_item(loaded: Result<&crate::config::Config, &crate::config::ConfigError>) -> Item {
    match loaded {
        Ok(c) => Item::new(
            "config",
            Verdict::Ok,
            format!("loaded; data dir {}", c.data_dir.display()),
        )
        .without_paths("loaded"),
        Err(e) => Item::new("config", Verdict::Fail, e.to_string()),
    }
}

/// The store item when opening it (which applies the migrations) worked
/// or not.
pub fn store_opened(opened: Result<&Store, &crate::store::StoreError>, what: &str) -> Item {
    match opened {
        Ok(_) => Item::new(
            "store-open",
            Verdict::Ok,
            format!("{what} opens, migrations applied"),
        ),
        Err(e) => Item::new(
            "store-open",
            Verdict::Fail,
            format!("{what} does not open: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_is_judged_by_its_free_share() {
        const MIB: u64 = 1024 * 1024;
        // A 16 MiB tmpfs, empty: fine; full: failing.
        assert_eq!(disk_verdict(16 * MIB, 16 * MIB), Verdict::Ok);
        assert_eq!(disk_verdict(0, 16 * MIB), Verdict::Fail);
        // 2 TiB with 30 GiB free (1.5%): failing, though 30 GiB is more
        // than a fixed threshold would ever ask.
        assert_eq!(
            disk_verdict(30 * 1024 * MIB, 2 * 1024 * 1024 * MIB),
            Verdict::Fail
        );
        // 100 GiB with 5 GiB free: warn; with 20 GiB: fine.
        assert_eq!(
            disk_verdict(5 * 1024 * MIB, 100 * 1024 * MIB),
            Verdict::Warn
        );
        assert_eq!(disk_verdict(20 * 1024 * MIB, 100 * 1024 * MIB), Verdict::Ok);
        // Under the floor whatever the share.
        assert_eq!(disk_verdict(4 * MIB, 5 * MIB), Verdict::Fail);
    }
}
