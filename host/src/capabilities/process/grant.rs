//! Process grants: which programs a plugin may run, with which arguments,
//! environment names and working directory.
//!
//! A rule is written in the config file under a `[[grants]]` entry:
//!
//! ```toml
//! [[grants]]
//! plugin = "powershell"
//! [[grants.process]]
//! program = "/usr/bin/pwsh"                  # absolute path, matched exactly
//! args = ["-NoProfile", "-NonInteractive", "-File", "/opt/scripts/*.ps1", "**"]
//! env = ["TZ", "REPORT_DIR"]                 # names the step may set
//! cwd = "/srv/reports"                       # this directory or one below it
//! max_timeout_ms = 600000                    # optional cap on the call's timeout
//! ```
//!
//! The argv pattern (`args`) is a list of globs matched element by element
//! against the arguments (not the program). `*` matches any text inside one
//! argument, including `/`; `?`, `[...]` and `{a,b}` work as in globset, and
//! `\` escapes a metacharacter. The arguments must be exactly as many as the
//! patterns, except that a last pattern of exactly `**` stands for "any
//! number of further arguments, also none". So `args = []` (the default)
//! allows no argument at all, `args = ["**"]` allows any argv, and
//! `args = ["--schema-only", "*"]` allows exactly two arguments, the first
//! being `--schema-only`.
//!
//! # Paths
//!
//! A pattern that contains a `/` names a path (`/opt/scripts/*.ps1`,
//! `--config=/etc/app/*.toml`, `reports/*.csv`), and its argument is matched
//! as the path the operating system will open, not as text:
//!
//! * `.` segments and repeated or trailing `/` are dropped before matching
//!   (the OS reads `/opt/scripts/./a.ps1` and `/opt//scripts/a.ps1` as
//!   `/opt/scripts/a.ps1`; otherwise `/opt/scripts/*/run.ps1` would match
//!   `/opt/scripts/./run.ps1`). The pattern is read the same way.
//! * An argument with a `..` segment matches no path pattern: `*` crosses
//!   `/`, so `/opt/scripts/*.ps1` would otherwise match
//!   `/opt/scripts/../../tmp/x.ps1`, and `..` cannot be resolved without
//!   the file system (a symbolic link makes `a/link/..` something other
//!   than `a`). A pattern with a `..` segment is refused when grants load.
//! * An argument with a backslash matches no path pattern: PowerShell (also
//!   on Linux) reads `\` as a separator, so `/opt/scripts/..\..\tmp\x.ps1`
//!   is a way out for it, while Linux reads it as part of a name.
//! * Percent-encoding and look-alike Unicode are not decoded: the OS does
//!   not decode them either, so they are just characters of a name.
//! * An absolute path argument matched by a path pattern is also resolved
//!   through the file system when the call is made (symbolic links
//!   followed; for a path that does not exist yet, its deepest existing
//!   directory), and where it really leads must match the pattern too —
//!   itself, or below the pattern's literal directory as that directory
//!   resolves (so `/opt/scripts` may itself be a link to a release
//!   directory). A link planted below the granted directory that points
//!   outside it, or a dangling link, is refused. This is the check the
//!   working directory already had; it narrows, but cannot close, the race
//!   with someone who swaps a link between the check and the program
//!   opening the file: grant only directories that the steps' programs
//!   cannot write.
//!
//! The arguments a trailing `**` allows are not path-checked: they are data
//! for the program (a script's parameters), in which `..` or a backslash is
//! legitimate, and `**` says any argument is allowed there. A program that
//! runs or opens a further argument as a path is allowed to do so by a
//! grant that ends in `**`; pin that argument with a pattern instead.
//!
//! The program is matched the same way: `.` segments and repeated `/` are
//! dropped, and a program path with a `..` segment is refused. It is not
//! resolved through links: the program a grant names is often a link
//! (`/usr/bin/pwsh`), and the grant names that file.
//!
//! Nothing of the host's environment reaches the child; every variable the
//! step sets must be named in `env` (exact, case-sensitive names). A step
//! may choose a working directory only when the rule has a `cwd`, and then
//! only that directory or one below it (compared by path components; a path
//! with `..` is refused). Without a cwd in the command the child runs in the
//! rule's `cwd`, or in `/` when the rule has none.
//!
//! When several rules name the program, the command needs to match one of
//! them entirely; a refusal reports the part that failed in the rule that
//! matched furthest (program, argument N, environment name, cwd), and a
//! hint that would allow exactly this command (or, for a `..` or a
//! backslash, says that no grant can).

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// The argv pattern element that allows any number of further arguments.
pub const ANY_FURTHER_ARGS: &str = "**";

/// One process rule as written in the config file (`[[grants.process]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessRuleSpec {
    /// Absolute path of the program, matched exactly.
    pub program: String,
    /// The argv pattern: globs matched element-wise; a last `**` allows any
    /// further arguments. Empty: no arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variable names the step may set for the child.
    #[serde(default)]
    pub env: Vec<String>,
    /// The working directory the child may use, and any directory below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The longest timeout a call may have under this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_timeout_ms: Option<u32>,
}

