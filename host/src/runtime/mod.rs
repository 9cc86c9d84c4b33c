//! The sandboxed WebAssembly runtime that runs every step.
//!
//! One wasmtime [`Engine`] (component model, pooling allocator, epoch
//! interruption) and one [`Linker`] hold for the life of the host. Each
//! plugin is compiled once (and cached on disk by [`cache`]), described
//! once, and pre-instantiated once ([`PluginPre`]); each step execution gets
//! a fresh [`Store`] with its own budgets: a wall-clock timeout (the epoch
//! ticker makes running wasm yield, so a tokio timeout can cancel it, host
//! calls included), a memory cap, a host-call budget and an output cap.
//!
//! WASI is linked because every wasip2 guest imports it, but with nothing
//! granted: no preopened directories, no environment, no sockets. The only
//! ways out are the capabilities in [`crate::capabilities`].

pub mod cache;
pub mod literal;
mod state;
pub mod view;

/// The contract's bindings and a component's digest, here too for the
/// callers that reach them through the runtime.
pub use crate::contract::{Digest, bindings};
pub use state::StepState;

use crate::capabilities::grants::{AskKind, Asks, Denial, EffectiveGrants, Grants};
use crate::capabilities::http::HttpClient;
use crate::capabilities::log::{Level, LogLine, Source};
use crate::capabilities::{self, CapabilityEvent, StepEnv, StepIdentity};
use crate::secrets::SecretStore;
use bindings::{PluginPre, StepError as WitStepError};
use cache::CompileCache;
use meridian_json_path::JsonPath;
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

/// How often the epoch advances; running wasm yields at each tick, which
/// bounds how late a timeout can be noticed.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// What wasmtime 48 says when a call runs out of host-call fuel (its error
/// type is private); [`Runtime::limit_failure`] reads it.
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";
/// What wasmtime 48 says when a store's component handles are all in use.
const HANDLE_LIMIT_EXCEEDED: &str = "store handle limit exceeded";
/// Host-call fuel beyond the largest thing a step may legitimately pass in
/// one call (a request body, its output): room for the call's other
/// arguments (URL, headers, list overhead).
const HOSTCALL_FUEL_SLACK: usize = 1024 * 1024;

/// Tables one component may define. wasm-component-ld gives a component
/// built for wasm32-wasip2 a few (the program's function table, the
/// adapter's and the indirect-call shims'); each is bounded in elements by
/// the pool, so this only keeps a component from taking many slots.
const MAX_TABLES_PER_COMPONENT: u32 = 8;

/// How long a plugin's `validate` may take.
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Budgets and sizes of the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxLimits {
    /// Wall-clock limit of one step execution when the step names none.
    pub timeout: Duration,
    /// Linear memory one step may use.
    pub memory_bytes: usize,
    /// Capability calls one step execution may make (log lines included).
    pub max_host_calls: u32,
    /// Bytes of output JSON and exported variables one step may return.
    pub max_output_bytes: usize,
    /// Bytes of log lines kept per step execution; lines past it are
    /// dropped (and counted) before they reach any file.
    pub max_log_bytes: usize,
    /// Bytes of one log line; a longer line is cut, with a marker saying
    /// how long it was.
    pub max_log_line_bytes: usize,
    /// Bytes of stdout and of stderr kept per step execution.
    pub max_stdio_bytes: usize,
    /// Host resources one step may hold at once (WASI streams and
    /// pollables, wasi:http fields, requests and bodies, component
    /// handles): each can hold host memory, so their number is bounded.
    pub max_resources: usize,
    /// Bytes of one wasi:http `fields` (headers or trailers) as
    /// wasmtime-wasi-http counts them (names and values plus their
    /// in-memory overhead). With `max_resources` this bounds what headers
    /// a step can make the host hold.
    pub max_http_fields_bytes: usize,
    /// Step executions that can run at once (sizes the instance pool).
    pub max_concurrent: u32,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(300),
            memory_bytes: 256 * 1024 * 1024,
            max_host_calls: 10_000,
            max_output_bytes: 1024 * 1024,
            max_log_bytes: 1024 * 1024,
            max_log_line_bytes: 16 * 1024,
            max_stdio_bytes: 64 * 1024,
            max_resources: 1000,
            max_http_fields_bytes: 64 * 1024,
            max_concurrent: 32,
        }
    }
}

/// Where a plugin came from.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PluginSource {
    /// Compiled into this binary from the workspace's plugins/.
    BuiltIn,
    /// A file in the plugins directory (or given on the command line).
    File { path: PathBuf },
}

/// A component that could not be loaded, and why. The node serves without
/// it: health reports it (degraded), `doctor` fails on it, the plugins API
/// lists it, and a step of its type fails with this reason.
#[derive(Debug, Clone, Serialize)]
pub struct UnloadablePlugin {
    /// The step type it would most likely provide: its described name
    /// when `describe` ran, else the file name without `.wasm`.
    pub step_type: String,
    /// The file's name (`etl.wasm`); where it lives is in `source`.
    pub file: String,
    pub source: PluginSource,
    /// What went wrong, in words an operator can act on.
    pub reason: String,
    /// The setting that would let it load, when one would
    /// (`sandbox.memory_mb`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setting: Option<&'static str>,
}

