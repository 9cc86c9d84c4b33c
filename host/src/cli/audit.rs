//! `meridian audit`: query the trail, verify it, follow it.

use super::parse_instant;
use crate::config::Config;
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// Check the hash chain (names the first record that was edited,
    /// removed or reordered); compare the store's records with their
    /// mirrored copies in the audit log files (`<log root>/audit`, `.log`
    /// and `.gz`: names the first record that differs — a trail rewritten
    /// with every hash recomputed — or is gone); and check the signed
    /// checkpoints of the chain's head found there and in a witness's
    /// export. Exit code 1 when any of it fails, or when the mirror or the
    /// anchor is missing, behind, or holds files that cannot be read.
    Verify {
        #[arg(long)]
        json: bool,
        /// A directory of mirrored audit log files to compare with instead
        /// of this node's (another node's, or a copy shipped elsewhere).
        /// Repeatable: the files of every node of a cluster together.
        #[arg(long = "mirror", value_name = "DIR", conflicts_with = "no_mirror")]
        mirrors: Vec<PathBuf>,
        /// Check the chain only: no mirror, no anchor (says so).
        #[arg(long)]
        no_mirror: bool,
        /// A public key (64 hex characters) whose checkpoints count, as
        /// `meridian audit key` prints it; repeatable. Replaces `[audit]
        /// trusted_keys` and this node's own key.
        #[arg(long = "trusted-key", value_name = "HEX")]
        trusted_keys: Vec<String>,
        /// Checkpoints exported from the witness (JSON lines, one
        /// checkpoint a line); repeatable.
        #[arg(
            long = "witness-file",
            value_name = "FILE",
            conflicts_with = "no_mirror"
        )]
        witness_files: Vec<PathBuf>,
    },
    /// This node's audit signing key: its public half (what `[audit]
    /// trusted_keys` and `audit verify --trusted-key` take) and its id.
    Key {
        #[arg(long)]
        json: bool,
    },
    /// Records matching every filter given, oldest first.
    Query(Box<AuditQueryArgs>),
}

/// The filters of `meridian audit query`.
#[derive(Debug, Args)]
pub(super) struct AuditQueryArgs {
    /// capability, grant, token or api.
    #[arg(long)]
    kind: Option<String>,
    #[arg(long)]
    plugin: Option<String>,
    #[arg(long)]
    job: Option<String>,
    #[arg(long)]
    execution: Option<String>,
    /// http, secrets, sql, process or log.
    #[arg(long)]
    capability: Option<String>,
    /// allowed, denied, failed (calls); created, revoked (grants, tokens);
    /// ok, rejected, failed, unauthenticated, forbidden (API requests).
    #[arg(long)]
    decision: Option<String>,
    /// Records at or after this RFC 3339 instant.
    #[arg(long)]
    since: Option<String>,
    /// Records before this RFC 3339 instant.
    #[arg(long)]
    until: Option<String>,
    /// Records after this sequence number (paging).
    #[arg(long)]
    after: Option<i64>,
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[arg(long)]
    json: bool,
}

