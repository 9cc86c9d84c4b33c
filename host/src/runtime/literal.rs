//! Literal fields: the parts of a step's config that its plugin runs as
//! code (SQL text, a script), into which no `${…}` may be spliced.
//!
//! The engine resolves `${…}` into every string of a config
//! ([`crate::model::vars`]), which is right for a URL or a file name and
//! wrong for a query: a parameter value spliced into SQL text rewrites the
//! statement. Only the plugin knows which of its fields are code, so it says
//! so in its config JSON Schema, with the keyword [`KEYWORD`] on the schema
//! of such a field:
//!
//! ```json
//! "query": {
//!   "type": ["string", "null"],
//!   "x-meridian-literal": "write a placeholder ($1, ?, @P1 for the driver) and bind the value: \"params\": [\"{expr}\"]"
//! }
//! ```
//!
//! The value is `true`, or the hint shown to a job author who put an
//! expression there (`{expr}` in it stands for the expression as written).
//! With the SDK that is `#[schemars(extend("x-meridian-literal" = "…"))]` on
//! the field or on an untagged enum's variant.
//!
//! The marks are read once, when the plugin loads ([`LiteralFields::from_schema`]):
//! the schema is walked through `properties`, `patternProperties`,
//! `additionalProperties`, `items`, `prefixItems`, and the branches
//! `$ref` (local, `#…`), `allOf`, `anyOf`, `oneOf`, `if`/`then`/`else`
//! and `dependentSchemas`, cycles included. A mark covers the value at its
//! place and every string inside it (so a mark on a `Vec<String>` field
//! covers its items). Branches are combined conservatively: a value is code
//! when any branch that could describe it marks it.
//!
//! [`LiteralFields::check`] then finds, in a config as written, every
//! expression that could put a value into code:
//!
//! * an expression in a marked string (`"query": "… ${params.region}"`);
//! * an expression as a value whose schema has a mark below it
//!   (`"script": "${params.statements}"` would make the whole script a
//!   parameter's value).
//!
//! `$${` (a literal `${`) is text, not an expression, so it stays allowed.
//! Job validation reports each finding at its JSON path
//! (`steps[0].config.query`), and the engine checks again before it
//! resolves anything, so a job stored before a plugin marked its fields
//! fails its attempt as `invalid_config` rather than splice.

use crate::model::vars;
use meridian_json_path::JsonPath;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The schema keyword that marks a config field as code.
pub const KEYWORD: &str = "x-meridian-literal";

/// What a job author is told when a mark says `true` and gives no hint.
const DEFAULT_HINT: &str =
    "pass the value to the step as data (a parameter it binds or reads), not inside the code";

/// The literal fields of one plugin's config schema, parsed once.
#[derive(Debug, Clone, Default)]
pub struct LiteralFields {
    /// The schema's nodes reachable from the root (index 0); empty when the
    /// schema marks nothing, so a plugin without marks costs no walk.
    nodes: Vec<Node>,
}

/// One schema object (or boolean schema), as far as marks go.
#[derive(Debug, Clone, Default)]
struct Node {
    /// The hint of this node's own mark.
    mark: Option<String>,
    /// The hint of a mark at or below this node, through any keyword or
    /// branch: an expression standing for this whole value could fill it.
    below: Option<String>,
    properties: BTreeMap<String, usize>,
    /// `patternProperties`: applied to every key (no regex is evaluated;
    /// applying a pattern too widely can only find more code, never less).
    patterns: Vec<usize>,
    additional: Option<usize>,
    prefix_items: Vec<usize>,
    items: Option<usize>,
    /// Subschemas that apply to the same value: `$ref`, `allOf`, `anyOf`,
    /// `oneOf`, `if`/`then`/`else`, `dependentSchemas`.
    branches: Vec<usize>,
    /// The kinds of value its `type` admits; `None` when it says nothing.
    /// An untagged enum's string variant marks strings, not the objects of
    /// its other variants.
    kinds: Option<Vec<Kind>>,
}

impl Node {
    fn admits(&self, kind: Kind) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(&kind))
    }
}

