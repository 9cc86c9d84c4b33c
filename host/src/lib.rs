//! Meridian: a timezone-aware job scheduler whose steps run as sandboxed
//! WebAssembly components.
//!
//! See ARCHITECTURE.md at the repository root for the bird's-eye view.

pub mod api;
pub mod audit;
pub mod auth;
pub mod builtin;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod engine;
pub mod grants;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod node;
pub mod queue;
pub mod runtime;
pub mod schedule;
pub mod scheduler;
pub mod secrets;
pub mod store;
pub mod web;

use config::Config;
use runtime::{Runtime, RuntimeOptions};

/// The runtime for a configuration, with no plugins loaded yet, under the
/// config's grants.
pub fn new_runtime(config: &Config) -> anyhow::Result<Runtime> {
    let runtime = Runtime::new(
        RuntimeOptions {
            cache_dir: config.cache_dir(),
            limits: config.sandbox.clone(),
            http: config.http.clone(),
            sql: config.sql.clone(),
        },
        config.secrets.clone(),
        config.grants.clone(),
    )?;
    runtime
        .replace_grants(grants::stored::from_config(&config.grant_specs))
        .map_err(|errors| anyhow::anyhow!("invalid grants: {errors:?}"))?;
    Ok(runtime)
}

/// The runtime for a configuration with its plugins: the built-in ones,
/// then the plugins directory (`plugins_dir`, or `<data_dir>/plugins`
/// where uploads go without one, when it exists).
pub async fn build_runtime(config: &Config) -> anyhow::Result<Runtime> {
    let mut runtime = new_runtime(config)?;
    runtime.load_builtin().await;
    let dir = config.upload_dir();
    if config.plugins_dir.is_some() || dir.is_dir() {
        runtime.load_dir(&dir).await?;
    }
    Ok(runtime)
}

/// The runtime of a command that has a store (`serve`, `run`): its
/// plugins, the config's grants plus the stored ones, and every capability
/// call recorded on the store's audit trail.
pub async fn build_node_runtime(
    config: &Config,
    store: &store::Store,
) -> anyhow::Result<(Runtime, audit::AuditLog)> {
    let mut runtime = build_runtime(config).await?;
    let audit = audit::AuditLog::start(store.clone());
    runtime.set_audit(audit.clone());
    grants::stored::apply(&runtime, &config.grant_specs, store).await?;
    Ok((runtime, audit))
}
