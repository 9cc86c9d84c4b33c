//! Host resources a guest can grow, each bounded per step: resource
//! handles and wasi:http header sizes (a guest leaking `fields`), linear
//! memories per component, log lines (length and total, before anything
//! reaches a file), the output a step returns (however large), and the data
//! it passes to the host in one call. Each attack fails the step with a
//! clear failure kind, and the node carries on.
//!
//! The attacks on the node's memory and files run against a real `meridian
//! serve` child (its peak RSS from `/proc`, its log files after a clean
//! stop); the rest in the test's own runtime.

use crate::node::{Node, Token, meridian_node};
use crate::recovery::{assert_node_still_works, client, execute, finished};
use meridian::runtime::{PluginSource, StepRun};
use meridian_tests::{TestRuntime, fixtures};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// A `meridian serve` node with the `hog` and `trivial` plugins and this
/// `[sandbox]` section.
async fn hog_node(dir: &Path, name: &'static str, sandbox: &str) -> Node {
    let data = dir.join("data");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(fixtures::HOG, plugins.join("hog.wasm")).unwrap();
    std::fs::copy(fixtures::TRIVIAL, plugins.join("trivial.wasm")).unwrap();
    let config = dir.join("meridian.toml");
    std::fs::write(&config, format!("[sandbox]\n{sandbox}\n")).unwrap();
    let mut cmd = meridian_node(&data, &plugins);
    cmd.arg("--config").arg(&config);
    Node::start(name, cmd, dir, Token::FirstAdmin).await
}

/// Runs one `hog` step with this config on the node, in this zone; the
/// finished execution.
async fn run_hog(node: &Node, zone: &str, config: Value) -> Value {
    let http = client();
    let id = execute(
        &http,
        node,
        json!({ "id": "hog", "name": "hog", "timezone": zone,
                "steps": [{ "id": "hog", "type": "hog", "config": config }] }),
    )
    .await;
    finished(&http, node, &id).await
}

/// A `/proc/<pid>/status` figure in bytes (`VmHWM`: the peak resident set).
fn proc_status_bytes(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}

/// A failed run's failure as JSON (its `kind` and fields, as stored).
fn failure(run: &StepRun) -> Value {
    match &run.result {
        Ok(ok) => panic!("the step succeeded: {:?}", ok.output.to_string().get(..200)),
        Err(f) => serde_json::to_value(f).unwrap(),
    }
}

/// The attempt's stored error of a finished one-step execution.
fn attempt_error(done: &Value) -> &Value {
    &done["steps"][0]["attempts"][0]["error"]
}

/// A guest that creates wasi:http `fields` with large headers and never
/// drops them made the host hold every one (130 MiB to 3.2 GiB in 3 s):
/// now the step's resource table is full at `max_resources` and the step
/// fails as `resource_limit`, with the node's peak memory barely moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaking_wasi_http_fields_is_bounded_by_the_resource_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = hog_node(dir.path(), "fields", "").await;
    let pid = node.child_mut().id();
    assert_node_still_works(&node).await;
    let before = proc_status_bytes(pid, "VmHWM:");
    // 8,000 × 60 KB (each under the header size limit) would be 480 MB.
    let done = run_hog(
        &node,
        "UTC",
        json!({ "leak_fields": { "count": 8000, "value_bytes": 60_000 } }),
    )
    .await;
    let grown = proc_status_bytes(pid, "VmHWM:").saturating_sub(before);
    eprintln!(
        "the node's peak RSS: {} MiB before the leak, grown by {} MiB",
        before >> 20,
        grown >> 20
    );
    assert_eq!(done["status"], "failed", "{done:#}");
    let error = attempt_error(&done);
    assert_eq!(error["kind"], "resource_limit", "{done:#}");
    assert_eq!(error["limit"], 1000, "{done:#}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("step exceeded its limit of 1000 resources"),
        "{done:#}"
    );
    assert!(
        grown < 192 << 20,
        "the node's peak memory grew by {} MiB",
        grown >> 20
    );
    assert_node_still_works(&node).await;
    node.terminate(Duration::from_secs(30)).await;
}

