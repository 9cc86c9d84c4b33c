//! `[sql]` in the config file: named connections and the capability's limits.
//!
//! ```toml
//! [sql]
//! default_max_rows = 1000      # rows kept per statement when the step asks for none
//! max_rows = 100000            # the most a step may ask for
//! default_timeout_ms = 30000
//! max_timeout_ms = 300000
//!
//! [sql.connections.reporting]
//! driver = "postgres"          # postgres | mysql | sqlite | mssql
//! url = "postgres://report@db.internal:5432/sales"   # no password here
//! password_secret = "reporting_pw"                  # a name in [secrets]
//! max_connections = 5
//! connect_timeout_ms = 5000
//! read_only = true             # every transaction read-only, whatever the grant
//!
//! [sql.connections.ledger]
//! driver = "mssql"
//! url = "server=tcp:sql.internal,1433;database=ledger;user=meridian"
//! password_secret = "ledger_pw"
//! auth = "sql"                 # "integrated" is refused on this platform
//! encrypt = true
//! trust_cert = false
//! ```
//!
//! Credentials never live in the URL: a password in it is a config error, and
//! the password is read from the named secret when the pool first connects
//! (and masked, like every secret, wherever it could appear).
//!
//! A step's connection never reaches Meridian's own files: a SQLite
//! connection whose file is inside the data dir, or is the store's file
//! (or its `-wal`, `-shm`, `-journal`), is refused when the config loads —
//! through symlinks, `..` and hard links too ([`SqlSettings::check_apart_from`]).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// `[sql]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlFile {
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionFile>,
    pub default_max_rows: Option<u32>,
    pub max_rows: Option<u32>,
    pub default_timeout_ms: Option<u64>,
    pub max_timeout_ms: Option<u64>,
}

/// `[sql.connections.<name>]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionFile {
    pub driver: Driver,
    /// A URL (`postgres://`, `mysql://`, `sqlite:`) or, for `mssql`, an
    /// ADO-style connection string.
    pub url: String,
    pub password_secret: Option<String>,
    pub max_connections: Option<u32>,
    pub connect_timeout_ms: Option<u64>,
    #[serde(default)]
    pub read_only: bool,
    /// mssql: accept the server's certificate without checking it.
    pub trust_cert: Option<bool>,
    /// mssql: encrypt the connection (TLS).
    pub encrypt: Option<bool>,
    /// mssql: `sql` (a SQL login) or `integrated`.
    pub auth: Option<MssqlAuth>,
}

/// The database driver of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Driver {
    Postgres,
    Mysql,
    Sqlite,
    Mssql,
}

impl Driver {
    /// The SQL dialect its statements are classified in.
    pub fn dialect(self) -> super::classify::Dialect {
        use super::classify::Dialect;
        match self {
            Driver::Postgres => Dialect::Postgres,
            Driver::Mysql => Dialect::MySql,
            Driver::Sqlite => Dialect::Sqlite,
            Driver::Mssql => Dialect::MsSql,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Postgres => "postgres",
            Driver::Mysql => "mysql",
            Driver::Sqlite => "sqlite",
            Driver::Mssql => "mssql",
        }
    }
}

/// How an mssql connection authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MssqlAuth {
    Sql,
    Integrated,
}

/// One named connection, checked.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    pub name: String,
    pub driver: Driver,
    /// The URL or connection string, without credentials.
    pub url: String,
    pub password_secret: Option<String>,
    pub max_connections: u32,
    pub connect_timeout: Duration,
    pub read_only: bool,
    pub trust_cert: bool,
    pub encrypt: bool,
}

/// The SQL capability's settings: connections and limits.
#[derive(Debug, Clone)]
pub struct SqlSettings {
    pub connections: BTreeMap<String, ConnectionSettings>,
    pub default_max_rows: u32,
    pub max_rows: u32,
    pub default_timeout: Duration,
    pub max_timeout: Duration,
}

impl Default for SqlSettings {
    fn default() -> Self {
        Self {
            connections: BTreeMap::new(),
            default_max_rows: 1000,
            max_rows: 100_000,
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(300),
        }
    }
}

