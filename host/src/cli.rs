//! The `meridian` command line: parsed by clap, printed to a writer so
//! tests drive it in-process exactly as a user would.

use crate::config::{Config, Overrides};
use crate::engine::service::Executions;
use crate::engine::{Engine, ExecutionReport, ExecutionStatus, SystemTimer};
use crate::runtime::{PluginSource, Runtime};
use crate::{api, model};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(
    name = "meridian",
    version,
    about = "A timezone-aware job scheduler with sandboxed WebAssembly steps"
)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// Config file (TOML).
    #[arg(long, global = true, env = "MERIDIAN_CONFIG")]
    config: Option<PathBuf>,
    /// Store, compiled-plugin cache and logs [default: ./meridian-data].
    #[arg(long, global = true, env = "MERIDIAN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Directory of extra plugin components (*.wasm).
    #[arg(long, global = true, env = "MERIDIAN_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the REST API.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080]. An address that
        /// is not loopback needs TLS (--tls-cert, --tls-key) or
        /// --insecure-http.
        #[arg(long, env = "MERIDIAN_LISTEN")]
        listen: Option<String>,
        /// The TLS certificate chain (PEM); reloaded when the file changes.
        #[arg(long, value_name = "PEM", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The TLS private key (PEM) of --tls-cert.
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Serve plain HTTP on an address that is not loopback: tokens and
        /// everything else then cross the network unencrypted.
        #[arg(long)]
        insecure_http: bool,
    },
    /// Run a job once, here and now, and print each step's result. The job
    /// is stored (a new version if it changed) and the execution recorded in
    /// the store like any other; Ctrl-C cancels it.
    Run {
        /// Job definition (JSON).
        job: PathBuf,
        /// A job parameter, NAME=VALUE; VALUE is read as JSON when it parses
        /// (`n=3` is a number), else as a string. Repeatable.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Print the execution as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Inspect and cancel executions in the store.
    #[command(subcommand)]
    Executions(ExecutionsCommand),
    /// Check a job definition and print every problem with its JSON path.
    Validate { job: PathBuf },
    /// Inspect and list plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Work with schedules.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Read and verify the audit trail of capability calls and grant changes.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Grants made at run time, beside the config file's (applied by a
    /// serving node within seconds).
    #[command(subcommand)]
    Grants(GrantsCommand),
    /// API tokens: each has a name and one role (viewer, operator, auditor,
    /// admin); only a hash is stored.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Check the node: config, data dir, store, audit chain, plugins and
    /// their grants, secrets, log directories, disk space. One verdict per
    /// item (ok, info, warn, fail); exit code 1 when any item fails.
    Doctor {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a token and print it (the only time it is shown).
    Create {
        /// viewer, operator, auditor or admin.
        #[arg(long)]
        role: String,
        /// A unique name (A-Z a-z 0-9 . _ -) [default: <role>-<random>].
        #[arg(long)]
        name: Option<String>,
    },
    /// Every token with its role, creator and last use (never the token).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id or name.
    Revoke { token: String },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain (names the first record that was edited,
    /// removed or reordered); compare the store's records with their
    /// mirrored copies in the audit log files (`<log root>/audit`, `.log`
    /// and `.gz`: names the first record that differs — a trail rewritten
    /// with every hash recomputed — or is gone); and check the signed
    /// checkpoints of the chain's head found there and in a witness's
    /// export. Exit code 1 when any of it fails, or when the mirror or the
    /// anchor is missing, behind, or holds files that cannot be read.
    Verify {
        #[arg(long)]
        json: bool,
        /// A directory of mirrored audit log files to compare with instead
        /// of this node's (another node's, or a copy shipped elsewhere).
        /// Repeatable: the files of every node of a cluster together.
        #[arg(long = "mirror", value_name = "DIR", conflicts_with = "no_mirror")]
        mirrors: Vec<PathBuf>,
        /// Check the chain only: no mirror, no anchor (says so).
        #[arg(long)]
        no_mirror: bool,
        /// A public key (64 hex characters) whose checkpoints count, as
        /// `meridian audit key` prints it; repeatable. Replaces `[audit]
        /// trusted_keys` and this node's own key.
        #[arg(long = "trusted-key", value_name = "HEX")]
        trusted_keys: Vec<String>,
        /// Checkpoints exported from the witness (JSON lines, one
        /// checkpoint a line); repeatable.
        #[arg(
            long = "witness-file",
            value_name = "FILE",
            conflicts_with = "no_mirror"
        )]
        witness_files: Vec<PathBuf>,
    },
    /// This node's audit signing key: its public half (what `[audit]
    /// trusted_keys` and `audit verify --trusted-key` take) and its id.
    Key {
        #[arg(long)]
        json: bool,
    },
    /// Records matching every filter given, oldest first.
    Query(Box<AuditQueryArgs>),
}

