//! Meridian: a timezone-aware job scheduler whose steps run as sandboxed
//! WebAssembly components.
//!
//! See ARCHITECTURE.md at the repository root for the bird's-eye view.

pub mod api;
pub mod builtin;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod engine;
pub mod grants;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod queue;
pub mod runtime;
pub mod schedule;
pub mod scheduler;
pub mod secrets;
pub mod store;

use config::Config;
use runtime::{Runtime, RuntimeOptions};

/// The runtime for a configuration, with no plugins loaded yet.
pub fn new_runtime(config: &Config) -> anyhow::Result<Runtime> {
    Runtime::new(
        RuntimeOptions {
            cache_dir: config.cache_dir(),
            limits: config.sandbox.clone(),
            http: config.http.clone(),
        },
        config.secrets.clone(),
        config.grants.clone(),
    )
}

/// The runtime for a configuration with its plugins: the built-in ones,
/// then the plugins directory.
pub async fn build_runtime(config: &Config) -> anyhow::Result<Runtime> {
    let mut runtime = new_runtime(config)?;
    runtime.load_builtin().await?;
    if let Some(dir) = &config.plugins_dir {
        runtime.load_dir(dir).await?;
    }
    Ok(runtime)
}
