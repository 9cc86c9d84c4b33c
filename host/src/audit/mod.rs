//! The audit trail: an append-only, hash-chained record of every capability
//! call (allowed, denied or failed) and every grant change.
//!
//! **Chain.** Record *n* carries the hash of record *n − 1* (`prev_hash`;
//! 64 zeros for the first) and its own `hash` = SHA-256 of
//! `prev_hash ‖ "\n" ‖ body`, where `body` is the JSON array of the record's
//! fields in a fixed order ([`AuditEntry::body`]); `seq` is not part of the
//! body, so the order is carried by the links alone. [`verify`] walks the
//! records in `seq` order and names the first position where the chain
//! breaks: a record whose content no longer matches its hash was *edited*;
//! a record whose link points at a record that comes later was *reordered*;
//! a link to a record that is not there (or a gap in `seq`) means records
//! were *removed*; a head row that does not name the last record means the
//! tail was cut off. Each record is also mirrored as a JSON line, with its
//! `seq` and `hash`, to the audit log files (`tracing` target
//! `meridian::audit`), which are kept longest and give a copy outside the
//! database to compare against.
//!
//! What a hash chain does not stop: someone who can rewrite the whole table
//! *and* recompute every hash after the edit. Against that the chain's head
//! is anchored outside the store: [`anchor`] signs checkpoints of it with a
//! key that is not in the store, written to the mirrored files (shipped
//! elsewhere, or on storage the database user cannot write) and to an
//! optional external witness; [`mirror::verify_all`] (`meridian audit
//! verify`) names the first mirrored record or checkpoint the store
//! contradicts, and fails when the mirror or the anchor is missing or
//! behind.
//!
//! **Writing.** Capability calls happen on the step's hot path, so
//! [`AuditLog::record`] only sends the entry to one writer task over an
//! unbounded channel (never blocks, never drops). The writer appends in
//! batches, each in one transaction that first locks the head row, so two
//! processes appending to the same store (a `meridian run` beside a
//! `meridian serve`) never fork the chain. A failed append is retried; the
//! entries are kept until they are stored. A batch gathers for [`LINGER`]
//! (2 ms) before it is appended, unless a flush waits: [`AuditLog::flush`]
//! waits until everything recorded before it is stored.

pub mod anchor;
pub mod mirror;

pub use crate::store::AuditQuery;
use crate::store::{Store, StoreError};
use serde::Serialize;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Entries appended per transaction at most.
const BATCH: usize = 512;

/// How long the writer lets a batch gather before appending it (not when a
/// flush waits): records reach the store at most this much later, in a
/// tenth as many transactions under load.
const LINGER: Duration = Duration::from_millis(2);

/// The record format (fields, canonical encoding, hash) is the store's:
/// the store computes each record's hash as it appends it.
pub use crate::store::{AuditEntry, AuditRecord};

/// How the chain is broken at a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tamper {
    /// The record's content does not match its hash.
    Edited,
    /// Records before this one are missing.
    Removed,
    /// The record is not where the chain puts it.
    Reordered,
    /// The last records are missing (the head names a later record).
    Truncated,
}

/// The first break in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    /// The `seq` of the record where the chain breaks (for `truncated`,
    /// the `seq` the head names).
    pub seq: i64,
    /// 1-based position in `seq` order.
    pub position: u64,
    pub tamper: Tamper,
    pub message: String,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    pub ok: bool,
    /// The hash of the last record checked.
    pub head: String,
    pub problem: Option<ChainBreak>,
}

/// Checks records given in `seq` order against each other and against the
/// stored head `(seq, hash)`.
pub fn verify(records: &[AuditRecord], head: (i64, &str)) -> VerifyReport {
    // Where each hash sits, to tell a reordering from a removal.
    let positions: std::collections::HashMap<&str, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.hash.as_str(), i))
        .collect();
    let mut prev = GENESIS.to_string();
    let mut expected_seq = 1i64;
    let fail = |i: usize, r: &AuditRecord, tamper: Tamper, message: String| VerifyReport {
        records: records.len() as u64,
        ok: false,
        head: String::new(),
        problem: Some(ChainBreak {
            seq: r.seq,
            position: i as u64 + 1,
            tamper,
            message,
        }),
    };
    for (i, r) in records.iter().enumerate() {
        if r.entry.chain_hash(&r.prev_hash) != r.hash {
            return fail(
                i,
                r,
                Tamper::Edited,
                format!(
                    "record {} (position {}) does not match its hash: its content was changed",
                    r.seq,
                    i + 1
                ),
            );
        }
        if r.prev_hash != prev {
            let (tamper, message) = match positions.get(r.prev_hash.as_str()) {
                Some(&j) if j > i => (
                    Tamper::Reordered,
                    format!(
                        "record {} (position {}) follows record {} in the chain, which comes later (position {})",
                        r.seq,
                        i + 1,
                        records[j].seq,
                        j + 1
                    ),
                ),
                Some(&j) => (
                    Tamper::Reordered,
                    format!(
                        "record {} (position {}) follows record {} (position {}) in the chain, not the record before it",
                        r.seq,
                        i + 1,
                        records[j].seq,
                        j + 1
                    ),
                ),
                None if r.seq != expected_seq => (
                    Tamper::Removed,
                    format!(
                        "record {} (position {}) follows a record that is not there: records {}..{} were removed",
                        r.seq,
                        i + 1,
                        expected_seq,
                        r.seq - 1
                    ),
                ),
                None => (
                    Tamper::Removed,
                    format!(
                        "record {} (position {}) follows a record that is not there: a record before it was removed or replaced",
                        r.seq,
                        i + 1
                    ),
                ),
            };
            return fail(i, r, tamper, message);
        }
        prev = r.hash.clone();
        expected_seq = r.seq + 1;
    }
    let last_seq = records.last().map(|r| r.seq).unwrap_or(0);
    if head.0 != last_seq || head.1 != prev {
        let position = records.len() as u64 + 1;
        let message = if head.0 > last_seq {
            format!(
                "the chain's head names record {} but the last record is {last_seq}: records after it were removed",
                head.0
            )
        } else {
            format!(
                "the chain's head (record {}) does not match the last record ({last_seq})",
                head.0
            )
        };
        return VerifyReport {
            records: records.len() as u64,
            ok: false,
            head: prev,
            problem: Some(ChainBreak {
                seq: head.0,
                position,
                tamper: Tamper::Truncated,
                message,
            }),
        };
    }
    VerifyReport {
        records: records.len() as u64,
        ok: true,
        head: prev,
        problem: None,
    }
}

