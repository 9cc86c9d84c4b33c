//! `${...}` never spliced into code: an operator's parameter value (or an
//! earlier step's output) that would rewrite a query or a script is refused
//! — at every validation path (POST /api/v2/jobs, /jobs/validate,
//! /jobs/execute with a definition, the V1 shape, `meridian validate`), and
//! at run time for a job stored before the plugin marked its fields — and
//! the database is untouched; the bound-parameter form still runs.
//!
//! The refusal happens in the host before any database is contacted, so one
//! real database (SQLite, in a file outside the data dir) shows it; the
//! plugins are the built-in `sql` and `powershell` steps, built from the SDK.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use meridian::api::{AppState, router};
use meridian_tests::{ADMIN_TOKEN, TestNode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// What a hostile parameter value would do to spliced SQL text: match every
/// row.
const HOSTILE_REGION: &str = "x' OR '1'='1";

/// A node with the `orders` SQLite database (three rows) granted read-write
/// to the `sql` step; the database file lives outside the node's data dir.
struct Target {
    node: TestNode,
    db: PathBuf,
    _db_dir: tempfile::TempDir,
}

impl Target {
    async fn start() -> Self {
        let db_dir = tempfile::tempdir().unwrap();
        let db = db_dir.path().join("orders.db");
        let url = format!("sqlite://{}?mode=rwc", db.display());
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db)
            .create_if_missing(true);
        conn = conn.foreign_keys(false);
        let pool = sqlx::SqlitePool::connect_with(conn).await.unwrap();
        sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY, region TEXT NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO orders (region) VALUES ('eu'), ('us'), ('apac')")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let config = format!(
            "[sql.connections.orders]\ndriver = \"sqlite\"\nurl = {url:?}\n\n\
             [[grants]]\nplugin = \"sql\"\n[[grants.sql]]\nconnection = \"orders\"\naccess = \"read_write\"\n"
        );
        let node = TestNode::start(&config, &[]).await;
        Self {
            node,
            db,
            _db_dir: db_dir,
        }
    }

    fn state(&self) -> Arc<AppState> {
        Arc::clone(&self.node.state)
    }

    /// The regions left in the table, read past Meridian.
    async fn regions(&self) -> Vec<String> {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", self.db.display()))
            .await
            .unwrap();
        let rows: Vec<(String,)> = sqlx::query_as("SELECT region FROM orders ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows.into_iter().map(|(r,)| r).collect()
    }
}

fn all_regions() -> Vec<String> {
    ["eu", "us", "apac"].map(String::from).to_vec()
}

async fn call(state: Arc<AppState>, method: &str, uri: &str, body: &Value) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::from(if body.is_null() {
            String::new()
        } else {
            body.to_string()
        }))
        .unwrap();
    let res = router(state).oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The `(path, message)` of every issue in a validation answer.
