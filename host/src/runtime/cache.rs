//! The on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes from milliseconds to seconds;
//! loading a compiled artefact is a memory map. Artefacts are keyed by the
//! component's sha256 digest and by a hash of everything about the engine
//! that affects compiled code (wasmtime's own compatibility hash), so a new
//! wasmtime version or a changed engine setting never loads a stale artefact.

use super::Digest;
use sha2::{Digest as _, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Compiled components under one directory.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

/// Feeds `Hash` output into sha256, for a key that is stable across runs
/// (std's `DefaultHasher` promises no such thing).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0
    }
}

impl CompileCache {
    /// A cache under `root/<engine key>/`.
    pub fn new(root: &Path, engine: &Engine) -> Self {
        let mut h = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let key = hex::encode(&h.0.finalize()[..12]);
        Self {
            dir: root.join(key),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The compiled component, from the cache or freshly compiled (and then
    /// stored). A cache that cannot be written only costs a recompilation
    /// next time; it never fails the load.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &Digest,
        bytes: &[u8],
    ) -> wasmtime::Result<Component> {
        let path = self.dir.join(format!("{}.cwasm", digest.hex()));
        if path.exists() {
            match deserialize(engine, &path) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unreadable compiled component")
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled component");
        }
        Ok(component)
    }

    fn store(&self, path: &Path, component: &Component) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let serialized = component.serialize()?;
        // Write then rename, so a reader never maps a half-written artefact.
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        std::io::Write::write_all(&mut tmp, &serialized)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path)?;
        Ok(())
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file was written by `Component::serialize` of an engine
    // with the same compatibility hash (it is part of the directory name),
    // under a data directory owned by this host, via write-then-rename;
    // wasmtime additionally checks the header and the engine settings.
    unsafe { Component::deserialize_file(engine, path) }
}
