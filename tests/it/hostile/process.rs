//! Process grants match the path the OS will open: the README's own grant
//! shape (`args = [..., "-File", "/opt/scripts/*.ps1", "**"]`) no longer
//! lets a step run a script outside the directory — through `..`, through
//! backslashes (which PowerShell reads as separators), through a symbolic
//! link planted below the directory, or a program path with `..`. Each
//! attempt is a typed denial naming the argument and why, the outside
//! script never runs, and a script inside still does.
//!
//! The built-in `powershell` step (built from the SDK) runs a stand-in
//! interpreter that, like `pwsh` on Linux, reads `\` in a `-File` path as a
//! separator; the `probe` fixture makes raw process calls.

use meridian::capabilities::grants::Denial;
use meridian::runtime::{StepFailure, StepRun};
use meridian_tests::{TestRuntime, fixtures};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A PowerShell stand-in: checks the invocation the `powershell` step
/// makes and runs the `-File` script with /bin/sh, reading backslashes in
/// its path as separators, as PowerShell does on Linux.
const STAND_IN: &str = r#"#!/bin/sh
[ "$1" = -NoProfile ] && [ "$2" = -NonInteractive ] || { echo "stand-in: bad invocation: $*" >&2; exit 97; }
shift 2
[ "$1" = -File ] || { echo "stand-in: expected -File, got $1" >&2; exit 96; }
file=$(printf '%s' "$2" | tr '\\' '/')
shift 2
exec /bin/sh "$file" "$@"
"#;

/// `<root>/opt/scripts` holds the granted script and a planted link to
/// `<root>/tmp/x.ps1`, a script that leaves `<root>/pwned` behind.
struct Layout {
    _dir: tempfile::TempDir,
    root: PathBuf,
    interpreter: String,
}

impl Layout {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        for d in ["opt/scripts", "tmp", "bin"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(
            root.join("opt/scripts/report.ps1"),
            "echo report ran \"$@\"\n",
        )
        .unwrap();
        std::fs::write(
            root.join("tmp/x.ps1"),
            format!("echo pwned > '{}'\n", root.join("pwned").display()),
        )
        .unwrap();
        std::os::unix::fs::symlink(root.join("tmp/x.ps1"), root.join("opt/scripts/link.ps1"))
            .unwrap();
        std::os::unix::fs::symlink(
            root.join("tmp/gone.ps1"),
            root.join("opt/scripts/dangling.ps1"),
        )
        .unwrap();
        let interpreter = root.join("bin/pwsh");
        std::fs::write(&interpreter, STAND_IN).unwrap();
        std::fs::set_permissions(&interpreter, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self {
            interpreter: interpreter.display().to_string(),
            root,
            _dir: dir,
        }
    }

    fn path(&self, rel: &str) -> String {
        format!("{}/{rel}", self.root.display())
    }

    /// The README's grant, for this layout: the `powershell` step and the
    /// probe may run the interpreter with a script under opt/scripts.
    fn config(&self) -> String {
        let rule = format!(
            "[[grants.process]]\nprogram = {:?}\nargs = [\"-NoProfile\", \"-NonInteractive\", \"-File\", \"{}/*.ps1\", \"**\"]\n",
            self.interpreter,
            self.path("opt/scripts")
        );
        format!(
            "[[grants]]\nplugin = \"powershell\"\n{rule}\n[[grants]]\nplugin = \"probe\"\n{rule}"
        )
    }

    fn pwned(&self) -> bool {
        self.root.join("pwned").exists()
    }
}

async fn run_file(rt: &TestRuntime, layout: &Layout, file: &str) -> StepRun {
    rt.run(
        "powershell",
        json!({ "file": file, "interpreter": layout.interpreter }),
    )
    .await
}

fn denial(run: &StepRun) -> &Denial {
    match &run.result {
        Err(StepFailure::Denied { denial }) => denial,
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn stdout(run: &StepRun) -> String {
    match &run.result {
        Ok(ok) => ok.output["stdout"].as_str().unwrap().to_string(),
        Err(e) => panic!("expected the script to run: {e}"),
    }
}

/// `/opt/scripts/../../tmp/x.ps1`: matched `*.ps1` as text before; now
/// `..` matches no path pattern.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_grant_with_dot_dot_runs_nothing_outside() {
    let layout = Layout::new();
    let rt = TestRuntime::new(&layout.config(), &[]).await;
    let attack = layout.path("opt/scripts/../../tmp/x.ps1");
    let run = run_file(&rt, &layout, &attack).await;
    let d = denial(&run);
    assert_eq!(d.capability, "process");
    assert!(
        d.reason.starts_with("argument 4: ") && d.reason.contains("has a '..' segment"),
        "{d}"
    );
    assert!(d.grant_hint.starts_with("none: "), "{d}");
    assert!(!layout.pwned(), "the outside script did not run");

    // The host still runs what the grant allows, written plainly or not.
    let run = run_file(&rt, &layout, &layout.path("opt/scripts/report.ps1")).await;
    assert_eq!(stdout(&run), "report ran\n");
    let run = run_file(&rt, &layout, &layout.path("opt//scripts/./report.ps1")).await;
    assert_eq!(stdout(&run), "report ran\n");
    assert!(!layout.pwned());
}

/// `/opt/scripts/..\..\tmp\x.ps1`: Linux sees one odd name inside the
/// directory, PowerShell a way out of it; a path argument with a backslash
/// matches no pattern.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backslashes_that_powershell_reads_as_separators_run_nothing_outside() {
    let layout = Layout::new();
    let rt = TestRuntime::new(&layout.config(), &[]).await;
    let attack = format!("{}\\..\\..\\tmp\\x.ps1", layout.path("opt/scripts/"));
    let run = run_file(&rt, &layout, &attack).await;
    let d = denial(&run);
    assert!(
        d.reason.starts_with("argument 4: ") && d.reason.contains("holds a backslash"),
        "{d}"
    );
    assert!(!layout.pwned(), "the outside script did not run");
    let run = run_file(&rt, &layout, &layout.path("opt/scripts/report.ps1")).await;
    assert_eq!(stdout(&run), "report ran\n");
}

/// A link planted below the granted directory that points outside it (and
/// one that points nowhere) is refused when the call is made; the link's
/// target never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_symbolic_link_runs_nothing_outside() {
    let layout = Layout::new();
    let rt = TestRuntime::new(&layout.config(), &[]).await;
    let run = run_file(&rt, &layout, &layout.path("opt/scripts/link.ps1")).await;
    let d = denial(&run);
    assert!(
        d.reason.starts_with("argument 4: ")
            && d.reason.contains(&format!(
                "leads through a symbolic link to {:?}",
                layout.path("tmp/x.ps1")
            )),
        "{d}"
    );
    assert!(!layout.pwned(), "the link's target did not run");
    let run = run_file(&rt, &layout, &layout.path("opt/scripts/dangling.ps1")).await;
    assert!(
        denial(&run).reason.contains("a symbolic link to nothing"),
        "{}",
        denial(&run)
    );
    let run = run_file(&rt, &layout, &layout.path("opt/scripts/report.ps1")).await;
    assert_eq!(stdout(&run), "report ran\n");
}

