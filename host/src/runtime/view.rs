//! The page a security team reads for one plugin: what it asks for, what
//! it is granted, and what it actually used (from the audit trail) — shared
//! by `meridian plugins capabilities` and
//! GET /api/v2/plugins/{name}/capabilities.

use crate::runtime::Runtime;
use crate::store::{Store, StoreError};
use serde_json::{Value, json};

/// The capabilities view of a loaded plugin; `None` when no plugin has that
/// name.
pub async fn capabilities(
    runtime: &Runtime,
    store: &Store,
    plugin: &str,
) -> Result<Option<Value>, StoreError> {
    let Some(p) = runtime.plugin(plugin) else {
        return Ok(None);
    };
    let digest = p.info.digest.to_string();
    let granted: Vec<Value> = runtime
        .grant_entries()
        .into_iter()
        .filter(|e| e.grant.plugin == plugin)
        .map(|e| {
            let applies = e.grant.digest.as_deref().is_none_or(|d| d == digest);
            let mut v = serde_json::to_value(&e).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("applies".into(), json!(applies));
                if !applies {
                    o.insert(
                        "not_applied_because".into(),
                        json!(format!(
                            "bound to digest {}, the loaded component is {digest}",
                            e.grant.digest.as_deref().unwrap_or_default()
                        )),
                    );
                }
            }
            v
        })
        .collect();
    let used: Vec<Value> = store
        .audit_usage(plugin)
        .await?
        .into_iter()
        .map(|u| {
            json!({
                "capability": u.capability,
                "target": u.target,
                "decision": u.decision,
                "calls": u.calls,
                "last_at": chrono::DateTime::from_timestamp_micros(u.last_us)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            })
        })
        .collect();
    let denied: i64 = used
        .iter()
        .filter(|u| u["decision"] == "denied")
        .filter_map(|u| u["calls"].as_i64())
        .sum();
    Ok(Some(json!({
        "plugin": p.info.name,
        "version": p.info.version,
        "digest": digest,
        "asked": p.info.capabilities,
        "granted": granted,
        "used": used,
        "denied_calls": denied,
    })))
}

/// The same view as plain text, for the terminal.
pub fn capabilities_text(v: &Value) -> String {
    let mut out = String::new();
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    out.push_str(&format!(
        "plugin {} {}  {}\n",
        s(&v["plugin"]),
        s(&v["version"]),
        s(&v["digest"])
    ));
    out.push_str("\nasked for (describe):\n");
    let asked = v["asked"].as_array().cloned().unwrap_or_default();
    if asked.is_empty() {
        out.push_str("  (nothing)\n");
    }
    for a in &asked {
        out.push_str(&format!(
            "  {:<8} {:<40} {}\n",
            s(&a["kind"]),
            s(&a["target"]),
            s(&a["reason"])
        ));
    }
    out.push_str("\ngranted:\n");
    let granted = v["granted"].as_array().cloned().unwrap_or_default();
    if granted.is_empty() {
        out.push_str("  (nothing: every call is denied)\n");
    }
    for g in &granted {
        let mut grant = g["grant"].clone();
        if let Some(o) = grant.as_object_mut() {
            o.remove("plugin");
            o.retain(|_, v| !(v.is_null() || v.as_array().is_some_and(|a| a.is_empty())));
        }
        let by = match g["source"].as_str() {
            Some("stored") => format!(
                "stored by {} at {}",
                s(&g["created_by"]),
                s(&g["created_at"])
            ),
            _ => "config file".to_string(),
        };
        let applies = if g["applies"] == true {
            String::new()
        } else {
            format!("  NOT APPLIED: {}", s(&g["not_applied_because"]))
        };
        out.push_str(&format!("  {} ({by}){applies}\n    {grant}\n", s(&g["id"])));
    }
    out.push_str("\nused (audit trail):\n");
    let used = v["used"].as_array().cloned().unwrap_or_default();
    if used.is_empty() {
        out.push_str("  (no calls recorded)\n");
    }
    for u in &used {
        out.push_str(&format!(
            "  {:<8} {:<8} {:>6} calls, last {}  {}\n",
            s(&u["capability"]),
            s(&u["decision"]),
            u["calls"].as_i64().unwrap_or(0),
            s(&u["last_at"]),
            s(&u["target"])
        ));
    }
    out
}
