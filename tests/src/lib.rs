//! Shared helpers of the workspace integration tests: the paths of the
//! compiled guest fixtures, a runtime builder, and a real HTTP server on
//! loopback to point steps at.

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Paths of the compiled wasm fixtures (built by build.rs).
pub mod fixtures {
    include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));
}

pub mod services;

/// Declares a test that needs the services `.ci/run` starts (database
/// servers, a private PostgreSQL, tmpfs volumes, libfaketime, Chromium,
/// schemathesis): it runs under `CI=true` or `MERIDIAN_TEST_SERVICES=1`
/// (build.rs sets `cfg(meridian_services)`) and is reported ignored, with
/// the reason, elsewhere — never passed without running. Inside it, a
/// missing service fails the test ([`services`]).
///
/// ```ignore
/// meridian_tests::needs_services! {
///     #[tokio::test]
///     async fn rides_out_an_outage() { /* services::PrivatePostgres::start() ... */ }
/// }
/// ```
#[macro_export]
macro_rules! needs_services {
    ($(#[$meta:meta])* $vis:vis async fn $name:ident() $body:block) => {
        $(#[$meta])*
        #[cfg_attr(
            not(meridian_services),
            ignore = "needs the services .ci/run starts: run its services block as root, then set MERIDIAN_TEST_SERVICES=1 (CI=true sets it)"
        )]
        $vis async fn $name() $body
    };
}

use axum::Json;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use meridian::config::{Config, Overrides};
use meridian::runtime::{Invocation, LoadedPlugin, Runtime, RuntimeOptions};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A runtime built from a config file's text (grants, secrets, sandbox
/// limits), with the built-in plugins and the given fixture files loaded.
pub struct TestRuntime {
    pub runtime: Arc<Runtime>,
    pub data_dir: tempfile::TempDir,
}

impl TestRuntime {
    pub async fn new(config_toml: &str, fixtures: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let config = test_config(data_dir.path(), config_toml);
        Self {
            runtime: Arc::new(test_runtime(&config, fixtures).await),
            data_dir,
        }
    }

    pub fn plugin(&self, name: &str) -> Arc<LoadedPlugin> {
        self.runtime
            .plugin(name)
            .unwrap_or_else(|| panic!("plugin {name} is not loaded"))
    }

    /// Runs one step of the named plugin with this config.
    pub async fn run(&self, plugin: &str, config: Value) -> meridian::runtime::StepRun {
        self.runtime
            .execute(&self.plugin(plugin), invocation(config))
            .await
    }
}

/// The bearer token of the admin every [`TestNode`] has.
pub const ADMIN_TOKEN: &str = "mrd_test-admin";

/// A node started as `meridian serve` starts one ([`meridian::node::Node`]:
/// config, SQLite store in a temp data dir, runtime with the built-in
/// plugins under the config's and the stored grants, every capability call
/// on the store's audit trail, engine, queues, scheduler and cluster loop),
/// with the given fixtures installed beside the built-in plugins and an
/// admin token ([`ADMIN_TOKEN`]), stored as `meridian token create` stores
/// one: by its hash (so no first admin token is made). Its API is driven
/// in-process through [`TestNode::state`]; nothing listens.
pub struct TestNode {
    pub state: Arc<meridian::api::AppState>,
    pub data_dir: tempfile::TempDir,
    node: meridian::node::Node,
}

impl TestNode {
    pub async fn start(config_toml: &str, fixtures: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let config = test_config(data_dir.path(), config_toml);
        // Compiled components are shared by all tests (see
        // shared_cache_dir); elsewhere each node compiles its own.
        #[cfg(unix)]
        {
            let cache = config.cache_dir();
            std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
            std::fs::create_dir_all(shared_cache_dir()).unwrap();
            std::os::unix::fs::symlink(shared_cache_dir(), &cache).unwrap();
        }
        let store = meridian::store::Store::open_sqlite(&config.store_path())
            .await
            .unwrap();
        let admin = meridian::store::TokenRow {
            id: "test-admin".into(),
            name: "test-admin".into(),
            role: "admin".into(),
            hash: meridian::auth::hash(ADMIN_TOKEN),
            created_at_us: 0,
            created_by: "test".into(),
            last_used_at_us: None,
            revoked_at_us: None,
        };
        let created = meridian::audit::AuditEntry {
            kind: "token".into(),
            decision: "created".into(),
            ..Default::default()
        };
        store.insert_token(&admin, &created).await.unwrap();
        store.close().await;
        let node = meridian::node::Node::start(config, None).await.unwrap();
        let runtime = &node.state().runtime;
        assert!(
            runtime.unloadable().is_empty(),
            "{:?}",
            runtime.unloadable()
        );
        for f in fixtures {
            let plugin = runtime.prepare_file(std::path::Path::new(f)).await.unwrap();
            runtime.install(plugin).unwrap();
        }
        Self {
            state: Arc::clone(node.state()),
            data_dir,
            node,
        }
    }

    /// The node's config.
    pub fn config(&self) -> &Config {
        self.node.config()
    }
}

/// The config from this TOML text, with its data dir at `dir`.
fn test_config(dir: &std::path::Path, config_toml: &str) -> Config {
    let cfg_path = dir.join("meridian.toml");
    std::fs::write(&cfg_path, config_toml).unwrap();
    Config::load(
        Some(&cfg_path),
        Overrides {
            data_dir: Some(dir.to_path_buf()),
            ..Overrides::default()
        },
    )
    .unwrap()
}

