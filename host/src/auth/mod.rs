//! API tokens and roles.
//!
//! A token is `mrd_` followed by 64 hex digits (32 bytes from the OS's
//! CSPRNG); the store keeps only its SHA-256 (a fast hash is right here:
//! the token has 256 bits of entropy, nothing to brute-force), so a copy of
//! the database holds no usable token. A token has a unique name and one
//! role:
//!
//! | role     | may                                                          |
//! |----------|--------------------------------------------------------------|
//! | viewer   | read jobs, schedules, executions, logs, queues, plugins      |
//! | operator | viewer + create, change, delete, run, cancel, trigger         |
//! | auditor  | viewer + the audit trail, the grants, plugin capabilities    |
//! | admin    | everything, including grant, token and plugin changes        |
//!
//! What a route needs is [`required`], one table keyed by the route's
//! template, so every route is covered and a new one must be placed. The
//! first `meridian serve` on a store without a live token makes an `admin`
//! token and prints it once. Token changes, like grant changes, are stored
//! in the same transaction as their audit record.

use crate::audit::{AuditEntry, AuditRecord};
use crate::store::{Store, StoreError, TokenRow};
use axum::http::Method;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// What a token may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Auditor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Auditor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Auditor => "auditor",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this role may use a route that needs `p`.
    pub fn allows(self, p: Permission) -> bool {
        match p {
            Permission::Public | Permission::Read => true,
            Permission::Operate => matches!(self, Self::Operator | Self::Admin),
            Permission::Audit => matches!(self, Self::Auditor | Self::Admin),
            Permission::Admin => self == Self::Admin,
        }
    }
}

/// What a route needs. Each API route says which in its
/// `#[utoipa::path]` attribute (`x-required-permission`, beside its method
/// and path; see `api::route_permission`): reads need any token, a change
/// needs `operator`, the security team's resources need `auditor`, grants
/// and tokens need `admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// No token (the health check, for load balancers).
    Public,
    /// Any role.
    Read,
    /// operator or admin.
    Operate,
    /// auditor or admin.
    Audit,
    /// admin.
    Admin,
}

/// Whether a request changes state (and so goes on the audit trail even
/// when it succeeds): any but a read-only method, unless the route needs
/// no more than reading (checking a job or previewing a schedule is a
/// POST or GET that changes nothing; a route that let a viewer change
/// something would be a hole in itself).
pub fn changes_state(method: &Method, need: Permission) -> bool {
    let read_only = method == Method::GET || method == Method::HEAD || method == Method::OPTIONS;
    !read_only && !matches!(need, Permission::Public | Permission::Read)
}

/// Who is calling, as the API's handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub token_id: String,
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// The actor recorded on the audit trail.
    pub fn actor(&self) -> String {
        format!("token:{}", self.name)
    }
}

/// Why a token change was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("name: {0}")]
    InvalidName(String),
    #[error("role: {0:?} is not one of viewer, operator, auditor, admin")]
    InvalidRole(String),
    #[error("name: a token named {0:?} already exists")]
    NameTaken(String),
    #[error("no live token {0:?}")]
    NotFound(String),
    #[error("the system's random number generator failed: {0}")]
    Random(String),
    #[error(transparent)]
    Store(StoreError),
}

/// A new random token.
pub fn generate() -> Result<String, TokenError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(format!("mrd_{}", hex::encode(bytes)))
}

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Token names: 1–64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Makes a token; returns it (shown once) with its row and audit record.
pub async fn create_token(
    store: &Store,
    name: Option<&str>,
    role: Role,
    actor: &str,
) -> Result<(String, TokenRow, AuditRecord), TokenError> {
    let id = uuid::Uuid::now_v7().to_string();
    let name = match name {
        Some(n) if valid_name(n) => n.to_string(),
        Some(n) => {
            return Err(TokenError::InvalidName(format!(
                "{n:?} must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
            )));
        }
        None => format!("{}-{}", role.as_str(), &id[id.len() - 8..]),
    };
    let token = generate()?;
    let now_us = chrono::Utc::now().timestamp_micros();
    let row = TokenRow {
        id,
        name,
        role: role.as_str().to_string(),
        hash: hash(&token),
        created_at_us: now_us,
        created_by: actor.to_string(),
        last_used_at_us: None,
        revoked_at_us: None,
    };
    let audit = change_record(&row, "created", actor, now_us);
    let record = store
        .insert_token(&row, &audit)
        .await
        .map_err(|e| match e {
            StoreError::Conflict { id, .. } => TokenError::NameTaken(id),
            e => TokenError::Store(e),
        })?;
    crate::audit::mirror(&record);
    Ok((token, row, record))
}

/// Revokes a live token by id or name.
pub async fn revoke_token(
    store: &Store,
    id_or_name: &str,
    actor: &str,
) -> Result<(TokenRow, AuditRecord), TokenError> {
    let now_us = chrono::Utc::now().timestamp_micros();
    let (row, record) = store
        .revoke_token(id_or_name, now_us, |row| {
            change_record(row, "revoked", actor, now_us)
        })
        .await
        .map_err(|e| match e {
            StoreError::NotFound { .. } => TokenError::NotFound(id_or_name.to_string()),
            e => TokenError::Store(e),
        })?;
    crate::audit::mirror(&record);
    Ok((row, record))
}

