//! A running node: everything `meridian serve` assembles, in the order it
//! starts, and the reverse order it stops. `serve` (in [`crate::cli`]), the
//! test suite's `TestNode` and the API benchmarks all start a node through
//! [`Node::start`]; `meridian run` runs one job inline through [`JobRunner`].
//! The commands that only read plugins (`validate`, `plugins`, `doctor`)
//! build the same runtime with [`build_runtime`].
//!
//! Start order ([`Node::start`]):
//! 1. The transport is checked (no plain HTTP off loopback unless the
//!    operator said so) and the TLS files loaded — refused before anything
//!    else starts.
//! 2. The store is opened (migrations run) and the node registered in it
//!    (`nodes`; a node id held by a live process is refused).
//! 3. The node's clock is measured against the store's (the scheduler and
//!    the engine keep the store's time, see `ClusterClock`).
//! 4. The audit signing key is loaded (made on first start) and the
//!    checkpoints start.
//! 5. The runtime loads the plugins under the config's and the stored
//!    grants, every capability call going to the audit trail; the stored
//!    grants are then watched for changes.
//! 6. The step runtime (a tokio runtime of its own), the engine, the queues
//!    and the scheduler start; what this node left unfinished is recovered
//!    first; then the cluster loop (leases, clock, take-overs).
//! 7. The API state; the first admin token when the store has none.
//!
//! Stop order ([`Node::shutdown`]) is the reverse: background tasks, the
//! executions (running ones get the grace to finish), the steps' database
//! pools, the audit trail's last records, its last checkpoint, and last the
//! node's leases, so that other nodes take over at once whatever it left.

use crate::api::{self, AppState};
use crate::audit::anchor::{Checkpointer, Signer, Witness};
use crate::config::Config;
use crate::engine::service::{Executions, RecoveryReport};
use crate::engine::{Engine, SystemTimer};
use crate::runtime::{Runtime, RuntimeOptions};
use crate::store::{NodeLease, NodeRow, Store, StoreError};
use anyhow::Context as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long running executions get to finish at shutdown; the rest are
/// recovered at the next start (or taken over by another node).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a stopping node waits for the witness to take its last
/// checkpoints.
const WITNESS_GRACE: Duration = Duration::from_secs(5);

/// How often the queue and step metrics are snapshotted.
const METRICS_EVERY: Duration = Duration::from_secs(60);

/// What the operator is told once, as the node starts.
#[derive(Debug, Default)]
pub struct Notices {
    /// The audit signing key made on this first start: its path, key id
    /// and public key (for `[audit] trusted_keys`).
    pub signing_key_created: Option<CreatedKey>,
    /// The first admin API token, made because the store had none (shown
    /// only now; only its hash is stored).
    pub first_admin_token: Option<String>,
    /// What recovery found left unfinished by this node's last run.
    pub recovered: RecoveryReport,
}

/// An audit signing key made at start.
#[derive(Debug)]
pub struct CreatedKey {
    pub path: std::path::PathBuf,
    pub key_id: String,
    pub public: String,
}

