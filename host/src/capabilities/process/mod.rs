//! The `meridian:step/process` capability: child processes, granted per
//! program path, argv pattern, environment names and working directory
//! ([`grant`]).
//!
//! A call is checked first (the grants decide on program, argv, the names
//! of the environment variables and the cwd, matching paths in normalised
//! form and never across `..`; see [`grant`]), then the file system is
//! asked where the path arguments and the cwd really lead, and that is
//! checked again (a symbolic link below a granted directory cannot point
//! outside it), then the command is run with `tokio::process`, so waiting
//! for the child never blocks a worker thread:
//!
//! * the child's environment is cleared: it sees only the variables the
//!   step set (and the grant allowed), nothing of the host's;
//! * it runs in its own process group, and the whole group is killed with
//!   SIGKILL when the call's timeout passes, when the child itself exits
//!   (so a background grandchild cannot outlive the call or keep its pipes
//!   open), and when the host call's future is dropped (the step's own
//!   timeout or a cancellation) through a guard, besides tokio's
//!   `kill_on_drop` for the child itself. A process that moves itself into
//!   another group or session (`setsid`) escapes this; containing that needs
//!   cgroups, which this host does not manage;
//! * stdout and stderr are read concurrently and kept up to the cap
//!   (`max-output-bytes`, by default [`DEFAULT_MAX_OUTPUT_BYTES`], never more
//!   than [`MAX_OUTPUT_BYTES`]); what comes after the cap is read and
//!   discarded, so the child never blocks on a full pipe, and the outcome
//!   says the stream was truncated;
//! * the timeout is the command's `timeout-ms`, or [`DEFAULT_TIMEOUT`],
//!   capped by the rule's `max_timeout_ms` and by [`MAX_TIMEOUT`]. A call
//!   that runs out of time is a `timed-out` error.
//!
//! Every call goes through [`StepEnv::begin`] and [`StepEnv::finish`], which
//! count it against the host-call budget and record it for the audit trail
//! (target: the program and its arguments, masked; never the environment).

pub mod grant;

use super::{CapabilityError, StepEnv};
use crate::contract::bindings::meridian::step::process as wit;
use grant::ProcessRequest;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use wasmtime::component::{HasData, Linker};

/// Bytes kept of each of stdout and stderr when the command sets no cap.
pub const DEFAULT_MAX_OUTPUT_BYTES: u32 = 1024 * 1024;
/// The most a command may ask to keep of each of stdout and stderr.
pub const MAX_OUTPUT_BYTES: u32 = 16 * 1024 * 1024;
/// The timeout of a command that sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest timeout any command may have.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// The process capability as seen by one step execution.
pub struct ProcessCap<'a> {
    pub env: &'a StepEnv,
}

impl wit::Host for ProcessCap<'_> {
    async fn run(&mut self, command: wit::Command) -> Result<wit::Outcome, wit::CapabilityError> {
        let target = request(&command).target();
        let timer = self
            .env
            .begin("process")
            .map_err(|e| e.into_wit(&self.env.masker))?
            .target(&target);
        let result = run(self.env, command).await;
        self.env.finish(timer, &target, &result);
        result.map_err(|e| e.into_wit(&self.env.masker))
    }
}

fn request(command: &wit::Command) -> ProcessRequest<'_> {
    ProcessRequest {
        program: &command.program,
        args: &command.args,
        env_names: command.env.iter().map(|(n, _)| n.as_str()).collect(),
        cwd: command.cwd.as_deref(),
    }
}

/// Checks a command against the grants and runs it.
pub async fn run(env: &StepEnv, command: wit::Command) -> Result<wit::Outcome, CapabilityError> {
    validate(&command)?;
    let rule = env
        .grants
        .check_process(&request(&command))
        .map_err(CapabilityError::Denied)?;
    // Path arguments passed the check as written; check where they really
    // lead too, so a link below a granted directory cannot point outside.
    for (index, arg) in command.args.iter().enumerate() {
        if !rule.resolves(index, arg) {
            continue;
        }
        let real = resolve(Path::new(arg)).await;
        let real_base = match rule.resolved_base(index) {
            Some(base) => tokio::fs::canonicalize(base).await.ok(),
            None => None,
        };
        rule.check_resolved(index, arg, real.as_deref(), real_base.as_deref())
            .map_err(|m| {
                CapabilityError::Denied(env.grants.process_denial(&request(&command), m))
            })?;
    }
    // The cwd passed the check as written; check where it really leads too,
    // so a symlink below the granted directory cannot point outside it.
    let (rule, cwd) = match &command.cwd {
        Some(dir) => {
            let real = tokio::fs::canonicalize(dir).await.map_err(|e| {
                CapabilityError::InvalidRequest(format!("working directory {dir}: {e}"))
            })?;
            let allowed_real = match rule.cwd() {
                Some(c) => tokio::fs::canonicalize(c).await.ok(),
                None => None,
            };
            if rule.allows_cwd(&real) || allowed_real.is_some_and(|a| real.starts_with(a)) {
                (rule, real)
            } else {
                // Another rule may allow where the path really leads;
                // otherwise the denial names the resolved directory.
                let shown = real.display().to_string();
                let mut req = request(&command);
                req.cwd = Some(&shown);
                let rule = env
                    .grants
                    .check_process(&req)
                    .map_err(CapabilityError::Denied)?;
                (rule, real)
            }
        }
        None => (
            rule,
            rule.cwd()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/")),
        ),
    };
    let requested = command
        .timeout_ms
        .map(|ms| Duration::from_millis(ms.into()))
        .unwrap_or(DEFAULT_TIMEOUT);
    let mut timeout = requested.min(MAX_TIMEOUT);
    if let Some(max) = rule.max_timeout_ms() {
        timeout = timeout.min(Duration::from_millis(max.into()));
    }
    let cap = command
        .max_output_bytes
        .unwrap_or(DEFAULT_MAX_OUTPUT_BYTES)
        .min(MAX_OUTPUT_BYTES) as usize;
    execute(command, &cwd, timeout, cap).await
}