fn probe_results(run: &StepRun) -> Vec<Value> {
    run.result
        .as_ref()
        .expect("the probe reports every call")
        .output["results"]
        .as_array()
        .unwrap()
        .clone()
}

/// The same grant through raw process calls from a plugin built with the
/// SDK: a program path with `..` is refused as such; arguments that `**`
/// allows are data (a script's parameters may hold `..`); the program path
/// is matched normalised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_calls_match_program_and_arguments_as_paths() {
    let layout = Layout::new();
    let rt = TestRuntime::new(&layout.config(), &[fixtures::PROBE]).await;
    let interpreter_via_dot_dot = layout.path("bin/../bin/pwsh");
    let base = ["-NoProfile", "-NonInteractive", "-File"];
    let call = |program: &str, rest: &[&str]| {
        let args: Vec<&str> = base.iter().chain(rest).copied().collect();
        json!({ "process": { "program": program, "args": args } })
    };
    let run = rt
        .run(
            "probe",
            json!({ "calls": [
                call(&interpreter_via_dot_dot, &[&layout.path("opt/scripts/report.ps1")]),
                call(&layout.path("bin//pwsh"), &[&layout.path("opt/scripts/report.ps1"), "../not/a/path", "C:\\data"]),
                call(&layout.interpreter, &[&layout.path("opt/scripts/../../tmp/x.ps1")]),
            ]}),
        )
        .await;
    let results = probe_results(&run);
    let err = &results[0]["error"];
    assert_eq!(err["kind"], "denied", "{results:#?}");
    assert!(
        err["reason"].as_str().unwrap().starts_with("program: ")
            && err["reason"].as_str().unwrap().contains("'..'"),
        "{err}"
    );
    assert_eq!(
        results[1]["ok"]["stdout"], "report ran ../not/a/path C:\\data\n",
        "{results:#?}"
    );
    assert_eq!(results[2]["error"]["kind"], "denied", "{results:#?}");
    assert!(!layout.pwned());
    assert!(Path::new(&layout.interpreter).exists());
}
