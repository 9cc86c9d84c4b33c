//! HTTP grants: which URLs a plugin may call (`[[grants.http]]`).
//!
//! ```toml
//! [[grants]]
//! plugin = "http"
//! [[grants.http]]
//! scheme = ["https"]          # default ["https"]
//! host = "*.example.com"      # a host name glob or an IP literal
//! port = [443]                # default: the scheme's default port
//! methods = ["GET"]           # default: any
//! path_prefix = "/api/"       # default "/": whole path segments
//! allow_private = false       # loopback/private/link-local/metadata addresses
//! ```
//!
//! # Paths
//!
//! A grant means the path a server will route, not the text of the URL.
//! The URL parser (WHATWG) already reads `\` as `/` and removes `.` and
//! `..` segments, also `%2e`-encoded ones, so `/api/../secret` is sent (and
//! checked) as `/secret`. What it leaves alone, servers disagree about, and
//! a path holding any of it is refused before the request leaves, whatever
//! rule would match ([`RequestPath::parse`]):
//!
//! * an encoded `/` or `\` (`%2F`, `%5C`, any case): a server that decodes
//!   before routing reads `/api/..%2Fsecret` as `/secret`;
//! * a `;` (raw or `%3B`): Tomcat, Jetty and Spring drop `;…` segment
//!   parameters, so `/api/..;/secret` is `/secret` to them;
//! * a segment that is only dots (and spaces) once decoded (`...`, `.. `,
//!   `%2e%2e` where the parser left it): Windows servers strip trailing
//!   dots and spaces;
//! * an empty segment (`//`): nginx's `merge_slashes` and others merge it;
//! * encoded control characters and NUL (`%00`, `%0a`);
//! * double encoding (`%252F`, which decodes to `%2F`) and a `%` that does
//!   not start an escape (IIS reads `%u002e` as `.`);
//! * bytes that are not UTF-8 once decoded (overlong forms such as
//!   `%c0%ae`, an old way to write `.`);
//! * look-alikes a Unicode-normalising server folds into any of the above
//!   (NFKC: the fullwidth `．` and `／`).
//!
//! `path_prefix` then matches whole segments of the decoded path: `/api`
//! and `/api/` both allow `/api` and `/api/x`, never `/api-admin`. A prefix
//! is read the same way when grants load, so one that no request could
//! match is refused there.
//!
//! A URL with credentials in it (`https://user:pw@host/`) is refused too:
//! `https://api.example.com*` as a job's scope or a plugin's ask would
//! otherwise match `https://api.example.com@evil.example/`, and
//! credentials belong in a header.

use globset::{Glob, GlobBuilder, GlobMatcher};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use unicode_normalization::UnicodeNormalization;
use url::Url;

/// One HTTP allow rule as written in the config file.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRuleSpec {
    #[serde(default = "default_schemes")]
    pub scheme: Vec<String>,
    /// Host name glob (`api.example.com`, `*.example.com`) or an IP literal.
    pub host: String,
    /// Allowed ports; by default the scheme's default port.
    #[serde(default)]
    pub port: Vec<u16>,
    /// Allowed methods; empty means any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// The path, in whole segments, that requests must be at or below.
    #[serde(default = "default_path_prefix")]
    pub path_prefix: String,
    /// Loopback, private, link-local and metadata addresses are refused
    /// unless this is true, whatever the host name resolves to.
    #[serde(default)]
    pub allow_private: bool,
}

fn default_schemes() -> Vec<String> {
    vec!["https".to_string()]
}

fn default_path_prefix() -> String {
    "/".to_string()
}

/// One parsed HTTP rule.
#[derive(Debug, Clone)]
pub struct HttpRule {
    schemes: Vec<String>,
    host: String,
    host_matcher: GlobMatcher,
    ports: Vec<u16>,
    methods: Vec<String>,
    path_prefix: String,
    /// `path_prefix`'s decoded segments (none for `/`).
    prefix: Vec<String>,
    allow_private: bool,
}

impl HttpRule {
    pub fn allow_private(&self) -> bool {
        self.allow_private
    }
}

