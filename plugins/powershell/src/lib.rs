//! Meridian step type `powershell`: runs a PowerShell script (inline or a
//! file) through the host's `process` capability.
//!
//! ```json
//! { "id": "report", "type": "powershell", "config": {
//!     "file": "/opt/scripts/report.ps1",
//!     "parameters": { "Day": "2026-03-29", "Verbose": true },
//!     "execution_policy": "Bypass",
//!     "env": { "REPORT_DIR": "/srv/reports" },
//!     "cwd": "/srv/reports",
//!     "timeout_ms": 600000 } }
//! ```
//!
//! Config (see [`Config`]; its JSON Schema is what `describe` reports):
//! `script` (inline text) or `file` (absolute path), exactly one;
//! `parameters` (name → value); `interpreter` (default `pwsh`);
//! `execution_policy`; `env`; `cwd`; `timeout_ms`; `max_output_bytes`;
//! `fail_on_stderr` (default false).
//!
//! ## The invocation
//!
//! The interpreter always gets `-NoProfile -NonInteractive`, then
//! `-ExecutionPolicy <policy>` when one is configured. A component cannot
//! search `PATH` (it has no environment), and grants name absolute paths,
//! so an `interpreter` without a `/` means `/usr/bin/<name>`: the default
//! `pwsh` is `/usr/bin/pwsh`, where Microsoft's Linux packages link it.
//!
//! Parameters are never spliced into script text:
//!
//! * `file`: `-File <path>` followed by one argument per parameter,
//!   `-Name:value`. The colon form binds the value as that parameter's
//!   argument even when it starts with `-`, and each value is its own argv
//!   element, so no shell or PowerShell parser sees it as code. Values must be
//!   strings, numbers or booleans (booleans become `$true`/`$false`, which
//!   is how `-File` sets switch parameters). Because the script path is in
//!   argv, an operator can pin the scripts a grant allows
//!   (`args = ["-NoProfile", "-NonInteractive", "-File", "/opt/scripts/*.ps1", "**"]`).
//! * `script`: the config schema marks it as code (`x-meridian-literal`),
//!   so the host refuses a `${...}` in it (PowerShell's own `${env:X}` is
//!   written `$${env:X}` in a job). It runs as `-Command` with a constant
//!   wrapper ([`INLINE_WRAPPER`]); the script text and the parameters (as a JSON object) travel in the
//!   environment variables `MERIDIAN_PS_SCRIPT` and `MERIDIAN_PS_PARAMETERS`.
//!   The wrapper turns the script into a script block, converts the JSON
//!   into a hashtable (`ConvertFrom-Json -AsHashtable`, PowerShell 6+) and
//!   splats it, so values of any JSON type reach the script's `param()`
//!   block as data. The grant must allow those two names in `env`. An
//!   inline script ends like a `-File` script: exit code 0 unless it calls
//!   `exit N` or a terminating error ends it (exit code 1, the error on
//!   stderr).
//!
//! ## Outcome
//!
//! Output: `{ exit_code, stdout, stderr, stdout_truncated, stderr_truncated,
//! duration_ms, interpreter }`, plus `stdout_json` when the whole of stdout
//! is a JSON document. A non-zero exit (a terminating error exits with 1),
//! or an end by a signal, fails the step with the tail of stderr in the
//! message; so does any stderr output when `fail_on_stderr` is set. A
//! refused process call is `denied`; a script that runs out of time has its
//! whole process tree killed by the host and the step is `timed-out`.

// Tests may unwrap; production code may not (workspace lints).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::collections::BTreeMap;

use meridian_sdk::process::{self, Command, Outcome};
use meridian_sdk::serde_json::{Value, json};
use meridian_sdk::{Capability, ConfigIssue, Context, JsonPath, Output, Step, StepError};
use schemars::JsonSchema;
use serde::Deserialize;

/// The environment variable that carries an inline script.
pub const SCRIPT_ENV: &str = "MERIDIAN_PS_SCRIPT";
/// The environment variable that carries an inline script's parameters.
pub const PARAMETERS_ENV: &str = "MERIDIAN_PS_PARAMETERS";

/// The `-Command` text for inline scripts. It is constant: nothing a job
/// supplies is ever part of it.
pub const INLINE_WRAPPER: &str = "\
try {
  $__meridianParameters = @{}
  if ($env:MERIDIAN_PS_PARAMETERS) { $__meridianParameters = $env:MERIDIAN_PS_PARAMETERS | ConvertFrom-Json -AsHashtable }
  $__meridianScript = [scriptblock]::Create($env:MERIDIAN_PS_SCRIPT)
  Remove-Item -Path Env:MERIDIAN_PS_SCRIPT, Env:MERIDIAN_PS_PARAMETERS -ErrorAction SilentlyContinue
  & $__meridianScript @__meridianParameters
} catch {
  [Console]::Error.WriteLine(($_ | Out-String))
  exit 1
}
exit 0";

