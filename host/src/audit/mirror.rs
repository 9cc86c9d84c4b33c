//! The store's trail against what was written outside it: the mirrored
//! copy in the audit log files (`<log root>/audit/`, every `.log` and
//! gzipped `.gz` file) and the signed checkpoints of the chain's head
//! found there and in a witness's export ([`super::anchor`]). That is the
//! anchor against someone who rewrote the table *and* recomputed every
//! hash: [`super::verify`] cannot see that, but each rewritten record's
//! hash then differs from the one its node mirrored, and from the one the
//! checkpoints signed.
//!
//! Every mirrored record (a line of target `meridian::audit` with its
//! `seq` and `hash`, in the JSON or the text log format) must be in the
//! store with the same hash. Records the files do not hold are not a
//! problem by themselves: older ones may have outlived the files'
//! retention, and each node mirrors only the records it appended (compare
//! every node's files for the whole trail) — the checkpoints cover them.
//! But a mirror with no line at all while the store has records, and a
//! file in it that cannot be read (a gzip that does not decompress, a
//! compression verify does not read), fail the check: deleting or
//! compressing the files must not make a rewritten trail pass.
//!
//! [`verify_all`] is the whole check (the CLI's `audit verify` and
//! `GET /api/v2/audit/verify`).

use super::anchor::{self, AnchorReport, Found, TrustedKeys};
use super::{AuditRecord, VerifyReport};
use crate::store::{Store, StoreError};
use serde::Serialize;
use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The outcome of [`compare`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorReport {
    /// The directories read (not serialised: no server path reaches an
    /// API client).
    #[serde(skip)]
    pub dirs: Vec<PathBuf>,
    /// Files read (`.log` and `.gz`).
    pub files: u64,
    /// Of them, gzipped.
    pub gzipped: u64,
    /// Mirrored records found in them (a record mirrored twice counts once).
    pub mirrored: u64,
    /// Records of the store the files do not hold.
    pub not_mirrored: u64,
    /// Files that could not be read, each with why (file names only).
    pub unread: Vec<String>,
    pub ok: bool,
    /// The first mirrored record, by `seq`, that the store does not hold
    /// as mirrored.
    pub problem: Option<MirrorMismatch>,
}

/// A mirrored record the store contradicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorMismatch {
    pub seq: i64,
    /// The file that holds the mirrored copy (not serialised; the message
    /// names the file).
    #[serde(skip)]
    pub file: PathBuf,
    pub message: String,
}

/// One mirrored record: its `seq`, its `hash` and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrored {
    pub seq: i64,
    pub hash: String,
    pub file: Arc<Path>,
}

/// Everything read from mirror directories.
#[derive(Debug, Default)]
pub struct MirrorRead {
    pub records: Vec<Mirrored>,
    pub checkpoints: Vec<Found>,
    pub files: u64,
    pub gzipped: u64,
    /// `<file name>: <why>` for each file that could not be read.
    pub unread: Vec<String>,
}

/// Why [`verify_all`] could not check.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read the audit mirror {}: {source}", dir.display())]
    Mirror {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// What [`verify_all`] checks besides the chain.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The mirror directories (this node's `logs/audit`, copies, other
    /// nodes'); empty checks the chain only.
    pub mirrors: Vec<PathBuf>,
    /// Whose checkpoints count.
    pub keys: TrustedKeys,
    /// Checkpoints exported from a witness (read by the caller).
    pub witness: Vec<Found>,
    /// How far the newest checkpoint may trail the head
    /// ([`anchor::max_lag`]).
    pub max_lag: Duration,
}

/// The whole check: the chain, the mirror, the anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullReport {
    /// Whether everything checked agrees.
    pub ok: bool,
    /// Every failure, one sentence each.
    pub reasons: Vec<String>,
    pub chain: VerifyReport,
    /// `None` when no mirror was checked (`--no-mirror`).
    pub mirror: Option<MirrorReport>,
    /// `None` when no mirror was checked.
    pub anchor: Option<AnchorReport>,
}

impl Serialize for FullReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            ok: bool,
            reasons: &'a [String],
            chain_ok: bool,
            records: u64,
            head: &'a str,
            problem: &'a Option<super::ChainBreak>,
            mirror: &'a Option<MirrorReport>,
            anchor: &'a Option<AnchorReport>,
        }
        Wire {
            ok: self.ok,
            reasons: &self.reasons,
            chain_ok: self.chain.ok,
            records: self.chain.records,
            head: &self.chain.head,
            problem: &self.chain.problem,
            mirror: &self.mirror,
            anchor: &self.anchor,
        }
        .serialize(s)
    }
}