impl fmt::Display for HttpRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scheme = {:?}, host = {:?}, path_prefix = {:?}",
            self.schemes, self.host, self.path_prefix
        )?;
        if !self.ports.is_empty() {
            write!(f, ", port = {:?}", self.ports)?;
        }
        if !self.methods.is_empty() {
            write!(f, ", methods = {:?}", self.methods)?;
        }
        if self.allow_private {
            write!(f, ", allow_private = true")?;
        }
        Ok(())
    }
}

impl HttpRule {
    pub(crate) fn parse(spec: &HttpRuleSpec) -> Result<Self, (&'static str, String)> {
        let mut schemes = Vec::new();
        for s in &spec.scheme {
            let s = s.to_ascii_lowercase();
            if s != "http" && s != "https" {
                return Err((
                    "scheme",
                    format!("unsupported scheme {s:?}: use http or https"),
                ));
            }
            schemes.push(s);
        }
        if schemes.is_empty() {
            return Err(("scheme", "must list at least one scheme".into()));
        }
        let host = spec.host.trim().to_ascii_lowercase();
        if host.is_empty() {
            return Err(("host", "must not be empty".into()));
        }
        let name_pattern = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'*' | b'?'));
        if !name_pattern && host.parse::<IpAddr>().is_err() {
            return Err((
                "host",
                format!("{host:?} is not a host name pattern (no scheme, port or path)"),
            ));
        }
        let host_matcher = GlobBuilder::new(&host)
            .case_insensitive(true)
            .literal_separator(false)
            .build()
            .map(|g: Glob| g.compile_matcher())
            .map_err(|e| ("host", format!("invalid host pattern: {e}")))?;
        let mut methods = Vec::new();
        for m in &spec.methods {
            let m = m.trim().to_ascii_uppercase();
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(("methods", format!("{m:?} is not an HTTP method")));
            }
            methods.push(m);
        }
        if !spec.path_prefix.starts_with('/') {
            return Err(("path_prefix", "must start with '/'".into()));
        }
        let prefix = RequestPath::parse(&spec.path_prefix)
            .map_err(|p| {
                (
                    "path_prefix",
                    format!("{p}; no request may have such a path, so no prefix can name one"),
                )
            })?
            .segments_without_trailing();
        if spec.port.contains(&0) {
            return Err(("port", "0 is not a port".into()));
        }
        Ok(Self {
            schemes,
            host,
            host_matcher,
            ports: spec.port.clone(),
            methods,
            path_prefix: spec.path_prefix.clone(),
            prefix,
            allow_private: spec.allow_private,
        })
    }

    /// Whether the rule allows this request; `path` is the URL's path as
    /// [`RequestPath::parse`] read it.
    pub(crate) fn matches(&self, method: &str, url: &Url, path: &RequestPath) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = url.port_or_known_default();
        self.schemes.iter().any(|s| s == url.scheme())
            && self.host_matcher.is_match(host)
            && match port {
                Some(p) if self.ports.is_empty() => Some(p) == default_port(url.scheme()),
                Some(p) => self.ports.contains(&p),
                None => false,
            }
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && path.segments.starts_with(&self.prefix)
    }
}

/// A request path as a server will route it: its segments, each
/// percent-decoded once; only built for a path that every common server
/// reads the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    /// Decoded segments; the last is empty for a path ending in `/`.
    segments: Vec<String>,
}

