//! The SQL boundary: a grant means what it says on every backend — real
//! SQLite, PostgreSQL, MariaDB and iridium-server (the SQL Server emulator)
//! — with the `probe` fixture, built with the SDK as an outside author
//! builds a plugin, making the calls an attacker would.
//!
//! Each attack is refused with a typed denial that names the connection,
//! the statement and what it does; the target table (or the store) is
//! unchanged; and a normal call afterwards works.

use crate::sql::{Backend, PASSWORD_SECRET, per_backend, serial};
use meridian_tests::{ADMIN_TOKEN, TestNode, TestRuntime, fixtures, invocation};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Every category a `read_write` grant can name.
const EVERY_CATEGORY: &str =
    r#"["ddl", "session", "procedure", "server_files", "remote", "admin", "unparsed"]"#;

/// A runtime with the `probe` fixture and four names for one database:
/// `ro` granted `read`; `rw` granted `read_write` with `ddl` (the tests make
/// their tables through it); `all` granted `read_write` with every
/// category; `one`, a pool of one session, granted `read_write` with `ddl`
/// and `session`.
async fn probe_runtime(b: &Backend) -> TestRuntime {
    let mut toml = String::new();
    if let Some(pw) = &b.password {
        toml.push_str(&format!("[secrets]\n{PASSWORD_SECRET} = {pw:?}\n"));
    }
    for name in ["ro", "rw", "all", "one"] {
        toml.push_str(&b.connection(name));
    }
    // Still inside [sql.connections.one].
    toml.push_str("max_connections = 1\n");
    toml.push_str(&format!(
        "[[grants]]\nplugin = \"probe\"\n\
         [[grants.sql]]\nconnection = \"ro\"\naccess = \"read\"\n\
         [[grants.sql]]\nconnection = \"rw\"\naccess = \"read_write\"\nallow = [\"ddl\"]\n\
         [[grants.sql]]\nconnection = \"all\"\naccess = \"read_write\"\nallow = {EVERY_CATEGORY}\n\
         [[grants.sql]]\nconnection = \"one\"\naccess = \"read_write\"\nallow = [\"ddl\", \"session\"]\n"
    ));
    TestRuntime::new(&toml, &[fixtures::PROBE]).await
}

/// The probe's config for one SQL call of these statements.
fn sql_call(connection: &str, statements: &[String]) -> Value {
    let statements: Vec<Value> = statements.iter().map(|s| json!({ "sql": s })).collect();
    json!({ "calls": [{ "sql": { "connection": connection, "statements": statements } }] })
}

/// The result of one probe call: `{"ok": [result sets]}` or `{"error": …}`.
async fn call(rt: &TestRuntime, connection: &str, statements: &[String]) -> Value {
    let run = rt.run("probe", sql_call(connection, statements)).await;
    let out = run
        .result
        .unwrap_or_else(|e| panic!("the probe itself failed: {e:?}"))
        .output;
    out["results"][0].clone()
}