/// One parsed process rule.
#[derive(Debug, Clone)]
pub struct ProcessRule {
    spec: ProcessRuleSpec,
    /// The program path, normalised.
    program: String,
    args: Vec<ArgPattern>,
    /// The pattern ended with [`ANY_FURTHER_ARGS`].
    any_further: bool,
    env: BTreeSet<String>,
    cwd: Option<PathBuf>,
}

/// One element of an argv pattern.
#[derive(Debug, Clone)]
struct ArgPattern {
    /// As the grant wrote it, for messages.
    written: String,
    /// The glob, over the normalised text when the pattern names a path.
    matcher: GlobMatcher,
    /// The pattern contains a `/`: its argument is matched as a path.
    path: bool,
    /// For an absolute path pattern: its literal leading directory and the
    /// glob of the rest, to match where an argument really leads when that
    /// directory is itself reached through a link.
    base: Option<(PathBuf, GlobMatcher)>,
}

/// Why an argument (or the program) can be no path a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathFlaw {
    /// A `..` segment.
    DotDot,
    /// A backslash: a separator to PowerShell and Windows, part of a name
    /// to Linux.
    Backslash,
}

impl PathFlaw {
    fn says(self) -> &'static str {
        match self {
            PathFlaw::DotDot => "has a '..' segment, which no path pattern matches",
            PathFlaw::Backslash => {
                "holds a backslash (a separator to PowerShell, part of a name to Linux), which no path pattern matches"
            }
        }
    }
}

/// A command as the grants see it: what is run, with which argv,
/// environment names and working directory (values are not looked at).
#[derive(Debug, Clone)]
pub struct ProcessRequest<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    pub env_names: Vec<&'a str>,
    pub cwd: Option<&'a str>,
}

impl ProcessRequest<'_> {
    /// The target named in denials and the audit trail: the program and its
    /// arguments, each quoted when it is empty or holds blanks or quotes.
    pub fn target(&self) -> String {
        let mut t = self.program.to_string();
        for a in self.args {
            t.push(' ');
            if a.is_empty()
                || a.chars()
                    .any(|c| c.is_whitespace() || c == '"' || c == '\'')
            {
                t.push_str(&format!("{a:?}"));
            } else {
                t.push_str(a);
            }
        }
        t
    }
}

/// Why a command is outside a rule; ordered by how far matching got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// No rule names this program.
    Program { program: String },
    /// The program path has a `..` segment.
    ProgramPath { program: String },
    /// Argument `index` (0-based) does not match its pattern.
    Arg {
        index: usize,
        value: String,
        pattern: String,
    },
    /// Argument `index` is matched as a path and can be none a grant
    /// allows.
    ArgPath {
        index: usize,
        value: String,
        pattern: String,
        flaw: PathFlaw,
    },
    /// Argument `index` matched as written, but leads elsewhere through a
    /// symbolic link (`real`), or is a link to nothing (`real` is `None`).
    ArgResolved {
        index: usize,
        value: String,
        pattern: String,
        real: Option<String>,
    },
    /// Fewer or more arguments than the pattern has.
    ArgCount { expected: usize, got: usize },
    /// An environment name the rule does not list.
    Env { name: String },
    /// The working directory is not allowed.
    Cwd {
        cwd: String,
        allowed: Option<String>,
    },
}

impl Mismatch {
    /// How far matching got: the part, then the argument index.
    fn rank(&self) -> (u8, usize) {
        match self {
            Mismatch::Program { .. } | Mismatch::ProgramPath { .. } => (0, 0),
            Mismatch::Arg { index, .. }
            | Mismatch::ArgPath { index, .. }
            | Mismatch::ArgResolved { index, .. } => (1, *index),
            Mismatch::ArgCount { expected, got } => (1, (*expected).min(*got)),
            Mismatch::Env { .. } => (2, 0),
            Mismatch::Cwd { .. } => (3, 0),
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Program { program } => {
                write!(f, "program: no process grant names the program {program}")
            }
            Mismatch::ProgramPath { program } => write!(
                f,
                "program: {program:?} has a '..' segment; name the program by its path without '..'"
            ),
            Mismatch::Arg {
                index,
                value,
                pattern,
            } => write!(
                f,
                "argument {}: {value:?} does not match the pattern {pattern:?}",
                index + 1
            ),
            Mismatch::ArgPath {
                index,
                value,
                pattern,
                flaw,
            } => write!(
                f,
                "argument {}: {value:?} {} (the pattern {pattern:?} names a path)",
                index + 1,
                flaw.says()
            ),
            Mismatch::ArgResolved {
                index,
                value,
                pattern,
                real: Some(real),
            } => write!(
                f,
                "argument {}: {value:?} leads through a symbolic link to {real:?}, which the pattern {pattern:?} does not match",
                index + 1
            ),
            Mismatch::ArgResolved {
                index,
                value,
                pattern,
                real: None,
            } => write!(
                f,
                "argument {}: {value:?} is a symbolic link to nothing, so where it leads cannot be checked against the pattern {pattern:?}",
                index + 1
            ),
            Mismatch::ArgCount { expected, got } => write!(
                f,
                "argument {}: the pattern allows {expected} argument(s), the command has {got}",
                (*expected).min(*got) + 1
            ),
            Mismatch::Env { name } => {
                write!(f, "env: the environment variable {name} is not granted")
            }
            Mismatch::Cwd {
                cwd,
                allowed: Some(allowed),
            } => write!(
                f,
                "cwd: the working directory {cwd} is not {allowed} or below it"
            ),
            Mismatch::Cwd { cwd, allowed: None } => write!(
                f,
                "cwd: the grant allows no working directory, the command asks for {cwd}"
            ),
        }
    }
}

