//! The `sql` step's configuration, its checks, and the conversion of JSON
//! parameters into typed [`SqlValue`]s.

use meridian_sdk::sql::SqlValue;
use meridian_sdk::{ConfigIssue, JsonPath};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// What a job author is told who put `${…}` into `query`: SQL text is code,
/// and values reach the database only as bound parameters. The host reads
/// the mark (`x-meridian-literal`) from the schema and refuses the job.
const QUERY_HINT: &str =
    "write a placeholder ($1, ?, @P1 for the driver) and bind the value: \"params\": [\"{expr}\"]";
/// The same for a script statement written as a string.
const STATEMENT_HINT: &str = "write the statement as {\"sql\": \"... $1 ...\", \"params\": [\"{expr}\"]}, a placeholder ($1, ?, @P1 for the driver) bound to the value";
/// The same for a script statement's `sql`.
const STATEMENT_SQL_HINT: &str = "write a placeholder ($1, ?, @P1 for the driver) and bind the value in this statement: \"params\": [\"{expr}\"]";

/// The config of one `sql` step.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The name of a connection configured on the host (`[sql.connections.<name>]`)
    /// and granted to this step type.
    pub connection: String,
    /// One statement, with the driver's placeholders (`$1` for PostgreSQL,
    /// `?` for SQLite and MySQL/MariaDB, `@P1` for SQL Server).
    #[serde(default)]
    #[schemars(extend("x-meridian-literal" = QUERY_HINT))]
    pub query: Option<String>,
    /// The values bound to `query`'s placeholders, in order. JSON null,
    /// booleans, integers, floats and strings bind as such; arrays and objects
    /// bind as JSON documents; `{"type": "decimal", "value": "12.50"}` gives a
    /// type explicitly (`bool`, `int`, `float`, `decimal`, `text`, `bytes`
    /// (an array of byte values), `date`, `time`, `datetime`, `timestamp`,
    /// `uuid`, `json`, `null`).
    #[serde(default)]
    pub params: Vec<Value>,
    /// Several statements run in order in one transaction; an error in any
    /// rolls them all back. Each is SQL text or `{sql, params}`; the text of
    /// one entry is sent as one statement (never split by the step).
    #[serde(default)]
    pub script: Option<Vec<ScriptStatement>>,
    /// What the output holds of the last statement's result: `all` rows
    /// (default), the `first_row`, the `scalar` in its first column and first
    /// row, or `none`.
    #[serde(default)]
    pub result: ResultMode,
    /// Rows kept per statement; the host caps it too. More rows set
    /// `truncated`.
    #[serde(default)]
    pub max_rows: Option<u32>,
    /// Time limit of the whole transaction, in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// Run the transaction read-only (writes fail).
    #[serde(default)]
    pub read_only: bool,
    /// Assertions on the row count of the last statement.
    #[serde(default)]
    pub expect_rows: Option<ExpectRows>,
}

/// One statement of a `script`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ScriptStatement {
    /// SQL text without parameters.
    #[schemars(extend("x-meridian-literal" = STATEMENT_HINT))]
    Sql(String),
    /// SQL text with parameters (see `params`).
    WithParams {
        #[schemars(extend("x-meridian-literal" = STATEMENT_SQL_HINT))]
        sql: String,
        #[serde(default)]
        params: Vec<Value>,
    },
}

impl ScriptStatement {
    /// The statement's SQL text and its (JSON) parameters.
    pub fn parts(&self) -> (&str, &[Value]) {
        match self {
            ScriptStatement::Sql(sql) => (sql, &[]),
            ScriptStatement::WithParams { sql, params } => (sql, params),
        }
    }
}

/// What the output keeps of the last statement's result set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultMode {
    /// Every row, as JSON objects.
    #[default]
    All,
    /// The first row as a JSON object (null when there is none).
    FirstRow,
    /// The value of the first column of the first row (null when there is none).
    Scalar,
    /// Only counts.
    None,
}

/// Assertions on the number of rows; the step fails when one does not hold.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectRows {
    /// At least this many rows.
    #[serde(default)]
    pub min: Option<u64>,
    /// At most this many rows.
    #[serde(default)]
    pub max: Option<u64>,
    /// Exactly this many rows.
    #[serde(default)]
    pub exactly: Option<u64>,
}

/// A statement ready to send: SQL text and typed parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStatement {
    pub sql: String,
    pub params: Vec<SqlValue>,
}

/// Every problem with a config, each with its JSON path.
pub fn check(config: &Config) -> Vec<ConfigIssue> {
    match plan(config) {
        Ok(_) => Vec::new(),
        Err(issues) => issues,
    }
}

