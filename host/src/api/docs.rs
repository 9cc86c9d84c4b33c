//! GET /api/v2/docs: the OpenAPI document as one readable HTML page.
//!
//! The page is rendered here from the same document `/api/v2/openapi.json`
//! serves (read as JSON, so the page shows exactly what the document says):
//! operations grouped by tag, each with its method and path, summary,
//! description, required role, parameters, request body and responses, then
//! every schema the operations refer to. Schemas are shown as their JSON
//! with `$ref`s as links to the schema. No script, no stylesheet or font
//! from elsewhere: a small inline style, and everything escaped.

use crate::auth::Permission;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::LazyLock;

/// The page, rendered once.
static PAGE: LazyLock<Result<String, String>> = LazyLock::new(|| {
    let text = super::openapi::document_json().map_err(str::to_owned)?;
    let doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(render(&doc))
});

/// The API reference as HTML.
#[utoipa::path(
    get,
    path = "/api/v2/docs",
    extensions(("x-required-permission" = json!(Permission::Public))),
    tag = "system",
    summary = "This API's reference as a readable HTML page",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)),
)]
pub(super) async fn docs_page() -> Response {
    match &*PAGE {
        Ok(page) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            page.as_str(),
        )
            .into_response(),
        Err(e) => super::internal(e).into_response(),
    }
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text as paragraphs (blank lines separate them).
fn paragraphs(s: &str) -> String {
    s.split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|p| format!("<p>{}</p>", esc(p.trim())))
        .collect()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A schema as pretty JSON, its `$ref`s turned into links.
fn schema_html(schema: &Value) -> String {
    let pretty = serde_json::to_string_pretty(schema).unwrap_or_default();
    let mut out = String::new();
    for line in pretty.lines() {
        let trimmed = line.trim_start();
        let target = trimmed
            .strip_prefix("\"$ref\": \"#/components/")
            .and_then(|rest| rest.split('"').next());
        match target {
            Some(target) => {
                let indent = &line[..line.len() - trimmed.len()];
                let name = target.rsplit('/').next().unwrap_or(target);
                let _ = writeln!(
                    out,
                    "{indent}\"$ref\": <a href=\"#{}\">{}</a>{}",
                    esc(&anchor(target)),
                    esc(name),
                    if trimmed.ends_with(',') { "," } else { "" }
                );
            }
            None => {
                let _ = writeln!(out, "{}", esc(line));
            }
        }
    }
    format!("<pre>{out}</pre>")
}

/// The anchor of a component (`schemas/Job` → `schemas-Job`).
fn anchor(component: &str) -> String {
    component.replace('/', "-")
}

/// The anchor of an operation.
fn op_anchor(method: &str, path: &str) -> String {
    let mut a = format!("op-{method}");
    for c in path.chars() {
        a.push(if c.is_ascii_alphanumeric() { c } else { '-' });
    }
    a
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:70rem;margin:0 auto;padding:1rem;line-height:1.4;color:#222}\
h2{border-bottom:2px solid #ccc;margin-top:2.5rem}\
section.op{border:1px solid #ddd;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}\
.m{display:inline-block;min-width:4.5rem;font-weight:bold;font-family:monospace;text-transform:uppercase}\
.get{color:#1a6}.post{color:#26c}.put{color:#a60}.delete{color:#c33}\
code,pre{font-family:ui-monospace,monospace;font-size:.9em}\
pre{background:#f6f6f6;padding:.5rem;overflow-x:auto}\
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}\
.role{font-style:italic}";

/// The whole page.
fn render(doc: &Value) -> String {
    let info = &doc["info"];
    let title = format!("{} API {}", str_of(info, "title"), str_of(info, "version"));
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body><h1>{t}</h1>",
        t = esc(&title)
    );
    html.push_str(&paragraphs(str_of(info, "description")));
    let _ = write!(
        html,
        "<p>OpenAPI {} document: <a href=\"/api/v2/openapi.json\">/api/v2/openapi.json</a></p>",
        esc(str_of(doc, "openapi"))
    );

    // Operations by tag, in the document's tag order; untagged last.
    let mut tags: Vec<(String, String)> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                str_of(t, "name").to_owned(),
                str_of(t, "description").to_owned(),
            )
        })
        .collect();
    tags.push((String::new(), String::new()));
    let empty = serde_json::Map::new();
    let paths = doc["paths"].as_object().unwrap_or(&empty);
    let ops: Vec<(&str, &str, &Value)> = paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter_map(move |m| item.get(*m).map(|op| (*m, path.as_str(), op)))
        })
        .collect();
    let tag_of = |op: &Value| -> String {
        op["tags"]
            .as_array()
            .and_then(|t| t.first())
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };

    html.push_str("<nav><h2>Contents</h2><ul>");
    for (tag, _) in &tags {
        let mine: Vec<_> = ops.iter().filter(|(_, _, op)| tag_of(op) == *tag).collect();
        if mine.is_empty() {
            continue;
        }
        let _ = write!(
            html,
            "<li>{}<ul>",
            esc(if tag.is_empty() { "other" } else { tag })
        );
        for (m, p, op) in mine {
            let _ = write!(
                html,
                "<li><a href=\"#{}\"><span class=\"m {m}\">{m}</span> <code>{}</code></a> {}</li>",
                esc(&op_anchor(m, p)),
                esc(p),
                esc(str_of(op, "summary"))
            );
        }
        html.push_str("</ul></li>");
    }
    html.push_str("</ul></nav>");

    for (tag, description) in &tags {
        let mine: Vec<_> = ops.iter().filter(|(_, _, op)| tag_of(op) == *tag).collect();
        if mine.is_empty() {
            continue;
        }
        let _ = write!(
            html,
            "<h2>{}</h2>{}",
            esc(if tag.is_empty() { "other" } else { tag }),
            paragraphs(description)
        );
        for (m, p, op) in mine {
            html.push_str(&operation(m, p, op));
        }
    }

    html.push_str("<h2>Schemas and shared responses</h2>");
    for kind in ["schemas", "responses"] {
        if let Some(map) = doc["components"][kind].as_object() {
            for (name, schema) in map {
                let _ = write!(
                    html,
                    "<section id=\"{}\"><h3>{}</h3>{}</section>",
                    esc(&anchor(&format!("{kind}/{name}"))),
                    esc(name),
                    schema_html(schema)
                );
            }
        }
    }
    html.push_str("</body></html>\n");
    html
}