/// Headers larger than `max_http_fields_bytes` are not held either:
/// wasi:http 0.2 has no error code for it, so the step stops, as
/// `resource_limit` naming the limit; under the limit the same step runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_headers_over_the_size_limit_stop_the_step() {
    let rt = TestRuntime::new(
        "[sandbox]\nmax_http_fields_bytes = 32768\n",
        &[fixtures::HOG, fixtures::TRIVIAL],
    )
    .await;
    let run = rt
        .run(
            "hog",
            json!({ "leak_fields": { "count": 5, "value_bytes": 40_000 } }),
        )
        .await;
    let failure = failure(&run);
    assert_eq!(failure["kind"], "resource_limit", "{failure}");
    assert_eq!(failure["limit"], 32768, "{failure}");
    assert!(
        failure["resource"]
            .as_str()
            .unwrap()
            .contains("wasi:http headers"),
        "{failure}"
    );
    let run = rt
        .run(
            "hog",
            json!({ "leak_fields": { "count": 5, "value_bytes": 20_000 } }),
        )
        .await;
    assert_eq!(
        run.result.unwrap().output,
        json!({ "leaked": 5, "refused_appends": 0 })
    );
    let run = rt.run("trivial", json!({})).await;
    assert_eq!(run.result.unwrap().output, json!({ "ok": true }));
}

/// The memory cap holds per linear memory, so a component with two would
/// get it twice. One core module may define only one (the pool's
/// per-module limit), but a component can hold two modules with one each:
/// refused at load, naming the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_with_two_memories_is_refused_at_load() {
    let rt = TestRuntime::new("", &[fixtures::TRIVIAL]).await;
    let load = |modules: u32| {
        let bytes = component_with_modules(modules);
        let runtime = &rt.runtime;
        async move {
            let name = format!("{modules}-memories.wasm");
            runtime
                .prepare(
                    &bytes,
                    PluginSource::File {
                        path: name.clone().into(),
                    },
                    &name,
                )
                .await
        }
    };
    let error = load(2).await.expect_err("two memories load").to_string();
    assert!(
        error.contains("2 Wasm linear memories")
            && error.contains("exceeds the configured maximum of 1"),
        "{error}"
    );
    // One memory passes that check (and fails later: it is no plugin).
    let error = load(1).await.expect_err("not a plugin").to_string();
    assert!(!error.contains("linear memories"), "{error}");
    let run = rt.run("trivial", json!({})).await;
    assert_eq!(run.result.unwrap().output, json!({ "ok": true }));
}

