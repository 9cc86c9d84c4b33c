//! API tokens (see [`crate::auth`]): stored by the SHA-256 of the token.

/// A stored token, without the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub hash: String,
    pub created_at_us: i64,
    pub created_by: String,
    pub last_used_at_us: Option<i64>,
    pub revoked_at_us: Option<i64>,
}
