//! Capability grants: what an operator allows each plugin to reach.
//!
//! Deny by default. Grants are typed and resource-level and are parsed once,
//! when the config loads, into [`Grants`]; a step's effective capabilities
//! are what its plugin asks for (in `describe`) ∩ what is granted to that
//! plugin (optionally bound to its sha256 digest) ∩ the job's scope
//! ([`scope`]). Only this module decides whether a capability call is
//! allowed; the capability modules ask it and turn a refusal into a typed
//! denial that names the grant that would have allowed the call.
//!
//! What one rule of a capability means (an HTTP rule, a process rule, a SQL
//! rule) lives with that capability, in `capabilities/<name>/grant.rs`;
//! this module holds what is common to all: the grant entries as written,
//! the intersection, the denials, and the grants stored at run time
//! ([`stored`]).

use crate::capabilities::http::grant::{
    HttpRule, HttpRuleSpec, RequestPath, is_public, literal_ip,
};
use crate::capabilities::{process, sql};
use crate::contract::Digest;
use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use url::Url;

pub mod scope;
pub mod stored;

/// A grant as written in the config file (`[[grants]]`), or stored as JSON
/// in the same shape (see [`stored`]).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    /// The step type name the grant is for.
    pub plugin: String,
    /// When set, the grant applies only to the component with this digest
    /// (`sha256:<hex>`), so a changed binary has no grants.
    #[serde(default)]
    pub digest: Option<String>,
    /// Secret names the plugin may read.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Outbound HTTP rules.
    #[serde(default)]
    pub http: Vec<HttpRuleSpec>,
    /// SQL connection rules (`[[grants.sql]]`, see [`sql`]).
    #[serde(default)]
    pub sql: Vec<sql::grant::SqlRuleSpec>,
    /// Child process rules (`[[grants.process]]`, see [`process`]).
    #[serde(default)]
    pub process: Vec<process::grant::ProcessRuleSpec>,
}

/// A grant that could not be parsed, with the path of the offending field.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct GrantError {
    pub path: String,
    pub message: String,
}

/// Every grant, parsed.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    grants: Vec<PluginGrant>,
}

#[derive(Debug, Clone)]
struct PluginGrant {
    plugin: String,
    digest: Option<Digest>,
    secrets: BTreeSet<String>,
    http: Vec<HttpRule>,
    sql: Vec<sql::grant::SqlRule>,
    process: Vec<process::grant::ProcessRule>,
}

impl Grants {
    /// Parses every grant; `base_path` names where they came from in errors
    /// (`grants`).
    pub fn parse(specs: &[GrantSpec], base_path: &str) -> Result<Self, Vec<GrantError>> {
        let mut errors = Vec::new();
        let mut grants = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let path = format!("{base_path}[{i}]");
            match PluginGrant::parse(spec, &path) {
                Ok(g) => grants.push(g),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(Self { grants })
        } else {
            Err(errors)
        }
    }

    /// Adds the grants of another set (the stored grants to the config's).
    pub fn extend(&mut self, other: Grants) {
        self.grants.extend(other.grants);
    }

    /// What the plugin with this name and digest may do, limited to what it
    /// asked for.
    pub fn effective(&self, plugin: &str, digest: &Digest, asks: &Asks) -> EffectiveGrants {
        let mut secrets = BTreeSet::new();
        let mut http = Vec::new();
        let mut sql = Vec::new();
        let mut process = Vec::new();
        for g in self
            .grants
            .iter()
            .filter(|g| g.plugin == plugin && g.digest.as_ref().is_none_or(|d| d == digest))
        {
            secrets.extend(g.secrets.iter().filter(|s| asks.secret_asked(s)).cloned());
            if asks.http.is_some() {
                http.extend(g.http.iter().cloned());
            }
            if asks.sql.is_some() {
                sql.extend(g.sql.iter().cloned());
            }
            process.extend(
                g.process
                    .iter()
                    .filter(|r| asks.program_asked(r.program()))
                    .cloned(),
            );
        }
        EffectiveGrants {
            plugin: plugin.to_string(),
            asks: asks.clone(),
            secrets,
            http,
            sql,
            process,
            scope: None,
        }
    }
}