fn issues(body: &Value) -> Vec<(String, String)> {
    body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {body}"))
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A job whose query splices a parameter into SQL text.
fn splicing_job(id: &str) -> Value {
    json!({
        "id": id, "name": "purge a region",
        "params": { "region": { "type": "string", "required": true } },
        "steps": [{ "id": "purge", "type": "sql", "config": {
            "connection": "orders",
            "query": "DELETE FROM orders WHERE region = '${params.region}'",
        }}],
    })
}

/// The same job written the safe way: a placeholder and a bound value.
fn bound_job(id: &str) -> Value {
    json!({
        "id": id, "name": "purge a region",
        "params": { "region": { "type": "string", "required": true } },
        "steps": [{ "id": "purge", "type": "sql", "config": {
            "connection": "orders",
            "query": "DELETE FROM orders WHERE region = ?",
            "params": ["${params.region}"],
        }}],
    })
}

fn assert_shows_the_bound_form(path: &str, message: &str) {
    assert_eq!(path, "steps[0].config.query", "{message}");
    assert!(
        message.starts_with("${params.region}: "),
        "the message names the expression: {message}"
    );
    assert!(
        message.contains("$1, ?, @P1") && message.contains(r#""params": ["${params.region}"]"#),
        "the message shows the bound-parameter form: {message}"
    );
}

async fn wait_done(state: &Arc<AppState>, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = call(
            state.clone(),
            "GET",
            &format!("/api/v2/executions/{id}"),
            &Value::Null,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if ["succeeded", "failed", "cancelled", "timed_out"]
            .contains(&body["status"].as_str().unwrap_or(""))
        {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "still {}: {body:#}",
            body["status"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn execute(state: &Arc<AppState>, job_id: &str, region: &str) -> Value {
    let (status, body) = call(
        state.clone(),
        "POST",
        "/api/v2/jobs/execute",
        &json!({ "job_id": job_id, "params": { "region": region } }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_done(state, body["execution_id"].as_str().unwrap()).await
}

/// The attack of issue 16 through every API validation path: refused with
/// the placeholder form at `steps[0].config.query`, nothing stored or run,
/// the table untouched; the bound form then runs, and the hostile value is
/// only data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_value_cannot_rewrite_a_query_through_the_api() {
    let target = Target::start().await;
    let state = target.state();

    let (status, body) = call(
        state.clone(),
        "POST",
        "/api/v2/jobs/validate",
        &splicing_job("purge"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["valid"], false, "{body}");
    let found = issues(&body);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_shows_the_bound_form(&found[0].0, &found[0].1);

    let (status, body) = call(
        state.clone(),
        "POST",
        "/api/v2/jobs",
        &splicing_job("purge"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "validation_failed");
    assert_shows_the_bound_form(&issues(&body)[0].0, &issues(&body)[0].1);
    let (status, _) = call(state.clone(), "GET", "/api/v2/jobs/purge", &Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");

    let (status, body) = call(
        state.clone(),
        "POST",
        "/api/v2/jobs/execute",
        &json!({ "job": splicing_job("purge"), "params": { "region": HOSTILE_REGION } }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(issues(&body)[0].0, "job.steps[0].config.query", "{body}");
    let (_, listed) = call(
        state.clone(),
        "GET",
        "/api/v2/executions?job_id=purge",
        &Value::Null,
    )
    .await;
    assert_eq!(listed["executions"], json!([]), "nothing was queued");

    // The V1 shape maps `command` onto the query: refused at `command`.
    let v1 = json!({ "name": "purge v1", "type": "sql", "connection": "orders",
                     "command": "DELETE FROM orders WHERE region = '${execution.id}'" });
    let (status, body) = call(state.clone(), "POST", "/api/v1/jobs", &v1).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let found = issues(&body);
    assert_eq!(found[0].0, "command", "{found:?}");
    assert!(found[0].1.starts_with("${execution.id}: "), "{found:?}");

    assert_eq!(
        target.regions().await,
        all_regions(),
        "the table is untouched"
    );

    // The host still serves, and the bound form is the way: the hostile
    // value is compared as data and matches nothing; a real one deletes
    // its row only.
    let (status, body) = call(state.clone(), "POST", "/api/v2/jobs", &bound_job("purge")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let run = execute(&state, "purge", HOSTILE_REGION).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(run["steps"][0]["output"]["rows_affected"], 0, "{run:#}");
    assert_eq!(target.regions().await, all_regions());
    let run = execute(&state, "purge", "us").await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(target.regions().await, ["eu", "apac"]);
}

/// Script statements — as strings and as `{sql, params}` — and a variable
/// standing for the whole script are refused, each at its own path; `$${`
/// (a literal `${`) is text and stays allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_statements_and_whole_scripts_take_no_variables() {
    let target = Target::start().await;
    let state = target.state();
    let job = json!({
        "id": "script", "name": "script",
        "params": { "t": { "type": "string", "default": "orders" },
                    "statements": { "type": "array", "default": [] } },
        "steps": [
            { "id": "a", "type": "sql", "config": { "connection": "orders", "script": [
                "DELETE FROM ${params.t}",
                { "sql": "DELETE FROM orders WHERE region = '${steps.b.output.value}'", "params": ["${params.t}"] },
                "SELECT '$${not a variable}'",
            ]}},
            { "id": "b", "type": "sql", "config": { "connection": "orders", "script": "${params.statements}" } },
        ],
    });
    let (status, body) = call(state.clone(), "POST", "/api/v2/jobs/validate", &job).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let found = issues(&body);
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "steps[0].config.script[0]",
            "steps[0].config.script[1].sql",
            "steps[1].config.script"
        ],
        "{found:#?}"
    );
    assert!(
        found[0]
            .1
            .contains(r#"{"sql": "... $1 ...", "params": ["${params.t}"]}"#),
        "{}",
        found[0].1
    );
    assert!(
        found[2].1.contains("a variable cannot supply this value"),
        "{}",
        found[2].1
    );
    assert_eq!(target.regions().await, all_regions());
}

/// A job stored before its plugin marked the query (put straight into the
/// store, as an older node would have) fails its attempt as
/// `invalid_config` instead of splicing; the database is untouched and the
/// next, well-formed job runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_job_that_splices_fails_its_attempt_and_touches_nothing() {
    let target = Target::start().await;
    let state = target.state();
    let old = splicing_job("old-purge");
    state
        .store
        .put_job("old-purge", &old.to_string(), 0)
        .await
        .unwrap();
    let run = execute(&state, "old-purge", HOSTILE_REGION).await;
    assert_eq!(run["status"], "failed", "{run:#}");
    let attempt = &run["steps"][0]["attempts"][0];
    assert_eq!(attempt["error"]["kind"], "invalid_config", "{run:#}");
    assert_eq!(attempt["error"]["issues"][0]["path"], "query", "{run:#}");
    assert_eq!(
        run["steps"][0]["attempts"].as_array().unwrap().len(),
        1,
        "an invalid config is not retried"
    );
    assert_eq!(target.regions().await, all_regions(), "nothing was deleted");

    let (status, body) = call(state.clone(), "POST", "/api/v2/jobs", &bound_job("purge")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let run = execute(&state, "purge", "eu").await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(target.regions().await, ["us", "apac"]);
}

/// An inline PowerShell script is code too; PowerShell's own `${env:X}` is
/// written `$${env:X}` and passes; values go in `parameters`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_powershell_script_takes_no_variables() {
    let target = Target::start().await;
    let state = target.state();
    let job = |script: &str| {
        json!({
            "id": "ps", "name": "ps",
            "params": { "name": { "type": "string", "default": "x" } },
            "steps": [{ "id": "s", "type": "powershell", "config": {
                "script": script, "parameters": { "Name": "${params.name}" } } }],
        })
    };
    let (_, body) = call(
        state.clone(),
        "POST",
        "/api/v2/jobs/validate",
        &job("Remove-Item ${params.name}; Write-Output ${env:HOME}"),
    )
    .await;
    let found = issues(&body);
    let spliced: Vec<&(String, String)> = found
        .iter()
        .filter(|(_, m)| m.starts_with("${params.name}: "))
        .collect();
    assert_eq!(spliced.len(), 1, "{found:#?}");
    let (path, message) = spliced[0];
    assert_eq!(path, "steps[0].config.script");
    assert!(
        message.contains(r#""parameters": {"Name": "${params.name}"}"#)
            && message.contains("$${env:X}"),
        "{message}"
    );
    assert!(
        found
            .iter()
            .any(|(_, m)| m.starts_with("${env:HOME}: unknown root")),
        "PowerShell's own syntax unescaped is an error too: {found:#?}"
    );
    let (_, body) = call(
        state.clone(),
        "POST",
        "/api/v2/jobs/validate",
        &job("param($Name) Remove-Item $Name; Write-Output $${env:HOME}"),
    )
    .await;
    assert_eq!(body["valid"], true, "{body}");
}

async fn meridian(args: &[&str]) -> (ExitCode, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = std::iter::once("meridian").chain(args.iter().copied());
    let code = meridian::cli::run_args(argv, &mut out, &mut err).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// `meridian validate` refuses the splicing job with the same issue, and
/// accepts the bound form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meridian_validate_refuses_a_spliced_query() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, job: &Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, job.to_string()).unwrap();
        path
    };
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let validate = |job: PathBuf| async move {
        let job: &Path = &job;
        meridian(&["--data-dir", data, "validate", job.to_str().unwrap()]).await
    };
    let (code, _, err) = validate(write("bad.json", &splicing_job("purge"))).await;
    assert_eq!(code, ExitCode::from(2), "{err}");
    assert!(
        err.contains("  steps[0].config.query: ${params.region}: ")
            && err.contains(r#""params": ["${params.region}"]"#),
        "{err}"
    );
    let (code, _, err) = validate(write("good.json", &bound_job("purge"))).await;
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
}