/// A started node. Serve its API with [`Node::serve`] (which stops it when
/// the shutdown future resolves), or drive [`Node::state`] in-process and
/// stop it with [`Node::shutdown`].
pub struct Node {
    config: Config,
    state: Arc<AppState>,
    executions: Arc<Executions>,
    runtime: Arc<Runtime>,
    steps: StepRuntime,
    tls: Option<api::tls::Tls>,
    checkpointer: Arc<Checkpointer>,
    /// The checkpoints, the stored grants' watch, the metrics snapshots
    /// and the log retention: stopped first.
    checkpoints: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    notices: Notices,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.config.cluster.node_id)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Assembles and starts a node from its config (see the module docs
    /// for the order). `logs` are the log files `serve` installed, when it
    /// did: their held lines are shown by health, their retention runs
    /// while the node does.
    pub async fn start(
        config: Config,
        logs: Option<&crate::logging::LogHandle>,
    ) -> anyhow::Result<Node> {
        check_transport(&config)?;
        let tls = match &config.api.tls {
            Some(files) => Some(api::tls::Tls::load(files.clone()).await?),
            None => None,
        };
        let store = open_store(&config).await?;
        register(&config, &store).await?;
        let clock = Arc::new(crate::scheduler::ClusterClock::new());
        crate::engine::measure_clock(&store, &clock).await?;
        let mut notices = Notices::default();
        let (checkpointer, signing_key_created) = checkpointer(&config, &store)?;
        notices.signing_key_created = signing_key_created;
        let checkpoints = Arc::clone(&checkpointer).spawn(config.audit.checkpoint_interval);
        let (runtime, audit) = build_node_runtime(&config, &store).await?;
        let runtime = Arc::new(runtime);
        let watched = Arc::clone(&runtime);
        let grant_watch = crate::capabilities::grants::stored::watch(
            config.grant_specs.clone(),
            store.clone(),
            move |entries| watched.replace_grants(entries),
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
                audit: Some(audit.clone()),
                ..Default::default()
            },
        )
        .await?;
        notices.recovered = recovered;
        executions.start_cluster_loop(config.cluster.heartbeat, clock);
        let executions = Arc::new(executions);
        let snapshots = crate::metrics::spawn_snapshots(
            Arc::clone(&metrics),
            executions.queues().clone(),
            METRICS_EVERY,
        );
        let mut background = vec![grant_watch, snapshots];
        // Log retention: now, then every `logging.cleanup_interval_s`.
        background.extend(logs.map(crate::logging::LogHandle::spawn_cleanup));
        let state = Arc::new(AppState {
            runtime: Arc::clone(&runtime),
            store,
            executions: Arc::clone(&executions),
            started: std::time::Instant::now(),
            log_dir: config.logging.root(&config.data_dir),
            data_dir: config.data_dir.clone(),
            held_logs: logs.map(crate::logging::LogHandle::held),
            metrics,
            audit,
            access: api::AuthState::new(config.api.refusal_window),
            uploads: api::PluginUploads::from_config(&config),
            audit_settings: config.audit.clone(),
        });
        notices.first_admin_token = crate::auth::ensure_first_admin(&state.store).await?;
        Ok(Node {
            config,
            state,
            executions,
            runtime,
            steps,
            tls,
            checkpointer,
            checkpoints,
            background,
            notices,
        })
    }

    /// The API's state: store, runtime, executions, audit trail, metrics.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The node's config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What to tell the operator now that the node has started.
    pub fn notices(&self) -> &Notices {
        &self.notices
    }

    /// Binds the API's address (`listen`); returns the listener and the
    /// URL it serves (`https` with TLS).
    pub async fn listen(&self) -> anyhow::Result<(tokio::net::TcpListener, String)> {
        let listen = self.config.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr: SocketAddr = listener.local_addr()?;
        tracing::info!(%addr, data_dir = %self.config.data_dir.display(), "meridian serving");
        if self.tls.is_none() && !addr.ip().is_loopback() {
            tracing::warn!(%addr, "serving plain HTTP on a non-loopback address (--insecure-http)");
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        Ok((listener, format!("{scheme}://{addr}")))
    }

    /// Serves the API on `listener` until `shutdown` resolves, then stops
    /// the node ([`Node::shutdown`]).
    pub async fn serve(
        mut self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let tls = self.tls.take();
        let served = api::serve_with(listener, Arc::clone(&self.state), tls, shutdown).await;
        self.shutdown().await;
        Ok(served?)
    }

    /// Stops the node in the reverse order of its start (see the module
    /// docs). Executions still running after the grace stay `running` and
    /// are recovered at the next start or taken over by another node.
    pub async fn shutdown(self) {
        let Node {
            state,
            executions,
            runtime,
            steps,
            checkpointer,
            checkpoints,
            background,
            ..
        } = self;
        for task in background {
            task.abort();
        }
        let (store, audit) = (state.store.clone(), state.audit.clone());
        drop(state);
        match Arc::try_unwrap(executions) {
            Ok(executions) => executions.shutdown().await,
            Err(_) => tracing::warn!("executions still referenced at shutdown"),
        }
        // On the step runtime, whose reactor the steps' database sockets use.
        let closed = steps
            .handle()
            .spawn(async move { runtime.close().await })
            .await;
        if let Err(e) = closed {
            tracing::warn!("cannot close the steps' SQL pools: {e}");
        }
        audit.flush().await;
        // The last checkpoint covers every record this node appended.
        checkpoints.abort();
        let _ = checkpoints.await;
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
        if let Err(e) = store.stop_node().await {
            tracing::warn!("cannot record this node's stop: {e}");
        }
    }
}

/// The runtime for a configuration, with no plugins loaded yet, under the
/// config's grants.
pub fn new_runtime(config: &Config) -> anyhow::Result<Runtime> {
    let runtime = Runtime::new(
        RuntimeOptions {
            cache_dir: config.cache_dir(),
            limits: config.sandbox.clone(),
            http: config.http.clone(),
            sql: config.sql.clone(),
        },
        config.secrets.clone(),
        config.grants.clone(),
    )?;
    runtime
        .replace_grants(crate::capabilities::grants::stored::from_config(
            &config.grant_specs,
        ))
        .map_err(|errors| anyhow::anyhow!("invalid grants: {errors:?}"))?;
    Ok(runtime)
}

/// The runtime for a configuration with its plugins: the built-in ones,
/// then the plugins directory (`plugins_dir`, or `<data_dir>/plugins`
/// where uploads go without one, when it exists).
pub async fn build_runtime(config: &Config) -> anyhow::Result<Runtime> {
    let mut runtime = new_runtime(config)?;
    runtime.load_builtin().await;
    let dir = config.upload_dir();
    if config.plugins_dir.is_some() || dir.is_dir() {
        runtime.load_dir(&dir).await?;
    }
    Ok(runtime)
}

