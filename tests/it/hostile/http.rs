//! HTTP `path_prefix` means the path a server routes: `/api/..%2Fsecret`,
//! `/api/..;/secret` (and the other encodings servers read differently) are
//! refused before the request leaves, for every rule; `/api` no longer
//! matches `/api-admin`. A real loopback server records every request line
//! it receives, so the tests see that a refused request never arrived,
//! through both `meridian:step/http` (the `probe` fixture and the built-in
//! `http` step) and the standard `wasi:http/outgoing-handler` (the
//! `wasi-http` fixture), and that an allowed request still does.

use meridian::capabilities::Decision;
use meridian::runtime::StepRun;
use meridian_tests::{TestRuntime, fixtures};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain HTTP/1.1 server on loopback that answers 200 to anything and
/// keeps each request line exactly as it came off the socket (no router
/// in between that could normalise it).
struct Recorder {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let line = text.lines().next().unwrap_or_default().to_string();
                    log.lock().unwrap().push(line);
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        Self {
            port,
            seen,
            _task: task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The request lines received so far.
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// A grant for each plugin to this server below `prefix`.
    fn config(&self, prefix: &str) -> String {
        ["probe", "wasi-http", "http"]
            .iter()
            .map(|plugin| {
                format!(
                    "[[grants]]\nplugin = {plugin:?}\n[[grants.http]]\nscheme = [\"http\"]\nhost = \"127.0.0.1\"\nport = [{}]\npath_prefix = {prefix:?}\nallow_private = true\n",
                    self.port
                )
            })
            .collect()
    }
}

async fn probe_get(rt: &TestRuntime, urls: &[String]) -> Vec<Value> {
    let calls: Vec<Value> = urls
        .iter()
        .map(|u| json!({ "http": { "method": "GET", "url": u } }))
        .collect();
    let run = rt.run("probe", json!({ "calls": calls })).await;
    run.result.expect("the probe reports every call").output["results"]
        .as_array()
        .unwrap()
        .clone()
}

fn denied_because(result: &Value, says: &str) {
    let err = &result["error"];
    assert_eq!(err["kind"], "denied", "{result}");
    assert_eq!(err["capability"], "http", "{result}");
    assert!(
        err["reason"].as_str().unwrap().contains(says),
        "expected the reason to say {says:?}: {result}"
    );
}

/// The two paths of the issue, and the other encodings of a way out, each
/// a typed denial that says why; none reaches the server; a plain path
/// under the prefix still does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_separators_dot_segments_and_parameters_never_leave() {
    let server = Recorder::start().await;
    let rt = TestRuntime::new(&server.config("/api/"), &[fixtures::PROBE]).await;
    let attacks = [
        ("/api/..%2Fsecret", "encoded '/'"),
        ("/api/..%2fsecret", "encoded '/'"),
        ("/api/..;/secret", "';'"),
        ("/api/..%3B/secret", "';'"),
        ("/api/..%5Csecret", "backslash"),
        ("/api/.../secret", "only dots"),
        ("/api//secret", "empty segment"),
        ("/api/%252e%252e%252fsecret", "encoded twice"),
        ("/api/%u002e%u002e/secret", "starts no escape"),
        ("/api/%c0%ae%c0%ae/secret", "not UTF-8"),
        ("/api/%EF%BC%8E%EF%BC%8E/secret", "look-alikes"),
        ("/api/secret%00.json", "control character"),
    ];
    let urls: Vec<String> = attacks.iter().map(|(p, _)| server.url(p)).collect();
    let results = probe_get(&rt, &urls).await;
    for ((path, says), result) in attacks.iter().zip(&results) {
        denied_because(result, says);
        assert!(
            result["error"]["grant_hint"]
                .as_str()
                .unwrap()
                .starts_with("none: "),
            "{path}: {result}"
        );
    }
    // The URL parser resolves these before anything is checked or sent:
    // what is checked is what leaves, and it is outside the prefix.
    let resolved = probe_get(
        &rt,
        &[
            server.url("/api/../secret"),
            server.url("/api/%2e%2e/secret"),
        ],
    )
    .await;
    for result in &resolved {
        denied_because(result, "no HTTP grant matches");
    }
    assert_eq!(
        server.seen(),
        Vec::<String>::new(),
        "nothing reached the server"
    );

    let ok = probe_get(&rt, &[server.url("/api/report?x=1")]).await;
    assert_eq!(ok[0]["ok"]["status"], 200, "{ok:?}");
    assert_eq!(server.seen(), ["GET /api/report?x=1 HTTP/1.1"]);
}

/// `path_prefix = "/api"` no longer matches `/api-admin` (nor `/apix`);
/// `/api` itself and what is below it still do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_is_whole_segments() {
    let server = Recorder::start().await;
    let rt = TestRuntime::new(&server.config("/api"), &[fixtures::PROBE]).await;
    let results = probe_get(
        &rt,
        &[
            server.url("/api-admin"),
            server.url("/api-admin/users"),
            server.url("/apix"),
            server.url("/api"),
            server.url("/api/users"),
        ],
    )
    .await;
    for r in &results[..3] {
        denied_because(r, "no HTTP grant matches");
    }
    assert_eq!(results[3]["ok"]["status"], 200, "{results:?}");
    assert_eq!(results[4]["ok"]["status"], 200, "{results:?}");
    assert_eq!(
        server.seen(),
        ["GET /api HTTP/1.1", "GET /api/users HTTP/1.1"],
        "only the paths below /api arrived"
    );
}

fn denied_event(run: &StepRun, says: &str) {
    let event = run
        .events
        .iter()
        .find(|e| e.capability == "http")
        .unwrap_or_else(|| panic!("no http call recorded: {run:?}"));
    assert_eq!(event.decision, Decision::Denied, "{event:?}");
    assert!(
        event.detail.as_deref().unwrap_or("").contains(says),
        "{event:?}"
    );
}

/// The same refusals for a component that uses the standard
/// `wasi:http/outgoing-handler` and for the built-in `http` step; the
/// server sees only the allowed call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_and_the_http_step_are_refused_the_same_way() {
    let server = Recorder::start().await;
    let rt = TestRuntime::new(&server.config("/api/"), &[fixtures::WASI_HTTP]).await;
    for (path, says) in [
        ("/api/..%2Fsecret", "encoded '/'"),
        ("/api/..;/secret", "';'"),
    ] {
        let run = rt
            .run("wasi-http", json!({ "url": server.url(path) }))
            .await;
        assert!(
            format!("{:?}", run.result).contains("HttpRequestDenied"),
            "{path}: {:?}",
            run.result
        );
        denied_event(&run, says);
        let run = rt.run("http", json!({ "url": server.url(path) })).await;
        assert!(run.result.is_err(), "{path}: {:?}", run.result);
        denied_event(&run, says);
    }
    assert_eq!(
        server.seen(),
        Vec::<String>::new(),
        "nothing reached the server"
    );
    let run = rt
        .run("wasi-http", json!({ "url": server.url("/api/ok") }))
        .await;
    assert_eq!(run.result.expect("allowed").output["status"], 200);
    let run = rt
        .run("http", json!({ "url": server.url("/api/ok") }))
        .await;
    assert!(run.result.is_ok(), "{:?}", run.result);
    assert_eq!(
        server.seen(),
        ["GET /api/ok HTTP/1.1", "GET /api/ok HTTP/1.1"]
    );
}