/// On a store without a live token, makes the first `admin` token and
/// returns it (to be shown once); `None` when tokens exist.
pub async fn ensure_first_admin(store: &Store) -> Result<Option<String>, TokenError> {
    if store.any_live_token().await.map_err(TokenError::Store)? {
        return Ok(None);
    }
    let name = format!("admin-{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    let (token, _, _) =
        create_token(store, Some(&name), Role::Admin, "meridian:first-start").await?;
    Ok(Some(token))
}

/// The caller a presented token stands for; `None` when it is unknown or
/// revoked.
pub async fn authenticate(store: &Store, token: &str) -> Result<Option<Caller>, StoreError> {
    if !token.starts_with("mrd_") {
        return Ok(None);
    }
    let Some(row) = store.token_by_hash(&hash(token)).await? else {
        return Ok(None);
    };
    let Some(role) = Role::parse(&row.role) else {
        tracing::error!(token = %row.name, role = %row.role, "a stored token has an unknown role; refused");
        return Ok(None);
    };
    Ok(Some(Caller {
        token_id: row.id,
        name: row.name,
        role,
    }))
}

/// A token as listed (never the token itself).
pub fn view(row: &TokenRow) -> serde_json::Value {
    let t = |us: Option<i64>| {
        us.and_then(chrono::DateTime::from_timestamp_micros)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    serde_json::json!({
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "created_at": t(Some(row.created_at_us)),
        "created_by": row.created_by,
        "last_used_at": t(row.last_used_at_us),
        "revoked_at": t(row.revoked_at_us),
    })
}

fn change_record(row: &TokenRow, decision: &str, actor: &str, at_us: i64) -> AuditEntry {
    AuditEntry {
        at_us,
        kind: "token".into(),
        actor: Some(actor.to_string()),
        target: Some(row.name.clone()),
        decision: decision.to_string(),
        detail: Some(format!("role {}", row.role)),
        data: Some(serde_json::json!({ "id": row.id, "role": row.role }).to_string()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn a_token_authenticates_until_revoked_and_only_its_hash_is_stored() {
        let store = Store::open_memory().await.unwrap();
        let first = ensure_first_admin(&store).await.unwrap().unwrap();
        assert!(ensure_first_admin(&store).await.unwrap().is_none());
        let admin = authenticate(&store, &first).await.unwrap().unwrap();
        assert_eq!(admin.role, Role::Admin);

        let (token, row, record) = create_token(&store, Some("ci-bot"), Role::Operator, "cli:ops")
            .await
            .unwrap();
        assert!(token.starts_with("mrd_") && token.len() == 68, "{token}");
        assert_eq!(row.hash, hash(&token));
        assert_eq!(record.entry.kind, "token");
        assert_eq!(record.entry.target.as_deref(), Some("ci-bot"));
        let listed = store.list_tokens().await.unwrap();
        assert!(
            listed
                .iter()
                .all(|t| t.hash != token && !t.hash.contains(&token[4..]))
        );
        assert_eq!(
            authenticate(&store, &token).await.unwrap().unwrap().name,
            "ci-bot"
        );
        assert!(matches!(
            create_token(&store, Some("ci-bot"), Role::Viewer, "cli:ops").await,
            Err(TokenError::NameTaken(_))
        ));
        assert!(matches!(
            create_token(&store, Some("no spaces"), Role::Viewer, "cli:ops").await,
            Err(TokenError::InvalidName(_))
        ));
        // A token that differs in one character is nobody.
        let mut forged = token.clone();
        forged.pop();
        forged.push(if token.ends_with('0') { '1' } else { '0' });
        assert!(authenticate(&store, &forged).await.unwrap().is_none());
        assert!(authenticate(&store, "Bearer x").await.unwrap().is_none());

        revoke_token(&store, "ci-bot", "cli:ops").await.unwrap();
        assert!(authenticate(&store, &token).await.unwrap().is_none());
        assert!(matches!(
            revoke_token(&store, "ci-bot", "cli:ops").await,
            Err(TokenError::NotFound(_))
        ));
        assert!(crate::audit::verify_store(&store).await.unwrap().ok);
    }

    #[test]
    fn roles_and_permissions() {
        use Permission::*;
        let get = Method::GET;
        let post = Method::POST;
        assert!(!changes_state(&post, Read));
        assert!(changes_state(&post, Operate));
        assert!(changes_state(&Method::DELETE, Admin));
        assert!(!changes_state(&get, Admin));
        assert!(Role::Viewer.allows(Read) && !Role::Viewer.allows(Operate));
        assert!(Role::Operator.allows(Operate) && !Role::Operator.allows(Audit));
        assert!(Role::Auditor.allows(Audit) && !Role::Auditor.allows(Operate));
        assert!(!Role::Auditor.allows(Admin) && !Role::Operator.allows(Admin));
        assert!(
            Role::ALL
                .iter()
                .all(|r| Role::Admin.allows(Permission::Admin) && r.allows(Read))
        );
    }
}
