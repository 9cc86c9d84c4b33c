//! Variable references in step configs: `${...}`.
//!
//! A step's `config` may refer to values that only exist once the job runs:
//! the execution's parameters, the outputs of earlier steps, facts about the
//! execution and the job, and secrets. Before every attempt of a step the
//! engine resolves its config: each `${...}` expression is replaced by the
//! value it refers to. This module is the complete reference for that syntax.
//!
//! # Expressions
//!
//! An expression is `${`, a *root*, any number of *path segments*, and `}`:
//!
//! ```text
//! ${params.customer_id}
//! ${steps.extract.output.rows[0].id}
//! ${steps.extract.output.rows[-1]["created.at"]}
//! ${secrets.api_token}
//! ```
//!
//! Whitespace between the braces and the expression is ignored
//! (`${ params.x }` is `${params.x}`); whitespace anywhere else inside an
//! expression is an error.
//!
//! ## Roots
//!
//! | Root        | Refers to                                                       |
//! |-------------|-----------------------------------------------------------------|
//! | `params`    | the parameters the execution was started with                   |
//! | `steps`     | the steps that already ran in this execution, by step id        |
//! | `execution` | the current execution (its id and other facts the engine adds)  |
//! | `job`       | the job being run                                               |
//! | `secrets`   | a named secret from the host's secret store                     |
//!
//! Any other root is an error. Which keys exist below `params`, `steps`,
//! `execution` and `job` is decided by the engine that builds the scope; a
//! root the engine provides nothing for is empty.
//!
//! ## Path segments
//!
//! | Segment         | Meaning                                                           |
//! |-----------------|-------------------------------------------------------------------|
//! | `.name`         | the key `name` of an object; `name` is `[A-Za-z_][A-Za-z0-9_-]*`  |
//! | `[N]`           | element `N` (counting from 0) of an array                         |
//! | `[-N]`          | element `N` counting from the end of an array: `[-1]` is the last |
//! | `["any key"]`   | the key `any key` of an object, for keys that are not plain names |
//! | `['any key']`   | the same, with single quotes                                      |
//!
//! Inside a quoted key, `\"`, `\'` and `\\` stand for `"`, `'` and `\`; any
//! other backslash is an error. Every other character, including `.`, `[`,
//! `]`, `}` and spaces, is taken as is: `${params["a.b"]}` is the key `a.b`,
//! not the key `b` inside the key `a`. An object key that looks like a number
//! is a key, not an index: write `["0"]`, not `[0]`.
//!
//! ## Secrets
//!
//! A secret reference is `secrets.` followed by exactly one name, made of
//! `[A-Za-z0-9_-]`; nothing may follow the name (a secret is a string, it has
//! no fields). A name that also contains dots is written in the quoted form,
//! `${secrets["db.password"]}`, which accepts `[A-Za-z0-9_.-]`. The secret's
//! value is read when the step runs and inserted as a string; it never
//! appears in an error message.
//!
//! # Where expressions are resolved
//!
//! Only string *values* are resolved, at any depth of arrays and objects.
//! Object keys are never resolved, and numbers, booleans and nulls are left as
//! they are.
//!
//! ## A whole string keeps the value's type
//!
//! When a string consists of exactly one expression and nothing else (not
//! even spaces outside the braces), it is replaced by the referenced JSON
//! value itself: a number stays a number, an object stays an object, `null`
//! stays `null`.
//!
//! ```text
//! config:  {"id": "${steps.extract.output.rows[0].id}", "filter": "${params.filter}"}
//! scope:   rows[0].id = 42, params.filter = {"active": true}
//! result:  {"id": 42, "filter": {"active": true}}
//! ```
//!
//! ## Embedded expressions make a string
//!
//! When an expression is surrounded by other text, or a string holds several
//! expressions, the result is a string: a referenced string is inserted as is
//! (without quotes), any other value as compact JSON text (`3`, `true`,
//! `null`, `{"a":1}`, `[1,2]`).
//!
//! ```text
//! "id-${params.n}"                 with n = 7        →  "id-7"
//! "${params.first} ${params.last}" with two strings  →  "Ada Lovelace"
//! "filter=${params.filter}"        with an object    →  "filter={\"active\":true}"
//! ```
//!
//! ## Never into code
//!
//! A plugin marks the fields of its config that it runs as code — the `sql`
//! step's `query` and script statements, the `powershell` step's inline
//! `script` — and no expression may appear there, nor stand for a value
//! that holds such a field (`"script": "${params.statements}"`): a value
//! spliced into SQL text or a script rewrites it. Job validation refuses
//! such a job with the form the plugin takes values in instead (for `sql`,
//! a placeholder and `"params": ["${params.region}"]`), and the engine
//! checks again before every attempt ([`crate::runtime::literal`]).
//!
//! ## Literal `${`
//!
//! `$${` is an escape for a literal `${` and never starts an expression:
//! `"costs $${price}"` becomes `"costs ${price}"`. A `$` not followed by `{`,
//! and a `{` not preceded by `$`, are ordinary text, so `"$5"`, `"{}"` and
//! `"$$"` stay as they are. Text is read from left to right, so in `$$${`
//! the first `$` is ordinary text and `$${` is the escape: the result is
//! `$${`.
//!
//! # Errors
//!
//! Every problem is reported, not just the first, each with the JSON path of
//! the string in the config where it was found (`url`,
//! `headers.Authorization`, `items[1]`, `["odd key"]`; empty for a config
//! that is itself a string), and a message that starts with the expression
//! as written:
//!
//! ```text
//! ${params.regon}: no key "regon"
//! ${steps.extract.output.rows[5].id}: index 5 is out of range (array has 2 elements)
//! ${steps.load.output}: step "load" has not run in this execution
//! ${params.name[0]}: params.name is a string, not an array, so it cannot be indexed with [0]
//! ${params.n.x}: params.n is a number, not an object, so it has no key "x"
//! ${param.x}: unknown root "param"; an expression starts with params, steps, execution, job or secrets
//! ${secrets.a.b}: a secret reference is secrets.<name> with nothing after the name; write secrets["a.b"] for a name with dots
//! ${}: empty expression; write a reference such as ${params.name}
//! ${params.x: unterminated expression, no closing "}" (write $${ for a literal ${)
//! ```
//!
//! A reference to something that does not exist is an error, never `null`;
//! an existing `null` resolves to `null`.