/// The chain check of the store's trail and, with mirror directories,
/// its comparison with the mirrored records and the check of the
/// checkpoints found there and in `options.witness`.
///
/// The files are read *before* the store: a record is mirrored and a head
/// checkpointed only after it is stored, so every record and checkpoint
/// the files hold must then be in the store; read the other way round, a
/// record a serving node appends in between would look removed.
pub async fn verify_all(store: &Store, options: &VerifyOptions) -> Result<FullReport, CheckError> {
    let mut read_all = MirrorRead::default();
    for dir in &options.mirrors {
        let owned = dir.clone();
        let read = tokio::task::spawn_blocking(move || read(&owned))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match read {
            Ok(r) => {
                read_all.records.extend(r.records);
                read_all.checkpoints.extend(r.checkpoints);
                read_all.files += r.files;
                read_all.gzipped += r.gzipped;
                read_all.unread.extend(r.unread);
            }
            // A missing directory is a missing mirror, reported below.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(CheckError::Mirror {
                    dir: dir.clone(),
                    source,
                });
            }
        }
    }
    let records = store.audit_all().await?;
    let (seq, hash) = store.audit_head().await?;
    let chain = super::verify(&records, (seq, &hash));
    let mut reasons = Vec::new();
    if let Some(p) = &chain.problem {
        reasons.push(format!(
            "the chain is broken at position {} (record {}): {}",
            p.position, p.seq, p.message
        ));
    }
    if options.mirrors.is_empty() {
        return Ok(FullReport {
            ok: chain.ok,
            reasons,
            chain,
            mirror: None,
            anchor: None,
        });
    }
    let mut mirror = compare(
        &records,
        &read_all.records,
        &options.mirrors,
        read_all.files,
    );
    mirror.gzipped = read_all.gzipped;
    mirror.unread = read_all.unread;
    if let Some(p) = &mirror.problem {
        reasons.push(format!("the mirror differs: {}", p.message));
    }
    if !mirror.unread.is_empty() {
        mirror.ok = false;
        reasons.push(format!(
            "mirror files could not be read (compressed or damaged, so they were not checked): {}",
            mirror.unread.join("; ")
        ));
    }
    if seq > 0 && read_all.records.is_empty() && read_all.checkpoints.is_empty() {
        mirror.ok = false;
        reasons.push(format!(
            "the mirror is missing: the store holds {seq} records and the audit log files hold              no record and no checkpoint ({} files read)",
            read_all.files
        ));
    }
    let mut found = read_all.checkpoints;
    found.extend(options.witness.iter().cloned());
    let anchor = anchor::check(
        &records,
        (seq, &hash),
        &found,
        &options.keys,
        chrono::Utc::now().timestamp_micros(),
        options.max_lag,
    );
    if let Some(p) = &anchor.problem {
        reasons.push(p.message.clone());
    }
    Ok(FullReport {
        ok: chain.ok && mirror.ok && anchor.ok,
        reasons,
        chain,
        mirror: Some(mirror),
        anchor: Some(anchor),
    })
}

/// How a file in a mirror directory is read.
enum Kind {
    Plain,
    Gzip,
}

/// Reads every mirrored record and checkpoint in `dir`'s files (`.log`
/// and gzipped `.gz`, in name order, so oldest first); lines of other
/// targets or formats are skipped. A `.gz.tmp` (a gzip being written; its
/// source is still there) is skipped; any other file is reported unread.
pub fn read(dir: &Path) -> std::io::Result<MirrorRead> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut out = MirrorRead::default();
    for file in &files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = if name.ends_with(".log") {
            Kind::Plain
        } else if name.ends_with(".gz") {
            Kind::Gzip
        } else if name.ends_with(".gz.tmp") {
            continue;
        } else {
            out.unread
                .push(format!("{name}: not a .log or .gz file verify can read"));
            continue;
        };
        match read_file(file, &kind, &mut out) {
            Ok(()) => {
                out.files += 1;
                if matches!(kind, Kind::Gzip) {
                    out.gzipped += 1;
                }
            }
            // Gzipped (and removed) since it was listed: read the `.gz`.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && matches!(kind, Kind::Plain) => {
                let mut gz = file.as_os_str().to_owned();
                gz.push(".gz");
                let gz = PathBuf::from(gz);
                if gz.is_file() && !files.contains(&gz) {
                    match read_file(&gz, &Kind::Gzip, &mut out) {
                        Ok(()) => {
                            out.files += 1;
                            out.gzipped += 1;
                        }
                        Err(e) => out.unread.push(format!("{name}.gz: {e}")),
                    }
                }
            }
            Err(e) => out.unread.push(format!("{name}: {e}")),
        }
    }
    Ok(out)
}