/// Why a path may mean something else to the server than to the grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    #[error(
        "the path segment {0:?} holds an encoded '/' (%2F), which a server that decodes before routing reads as a separator"
    )]
    EncodedSlash(String),
    #[error(
        "the path segment {0:?} holds a backslash (raw or %5C), which Windows servers read as a separator"
    )]
    Backslash(String),
    #[error(
        "the path segment {0:?} holds a ';' (raw or %3B), which Tomcat, Jetty and Spring read as the start of segment parameters and drop"
    )]
    SegmentParameter(String),
    #[error(
        "the path segment {0:?} is only dots once decoded, which servers resolve as '.' or '..' (or strip, on Windows)"
    )]
    DotSegment(String),
    #[error(
        "the path has an empty segment ('//'), which servers that merge slashes read differently"
    )]
    EmptySegment,
    #[error("the path segment {0:?} holds an encoded control character or NUL")]
    Control(String),
    #[error(
        "the path segment {0:?} is encoded twice ('%25' followed by an escape), which a server that decodes twice reads differently"
    )]
    DoubleEncoded(String),
    #[error("the path segment {0:?} has a '%' that starts no escape (IIS reads %u0000 forms)")]
    BadEscape(String),
    #[error(
        "the path segment {0:?} is not UTF-8 once decoded (overlong forms such as %c0%ae were read as '.')"
    )]
    NotUtf8(String),
    #[error(
        "the path segment {0:?} holds look-alikes that a Unicode-normalising server reads as '.', '/', '\\' or ';'"
    )]
    LookAlike(String),
}

impl RequestPath {
    /// Reads an absolute path (a URL's path as the URL parser left it, or
    /// a `path_prefix`), refusing anything in it that servers read
    /// differently (see the module docs).
    pub fn parse(path: &str) -> Result<Self, PathProblem> {
        let rest = path.strip_prefix('/').unwrap_or(path);
        let raw: Vec<&str> = rest.split('/').collect();
        let mut segments = Vec::with_capacity(raw.len());
        for (i, segment) in raw.iter().enumerate() {
            if segment.is_empty() && i + 1 < raw.len() {
                return Err(PathProblem::EmptySegment);
            }
            segments.push(decode(segment)?);
        }
        Ok(Self { segments })
    }

    /// The segments, without the empty one a trailing `/` leaves: a
    /// prefix's `/api/` is the segment `api`.
    fn segments_without_trailing(mut self) -> Vec<String> {
        if self.segments.last().is_some_and(String::is_empty) {
            self.segments.pop();
        }
        self.segments
    }
}

/// One segment, percent-decoded once, or why a server may read it
/// otherwise.
fn decode(raw: &str) -> Result<String, PathProblem> {
    let owned = || raw.to_string();
    let bytes = raw.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(PathProblem::BadEscape(owned()));
        }
    }
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| PathProblem::NotUtf8(owned()))?
        .into_owned();
    plain(raw, &decoded)?;
    let folded: String = decoded.nfkc().collect();
    if folded != decoded && plain(raw, &folded).is_err() {
        return Err(PathProblem::LookAlike(owned()));
    }
    Ok(decoded)
}

