//! The `meridian` command line: parsed by clap, printed to a writer so
//! tests drive it in-process exactly as a user would.

use crate::config::{Config, Overrides};
use crate::engine::{self, ExecutionStatus};
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
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long, env = "MERIDIAN_LISTEN")]
        listen: Option<String>,
    },
    /// Run a job's steps once, here and now, and print each step's result.
    Run {
        /// Job definition (JSON).
        job: PathBuf,
        /// Print the execution as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a job definition and print every problem with its JSON path.
    Validate { job: PathBuf },
    /// Inspect and list plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Work with schedules.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
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
enum PluginsCommand {
    /// List the loaded step types.
    List {
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
    let listen = match &cli.command {
        Command::Serve { listen } => listen.clone(),
        _ => None,
    };
    let config = Config::load(
        cli.global.config.as_deref(),
        Overrides {
            data_dir: cli.global.data_dir,
            listen,
            plugins_dir: cli.global.plugins_dir,
        },
    )?;
    match cli.command {
        Command::Serve { .. } => serve(config, err).await,
        Command::Run { job, json } => run_job(config, job, json, out, err).await,
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
    }
}

async fn serve(config: Config, err: &mut (dyn Write + Send)) -> anyhow::Result<ExitCode> {
    let runtime = Arc::new(crate::build_runtime(&config).await?);
    let store = crate::store::Store::open_sqlite(&config.store_path())
        .await
        .with_context(|| format!("cannot open the store {}", config.store_path().display()))?;
    let state = Arc::new(api::AppState {
        runtime,
        store,
        started: std::time::Instant::now(),
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "meridian serving");
    writeln!(err, "meridian listening on http://{addr}")?;
    err.flush()?;
    api::serve(listener, state, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

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
    json: bool,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let runtime = crate::build_runtime(&config).await?;
    let job = match load_job(&runtime, &path).await? {
        Ok(job) => job,
        Err(issues) => {
            print_issues(err, &path, &issues)?;
            return Ok(ExitCode::from(2));
        }
    };
    let execution = engine::run_job(&runtime, &job).await;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&execution)?)?;
    } else {
        writeln!(
            out,
            "execution {} of job {}",
            execution.execution_id, execution.job_id
        )?;
        for s in &execution.steps {
            let ms = s.run.duration.as_secs_f64() * 1000.0;
            match &s.run.result {
                Ok(ok) => {
                    writeln!(
                        out,
                        "  ok      {} ({}) in {ms:.1} ms",
                        s.step_id, s.step_type
                    )?;
                    writeln!(out, "          output: {}", ok.output)?;
                    for (k, v) in &ok.exports {
                        writeln!(out, "          export {k} = {v}")?;
                    }
                }
                Err(e) => writeln!(
                    out,
                    "  FAILED  {} ({}) in {ms:.1} ms: {e}",
                    s.step_id, s.step_type
                )?,
            }
            for line in &s.run.logs {
                writeln!(
                    out,
                    "          [{:?} {:?}] {}",
                    line.source, line.level, line.message
                )?;
            }
            for ev in &s.run.events {
                writeln!(
                    out,
                    "          {} {} -> {:?}",
                    ev.capability, ev.target, ev.decision
                )?;
            }
        }
        writeln!(out, "status: {:?}", execution.status)?;
    }
    Ok(match execution.status {
        ExecutionStatus::Succeeded => ExitCode::SUCCESS,
        ExecutionStatus::Failed => ExitCode::FAILURE,
    })
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
    if json {
        let all: Vec<_> = runtime.plugins().map(|p| &p.info).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
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
    }
    Ok(ExitCode::SUCCESS)
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
