//! SQL grants: which named connections a plugin may use, and how.
//!
//! A rule names a connection (or a glob over connection names) and an access
//! level: `read` runs every transaction read-only, so the database itself
//! refuses a write; `read_write` leaves the choice to the step (and the
//! connection's own `read_only` default). Several rules may match; the widest
//! access wins.
//!
//! ```toml
//! [[grants]]
//! plugin = "sql"
//! [[grants.sql]]
//! connection = "reporting"
//! access = "read"
//! [[grants.sql]]
//! connection = "etl-*"
//! access = "read_write"
//! ```

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};

/// One `[[grants.sql]]` rule as written in the config file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRuleSpec {
    /// A connection name or a glob over connection names.
    pub connection: String,
    /// `read` (the default) or `read_write`.
    #[serde(default)]
    pub access: SqlAccess,
}

/// What a grant allows on a connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlAccess {
    /// Read-only transactions only.
    #[default]
    Read,
    /// Reads and writes.
    ReadWrite,
}

impl SqlAccess {
    /// The grants-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SqlAccess::Read => "read",
            SqlAccess::ReadWrite => "read_write",
        }
    }
}

/// One parsed SQL rule.
#[derive(Debug, Clone)]
pub struct SqlRule {
    pattern: String,
    matcher: GlobMatcher,
    access: SqlAccess,
}

impl SqlRule {
    /// Parses a rule; an error names the field (`connection`).
    pub fn parse(spec: &SqlRuleSpec) -> Result<Self, (&'static str, String)> {
        let pattern = spec.connection.trim();
        if pattern.is_empty() {
            return Err(("connection", "must name a connection or a pattern".into()));
        }
        let matcher = GlobBuilder::new(pattern)
            .literal_separator(false)
            .build()
            .map(|g| g.compile_matcher())
            .map_err(|e| ("connection", format!("invalid connection pattern: {e}")))?;
        Ok(Self {
            pattern: pattern.to_string(),
            matcher,
            access: spec.access,
        })
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

/// The widest access any rule gives on `connection`, if any does.
pub fn access(rules: &[SqlRule], connection: &str) -> Option<SqlAccess> {
    rules
        .iter()
        .filter(|r| r.matcher.is_match(connection))
        .map(|r| r.access)
        .max()
}

/// The grant that would allow `access` on `connection`, in grants-file syntax.
pub fn hint(plugin: &str, connection: &str, access: SqlAccess) -> String {
    format!(
        "[[grants.sql]] (plugin = {plugin:?}) connection = {connection:?}, access = {:?}",
        access.as_str()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn rule(connection: &str, access: SqlAccess) -> SqlRule {
        SqlRule::parse(&SqlRuleSpec {
            connection: connection.into(),
            access,
        })
        .unwrap()
    }

    #[test]
    fn check_sql_intersects_asks_and_grants() {
        use crate::grants::{AskKind, Asks, GrantSpec, Grants};
        use crate::runtime::Digest;
        #[derive(serde::Deserialize)]
        struct File {
            grants: Vec<GrantSpec>,
        }
        let f: File = toml::from_str(
            "[[grants]]\nplugin = \"sql\"\n[[grants.sql]]\nconnection = \"reporting\"\n[[grants.sql]]\nconnection = \"etl-*\"\naccess = \"read_write\"\n",
        )
        .unwrap();
        let grants = Grants::parse(&f.grants, "grants").unwrap();
        let mut asks = Asks::default();
        asks.add(AskKind::Sql, "*").unwrap();
        let e = grants.effective("sql", &Digest::of(b"c"), &asks);
        assert_eq!(e.check_sql("reporting", false), Ok(SqlAccess::Read));
        assert_eq!(e.check_sql("etl-daily", false), Ok(SqlAccess::ReadWrite));
        let d = e.check_sql("billing", true).unwrap_err();
        assert_eq!(
            (d.capability.as_str(), d.target.as_str()),
            ("sql", "billing")
        );
        assert_eq!(
            d.grant_hint,
            "[[grants.sql]] (plugin = \"sql\") connection = \"billing\", access = \"read\""
        );
        // Asked for one connection only: the others are refused.
        let mut asks = Asks::default();
        asks.add(AskKind::Sql, "reporting").unwrap();
        let e = grants.effective("sql", &Digest::of(b"c"), &asks);
        assert!(e.check_sql("reporting", true).is_ok());
        assert!(e.check_sql("etl-daily", true).is_err());
        // No ask at all: nothing.
        let e = grants.effective("sql", &Digest::of(b"c"), &Asks::default());
        assert!(e.check_sql("reporting", true).is_err());
        // A bad rule names its field.
        let f: File =
            toml::from_str("[[grants]]\nplugin = \"sql\"\n[[grants.sql]]\nconnection = \"\"\n")
                .unwrap();
        let errs = Grants::parse(&f.grants, "grants").unwrap_err();
        assert_eq!(errs[0].path, "grants[0].sql[0].connection");
    }

    #[test]
    fn widest_matching_access_wins() {
        let rules = [
            rule("reporting", SqlAccess::Read),
            rule("etl-*", SqlAccess::ReadWrite),
            rule("*", SqlAccess::Read),
        ];
        assert_eq!(access(&rules, "reporting"), Some(SqlAccess::Read));
        assert_eq!(access(&rules, "etl-daily"), Some(SqlAccess::ReadWrite));
        assert_eq!(access(&rules, "other"), Some(SqlAccess::Read));
        assert_eq!(access(&rules[..2], "other"), None);
        assert!(
            SqlRule::parse(&SqlRuleSpec {
                connection: " ".into(),
                access: SqlAccess::Read
            })
            .is_err()
        );
    }
}