/// Reads one file's lines into `out`; a damaged gzip is an error (what
/// was read of it before the damage is kept).
fn read_file(file: &Path, kind: &Kind, out: &mut MirrorRead) -> std::io::Result<()> {
    let f = std::fs::File::open(file)?;
    let reader: Box<dyn Read> = match kind {
        Kind::Plain => Box::new(f),
        Kind::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(f))),
    };
    let shared: Arc<Path> = Arc::from(file);
    let origin = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Line by line (the audit files are kept longest and may be large),
    // as bytes: a line that is not UTF-8 is no record.
    for line in BufReader::new(reader).split(b'\n') {
        let line = line?;
        match std::str::from_utf8(&line).ok().and_then(parse_line) {
            Some(Line::Record(seq, hash)) => out.records.push(Mirrored {
                seq,
                hash,
                file: Arc::clone(&shared),
            }),
            Some(Line::Checkpoint(checkpoint)) => out.checkpoints.push(Found {
                checkpoint,
                origin: origin.clone(),
            }),
            None => {}
        }
    }
    Ok(())
}

/// What an audit line holds.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A mirrored record's `seq` and `hash`.
    Record(i64, String),
    /// A signed checkpoint of the head.
    Checkpoint(anchor::Checkpoint),
}

/// An audit line, JSON
/// (`{"target":"meridian::audit","message":"audit record",…,"fields":{"seq":…,"hash":…}}`)
/// or text (`ts LEVEL meridian::audit: audit record seq=… hash=…`);
/// `None` for any other line.
fn parse_line(line: &str) -> Option<Line> {
    if line.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        if v.get("target")?.as_str()? != "meridian::audit" {
            return None;
        }
        let fields = v.get("fields")?;
        let text = |k: &str| fields.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        let seq = fields.get("seq")?.as_i64()?;
        let hash = text("hash")?;
        if v.get("message").and_then(|m| m.as_str()) == Some(CHECKPOINT_MESSAGE) {
            return Some(Line::Checkpoint(anchor::Checkpoint {
                seq,
                hash,
                at_us: fields.get("at_us")?.as_i64()?,
                node: text("node")?,
                key_id: text("key_id")?,
                signature: text("signature")?,
            }));
        }
        return Some(Line::Record(seq, hash));
    }
    text_line(line)
}

/// The message of a checkpoint's line.
const CHECKPOINT_MESSAGE: &str = "audit checkpoint";

/// A text-format line: the target is the third token, then `: message
/// k=v …`; the record's fields come first after the message, and a value
/// with `=` or a space in it is quoted, so the first `seq=`, `hash=`… tokens
/// are the record's (or the checkpoint's).
fn text_line(line: &str) -> Option<Line> {
    let mut tokens = line.split_whitespace();
    let target = tokens.nth(2)?.split('{').next()?.trim_end_matches(':');
    if target != "meridian::audit" {
        return None;
    }
    let rest: Vec<&str> = tokens.collect();
    let checkpoint = rest.len() >= 2 && rest[0] == "audit" && rest[1] == "checkpoint";
    let mut fields: HashMap<&str, &str> = HashMap::new();
    for token in &rest {
        if let Some((k, v)) = token.split_once('=') {
            fields.entry(k).or_insert(v);
        }
    }
    let seq = fields.get("seq")?.parse().ok()?;
    let hash = (*fields.get("hash")?).to_owned();
    if checkpoint {
        return Some(Line::Checkpoint(anchor::Checkpoint {
            seq,
            hash,
            at_us: fields.get("at_us")?.parse().ok()?,
            node: (*fields.get("node")?).to_owned(),
            key_id: (*fields.get("key_id")?).to_owned(),
            signature: (*fields.get("signature")?).to_owned(),
        }));
    }
    Some(Line::Record(seq, hash))
}

