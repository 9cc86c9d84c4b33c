//! Persistence: the embedded SQLite store (the default), or PostgreSQL for
//! several nodes on one database; one schema and one set of queries.
//!
//! Migrations live in `host/migrations/` and are embedded in the binary;
//! both databases run the same files with the same numbering, except what
//! one SQL cannot say for both (SQLite cannot add a constraint to a table):
//! `migrations/sqlite/` and `migrations/postgres/` hold those, numbered in
//! the same sequence ([`migrator`]). The queries
//! live once, in `backend/`, compiled once per database (`sqlite.rs`,
//! `postgres.rs`); [`Store`] dispatches to the one in use.
//! The SQL is portable: `$N` placeholders (sqlx accepts them on SQLite),
//! instants as BIGINT microseconds since the epoch, local date-times as ISO
//! 8601 text. Rows are plain structs of primitive fields; `model` converts
//! them to and from the typed domain values, so the store never interprets
//! a policy or a zone.

use std::path::Path;

mod audit;
mod executions;
mod jobs;
mod tokens;

pub use audit::*;
pub use executions::*;
pub use jobs::*;
pub use tokens::*;

// Both include `backend/` (see there): the duplicate is the design.
#[allow(clippy::duplicate_mod)]
mod postgres;
#[allow(clippy::duplicate_mod)]
mod sqlite;
#[cfg(test)]
pub(crate) mod testing;

/// The portable migrations (`migrate!` reads the files of the directory,
/// not its subdirectories).
static SHARED: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
static SQLITE_ONLY: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_ONLY: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The migrations of `dialect`: the shared ones and its own, in version
/// order. One numbering runs through all three directories: a version is
/// either shared or in both backend directories (the same change, said in
/// each database's SQL); `migrations_are_numbered_once` checks it.
async fn migrator(
    dialect: Dialect,
) -> Result<sqlx::migrate::Migrator, sqlx::migrate::MigrateError> {
    let own = match dialect {
        Dialect::Sqlite => &SQLITE_ONLY,
        Dialect::Postgres => &POSTGRES_ONLY,
    };
    let mut all: Vec<_> = SHARED.iter().chain(own.iter()).cloned().collect();
    all.sort_by_key(|m| m.version);
    sqlx::migrate::Migrator::new(Embedded(all)).await
}

/// Migrations already in memory, as a source for [`sqlx::migrate::Migrator::new`].
#[derive(Debug)]
struct Embedded(Vec<sqlx::migrate::Migration>);

impl sqlx::migrate::MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> futures::future::BoxFuture<
        'static,
        Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>,
    > {
        Box::pin(async move { Ok(self.0) })
    }
}

/// A store failure. The message is for logs; API clients get a generic
/// problem document.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{what} {id:?} does not exist")]
    NotFound { what: &'static str, id: String },
    #[error("{what} {id:?} already exists")]
    Conflict { what: &'static str, id: String },
    /// A write handed to the group-commit writer whose batch failed for a
    /// passing condition: the class, and the database's message for logs.
    #[error("{message}")]
    Unavailable { why: Unavailable, message: String },
}

/// Why the store cannot take a request right now: a condition that passes
/// (the database restarting, a disk freed, a lock released), not a fault
/// of the request or of the code. The API answers 503 with `Retry-After`
/// for it, and health names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// No connection: the server is down, restarting, or its sessions were
    /// terminated; the pool timed out waiting for one.
    Unreachable,
    /// The database's disk is full.
    DiskFull,
    /// The database takes no writes (a read-only file or a standby).
    ReadOnly,
    /// Locked or overloaded (SQLite busy, PostgreSQL out of connections, a
    /// serialization failure).
    Busy,
}

impl Unavailable {
    /// A short phrase, for clients and health: no server detail.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unreachable => "the store is unreachable",
            Self::DiskFull => "the store's disk is full",
            Self::ReadOnly => "the store takes no writes",
            Self::Busy => "the store is busy",
        }
    }
}

impl StoreError {
    /// Whether this failure is one of the store's passing conditions
    /// ([`Unavailable`]), and which.
    pub fn unavailable(&self) -> Option<Unavailable> {
        match self {
            StoreError::Database(e) => classify_sqlx(e),
            StoreError::Unavailable { why, .. } => Some(*why),
            _ => None,
        }
    }
}

/// A database driver error as [`Unavailable`], when it is one.
pub(crate) fn classify_sqlx(e: &sqlx::Error) -> Option<Unavailable> {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => Some(Unavailable::Unreachable),
        sqlx::Error::Database(db) => classify_code(&db.code()?),
        _ => None,
    }
}

