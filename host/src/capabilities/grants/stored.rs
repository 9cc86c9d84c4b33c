//! Grants made at run time (`meridian grants add`, and the API) beside the
//! ones in the config file.
//!
//! A stored grant has exactly the shape of a `[[grants]]` table, kept as
//! JSON in the store's `grants` table. The effective grants are those of
//! the config plus the stored ones; a serving node re-reads the stored
//! grants every couple of seconds and applies a change to the next step
//! that starts (a running step keeps what it started with). Every change
//! is written in the same transaction as its audit record (kind `grant`,
//! decision `created` or `revoked`, the grant itself as data, and who made
//! it), so the trail cannot miss one.

use super::{GrantError, GrantSpec, Grants};
use crate::audit::{AuditEntry, AuditRecord};
use crate::store::{GrantRow, Store, StoreError};
use serde::Serialize;

/// One grant with where it comes from.
#[derive(Debug, Clone, Serialize)]
pub struct GrantEntry {
    /// `config[N]` for the config's grants, the stored id otherwise.
    pub id: String,
    #[serde(flatten)]
    pub origin: GrantOrigin,
    pub grant: GrantSpec,
}

/// Where a grant was made.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum GrantOrigin {
    /// The config file or its grants file; changed by editing the file.
    Config,
    /// Through the CLI or the API.
    Stored {
        created_by: String,
        /// RFC 3339.
        created_at: String,
    },
}

/// Why a grant change was refused.
#[derive(Debug, thiserror::Error)]
pub enum GrantChangeError {
    /// The grant does not parse; each problem names its field.
    #[error("invalid grant: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<GrantError>),
    #[error("no stored grant {0:?} (grants from the config file are changed by editing it)")]
    NotFound(String),
    #[error(transparent)]
    Store(StoreError),
}

/// The config's grants as entries.
pub fn from_config(specs: &[GrantSpec]) -> Vec<GrantEntry> {
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| GrantEntry {
            id: format!("config[{i}]"),
            origin: GrantOrigin::Config,
            grant: spec.clone(),
        })
        .collect()
}

/// The stored grants. One that no longer parses (written by a newer
/// version, or edited by hand) is left out with an error in the log: deny
/// by default.
pub async fn load(store: &Store) -> Result<Vec<GrantEntry>, StoreError> {
    let rows = store.list_grants().await?;
    Ok(rows.iter().filter_map(entry_of).collect())
}

fn entry_of(row: &GrantRow) -> Option<GrantEntry> {
    let grant: GrantSpec = match serde_json::from_str(&row.spec) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(grant = %row.id, error = %e, "a stored grant does not parse; it is not applied");
            return None;
        }
    };
    if let Err(errors) = Grants::parse(std::slice::from_ref(&grant), "grant") {
        tracing::error!(grant = %row.id, errors = ?errors, "a stored grant is invalid; it is not applied");
        return None;
    }
    Some(GrantEntry {
        id: row.id.clone(),
        origin: GrantOrigin::Stored {
            created_by: row.created_by.clone(),
            created_at: rfc3339(row.created_at_us),
        },
        grant,
    })
}

/// The grants in force: the config's, then the stored ones.
pub async fn in_force(config: &[GrantSpec], store: &Store) -> Result<Vec<GrantEntry>, StoreError> {
    let mut entries = from_config(config);
    entries.extend(load(store).await?);
    Ok(entries)
}