/// The rows of the last statement of a call that must succeed.
async fn rows(rt: &TestRuntime, b: &Backend, connection: &str, statements: &[String]) -> Value {
    let r = call(rt, connection, statements).await;
    let sets = r["ok"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: {statements:?} on {connection}: {r}", b.name));
    sets.last().unwrap()["rows"].clone()
}

async fn count(rt: &TestRuntime, b: &Backend, table: &str) -> i64 {
    let r = rows(rt, b, "rw", &[format!("SELECT COUNT(*) AS n FROM {table}")]).await;
    r[0][0]
        .as_i64()
        .unwrap_or_else(|| panic!("{}: count {r}", b.name))
}

/// Asserts a typed `sql` denial on `connection` whose reason names the
/// statement (from 1) and says `words`, and whose grant hint says `hint`.
fn assert_denied(db: &str, r: &Value, connection: &str, statement: usize, words: &str, hint: &str) {
    let e = &r["error"];
    assert_eq!(e["kind"], "denied", "{db}: {r}");
    assert_eq!(e["capability"], "sql", "{db}: {r}");
    assert_eq!(e["target"], connection, "{db}: {r}");
    let reason = e["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("statement {statement} (")),
        "{db}: {reason}"
    );
    assert!(reason.contains(words), "{db}: {reason}");
    let grant_hint = e["grant_hint"].as_str().unwrap();
    assert!(grant_hint.contains(hint), "{db}: {grant_hint}");
}

/// The hint of a refusal no grant can lift.
const NO_GRANT: &str = "none: refused under every grant";

per_backend! {
    /// A read grant is undone neither by ending the read-only transaction
    /// (`COMMIT`, `ROLLBACK; BEGIN`, `END`), nor by making it read-write
    /// (`SET TRANSACTION READ WRITE`, `SET autocommit`), nor by switching
    /// SQLite's `query_only` off, nor by a SQL Server batch that commits and
    /// then deletes: each is refused before it is sent, and the table keeps its
    /// row. Transaction control stays refused on a grant with every category.
    async fn a_read_grant_is_not_undone_by_the_step(b) {
        let _serial = serial(&b).await;
        let rt = probe_runtime(&b).await;
        let t = b.table("undo");
        rows(
            &rt,
            &b,
            "rw",
            &[
                format!("CREATE TABLE {t} (id INT)"),
                format!("INSERT INTO {t} (id) VALUES (1)"),
                format!("SELECT id FROM {t}"),
            ],
        )
        .await;
        let insert = format!("INSERT INTO {t} (id) VALUES (2)");
        let delete = format!("DELETE FROM {t}");
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let read_write_session = "access = \"read_write\", allow = [\"session\"]";
        // The statements, the one refused (from 1), what the refusal says,
        // its hint, and whether it is transaction control (refused on `all`
        // too).
        let attacks: Vec<(Vec<String>, usize, &str, &str, bool)> = match b.driver {
            "sqlite" => vec![
                (
                    s(&["PRAGMA query_only = OFF", &insert]),
                    1,
                    "does not parse",
                    NO_GRANT,
                    false,
                ),
                (
                    s(&["PRAGMA query_only = 0", &insert]),
                    1,
                    "(PRAGMA) changes the session",
                    read_write_session,
                    false,
                ),
                (
                    vec![format!("PRAGMA query_only = 0; {insert}")],
                    1,
                    "(PRAGMA)",
                    read_write_session,
                    false,
                ),
                (
                    s(&["COMMIT", &insert, "BEGIN"]),
                    1,
                    "(COMMIT) controls the transaction",
                    NO_GRANT,
                    true,
                ),
                (
                    vec![format!("COMMIT; {insert}; BEGIN")],
                    1,
                    "(COMMIT)",
                    NO_GRANT,
                    true,
                ),
            ],
            "postgres" => vec![
                (
                    s(&["COMMIT", &insert]),
                    1,
                    "(COMMIT) controls the transaction",
                    NO_GRANT,
                    true,
                ),
                (
                    s(&["ROLLBACK", "BEGIN", &insert]),
                    1,
                    "(ROLLBACK)",
                    NO_GRANT,
                    true,
                ),
                (
                    s(&["SELECT 1", "END", &insert]),
                    2,
                    "(COMMIT)",
                    NO_GRANT,
                    true,
                ),
                (
                    s(&["SET TRANSACTION READ WRITE", &insert]),
                    1,
                    "(SET TRANSACTION)",
                    NO_GRANT,
                    true,
                ),
                (
                    s(&["SET transaction_read_only = off", &insert]),
                    1,
                    "controls the transaction",
                    NO_GRANT,
                    true,
                ),
            ],
            "mysql" => vec![
                (
                    s(&["COMMIT", &insert]),
                    1,
                    "(COMMIT) controls the transaction",
                    NO_GRANT,
                    true,
                ),
                (
                    s(&["ROLLBACK", "BEGIN", &insert]),
                    1,
                    "(ROLLBACK)",
                    NO_GRANT,
                    true,
                ),
                (
                    s(&["SET TRANSACTION READ WRITE", &insert]),
                    1,
                    "(SET TRANSACTION)",
                    NO_GRANT,
                    true,
                ),
                (
                    s(&["SET autocommit = 1", &insert]),
                    1,
                    "controls the transaction",
                    NO_GRANT,
                    true,
                ),
            ],
            _ => vec![(
                vec![format!("SELECT 1; COMMIT TRANSACTION; {delete}")],
                1,
                "(COMMIT) controls the transaction",
                NO_GRANT,
                true,
            )],
        };
        for (statements, index, words, hint, never) in &attacks {
            let r = call(&rt, "ro", statements).await;
            assert_denied(b.name, &r, "ro", *index, words, hint);
            assert_eq!(count(&rt, &b, &t).await, 1, "{}: {statements:?}", b.name);
            if *never {
                let r = call(&rt, "all", statements).await;
                assert_denied(b.name, &r, "all", *index, words, NO_GRANT);
                assert_eq!(count(&rt, &b, &t).await, 1, "{}: {statements:?}", b.name);
            }
        }
        // A plain write on the read grant names the grant that would allow it.
        let r = call(&rt, "ro", std::slice::from_ref(&insert)).await;
        assert_denied(
            b.name,
            &r,
            "ro",
            1,
            "(INSERT) changes data",
            "access = \"read_write\"",
        );
        // The host still serves the read grant.
        let r = rows(&rt, &b, "ro", &[format!("SELECT id FROM {t}")]).await;
        assert_eq!(r, json!([[1]]), "{}", b.name);
        rows(
            &rt,
            &b,
            "rw",
            &[format!("DROP TABLE {t}"), "SELECT 1".into()],
        )
        .await;
    }
}

/// The issue's escalation: with only a read grant on a SQLite connection, a
/// step attached the store, switched `query_only` off and inserted an API
/// token that was then accepted as an admin's. Every spelling of it is
/// refused, the store keeps its tokens, the token is refused by the API,
/// and the node goes on serving (its admin token, the step's reads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaching_the_store_through_a_read_grant_gets_no_admin_token() {
    let lake_dir = tempfile::tempdir().unwrap();
    let lake = lake_dir.path().join("lake.db");
    let lake_url = format!("sqlite://{}?mode=rwc", lake.display());
    let pool = sqlx::SqlitePool::connect(&lake_url).await.unwrap();
    sqlx::query("CREATE TABLE sales (id INTEGER)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO sales VALUES (7)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let config = format!(
        "[sql.connections.lake]\ndriver = \"sqlite\"\nurl = {:?}\n\
         [[grants]]\nplugin = \"probe\"\n[[grants.sql]]\nconnection = \"lake\"\naccess = \"read\"\n",
        format!("sqlite://{}", lake.display())
    );
    let node = TestNode::start(&config, &[fixtures::PROBE]).await;
    let probe = node.state.runtime.plugin("probe").unwrap();
    let store = node.config().store_path();
    let token = "mrd_attacker-made-this-admin";
    let attach = format!("ATTACH DATABASE '{}' AS m", store.display());
    let insert = format!(
        "INSERT INTO m.api_tokens (id, name, role, hash, created_at_us, created_by) VALUES ('evil', 'evil', 'admin', '{}', 0, 'probe')",
        meridian::auth::hash(token)
    );
    let before = node.state.store.list_tokens().await.unwrap();
    let attacks: [(Vec<String>, usize, &str); 4] = [
        // As the issue ran it.
        (
            vec![
                attach.clone(),
                "PRAGMA query_only = OFF".into(),
                insert.clone(),
            ],
            1,
            "(ATTACH DATABASE) attaches another database file",
        ),
        // Out of the transaction first, so ATTACH may run.
        (
            vec![
                "COMMIT".into(),
                attach.clone(),
                "PRAGMA query_only = 0".into(),
                insert.clone(),
                "BEGIN".into(),
            ],
            1,
            "(COMMIT)",
        ),
        // All of it in the text of one statement.
        (
            vec![format!(
                "COMMIT; {attach}; PRAGMA query_only = 0; {insert}; BEGIN"
            )],
            1,
            "(COMMIT)",
        ),
        // Hidden behind a read.
        (
            vec!["SELECT id FROM sales".into(), format!("{attach}; {insert}")],
            2,
            "(ATTACH DATABASE)",
        ),
    ];
    for (statements, index, words) in &attacks {
        let run = node
            .state
            .runtime
            .execute(&probe, invocation(sql_call("lake", statements)))
            .await;
        let r = run.result.unwrap().output["results"][0].clone();
        assert_denied("sqlite", &r, "lake", *index, words, NO_GRANT);
    }
    // The store has the tokens it had.
    let after = node.state.store.list_tokens().await.unwrap();
    assert_eq!(
        after.iter().map(|t| &t.id).collect::<Vec<_>>(),
        before.iter().map(|t| &t.id).collect::<Vec<_>>()
    );
    // The API refuses the token; the admin's still works.
    let (status, _, _) = crate::api::request_as(
        Arc::clone(&node.state),
        Some(token),
        "GET",
        "/api/v2/tokens",
        "",
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = crate::api::request_as(
        Arc::clone(&node.state),
        Some(ADMIN_TOKEN),
        "GET",
        "/api/v2/tokens",
        "",
    )
    .await;
    assert_eq!(status, 200);
    // The step's own read still works.
    let run = node
        .state
        .runtime
        .execute(
            &probe,
            invocation(sql_call("lake", &["SELECT id FROM sales".into()])),
        )
        .await;
    let r = run.result.unwrap().output["results"][0].clone();
    assert_eq!(r["ok"][0]["rows"], json!([[7]]), "{r}");
}

/// A SQLite connection whose file is Meridian's own — in the data dir, the
/// store, its WAL, reached through a symlink or `..` — is refused when the
/// config loads, naming the field; `meridian serve` does not start with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_to_meridians_own_files_is_refused_at_config_load() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let store = data.join("meridian.db");
    meridian::store::Store::open_sqlite(&store).await.unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&data, elsewhere.join("link")).unwrap();
    let config_at = |url: &str| {
        let path = dir.path().join("meridian.toml");
        std::fs::write(
            &path,
            format!(
                "[sql.connections.lake]\ndriver = \"sqlite\"\nurl = {url:?}\n\
                 [[grants]]\nplugin = \"probe\"\n[[grants.sql]]\nconnection = \"lake\"\naccess = \"read\"\n"
            ),
        )
        .unwrap();
        path
    };
    let load = |url: &str| {
        meridian::config::Config::load(
            Some(&config_at(url)),
            meridian::config::Overrides {
                data_dir: Some(data.clone()),
                ..Default::default()
            },
        )
    };
    for url in [
        format!("sqlite://{}", store.display()),
        format!("sqlite://{}-wal", store.display()),
        format!("sqlite://{}?mode=rwc", data.join("scratch.db").display()),
        format!("sqlite://{}", elsewhere.join("link/meridian.db").display()),
        format!(
            "sqlite://{}",
            elsewhere.join("../data/meridian.db").display()
        ),
    ] {
        let e = load(&url).unwrap_err().to_string();
        assert!(e.contains("sql.connections.lake.url"), "{url}: {e}");
        assert!(e.contains("Meridian's own files"), "{url}: {e}");
    }
    // The node refuses to start with such a connection.
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let config = config_at(&format!("sqlite://{}", store.display()));
    let mut cmd = crate::node::meridian_node(&data, &plugins);
    cmd.arg("--config")
        .arg(&config)
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || cmd.output().unwrap()),
    )
    .await
    .expect("serve should refuse the config at once")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("sql.connections.lake.url"), "{stderr}");
    // A file of its own elsewhere is fine.
    let mine = format!("sqlite://{}?mode=rwc", elsewhere.join("mine.db").display());
    assert!(load(&mine).is_ok());
}

