//! SQL on named connections that the operator configured and granted
//! (by connection name, read-only or read-write).
//!
//! Statements are parameterised: values travel as [`SqlValue`]s with their
//! types kept, never spliced into SQL text. Placeholders are the driver's own
//! (`$1` for PostgreSQL, `?` for SQLite and MySQL, `@P1` for SQL Server).
//!
//! ```no_run
//! use meridian_sdk::sql::{self, SqlValue};
//!
//! # fn run() -> Result<(), meridian_sdk::StepError> {
//! let rows = sql::query("reporting", "SELECT id, name FROM users WHERE id > $1", &[SqlValue::Int(100)])?;
//! for row in &rows.rows {
//!     let name = row.by_name("name").and_then(SqlValue::as_str).unwrap_or("?");
//!     meridian_sdk::info!("user {name}");
//! }
//!
//! let deleted = sql::execute("reporting", "DELETE FROM sessions WHERE expires < now()", &[])?;
//!
//! // Several statements in one transaction: all or nothing.
//! let results = sql::transaction("billing")
//!     .statement("UPDATE accounts SET balance = balance - $1 WHERE id = $2", &[12.5.into(), 1.into()])
//!     .statement("UPDATE accounts SET balance = balance + $1 WHERE id = $2", &[12.5.into(), 2.into()])
//!     .timeout_ms(5_000)
//!     .run()?;
//! # let _ = (deleted, results); Ok(()) }
//! ```

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::CapabilityError;

/// A value with its SQL type kept.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL `NULL`.
    Null,
    /// A boolean.
    Bool(bool),
    /// Any integer type.
    Int(i64),
    /// Any floating-point type.
    Float(f64),
    /// An exact decimal as text, e.g. `"12.50"`.
    Decimal(String),
    /// Character data.
    Text(String),
    /// Binary data.
    Bytes(Vec<u8>),
    /// An ISO 8601 date, `"2026-03-29"`.
    Date(String),
    /// An ISO 8601 time of day, `"02:30:00"`.
    Time(String),
    /// A date and time without zone, `"2026-03-29T02:30:00"`.
    DateTime(String),
    /// An RFC 3339 instant, `"2026-03-29T01:30:00Z"`.
    Timestamp(String),
    /// A UUID in its text form.
    Uuid(String),
    /// A JSON document as text.
    Json(String),
}

impl SqlValue {
    /// Whether this is `NULL`.
    pub fn is_null(&self) -> bool {
        matches!(self, SqlValue::Null)
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            SqlValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            SqlValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The number as `f64`, if this is an integer, a float or a decimal.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            SqlValue::Float(f) => Some(*f),
            SqlValue::Int(i) => Some(*i as f64),
            SqlValue::Decimal(d) => d.parse().ok(),
            _ => None,
        }
    }

    /// The text of any text-carrying value (text, decimal, dates and times,
    /// UUID, JSON).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            SqlValue::Text(s)
            | SqlValue::Decimal(s)
            | SqlValue::Date(s)
            | SqlValue::Time(s)
            | SqlValue::DateTime(s)
            | SqlValue::Timestamp(s)
            | SqlValue::Uuid(s)
            | SqlValue::Json(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes, if this is binary data.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            SqlValue::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The value as JSON: numbers and booleans as themselves, decimals and
    /// temporal values as strings (exactly as the database gave them), bytes
    /// as base64, JSON documents parsed (kept as a string if they do not
    /// parse), a non-finite float as `null`.
    pub fn to_json(&self) -> Value {
        match self {
            SqlValue::Null => Value::Null,
            SqlValue::Bool(b) => Value::Bool(*b),
            SqlValue::Int(i) => Value::from(*i),
            SqlValue::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            SqlValue::Bytes(b) => Value::String(crate::encoding::base64(b)),
            SqlValue::Json(s) => {
                serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
            }
            SqlValue::Text(s)
            | SqlValue::Decimal(s)
            | SqlValue::Date(s)
            | SqlValue::Time(s)
            | SqlValue::DateTime(s)
            | SqlValue::Timestamp(s)
            | SqlValue::Uuid(s) => Value::String(s.clone()),
        }
    }
}