impl UnloadablePlugin {
    /// The record for a component that failed to load with `error`.
    fn new(source: PluginSource, file: &str, error: &LoadError, limits: &SandboxLimits) -> Self {
        let stem = file.strip_suffix(".wasm").unwrap_or(file);
        // A built-in's file is its crate's: `meridian_plugin_azure_devops`
        // provides `azure-devops`.
        let stem = match source {
            PluginSource::BuiltIn => stem
                .strip_prefix("meridian_plugin_")
                .unwrap_or(stem)
                .replace('_', "-"),
            PluginSource::File { .. } => stem.to_owned(),
        };
        let (step_type, reason, setting) = match error {
            LoadError::Duplicate { name, existing, .. } => (
                name.clone(),
                format!("its plugin name {name:?} is already taken by {existing}"),
                None,
            ),
            LoadError::Io { source, .. } => (stem, format!("cannot read the file: {source}"), None),
            LoadError::Compile { message, .. } | LoadError::Describe { message, .. } => {
                let (reason, setting) = explain_load_failure(message, limits);
                (stem, reason, setting)
            }
        };
        Self {
            step_type,
            file: file.to_owned(),
            source,
            reason,
            setting,
        }
    }

    /// One line: the file, why, and what to change.
    pub fn describe(&self) -> String {
        match self.setting {
            Some(setting) => format!("{}: {} (setting: {setting})", self.file, self.reason),
            None => format!("{}: {}", self.file, self.reason),
        }
    }
}

/// The interface this host calls, as a component names the export.
const STEP_EXPORT: &str = "meridian:step/step@0.1.0";

/// A load failure in an operator's words: a memory floor above
/// `sandbox.memory_mb`, or no component at all; the text as it is
/// otherwise (a component built for another version of the step contract
/// is told in [`Runtime::prepare`]).
fn explain_load_failure(message: &str, limits: &SandboxLimits) -> (String, Option<&'static str>) {
    let lower = message.to_ascii_lowercase();
    if lower.contains("memory") && lower.contains("minimum") && lower.contains("exceeds") {
        let cap_mib = limits.memory_bytes.div_ceil(1 << 20);
        return (
            format!(
                "the component needs more linear memory at start than a step may use \
                 ({cap_mib} MiB): raise sandbox.memory_mb"
            ),
            Some("sandbox.memory_mb"),
        );
    }
    if lower.contains("failed to parse webassembly")
        || lower.contains("magic header")
        || lower.contains("unexpected end-of-file")
    {
        return ("not a WebAssembly component".to_owned(), None);
    }
    (message.to_owned(), None)
}

/// One capability a component asks for, as shown to operators.
#[derive(Debug, Clone, Serialize)]
pub struct CapabilityAsk {
    pub kind: &'static str,
    pub target: String,
    pub reason: String,
}

/// Everything known about a plugin without running a step.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub digest: Digest,
    pub source: PluginSource,
    pub config_schema: Value,
    pub capabilities: Vec<CapabilityAsk>,
    /// Names of the component's imports (interfaces it can call).
    pub imports: Vec<String>,
    /// Names of the component's exports.
    pub exports: Vec<String>,
    pub size_bytes: usize,
}

/// A loaded plugin: described, validated, pre-instantiated, with its grants.
pub struct LoadedPlugin {
    pub info: PluginInfo,
    pre: PluginPre<StepState>,
    /// What it asked for in `describe`.
    asks: Asks,
    /// Replaced when the grants change ([`Runtime::replace_grants`]); a
    /// step keeps the set it started with.
    grants: std::sync::RwLock<Arc<EffectiveGrants>>,
    schema: jsonschema::Validator,
    /// The config fields it runs as code, read from its schema once.
    literals: literal::LiteralFields,
}

impl LoadedPlugin {
    /// The config fields this plugin marks as code (no `${…}` in them).
    pub fn literal_fields(&self) -> &literal::LiteralFields {
        &self.literals
    }

    /// What this plugin may use: what it asked for, intersected with its
    /// grants.
    pub fn grants(&self) -> Arc<EffectiveGrants> {
        match self.grants.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn set_grants(&self, grants: EffectiveGrants) {
        let grants = Arc::new(grants);
        match self.grants.write() {
            Ok(mut g) => *g = grants,
            Err(poisoned) => *poisoned.into_inner() = grants,
        }
    }
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("info", &self.info)
            .finish()
    }
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: not a loadable component: {message}")]
    Compile { origin: String, message: String },
    #[error("{origin}: {message}")]
    Describe { origin: String, message: String },
    #[error("plugin name {name:?} from {origin} is already taken by {existing}")]
    Duplicate {
        name: String,
        origin: String,
        existing: String,
    },
}

/// Why a plugin could not be swapped in or out at run time.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("{0:?} is a built-in plugin; it cannot be replaced or removed")]
    BuiltIn(String),
    #[error("no plugin named {0:?} is loaded")]
    NotFound(String),
}

/// One problem with a step's config, with its JSON path.
pub use crate::model::Issue as ConfigIssue;

/// What a step execution needs besides its plugin.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub job_id: String,
    pub execution_id: String,
    pub step_id: String,
    pub attempt: u32,
    pub timezone: String,
    pub scheduled_time: Option<String>,
    pub config: Value,
    pub variables: Value,
    /// Overrides [`SandboxLimits::timeout`].
    pub timeout: Option<Duration>,
    /// The job's capability scope, narrowing the plugin's grants.
    pub scope: Option<Arc<crate::capabilities::grants::scope::Scope>>,
}

/// A step's successful result.
#[derive(Debug, Clone, Serialize)]
pub struct StepSuccess {
    pub output: Value,
    pub exports: BTreeMap<String, Value>,
}

