//! Whether the login of a connection that is used only to read can write.
//!
//! The classifier refuses statements that write on a read grant, and a read
//! call runs in a read-only transaction; but a parser cannot see what a
//! view, a trigger or a function does, and SQL Server has no read-only
//! transaction. The last word belongs to the database: a login that cannot
//! write. `meridian doctor` asks each database what its login may do, where
//! the database can tell ([`LoginCheck`]), and says how to create a login
//! that cannot write when it can.
//!
//! The questions (what is asked is read-only catalogue data):
//! - PostgreSQL: superuser; `CREATE` on the database or on a schema;
//!   `INSERT`, `UPDATE`, `DELETE` or `TRUNCATE` on any table or view.
//! - MySQL/MariaDB: `SHOW GRANTS`; any privilege beyond `SELECT`, `USAGE`,
//!   `SHOW VIEW` and `SHOW DATABASES`, or a role (whose privileges are not
//!   listed there).
//! - SQL Server: `sysadmin`, `db_owner`, `db_datawriter`, `db_ddladmin`,
//!   and `INSERT`/`UPDATE`/`DELETE`/`ALTER` on the database
//!   (`HAS_PERMS_BY_NAME`).
//! - SQLite: nothing to ask; a read call opens the file read-only.

/// What the database said about a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginCheck {
    /// It cannot write: what was checked.
    ReadOnly(String),
    /// It can: how, and the statements that create a login that cannot.
    CanWrite { why: String, fix: String },
    /// The database did not answer the question (why).
    Unknown(String),
    /// No connection could be made (why).
    Unreachable(String),
}

/// A name for the read-only login the fix creates.
fn login_name(connection: &str) -> String {
    let clean: String = connection
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("meridian_{clean}_reader")
}

/// What PostgreSQL answered for the current user.
#[derive(Debug, Clone, Default)]
pub struct PostgresAnswer {
    pub superuser: bool,
    pub create_on_database: bool,
    /// Schemas the login may create objects in (a few, for the message).
    pub create_schemas: Vec<String>,
    /// Tables and views the login may change (a few, for the message).
    pub writable_tables: Vec<String>,
    pub database: String,
}

pub fn postgres(connection: &str, a: &PostgresAnswer) -> LoginCheck {
    let mut why = Vec::new();
    if a.superuser {
        why.push("is a superuser".to_string());
    }
    if a.create_on_database {
        why.push(format!("may CREATE in database {:?}", a.database));
    }
    if !a.create_schemas.is_empty() {
        why.push(format!(
            "may CREATE in schema(s) {}",
            a.create_schemas.join(", ")
        ));
    }
    if !a.writable_tables.is_empty() {
        why.push(format!(
            "may INSERT, UPDATE, DELETE or TRUNCATE {}",
            a.writable_tables.join(", ")
        ));
    }
    if why.is_empty() {
        return LoginCheck::ReadOnly(
            "not a superuser, no CREATE on the database or its schemas, no INSERT, UPDATE, DELETE or TRUNCATE on any table".into(),
        );
    }
    let login = login_name(connection);
    LoginCheck::CanWrite {
        why: format!("the login {}", why.join("; ")),
        fix: format!(
            "CREATE ROLE {login} LOGIN PASSWORD '<secret>'; \
             GRANT CONNECT ON DATABASE \"{db}\" TO {login}; \
             GRANT USAGE ON SCHEMA public TO {login}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {login}; \
             ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {login}; \
             REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            db = a.database
        ),
    }
}

/// Privileges that change nothing.
const MYSQL_READ_PRIVILEGES: &[&str] = &["SELECT", "USAGE", "SHOW VIEW", "SHOW DATABASES"];

/// Reads the lines of `SHOW GRANTS` (only the privilege lists and role
/// names; a line may also hold a password hash, which is never kept).
pub fn mysql(connection: &str, database: &str, grants: &[String]) -> LoginCheck {
    let mut why = Vec::new();
    for line in grants {
        let Some(rest) = line.strip_prefix("GRANT ") else {
            continue;
        };
        let Some((privileges, target)) = rest.split_once(" ON ") else {
            // `GRANT role TO user`: the role's privileges are not listed.
            let role = rest.split(" TO ").next().unwrap_or(rest).trim();
            why.push(format!(
                "holds role {role}, whose privileges are not checked"
            ));
            continue;
        };
        let on = target.split(" TO ").next().unwrap_or(target).trim();
        for privilege in split_privileges(privileges) {
            if !MYSQL_READ_PRIVILEGES.contains(&privilege.as_str()) {
                why.push(format!("has {privilege} on {on}"));
            }
        }
    }
    if why.is_empty() {
        return LoginCheck::ReadOnly("SHOW GRANTS lists only SELECT and USAGE".into());
    }
    let login = login_name(connection);
    LoginCheck::CanWrite {
        why: format!("the login {}", why.join("; ")),
        fix: format!(
            "CREATE USER '{login}'@'%' IDENTIFIED BY '<secret>'; \
             GRANT SELECT ON `{database}`.* TO '{login}'@'%'"
        ),
    }
}

