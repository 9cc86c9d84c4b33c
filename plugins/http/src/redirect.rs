//! Following redirects.
//!
//! The host never follows a redirect itself; the step does, and every hop
//! is a new request that the host checks against the grants, so a redirect
//! cannot lead a step anywhere it was not granted. Credentials stay with the
//! origin they were configured for.

use url::Url;

/// The statuses that redirect.
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// The next request after a redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// Method of the next request (303, and 301/302 after a POST, become GET).
    pub method: String,
    pub url: Url,
    /// Whether the request body goes along (only for 307 and 308).
    pub keep_body: bool,
    /// Whether credentials go along (only to the same scheme, host and port).
    pub keep_auth: bool,
}

/// Where a redirect response leads, or why it leads nowhere usable. `None`
/// when the response is not a redirect or has no `Location` (it is then the
/// final response).
pub fn next_hop(
    method: &str,
    from: &Url,
    status: u16,
    location: Option<&str>,
) -> Option<Result<Hop, String>> {
    if !is_redirect(status) {
        return None;
    }
    let location = location?;
    let url = match from.join(location) {
        Ok(url) => url,
        Err(e) => return Some(Err(format!("redirect to {location:?} is not a URL: {e}"))),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Some(Err(format!(
            "redirect to {url} uses the unsupported scheme {:?}",
            url.scheme()
        )));
    }
    let (method, keep_body) = match status {
        303 if method != "HEAD" => ("GET", false),
        301 | 302 if method == "POST" => ("GET", false),
        _ => (method, true),
    };
    let keep_auth = url.origin() == from.origin();
    Some(Ok(Hop {
        method: method.to_string(),
        url,
        keep_body,
        keep_auth,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn relative_and_absolute_locations() {
        let from = url("https://a.example/x/y?q=1");
        let hop = next_hop("GET", &from, 302, Some("../z")).unwrap().unwrap();
        assert_eq!(hop.url.as_str(), "https://a.example/z");
        assert!(hop.keep_auth);
        let hop = next_hop("GET", &from, 301, Some("https://b.example/"))
            .unwrap()
            .unwrap();
        assert!(!hop.keep_auth, "credentials stay with their origin");
        let hop = next_hop("GET", &from, 302, Some("http://a.example/x"))
            .unwrap()
            .unwrap();
        assert!(!hop.keep_auth, "a scheme change is another origin");
    }

    #[test]
    fn methods_and_bodies() {
        let from = url("https://a.example/");
        let hop = |m: &str, s: u16| next_hop(m, &from, s, Some("/n")).unwrap().unwrap();
        assert_eq!(
            (hop("POST", 303).method.as_str(), hop("POST", 303).keep_body),
            ("GET", false)
        );
        assert_eq!(
            (hop("POST", 302).method.as_str(), hop("POST", 302).keep_body),
            ("GET", false)
        );
        assert_eq!(
            (hop("PUT", 302).method.as_str(), hop("PUT", 302).keep_body),
            ("PUT", true)
        );
        assert_eq!(
            (hop("POST", 307).method.as_str(), hop("POST", 307).keep_body),
            ("POST", true)
        );
        assert_eq!(
            (hop("POST", 308).method.as_str(), hop("POST", 308).keep_body),
            ("POST", true)
        );
        assert_eq!(hop("HEAD", 303).method, "HEAD");
    }

    #[test]
    fn not_redirects() {
        let from = url("https://a.example/");
        assert_eq!(next_hop("GET", &from, 200, Some("/x")), None);
        assert_eq!(next_hop("GET", &from, 304, Some("/x")), None);
        assert_eq!(next_hop("GET", &from, 302, None), None);
        assert!(
            next_hop("GET", &from, 302, Some("ftp://x/"))
                .unwrap()
                .is_err()
        );
    }
}