/// A path as the OS reads it, for matching: `.` segments and repeated or
/// trailing `/` dropped; the text before the first `/` (empty for an
/// absolute path, `--config=` in `--config=/etc/x`) kept as it is. A `..`
/// segment is a flaw, and so is a backslash unless `backslash_ok` (a
/// pattern's backslashes are glob escapes).
pub fn normalise(text: &str, backslash_ok: bool) -> Result<Cow<'_, str>, PathFlaw> {
    if !backslash_ok && text.contains('\\') {
        return Err(PathFlaw::Backslash);
    }
    let mut segments = text.split('/');
    let head = segments.next().unwrap_or_default();
    if head == ".." {
        return Err(PathFlaw::DotDot);
    }
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    if head != "." {
        out.push_str(head);
    } else {
        changed = true;
    }
    let mut any = false;
    for segment in segments {
        match segment {
            ".." => return Err(PathFlaw::DotDot),
            "" | "." => changed = true,
            s => {
                if !(out.is_empty() && head == ".") {
                    out.push('/');
                }
                out.push_str(s);
                any = true;
            }
        }
    }
    if !any && head.is_empty() {
        // "/", "//", "/./": the root.
        out.push('/');
    }
    if !changed && out == text {
        return Ok(Cow::Borrowed(text));
    }
    Ok(Cow::Owned(out))
}

fn glob(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
}

impl ArgPattern {
    fn parse(written: &str) -> Result<Self, String> {
        let path = written.contains('/');
        let text = if path {
            normalise(written, true).map_err(|_| {
                "a pattern cannot allow a '..' segment: name the directory itself".to_string()
            })?
        } else {
            Cow::Borrowed(written)
        };
        let matcher = glob(&text).map_err(|e| format!("invalid pattern: {e}"))?;
        let base = match text.strip_prefix('/') {
            Some(rest) if path => {
                let segments: Vec<&str> = rest.split('/').collect();
                let literal = segments
                    .iter()
                    .take(segments.len().saturating_sub(1))
                    .take_while(|s| !s.contains(['*', '?', '[', ']', '{', '}', '\\']))
                    .count();
                let dir = format!("/{}", segments[..literal].join("/"));
                let rest = glob(&segments[literal..].join("/"))
                    .map_err(|e| format!("invalid pattern: {e}"))?;
                Some((PathBuf::from(dir), rest))
            }
            _ => None,
        };
        Ok(Self {
            written: written.to_string(),
            matcher,
            path,
            base,
        })
    }

    fn check(&self, index: usize, value: &str) -> Result<(), Mismatch> {
        let text = if self.path {
            normalise(value, false).map_err(|flaw| Mismatch::ArgPath {
                index,
                value: value.to_string(),
                pattern: self.written.clone(),
                flaw,
            })?
        } else {
            Cow::Borrowed(value)
        };
        if self.matcher.is_match(text.as_ref()) {
            Ok(())
        } else {
            Err(Mismatch::Arg {
                index,
                value: value.to_string(),
                pattern: self.written.clone(),
            })
        }
    }
}

