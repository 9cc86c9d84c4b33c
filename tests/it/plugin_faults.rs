//! A component in the plugins directory that cannot be loaded takes out
//! its own steps only. Before, one bad file stopped the node: `serve`
//! refused to start (and `run` to run any job) when a component was
//! garbage, spoke another version of the step contract, or needed more
//! memory at start than `sandbox.memory_mb` allows (with wasmtime's text
//! about the pooling allocator). Now the node serves and runs the other
//! step types, and health, the plugins API, `doctor` and the failed step
//! all say which file and why, naming the setting to change.

use super::node::{Node, Token, meridian_node};
use super::recovery::{assert_node_still_works, client, finished};
use meridian_tests::fixtures;
use serde_json::{Value, json};
use std::path::Path;

/// A component that exports the step interface of a contract version this
/// host does not speak: what a plugin built with a newer SDK looks like.
fn component_of_another_version() -> Vec<u8> {
    use wasm_encoder::{
        Component, ComponentExportKind, ComponentExportSection, ComponentInstanceSection,
    };
    let mut component = Component::new();
    let mut instances = ComponentInstanceSection::new();
    instances.export_items(Vec::<(&str, ComponentExportKind, u32)>::new());
    component.section(&instances);
    let mut exports = ComponentExportSection::new();
    exports.export(
        "meridian:step/step@0.2.0",
        ComponentExportKind::Instance,
        0,
        None,
    );
    component.section(&exports);
    component.finish()
}