/// What a value is, as far as marks go: only strings, arrays and objects
/// can hold text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Array,
    Object,
    Other,
}

impl Kind {
    fn of(value: &Value) -> Self {
        match value {
            Value::String(_) => Kind::String,
            Value::Array(_) => Kind::Array,
            Value::Object(_) => Kind::Object,
            Value::Null | Value::Bool(_) | Value::Number(_) => Kind::Other,
        }
    }

    /// The kinds a schema's `type` admits (a name or a list of names).
    fn from_type(value: &Value) -> Option<Vec<Kind>> {
        let name = |v: &Value| match v.as_str()? {
            "string" => Some(Kind::String),
            "array" => Some(Kind::Array),
            "object" => Some(Kind::Object),
            "null" | "boolean" | "number" | "integer" => Some(Kind::Other),
            _ => None,
        };
        match value {
            Value::String(_) => Some(vec![name(value)?]),
            Value::Array(list) => list.iter().map(name).collect(),
            _ => None,
        }
    }
}

/// A mark the host cannot read, with the JSON pointer of its schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config schema at {pointer:?}: {message}")]
pub struct MarkError {
    pub pointer: String,
    pub message: String,
}

/// An expression that would put a value into code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spliced {
    /// JSON path of the string in the config (`query`, `script[1].sql`;
    /// empty for the config itself).
    pub path: String,
    /// Starts with the expression as written, says why, and gives the
    /// plugin's hint.
    pub message: String,
}

impl LiteralFields {
    /// Reads the marks of a config schema. A mark whose value is neither
    /// `true`, `false` nor a non-empty string is an error: a plugin that
    /// meant to protect a field must not load as if it had not.
    pub fn from_schema(schema: &Value) -> Result<Self, MarkError> {
        let mut builder = Builder {
            root: schema,
            ids: HashMap::new(),
            nodes: Vec::new(),
        };
        builder.node(String::new(), schema)?;
        let mut nodes = builder.nodes;
        propagate(&mut nodes);
        if nodes.first().is_none_or(|root| root.below.is_none()) {
            nodes.clear();
        }
        Ok(Self { nodes })
    }

    /// Whether the schema marks no field.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every expression in `config` that would reach code, in document
    /// order.
    pub fn check(&self, config: &Value) -> Vec<Spliced> {
        let mut found = Vec::new();
        if !self.nodes.is_empty() {
            self.walk(config, &[0], None, &mut JsonPath::root(), &mut found);
        }
        found
    }