/// The statements a config runs, or every problem with it.
pub fn plan(config: &Config) -> Result<Vec<PlannedStatement>, Vec<ConfigIssue>> {
    let root = JsonPath::root();
    let mut issues = Vec::new();
    if config.connection.trim().is_empty() {
        issues.push(ConfigIssue::new("connection", "must name a connection"));
    }
    let mut statements = Vec::new();
    match (&config.query, &config.script) {
        (Some(_), Some(_)) => issues.push(ConfigIssue::new(
            "",
            "`query` and `script` are both set: use one",
        )),
        (None, None) => issues.push(ConfigIssue::new(
            "",
            "one of `query` or `script` is required",
        )),
        (Some(sql), None) => {
            if sql.trim().is_empty() {
                issues.push(ConfigIssue::new("query", "must not be empty"));
            }
            let params = params(&config.params, &root.key("params"), &mut issues);
            statements.push(PlannedStatement {
                sql: sql.clone(),
                params,
            });
        }
        (None, Some(script)) => {
            if !config.params.is_empty() {
                issues.push(ConfigIssue::new(
                    "params",
                    "belongs to `query`; give a script statement its own `params`",
                ));
            }
            if script.is_empty() {
                issues.push(ConfigIssue::new(
                    "script",
                    "must hold at least one statement",
                ));
            }
            for (i, statement) in script.iter().enumerate() {
                let at = root.key("script").index(i);
                let (sql, values) = statement.parts();
                if sql.trim().is_empty() {
                    let path = match statement {
                        ScriptStatement::Sql(_) => at.clone(),
                        ScriptStatement::WithParams { .. } => at.key("sql"),
                    };
                    issues.push(ConfigIssue::new(path.as_str(), "must not be empty"));
                }
                let params = params(values, &at.key("params"), &mut issues);
                statements.push(PlannedStatement {
                    sql: sql.to_string(),
                    params,
                });
            }
        }
    }
    if config.max_rows == Some(0) {
        issues.push(ConfigIssue::new("max_rows", "must be at least 1"));
    }
    if config.timeout_ms == Some(0) {
        issues.push(ConfigIssue::new("timeout_ms", "must be at least 1"));
    }
    if let Some(expect) = &config.expect_rows {
        if expect.exactly.is_some() && (expect.min.is_some() || expect.max.is_some()) {
            issues.push(ConfigIssue::new(
                "expect_rows",
                "`exactly` cannot be combined with `min` or `max`",
            ));
        }
        if let (Some(min), Some(max)) = (expect.min, expect.max)
            && min > max
        {
            issues.push(ConfigIssue::new(
                "expect_rows",
                format!("`min` ({min}) is greater than `max` ({max})"),
            ));
        }
    }
    if issues.is_empty() {
        Ok(statements)
    } else {
        Err(issues)
    }
}

fn params(values: &[Value], at: &JsonPath, issues: &mut Vec<ConfigIssue>) -> Vec<SqlValue> {
    let mut out = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        match param(value) {
            Ok(v) => out.push(v),
            Err(message) => issues.push(ConfigIssue::new(at.index(i).as_str(), message)),
        }
    }
    out
}

/// A JSON parameter as a typed SQL value.
pub fn param(value: &Value) -> Result<SqlValue, String> {
    Ok(match value {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Int(i),
            None => match n.as_f64() {
                Some(f) if n.is_f64() => SqlValue::Float(f),
                _ => return Err(format!("{n} does not fit a 64-bit integer")),
            },
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        Value::Array(_) => SqlValue::Json(value.to_string()),
        Value::Object(map) => match (map.get("type"), map.get("value"), map.len()) {
            (Some(Value::String(kind)), Some(inner), 2) => typed(kind, inner)?,
            (Some(Value::String(kind)), None, 1) if kind == "null" => SqlValue::Null,
            _ => SqlValue::Json(value.to_string()),
        },
    })
}