impl ProcessRule {
    /// Parses a rule; an error names the field (`program`, `args[1]`, ...).
    pub fn parse(spec: &ProcessRuleSpec) -> Result<Self, (String, String)> {
        if !spec.program.starts_with('/') {
            return Err((
                "program".into(),
                format!("{:?} is not an absolute path", spec.program),
            ));
        }
        let program = match normalise(&spec.program, true) {
            Ok(p) if !spec.program.contains('\0') => p.into_owned(),
            _ => {
                return Err((
                    "program".into(),
                    "must be a plain absolute path (no NUL, no '..')".into(),
                ));
            }
        };
        let mut args = Vec::new();
        let mut any_further = false;
        for (i, pattern) in spec.args.iter().enumerate() {
            if pattern == ANY_FURTHER_ARGS {
                if i + 1 != spec.args.len() {
                    return Err((
                        format!("args[{i}]"),
                        format!(
                            "{ANY_FURTHER_ARGS:?} (any further arguments) may only be the last pattern"
                        ),
                    ));
                }
                any_further = true;
                continue;
            }
            args.push(ArgPattern::parse(pattern).map_err(|m| (format!("args[{i}]"), m))?);
        }
        let mut env = BTreeSet::new();
        for (i, name) in spec.env.iter().enumerate() {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err((
                    format!("env[{i}]"),
                    format!("{name:?} is not an environment variable name"),
                ));
            }
            env.insert(name.clone());
        }
        let cwd = match &spec.cwd {
            Some(c) => {
                let p = PathBuf::from(c);
                if !p.is_absolute() || has_dot_dot(&p) || c.contains('\0') {
                    return Err((
                        "cwd".into(),
                        format!("{c:?} is not a plain absolute path (no '..')"),
                    ));
                }
                Some(p.components().collect())
            }
            None => None,
        };
        if spec.max_timeout_ms == Some(0) {
            return Err(("max_timeout_ms".into(), "must be more than 0".into()));
        }
        Ok(Self {
            spec: spec.clone(),
            program,
            args,
            any_further,
            env,
            cwd,
        })
    }

    /// The program path this rule allows (normalised).
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The working directory a command without one runs in.
    pub fn cwd(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }

    /// The longest timeout a call may have under this rule.
    pub fn max_timeout_ms(&self) -> Option<u32> {
        self.spec.max_timeout_ms
    }

    /// The rule as written, e.g. to store it.
    pub fn spec(&self) -> &ProcessRuleSpec {
        &self.spec
    }

    /// Whether `dir` (absolute, without `..`) is the rule's cwd or below it.
    pub fn allows_cwd(&self, dir: &Path) -> bool {
        self.cwd.as_ref().is_some_and(|allowed| {
            dir.is_absolute() && !has_dot_dot(dir) && dir.starts_with(allowed)
        })
    }

    /// Whether argument `index` (`value`, which this rule matched) is to be
    /// resolved through the file system before the call: an absolute path
    /// matched by a path pattern. Not for text patterns, relative paths, or
    /// arguments a trailing `**` covers.
    pub fn resolves(&self, index: usize, value: &str) -> bool {
        self.args.get(index).is_some_and(|p| p.path) && value.starts_with('/')
    }

    /// The literal leading directory of argument `index`'s pattern (for
    /// `/opt/scripts/*.ps1`, `/opt/scripts`), which the capability resolves
    /// too, so that a directory that is itself a link still matches.
    pub fn resolved_base(&self, index: usize) -> Option<&Path> {
        self.args
            .get(index)
            .and_then(|p| p.base.as_ref())
            .map(|(dir, _)| dir.as_path())
    }

    /// Whether argument `index` (`value`, which this rule matched as
    /// written) may lead where it really does: `real` (symbolic links
    /// resolved; `None` for a link to nothing), given where the pattern's
    /// literal directory resolves (`real_base`).
    pub fn check_resolved(
        &self,
        index: usize,
        value: &str,
        real: Option<&Path>,
        real_base: Option<&Path>,
    ) -> Result<(), Mismatch> {
        let Some(pattern) = self.args.get(index).filter(|p| p.path) else {
            return Ok(());
        };
        let allowed = real.is_some_and(|real| {
            real.to_str().is_some_and(|r| pattern.matcher.is_match(r))
                || pattern.base.as_ref().is_some_and(|(_, rest)| {
                    real_base
                        .and_then(|base| real.strip_prefix(base).ok())
                        .and_then(Path::to_str)
                        .is_some_and(|rel| rest.is_match(rel))
                })
        });
        if allowed {
            Ok(())
        } else {
            Err(Mismatch::ArgResolved {
                index,
                value: value.to_string(),
                pattern: pattern.written.clone(),
                real: real.map(|r| r.display().to_string()),
            })
        }
    }

    fn check(&self, request: &ProcessRequest<'_>) -> Result<(), Mismatch> {
        if normal_program(request.program)? != self.program {
            return Err(Mismatch::Program {
                program: request.program.to_string(),
            });
        }
        for (index, value) in request.args.iter().enumerate() {
            let Some(pattern) = self.args.get(index) else {
                if self.any_further {
                    break;
                }
                return Err(Mismatch::ArgCount {
                    expected: self.args.len(),
                    got: request.args.len(),
                });
            };
            pattern.check(index, value)?;
        }
        if request.args.len() < self.args.len() {
            return Err(Mismatch::ArgCount {
                expected: self.args.len(),
                got: request.args.len(),
            });
        }
        if let Some(name) = request.env_names.iter().find(|n| !self.env.contains(**n)) {
            return Err(Mismatch::Env {
                name: (*name).to_string(),
            });
        }
        if let Some(cwd) = request.cwd
            && !self.allows_cwd(Path::new(cwd))
        {
            return Err(Mismatch::Cwd {
                cwd: cwd.to_string(),
                allowed: self.spec.cwd.clone(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for ProcessRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "program = {:?}, args = {:?}, env = {:?}",
            self.spec.program, self.spec.args, self.spec.env
        )?;
        if let Some(cwd) = &self.spec.cwd {
            write!(f, ", cwd = {cwd:?}")?;
        }
        if let Some(ms) = self.spec.max_timeout_ms {
            write!(f, ", max_timeout_ms = {ms}")?;
        }
        Ok(())
    }
}

fn has_dot_dot(p: &Path) -> bool {
    p.components().any(|c| matches!(c, Component::ParentDir))
}

/// The program path as grants match it: normalised; a `..` segment is
/// refused. (A backslash is only a name character in a program path: the
/// kernel, not PowerShell, resolves it.)
pub fn normal_program(program: &str) -> Result<Cow<'_, str>, Mismatch> {
    normalise(program, true).map_err(|_| Mismatch::ProgramPath {
        program: program.to_string(),
    })
}

/// The first rule that allows the whole command, or the mismatch of the
/// rule that matched furthest.
pub fn find_rule<'r>(
    rules: &'r [ProcessRule],
    request: &ProcessRequest<'_>,
) -> Result<&'r ProcessRule, Mismatch> {
    normal_program(request.program)?;
    let mut best = Mismatch::Program {
        program: request.program.to_string(),
    };
    for rule in rules {
        match rule.check(request) {
            Ok(()) => return Ok(rule),
            Err(m) if m.rank() > best.rank() => best = m,
            Err(_) => {}
        }
    }
    Err(best)
}

