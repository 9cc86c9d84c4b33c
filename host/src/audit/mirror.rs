//! The store's trail against its mirrored copy in the audit log files
//! (`<log root>/audit/*.log`), the anchor against someone who rewrote the
//! table *and* recomputed every hash: [`super::verify`] cannot see that,
//! but each rewritten record's hash then differs from the one its node
//! mirrored when it stored the record.
//!
//! Every mirrored record (a line of target `meridian::audit` with its
//! `seq` and `hash`, in the JSON or the text log format) must be in the
//! store with the same hash. Records the files do not hold are not a
//! problem: older ones may have outlived the files' retention, and each
//! node mirrors only the records it appended (compare every node's files
//! for the whole trail).
//!
//! [`verify_with_mirror`] is the whole check (the CLI's `audit verify` and
//! `GET /api/v2/audit/verify`).

use super::{AuditRecord, VerifyReport};
use crate::store::{Store, StoreError};
use serde::Serialize;
use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The outcome of [`compare`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorReport {
    /// The directory read (not serialised: no server path reaches an API
    /// client).
    #[serde(skip)]
    pub dir: PathBuf,
    /// Its `.log` files read.
    pub files: u64,
    /// Mirrored records found in them (a record mirrored twice counts once).
    pub mirrored: u64,
    /// Records of the store the files do not hold.
    pub not_mirrored: u64,
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

/// Why [`verify_with_mirror`] could not check.
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

/// The chain check of the store's trail and, with `dir`, its comparison
/// with the mirrored files there.
///
/// The files are read *before* the store: a record is mirrored only after
/// it is stored, so every record the files hold must then be in the store;
/// read the other way round, a record a serving node appends in between
/// would look removed.
pub async fn verify_with_mirror(
    store: &Store,
    dir: Option<&Path>,
) -> Result<(VerifyReport, Option<MirrorReport>), CheckError> {
    let mirrored = match dir {
        Some(dir) => {
            let owned = dir.to_path_buf();
            let read = tokio::task::spawn_blocking(move || read(&owned))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                .map_err(|source| CheckError::Mirror {
                    dir: dir.to_path_buf(),
                    source,
                })?;
            Some((dir, read))
        }
        None => None,
    };
    let records = store.audit_all().await?;
    let (seq, hash) = store.audit_head().await?;
    let report = super::verify(&records, (seq, &hash));
    let mirror = mirrored.map(|(dir, (lines, files))| compare(&records, &lines, dir, files));
    Ok((report, mirror))
}

/// Reads every mirrored record in `dir`'s `.log` files (in name order, so
/// oldest first); lines of other targets or formats are skipped. Returns
/// them with the number of files read.
pub fn read(dir: &Path) -> std::io::Result<(Vec<Mirrored>, u64)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log") && p.is_file())
        .collect();
    files.sort();
    let mut mirrored = Vec::new();
    for file in &files {
        let shared: Arc<Path> = Arc::from(file.as_path());
        // Line by line (the audit files are kept longest and may be large),
        // as bytes: a line that is not UTF-8 is no record.
        for line in BufReader::new(std::fs::File::open(file)?).split(b'\n') {
            let line = line?;
            if let Some((seq, hash)) = std::str::from_utf8(&line).ok().and_then(parse_line) {
                mirrored.push(Mirrored {
                    seq,
                    hash,
                    file: Arc::clone(&shared),
                });
            }
        }
    }
    Ok((mirrored, files.len() as u64))
}

/// The `seq` and `hash` of a mirrored record's line, JSON
/// (`{"target":"meridian::audit",…,"fields":{"seq":…,"hash":…}}`) or text
/// (`ts LEVEL meridian::audit: message seq=… hash=…`); `None` for any other
/// line.
fn parse_line(line: &str) -> Option<(i64, String)> {
    if line.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        if v.get("target")?.as_str()? != "meridian::audit" {
            return None;
        }
        let fields = v.get("fields")?;
        let seq = fields.get("seq")?.as_i64()?;
        let hash = fields.get("hash")?.as_str()?;
        return Some((seq, hash.to_owned()));
    }
    // Text: the target is the third token, then `: message k=v …`; the
    // record's fields come first after the message, and a value with `=`
    // or a space in it is quoted, so the first `seq=` and `hash=` tokens
    // are the record's.
    let mut tokens = line.split_whitespace();
    let target = tokens.nth(2)?.split('{').next()?.trim_end_matches(':');
    if target != "meridian::audit" {
        return None;
    }
    let mut seq = None;
    let mut hash = None;
    for token in tokens {
        if seq.is_none()
            && let Some(v) = token.strip_prefix("seq=")
        {
            seq = v.parse().ok();
        } else if hash.is_none()
            && let Some(v) = token.strip_prefix("hash=")
        {
            hash = Some(v.to_owned());
        }
        if seq.is_some() && hash.is_some() {
            break;
        }
    }
    Some((seq?, hash?))
}

/// Compares the store's `records` with the `mirrored` ones read from `dir`
/// (`files` of them).
pub fn compare(
    records: &[AuditRecord],
    mirrored: &[Mirrored],
    dir: &Path,
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
        dir: dir.to_path_buf(),
        files,
        mirrored: seen.len() as u64,
        not_mirrored: not_mirrored as u64,
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
        assert_eq!(parse_line(json), Some((7, "ab12".into())));
        let text = r#"2026-11-30T10:00:00.000Z  INFO meridian::audit: audit record seq=7 hash=ab12 prev_hash=00 detail="seq=8 hash=ff""#;
        assert_eq!(parse_line(text), Some((7, "ab12".into())));
        let other = r#"{"ts":"x","level":"INFO","target":"meridian::audit::grants","message":"m","fields":{"seq":1,"hash":"h"},"span":{}}"#;
        assert_eq!(parse_line(other), None);
        assert_eq!(
            parse_line("2026-11-30T10:00:00.000Z  INFO meridian::api: seq=1 hash=h"),
            None
        );
        assert_eq!(parse_line("not a log line"), None);
    }
}