impl PluginGrant {
    fn parse(spec: &GrantSpec, path: &str) -> Result<Self, Vec<GrantError>> {
        let mut errors = Vec::new();
        let err = |field: String, message: String| GrantError {
            path: format!("{path}.{field}"),
            message,
        };
        if spec.plugin.trim().is_empty() {
            errors.push(err("plugin".into(), "must name a step type".into()));
        }
        let digest = match &spec.digest {
            Some(d) => match d.parse::<Digest>() {
                Ok(d) => Some(d),
                Err(e) => {
                    errors.push(err("digest".into(), e.to_string()));
                    None
                }
            },
            None => None,
        };
        let mut http = Vec::new();
        for (i, rule) in spec.http.iter().enumerate() {
            match HttpRule::parse(rule) {
                Ok(r) => http.push(r),
                Err((field, message)) => errors.push(err(format!("http[{i}].{field}"), message)),
            }
        }
        let mut process = Vec::new();
        for (i, rule) in spec.process.iter().enumerate() {
            match process::grant::ProcessRule::parse(rule) {
                Ok(r) => process.push(r),
                Err((field, message)) => errors.push(err(format!("process[{i}].{field}"), message)),
            }
        }
        let mut sql = Vec::new();
        for (i, rule) in spec.sql.iter().enumerate() {
            match sql::grant::SqlRule::parse(rule) {
                Ok(r) => sql.push(r),
                Err((field, message)) => errors.push(err(format!("sql[{i}].{field}"), message)),
            }
        }
        for (i, s) in spec.secrets.iter().enumerate() {
            if s.trim().is_empty() {
                errors.push(err(format!("secrets[{i}]"), "empty secret name".into()));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            plugin: spec.plugin.clone(),
            digest,
            secrets: spec.secrets.iter().cloned().collect(),
            http,
            sql,
            process,
        })
    }
}

/// What a component asked for in `describe`, parsed.
#[derive(Debug, Clone, Default)]
pub struct Asks {
    /// URL patterns the component may call; `None` when it did not ask for
    /// HTTP at all.
    pub http: Option<Vec<GlobMatcher>>,
    /// Secret name patterns; `None` when it did not ask for secrets.
    pub secrets: Option<Vec<GlobMatcher>>,
    /// Connection name patterns; `None` when it did not ask for SQL.
    pub sql: Option<Vec<GlobMatcher>>,
    /// Program path patterns; `None` when it did not ask for processes.
    pub process: Option<Vec<GlobMatcher>>,
}

impl Asks {
    /// Adds one ask; `target` is a glob over a URL or a name, "*" for any.
    pub fn add(&mut self, kind: AskKind, target: &str) -> Result<(), String> {
        let matcher = || {
            GlobBuilder::new(if target.trim().is_empty() {
                "*"
            } else {
                target
            })
            .literal_separator(false)
            .build()
            .map(|g| g.compile_matcher())
            .map_err(|e| format!("invalid capability target {target:?}: {e}"))
        };
        match kind {
            AskKind::Http => self.http.get_or_insert_with(Vec::new).push(matcher()?),
            AskKind::Secrets => self.secrets.get_or_insert_with(Vec::new).push(matcher()?),
            AskKind::Sql => self.sql.get_or_insert_with(Vec::new).push(matcher()?),
            AskKind::Process => self.process.get_or_insert_with(Vec::new).push(matcher()?),
            AskKind::Log => {}
        }
        Ok(())
    }

    fn secret_asked(&self, name: &str) -> bool {
        self.secrets
            .as_ref()
            .is_some_and(|m| m.iter().any(|g| g.is_match(name)))
    }

    fn program_asked(&self, program: &str) -> bool {
        self.process
            .as_ref()
            .is_some_and(|m| m.iter().any(|g| g.is_match(program)))
    }

    fn connection_asked(&self, connection: &str) -> bool {
        self.sql
            .as_ref()
            .is_some_and(|m| m.iter().any(|g| g.is_match(connection)))
    }

    fn url_asked(&self, url: &str) -> bool {
        self.http
            .as_ref()
            .is_some_and(|m| m.iter().any(|g| g.is_match(url)))
    }
}

/// Kinds of capability, as asked for in `describe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskKind {
    Log,
    Secrets,
    Sql,
    Process,
    Http,
}

/// A refused capability call: what, why, and which grant would allow it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Denial {
    pub capability: String,
    pub target: String,
    pub reason: String,
    pub grant_hint: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} denied for {}: {} (would be allowed by: {})",
            self.capability, self.target, self.reason, self.grant_hint
        )
    }
}

/// The effective grants of one plugin build: consulted on every call.
#[derive(Debug, Clone)]
pub struct EffectiveGrants {
    plugin: String,
    asks: Asks,
    secrets: BTreeSet<String>,
    http: Vec<HttpRule>,
    sql: Vec<sql::grant::SqlRule>,
    process: Vec<process::grant::ProcessRule>,
    /// The job's narrowing, when the step belongs to a job that has one.
    scope: Option<std::sync::Arc<scope::Scope>>,
}

