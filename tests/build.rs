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
