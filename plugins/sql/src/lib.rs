//! Meridian step type `sql`: one parameterised query, or a script of
//! statements run in one transaction, on a connection the operator configured
//! (`[sql.connections.<name>]`) and granted (`[[grants.sql]]`).
//!
//! ```json
//! { "id": "late", "type": "sql", "config": {
//!     "connection": "reporting",
//!     "query": "SELECT id, total FROM orders WHERE created < $1 AND region = $2",
//!     "params": ["${params.cutoff}", "eu"],
//!     "result": "all",
//!     "max_rows": 500,
//!     "timeout_ms": 10000,
//!     "read_only": true,
//!     "expect_rows": { "max": 100 } } }
//! ```
//!
//! Config (see [`config::Config`]): `connection`; `query` with `params`, or
//! `script` (a list of statements, each SQL text or `{sql, params}`; the step
//! never splits SQL text, so one entry is one statement); `result` (`all`,
//! `first_row`, `scalar`, `none`); `max_rows`; `timeout_ms`; `read_only`;
//! `expect_rows` (`min`, `max`, `exactly`). Parameters are JSON and bind with
//! their JSON type (`${...}` variables are substituted by the engine before
//! the step runs); `{"type": "decimal", "value": "12.50"}` names a type
//! explicitly. Values are never spliced into SQL text: the schema marks
//! `query` and the script's statements as code (`x-meridian-literal`), so
//! the host refuses a `${...}` there and shows the bound-parameter form.
//!
//! Output, for the last statement: `columns` (`[{name, type}]`), `rows` (JSON
//! objects, types kept: integers and floats as numbers, decimals, dates and
//! times as strings, bytes as base64, JSON documents as JSON), `row`
//! (`first_row`), `value` (`scalar`), `row_count` (rows returned, or the rows
//! affected for a statement that returns none), `rows_affected`, `truncated`;
//! and `statements` (`[{row_count, rows_affected, truncated}]`) for every
//! statement. Exports: `row_count`, `rows_affected`, and `scalar` or `row` in
//! those modes.
//!
//! Errors: a refused connection, or a statement the grant does not allow (the
//! host classifies every statement before it is sent: a `read` grant runs
//! only reads, transaction control is never allowed), is `denied` (with the
//! grant that would allow it, or `none:` when no grant can); an SQL error is `failed` (the transaction is rolled back); the time
//! limit is `timed-out`; a failed `expect_rows` assertion is `failed`, naming
//! expected and got.

// Tests may unwrap; production code may not (workspace lints).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod output;

use meridian_sdk::{Capability, ConfigIssue, Context, Output, Step, StepError, sql};

use crate::config::Config;

/// The `sql` step type.
pub struct SqlStep;

impl Step for SqlStep {
    type Config = Config;
    const NAME: &'static str = "sql";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str = "Runs one parameterised query, or a script of statements \
        in one transaction (rolled back on any error), on a named connection the operator \
        configured and granted. Outputs all rows, the first row, a scalar or only counts, with \
        the database's types kept, and can assert on the row count.";

    fn capabilities() -> Vec<Capability> {
        vec![
            Capability::sql(
                "*",
                "runs the statements each job step configures on its `connection`; grant the connections its jobs may use, read or read_write",
            ),
            Capability::log("logs each run's connection, statement count, rows and duration"),
        ]
    }

    fn validate(config: &Config) -> Vec<ConfigIssue> {
        config::check(config)
    }

    fn execute(_ctx: &Context, config: Config) -> Result<Output, StepError> {
        let statements = config::plan(&config).map_err(StepError::InvalidConfig)?;
        let count = statements.len();
        let mut tx = sql::transaction(&config.connection);
        for s in statements {
            tx = tx.statement(s.sql, &s.params);
        }
        if let Some(rows) = config.max_rows {
            tx = tx.max_rows(rows);
        }
        if let Some(ms) = config.timeout_ms {
            tx = tx.timeout_ms(ms);
        }
        if config.read_only {
            tx = tx.read_only();
        }
        let sets = tx.run().map_err(|e| {
            let context = format!("connection {:?}", config.connection);
            match StepError::from(e) {
                StepError::Failed(m) => StepError::Failed(format!("{context}: {m}")),
                StepError::TimedOut(m) => StepError::TimedOut(format!("{context}: {m}")),
                other => other,
            }
        })?;
        let out = output::build(&sets, config.result, config.expect_rows.as_ref())?;
        meridian_sdk::info!(
            "sql on {}: {count} statement(s), {} row(s), {} affected",
            config.connection,
            out.row_count,
            out.rows_affected
        );
        Ok(out.into_output())
    }
}

meridian_sdk::export_step!(SqlStep);