impl EffectiveGrants {
    /// These grants narrowed by a job's scope.
    pub fn with_scope(&self, scope: std::sync::Arc<scope::Scope>) -> Self {
        Self {
            scope: Some(scope),
            ..self.clone()
        }
    }

    /// The denial for a call the job's scope does not include.
    fn out_of_scope(&self, capability: &str, target: &str, what: &str) -> Result<(), Denial> {
        match &self.scope {
            Some(s) if !s.allows(capability, what) => Err(self.denial(
                capability,
                target,
                "the job's scope does not include this",
                format!("the job's \"scope\": {{\"{capability}\": [{what:?}]}} (it narrows the grants; it cannot widen them)"),
            )),
            _ => Ok(()),
        }
    }

    /// Nothing is allowed.
    pub fn none(plugin: &str) -> Self {
        Self {
            plugin: plugin.to_string(),
            asks: Asks::default(),
            secrets: BTreeSet::new(),
            http: Vec::new(),
            sql: Vec::new(),
            process: Vec::new(),
            scope: None,
        }
    }

    /// May this plugin read the named secret?
    pub fn check_secret(&self, name: &str) -> Result<(), Denial> {
        if !self.asks.secret_asked(name) {
            return Err(self.denial(
                "secrets",
                name,
                "the plugin did not ask for this secret in describe",
                format!("the plugin must ask for secrets {name:?}"),
            ));
        }
        self.out_of_scope("secrets", name, name)?;
        if self.secrets.contains(name) {
            Ok(())
        } else {
            Err(self.denial(
                "secrets",
                name,
                "no grant allows this secret",
                format!(
                    "[[grants]] plugin = {:?}, secrets = [{name:?}]",
                    self.plugin
                ),
            ))
        }
    }

    /// May this plugin send this request? Returns the rule that allows it,
    /// which also says whether private addresses are allowed.
    pub fn check_http(&self, method: &str, url: &Url) -> Result<&HttpRule, Denial> {
        let target = format!("{method} {url}");
        // Before any rule, the ask or the scope looks at it: a URL that a
        // server may read differently from its text is no URL a grant can
        // mean (see the http grant's module docs).
        if url.has_authority() && (!url.username().is_empty() || url.password().is_some()) {
            return Err(self.denial(
                "http",
                &target,
                "the URL carries credentials (user:password@), which let a URL pattern match another host",
                "none: no grant allows credentials in a URL; send them in an Authorization header".into(),
            ));
        }
        let path = RequestPath::parse(url.path()).map_err(|problem| {
            self.denial(
                "http",
                &target,
                &problem.to_string(),
                "none: no grant allows a path that servers may read differently; send the plain path".into(),
            )
        })?;
        if !self.asks.url_asked(url.as_str()) {
            return Err(self.denial(
                "http",
                &target,
                "the plugin did not ask for HTTP access to this URL in describe",
                format!("the plugin must ask for http {:?}", url.as_str()),
            ));
        }
        self.out_of_scope("http", &target, url.as_str())?;
        let Some(rule) = self.http.iter().find(|r| r.matches(method, url, &path)) else {
            let host = url.host_str().unwrap_or_default();
            let port = match url.port() {
                Some(p) => format!(", port = [{p}]"),
                None => String::new(),
            };
            return Err(self.denial(
                "http",
                &target,
                "no HTTP grant matches this scheme, host, port, method and path",
                format!(
                    "[[grants.http]] (plugin = {:?}) scheme = [{:?}], host = {host:?}{port}, methods = [{method:?}], path_prefix = {:?}",
                    self.plugin,
                    url.scheme(),
                    url.path()
                ),
            ));
        };
        if let Some(ip) = literal_ip(url)
            && !rule.allow_private()
            && !is_public(ip)
        {
            return Err(self.private_denial(&target, ip, rule));
        }
        Ok(rule)
    }

    /// May this plugin run this command? Returns the rule that allows it
    /// (its cwd and timeout cap apply to the call).
    pub fn check_process(
        &self,
        request: &process::grant::ProcessRequest<'_>,
    ) -> Result<&process::grant::ProcessRule, Denial> {
        let target = request.target();
        // The asks and the scope match the program as the grant rules do:
        // normalised, so `/usr//bin/x` is `/usr/bin/x` and `..` is no way
        // past a glob.
        let program = process::grant::normal_program(request.program)
            .map_err(|m| self.process_denial(request, m))?;
        if !self.asks.program_asked(&program) {
            return Err(self.denial(
                "process",
                &target,
                "the plugin did not ask for process access to this program in describe",
                format!("the plugin must ask for process {program:?}"),
            ));
        }
        self.out_of_scope("process", &target, &program)?;
        process::grant::find_rule(&self.process, request)
            .map_err(|m| self.process_denial(request, m))
    }

