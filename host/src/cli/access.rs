//! `meridian grants` and `meridian token`: who may do what, changed from the host.

use super::cli_actor;
use crate::config::Config;
use anyhow::Context as _;
use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(super) enum TokenCommand {
    /// Make a token and print it (the only time it is shown).
    Create {
        /// viewer, operator, auditor or admin.
        #[arg(long)]
        role: String,
        /// A unique name (A-Z a-z 0-9 . _ -) [default: <role>-<random>].
        #[arg(long)]
        name: Option<String>,
    },
    /// Every token with its role, creator and last use (never the token).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id or name.
    Revoke { token: String },
}

#[derive(Debug, Subcommand)]
pub(super) enum GrantsCommand {
    /// Every grant in force: the config file's and the stored ones.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Store a grant: one `[[grants]]` table as a TOML or JSON file, or as
    /// JSON text with --spec. Prints its id.
    Add {
        /// A file holding the grant (.toml or .json).
        #[arg(long, conflicts_with = "spec", required_unless_present = "spec")]
        file: Option<PathBuf>,
        /// The grant as JSON text.
        #[arg(long)]
        spec: Option<String>,
    },
    /// Delete a stored grant.
    Revoke { id: String },
}

pub(super) async fn grants(
    config: Config,
    command: GrantsCommand,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    use crate::capabilities::grants::stored;
    let store = crate::node::open_store(&config).await?;
    match command {
        GrantsCommand::List { json } => {
            let mut entries = stored::from_config(&config.grant_specs);
            entries.extend(stored::load(&store).await?);
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&entries)?)?;
            } else {
                for e in &entries {
                    let by = match &e.origin {
                        stored::GrantOrigin::Config => "config file".to_string(),
                        stored::GrantOrigin::Stored {
                            created_by,
                            created_at,
                        } => format!("{created_by} at {created_at}"),
                    };
                    writeln!(
                        out,
                        "{:<38} {:<16} {by}\n    {}",
                        e.id,
                        e.grant.plugin,
                        serde_json::to_string(&e.grant)?
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        GrantsCommand::Add { file, spec } => {
            let value: serde_json::Value = match (file, spec) {
                (Some(path), _) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    if path.extension().is_some_and(|e| e == "toml") {
                        let table: toml::Table = toml::from_str(&text)
                            .with_context(|| format!("{} is not TOML", path.display()))?;
                        serde_json::to_value(table)?
                    } else {
                        serde_json::from_str(&text)
                            .with_context(|| format!("{} is not JSON", path.display()))?
                    }
                }
                (None, Some(spec)) => serde_json::from_str(&spec).context("--spec is not JSON")?,
                (None, None) => anyhow::bail!("give the grant with --file or --spec"),
            };
            let grant = match stored::from_json(value) {
                Ok(g) => g,
                Err(errors) => {
                    for e in errors {
                        writeln!(err, "grant: {e}")?;
                    }
                    return Ok(ExitCode::from(2));
                }
            };
            match stored::create(&store, grant, &cli_actor()).await {
                Ok((entry, record)) => {
                    writeln!(
                        out,
                        "grant {} stored for plugin {:?} (audit record {})",
                        entry.id, entry.grant.plugin, record.seq
                    )?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(stored::GrantChangeError::Invalid(errors)) => {
                    for e in errors {
                        writeln!(err, "grant: {e}")?;
                    }
                    Ok(ExitCode::from(2))
                }
                Err(e) => Err(e.into()),
            }
        }
        GrantsCommand::Revoke { id } => match stored::revoke(&store, &id, &cli_actor()).await {
            Ok((row, record)) => {
                writeln!(
                    out,
                    "grant {} for plugin {:?} revoked (audit record {})",
                    row.id, row.plugin, record.seq
                )?;
                Ok(ExitCode::SUCCESS)
            }
            Err(stored::GrantChangeError::NotFound(_)) => {
                writeln!(
                    err,
                    "no stored grant {id:?} (grants from the config file are changed by editing it)"
                )?;
                Ok(ExitCode::from(2))
            }
            Err(e) => Err(e.into()),
        },
    }
}

pub(super) async fn tokens(
    config: Config,
    command: TokenCommand,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    use crate::auth::{self, Role, TokenError};
    let store = crate::node::open_store(&config).await?;
    match command {
        TokenCommand::Create { role, name } => {
            let Some(role) = Role::parse(&role) else {
                writeln!(
                    err,
                    "--role {role:?}: expected viewer, operator, auditor or admin"
                )?;
                return Ok(ExitCode::from(2));
            };
            match auth::create_token(&store, name.as_deref(), role, &cli_actor()).await {
                Ok((token, row, _)) => {
                    writeln!(
                        err,
                        "token {:?} ({}) created; it is shown only now:",
                        row.name, row.role
                    )?;
                    writeln!(out, "{token}")?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e @ (TokenError::InvalidName(_) | TokenError::NameTaken(_))) => {
                    writeln!(err, "--{e}")?;
                    Ok(ExitCode::from(2))
                }
                Err(e) => Err(e.into()),
            }
        }
        TokenCommand::List { json } => {
            let rows = store.list_tokens().await?;
            let views: Vec<_> = rows.iter().map(auth::view).collect();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&views)?)?;
            } else {
                for v in &views {
                    let s = |k: &str| v[k].as_str().unwrap_or("-").to_string();
                    writeln!(
                        out,
                        "{:<24} {:<9} created {} by {}, last used {}{}",
                        s("name"),
                        s("role"),
                        s("created_at"),
                        s("created_by"),
                        s("last_used_at"),
                        v["revoked_at"]
                            .as_str()
                            .map(|r| format!(", REVOKED {r}"))
                            .unwrap_or_default()
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { token } => {
            match auth::revoke_token(&store, &token, &cli_actor()).await {
                Ok((row, _)) => {
                    writeln!(out, "token {:?} ({}) revoked", row.name, row.role)?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(TokenError::NotFound(_)) => {
                    writeln!(err, "no live token with id or name {token:?}")?;
                    Ok(ExitCode::from(2))
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}
