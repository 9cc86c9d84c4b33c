//! The shipped examples stay true: the sample config loads and every
//! example job validates against the plugins it names.

use meridian::config::{Config, Overrides};
use meridian::model;
use meridian_tests::fixtures;
use std::path::PathBuf;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_config_loads_and_example_jobs_validate() {
    let data = tempfile::tempdir().unwrap();
    let config = Config::load(
        Some(&examples().join("meridian.toml")),
        Overrides {
            data_dir: Some(data.path().to_path_buf()),
            ..Overrides::default()
        },
    )
    .expect("examples/meridian.toml loads");
    let mut runtime = meridian::node::build_runtime(&config).await.unwrap();
    // The greeter example is built by the tests' build script; a user copies
    // it into examples/plugins/ as its README says.
    runtime
        .load_file(std::path::Path::new(fixtures::GREETER))
        .await
        .unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(examples().join("jobs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let job = model::parse_job(&text).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let issues = meridian::engine::validate_job(&job, &runtime).await;
        assert!(issues.is_empty(), "{}: {issues:?}", path.display());
        seen += 1;
    }
    assert!(seen >= 2, "expected the example jobs, found {seen}");
}