/// Bytes of stderr quoted in a failure message.
const TAIL_BYTES: usize = 2000;

/// PowerShell's execution policies (`-ExecutionPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum ExecutionPolicy {
    AllSigned,
    Bypass,
    Default,
    RemoteSigned,
    Restricted,
    Undefined,
    Unrestricted,
}

impl ExecutionPolicy {
    fn as_str(self) -> &'static str {
        match self {
            ExecutionPolicy::AllSigned => "AllSigned",
            ExecutionPolicy::Bypass => "Bypass",
            ExecutionPolicy::Default => "Default",
            ExecutionPolicy::RemoteSigned => "RemoteSigned",
            ExecutionPolicy::Restricted => "Restricted",
            ExecutionPolicy::Undefined => "Undefined",
            ExecutionPolicy::Unrestricted => "Unrestricted",
        }
    }
}

/// What a job author is told who put `${…}` into an inline script: the
/// script is code, so values travel as parameters. The host reads the mark
/// (`x-meridian-literal`) from the schema and refuses the job. PowerShell's
/// own `${env:X}` and `${name}` are written `$${...}` in a job.
const SCRIPT_HINT: &str = "declare a parameter (param($Name)) and pass the value: \"parameters\": {\"Name\": \"{expr}\"}; PowerShell's own ${env:X} or ${name} is written $${env:X} or $${name} in a job";

/// The config of a `powershell` step.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The script's text (exactly one of `script` and `file`). It is code:
    /// values reach it through `parameters`, never spliced in with `${...}`.
    #[serde(default)]
    #[schemars(extend("x-meridian-literal" = SCRIPT_HINT))]
    pub script: Option<String>,
    /// Absolute path of a script file (exactly one of `script` and `file`).
    #[serde(default)]
    pub file: Option<String>,
    /// Parameters, by name, bound to the script's `param()` block. With
    /// `file`, values must be strings, numbers or booleans.
    #[serde(default)]
    pub parameters: BTreeMap<String, Value>,
    /// The interpreter: an absolute path, or a name looked up in /usr/bin.
    #[serde(default = "default_interpreter")]
    pub interpreter: String,
    /// Passed as `-ExecutionPolicy`.
    #[serde(default)]
    pub execution_policy: Option<ExecutionPolicy>,
    /// Environment variables of the interpreter (each name must be granted).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (must be granted).
    #[serde(default)]
    pub cwd: Option<String>,
    /// The host kills the interpreter and everything it started after this.
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// Bytes kept of each of stdout and stderr.
    #[serde(default)]
    pub max_output_bytes: Option<u32>,
    /// Fail the step when the script wrote anything to stderr.
    #[serde(default)]
    pub fail_on_stderr: bool,
}

fn default_interpreter() -> String {
    "pwsh".to_string()
}

/// The `powershell` step type.
pub struct PowerShellStep;

impl Step for PowerShellStep {
    type Config = Config;
    const NAME: &'static str = "powershell";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str = "Runs a PowerShell script, inline or from a file, with parameters, \
         through the process capability (-NoProfile -NonInteractive); a non-zero exit or a \
         terminating error fails the step.";

    fn capabilities() -> Vec<Capability> {
        vec![Capability::process(
            "*",
            "runs the PowerShell interpreter the step's config names (pwsh by default)",
        )]
    }

    fn validate(config: &Config) -> Vec<ConfigIssue> {
        validate(config)
    }

    fn execute(_ctx: &Context, config: Config) -> Result<Output, StepError> {
        let command = command(&config)?;
        let interpreter = command.program().to_string();
        let outcome = process::run(command)?;
        judge(&config, &interpreter, outcome)
    }
}

