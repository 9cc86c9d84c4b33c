//! The OpenAPI 3.1 document (`/api/v2/openapi.json`) and its docs page, and
//! an independent OpenAPI-driven fuzzer run against a live node.
//!
//! - [`the_document_is_openapi_3_1_and_matches_the_router`]: through the
//!   router, the document is OpenAPI 3.1.x, every operation in it is a real
//!   route, every operation needs the bearer token except the health check,
//!   the document and the docs page, and the docs page is HTML that names
//!   every path and fetches nothing.
//! - [`schemathesis_finds_no_server_error_and_no_nonconformance`]: a real
//!   `meridian serve` process on loopback (empty data directory; its first
//!   admin token is read from its stderr) and schemathesis (PyPI) generating
//!   requests from the document for every operation, a bounded number of
//!   examples each, checking that no response is a 5xx and that every
//!   status code, content type, header and body conforms to the document;
//!   then its stateful phase, which chains calls along the document's
//!   response links (POST /api/v2/jobs → GET/DELETE of that job, POST
//!   /api/v2/jobs/execute → GET of that execution, POST /api/v2/grants →
//!   PUT/DELETE of that grant, the list routes → their first item) with the
//!   ids the API returned, a few calls per scenario.
//!   It is ignored where the services of `.ci/run` are not promised
//!   (`meridian_tests::needs_services!`); where they are, a missing
//!   schemathesis fails it with how to install it.

#![cfg(unix)]

use super::api::{request_as, state};
use super::node::{Node, Token, meridian_node};
use axum::http::StatusCode;
use meridian_tests::fixtures;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Routes that must need no token (others may join them, as the document
/// says with `x-required-permission: public`).
const PUBLIC: [&str; 3] = ["/api/v2/health", "/api/v2/openapi.json", "/api/v2/docs"];
const METHODS: [&str; 4] = ["get", "put", "post", "delete"];

/// A concrete URI for a path template (`{id}` → `x1`, `{version}` → `1`).
fn concrete(template: &str) -> String {
    template
        .replace("{version}", "1")
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                "x1".to_string()
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_matches_the_router() {
    let (_rt, state) = state().await;
    let (status, headers, body) =
        request_as(state.clone(), None, "GET", "/api/v2/openapi.json", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let doc: Value = serde_json::from_slice(&body).unwrap();
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "openapi {version}");
    assert_eq!(doc["info"]["title"], "Meridian");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    let global: Vec<&str> = doc["security"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_object().unwrap().keys().map(String::as_str))
        .collect();
    assert_eq!(global, ["bearer"]);

    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            operations += 1;
            let what = format!("{method} {path}");
            // Its security: the global bearer requirement, or none at all
            // for the public routes.
            assert!(op["x-required-permission"].is_string(), "{what}");
            let public = op["x-required-permission"] == "public";
            if PUBLIC.contains(&path.as_str()) {
                assert!(public, "{what} should be public");
            }
            match op.get("security") {
                Some(s) => {
                    assert!(public, "{what} overrides the security requirement");
                    assert_eq!(s, &Value::Array(vec![]), "{what}");
                }
                None => assert!(!public, "{what} is public but needs a token"),
            }
            let responses = op["responses"].as_object().unwrap();
            for status in ["408", "500"] {
                assert!(responses.contains_key(status), "{what} lacks {status}");
            }
            if !public {
                for status in ["401", "403"] {
                    assert!(responses.contains_key(status), "{what} lacks {status}");
                }
            }
            assert!(op["summary"].is_string(), "{what} has no summary");
            // A real route: without a token the guard answers (401), or the
            // public handler does (200); never the 404 fallback or a 405.
            let uri = concrete(path);
            let body = if method == "get" || method == "delete" {
                ""
            } else {
                "{}"
            };
            let (status, ..) =
                request_as(state.clone(), None, &method.to_uppercase(), &uri, body).await;
            let want = if public {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
            assert_eq!(status, want, "{what} ({uri}) through the router");
        }
    }
    assert!(operations >= 49, "only {operations} operations documented");

    // Response links (what schemathesis's stateful phase follows) name a
    // real operation and only parameters that operation has.
    let mut ops = std::collections::HashMap::new();
    for item in paths.values() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                ops.insert(op["operationId"].as_str().unwrap().to_string(), op);
            }
        }
    }
    let mut links = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            for response in op["responses"].as_object().unwrap().values() {
                let Some(these) = response.get("links").and_then(Value::as_object) else {
                    continue;
                };
                for (name, link) in these {
                    let target = link["operationId"].as_str().unwrap();
                    let to = ops
                        .get(target)
                        .unwrap_or_else(|| panic!("{method} {path}: link {name} to {target}"));
                    let params: Vec<&str> = to["parameters"]
                        .as_array()
                        .map(|p| p.iter().map(|p| p["name"].as_str().unwrap()).collect())
                        .unwrap_or_default();
                    for (param, value) in link["parameters"].as_object().unwrap() {
                        assert!(params.contains(&param.as_str()), "{name}: {param}");
                        assert!(
                            value.as_str().unwrap().starts_with("$response.body#/"),
                            "{name}: {value}"
                        );
                    }
                    links.push(format!("{method} {path} -> {target}"));
                }
            }
        }
    }
    links.sort();
    for want in [
        "get /api/v2/executions -> get_execution",
        "get /api/v2/jobs -> get_job",
        "post /api/v2/grants -> replace_grant",
        "post /api/v2/grants -> revoke_grant",
        "post /api/v2/jobs -> delete_job",
        "post /api/v2/jobs -> get_job",
        "post /api/v2/jobs/execute -> get_execution",
    ] {
        assert!(links.iter().any(|l| l == want), "{want} not in {links:#?}");
    }

    let (status, headers, body) = request_as(state, None, "GET", "/api/v2/docs", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let page = String::from_utf8(body).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    for path in paths.keys() {
        assert!(page.contains(&format!("<code>{path}</code>")), "{path}");
    }
    assert!(page.contains("Required role: operator or admin."));
    assert!(!page.contains("<script"), "the page runs no script");
    assert!(!page.contains("src="), "the page loads nothing");
    assert!(!page.contains("<link"), "the page loads no stylesheet");
}