impl From<bool> for SqlValue {
    fn from(v: bool) -> Self {
        SqlValue::Bool(v)
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for SqlValue {
            fn from(v: $t) -> Self {
                SqlValue::Int(i64::from(v))
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<f64> for SqlValue {
    fn from(v: f64) -> Self {
        SqlValue::Float(v)
    }
}

impl From<f32> for SqlValue {
    fn from(v: f32) -> Self {
        SqlValue::Float(f64::from(v))
    }
}

impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_string())
    }
}

impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}

impl From<Vec<u8>> for SqlValue {
    fn from(v: Vec<u8>) -> Self {
        SqlValue::Bytes(v)
    }
}

impl From<&[u8]> for SqlValue {
    fn from(v: &[u8]) -> Self {
        SqlValue::Bytes(v.to_vec())
    }
}

/// A JSON document parameter.
impl From<Value> for SqlValue {
    fn from(v: Value) -> Self {
        SqlValue::Json(v.to_string())
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
    }
}

/// A column of a result set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column's name (or alias).
    pub name: String,
    /// The database's own type name, e.g. `int4`, `NVARCHAR`.
    pub type_name: String,
}

/// One row of a result set; its values can be read by position or by column
/// name.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    names: Arc<[String]>,
    values: Vec<SqlValue>,
}

impl Row {
    /// Builds a row from column names and values (for tests of code that
    /// reads rows).
    pub fn new(names: impl Into<Arc<[String]>>, values: Vec<SqlValue>) -> Self {
        Row {
            names: names.into(),
            values,
        }
    }

    /// The value in column `index` (from 0).
    pub fn get(&self, index: usize) -> Option<&SqlValue> {
        self.values.get(index)
    }

    /// The value in the first column called `name` (case-sensitive).
    pub fn by_name(&self, name: &str) -> Option<&SqlValue> {
        let index = self.names.iter().position(|n| n == name)?;
        self.values.get(index)
    }

    /// All values, in column order.
    pub fn values(&self) -> &[SqlValue] {
        &self.values
    }

    /// The row as a JSON object, column name → [`SqlValue::to_json`]; a name
    /// that repeats keeps its first value.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        for (name, value) in self.names.iter().zip(&self.values) {
            object
                .entry(name.clone())
                .or_insert_with(|| value.to_json());
        }
        Value::Object(object)
    }
}

/// What one statement produced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResultSet {
    /// The columns, empty for a statement that returns no rows.
    pub columns: Vec<Column>,
    /// The rows kept (see `truncated`).
    pub rows: Vec<Row>,
    /// Rows inserted, updated or deleted, as the driver reports it.
    pub rows_affected: u64,
    /// Whether rows were dropped to respect `max_rows`.
    pub truncated: bool,
}

impl ResultSet {
    /// The rows as a JSON array of objects (see [`Row::to_json`]).
    pub fn to_json(&self) -> Value {
        Value::Array(self.rows.iter().map(Row::to_json).collect())
    }

    /// The rows deserialised into `T` through their JSON form, so a struct
    /// whose fields are named like the columns reads them:
    ///
    /// ```
    /// use meridian_sdk::sql::{ResultSet, Row, SqlValue};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct User { id: i64, name: String }
    ///
    /// let names: Vec<String> = vec!["id".into(), "name".into()];
    /// let rs = ResultSet {
    ///     rows: vec![Row::new(names, vec![SqlValue::Int(1), SqlValue::Text("ann".into())])],
    ///     ..ResultSet::default()
    /// };
    /// let users: Vec<User> = rs.deserialize()?;
    /// assert_eq!(users[0].name, "ann");
    /// # Ok::<(), meridian_sdk::CapabilityError>(())
    /// ```
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<Vec<T>, CapabilityError> {
        self.rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                T::deserialize(row.to_json()).map_err(|e| {
                    CapabilityError::Failed(format!(
                        "row {i} does not have the shape expected: {e}"
                    ))
                })
            })
            .collect()
    }
}

/// Runs one statement and returns its result set.
pub fn query(
    connection: &str,
    sql: &str,
    params: &[SqlValue],
) -> Result<ResultSet, CapabilityError> {
    let mut sets = transaction(connection).statement(sql, params).run()?;
    Ok(if sets.is_empty() {
        ResultSet::default()
    } else {
        sets.swap_remove(0)
    })
}