    /// `nodes` and every branch reachable from them, each once; with a
    /// kind, only those whose `type` admits a value of that kind (a branch
    /// of a node that cannot describe the value cannot either).
    fn expand(&self, nodes: &[usize], kind: Option<Kind>) -> Vec<usize> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut todo: Vec<usize> = nodes.to_vec();
        while let Some(n) = todo.pop() {
            let node = &self.nodes[n];
            if kind.is_some_and(|k| !node.admits(k)) || !seen.insert(n) {
                continue;
            }
            out.push(n);
            todo.extend(node.branches.iter().copied());
        }
        out.sort_unstable();
        out
    }

    fn walk(
        &self,
        value: &Value,
        nodes: &[usize],
        inherited: Option<&str>,
        path: &mut JsonPath,
        found: &mut Vec<Spliced>,
    ) {
        let applicable = self.expand(nodes, Some(Kind::of(value)));
        let mark = inherited.or_else(|| {
            applicable
                .iter()
                .find_map(|&n| self.nodes[n].mark.as_deref())
        });
        match value {
            Value::String(s) => {
                if !s.contains("${") {
                    return;
                }
                // An expression that is the whole string becomes a value of
                // any type, so every schema of the place counts, whatever
                // its `type`.
                let below = || {
                    self.expand(nodes, None)
                        .into_iter()
                        .find_map(|n| self.nodes[n].below.clone())
                };
                let (hint, whole) = match (mark, below()) {
                    (Some(hint), _) => (hint.to_string(), false),
                    (None, Some(hint)) => (hint, true),
                    (None, None) => return,
                };
                let why = if whole {
                    "a variable cannot supply this value: it holds text the step runs as code"
                } else {
                    "this text is code to the step, and a variable is never spliced into it"
                };
                for r in vars::expressions(s) {
                    let shown = format!("${{{}}}", r.text);
                    found.push(Spliced {
                        path: path.to_string(),
                        message: format!(
                            "{shown}: {why}; {} (write $${{ for a literal ${{)",
                            hint.replace("{expr}", &shown)
                        ),
                    });
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let children: Vec<usize> = applicable
                        .iter()
                        .filter_map(|&n| {
                            let node = &self.nodes[n];
                            node.prefix_items.get(i).copied().or(node.items)
                        })
                        .collect();
                    let len = path.len();
                    path.push_index(i);
                    self.walk(item, &children, mark, path, found);
                    path.truncate(len);
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    let mut children = Vec::new();
                    for &n in &applicable {
                        let node = &self.nodes[n];
                        children.extend(node.patterns.iter().copied());
                        match node.properties.get(key) {
                            Some(&child) => children.push(child),
                            None => children.extend(node.additional),
                        }
                    }
                    let len = path.len();
                    path.push_key(key);
                    self.walk(item, &children, mark, path, found);
                    path.truncate(len);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

/// Builds the node graph: one node per schema location (JSON pointer), so a
/// `$ref` to a location seen before, or to an enclosing one, is an edge.
struct Builder<'a> {
    root: &'a Value,
    ids: HashMap<String, usize>,
    nodes: Vec<Node>,
}

impl<'a> Builder<'a> {
    fn node(&mut self, pointer: String, schema: &'a Value) -> Result<usize, MarkError> {
        if let Some(&id) = self.ids.get(&pointer) {
            return Ok(id);
        }
        let id = self.nodes.len();
        self.nodes.push(Node::default());
        self.ids.insert(pointer.clone(), id);
        let Value::Object(obj) = schema else {
            // `true`, `false`: nothing marked, nothing below.
            return Ok(id);
        };
        let at = |key: &str| format!("{pointer}/{}", escape(key));
        let mut node = Node {
            mark: read_mark(obj.get(KEYWORD), &at(KEYWORD))?,
            kinds: obj.get("type").and_then(Kind::from_type),
            ..Node::default()
        };
        if let Some(Value::Object(props)) = obj.get("properties") {
            for (name, sub) in props {
                let child = self.node(format!("{}/{}", at("properties"), escape(name)), sub)?;
                node.properties.insert(name.clone(), child);
            }
        }
        if let Some(Value::Object(patterns)) = obj.get("patternProperties") {
            for (pattern, sub) in patterns {
                let child = self.node(
                    format!("{}/{}", at("patternProperties"), escape(pattern)),
                    sub,
                )?;
                node.patterns.push(child);
            }
        }
        for key in ["additionalProperties", "unevaluatedProperties"] {
            if let Some(sub) = obj.get(key)
                && node.additional.is_none()
            {
                node.additional = Some(self.node(at(key), sub)?);
            }
        }
        match obj.get("items") {
            // Draft 4-7 tuple form: `items` as an array is `prefixItems`.
            Some(Value::Array(tuple)) => {
                for (i, sub) in tuple.iter().enumerate() {
                    let child = self.node(format!("{}/{i}", at("items")), sub)?;
                    node.prefix_items.push(child);
                }
                if let Some(sub) = obj.get("additionalItems") {
                    node.items = Some(self.node(at("additionalItems"), sub)?);
                }
            }
            Some(sub) => node.items = Some(self.node(at("items"), sub)?),
            None => {}
        }
        if let Some(Value::Array(tuple)) = obj.get("prefixItems") {
            for (i, sub) in tuple.iter().enumerate() {
                let child = self.node(format!("{}/{i}", at("prefixItems")), sub)?;
                node.prefix_items.push(child);
            }
        }
        if node.items.is_none()
            && let Some(sub) = obj.get("unevaluatedItems")
        {
            node.items = Some(self.node(at("unevaluatedItems"), sub)?);
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            if let Some(Value::Array(list)) = obj.get(key) {
                for (i, sub) in list.iter().enumerate() {
                    let child = self.node(format!("{}/{i}", at(key)), sub)?;
                    node.branches.push(child);
                }
            }
        }
        for key in ["if", "then", "else"] {
            if let Some(sub) = obj.get(key) {
                node.branches.push(self.node(at(key), sub)?);
            }
        }
        if let Some(Value::Object(deps)) = obj.get("dependentSchemas") {
            for (name, sub) in deps {
                let child =
                    self.node(format!("{}/{}", at("dependentSchemas"), escape(name)), sub)?;
                node.branches.push(child);
            }
        }
        if let Some(Value::String(reference)) = obj.get("$ref")
            && let Some(target) = local_pointer(reference)
            && let Some(sub) = self.root.pointer(&target)
        {
            node.branches.push(self.node(target, sub)?);
        }
        self.nodes[id] = node;
        Ok(id)
    }
}

/// The hint a mark carries, `None` for no mark.
fn read_mark(value: Option<&Value>, pointer: &str) -> Result<Option<String>, MarkError> {
    match value {
        None | Some(Value::Bool(false)) => Ok(None),
        Some(Value::Bool(true)) => Ok(Some(DEFAULT_HINT.to_string())),
        Some(Value::String(hint)) if !hint.trim().is_empty() => Ok(Some(hint.trim().to_string())),
        Some(_) => Err(MarkError {
            pointer: pointer.to_string(),
            message: format!("{KEYWORD} must be true, false or a non-empty hint"),
        }),
    }
}

/// Marks flow up to every node that reaches them, through any keyword, so
/// each node knows whether a variable standing for its whole value could
/// fill code. Iterated to a fixed point: `$ref` cycles make a graph.
fn propagate(nodes: &mut [Node]) {
    for node in nodes.iter_mut() {
        node.below.clone_from(&node.mark);
    }
    loop {
        let mut changed = false;
        for i in 0..nodes.len() {
            if nodes[i].below.is_some() {
                continue;
            }
            let node = &nodes[i];
            let found = node
                .properties
                .values()
                .chain(&node.patterns)
                .chain(&node.additional)
                .chain(&node.prefix_items)
                .chain(&node.items)
                .chain(&node.branches)
                .find_map(|&child| nodes[child].below.clone());
            if found.is_some() {
                nodes[i].below = found;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

/// A JSON pointer segment: `~` → `~0`, `/` → `~1`.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The JSON pointer of a same-document `$ref` (`#`, `#/$defs/Config`),
/// percent-decoded as a URI fragment; `None` for any other reference
/// (which can hold no mark this plugin's schema carries).
fn local_pointer(reference: &str) -> Option<String> {
    let fragment = reference.strip_prefix('#')?;
    if !(fragment.is_empty() || fragment.starts_with('/')) {
        return None;
    }
    percent_encoding::percent_decode_str(fragment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    fn paths(schema: Value, config: Value) -> Vec<String> {
        LiteralFields::from_schema(&schema)
            .unwrap()
            .check(&config)
            .into_iter()
            .map(|s| s.path)
            .collect()
    }

    /// The shape schemars 1 gives the sql step's config.
    fn sql_like() -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "connection": {"type": "string"},
                "query": {"type": ["string", "null"], KEYWORD: "bind it: \"params\": [\"{expr}\"]"},
                "params": {"type": "array", "items": true},
                "script": {"type": ["array", "null"], "items": {"$ref": "#/$defs/ScriptStatement"}},
            },
            "$defs": {
                "ScriptStatement": {"anyOf": [
                    {"type": "string", KEYWORD: true},
                    {"type": "object", "properties": {
                        "sql": {"type": "string", KEYWORD: "bind it in this statement"},
                        "params": {"type": "array", "items": true},
                    }},
                ]},
            },
        })
    }

    #[test]
    fn expressions_in_marked_strings_are_found_with_their_hint() {
        let fields = LiteralFields::from_schema(&sql_like()).unwrap();
        let found = fields.check(&json!({
            "connection": "${params.conn}",
            "query": "SELECT * FROM t WHERE region = '${params.region}' AND ${params.more}",
            "params": ["${params.region}"],
        }));
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].path, "query");
        assert_eq!(
            found[0].message,
            "${params.region}: this text is code to the step, and a variable is never spliced into it; \
             bind it: \"params\": [\"${params.region}\"] (write $${ for a literal ${)"
        );
        assert!(found[1].message.starts_with("${params.more}: "));
    }

    #[test]
    fn marks_are_followed_through_refs_any_of_and_items() {
        let config = json!({"connection": "c", "script": [
            "DELETE FROM t",
            "DELETE FROM ${params.table}",
            {"sql": "SELECT ${params.x}", "params": ["${params.y}"]},
            "${params.whole}",
        ]});
        assert_eq!(
            paths(sql_like(), config),
            ["script[1]", "script[2].sql", "script[3]"]
        );
    }

    #[test]
    fn a_variable_cannot_stand_for_a_value_that_holds_code() {
        let found = LiteralFields::from_schema(&sql_like())
            .unwrap()
            .check(&json!({"connection": "c", "script": "${params.statements}"}));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "script");
        assert!(
            found[0]
                .message
                .contains("a variable cannot supply this value"),
            "{}",
            found[0].message
        );
        assert_eq!(paths(sql_like(), json!("${params.config}")), [""]);
        assert_eq!(
            paths(
                sql_like(),
                json!({"connection": "c", "params": "${params.list}"})
            ),
            Vec::<String>::new(),
            "params hold no code"
        );
    }

    #[test]
    fn escapes_and_plain_text_pass() {
        assert!(
            paths(
                sql_like(),
                json!({"query": "SELECT '$${not_a_var}', '$5', '{}'"})
            )
            .is_empty()
        );
    }

    #[test]
    fn a_mark_covers_everything_inside_it() {
        let schema = json!({"type": "object", "properties": {
            "scripts": {"type": "object", "additionalProperties": {"type": "string"}, KEYWORD: true},
            "lines": {"type": "array", "items": {"type": "string"}, KEYWORD: true},
            "plain": {"type": "object", "additionalProperties": {"type": "string"}},
        }});
        let config = json!({
            "scripts": {"a": "x ${params.a}"},
            "lines": ["ok", "${params.b}"],
            "plain": {"k": "${params.c}"},
        });
        assert_eq!(paths(schema, config), ["lines[1]", "scripts.a"]);
    }

    #[test]
    fn recursive_schemas_and_odd_keys_work() {
        let schema = json!({
            "$ref": "#/$defs/Node",
            "$defs": {"Node": {"type": "object", "properties": {
                "code": {"type": "string", KEYWORD: true},
                "child": {"$ref": "#/$defs/Node"},
                "a/b": {"type": "string", KEYWORD: true},
            }}},
        });
        let config = json!({"child": {"child": {"code": "${params.x}"}}, "a/b": "${params.y}"});
        assert_eq!(paths(schema, config), ["[\"a/b\"]", "child.child.code"]);
    }

    #[test]
    fn no_marks_means_nothing_to_walk() {
        let fields = LiteralFields::from_schema(&json!({"type": "object", "properties": {
            "url": {"type": "string"}, "body": {KEYWORD: false},
        }}))
        .unwrap();
        assert!(fields.is_empty());
        assert!(fields.check(&json!({"url": "${params.u}"})).is_empty());
    }

    #[test]
    fn an_unreadable_mark_refuses_the_schema() {
        let err =
            LiteralFields::from_schema(&json!({"properties": {"q": {KEYWORD: 3}}})).unwrap_err();
        assert_eq!(err.pointer, "/properties/q/x-meridian-literal");
        let err = LiteralFields::from_schema(&json!({KEYWORD: " "})).unwrap_err();
        assert!(err.message.contains("non-empty hint"), "{err}");
    }
}
