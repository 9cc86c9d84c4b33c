//! Refusals of requests without a valid token (none, or one that is
//! unknown or revoked), counted per source address and window instead of
//! recorded one by one.
//!
//! Anyone who can reach the port can send such requests, so recording
//! each as a hash-chained audit record (kept seven years) let a flood grow
//! the trail without bound. Instead each window (`[api]
//! refusal_window_s`) ends in at most one aggregate record per source
//! address: how many requests, how many had no token and how many an
//! invalid one, the window's start and end, and the routes hit most.
//! At most [`MAX_SOURCES`] addresses are told apart per window; the
//! requests of any further ones go to one record for "other sources", so
//! neither the memory held nor the records written grow with the flood.
//! The window is flushed when it ends and when `serve` stops.
//!
//! Refusals of a valid token (403) and every state change stay individual
//! records: only token holders can cause those.

use crate::audit::{AuditEntry, AuditLog};
use serde_json::json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

pub use crate::config::DEFAULT_REFUSAL_WINDOW as DEFAULT_WINDOW;
/// Source addresses told apart in one window; the rest are counted together.
pub const MAX_SOURCES: usize = 1024;
/// Routes counted apart per source; the rest are counted as `other`.
const MAX_ROUTES: usize = 8;
/// Routes named in a record's detail line.
const ROUTES_IN_DETAIL: usize = 3;

/// Why a request without a valid token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` header.
    NoToken,
    /// A token the store does not know, or one that was revoked.
    InvalidToken,
}

/// Where the refused requests came from: the peer address of the
/// connection, never a header the client wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Addr(IpAddr),
    /// No peer address (the router driven without a socket).
    Unknown,
    /// Past [`MAX_SOURCES`] in this window.
    Other,
}