/// The router serves exactly what the document says, the other way round
/// from [`the_document_is_openapi_3_1_and_matches_the_router`]: on every
/// documented path, each method the document does not list is refused,
/// even to an admin (who passes the guard: 405 from the router); and the
/// only routes outside the document, the web UI's, are public for reading
/// and nothing else. Each route is registered once (`api::routes`: the
/// handler's `#[utoipa::path]` is its route), so a handler cannot be
/// served undocumented; this checks the result.
#[tokio::test]
async fn the_router_serves_nothing_the_document_does_not_list() {
    let (_rt, state) = state().await;
    let doc = meridian::api::openapi::api_doc();
    let admin = Some(meridian_tests::ADMIN_TOKEN);
    let (operator, ..) = meridian::auth::create_token(
        &state.store,
        Some("op"),
        meridian::auth::Role::Operator,
        "test",
    )
    .await
    .unwrap();
    let all = ["GET", "PUT", "POST", "DELETE", "PATCH"];
    for (path, item) in &doc.paths.paths {
        let documented = [
            ("GET", item.get.is_some()),
            ("PUT", item.put.is_some()),
            ("POST", item.post.is_some()),
            ("DELETE", item.delete.is_some()),
            ("PATCH", item.patch.is_some()),
        ];
        for method in all {
            let listed = documented.iter().any(|(m, on)| *m == method && *on);
            let need = meridian::api::route_permission(&method.parse().unwrap(), path);
            if listed {
                assert!(need.is_some(), "{method} {path} has no permission");
                continue;
            }
            assert!(
                need.is_none(),
                "{method} {path}: a permission but no operation"
            );
            let uri = concrete(path);
            let (status, ..) = request_as(state.clone(), admin, method, &uri, "{}").await;
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} ({uri}) is served but not documented"
            );
            // Without a token: refused by the guard before the router says
            // anything about the method. What no attribute declares is an
            // admin's only: an operator is refused too (before, a change
            // the table did not name needed `operate`, and a GET `read`).
            let (status, ..) = request_as(state.clone(), None, method, &uri, "{}").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            let (status, ..) = request_as(state.clone(), Some(&operator), method, &uri, "{}").await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
        }
    }
    for route in meridian::api::web::ROUTES {
        assert!(
            !doc.paths.paths.contains_key(route),
            "{route} is the UI's and documented"
        );
        let uri = route.replace("{file}", "app.js");
        let (status, ..) = request_as(state.clone(), None, "GET", &uri, "").await;
        assert!(
            status.is_success() || status.is_redirection(),
            "GET {uri}: {status}"
        );
        for method in ["PUT", "POST", "DELETE", "PATCH"] {
            let (status, ..) = request_as(state.clone(), None, method, &uri, "{}").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        }
    }
}

