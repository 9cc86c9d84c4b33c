//! The `meridian` command line: parsed by clap, printed to a writer so
//! tests drive it in-process exactly as a user would.
//!
//! This module parses the arguments, loads the config and dispatches;
//! `serve` starts a [`crate::node::Node`] and prints what it has to say.
//! Each other command's work and printing is in a module of its own:
//! [`jobs`] (`run`, `validate`, `executions`, `schedule preview`),
//! [`plugins`], [`audit`], [`access`] (`grants`, `token`) and [`doctor`].

use crate::config::{Config, Overrides};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

mod access;
mod audit;
mod doctor;
mod jobs;
mod plugins;

use access::{GrantsCommand, TokenCommand, grants, tokens};
use audit::{AuditCommand, audit};
use doctor::doctor;
use jobs::{ExecutionsCommand, ScheduleCommand, executions, preview, run_job, validate};
use plugins::{PluginsCommand, inspect, list_plugins, plugin_capabilities};

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
        && let Err(e) = crate::node::checkpoint_once(&store, &audit, &node).await
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
    let node = crate::node::Node::start(config, logs).await?;
    let notices = node.notices();
    if let Some(key) = &notices.signing_key_created {
        writeln!(
            err,
            "created the audit signing key {} (key id {}); its public key, for [audit] \
             trusted_keys wherever the trail is verified:\n  {}",
            key.path.display(),
            key.key_id,
            key.public
        )?;
    }
    if let Some(token) = &notices.first_admin_token {
        writeln!(
            err,
            "created the first admin API token (shown only now; keep it safe):\n  {token}\n\
             make more with `meridian token create --role viewer|operator|auditor|admin`"
        )?;
    }
    let (listener, url) = node.listen().await?;
    let recovered = &notices.recovered;
    if *recovered != crate::engine::service::RecoveryReport::default() {
        writeln!(
            err,
            "recovered executions: {} queued again, {} resumed, {} failed (interrupted), {} cancelled",
            recovered.requeued.len(),
            recovered.resumed.len(),
            recovered.failed.len(),
            recovered.cancelled.len()
        )?;
    }
    writeln!(err, "meridian listening on {url}")?;
    err.flush()?;
    node.serve(listener, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// The OS user running the CLI (from the process's uid, not the
/// environment), recorded as who changed a grant or a token.
pub(super) fn cli_actor() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => format!("cli:{}", user.name),
        _ => format!("cli:uid{uid}"),
    }
}

pub(super) fn parse_instant(flag: &str, value: Option<String>) -> anyhow::Result<Option<i64>> {
    value
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(&v)
                .map(|t| t.timestamp_micros())
                .map_err(|e| anyhow::anyhow!("--{flag} {v:?}: not an RFC 3339 instant: {e}"))
        })
        .transpose()
}

/// Resolves on Ctrl-C or SIGTERM: stop accepting, finish what is in flight.
pub(super) async fn shutdown_signal() {
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