/// A database error code as [`Unavailable`]: PostgreSQL's SQLSTATE (five
/// characters) or SQLite's (extended) result code (a number).
fn classify_code(code: &str) -> Option<Unavailable> {
    // A SQLSTATE is five characters (often all digits: 53100); SQLite's
    // codes, extended ones included, stay below 10000.
    if let Ok(n) = code.parse::<i64>()
        && code.len() < 5
    {
        // SQLite: the primary code is the low byte of an extended one.
        return match n & 0xff {
            5 | 6 => Some(Unavailable::Busy),          // BUSY, LOCKED
            8 => Some(Unavailable::ReadOnly),          // READONLY
            13 => Some(Unavailable::DiskFull),         // FULL
            10 | 14 => Some(Unavailable::Unreachable), // IOERR, CANTOPEN
            _ => None,
        };
    }
    match code {
        "53100" => Some(Unavailable::DiskFull),
        "25006" => Some(Unavailable::ReadOnly),
        "53200" | "53300" | "40001" | "40P01" | "55P03" => Some(Unavailable::Busy),
        "57P01" | "57P02" | "57P03" => Some(Unavailable::Unreachable),
        _ if code.starts_with("08") => Some(Unavailable::Unreachable),
        _ => None,
    }
}

/// A stored schedule, field for field as in the `schedules` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRow {
    pub id: String,
    pub job_id: String,
    pub cron: String,
    pub timezone: String,
    pub enabled: bool,
    pub start_at_us: Option<i64>,
    pub end_at_us: Option<i64>,
    pub misfire_window_s: i64,
    pub misfire_policy: String,
    pub overlap_policy: String,
    pub dst_gap: String,
    pub dst_overlap: String,
    pub jitter_s: i64,
    pub priority: i32,
    pub cursor_us: Option<i64>,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

/// A fire's identity and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FireRow {
    pub schedule_id: String,
    /// Nominal local date-time, `YYYY-MM-DDTHH:MM:SS`.
    pub nominal_local: String,
    pub utc_offset_s: i32,
    pub fire_at_us: i64,
    /// `scheduled`, `catch_up` or `backfill`.
    pub origin: String,
    /// `enqueued`, `buffered`, `skipped` or `missed` (see the scheduler's
    /// module docs).
    pub outcome: String,
    pub run_id: Option<String>,
    pub created_at_us: i64,
}

/// The error an attempt or step run gets when the node stopped while it
/// ran.
const INTERRUPTED: &str =
    r#"{"kind":"interrupted","message":"the node stopped while this attempt ran"}"#;

/// The node a store handle writes for: new executions are held by it under
/// a lease of `lease_us` (see `backend/cluster.rs`).
#[derive(Debug, Clone)]
pub struct NodeLease {
    pub id: std::sync::Arc<str>,
    pub lease_us: i64,
}

impl Default for NodeLease {
    /// A single node: `local`, leases of 30 s.
    fn default() -> Self {
        NodeLease {
            id: std::sync::Arc::from("local"),
            lease_us: 30_000_000,
        }
    }
}

/// The node a store handle writes for, shared by the handle's clones and
/// its writer task.
#[derive(Debug, Default)]
pub(crate) struct NodeCell(std::sync::RwLock<NodeLease>);

impl NodeCell {
    fn get(&self) -> NodeLease {
        match self.0.read() {
            Ok(n) => n.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, node: NodeLease) {
        match self.0.write() {
            Ok(mut n) => *n = node,
            Err(poisoned) => *poisoned.into_inner() = node,
        }
    }
}

/// A node of the cluster, as `nodes` stores it, with what it holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeRow {
    pub id: String,
    pub instance: String,
    pub hostname: String,
    pub pid: i64,
    pub version: String,
    pub listen: String,
    pub started_at_us: i64,
    pub heartbeat_at_us: i64,
    pub stopped_at_us: Option<i64>,
    /// How far its clock was behind the database's at its last heartbeat
    /// (negative: ahead), as it measured it; `None` before it measured.
    pub clock_offset_us: Option<i64>,
    /// Whether its heartbeat is within the lease and it did not stop, on
    /// the store's clock (read only).
    pub live: bool,
    /// Unfinished executions it holds (queued or running).
    pub held: i64,
    /// Of those, running.
    pub running: i64,
}