/// The filters of `meridian audit query`.
#[derive(Debug, Args)]
struct AuditQueryArgs {
    /// capability, grant, token or api.
    #[arg(long)]
    kind: Option<String>,
    #[arg(long)]
    plugin: Option<String>,
    #[arg(long)]
    job: Option<String>,
    #[arg(long)]
    execution: Option<String>,
    /// http, secrets, sql, process or log.
    #[arg(long)]
    capability: Option<String>,
    /// allowed, denied, failed (calls); created, revoked (grants, tokens);
    /// ok, rejected, failed, unauthenticated, forbidden (API requests).
    #[arg(long)]
    decision: Option<String>,
    /// Records at or after this RFC 3339 instant.
    #[arg(long)]
    since: Option<String>,
    /// Records before this RFC 3339 instant.
    #[arg(long)]
    until: Option<String>,
    /// Records after this sequence number (paging).
    #[arg(long)]
    after: Option<i64>,
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum GrantsCommand {
    /// Every grant in force: the config file's and the stored ones.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Store a grant: one `[[grants]]` table as a TOML or JSON file, or as
    /// JSON text with --spec. Prints its id.
    Add {
        /// A file holding the grant (.toml or .json).
        #[arg(long, conflicts_with = "spec", required_unless_present = "spec")]
        file: Option<PathBuf>,
        /// The grant as JSON text.
        #[arg(long)]
        spec: Option<String>,
    },
    /// Delete a stored grant.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
enum ScheduleCommand {
    /// The next fire times of a cron expression in a zone, each flagged when
    /// a DST transition shifted it or repeats its local time.
    Preview {
        /// Cron expression: 5 or 6 fields, or a macro such as @daily.
        #[arg(long)]
        cron: String,
        /// IANA time zone, e.g. Europe/Berlin.
        #[arg(long)]
        tz: String,
        /// How many fires.
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// List fires strictly after this RFC 3339 instant [default: now].
        #[arg(long)]
        from: Option<String>,
        /// Spring-forward rule: shift or skip [default: by the expression's kind].
        #[arg(long)]
        gap: Option<String>,
        /// Fall-back rule: first, last or both [default: by the expression's kind].
        #[arg(long)]
        overlap: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ExecutionsCommand {
    /// List executions, newest first.
    List {
        #[arg(long)]
        job: Option<String>,
        /// queued, running, succeeded, failed, cancelled or timed_out.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// One execution with its step runs and attempts.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel an execution: a queued one at once; a running one is stopped
    /// by the node running it (within half a second) through the store.
    Cancel { id: String },
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// List the loaded step types.
    List {
        #[arg(long)]
        json: bool,
    },
    /// What a plugin asks for, what it is granted and what it used (from
    /// the audit trail).
    Capabilities {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Show a component's name, version, digest, imports, exports,
    /// capabilities asked for and config schema.
    Inspect {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// The whole `meridian` command: logging to stderr, a tokio runtime, the
/// process's arguments, stdout and stderr. (The binary is this one call; the
/// test suite's `meridian-node` binary is the same call.)
pub fn main() -> ExitCode {
    crate::logging::init_stderr();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run_args(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    ))
}

/// Parses the arguments and runs the command, printing to `out` (errors
/// about the job or config go to `err`). Returns the process exit code:
/// 0 success, 1 a failed execution, 2 bad input.
pub async fn run_args<I, T>(
    args: I,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = write!(err, "{e}");
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli, out, err).await {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(
    cli: Cli,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let mut overrides = Overrides {
        data_dir: cli.global.data_dir,
        plugins_dir: cli.global.plugins_dir,
        ..Overrides::default()
    };
    if let Command::Serve {
        listen,
        tls_cert,
        tls_key,
        insecure_http,
    } = &cli.command
    {
        overrides.listen.clone_from(listen);
        overrides.tls_cert.clone_from(tls_cert);
        overrides.tls_key.clone_from(tls_key);
        overrides.insecure_http = *insecure_http;
    }
    let loaded = Config::load(cli.global.config.as_deref(), overrides);
    if let Command::Doctor { json } = cli.command {
        return doctor(loaded, json, out).await;
    }
    let config = loaded?;
    // The log files (crate::logging) of the commands that run jobs: kept for
    // the whole command, flushed before it returns.
    let logs = match &cli.command {
        // Grant and token changes mirror their audit records to audit/.
        Command::Serve { .. } | Command::Run { .. } | Command::Grants(_) | Command::Token(_) => {
            install_logs(&config)?
        }
        _ => None,
    };
    // The commands that append to the audit trail sign a checkpoint of its
    // head when they end (`serve` signs its own as it runs).
    let writes_trail = matches!(
        &cli.command,
        Command::Run { .. }
            | Command::Grants(GrantsCommand::Add { .. } | GrantsCommand::Revoke { .. })
            | Command::Token(TokenCommand::Create { .. } | TokenCommand::Revoke { .. })
    );
    let exit_checkpoint = writes_trail.then(|| {
        (
            config.store.clone(),
            config.audit.clone(),
            config.cluster.node_id.clone(),
        )
    });
    let result = match cli.command {
        Command::Serve { .. } => serve(config, logs.as_ref(), err).await,
        Command::Run { job, params, json } => run_job(config, job, params, json, out, err).await,
        Command::Executions(command) => executions(config, command, out, err).await,
        Command::Validate { job } => validate(config, job, out, err).await,
        Command::Plugins(PluginsCommand::List { json }) => list_plugins(config, json, out).await,
        Command::Schedule(ScheduleCommand::Preview {
            cron,
            tz,
            count,
            from,
            gap,
            overlap,
            json,
        }) => {
            let request = crate::model::schedule::PreviewRequest {
                cron,
                tz,
                count: Some(count),
                from,
                gap: gap
                    .map(|g| serde_json::from_value(serde_json::Value::String(g)))
                    .transpose()
                    .map_err(|_| anyhow::anyhow!("--gap must be shift or skip"))?,
                overlap: overlap
                    .map(|o| serde_json::from_value(serde_json::Value::String(o)))
                    .transpose()
                    .map_err(|_| anyhow::anyhow!("--overlap must be first, last or both"))?,
            };
            preview(&request, json, out, err)
        }
        Command::Plugins(PluginsCommand::Inspect { file, json }) => {
            inspect(config, file, json, out).await
        }
        Command::Plugins(PluginsCommand::Capabilities { name, json }) => {
            plugin_capabilities(config, name, json, out, err).await
        }
        Command::Audit(command) => audit(config, command, out, err).await,
        Command::Grants(command) => grants(config, command, out, err).await,
        Command::Token(command) => tokens(config, command, out, err).await,
        Command::Doctor { json } => doctor(Ok(config), json, out).await,
    };
    if let Some((store, audit, node)) = exit_checkpoint
        && let Err(e) = checkpoint_once(&store, &audit, &node).await
    {
        let _ = writeln!(
            err,
            "warning: no checkpoint of the audit trail signed: {e:#}"
        );
    }
    if let Some(logs) = &logs
        && let Err(e) = logs.flush_async().await
    {
        let _ = writeln!(err, "warning: {e}");
    }
    result
}

/// Signs one checkpoint of the store's head (to the mirror; the witness
/// hears from the serving nodes).
async fn checkpoint_once(
    store: &crate::config::StoreLocation,
    audit: &crate::audit::anchor::AuditSettings,
    node: &str,
) -> anyhow::Result<()> {
    let (signer, _) = crate::audit::anchor::Signer::load_or_create(&audit.signing_key, node)?;
    let store = store.open().await?;
    let checkpointer = crate::audit::anchor::Checkpointer::new(store.clone(), signer, None);
    checkpointer.checkpoint().await?;
    store.close().await;
    Ok(())
}

/// Adds the log files to the subscriber `main` installed; `None` when the
/// command is driven in-process without it (tests), whose subscriber is
/// left alone.
fn install_logs(config: &Config) -> anyhow::Result<Option<crate::logging::LogHandle>> {
    match crate::logging::install(
        &config.logging,
        Arc::clone(config.secrets.masker()),
        &config.data_dir,
    ) {
        Ok(handle) => Ok(Some(handle)),
        Err(crate::logging::LogError::NotInitialised) => Ok(None),
        Err(e) => Err(e).context("cannot set up the log files"),
    }
}

async fn serve(
    config: Config,
    logs: Option<&crate::logging::LogHandle>,
    err: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    // Refused before anything starts: tokens must not cross a network in
    // the clear unless the operator said so.
    if config.api.tls.is_none() && !config.api.insecure_http && !config.listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to serve plain HTTP on {}, which is not a loopback address: API tokens \
             would cross the network unencrypted. Give a certificate (--tls-cert and --tls-key, \
             or [api] tls_cert and tls_key), or say --insecure-http (or [api] insecure_http = \
             true) to serve plain HTTP anyway",
            config.listen
        );
    }
    let tls = match &config.api.tls {
        Some(files) => Some(api::tls::Tls::load(files.clone()).await?),
        None => None,
    };
    let store = open_store(&config).await?;
    register_node(&config, &store).await?;
    // The scheduler and the engine keep the store's time, measured before
    // the first fire (see `ClusterClock`).
    let clock = Arc::new(crate::scheduler::ClusterClock::new());
    crate::engine::measure_clock(&store, &clock).await?;
    let checkpointer = start_checkpoints(&config, &store, err)?;
    let (runtime, audit_log) = crate::build_node_runtime(&config, &store).await?;
    let runtime = Arc::new(runtime);
    let grant_watch = crate::grants::stored::watch(
        Arc::clone(&runtime),
        config.grant_specs.clone(),
        store.clone(),
    );
    let steps = StepRuntime::new()?;
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let engine = Arc::new(
        Engine::new(Arc::clone(&runtime), store.clone(), Arc::clone(&clock) as _)
            .with_step_runtime(steps.handle())
            .with_metrics(Arc::clone(&metrics))
            .with_spool(crate::engine::spool::Spool::new(
                config.data_dir.join("spool"),
            )),
    );
    let (executions, recovered) = Executions::start(
        engine,
        crate::queue::QueueConfig::default(),
        Arc::clone(&clock) as _,
        crate::scheduler::SchedulerConfig {
            shutdown_grace: SHUTDOWN_GRACE,
            audit: Some(audit_log.clone()),
            ..Default::default()
        },
    )
    .await?;
    executions.start_cluster_loop(config.cluster.heartbeat, clock);
    let executions = Arc::new(executions);
    let store_for_stop = store.clone();
    let runtime_for_stop = Arc::clone(&runtime);
    let state = Arc::new(api::AppState {
        runtime,
        store,
        executions: Arc::clone(&executions),
        started: std::time::Instant::now(),
        log_dir: config.logging.root(&config.data_dir),
        data_dir: config.data_dir.clone(),
        held_logs: logs.map(crate::logging::LogHandle::held),
        metrics: Arc::clone(&metrics),
        audit: audit_log.clone(),
        access: api::AuthState::new(config.api.refusal_window),
        uploads: api::PluginUploads::from_config(&config),
        audit_settings: config.audit.clone(),
    });
    if let Some(token) = crate::auth::ensure_first_admin(&state.store).await? {
        writeln!(
            err,
            "created the first admin API token (shown only now; keep it safe):\n  {token}\n\
             make more with `meridian token create --role viewer|operator|auditor|admin`"
        )?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "meridian serving");
    if recovered != crate::engine::service::RecoveryReport::default() {
        writeln!(
            err,
            "recovered executions: {} queued again, {} resumed, {} failed (interrupted), {} cancelled",
            recovered.requeued.len(),
            recovered.resumed.len(),
            recovered.failed.len(),
            recovered.cancelled.len()
        )?;
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    if tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "serving plain HTTP on a non-loopback address (--insecure-http)");
    }
    writeln!(err, "meridian listening on {scheme}://{addr}")?;
    err.flush()?;
    let every = std::time::Duration::from_secs(60);
    let snapshots = crate::metrics::spawn_snapshots(metrics, executions.queues().clone(), every);
    // Log retention: now, then every `logging.cleanup_interval_s`.
    let cleanup = logs.map(crate::logging::LogHandle::spawn_cleanup);
    api::serve_with(listener, Arc::clone(&state), tls, shutdown_signal()).await?;
    grant_watch.abort();
    if let Some(cleanup) = cleanup {
        cleanup.abort();
    }
    snapshots.abort();
    drop(state);
    match Arc::try_unwrap(executions) {
        Ok(executions) => executions.shutdown().await,
        Err(_) => tracing::warn!("executions still referenced at shutdown"),
    }
    // On the step runtime, whose reactor the steps' database sockets use.
    let closed = steps
        .handle()
        .spawn(async move { runtime_for_stop.close().await })
        .await;
    if let Err(e) = closed {
        tracing::warn!("cannot close the steps' SQL pools: {e}");
    }
    audit_log.flush().await;
    // The last checkpoint covers every record this node appended.
    let (checkpointer, ticking) = checkpointer;
    ticking.abort();
    let _ = ticking.await;
    match Arc::try_unwrap(checkpointer) {
        Ok(c) => c.finish(WITNESS_GRACE).await,
        Err(c) => {
            if let Err(e) = c.checkpoint().await {
                tracing::warn!("cannot checkpoint the audit trail's head: {e}");
            }
        }
    }
    // Give up this node's leases: other nodes take over at once what it
    // leaves unfinished (and it claims them back if it restarts first).
    if let Err(e) = store_for_stop.stop_node().await {
        tracing::warn!("cannot record this node's stop: {e}");
    }
    Ok(ExitCode::SUCCESS)
}

/// How long a stopping node waits for the witness to take its last
/// checkpoints.
const WITNESS_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The node's signing key (made on first start, its public half printed
/// once) and the task that checkpoints the trail's head now and every
/// `[audit] checkpoint_interval_s`, to the mirror and the witness.
fn start_checkpoints(
    config: &Config,
    store: &crate::store::Store,
    err: &mut (dyn Write + Send),
) -> anyhow::Result<(
    Arc<crate::audit::anchor::Checkpointer>,
    tokio::task::JoinHandle<()>,
)> {
    use crate::audit::anchor::{Checkpointer, Signer, Witness};
    let path = &config.audit.signing_key;
    let (signer, created) = Signer::load_or_create(path, &config.cluster.node_id)?;
    if created {
        writeln!(
            err,
            "created the audit signing key {} (key id {}); its public key, for [audit] \
             trusted_keys wherever the trail is verified:\n  {}",
            path.display(),
            signer.key_id(),
            signer.public()
        )?;
    }
    let trusted = &config.audit.trusted_keys;
    if !trusted.is_empty() && !trusted.contains(&signer.public()) {
        tracing::warn!(
            key_id = %signer.key_id(),
            "this node's audit signing key is not in [audit] trusted_keys: its checkpoints will not verify"
        );
    }
    let witness = config
        .audit
        .witness
        .clone()
        .map(Witness::start)
        .transpose()
        .context("cannot set up the audit witness client")?;
    let checkpointer = Arc::new(Checkpointer::new(store.clone(), signer, witness));
    let ticking = Arc::clone(&checkpointer).spawn(config.audit.checkpoint_interval);
    Ok((checkpointer, ticking))
}

/// Stops its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `meridian run` beside serving nodes on one store: the execution it runs
/// inline is held under a node id of its own (`<node_id>-run-<pid>`, not a
/// registered node), its lease renewed while the command runs, so no node
/// takes it over — unless the command dies, when a node recovers it.
fn hold_leases(config: &Config, store: &crate::store::Store) -> AbortOnDrop {
    let lease_us = i64::try_from(config.cluster.lease.as_micros()).unwrap_or(i64::MAX);
    store.set_node(crate::store::NodeLease {
        id: Arc::from(format!(
            "{}-run-{}",
            config.cluster.node_id,
            std::process::id()
        )),
        lease_us,
    });
    let (store, every) = (store.clone(), config.cluster.heartbeat);
    AbortOnDrop(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = store.renew_leases().await {
                tracing::warn!("cannot renew the run's lease: {e}");
            }
        }
    }))
}

/// Makes `store` write for this node and registers it (`nodes`). A node id
/// still held by a live process is refused; one whose process is gone (same
/// host, pid no longer running — a crash or kill) is taken over at once.
async fn register_node(config: &Config, store: &crate::store::Store) -> anyhow::Result<()> {
    use crate::store::{NodeLease, NodeRow, StoreError};
    let lease_us = i64::try_from(config.cluster.lease.as_micros()).unwrap_or(i64::MAX);
    store.set_node(NodeLease {
        id: Arc::from(config.cluster.node_id.as_str()),
        lease_us,
    });
    let hostname = crate::config::hostname();
    let mut instance = [0u8; 8];
    getrandom::fill(&mut instance).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let row = NodeRow {
        id: config.cluster.node_id.clone(),
        instance: instance.iter().map(|b| format!("{b:02x}")).collect(),
        hostname: hostname.clone(),
        pid: i64::from(std::process::id()),
        version: env!("CARGO_PKG_VERSION").to_string(),
        listen: config.listen.to_string(),
        started_at_us: 0,
        heartbeat_at_us: 0,
        stopped_at_us: None,
        clock_offset_us: None,
        live: false,
        held: 0,
        running: 0,
    };
    match store.register_node(&row, None).await {
        Ok(()) => Ok(()),
        Err(StoreError::Conflict { .. }) => {
            let other = store
                .list_nodes()
                .await?
                .into_iter()
                .find(|n| n.id == row.id);
            let gone = other.as_ref().is_some_and(|n| {
                n.hostname == hostname
                    && i32::try_from(n.pid).is_ok_and(|pid| {
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err()
                    })
            });
            match other {
                Some(other) if gone => {
                    tracing::warn!(node_id = %row.id, pid = other.pid, "the previous process of this node id is gone; taking its place");
                    store.register_node(&row, Some(&other.instance)).await?;
                    Ok(())
                }
                _ => anyhow::bail!(
                    "node id {:?} is in use by a live node (its heartbeat is within the lease); \
                     give each node its own [cluster] node_id",
                    row.id
                ),
            }
        }
        Err(e) => Err(e.into()),
    }
}

async fn open_store(config: &Config) -> anyhow::Result<crate::store::Store> {
    config
        .store
        .open()
        .await
        .with_context(|| format!("cannot open the store {}", config.store.describe()))
}

/// The OS user running the CLI (from the process's uid, not the
/// environment), recorded as who changed a grant or a token.
fn cli_actor() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => format!("cli:{}", user.name),
        _ => format!("cli:uid{uid}"),
    }
}

