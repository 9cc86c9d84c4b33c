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
pub mod model;
pub mod runtime;
pub mod secrets;

use config::Config;
use runtime::{Runtime, RuntimeOptions};

/// Builds the runtime for a configuration: the built-in plugins, then the
/// plugins directory.
pub async fn build_runtime(config: &Config) -> anyhow::Result<Runtime> {
    let mut runtime = Runtime::new(
        RuntimeOptions {
            cache_dir: config.cache_dir(),
            limits: config.sandbox.clone(),
            http: config.http.clone(),
        },
        config.secrets.clone(),
        config.grants.clone(),
    )?;
    runtime.load_builtin().await?;
    if let Some(dir) = &config.plugins_dir {
        runtime.load_dir(dir).await?;
    }
    Ok(runtime)
}