    /// The denial of a command for this mismatch, with the rule that would
    /// allow it (or why none can). The process capability uses it for what
    /// only the file system can tell: an argument that leads elsewhere
    /// through a symbolic link.
    pub fn process_denial(
        &self,
        request: &process::grant::ProcessRequest<'_>,
        mismatch: process::grant::Mismatch,
    ) -> Denial {
        self.denial(
            "process",
            &request.target(),
            &mismatch.to_string(),
            process::grant::grant_hint(&self.plugin, request, &mismatch),
        )
    }

    /// The denial for a host that resolved to (or is) a non-public address.
    pub fn private_denial(&self, target: &str, ip: IpAddr, rule: &HttpRule) -> Denial {
        self.denial(
            "http",
            target,
            &format!("{ip} is a loopback, private, link-local or metadata address"),
            format!(
                "[[grants.http]] (plugin = {:?}) {rule}, allow_private = true",
                self.plugin
            ),
        )
    }

    /// May this plugin use the named SQL connection? Returns what the
    /// grants allow on it: the access (with [`sql::grant::SqlAccess::Read`]
    /// only statements that read run, in a read-only transaction) and the
    /// categories of statements a `read_write` grant names.
    pub fn check_sql(
        &self,
        connection: &str,
        read_only: bool,
    ) -> Result<sql::grant::SqlPermit, Denial> {
        let wanted = if read_only {
            sql::grant::SqlAccess::Read
        } else {
            sql::grant::SqlAccess::ReadWrite
        };
        if !self.asks.connection_asked(connection) {
            return Err(self.denial(
                "sql",
                connection,
                "the plugin did not ask for this SQL connection in describe",
                format!("the plugin must ask for sql {connection:?}"),
            ));
        }
        self.out_of_scope("sql", connection, connection)?;
        sql::grant::permit(&self.sql, connection).ok_or_else(|| {
            self.denial(
                "sql",
                connection,
                "no SQL grant allows this connection",
                sql::grant::hint(&self.plugin, connection, wanted, None),
            )
        })
    }

    /// The denial for a capability this host has no grants for yet.
    pub fn deny_ungrantable(&self, capability: &str, target: &str) -> Denial {
        self.denial(
            capability,
            target,
            &format!("no {capability} grant exists for this plugin"),
            format!("a {capability} grant for plugin {:?}", self.plugin),
        )
    }