/// How often a serving node re-reads the stored grants.
pub const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Re-reads the stored grants every [`WATCH_INTERVAL`] and hands a change
/// (made by `meridian grants`, or another node's API), with the config's
/// grants, to `apply` (a node's `Runtime::replace_grants`). Runs until the
/// task is aborted.
pub fn watch<F>(config: Vec<GrantSpec>, store: Store, apply: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(Vec<GrantEntry>) -> Result<(), Vec<GrantError>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut seen: Option<Vec<GrantRow>> = None;
        loop {
            match store.list_grants().await {
                Ok(rows) if seen.as_ref() != Some(&rows) => {
                    let mut entries = from_config(&config);
                    entries.extend(rows.iter().filter_map(entry_of));
                    match apply(entries) {
                        Ok(()) => {
                            if seen.is_some() {
                                tracing::info!(
                                    stored = rows.len(),
                                    "stored grants changed; applied to new steps"
                                );
                            }
                            seen = Some(rows);
                        }
                        Err(errors) => {
                            tracing::error!(
                                ?errors,
                                "the grants do not parse; keeping the previous ones"
                            );
                            seen = Some(rows);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reading the stored grants failed"),
            }
            tokio::time::sleep(WATCH_INTERVAL).await;
        }
    })
}

/// Parses every entry into one set of grants; errors name the entry's id.
pub fn combine(entries: &[GrantEntry]) -> Result<Grants, Vec<GrantError>> {
    let mut all = Grants::default();
    let mut errors = Vec::new();
    for e in entries {
        match parse_one(&e.grant) {
            Ok(g) => all.extend(g),
            Err(errs) => errors.extend(errs.into_iter().map(|mut err| {
                err.path = if err.path.is_empty() {
                    e.id.clone()
                } else {
                    format!("{}.{}", e.id, err.path)
                };
                err
            })),
        }
    }
    if errors.is_empty() {
        Ok(all)
    } else {
        Err(errors)
    }
}

/// Parses one grant; error paths are relative to it (`http[0].host`).
pub fn parse_one(spec: &GrantSpec) -> Result<Grants, Vec<GrantError>> {
    Grants::parse(std::slice::from_ref(spec), "").map_err(|errors| {
        errors
            .into_iter()
            .map(|mut e| {
                e.path = e
                    .path
                    .strip_prefix("[0]")
                    .unwrap_or(&e.path)
                    .trim_start_matches('.')
                    .to_string();
                e
            })
            .collect()
    })
}

/// Reads a grant from JSON; a shape error names its JSON path.
pub fn from_json(value: serde_json::Value) -> Result<GrantSpec, Vec<GrantError>> {
    serde_path_to_error::deserialize::<_, GrantSpec>(value).map_err(|e| {
        vec![GrantError {
            path: meridian_json_path::JsonPath::from_serde(e.path()).into(),
            message: e.inner().to_string(),
        }]
    })
}

/// The grant as stored (JSON), once it is known to parse.
fn checked_spec(grant: &GrantSpec) -> Result<String, GrantChangeError> {
    parse_one(grant).map_err(GrantChangeError::Invalid)?;
    serde_json::to_string(grant).map_err(|e| {
        GrantChangeError::Invalid(vec![GrantError {
            path: String::new(),
            message: e.to_string(),
        }])
    })
}

/// Stores a new grant, with its audit record, after checking it parses.
pub async fn create(
    store: &Store,
    grant: GrantSpec,
    actor: &str,
) -> Result<(GrantEntry, AuditRecord), GrantChangeError> {
    let spec = checked_spec(&grant)?;
    let now_us = chrono::Utc::now().timestamp_micros();
    let row = GrantRow {
        id: uuid::Uuid::now_v7().to_string(),
        plugin: grant.plugin.clone(),
        spec: spec.clone(),
        created_at_us: now_us,
        created_by: actor.to_string(),
    };
    let audit = change_record(&row, "created", actor, now_us);
    let record = store
        .insert_grant(&row, &audit)
        .await
        .map_err(GrantChangeError::Store)?;
    crate::audit::mirror(&record);
    let entry = GrantEntry {
        id: row.id,
        origin: GrantOrigin::Stored {
            created_by: actor.to_string(),
            created_at: rfc3339(now_us),
        },
        grant,
    };
    Ok((entry, record))
}

/// Replaces a stored grant's definition, with its audit record (decision
/// `replaced`, the new grant as data, the previous one in the detail),
/// after checking the new one parses.
pub async fn replace(
    store: &Store,
    id: &str,
    grant: GrantSpec,
    actor: &str,
) -> Result<(GrantEntry, AuditRecord), GrantChangeError> {
    let spec = checked_spec(&grant)?;
    let now_us = chrono::Utc::now().timestamp_micros();
    let (row, record) = store
        .replace_grant(id, &grant.plugin, &spec, |old, new| {
            let mut entry = change_record(new, "replaced", actor, now_us);
            entry.detail = Some(format!("replaces {}", old.spec));
            entry
        })
        .await
        .map_err(|e| match e {
            StoreError::NotFound { .. } => GrantChangeError::NotFound(id.to_string()),
            e => GrantChangeError::Store(e),
        })?;
    crate::audit::mirror(&record);
    let entry = GrantEntry {
        id: row.id,
        origin: GrantOrigin::Stored {
            created_by: row.created_by,
            created_at: rfc3339(row.created_at_us),
        },
        grant,
    };
    Ok((entry, record))
}

/// Deletes a stored grant, with its audit record.
pub async fn revoke(
    store: &Store,
    id: &str,
    actor: &str,
) -> Result<(GrantRow, AuditRecord), GrantChangeError> {
    let now_us = chrono::Utc::now().timestamp_micros();
    let (row, record) = store
        .delete_grant(id, |row| change_record(row, "revoked", actor, now_us))
        .await
        .map_err(|e| match e {
            StoreError::NotFound { .. } => GrantChangeError::NotFound(id.to_string()),
            e => GrantChangeError::Store(e),
        })?;
    crate::audit::mirror(&record);
    Ok((row, record))
}

fn change_record(row: &GrantRow, decision: &str, actor: &str, at_us: i64) -> AuditEntry {
    let digest = serde_json::from_str::<serde_json::Value>(&row.spec)
        .ok()
        .and_then(|v| v.get("digest").and_then(|d| d.as_str()).map(String::from));
    AuditEntry {
        at_us,
        kind: "grant".into(),
        actor: Some(actor.to_string()),
        plugin: Some(row.plugin.clone()),
        digest,
        target: Some(row.id.clone()),
        decision: decision.to_string(),
        data: Some(row.spec.clone()),
        ..Default::default()
    }
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_replaced_grant_keeps_its_id_and_is_audited_in_one_step() {
        let store = Store::open_memory().await.unwrap();
        let spec = from_json(json!({"plugin": "http", "secrets": ["a"]})).unwrap();
        let (entry, _) = create(&store, spec, "cli:alice").await.unwrap();
        let spec = from_json(json!({"plugin": "http", "secrets": ["b"]})).unwrap();
        let (replaced, record) = replace(&store, &entry.id, spec, "cli:bob").await.unwrap();
        assert_eq!(replaced.id, entry.id);
        assert_eq!(record.entry.decision, "replaced");
        assert_eq!(record.entry.actor.as_deref(), Some("cli:bob"));
        assert!(record.entry.detail.unwrap().contains(r#"["a"]"#));
        let loaded = load(&store).await.unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].grant.secrets, vec!["b".to_string()]);
        let bad = from_json(
            json!({"plugin": "http", "http": [{"host": "a.example", "scheme": ["gopher"]}]}),
        )
        .unwrap();
        assert!(matches!(
            replace(&store, &entry.id, bad, "cli:bob").await,
            Err(GrantChangeError::Invalid(_))
        ));
        assert_eq!(load(&store).await.unwrap()[0].grant.secrets, ["b"]);
        assert!(crate::audit::verify_store(&store).await.unwrap().ok);
    }

    #[tokio::test]
    async fn a_grant_change_is_stored_with_its_audit_record() {
        let store = Store::open_memory().await.unwrap();
        let spec = from_json(json!({
            "plugin": "http",
            "secrets": ["token"],
            "http": [{"host": "api.example.com", "methods": ["GET"]}]
        }))
        .unwrap();
        let (entry, created) = create(&store, spec, "cli:alice").await.unwrap();
        assert_eq!(created.entry.decision, "created");
        assert_eq!(created.entry.actor.as_deref(), Some("cli:alice"));
        let loaded = load(&store).await.unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].grant.secrets, vec!["token".to_string()]);
        let all = combine(&loaded).unwrap();
        drop(all);

        let (_, revoked) = revoke(&store, &entry.id, "cli:bob").await.unwrap();
        assert_eq!(revoked.entry.decision, "revoked");
        assert_eq!(revoked.entry.target.as_deref(), Some(entry.id.as_str()));
        assert!(load(&store).await.unwrap().is_empty());
        let report = crate::audit::verify_store(&store).await.unwrap();
        assert!(report.ok);
        assert_eq!(report.records, 2);
        let spec = from_json(json!({"plugin": "http", "secrets": ["other"]})).unwrap();
        assert!(matches!(
            replace(&store, &entry.id, spec, "cli:bob").await,
            Err(GrantChangeError::NotFound(_))
        ));
        assert!(matches!(
            revoke(&store, &entry.id, "cli:bob").await,
            Err(GrantChangeError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn an_invalid_grant_is_refused_with_its_path_and_nothing_is_stored() {
        let store = Store::open_memory().await.unwrap();
        let err = from_json(json!({"plugin": "http", "http": [{"host": 3}]})).unwrap_err();
        assert_eq!(err[0].path, "http[0].host");
        let err = from_json(json!({"plugin": "http", "sercets": []})).unwrap_err();
        assert!(err[0].message.contains("sercets"), "{err:?}");

        let bad = from_json(
            json!({"plugin": "http", "http": [{"host": "a.example", "scheme": ["gopher"]}]}),
        )
        .unwrap();
        let Err(GrantChangeError::Invalid(errors)) = create(&store, bad, "cli:x").await else {
            panic!("accepted");
        };
        assert!(errors[0].path.starts_with("http[0]"), "{errors:?}");
        assert!(store.list_grants().await.unwrap().is_empty());
        assert_eq!(store.audit_head().await.unwrap().0, 0);
    }
}
