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
//! hint that would allow exactly this command.

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};
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
    args: Vec<GlobMatcher>,
    /// The pattern ended with [`ANY_FURTHER_ARGS`].
    any_further: bool,
    env: BTreeSet<String>,
    cwd: Option<PathBuf>,
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
    /// Argument `index` (0-based) does not match its pattern.
    Arg {
        index: usize,
        value: String,
        pattern: String,
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
            Mismatch::Program { .. } => (0, 0),
            Mismatch::Arg { index, .. } => (1, *index),
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
            Mismatch::Arg {
                index,
                value,
                pattern,
            } => write!(
                f,
                "argument {}: {value:?} does not match the pattern {pattern:?}",
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

impl ProcessRule {
    /// Parses a rule; an error names the field (`program`, `args[1]`, ...).
    pub fn parse(spec: &ProcessRuleSpec) -> Result<Self, (String, String)> {
        if !spec.program.starts_with('/') {
            return Err((
                "program".into(),
                format!("{:?} is not an absolute path", spec.program),
            ));
        }
        if spec.program.contains('\0') || has_dot_dot(Path::new(&spec.program)) {
            return Err((
                "program".into(),
                "must be a plain absolute path (no NUL, no '..')".into(),
            ));
        }
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
            let glob = GlobBuilder::new(pattern)
                .literal_separator(false)
                .backslash_escape(true)
                .build()
                .map_err(|e| (format!("args[{i}]"), format!("invalid pattern: {e}")))?;
            args.push(glob.compile_matcher());
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
            args,
            any_further,
            env,
            cwd,
        })
    }

    /// The program path this rule allows.
    pub fn program(&self) -> &str {
        &self.spec.program
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

    fn check(&self, request: &ProcessRequest<'_>) -> Result<(), Mismatch> {
        if request.program != self.spec.program {
            return Err(Mismatch::Program {
                program: request.program.to_string(),
            });
        }
        for (index, value) in request.args.iter().enumerate() {
            let Some(matcher) = self.args.get(index) else {
                if self.any_further {
                    break;
                }
                return Err(Mismatch::ArgCount {
                    expected: self.args.len(),
                    got: request.args.len(),
                });
            };
            if !matcher.is_match(value) {
                return Err(Mismatch::Arg {
                    index,
                    value: value.clone(),
                    pattern: matcher.glob().glob().to_string(),
                });
            }
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

/// The first rule that allows the whole command, or the mismatch of the
/// rule that matched furthest.
pub fn find_rule<'r>(
    rules: &'r [ProcessRule],
    request: &ProcessRequest<'_>,
) -> Result<&'r ProcessRule, Mismatch> {
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

/// A rule, in the grants file syntax, that would allow exactly this command.
pub fn grant_hint(plugin: &str, request: &ProcessRequest<'_>) -> String {
    let args: Vec<String> = request.args.iter().map(|a| globset::escape(a)).collect();
    let mut env: Vec<&str> = request.env_names.clone();
    env.sort_unstable();
    env.dedup();
    let mut hint = format!(
        "[[grants.process]] (plugin = {plugin:?}) program = {:?}, args = {args:?}, env = {env:?}",
        request.program
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
        let hint = grant_hint("p", &req("/bin/echo", &star, &["X"], Some("/srv")));
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
            bad("program = \"/bin/echo\"\nmax_timeout_ms = 0"),
            "max_timeout_ms"
        );
    }

    #[test]
    fn effective_rules_need_an_ask_for_the_program() {
        use crate::grants::{AskKind, Asks, GrantSpec, Grants};
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
        let digest = crate::runtime::Digest::of(b"x");
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