/// The runtime of a config (the compile cache shared by all tests) with the
/// built-in plugins and these fixtures loaded.
async fn test_runtime(config: &Config, fixtures: &[&str]) -> Runtime {
    let mut runtime = Runtime::new(
        RuntimeOptions {
            cache_dir: shared_cache_dir(),
            limits: config.sandbox.clone(),
            http: config.http.clone(),
            sql: config.sql.clone(),
        },
        config.secrets.clone(),
        config.grants.clone(),
    )
    .unwrap();
    runtime.load_builtin().await;
    assert!(
        runtime.unloadable().is_empty(),
        "{:?}",
        runtime.unloadable()
    );
    for f in fixtures {
        runtime.load_file(std::path::Path::new(f)).await.unwrap();
    }
    runtime
}

/// Compiled components are cached across tests (and test runs) in one
/// directory under the target dir, as the host caches them under its data
/// directory.
pub fn shared_cache_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("test-component-cache")
}

/// An invocation of a step with this config and nothing else.
pub fn invocation(config: Value) -> Invocation {
    Invocation {
        job_id: "test-job".into(),
        execution_id: "test-execution".into(),
        step_id: "step".into(),
        attempt: 1,
        timezone: "Europe/Berlin".into(),
        scheduled_time: None,
        config,
        variables: json!({}),
        timeout: None,
        scope: None,
    }
}

/// A real HTTP server on 127.0.0.1 with a few routes for steps to call:
/// `/json` (a JSON document), `/status/{code}`, `/echo` (the request as
/// JSON), `/redirect?to=PATH&status=N`, `/slow?ms=N`, `/auth` (401 unless bearer `letmein` or basic
/// `ops:letmein`).
pub struct TestServer {
    pub addr: SocketAddr,
    _task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start() -> Self {
        let app = axum::Router::new()
            .route(
                "/json",
                get(|| async {
                    Json(json!({ "status": { "indicator": "none", "code": 7 }, "items": [{"id": 41}, {"id": 42}] }))
                }),
            )
            .route(
                "/status/{code}",
                any(|Path(code): Path<u16>| async move {
                    (StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST), format!("status {code}"))
                }),
            )
            .route(
                "/echo",
                any(|method: Method, headers: HeaderMap, body: String| async move {
                    let headers: HashMap<String, String> = headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect();
                    Json(json!({ "method": method.as_str(), "headers": headers, "body": body }))
                }),
            )
            .route(
                "/redirect",
                any(|Query(q): Query<HashMap<String, String>>| async move {
                    let status = q.get("status").and_then(|s| s.parse().ok()).unwrap_or(302);
                    let to = q.get("to").cloned().unwrap_or_else(|| "/json".into());
                    (
                        StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND),
                        [("location", to)],
                        "moved",
                    )
                }),
            )
            .route(
                "/slow",
                get(|Query(q): Query<HashMap<String, u64>>| async move {
                    tokio::time::sleep(Duration::from_millis(q.get("ms").copied().unwrap_or(1000))).await;
                    "slow"
                }),
            )
            .route(
                "/auth",
                get(|headers: HeaderMap| async move {
                    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
                    // "ops:letmein" in base64.
                    if auth == "Bearer letmein" || auth == "Basic b3BzOmxldG1laW4=" {
                        (StatusCode::OK, Json(json!({"authorized": true}))).into_response()
                    } else {
                        (StatusCode::UNAUTHORIZED, "no").into_response()
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, _task: task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A grant for `plugin` to reach this server (a loopback address, so it
    /// needs `allow_private`).
    pub fn grant(&self, plugin: &str, methods: &[&str], path_prefix: &str) -> String {
        format!(
            "[[grants]]\nplugin = {plugin:?}\nsecrets = [\"api_token\", \"basic_pw\"]\n[[grants.http]]\nscheme = [\"http\"]\nhost = \"127.0.0.1\"\nport = [{}]\nmethods = {methods:?}\npath_prefix = {path_prefix:?}\nallow_private = true\n",
            self.addr.port()
        )
    }
}

/// Memory measurement for the benchmarks: a global allocator that counts
/// the live bytes, and the process's resident set.
pub mod memory {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    /// Bytes currently allocated through [`Counting`].
    static LIVE: AtomicUsize = AtomicUsize::new(0);

    /// `System`, counting the bytes handed out and given back. A bench
    /// installs it with `#[global_allocator]`.
    #[derive(Debug)]
    pub struct Counting;

    // SAFETY: every method forwards its arguments unchanged to `System`,
    // which upholds the `GlobalAlloc` contract; the counter has no effect on
    // memory. `realloc` and `alloc_zeroed` keep their default bodies, which
    // go through `alloc` and `dealloc` here and so are counted too.
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
            let ptr = unsafe { System.alloc(layout) };
            if !ptr.is_null() {
                LIVE.fetch_add(layout.size(), Relaxed);
            }
            ptr
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            LIVE.fetch_sub(layout.size(), Relaxed);
            // SAFETY: `ptr` came from `alloc` above with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    /// Bytes currently allocated (when [`Counting`] is the global allocator).
    pub fn live_bytes() -> usize {
        LIVE.load(Relaxed)
    }

    /// The resident set size in bytes, where `/proc` tells it.
    pub fn resident_bytes() -> Option<usize> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
        Some(pages * 4096)
    }
}
