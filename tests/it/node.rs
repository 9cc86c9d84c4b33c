//! A `meridian serve` node as a real child process, for the tests that
//! need one: crash recovery, the cluster, the OpenAPI fuzzing and the
//! browser test. The node is the test crate's `meridian-node` binary (the
//! `meridian` CLI), started on a free loopback port with its stderr in a
//! file; dropping the [`Node`] kills the process and, when the test is
//! failing, prints the end of that file (without the audit record each
//! request logs).

#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Starting a node compiles its components when the cache is cold.
const STARTUP_DEADLINE: Duration = Duration::from_secs(120);
/// How often the node's stderr and exit are polled.
const POLL: Duration = Duration::from_millis(25);
/// How much of a failing test's node log is printed.
const LOG_LINES_PRINTED: usize = 400;

/// A `meridian-node serve` child process. Dropping it kills the process
/// (if still running) and, when the test is failing, prints its stderr.
pub(super) struct Node {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
    base: String,
    /// The API token the test's requests send.
    token: String,
}

/// Which API token a started node's requests send.
pub(super) enum Token<'a> {
    /// One the test made (say with `meridian token create`).
    Given(&'a str),
    /// The first admin token the node prints when it starts on a data
    /// directory without tokens.
    FirstAdmin,
}

impl Node {
    /// Starts `cmd` (a [`meridian_node`] command, with any options of its
    /// own) with `serve` on a free loopback port and waits for its
    /// "listening" line. Its stderr goes to `<logs>/<name>.stderr`.
    pub(super) async fn start(
        name: &'static str,
        mut cmd: Command,
        logs: &Path,
        token: Token<'_>,
    ) -> Self {
        let log = logs.join(format!("{name}.stderr"));
        let file = std::fs::File::create(&log).unwrap();
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        let child = cmd.spawn().expect("spawn meridian-node serve");
        let mut node = Node {
            name,
            child: Some(child),
            log,
            base: String::new(),
            token: String::new(),
        };
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            let text = node.stderr();
            if let Some(rest) = text.split("meridian listening on ").nth(1) {
                let url = rest.lines().next().unwrap_or("").trim();
                node.base = url.trim_end_matches('/').to_owned();
                node.token = match token {
                    Token::Given(t) => t.to_owned(),
                    Token::FirstAdmin => first_admin_token(&text)
                        .unwrap_or_else(|| panic!("node {name} printed no first admin token")),
                };
                return node;
            }
            if let Some(status) = node.child_mut().try_wait().unwrap() {
                panic!("node {name} exited ({status}) before it listened");
            }
            assert!(
                Instant::now() < deadline,
                "node {name} did not listen within {STARTUP_DEADLINE:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    pub(super) fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("node already stopped")
    }

    /// The API token the test's requests send.
    pub(super) fn token(&self) -> &str {
        &self.token
    }

    /// The base URL, `http://127.0.0.1:<port>`, without a trailing `/`.
    pub(super) fn base(&self) -> &str {
        &self.base
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything the node wrote to stderr so far.
    pub(super) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of stderr without the audit records (one per
    /// request): what to read when a test failed.
    pub(super) fn log_tail(&self, n: usize) -> String {
        let log = self.stderr();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("meridian::audit: audit record"))
            .collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// SIGKILL (`Child::kill` on unix), then reaps it.
    pub(super) fn kill_9(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("node already stopped");
        child.kill().unwrap();
        child.wait().unwrap()
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): the process stands still, as
    /// one stalled (swapping, starved, reconnecting slowly) would.
    pub(super) fn pause(&mut self, paused: bool) {
        let pid = self.child_mut().id();
        let signal = if paused { "-STOP" } else { "-CONT" };
        let sent = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill {signal} {pid}: {sent}");
    }

    /// SIGTERM, then waits up to `within` for the process to exit.
    pub(super) async fn terminate(&mut self, within: Duration) -> ExitStatus {
        let pid = self.child_mut().id();
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM {pid}: {sent}");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child_mut().try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node {} still running {within:?} after SIGTERM",
                self.name
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- stderr of node {} ({}), its last {LOG_LINES_PRINTED} lines without audit records -----\n{}\n----- end of node {} -----",
                self.name,
                self.log.display(),
                self.log_tail(LOG_LINES_PRINTED),
                self.name
            );
        }
    }
}

/// The first admin token a node prints (on the line after the notice) when
/// it starts on a data directory without tokens.
fn first_admin_token(stderr: &str) -> Option<String> {
    let token = stderr
        .split("created the first admin API token")
        .nth(1)?
        .lines()
        .nth(1)?
        .trim();
    token.starts_with("mrd_").then(|| token.to_owned())
}

/// The `meridian` CLI (as the test crate's `meridian-node` binary) on this
/// data and plugins directory, with no `MERIDIAN_*` variable inherited and
/// plain-text logs (they are printed when a test fails).
pub(super) fn meridian_node(data: &Path, plugins: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meridian-node"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MERIDIAN_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("NO_COLOR", "1");
    cmd.arg("--data-dir")
        .arg(data)
        .arg("--plugins-dir")
        .arg(plugins);
    cmd
}
