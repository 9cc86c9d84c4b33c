//! What a statement does, decided before it is sent: every SQL statement in
//! the text of a WIT statement (one WIT statement may hold a batch) is parsed
//! with `sqlparser` in the connection's dialect and classified, and the
//! call is checked against what the grant allows ([`check`]).
//!
//! A statement reads, writes (changes rows inside the step's transaction),
//! needs a category that a `read_write` grant must name in `allow`
//! ([`Allow`]), or is refused under every grant ([`Effect::Never`]):
//! transaction control (the capability owns the one transaction per call),
//! `ATTACH`/`DETACH` (a connection reaches its own database only), shell
//! commands on the database server, native code loaded into the host's
//! SQLite. Text the parser cannot read — or reads only in part — is refused
//! unless a `read_write` grant names `unparsed` (never on SQLite, which runs
//! inside the host).
//!
//! Functions are classified by name from short lists of the ones known to
//! reach beyond the statement (`set_config`, `pg_read_file`, `dblink`,
//! `load_extension`…). Those lists are a courtesy, not the boundary: a
//! parser cannot know what a view, a trigger or a user function does. The
//! boundary for reads is the database's own read-only mode (a read-only
//! transaction, SQLite opened read-only) and a login that cannot write,
//! which `meridian doctor` checks.
//!
//! Classification is pure: no IO, one parse per statement. Its cost grows
//! with the text (about a microsecond a byte), and a long operator chain
//! nests the tree as deep as it is long, so the caller bounds the text and
//! gives long texts a thread with a large stack ([`super`]).

use super::grant::{Allow, SqlAccess};
use sqlparser::ast::{
    BinaryOperator, CopyTarget, Expr, ObjectName, ObjectNamePart, ObjectType, Query, Select, Set,
    SetSessionParamKind, Statement, TableFactor, Visit, Visitor,
};
use sqlparser::dialect::{
    Dialect as ParserDialect, MsSqlDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect,
};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;
use std::collections::BTreeSet;
use std::ops::ControlFlow;

/// The SQL dialect of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    MySql,
    Sqlite,
    MsSql,
}

impl Dialect {
    /// For messages.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::MySql => "MySQL/MariaDB",
            Dialect::Sqlite => "SQLite",
            Dialect::MsSql => "SQL Server",
        }
    }

    fn parser(self) -> &'static dyn ParserDialect {
        match self {
            Dialect::Postgres => &PostgreSqlDialect {},
            Dialect::MySql => &MySqlDialect {},
            Dialect::Sqlite => &SQLiteDialect {},
            Dialect::MsSql => &MsSqlDialect {},
        }
    }
}

/// What running (part of) a statement does, as a grant sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Read,
    /// Changes data inside the step's transaction: needs `read_write`.
    Write,
    /// Needs `read_write` with this category in `allow`.
    Needs(Allow),
    /// Refused under every grant, for this reason.
    Never(&'static str),
}

/// One thing a statement does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What it is, for messages: `INSERT`, `SET ROLE`, `function
    /// pg_read_file`, `COPY … PROGRAM`.
    pub what: String,
    pub effect: Effect,
}

impl Finding {
    fn new(what: impl Into<String>, effect: Effect) -> Self {
        Self {
            what: what.into(),
            effect,
        }
    }
}

/// What the text of one WIT statement does: a finding for each SQL
/// statement in it and for each part of those that does more than read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Class {
    pub findings: Vec<Finding>,
    /// SQL statements found in the text.
    pub statements: usize,
}

impl Class {
    /// Whether running it could leave something on the session for the
    /// next call to see: anything but reads. Settings, variables, temporary
    /// objects, prepared statements and locks are plain; a write leaves
    /// its insert id (`LAST_INSERT_ID()`, `SCOPE_IDENTITY()`); unclassified
    /// text may do anything. A pool that cannot reset a session closes it
    /// after such a call.
    pub fn may_change_session(&self) -> bool {
        self.findings.iter().any(|f| f.effect != Effect::Read)
    }
}

/// Transaction control: refused under every grant.
const TRANSACTION: &str = "controls the transaction, which the capability owns (one transaction per call, committed or rolled back by the host)";
const ATTACH: &str = "attaches another database file to the connection; a step's connection reaches its own database only";
const SHELL: &str = "runs a program on the database server";
const NATIVE: &str = "loads native code or reaches files on the Meridian host";
const LOCK_TABLES: &str = "LOCK TABLES and UNLOCK TABLES end the transaction implicitly (MySQL), which the capability owns";