/// Runs one statement that returns no rows and gives the rows affected.
pub fn execute(connection: &str, sql: &str, params: &[SqlValue]) -> Result<u64, CapabilityError> {
    Ok(query(connection, sql, params)?.rows_affected)
}

/// Starts a batch of statements run in order in one transaction on
/// `connection`; any error rolls the whole transaction back.
pub fn transaction(connection: &str) -> Transaction {
    Transaction {
        connection: connection.to_string(),
        statements: Vec::new(),
        max_rows: None,
        timeout_ms: None,
        read_only: false,
    }
}

/// Statements to run in one transaction, built with [`transaction`].
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    connection: String,
    statements: Vec<(String, Vec<SqlValue>)>,
    max_rows: Option<u32>,
    timeout_ms: Option<u32>,
    read_only: bool,
}

impl Transaction {
    /// Adds a statement with its parameters.
    pub fn statement(mut self, sql: impl Into<String>, params: &[SqlValue]) -> Self {
        self.statements.push((sql.into(), params.to_vec()));
        self
    }

    /// Keeps at most `rows` rows per result set (the rest are dropped and
    /// `truncated` is set).
    pub fn max_rows(mut self, rows: u32) -> Self {
        self.max_rows = Some(rows);
        self
    }

    /// Limits the whole transaction to `ms` milliseconds.
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Asks for a read-only transaction.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Runs the statements; one result set per statement.
    pub fn run(self) -> Result<Vec<ResultSet>, CapabilityError> {
        transport::execute(self)
    }
}

#[cfg(target_arch = "wasm32")]
mod transport {
    use std::sync::Arc;

    use super::{Column, ResultSet, Row, SqlValue, Transaction};
    use crate::CapabilityError;
    use crate::bindings::meridian::step::sql as wit;

    pub(super) fn execute(tx: Transaction) -> Result<Vec<ResultSet>, CapabilityError> {
        let statements: Vec<wit::Statement> = tx
            .statements
            .into_iter()
            .map(|(sql, params)| wit::Statement {
                sql,
                params: params.into_iter().map(to_wit).collect(),
            })
            .collect();
        let options = wit::QueryOptions {
            max_rows: tx.max_rows,
            timeout_ms: tx.timeout_ms,
            read_only: tx.read_only,
        };
        let sets = wit::execute(&tx.connection, &statements, options)
            .map_err(CapabilityError::from_wit)?;
        Ok(sets.into_iter().map(from_wit_set).collect())
    }

    fn from_wit_set(set: wit::ResultSet) -> ResultSet {
        let names: Arc<[String]> = set.columns.iter().map(|c| c.name.clone()).collect();
        ResultSet {
            columns: set
                .columns
                .into_iter()
                .map(|c| Column {
                    name: c.name,
                    type_name: c.type_name,
                })
                .collect(),
            rows: set
                .rows
                .into_iter()
                .map(|values| Row::new(names.clone(), values.into_iter().map(from_wit).collect()))
                .collect(),
            rows_affected: set.rows_affected,
            truncated: set.truncated,
        }
    }

    fn to_wit(value: SqlValue) -> wit::SqlValue {
        match value {
            SqlValue::Null => wit::SqlValue::Null,
            SqlValue::Bool(v) => wit::SqlValue::Boolean(v),
            SqlValue::Int(v) => wit::SqlValue::Int(v),
            SqlValue::Float(v) => wit::SqlValue::Float(v),
            SqlValue::Decimal(v) => wit::SqlValue::Decimal(v),
            SqlValue::Text(v) => wit::SqlValue::Text(v),
            SqlValue::Bytes(v) => wit::SqlValue::Bytes(v),
            SqlValue::Date(v) => wit::SqlValue::Date(v),
            SqlValue::Time(v) => wit::SqlValue::Time(v),
            SqlValue::DateTime(v) => wit::SqlValue::Datetime(v),
            SqlValue::Timestamp(v) => wit::SqlValue::Timestamp(v),
            SqlValue::Uuid(v) => wit::SqlValue::Uuid(v),
            SqlValue::Json(v) => wit::SqlValue::Json(v),
        }
    }