/// Why a step execution did not succeed: the step's own errors and the
/// sandbox's verdicts, every message masked.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepFailure {
    #[error("invalid config: {}", format_issues(issues))]
    InvalidConfig { issues: Vec<ConfigIssue> },
    #[error("{denial}")]
    Denied { denial: Denial },
    #[error("{message}")]
    Failed { message: String },
    #[error("{message} (retryable)")]
    Retryable { message: String },
    #[error("step timed out: {message}")]
    TimedOut { message: String },
    #[error("step exceeded its time limit of {limit_ms} ms and was stopped")]
    Timeout { limit_ms: u64 },
    #[error("step exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { limit_bytes: usize },
    #[error("step used up its budget of {max_calls} host calls")]
    HostCallBudget { max_calls: u32 },
    /// `bytes` is the size of the output and exports, or `None` when the
    /// value the step returned was too large for the host to read at all
    /// (over the host-call fuel, far over the limit).
    #[error("step output {} exceeds the limit of {limit_bytes} bytes", output_size(.bytes))]
    OutputTooLarge {
        bytes: Option<usize>,
        limit_bytes: usize,
    },
    /// The step held more host resources at once, or passed more data to
    /// the host in one call, than its sandbox allows.
    #[error("step exceeded its limit of {limit} {resource}")]
    ResourceLimit { resource: String, limit: u64 },
    #[error("step crashed: {message}")]
    Crashed { message: String },
    #[error("step returned invalid output: {message}")]
    BadOutput { message: String },
    #[error("step could not start: {message}")]
    Unavailable { message: String },
}

fn output_size(bytes: &Option<usize>) -> String {
    match bytes {
        Some(n) => format!("of {n} bytes"),
        None => "too large to read".into(),
    }
}

fn format_issues(issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(|i| {
            if i.path.is_empty() {
                i.message.clone()
            } else {
                format!("{}: {}", i.path, i.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl StepFailure {
    /// Every failure kind, as [`StepFailure::kind`] names it; a job's retry
    /// policy may list any of them in `never_retry`.
    pub const KINDS: &'static [&'static str] = crate::model::FAILURE_KINDS;

    /// The failure's kind: the `kind` field of its JSON form.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidConfig { .. } => "invalid_config",
            Self::Denied { .. } => "denied",
            Self::Failed { .. } => "failed",
            Self::Retryable { .. } => "retryable",
            Self::TimedOut { .. } => "timed_out",
            Self::Timeout { .. } => "timeout",
            Self::MemoryLimit { .. } => "memory_limit",
            Self::HostCallBudget { .. } => "host_call_budget",
            Self::OutputTooLarge { .. } => "output_too_large",
            Self::ResourceLimit { .. } => "resource_limit",
            Self::Crashed { .. } => "crashed",
            Self::BadOutput { .. } => "bad_output",
            Self::Unavailable { .. } => "unavailable",
        }
    }

    /// Whether a retry could help (invalid config and denials never do).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Failed { .. }
                | Self::Retryable { .. }
                | Self::TimedOut { .. }
                | Self::Timeout { .. }
                | Self::Unavailable { .. }
        )
    }
}

/// Everything one step execution produced.
#[derive(Debug, Clone, Serialize)]
pub struct StepRun {
    pub result: Result<StepSuccess, StepFailure>,
    pub logs: Vec<LogLine>,
    pub logs_dropped: u64,
    pub events: Vec<CapabilityEvent>,
    pub host_calls: u32,
    #[serde(serialize_with = "duration_ms")]
    pub duration: Duration,
}

fn duration_ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// Options for building a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Compiled components are cached here.
    pub cache_dir: PathBuf,
    pub limits: SandboxLimits,
    pub http: capabilities::http::HttpLimits,
    /// SQL connections and limits (`[sql]`).
    pub sql: capabilities::sql::SqlSettings,
}

/// The engine, the linker, the loaded plugins and what their capabilities
/// need.
pub struct Runtime {
    engine: Engine,
    linker: Linker<StepState>,
    cache: CompileCache,
    limits: SandboxLimits,
    /// Bytes a step may pass to the host in one call, and the most the host
    /// reads of a value a step returns: the largest of an HTTP request body
    /// and the output cap, plus [`HOSTCALL_FUEL_SLACK`] (wasmtime's default,
    /// 128 MiB, let one call make the host allocate that much).
    hostcall_fuel: usize,
    secrets: Arc<SecretStore>,
    /// The grants in force and the entries they were parsed from.
    grants: std::sync::RwLock<(Grants, Vec<crate::capabilities::grants::stored::GrantEntry>)>,
    http: Arc<HttpClient>,
    sql: Arc<capabilities::sql::SqlPools>,
    /// The loaded plugins by name. Swapped at run time (upload, removal
    /// through the API): readers clone an `Arc` out and never hold the lock
    /// across an `.await`, so a running step keeps the plugin it started
    /// with. Lock order: `grants`, then `plugins`.
    plugins: std::sync::RwLock<BTreeMap<String, Arc<LoadedPlugin>>>,
    /// Components found at start that could not be loaded, in the order
    /// tried; an entry goes when a plugin of its step type is installed.
    unloadable: std::sync::RwLock<Vec<UnloadablePlugin>>,
    /// Where capability calls are recorded (set by `serve` and `run`).
    audit: Option<crate::audit::AuditLog>,
    _ticker: EpochTicker,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("plugins", &read(&self.plugins).keys().collect::<Vec<_>>())
            .field("limits", &self.limits)
            .finish()
    }
}