use meridian_json_path::JsonPath;
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};

/// One parsed `${...}` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Where the path starts.
    pub root: Root,
    /// The segments after the root, in order; for [`Root::Secrets`] exactly
    /// one [`Segment::Key`], the secret's name.
    pub path: Vec<Segment>,
    /// The source text inside `${ }`, trimmed.
    pub text: String,
}

impl Reference {
    /// `${text}`, the expression as shown in messages.
    fn shown(&self) -> String {
        format!("${{{}}}", self.text)
    }
}

/// The first word of an expression: which part of the scope it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// `params`: the execution's parameters.
    Params,
    /// `steps`: the steps that already ran, by step id.
    Steps,
    /// `execution`: the current execution.
    Execution,
    /// `job`: the job being run.
    Job,
    /// `secrets`: a named secret, read through the caller's lookup.
    Secrets,
}

impl Root {
    const ALL: [Root; 5] = [
        Root::Params,
        Root::Steps,
        Root::Execution,
        Root::Job,
        Root::Secrets,
    ];

    fn name(self) -> &'static str {
        match self {
            Root::Params => "params",
            Root::Steps => "steps",
            Root::Execution => "execution",
            Root::Job => "job",
            Root::Secrets => "secrets",
        }
    }

    fn from_name(name: &str) -> Option<Root> {
        Root::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// One step of a path after the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// `.name`, `["name"]` or `['name']`: a key of an object.
    Key(String),
    /// `[N]`: an array element; negative counts from the end (`-1` is last).
    Index(i64),
}

/// A problem found while parsing or resolving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarIssue {
    /// JSON path into the config value of the string where the problem was
    /// found: `url`, `headers.Authorization`, `rows[2].name`, `["odd key"]`;
    /// empty for the root value.
    pub path: String,
    /// What is wrong, starting with the expression as written.
    pub message: String,
}

/// Why a secret could not be read (returned by the caller's lookup).
#[derive(Debug, Clone)]
pub struct SecretError {
    /// Shown to the job author after the expression; must not contain the
    /// secret's value.
    pub message: String,
}

/// Every reference in every string of `config`, with the JSON path of the
/// string it is in (in document order); syntax errors come back as issues.
/// Used by job validation to check roots and names without running anything.
pub fn references(config: &Value) -> (Vec<(String, Reference)>, Vec<VarIssue>) {
    let mut found = Vec::new();
    let mut issues = Vec::new();
    let mut path = Vec::new();
    collect_references(config, &mut path, &mut found, &mut issues);
    (found, issues)
}