/// `{"type": kind, "value": inner}`.
fn typed(kind: &str, inner: &Value) -> Result<SqlValue, String> {
    let text = || {
        inner
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("a {kind} value is written as a string"))
    };
    if inner.is_null() {
        return Ok(SqlValue::Null);
    }
    Ok(match kind {
        "bool" | "boolean" => SqlValue::Bool(
            inner
                .as_bool()
                .ok_or_else(|| "a bool value is true or false".to_string())?,
        ),
        "int" => SqlValue::Int(match inner {
            Value::String(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a 64-bit integer"))?,
            _ => inner
                .as_i64()
                .ok_or_else(|| format!("{inner} is not a 64-bit integer"))?,
        }),
        "float" => SqlValue::Float(match inner {
            Value::String(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a number"))?,
            _ => inner
                .as_f64()
                .ok_or_else(|| format!("{inner} is not a number"))?,
        }),
        "decimal" => {
            let s = match inner {
                Value::Number(n) => n.to_string(),
                _ => text()?,
            };
            let digits = s.trim().trim_start_matches(['-', '+']);
            let valid = !digits.is_empty()
                && digits.chars().filter(|c| *c == '.').count() <= 1
                && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
                && digits.chars().any(|c| c.is_ascii_digit());
            if !valid {
                return Err(format!("{s:?} is not a decimal number like \"12.50\""));
            }
            SqlValue::Decimal(s.trim().to_string())
        }
        "text" => SqlValue::Text(text()?),
        "bytes" => {
            let items = inner
                .as_array()
                .ok_or_else(|| "a bytes value is an array of numbers 0-255".to_string())?;
            let mut bytes = Vec::with_capacity(items.len());
            for item in items {
                bytes.push(
                    item.as_u64()
                        .and_then(|b| u8::try_from(b).ok())
                        .ok_or_else(|| format!("{item} is not a byte (0-255)"))?,
                );
            }
            SqlValue::Bytes(bytes)
        }
        "date" => SqlValue::Date(text()?),
        "time" => SqlValue::Time(text()?),
        "datetime" => SqlValue::DateTime(text()?),
        "timestamp" => SqlValue::Timestamp(text()?),
        "uuid" => SqlValue::Uuid(text()?),
        "json" => SqlValue::Json(match inner {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
        other => {
            return Err(format!(
                "unknown parameter type {other:?}: use bool, int, float, decimal, text, bytes, date, time, datetime, timestamp, uuid, json or null"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(v: Value) -> Config {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn sql_text_is_marked_as_code_in_the_schema() {
        let schema = meridian_sdk::config_schema::<Config>();
        let mark = |pointer: &str| {
            schema
                .pointer(pointer)
                .and_then(|s| s.get("x-meridian-literal"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        assert_eq!(mark("/properties/query").as_deref(), Some(QUERY_HINT));
        let statement = "/$defs/ScriptStatement/anyOf";
        assert_eq!(
            mark(&format!("{statement}/0")).as_deref(),
            Some(STATEMENT_HINT)
        );
        assert_eq!(
            mark(&format!("{statement}/1/properties/sql")).as_deref(),
            Some(STATEMENT_SQL_HINT)
        );
        assert_eq!(mark("/properties/params"), None, "values are data");
    }

    #[test]
    fn params_keep_their_types() {
        assert_eq!(param(&json!(7)).unwrap(), SqlValue::Int(7));
        assert_eq!(param(&json!(1.5)).unwrap(), SqlValue::Float(1.5));
        assert_eq!(param(&json!("x")).unwrap(), SqlValue::Text("x".into()));
        assert_eq!(param(&json!(null)).unwrap(), SqlValue::Null);
        assert_eq!(
            param(&json!({"type": "decimal", "value": "12.50"})).unwrap(),
            SqlValue::Decimal("12.50".into())
        );
        assert_eq!(
            param(&json!({"type": "date", "value": "2026-03-29"})).unwrap(),
            SqlValue::Date("2026-03-29".into())
        );
        assert_eq!(
            param(&json!({"type": "bytes", "value": [0, 255]})).unwrap(),
            SqlValue::Bytes(vec![0, 255])
        );
        assert_eq!(
            param(&json!({"a": [1]})).unwrap(),
            SqlValue::Json(r#"{"a":[1]}"#.into())
        );
        assert_eq!(
            param(&json!({"type": "int", "value": "42"})).unwrap(),
            SqlValue::Int(42)
        );
        assert!(param(&json!({"type": "decimal", "value": "1e5x"})).is_err());
        assert!(param(&json!({"type": "money", "value": "1"})).is_err());
        assert!(param(&json!(u64::MAX)).is_err());
    }

    #[test]
    fn problems_name_their_path() {
        let issues = check(&config(json!({
            "connection": "",
            "script": ["", {"sql": "SELECT ?", "params": [{"type": "bytes", "value": [300]}]}],
            "max_rows": 0,
            "expect_rows": {"exactly": 1, "min": 0}
        })));
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "connection",
                "script[0]",
                "script[1].params[0]",
                "max_rows",
                "expect_rows"
            ]
        );
        let issues = check(&config(json!({"connection": "db"})));
        assert_eq!(issues.len(), 1);
        let issues = check(&config(
            json!({"connection": "db", "query": "x", "script": ["y"]}),
        ));
        assert_eq!(issues.len(), 1);
        assert!(check(&config(json!({"connection": "db", "query": "SELECT 1"}))).is_empty());
    }
}
