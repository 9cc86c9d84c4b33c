//! The web UI: static assets embedded in the binary, served at `/ui/`.
//!
//! The UI is hand-written HTML, CSS and JavaScript (ES modules, no build
//! step, no third-party code) in `assets/`; `include_bytes!` puts each file
//! in the binary, so `meridian serve` alone serves it. Everything the UI
//! shows or changes goes through the REST API with the bearer token the user
//! signed in with: these routes ([`ROUTES`]) are public for reading (see
//! [`permission`]) and hand out nothing but the assets. They are the only
//! routes outside the OpenAPI document.
//!
//! Every answer carries a strict Content-Security-Policy (only this origin's
//! scripts and styles, no inline script or style, no framing),
//! `X-Content-Type-Options: nosniff` and an ETag (a SHA-256 of the asset,
//! computed once); browsers revalidate (`Cache-Control: no-cache`) and get a
//! 304 while the binary is the same.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest as _, Sha256};
use std::sync::LazyLock;

/// The policy every UI answer carries: scripts, styles, images and API
/// calls from this origin only; nothing inline, no plugins, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Its name under `/ui/`.
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// The UI's files.
pub static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("jobs.js", JS),
    asset!("builder.js", JS),
    asset!("schema-form.js", JS),
    asset!("schedule.js", JS),
    asset!("monitor.js", JS),
    asset!("dashboard.js", JS),
    asset!("plugins.js", JS),
    asset!("tokens.js", JS),
];

/// Each asset's ETag, computed on first use.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.bytes))[..32]))
        .collect()
});

/// The total size of the UI's files (what a first visit downloads).
pub fn total_bytes() -> usize {
    ASSETS.iter().map(|a| a.bytes.len()).sum()
}

/// The UI's routes; the API's router merges them (inside its guard, where
/// they are public).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let [root, ui, index_page, files] = ROUTES;
    Router::new()
        .route(root, get(|| async { Redirect::to("/ui/") }))
        .route(ui, get(|| async { Redirect::to("/ui/") }))
        .route(index_page, get(index))
        .route(files, get(file))
}

/// The UI's routes: `/` and `/ui` redirect to `/ui/`, which serves
/// `index.html`; `/ui/{file}` the other assets.
pub const ROUTES: [&str; 4] = ["/", "/ui", "/ui/", "/ui/{file}"];

/// What a UI route needs: nothing, to read it (GET, and HEAD, which axum
/// answers with the GET handler); `None` for anything else, which the
/// guard refuses.
pub fn permission(method: &axum::http::Method, route: &str) -> Option<crate::auth::Permission> {
    let read = method == axum::http::Method::GET || method == axum::http::Method::HEAD;
    (read && ROUTES.contains(&route)).then_some(crate::auth::Permission::Public)
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some((i, asset)) = ASSETS.iter().enumerate().find(|(_, a)| a.name == name) else {
        let mut res = super::Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "No such file in the web UI",
        )
        .into_response();
        secure(res.headers_mut());
        return res;
    };
    let etag = ETAGS.get(i).map_or("", String::as_str);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.bytes,
        )
            .into_response()
    };
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(h);
    res
}

/// The security headers of every UI answer.
fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn every_asset_the_page_names_is_embedded_and_nothing_is_inline() {
        let index = std::str::from_utf8(ASSETS[0].bytes).unwrap();
        assert!(index.starts_with("<!DOCTYPE html>"));
        assert!(!index.contains("<script>") && !index.contains("style="));
        for a in ASSETS {
            let text = std::str::from_utf8(a.bytes).unwrap();
            assert!(!text.contains("eval("), "{}", a.name);
            if a.name.ends_with(".js") {
                // Every module another imports is served.
                for line in text.lines().filter(|l| l.starts_with("import ")) {
                    let from = line.rsplit("from ").next().unwrap();
                    let file = from.trim_matches(|c| "'\"; ./".contains(c));
                    assert!(
                        ASSETS.iter().any(|x| x.name == file),
                        "{} imports {file}, which is not embedded",
                        a.name
                    );
                }
            }
        }
        // Budget: the whole UI stays small (no framework).
        assert!(total_bytes() < 200 * 1024, "{} bytes", total_bytes());
        let etags: std::collections::HashSet<_> = ETAGS.iter().collect();
        assert_eq!(etags.len(), ASSETS.len());
    }
}