fn collect_references<'a>(
    value: &'a Value,
    path: &mut Vec<PathSeg<'a>>,
    found: &mut Vec<(String, Reference)>,
    issues: &mut Vec<VarIssue>,
) {
    match value {
        Value::String(s) => {
            if !s.contains("${") {
                return;
            }
            let scanned = scan(s);
            if scanned.pieces.iter().any(|p| matches!(p, Piece::Expr(_)))
                || !scanned.errors.is_empty()
            {
                let at = render_path(path);
                for message in scanned.errors {
                    issues.push(VarIssue {
                        path: at.clone(),
                        message,
                    });
                }
                for piece in scanned.pieces {
                    if let Piece::Expr(r) = piece {
                        found.push((at.clone(), r));
                    }
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(PathSeg::Index(i));
                collect_references(item, path, found, issues);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                path.push(PathSeg::Key(k));
                collect_references(item, path, found, issues);
                path.pop();
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The expressions of one string, in order (those with syntax errors left
/// out; [`references`] reports them). `$${` is text, not an expression.
pub fn expressions(s: &str) -> Vec<Reference> {
    if !s.contains("${") {
        return Vec::new();
    }
    scan(s)
        .pieces
        .into_iter()
        .filter_map(|p| match p {
            Piece::Expr(r) => Some(r),
            Piece::Text(_) => None,
        })
        .collect()
}

/// Resolves every expression in `config` against `scope` (an object with
/// keys `"params"`, `"steps"`, `"execution"`, `"job"`; a missing or null
/// root key means that root is empty), calling `secret(name)` for each
/// `secrets.<name>` reference (once per distinct name per call: results,
/// failures included, are cached within the call). Returns the resolved
/// value, or every issue found (not just the first). Secret values are
/// inserted as JSON strings (raw into embedded strings).
pub fn resolve(
    config: &Value,
    scope: &Value,
    secret: &mut dyn FnMut(&str) -> Result<String, SecretError>,
) -> Result<Value, Vec<VarIssue>> {
    let mut resolver = Resolver {
        scope,
        secret,
        cache: HashMap::new(),
        issues: Vec::new(),
    };
    let mut path = Vec::new();
    let out = resolver.walk(config, &mut path);
    if resolver.issues.is_empty() {
        Ok(out)
    } else {
        Err(resolver.issues)
    }
}

/// The secret names `config` references (deduplicated, sorted), so the
/// caller can check grants up front. Expressions with syntax errors are
/// skipped; [`references`] reports them.
pub fn secret_names(config: &Value) -> Vec<String> {
    let (found, _) = references(config);
    let names: BTreeSet<String> = found
        .into_iter()
        .filter(|(_, r)| r.root == Root::Secrets)
        .filter_map(|(_, r)| match r.path.into_iter().next() {
            Some(Segment::Key(name)) => Some(name),
            _ => None,
        })
        .collect();
    names.into_iter().collect()
}

/// Looks a reference up in a scope (no secrets: a `secrets` reference is an
/// error here). What [`resolve`] uses; public so the engine can evaluate
/// single expressions. The error is a complete message naming the
/// expression.
pub fn lookup(reference: &Reference, scope: &Value) -> Result<Value, String> {
    let shown = reference.shown();
    if reference.root == Root::Secrets {
        return Err(format!(
            "{shown}: secrets are not part of the scope and cannot be looked up here"
        ));
    }
    let empty = Value::Object(Map::new());
    let mut current = match scope.get(reference.root.name()) {
        None | Some(Value::Null) => &empty,
        Some(v) => v,
    };
    // Where the walk has got to, in the scope (an index from the end as
    // the element it reached).
    let mut walked = JsonPath::root().key(reference.root.name());
    for (i, segment) in reference.path.iter().enumerate() {
        match segment {
            Segment::Key(key) => match current {
                Value::Object(map) => match map.get(key) {
                    Some(v) => {
                        current = v;
                        walked.push_key(key);
                    }
                    None if reference.root == Root::Steps && i == 0 => {
                        return Err(format!(
                            "{shown}: step {} has not run in this execution",
                            quote(key)
                        ));
                    }
                    None => return Err(format!("{shown}: no key {}", quote(key))),
                },
                other => {
                    return Err(format!(
                        "{shown}: {walked} is {}, not an object, so it has no key {}",
                        type_name(other),
                        quote(key)
                    ));
                }
            },
            Segment::Index(index) => match current {
                Value::Array(items) => {
                    let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
                    let at = if *index < 0 { len + index } else { *index };
                    match usize::try_from(at)
                        .ok()
                        .and_then(|at| Some((at, items.get(at)?)))
                    {
                        Some((at, v)) => {
                            current = v;
                            walked.push_index(at);
                        }
                        None => {
                            let plural = if items.len() == 1 { "" } else { "s" };
                            return Err(format!(
                                "{shown}: index {index} is out of range (array has {} element{plural})",
                                items.len()
                            ));
                        }
                    }
                }
                Value::Object(_) => {
                    return Err(format!(
                        "{shown}: {walked} is an object, not an array, so it cannot be indexed with [{index}]; for a key named \"{index}\" write [\"{index}\"]"
                    ));
                }
                other => {
                    return Err(format!(
                        "{shown}: {walked} is {}, not an array, so it cannot be indexed with [{index}]",
                        type_name(other)
                    ));
                }
            },
        }
    }
    Ok(current.clone())
}

/// Parses the text between `${` and `}` (surrounding whitespace is
/// ignored). The error is a complete message naming the expression.
pub fn parse_reference(text: &str) -> Result<Reference, String> {
    let text = text.trim();
    let shown = format!("${{{text}}}");
    if text.is_empty() {
        return Err(format!(
            "{shown}: empty expression; write a reference such as ${{params.name}}"
        ));
    }
    let mut p = Parser { s: text, pos: 0 };
    let root_name = p.take_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if root_name.is_empty() {
        return Err(format!(
            "{shown}: an expression starts with params, steps, execution, job or secrets"
        ));
    }
    let Some(root) = Root::from_name(root_name) else {
        return Err(format!(
            "{shown}: unknown root {}; an expression starts with params, steps, execution, job or secrets",
            quote(root_name)
        ));
    };
    let fail = |p: &Parser<'_>, what: String| -> String {
        format!("{shown}: {what} after \"{}\"", p.consumed())
    };
    if root == Root::Secrets {
        return parse_secret(text, &shown, &mut p).map(|name| Reference {
            root,
            path: vec![Segment::Key(name)],
            text: text.to_string(),
        });
    }
    let mut path = Vec::new();
    while let Some(c) = p.peek() {
        match c {
            '.' => {
                p.bump();
                match p.peek() {
                    Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
                    Some(c) if c.is_ascii_digit() || c == '-' => {
                        return Err(fail(
                            &p,
                            format!(
                                "a name cannot start with '{c}'; write [N] for an array index or [\"...\"] for such a key"
                            ),
                        ));
                    }
                    Some(c) => {
                        return Err(fail(
                            &p,
                            format!("unexpected {} (expected a name)", shown_char(c)),
                        ));
                    }
                    None => return Err(fail(&p, "missing name".to_string())),
                }
                let name = p.take_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                path.push(Segment::Key(name.to_string()));
            }
            '[' => {
                p.bump();
                let segment = match p.peek() {
                    Some(q @ ('"' | '\'')) => {
                        p.bump();
                        Segment::Key(p.quoted(q).map_err(|what| fail(&p, what))?)
                    }
                    Some(c) if c.is_ascii_digit() || c == '-' => {
                        Segment::Index(p.integer().map_err(|what| fail(&p, what))?)
                    }
                    Some(c) => {
                        return Err(fail(
                            &p,
                            format!(
                                "unexpected {} (expected an index like [0] or a quoted key like [\"key\"])",
                                shown_char(c)
                            ),
                        ));
                    }
                    None => return Err(fail(&p, "missing index or quoted key".to_string())),
                };
                match p.peek() {
                    Some(']') => p.bump(),
                    Some(c) => {
                        return Err(fail(
                            &p,
                            format!("unexpected {} (expected \"]\")", shown_char(c)),
                        ));
                    }
                    None => return Err(fail(&p, "missing \"]\"".to_string())),
                }
                path.push(segment);
            }
            c => {
                return Err(fail(
                    &p,
                    format!(
                        "unexpected {} (expected \".name\", \"[N]\" or \"[\\\"key\\\"]\")",
                        shown_char(c)
                    ),
                ));
            }
        }
    }
    Ok(Reference {
        root,
        path,
        text: text.to_string(),
    })
}

/// The rest of a `secrets` expression after the root: exactly one name.
fn parse_secret(text: &str, shown: &str, p: &mut Parser<'_>) -> Result<String, String> {
    let usage = "a secret reference is secrets.<name>";
    let name = match p.peek() {
        None => return Err(format!("{shown}: missing the secret's name; {usage}")),
        Some('.') => {
            p.bump();
            let name = p.take_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if name.is_empty() {
                return Err(format!(
                    "{shown}: missing the secret's name after \"secrets.\"; {usage}"
                ));
            }
            name.to_string()
        }
        Some('[') => {
            p.bump();
            let name = match p.peek() {
                Some(q @ ('"' | '\'')) => {
                    p.bump();
                    p.quoted(q)
                        .map_err(|what| format!("{shown}: {what} after \"{}\"", p.consumed()))?
                }
                _ => {
                    return Err(format!(
                        "{shown}: a secret is named, not indexed; write secrets.<name> or secrets[\"name\"]"
                    ));
                }
            };
            if p.peek() != Some(']') {
                return Err(format!("{shown}: missing \"]\" after \"{}\"", p.consumed()));
            }
            p.bump();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            {
                return Err(format!(
                    "{shown}: {} is not a valid secret name (use letters, digits, '_', '.' and '-')",
                    quote(&name)
                ));
            }
            name
        }
        Some(c) => {
            return Err(format!(
                "{shown}: unexpected {} after \"secrets\"; {usage}",
                shown_char(c)
            ));
        }
    };
    if p.peek().is_none() {
        return Ok(name);
    }
    // Something follows the name: suggest the quoted form when the whole
    // rest would make a valid dotted name.
    let rest = text.strip_prefix("secrets.").unwrap_or("");
    let dotted = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if dotted {
        Err(format!(
            "{shown}: {usage} with nothing after the name; write secrets[\"{rest}\"] for a name with dots"
        ))
    } else {
        Err(format!(
            "{shown}: {usage} with nothing after the name (a secret is a string and has no fields)"
        ))
    }
}

/// A cursor over an expression's text.
struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.pos += c.len_utf8();
        }
    }

    fn consumed(&self) -> &'a str {
        &self.s[..self.pos]
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.bump();
        }
        &self.s[start..self.pos]
    }

    /// The body of a quoted key, the opening quote `q` already taken;
    /// consumes the closing quote.
    fn quoted(&mut self, q: char) -> Result<String, String> {
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(format!("unterminated quoted key (missing closing {q})")),
                Some('\\') => {
                    self.bump();
                    match self.peek() {
                        Some(c @ ('"' | '\'' | '\\')) => {
                            out.push(c);
                            self.bump();
                        }
                        Some(c) => {
                            return Err(format!(
                                "unknown escape \"\\{c}\" in a quoted key (only \\\", \\' and \\\\ are allowed)"
                            ));
                        }
                        None => {
                            return Err(format!("unterminated quoted key (missing closing {q})"));
                        }
                    }
                }
                Some(c) if c == q => {
                    self.bump();
                    return Ok(out);
                }
                Some(c) => {
                    out.push(c);
                    self.bump();
                }
            }
        }
    }

    /// `-?[0-9]+` as an i64.
    fn integer(&mut self) -> Result<i64, String> {
        let start = self.pos;
        if self.peek() == Some('-') {
            self.bump();
        }
        let digits = self.take_while(|c| c.is_ascii_digit());
        if digits.is_empty() {
            return Err("expected digits after '-' in an index".to_string());
        }
        let number = &self.s[start..self.pos];
        number
            .parse::<i64>()
            .map_err(|_| format!("index {number} is too large"))
    }
}

