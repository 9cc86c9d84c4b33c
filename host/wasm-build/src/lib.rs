//! Compiles workspace crates to `wasm32-wasip2` components from a build
//! script, so that a plain `cargo build`, `cargo run` or `cargo test` builds
//! the built-in plugins and the test fixtures without a manual step.
//!
//! The nested cargo uses its own target directory (`target/wasm`), so it
//! never waits on the lock that the outer build holds, and it shares the
//! outer build's jobserver, so `-j` still bounds the whole build. When the
//! wasm target is missing it is added with rustup (the toolchain file names
//! it, but rustup's automatic installs may be off).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// One compiled component.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The cargo package name.
    pub package: String,
    /// Path of the `.wasm` component.
    pub path: PathBuf,
}

/// Builds the given workspace packages (cdylib crates) to components in
/// release mode and returns their paths. Panics with a readable message on
/// failure: this runs in build scripts, where a panic is the error report.
#[allow(clippy::expect_used, clippy::unwrap_used)]
pub fn build(workspace_root: &Path, packages: &[&str]) -> Vec<Artifact> {
    let target_dir = workspace_root.join("target").join("wasm");
    ensure_target();
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(&target_dir);
    for p in packages {
        cmd.args(["-p", p]);
    }
    // What the outer build set for the host must not leak into the guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    // Components ship without debug info: smaller to store, load and hash.
    cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo to build {packages:?} for {TARGET}: {e}"));
    assert!(
        status.success(),
        "building {packages:?} for {TARGET} failed (see the cargo output above)"
    );

    println!(
        "cargo:rerun-if-changed={}",
        workspace_root.join("wit").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        workspace_root.join("sdk").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        workspace_root.join("Cargo.lock").display()
    );
    packages
        .iter()
        .map(|p| {
            let file = format!("{}.wasm", p.replace('-', "_"));
            let path = target_dir.join(TARGET).join("release").join(file);
            assert!(path.exists(), "{} was not produced", path.display());
            Artifact {
                package: (*p).to_string(),
                path,
            }
        })
        .collect()
}

/// Marks a package directory as an input of the build script.
pub fn watch(dir: &Path) {
    println!("cargo:rerun-if-changed={}", dir.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        dir.join("Cargo.toml").display()
    );
}

#[allow(clippy::expect_used)]
fn ensure_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = sysroot
        .as_ref()
        .is_some_and(|s| s.join("lib").join("rustlib").join(TARGET).exists());
    if installed {
        return;
    }
    println!("cargo:warning=the {TARGET} target is missing; adding it with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ => panic!(
            "the {TARGET} target is not installed and `rustup target add {TARGET}` failed; \
             install it and build again"
        ),
    }
}