/// `VACUUM INTO '<any path>'` would write a copy of the database wherever
/// the host's user may write: refused on SQLite under every grant, in
/// every spelling, and no file appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_into_writes_no_file() {
    let b = Backend::sqlite();
    let rt = probe_runtime(&b).await;
    let t = b.table("vacuum");
    rows(
        &rt,
        &b,
        "rw",
        &[
            format!("CREATE TABLE {t} (id INT)"),
            format!("SELECT 1 FROM {t}"),
        ],
    )
    .await;
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("copy.db");
    let vacuum = format!("VACUUM INTO '{}'", target.display());
    for connection in ["ro", "all"] {
        for statements in [
            vec![vacuum.clone()],
            vec!["COMMIT".into(), vacuum.clone(), "BEGIN".into()],
            vec![format!("COMMIT; {vacuum}; BEGIN")],
        ] {
            let r = call(&rt, connection, &statements).await;
            // A text holding VACUUM INTO does not parse as a whole.
            let words = if statements.len() == 1 {
                "does not parse"
            } else {
                "(COMMIT)"
            };
            assert_denied(b.name, &r, connection, 1, words, NO_GRANT);
            assert!(
                !target.exists(),
                "{statements:?} on {connection} wrote {target:?}"
            );
        }
    }
    let r = rows(&rt, &b, "ro", &[format!("SELECT COUNT(*) FROM {t}")]).await;
    assert_eq!(r, json!([[0]]));
}

