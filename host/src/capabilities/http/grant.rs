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
//! path_prefix = "/api/"       # default "/"
//! allow_private = false       # loopback/private/link-local/metadata addresses
//! ```

use globset::{Glob, GlobBuilder, GlobMatcher};
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
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
            allow_private: spec.allow_private,
        })
    }

    pub(crate) fn matches(&self, method: &str, url: &Url) -> bool {
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
            && url.path().starts_with(&self.path_prefix)
    }
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