/// Checks what serde cannot.
pub fn validate(config: &Config) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    match (&config.script, &config.file) {
        (None, None) => issues.push(ConfigIssue::new("", "give either `script` or `file`")),
        (Some(_), Some(_)) => issues.push(ConfigIssue::new(
            "file",
            "give either `script` or `file`, not both",
        )),
        (Some(s), None) if s.trim().is_empty() => {
            issues.push(ConfigIssue::new("script", "must not be empty"))
        }
        (None, Some(f)) if !f.starts_with('/') => {
            issues.push(ConfigIssue::new("file", "must be an absolute path"))
        }
        _ => {}
    }
    let params = JsonPath::root().key("parameters");
    for (name, value) in &config.parameters {
        let path = params.key(name);
        if !is_parameter_name(name) {
            issues.push(ConfigIssue::new(
                path,
                "a parameter name is a letter or '_' followed by letters, digits or '_'",
            ));
        } else if config.file.is_some() && file_argument(value).is_none() {
            issues.push(ConfigIssue::new(
                path,
                "with `file`, a parameter value must be a string, a number or a boolean",
            ));
        }
    }
    let interpreter = &config.interpreter;
    if interpreter.is_empty()
        || interpreter.contains('\0')
        || (!interpreter.starts_with('/') && interpreter.contains('/'))
    {
        issues.push(ConfigIssue::new(
            "interpreter",
            "must be an absolute path or a bare program name",
        ));
    }
    if let Some(cwd) = &config.cwd
        && !cwd.starts_with('/')
    {
        issues.push(ConfigIssue::new("cwd", "must be an absolute path"));
    }
    let env = JsonPath::root().key("env");
    for name in config.env.keys() {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            issues.push(ConfigIssue::new(
                env.key(name),
                "not a valid environment variable name",
            ));
        } else if name == SCRIPT_ENV || name == PARAMETERS_ENV {
            issues.push(ConfigIssue::new(
                env.key(name),
                "reserved: the step passes inline scripts through this variable",
            ));
        }
    }
    if config.timeout_ms == Some(0) {
        issues.push(ConfigIssue::new("timeout_ms", "must be more than 0"));
    }
    issues
}

fn is_parameter_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The text a `-File` parameter argument carries after the colon.
fn file_argument(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(true) => Some("$true".into()),
        Value::Bool(false) => Some("$false".into()),
        _ => None,
    }
}

/// The absolute path of the interpreter a config names.
pub fn interpreter_path(interpreter: &str) -> String {
    if interpreter.starts_with('/') {
        interpreter.to_string()
    } else {
        format!("/usr/bin/{interpreter}")
    }
}

/// The process command a config runs.
pub fn command(config: &Config) -> Result<Command, StepError> {
    let mut command = Command::new(interpreter_path(&config.interpreter))
        .arg("-NoProfile")
        .arg("-NonInteractive");
    if let Some(policy) = config.execution_policy {
        command = command.arg("-ExecutionPolicy").arg(policy.as_str());
    }
    for (name, value) in &config.env {
        command = command.env(name.as_str(), value.as_str());
    }
    match (&config.file, &config.script) {
        (Some(file), _) => {
            command = command.arg("-File").arg(file.as_str());
            for (name, value) in &config.parameters {
                let Some(text) = file_argument(value) else {
                    return Err(StepError::invalid_config(
                        JsonPath::root().key("parameters").key(name),
                        "with `file`, a parameter value must be a string, a number or a boolean",
                    ));
                };
                command = command.arg(format!("-{name}:{text}"));
            }
        }
        (None, Some(script)) => {
            let parameters = Value::Object(
                config
                    .parameters
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            );
            command = command
                .arg("-Command")
                .arg(INLINE_WRAPPER)
                .env(SCRIPT_ENV, script.as_str())
                .env(PARAMETERS_ENV, parameters.to_string());
        }
        (None, None) => {
            return Err(StepError::invalid_config(
                "",
                "give either `script` or `file`",
            ));
        }
    }
    if let Some(cwd) = &config.cwd {
        command = command.cwd(cwd.as_str());
    }
    if let Some(ms) = config.timeout_ms {
        command = command.timeout_ms(ms);
    }
    if let Some(bytes) = config.max_output_bytes {
        command = command.max_output_bytes(bytes);
    }
    Ok(command)
}

/// The end of a text, at most `max` bytes, cut at a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let text = text.trim_end();
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Turns the outcome into the step's result.
pub fn judge(config: &Config, interpreter: &str, outcome: Outcome) -> Result<Output, StepError> {
    let stdout = outcome.stdout_text();
    let stderr = outcome.stderr_text();
    let why = if stderr.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", tail(&stderr, TAIL_BYTES))
    };
    match outcome.exit_code {
        Some(0) => {}
        Some(code) => {
            return Err(StepError::failed(format!(
                "PowerShell exited with code {code}{why}"
            )));
        }
        None => {
            return Err(StepError::failed(format!(
                "PowerShell was ended by a signal{why}"
            )));
        }
    }
    if config.fail_on_stderr && !stderr.trim().is_empty() {
        return Err(StepError::failed(format!(
            "PowerShell wrote to stderr (fail_on_stderr is set){why}"
        )));
    }
    let mut output = json!({
        "exit_code": outcome.exit_code,
        "stdout": stdout,
        "stderr": stderr,
        "stdout_truncated": outcome.stdout_truncated,
        "stderr_truncated": outcome.stderr_truncated,
        "duration_ms": outcome.duration_ms,
        "interpreter": interpreter,
    });
    if !outcome.stdout_truncated
        && let Ok(parsed) = serde_json::from_str::<Value>(stdout.trim())
    {
        output["stdout_json"] = parsed;
    }
    Ok(Output::new(output))
}