/// Who may do what, as the routes' attributes say and the guard enforces
/// (the document's `x-required-permission`, which security teams read).
#[test]
fn permissions_are_where_the_routes_are() {
    use axum::http::Method;
    use meridian::api::route_permission as need;
    use meridian::auth::Permission::*;
    let (get, post, put, delete) = (Method::GET, Method::POST, Method::PUT, Method::DELETE);
    for (method, route, want) in [
        (&get, "/api/v2/health", Public),
        (&get, "/api/v2/openapi.json", Public),
        (&get, "/api/v2/docs", Public),
        (&get, "/api/v2/session", Read),
        (&get, "/api/v2/jobs", Read),
        (&post, "/api/v2/jobs", Operate),
        (&post, "/api/v2/jobs/validate", Read),
        (&delete, "/api/v2/jobs/{id}", Operate),
        (&get, "/api/v2/schedules/preview", Read),
        (&get, "/api/v2/audit", Audit),
        (&get, "/api/v2/audit/verify", Audit),
        (&get, "/api/v2/grants", Audit),
        (&post, "/api/v2/grants", Admin),
        (&put, "/api/v2/grants/{id}", Admin),
        (&delete, "/api/v2/grants/{id}", Admin),
        (&get, "/api/v2/tokens", Admin),
        (&post, "/api/v2/tokens", Admin),
        (&get, "/api/v2/plugins/{name}", Read),
        (&get, "/api/v2/plugins/{name}/capabilities", Audit),
        (&put, "/api/v2/plugins/{name}", Admin),
        (&delete, "/api/v2/plugins/{name}", Admin),
        (&get, "/metrics", Read),
        (&get, "/api/v1/jobs", Read),
        (&post, "/api/v1/jobs", Operate),
        (&post, "/api/v2/jobs/schedule", Operate),
        (&Method::HEAD, "/api/v2/health", Public),
        (&get, "/ui/{file}", Public),
        (&Method::HEAD, "/ui/", Public),
    ] {
        assert_eq!(need(method, route), Some(want), "{method} {route}");
    }
    assert_eq!(need(&post, "/ui/"), None, "the UI takes no writes");
    assert_eq!(need(&get, "/api/v2/no-such-route"), None);
}

/// How to run schemathesis here: `schemathesis` on PATH, else through
/// Python (`python3 -m schemathesis.cli`: 4.x has no `schemathesis.__main__`,
/// so `python3 -m schemathesis` works only with other versions, tried
/// last); the test fails when none works.
fn schemathesis() -> Vec<String> {
    let candidates: [&[&str]; 3] = [
        &["schemathesis"],
        &["python3", "-m", "schemathesis.cli"],
        &["python3", "-m", "schemathesis"],
    ];
    candidates
        .into_iter()
        .find_map(|c| {
            let ok = std::process::Command::new(c[0])
                .args(&c[1..])
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            ok.then(|| c.iter().map(|s| (*s).to_string()).collect())
        })
        .expect(
            "schemathesis is not installed (neither `schemathesis` on PATH nor \
         `python3 -m schemathesis.cli` works): `pip install schemathesis`, as .ci/run does",
        )
}

/// Starts a node on an empty data directory with the `trivial` and
/// `script` fixtures as its plugins; its requests send the first admin
/// token it printed.
async fn start_node(dir: &Path) -> Node {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(fixtures::TRIVIAL, plugins.join("trivial.wasm")).unwrap();
    std::fs::copy(fixtures::SCRIPT, plugins.join("script.wasm")).unwrap();
    let cmd = meridian_node(&dir.join("data"), &plugins);
    Node::start("node", cmd, dir, Token::FirstAdmin).await
}