per_backend! {
    /// Nothing a step sets on its session reaches the next call on the same
    /// connection (a pool of one, so the next call would get that very
    /// session): PostgreSQL's `search_path`, `ROLE` and temporary tables are
    /// reset on the same backend process (`DISCARD ALL`); SQLite's
    /// `query_only`, temporary tables and attached databases never outlive a
    /// call (a connection per call); a MariaDB session that had a user
    /// variable, a temporary table or a write's insert id is not reused.
    async fn session_state_does_not_reach_the_next_call(b) {
        let _serial = serial(&b).await;
        let rt = probe_runtime(&b).await;
        let tmp = b.table("tmp");
        match b.driver {
            "postgres" => {
                let first = rows(
                    &rt,
                    &b,
                    "one",
                    &[
                        "SET search_path TO meridian_elsewhere, public".into(),
                        "SET ROLE meridian_test".into(),
                        format!("CREATE TEMP TABLE {tmp} (a INT)"),
                        "SELECT pg_backend_pid(), current_setting('search_path'), current_setting('role')".into(),
                    ],
                )
                .await;
                assert_eq!(first[0][1], "meridian_elsewhere, public", "{first}");
                assert_eq!(first[0][2], "meridian_test", "{first}");
                let next = rows(
                    &rt,
                    &b,
                    "one",
                    &[format!(
                        "SELECT pg_backend_pid(), current_setting('search_path'), current_setting('role'), \
                         (SELECT COUNT(*) FROM pg_class WHERE relname = '{tmp}' AND relpersistence = 't')"
                    )],
                )
                .await;
                assert_eq!(next[0][0], first[0][0], "the same session, reset: {next}");
                assert_eq!(next[0][1], "\"$user\", public", "{next}");
                assert_eq!(next[0][2], "none", "{next}");
                assert_eq!(next[0][3], 0, "{next}");
            }
            "mysql" => {
                let first = rows(
                    &rt,
                    &b,
                    "one",
                    &[
                        "SET @leak = 42".into(),
                        format!("CREATE TEMPORARY TABLE {tmp} (a INT)"),
                        "SELECT CONNECTION_ID(), @leak".into(),
                    ],
                )
                .await;
                assert_eq!(first[0][1], 42, "{first}");
                let next = rows(&rt, &b, "one", &["SELECT CONNECTION_ID(), @leak".into()]).await;
                assert_ne!(next[0][0], first[0][0], "a new session: {next}");
                assert_eq!(next[0][1], Value::Null, "{next}");
                // The temporary table went with its session.
                let r = call(&rt, "one", &[format!("SELECT COUNT(*) FROM {tmp}")]).await;
                assert!(
                    r["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("doesn't exist"),
                    "{r}"
                );
                // Nor does a write's insert id reach the next call.
                let t = b.table("ids");
                rows(
                    &rt,
                    &b,
                    "rw",
                    &[
                        format!("CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, a INT)"),
                        "SELECT 1".into(),
                    ],
                )
                .await;
                let id = rows(
                    &rt,
                    &b,
                    "one",
                    &[
                        format!("INSERT INTO {t} (a) VALUES (1)"),
                        "SELECT LAST_INSERT_ID()".into(),
                    ],
                )
                .await;
                assert_eq!(id, json!([[1]]));
                let next = rows(&rt, &b, "one", &["SELECT LAST_INSERT_ID()".into()]).await;
                assert_eq!(next, json!([[0]]), "the insert id stayed on the session");
                rows(
                    &rt,
                    &b,
                    "rw",
                    &[format!("DROP TABLE {t}"), "SELECT 1".into()],
                )
                .await;
            }
            "sqlite" => {
                let t = b.table("qo");
                rows(
                    &rt,
                    &b,
                    "rw",
                    &[format!("CREATE TABLE {t} (id INT)"), "SELECT 1".into()],
                )
                .await;
                rows(
                    &rt,
                    &b,
                    "one",
                    &[
                        format!("CREATE TEMP TABLE {tmp} (a INT)"),
                        "PRAGMA query_only = 1".into(),
                        "SELECT 1".into(),
                    ],
                )
                .await;
                // An ATTACH is refused, so there is nothing attached to keep.
                let r = call(&rt, "one", &["ATTACH DATABASE ':memory:' AS m".into()]).await;
                assert_denied(b.name, &r, "one", 1, "(ATTACH DATABASE)", NO_GRANT);
                let next = rows(
                    &rt,
                    &b,
                    "one",
                    &[
                        format!("INSERT INTO {t} (id) VALUES (1)"),
                        "SELECT (SELECT COUNT(*) FROM sqlite_temp_master), \
                         (SELECT COUNT(*) FROM pragma_database_list WHERE name NOT IN ('main', 'temp'))"
                            .into(),
                    ],
                )
                .await;
                assert_eq!(
                    next,
                    json!([[0, 0]]),
                    "query_only, the temporary table and attachments are gone"
                );
                assert_eq!(count(&rt, &b, &t).await, 1);
            }
            _ => {
                let first = call(
                    &rt,
                    "one",
                    &[
                        format!("CREATE TABLE #{tmp} (a INT)"),
                        format!("INSERT INTO #{tmp} (a) VALUES (1)"),
                    ],
                )
                .await;
                assert!(first["ok"].is_array(), "{first}");
                let next = call(&rt, "one", &[format!("SELECT COUNT(*) FROM #{tmp}")]).await;
                assert_eq!(
                    next["error"]["kind"], "failed",
                    "the temporary table is gone with its session: {next}"
                );
                let r = rows(&rt, &b, "one", &["SELECT 1".into()]).await;
                assert_eq!(r, json!([[1]]));
            }
        }
    }
}

per_backend! {
    /// Ways out to the database server's programs and files, to other servers,
    /// and into the host's own process: refused before they are sent, on a
    /// read grant by the category that would allow them, and the ones no grant
    /// allows on a grant with every category too.
    async fn server_programs_and_files_are_refused(b) {
        let marker_dir = tempfile::tempdir().unwrap();
        let marker = marker_dir.path().join("ran");
        let _serial = serial(&b).await;
        let rt = probe_runtime(&b).await;
        // A read-only connection opens an existing database only.
        rows(&rt, &b, "rw", &["SELECT 1".into()]).await;
        let cat = |c: &str| format!("access = \"read_write\", allow = [\"{c}\"]");
        let attacks: Vec<(&str, String, String, String)> = match b.driver {
            "postgres" => vec![
                (
                    "all",
                    format!("COPY (SELECT 1) TO PROGRAM 'touch {}'", marker.display()),
                    "(COPY … PROGRAM) runs a program".into(),
                    NO_GRANT.into(),
                ),
                (
                    "ro",
                    "SELECT pg_read_file('/etc/hostname')".into(),
                    "(function pg_read_file) reaches files".into(),
                    cat("server_files"),
                ),
                (
                    "ro",
                    format!("COPY (SELECT 1) TO '{}'", marker.display()),
                    "(COPY with a server file)".into(),
                    cat("server_files"),
                ),
                (
                    "ro",
                    "SELECT set_config('search_path', 'elsewhere', false)".into(),
                    "(function set_config)".into(),
                    cat("session"),
                ),
                (
                    "ro",
                    "DO $$ BEGIN PERFORM 1; END $$".into(),
                    "does not parse".into(),
                    cat("unparsed"),
                ),
                (
                    "ro",
                    "SELECT * FROM dblink('host=127.0.0.1', 'SELECT 1') AS t(a INT)".into(),
                    "(function dblink) reaches other servers".into(),
                    cat("remote"),
                ),
            ],
            "mysql" => vec![
                (
                    "ro",
                    "SELECT LOAD_FILE('/etc/hostname')".into(),
                    "(function load_file)".into(),
                    cat("server_files"),
                ),
                (
                    "ro",
                    format!("SELECT 1 INTO OUTFILE '{}'", marker.display()),
                    "does not parse".into(),
                    cat("unparsed"),
                ),
                (
                    "ro",
                    format!("SELECT 1 /*!50000 INTO OUTFILE '{}' */", marker.display()),
                    "does not parse".into(),
                    cat("unparsed"),
                ),
                (
                    "ro",
                    "SELECT 1 /*M! , SLEEP(0) */".into(),
                    "executable comment".into(),
                    cat("unparsed"),
                ),
            ],
            "sqlite" => vec![(
                "all",
                "SELECT load_extension('/nonexistent/evil.so')".into(),
                "(function load_extension) loads native code".into(),
                NO_GRANT.into(),
            )],
            _ => vec![
                (
                    "all",
                    "EXEC xp_cmdshell 'whoami'".into(),
                    "(EXECUTE) runs a program".into(),
                    NO_GRANT.into(),
                ),
                (
                    "ro",
                    "EXEC sp_executesql N'DELETE FROM nothing'".into(),
                    "(EXECUTE) runs code".into(),
                    cat("procedure"),
                ),
            ],
        };
        for (connection, sql, words, hint) in &attacks {
            let r = call(&rt, connection, std::slice::from_ref(sql)).await;
            assert_denied(b.name, &r, connection, 1, words, hint);
        }
        assert!(!marker.exists(), "{}: a program or file ran", b.name);
        let r = rows(&rt, &b, "ro", &["SELECT 1".into()]).await;
        assert_eq!(r, json!([[1]]), "{}", b.name);
    }
}
