//! `meridian run`, `validate`, `executions` and `schedule preview`: jobs from the command line.

use super::shutdown_signal;
use crate::config::Config;
use crate::engine::{ExecutionReport, ExecutionStatus};
use crate::model;
use crate::runtime::Runtime;
use anyhow::Context as _;
use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(super) enum ScheduleCommand {
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
pub(super) enum ExecutionsCommand {
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

pub(super) async fn load_job(
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
    let issues = crate::engine::validate_job(&job, runtime).await;
    Ok(if issues.is_empty() {
        Ok(job)
    } else {
        Err(issues)
    })
}

pub(super) fn print_issues(
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

pub(super) async fn run_job(
    config: Config,
    path: PathBuf,
    params: Vec<String>,
    json: bool,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let runner = crate::node::JobRunner::start(&config).await?;
    let (store, runtime) = (runner.store(), runner.runtime());
    let job = match load_job(runtime, &path).await? {
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
    let engine = runner.engine();
    let cancel = crate::engine::Cancel::new();
    let on_signal = cancel.clone();
    let watcher = tokio::spawn(async move {
        shutdown_signal().await;
        on_signal.cancel();
    });
    let report = engine.run(&id, cancel).await;
    watcher.abort();
    runner.close().await;
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

pub(super) fn print_report(
    out: &mut (dyn Write + Send),
    report: &ExecutionReport,
) -> std::io::Result<()> {
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

pub(super) async fn executions(
    config: Config,
    command: ExecutionsCommand,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let store = crate::node::open_store(&config).await?;
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

pub(super) async fn validate(
    config: Config,
    path: PathBuf,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let runtime = crate::node::build_runtime(&config).await?;
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

pub(super) fn preview(
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