/// Which SQL dialect a backend speaks, where the two differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// The store handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::Backend),
    Postgres(postgres::Backend),
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and brings
    /// its schema up to date.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Sqlite(sqlite::open(path).await?),
        })
    }

    /// A private in-memory SQLite database (tests, `meridian run`).
    pub async fn open_memory() -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Sqlite(sqlite::open_memory().await?),
        })
    }

    /// Connects to PostgreSQL at `url` (`postgres://user@host/db`; the
    /// password in the URL or given apart) with at most `max_connections`,
    /// and brings its schema up to date.
    pub async fn open_postgres(
        url: &str,
        password: Option<&str>,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Postgres(postgres::open(url, password, None, max_connections).await?),
        })
    }

    /// [`Store::open_postgres`] with every table in `schema` (created when
    /// missing): several stores side by side in one database (tests).
    pub async fn open_postgres_schema(
        url: &str,
        schema: &str,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Postgres(
                postgres::open(url, None, Some(schema), max_connections).await?,
            ),
        })
    }

    /// Makes this handle (and every clone of it, and its writer) write for
    /// `node`: new executions are held by it (`backend/cluster.rs`).
    pub fn set_node(&self, node: NodeLease) {
        match &self.backend {
            Backend::Sqlite(b) => b.node_cell().set(node),
            Backend::Postgres(b) => b.node_cell().set(node),
        }
    }

    /// The node this handle writes for.
    pub fn node(&self) -> NodeLease {
        match &self.backend {
            Backend::Sqlite(b) => b.node_cell().get(),
            Backend::Postgres(b) => b.node_cell().get(),
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// Forwards each listed method of [`Store`] to the backend in use.
macro_rules! forward {
    ($($(#[$doc:meta])* pub async fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) $(-> $ret:ty)?;)*) => {
        impl Store {
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) $(-> $ret)? {
                    match &self.backend {
                        Backend::Sqlite(b) => b.$name($($arg),*).await,
                        Backend::Postgres(b) => b.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

forward! {
    /// Checks that the database answers (for health checks).
    pub async fn ping(&self) -> Result<(), StoreError>;
    /// Writes (overwrites) the health check's one row: fails where the
    /// store answers reads but takes no writes (disk full, read-only).
    pub async fn probe_write(&self) -> Result<(), StoreError>;
    pub async fn insert_schedule(&self, s: &ScheduleRow) -> Result<(), StoreError>;
    /// Inserts many schedules in one transaction: all of them, or none
    /// when one fails (an id already stored is a [`StoreError::Conflict`]).
    pub async fn insert_schedules(&self, schedules: &[ScheduleRow]) -> Result<(), StoreError>;
    /// Replaces a schedule's definition, keeping its creation time and
    /// cursor.
    pub async fn update_schedule(&self, s: &ScheduleRow) -> Result<(), StoreError>;
    pub async fn set_schedule_enabled(
        &self,
        id: &str,
        enabled: bool,
        now_us: i64,
    ) -> Result<(), StoreError>;
    /// Moves a schedule's cursor forward (never back).
    pub async fn advance_cursor(&self, id: &str, cursor_us: i64) -> Result<(), StoreError>;
    /// Moves several schedules' cursors forward (never back) in one
    /// transaction: the scheduler's start-up, past fires it will not run.
    pub async fn advance_cursors(&self, cursors: &[(String, i64)]) -> Result<(), StoreError>;
    pub async fn delete_schedule(&self, id: &str) -> Result<(), StoreError>;
    pub async fn get_schedule(&self, id: &str) -> Result<Option<ScheduleRow>, StoreError>;
    /// How many schedules there are, when the latest changed, and a sum
    /// that moves with any change: cheap to poll, so nodes sharing a store
    /// notice another node's changes (also from a node whose clock is
    /// behind).
    pub async fn schedule_fingerprint(&self) -> Result<(i64, i64, i64), StoreError>;
    /// Every schedule's id and when it last changed.
    pub async fn schedule_versions(&self) -> Result<Vec<(String, i64)>, StoreError>;
    /// The ids of every stored schedule.
    pub async fn list_schedule_ids(&self) -> Result<Vec<String>, StoreError>;
    /// Every schedule, or a job's schedules, in id order.
    pub async fn list_schedules(
        &self,
        job_id: Option<&str>,
    ) -> Result<Vec<ScheduleRow>, StoreError>;
    /// One page of schedules in id order: every schedule or a job's, with
    /// an id after `after_id` (keyset cursor: the last id of the previous
    /// page), at most `limit` of them.
    pub async fn list_schedules_page(
        &self,
        job_id: Option<&str>,
        after_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ScheduleRow>, StoreError>;
    /// Records fires in one transaction. Returns, per fire, whether it was
    /// new: a fire whose
    /// identity is already stored was handled before (by this node before a
    /// restart, or by another node) and must not run again.
    ///
    /// A burst of fires costs one statement, not one per fire: the fires go
    /// in with one statement reading every fire from one bound JSON array
    /// and skipping identities already stored, under a savepoint. When it
    /// stores all its rows (the usual case), every fire was new. Otherwise
    /// (another node, or this one before a restart, stored some) that is
    /// rolled back and the same statement runs again returning the
    /// identities it stores, which are the new fires. A fire whose
    /// identity comes twice in one batch is new the first time only.
    ///
    /// Schedules' cursors do not move here: the scheduler moves them with
    /// [`Store::advance_cursors`] once a burst is queued, so that updating
    /// 100,000 schedule rows is not on the way from due to queued. A cursor
    /// left behind by a crash in between is safe: the fires after it are
    /// stored, so the next start's catch-up finds them handled.
    pub async fn record_fires(&self, fires: &[FireRow]) -> Result<Vec<bool>, StoreError>;
    /// Records fires exactly as [`Store::record_fires`] does and, in the
    /// same transaction, queues the execution of each new fire: every
    /// execution whose `id` is the `run_id` of a fire that was new. The
    /// others (their fire was handled before) are not stored. A fire and
    /// its execution are stored together or not at all.
    pub async fn record_fires_with_executions(
        &self,
        fires: &[FireRow],
        executions: &[NewExecution],
    ) -> Result<Vec<bool>, StoreError>;
    /// A schedule's fires, newest first.
    pub async fn list_fires(
        &self,
        schedule_id: &str,
        limit: i64,
    ) -> Result<Vec<FireRow>, StoreError>;
    /// Queues one execution. An id already stored is a
    /// [`StoreError::Conflict`].
    pub async fn insert_execution(&self, e: &NewExecution) -> Result<(), StoreError>;
    /// Queues many executions in one transaction, with one statement over
    /// one JSON array: all of them, or none when one fails (an id already
    /// stored is a [`StoreError::Conflict`] naming the first id of the
    /// batch).
    pub async fn insert_executions(&self, executions: &[NewExecution]) -> Result<(), StoreError>;
    /// Starts a queued execution: `queued → running`, running
    /// `job_version`. `started_at_us` is set only the first time (a
    /// recovered execution keeps its first start). Returns false, changing
    /// nothing, unless it was queued under `epoch` (the epoch the caller
    /// read) and held by this node or by none. The start is a claim: this
    /// node holds it from then on, and its epoch moves to `epoch + 1`, the
    /// one every later write of this run names.
    pub async fn start_execution(
        &self,
        id: &str,
        job_version: i64,
        epoch: i64,
        now_us: i64,
    ) -> Result<bool, StoreError>;
    /// Finishes a running (or still queued) execution with `status`, its
    /// `error` (JSON) and how many step runs it had. Returns false,
    /// changing nothing, when it had finished already (or does not exist)
    /// or its epoch is no longer `epoch` (another node took it over).
    pub async fn finish_execution(
        &self,
        id: &str,
        status: &str,
        error: Option<&str>,
        step_runs: i64,
        epoch: i64,
        now_us: i64,
    ) -> Result<bool, StoreError>;
    /// Records an attempt starting, in one transaction: attempt 1 creates
    /// the step run, a later attempt moves its count on; the attempt is
    /// stored as running, and the execution's step-run count becomes at
    /// least `seq`. Returns false, writing nothing, unless the execution
    /// is running. An attempt stored already (so also attempt 1 of a step
    /// run stored already) is a [`StoreError::Conflict`]; a later attempt
    /// of a step run never started is a [`StoreError::NotFound`].
    pub async fn start_attempt(&self, a: &AttemptStart) -> Result<bool, StoreError>;
    /// Records a running attempt's end; when `step_done`, its step run
    /// ends with the same status, output, exports and error, in the same
    /// transaction. Returns false, writing nothing, when that attempt is
    /// not running (it ended already, was interrupted, or does not exist).
    pub async fn finish_attempt(&self, a: &AttemptFinish) -> Result<bool, StoreError>;
    /// Waits until every execution write handed to the group-commit writer
    /// before this call (`insert_execution`, `start_execution`,
    /// `finish_execution`, `start_attempt`, `finish_attempt`, from any
    /// clone of this handle) has been applied, so that reads after it see
    /// them. A caller that stopped waiting for its write (an aborted task)
    /// does not stop the write; this is how whoever cleans up after it
    /// waits for that write to land.
    pub async fn settle_writes(&self) -> Result<(), StoreError>;
    /// One execution with the job version it runs: the one it started with,
    /// or (not started yet) its job's current one; `None` for the job when
    /// that job is gone. One query, for the engine's start.
    pub async fn get_execution_with_job(
        &self,
        id: &str,
    ) -> Result<Option<(ExecutionRow, Option<crate::store::JobVersionRow>)>, StoreError>;
    /// One execution.
    pub async fn get_execution(&self, id: &str) -> Result<Option<ExecutionRow>, StoreError>;
    /// An execution's step runs, in seq order.
    pub async fn list_step_runs(&self, execution_id: &str) -> Result<Vec<StepRunRow>, StoreError>;
    /// An execution's attempts, by step run then attempt.
    pub async fn list_attempts(&self, execution_id: &str) -> Result<Vec<AttemptRow>, StoreError>;
    /// Executions matching `filter`, newest first (by id: UUID v7 ids sort
    /// by time), at most `filter.limit`.
    pub async fn list_executions(
        &self,
        filter: &ExecutionFilter,
    ) -> Result<Vec<ExecutionRow>, StoreError>;
    /// Asks a queued or running execution to cancel (the engine acts on
    /// it). Returns its status, also when it has finished (nothing
    /// changes then); `None` when it does not exist.
    pub async fn request_cancel(&self, id: &str, now_us: i64) -> Result<Option<String>, StoreError>;
    /// Cancels a queued execution: `queued → cancelled`, with `error`
    /// (JSON). Returns false, changing nothing, unless it was queued.
    pub async fn cancel_queued(
        &self,
        id: &str,
        error: &str,
        now_us: i64,
    ) -> Result<bool, StoreError>;
    /// The executions queued or running (recovery, at start-up), by the
    /// time they were queued, then id.
    pub async fn unfinished_executions(&self) -> Result<Vec<ExecutionRow>, StoreError>;
    /// Marks what of an execution was still running when the node stopped
    /// as `interrupted`, in one transaction: its running attempts and step
    /// runs get that status, the end time `now_us` (when recovery found
    /// them) and an `interrupted` error. An interrupted attempt's duration
    /// is unknown (NULL): it ended somewhere in the node's downtime. Returns the (seq, attempt) of
    /// the attempts interrupted, in order.
    /// Nothing changes unless the execution's epoch is `epoch`.
    pub async fn interrupt_running(
        &self,
        execution_id: &str,
        epoch: i64,
        now_us: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError>;
    /// Puts a running execution back in the queue after its node stopped:
    /// `running → queued`, one more recovery. Returns false, changing
    /// nothing, unless it was running under `epoch`.
    pub async fn requeue_execution(
        &self,
        id: &str,
        epoch: i64,
        now_us: i64,
    ) -> Result<bool, StoreError>;
    /// Deletes a job's finished executions (with their step runs and
    /// attempts) beyond its newest `keep_last` finished ones and/or that
    /// finished before `now_us - max_age_us`, in one transaction. Queued
    /// and running executions are never touched, nor counted. Returns how
    /// many executions were deleted.
    pub async fn apply_retention(
        &self,
        job_id: &str,
        keep_last: Option<i64>,
        max_age_us: Option<i64>,
        now_us: i64,
    ) -> Result<u64, StoreError>;
    /// Stores `definition` as the job's current version and returns its
    /// number: version 1 for a new job, the current version when
    /// `definition` is byte for byte the current one, the next version
    /// otherwise. A deleted job comes back (with the same version when the
    /// definition is unchanged), its numbering continued. One transaction.
    pub async fn put_job(&self, id: &str, definition: &str, now_us: i64) -> Result<i64, StoreError>;
    /// A job's current version; `None` when the job does not exist or is
    /// deleted.
    pub async fn get_job(&self, id: &str) -> Result<Option<JobVersionRow>, StoreError>;
    /// One version of a job, also of a deleted job (history).
    pub async fn get_job_version(
        &self,
        id: &str,
        version: i64,
    ) -> Result<Option<JobVersionRow>, StoreError>;
    /// The current versions of live jobs in id order, at most `limit`,
    /// starting after `after_id` (keyset pagination: pass the last id of
    /// the previous page).
    pub async fn list_jobs(
        &self,
        after_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<JobVersionRow>, StoreError>;
    /// Every version of a job, oldest first (empty when it never existed).
    pub async fn list_job_versions(&self, id: &str) -> Result<Vec<JobVersionRow>, StoreError>;
    /// Deletes a job softly: its versions stay, as history. A
    /// [`StoreError::NotFound`] when it does not exist or is deleted
    /// already.
    pub async fn delete_job(&self, id: &str, now_us: i64) -> Result<(), StoreError>;
    /// Appends entries to the chain in one transaction and returns them as
    /// stored. The head row is locked first, so concurrent appenders (also
    /// from other processes) take turns.
    pub async fn append_audit(
        &self,
        entries: &[AuditEntry],
    ) -> Result<Vec<AuditRecord>, StoreError>;
    /// The chain's head: the last record's `seq` and hash (0 and the
    /// genesis hash when empty).
    pub async fn audit_head(&self) -> Result<(i64, String), StoreError>;
    /// Every record, in `seq` order.
    pub async fn audit_all(&self) -> Result<Vec<AuditRecord>, StoreError>;
    /// Records matching the query, oldest first.
    pub async fn audit_query(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;
    /// Per capability, target and decision of one plugin's calls: how many
    /// and the last time (the "used" column of the capabilities view).
    pub async fn audit_usage(&self, plugin: &str) -> Result<Vec<UsageRow>, StoreError>;
    /// Stores a grant and its audit record in one transaction; an id
    /// already stored is a [`StoreError::Conflict`].
    pub async fn insert_grant(
        &self,
        g: &GrantRow,
        audit: &AuditEntry,
    ) -> Result<AuditRecord, StoreError>;
    /// Every stored grant, oldest first.
    pub async fn list_grants(&self) -> Result<Vec<GrantRow>, StoreError>;
    /// Replaces a stored grant's plugin and definition (keeping its id and
    /// creation) and appends the audit record `audit` makes of the old and
    /// the new row, in one transaction; returns the new row and the record.
    pub async fn replace_grant(
        &self,
        id: &str,
        plugin: &str,
        spec: &str,
        audit: impl FnOnce(&GrantRow, &GrantRow) -> AuditEntry,
    ) -> Result<(GrantRow, AuditRecord), StoreError>;
    /// Deletes a stored grant and appends the audit record `audit` makes of
    /// it, in one transaction; returns both.
    pub async fn delete_grant(
        &self,
        id: &str,
        audit: impl FnOnce(&GrantRow) -> AuditEntry,
    ) -> Result<(GrantRow, AuditRecord), StoreError>;
    /// Stores a token and its audit record in one transaction; a name
    /// already taken is a [`StoreError::Conflict`].
    pub async fn insert_token(
        &self,
        t: &TokenRow,
        audit: &AuditEntry,
    ) -> Result<AuditRecord, StoreError>;
    /// The live (not revoked) token with this hash.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError>;
    /// Every token, revoked ones too, oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError>;
    /// Whether any token is live (the first start makes one when none is).
    pub async fn any_live_token(&self) -> Result<bool, StoreError>;
    /// Revokes the live token with this id or name, with its audit record,
    /// in one transaction.
    pub async fn revoke_token(
        &self,
        id_or_name: &str,
        now_us: i64,
        audit: impl FnOnce(&TokenRow) -> AuditEntry,
    ) -> Result<(TokenRow, AuditRecord), StoreError>;
    /// Notes when a token was last used.
    pub async fn touch_token(&self, id: &str, now_us: i64) -> Result<(), StoreError>;
    /// Which of `ids` have a cancel request stored and are still running
    /// (`meridian executions cancel`, or another node's API, asked).
    pub async fn cancel_requested(&self, ids: &[String]) -> Result<Vec<String>, StoreError>;
    /// Closes the pool: waits for connections in use, then checkpoints and
    /// closes the database.
    pub async fn close(&self);
    /// Registers this node (`nodes`) at start: refused with
    /// [`StoreError::Conflict`] while another live process (heartbeat within
    /// its lease, not stopped) uses the same node id — unless that is the
    /// instance named by `replacing` (the caller found it dead). Times are
    /// the database's.
    pub async fn register_node(
        &self,
        row: &NodeRow,
        replacing: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Renews this node's heartbeat, which keeps alive the lease of every
    /// execution it holds, stamped with the database's clock, and stores
    /// `clock_offset_us` (how far the node's clock is behind the
    /// database's, as the node last measured it). Returns the database's
    /// time of the heartbeat; `None` when the node is not registered.
    pub async fn heartbeat(&self, clock_offset_us: Option<i64>) -> Result<Option<i64>, StoreError>;
    /// Renews the lease of every unfinished execution this node id holds,
    /// one row each (for `meridian run`, which is no registered node), to
    /// the database's time plus the lease; returns how many. Rows locked at
    /// the moment are skipped.
    pub async fn renew_leases(&self) -> Result<u64, StoreError>;
    /// Claims for this node at most `limit` unfinished executions that no
    /// live holder keeps — held by none, by a registered node with no
    /// heartbeat within the lease (or stopped), or by an unregistered one
    /// (`meridian run`) whose lease has passed, all on the database's clock
    /// — and, with `own`, those already held by this node id (its previous
    /// process). Each claim moves the execution's epoch on, which fences
    /// out the writes of whoever ran it before. Returns them as they were
    /// before the claim but with the claim's epoch, oldest first. On
    /// PostgreSQL the rows are locked with `FOR UPDATE SKIP LOCKED`, so
    /// nodes claiming at once get disjoint sets.
    pub async fn claim_executions(
        &self,
        own: bool,
        limit: i64,
    ) -> Result<Vec<ExecutionRow>, StoreError>;
    /// Gives up this node's hold on one unfinished execution (its run ended
    /// in an error the engine could not record): any node's cluster loop,
    /// this one's included, claims and recovers it at its next turn.
    /// `false` when this node did not hold it unfinished.
    pub async fn release_execution(&self, id: &str) -> Result<bool, StoreError>;
    /// Marks this node stopped and gives up its leases, so other nodes take
    /// over at once what it leaves unfinished.
    pub async fn stop_node(&self) -> Result<(), StoreError>;
    /// Every node that has registered, with what each holds, by id.
    pub async fn list_nodes(&self) -> Result<Vec<NodeRow>, StoreError>;
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passing_conditions_are_told_from_faults() {
        // PostgreSQL SQLSTATEs.
        for (code, want) in [
            ("53100", Some(Unavailable::DiskFull)),
            ("25006", Some(Unavailable::ReadOnly)),
            ("57P01", Some(Unavailable::Unreachable)),
            ("08006", Some(Unavailable::Unreachable)),
            ("53300", Some(Unavailable::Busy)),
            ("40001", Some(Unavailable::Busy)),
            ("23505", None), // unique violation: the request's fault
            ("42P01", None), // undefined table: ours
        ] {
            assert_eq!(classify_code(code), want, "{code}");
        }
        // SQLite result codes, extended ones by their primary byte.
        for (code, want) in [
            ("13", Some(Unavailable::DiskFull)),
            ("5", Some(Unavailable::Busy)),
            ("517", Some(Unavailable::Busy)), // SQLITE_BUSY_SNAPSHOT
            ("8", Some(Unavailable::ReadOnly)),
            ("778", Some(Unavailable::Unreachable)), // SQLITE_IOERR_WRITE
            ("2067", None),                          // SQLITE_CONSTRAINT_UNIQUE
            ("1", None),
        ] {
            assert_eq!(classify_code(code), want, "{code}");
        }
        let timed_out = StoreError::Database(sqlx::Error::PoolTimedOut);
        assert_eq!(timed_out.unavailable(), Some(Unavailable::Unreachable));
        let missing = StoreError::NotFound {
            what: "job",
            id: "x".into(),
        };
        assert_eq!(missing.unavailable(), None);
    }

    /// One numbering through the three migration directories: a version is
    /// shared, or in both backend directories and nowhere else.
    #[test]
    fn migrations_are_numbered_once() {
        let versions =
            |m: &sqlx::migrate::Migrator| -> Vec<i64> { m.iter().map(|m| m.version).collect() };
        let (shared, sqlite, postgres) = (
            versions(&SHARED),
            versions(&SQLITE_ONLY),
            versions(&POSTGRES_ONLY),
        );
        assert_eq!(sqlite, postgres, "each backend's own migrations pair up");
        for v in &sqlite {
            assert!(
                !shared.contains(v),
                "version {v} is shared and backend-only"
            );
        }
        assert!(!sqlite.is_empty());
    }

    /// A row stored before migration 0008 with a value outside its
    /// column's list stops the migration on SQLite, naming the column
    /// (PostgreSQL's VALIDATE CONSTRAINT does the same there), and the
    /// database keeps its rows.
    #[tokio::test]
    async fn a_stored_value_outside_the_rules_stops_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meridian.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        SHARED.run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO api_tokens (id, name, role, hash, created_at_us, created_by) \
             VALUES ('t1', 'old', 'root', 'h', 0, 'test')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
        let e = Store::open_sqlite(&path).await.unwrap_err();
        assert!(e.to_string().contains("api_tokens_role"), "{e}");
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(kept, 1);
    }

    /// A real SQLite store made read-only underneath: the error a write
    /// gets is classed as the store taking no writes, not as a fault.
    #[tokio::test]
    async fn a_read_only_sqlite_file_is_a_passing_condition() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meridian.db");
        drop(Store::open_sqlite(&path).await.unwrap());
        let url = format!("sqlite://{}?mode=ro", path.display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let e = sqlx::query("CREATE TABLE t (x)")
            .execute(&pool)
            .await
            .unwrap_err();
        assert_eq!(
            StoreError::Database(e).unavailable(),
            Some(Unavailable::ReadOnly)
        );
    }

    fn schedule(id: &str) -> ScheduleRow {
        ScheduleRow {
            id: id.into(),
            job_id: "job".into(),
            cron: "30 2 * * *".into(),
            timezone: "Europe/Berlin".into(),
            enabled: true,
            start_at_us: None,
            end_at_us: None,
            misfire_window_s: 3600,
            misfire_policy: "latest".into(),
            overlap_policy: "skip".into(),
            dst_gap: "shift".into(),
            dst_overlap: "first".into(),
            jitter_s: 0,
            priority: 0,
            cursor_us: None,
            created_at_us: 1,
            updated_at_us: 1,
        }
    }

    fn fire(nominal: &str, offset: i32, at: i64) -> FireRow {
        FireRow {
            schedule_id: "s1".into(),
            nominal_local: nominal.into(),
            utc_offset_s: offset,
            fire_at_us: at,
            origin: "scheduled".into(),
            outcome: "enqueued".into(),
            run_id: None,
            created_at_us: at,
        }
    }

    crate::store_test! {
        /// Any change moves the fingerprint nodes poll, also an update
        /// stamped earlier than the latest (a node whose clock is behind).
        async fn the_schedule_fingerprint_moves_with_every_change(store) {
            let empty = store.schedule_fingerprint().await.unwrap();
            assert_eq!(empty, (0, 0, 0));
            let mut a = schedule("a");
            a.updated_at_us = 5_000;
            store.insert_schedule(&a).await.unwrap();
            store.insert_schedule(&schedule("b")).await.unwrap();
            let two = store.schedule_fingerprint().await.unwrap();
            assert_eq!((two.0, two.1), (2, 5_000));
            store.set_schedule_enabled("b", false, 3_000).await.unwrap();
            let behind = store.schedule_fingerprint().await.unwrap();
            assert_eq!((behind.0, behind.1), (2, 5_000));
            assert_ne!(behind, two);
            store.delete_schedule("b").await.unwrap();
            assert_eq!(store.schedule_fingerprint().await.unwrap().0, 1);
            assert_eq!(
                store.schedule_versions().await.unwrap(),
                [("a".to_string(), 5_000)]
            );
        }
    }

    crate::store_test! {
        async fn schedules_round_trip(store) {
            let s = schedule("s1");
            store.insert_schedule(&s).await.unwrap();
            assert!(matches!(
                store.insert_schedule(&s).await,
                Err(StoreError::Conflict { .. })
            ));
            assert_eq!(store.get_schedule("s1").await.unwrap(), Some(s.clone()));
            store.set_schedule_enabled("s1", false, 5).await.unwrap();
            let got = store.get_schedule("s1").await.unwrap().unwrap();
            assert!(!got.enabled);
            assert_eq!(got.updated_at_us, 5);
            assert!(matches!(
                store.set_schedule_enabled("nope", false, 5).await,
                Err(StoreError::NotFound { .. })
            ));
            assert_eq!(store.list_schedules(Some("job")).await.unwrap().len(), 1);
            assert!(
                store
                    .list_schedules(Some("other"))
                    .await
                    .unwrap()
                    .is_empty()
            );
            store.delete_schedule("s1").await.unwrap();
            assert_eq!(store.get_schedule("s1").await.unwrap(), None);
        }
    }

    crate::store_test! {
        async fn a_fire_identity_is_recorded_once(store) {
            store.insert_schedule(&schedule("s1")).await.unwrap();
            // The repeated 01:30 of a fall-back night: same local time, two offsets.
            let first = fire("2026-11-01T01:30:00", -4 * 3600, 100);
            let second = fire("2026-11-01T01:30:00", -5 * 3600, 200);
            assert_eq!(
                store.record_fires(&[first.clone(), second]).await.unwrap(),
                [true, true]
            );
            assert_eq!(store.record_fires(&[first]).await.unwrap(), [false]);
            // The scheduler moves the cursor, not the record.
            assert_eq!(
                store.get_schedule("s1").await.unwrap().unwrap().cursor_us,
                None
            );
            assert_eq!(store.list_fires("s1", 10).await.unwrap().len(), 2);
        }
    }

    crate::store_test! {
        async fn a_large_batch_tells_new_fires_from_stored_ones(store) {
            let schedules: Vec<_> = (0..3).map(|i| schedule(&format!("s{i}"))).collect();
            store.insert_schedules(&schedules).await.unwrap();
            assert!(matches!(
                store.insert_schedules(&schedules[..1]).await,
                Err(StoreError::Conflict { .. })
            ));
            // Over three schedules.
            let mut fires: Vec<FireRow> = (0..207)
                .map(|i| FireRow {
                    schedule_id: format!("s{}", i % 3),
                    ..fire(&format!("2026-01-01T00:00:{i:04}"), 0, i as i64)
                })
                .collect();
            // Some already stored, near the start and near the end.
            let stored = [3, 205];
            let early: Vec<FireRow> = stored.iter().map(|&i| fires[i].clone()).collect();
            assert_eq!(store.record_fires(&early).await.unwrap(), [true, true]);
            // And one identity twice in the batch: new the first time only.
            fires.push(fires[10].clone());
            let new = store.record_fires(&fires).await.unwrap();
            let expected: Vec<bool> = (0..fires.len())
                .map(|i| !stored.contains(&i) && i != 207)
                .collect();
            assert_eq!(new, expected);
            assert!(store.record_fires(&fires).await.unwrap().iter().all(|n| !n));
            // Recording moves no cursor; advancing them moves each forward only.
            for i in 0..3 {
                let got = store.get_schedule(&format!("s{i}")).await.unwrap().unwrap();
                assert_eq!(got.cursor_us, None);
            }
            let cursors = |c: [i64; 3]| -> Vec<(String, i64)> {
                (0..3).map(|i| (format!("s{i}"), c[i])).collect()
            };
            store.advance_cursors(&cursors([10, 20, 30])).await.unwrap();
            store.advance_cursors(&cursors([5, 25, 30])).await.unwrap();
            for (i, want) in [10, 25, 30].into_iter().enumerate() {
                let got = store.get_schedule(&format!("s{i}")).await.unwrap().unwrap();
                assert_eq!(got.cursor_us, Some(want), "s{i}");
            }
        }
    }

    /// The file store's commits never checkpoint (`wal_autocheckpoint` is
    /// off, to keep a burst's commits short); a task does, every second.
    /// So what is written reaches the database file while the store stays
    /// open: 5,000 schedules (over 800 KiB) in the log, then in the file,
    /// which held only the schema (under 200 KiB) before.
    #[tokio::test]
    async fn the_file_store_checkpoints_its_log_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meridian.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() < 200 << 10);
        let rows: Vec<ScheduleRow> = (0..5000).map(|i| schedule(&format!("s{i}"))).collect();
        store.insert_schedules(&rows).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let len = std::fs::metadata(&path).unwrap().len();
            if len > 600 << 10 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the database file is still {len} bytes after 10 s: no checkpoint"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(store.list_schedule_ids().await.unwrap().len(), 5000);
    }

    #[tokio::test]
    async fn the_file_store_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store").join("meridian.db");
        {
            let store = Store::open_sqlite(&path).await.unwrap();
            store.insert_schedule(&schedule("s1")).await.unwrap();
            store
                .record_fires(&[fire("2026-01-01T00:00:00", 0, 1)])
                .await
                .unwrap();
        }
        let store = Store::open_sqlite(&path).await.unwrap();
        assert!(store.get_schedule("s1").await.unwrap().is_some());
        assert_eq!(
            store
                .record_fires(&[fire("2026-01-01T00:00:00", 0, 1)])
                .await
                .unwrap(),
            [false]
        );
    }
}
