//! Many rows in one statement: `INSERT … SELECT` over one bound JSON
//! array, on both databases.
//!
//! A burst stores 100,000 fires and as many executions. Bound one value at
//! a time, that is over a million arguments (and, on PostgreSQL, a
//! statement per hundred rows, each parsed anew); as one JSON array, the
//! database reads the rows in C (`json_each` on SQLite,
//! `json_array_elements` on PostgreSQL) from one statement whose text
//! depends only on which columns are uniform, so it stays prepared.
//! Reading a value out of a row's JSON still costs about as much as
//! inserting it, so a column whose value is the same in every row (a
//! burst's fire instant, its origin, the `queued` status, the node…) is
//! bound once as a parameter and left out of the rows: about half of a
//! burst's values.
//!
//! SQLite's `->>` gives a JSON number as an integer; PostgreSQL's gives
//! text, so there a column holding integers is cast to `bigint` (and
//! assigned to an `integer` column as usual).
//!
//! A NULL is written, never bound. PostgreSQL fixes a prepared statement's
//! parameter types when it is first prepared on a connection, and the text
//! of a one-row batch (every column uniform, so every value a parameter) is
//! the same whether a nullable column holds a value or not: a NULL bound
//! with a guessed type (`int8`) made every later batch with a text value in
//! that column fail on that pooled connection (`incorrect binary data
//! format in bind parameter 8`: a skipped fire, which has no run, then an
//! enqueued one). So a column that is NULL in every row is the literal
//! `NULL` in the text, which both databases assign to a column of any type,
//! and each parameter's type follows from the text alone: a column's cells
//! are text or integers by its Rust type.

use super::{DIALECT, DbQuery, StoreError};
use crate::store::Dialect;
use std::io::Write;

/// One value of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cell<'a> {
    Text(&'a str),
    Int(i64),
    Null,
}

impl<'a> From<&'a str> for Cell<'a> {
    fn from(text: &'a str) -> Self {
        Cell::Text(text)
    }
}

impl From<i64> for Cell<'_> {
    fn from(int: i64) -> Self {
        Cell::Int(int)
    }
}

impl From<i32> for Cell<'_> {
    fn from(int: i32) -> Self {
        Cell::Int(int.into())
    }
}

impl<'a, T: Into<Cell<'a>>> From<Option<T>> for Cell<'a> {
    fn from(value: Option<T>) -> Self {
        value.map_or(Cell::Null, Into::into)
    }
}

/// The rows of one `INSERT … SELECT`, each with a value per column.
pub(super) struct JsonInsert<'a> {
    width: usize,
    cells: Vec<Cell<'a>>,
}

/// The statement built from [`JsonInsert`]: its text and what to bind.
pub(super) struct JsonStatement<'a> {
    sql: String,
    rows: String,
    uniform: Vec<Param<'a>>,
}

/// A value bound as a parameter: never a NULL.
#[derive(Debug, Clone, Copy)]
enum Param<'a> {
    Text(&'a str),
    Int(i64),
}

impl<'a> JsonInsert<'a> {
    /// Rows of `width` values; room for `rows` of them.
    pub(super) fn new(width: usize, rows: usize) -> Self {
        JsonInsert {
            width,
            cells: Vec::with_capacity(width * rows),
        }
    }

    /// Adds a row: its values in column order, `width` of them.
    pub(super) fn row<const N: usize>(&mut self, row: [Cell<'a>; N]) {
        debug_assert_eq!(N, self.width, "a row has one value per column");
        self.cells.extend_from_slice(&row);
    }

    /// The statement, for at least one row (a statement over no rows
    /// would select no columns). `head` is the statement's start (`INSERT INTO t (a, b, …)`), `tail`
    /// what follows the rows (`WHERE true ON CONFLICT …`, or nothing). With
    /// `materialize`, SQLite (not PostgreSQL) first copies the rows out of the array (a
    /// `MATERIALIZED` common table expression): faster for wide rows whose
    /// every value is read, measured slower for narrow ones.
    pub(super) fn finish(
        &self,
        head: &str,
        tail: &str,
        materialize: bool,
    ) -> Result<JsonStatement<'a>, StoreError> {
        let rows: Vec<&[Cell<'a>]> = self.cells.chunks(self.width.max(1)).collect();
        let first = rows.first().copied().unwrap_or_default();
        let mut uniform = Vec::new();
        let mut read = Vec::new();
        let mut select = Vec::with_capacity(self.width);
        for column in 0..self.width.min(first.len()) {
            if rows.iter().all(|row| row[column] == first[column]) {
                let param = match first[column] {
                    Cell::Text(text) => Param::Text(text),
                    Cell::Int(int) => Param::Int(int),
                    Cell::Null => {
                        // Written, never bound: see "A NULL is written" above.
                        select.push("NULL".to_owned());
                        continue;
                    }
                };
                uniform.push(param);
                // $1 is the array.
                select.push(format!("${}", uniform.len() + 1));
            } else {
                let integers = rows.iter().any(|row| matches!(row[column], Cell::Int(_)));
                select.push(match DIALECT {
                    Dialect::Postgres if integers => format!("(v ->> {})::bigint", read.len()),
                    _ => format!("v ->> {}", read.len()),
                });
                read.push(column);
            }
        }
        let mut json = Vec::with_capacity(rows.len() * (read.len() * 12 + 2) + 2);
        json.push(b'[');
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            json.push(b'[');
            for (j, &column) in read.iter().enumerate() {
                if j > 0 {
                    json.push(b',');
                }
                match row[column] {
                    Cell::Text(text) => serde_json::to_writer(&mut json, text).map_err(encode)?,
                    Cell::Int(int) => write!(json, "{int}").map_err(encode)?,
                    Cell::Null => json.extend_from_slice(b"null"),
                }
            }
            json.push(b']');
        }
        json.push(b']');
        let rows = String::from_utf8(json).map_err(encode)?;
        let select = select.join(", ");
        let sql = if DIALECT == Dialect::Postgres {
            format!("{head} SELECT {select} FROM json_array_elements($1::json) AS r(v) {tail}")
        } else if materialize {
            format!(
                "WITH r AS MATERIALIZED (SELECT value AS v FROM json_each($1)) \
                 {head} SELECT {select} FROM r {tail}"
            )
        } else {
            format!("{head} SELECT {select} FROM (SELECT value AS v FROM json_each($1)) {tail}")
        };
        Ok(JsonStatement { sql, rows, uniform })
    }
}

impl JsonStatement<'_> {
    /// The statement with the array and the uniform values bound.
    pub(super) fn query(&self) -> DbQuery<'_> {
        let mut query = sqlx::query(&self.sql).bind(self.rows.as_str());
        for param in &self.uniform {
            query = match *param {
                Param::Text(text) => query.bind(text),
                Param::Int(int) => query.bind(int),
            };
        }
        query
    }
}

fn encode(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Database(sqlx::Error::Encode(Box::new(e)))
}