/// Stores a job, a schedule of it and an execution of it on the node, so
/// that the fuzzer's requests on `{id}` routes reach more than the 404
/// branch; returns the ids to offer it.
async fn seed(base: &str, token: &str) -> Vec<String> {
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let job = serde_json::json!({
        "id": "fuzz-job", "name": "Fuzzed job",
        "steps": [{ "id": "one", "type": "script", "config": { "output": { "n": 1 } } }]
    });
    let res = post("/api/v2/jobs", job).await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let schedule = serde_json::json!({
        "id": "fuzz-schedule", "job_id": "fuzz-job", "cron": "0 3 * * *", "timezone": "Europe/London"
    });
    let res = post("/api/v2/schedules", schedule).await.unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let res = post(
        "/api/v2/jobs/execute",
        serde_json::json!({ "job_id": "fuzz-job" }),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 202);
    let run: Value = res.json().await.unwrap();
    let execution = run["execution_id"].as_str().unwrap().to_string();
    let res = post(
        "/api/v2/grants",
        serde_json::json!({ "plugin": "script", "secrets": ["fuzz"] }),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    let grant: Value = res.json().await.unwrap();
    vec![
        "fuzz-job".into(),
        "fuzz-schedule".into(),
        execution,
        "trivial".into(),
        grant["id"].as_str().unwrap().to_string(),
    ]
}

/// schemathesis's configuration: the seeded ids are offered for every
/// `{id}`/`{name}` path parameter half of the time.
fn config(ids: &[String]) -> String {
    let values = ids
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[dictionaries.ids]\nvalues = [{values}]\n\n[parameters]\n\
         \"path.id\" = {{ dictionary = \"ids\", probability = 0.5 }}\n\
         \"path.name\" = {{ dictionary = \"ids\", probability = 0.5 }}\n\n\
         [phases.stateful]\nmax-steps = {STATEFUL_MAX_STEPS}\n\
         [phases.stateful.inference]\nalgorithms = [\"location-headers\"]\n"
    )
}

/// Calls in one stateful scenario (a chain of linked operations: POST
/// /api/v2/jobs, then GET or DELETE of that job, …). Only the document's
/// links and `Location` headers are followed, not links schemathesis infers
/// from the schemas: an inferred link to a followed log stream would make
/// the run's length depend on an execution's.
const STATEFUL_MAX_STEPS: u32 = 4;
/// Test cases schemathesis generates per operation (and phase);
/// `MERIDIAN_TEST_FUZZ_EXAMPLES` overrides it for a deeper run (the time
/// bound then grows with it).
const MAX_EXAMPLES: u64 = 50;
/// The whole run's bound: past it schemathesis is killed and the test fails.
/// About 35 s alone on a busy 2-core box; `cargo test` runs other tests
/// next to it.
const FUZZ_DEADLINE: Duration = Duration::from_secs(240);

meridian_tests::needs_services! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn schemathesis_finds_no_server_error_and_no_nonconformance() {
        let st = schemathesis();
        let tmp = tempfile::tempdir().unwrap();
        let node = start_node(tmp.path()).await;
        let (base, token) = (node.base(), node.token());
        let examples: u64 = std::env::var("MERIDIAN_TEST_FUZZ_EXAMPLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(MAX_EXAMPLES);
        let deadline = FUZZ_DEADLINE * u32::try_from(examples.div_ceil(MAX_EXAMPLES)).unwrap();
        let ids = seed(base, token).await;
        let work = tmp.path().join("st");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(work.join("schemathesis.toml"), config(&ids)).unwrap();
        let mut cmd = tokio::process::Command::new(&st[0]);
        cmd.args(&st[1..])
            .arg("run")
            .arg(format!("{base}/api/v2/openapi.json"))
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_headers_conformance,response_schema_conformance",
            ])
            .args(["--max-examples", &examples.to_string()])
            // The stateful phase follows the document's response links with
            // real ids (bounded: `STATEFUL_MAX_STEPS` calls per scenario).
            .args(["--phases", "examples,coverage,fuzzing,stateful"])
            .args(["--workers", "2", "--request-timeout", "35"])
            .args(["--wait-for-schema", "30"])
            .current_dir(&work)
            .env("NO_COLOR", "1")
            .env("COLUMNS", "120")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let started = Instant::now();
        let out = tokio::time::timeout(deadline, cmd.output())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "schemathesis ran longer than {deadline:?}; node log (tail):\n{}",
                    node.log_tail(60)
                )
            })
            .expect("run schemathesis");
        let report = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "schemathesis found failures ({}):\n{report}\nnode log (tail):\n{}",
            out.status,
            node.log_tail(60)
        );
        // It really tested the operations (a run that tested nothing passes too),
        // and the stateful phase ran.
        assert!(
            report.contains("passed") && !report.contains("No operations"),
            "{report}"
        );
        // How many links it could follow depends on how many generated bodies
        // the API accepted; that the phase ran, with scenarios, does not.
        let scenarios: u32 = report
            .split("Scenarios:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no stateful phase in the report:\n{report}"));
        assert!(scenarios > 0, "no stateful scenario ran:\n{report}");
        eprintln!("schemathesis took {took:.0?}:\n{report}");
        drop(node);
    }
}