/// The runtime of a command that has a store (`serve`, `run`): its
/// plugins, the config's grants plus the stored ones, and every capability
/// call recorded on the store's audit trail.
pub async fn build_node_runtime(
    config: &Config,
    store: &Store,
) -> anyhow::Result<(Runtime, crate::audit::AuditLog)> {
    let mut runtime = build_runtime(config).await?;
    let audit = crate::audit::AuditLog::start(store.clone());
    runtime.set_audit(audit.clone());
    runtime.apply_grants(&config.grant_specs, store).await?;
    Ok((runtime, audit))
}

/// Refuses plain HTTP off loopback unless the operator said so: tokens
/// must not cross a network in the clear.
fn check_transport(config: &Config) -> anyhow::Result<()> {
    if config.api.tls.is_none() && !config.api.insecure_http && !config.listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to serve plain HTTP on {}, which is not a loopback address: API tokens \
             would cross the network unencrypted. Give a certificate (--tls-cert and --tls-key, \
             or [api] tls_cert and tls_key), or say --insecure-http (or [api] insecure_http = \
             true) to serve plain HTTP anyway",
            config.listen
        );
    }
    Ok(())
}

/// Opens the config's store (running its migrations).
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    config
        .store
        .open()
        .await
        .with_context(|| format!("cannot open the store {}", config.store.describe()))
}

/// The node's audit signing key (made on first start) and the checkpointer
/// that signs the trail's head to the mirror and the witness.
fn checkpointer(
    config: &Config,
    store: &Store,
) -> anyhow::Result<(Arc<Checkpointer>, Option<CreatedKey>)> {
    let path = &config.audit.signing_key;
    let (signer, created) = Signer::load_or_create(path, &config.cluster.node_id)?;
    let created = created.then(|| CreatedKey {
        path: path.clone(),
        key_id: signer.key_id().to_string(),
        public: signer.public().to_string(),
    });
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
    Ok((
        Arc::new(Checkpointer::new(store.clone(), signer, witness)),
        created,
    ))
}

/// Signs one checkpoint of the store's head (to the mirror; the witness
/// hears from the serving nodes): what a CLI command that appended to the
/// trail does as it ends.
pub async fn checkpoint_once(
    store: &crate::config::StoreLocation,
    audit: &crate::audit::anchor::AuditSettings,
    node_id: &str,
) -> anyhow::Result<()> {
    let (signer, _) = Signer::load_or_create(&audit.signing_key, node_id)?;
    let store = store.open().await?;
    let checkpointer = Checkpointer::new(store.clone(), signer, None);
    checkpointer.checkpoint().await?;
    store.close().await;
    Ok(())
}

/// Makes `store` write for this node and registers it (`nodes`). A node id
/// still held by a live process is refused; one whose process is gone (same
/// host, pid no longer running — a crash or kill) is taken over at once.
async fn register(config: &Config, store: &Store) -> anyhow::Result<()> {
    store.set_node(NodeLease {
        id: Arc::from(config.cluster.node_id.as_str()),
        lease_us: lease_us(config),
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

fn lease_us(config: &Config) -> i64 {
    i64::try_from(config.cluster.lease.as_micros()).unwrap_or(i64::MAX)
}

/// What `meridian run` assembles to run one job inline: the store, the
/// runtime with its plugins and grants (every capability call on the audit
/// trail) and an engine, with no queues, scheduler or API. The execution is
/// held under a node id of its own (`<node_id>-run-<pid>`, not a registered
/// node), its lease renewed while the runner lives, so no serving node on
/// the same store takes it over — unless the command dies, when a node
/// recovers it.
pub struct JobRunner {
    store: Store,
    runtime: Arc<Runtime>,
    audit: crate::audit::AuditLog,
    leases: JoinHandle<()>,
}

impl JobRunner {
    pub async fn start(config: &Config) -> anyhow::Result<JobRunner> {
        let store = open_store(config).await?;
        store.set_node(NodeLease {
            id: Arc::from(format!(
                "{}-run-{}",
                config.cluster.node_id,
                std::process::id()
            )),
            lease_us: lease_us(config),
        });
        let renewing = store.clone();
        let every = config.cluster.heartbeat;
        let leases = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = renewing.renew_leases().await {
                    tracing::warn!("cannot renew the run's lease: {e}");
                }
            }
        });
        let (runtime, audit) = match build_node_runtime(config, &store).await {
            Ok(built) => built,
            Err(e) => {
                leases.abort();
                return Err(e);
            }
        };
        Ok(JobRunner {
            store,
            runtime: Arc::new(runtime),
            audit,
            leases,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// An engine over this runner's runtime and store, on the system clock.
    pub fn engine(&self) -> Engine {
        Engine::new(
            Arc::clone(&self.runtime),
            self.store.clone(),
            Arc::new(SystemTimer),
        )
    }

    /// Closes the steps' database pools, stores the last audit records and
    /// stops renewing the lease.
    pub async fn close(self) {
        self.runtime.close().await;
        self.audit.flush().await;
        self.leases.abort();
    }
}

impl Drop for JobRunner {
    fn drop(&mut self) {
        self.leases.abort();
    }
}

/// The tokio runtime that step attempts run on, apart from the API's;
/// shut down without blocking when dropped.
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
