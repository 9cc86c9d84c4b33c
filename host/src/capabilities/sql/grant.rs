//! SQL grants: which named connections a plugin may use, and how.
//!
//! A rule names a connection (or a glob over connection names) and an access
//! level. `read` runs only statements that read, in a read-only transaction
//! (so the database refuses a write too). `read_write` adds the statements
//! that change data inside the step's transaction; the forms that reach
//! beyond it (schema changes, session state, server-side code or files…)
//! stay refused unless the rule names their category in `allow` (see
//! [`Allow`]). What a statement is, is decided by
//! [`super::classify`]; what some statements do is refused under every
//! grant (transaction control, `ATTACH`/`DETACH`, `VACUUM INTO`…).
//!
//! Several rules may match a connection: the widest access wins, and the
//! `allow` categories of every matching `read_write` rule add up.
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
//! allow = ["ddl"]
//! ```

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One `[[grants.sql]]` rule as written in the config file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRuleSpec {
    /// A connection name or a glob over connection names.
    pub connection: String,
    /// `read` (the default) or `read_write`.
    #[serde(default)]
    pub access: SqlAccess,
    /// Categories of statements beyond data changes that a `read_write`
    /// rule lets through (`["ddl"]`); empty for most grants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<Allow>,
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

/// A category of statements that a `read_write` grant must name to let
/// through. Each reaches beyond "change rows inside this transaction".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Allow {
    /// Schema and storage changes: `CREATE`, `ALTER`, `DROP`, `TRUNCATE`,
    /// `COMMENT`, `SELECT … INTO <table>`, `VACUUM`, `ANALYZE`.
    Ddl,
    /// Session state: `SET`, `RESET`, `DISCARD`, `USE`, SQLite `PRAGMA`,
    /// `SET ROLE`, `LISTEN`/`NOTIFY`, `set_config()`, advisory and named
    /// locks, user variables. The session is reset (or closed) after the call.
    Session,
    /// Code whose statements the classifier cannot see: `CALL`, `EXEC`,
    /// `EXECUTE`, `PREPARE`, `DO`, T-SQL control flow.
    Procedure,
    /// Files on the database server: server-side `COPY`, `LOAD DATA`,
    /// `pg_read_file()`, `lo_import()`/`lo_export()`…
    ServerFiles,
    /// Other servers reached from the database: `dblink`, `OPENQUERY`,
    /// `OPENROWSET`, `OPENDATASOURCE`.
    Remote,
    /// Roles, privileges and server control: `GRANT`, `REVOKE`,
    /// `CREATE ROLE`/`USER`, `KILL`, `FLUSH`, `pg_terminate_backend()`…
    Admin,
    /// Text the SQL parser cannot read runs unclassified (PostgreSQL, MySQL,
    /// SQL Server only; the database's own privileges are then the only
    /// boundary). Never on SQLite, which runs inside the host.
    Unparsed,
}

impl Allow {
    /// The grants-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Allow::Ddl => "ddl",
            Allow::Session => "session",
            Allow::Procedure => "procedure",
            Allow::ServerFiles => "server_files",
            Allow::Remote => "remote",
            Allow::Admin => "admin",
            Allow::Unparsed => "unparsed",
        }
    }
}

/// What the grants allow a plugin on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlPermit {
    pub access: SqlAccess,
    /// The categories named by the matching `read_write` rules.
    pub allow: BTreeSet<Allow>,
}

/// One parsed SQL rule.
#[derive(Debug, Clone)]
pub struct SqlRule {
    pattern: String,
    matcher: GlobMatcher,
    access: SqlAccess,
    allow: BTreeSet<Allow>,
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
        if !spec.allow.is_empty() && spec.access != SqlAccess::ReadWrite {
            return Err((
                "allow",
                "needs access = \"read_write\": a read grant runs only statements that read".into(),
            ));
        }
        Ok(Self {
            pattern: pattern.to_string(),
            matcher,
            access: spec.access,
            allow: spec.allow.iter().copied().collect(),
        })
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The access the rule gives.
    pub fn access(&self) -> SqlAccess {
        self.access
    }