/// The engine configuration; part of the compiled-artefact cache key.
pub fn engine_config(limits: &SandboxLimits) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    let n = limits.max_concurrent.max(1);
    let mut pool = PoolingAllocationConfig::default();
    // Headroom for `describe`/`validate` calls beside running steps.
    let instances = n * 2 + 4;
    pool.total_component_instances(instances);
    pool.total_core_instances(instances * 8);
    pool.total_memories(instances * 2);
    pool.total_tables(instances * 8);
    pool.total_stacks(instances);
    pool.max_memory_size(limits.memory_bytes.max(1 << 20));
    // The memory cap holds per linear memory: a component with several
    // would get it several times. One is all a plugin built for
    // wasm32-wasip2 has; a component with more is refused at load.
    pool.max_memories_per_component(1);
    pool.max_tables_per_component(MAX_TABLES_PER_COMPONENT);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // Telling a host call that ran out of fuel from the lift of a return
    // value relies on the backtrace a trap through wasm carries
    // (`Runtime::limit_failure`); on by default, stated here because of it.
    config.wasm_backtrace_max_frames(std::num::NonZeroUsize::new(20));
    config
}

impl Runtime {
    pub fn new(
        options: RuntimeOptions,
        secrets: SecretStore,
        grants: Grants,
    ) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(&options.limits))?;
        let mut linker = Linker::<StepState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        capabilities::add_types_to_linker(&mut linker)?;
        capabilities::log::add_to_linker(&mut linker, StepState::log_cap)?;
        capabilities::secrets::add_to_linker(&mut linker, StepState::secrets_cap)?;
        capabilities::http::add_to_linker(&mut linker, StepState::http_cap)?;
        capabilities::sql::add_to_linker(&mut linker, StepState::sql_cap)?;
        capabilities::process::add_to_linker(&mut linker, StepState::process_cap)?;
        let cache = CompileCache::new(&options.cache_dir, &engine);
        let hostcall_fuel = options
            .http
            .max_request_bytes
            .max(options.limits.max_output_bytes)
            .saturating_add(HOSTCALL_FUEL_SLACK);
        Ok(Self {
            hostcall_fuel,
            _ticker: EpochTicker::start(&engine),
            http: Arc::new(HttpClient::new(options.http)?),
            engine,
            linker,
            cache,
            limits: options.limits,
            sql: {
                let secrets = Arc::new(secrets.clone());
                Arc::new(capabilities::sql::SqlPools::new(options.sql, secrets))
            },
            secrets: Arc::new(secrets),
            grants: std::sync::RwLock::new((grants, Vec::new())),
            plugins: std::sync::RwLock::new(BTreeMap::new()),
            unloadable: std::sync::RwLock::new(Vec::new()),
            audit: None,
        })
    }

    /// Replaces the grants in force (the config's plus the stored ones) and
    /// recomputes every loaded plugin's effective grants; steps that start
    /// after this see the new set. Refused, changing nothing, when an entry
    /// does not parse.
    pub fn replace_grants(
        &self,
        entries: Vec<crate::capabilities::grants::stored::GrantEntry>,
    ) -> Result<(), Vec<crate::capabilities::grants::GrantError>> {
        let grants = crate::capabilities::grants::stored::combine(&entries)?;
        // Held while the plugins' sets are recomputed, so a plugin installed
        // meanwhile ([`Runtime::install`]) gets its set from these grants or
        // from the next ones, never from a set already replaced.
        let mut in_force = write(&self.grants);
        for p in self.plugins() {
            p.set_grants(grants.effective(&p.info.name, &p.info.digest, &p.asks));
        }
        *in_force = (grants, entries);
        Ok(())
    }

    /// Puts the config's grants plus the stored ones in force.
    pub async fn apply_grants(
        &self,
        config: &[crate::capabilities::grants::GrantSpec],
        store: &crate::store::Store,
    ) -> anyhow::Result<()> {
        let entries = crate::capabilities::grants::stored::in_force(config, store).await?;
        self.replace_grants(entries)
            .map_err(|errors| anyhow::anyhow!("invalid grants: {errors:?}"))
    }

    /// The grant entries in force, as given to [`Runtime::replace_grants`].
    pub fn grant_entries(&self) -> Vec<crate::capabilities::grants::stored::GrantEntry> {
        read(&self.grants).1.clone()
    }

    /// Records every capability call of every step from now on.
    pub fn set_audit(&mut self, audit: crate::audit::AuditLog) {
        self.audit = Some(audit);
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    /// Closes the pools of the SQL connections that steps used, once no
    /// step runs any more (at shutdown): each database sees its sessions
    /// end instead of idling until the process exits. A step that starts
    /// afterwards opens a new pool.
    pub async fn close(&self) {
        self.sql.close().await;
    }

    pub fn secrets(&self) -> &SecretStore {
        &self.secrets
    }

    /// The SQL connections' pools (`meridian doctor` asks them about
    /// their logins).
    pub fn sql(&self) -> &capabilities::sql::SqlPools {
        &self.sql
    }

    /// The plugin of this name in force now (a later swap does not change
    /// the one returned).
    pub fn plugin(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        read(&self.plugins).get(name).cloned()
    }

    /// The plugins in force now, in name order.
    pub fn plugins(&self) -> Vec<Arc<LoadedPlugin>> {
        read(&self.plugins).values().cloned().collect()
    }

    /// Puts a prepared plugin in force under its name, replacing a plugin
    /// of that name that is not built in, and returns the one replaced.
    /// Its effective grants come from the grants in force (a grant pinned
    /// to the old binary's digest does not apply to a new one). Steps
    /// already running keep the plugin they started with.
    pub fn install(&self, plugin: LoadedPlugin) -> Result<Option<Arc<LoadedPlugin>>, SwapError> {
        let in_force = read(&self.grants);
        plugin.set_grants(in_force.0.effective(
            &plugin.info.name,
            &plugin.info.digest,
            &plugin.asks,
        ));
        let mut plugins = write(&self.plugins);
        let name = plugin.info.name.clone();
        if let Some(existing) = plugins.get(&name)
            && matches!(existing.info.source, PluginSource::BuiltIn)
        {
            return Err(SwapError::BuiltIn(name));
        }
        tracing::info!(plugin = %name, version = %plugin.info.version, digest = %plugin.info.digest, "plugin installed");
        // What could not be loaded for this step type is replaced now.
        write(&self.unloadable).retain(|u| u.step_type != name);
        Ok(plugins.insert(name, Arc::new(plugin)))
    }

    /// Takes a plugin that is not built in out of force; steps already
    /// running keep it, new ones find no such step type.
    pub fn remove(&self, name: &str) -> Result<Arc<LoadedPlugin>, SwapError> {
        let mut plugins = write(&self.plugins);
        match plugins.get(name) {
            None => return Err(SwapError::NotFound(name.to_string())),
            Some(p) if matches!(p.info.source, PluginSource::BuiltIn) => {
                return Err(SwapError::BuiltIn(name.to_string()));
            }
            Some(_) => {}
        }
        let removed = plugins
            .remove(name)
            .ok_or_else(|| SwapError::NotFound(name.to_string()))?;
        tracing::info!(plugin = %name, digest = %removed.info.digest, "plugin removed");
        Ok(removed)
    }

    /// Loads the plugins built into this binary; one that cannot load (a
    /// `sandbox.memory_mb` below its floor) is recorded as unloadable and
    /// the others load. Returns the names loaded.
    pub async fn load_builtin(&mut self) -> Vec<String> {
        let mut names = Vec::new();
        for (file, bytes) in crate::builtin::PLUGINS {
            let loaded = match self
                .prepare(bytes, PluginSource::BuiltIn, &format!("built-in {file}"))
                .await
            {
                Ok(plugin) => self.register(plugin),
                Err(e) => Err(e),
            };
            match loaded {
                Ok(name) => names.push(name),
                Err(e) => self.unloadable_found(PluginSource::BuiltIn, file, &e),
            }
        }
        names
    }

    /// Loads every `*.wasm` file of a directory, in name order. A file that
    /// cannot load (not a component, built for another version of the step
    /// contract, a name taken, a memory floor above the cap) is recorded as
    /// unloadable ([`Runtime::unloadable`]) and the others load: one bad
    /// file does not stop a node. Returns the names loaded; fails only when
    /// the directory cannot be read.
    pub async fn load_dir(&mut self, dir: &Path) -> Result<Vec<String>, LoadError> {
        let io = |source| LoadError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
            .collect();
        files.sort();
        let mut names = Vec::new();
        for path in files {
            match self.load_file(&path).await {
                Ok(name) => names.push(name),
                Err(e) => {
                    let file = path
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    self.unloadable_found(PluginSource::File { path }, &file, &e);
                }
            }
        }
        Ok(names)
    }

    fn unloadable_found(&mut self, source: PluginSource, file: &str, error: &LoadError) {
        let entry = UnloadablePlugin::new(source, file, error, &self.limits);
        tracing::error!(
            file = %entry.file,
            step_type = %entry.step_type,
            reason = %entry.reason,
            setting = entry.setting.unwrap_or(""),
            "plugin could not be loaded; the node serves without it and its steps fail"
        );
        let list = match self.unloadable.get_mut() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        list.push(entry);
    }

    /// The components that could not be loaded, in the order tried.
    pub fn unloadable(&self) -> Vec<UnloadablePlugin> {
        read(&self.unloadable).clone()
    }

    /// Why a step type is missing when a component that would provide it
    /// could not be loaded.
    pub fn unloadable_step_type(&self, step_type: &str) -> Option<UnloadablePlugin> {
        read(&self.unloadable)
            .iter()
            .find(|u| u.step_type == step_type)
            .cloned()
    }

    /// Loads one component file and registers it under its described name.
    pub async fn load_file(&mut self, path: &Path) -> Result<String, LoadError> {
        let plugin = self.prepare_file(path).await?;
        self.register(plugin)
    }

    /// Compiles and describes a component file without registering it.
    pub async fn prepare_file(&self, path: &Path) -> Result<LoadedPlugin, LoadError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| LoadError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        self.prepare(
            &bytes,
            PluginSource::File {
                path: path.to_path_buf(),
            },
            &path.display().to_string(),
        )
        .await
    }

    fn register(&mut self, plugin: LoadedPlugin) -> Result<String, LoadError> {
        let name = plugin.info.name.clone();
        let plugins = match self.plugins.get_mut() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(existing) = plugins.get(&name) {
            return Err(LoadError::Duplicate {
                name,
                origin: origin_of(&plugin.info.source),
                existing: origin_of(&existing.info.source),
            });
        }
        tracing::debug!(plugin = %name, version = %plugin.info.version, digest = %plugin.info.digest, source = %origin_of(&plugin.info.source), "plugin loaded");
        plugins.insert(name.clone(), Arc::new(plugin));
        Ok(name)
    }

    /// Compiles (or loads from cache), pre-instantiates and describes a
    /// component.
    pub async fn prepare(
        &self,
        bytes: &[u8],
        source: PluginSource,
        origin: &str,
    ) -> Result<LoadedPlugin, LoadError> {
        let digest = Digest::of(bytes);
        let compile_err = |e: wasmtime::Error| LoadError::Compile {
            origin: origin.to_string(),
            message: format!("{e:#}"),
        };
        let engine = self.engine.clone();
        let cache = self.cache.clone();
        let owned = bytes.to_vec();
        let component =
            tokio::task::spawn_blocking(move || cache.load_or_compile(&engine, &digest, &owned))
                .await
                .map_err(|e| LoadError::Compile {
                    origin: origin.to_string(),
                    message: e.to_string(),
                })?
                .map_err(compile_err)?;
        let (imports, exports) = component_names(&self.engine, &component);
        if !exports.iter().any(|e| e == STEP_EXPORT) {
            let ours = STEP_EXPORT.trim_start_matches("meridian:step/step");
            let message = match exports
                .iter()
                .find_map(|e| e.strip_prefix("meridian:step/step@"))
            {
                Some(theirs) => format!(
                    "built for meridian:step@{theirs}; this host speaks {ours}: rebuild it \
                     with the matching meridian-sdk"
                ),
                None => format!(
                    "not a Meridian step plugin: it does not export {STEP_EXPORT} (exports: {})",
                    if exports.is_empty() {
                        "none".to_owned()
                    } else {
                        exports.join(", ")
                    }
                ),
            };
            return Err(LoadError::Compile {
                origin: origin.to_string(),
                message,
            });
        }
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(compile_err)?;
        let pre = PluginPre::new(instance_pre).map_err(compile_err)?;
        let describe_err = |message: String| LoadError::Describe {
            origin: origin.to_string(),
            message,
        };

        let env = Arc::new(StepEnv::new(
            StepIdentity {
                plugin: origin.to_string(),
                digest: digest.to_string(),
                ..StepIdentity::default()
            },
            Arc::new(EffectiveGrants::none(origin)),
            self.secrets.masker().clone(),
            self.limits.max_host_calls,
        ));
        let mut store = self.new_store(env);
        let descriptor = tokio::time::timeout(Duration::from_secs(10), async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance
                .meridian_step_step()
                .call_describe(&mut store)
                .await
        })
        .await
        .map_err(|_| describe_err("describe did not return within 10 s".into()))?
        .map_err(|e| describe_err(format!("describe failed: {e:#}")))?;

        if !valid_plugin_name(&descriptor.name) {
            return Err(describe_err(format!(
                "plugin name {:?} is invalid: use 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter",
                descriptor.name
            )));
        }
        let config_schema: Value = serde_json::from_str(&descriptor.config_schema)
            .map_err(|e| describe_err(format!("config schema is not JSON: {e}")))?;
        let schema = jsonschema::validator_for(&config_schema)
            .map_err(|e| describe_err(format!("config schema is not a valid JSON Schema: {e}")))?;
        let literals = literal::LiteralFields::from_schema(&config_schema)
            .map_err(|e| describe_err(e.to_string()))?;
        let mut asks = Asks::default();
        let mut capabilities = Vec::new();
        for c in &descriptor.capabilities {
            let kind = match c.kind {
                bindings::CapabilityKind::Log => AskKind::Log,
                bindings::CapabilityKind::Secrets => AskKind::Secrets,
                bindings::CapabilityKind::Sql => AskKind::Sql,
                bindings::CapabilityKind::Process => AskKind::Process,
                bindings::CapabilityKind::Http => AskKind::Http,
            };
            asks.add(kind, &c.target).map_err(describe_err)?;
            capabilities.push(CapabilityAsk {
                kind: kind_name(kind),
                target: c.target.clone(),
                reason: c.reason.clone(),
            });
        }
        let grants = read(&self.grants)
            .0
            .effective(&descriptor.name, &digest, &asks);
        Ok(LoadedPlugin {
            info: PluginInfo {
                name: descriptor.name,
                version: descriptor.version,
                description: descriptor.description,
                digest,
                source,
                config_schema,
                capabilities,
                imports,
                exports,
                size_bytes: bytes.len(),
            },
            pre,
            asks,
            grants: std::sync::RwLock::new(Arc::new(grants)),
            schema,
            literals,
        })
    }

    fn new_store(&self, env: Arc<StepEnv>) -> Store<StepState> {
        let state = StepState::new(
            env,
            self.secrets.clone(),
            self.http.clone(),
            self.sql.clone(),
            &self.limits,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_async_yield_and_update(1);
        store.set_hostcall_fuel(self.hostcall_fuel);
        store.set_max_component_handles(self.limits.max_resources);
        store
    }

    /// Checks a step config against the plugin's JSON Schema and then its
    /// own `validate`; every problem with its JSON path.
    ///
    /// `validate` runs with no capability at all, whatever the plugin was
    /// granted ([`StepEnv::validation`]: every call is refused, the first
    /// one audited), and its answer is not masked: `config` is the caller's
    /// own input, never resolved against `${secrets.*}`, so the answer is
    /// the same whether or not a value in it happens to be a secret, and a
    /// caller cannot use validation to test guesses.
    pub async fn validate_config(&self, plugin: &LoadedPlugin, config: &Value) -> Vec<ConfigIssue> {
        let mut issues: Vec<ConfigIssue> = plugin
            .schema
            .iter_errors(config)
            .map(|e| ConfigIssue {
                path: JsonPath::from_pointer(e.instance_path.as_str(), config).into(),
                message: cap_message(&e.to_string()),
            })
            .collect();
        if !issues.is_empty() {
            return issues;
        }
        let env = StepEnv::validation(
            StepIdentity {
                plugin: plugin.info.name.clone(),
                digest: plugin.info.digest.to_string(),
                ..StepIdentity::default()
            },
            self.limits.max_host_calls,
        )
        .with_audit(self.audit.clone());
        let mut store = self.new_store(Arc::new(env));
        let text = config.to_string();
        let result = tokio::time::timeout(VALIDATE_TIMEOUT, async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            instance
                .meridian_step_step()
                .call_validate(&mut store, &text)
                .await
        })
        .await;
        match result {
            Ok(Ok(found)) => issues.extend(found.into_iter().map(|i| ConfigIssue {
                path: i.path,
                message: cap_message(&i.message),
            })),
            Ok(Err(e)) => issues.push(ConfigIssue {
                path: String::new(),
                message: format!(
                    "the step's validate crashed: {}",
                    cap_message(&format!("{e:#}"))
                ),
            }),
            Err(_) => issues.push(ConfigIssue {
                path: String::new(),
                message: format!(
                    "the step's validate did not return within {} s",
                    VALIDATE_TIMEOUT.as_secs()
                ),
            }),
        }
        issues
    }

    fn env_for(&self, plugin: &LoadedPlugin, inv: &Invocation) -> StepEnv {
        StepEnv::new(
            StepIdentity {
                plugin: plugin.info.name.clone(),
                digest: plugin.info.digest.to_string(),
                job_id: inv.job_id.clone(),
                execution_id: inv.execution_id.clone(),
                step_id: inv.step_id.clone(),
            },
            match &inv.scope {
                Some(scope) => Arc::new(plugin.grants().with_scope(Arc::clone(scope))),
                None => plugin.grants(),
            },
            self.secrets.masker().clone(),
            self.limits.max_host_calls,
        )
        .with_audit(self.audit.clone())
    }

    /// Runs one step execution in a fresh store and reports what happened.
    /// Never panics and never returns early: every failure becomes a
    /// [`StepFailure`].
    pub async fn execute(&self, plugin: &LoadedPlugin, inv: Invocation) -> StepRun {
        let started = Instant::now();
        let env = Arc::new(self.env_for(plugin, &inv));
        let mut store = self.new_store(env.clone());
        let limit = inv.timeout.unwrap_or(self.limits.timeout);
        let context = bindings::StepContext {
            job_id: inv.job_id,
            execution_id: inv.execution_id,
            step_id: inv.step_id,
            attempt: inv.attempt,
            timezone: inv.timezone,
            scheduled_time: inv.scheduled_time,
            config: inv.config.to_string(),
            variables: inv.variables.to_string(),
        };
        let outcome = tokio::time::timeout(limit, async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            instance
                .meridian_step_step()
                .call_execute(&mut store, &context)
                .await
        })
        .await;

        let masker = self.secrets.masker().clone();
        let state = store.into_data();
        let mut log = state.log;
        let (stderr_text, _) = state.stderr.masked(&masker);
        for (source, stream) in [
            (Source::Stdout, &state.stdout),
            (Source::Stderr, &state.stderr),
        ] {
            let (text, truncated) = stream.masked(&masker);
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                log.push(&env, Level::Info, source, line);
            }
            if truncated {
                log.push(&env, Level::Warn, source, "(output truncated)");
            }
        }
        let result = match outcome {
            Err(_) => Err(StepFailure::Timeout {
                limit_ms: limit.as_millis() as u64,
            }),
            Ok(Err(trap)) if state.limits.hit => {
                tracing::debug!(error = %trap, "step stopped at its memory cap");
                Err(StepFailure::MemoryLimit {
                    limit_bytes: state.limits.limit(),
                })
            }
            Ok(Err(_)) if env.ledger.exhausted() => Err(StepFailure::HostCallBudget {
                max_calls: env.ledger.max_calls(),
            }),
            Ok(Err(trap)) => Err(self
                .limit_failure(&trap)
                .unwrap_or_else(|| crash_failure(&trap, &stderr_text, &masker))),
            Ok(Ok(_)) if env.ledger.exhausted() => Err(StepFailure::HostCallBudget {
                max_calls: env.ledger.max_calls(),
            }),
            Ok(Ok(Err(e))) => Err(step_failure(e, &masker)),
            Ok(Ok(Ok(output))) => self.accept_output(output, &masker),
        };
        let (logs, logs_dropped) = log.finish(&env);
        StepRun {
            result,
            logs,
            logs_dropped,
            events: env.ledger.take_events(),
            host_calls: env.ledger.calls(),
            duration: started.elapsed(),
        }
    }

    /// The sandbox limit behind a failed call, if one was: the return
    /// value too large to read (over the host-call fuel: far over the
    /// output cap, so `output_too_large`), data passed to one host call over
    /// the fuel, a wasi:http `fields` over its size limit (wasi:http 0.2 has
    /// no error code for it: wasmtime traps), or the step's resource table
    /// or handles full.
    ///
    /// wasmtime reports running out of host-call fuel with one private
    /// error type whether it was lifting the arguments of a call the guest
    /// made or the value the guest's export returned; the two differ in
    /// where it happened. A host call fails inside wasm, so the error
    /// unwinds through the guest's frames and carries a [`WasmBacktrace`]
    /// (wasm backtraces are on: [`engine_config`]); lifting the return
    /// value happens after the guest's code has returned, with no wasm
    /// frame left, so its error carries none.
    ///
    /// [`WasmBacktrace`]: wasmtime::WasmBacktrace
    fn limit_failure(&self, error: &wasmtime::Error) -> Option<StepFailure> {
        let text = format!("{error:#}");
        if text.contains(HOSTCALL_FUEL_EXHAUSTED) {
            if error.downcast_ref::<wasmtime::WasmBacktrace>().is_some() {
                return Some(StepFailure::ResourceLimit {
                    resource: "bytes passed to the host in one call".into(),
                    limit: self.hostcall_fuel as u64,
                });
            }
            return Some(StepFailure::OutputTooLarge {
                bytes: None,
                limit_bytes: self.limits.max_output_bytes,
            });
        }
        if let Some(wasmtime_wasi_http::FieldMapError::TotalSizeTooBig) =
            error.downcast_ref::<wasmtime_wasi_http::FieldMapError>()
        {
            return Some(StepFailure::ResourceLimit {
                resource: "bytes of wasi:http headers (one fields resource)".into(),
                limit: self.limits.max_http_fields_bytes as u64,
            });
        }
        let table_full = matches!(
            error.downcast_ref::<wasmtime::component::ResourceTableError>(),
            Some(wasmtime::component::ResourceTableError::Full)
        );
        if table_full || text.contains(HANDLE_LIMIT_EXCEEDED) {
            return Some(StepFailure::ResourceLimit {
                resource: "resources (streams, wasi:http fields, requests, handles) held at once"
                    .into(),
                limit: self.limits.max_resources as u64,
            });
        }
        None
    }

    fn accept_output(
        &self,
        output: bindings::StepOutput,
        masker: &crate::secrets::Masker,
    ) -> Result<StepSuccess, StepFailure> {
        let bytes = output.output.len()
            + output
                .exports
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        if bytes > self.limits.max_output_bytes {
            return Err(StepFailure::OutputTooLarge {
                bytes: Some(bytes),
                limit_bytes: self.limits.max_output_bytes,
            });
        }
        let parse = |what: &str, text: &str| {
            serde_json::from_str::<Value>(text).map_err(|e| StepFailure::BadOutput {
                message: format!("{what} is not JSON: {e}"),
            })
        };
        let mut value = if output.output.trim().is_empty() {
            Value::Null
        } else {
            parse("output", &output.output)?
        };
        masker.mask_json(&mut value);
        let mut exports = BTreeMap::new();
        for (name, text) in output.exports {
            // A name is the step's to choose, so it can hold a secret too.
            let name = masker.mask(&name).into_owned();
            let mut v = parse(&format!("exported variable {name:?}"), &text)?;
            masker.mask_json(&mut v);
            exports.insert(name, v);
        }
        Ok(StepSuccess {
            output: value,
            exports,
        })
    }
}