/// `SELECT, INSERT (a, b), SHOW VIEW` → `SELECT`, `INSERT`, `SHOW VIEW`.
fn split_privileges(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for c in list.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(current.trim().to_ascii_uppercase());
                current.clear();
            }
            _ if depth == 0 => current.push(c),
            _ => {}
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_ascii_uppercase());
    }
    out
}

/// What SQL Server answered for the current login and user.
#[derive(Debug, Clone, Default)]
pub struct MssqlAnswer {
    /// Server and database roles the login is a member of, among
    /// `sysadmin`, `db_owner`, `db_datawriter`, `db_ddladmin`.
    pub roles: Vec<String>,
    /// Database permissions it has among INSERT, UPDATE, DELETE, ALTER.
    pub permissions: Vec<String>,
    pub database: String,
}

pub fn mssql(connection: &str, a: &MssqlAnswer) -> LoginCheck {
    let mut why = Vec::new();
    if !a.roles.is_empty() {
        why.push(format!("is a member of {}", a.roles.join(", ")));
    }
    if !a.permissions.is_empty() {
        why.push(format!(
            "has {} on database {}",
            a.permissions.join(", "),
            a.database
        ));
    }
    if why.is_empty() {
        return LoginCheck::ReadOnly(
            "not sysadmin, db_owner, db_datawriter or db_ddladmin, and no INSERT, UPDATE, DELETE or ALTER on the database".into(),
        );
    }
    let login = login_name(connection);
    LoginCheck::CanWrite {
        why: format!("the login {}", why.join("; ")),
        fix: format!(
            "CREATE LOGIN {login} WITH PASSWORD = '<secret>'; USE [{db}]; \
             CREATE USER {login} FOR LOGIN {login}; \
             ALTER ROLE db_datareader ADD MEMBER {login}",
            db = a.database
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn postgres_answers_become_verdicts() {
        let ok = postgres(
            "reporting",
            &PostgresAnswer {
                database: "sales".into(),
                ..Default::default()
            },
        );
        assert!(matches!(ok, LoginCheck::ReadOnly(_)), "{ok:?}");
        let LoginCheck::CanWrite { why, fix } = postgres(
            "reporting",
            &PostgresAnswer {
                create_schemas: vec!["public".into()],
                writable_tables: vec!["public.orders".into()],
                database: "sales".into(),
                ..Default::default()
            },
        ) else {
            panic!("can write")
        };
        assert!(why.contains("public.orders"), "{why}");
        assert!(
            fix.starts_with("CREATE ROLE meridian_reporting_reader LOGIN"),
            "{fix}"
        );
        assert!(fix.contains("\"sales\""), "{fix}");
    }

    #[test]
    fn mysql_grants_are_read_privilege_by_privilege() {
        let read = [
            "GRANT USAGE ON *.* TO `r`@`%` IDENTIFIED BY PASSWORD '*ABC'".to_string(),
            "GRANT SELECT, SHOW VIEW ON `sales`.* TO `r`@`%`".to_string(),
            "GRANT SELECT (a, b) ON `sales`.`t` TO `r`@`%`".to_string(),
        ];
        assert!(matches!(
            mysql("c", "sales", &read),
            LoginCheck::ReadOnly(_)
        ));
        let all = [
            "GRANT ALL PRIVILEGES ON *.* TO `u`@`localhost` IDENTIFIED BY PASSWORD '*5D4C'"
                .to_string(),
        ];
        let LoginCheck::CanWrite { why, fix } = mysql("etl-1", "sales", &all) else {
            panic!("can write")
        };
        assert!(why.contains("ALL PRIVILEGES on *.*"), "{why}");
        assert!(!why.contains("5D4C"), "no password hash: {why}");
        assert!(fix.contains("'meridian_etl_1_reader'@'%'"), "{fix}");
        let insert = ["GRANT SELECT, INSERT (a) ON `sales`.`t` TO `r`@`%`".to_string()];
        assert!(matches!(
            mysql("c", "sales", &insert),
            LoginCheck::CanWrite { .. }
        ));
        let role = ["GRANT `writer` TO `r`@`%`".to_string()];
        assert!(matches!(
            mysql("c", "sales", &role),
            LoginCheck::CanWrite { .. }
        ));
    }

    #[test]
    fn mssql_answers_become_verdicts() {
        assert!(matches!(
            mssql("c", &MssqlAnswer::default()),
            LoginCheck::ReadOnly(_)
        ));
        let LoginCheck::CanWrite { why, fix } = mssql(
            "ledger",
            &MssqlAnswer {
                roles: vec!["db_owner".into()],
                permissions: vec!["INSERT".into()],
                database: "ledger".into(),
            },
        ) else {
            panic!("can write")
        };
        assert!(why.contains("db_owner"), "{why}");
        assert!(fix.contains("db_datareader"), "{fix}");
    }
}