    fn denial(&self, capability: &str, target: &str, reason: &str, grant_hint: String) -> Denial {
        Denial {
            capability: capability.to_string(),
            target: target.to_string(),
            reason: reason.to_string(),
            grant_hint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(toml_text: &str) -> Grants {
        #[derive(Deserialize)]
        struct File {
            grants: Vec<GrantSpec>,
        }
        let f: File = toml::from_str(toml_text).unwrap();
        Grants::parse(&f.grants, "grants").unwrap()
    }

    fn asks_all() -> Asks {
        let mut a = Asks::default();
        a.add(AskKind::Http, "*").unwrap();
        a.add(AskKind::Secrets, "*").unwrap();
        a
    }

    fn digest() -> Digest {
        Digest::of(b"component")
    }

    #[test]
    fn http_rules_check_every_part() {
        let g = grants(
            r#"
            [[grants]]
            plugin = "http"
            [[grants.http]]
            host = "*.example.com"
            methods = ["GET"]
            path_prefix = "/api/"
            "#,
        );
        let e = g.effective("http", &digest(), &asks_all());
        let ok = |m: &str, u: &str| e.check_http(m, &Url::parse(u).unwrap()).is_ok();
        assert!(ok("GET", "https://a.example.com/api/x"));
        assert!(!ok("POST", "https://a.example.com/api/x"), "method");
        assert!(!ok("GET", "http://a.example.com/api/x"), "scheme");
        assert!(!ok("GET", "https://a.example.com:8443/api/x"), "port");
        assert!(!ok("GET", "https://a.example.com/other"), "path");
        assert!(!ok("GET", "https://example.org/api/x"), "host");
        let other = g.effective("other", &digest(), &asks_all());
        assert!(
            other
                .check_http("GET", &Url::parse("https://a.example.com/api/").unwrap())
                .is_err()
        );
    }

    #[test]
    fn urls_servers_read_differently_are_denied_before_asks_scope_and_rules() {
        let g = grants(
            r#"
            [[grants]]
            plugin = "http"
            [[grants.http]]
            host = "*"
            path_prefix = "/api/"
            "#,
        );
        let mut asks = Asks::default();
        asks.add(AskKind::Http, "https://api.example.com*").unwrap();
        let scope = scope::Scope::parse(&scope::ScopeSpec {
            http: Some(vec!["https://api.example.com/api/*".into()]),
            ..Default::default()
        })
        .unwrap();
        let e = g
            .effective("http", &digest(), &asks)
            .with_scope(std::sync::Arc::new(scope));
        let check = |u: &str| e.check_http("GET", &Url::parse(u).unwrap());
        assert!(check("https://api.example.com/api/x").is_ok());
        for (url, says) in [
            ("https://api.example.com/api/..%2Fsecret", "encoded '/'"),
            ("https://api.example.com/api/..;/secret", "';'"),
            ("https://api.example.com@evil.example/api/x", "credentials"),
            (
                "https://api.example.com:pw@evil.example/api/x",
                "credentials",
            ),
        ] {
            let d = check(url).unwrap_err();
            assert!(d.reason.contains(says), "{url}: {d}");
            assert!(d.grant_hint.starts_with("none: "), "{url}: {d}");
        }
        let d = check("https://api.example.com/api-admin/x").unwrap_err();
        assert!(d.reason.contains("scope"), "{d}");
    }

    #[test]
    fn denial_names_the_grant_that_would_allow() {
        let g = grants("[[grants]]\nplugin = \"http\"\n");
        let e = g.effective("http", &digest(), &asks_all());
        let d = e
            .check_http(
                "POST",
                &Url::parse("https://api.example.com:8443/v1/x").unwrap(),
            )
            .unwrap_err();
        assert_eq!(d.capability, "http");
        assert_eq!(d.target, "POST https://api.example.com:8443/v1/x");
        assert!(
            d.grant_hint.contains("host = \"api.example.com\""),
            "{}",
            d.grant_hint
        );
        assert!(d.grant_hint.contains("port = [8443]"), "{}", d.grant_hint);
    }

    #[test]
    fn private_literals_need_allow_private() {
        let g = grants(
            r#"
            [[grants]]
            plugin = "p"
            [[grants.http]]
            scheme = ["http"]
            host = "*"
            port = [8080]
            "#,
        );
        let e = g.effective("p", &digest(), &asks_all());
        for url in [
            "http://127.0.0.1:8080/",
            "http://169.254.169.254:8080/",
            "http://[::1]:8080/",
            "http://[::ffff:10.0.0.1]:8080/",
        ] {
            let d = e.check_http("GET", &Url::parse(url).unwrap()).unwrap_err();
            assert!(d.grant_hint.contains("allow_private = true"), "{url}: {d}");
        }
        assert!(
            e.check_http("GET", &Url::parse("http://93.184.216.34:8080/").unwrap())
                .is_ok()
        );
    }

    #[test]
    fn digest_binding_and_asks_limit_grants() {
        let g = grants(&format!(
            "[[grants]]\nplugin = \"p\"\ndigest = \"{}\"\nsecrets = [\"a\", \"b\"]\n",
            Digest::of(b"other")
        ));
        let e = g.effective("p", &digest(), &asks_all());
        assert!(
            e.check_secret("a").is_err(),
            "digest mismatch means no grant"
        );
        let g = grants("[[grants]]\nplugin = \"p\"\nsecrets = [\"a\", \"b\"]\n");
        let mut asks = Asks::default();
        asks.add(AskKind::Secrets, "a").unwrap();
        let e = g.effective("p", &digest(), &asks);
        assert!(e.check_secret("a").is_ok());
        assert!(e.check_secret("b").is_err(), "not asked for");
    }

    #[test]
    fn bad_grants_name_their_field() {
        #[derive(Deserialize)]
        struct File {
            grants: Vec<GrantSpec>,
        }
        let f: File = toml::from_str(
            "[[grants]]\nplugin = \"p\"\ndigest = \"md5:x\"\n[[grants.http]]\nhost = \"https://x\"\n",
        )
        .unwrap();
        let errs = Grants::parse(&f.grants, "grants").unwrap_err();
        let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["grants[0].digest", "grants[0].http[0].host"]);
    }
}
