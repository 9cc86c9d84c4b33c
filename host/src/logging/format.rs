//! One event as one line, JSON or text, with every secret masked.
//!
//! Masking happens value by value, before any escaping: the message and
//! every string, `Debug` or `Display` field (of the event and of its spans)
//! goes through the [`Masker`] as the plain text it is, so a secret is found
//! even where JSON escaping would have changed its bytes (a quote, a
//! backslash, a newline). Numbers and booleans are written as they are, as
//! [`Masker::mask_json`] does for step outputs. Keys are the code's field
//! names, never data.

use crate::secrets::Masker;
use std::fmt::Write as _;
use tracing::field::{Field, Visit};

/// A field's value, already masked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Str(String),
    I64(i64),
    U64(u64),
    I128(i128),
    U128(u128),
    F64(f64),
    Bool(bool),
}

/// An event's message and fields, in the order they were recorded.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    pub message: Option<String>,
    pub list: Vec<(&'static str, Value)>,
}

impl Fields {
    /// Sets `name`, replacing an earlier value of the same name (a span's
    /// `record` of a field it declared empty).
    pub(crate) fn set(&mut self, name: &'static str, value: Value) {
        match self.list.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.list.push((name, value)),
        }
    }
}

/// Records fields into [`Fields`], masking strings as they arrive.
pub(crate) struct Collect<'a> {
    pub masker: &'a Masker,
    pub fields: &'a mut Fields,
}

impl Collect<'_> {
    fn string(&mut self, field: &Field, text: &str) {
        let masked = self.masker.mask(text).into_owned();
        if field.name() == "message" {
            self.fields.message = Some(masked);
        } else {
            self.fields.set(field.name(), Value::Str(masked));
        }
    }
}

impl Visit for Collect<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.string(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.string(field, &text);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The whole chain: the outer message alone rarely says why.
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(s) = source {
            let _ = write!(text, ": {s}");
            source = s.source();
        }
        self.string(field, &text);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.set(field.name(), Value::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.set(field.name(), Value::U64(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.fields.set(field.name(), Value::I128(value));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.fields.set(field.name(), Value::U128(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.set(field.name(), Value::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.set(field.name(), Value::Bool(value));
    }
}

/// What a line is made of; every string in it is already masked.
pub(crate) struct Line<'a> {
    /// RFC 3339, UTC, milliseconds: `2026-03-29T23:50:00.000Z`.
    pub ts: &'a str,
    pub level: &'a str,
    pub target: &'a str,
    pub fields: &'a Fields,
    /// The enclosing spans' fields merged, outermost first; an inner span's
    /// value wins over an outer one of the same name.
    pub span: &'a [(&'static str, &'a Value)],
}

/// `{"ts":…,"level":…,"target":…,"message":…,"fields":{…},"span":{…}}\n`
pub(crate) fn json(out: &mut Vec<u8>, line: &Line<'_>) {
    out.extend_from_slice(b"{\"ts\":");
    json_str(out, line.ts);
    out.extend_from_slice(b",\"level\":");
    json_str(out, line.level);
    out.extend_from_slice(b",\"target\":");
    json_str(out, line.target);
    out.extend_from_slice(b",\"message\":");
    json_str(out, line.fields.message.as_deref().unwrap_or(""));
    out.extend_from_slice(b",\"fields\":{");
    for (i, (name, value)) in line.fields.list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, name);
        out.push(b':');
        json_value(out, value);
    }
    out.extend_from_slice(b"},\"span\":{");
    for (i, (name, value)) in line.span.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, name);
        out.push(b':');
        json_value(out, value);
    }
    out.extend_from_slice(b"}}\n");
}

/// `ts LEVEL target{span k=v}: message k=v …\n`, one line whatever the
/// message holds (newlines are written `\n`).
pub(crate) fn text(out: &mut Vec<u8>, line: &Line<'_>) {
    out.extend_from_slice(line.ts.as_bytes());
    out.push(b' ');
    for _ in line.level.len()..5 {
        out.push(b' ');
    }
    out.extend_from_slice(line.level.as_bytes());
    out.push(b' ');
    out.extend_from_slice(line.target.as_bytes());
    if !line.span.is_empty() {
        out.push(b'{');
        for (i, (name, value)) in line.span.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            text_pair(out, name, value);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b": ");
    one_line(out, line.fields.message.as_deref().unwrap_or(""));
    for (name, value) in &line.fields.list {
        out.push(b' ');
        text_pair(out, name, value);
    }
    out.push(b'\n');
}