/// A rule, in the grants file syntax, that would allow exactly this command
/// — or, when no rule can (a `..` segment, a backslash in a path argument,
/// a link to nothing), a sentence saying so and what to write instead.
pub fn grant_hint(plugin: &str, request: &ProcessRequest<'_>, mismatch: &Mismatch) -> String {
    let mut args: Vec<String> = request.args.iter().map(|a| globset::escape(a)).collect();
    match mismatch {
        Mismatch::ProgramPath { .. } => {
            return "none: no grant allows a program path with '..'; call the program by its plain path"
                .into();
        }
        Mismatch::ArgPath { index, flaw, .. } => {
            return format!(
                "none: no grant allows argument {} as it is written; {}",
                index + 1,
                match flaw {
                    PathFlaw::DotDot => "write the path without '..'",
                    PathFlaw::Backslash => "write the path with '/' separators",
                }
            );
        }
        Mismatch::ArgResolved {
            index, real: None, ..
        } => {
            return format!(
                "none: argument {} must lead to an existing file or directory, or not be a link",
                index + 1
            );
        }
        Mismatch::ArgResolved {
            index,
            value,
            real: Some(real),
            ..
        } => {
            // Only a pattern matching both the path as written and where it
            // leads allows it: an alternation of the two.
            let literal = |p: &str| globset::escape(p).replace(',', "[,]");
            if let Some(arg) = args.get_mut(*index) {
                *arg = format!("{{{},{}}}", literal(value), literal(real));
            }
        }
        _ => {}
    }
    let program = normal_program(request.program).unwrap_or(Cow::Borrowed(request.program));
    let mut env: Vec<&str> = request.env_names.clone();
    env.sort_unstable();
    env.dedup();
    let mut hint = format!(
        "[[grants.process]] (plugin = {plugin:?}) program = {program:?}, args = {args:?}, env = {env:?}"
    );
    if let Some(cwd) = request.cwd {
        hint.push_str(&format!(", cwd = {cwd:?}"));
    }
    hint
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn rule(toml_text: &str) -> ProcessRule {
        let spec: ProcessRuleSpec = toml::from_str(toml_text).unwrap();
        ProcessRule::parse(&spec).unwrap()
    }

    fn req<'a>(
        program: &'a str,
        args: &'a [String],
        env: &[&'a str],
        cwd: Option<&'a str>,
    ) -> ProcessRequest<'a> {
        ProcessRequest {
            program,
            args,
            env_names: env.to_vec(),
            cwd,
        }
    }

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn argv_patterns_match_element_wise() {
        let r = rule(
            "program = \"/bin/echo\"\nargs = [\"-n\", \"*.txt\", \"**\"]\nenv = [\"K\"]\ncwd = \"/tmp/x\"\n",
        );
        let rules = [r];
        let ok = |a: &[&str]| find_rule(&rules, &req("/bin/echo", &argv(a), &[], None)).is_ok();
        assert!(ok(&["-n", "a.txt"]));
        assert!(
            ok(&["-n", "dir/a.txt", "more", "and more"]),
            "trailing ** and * crosses /"
        );
        assert!(!ok(&["-n"]), "too few");
        assert!(!ok(&["-e", "a.txt"]), "first differs");
        let a = argv(&["-n", "a.csv"]);
        let m = find_rule(&rules, &req("/bin/echo", &a, &[], None)).unwrap_err();
        assert!(m.to_string().starts_with("argument 2:"), "{m}");
        let exact = [rule("program = \"/bin/echo\"\nargs = [\"hi\"]\n")];
        let a = argv(&["hi", "there"]);
        let m = find_rule(&exact, &req("/bin/echo", &a, &[], None)).unwrap_err();
        assert_eq!(
            m,
            Mismatch::ArgCount {
                expected: 1,
                got: 2
            }
        );
        assert!(m.to_string().starts_with("argument 2:"), "{m}");
        let none = [rule("program = \"/bin/true\"\n")];
        assert!(find_rule(&none, &req("/bin/true", &[], &[], None)).is_ok());
    }

    #[test]
    fn env_and_cwd_are_checked_and_reported() {
        let rules = [rule(
            "program = \"/bin/echo\"\nargs = [\"**\"]\nenv = [\"K\"]\ncwd = \"/tmp/x\"\n",
        )];
        let a = argv(&[]);
        let check = |env: &[&str], cwd: Option<&str>| {
            find_rule(&rules, &req("/bin/echo", &a, env, cwd)).map(|_| ())
        };
        assert!(check(&["K"], Some("/tmp/x")).is_ok());
        assert!(check(&[], Some("/tmp/x/y/z")).is_ok());
        assert!(
            matches!(check(&["K", "PATH"], None), Err(Mismatch::Env { name }) if name == "PATH")
        );
        assert!(
            matches!(check(&[], Some("/tmp/xy")), Err(Mismatch::Cwd { .. })),
            "prefix is by component"
        );
        assert!(matches!(
            check(&[], Some("/tmp/x/../../etc")),
            Err(Mismatch::Cwd { .. })
        ));
        assert!(matches!(
            check(&[], Some("relative")),
            Err(Mismatch::Cwd { .. })
        ));
        let other = find_rule(&rules, &req("/bin/sh", &a, &[], None)).unwrap_err();
        assert!(other.to_string().starts_with("program:"), "{other}");
        let no_cwd = [rule("program = \"/bin/echo\"\n")];
        let m = find_rule(&no_cwd, &req("/bin/echo", &a, &[], Some("/tmp"))).unwrap_err();
        assert!(m.to_string().contains("allows no working directory"), "{m}");
    }

    #[test]
    fn the_furthest_match_is_reported_and_the_hint_allows_the_command() {
        let rules = [
            rule("program = \"/bin/echo\"\nargs = [\"a\"]\n"),
            rule("program = \"/bin/echo\"\nargs = [\"b\"]\nenv = [\"K\"]\n"),
        ];
        let a = argv(&["b"]);
        let r = req("/bin/echo", &a, &["K", "X"], None);
        let m = find_rule(&rules, &r).unwrap_err();
        assert_eq!(m, Mismatch::Env { name: "X".into() });
        let star = argv(&["*"]);
        let r = req("/bin/echo", &star, &["X"], Some("/srv"));
        let hint = grant_hint("p", &r, &find_rule(&rules, &r).unwrap_err());
        assert_eq!(
            hint,
            "[[grants.process]] (plugin = \"p\") program = \"/bin/echo\", args = [\"[*]\"], env = [\"X\"], cwd = \"/srv\""
        );
        // The hint's pattern matches the literal argument and nothing else.
        let hinted = rule("program = \"/bin/echo\"\nargs = [\"[*]\"]\n");
        assert!(hinted.check(&req("/bin/echo", &star, &[], None)).is_ok());
        let x = argv(&["x"]);
        assert!(hinted.check(&req("/bin/echo", &x, &[], None)).is_err());
    }

    fn allowed(rule: &ProcessRule, args: &[&str]) -> Result<(), Mismatch> {
        let a = argv(args);
        rule.check(&req(rule.program(), &a, &[], None))
    }

    /// The README's own shape, and every way around it seen so far.
    #[test]
    fn path_arguments_match_as_normalised_paths_and_never_across_dot_dot() {
        let r = rule(
            "program = \"/usr/bin/pwsh\"\nargs = [\"-File\", \"/opt/scripts/*.ps1\", \"**\"]\n",
        );
        for ok in [
            "/opt/scripts/report.ps1",
            "/opt/scripts/sub/report.ps1",
            "/opt/scripts/./report.ps1",
            "/opt//scripts/report.ps1",
            "//opt/scripts/report.ps1",
            // Percent-encoding is not decoded by the OS: a name, inside.
            "/opt/scripts/%2e%2e/x.ps1",
        ] {
            assert!(allowed(&r, &["-File", ok]).is_ok(), "{ok}");
        }
        for (bad, flaw) in [
            ("/opt/scripts/../../tmp/x.ps1", PathFlaw::DotDot),
            ("/opt/scripts/sub/../../../tmp/x.ps1", PathFlaw::DotDot),
            ("/opt/scripts/x.ps1/..", PathFlaw::DotDot),
            ("/opt/scripts/..\\..\\tmp\\x.ps1", PathFlaw::Backslash),
            ("/opt/scripts\\x.ps1", PathFlaw::Backslash),
        ] {
            let m = allowed(&r, &["-File", bad]).unwrap_err();
            assert_eq!(
                m,
                Mismatch::ArgPath {
                    index: 1,
                    value: bad.into(),
                    pattern: "/opt/scripts/*.ps1".into(),
                    flaw
                },
                "{bad}"
            );
            assert!(m.to_string().starts_with("argument 2: "), "{m}");
        }
        assert!(
            allowed(&r, &["-File", "/opt/scripts/a.ps1", "../x", "C:\\y"]).is_ok(),
            "arguments a trailing ** allows are data, not checked as paths"
        );
        // `*` may no longer match a `.` or an empty segment.
        let one_down = rule("program = \"/bin/sh\"\nargs = [\"/opt/scripts/*/run.sh\"]\n");
        assert!(allowed(&one_down, &["/opt/scripts/job/run.sh"]).is_ok());
        assert!(allowed(&one_down, &["/opt/scripts/./run.sh"]).is_err());
        assert!(allowed(&one_down, &["/opt/scripts//run.sh"]).is_err());
        // Patterns with a path after a prefix, relative paths and URLs are
        // paths too; text patterns are text.
        let mixed = rule(
            "program = \"/bin/app\"\nargs = [\"--config=/etc/app/*.toml\", \"reports/*.csv\", \"https://example.com/*\", \"*.txt\"]\n",
        );
        assert!(
            allowed(
                &mixed,
                &[
                    "--config=/etc/app/a.toml",
                    "./reports/x.csv",
                    "https://example.com/a",
                    "../a.txt"
                ]
            )
            .is_ok()
        );
        for (i, bad) in [
            (0, "--config=/etc/app/../../root/a.toml"),
            (1, "reports/../../x.csv"),
            (2, "https://example.com/../admin"),
        ] {
            let mut args = vec![
                "--config=/etc/app/a.toml",
                "reports/x.csv",
                "https://example.com/a",
                "a.txt",
            ];
            args[i] = bad;
            assert!(
                matches!(allowed(&mixed, &args), Err(Mismatch::ArgPath { index, .. }) if index == i),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_program_is_matched_normalised_and_never_across_dot_dot() {
        let rules = [rule("program = \"/usr/bin/pwsh\"\nargs = [\"**\"]\n")];
        let none: Vec<String> = Vec::new();
        assert!(find_rule(&rules, &req("/usr//bin/./pwsh", &none, &[], None)).is_ok());
        let m = find_rule(&rules, &req("/usr/bin/../bin/pwsh", &none, &[], None)).unwrap_err();
        assert!(matches!(m, Mismatch::ProgramPath { .. }), "{m}");
        assert!(m.to_string().starts_with("program: "), "{m}");
        assert_eq!(
            rule("program = \"/usr//bin/pwsh\"\n").program(),
            "/usr/bin/pwsh"
        );
    }

    #[test]
    fn where_an_argument_really_leads_must_match_too() {
        let r = rule(
            "program = \"/usr/bin/pwsh\"\nargs = [\"-File\", \"/opt/scripts/*.ps1\", \"**\"]\n",
        );
        assert!(r.resolves(1, "/opt/scripts/a.ps1"));
        assert!(!r.resolves(0, "-File"), "a text pattern");
        assert!(!r.resolves(2, "/etc/passwd"), "covered by **");
        assert_eq!(r.resolved_base(1), Some(Path::new("/opt/scripts")));
        let check = |real: Option<&str>, base: Option<&str>| {
            r.check_resolved(
                1,
                "/opt/scripts/a.ps1",
                real.map(Path::new),
                base.map(Path::new),
            )
        };
        assert!(check(Some("/opt/scripts/a.ps1"), Some("/opt/scripts")).is_ok());
        assert!(
            check(Some("/opt/scripts/v2/a.ps1"), None).is_ok(),
            "a link inside"
        );
        assert!(
            check(Some("/srv/releases/7/a.ps1"), Some("/srv/releases/7")).is_ok(),
            "the granted directory is itself a link"
        );
        let m = check(Some("/tmp/evil.ps1"), Some("/opt/scripts")).unwrap_err();
        assert!(
            m.to_string()
                .contains("leads through a symbolic link to \"/tmp/evil.ps1\""),
            "{m}"
        );
        let m = check(None, Some("/opt/scripts")).unwrap_err();
        assert!(m.to_string().contains("a symbolic link to nothing"), "{m}");
        // The hint's alternation allows both the written and the real path.
        let a = argv(&["-File", "/opt/scripts/a.ps1"]);
        let request = req("/usr/bin/pwsh", &a, &[], None);
        let hint = grant_hint(
            "p",
            &request,
            &check(Some("/tmp/ev,il.ps1"), None).unwrap_err(),
        );
        let args = hint
            .split("args = ")
            .nth(1)
            .unwrap()
            .split(", env")
            .next()
            .unwrap();
        let spec: ProcessRuleSpec =
            toml::from_str(&format!("program = \"/usr/bin/pwsh\"\nargs = {args}\n")).unwrap();
        let hinted = ProcessRule::parse(&spec).unwrap();
        assert!(hinted.check(&request).is_ok(), "{hint}");
        assert!(
            hinted
                .check_resolved(
                    1,
                    "/opt/scripts/a.ps1",
                    Some(Path::new("/tmp/ev,il.ps1")),
                    None
                )
                .is_ok(),
            "{hint}"
        );
    }

    #[test]
    fn hints_for_paths_no_grant_can_allow_say_so() {
        let rules = [rule("program = \"/bin/cat\"\nargs = [\"/srv/*\"]\n")];
        let a = argv(&["/srv/../etc/shadow"]);
        let r = req("/bin/cat", &a, &[], None);
        let hint = grant_hint("p", &r, &find_rule(&rules, &r).unwrap_err());
        assert!(
            hint.starts_with("none: ") && hint.contains("without '..'"),
            "{hint}"
        );
        // An ordinary mismatch's hint is a rule that parses and allows the
        // command, path arguments included.
        let a = argv(&["/srv//data/./a b.txt"]);
        let r = req("/bin/cat", &a, &[], None);
        let m =
            find_rule(&[rule("program = \"/bin/cat\"\nargs = [\"/opt/*\"]\n")], &r).unwrap_err();
        let hint = grant_hint("p", &r, &m);
        let args = hint
            .split("args = ")
            .nth(1)
            .unwrap()
            .split(", env")
            .next()
            .unwrap();
        let spec: ProcessRuleSpec =
            toml::from_str(&format!("program = \"/bin/cat\"\nargs = {args}\n")).unwrap();
        assert!(
            ProcessRule::parse(&spec).unwrap().check(&r).is_ok(),
            "{hint}"
        );
    }

    #[test]
    fn normalise_reads_paths_as_the_os_does() {
        let n = |t: &str| normalise(t, false).map(Cow::into_owned);
        assert_eq!(n("/a/./b//c/").unwrap(), "/a/b/c");
        assert_eq!(n("/").unwrap(), "/");
        assert_eq!(n("//").unwrap(), "/");
        assert_eq!(n("/./.").unwrap(), "/");
        assert_eq!(n("./a/b").unwrap(), "a/b");
        assert_eq!(n("a/").unwrap(), "a");
        assert_eq!(n("--x=/a/./b").unwrap(), "--x=/a/b");
        assert_eq!(n("/a/...").unwrap(), "/a/...", "three dots are a name");
        assert_eq!(n("/a/..b").unwrap(), "/a/..b");
        assert_eq!(n("../a"), Err(PathFlaw::DotDot));
        assert_eq!(n("/a/.."), Err(PathFlaw::DotDot));
        assert_eq!(n("/a\\b"), Err(PathFlaw::Backslash));
        assert!(matches!(normalise("/a/b", false), Ok(Cow::Borrowed(_))));
    }

    proptest::proptest! {
        /// Whatever an argument looks like, if the README's pattern allows
        /// it, the path it names — read with `/` and `\\` as separators and
        /// `..` going up, as PowerShell would — stays below /opt/scripts.
        #[test]
        fn an_allowed_path_never_escapes_the_granted_directory(
            segments in proptest::collection::vec(
                proptest::sample::select(vec!["opt", "scripts", "..", ".", "", "tmp", "x.ps1", "a\\..", "..\\x.ps1", "%2e%2e"]),
                1..8,
            ),
            tail in proptest::sample::select(vec!["x.ps1", "/x.ps1", "/../x.ps1", "\\..\\x.ps1"]),
        ) {
            let r = rule("program = \"/usr/bin/pwsh\"\nargs = [\"/opt/scripts/*.ps1\"]\n");
            let arg = format!("/opt/scripts/{}{tail}", segments.join("/"));
            if allowed(&r, &[&arg]).is_ok() {
                let mut stack: Vec<&str> = Vec::new();
                for part in arg.split(['/', '\\']) {
                    match part {
                        "" | "." => {}
                        ".." => { stack.pop(); }
                        p => stack.push(p),
                    }
                }
                proptest::prop_assert!(
                    stack.len() > 2 && stack[0] == "opt" && stack[1] == "scripts",
                    "{} escapes to /{}", arg, stack.join("/")
                );
            }
        }
    }

    #[test]
    fn bad_rules_name_their_field() {
        let bad = |t: &str| {
            let spec: ProcessRuleSpec = toml::from_str(t).unwrap();
            ProcessRule::parse(&spec).unwrap_err().0
        };
        assert_eq!(bad("program = \"echo\""), "program");
        assert_eq!(
            bad("program = \"/bin/echo\"\nargs = [\"**\", \"x\"]"),
            "args[0]"
        );
        assert_eq!(bad("program = \"/bin/echo\"\nargs = [\"[\"]"), "args[0]");
        assert_eq!(bad("program = \"/bin/echo\"\nenv = [\"A=B\"]"), "env[0]");
        assert_eq!(bad("program = \"/bin/echo\"\ncwd = \"tmp\""), "cwd");
        assert_eq!(
            bad("program = \"/bin/echo\"\nargs = [\"/opt/scripts/../*\"]"),
            "args[0]"
        );
        assert_eq!(bad("program = \"/usr/bin/../bin/echo\""), "program");
        assert_eq!(
            bad("program = \"/bin/echo\"\nmax_timeout_ms = 0"),
            "max_timeout_ms"
        );
    }

    #[test]
    fn effective_rules_need_an_ask_for_the_program() {
        use crate::capabilities::grants::{AskKind, Asks, GrantSpec, Grants};
        #[derive(Deserialize)]
        struct File {
            grants: Vec<GrantSpec>,
        }
        let parse = |t: &str| {
            let f: File = toml::from_str(t).unwrap();
            Grants::parse(&f.grants, "grants")
        };
        let g = parse("[[grants]]\nplugin = \"p\"\n[[grants.process]]\nprogram = \"/bin/echo\"\nargs = [\"**\"]\n")
            .unwrap();
        let digest = crate::contract::Digest::of(b"x");
        let a = argv(&["hi"]);
        let r = req("/bin/echo", &a, &[], None);
        let unasked = g.effective("p", &digest, &Asks::default());
        let d = unasked.check_process(&r).unwrap_err();
        assert!(d.reason.contains("did not ask"), "{d}");
        assert_eq!(d.target, "/bin/echo hi");
        let mut asks = Asks::default();
        asks.add(AskKind::Process, "/usr/*").unwrap();
        assert!(g.effective("p", &digest, &asks).check_process(&r).is_err());
        asks.add(AskKind::Process, "/bin/*").unwrap();
        assert!(g.effective("p", &digest, &asks).check_process(&r).is_ok());
        assert!(g.effective("q", &digest, &asks).check_process(&r).is_err());
        let errors = parse("[[grants]]\nplugin = \"p\"\n[[grants.process]]\nprogram = \"/bin/echo\"\nargs = [\"[\"]\n")
            .unwrap_err();
        assert_eq!(errors[0].path, "grants[0].process[0].args[0]");
    }

    #[test]
    fn specs_round_trip_through_json() {
        let spec: ProcessRuleSpec =
            toml::from_str("program = \"/bin/echo\"\nargs = [\"**\"]\nenv = [\"K\"]\n").unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        let back: ProcessRuleSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(spec, back);
    }
}
