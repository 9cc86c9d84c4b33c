//! `meridian plugins`: list, inspect, and the capabilities a plugin asks and is granted.

use crate::config::Config;
use crate::runtime::PluginSource;
use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(super) enum PluginsCommand {
    /// List the loaded step types.
    List {
        #[arg(long)]
        json: bool,
    },
    /// What a plugin asks for, what it is granted and what it used (from
    /// the audit trail).
    Capabilities {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Show a component's name, version, digest, imports, exports,
    /// capabilities asked for and config schema.
    Inspect {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub(super) async fn plugin_capabilities(
    config: Config,
    name: String,
    json: bool,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let store = crate::node::open_store(&config).await?;
    let runtime = crate::node::build_runtime(&config).await?;
    runtime.apply_grants(&config.grant_specs, &store).await?;
    let Some(view) = crate::runtime::view::capabilities(&runtime, &store, &name).await? else {
        writeln!(err, "no plugin {name:?} is loaded")?;
        return Ok(ExitCode::from(2));
    };
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
    } else {
        write!(out, "{}", crate::runtime::view::capabilities_text(&view))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn list_plugins(
    config: Config,
    json: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let runtime = crate::node::build_runtime(&config).await?;
    let unloadable = runtime.unloadable();
    if json {
        let plugins = runtime.plugins();
        let all: Vec<_> = plugins.iter().map(|p| &p.info).collect();
        let body = serde_json::json!({ "plugins": all, "unloadable": unloadable });
        writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
    } else {
        for p in runtime.plugins() {
            let source = match &p.info.source {
                PluginSource::BuiltIn => "built-in".to_string(),
                PluginSource::File { path } => path.display().to_string(),
            };
            writeln!(
                out,
                "{:<16} {:<10} {}  {}",
                p.info.name, p.info.version, p.info.digest, source
            )?;
        }
        for u in &unloadable {
            writeln!(out, "could not be loaded: {}", u.describe())?;
        }
    }
    // A component that could not be loaded is a failure to fix, as in
    // `doctor`; the list above is still complete.
    Ok(if unloadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(super) async fn inspect(
    config: Config,
    file: PathBuf,
    json: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    // Inspecting needs no plugins loaded: only the engine and the linker.
    let runtime = crate::node::new_runtime(&config)?;
    let plugin = runtime.prepare_file(&file).await?;
    let info = &plugin.info;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(info)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "file:         {}", file.display())?;
    writeln!(out, "name:         {}", info.name)?;
    writeln!(out, "version:      {}", info.version)?;
    writeln!(out, "digest:       {}", info.digest)?;
    writeln!(out, "size:         {} bytes", info.size_bytes)?;
    writeln!(out, "description:  {}", info.description)?;
    writeln!(out, "capabilities asked for:")?;
    if info.capabilities.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for c in &info.capabilities {
        writeln!(out, "  {:<8} {:<32} {}", c.kind, c.target, c.reason)?;
    }
    writeln!(out, "imports:")?;
    for i in &info.imports {
        writeln!(out, "  {i}")?;
    }
    writeln!(out, "exports:")?;
    for e in &info.exports {
        writeln!(out, "  {e}")?;
    }
    writeln!(out, "config schema:")?;
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&info.config_schema)?
    )?;
    Ok(ExitCode::SUCCESS)
}