fn text_pair(out: &mut Vec<u8>, name: &str, value: &Value) {
    out.extend_from_slice(name.as_bytes());
    out.push(b'=');
    match value {
        Value::Str(s) if needs_quotes(s) => json_str(out, s),
        Value::Str(s) => out.extend_from_slice(s.as_bytes()),
        other => json_value(out, other),
    }
}

/// Whether a text value must be quoted to read back as one value.
fn needs_quotes(s: &str) -> bool {
    s.is_empty()
        || s.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '"' | '=' | '{' | '}' | '\\')
        })
}

/// Text with control characters escaped, so it stays on one line.
fn one_line(out: &mut Vec<u8>, s: &str) {
    if !s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for c in s.chars() {
        match c {
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if c.is_control() => {
                let _ = std::io::Write::write_fmt(out, format_args!("\\u{{{:x}}}", c as u32));
            }
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

fn json_value(out: &mut Vec<u8>, value: &Value) {
    use std::io::Write as _;
    let _ = match value {
        Value::Str(s) => {
            json_str(out, s);
            Ok(())
        }
        Value::I64(v) => write!(out, "{v}"),
        Value::U64(v) => write!(out, "{v}"),
        Value::I128(v) => write!(out, "{v}"),
        Value::U128(v) => write!(out, "{v}"),
        Value::F64(v) if v.is_finite() => write!(out, "{v}"),
        // JSON has no NaN or infinity.
        Value::F64(v) => {
            json_str(out, &v.to_string());
            Ok(())
        }
        Value::Bool(v) => write!(out, "{v}"),
    };
}

/// A JSON string literal (RFC 8259 escaping).
pub(crate) fn json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Fields, Vec<(&'static str, Value)>) {
        let fields = Fields {
            message: Some("done\n\"ok\"".into()),
            list: vec![
                ("step_id", Value::Str("fetch".into())),
                ("attempt", Value::U64(2)),
                ("note", Value::Str("two words".into())),
                ("ratio", Value::F64(f64::NAN)),
            ],
        };
        let span = vec![
            ("execution_id", Value::Str("e1".into())),
            ("zone", Value::Str("Asia/Kolkata".into())),
        ];
        (fields, span)
    }

    #[test]
    fn json_lines_parse_back() {
        let (fields, span) = sample();
        let span: Vec<(&str, &Value)> = span.iter().map(|(k, v)| (*k, v)).collect();
        let mut out = Vec::new();
        json(
            &mut out,
            &Line {
                ts: "2026-03-29T23:50:00.000Z",
                level: "INFO",
                target: "meridian::step",
                fields: &fields,
                span: &span,
            },
        );
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "ts": "2026-03-29T23:50:00.000Z",
                "level": "INFO",
                "target": "meridian::step",
                "message": "done\n\"ok\"",
                "fields": {"step_id": "fetch", "attempt": 2, "note": "two words", "ratio": "NaN"},
                "span": {"execution_id": "e1", "zone": "Asia/Kolkata"},
            })
        );
        let mut ctl = Vec::new();
        json_str(&mut ctl, "a\u{1}b");
        assert_eq!(ctl, b"\"a\\u0001b\"");
    }

    #[test]
    fn text_lines_are_one_line() {
        let (fields, span) = sample();
        let span: Vec<(&str, &Value)> = span.iter().map(|(k, v)| (*k, v)).collect();
        let mut out = Vec::new();
        text(
            &mut out,
            &Line {
                ts: "2026-03-29T23:50:00.000Z",
                level: "INFO",
                target: "meridian::step",
                fields: &fields,
                span: &span,
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-03-29T23:50:00.000Z  INFO meridian::step{execution_id=e1 zone=Asia/Kolkata}: \
             done\\n\"ok\" step_id=fetch attempt=2 note=\"two words\" ratio=\"NaN\"\n"
        );
    }
}