/// A piece of a string value: text to keep or an expression to resolve.
enum Piece<'a> {
    Text(&'a str),
    Expr(Reference),
}

struct Scanned<'a> {
    pieces: Vec<Piece<'a>>,
    /// Complete messages for expressions that did not parse.
    errors: Vec<String>,
}

/// Splits a string into text and expressions; `$${` becomes the text `${`.
fn scan(s: &str) -> Scanned<'_> {
    let bytes = s.as_bytes();
    let mut pieces = Vec::new();
    let mut errors = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        if bytes[i..].starts_with(b"$${") {
            if text_start < i {
                pieces.push(Piece::Text(&s[text_start..i]));
            }
            pieces.push(Piece::Text(&s[i + 1..i + 3]));
            i += 3;
            text_start = i;
        } else if bytes[i..].starts_with(b"${") {
            if text_start < i {
                pieces.push(Piece::Text(&s[text_start..i]));
            }
            match find_close(bytes, i + 2) {
                Some(end) => {
                    match parse_reference(&s[i + 2..end]) {
                        Ok(r) => pieces.push(Piece::Expr(r)),
                        Err(e) => errors.push(e),
                    }
                    i = end + 1;
                    text_start = i;
                }
                None => {
                    let rest = &s[i..];
                    let shown: String = rest.chars().take(60).collect();
                    let more = if shown.len() < rest.len() { "..." } else { "" };
                    errors.push(format!(
                        "{shown}{more}: unterminated expression, no closing \"}}\" (write $${{ for a literal ${{)"
                    ));
                    text_start = bytes.len();
                    i = bytes.len();
                }
            }
        } else {
            i += 1;
        }
    }
    if text_start < bytes.len() {
        pieces.push(Piece::Text(&s[text_start..]));
    }
    Scanned { pieces, errors }
}

/// The position of the `}` closing an expression whose text starts at
/// `start`, skipping quoted keys (a quote right after `[` opens one).
fn find_close(bytes: &[u8], start: usize) -> Option<usize> {
    let mut quote: Option<u8> = None;
    let mut prev = 0u8;
    let mut j = start;
    while j < bytes.len() {
        let b = bytes[j];
        match quote {
            Some(q) => {
                if b == b'\\' {
                    j += 2;
                    continue;
                }
                if b == q {
                    quote = None;
                }
            }
            None => {
                if b == b'}' {
                    return Some(j);
                }
                if (b == b'"' || b == b'\'') && prev == b'[' {
                    quote = Some(b);
                }
            }
        }
        prev = b;
        j += 1;
    }
    None
}