/// Checks a decoded segment (`raw` as written, for messages).
fn plain(raw: &str, decoded: &str) -> Result<(), PathProblem> {
    let owned = || raw.to_string();
    if decoded.contains('/') {
        return Err(PathProblem::EncodedSlash(owned()));
    }
    if decoded.contains('\\') {
        return Err(PathProblem::Backslash(owned()));
    }
    if decoded.contains(';') {
        return Err(PathProblem::SegmentParameter(owned()));
    }
    if decoded.chars().any(char::is_control) {
        return Err(PathProblem::Control(owned()));
    }
    let b = decoded.as_bytes();
    if b.windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
    {
        return Err(PathProblem::DoubleEncoded(owned()));
    }
    if decoded.contains('.') && decoded.chars().all(|c| c == '.' || c.is_whitespace()) {
        return Err(PathProblem::DotSegment(owned()));
    }
    if !decoded.is_empty() && decoded.chars().all(char::is_whitespace) {
        return Err(PathProblem::EmptySegment);
    }
    Ok(())
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

pub(crate) fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Is this an address a step may reach without `allow_private`? Refuses
/// loopback, private, link-local (which holds the cloud metadata address
/// 169.254.169.254), shared, unspecified, broadcast, documentation and
/// unique-local ranges, also when written as an IPv4-mapped IPv6 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || (seg[0] == 0x2001 && seg[1] == 0x0db8)
                || (seg[0] == 0x64 && seg[1] == 0xff9b))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn rule(prefix: &str) -> HttpRule {
        HttpRule::parse(&HttpRuleSpec {
            scheme: vec!["https".into()],
            host: "api.example.com".into(),
            port: Vec::new(),
            methods: Vec::new(),
            path_prefix: prefix.into(),
            allow_private: false,
        })
        .unwrap()
    }

    /// Whether `rule` allows the URL, or the problem with its path.
    fn allows(rule: &HttpRule, url: &str) -> Result<bool, PathProblem> {
        let url = Url::parse(url).unwrap();
        let path = RequestPath::parse(url.path())?;
        Ok(rule.matches("GET", &url, &path))
    }

    #[test]
    fn the_url_parser_already_resolves_dot_segments_and_backslashes() {
        for (written, sent) in [
            ("https://h/api/../secret", "/secret"),
            ("https://h/api/%2e%2e/secret", "/secret"),
            ("https://h/api/.%2E/secret", "/secret"),
            ("https://h/api\\..\\secret", "/secret"),
            ("https://h/api/./x", "/api/x"),
            ("https://h/api/.\t./secret", "/secret"),
        ] {
            assert_eq!(Url::parse(written).unwrap().path(), sent, "{written}");
        }
        assert_eq!(
            Url::parse("https://h/api/..%2Fsecret").unwrap().path(),
            "/api/..%2Fsecret",
            "what the parser leaves is this module's to refuse"
        );
    }

    #[test]
    fn a_prefix_matches_whole_segments() {
        for prefix in ["/api", "/api/"] {
            let r = rule(prefix);
            for ok in [
                "https://api.example.com/api",
                "https://api.example.com/api/",
                "https://api.example.com/api/x/y?q=1",
            ] {
                assert_eq!(allows(&r, ok), Ok(true), "{prefix} {ok}");
            }
            for no in [
                "https://api.example.com/api-admin",
                "https://api.example.com/apix/y",
                "https://api.example.com/",
                "https://api.example.com/other/api",
                "https://api.example.com/api/../admin",
            ] {
                assert_eq!(allows(&r, no), Ok(false), "{prefix} {no}");
            }
        }
        let root = rule("/");
        assert_eq!(allows(&root, "https://api.example.com/"), Ok(true));
        assert_eq!(allows(&root, "https://api.example.com/x"), Ok(true));
        // Segments compare decoded: an encoded letter is the letter.
        assert_eq!(
            allows(&rule("/api"), "https://api.example.com/%61pi/x"),
            Ok(true)
        );
        assert_eq!(
            allows(&rule("/a%20b"), "https://api.example.com/a%20b/x"),
            Ok(true)
        );
    }

    #[test]
    fn paths_servers_read_differently_are_refused_for_every_rule() {
        let r = rule("/");
        let problem = |url: &str| allows(&r, url).unwrap_err();
        for (url, expected) in [
            (
                "https://h/api/..%2Fsecret",
                PathProblem::EncodedSlash("..%2Fsecret".into()),
            ),
            (
                "https://h/api/..%2fsecret",
                PathProblem::EncodedSlash("..%2fsecret".into()),
            ),
            (
                "https://h/api/..%5Csecret",
                PathProblem::Backslash("..%5Csecret".into()),
            ),
            (
                "https://h/api/..;/secret",
                PathProblem::SegmentParameter("..;".into()),
            ),
            (
                "https://h/api;jsessionid=1/x",
                PathProblem::SegmentParameter("api;jsessionid=1".into()),
            ),
            (
                "https://h/api/..%3B/secret",
                PathProblem::SegmentParameter("..%3B".into()),
            ),
            ("https://h/api/.../x", PathProblem::DotSegment("...".into())),
            (
                "https://h/api/..%20/x",
                PathProblem::DotSegment("..%20".into()),
            ),
            ("https://h/api//x", PathProblem::EmptySegment),
            ("https://h//api/x", PathProblem::EmptySegment),
            ("https://h/api/%20/x", PathProblem::EmptySegment),
            (
                "https://h/api/x%00.json",
                PathProblem::Control("x%00.json".into()),
            ),
            (
                "https://h/api/x%0d%0aHost:evil",
                PathProblem::Control("x%0d%0aHost:evil".into()),
            ),
            (
                "https://h/api/%252e%252e/x",
                PathProblem::DoubleEncoded("%252e%252e".into()),
            ),
            (
                "https://h/api/..%252Fx",
                PathProblem::DoubleEncoded("..%252Fx".into()),
            ),
            (
                "https://h/api/%u002e%u002e/x",
                PathProblem::BadEscape("%u002e%u002e".into()),
            ),
            (
                "https://h/api/%c0%ae%c0%ae/x",
                PathProblem::NotUtf8("%c0%ae%c0%ae".into()),
            ),
            (
                "https://h/api/%EF%BC%8E%EF%BC%8E/x",
                PathProblem::LookAlike("%EF%BC%8E%EF%BC%8E".into()),
            ),
            (
                "https://h/api/..%EF%BC%8Fx",
                PathProblem::LookAlike("..%EF%BC%8Fx".into()),
            ),
        ] {
            assert_eq!(problem(url), expected, "{url}");
        }
        for fine in [
            "https://h/api/v1.2/x",
            "https://h/api/a.b.c",
            "https://h/api/caf%C3%A9",
            "https://h/api/100%25",
            "https://h/api/x?path=..%2F..;/secret",
        ] {
            assert_eq!(
                allows(&r, fine),
                Ok(false),
                "{fine}: another host, but a plain path"
            );
        }
    }

    #[test]
    fn a_prefix_no_request_could_match_is_refused_when_grants_load() {
        for bad in ["/api/../x", "/api//x", "/api;x", "/api/%2F", "/a/%zz"] {
            let err = HttpRule::parse(&HttpRuleSpec {
                scheme: vec!["https".into()],
                host: "h".into(),
                port: Vec::new(),
                methods: Vec::new(),
                path_prefix: bad.into(),
                allow_private: false,
            })
            .err()
            .unwrap_or_else(|| panic!("{bad} parsed"));
            assert_eq!(err.0, "path_prefix", "{bad}");
        }
    }

    /// How a lenient server might route a path: decode, treat `\` as `/`,
    /// drop `;` parameters, merge slashes, resolve `.` and `..`.
    fn lenient_route(path: &str) -> Vec<String> {
        let decoded = percent_decode_str(path)
            .decode_utf8_lossy()
            .replace('\\', "/");
        let mut stack: Vec<String> = Vec::new();
        for segment in decoded.split('/') {
            let segment = segment.split(';').next().unwrap_or("");
            let trimmed = segment.trim_end_matches(['.', ' ']);
            match segment {
                "" | "." => {}
                ".." => {
                    stack.pop();
                }
                _ if trimmed.is_empty() => {
                    stack.pop();
                }
                s => stack.push(s.to_string()),
            }
        }
        stack
    }

    proptest::proptest! {
        /// Whatever the path, if the grant with prefix `/api` allows it, a
        /// lenient server routes it below `/api` too.
        #[test]
        fn an_allowed_path_never_escapes_the_prefix(
            segments in proptest::collection::vec(
                proptest::sample::select(vec![
                    "api", "secret", "..", ".", "", "%2e%2e", "..%2F", "%2F", "..;", ";", "%3B",
                    "%5C", "\\\\", "...", "%252F", "%u002e", "%c0%ae", "%EF%BC%8E%EF%BC%8E", "x%00",
                    "%20", "api-admin",
                ]),
                0..6,
            )
        ) {
            let r = rule("/api");
            let text = format!("https://api.example.com/{}", segments.join("/"));
            if let Ok(url) = Url::parse(&text)
                && let Ok(path) = RequestPath::parse(url.path())
                && r.matches("GET", &url, &path)
            {
                let routed = lenient_route(url.path());
                proptest::prop_assert!(
                    routed.first().is_some_and(|s| s == "api"),
                    "{} (sent as {}) routes to /{}", text, url.path(), routed.join("/")
                );
            }
        }
    }
}