/// One operation's section.
fn operation(method: &str, path: &str, op: &Value) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<section class=\"op\" id=\"{}\"><h3><span class=\"m {method}\">{method}</span> <code>{}</code></h3>",
        esc(&op_anchor(method, path)),
        esc(path)
    );
    let summary = str_of(op, "summary");
    if !summary.is_empty() {
        let _ = write!(html, "<p><strong>{}</strong></p>", esc(summary));
    }
    html.push_str(&paragraphs(str_of(op, "description")));
    let permission = str_of(op, "x-required-permission");
    if !permission.is_empty() {
        let _ = write!(
            html,
            "<p class=\"role\">Permission: <code>{}</code></p>",
            esc(permission)
        );
    }

    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        html.push_str("<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>required</th><th>schema</th><th>description</th></tr>");
        for p in params {
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(str_of(p, "name")),
                esc(str_of(p, "in")),
                if p["required"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                },
                esc(&serde_json::to_string(&p["schema"]).unwrap_or_default()),
                esc(str_of(p, "description"))
            );
        }
        html.push_str("</table>");
    }

    if let Some(body) = op.get("requestBody") {
        let _ = write!(
            html,
            "<h4>Request body{}</h4>",
            if body["required"].as_bool() == Some(true) {
                " (required)"
            } else {
                ""
            }
        );
        html.push_str(&content(&body["content"]));
    }

    html.push_str(
        "<h4>Responses</h4><table><tr><th>status</th><th>description</th><th>content</th></tr>",
    );
    if let Some(responses) = op["responses"].as_object() {
        for (status, r) in responses {
            let (description, body) = match r.get("$ref").and_then(Value::as_str) {
                Some(target) => {
                    let component = target.trim_start_matches("#/components/");
                    let name = component.rsplit('/').next().unwrap_or(component);
                    (
                        format!("<a href=\"#{}\">{}</a>", esc(&anchor(component)), esc(name)),
                        String::new(),
                    )
                }
                None => (esc(str_of(r, "description")), content(&r["content"])),
            };
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{description}</td><td>{body}</td></tr>",
                esc(status)
            );
        }
    }
    html.push_str("</table></section>");
    html
}

/// A content map: each media type and its schema.
fn content(content: &Value) -> String {
    let mut html = String::new();
    if let Some(map) = content.as_object() {
        for (media, c) in map {
            let _ = write!(html, "<div><code>{}</code>", esc(media));
            if let Some(schema) = c.get("schema") {
                html.push_str(&schema_html(schema));
            }
            html.push_str("</div>");
        }
    }
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn refs_become_links() {
        let html = schema_html(&serde_json::json!({"$ref": "#/components/schemas/Job"}));
        assert!(html.contains("<a href=\"#schemas-Job\">Job</a>"), "{html}");
    }

    #[test]
    fn the_page_lists_every_operation() {
        let doc: Value =
            serde_json::from_str(super::super::openapi::document_json().unwrap()).unwrap();
        let page = render(&doc);
        for (path, item) in doc["paths"].as_object().unwrap() {
            for m in METHODS {
                if item.get(m).is_some() {
                    assert!(page.contains(&op_anchor(m, path)), "{m} {path}");
                }
            }
        }
        assert!(!page.contains("<script"));
        assert!(!page.contains("http://") && !page.contains("https://cdn"));
    }
}