/// Reads the whole trail from the store and verifies it.
pub async fn verify_store(store: &Store) -> Result<VerifyReport, StoreError> {
    let records = store.audit_all().await?;
    let (seq, hash) = store.audit_head().await?;
    Ok(verify(&records, (seq, &hash)))
}

/// Reads records matching a query (see [`AuditQuery`]).
pub async fn query(store: &Store, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
    store.audit_query(q).await
}

enum Msg {
    Entry(Box<AuditEntry>),
    Flush(oneshot::Sender<()>),
}

/// The handle every recorder holds; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::UnboundedSender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Entry(e) => f.debug_tuple("Entry").field(e).finish(),
            Self::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl AuditLog {
    /// Starts the writer task on the current tokio runtime. It stops when
    /// every handle is dropped, after storing what it was given.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(store, rx));
        Self { tx }
    }

    /// Records an entry; never blocks. `at_us` of 0 is set to now.
    pub fn record(&self, mut entry: AuditEntry) {
        if entry.at_us == 0 {
            entry.at_us = chrono::Utc::now().timestamp_micros();
        }
        if entry.kind == "capability" {
            crate::metrics::prometheus::count_capability_call(
                entry.capability.as_deref().unwrap_or("unknown"),
                &entry.decision,
            );
        }
        if self.tx.send(Msg::Entry(Box::new(entry))).is_err() {
            tracing::error!(target: "meridian::audit", "the audit writer has stopped; an audit record was not stored");
        }
    }

    /// Waits until everything recorded before this call is stored.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn writer(store: Store, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut pending: Vec<AuditEntry> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        if pending.is_empty() && waiting.is_empty() {
            match rx.recv().await {
                Some(Msg::Entry(e)) => pending.push(*e),
                Some(Msg::Flush(f)) => waiting.push(f),
                None => return,
            }
        }
        drain(&mut rx, &mut pending, &mut waiting);
        // Group commit: unless someone waits for a flush, let a batch
        // gather for LINGER first. Steps record a call every few tens of
        // microseconds; one transaction per record was most of what the
        // trail added to a loopback HTTP call (BENCHMARKS.md, "Grant and
        // audit overhead").
        if waiting.is_empty() && !pending.is_empty() && pending.len() < BATCH {
            // A flush asked for meanwhile ends the wait: whoever waits
            // for it does not wait out the rest of LINGER too.
            let until = tokio::time::Instant::now() + LINGER;
            while waiting.is_empty() && pending.len() < BATCH {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => break,
                    msg = rx.recv() => match msg {
                        Some(Msg::Entry(e)) => pending.push(*e),
                        Some(Msg::Flush(f)) => waiting.push(f),
                        None => break,
                    },
                }
            }
            drain(&mut rx, &mut pending, &mut waiting);
        }
        if !pending.is_empty() {
            let mut delay = Duration::from_millis(50);
            loop {
                match store.append_audit(&pending).await {
                    Ok(records) => {
                        for r in &records {
                            mirror(r);
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, records = pending.len(), "storing audit records failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
            pending.clear();
        }
        for f in waiting.drain(..) {
            let _ = f.send(());
        }
    }
}

/// Takes what the channel holds now, up to a batch, stopping at a flush.
fn drain(
    rx: &mut mpsc::UnboundedReceiver<Msg>,
    pending: &mut Vec<AuditEntry>,
    waiting: &mut Vec<oneshot::Sender<()>>,
) {
    while pending.len() < BATCH {
        match rx.try_recv() {
            Ok(Msg::Entry(e)) => pending.push(*e),
            Ok(Msg::Flush(f)) => {
                waiting.push(f);
                break;
            }
            Err(_) => break,
        }
    }
}

/// Writes a stored record to the audit log files.
pub(crate) fn mirror(r: &AuditRecord) {
    let e = &r.entry;
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    tracing::info!(
        target: "meridian::audit",
        seq = r.seq,
        hash = %r.hash,
        prev_hash = %r.prev_hash,
        at_us = e.at_us,
        kind = %e.kind,
        actor = %s(&e.actor),
        plugin = %s(&e.plugin),
        digest = %s(&e.digest),
        job_id = %s(&e.job_id),
        execution_id = %s(&e.execution_id),
        step_id = %s(&e.step_id),
        capability = %s(&e.capability),
        target_name = %s(&e.target),
        decision = %e.decision,
        detail = %s(&e.detail),
        grant_hint = %s(&e.grant_hint),
        duration_us = e.duration_us.unwrap_or(0),
        "audit record"
    );
}

#[cfg(test)]
mod tests;