/// Compares the store's `records` with the `mirrored` ones read from
/// `dirs` (`files` of them).
pub fn compare(
    records: &[AuditRecord],
    mirrored: &[Mirrored],
    dirs: &[PathBuf],
    files: u64,
) -> MirrorReport {
    let stored: HashMap<i64, &str> = records.iter().map(|r| (r.seq, r.hash.as_str())).collect();
    let mut by_seq: Vec<&Mirrored> = mirrored.iter().collect();
    by_seq.sort_by_key(|m| m.seq);
    let mut problem = None;
    let mut seen = std::collections::HashSet::new();
    for m in &by_seq {
        seen.insert(m.seq);
        if problem.is_some() {
            continue;
        }
        let file = m.file.file_name().map_or_else(
            || m.file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let message = match stored.get(&m.seq) {
            Some(hash) if *hash == m.hash => continue,
            Some(hash) => format!(
                "record {} differs from its mirrored copy (hash {} in the store, {} in {}): \
                 the store's trail was rewritten",
                m.seq,
                short(hash),
                short(&m.hash),
                file
            ),
            None => format!(
                "record {} is in {} but not in the store: it was removed",
                m.seq, file
            ),
        };
        problem = Some(MirrorMismatch {
            seq: m.seq,
            file: m.file.to_path_buf(),
            message,
        });
    }
    let not_mirrored = records.iter().filter(|r| !seen.contains(&r.seq)).count();
    MirrorReport {
        dirs: dirs.to_vec(),
        files,
        gzipped: 0,
        mirrored: seen.len() as u64,
        not_mirrored: not_mirrored as u64,
        unread: Vec::new(),
        ok: problem.is_none(),
        problem,
    }
}

/// The first 12 characters of a hash, for messages.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_log_formats_give_the_record_and_other_lines_nothing() {
        let json = r#"{"ts":"2026-11-30T10:00:00.000Z","level":"INFO","target":"meridian::audit","message":"audit record","fields":{"seq":7,"hash":"ab12","prev_hash":"00"},"span":{}}"#;
        assert_eq!(parse_line(json), Some(Line::Record(7, "ab12".into())));
        let text = r#"2026-11-30T10:00:00.000Z  INFO meridian::audit: audit record seq=7 hash=ab12 prev_hash=00 detail="seq=8 hash=ff""#;
        assert_eq!(parse_line(text), Some(Line::Record(7, "ab12".into())));
        let cp = anchor::Checkpoint {
            seq: 7,
            hash: "ab12".into(),
            at_us: 5,
            node: "n-1".into(),
            key_id: "00ff".into(),
            signature: "beef".into(),
        };
        let json = r#"{"ts":"x","level":"INFO","target":"meridian::audit","message":"audit checkpoint","fields":{"seq":7,"hash":"ab12","at_us":5,"node":"n-1","key_id":"00ff","signature":"beef"},"span":{}}"#;
        assert_eq!(parse_line(json), Some(Line::Checkpoint(cp.clone())));
        let text = "2026-11-30T10:00:00.000Z  INFO meridian::audit: audit checkpoint seq=7 hash=ab12 at_us=5 node=n-1 key_id=00ff signature=beef";
        assert_eq!(parse_line(text), Some(Line::Checkpoint(cp)));
        let other = r#"{"ts":"x","level":"INFO","target":"meridian::audit::grants","message":"m","fields":{"seq":1,"hash":"h"},"span":{}}"#;
        assert_eq!(parse_line(other), None);
        assert_eq!(
            parse_line("2026-11-30T10:00:00.000Z  INFO meridian::api: seq=1 hash=h"),
            None
        );
        assert_eq!(parse_line("not a log line"), None);
    }

    #[test]
    fn gzipped_files_are_read_and_files_that_cannot_be_are_named() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let line = |seq: i64| {
            format!(
                "{{\"ts\":\"x\",\"level\":\"INFO\",\"target\":\"meridian::audit\",\"message\":\"audit record\",\"fields\":{{\"seq\":{seq},\"hash\":\"h{seq}\"}},\"span\":{{}}}}\n"
            )
        };
        std::fs::write(dir.path().join("2026-12-02.log"), line(3)).unwrap();
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(dir.path().join("2026-12-01.1.log.gz")).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all((line(1) + &line(2)).as_bytes()).unwrap();
        gz.finish().unwrap();
        std::fs::write(dir.path().join("2026-11-30.1.log.gz"), b"\x1f\x8b broken").unwrap();
        std::fs::write(dir.path().join("2026-11-29.log.zst"), b"zstd").unwrap();
        std::fs::write(dir.path().join("2026-12-02.1.log.gz.tmp"), b"").unwrap();
        let read = read(dir.path()).unwrap();
        let mut seqs: Vec<i64> = read.records.iter().map(|r| r.seq).collect();
        seqs.sort();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!((read.files, read.gzipped), (2, 1));
        assert_eq!(read.unread.len(), 2, "{:?}", read.unread);
        assert!(
            read.unread[0].starts_with("2026-11-29.log.zst: "),
            "{:?}",
            read.unread
        );
        assert!(
            read.unread[1].starts_with("2026-11-30.1.log.gz: "),
            "{:?}",
            read.unread
        );
    }
}