fn parse_instant(flag: &str, value: Option<String>) -> anyhow::Result<Option<i64>> {
    value
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(&v)
                .map(|t| t.timestamp_micros())
                .map_err(|e| anyhow::anyhow!("--{flag} {v:?}: not an RFC 3339 instant: {e}"))
        })
        .transpose()
}

async fn audit(
    config: Config,
    command: AuditCommand,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let store = open_store(&config).await?;
    match command {
        AuditCommand::Verify {
            json,
            mirrors,
            no_mirror,
            trusted_keys,
            witness_files,
        } => {
            use crate::audit::anchor;
            let mut given = Vec::new();
            for key in &trusted_keys {
                given.push(
                    key.parse::<anchor::PublicKey>()
                        .map_err(|e| anyhow::anyhow!("--trusted-key: {e}"))?,
                );
            }
            if given.is_empty() {
                given.clone_from(&config.audit.trusted_keys);
            }
            let mut witness = Vec::new();
            for file in &witness_files {
                witness.extend(
                    anchor::read_witness_file(file)
                        .map_err(|e| anyhow::anyhow!("--witness-file: {e}"))?,
                );
            }
            let mirrors = match (no_mirror, mirrors.is_empty()) {
                (true, _) => Vec::new(),
                (false, false) => mirrors,
                (false, true) => vec![
                    config
                        .logging
                        .root(&config.data_dir)
                        .join(crate::logging::Category::Audit.dir_name()),
                ],
            };
            let options = crate::audit::mirror::VerifyOptions {
                mirrors,
                keys: anchor::TrustedKeys::resolve(&given, &config.audit.signing_key),
                witness,
                max_lag: anchor::max_lag(config.audit.checkpoint_interval),
            };
            let report = crate::audit::mirror::verify_all(&store, &options).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                print_verify(&report, &options, out, err)?;
            }
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        AuditCommand::Key { json } => {
            let path = &config.audit.signing_key;
            let signer = crate::audit::anchor::Signer::load(path, &config.cluster.node_id)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{e}\n(the key is made by the first `meridian serve`, or command that \
                         writes the audit trail, on this data dir)"
                    )
                })?;
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({
                        "public_key": signer.public().to_string(),
                        "key_id": signer.key_id(),
                    })
                )?;
            } else {
                writeln!(out, "{}", signer.public())?;
                writeln!(err, "key id {} ({})", signer.key_id(), path.display())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Query(args) => {
            let AuditQueryArgs {
                kind,
                plugin,
                job,
                execution,
                capability,
                decision,
                since,
                until,
                after,
                limit,
                json,
            } = *args;
            let q = crate::audit::AuditQuery {
                kind,
                plugin,
                job_id: job,
                execution_id: execution,
                capability,
                decision,
                since_us: parse_instant("since", since)?,
                until_us: parse_instant("until", until)?,
                after_seq: after,
                limit: limit.clamp(1, 10_000),
            };
            let records = crate::audit::query(&store, &q).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&records)?)?;
                return Ok(ExitCode::SUCCESS);
            }
            for r in &records {
                let e = &r.entry;
                let at = chrono::DateTime::from_timestamp_micros(e.at_us)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_default();
                let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                writeln!(
                    out,
                    "{:>6} {at} {:<10} {:<8} {:<12} {:<8} {} job={} execution={} step={}{}",
                    r.seq,
                    e.kind,
                    e.decision,
                    o(&e.plugin),
                    o(&e.capability),
                    o(&e.target),
                    o(&e.job_id),
                    o(&e.execution_id),
                    o(&e.step_id),
                    e.actor
                        .as_ref()
                        .map(|a| format!(" by={a}"))
                        .unwrap_or_default()
                )?;
            }
            if records.is_empty() {
                writeln!(err, "no audit records match")?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `audit verify`'s text: a line each for the chain, the mirror and the
/// anchor on stdout, every failure on stderr.
fn print_verify(
    report: &crate::audit::mirror::FullReport,
    options: &crate::audit::mirror::VerifyOptions,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let chain = &report.chain;
    if let Some(p) = &chain.problem {
        writeln!(
            err,
            "audit trail BROKEN at position {} (record {}): {:?}: {}",
            p.position, p.seq, p.tamper, p.message
        )?;
    } else {
        writeln!(
            out,
            "audit trail intact: {} records, head {}",
            chain.records, chain.head
        )?;
    }
    let dirs = options
        .mirrors
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    match &report.mirror {
        Some(m) if m.ok => writeln!(
            out,
            "mirror {dirs} agrees: {} records in {} files ({} gzipped) match the store ({} not mirrored there)",
            m.mirrored, m.files, m.gzipped, m.not_mirrored
        )?,
        Some(m) => {
            if let Some(p) = &m.problem {
                writeln!(err, "audit trail DIFFERS from its mirror: {}", p.message)?;
            }
            writeln!(
                err,
                "mirror {dirs} FAILED: {} records in {} files ({} gzipped), {} unread",
                m.mirrored,
                m.files,
                m.gzipped,
                m.unread.len()
            )?;
        }
        None => writeln!(out, "mirror and anchor not checked (--no-mirror)")?,
    }
    if let Some(a) = &report.anchor {
        match (&a.problem, &a.newest) {
            (None, Some(n)) => writeln!(
                out,
                "anchor holds: {} checkpoints; the newest, of record {}, signed by node {} at {} with key {}",
                a.checkpoints, n.seq, n.node, n.at, n.key_id
            )?,
            (None, None) => writeln!(out, "anchor holds: the trail is empty")?,
            (Some(p), _) => writeln!(err, "anchor FAILED ({:?}): {}", p.fault, p.message)?,
        }
    }
    for reason in &report.reasons {
        writeln!(err, "not verified: {reason}")?;
    }
    Ok(())
}

async fn grants(
    config: Config,
    command: GrantsCommand,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    use crate::grants::stored;
    let store = open_store(&config).await?;
    match command {
        GrantsCommand::List { json } => {
            let mut entries = stored::from_config(&config.grant_specs);
            entries.extend(stored::load(&store).await?);
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&entries)?)?;
            } else {
                for e in &entries {
                    let by = match &e.origin {
                        stored::GrantOrigin::Config => "config file".to_string(),
                        stored::GrantOrigin::Stored {
                            created_by,
                            created_at,
                        } => format!("{created_by} at {created_at}"),
                    };
                    writeln!(
                        out,
                        "{:<38} {:<16} {by}\n    {}",
                        e.id,
                        e.grant.plugin,
                        serde_json::to_string(&e.grant)?
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        GrantsCommand::Add { file, spec } => {
            let value: serde_json::Value = match (file, spec) {
                (Some(path), _) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    if path.extension().is_some_and(|e| e == "toml") {
                        let table: toml::Table = toml::from_str(&text)
                            .with_context(|| format!("{} is not TOML", path.display()))?;
                        serde_json::to_value(table)?
                    } else {
                        serde_json::from_str(&text)
                            .with_context(|| format!("{} is not JSON", path.display()))?
                    }
                }
                (None, Some(spec)) => serde_json::from_str(&spec).context("--spec is not JSON")?,
                (None, None) => anyhow::bail!("give the grant with --file or --spec"),
            };
            let grant = match stored::from_json(value) {
                Ok(g) => g,
                Err(errors) => {
                    for e in errors {
                        writeln!(err, "grant: {e}")?;
                    }
                    return Ok(ExitCode::from(2));
                }
            };
            match stored::create(&store, grant, &cli_actor()).await {
                Ok((entry, record)) => {
                    writeln!(
                        out,
                        "grant {} stored for plugin {:?} (audit record {})",
                        entry.id, entry.grant.plugin, record.seq
                    )?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(stored::GrantChangeError::Invalid(errors)) => {
                    for e in errors {
                        writeln!(err, "grant: {e}")?;
                    }
                    Ok(ExitCode::from(2))
                }
                Err(e) => Err(e.into()),
            }
        }
        GrantsCommand::Revoke { id } => match stored::revoke(&store, &id, &cli_actor()).await {
            Ok((row, record)) => {
                writeln!(
                    out,
                    "grant {} for plugin {:?} revoked (audit record {})",
                    row.id, row.plugin, record.seq
                )?;
                Ok(ExitCode::SUCCESS)
            }
            Err(stored::GrantChangeError::NotFound(_)) => {
                writeln!(
                    err,
                    "no stored grant {id:?} (grants from the config file are changed by editing it)"
                )?;
                Ok(ExitCode::from(2))
            }
            Err(e) => Err(e.into()),
        },
    }
}

async fn tokens(
    config: Config,
    command: TokenCommand,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    use crate::auth::{self, Role, TokenError};
    let store = open_store(&config).await?;
    match command {
        TokenCommand::Create { role, name } => {
            let Some(role) = Role::parse(&role) else {
                writeln!(
                    err,
                    "--role {role:?}: expected viewer, operator, auditor or admin"
                )?;
                return Ok(ExitCode::from(2));
            };
            match auth::create_token(&store, name.as_deref(), role, &cli_actor()).await {
                Ok((token, row, _)) => {
                    writeln!(
                        err,
                        "token {:?} ({}) created; it is shown only now:",
                        row.name, row.role
                    )?;
                    writeln!(out, "{token}")?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e @ (TokenError::InvalidName(_) | TokenError::NameTaken(_))) => {
                    writeln!(err, "--{e}")?;
                    Ok(ExitCode::from(2))
                }
                Err(e) => Err(e.into()),
            }
        }
        TokenCommand::List { json } => {
            let rows = store.list_tokens().await?;
            let views: Vec<_> = rows.iter().map(auth::view).collect();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&views)?)?;
            } else {
                for v in &views {
                    let s = |k: &str| v[k].as_str().unwrap_or("-").to_string();
                    writeln!(
                        out,
                        "{:<24} {:<9} created {} by {}, last used {}{}",
                        s("name"),
                        s("role"),
                        s("created_at"),
                        s("created_by"),
                        s("last_used_at"),
                        v["revoked_at"]
                            .as_str()
                            .map(|r| format!(", REVOKED {r}"))
                            .unwrap_or_default()
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { token } => {
            match auth::revoke_token(&store, &token, &cli_actor()).await {
                Ok((row, _)) => {
                    writeln!(out, "token {:?} ({}) revoked", row.name, row.role)?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(TokenError::NotFound(_)) => {
                    writeln!(err, "no live token with id or name {token:?}")?;
                    Ok(ExitCode::from(2))
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

async fn plugin_capabilities(
    config: Config,
    name: String,
    json: bool,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let store = open_store(&config).await?;
    let runtime = crate::build_runtime(&config).await?;
    crate::grants::stored::apply(&runtime, &config.grant_specs, &store).await?;
    let Some(view) = crate::audit::view::capabilities(&runtime, &store, &name).await? else {
        writeln!(err, "no plugin {name:?} is loaded")?;
        return Ok(ExitCode::from(2));
    };
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
    } else {
        write!(out, "{}", crate::audit::view::capabilities_text(&view))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `meridian doctor`: the config, the data dir and the store first (a
/// serving node has passed those), then [`crate::doctor::check`] at full
/// depth.
async fn doctor(
    loaded: Result<Config, crate::config::ConfigError>,
    json: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    use crate::doctor::{Depth, Item, Report, Subject, Verdict};
    let mut report = Report::default();
    report
        .checks
        .push(crate::doctor::config_item(loaded.as_ref()));
    if let Ok(config) = &loaded {
        report
            .checks
            .push(crate::doctor::writable_dir("data-dir", &config.data_dir));
        let opened = config.store.open().await;
        report.checks.push(crate::doctor::store_opened(
            opened.as_ref(),
            &config.store.describe(),
        ));
        if let Ok(store) = &opened {
            let runtime = match crate::build_runtime(config).await {
                Ok(runtime) => {
                    match crate::grants::stored::apply(&runtime, &config.grant_specs, store).await {
                        Ok(()) => Ok(runtime),
                        Err(e) => Err(format!("the stored grants cannot be applied: {e:#}")),
                    }
                }
                Err(e) => Err(format!("{e:#}")),
            };
            match runtime {
                Ok(runtime) => {
                    let log_dir = config.logging.root(&config.data_dir);
                    let subject = Subject {
                        runtime: &runtime,
                        store,
                        data_dir: Some(&config.data_dir),
                        log_dir: &log_dir,
                    };
                    report
                        .checks
                        .extend(crate::doctor::check(subject, Depth::Full).await.checks);
                }
                Err(e) => report.checks.push(Item::new("plugins", Verdict::Fail, e)),
            }
        }
    }
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "status": report.worst().as_str(),
                "checks": report.checks,
            }))?
        )?;
    } else {
        write!(out, "{}", report.text())?;
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The tokio runtime that step attempts run on in `serve`, apart from the
/// API's; shut down without blocking when dropped.
struct StepRuntime(Option<tokio::runtime::Runtime>);

impl StepRuntime {
    fn new() -> anyhow::Result<Self> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("meridian-step")
            .enable_all()
            .build()
            .context("cannot start the step runtime")?;
        Ok(StepRuntime(Some(rt)))
    }

    fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(rt) => rt.handle().clone(),
            None => tokio::runtime::Handle::current(),
        }
    }
}

impl Drop for StepRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// How long running executions get to finish at shutdown; the rest are
/// recovered at the next start.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Resolves on Ctrl-C or SIGTERM: stop accepting, finish what is in flight.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

async fn load_job(
    runtime: &Runtime,
    path: &PathBuf,
) -> anyhow::Result<Result<model::Job, Vec<model::Issue>>> {
    let text = tokio::fs::read_to_string(path)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    let job = match model::parse_job(&text) {
        Ok(job) => job,
        Err(issues) => return Ok(Err(issues)),
    };
    let issues = model::validate_job(&job, runtime).await;
    Ok(if issues.is_empty() {
        Ok(job)
    } else {
        Err(issues)
    })
}

fn print_issues(
    err: &mut (dyn Write + Send),
    path: &std::path::Path,
    issues: &[model::Issue],
) -> std::io::Result<()> {
    writeln!(err, "{}: {} problem(s)", path.display(), issues.len())?;
    for i in issues {
        let at = if i.path.is_empty() {
            "(job)"
        } else {
            i.path.as_str()
        };
        writeln!(err, "  {at}: {}", i.message)?;
    }
    Ok(())
}

async fn run_job(
    config: Config,
    path: PathBuf,
    params: Vec<String>,
    json: bool,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let store = open_store(&config).await?;
    let _leases = hold_leases(&config, &store);
    let (runtime, audit_log) = crate::build_node_runtime(&config, &store).await?;
    let runtime = Arc::new(runtime);
    let job = match load_job(&runtime, &path).await? {
        Ok(job) => job,
        Err(issues) => {
            print_issues(err, &path, &issues)?;
            return Ok(ExitCode::from(2));
        }
    };
    let mut supplied = serde_json::Map::new();
    for p in &params {
        let Some((name, value)) = p.split_once('=') else {
            writeln!(err, "--param {p:?}: expected NAME=VALUE")?;
            return Ok(ExitCode::from(2));
        };
        let value = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
        supplied.insert(name.to_owned(), value);
    }
    let params = match model::resolve_params(&job, &supplied) {
        Ok(p) => p,
        Err(issues) => {
            print_issues(err, &path, &issues)?;
            return Ok(ExitCode::from(2));
        }
    };
    let now_us = chrono::Utc::now().timestamp_micros();
    store
        .put_job(&job.id, &serde_json::to_string(&job)?, now_us)
        .await?;
    let id = uuid::Uuid::now_v7().to_string();
    store
        .insert_execution(&crate::store::NewExecution {
            id: id.clone(),
            job_id: job.id.clone(),
            trigger: "cli".into(),
            schedule_id: None,
            fire_nominal_local: None,
            fire_utc_offset_s: None,
            timezone: job.timezone.clone(),
            priority: job.priority,
            params: serde_json::Value::Object(params).to_string(),
            scheduled_at_us: Some(now_us),
            queued_at_us: now_us,
        })
        .await?;
    let engine = Engine::new(Arc::clone(&runtime), store, Arc::new(SystemTimer));
    let cancel = crate::engine::Cancel::new();
    let on_signal = cancel.clone();
    let watcher = tokio::spawn(async move {
        shutdown_signal().await;
        on_signal.cancel();
    });
    let report = engine.run(&id, cancel).await;
    watcher.abort();
    runtime.close().await;
    audit_log.flush().await;
    let report = report?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_report(out, &report)?;
    }
    Ok(match report.status {
        ExecutionStatus::Succeeded => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

fn print_report(out: &mut (dyn Write + Send), report: &ExecutionReport) -> std::io::Result<()> {
    writeln!(
        out,
        "execution {} of job {} (version {})",
        report.execution_id,
        report.job_id,
        report.job_version.unwrap_or(0)
    )?;
    for s in &report.steps {
        for a in &s.attempts {
            let ms = a.run.duration.as_secs_f64() * 1000.0;
            let retry = if a.attempt > 1 {
                format!(" attempt {} after {} ms", a.attempt, a.waited_ms)
            } else {
                String::new()
            };
            match &a.run.result {
                Ok(ok) => {
                    writeln!(
                        out,
                        "  ok      {} ({}){retry} in {ms:.1} ms",
                        s.step_id, s.step_type
                    )?;
                    writeln!(out, "          output: {}", ok.output)?;
                    for (k, v) in &ok.exports {
                        writeln!(out, "          export {k} = {v}")?;
                    }
                }
                Err(e) => writeln!(
                    out,
                    "  {:<7} {} ({}){retry} in {ms:.1} ms: {e}",
                    a.status.as_str().to_uppercase(),
                    s.step_id,
                    s.step_type
                )?,
            }
            for line in &a.run.logs {
                writeln!(
                    out,
                    "          [{:?} {:?}] {}",
                    line.source, line.level, line.message
                )?;
            }
            for ev in &a.run.events {
                writeln!(
                    out,
                    "          {} {} -> {:?}",
                    ev.capability, ev.target, ev.decision
                )?;
            }
        }
    }
    match &report.error {
        Some(e) => writeln!(
            out,
            "status: {} ({})",
            report.status.as_str(),
            e.get("message").and_then(|m| m.as_str()).unwrap_or("")
        ),
        None => writeln!(out, "status: {}", report.status.as_str()),
    }
}

async fn executions(
    config: Config,
    command: ExecutionsCommand,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let store = open_store(&config).await?;
    match command {
        ExecutionsCommand::List {
            job,
            status,
            limit,
            json,
        } => {
            if let Some(s) = &status
                && ExecutionStatus::parse(s).is_none()
            {
                writeln!(
                    err,
                    "--status {s:?}: expected queued, running, succeeded, failed, cancelled or timed_out"
                )?;
                return Ok(ExitCode::from(2));
            }
            let rows = store
                .list_executions(&crate::store::ExecutionFilter {
                    job_id: job,
                    status,
                    limit: limit.clamp(1, 10_000),
                    ..Default::default()
                })
                .await?;
            if json {
                let all: Vec<_> = rows.iter().map(crate::engine::view::summary).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
            } else {
                for r in &rows {
                    let v = crate::engine::view::summary(r);
                    writeln!(
                        out,
                        "{}  {:<10} {:<24} {:<9} queued {}",
                        r.id,
                        r.status,
                        r.job_id,
                        r.trigger,
                        v["queued_at"].as_str().unwrap_or("")
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ExecutionsCommand::Show { id, json } => {
            let Some(v) = crate::engine::view::detail(&store, &id).await? else {
                writeln!(err, "no execution {id:?}")?;
                return Ok(ExitCode::from(2));
            };
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                writeln!(
                    out,
                    "execution {} of job {} (version {}): {}",
                    id, v["job_id"], v["job_version"], v["status"]
                )?;
                if !v["error"].is_null() {
                    writeln!(out, "  error: {}", v["error"]["message"])?;
                }
                for s in v["steps"].as_array().into_iter().flatten() {
                    writeln!(
                        out,
                        "  #{} {:<20} {:<10} attempts {}",
                        s["seq"],
                        s["step_id"].as_str().unwrap_or(""),
                        s["status"].as_str().unwrap_or(""),
                        s["attempt_count"]
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ExecutionsCommand::Cancel { id } => {
            let now_us = chrono::Utc::now().timestamp_micros();
            match store.request_cancel(&id, now_us).await? {
                None => {
                    writeln!(err, "no execution {id:?}")?;
                    Ok(ExitCode::from(2))
                }
                Some(status)
                    if ExecutionStatus::parse(&status).is_some_and(ExecutionStatus::is_final) =>
                {
                    writeln!(err, "execution {id} has already finished ({status})")?;
                    Ok(ExitCode::FAILURE)
                }
                Some(status) if status == "queued" => {
                    let error = serde_json::json!({"kind": "cancelled", "message": "cancelled while queued"});
                    if store.cancel_queued(&id, &error.to_string(), now_us).await? {
                        writeln!(out, "execution {id} cancelled")?;
                    } else {
                        writeln!(out, "execution {id}: cancel requested")?;
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Some(_) => {
                    writeln!(
                        out,
                        "execution {id}: cancel requested; the node running it stops it"
                    )?;
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
    }
}

async fn validate(
    config: Config,
    path: PathBuf,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let runtime = crate::build_runtime(&config).await?;
    match load_job(&runtime, &path).await? {
        Ok(job) => {
            writeln!(
                out,
                "{}: job {:?} is valid ({} steps)",
                path.display(),
                job.id,
                job.steps.len()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(issues) => {
            print_issues(err, &path, &issues)?;
            Ok(ExitCode::from(2))
        }
    }
}

async fn list_plugins(
    config: Config,
    json: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let runtime = crate::build_runtime(&config).await?;
    let unloadable = runtime.unloadable();
    if json {
        let plugins = runtime.plugins();
        let all: Vec<_> = plugins.iter().map(|p| &p.info).collect();
        let body = serde_json::json!({ "plugins": all, "unloadable": unloadable });
        writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
    } else {
        for p in runtime.plugins() {
            let source = match &p.info.source {
                PluginSource::BuiltIn => "built-in".to_string(),
                PluginSource::File { path } => path.display().to_string(),
            };
            writeln!(
                out,
                "{:<16} {:<10} {}  {}",
                p.info.name, p.info.version, p.info.digest, source
            )?;
        }
        for u in &unloadable {
            writeln!(out, "could not be loaded: {}", u.describe())?;
        }
    }
    // A component that could not be loaded is a failure to fix, as in
    // `doctor`; the list above is still complete.
    Ok(if unloadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn inspect(
    config: Config,
    file: PathBuf,
    json: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    // Inspecting needs no plugins loaded: only the engine and the linker.
    let runtime = crate::new_runtime(&config)?;
    let plugin = runtime.prepare_file(&file).await?;
    let info = &plugin.info;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(info)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "file:         {}", file.display())?;
    writeln!(out, "name:         {}", info.name)?;
    writeln!(out, "version:      {}", info.version)?;
    writeln!(out, "digest:       {}", info.digest)?;
    writeln!(out, "size:         {} bytes", info.size_bytes)?;
    writeln!(out, "description:  {}", info.description)?;
    writeln!(out, "capabilities asked for:")?;
    if info.capabilities.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for c in &info.capabilities {
        writeln!(out, "  {:<8} {:<32} {}", c.kind, c.target, c.reason)?;
    }
    writeln!(out, "imports:")?;
    for i in &info.imports {
        writeln!(out, "  {i}")?;
    }
    writeln!(out, "exports:")?;
    for e in &info.exports {
        writeln!(out, "  {e}")?;
    }
    writeln!(out, "config schema:")?;
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&info.config_schema)?
    )?;
    Ok(ExitCode::SUCCESS)
}

fn preview(
    request: &crate::model::schedule::PreviewRequest,
    json: bool,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let preview = match request.run(chrono::Utc::now()) {
        Ok(p) => p,
        Err(issues) => {
            for i in &issues {
                writeln!(err, "--{}: {}", i.path, i.message)?;
            }
            return Ok(ExitCode::from(2));
        }
    };
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&preview)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let kind = match preview.kind {
        crate::schedule::CronKind::FixedTime => "fixed-time",
        crate::schedule::CronKind::Interval => "interval",
    };
    let name = |v: serde_json::Result<serde_json::Value>| {
        v.ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    writeln!(
        out,
        "{} in {} ({kind}; gap: {}, overlap: {})",
        preview.expression,
        preview.zone,
        name(serde_json::to_value(preview.gap)),
        name(serde_json::to_value(preview.overlap))
    )?;
    for f in &preview.fires {
        let note = match f.flag {
            Some(crate::schedule::DstFlag::ShiftedFromGap) => {
                format!(
                    "  shifted from {} (spring-forward gap)",
                    f.nominal.format("%H:%M:%S")
                )
            }
            Some(crate::schedule::DstFlag::FirstOfRepeated) => {
                "  first pass of a repeated hour".into()
            }
            Some(crate::schedule::DstFlag::SecondOfRepeated) => {
                "  second pass of a repeated hour".into()
            }
            None => String::new(),
        };
        writeln!(
            out,
            "  {}  {:<6} {}Z{note}",
            f.at.to_rfc3339(),
            f.abbreviation.as_deref().unwrap_or(""),
            f.utc.format("%Y-%m-%dT%H:%M:%S")
        )?;
    }
    for d in &preview.dropped {
        let why = match d.reason {
            crate::schedule::DropReason::SkippedInGap => "skipped in the gap",
            crate::schedule::DropReason::MergedAtGapEnd => "merged into the fire at the gap's end",
        };
        writeln!(
            out,
            "  dropped: {} local time(s) {} .. {} {why} ({})",
            d.count,
            d.first_nominal,
            d.last_nominal,
            d.gap_end.to_rfc3339()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