meridian_sdk::export_step!(PowerShellStep);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(v: Value) -> Config {
        meridian_sdk::parse_config(&v.to_string()).unwrap()
    }

    #[test]
    fn the_inline_script_is_marked_as_code_in_the_schema() {
        let schema = meridian_sdk::config_schema::<Config>();
        assert_eq!(
            schema.pointer("/properties/script/x-meridian-literal"),
            Some(&json!(SCRIPT_HINT))
        );
        assert_eq!(
            schema.pointer("/properties/parameters/x-meridian-literal"),
            None
        );
    }

    #[test]
    fn file_parameters_are_separate_colon_arguments() {
        let c = config(json!({
            "file": "/opt/s.ps1",
            "parameters": { "Name": "-Force; rm -rf /", "Count": 3, "Dry": false },
            "execution_policy": "Bypass",
        }));
        assert!(validate(&c).is_empty());
        let cmd = command(&c).unwrap();
        assert_eq!(cmd.program(), "/usr/bin/pwsh");
        assert_eq!(
            cmd.arg_list(),
            [
                "-NoProfile",
                "-NonInteractive",
                "-ExecutionPolicy",
                "Bypass",
                "-File",
                "/opt/s.ps1",
                "-Count:3",
                "-Dry:$false",
                "-Name:-Force; rm -rf /",
            ]
        );
    }

    #[test]
    fn inline_scripts_keep_the_command_text_constant() {
        let c = config(json!({
            "script": "param($Name) \"hi $Name\"",
            "parameters": { "Name": "x'; Remove-Item -Recurse /" },
            "interpreter": "/opt/microsoft/powershell/7/pwsh",
        }));
        let cmd = command(&c).unwrap();
        assert_eq!(cmd.program(), "/opt/microsoft/powershell/7/pwsh");
        assert_eq!(
            cmd.arg_list(),
            ["-NoProfile", "-NonInteractive", "-Command", INLINE_WRAPPER]
        );
    }

    #[test]
    fn validation_names_the_field() {
        let issues = |v: Value| {
            validate(&config(v))
                .into_iter()
                .map(|i| i.path)
                .collect::<Vec<_>>()
        };
        assert_eq!(issues(json!({})), [""]);
        assert_eq!(issues(json!({"script": "x", "file": "/x"})), ["file"]);
        assert_eq!(issues(json!({"file": "x.ps1"})), ["file"]);
        assert_eq!(
            issues(json!({"file": "/x.ps1", "parameters": {"A": [1], "b-c": "1"}})),
            ["parameters.A", "parameters.b-c"]
        );
        assert_eq!(
            issues(json!({"script": "x", "interpreter": "bin/pwsh"})),
            ["interpreter"]
        );
        assert_eq!(
            issues(json!({"script": "x", "env": {"MERIDIAN_PS_SCRIPT": "y"}})),
            ["env.MERIDIAN_PS_SCRIPT"]
        );
        let bad = meridian_sdk::validate_config::<PowerShellStep>(
            &json!({"script": "x", "execution_policy": "Lax"}).to_string(),
        );
        assert_eq!(bad[0].path, "execution_policy");
    }

    #[test]
    fn outcomes_are_judged() {
        let c = config(json!({"script": "x"}));
        let ok = Outcome {
            exit_code: Some(0),
            stdout: b"{\"a\": 1}\n".to_vec(),
            ..Outcome::default()
        };
        let out = judge(&c, "/usr/bin/pwsh", ok).unwrap();
        assert_eq!(out.value()["stdout_json"]["a"], 1);
        let failed = Outcome {
            exit_code: Some(3),
            stderr: format!("{}the end\n", "x".repeat(5000)).into_bytes(),
            ..Outcome::default()
        };
        let StepError::Failed(message) = judge(&c, "p", failed).unwrap_err() else {
            panic!("expected a failure")
        };
        assert!(message.contains("code 3"), "{message}");
        assert!(message.ends_with("the end"), "{message}");
        assert!(message.len() < 2100);
        let noisy = Outcome {
            exit_code: Some(0),
            stderr: b"warning".to_vec(),
            ..Outcome::default()
        };
        assert!(judge(&c, "p", noisy.clone()).is_ok());
        let strict = config(json!({"script": "x", "fail_on_stderr": true}));
        assert!(judge(&strict, "p", noisy).is_err());
    }
}
