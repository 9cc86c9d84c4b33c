//! The audit trail's records and table, and the stored grants. A record's
//! canonical encoding and hash are defined here, where records are
//! appended; [`crate::audit`] records, verifies and anchors the chain.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// What is recorded, before it has a place in the chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at_us: i64,
    /// `capability` or `grant`.
    pub kind: String,
    pub actor: Option<String>,
    pub plugin: Option<String>,
    pub digest: Option<String>,
    pub job_id: Option<String>,
    pub execution_id: Option<String>,
    pub step_id: Option<String>,
    pub capability: Option<String>,
    pub target: Option<String>,
    /// Capability calls: `allowed`, `denied` or `failed`; grant changes:
    /// `created` or `revoked`.
    pub decision: String,
    pub detail: Option<String>,
    pub grant_hint: Option<String>,
    pub duration_us: Option<i64>,
    /// JSON text (the grant of a grant change).
    pub data: Option<String>,
}

impl AuditEntry {
    /// The canonical encoding the hash covers: every field but `seq`, in a
    /// fixed order, as a JSON array.
    pub fn body(&self) -> String {
        // A tuple of references serialises as the same array, byte for
        // byte, as a `json!` value of the fields did, without copying each
        // string into a value tree first (most of what hashing a record
        // cost: BENCHMARKS.md, "Grant and audit overhead").
        let fields = (
            self.at_us,
            &self.kind,
            &self.actor,
            &self.plugin,
            &self.digest,
            &self.job_id,
            &self.execution_id,
            &self.step_id,
            &self.capability,
            &self.target,
            &self.decision,
            &self.detail,
            &self.grant_hint,
            self.duration_us,
            &self.data,
        );
        // Strings, integers and options of them: nothing here can fail.
        serde_json::to_string(&fields).unwrap_or_default()
    }

    /// This entry's hash when it follows `prev_hash`.
    pub fn chain_hash(&self, prev_hash: &str) -> String {
        let mut h = Sha256::new();
        h.update(prev_hash.as_bytes());
        h.update(b"\n");
        h.update(self.body().as_bytes());
        hex::encode(h.finalize())
    }
}

/// A stored record: an entry with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// A filter over the audit trail; every field narrows, `None` does not.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub kind: Option<String>,
    pub plugin: Option<String>,
    pub job_id: Option<String>,
    pub execution_id: Option<String>,
    pub capability: Option<String>,
    pub decision: Option<String>,
    /// Records at or after this instant (µs since the epoch).
    pub since_us: Option<i64>,
    /// Records before this instant.
    pub until_us: Option<i64>,
    /// Records after this `seq` (the paging cursor).
    pub after_seq: Option<i64>,
    /// At most this many, oldest first.
    pub limit: u32,
}

/// A grant stored through the CLI or the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    pub id: String,
    pub plugin: String,
    /// The grant as JSON, in the grants-file shape.
    pub spec: String,
    pub created_at_us: i64,
    pub created_by: String,
}

/// One line of [`Store::audit_usage`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageRow {
    pub capability: String,
    pub target: String,
    pub decision: String,
    pub calls: i64,
    pub last_us: i64,
}