impl SqlSettings {
    /// Checks `[sql]`; an error is the field's path (`sql.connections.x.url`)
    /// and what is wrong. `secret_exists` says whether a secret is configured.
    pub fn parse(
        file: SqlFile,
        secret_exists: &dyn Fn(&str) -> bool,
    ) -> Result<Self, (String, String)> {
        let mut s = Self::default();
        if let Some(n) = file.max_rows {
            if n == 0 {
                return Err(("sql.max_rows".into(), "must be at least 1".into()));
            }
            s.max_rows = n;
        }
        if let Some(n) = file.default_max_rows {
            if n == 0 || n > s.max_rows {
                return Err((
                    "sql.default_max_rows".into(),
                    format!("must be between 1 and max_rows ({})", s.max_rows),
                ));
            }
            s.default_max_rows = n;
        }
        s.default_max_rows = s.default_max_rows.min(s.max_rows);
        if let Some(ms) = file.max_timeout_ms {
            if ms == 0 {
                return Err(("sql.max_timeout_ms".into(), "must be at least 1".into()));
            }
            s.max_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = file.default_timeout_ms {
            if ms == 0 {
                return Err(("sql.default_timeout_ms".into(), "must be at least 1".into()));
            }
            s.default_timeout = Duration::from_millis(ms);
        }
        s.default_timeout = s.default_timeout.min(s.max_timeout);
        for (name, c) in file.connections {
            let at = |field: &str| format!("sql.connections.{name}.{field}");
            if name.trim().is_empty() {
                return Err(("sql.connections".into(), "empty connection name".into()));
            }
            let url = c.url.trim().to_string();
            if url.is_empty() {
                return Err((at("url"), "must not be empty".into()));
            }
            check_no_password(c.driver, &url).map_err(|m| (at("url"), m))?;
            if let Some(secret) = &c.password_secret
                && !secret_exists(secret)
            {
                return Err((
                    at("password_secret"),
                    format!("no secret {secret:?} is configured in [secrets]"),
                ));
            }
            if c.driver != Driver::Mssql {
                for (field, set) in [
                    ("trust_cert", c.trust_cert.is_some()),
                    ("encrypt", c.encrypt.is_some()),
                    ("auth", c.auth.is_some()),
                ] {
                    if set {
                        return Err((at(field), "applies to driver \"mssql\" only".into()));
                    }
                }
            }
            if c.auth == Some(MssqlAuth::Integrated) {
                return Err((
                    at("auth"),
                    "integrated (Windows/Kerberos) authentication is not available on this platform: this build of the SQL Server driver supports SQL logins only (auth = \"sql\")".into(),
                ));
            }
            if c.driver == Driver::Sqlite && c.password_secret.is_some() {
                return Err((at("password_secret"), "SQLite has no passwords".into()));
            }
            let max_connections = c.max_connections.unwrap_or(5);
            if !(1..=1000).contains(&max_connections) {
                return Err((at("max_connections"), "must be between 1 and 1000".into()));
            }
            let connect_timeout = Duration::from_millis(c.connect_timeout_ms.unwrap_or(10_000));
            if connect_timeout.is_zero() {
                return Err((at("connect_timeout_ms"), "must be at least 1".into()));
            }
            s.connections.insert(
                name.clone(),
                ConnectionSettings {
                    name,
                    driver: c.driver,
                    url,
                    password_secret: c.password_secret,
                    max_connections,
                    connect_timeout,
                    read_only: c.read_only,
                    trust_cert: c.trust_cert.unwrap_or(false),
                    encrypt: c.encrypt.unwrap_or(true),
                },
            );
        }
        Ok(s)
    }
}

impl SqlSettings {
    /// Refuses a SQLite connection whose file is inside `data_dir` or is
    /// the store's file `store` (or one of its companions): the error is the
    /// field's path (`sql.connections.x.url`) and why. Paths are compared
    /// resolved — absolute, symlinks followed, `..` taken out — and existing
    /// files by identity, so a hard link to the store is caught as well.
    pub fn check_apart_from(
        &self,
        data_dir: &Path,
        store: Option<&Path>,
    ) -> Result<(), (String, String)> {
        let data = resolve(data_dir);
        let mut store_files = Vec::new();
        if let Some(store) = store {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut name = store.as_os_str().to_os_string();
                name.push(suffix);
                store_files.push(PathBuf::from(name));
            }
        }
        for c in self.connections.values() {
            if c.driver != Driver::Sqlite {
                continue;
            }
            let at = format!("sql.connections.{}.url", c.name);
            let Some(file) = sqlite_file(&c.url).map_err(|m| (at.clone(), m))? else {
                continue;
            };
            let resolved = resolve(&file);
            if let Some(data) = &data
                && let Some(r) = &resolved
                && r.starts_with(data)
            {
                return Err((
                    at,
                    format!(
                        "{} is inside the data dir {}: a step's connection must never reach Meridian's own files",
                        file.display(),
                        data_dir.display()
                    ),
                ));
            }
            for s in &store_files {
                let same_path = resolved.is_some() && resolved == resolve(s);
                if same_path || same_file(&file, s) {
                    return Err((
                        at,
                        format!(
                            "{} is the store's file {}: a step's connection must never reach Meridian's own files",
                            file.display(),
                            s.display()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The file a SQLite URL opens, as sqlx reads it; `None` for an in-memory
/// or temporary database. SQLite URI filenames (`file:…`) are refused: SQLite
/// decodes them once more, so the path seen here would not be the one
/// opened.
fn sqlite_file(url: &str) -> Result<Option<PathBuf>, String> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (database, query) = rest.split_once('?').unwrap_or((rest, ""));
    let memory = database == ":memory:"
        || url::form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "mode" && v == "memory");
    if memory {
        return Ok(None);
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map_err(|e| format!("not a SQLite URL: {e}"))?;
    let file = options.get_filename();
    if file.as_os_str().is_empty() {
        return Ok(None);
    }
    if file.to_string_lossy().starts_with("file:") {
        return Err(
            "SQLite URI filenames (file:…) are not accepted: give the path, as in sqlite:///path/to/file.db"
                .into(),
        );
    }
    Ok(Some(file.to_path_buf()))
}

/// `path` made absolute, with symlinks resolved as far as the path exists
/// and `.`/`..` taken out of the rest.
fn resolve(path: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(path).ok()?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    let base = loop {
        if let Ok(real) = existing.canonicalize() {
            break real;
        }
        rest.push(existing.file_name()?.to_os_string());
        existing = existing.parent()?;
    };
    let mut out = base;
    for part in rest.iter().rev() {
        match Path::new(part).components().next() {
            Some(Component::ParentDir) => {
                out.pop();
            }
            Some(Component::CurDir) | None => {}
            Some(_) => out.push(part),
        }
    }
    Some(out)
}

/// Whether two paths name one existing file (a hard link included).
#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &Path, _: &Path) -> bool {
    false
}

/// Refuses a URL or connection string that carries a password.
fn check_no_password(driver: Driver, url: &str) -> Result<(), String> {
    const MOVE: &str =
        "must not hold a password: put it in [secrets] and name it in password_secret";
    match driver {
        Driver::Mssql => {
            let has = url.split(';').any(|part| {
                let key = part
                    .split('=')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                key == "password" || key == "pwd"
            });
            if has {
                return Err(MOVE.into());
            }
        }
        Driver::Postgres | Driver::Mysql => {
            let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
            let scheme_ok = match driver {
                Driver::Postgres => matches!(parsed.scheme(), "postgres" | "postgresql"),
                _ => matches!(parsed.scheme(), "mysql" | "mariadb"),
            };
            if !scheme_ok {
                return Err(format!(
                    "scheme {:?} does not fit driver {:?}",
                    parsed.scheme(),
                    driver.as_str()
                ));
            }
            if parsed.password().is_some()
                || parsed
                    .query_pairs()
                    .any(|(k, _)| k.eq_ignore_ascii_case("password"))
            {
                return Err(MOVE.into());
            }
        }
        Driver::Sqlite => {
            if !url.starts_with("sqlite:") {
                return Err("a SQLite URL starts with sqlite: (sqlite:///path/to/file.db)".into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(text: &str) -> Result<SqlSettings, (String, String)> {
        #[derive(Deserialize)]
        struct F {
            sql: SqlFile,
        }
        let f: F = toml::from_str(text).unwrap();
        SqlSettings::parse(f.sql, &|s| s == "pw")
    }

    #[test]
    fn connections_parse_and_errors_name_the_field() {
        let s = parse(
            "[sql.connections.r]\ndriver = \"postgres\"\nurl = \"postgres://u@h/db\"\npassword_secret = \"pw\"\n",
        )
        .unwrap();
        assert_eq!(s.connections["r"].driver, Driver::Postgres);
        let field = |t: &str| parse(t).unwrap_err().0;
        assert_eq!(
            field(
                "[sql.connections.r]\ndriver = \"postgres\"\nurl = \"postgres://u:secret@h/db\"\n"
            ),
            "sql.connections.r.url"
        );
        assert_eq!(
            field("[sql.connections.r]\ndriver = \"mssql\"\nurl = \"server=h;password=x\"\n"),
            "sql.connections.r.url"
        );
        assert_eq!(
            field(
                "[sql.connections.r]\ndriver = \"mysql\"\nurl = \"mysql://u@h/db\"\npassword_secret = \"nope\"\n"
            ),
            "sql.connections.r.password_secret"
        );
        let (f, m) = parse(
            "[sql.connections.r]\ndriver = \"mssql\"\nurl = \"server=h\"\nauth = \"integrated\"\n",
        )
        .unwrap_err();
        assert_eq!(f, "sql.connections.r.auth");
        assert!(m.contains("not available on this platform"), "{m}");
        assert_eq!(
            field("[sql]\ndefault_max_rows = 0\n"),
            "sql.default_max_rows"
        );
    }

    #[test]
    fn sqlite_files_of_meridian_are_refused_however_named() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let store = data.join("meridian.db");
        std::fs::write(&store, b"").unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&data, outside.join("link")).unwrap();
        std::fs::hard_link(&store, outside.join("hard.db")).unwrap();
        let check = |url: String| {
            let s = parse(&format!(
                "[sql.connections.x]\ndriver = \"sqlite\"\nurl = {url:?}\n"
            ))
            .unwrap();
            s.check_apart_from(&data, Some(&store))
        };
        for url in [
            format!("sqlite://{}", store.display()),
            format!("sqlite://{}-wal", store.display()),
            format!("sqlite://{}?mode=ro", data.join("other.db").display()),
            format!("sqlite://{}", outside.join("link/meridian.db").display()),
            format!("sqlite://{}", outside.join("../data/new/x.db").display()),
            format!("sqlite://{}", outside.join("hard.db").display()),
            format!("sqlite:{}", store.display()).replace("meridian", "meridi%61n"),
        ] {
            let (field, message) = check(url.clone()).unwrap_err();
            assert_eq!(field, "sql.connections.x.url", "{url}");
            assert!(message.contains("Meridian's own files"), "{url}: {message}");
        }
        let (_, message) = check(format!("sqlite:file:{}", store.display())).unwrap_err();
        assert!(message.contains("URI filenames"), "{message}");
        // Apart from the data dir and the store: fine.
        for url in [
            format!("sqlite://{}?mode=rwc", outside.join("mine.db").display()),
            "sqlite::memory:".to_string(),
        ] {
            assert!(check(url.clone()).is_ok(), "{url}");
        }
        // A store outside the data dir is protected too.
        let s = parse(&format!(
            "[sql.connections.x]\ndriver = \"sqlite\"\nurl = \"sqlite://{}\"\n",
            outside.join("store.db-shm").display()
        ))
        .unwrap();
        assert!(
            s.check_apart_from(&data, Some(&outside.join("store.db")))
                .is_err()
        );
    }
}
