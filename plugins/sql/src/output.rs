//! The step's output: the last result set shaped by the `result` mode, the
//! counts of every statement, and the `expect_rows` assertions.

use meridian_sdk::sql::ResultSet;
use meridian_sdk::{Output, StepError};
use serde_json::{Map, Value, json};

use crate::config::{ExpectRows, ResultMode};

/// The output JSON and the counts of the last statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub value: Value,
    pub row_count: u64,
    pub rows_affected: u64,
    pub mode: ResultMode,
}

impl Built {
    /// The SDK output, with `row_count`, `rows_affected` and the mode's value
    /// exported.
    pub fn into_output(self) -> Output {
        let mut out = Output::new(&self.value)
            .export("row_count", self.row_count)
            .export("rows_affected", self.rows_affected);
        match self.mode {
            ResultMode::Scalar => out = out.export("scalar", &self.value["value"]),
            ResultMode::FirstRow => out = out.export("row", &self.value["row"]),
            ResultMode::All | ResultMode::None => {}
        }
        out
    }
}

/// Rows returned by a statement with columns; for one without, the rows it
/// affected.
fn row_count(set: &ResultSet) -> u64 {
    if set.columns.is_empty() {
        set.rows_affected
    } else {
        set.rows.len() as u64
    }
}

/// Shapes the output from the result sets (one per statement) and checks the
/// row count of the last one.
pub fn build(
    sets: &[ResultSet],
    mode: ResultMode,
    expect: Option<&ExpectRows>,
) -> Result<Built, StepError> {
    let empty = ResultSet::default();
    let last = sets.last().unwrap_or(&empty);
    let count = row_count(last);
    if let Some(expect) = expect {
        check(expect, count, last.truncated)?;
    }
    let mut value = Map::new();
    let columns: Vec<Value> = last
        .columns
        .iter()
        .map(|c| json!({ "name": c.name, "type": c.type_name }))
        .collect();
    match mode {
        ResultMode::All => {
            value.insert("columns".into(), Value::Array(columns));
            value.insert("rows".into(), last.to_json());
        }
        ResultMode::FirstRow => {
            value.insert("columns".into(), Value::Array(columns));
            value.insert(
                "row".into(),
                last.rows.first().map_or(Value::Null, |r| r.to_json()),
            );
        }
        ResultMode::Scalar => {
            let scalar = last
                .rows
                .first()
                .and_then(|r| r.get(0))
                .map_or(Value::Null, |v| v.to_json());
            value.insert("value".into(), scalar);
        }
        ResultMode::None => {}
    }
    value.insert("row_count".into(), count.into());
    value.insert("rows_affected".into(), last.rows_affected.into());
    value.insert("truncated".into(), last.truncated.into());
    if sets.len() > 1 {
        let statements: Vec<Value> = sets
            .iter()
            .map(|s| {
                json!({
                    "row_count": row_count(s),
                    "rows_affected": s.rows_affected,
                    "truncated": s.truncated,
                })
            })
            .collect();
        value.insert("statements".into(), Value::Array(statements));
    }
    Ok(Built {
        value: Value::Object(value),
        row_count: count,
        rows_affected: last.rows_affected,
        mode,
    })
}

fn check(expect: &ExpectRows, count: u64, truncated: bool) -> Result<(), StepError> {
    let got = if truncated {
        format!("more than {count}")
    } else {
        count.to_string()
    };
    let fail = |wanted: String| {
        Err(StepError::failed(format!(
            "expected {wanted} row(s), got {got}"
        )))
    };
    if let Some(n) = expect.exactly
        && (count != n || truncated)
    {
        return fail(format!("exactly {n}"));
    }
    if let Some(min) = expect.min
        && count < min
    {
        return fail(format!("at least {min}"));
    }
    if let Some(max) = expect.max
        && (count > max || truncated)
    {
        return fail(format!("at most {max}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_sdk::sql::{Column, Row, SqlValue};

    fn set(n: usize) -> ResultSet {
        let names: Vec<String> = vec!["id".into(), "price".into()];
        let names: std::sync::Arc<[String]> = names.into();
        ResultSet {
            columns: vec![
                Column {
                    name: "id".into(),
                    type_name: "INT8".into(),
                },
                Column {
                    name: "price".into(),
                    type_name: "NUMERIC".into(),
                },
            ],
            rows: (0..n)
                .map(|i| {
                    Row::new(
                        names.clone(),
                        vec![SqlValue::Int(i as i64), SqlValue::Decimal("1.50".into())],
                    )
                })
                .collect(),
            rows_affected: n as u64,
            truncated: false,
        }
    }

    #[test]
    fn modes_shape_the_output() {
        let all = build(&[set(2)], ResultMode::All, None).unwrap();
        assert_eq!(all.value["rows"][1], json!({"id": 1, "price": "1.50"}));
        assert_eq!(all.value["columns"][1]["type"], "NUMERIC");
        let first = build(&[set(2)], ResultMode::FirstRow, None).unwrap();
        assert_eq!(first.value["row"]["id"], 0);
        let scalar = build(&[set(0), set(3)], ResultMode::Scalar, None).unwrap();
        assert_eq!(scalar.value["value"], 0);
        assert_eq!(scalar.value["statements"][0]["row_count"], 0);
        let out = scalar.into_output();
        assert_eq!(out.exported("scalar"), Some(&json!(0)));
        assert_eq!(out.exported("row_count"), Some(&json!(3)));
        let none = build(&[set(0)], ResultMode::Scalar, None).unwrap();
        assert_eq!(none.value["value"], Value::Null);
    }

    #[test]
    fn expectations_fail_naming_expected_and_got() {
        let expect = |min, max, exactly| ExpectRows { min, max, exactly };
        assert!(
            build(
                &[set(2)],
                ResultMode::All,
                Some(&expect(Some(1), Some(2), None))
            )
            .is_ok()
        );
        let err = build(
            &[set(2)],
            ResultMode::All,
            Some(&expect(None, None, Some(3))),
        )
        .unwrap_err();
        assert_eq!(err, StepError::failed("expected exactly 3 row(s), got 2"));
        let err = build(
            &[set(0)],
            ResultMode::All,
            Some(&expect(Some(1), None, None)),
        )
        .unwrap_err();
        assert_eq!(err, StepError::failed("expected at least 1 row(s), got 0"));
        let mut big = set(2);
        big.truncated = true;
        let err = build(&[big], ResultMode::All, Some(&expect(None, Some(2), None))).unwrap_err();
        assert_eq!(
            err,
            StepError::failed("expected at most 2 row(s), got more than 2")
        );
    }
}