/// Parses and classifies the text of one WIT statement. Text that does not
/// parse (or that the parser reads only in part) is one finding that needs
/// [`Allow::Unparsed`], with the parser's message.
pub fn classify(dialect: Dialect, sql: &str) -> Class {
    let unparsed = |message: String| Class {
        findings: vec![Finding::new(
            format!(
                "text that does not parse as {} SQL ({message})",
                dialect.name()
            ),
            Effect::Needs(Allow::Unparsed),
        )],
        statements: 0,
    };
    let mut parser = match Parser::new(dialect.parser()).try_with_sql(sql) {
        Ok(p) => p,
        Err(e) => return unparsed(e.to_string()),
    };
    let statements = match parser.parse_statements() {
        Ok(s) => s,
        Err(e) => return unparsed(e.to_string()),
    };
    // The parser stops early at an `END` where it expected the end of a
    // statement; whatever follows would reach the database unclassified.
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return unparsed(format!(
            "the parser stopped at {} before the end of the text",
            next.span.start
        ));
    }
    // MariaDB runs the text of a `/*M! … */` comment; the parser skips it
    // (MySQL's `/*! … */` it reads as SQL, as the server does).
    if dialect == Dialect::MySql
        && parser.into_comments().find(..).any(|c| {
            matches!(&c.comment, sqlparser::ast::comments::Comment::MultiLine(t) if t.starts_with("M!"))
        })
    {
        return unparsed("a MariaDB executable comment /*M! … */ holds SQL the parser does not read".into());
    }
    let mut collect = Collect {
        dialect,
        findings: Vec::new(),
        definitions: 0,
    };
    for s in &statements {
        let _ = s.visit(&mut collect);
    }
    Class {
        findings: collect.findings,
        statements: statements.len(),
    }
}

/// Why a call is refused: the statement (from 0), what in it, and what would
/// allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub index: usize,
    pub what: String,
    pub needs: Needs,
}

/// What would allow a refused statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Needs {
    /// A `read_write` grant (and a read-write call).
    ReadWrite,
    /// A `read_write` grant naming this category.
    Allow(Allow),
    /// Nothing: refused under every grant, for this reason.
    Nothing(&'static str),
}

impl Refusal {
    /// One sentence: `statement 2 (COMMIT) controls the transaction…`.
    pub fn describe(&self) -> String {
        let does = match &self.needs {
            Needs::ReadWrite => "changes data".to_string(),
            Needs::Allow(a) => allow_does(*a).to_string(),
            Needs::Nothing(why) => why.to_string(),
        };
        format!("statement {} ({}) {does}", self.index + 1, self.what)
    }
}

/// What statements of a category do, for messages.
pub fn allow_does(a: Allow) -> &'static str {
    match a {
        Allow::Ddl => "changes the schema or its storage",
        Allow::Session => "changes the session's state",
        Allow::Procedure => "runs code whose statements cannot be classified",
        Allow::ServerFiles => "reaches files on the database server",
        Allow::Remote => "reaches other servers from the database",
        Allow::Admin => "changes roles, privileges or the server itself",
        Allow::Unparsed => "cannot be classified",
    }
}

/// Checks every statement of a call against the access of the call and the
/// categories the grant allows; the first statement refused is the answer.
pub fn check(
    dialect: Dialect,
    classes: &[Class],
    access: SqlAccess,
    allow: &BTreeSet<Allow>,
) -> Result<(), Refusal> {
    for (index, class) in classes.iter().enumerate() {
        for f in &class.findings {
            let needs = match f.effect {
                Effect::Read => continue,
                Effect::Never(why) => Needs::Nothing(why),
                Effect::Needs(Allow::Unparsed) if dialect == Dialect::Sqlite => Needs::Nothing(
                    "cannot be classified, and SQLite runs inside the host: unclassified text is never run on it",
                ),
                Effect::Needs(a) if access == SqlAccess::ReadWrite && allow.contains(&a) => {
                    continue;
                }
                Effect::Needs(a) => Needs::Allow(a),
                Effect::Write if access == SqlAccess::ReadWrite => continue,
                Effect::Write => Needs::ReadWrite,
            };
            return Err(Refusal {
                index,
                what: f.what.clone(),
                needs,
            });
        }
    }
    Ok(())
}

/// Walks one parsed statement, nested statements and expressions included.
struct Collect {
    dialect: Dialect,
    findings: Vec<Finding>,
    /// Inside the body of a function, procedure or trigger being defined:
    /// its statements are not run now, so they are not findings (creating
    /// it is, as DDL).
    definitions: usize,
}

impl Collect {
    fn push(&mut self, what: impl Into<String>, effect: Effect) {
        self.findings.push(Finding::new(what, effect));
    }

    fn function(&mut self, name: &ObjectName) {
        let Some(name) = last_name(name) else {
            return;
        };
        if let Some(effect) = function_effect(self.dialect, &name) {
            self.push(format!("function {name}"), effect);
        }
    }
}

