//! Child processes, granted per program path, argument pattern, environment
//! names and working directory. The child inherits nothing from the host:
//! its environment is exactly what [`Command::env`] sets.
//!
//! ```no_run
//! use meridian_sdk::process::{self, Command};
//!
//! # fn run() -> Result<(), meridian_sdk::StepError> {
//! let outcome = process::run(
//!     Command::new("/usr/bin/pg_dump")
//!         .arg("--schema-only")
//!         .arg("reporting")
//!         .env("PGHOST", "db.internal")
//!         .timeout_ms(60_000),
//! )?;
//! if !outcome.success() {
//!     return Err(meridian_sdk::StepError::failed(format!(
//!         "pg_dump exited with {:?}: {}",
//!         outcome.exit_code,
//!         outcome.stderr_text()
//!     )));
//! }
//! # Ok(()) }
//! ```

use crate::CapabilityError;

/// A program to run, built like [`std::process::Command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<String>,
    stdin: Option<Vec<u8>>,
    timeout_ms: Option<u32>,
    max_output_bytes: Option<u32>,
}

impl Command {
    /// Runs the program at the absolute path `program`.
    pub fn new(program: impl Into<String>) -> Self {
        Command {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            stdin: None,
            timeout_ms: None,
            max_output_bytes: None,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds several arguments.
    pub fn args<A: Into<String>>(mut self, args: impl IntoIterator<Item = A>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable of the child.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.env.retain(|(n, _)| *n != name);
        self.env.push((name, value.into()));
        self
    }

    /// Runs the child in `dir`.
    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Writes `input` to the child's standard input.
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// Kills the whole process tree after `ms` milliseconds.
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Keeps at most `bytes` of each of stdout and stderr.
    pub fn max_output_bytes(mut self, bytes: u32) -> Self {
        self.max_output_bytes = Some(bytes);
        self
    }

    /// The program path.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The arguments.
    pub fn arg_list(&self) -> &[String] {
        &self.args
    }

    /// Runs the command through the host (same as [`run`]).
    pub fn run(self) -> Result<Outcome, CapabilityError> {
        run(self)
    }
}

/// How a process ended and what it printed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The exit code; `None` when a signal ended the process.
    pub exit_code: Option<i32>,
    /// Standard output (up to the cap).
    pub stdout: Vec<u8>,
    /// Standard error (up to the cap).
    pub stderr: Vec<u8>,
    /// Whether stdout was cut at the cap.
    pub stdout_truncated: bool,
    /// Whether stderr was cut at the cap.
    pub stderr_truncated: bool,
    /// How long the process ran.
    pub duration_ms: u64,
}

impl Outcome {
    /// Whether the process exited with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// Standard output as text; invalid UTF-8 becomes U+FFFD.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as text; invalid UTF-8 becomes U+FFFD.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs `command` through the host and waits for it to end. A process that
/// ran is `Ok` whatever its exit code.
pub fn run(command: Command) -> Result<Outcome, CapabilityError> {
    transport::run(command)
}

#[cfg(target_arch = "wasm32")]
mod transport {
    use super::{Command, Outcome};
    use crate::CapabilityError;
    use crate::bindings::meridian::step::process as wit;

    pub(super) fn run(command: Command) -> Result<Outcome, CapabilityError> {
        let command = wit::Command {
            program: command.program,
            args: command.args,
            env: command.env,
            cwd: command.cwd,
            stdin: command.stdin,
            timeout_ms: command.timeout_ms,
            max_output_bytes: command.max_output_bytes,
        };
        let outcome = wit::run(&command).map_err(CapabilityError::from_wit)?;
        Ok(Outcome {
            exit_code: outcome.exit_code,
            stdout: outcome.stdout,
            stderr: outcome.stderr,
            stdout_truncated: outcome.stdout_truncated,
            stderr_truncated: outcome.stderr_truncated,
            duration_ms: outcome.duration_ms,
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod transport {
    use super::{Command, Outcome};
    use crate::CapabilityError;

    pub(super) fn run(_command: Command) -> Result<Outcome, CapabilityError> {
        Err(CapabilityError::outside_host("process"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_collects_arguments_and_environment() {
        let command = Command::new("/bin/echo")
            .arg("a")
            .args(["b", "c"])
            .env("X", "1")
            .env("X", "2");
        assert_eq!(command.program(), "/bin/echo");
        assert_eq!(command.arg_list(), ["a", "b", "c"]);
        assert_eq!(command.env, vec![("X".to_string(), "2".to_string())]);
        assert!(matches!(command.run(), Err(CapabilityError::Failed(_))));
    }

    #[test]
    fn outcome_helpers() {
        let outcome = Outcome {
            exit_code: Some(0),
            stdout: b"ok\n".to_vec(),
            ..Outcome::default()
        };
        assert!(outcome.success());
        assert_eq!(outcome.stdout_text(), "ok\n");
        assert!(!Outcome::default().success());
    }
}