/// Where an absolute path leads with every symbolic link resolved: the
/// path itself when it exists, else its deepest existing directory joined
/// with the rest (a file the program is about to create). `None` for a
/// link to nothing, which a program writing to it would follow to a place
/// no check saw.
async fn resolve(path: &Path) -> Option<PathBuf> {
    let mut missing = Vec::new();
    let mut at = path;
    loop {
        match tokio::fs::canonicalize(at).await {
            Ok(mut real) => {
                real.extend(missing.iter().rev());
                return Some(real);
            }
            Err(_) if tokio::fs::symlink_metadata(at).await.is_ok() => return None,
            Err(_) => {
                missing.push(at.file_name()?);
                at = at.parent()?;
            }
        }
    }
}

fn validate(command: &wit::Command) -> Result<(), CapabilityError> {
    let bad = |m: String| Err(CapabilityError::InvalidRequest(m));
    if !command.program.starts_with('/') {
        return bad(format!(
            "program {:?} is not an absolute path",
            command.program
        ));
    }
    if command.program.contains('\0') || command.args.iter().any(|a| a.contains('\0')) {
        return bad("the program and its arguments must not contain NUL".into());
    }
    for (name, value) in &command.env {
        if name.is_empty() || name.contains('=') || name.contains('\0') || value.contains('\0') {
            return bad(format!("{name:?} is not a valid environment variable"));
        }
    }
    Ok(())
}

/// The child's process group, killed (SIGKILL) at most once: explicitly,
/// or when the guard is dropped.
struct ProcessGroup {
    pgid: Option<Pid>,
    killed: AtomicBool,
}

impl ProcessGroup {
    fn kill(&self) {
        if let Some(pgid) = self.pgid
            && !self.killed.swap(true, Ordering::SeqCst)
        {
            // ESRCH (nothing left in the group) is the usual, fine answer.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a stream to its end, keeping at most `cap` bytes.
async fn read_capped<R: AsyncRead + Unpin>(reader: Option<R>, cap: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let Some(mut reader) = reader else {
        return (kept, truncated);
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, truncated)
}

async fn execute(
    command: wit::Command,
    cwd: &Path,
    timeout: Duration,
    cap: usize,
) -> Result<wit::Outcome, CapabilityError> {
    let mut cmd = tokio::process::Command::new(&command.program);
    cmd.args(&command.args)
        .env_clear()
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdin(if command.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        CapabilityError::Failed(format!("could not start {}: {e}", command.program))
    })?;
    let group = ProcessGroup {
        pgid: child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
        killed: AtomicBool::new(false),
    };
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let input = command.stdin.unwrap_or_default();
    let work = async {
        let feed = async {
            if let Some(mut w) = stdin {
                // A child that exits without reading its input is fine.
                let _ = w.write_all(&input).await;
                let _ = w.shutdown().await;
            }
        };
        let wait = async {
            let status = child.wait().await;
            // The child is gone; end whatever it left behind in its group,
            // which also closes pipes a grandchild may hold.
            group.kill();
            status
        };
        let ((), out, err, status) = tokio::join!(
            feed,
            read_capped(stdout, cap),
            read_capped(stderr, cap),
            wait
        );
        (out, err, status)
    };
    let Ok((out, err, status)) = tokio::time::timeout(timeout, work).await else {
        group.kill();
        // Reap the leader; SIGKILL cannot be ignored, so this is quick.
        let _ = child.wait().await;
        return Err(CapabilityError::TimedOut(format!(
            "{} did not finish within {} ms; its process tree was killed",
            command.program,
            timeout.as_millis()
        )));
    };
    let status = status
        .map_err(|e| CapabilityError::Failed(format!("waiting for {}: {e}", command.program)))?;
    Ok(wit::Outcome {
        exit_code: status.code(),
        stdout: out.0,
        stderr: err.0,
        stdout_truncated: out.1,
        stderr_truncated: err.1,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

struct Process;

impl HasData for Process {
    type Data<'a> = ProcessCap<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> ProcessCap<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Process>(linker, get)
}