impl Visitor for Collect {
    type Break = ();

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        if self.definitions == 0 {
            let (what, effect) = statement_effect(self.dialect, s);
            self.push(what, effect);
        }
        if defines_code(s) {
            self.definitions += 1;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        if defines_code(s) {
            self.definitions = self.definitions.saturating_sub(1);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if self.definitions == 0 && !q.locks.is_empty() {
            self.push("SELECT … FOR UPDATE/SHARE", Effect::Write);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        if self.definitions > 0 {
            return ControlFlow::Continue(());
        }
        if let Some(into) = &s.into {
            let variables = into
                .targets
                .iter()
                .all(|t| matches!(t, Expr::Identifier(i) if i.value.starts_with('@')));
            if variables {
                self.push("SELECT … INTO @variable", Effect::Needs(Allow::Session));
            } else {
                self.push("SELECT … INTO a new table", Effect::Needs(Allow::Ddl));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.definitions > 0 {
            return ControlFlow::Continue(());
        }
        match e {
            Expr::Function(f) => self.function(&f.name),
            Expr::BinaryOp {
                op: BinaryOperator::Assignment,
                ..
            } => self.push(
                "a user variable assignment (:=)",
                Effect::Needs(Allow::Session),
            ),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        if self.definitions > 0 {
            return ControlFlow::Continue(());
        }
        match t {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.function(name),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Whether the statement defines code that runs later (its body is not run
/// now).
fn defines_code(s: &Statement) -> bool {
    matches!(
        s,
        Statement::CreateFunction(_)
            | Statement::CreateProcedure { .. }
            | Statement::CreateTrigger(_)
            | Statement::CreateMacro { .. }
    )
}

/// The last part of a name, lower case, without `@`/`@@` prefixes or a
/// `session.` qualifier inside one identifier (`@@session.autocommit`).
fn last_name(name: &ObjectName) -> Option<String> {
    let ObjectNamePart::Identifier(ident) = name.0.last()? else {
        return None;
    };
    let text = ident.value.rsplit('.').next().unwrap_or(&ident.value);
    Some(text.trim_start_matches('@').to_ascii_lowercase())
}

/// Settings that change how or whether the transaction ends, or its access
/// mode: refused like `COMMIT` itself.
const TRANSACTION_SETTINGS: &[&str] = &[
    "autocommit",
    "completion_type",
    "default_transaction_deferrable",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "implicit_transactions",
    "transaction_deferrable",
    "transaction_isolation",
    "transaction_read_only",
    "tx_isolation",
    "tx_read_only",
    "xact_abort",
];

fn transaction_setting(name: &ObjectName) -> bool {
    last_name(name).is_some_and(|n| TRANSACTION_SETTINGS.contains(&n.as_str()))
}

fn set_effect(set: &Set) -> (&'static str, Effect) {
    let session = Effect::Needs(Allow::Session);
    let tx = Effect::Never(TRANSACTION);
    match set {
        Set::SetTransaction { .. } => ("SET TRANSACTION", tx),
        Set::SingleAssignment { variable, .. } if transaction_setting(variable) => ("SET", tx),
        Set::ParenthesizedAssignments { variables, .. }
            if variables.iter().any(transaction_setting) =>
        {
            ("SET", tx)
        }
        Set::MultipleAssignments { assignments }
            if assignments.iter().any(|a| transaction_setting(&a.name)) =>
        {
            ("SET", tx)
        }
        Set::SetSessionParam(SetSessionParamKind::Generic(g))
            if g.names
                .iter()
                .any(|n| TRANSACTION_SETTINGS.contains(&n.to_ascii_lowercase().as_str())) =>
        {
            ("SET", tx)
        }
        Set::SetRole { .. } => ("SET ROLE", session),
        Set::SetSessionAuthorization(_) => ("SET SESSION AUTHORIZATION", session),
        _ => ("SET", session),
    }
}

/// Procedures that run programs on the server: refused under every grant,
/// whatever the login may do.
const SHELL_PROCEDURES: &[&str] = &["xp_cmdshell", "sp_oacreate", "sp_execute_external_script"];

fn procedure_effect(name: Option<&ObjectName>) -> Effect {
    match name.and_then(last_name) {
        Some(n) if SHELL_PROCEDURES.contains(&n.as_str()) => Effect::Never(SHELL),
        _ => Effect::Needs(Allow::Procedure),
    }
}

/// What a statement itself does (its nested statements and expressions are
/// visited apart).
fn statement_effect(dialect: Dialect, s: &Statement) -> (String, Effect) {
    use Effect::{Needs, Never, Read, Write};
    let ddl = Needs(Allow::Ddl);
    let admin = Needs(Allow::Admin);
    let session = Needs(Allow::Session);
    let procedure = Needs(Allow::Procedure);
    let files = Needs(Allow::ServerFiles);
    let (what, effect): (&str, Effect) = match s {
        Statement::Query(_) => ("SELECT", Read),
        Statement::Insert(_) => ("INSERT", Write),
        Statement::Update(_) => ("UPDATE", Write),
        Statement::Delete(_) => ("DELETE", Write),
        Statement::Merge(_) => ("MERGE", Write),
        Statement::Lock(_) => ("LOCK TABLE", Write),
        Statement::Explain { .. } | Statement::ExplainTable { .. } => ("EXPLAIN", Read),
        Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowProcessList { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowCharset(_)
        | Statement::ShowObjects(_)
        | Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowCollation { .. } => ("SHOW", Read),
        Statement::WaitFor(_) => ("WAITFOR", Read),
        Statement::Fetch { .. } => ("FETCH", Read),
        // A T-SQL variable lives for the batch; elsewhere DECLARE makes a
        // cursor, which can outlive the transaction (WITH HOLD).
        Statement::Declare { .. } if dialect == Dialect::MsSql => ("DECLARE", Read),
        Statement::Declare { .. } => ("DECLARE", session),
        Statement::Open(_) | Statement::Close { .. } => ("OPEN/CLOSE cursor", session),

        Statement::StartTransaction { .. } => ("BEGIN", Never(TRANSACTION)),
        Statement::Commit { .. } => ("COMMIT", Never(TRANSACTION)),
        Statement::Rollback { .. } => ("ROLLBACK", Never(TRANSACTION)),
        Statement::Savepoint { .. } => ("SAVEPOINT", Never(TRANSACTION)),
        Statement::ReleaseSavepoint { .. } => ("RELEASE SAVEPOINT", Never(TRANSACTION)),
        Statement::LockTables { .. } => ("LOCK TABLES", Never(LOCK_TABLES)),
        Statement::UnlockTables => ("UNLOCK TABLES", Never(LOCK_TABLES)),
        Statement::AttachDatabase { .. } | Statement::AttachDuckDBDatabase { .. } => {
            ("ATTACH DATABASE", Never(ATTACH))
        }
        Statement::DetachDuckDBDatabase { .. } => ("DETACH DATABASE", Never(ATTACH)),
        Statement::Install { .. } | Statement::Load { .. } => ("INSTALL/LOAD", Never(NATIVE)),

        Statement::Set(set) => {
            let (what, effect) = set_effect(set);
            (what, effect)
        }
        Statement::Reset(_) => ("RESET", session),
        Statement::Discard { .. } => ("DISCARD", session),
        Statement::Use(_) => ("USE", session),
        Statement::Pragma { .. } => ("PRAGMA", session),
        Statement::LISTEN { .. } => ("LISTEN", session),
        Statement::UNLISTEN { .. } => ("UNLISTEN", session),
        Statement::NOTIFY { .. } => ("NOTIFY", session),
        Statement::Deallocate { .. } => ("DEALLOCATE", session),
        Statement::Cache { .. } | Statement::UNCache { .. } => ("CACHE", session),
        Statement::AlterSession { .. } => ("ALTER SESSION", session),

        Statement::Call(f) => ("CALL", procedure_effect(Some(&f.name))),
        Statement::Execute { name, .. } => ("EXECUTE", procedure_effect(name.as_ref())),
        Statement::Prepare { .. } => ("PREPARE", procedure),
        Statement::Case(_)
        | Statement::If(_)
        | Statement::While(_)
        | Statement::Raise(_)
        | Statement::RaisError { .. }
        | Statement::Throw(_)
        | Statement::Print(_)
        | Statement::Return(_)
        | Statement::Assert { .. } => ("procedural statement", procedure),

        Statement::Copy { target, to, .. } => match target {
            CopyTarget::Program { .. } => ("COPY … PROGRAM", Never(SHELL)),
            CopyTarget::File { .. } => ("COPY with a server file", files),
            CopyTarget::Stdin => ("COPY FROM STDIN", Write),
            CopyTarget::Stdout if *to => ("COPY TO STDOUT", Read),
            CopyTarget::Stdout => ("COPY", Write),
        },
        Statement::LoadData { local: true, .. } => ("LOAD DATA LOCAL", Never(NATIVE)),
        Statement::LoadData { .. } => ("LOAD DATA", files),
        Statement::Directory { .. }
        | Statement::Unload { .. }
        | Statement::ExportData(_)
        | Statement::CopyIntoSnowflake { .. }
        | Statement::List(_)
        | Statement::Put { .. }
        | Statement::Remove(_) => ("a server file transfer", files),

        Statement::Grant(_)
        | Statement::GrantRole(_)
        | Statement::Deny(_)
        | Statement::Revoke(_)
        | Statement::RevokeRole(_)
        | Statement::AlterDefaultPrivileges(_) => ("GRANT/REVOKE", admin),
        Statement::CreateRole(_)
        | Statement::AlterRole { .. }
        | Statement::CreateUser(_)
        | Statement::AlterUser(_) => ("a role or user change", admin),
        Statement::CreatePolicy(_) | Statement::AlterPolicy(_) | Statement::DropPolicy(_) => {
            ("a row security policy change", admin)
        }
        Statement::CreateSecret { .. } | Statement::DropSecret { .. } => ("a secret change", admin),
        Statement::CreateExtension(_) | Statement::DropExtension(_) => {
            ("an extension change", admin)
        }
        Statement::Kill { .. } => ("KILL", admin),
        Statement::Flush { .. } => ("FLUSH", admin),
        Statement::CreateServer(_)
        | Statement::CreateForeignTable(_)
        | Statement::CreateForeignDataWrapper(_)
        | Statement::CreateUserMapping(_) => ("a foreign server definition", Needs(Allow::Remote)),

        Statement::CreateTable(_) => ("CREATE TABLE", ddl),
        Statement::CreateView(_) => ("CREATE VIEW", ddl),
        Statement::CreateIndex(_) => ("CREATE INDEX", ddl),
        Statement::AlterTable(_) => ("ALTER TABLE", ddl),
        Statement::Drop {
            object_type: ObjectType::Role | ObjectType::User | ObjectType::Group,
            ..
        } => ("DROP ROLE/USER", admin),
        Statement::Drop { .. } => ("DROP", ddl),
        Statement::Truncate(_) => ("TRUNCATE", ddl),
        Statement::Comment { .. } => ("COMMENT", ddl),
        Statement::RenameTable(_) => ("RENAME TABLE", ddl),
        Statement::Vacuum(_) => ("VACUUM", ddl),
        Statement::Analyze(_) => ("ANALYZE", ddl),
        Statement::OptimizeTable { .. } => ("OPTIMIZE TABLE", ddl),
        Statement::RefreshMaterializedView(_) => ("REFRESH MATERIALIZED VIEW", ddl),
        // Kinds of other dialects too: the match is exhaustive, so a
        // sqlparser upgrade that adds a kind must classify it here.
        Statement::Msck(_)
        | Statement::CreateVirtualTable { .. }
        | Statement::CreateRule(_)
        | Statement::CreateConnector(_)
        | Statement::CreateOperator(_)
        | Statement::CreateOperatorFamily(_)
        | Statement::CreateOperatorClass(_)
        | Statement::CreateTextSearch(_)
        | Statement::CreateAggregate(_)
        | Statement::AlterSchema(_)
        | Statement::AlterIndex { .. }
        | Statement::AlterView(_)
        | Statement::AlterFunction(_)
        | Statement::AlterType(_)
        | Statement::AlterCollation(_)
        | Statement::AlterOperator(_)
        | Statement::AlterOperatorFamily(_)
        | Statement::AlterOperatorClass(_)
        | Statement::AlterTextSearch(_)
        | Statement::AlterTrigger(_)
        | Statement::AlterConnector { .. }
        | Statement::DropFunction(_)
        | Statement::DropDomain(_)
        | Statement::DropProcedure { .. }
        | Statement::DropRule(_)
        | Statement::DropConnector { .. }
        | Statement::CreateCollation(_)
        | Statement::DropOperator(_)
        | Statement::DropOperatorFamily(_)
        | Statement::DropOperatorClass(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateDatabase { .. }
        | Statement::CreateFunction(_)
        | Statement::CreateTrigger(_)
        | Statement::DropTrigger(_)
        | Statement::CreateProcedure { .. }
        | Statement::CreateMacro { .. }
        | Statement::CreateStage { .. }
        | Statement::CreateFileFormat { .. }
        | Statement::CreateWarehouse(_)
        | Statement::CreateSequence { .. }
        | Statement::CreateDomain(_)
        | Statement::CreateType { .. } => ("a schema change", ddl),
    };
    (what.to_string(), effect)
}

/// Known functions that do more than compute a value. A short list, not
/// the boundary (see the module docs).
fn function_effect(dialect: Dialect, name: &str) -> Option<Effect> {
    use Effect::{Needs, Never, Write};
    let effect = match (dialect, name) {
        // Native code or files inside the host's own process.
        (
            Dialect::Sqlite,
            "load_extension" | "fts3_tokenizer" | "readfile" | "writefile" | "edit",
        ) => Never(NATIVE),
        (Dialect::MySql, "sys_exec" | "sys_eval") => Never(SHELL),
        (Dialect::Postgres, "nextval" | "setval")
        | (
            Dialect::Postgres,
            "lo_create"
            | "lo_creat"
            | "lo_unlink"
            | "lo_put"
            | "lo_from_bytea"
            | "lo_truncate"
            | "pg_logical_emit_message",
        ) => Write,
        (
            Dialect::Postgres,
            "set_config"
            | "pg_notify"
            | "pg_advisory_lock"
            | "pg_advisory_lock_shared"
            | "pg_try_advisory_lock"
            | "pg_try_advisory_lock_shared"
            | "pg_advisory_unlock"
            | "pg_advisory_unlock_shared"
            | "pg_advisory_unlock_all",
        )
        | (Dialect::MySql, "get_lock" | "release_lock" | "release_all_locks") => {
            Needs(Allow::Session)
        }
        // These run SQL given as text, which the classifier cannot see.
        (
            Dialect::Postgres,
            "query_to_xml" | "query_to_xmlschema" | "query_to_xml_and_xmlschema" | "ts_stat",
        ) => Needs(Allow::Procedure),
        (
            Dialect::Postgres,
            "pg_read_file"
            | "pg_read_binary_file"
            | "pg_ls_dir"
            | "pg_stat_file"
            | "pg_ls_logdir"
            | "pg_ls_waldir"
            | "pg_ls_tmpdir"
            | "pg_ls_archive_statusdir"
            | "lo_import"
            | "lo_export"
            | "pg_file_write"
            | "pg_file_rename"
            | "pg_file_unlink"
            | "pg_file_sync"
            | "pg_logdir_ls",
        )
        | (Dialect::MySql, "load_file") => Needs(Allow::ServerFiles),
        (Dialect::Postgres, n) if n.starts_with("dblink") => Needs(Allow::Remote),
        (Dialect::MsSql, "openquery" | "openrowset" | "opendatasource") => Needs(Allow::Remote),
        (
            Dialect::Postgres,
            "pg_terminate_backend"
            | "pg_cancel_backend"
            | "pg_reload_conf"
            | "pg_rotate_logfile"
            | "pg_switch_wal"
            | "pg_create_restore_point"
            | "pg_promote"
            | "pg_backup_start"
            | "pg_backup_stop"
            | "pg_start_backup"
            | "pg_stop_backup"
            | "pg_create_physical_replication_slot"
            | "pg_create_logical_replication_slot"
            | "pg_drop_replication_slot"
            | "pg_wal_replay_pause"
            | "pg_wal_replay_resume"
            | "pg_log_backend_memory_contexts",
        ) => Needs(Allow::Admin),
        (Dialect::Postgres, n) if n.starts_with("pg_stat_reset") => Needs(Allow::Admin),
        _ => return None,
    };
    Some(effect)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn effects(d: Dialect, sql: &str) -> Vec<Effect> {
        classify(d, sql)
            .findings
            .into_iter()
            .map(|f| f.effect)
            .collect()
    }

    /// The strongest need of a text, for the tables below.
    fn needs(d: Dialect, sql: &str) -> String {
        let class = classify(d, sql);
        let mut out = "read".to_string();
        for f in &class.findings {
            match f.effect {
                Effect::Read => {}
                Effect::Write if out == "read" => out = "write".into(),
                Effect::Write => {}
                Effect::Needs(a) if !out.starts_with("never") => out = a.as_str().into(),
                Effect::Needs(_) => {}
                Effect::Never(_) => return "never".into(),
            }
        }
        out
    }

    #[test]
    fn reads_are_reads() {
        for (d, sql) in [
            (
                Dialect::Postgres,
                "SELECT a, count(*) FROM t WHERE b = $1 GROUP BY a",
            ),
            (
                Dialect::Postgres,
                "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
            ),
            (Dialect::Postgres, "SHOW search_path"),
            (Dialect::Postgres, "SELECT * FROM generate_series(1, 3)"),
            (Dialect::MySql, "SELECT * FROM t WHERE id = ? LIMIT 5"),
            (Dialect::MySql, "/* a comment */ SELECT 1 -- trailing"),
            (Dialect::Sqlite, "SELECT * FROM pragma_table_info('t')"),
            (Dialect::Sqlite, "SELECT ?1, :a"),
            (Dialect::MsSql, "SELECT TOP 1 * FROM t WHERE id = @P1"),
            (Dialect::MsSql, "DECLARE @x INT = 1; SELECT @x"),
            (Dialect::MsSql, "WAITFOR DELAY '00:00:01'"),
        ] {
            assert_eq!(needs(d, sql), "read", "{d:?}: {sql}");
        }
    }

    #[test]
    fn writes_need_read_write() {
        for (d, sql) in [
            (Dialect::Postgres, "INSERT INTO t VALUES ($1)"),
            (Dialect::Postgres, "UPDATE t SET a = 1 RETURNING *"),
            (
                Dialect::Postgres,
                "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            ),
            (Dialect::Postgres, "SELECT * FROM t FOR UPDATE"),
            (Dialect::Postgres, "SELECT nextval('s')"),
            (Dialect::Postgres, "EXPLAIN ANALYZE DELETE FROM t"),
            (Dialect::MySql, "REPLACE INTO t VALUES (1)"),
            (Dialect::Sqlite, "INSERT OR REPLACE INTO t VALUES (1)"),
            (
                Dialect::MsSql,
                "MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE;",
            ),
        ] {
            assert_eq!(needs(d, sql), "write", "{d:?}: {sql}");
        }
    }

    #[test]
    fn categories_need_naming() {
        for (d, sql, category) in [
            (Dialect::Postgres, "CREATE TABLE t (a INT)", "ddl"),
            (Dialect::Postgres, "CREATE TEMP TABLE t (a INT)", "ddl"),
            (Dialect::Postgres, "SELECT 1 INTO t2", "ddl"),
            (Dialect::Postgres, "TRUNCATE t", "ddl"),
            (Dialect::Sqlite, "VACUUM", "ddl"),
            (Dialect::Postgres, "SET search_path TO x", "session"),
            (Dialect::Postgres, "SET ROLE admin", "session"),
            (
                Dialect::Postgres,
                "SET SESSION AUTHORIZATION admin",
                "session",
            ),
            (Dialect::Postgres, "RESET ALL", "session"),
            (Dialect::Postgres, "DISCARD ALL", "session"),
            (
                Dialect::Postgres,
                "SELECT set_config('search_path', 'x', false)",
                "session",
            ),
            (
                Dialect::Postgres,
                "SELECT pg_catalog.set_config('a', 'b', false)",
                "session",
            ),
            (Dialect::Postgres, "LISTEN c", "session"),
            (Dialect::Sqlite, "PRAGMA query_only = 0", "session"),
            (Dialect::MySql, "SET @x = 1", "session"),
            (Dialect::MySql, "SELECT @x := 5", "session"),
            (Dialect::MySql, "SELECT 1 INTO @x", "session"),
            (Dialect::MySql, "SELECT GET_LOCK('a', 1)", "session"),
            (Dialect::MySql, "USE other", "session"),
            (Dialect::MsSql, "SET NOCOUNT ON", "session"),
            (Dialect::Postgres, "CALL p()", "procedure"),
            (Dialect::Postgres, "PREPARE p AS SELECT 1", "procedure"),
            (Dialect::Postgres, "EXECUTE p", "procedure"),
            (
                Dialect::Postgres,
                "SELECT query_to_xml('DELETE FROM t', true, true, '')",
                "procedure",
            ),
            (
                Dialect::MsSql,
                "EXEC sp_executesql N'SELECT 1'",
                "procedure",
            ),
            (Dialect::MsSql, "EXEC('DELETE FROM t')", "procedure"),
            (Dialect::MsSql, "IF 1 = 1 SELECT 1", "procedure"),
            (Dialect::Postgres, "COPY t FROM '/tmp/x'", "server_files"),
            (
                Dialect::Postgres,
                "SELECT pg_read_file('/etc/passwd')",
                "server_files",
            ),
            (
                Dialect::Postgres,
                "SELECT lo_export(1, '/tmp/x')",
                "server_files",
            ),
            (
                Dialect::MySql,
                "SELECT LOAD_FILE('/etc/passwd')",
                "server_files",
            ),
            (
                Dialect::Postgres,
                "SELECT * FROM dblink('h', 'SELECT 1') AS t(a INT)",
                "remote",
            ),
            (
                Dialect::Postgres,
                "SELECT dblink_exec('h', 'DELETE FROM t')",
                "remote",
            ),
            (
                Dialect::MsSql,
                "SELECT * FROM OPENQUERY(srv, 'SELECT 1')",
                "remote",
            ),
            (Dialect::Postgres, "GRANT SELECT ON t TO r", "admin"),
            (Dialect::Postgres, "CREATE ROLE r", "admin"),
            (Dialect::MySql, "DROP ROLE r", "admin"),
            (Dialect::MySql, "DROP TABLE r", "ddl"),
            (Dialect::Postgres, "SELECT pg_terminate_backend(1)", "admin"),
            (Dialect::MySql, "KILL 5", "admin"),
        ] {
            assert_eq!(needs(d, sql), category, "{d:?}: {sql}");
        }
    }

    #[test]
    fn some_things_no_grant_allows() {
        for (d, sql) in [
            (Dialect::Postgres, "COMMIT"),
            (Dialect::Postgres, "ROLLBACK; BEGIN"),
            (Dialect::Postgres, "BEGIN READ WRITE"),
            (Dialect::Postgres, "SET TRANSACTION READ WRITE"),
            (Dialect::Postgres, "SET transaction_read_only = off"),
            (Dialect::Postgres, "SAVEPOINT a"),
            (Dialect::Postgres, "END"),
            (Dialect::Postgres, "ABORT"),
            (Dialect::Postgres, "COPY t TO PROGRAM 'id'"),
            (Dialect::MySql, "START TRANSACTION READ WRITE"),
            (Dialect::MySql, "SET autocommit = 1"),
            (Dialect::MySql, "SET @@session.autocommit = 1"),
            (Dialect::MySql, "LOCK TABLES t WRITE"),
            (
                Dialect::MsSql,
                "SELECT 1; COMMIT TRANSACTION; DELETE FROM t",
            ),
            (Dialect::MsSql, "BEGIN TRAN"),
            (Dialect::MsSql, "SET XACT_ABORT OFF"),
            (Dialect::MsSql, "SET IMPLICIT_TRANSACTIONS ON"),
            (Dialect::MsSql, "EXEC xp_cmdshell 'dir'"),
            (Dialect::MsSql, "EXEC master..xp_cmdshell 'dir'"),
            (Dialect::Sqlite, "ATTACH DATABASE '/data/meridian.db' AS m"),
            (Dialect::Sqlite, "SELECT load_extension('/tmp/x.so')"),
            (Dialect::Sqlite, "BEGIN IMMEDIATE"),
        ] {
            assert_eq!(needs(d, sql), "never", "{d:?}: {sql}");
        }
    }

    #[test]
    fn text_that_does_not_parse_is_unparsed_with_the_parsers_message() {
        for (d, sql) in [
            (Dialect::Sqlite, "PRAGMA query_only = OFF"),
            (Dialect::Sqlite, "VACUUM INTO '/tmp/x.db'"),
            (Dialect::Sqlite, "DETACH DATABASE m"),
            (Dialect::Postgres, "DO $$ BEGIN PERFORM 1; END $$"),
            (Dialect::MySql, "SELECT a INTO OUTFILE '/tmp/x' FROM t"),
            (Dialect::MySql, "SELECT 1 /*!50000 INTO OUTFILE '/tmp/x' */"),
            (Dialect::MySql, "LOAD DATA INFILE '/x' INTO TABLE t"),
            (Dialect::MsSql, "BULK INSERT t FROM 'c:\\x'"),
            (Dialect::Postgres, "SELEC 1"),
        ] {
            let class = classify(d, sql);
            assert_eq!(
                class.findings.iter().map(|f| f.effect).collect::<Vec<_>>(),
                [Effect::Needs(Allow::Unparsed)],
                "{d:?}: {sql}"
            );
            assert!(
                class.findings[0].what.contains("does not parse"),
                "{:?}",
                class.findings
            );
        }
        // The parser stops at END where a statement should end: what follows
        // must not slip through unread.
        for d in [Dialect::Postgres, Dialect::MsSql] {
            let c = classify(d, "SELECT 1 END; DELETE FROM t");
            assert!(c.findings[0].what.contains("stopped"), "{c:?}");
        }
        // SQLite reads END there as a column alias, and so does its parser.
        assert_eq!(
            needs(Dialect::Sqlite, "SELECT 1 END; DELETE FROM t"),
            "write"
        );
        // MariaDB runs /*M! … */; MySQL's /*! … */ is read as SQL.
        assert_eq!(
            effects(Dialect::MySql, "SELECT 1 /*M! , sleep(1) */"),
            [Effect::Needs(Allow::Unparsed)]
        );
        assert_eq!(
            needs(Dialect::MySql, "SELECT 1 FROM t /*!50000 FOR UPDATE */"),
            "write"
        );
    }

    #[test]
    fn definitions_are_ddl_not_their_bodies() {
        let c = classify(
            Dialect::Postgres,
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        );
        assert_eq!(
            c.findings.iter().map(|f| f.effect).collect::<Vec<_>>(),
            [Effect::Needs(Allow::Ddl)]
        );
    }

    #[test]
    fn a_call_is_checked_statement_by_statement() {
        let classes: Vec<Class> = [
            "SELECT 1",
            "INSERT INTO t VALUES (1)",
            "CREATE TABLE u (a INT)",
        ]
        .iter()
        .map(|s| classify(Dialect::Postgres, s))
        .collect();
        let none = BTreeSet::new();
        let r = check(Dialect::Postgres, &classes, SqlAccess::Read, &none).unwrap_err();
        assert_eq!((r.index, r.needs.clone()), (1, Needs::ReadWrite));
        assert_eq!(r.describe(), "statement 2 (INSERT) changes data");
        let r = check(Dialect::Postgres, &classes, SqlAccess::ReadWrite, &none).unwrap_err();
        assert_eq!((r.index, r.needs), (2, Needs::Allow(Allow::Ddl)));
        let ddl = BTreeSet::from([Allow::Ddl]);
        assert!(check(Dialect::Postgres, &classes, SqlAccess::ReadWrite, &ddl).is_ok());
        // A category on a read call is not enough.
        let only_ddl = [classify(Dialect::Postgres, "CREATE TABLE u (a INT)")];
        assert!(check(Dialect::Postgres, &only_ddl, SqlAccess::Read, &ddl).is_err());
        // Unparsed text: allowed by name on PostgreSQL, never on SQLite.
        let unparsed = BTreeSet::from([Allow::Unparsed]);
        let bad = [classify(Dialect::Postgres, "DO $$ SELECT 1 $$")];
        assert!(check(Dialect::Postgres, &bad, SqlAccess::ReadWrite, &unparsed).is_ok());
        let bad = [classify(Dialect::Sqlite, "VACUUM INTO '/tmp/x'")];
        let r = check(Dialect::Sqlite, &bad, SqlAccess::ReadWrite, &unparsed).unwrap_err();
        assert!(matches!(r.needs, Needs::Nothing(_)), "{r:?}");
        // Transaction control: nothing allows it.
        let tx = [classify(
            Dialect::MsSql,
            "SELECT 1; COMMIT TRANSACTION; DELETE FROM t",
        )];
        let all: BTreeSet<Allow> = [
            Allow::Ddl,
            Allow::Session,
            Allow::Procedure,
            Allow::ServerFiles,
            Allow::Remote,
            Allow::Admin,
            Allow::Unparsed,
        ]
        .into();
        let r = check(Dialect::MsSql, &tx, SqlAccess::ReadWrite, &all).unwrap_err();
        assert_eq!(r.what, "COMMIT");
        assert!(
            r.describe().contains("controls the transaction"),
            "{}",
            r.describe()
        );
    }

    #[test]
    fn only_reads_leave_the_session_as_it_was() {
        assert!(!classify(Dialect::MySql, "SELECT a FROM t WHERE b = ?").may_change_session());
        assert!(classify(Dialect::MySql, "UPDATE t SET a = 1").may_change_session());
        assert!(classify(Dialect::MySql, "SET @x = 1").may_change_session());
        assert!(classify(Dialect::MsSql, "CREATE TABLE #t (a INT)").may_change_session());
        assert!(classify(Dialect::MsSql, "garbage (").may_change_session());
    }
}
