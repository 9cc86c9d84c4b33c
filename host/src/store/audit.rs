//! The audit trail's table and the stored grants (see [`crate::audit`] for
//! the chain itself).

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
