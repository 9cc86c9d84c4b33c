//! The process capability and the built-in `powershell` step, with real
//! processes through the real runtime: grants (program, argv pattern,
//! environment names, cwd, the plugin's own ask), stdin and a cleared
//! environment, the output cap, exit codes, and timeouts that kill the whole
//! process tree, grandchildren included (also when the step's own timeout
//! drops the host call).
//!
//! The PowerShell tests run against a real interpreter when there is one:
//! `MERIDIAN_TEST_PWSH` (an absolute path) or `pwsh` on `PATH`. Otherwise
//! they run the plugin's real invocation against a stand-in interpreter the
//! test writes: a `/bin/sh` script that checks `-NoProfile
//! -NonInteractive`, the execution policy and the argument layout the plugin
//! documents, then runs the step's script with `/bin/sh`. Each test prints
//! which interpreter ran, and the scripts are written for that interpreter.

use meridian::capabilities::Decision;
use meridian::runtime::{StepFailure, StepRun};
use meridian_tests::{TestRuntime, fixtures};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn probe_grant(rules: &str) -> String {
    format!("[[grants]]\nplugin = \"probe\"\n{rules}")
}

async fn probe(config_toml: &str, calls: Value) -> (StepRun, Vec<Value>) {
    let rt = TestRuntime::new(config_toml, &[fixtures::PROBE, fixtures::UNASKED_PROCESS]).await;
    let run = rt.run("probe", json!({ "calls": calls })).await;
    let results = run
        .result
        .as_ref()
        .expect("the probe reports every call")
        .output["results"]
        .as_array()
        .unwrap()
        .clone();
    (run, results)
}

fn ok(result: &Value) -> &Value {
    result
        .get("ok")
        .unwrap_or_else(|| panic!("expected success, got {result}"))
}

fn error(result: &Value) -> &Value {
    result
        .get("error")
        .unwrap_or_else(|| panic!("expected an error, got {result}"))
}

/// Whether a process is gone (or only a zombie waiting for a reaper; this
/// machine's PID 1 may not reap).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gone(pid)
}