fn step_failure(e: WitStepError, masker: &crate::secrets::Masker) -> StepFailure {
    let m = |s: &str| cap_message(&masker.mask(s));
    match e {
        WitStepError::InvalidConfig(issues) => StepFailure::InvalidConfig {
            issues: issues
                .into_iter()
                .map(|i| ConfigIssue {
                    path: i.path,
                    message: m(&i.message),
                })
                .collect(),
        },
        WitStepError::Denied(d) => StepFailure::Denied {
            denial: Denial {
                capability: d.capability,
                target: m(&d.target),
                reason: m(&d.reason),
                grant_hint: m(&d.grant_hint),
            },
        },
        WitStepError::Failed(s) => StepFailure::Failed { message: m(&s) },
        WitStepError::Retryable(s) => StepFailure::Retryable { message: m(&s) },
        WitStepError::TimedOut(s) => StepFailure::TimedOut { message: m(&s) },
    }
}

/// A readable message for a trap: the trap itself, plus a Rust panic's
/// message and location when the guest printed one.
fn crash_failure(
    trap: &wasmtime::Error,
    stderr: &str,
    masker: &crate::secrets::Masker,
) -> StepFailure {
    let what = match trap.downcast_ref::<wasmtime::Trap>() {
        Some(t) => format!("wasm trap: {t}"),
        None => format!("{trap}"),
    };
    let message = match stderr.find("panicked at ") {
        Some(at) => {
            let panic = stderr[at..]
                .lines()
                .take_while(|l| !l.starts_with("note: "))
                .collect::<Vec<_>>()
                .join(" ");
            format!("{} ({what})", panic.trim())
        }
        None => what,
    };
    StepFailure::Crashed {
        message: cap_message(&masker.mask(&message)),
    }
}