pub(super) async fn audit(
    config: Config,
    command: AuditCommand,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let store = crate::node::open_store(&config).await?;
    match command {
        AuditCommand::Verify {
            json,
            mirrors,
            no_mirror,
            trusted_keys,
            witness_files,
        } => {
            use crate::audit::anchor;
            let mut given = Vec::new();
            for key in &trusted_keys {
                given.push(
                    key.parse::<anchor::PublicKey>()
                        .map_err(|e| anyhow::anyhow!("--trusted-key: {e}"))?,
                );
            }
            if given.is_empty() {
                given.clone_from(&config.audit.trusted_keys);
            }
            let mut witness = Vec::new();
            for file in &witness_files {
                witness.extend(
                    anchor::read_witness_file(file)
                        .map_err(|e| anyhow::anyhow!("--witness-file: {e}"))?,
                );
            }
            let mirrors = match (no_mirror, mirrors.is_empty()) {
                (true, _) => Vec::new(),
                (false, false) => mirrors,
                (false, true) => vec![
                    config
                        .logging
                        .root(&config.data_dir)
                        .join(crate::logging::Category::Audit.dir_name()),
                ],
            };
            let options = crate::audit::mirror::VerifyOptions {
                mirrors,
                keys: anchor::TrustedKeys::resolve(&given, &config.audit.signing_key),
                witness,
                max_lag: anchor::max_lag(config.audit.checkpoint_interval),
            };
            let report = crate::audit::mirror::verify_all(&store, &options).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                print_verify(&report, &options, out, err)?;
            }
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        AuditCommand::Key { json } => {
            let path = &config.audit.signing_key;
            let signer = crate::audit::anchor::Signer::load(path, &config.cluster.node_id)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{e}\n(the key is made by the first `meridian serve`, or command that \
                         writes the audit trail, on this data dir)"
                    )
                })?;
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({
                        "public_key": signer.public().to_string(),
                        "key_id": signer.key_id(),
                    })
                )?;
            } else {
                writeln!(out, "{}", signer.public())?;
                writeln!(err, "key id {} ({})", signer.key_id(), path.display())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Query(args) => {
            let AuditQueryArgs {
                kind,
                plugin,
                job,
                execution,
                capability,
                decision,
                since,
                until,
                after,
                limit,
                json,
            } = *args;
            let q = crate::audit::AuditQuery {
                kind,
                plugin,
                job_id: job,
                execution_id: execution,
                capability,
                decision,
                since_us: parse_instant("since", since)?,
                until_us: parse_instant("until", until)?,
                after_seq: after,
                limit: limit.clamp(1, 10_000),
            };
            let records = crate::audit::query(&store, &q).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&records)?)?;
                return Ok(ExitCode::SUCCESS);
            }
            for r in &records {
                let e = &r.entry;
                let at = chrono::DateTime::from_timestamp_micros(e.at_us)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_default();
                let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                writeln!(
                    out,
                    "{:>6} {at} {:<10} {:<8} {:<12} {:<8} {} job={} execution={} step={}{}",
                    r.seq,
                    e.kind,
                    e.decision,
                    o(&e.plugin),
                    o(&e.capability),
                    o(&e.target),
                    o(&e.job_id),
                    o(&e.execution_id),
                    o(&e.step_id),
                    e.actor
                        .as_ref()
                        .map(|a| format!(" by={a}"))
                        .unwrap_or_default()
                )?;
            }
            if records.is_empty() {
                writeln!(err, "no audit records match")?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `audit verify`'s text: a line each for the chain, the mirror and the
/// anchor on stdout, every failure on stderr.
pub(super) fn print_verify(
    report: &crate::audit::mirror::FullReport,
    options: &crate::audit::mirror::VerifyOptions,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let chain = &report.chain;
    if let Some(p) = &chain.problem {
        writeln!(
            err,
            "audit trail BROKEN at position {} (record {}): {:?}: {}",
            p.position, p.seq, p.tamper, p.message
        )?;
    } else {
        writeln!(
            out,
            "audit trail intact: {} records, head {}",
            chain.records, chain.head
        )?;
    }
    let dirs = options
        .mirrors
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    match &report.mirror {
        Some(m) if m.ok => writeln!(
            out,
            "mirror {dirs} agrees: {} records in {} files ({} gzipped) match the store ({} not mirrored there)",
            m.mirrored, m.files, m.gzipped, m.not_mirrored
        )?,
        Some(m) => {
            if let Some(p) = &m.problem {
                writeln!(err, "audit trail DIFFERS from its mirror: {}", p.message)?;
            }
            writeln!(
                err,
                "mirror {dirs} FAILED: {} records in {} files ({} gzipped), {} unread",
                m.mirrored,
                m.files,
                m.gzipped,
                m.unread.len()
            )?;
        }
        None => writeln!(out, "mirror and anchor not checked (--no-mirror)")?,
    }
    if let Some(a) = &report.anchor {
        match (&a.problem, &a.newest) {
            (None, Some(n)) => writeln!(
                out,
                "anchor holds: {} checkpoints; the newest, of record {}, signed by node {} at {} with key {}",
                a.checkpoints, n.seq, n.node, n.at, n.key_id
            )?,
            (None, None) => writeln!(out, "anchor holds: the trail is empty")?,
            (Some(p), _) => writeln!(err, "anchor FAILED ({:?}): {}", p.fault, p.message)?,
        }
    }
    for reason in &report.reasons {
        writeln!(err, "not verified: {reason}")?;
    }
    Ok(())
}