    /// Whether the rule names this connection.
    pub fn matches(&self, connection: &str) -> bool {
        self.matcher.is_match(connection)
    }
}

/// What the rules naming `connection` allow together, if any names it: the
/// widest access, and the categories of the `read_write` rules.
pub fn permit(rules: &[SqlRule], connection: &str) -> Option<SqlPermit> {
    let mut permit: Option<SqlPermit> = None;
    for r in rules.iter().filter(|r| r.matches(connection)) {
        let p = permit.get_or_insert_with(|| SqlPermit {
            access: r.access,
            allow: BTreeSet::new(),
        });
        p.access = p.access.max(r.access);
        p.allow.extend(r.allow.iter().copied());
    }
    permit
}

/// The grant that would allow `access` (and `allow`, when some category is
/// needed) on `connection`, in grants-file syntax.
pub fn hint(plugin: &str, connection: &str, access: SqlAccess, allow: Option<Allow>) -> String {
    let mut text = format!(
        "[[grants.sql]] (plugin = {plugin:?}) connection = {connection:?}, access = {:?}",
        access.as_str()
    );
    if let Some(a) = allow {
        text.push_str(&format!(", allow = [{:?}]", a.as_str()));
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn rule(connection: &str, access: SqlAccess) -> SqlRule {
        SqlRule::parse(&SqlRuleSpec {
            connection: connection.into(),
            access,
            allow: Vec::new(),
        })
        .unwrap()
    }

    fn access(rules: &[SqlRule], connection: &str) -> Option<SqlAccess> {
        permit(rules, connection).map(|p| p.access)
    }

    #[test]
    fn check_sql_intersects_asks_and_grants() {
        use crate::capabilities::grants::{AskKind, Asks, GrantSpec, Grants};
        use crate::contract::Digest;
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
        assert_eq!(
            e.check_sql("reporting", false).map(|p| p.access),
            Ok(SqlAccess::Read)
        );
        assert_eq!(
            e.check_sql("etl-daily", false).map(|p| p.access),
            Ok(SqlAccess::ReadWrite)
        );
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
                access: SqlAccess::Read,
                allow: Vec::new(),
            })
            .is_err()
        );
    }

    #[test]
    fn allow_needs_read_write_and_adds_up_across_rules() {
        let spec = |access, allow: &[Allow]| SqlRuleSpec {
            connection: "etl".into(),
            access,
            allow: allow.to_vec(),
        };
        let (field, message) = SqlRule::parse(&spec(SqlAccess::Read, &[Allow::Ddl])).unwrap_err();
        assert_eq!(field, "allow");
        assert!(message.contains("read_write"), "{message}");
        let rules = [
            SqlRule::parse(&spec(SqlAccess::ReadWrite, &[Allow::Ddl])).unwrap(),
            SqlRule::parse(&spec(SqlAccess::ReadWrite, &[Allow::Session])).unwrap(),
            rule("*", SqlAccess::Read),
        ];
        let p = permit(&rules, "etl").unwrap();
        assert_eq!(p.access, SqlAccess::ReadWrite);
        assert_eq!(
            p.allow.into_iter().collect::<Vec<_>>(),
            [Allow::Ddl, Allow::Session]
        );
        assert!(permit(&rules, "other").unwrap().allow.is_empty());
        // Unknown categories are refused when the grant is read.
        #[derive(serde::Deserialize)]
        struct File {
            #[allow(dead_code)]
            sql: Vec<SqlRuleSpec>,
        }
        let e = toml::from_str::<File>("[[sql]]\nconnection = \"x\"\nallow = [\"everything\"]\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("unknown variant"), "{e}");
        assert_eq!(
            hint("p", "etl", SqlAccess::ReadWrite, Some(Allow::ServerFiles)),
            "[[grants.sql]] (plugin = \"p\") connection = \"etl\", access = \"read_write\", allow = [\"server_files\"]"
        );
    }
}
