//! What a step asks for in `describe`.
//!
//! The host grants a step the intersection of what it asks for and what an
//! operator granted, so asking is part of the contract: a capability that is
//! not asked for is never granted, and the reason is what the operator reads
//! before granting it.

use crate::bindings::meridian::step::types as wit;

/// The host capabilities a step can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapabilityKind {
    /// Structured log lines ([`crate::log`]).
    Log,
    /// Named secrets ([`crate::secrets`]).
    Secrets,
    /// SQL on named connections ([`crate::sql`]).
    Sql,
    /// Child processes ([`crate::process`]).
    Process,
    /// Outbound HTTP ([`crate::http`]).
    Http,
}

impl CapabilityKind {
    /// The name the host, the grants file and denials use.
    pub fn as_str(self) -> &'static str {
        match self {
            CapabilityKind::Log => "log",
            CapabilityKind::Secrets => "secrets",
            CapabilityKind::Sql => "sql",
            CapabilityKind::Process => "process",
            CapabilityKind::Http => "http",
        }
    }
}

impl std::fmt::Display for CapabilityKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One capability a step asks for, returned from
/// [`Step::capabilities`](crate::Step::capabilities).
///
/// ```
/// use meridian_sdk::Capability;
///
/// let asks = vec![
///     Capability::http("https://api.example.com/v1", "reads the status API"),
///     Capability::secret("api_token", "authenticates to the status API"),
/// ];
/// assert_eq!(asks[1].target, "api_token");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// Which capability.
    pub kind: CapabilityKind,
    /// What it wants to reach: a URL pattern (`https://*.example.com/api`), a
    /// secret name, a connection name, a program path; `*` for anything the
    /// operator grants.
    pub target: String,
    /// Why the step needs it, shown to the operator who grants it.
    pub reason: String,
}

impl Capability {
    /// Asks for a capability of any kind.
    pub fn new(kind: CapabilityKind, target: impl Into<String>, reason: impl Into<String>) -> Self {
        Capability {
            kind,
            target: target.into(),
            reason: reason.into(),
        }
    }

    /// Outbound HTTP to URLs matching `url_pattern` (`*` for any URL granted).
    pub fn http(url_pattern: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(CapabilityKind::Http, url_pattern, reason)
    }

    /// The secret called `name` (`*` for any secret granted).
    pub fn secret(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(CapabilityKind::Secrets, name, reason)
    }

    /// SQL on the connection called `connection` (`*` for any granted).
    pub fn sql(connection: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(CapabilityKind::Sql, connection, reason)
    }

    /// Running the program at the absolute path `program` (`*` for any granted).
    pub fn process(program: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(CapabilityKind::Process, program, reason)
    }

    /// Writing to the execution's log.
    pub fn log(reason: impl Into<String>) -> Self {
        Self::new(CapabilityKind::Log, "*", reason)
    }

    pub(crate) fn into_wit(self) -> wit::CapabilityRequest {
        wit::CapabilityRequest {
            kind: match self.kind {
                CapabilityKind::Log => wit::CapabilityKind::Log,
                CapabilityKind::Secrets => wit::CapabilityKind::Secrets,
                CapabilityKind::Sql => wit::CapabilityKind::Sql,
                CapabilityKind::Process => wit::CapabilityKind::Process,
                CapabilityKind::Http => wit::CapabilityKind::Http,
            },
            target: self.target,
            reason: self.reason,
        }
    }
}
