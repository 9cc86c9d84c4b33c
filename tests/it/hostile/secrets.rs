//! Secrets: a plugin granted a secret writes it, in every common encoding,
//! everywhere a step can put text — output, exports (a value and a name),
//! log lines, stdout and stderr, its error message, the URL and query of a
//! request that is denied — and the built-in `http` step puts one in a
//! query that is denied. None of the forms may reach the step results, the
//! store, the log files, the audit trail or the node's stderr.
//!
//! Validation: a plugin's `validate` gets no capability whatever it was
//! granted (a secret it reads and a host it calls are refused, and the
//! attempt is audited once), and a viewer cannot tell a guess that is a
//! secret from one that is not by what validation answers.

use crate::node::{Node, Token, meridian_node};
use crate::recovery::{assert_node_still_works, client, execute, finished};
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use meridian_tests::{TestNode, TestRuntime, fixtures, services};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tower::ServiceExt as _;

/// A secret whose every encoding differs from its plain spelling: a space,
/// a quote, `/`, `+`, `~`, `%` and non-ASCII characters.
const SECRET: &str = "s3cr3t tok\"en/+~%é€x";

/// A loopback HTTP server that counts the requests it gets: what a denied
/// or refused call must never reach.
struct Recorder {
    addr: std::net::SocketAddr,
    hits: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start() -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        let app = axum::Router::new().fallback(move || {
            let counted = Arc::clone(&counted);
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                "seen"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            hits,
            _task: task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// The characters of `base64(prefix + secret + …)` that encode only the
/// secret's own bits, for a secret that starts `skip` bytes into a group.
fn base64_core(secret: &str, skip: usize) -> String {
    let mut shifted = vec![0u8; skip];
    shifted.extend_from_slice(secret.as_bytes());
    let text = STANDARD_NO_PAD.encode(&shifted);
    text[(8 * skip).div_ceil(6)..8 * shifted.len() / 6].to_owned()
}

/// Every spelling of `secret` that must not appear anywhere: the forms the
/// `leaky` fixture and the `http` step produce, and the JSON-escaped text
/// of each (an API answer or a JSON log line holds them escaped).
fn forbidden(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let form: String = url::form_urlencoded::byte_serialize(bytes).collect();
    let strict = percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
        .to_string();
    let mut segment = url::Url::parse("http://h/").unwrap();
    segment.path_segments_mut().unwrap().push(secret);
    let json_ascii: String = secret
        .chars()
        .map(|c| match c {
            '"' => "\\\"".to_owned(),
            c if c.is_ascii() => c.to_string(),
            c => format!("\\u{:04x}", c as u32),
        })
        .collect();
    let mut forms = vec![
        secret.to_owned(),
        STANDARD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        base64_core(secret, 0),
        base64_core(secret, 1),
        base64_core(secret, 2),
        form.clone(),
        form.to_lowercase(),
        strict.clone(),
        strict.to_lowercase(),
        segment.path().trim_start_matches('/').to_owned(),
        hex::encode(bytes),
        hex::encode_upper(bytes),
        serde_json::to_string(secret)
            .unwrap()
            .trim_matches('"')
            .to_owned(),
        json_ascii,
    ];
    let escaped: Vec<String> = forms
        .iter()
        .map(|f| {
            serde_json::to_string(f)
                .unwrap()
                .trim_matches('"')
                .to_owned()
        })
        .collect();
    forms.extend(escaped);
    forms.sort();
    forms.dedup();
    forms
}

/// The forms of [`forbidden`] that `haystack` holds.
fn leaks(haystack: &[u8], forms: &[String]) -> Vec<String> {
    forms
        .iter()
        .filter(|f| haystack.windows(f.len()).any(|w| w == f.as_bytes()))
        .cloned()
        .collect()
}

/// Every file under `dir`, gzipped ones decompressed, with its path.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "gz") {
                let unzipped = std::process::Command::new("gzip")
                    .arg("-dc")
                    .arg(&path)
                    .output()
                    .expect("gzip -dc");
                out.push((path, unzipped.stdout));
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
            }
        }
    }
    out
}

/// A `meridian serve` node with the `leaky` and `trivial` plugins, the
/// secret given as `MERIDIAN_SECRET_API_TOKEN`, and grants of that secret
/// (and nothing else) to `leaky` and the built-in `http`.
async fn leaky_node(dir: &Path) -> Node {
    let data = dir.join("data");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(fixtures::LEAKY, plugins.join("leaky.wasm")).unwrap();
    std::fs::copy(fixtures::TRIVIAL, plugins.join("trivial.wasm")).unwrap();
    let config = dir.join("meridian.toml");
    std::fs::write(
        &config,
        "[[grants]]\nplugin = \"leaky\"\nsecrets = [\"api_token\"]\n\
         [[grants]]\nplugin = \"http\"\nsecrets = [\"api_token\"]\n",
    )
    .unwrap();
    let mut cmd = meridian_node(&data, &plugins);
    cmd.arg("--config")
        .arg(&config)
        .env("MERIDIAN_SECRET_API_TOKEN", SECRET);
    Node::start("secrets", cmd, dir, Token::FirstAdmin).await
}