/// A component of `modules` core modules, each defining one linear memory
/// and instantiated once.
fn component_with_modules(modules: u32) -> Vec<u8> {
    use wasm_encoder::{
        Component, InstanceSection, MemorySection, MemoryType, Module, ModuleArg, ModuleSection,
    };
    let mut component = Component::new();
    let mut instances = InstanceSection::new();
    for index in 0..modules {
        let mut memory = MemorySection::new();
        memory.memory(MemoryType {
            minimum: 1,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        let mut module = Module::new();
        module.section(&memory);
        component.section(&ModuleSection(&module));
        instances.instantiate(index, Vec::<(&str, ModuleArg)>::new());
    }
    component.section(&instances);
    component.finish()
}

/// 100 lines of 1 MiB put 187 MiB on disk (execution file, zone file and
/// stderr), the cap checked only after each line was written: now each line
/// is cut to `max_log_line_bytes` and lines past `max_log_bytes` are only
/// counted, before anything reaches a file, and one line says how many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_are_capped_before_they_reach_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = hog_node(
        dir.path(),
        "logcap",
        "max_log_bytes = 262144\nmax_log_line_bytes = 16384",
    )
    .await;
    let done = run_hog(
        &node,
        "Europe/Berlin",
        json!({ "log_lines": { "count": 100, "bytes": 1_048_576 } }),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_node_still_works(&node).await;
    node.terminate(Duration::from_secs(30)).await;

    let logs = dir.path().join("data").join("logs");
    let execution = std::fs::read_to_string(
        logs.join("executions")
            .join(format!("{}.log", done["id"].as_str().unwrap())),
    )
    .unwrap();
    assert!(
        execution.len() < 1 << 20,
        "the execution's file holds {} bytes",
        execution.len()
    );
    assert!(
        execution.contains("… (cut: 1048576 bytes in all)"),
        "no cut line in the execution's file"
    );
    assert!(
        execution.contains("log lines (")
            && execution.contains("dropped: the step's lines reached the cap of 262144 bytes"),
        "no line says how many were dropped"
    );
    let on_disk = dir_bytes(&logs);
    assert!(on_disk < 2 << 20, "{} bytes under logs/", on_disk);
    let stderr = node.stderr().len();
    assert!(stderr < 1 << 20, "{stderr} bytes on the node's stderr");
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// Under `serve` the attempt runs on the step runtime: its live lines went
/// to `system/` (the task lost the execution's span). They belong to the
/// execution's file and the zone's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_step_lines_under_serve_go_to_the_execution_and_zone_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = hog_node(dir.path(), "routing", "").await;
    let line = "l".repeat(37);
    let done = run_hog(
        &node,
        "Asia/Kolkata",
        json!({ "log_lines": { "count": 3, "bytes": 37 } }),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    node.terminate(Duration::from_secs(30)).await;

    let logs = dir.path().join("data").join("logs");
    let step_lines = |text: &str| {
        text.lines()
            .filter(|l| l.contains("\"target\":\"meridian::step\"") && l.contains(&line))
            .count()
    };
    let execution = std::fs::read_to_string(
        logs.join("executions")
            .join(format!("{}.log", done["id"].as_str().unwrap())),
    )
    .unwrap();
    assert_eq!(step_lines(&execution), 3, "{execution}");
    let zone: String = files_in(&logs.join("timezones").join("Asia_Kolkata"));
    assert_eq!(step_lines(&zone), 3, "{zone}");
    let system: String = files_in(&logs.join("system"));
    assert_eq!(step_lines(&system), 0, "step lines in system/: {system}");
}

/// The text of every file in `dir` (none when it does not exist).
fn files_in(dir: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return String::new();
    };
    entries
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect()
}

/// A 200 MB output failed as `crashed` (wasmtime's default host-call fuel
/// ran out reading it) or `memory_limit`: any output over the cap is
/// `output_too_large`, with its size when the host could read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_output_over_the_cap_is_output_too_large() {
    let rt = TestRuntime::new(
        "[sandbox]\nmemory_mb = 1024\nmax_output_bytes = 1048576\n",
        &[fixtures::HOG, fixtures::TRIVIAL],
    )
    .await;
    let run = rt.run("hog", json!({ "output_bytes": 200_000_000 })).await;
    let huge = failure(&run);
    assert_eq!(
        (&huge["kind"], &huge["bytes"], &huge["limit_bytes"]),
        (&json!("output_too_large"), &Value::Null, &json!(1_048_576)),
        "{huge}"
    );
    let message = run.result.as_ref().unwrap_err().to_string();
    assert!(message.contains("too large to read"), "{message}");
    let run = rt.run("hog", json!({ "output_bytes": 4_000_000 })).await;
    let large = failure(&run);
    assert_eq!(
        (&large["kind"], &large["bytes"], &large["limit_bytes"]),
        (
            &json!("output_too_large"),
            &json!(4_000_002),
            &json!(1_048_576)
        ),
        "{large}"
    );
    let run = rt.run("trivial", json!({})).await;
    assert_eq!(run.result.unwrap().output, json!({ "ok": true }));
}

/// Data a step passes to the host in one call is bounded too (wasmtime's
/// default let one call make the host allocate 128 MiB), and going over it
/// is told apart from a large output: `resource_limit`, naming the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_call_over_the_data_limit_is_a_resource_limit() {
    let rt = TestRuntime::new("", &[fixtures::HOG, fixtures::TRIVIAL]).await;
    let run = rt.run("hog", json!({ "host_call_bytes": 32 << 20 })).await;
    // The largest request body (16 MiB by default) plus 1 MiB.
    let limit = (16u64 << 20) + (1 << 20);
    let failure = failure(&run);
    assert_eq!(failure["kind"], "resource_limit", "{failure}");
    assert_eq!(
        failure["resource"], "bytes passed to the host in one call",
        "{failure}"
    );
    assert_eq!(failure["limit"], limit, "{failure}");
    let run = rt.run("hog", json!({ "host_call_bytes": 1 << 20 })).await;
    assert!(run.result.is_ok(), "{:?}", run.result);
    let run = rt.run("trivial", json!({})).await;
    assert_eq!(run.result.unwrap().output, json!({ "ok": true }));
}