/// A component whose one linear memory starts at `pages` of 64 KiB.
fn component_needing_memory(pages: u64) -> Vec<u8> {
    use wasm_encoder::{
        Component, InstanceSection, MemorySection, MemoryType, Module, ModuleArg, ModuleSection,
    };
    let mut memory = MemorySection::new();
    memory.memory(MemoryType {
        minimum: pages,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut module = Module::new();
    module.section(&memory);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    let mut instances = InstanceSection::new();
    instances.instantiate(0, Vec::<(&str, ModuleArg)>::new());
    component.section(&instances);
    component.finish()
}

async fn get(http: &reqwest::Client, node: &Node, path: &str, token: bool) -> (u16, Value) {
    let mut req = http.get(node.url(path));
    if token {
        req = req.bearer_auth(node.token());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

fn start_cmd(dir: &Path) -> std::process::Command {
    let mut cmd = meridian_node(&dir.join("data"), &dir.join("plugins"));
    cmd.arg("--config").arg(dir.join("meridian.toml"));
    cmd
}

/// A node whose plugins directory holds a good plugin beside three that
/// cannot load — one of them the plugin a stored job and its schedule use —
/// starts, serves, runs the good plugin's steps, and reports each bad file
/// with its reason everywhere an operator looks; the stored job's step
/// fails with that reason instead of the node refusing to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_unloadable_components_serves_the_rest_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(fixtures::TRIVIAL, plugins.join("trivial.wasm")).unwrap();
    std::fs::copy(fixtures::HOG, plugins.join("hog.wasm")).unwrap();
    std::fs::write(
        dir.path().join("meridian.toml"),
        "[sandbox]\nmemory_mb = 64\n",
    )
    .unwrap();
    let http = client();

    // While `hog` loads, a job of it is stored and scheduled (disabled, so
    // it runs only when triggered).
    let mut first = Node::start(
        "first",
        start_cmd(dir.path()),
        dir.path(),
        Token::FirstAdmin,
    )
    .await;
    let token = first.token().to_owned();
    let job = json!({ "id": "hog-job", "name": "hog job", "timezone": "UTC",
                      "steps": [{ "id": "h", "type": "hog", "config": {} }] });
    let resp = http
        .post(first.url("/api/v2/jobs"))
        .bearer_auth(&token)
        .json(&job)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let resp = http
        .post(first.url("/api/v2/schedules"))
        .bearer_auth(&token)
        .json(
            &json!({ "id": "hog-nightly", "job_id": "hog-job", "cron": "0 3 * * *",
                       "timezone": "UTC", "enabled": false }),
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    first.terminate(std::time::Duration::from_secs(30)).await;

    // Then `hog.wasm` is overwritten with garbage, and two more bad files
    // arrive: one built for another contract version, one needing 128 MiB
    // of memory at start under a 64 MiB cap.
    std::fs::write(plugins.join("hog.wasm"), b"this is not webassembly").unwrap();
    std::fs::write(plugins.join("future.wasm"), component_of_another_version()).unwrap();
    std::fs::write(plugins.join("hungry.wasm"), component_needing_memory(2048)).unwrap();
    let node = Node::start(
        "second",
        start_cmd(dir.path()),
        dir.path(),
        Token::Given(&token),
    )
    .await;

    // The good plugin's steps run.
    assert_node_still_works(&node).await;

    // Health: degraded, still 200, so a load balancer keeps the node.
    let (status, health) = get(&http, &node, "/api/v2/health", false).await;
    assert_eq!(status, 200, "{health:#}");
    assert_eq!(health["status"], "degraded", "{health:#}");
    let (_, health) = get(&http, &node, "/api/v2/health", true).await;
    let checks = health["checks"].as_array().unwrap();
    for file in ["hog.wasm", "future.wasm", "hungry.wasm"] {
        let item = checks
            .iter()
            .find(|c| c["name"] == format!("plugin-file:{file}"))
            .unwrap_or_else(|| panic!("no health item for {file}: {health:#}"));
        assert_eq!(item["status"], "fail", "{item}");
    }

    // The plugins API says which file, why, and what to change.
    let (status, list) = get(&http, &node, "/api/v2/plugins", true).await;
    assert_eq!(status, 200, "{list:#}");
    let names: Vec<&str> = list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&"trivial") && !names.contains(&"hog"),
        "{names:?}"
    );
    let unloadable = list["unloadable"].as_array().unwrap();
    let entry = |file: &str| {
        unloadable
            .iter()
            .find(|u| u["file"] == file)
            .unwrap_or_else(|| panic!("{file} not reported: {list:#}"))
            .clone()
    };
    let garbage = entry("hog.wasm");
    assert_eq!(garbage["step_type"], "hog");
    assert_eq!(
        garbage["reason"], "not a WebAssembly component",
        "{garbage}"
    );
    let future = entry("future.wasm");
    assert_eq!(
        future["reason"],
        "built for meridian:step@0.2.0; this host speaks @0.1.0: rebuild it with the matching meridian-sdk",
        "{future}"
    );
    let hungry = entry("hungry.wasm");
    assert_eq!(hungry["setting"], "sandbox.memory_mb", "{hungry}");
    let reason = hungry["reason"].as_str().unwrap();
    assert!(
        reason.contains("raise sandbox.memory_mb") && reason.contains("64 MiB"),
        "{reason}"
    );
    assert!(
        !reason.contains("pooling"),
        "wasmtime's words reach the operator: {reason}"
    );

    // A new job of the broken type is refused with the reason, at its path…
    let resp = http
        .post(node.url("/api/v2/jobs/validate"))
        .bearer_auth(&token)
        .json(&job)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    let issue = body["errors"]
        .as_array()
        .and_then(|v| v.iter().find(|e| e["path"] == "steps[0].type"))
        .unwrap_or_else(|| panic!("no steps[0].type issue: {body:#}"))
        .clone();
    assert!(
        issue["message"]
            .as_str()
            .unwrap()
            .contains("could not be loaded (hog.wasm: not a WebAssembly component)"),
        "{issue}"
    );

    // … and the stored one, triggered, fails with it: the node stays up.
    let resp = http
        .post(node.url("/api/v2/schedules/hog-nightly/trigger"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{body:#}");
    let id = body["execution_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no execution_id: {body:#}"))
        .to_owned();
    let failed = finished(&http, &node, &id).await;
    assert_eq!(failed["status"], "failed", "{failed:#}");
    assert!(
        failed.to_string().contains(
            "step type \\\"hog\\\" is not loaded: its plugin could not be loaded \
             (hog.wasm: not a WebAssembly component)"
        ),
        "{failed:#}"
    );

    // `doctor` fails on the same files, naming them.
    let out = meridian_node(&dir.path().join("data"), &plugins)
        .arg("--config")
        .arg(dir.path().join("meridian.toml"))
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "doctor passed:\n{text}");
    for file in ["hog.wasm", "future.wasm", "hungry.wasm"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("fail") && l.contains(&format!("plugin-file:{file}"))),
            "{file} not failed by doctor:\n{text}"
        );
    }
    assert!(text.contains("(setting: sandbox.memory_mb)"), "{text}");
}

/// The built-in plugins too: under a memory cap below their floor none of
/// them loads, and the node's runtime still builds (it used to fail), each
/// reported under the step type it provides (`azure-devops`, not its
/// crate's file name) with the setting to raise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_plugins_that_cannot_load_are_reported_by_step_type() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("meridian.toml");
    std::fs::write(&file, "[sandbox]\nmemory_mb = 1\n").unwrap();
    let config = meridian::config::Config::load(
        Some(&file),
        meridian::config::Overrides {
            data_dir: Some(dir.path().join("data")),
            ..Default::default()
        },
    )
    .unwrap();
    let runtime = meridian::node::build_runtime(&config).await.unwrap();
    assert!(runtime.plugins().is_empty());
    let mut types: Vec<String> = runtime
        .unloadable()
        .iter()
        .map(|u| {
            assert_eq!(u.setting, Some("sandbox.memory_mb"), "{u:?}");
            assert!(
                u.reason.contains("(1 MiB): raise sandbox.memory_mb"),
                "{u:?}"
            );
            u.step_type.clone()
        })
        .collect();
    types.sort();
    assert_eq!(types, ["azure-devops", "http", "powershell", "sql"]);
    let why = runtime.unloadable_step_type("http").unwrap();
    assert_eq!(why.file, "meridian_plugin_http.wasm");
}
