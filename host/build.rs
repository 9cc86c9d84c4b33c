//! Builds the built-in plugins (the workspace's plugins/ crates) to wasm
//! components and embeds them: `cargo build` of the host is all it takes.

use std::path::{Path, PathBuf};

/// The built-in plugins: cargo package and the directory it lives in.
const BUILTIN: &[(&str, &str)] = &[
    ("meridian-plugin-http", "plugins/http"),
    ("meridian-plugin-azure-devops", "plugins/azure-devops"),
    ("meridian-plugin-powershell", "plugins/powershell"),
    ("meridian-plugin-sql", "plugins/sql"),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    for (_, dir) in BUILTIN {
        meridian_wasm_build::watch(&root.join(dir));
    }
    // `sqlx::migrate!` embeds host/migrations/ at compile time; a new file
    // there must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    // The store tests' PostgreSQL halves run where a server is promised
    // (CI=true, or MERIDIAN_TEST_PG_URL set); elsewhere they are reported
    // ignored with the reason (see src/store/testing.rs).
    println!("cargo::rustc-check-cfg=cfg(meridian_test_pg)");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=MERIDIAN_TEST_PG_URL");
    if std::env::var("CI").as_deref() == Ok("true")
        || std::env::var_os("MERIDIAN_TEST_PG_URL").is_some()
    {
        println!("cargo:rustc-cfg=meridian_test_pg");
    }
    let packages: Vec<&str> = BUILTIN.iter().map(|(p, _)| *p).collect();
    let artifacts = meridian_wasm_build::build(&root, &packages);
    let mut list = String::from("&[\n");
    for a in artifacts {
        let file = a
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dest = out.join(&file);
        if let Err(e) = std::fs::copy(&a.path, &dest) {
            panic!("copying {} to {}: {e}", a.path.display(), dest.display());
        }
        list.push_str(&format!(
            "    ({file:?}, include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{file}\")).as_slice()),\n"
        ));
    }
    list.push(']');
    if let Err(e) = std::fs::write(out.join("builtin_plugins.rs"), list) {
        panic!("writing builtin_plugins.rs: {e}");
    }
}
