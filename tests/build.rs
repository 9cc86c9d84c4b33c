//! Builds the guest fixtures and the example plugin to wasm components and
//! exposes their paths as constants (see `src/lib.rs`).

use std::path::{Path, PathBuf};

/// Constant name, cargo package, directory.
const GUESTS: &[(&str, &str, &str)] = &[
    ("TRIVIAL", "fixture-trivial", "tests/fixtures/trivial"),
    ("SPIN", "fixture-spin", "tests/fixtures/spin"),
    ("MEMBOMB", "fixture-membomb", "tests/fixtures/membomb"),
    ("TRAP", "fixture-trap", "tests/fixtures/trap"),
    ("PANIC", "fixture-panic", "tests/fixtures/panic"),
    ("SNEAKY", "fixture-sneaky", "tests/fixtures/sneaky"),
    ("PROBE", "fixture-probe", "tests/fixtures/probe"),
    (
        "UNASKED_PROCESS",
        "fixture-unasked-process",
        "tests/fixtures/unasked-process",
    ),
    ("SCRIPT", "fixture-script", "tests/fixtures/script"),
    ("WASI_HTTP", "fixture-wasi-http", "tests/fixtures/wasi-http"),
    ("LEAKY", "fixture-leaky", "tests/fixtures/leaky"),
    ("HOG", "fixture-hog", "tests/fixtures/hog"),
    ("GREETER", "greeter-step", "examples/greeter-step"),
];

fn main() {
    // The tests that need the services `.ci/run` starts (database servers,
    // a private PostgreSQL, tmpfs volumes, Chromium, schemathesis) run where
    // they are promised: CI=true, or MERIDIAN_TEST_SERVICES=1 after running
    // the services block of .ci/run. Elsewhere they are reported ignored,
    // with the reason (`meridian_tests::needs_services!`), never passed.
    println!("cargo::rustc-check-cfg=cfg(meridian_services)");
    println!("cargo::rustc-check-cfg=cfg(meridian_real_mssql)");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=MERIDIAN_TEST_SERVICES");
    println!("cargo:rerun-if-env-changed=MSSQL_URL");
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    if std::env::var("CI").as_deref() == Ok("true")
        || std::env::var("MERIDIAN_TEST_SERVICES").is_ok_and(|v| v == "1" || v == "true")
    {
        println!("cargo:rustc-cfg=meridian_services");
    }
    // A real SQL Server (not the iridium-server emulator): the tests of
    // what the emulator cannot do run against it.
    if set("MSSQL_URL") {
        println!("cargo:rustc-cfg=meridian_real_mssql");
    }
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
    for (_, _, dir) in GUESTS {
        meridian_wasm_build::watch(&root.join(dir));
    }
    let packages: Vec<&str> = GUESTS.iter().map(|(_, p, _)| *p).collect();
    let artifacts = meridian_wasm_build::build(&root, &packages);
    let mut consts = String::new();
    for ((name, _, _), a) in GUESTS.iter().zip(artifacts) {
        consts.push_str(&format!(
            "/// The `{}` component.\npub const {name}: &str = {:?};\n",
            a.package,
            a.path.display().to_string()
        ));
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    if let Err(e) = std::fs::write(out.join("fixtures.rs"), consts) {
        panic!("writing fixtures.rs: {e}");
    }
}