async fn read_pid(file: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Ok(text) = std::fs::read_to_string(file)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no pid in {}", file.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_call_gets_stdin_granted_env_cwd_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    let toml = probe_grant(&format!(
        "[[grants.process]]\nprogram = \"/bin/sh\"\nargs = [\"-c\", \"*\"]\nenv = [\"GREETING\"]\ncwd = {:?}\n",
        cwd.display().to_string()
    ));
    let script = "read line; echo \"$line from $GREETING in $(pwd), HOME=${HOME-unset} USER=${USER-unset}\"; echo oops >&2; exit 3";
    let (run, results) = probe(
        &toml,
        json!([
            { "process": { "program": "/bin/sh", "args": ["-c", script], "env": {"GREETING": "the test"},
                           "cwd": cwd, "stdin": "hello\n" } },
            { "process": { "program": "/bin/sh", "args": ["-c", "pwd; kill -9 $$"] } },
        ]),
    )
    .await;
    let out = ok(&results[0]);
    assert_eq!(
        out["stdout"],
        format!(
            "hello from the test in {}, HOME=unset USER=unset\n",
            cwd.display()
        ),
        "stdin, the granted variable and the cwd reach the child; nothing of the host's environment does"
    );
    assert_eq!(out["stderr"], "oops\n");
    assert_eq!(
        out["exit_code"], 3,
        "a non-zero exit is reported, not an error"
    );
    assert_eq!(out["stdout_truncated"], false);
    let killed = ok(&results[1]);
    assert_eq!(
        killed["stdout"],
        format!("{}\n", cwd.display()),
        "without a cwd the child runs in the rule's"
    );
    assert_eq!(killed["exit_code"], Value::Null, "ended by a signal");
    assert_eq!(run.events.len(), 2);
    assert!(
        run.events
            .iter()
            .all(|e| e.capability == "process" && e.decision == Decision::Allowed)
    );
    assert!(
        run.events[0].target.starts_with("/bin/sh -c "),
        "{}",
        run.events[0].target
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_outside_the_grant_are_typed_denials_naming_the_part() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    std::fs::create_dir(cwd.join("sub")).unwrap();
    std::os::unix::fs::symlink("/etc", cwd.join("escape")).unwrap();
    let toml = probe_grant(&format!(
        "[[grants.process]]\nprogram = \"/bin/echo\"\nargs = [\"hello\", \"*\"]\nenv = [\"GREETING\"]\ncwd = {:?}\n",
        cwd.display().to_string()
    ));
    let call = |program: &str, args: Value, env: Value, dir: Option<PathBuf>| json!({ "process": { "program": program, "args": args, "env": env, "cwd": dir } });
    let (run, results) = probe(
        &toml,
        json!([
            call(
                "/bin/echo",
                json!(["hello", "world"]),
                json!({"GREETING": "x"}),
                Some(cwd.join("sub"))
            ),
            call("/bin/cat", json!(["/etc/passwd"]), json!({}), None),
            call("/bin/echo", json!(["goodbye", "world"]), json!({}), None),
            call(
                "/bin/echo",
                json!(["hello", "big", "world"]),
                json!({}),
                None
            ),
            call(
                "/bin/echo",
                json!(["hello", "world"]),
                json!({"LD_PRELOAD": "/tmp/x.so"}),
                None
            ),
            call(
                "/bin/echo",
                json!(["hello", "world"]),
                json!({}),
                Some(PathBuf::from("/"))
            ),
            call(
                "/bin/echo",
                json!(["hello", "world"]),
                json!({}),
                Some(cwd.join("escape"))
            ),
        ]),
    )
    .await;
    assert_eq!(
        ok(&results[0])["stdout"],
        "hello world\n",
        "inside the grant"
    );
    let expect = [
        (1, "program:", "/bin/cat /etc/passwd"),
        (2, "argument 1:", "/bin/echo goodbye world"),
        (3, "argument 3:", "/bin/echo hello big world"),
        (4, "env:", "/bin/echo hello world"),
        (5, "cwd:", "/bin/echo hello world"),
        (6, "cwd:", "/bin/echo hello world"),
    ];
    for (i, reason, target) in expect {
        let e = error(&results[i]);
        assert_eq!(e["kind"], "denied", "call {i}: {e}");
        assert_eq!(e["capability"], "process", "call {i}");
        assert_eq!(e["target"], target, "call {i}");
        let r = e["reason"].as_str().unwrap();
        assert!(r.starts_with(reason), "call {i}: {r}");
        let hint = e["grant_hint"].as_str().unwrap();
        assert!(
            hint.starts_with("[[grants.process]] (plugin = \"probe\")"),
            "call {i}: {hint}"
        );
    }
    let env = error(&results[4]);
    assert!(
        env["reason"].as_str().unwrap().contains("LD_PRELOAD"),
        "{env}"
    );
    assert!(
        env["grant_hint"]
            .as_str()
            .unwrap()
            .contains("env = [\"LD_PRELOAD\"]"),
        "{env}"
    );
    let escape = error(&results[6])["reason"].as_str().unwrap().to_string();
    assert!(
        escape.contains("/etc"),
        "the symlink is followed before the check: {escape}"
    );
    let decisions: Vec<Decision> = run.events.iter().map(|e| e.decision).collect();
    assert_eq!(decisions[0], Decision::Allowed);
    assert!(
        decisions[1..].iter().all(|d| *d == Decision::Denied),
        "{decisions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_is_not_enough_when_the_plugin_did_not_ask() {
    let toml = "[[grants]]\nplugin = \"unasked-process\"\n[[grants.process]]\nprogram = \"/bin/echo\"\nargs = [\"**\"]\n";
    let rt = TestRuntime::new(toml, &[fixtures::UNASKED_PROCESS]).await;
    let run = rt
        .run(
            "unasked-process",
            json!({ "program": "/bin/echo", "args": ["hi"] }),
        )
        .await;
    match run.result {
        Err(StepFailure::Denied { denial }) => {
            assert_eq!(denial.capability, "process");
            assert_eq!(denial.target, "/bin/echo hi");
            assert!(denial.reason.contains("did not ask"), "{}", denial.reason);
        }
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_capped_and_the_child_still_finishes() {
    let toml = probe_grant("[[grants.process]]\nprogram = \"/bin/sh\"\nargs = [\"-c\", \"*\"]\n");
    // 300 KB on stdout, far beyond a pipe's buffer: the child only finishes
    // (and says so on stderr) when the host keeps reading past the cap.
    let script = "i=0; while [ $i -lt 3000 ]; do echo 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789; i=$((i+1)); done; echo finished >&2";
    let (_, results) = probe(
        &toml,
        json!([{ "process": { "program": "/bin/sh", "args": ["-c", script], "max_output_bytes": 1000, "timeout_ms": 20000 } }]),
    )
    .await;
    let out = ok(&results[0]);
    assert_eq!(out["stdout"].as_str().unwrap().len(), 1000);
    assert!(out["stdout"].as_str().unwrap().starts_with("0123456789"));
    assert_eq!(out["stdout_truncated"], true);
    assert_eq!(out["stderr"], "finished\n");
    assert_eq!(out["stderr_truncated"], false);
    assert_eq!(out["exit_code"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_whole_tree() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    let toml = probe_grant(&format!(
        "[[grants.process]]\nprogram = \"/bin/sh\"\nargs = [\"-c\", \"*\"]\ncwd = {:?}\n",
        cwd.display().to_string()
    ));
    // The grandchild holds stdout open too: the call must not wait for it.
    let script = "/usr/bin/sleep 30 & echo $! > grandchild.pid; echo started; wait";
    let started = Instant::now();
    let (run, results) = probe(
        &toml,
        json!([{ "process": { "program": "/bin/sh", "args": ["-c", script], "timeout_ms": 700 } }]),
    )
    .await;
    let e = error(&results[0]);
    assert_eq!(e["kind"], "timed-out", "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(run.events[0].decision, Decision::Failed);
    let pid = read_pid(&cwd.join("grandchild.pid")).await;
    assert!(
        wait_gone(pid).await,
        "grandchild {pid} survived the timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_steps_own_timeout_kills_the_tree_too() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    let toml = format!(
        "[sandbox]\ntimeout_ms = 1500\n{}",
        probe_grant(&format!(
            "[[grants.process]]\nprogram = \"/bin/sh\"\nargs = [\"-c\", \"*\"]\ncwd = {:?}\n",
            cwd.display().to_string()
        ))
    );
    let rt = TestRuntime::new(&toml, &[fixtures::PROBE]).await;
    let script = "/usr/bin/sleep 30 & echo $! > grandchild.pid; /usr/bin/sleep 30";
    let run = rt
        .run(
            "probe",
            json!({ "calls": [{ "process": { "program": "/bin/sh", "args": ["-c", script], "timeout_ms": 60000 } }] }),
        )
        .await;
    assert!(
        matches!(run.result, Err(StepFailure::Timeout { .. })),
        "{:?}",
        run.result
    );
    let pid = read_pid(&cwd.join("grandchild.pid")).await;
    assert!(
        wait_gone(pid).await,
        "grandchild {pid} survived the dropped host call"
    );
}

// ---------------------------------------------------------------- powershell

/// The interpreter the PowerShell tests run against.
struct Interpreter {
    path: String,
    /// A stand-in `/bin/sh` script, not PowerShell.
    stand_in: bool,
    /// Where the stand-in writes the argv it got.
    argv_log: Option<PathBuf>,
}

impl Interpreter {
    fn find(dir: &Path) -> Self {
        let real = std::env::var("MERIDIAN_TEST_PWSH")
            .ok()
            .filter(|p| !p.is_empty())
            .or_else(|| {
                std::env::var("PATH").ok().and_then(|path| {
                    path.split(':')
                        .map(|d| Path::new(d).join("pwsh"))
                        .find(|p| p.is_file())
                        .and_then(|p| p.canonicalize().ok())
                        .map(|p| p.display().to_string())
                })
            });
        let interpreter = match real {
            Some(path) => Interpreter {
                path,
                stand_in: false,
                argv_log: None,
            },
            None => {
                let log = dir.join("argv.log");
                let path = dir.join("pwsh-stand-in");
                std::fs::write(
                    &path,
                    STAND_IN.replace("@ARGV_LOG@", &log.display().to_string()),
                )
                .unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
                Interpreter {
                    path: path.display().to_string(),
                    stand_in: true,
                    argv_log: Some(log),
                }
            }
        };
        println!(
            "powershell tests run against {}: {}",
            if interpreter.stand_in {
                "a /bin/sh stand-in (no pwsh here; set MERIDIAN_TEST_PWSH to use one)"
            } else {
                "a real PowerShell"
            },
            interpreter.path
        );
        interpreter
    }

    /// The script for whichever interpreter runs.
    fn pick<'a>(&self, pwsh: &'a str, sh: &'a str) -> &'a str {
        if self.stand_in { sh } else { pwsh }
    }

    fn argv(&self) -> Vec<String> {
        self.argv_log
            .as_ref()
            .map(|l| {
                std::fs::read_to_string(l)
                    .unwrap()
                    .lines()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The stand-in interpreter: checks what the plugin promises about the
/// invocation, then runs the script with /bin/sh. `-Command` scripts come
/// from `MERIDIAN_PS_SCRIPT` (their parameters stay JSON in
/// `MERIDIAN_PS_PARAMETERS`); `-File` parameters (`-Name:value`) become
/// environment variables of the script.
const STAND_IN: &str = r#"#!/bin/sh
printf '%s\n' "$@" > '@ARGV_LOG@'
if [ "$1" != -NoProfile ] || [ "$2" != -NonInteractive ]; then
  echo "stand-in: expected -NoProfile -NonInteractive first, got: $*" >&2; exit 97
fi
shift 2
if [ "$1" = -ExecutionPolicy ]; then
  case "$2" in
    AllSigned|Bypass|Default|RemoteSigned|Restricted|Undefined|Unrestricted) ;;
    *) echo "stand-in: not an execution policy: $2" >&2; exit 98 ;;
  esac
  shift 2
fi
case "$1" in
  -Command)
    exec /bin/sh -c "$MERIDIAN_PS_SCRIPT" ;;
  -File)
    file=$2; shift 2
    for a in "$@"; do
      case "$a" in
        -*:*) n=${a%%:*}; n=${n#-}; export "$n=${a#*:}" ;;
        *) echo "stand-in: not a -Name:value parameter: $a" >&2; exit 99 ;;
      esac
    done
    exec /bin/sh "$file" ;;
  *) echo "stand-in: expected -Command or -File, got: $1" >&2; exit 96 ;;
esac
"#;

struct PsSetup {
    rt: TestRuntime,
    interpreter: Interpreter,
    dir: tempfile::TempDir,
}

async fn ps_setup() -> PsSetup {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap().display().to_string();
    let interpreter = Interpreter::find(dir.path());
    let toml = format!(
        "[[grants]]\nplugin = \"powershell\"\n\
         [[grants.process]]\nprogram = {p:?}\nargs = [\"-NoProfile\", \"-NonInteractive\", \"-Command\", \"*\"]\n\
         env = [\"MERIDIAN_PS_SCRIPT\", \"MERIDIAN_PS_PARAMETERS\", \"GREETING\"]\ncwd = {cwd:?}\n\
         [[grants.process]]\nprogram = {p:?}\nargs = [\"-NoProfile\", \"-NonInteractive\", \"-ExecutionPolicy\", \"Bypass\", \"-File\", \"{cwd}/*.ps1\", \"**\"]\n\
         cwd = {cwd:?}\n",
        p = interpreter.path
    );
    let rt = TestRuntime::new(&toml, &[]).await;
    PsSetup {
        rt,
        interpreter,
        dir,
    }
}

impl PsSetup {
    fn cwd(&self) -> String {
        self.dir
            .path()
            .canonicalize()
            .unwrap()
            .display()
            .to_string()
    }

    async fn run(&self, mut config: Value) -> StepRun {
        config["interpreter"] = json!(self.interpreter.path);
        config["cwd"] = json!(self.cwd());
        self.rt.run("powershell", config).await
    }
}

/// A value that would be code if it were spliced into script text.
const HOSTILE: &str = "O'Brien\"; $(Write-Output pwned) ‘x’ `n -Force";

/// Inline script, hostile parameter values, env and stderr; against pwsh,
/// or the stand-in (which sees the parameters as the JSON the wrapper gets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powershell_inline_script_gets_parameters_as_data() {
    let ps = ps_setup().await;
    let script = ps.interpreter.pick(
        "param($Name, $Count) Write-Output \"hello $Name x$Count from $env:GREETING\"; [Console]::Error.WriteLine('note')",
        "echo \"hello $MERIDIAN_PS_PARAMETERS from $GREETING\"; echo note >&2",
    );
    let run = ps
        .run(json!({ "script": script, "parameters": { "Name": HOSTILE, "Count": 3 }, "env": { "GREETING": "the test" } }))
        .await;
    let ok = run.result.expect("the script runs");
    let stdout = ok.output["stdout"].as_str().unwrap().trim_end().to_string();
    if ps.interpreter.stand_in {
        let params = stdout
            .strip_prefix("hello ")
            .and_then(|s| s.strip_suffix(" from the test"))
            .unwrap();
        let params: Value = serde_json::from_str(params).unwrap();
        assert_eq!(params, json!({ "Name": HOSTILE, "Count": 3 }));
        assert_eq!(
            ps.interpreter.argv()[..3],
            ["-NoProfile", "-NonInteractive", "-Command"]
        );
    } else {
        assert_eq!(stdout, format!("hello {HOSTILE} x3 from the test"));
    }
    assert_eq!(ok.output["exit_code"], 0);
    assert_eq!(ok.output["stderr"].as_str().unwrap().trim(), "note");
}

/// `-File` with `-Name:value` parameters, the execution policy, JSON output
/// and a script path outside the grant; against pwsh or the stand-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powershell_file_with_parameters_policy_and_json_output() {
    let ps = ps_setup().await;
    let file = format!("{}/greet.ps1", ps.cwd());
    std::fs::write(
        &file,
        ps.interpreter.pick(
            "param([string]$Name) @{ greeting = \"hi $Name\" } | ConvertTo-Json -Compress\n",
            "printf '{\"greeting\": \"hi %s\"}\\n' \"$Name\"\n",
        ),
    )
    .unwrap();
    let run = ps
        .run(json!({ "file": file, "parameters": { "Name": "-Force" }, "execution_policy": "Bypass" }))
        .await;
    let ok = run.result.expect("the script runs");
    assert_eq!(
        ok.output["stdout_json"]["greeting"], "hi -Force",
        "{}",
        ok.output
    );
    if ps.interpreter.stand_in {
        assert_eq!(
            ps.interpreter.argv(),
            [
                "-NoProfile",
                "-NonInteractive",
                "-ExecutionPolicy",
                "Bypass",
                "-File",
                file.as_str(),
                "-Name:-Force"
            ]
        );
    }
    // A file outside the granted pattern is refused by the grant.
    let run = ps
        .run(json!({ "file": "/etc/profile", "execution_policy": "Bypass" }))
        .await;
    match run.result {
        Err(StepFailure::Denied { denial }) => {
            assert!(
                denial.reason.starts_with("argument 6:"),
                "{}",
                denial.reason
            )
        }
        other => panic!("expected a denial, got {other:?}"),
    }
}

/// Non-zero exit, terminating error, `fail_on_stderr` and a timeout; against
/// pwsh or the stand-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powershell_failures_fail_the_step() {
    let ps = ps_setup().await;
    let exit = ps.interpreter.pick(
        "[Console]::Error.WriteLine('boom'); exit 4",
        "echo boom >&2; exit 4",
    );
    let run = ps.run(json!({ "script": exit })).await;
    match run.result {
        Err(StepFailure::Failed { message }) => {
            assert!(message.contains("code 4"), "{message}");
            assert!(message.contains("boom"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    // A terminating error (for the stand-in: what pwsh does with one,
    // the message on stderr and exit code 1).
    let throw = ps
        .interpreter
        .pick("throw 'kaput'", "echo kaput >&2; exit 1");
    let run = ps.run(json!({ "script": throw })).await;
    match run.result {
        Err(StepFailure::Failed { message }) => {
            assert!(message.contains("code 1"), "{message}");
            assert!(message.contains("kaput"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let noisy = ps.interpreter.pick(
        "[Console]::Error.WriteLine('careful'); 'done'",
        "echo careful >&2; echo done",
    );
    let run = ps
        .run(json!({ "script": noisy, "fail_on_stderr": true }))
        .await;
    assert!(
        matches!(&run.result, Err(StepFailure::Failed { message }) if message.contains("careful")),
        "{:?}",
        run.result
    );
    let sleepy = ps
        .interpreter
        .pick("Start-Sleep -Seconds 30", "/usr/bin/sleep 30");
    let started = Instant::now();
    let run = ps
        .run(json!({ "script": sleepy, "timeout_ms": 1500 }))
        .await;
    assert!(
        matches!(run.result, Err(StepFailure::TimedOut { .. })),
        "{:?}",
        run.result
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// A bare interpreter name becomes /usr/bin/<name>, which no grant allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powershell_interpreter_outside_the_grant_is_denied() {
    let ps = ps_setup().await;
    let run = ps
        .rt
        .run(
            "powershell",
            json!({ "script": "'x'", "cwd": ps.cwd(), "interpreter": "pwsh-elsewhere" }),
        )
        .await;
    match run.result {
        Err(StepFailure::Denied { denial }) => {
            assert_eq!(denial.capability, "process");
            assert!(
                denial
                    .target
                    .starts_with("/usr/bin/pwsh-elsewhere -NoProfile -NonInteractive -Command"),
                "{}",
                denial.target
            );
            assert!(denial.reason.starts_with("program:"), "{}", denial.reason);
        }
        other => panic!("expected a denial, got {other:?}"),
    }
}