/// One step of the path into the config, rendered only when needed.
enum PathSeg<'a> {
    Key(&'a str),
    Index(usize),
}

fn render_path(path: &[PathSeg<'_>]) -> String {
    let mut out = JsonPath::root();
    for seg in path {
        match seg {
            PathSeg::Key(k) => out.push_key(k),
            PathSeg::Index(i) => out.push_index(*i),
        }
    }
    out.into()
}

/// A key as a JSON string literal, so odd characters stay visible.
fn quote(key: &str) -> String {
    Value::String(key.to_string()).to_string()
}

fn shown_char(c: char) -> String {
    match c {
        ' ' => "space".to_string(),
        c if c.is_whitespace() => "whitespace".to_string(),
        c => format!("'{c}'"),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

struct Resolver<'s, 'f> {
    scope: &'s Value,
    secret: &'f mut dyn FnMut(&str) -> Result<String, SecretError>,
    /// Each secret's value or the message it failed with.
    cache: HashMap<String, Result<String, String>>,
    issues: Vec<VarIssue>,
}

impl Resolver<'_, '_> {
    fn walk<'v>(&mut self, value: &'v Value, path: &mut Vec<PathSeg<'v>>) -> Value {
        match value {
            Value::String(s) => {
                if s.contains("${") {
                    self.string(s, path)
                } else {
                    value.clone()
                }
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    path.push(PathSeg::Index(i));
                    out.push(self.walk(item, path));
                    path.pop();
                }
                Value::Array(out)
            }
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, item) in map {
                    path.push(PathSeg::Key(k));
                    let resolved = self.walk(item, path);
                    path.pop();
                    out.insert(k.clone(), resolved);
                }
                Value::Object(out)
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => value.clone(),
        }
    }

    fn string(&mut self, s: &str, path: &[PathSeg<'_>]) -> Value {
        let scanned = scan(s);
        // With a syntax error the string has no value, but its other
        // expressions are still looked up so that all issues are reported.
        let broken = !scanned.errors.is_empty();
        if broken {
            let at = render_path(path);
            for message in scanned.errors {
                self.issues.push(VarIssue {
                    path: at.clone(),
                    message,
                });
            }
        } else if let [Piece::Expr(r)] = scanned.pieces.as_slice() {
            return match self.value_of(r) {
                Ok(v) => v,
                Err(message) => {
                    self.issue(path, message);
                    Value::Null
                }
            };
        }
        let mut out = String::with_capacity(s.len());
        for piece in &scanned.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Expr(r) => match self.value_of(r) {
                    Ok(Value::String(v)) => out.push_str(&v),
                    Ok(v) => out.push_str(&v.to_string()),
                    Err(message) => self.issue(path, message),
                },
            }
        }
        if broken {
            Value::Null
        } else {
            Value::String(out)
        }
    }

    fn issue(&mut self, path: &[PathSeg<'_>], message: String) {
        self.issues.push(VarIssue {
            path: render_path(path),
            message,
        });
    }

    fn value_of(&mut self, r: &Reference) -> Result<Value, String> {
        if r.root != Root::Secrets {
            return lookup(r, self.scope);
        }
        let Some(Segment::Key(name)) = r.path.first() else {
            return Err(format!("{}: missing the secret's name", r.shown()));
        };
        let secret = &mut self.secret;
        let found = self
            .cache
            .entry(name.clone())
            .or_insert_with(|| secret(name).map_err(|e| e.message));
        match found {
            Ok(v) => Ok(Value::String(v.clone())),
            Err(message) => Err(format!("{}: {message}", r.shown())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn no_secrets(name: &str) -> Result<String, SecretError> {
        Err(SecretError {
            message: format!("no secret {name:?}"),
        })
    }

    fn scope() -> Value {
        json!({
            "params": {
                "n": 7,
                "name": "Ada",
                "flag": true,
                "nothing": null,
                "obj": {"a": 1},
                "list": [1, "two", null],
                "a.b": "dotted",
                "it's \"q\" \\": "odd",
                "0": "zero-key",
            },
            "steps": {
                "extract": {"output": {"rows": [{"id": 10}, {"id": 20}]}},
            },
            "execution": {"id": "exec-1"},
            "job": {"id": "job-1", "name": "Nightly"},
        })
    }

    fn ok(config: Value) -> Value {
        resolve(&config, &scope(), &mut no_secrets).unwrap()
    }

    fn issues(config: Value) -> Vec<VarIssue> {
        resolve(&config, &scope(), &mut no_secrets).unwrap_err()
    }

    fn one_issue(config: Value) -> VarIssue {
        let mut all = issues(config);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    fn message(expr: &str) -> String {
        one_issue(json!(expr)).message
    }

    #[test]
    fn whole_string_keeps_the_type() {
        assert_eq!(ok(json!("${params.n}")), json!(7));
        assert_eq!(ok(json!("${params.flag}")), json!(true));
        assert_eq!(ok(json!("${params.nothing}")), json!(null));
        assert_eq!(ok(json!("${params.obj}")), json!({"a": 1}));
        assert_eq!(ok(json!("${params.list}")), json!([1, "two", null]));
        assert_eq!(ok(json!("${params.name}")), json!("Ada"));
        assert_eq!(ok(json!("${steps.extract.output.rows[0].id}")), json!(10));
        assert_eq!(ok(json!("${params}")), scope()["params"]);
    }

    #[test]
    fn embedded_strings_go_in_raw_and_other_values_as_json() {
        assert_eq!(ok(json!("hi ${params.name}!")), json!("hi Ada!"));
        assert_eq!(ok(json!("id-${params.n}")), json!("id-7"));
        assert_eq!(ok(json!("f=${params.flag}")), json!("f=true"));
        assert_eq!(ok(json!("x=${params.nothing}")), json!("x=null"));
        assert_eq!(ok(json!("o=${params.obj}")), json!("o={\"a\":1}"));
        assert_eq!(ok(json!("l=${params.list}")), json!("l=[1,\"two\",null]"));
        // Surrounding spaces make it embedded, so a string.
        assert_eq!(ok(json!(" ${params.n}")), json!(" 7"));
    }

    #[test]
    fn several_expressions_in_one_string() {
        assert_eq!(
            ok(json!("${params.name}-${params.n}-${job.name}")),
            json!("Ada-7-Nightly")
        );
        assert_eq!(ok(json!("${params.n}${params.n}")), json!("77"));
    }

    #[test]
    fn dollar_escape_and_plain_dollars() {
        assert_eq!(ok(json!("costs $${price}")), json!("costs ${price}"));
        assert_eq!(ok(json!("$${params.n}")), json!("${params.n}"));
        assert_eq!(
            ok(json!("$5 and {} and $$ and $")),
            json!("$5 and {} and $$ and $")
        );
        assert_eq!(ok(json!("$$${")), json!("$${"));
        assert_eq!(ok(json!("$${x} ${params.n}")), json!("${x} 7"));
        assert_eq!(ok(json!("${params.n}$")), json!("7$"));
    }

    #[test]
    fn quoted_keys_and_escapes() {
        assert_eq!(ok(json!("${params[\"a.b\"]}")), json!("dotted"));
        assert_eq!(ok(json!("${params['a.b']}")), json!("dotted"));
        assert_eq!(ok(json!(r#"${params["it's \"q\" \\"]}"#)), json!("odd"));
        assert_eq!(ok(json!(r#"${params['it\'s "q" \\']}"#)), json!("odd"));
        assert_eq!(ok(json!("${params[\"0\"]}")), json!("zero-key"));
        assert_eq!(
            ok(json!("${steps[\"extract\"]['output'].rows[1].id}")),
            json!(20)
        );
        // A `}` inside a quoted key does not end the expression.
        let r = parse_reference("params[\"a}b\"]").unwrap();
        assert_eq!(r.path, vec![Segment::Key("a}b".into())]);
        let s = json!({"params": {"a}b": 1}});
        assert_eq!(
            resolve(&json!("${params[\"a}b\"]}"), &s, &mut no_secrets).unwrap(),
            json!(1)
        );
    }

    #[test]
    fn negative_index_counts_from_the_end() {
        assert_eq!(ok(json!("${params.list[-1]}")), json!(null));
        assert_eq!(ok(json!("${params.list[-2]}")), json!("two"));
        assert_eq!(ok(json!("${params.list[-3]}")), json!(1));
        assert_eq!(ok(json!("${steps.extract.output.rows[-1].id}")), json!(20));
        assert_eq!(
            message("${params.list[-4]}"),
            "${params.list[-4]}: index -4 is out of range (array has 3 elements)"
        );
    }

    #[test]
    fn whitespace_inside_braces_is_ignored() {
        assert_eq!(ok(json!("${ params.n }")), json!(7));
        assert_eq!(ok(json!("${\tparams.n\n}")), json!(7));
        assert_eq!(ok(json!("a${  params.name  }b")), json!("aAdab"));
        let r = parse_reference("  job.id ").unwrap();
        assert_eq!(r.text, "job.id");
        assert_eq!(
            message("${params. n}"),
            "${params. n}: unexpected space (expected a name) after \"params.\""
        );
    }

    #[test]
    fn nested_configs_resolve_and_report_paths() {
        let config = json!({
            "url": "https://x/${params.name}",
            "headers": {"X": "${params.missing}", "Y": "${params.n}"},
            "items": [
                {"list": ["${params.n}", {"deep": "${job.id}"}]},
                "${params.nope}",
            ],
            "odd key": {"a.b": "${params.zzz}"},
            "keys": {"${params.n}": "keys are not resolved"},
            "plain": [1, true, null, "no vars"],
        });
        let all = issues(config.clone());
        let mut got: Vec<(String, String)> = all.into_iter().map(|i| (i.path, i.message)).collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (
                    "[\"odd key\"][\"a.b\"]".to_string(),
                    "${params.zzz}: no key \"zzz\"".to_string()
                ),
                (
                    "headers.X".to_string(),
                    "${params.missing}: no key \"missing\"".to_string()
                ),
                (
                    "items[1]".to_string(),
                    "${params.nope}: no key \"nope\"".to_string()
                ),
            ]
        );

        let mut good = config;
        good["headers"]["X"] = json!("${params.flag}");
        good["items"][1] = json!("${params.list}");
        good["odd key"]["a.b"] = json!("${params[\"a.b\"]}");
        assert_eq!(
            ok(good),
            json!({
                "url": "https://x/Ada",
                "headers": {"X": true, "Y": 7},
                "items": [
                    {"list": [7, {"deep": "job-1"}]},
                    [1, "two", null],
                ],
                "odd key": {"a.b": "dotted"},
                "keys": {"${params.n}": "keys are not resolved"},
                "plain": [1, true, null, "no vars"],
            })
        );
    }

    #[test]
    fn issue_path_of_the_root_value_is_empty() {
        assert_eq!(one_issue(json!("${params.x}")).path, "");
        assert_eq!(one_issue(json!(["${params.x}"])).path, "[0]");
    }

    #[test]
    fn every_issue_is_reported() {
        let all = issues(json!({"a": "${params.x} ${params.y}", "b": ["${nope.z}"]}));
        let msgs: Vec<&str> = all.iter().map(|i| i.message.as_str()).collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs.contains(&"${params.x}: no key \"x\""));
        assert!(msgs.contains(&"${params.y}: no key \"y\""));
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("${nope.z}: unknown root"))
        );
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            message("${foo.bar}"),
            "${foo.bar}: unknown root \"foo\"; an expression starts with params, steps, execution, job or secrets"
        );
        assert_eq!(
            message("${params.regon}"),
            "${params.regon}: no key \"regon\""
        );
        assert_eq!(
            message("${steps.extract.output.rows[5].id}"),
            "${steps.extract.output.rows[5].id}: index 5 is out of range (array has 2 elements)"
        );
        assert_eq!(
            message("${steps.load.output}"),
            "${steps.load.output}: step \"load\" has not run in this execution"
        );
        assert_eq!(
            message("${steps.extract.nope}"),
            "${steps.extract.nope}: no key \"nope\""
        );
        assert_eq!(
            message("${params.name[0]}"),
            "${params.name[0]}: params.name is a string, not an array, so it cannot be indexed with [0]"
        );
        assert_eq!(
            message("${params.obj[0]}"),
            "${params.obj[0]}: params.obj is an object, not an array, so it cannot be indexed with [0]; for a key named \"0\" write [\"0\"]"
        );
        assert_eq!(
            message("${params.n.x}"),
            "${params.n.x}: params.n is a number, not an object, so it has no key \"x\""
        );
        assert_eq!(
            message("${params.list[1].x}"),
            "${params.list[1].x}: params.list[1] is a string, not an object, so it has no key \"x\""
        );
        assert_eq!(
            message("${params.nothing.x}"),
            "${params.nothing.x}: params.nothing is null, not an object, so it has no key \"x\""
        );
        assert_eq!(
            message("${params[\"a.b\"].x}"),
            "${params[\"a.b\"].x}: params[\"a.b\"] is a string, not an object, so it has no key \"x\""
        );
        assert_eq!(
            message("a ${params.x"),
            "${params.x: unterminated expression, no closing \"}\" (write $${ for a literal ${)"
        );
        assert_eq!(
            message("${}"),
            "${}: empty expression; write a reference such as ${params.name}"
        );
        assert_eq!(
            message("${   }"),
            "${}: empty expression; write a reference such as ${params.name}"
        );
        assert_eq!(
            message("${secrets.a.b}"),
            "${secrets.a.b}: a secret reference is secrets.<name> with nothing after the name; write secrets[\"a.b\"] for a name with dots"
        );
        assert_eq!(
            message("${secrets.a[0]}"),
            "${secrets.a[0]}: a secret reference is secrets.<name> with nothing after the name (a secret is a string and has no fields)"
        );
        assert_eq!(
            message("${secrets}"),
            "${secrets}: missing the secret's name; a secret reference is secrets.<name>"
        );
        assert_eq!(
            message("${secrets[0]}"),
            "${secrets[0]}: a secret is named, not indexed; write secrets.<name> or secrets[\"name\"]"
        );
        assert_eq!(
            message("${secrets[\"a b\"]}"),
            "${secrets[\"a b\"]}: \"a b\" is not a valid secret name (use letters, digits, '_', '.' and '-')"
        );
        assert_eq!(
            message("${params.0}"),
            "${params.0}: a name cannot start with '0'; write [N] for an array index or [\"...\"] for such a key after \"params.\""
        );
        assert_eq!(
            message("${params[x]}"),
            "${params[x]}: unexpected 'x' (expected an index like [0] or a quoted key like [\"key\"]) after \"params[\""
        );
        assert_eq!(
            message("${params[\"x]}"),
            "${params[\"x]}: unterminated expression, no closing \"}\" (write $${ for a literal ${)"
        );
        assert_eq!(
            message("${params[\"\\n\"]}"),
            "${params[\"\\n\"]}: unknown escape \"\\n\" in a quoted key (only \\\", \\' and \\\\ are allowed) after \"params[\"\\\""
        );
        assert_eq!(
            message("${params[1}"),
            "${params[1}: missing \"]\" after \"params[1\""
        );
        assert_eq!(
            message("${params[99999999999999999999]}"),
            "${params[99999999999999999999]}: index 99999999999999999999 is too large after \"params[99999999999999999999\""
        );
        assert_eq!(
            message("${params.}"),
            "${params.}: missing name after \"params.\""
        );
        assert_eq!(
            message("${params-x}"),
            "${params-x}: unknown root \"params-x\"; an expression starts with params, steps, execution, job or secrets"
        );
        assert_eq!(
            message("${.x}"),
            "${.x}: an expression starts with params, steps, execution, job or secrets"
        );
        // A secret reference outside `resolve`.
        let r = parse_reference("secrets.k").unwrap();
        assert!(
            lookup(&r, &scope())
                .unwrap_err()
                .starts_with("${secrets.k}: ")
        );
    }

    #[test]
    fn one_bad_expression_does_not_hide_others_in_the_same_string() {
        let all = issues(json!("${bad.x} ${params.y} ${}"));
        let msgs: Vec<&str> = all.iter().map(|i| i.message.as_str()).collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs[0].starts_with("${bad.x}: unknown root"));
        assert!(msgs[1].starts_with("${}: empty expression"));
        assert_eq!(msgs[2], "${params.y}: no key \"y\"");
        assert!(all.iter().all(|i| i.path.is_empty()));
    }

    #[test]
    fn missing_root_means_empty() {
        let r = parse_reference("params.x").unwrap();
        assert_eq!(
            lookup(&r, &json!({})).unwrap_err(),
            "${params.x}: no key \"x\""
        );
        assert_eq!(
            lookup(
                &parse_reference("params").unwrap(),
                &json!({"params": null})
            )
            .unwrap(),
            json!({})
        );
        let r = parse_reference("steps.a").unwrap();
        assert_eq!(
            lookup(&r, &json!({})).unwrap_err(),
            "${steps.a}: step \"a\" has not run in this execution"
        );
    }

    #[test]
    fn secrets_are_looked_up_once_per_name() {
        let mut calls: Vec<String> = Vec::new();
        let mut lookup_secret = |name: &str| -> Result<String, SecretError> {
            calls.push(name.to_string());
            match name {
                "token" => Ok("s3cr3t".to_string()),
                "db.password" => Ok("pw".to_string()),
                _ => Err(SecretError {
                    message: format!("secret \"{name}\" is not granted to this job"),
                }),
            }
        };
        let config = json!({
            "auth": "Bearer ${secrets.token}",
            "token": "${secrets.token}",
            "again": ["${secrets['token']}", "${ secrets.token }"],
            "db": "${secrets[\"db.password\"]}",
            "headers": {"X": "${secrets.denied}", "Y": "x${secrets.denied}"},
        });
        let err = resolve(&config, &scope(), &mut lookup_secret).unwrap_err();
        let mut got: Vec<(String, String)> = err.into_iter().map(|i| (i.path, i.message)).collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (
                    "headers.X".to_string(),
                    "${secrets.denied}: secret \"denied\" is not granted to this job".to_string()
                ),
                (
                    "headers.Y".to_string(),
                    "${secrets.denied}: secret \"denied\" is not granted to this job".to_string()
                ),
            ]
        );
        calls.sort();
        assert_eq!(calls, vec!["db.password", "denied", "token"]);

        let mut calls = 0;
        let mut counting = |name: &str| -> Result<String, SecretError> {
            calls += 1;
            Ok(format!("value-of-{name}"))
        };
        let config = json!({
            "auth": "Bearer ${secrets.token}",
            "token": "${secrets.token}",
            "db": "${secrets[\"db.password\"]}",
        });
        let out = resolve(&config, &scope(), &mut counting).unwrap();
        assert_eq!(
            out,
            json!({
                "auth": "Bearer value-of-token",
                "token": "value-of-token",
                "db": "value-of-db.password",
            })
        );
        assert_eq!(calls, 2);
    }

    #[test]
    fn secret_values_never_appear_in_messages() {
        let mut secret = |_: &str| -> Result<String, SecretError> { Ok("hunter2".to_string()) };
        let config = json!(["${secrets.pw}", "${params.nope}", "${secrets.pw.x}"]);
        let err = resolve(&config, &scope(), &mut secret).unwrap_err();
        assert_eq!(err.len(), 2);
        for issue in err {
            assert!(!issue.message.contains("hunter2"), "{issue:?}");
        }
    }

    #[test]
    fn references_lists_every_reference_with_its_path() {
        let config = json!({
            "a": "${params.x} and ${steps.s.output[0]}",
            "b": [1, "${secrets.k}", "$${not.a.ref}"],
            "c": {"d e": "${ job.id }"},
            "bad": "${oops}",
            "none": "no refs",
        });
        let (found, issues) = references(&config);
        let mut found: Vec<(String, String, Root)> = found
            .into_iter()
            .map(|(p, r)| (p, r.text, r.root))
            .collect();
        found.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        assert_eq!(
            found,
            vec![
                ("a".to_string(), "params.x".to_string(), Root::Params),
                (
                    "a".to_string(),
                    "steps.s.output[0]".to_string(),
                    Root::Steps
                ),
                ("b[1]".to_string(), "secrets.k".to_string(), Root::Secrets),
                ("c[\"d e\"]".to_string(), "job.id".to_string(), Root::Job),
            ]
        );
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].path, "bad");
        assert!(
            issues[0]
                .message
                .starts_with("${oops}: unknown root \"oops\"")
        );
    }

    #[test]
    fn parse_reference_structure() {
        let r = parse_reference("steps.extract.output.rows[-1][\"a.b\"]['c']").unwrap();
        assert_eq!(r.root, Root::Steps);
        assert_eq!(
            r.path,
            vec![
                Segment::Key("extract".into()),
                Segment::Key("output".into()),
                Segment::Key("rows".into()),
                Segment::Index(-1),
                Segment::Key("a.b".into()),
                Segment::Key("c".into()),
            ]
        );
        let r = parse_reference("execution.id").unwrap();
        assert_eq!(r.root, Root::Execution);
        let r = parse_reference("secrets.1-api_key").unwrap();
        assert_eq!(r.path, vec![Segment::Key("1-api_key".into())]);
        let r = parse_reference("params.with-dash_1").unwrap();
        assert_eq!(r.path, vec![Segment::Key("with-dash_1".into())]);
    }

    #[test]
    fn secret_names_are_sorted_and_deduplicated() {
        let config = json!({
            "a": "${secrets.zeta} ${secrets.alpha}",
            "b": ["${secrets['alpha']}", "${secrets[\"db.pw\"]}", "${params.x}", "${secrets.a.b}"],
        });
        assert_eq!(secret_names(&config), vec!["alpha", "db.pw", "zeta"]);
        assert!(secret_names(&json!({"x": 1})).is_empty());
    }

    fn json_scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            any::<String>().prop_map(Value::String),
        ]
    }

    proptest! {
        #[test]
        fn strings_without_dollar_are_unchanged(s in "[^$]*") {
            let config = json!({"s": s.clone(), "l": [s.clone()]});
            let out = resolve(&config, &json!({}), &mut no_secrets).unwrap();
            prop_assert_eq!(out, config);
            let (found, issues) = references(&json!(s));
            prop_assert!(found.is_empty() && issues.is_empty());
        }

        #[test]
        fn whole_reference_is_the_scalar_itself(x in json_scalar()) {
            let scope = json!({"params": {"x": x.clone()}});
            let out = resolve(&json!("${params.x}"), &scope, &mut no_secrets).unwrap();
            prop_assert_eq!(out, x);
        }
    }
}