    fn from_wit(value: wit::SqlValue) -> SqlValue {
        match value {
            wit::SqlValue::Null => SqlValue::Null,
            wit::SqlValue::Boolean(v) => SqlValue::Bool(v),
            wit::SqlValue::Int(v) => SqlValue::Int(v),
            wit::SqlValue::Float(v) => SqlValue::Float(v),
            wit::SqlValue::Decimal(v) => SqlValue::Decimal(v),
            wit::SqlValue::Text(v) => SqlValue::Text(v),
            wit::SqlValue::Bytes(v) => SqlValue::Bytes(v),
            wit::SqlValue::Date(v) => SqlValue::Date(v),
            wit::SqlValue::Time(v) => SqlValue::Time(v),
            wit::SqlValue::Datetime(v) => SqlValue::DateTime(v),
            wit::SqlValue::Timestamp(v) => SqlValue::Timestamp(v),
            wit::SqlValue::Uuid(v) => SqlValue::Uuid(v),
            wit::SqlValue::Json(v) => SqlValue::Json(v),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod transport {
    use super::{ResultSet, Transaction};
    use crate::CapabilityError;

    pub(super) fn execute(_tx: Transaction) -> Result<Vec<ResultSet>, CapabilityError> {
        Err(CapabilityError::outside_host("sql"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_convert_and_read_back() {
        assert_eq!(SqlValue::from(7i32), SqlValue::Int(7));
        assert_eq!(SqlValue::from(None::<i64>), SqlValue::Null);
        assert_eq!(SqlValue::from(Some("x")), SqlValue::Text("x".into()));
        assert_eq!(
            SqlValue::from(json!({"a": 1})),
            SqlValue::Json(r#"{"a":1}"#.into())
        );
        assert_eq!(SqlValue::Decimal("12.50".into()).as_f64(), Some(12.5));
        assert_eq!(SqlValue::Uuid("u".into()).as_str(), Some("u"));
        assert_eq!(SqlValue::Int(3).as_str(), None);
    }

    #[test]
    fn rows_become_json() {
        let names: Vec<String> = vec![
            "id".into(),
            "price".into(),
            "blob".into(),
            "doc".into(),
            "id".into(),
        ];
        let row = Row::new(
            names,
            vec![
                SqlValue::Int(1),
                SqlValue::Decimal("9.99".into()),
                SqlValue::Bytes(b"hi".to_vec()),
                SqlValue::Json(r#"{"k":[1]}"#.into()),
                SqlValue::Int(2),
            ],
        );
        assert_eq!(
            row.by_name("price"),
            Some(&SqlValue::Decimal("9.99".into()))
        );
        assert_eq!(row.get(4), Some(&SqlValue::Int(2)));
        assert_eq!(
            row.to_json(),
            json!({"id": 1, "price": "9.99", "blob": "aGk=", "doc": {"k": [1]}})
        );
        assert_eq!(SqlValue::Float(f64::NAN).to_json(), Value::Null);
    }

    #[test]
    fn result_sets_deserialize() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Item {
            id: i64,
            price: String,
        }
        let names: Arc<[String]> = vec!["id".to_string(), "price".to_string()].into();
        let rs = ResultSet {
            rows: vec![
                Row::new(
                    names.clone(),
                    vec![SqlValue::Int(1), SqlValue::Decimal("1.00".into())],
                ),
                Row::new(names, vec![SqlValue::Int(2), SqlValue::Null]),
            ],
            ..ResultSet::default()
        };
        let err = rs.deserialize::<Item>().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("row 1 does not have the shape expected"),
            "{err}"
        );
        let ok = ResultSet {
            rows: rs.rows[..1].to_vec(),
            ..rs.clone()
        };
        assert_eq!(
            ok.deserialize::<Item>().unwrap(),
            vec![Item {
                id: 1,
                price: "1.00".into()
            }]
        );
    }

    #[test]
    fn outside_the_host_calls_fail_cleanly() {
        assert!(matches!(
            query("db", "SELECT 1", &[]),
            Err(CapabilityError::Failed(_))
        ));
    }
}