impl Source {
    fn label(self) -> String {
        match self {
            Source::Addr(ip) => ip.to_string(),
            Source::Unknown => "unknown".into(),
            Source::Other => "other sources".into(),
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    count: u64,
    no_token: u64,
    invalid_token: u64,
    routes: HashMap<String, u64>,
    /// Requests on routes past [`MAX_ROUTES`].
    other_routes: u64,
}

#[derive(Debug, Default)]
struct Window {
    started_us: i64,
    tallies: HashMap<Source, Tally>,
}

/// The counts of the current window; shared by every request.
#[derive(Debug)]
pub struct RefusalTally {
    window: Duration,
    current: Mutex<Window>,
}

impl Default for RefusalTally {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

impl RefusalTally {
    /// A tally whose windows last `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            current: Mutex::new(Window::default()),
        }
    }

    /// How long a window lasts.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Counts one refused request from `peer` on `route` (`METHOD
    /// /route/{template}`: the matched template, so a client cannot grow
    /// the map with made-up paths).
    pub fn count(&self, peer: Option<IpAddr>, route: &str, why: Refusal) {
        let Ok(mut w) = self.current.lock() else {
            return;
        };
        if w.tallies.is_empty() {
            w.started_us = chrono::Utc::now().timestamp_micros();
        }
        let mut source = peer.map_or(Source::Unknown, Source::Addr);
        if !w.tallies.contains_key(&source) && w.tallies.len() >= MAX_SOURCES {
            source = Source::Other;
        }
        let t = w.tallies.entry(source).or_default();
        t.count += 1;
        match why {
            Refusal::NoToken => t.no_token += 1,
            Refusal::InvalidToken => t.invalid_token += 1,
        }
        if let Some(n) = t.routes.get_mut(route) {
            *n += 1;
        } else if t.routes.len() < MAX_ROUTES {
            t.routes.insert(route.to_owned(), 1);
        } else {
            t.other_routes += 1;
        }
    }

    /// Ends the current window: one audit record per source it counted
    /// (none when nothing was refused), and a new window begins.
    pub fn flush(&self, audit: &AuditLog) {
        let window = match self.current.lock() {
            Ok(mut w) => std::mem::take(&mut *w),
            Err(_) => return,
        };
        for entry in records(window, chrono::Utc::now().timestamp_micros()) {
            audit.record(entry);
        }
    }

    /// Flushes every window's end until the task is aborted.
    pub fn spawn_flusher(
        self: std::sync::Arc<Self>,
        audit: AuditLog,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(self.window);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate: nothing to flush yet.
            every.tick().await;
            loop {
                every.tick().await;
                self.flush(&audit);
            }
        })
    }
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The aggregate records of a finished window, ordered by source (the
/// "other sources" one last).
fn records(window: Window, end_us: i64) -> Vec<AuditEntry> {
    let mut tallies: Vec<(Source, Tally)> = window.tallies.into_iter().collect();
    tallies.sort_by_key(|(s, _)| match s {
        Source::Addr(ip) => (0, Some(*ip)),
        Source::Unknown => (1, None),
        Source::Other => (2, None),
    });
    let (start, end) = (rfc3339(window.started_us), rfc3339(end_us));
    tallies
        .into_iter()
        .map(|(source, t)| {
            let mut routes: Vec<(String, u64)> = t.routes.into_iter().collect();
            routes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            if t.other_routes > 0 {
                routes.push(("other".into(), t.other_routes));
            }
            let most_hit = routes
                .iter()
                .take(ROUTES_IN_DETAIL)
                .map(|(r, n)| format!("{r} ({n})"))
                .collect::<Vec<_>>()
                .join(", ");
            let label = source.label();
            let from = match source {
                Source::Other => format!("from the sources past the first {MAX_SOURCES}"),
                _ => format!("from {label}"),
            };
            let data = json!({
                "source": label,
                "count": t.count,
                "no_token": t.no_token,
                "invalid_token": t.invalid_token,
                "window_start": start,
                "window_end": end,
                "routes": routes.iter().map(|(r, n)| json!({"route": r, "count": n})).collect::<Vec<_>>(),
            });
            AuditEntry {
                at_us: end_us,
                kind: "api".into(),
                actor: Some("anonymous".into()),
                target: Some(label),
                decision: "unauthenticated".into(),
                detail: Some(format!(
                    "{} requests without a valid token {from} between {start} and {end} \
                     ({} without a token, {} with an unknown or revoked one); most hit: {most_hit}",
                    t.count, t.no_token, t.invalid_token
                )),
                data: Some(data.to_string()),
                ..Default::default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn take(t: &RefusalTally) -> Vec<AuditEntry> {
        let w = std::mem::take(&mut *t.current.lock().unwrap());
        records(w, 1)
    }

    fn data(e: &AuditEntry) -> serde_json::Value {
        serde_json::from_str(e.data.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn one_record_per_source_with_its_counts_and_routes() {
        let t = RefusalTally::default();
        let a = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        for _ in 0..5 {
            t.count(a, "GET /api/v2/jobs", Refusal::NoToken);
        }
        t.count(a, "POST /api/v2/tokens", Refusal::InvalidToken);
        t.count(None, "GET /api/v2/jobs", Refusal::NoToken);
        let rs = take(&t);
        assert_eq!(rs.len(), 2, "{rs:#?}");
        assert_eq!(rs[0].target.as_deref(), Some("10.0.0.1"));
        let d = data(&rs[0]);
        assert_eq!(
            (d["count"].as_u64(), d["no_token"].as_u64()),
            (Some(6), Some(5))
        );
        assert_eq!(d["invalid_token"], 1);
        assert_eq!(d["routes"][0]["route"], "GET /api/v2/jobs");
        assert_eq!(d["routes"][0]["count"], 5);
        assert!(
            rs[0]
                .detail
                .as_deref()
                .unwrap()
                .contains("most hit: GET /api/v2/jobs (5), POST /api/v2/tokens (1)"),
            "{rs:#?}"
        );
        assert_eq!(rs[1].target.as_deref(), Some("unknown"));
        assert_eq!(rs[1].decision, "unauthenticated");
        // A new window starts empty.
        assert!(take(&t).is_empty());
    }

    #[test]
    fn sources_and_routes_past_their_bounds_are_counted_together() {
        let t = RefusalTally::default();
        let n = MAX_SOURCES as u32 + 500;
        for i in 0..n {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            t.count(Some(ip), "GET /x", Refusal::NoToken);
            t.count(Some(ip), "GET /x", Refusal::NoToken);
        }
        let a = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)));
        for i in 0..(MAX_ROUTES + 3) {
            t.count(a, &format!("GET /r{i}"), Refusal::NoToken);
        }
        let rs = take(&t);
        assert_eq!(rs.len(), MAX_SOURCES + 1);
        let other = data(rs.last().unwrap());
        assert_eq!(other["source"], "other sources");
        assert_eq!(other["count"], 1000);
        let total: u64 = rs.iter().map(|r| data(r)["count"].as_u64().unwrap()).sum();
        assert_eq!(total, u64::from(n) * 2 + (MAX_ROUTES as u64 + 3));
        let first = data(&rs[0]);
        let routes = first["routes"].as_array().unwrap();
        assert_eq!(routes.len(), MAX_ROUTES + 1);
        // `GET /x` and the first seven of the new routes are named.
        assert_eq!(routes.last().unwrap()["route"], "other");
        assert_eq!(routes.last().unwrap()["count"], 4);
    }
}