async fn get_text(http: &reqwest::Client, node: &Node, path: &str) -> String {
    let resp = http
        .get(node.url(path))
        .bearer_auth(node.token())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
    resp.text().await.unwrap()
}

/// The whole audit trail as the API shows it, page by page.
async fn audit_trail(http: &reqwest::Client, node: &Node) -> String {
    let mut all = String::new();
    let mut after: Option<i64> = None;
    loop {
        let path = match after {
            Some(seq) => format!("/api/v2/audit?limit=500&after={seq}"),
            None => "/api/v2/audit?limit=500".to_owned(),
        };
        let page: Value = serde_json::from_str(&get_text(http, node, &path).await).unwrap();
        all.push_str(&page["records"].to_string());
        match page["next_after"].as_i64() {
            Some(seq) => after = Some(seq),
            None => return all,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_secret_reaches_no_output_store_log_or_audit_record_in_any_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::start().await;
    let mut node = leaky_node(dir.path()).await;
    let http = client();

    // The plugin returns every form (output, exports, logs, stdio) after a
    // denied request with the secret in its path and query.
    let returned = execute(
        &http,
        &node,
        json!({ "id": "leak-output", "name": "leak", "timezone": "Europe/Berlin",
                "steps": [{ "id": "leak", "type": "leaky",
                            "config": { "secret": "api_token",
                                        "denied_url": recorder.url("/collect") } }] }),
    )
    .await;
    // The same forms in its error message.
    let failed = execute(
        &http,
        &node,
        json!({ "id": "leak-error", "name": "leak", "timezone": "Europe/Berlin",
                "steps": [{ "id": "leak", "type": "leaky",
                            "config": { "secret": "api_token", "fail": true } }] }),
    )
    .await;
    // The built-in http step with the secret in a query no grant allows.
    let queried = execute(
        &http,
        &node,
        json!({ "id": "leak-query", "name": "leak", "timezone": "Europe/Berlin",
                "steps": [{ "id": "get", "type": "http",
                            "config": { "url": recorder.url("/collect"),
                                        "query": { "k": "${secrets.api_token}" } } }] }),
    )
    .await;

    let returned = finished(&http, &node, &returned).await;
    let failed = finished(&http, &node, &failed).await;
    let queried = finished(&http, &node, &queried).await;
    assert_eq!(returned["status"], "succeeded", "{returned:#}");
    assert_eq!(failed["status"], "failed", "{failed:#}");
    assert_eq!(queried["status"], "failed", "{queried:#}");

    // The attack happened, and was masked rather than never made: the
    // fixture logged and returned every form, its request was denied.
    let returned_text = returned.to_string();
    let output = &returned["steps"][0]["attempts"][0]["output"];
    assert_eq!(output["denial"]["kind"], "denied", "{returned:#}");
    assert!(
        output["denial"]["message"]
            .as_str()
            .unwrap()
            .contains("***"),
        "{returned:#}"
    );
    for name in ["exact", "base64", "form", "hex", "json_ascii"] {
        assert!(
            returned_text.contains(&format!("{name}: ***")),
            "no masked {name} line: {returned:#}"
        );
    }
    // Inside `Basic base64(user:secret…)` what encodes the user and what
    // follows the secret stays; the secret's own characters are masked.
    for name in ["basic_0", "basic_1", "basic_2"] {
        let line = returned_text
            .split(&format!("{name}: Basic "))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no {name} line: {returned:#}"));
        assert!(line.contains("***"), "{name}: {line}");
    }
    assert!(
        failed.to_string().contains("leaking: exact=***"),
        "{failed:#}"
    );
    assert!(
        queried.to_string().contains("\"kind\":\"denied\""),
        "{queried:#}"
    );
    assert_eq!(recorder.hits(), 0, "a denied request reached the server");

    // The audit writer stores records in batches after the step ends:
    // wait until both denials are on the trail (masked) before reading it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let audit = loop {
        let audit = audit_trail(&http, &node).await;
        if audit.matches("\"decision\":\"denied\"").count() >= 2 && audit.contains("***") {
            break audit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the denied requests are on the trail, masked, within 30 s: {audit}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };

    // Nothing of the secret in the API's answers, the audit trail, …
    let forms = forbidden(SECRET);
    let mut found = Vec::new();
    for (what, text) in [
        ("execution leak-output", returned_text.clone()),
        ("execution leak-error", failed.to_string()),
        ("execution leak-query", queried.to_string()),
        ("audit trail", audit),
    ] {
        for form in leaks(text.as_bytes(), &forms) {
            found.push(format!("{what}: {form:?}"));
        }
    }

    // The host still works after the attack.
    assert_node_still_works(&node).await;

    // … the store, the log files and the node's own stderr (read after a
    // clean stop, so every line is flushed).
    node.terminate(std::time::Duration::from_secs(30)).await;
    let stored = files_under(&dir.path().join("data"));
    assert!(
        stored.iter().any(|(p, _)| p.ends_with("meridian.db")),
        "no store file under the data dir"
    );
    let execution_log = stored
        .iter()
        .find(|(p, _)| p.ends_with(format!("{}.log", returned["id"].as_str().unwrap())))
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .expect("the execution's log file");
    assert!(
        execution_log.contains("base64: ***") && execution_log.contains("stderr hex: ***"),
        "the step's lines are in its log file, masked: {execution_log}"
    );
    for (path, bytes) in stored {
        for form in leaks(&bytes, &forms) {
            found.push(format!("{}: {form:?}", path.display()));
        }
    }
    for form in leaks(node.stderr().as_bytes(), &forms) {
        found.push(format!("node stderr: {form:?}"));
    }
    assert!(found.is_empty(), "the secret leaked:\n{}", found.join("\n"));
}

/// Two more places a secret comes back from: the arguments of a command
/// that is denied (the denial's target and the call record) and, with
/// PostgreSQL, a database that quotes the parameter it could not convert
/// in its error. Both hold the secret encoded, as a step would send it;
/// both are masked in what the step gets back, its output and the call
/// records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_a_denied_command_is_masked() {
    echoed_secret_is_masked(None).await;
}

meridian_tests::needs_services! {
    /// [`a_secret_in_a_denied_command_is_masked`], and a PostgreSQL error
    /// that quotes the secret.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_secret_echoed_by_a_database_or_in_a_denied_command_is_masked() {
        echoed_secret_is_masked(Some(services::postgres())).await;
    }
}

async fn echoed_secret_is_masked(pg: Option<services::Service>) {
    let b64 = STANDARD.encode(SECRET);
    let hex = hex::encode(SECRET);
    let mut toml = format!("[secrets]\napi_token = {SECRET:?}\n");
    if let Some(pg) = &pg {
        let database = pg.url.rsplit('/').next().unwrap_or("");
        toml.push_str(&format!(
            "db_pw = {:?}\n[sql.connections.pg]\ndriver = \"postgres\"\n\
             url = \"postgres://{}@{}:{}/{database}\"\npassword_secret = \"db_pw\"\n\
             [[grants]]\nplugin = \"probe\"\n[[grants.sql]]\nconnection = \"pg\"\naccess = \"read\"\n",
            pg.password, pg.user, pg.host, pg.port
        ));
    }
    let rt = TestRuntime::new(&toml, &[fixtures::PROBE]).await;
    let mut calls = vec![json!({ "process": { "program": "/bin/echo", "args": [b64, hex] } })];
    if pg.is_some() {
        calls.push(json!({ "sql": { "connection": "pg", "sql": "SELECT $1::int", "params": [b64], "read_only": true } }));
    }
    let run = rt.run("probe", json!({ "calls": calls })).await;
    let output = run.result.as_ref().expect("probe reports").output.clone();
    let results = output["results"].as_array().unwrap();
    let process = &results[0]["error"];
    assert_eq!(process["kind"], "denied", "{output}");
    assert_eq!(process["target"], "/bin/echo *** ***", "{output}");
    if pg.is_some() {
        let sql = &results[1]["error"];
        assert_eq!(sql["kind"], "failed", "{output}");
        let message = sql["message"].as_str().unwrap();
        assert!(
            message.contains("invalid input syntax") && message.contains("***"),
            "{message}"
        );
    }
    let everything = serde_json::to_string(&run).unwrap();
    let found = leaks(everything.as_bytes(), &forbidden(SECRET));
    assert!(
        found.is_empty(),
        "the secret leaked: {found:?}\n{everything}"
    );
    let run = rt.run("probe", json!({ "calls": [] })).await;
    assert!(run.result.is_ok(), "{:?}", run.result);
}

/// The node of the validation tests: `leaky` granted the secret and HTTP to
/// the recorder, so anything it reaches during validate is its grant's
/// doing, not the lack of one.
async fn validation_node(recorder: &Recorder) -> TestNode {
    let toml = format!(
        "[secrets]\napi_token = {SECRET:?}\n\
         [[grants]]\nplugin = \"leaky\"\nsecrets = [\"api_token\"]\n\
         [[grants.http]]\nscheme = [\"http\"]\nhost = \"127.0.0.1\"\nport = [{}]\nallow_private = true\n",
        recorder.addr.port()
    );
    TestNode::start(&toml, &[fixtures::LEAKY]).await
}

async fn call(
    state: &Arc<meridian::api::AppState>,
    token: &str,
    method: &str,
    uri: &str,
    body: Value,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let res = meridian::api::router(Arc::clone(state))
        .oneshot(req)
        .await
        .unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn viewer_token(node: &TestNode) -> String {
    let (token, ..) = meridian::auth::create_token(
        &node.state.store,
        Some("viewer"),
        meridian::auth::Role::Viewer,
        "test",
    )
    .await
    .unwrap();
    token
}

/// The audit records of validate-time capability calls.
async fn validate_records(node: &TestNode) -> Vec<Value> {
    node.state.audit.flush().await;
    let (status, body) = call(
        &node.state,
        meridian_tests::ADMIN_TOKEN,
        "GET",
        "/api/v2/audit?kind=capability&limit=500",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["records"]
        .as_array()
        .unwrap_or_else(|| panic!("no records in {body}"))
        .iter()
        .filter(|r| r["target"] == "(a call made during validate)")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reads_no_secret_and_reaches_no_host_whatever_the_grants() {
    let recorder = Recorder::start().await;
    let node = validation_node(&recorder).await;
    let viewer = viewer_token(&node).await;
    let job = json!({
        "id": "probe-validate", "name": "probe", "timezone": "UTC",
        "steps": [{ "id": "v", "type": "leaky",
                    "config": { "secret": "api_token",
                                "validate_reach": { "secret": "api_token",
                                                    "url": recorder.url("/seen") } } }],
    });
    let (status, body) = call(
        &node.state,
        &viewer,
        "POST",
        "/api/v2/jobs/validate",
        job.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let issue = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "steps[0].config.validate_reach")
        .unwrap_or_else(|| panic!("no validate_reach issue: {body}"))["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        issue.starts_with("secret: denied: ") && issue.contains("; http: denied: "),
        "validate got a capability: {issue}"
    );
    assert!(
        issue.contains("no capability is available while a step validates its config"),
        "{issue}"
    );
    assert!(!issue.contains(SECRET), "{issue}");
    assert_eq!(recorder.hits(), 0, "validate reached the host");

    // The attempt is a security signal: one record per validate, however
    // many calls it made.
    let records = validate_records(&node).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["decision"], "denied");
    assert_eq!(records[0]["plugin"], "leaky");
    assert_eq!(records[0]["capability"], "secrets");
    call(&node.state, &viewer, "POST", "/api/v2/jobs/validate", job).await;
    assert_eq!(validate_records(&node).await.len(), 2);

    // Nothing changed: the same plugin, executed, has its grants.
    let rt = &node.state.runtime;
    let run = rt
        .execute(
            &rt.plugin("leaky").unwrap(),
            meridian_tests::invocation(json!({ "secret": "api_token" })),
        )
        .await;
    assert!(run.result.is_ok(), "{:?}", run.result);
    let (status, _) = call(&node.state, &viewer, "GET", "/api/v2/jobs", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_cannot_tell_a_secret_from_a_guess_by_validating() {
    let recorder = Recorder::start().await;
    let node = validation_node(&recorder).await;
    let viewer = viewer_token(&node).await;
    let not_secret = "n0t-the-s3cret tok\"en/+~%é€x";
    // A value quoted back by a built-in plugin's validate (the http step's
    // URL check), by a third-party plugin's, and by the JSON Schema check.
    let answer = |guess: &str| {
        json!({
            "id": "guess", "name": "guess", "timezone": "UTC",
            "steps": [
                { "id": "a", "type": "http", "config": { "url": guess } },
                { "id": "b", "type": "leaky", "config": { "secret": "x", "echo": guess } },
                { "id": "c", "type": "http", "config": { "url": "https://example.com/", "timeout_ms": guess } },
            ],
        })
    };
    let mut answers = Vec::new();
    for guess in [SECRET, not_secret] {
        let (status, body) = call(
            &node.state,
            &viewer,
            "POST",
            "/api/v2/jobs/validate",
            answer(guess),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // Each message quotes the caller's own value back as given (the
        // schema check writes it as a JSON string).
        let quoted = serde_json::to_string(guess).unwrap();
        let messages: Vec<String> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let m = e["message"].as_str().unwrap();
                assert!(
                    m.contains(guess) || m.contains(&quoted),
                    "the value is not quoted back: {body}"
                );
                format!(
                    "{}: {}",
                    e["path"],
                    m.replace(&quoted, "<GUESS>").replace(guess, "<GUESS>")
                )
            })
            .collect();
        assert_eq!(messages.len(), 3, "{body}");
        answers.push(messages.join("\n"));
    }
    assert_eq!(
        answers[0], answers[1],
        "validation answers differently when the value is a secret"
    );
    assert!(!answers[0].contains("***"), "{}", answers[0]);
}