/// Keeps error messages to a readable size.
fn cap_message(s: &str) -> String {
    const MAX: usize = 4096;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &s[..end], s.len())
}

/// A read guard, also of a lock a panicking writer poisoned (every write
/// here replaces a whole value, so what is inside is always consistent).
fn read<T>(lock: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A write guard, as [`read`].
fn write<T>(lock: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn kind_name(kind: AskKind) -> &'static str {
    match kind {
        AskKind::Log => "log",
        AskKind::Secrets => "secrets",
        AskKind::Sql => "sql",
        AskKind::Process => "process",
        AskKind::Http => "http",
    }
}

fn origin_of(source: &PluginSource) -> String {
    match source {
        PluginSource::BuiltIn => "the built-in plugins".into(),
        PluginSource::File { path } => path.display().to_string(),
    }
}

/// Plugin names appear in paths, URLs and grants: keep them plain.
pub fn valid_plugin_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn component_names(engine: &Engine, component: &Component) -> (Vec<String>, Vec<String>) {
    let ty = component.component_type();
    let imports = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let exports = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    (imports, exports)
}

/// Advances the engine's epoch on a dedicated thread for as long as the
/// runtime lives.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("meridian-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the epoch ticker: step timeouts will not interrupt running wasm");
        }
        Self { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_are_plain() {
        assert!(valid_plugin_name("http"));
        assert!(valid_plugin_name("azure-devops_2"));
        assert!(!valid_plugin_name("../etc"));
        assert!(!valid_plugin_name("Http"));
        assert!(!valid_plugin_name(""));
    }
}
