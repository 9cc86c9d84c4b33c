//! From a [`Config`] to a [`Plan`]: every check on what the config means, done
//! in one place, with the JSON path of each problem.
//!
//! Validation may see a config before the host substituted variables into it
//! (`"url": "${vars.base_url}/health"`), so in [`Mode::Validate`] a string
//! holding `${` is taken on trust where its syntax is checked; in
//! [`Mode::Execute`], after substitution, everything is checked.

use meridian_sdk::{ConfigIssue, JsonPath};
use serde_json::Value;
use url::Url;

use crate::config::{Auth, Config, ExtractSpec, HeaderForm};
use crate::extract::{self, Extraction};
use crate::status::{self, StatusSet};

/// Methods the step sends. CONNECT and TRACE are left out on purpose: the
/// first is for proxies, the second echoes the request (credentials too).
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Headers the host's HTTP client owns; letting a config set `Host` would
/// also let it address one server while the grants check another.
const RESERVED_HEADERS: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

/// Response headers copied into the output without being asked for.
pub const DEFAULT_RESPONSE_HEADERS: [&str; 6] = [
    "content-type",
    "content-length",
    "etag",
    "last-modified",
    "location",
    "retry-after",
];

/// Default and maximum of `max_body_bytes`.
pub const DEFAULT_MAX_BODY_BYTES: u32 = 64 * 1024;
pub const MAX_MAX_BODY_BYTES: u32 = 1024 * 1024;

/// Default and maximum of `max_redirects`.
pub const DEFAULT_MAX_REDIRECTS: u32 = 5;
pub const MAX_MAX_REDIRECTS: u32 = 20;

/// When the check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Validating a job definition: variables may not be substituted yet.
    Validate,
    /// About to send: the config is final.
    Execute,
}

/// A request ready to send, and what to do with the response.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Upper-case method.
    pub method: String,
    /// The URL with the query parameters appended.
    pub url: Url,
    /// Headers as configured, plus a default Content-Type for a body.
    pub headers: Vec<(String, String)>,
    /// The body bytes (`body` text or `json` serialised).
    pub body: Option<Vec<u8>>,
    /// Time limit for the exchange.
    pub timeout_ms: Option<u32>,
    /// Statuses that count as success.
    pub expected: StatusSet,
    /// What to take from the response body.
    pub extractions: Vec<Extraction>,
    /// Credentials to fetch from secrets.
    pub auth: Option<Auth>,
    /// Lower-case names of the response headers to copy into the output.
    pub response_headers: Vec<String>,
    /// Cap on the body bytes kept in the output.
    pub max_body_bytes: usize,
    /// Redirects followed before giving up.
    pub max_redirects: u32,
}

/// The problems with `config`, tolerating unsubstituted variables.
pub fn check(config: &Config) -> Vec<ConfigIssue> {
    build(config, Mode::Validate).0
}

/// The plan for `config`, or every problem with it.
pub fn plan(config: &Config) -> Result<Plan, Vec<ConfigIssue>> {
    match build(config, Mode::Execute) {
        (issues, _) if !issues.is_empty() => Err(issues),
        (_, Some(plan)) => Ok(plan),
        // Execute mode trusts no template, so a plan exists when nothing is
        // wrong; say so plainly should that ever not hold.
        (_, None) => Err(vec![ConfigIssue::new("url", "the URL could not be used")]),
    }
}

fn build(config: &Config, mode: Mode) -> (Vec<ConfigIssue>, Option<Plan>) {
    let root = JsonPath::root();
    let mut issues = Vec::new();
    let trusted = |s: &str| mode == Mode::Validate && s.contains("${");
    let mut issue = |path: JsonPath, message: String| issues.push(ConfigIssue::new(path, message));

    let method = config.method.trim().to_ascii_uppercase();
    if !trusted(&config.method) && !METHODS.contains(&method.as_str()) {
        issue(
            root.key("method"),
            format!(
                "`{}` is not a supported method: use one of {}",
                config.method,
                METHODS.join(", ")
            ),
        );
    }

    let mut url = if trusted(&config.url) {
        None
    } else {
        match check_url(&config.url) {
            Ok(url) => Some(url),
            Err(message) => {
                issue(root.key("url"), message);
                None
            }
        }
    };

    for name in config.query.keys() {
        if name.is_empty() {
            issue(
                root.key("query").key(name),
                "a query parameter needs a name".to_string(),
            );
        }
    }
    if let Some(url) = url.as_mut()
        && !config.query.is_empty()
    {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in &config.query {
            match value {
                crate::config::QueryValue::One(v) => {
                    pairs.append_pair(name, &v.to_string());
                }
                crate::config::QueryValue::Many(vs) => {
                    for v in vs {
                        pairs.append_pair(name, &v.to_string());
                    }
                }
            }
        }
    }

    let mut headers = Vec::new();
    for (i, header) in config.headers.entries.iter().enumerate() {
        let (name_path, value_path) = match config.headers.form {
            HeaderForm::Map => (
                root.key("headers").key(&header.name),
                root.key("headers").key(&header.name),
            ),
            HeaderForm::List => (
                root.key("headers").index(i).key("name"),
                root.key("headers").index(i).key("value"),
            ),
        };
        if let Err(message) = check_header_name(&header.name) {
            issue(name_path, message);
        } else if let Err(message) = check_header_value(&header.value) {
            issue(value_path, message);
        }
        headers.push((header.name.clone(), header.value.clone()));
    }

    let body = match (&config.body, &config.json) {
        (Some(_), Some(_)) => {
            issue(
                JsonPath::root(),
                "`body` and `json` are both set: send text with `body` or JSON with `json`"
                    .to_string(),
            );
            None
        }
        (Some(text), None) => Some((text.clone().into_bytes(), "text/plain; charset=utf-8")),
        // Serialising a `Value` cannot fail: its map keys are strings.
        (None, Some(json)) => Some((json.to_string().into_bytes(), "application/json")),
        (None, None) => None,
    };
    let body = body.map(|(bytes, content_type)| {
        if !has_header(&headers, "content-type") {
            headers.push(("Content-Type".to_string(), content_type.to_string()));
        }
        bytes
    });

    if config.timeout_ms == Some(0) {
        issue(
            root.key("timeout_ms"),
            "must be at least 1 millisecond".to_string(),
        );
    }

    let mut ranges = Vec::new();
    if let Some(specs) = &config.expected_status {
        let items = specs.items();
        if items.is_empty() {
            issue(
                root.key("expected_status"),
                "lists no status: leave it out for the default `2xx`".to_string(),
            );
        }
        for (index, spec) in items {
            let path = match index {
                Some(i) => root.key("expected_status").index(i),
                None => root.key("expected_status"),
            };
            match status::parse_spec(spec) {
                Ok(range) => ranges.push(range),
                Err(message) => issue(path, message),
            }
        }
    }
    let expected = if ranges.is_empty() {
        StatusSet::default()
    } else {
        StatusSet::new(ranges)
    };

    let mut extractions = Vec::new();
    for (name, spec) in &config.extract {
        let path = root.key("extract").key(name);
        if let Err(message) = extract::check_name(name) {
            issue(path.clone(), message);
        }
        let (pointer, optional, default, pointer_path) = match spec {
            ExtractSpec::Pointer(p) => (p, false, Value::Null, path),
            ExtractSpec::Detailed(d) => (
                &d.pointer,
                d.optional,
                d.default.clone().unwrap_or(Value::Null),
                path.key("pointer"),
            ),
        };
        if let Err(message) = extract::check_pointer(pointer) {
            issue(pointer_path, message);
        }
        extractions.push(Extraction {
            name: name.clone(),
            pointer: pointer.clone(),
            optional,
            default,
        });
    }

    if let Some(auth) = &config.auth {
        let secret_fields: Vec<(JsonPath, &String)> = match auth {
            Auth::Basic {
                username,
                password_secret,
            } => {
                if username.contains(':') {
                    issue(
                        root.key("auth").key("basic").key("username"),
                        "a Basic user name cannot contain `:`".to_string(),
                    );
                }
                vec![(
                    root.key("auth").key("basic").key("password_secret"),
                    password_secret,
                )]
            }
            Auth::Bearer { token_secret } => {
                vec![(
                    root.key("auth").key("bearer").key("token_secret"),
                    token_secret,
                )]
            }
        };
        for (path, name) in secret_fields {
            if name.trim().is_empty() {
                issue(path, "must name a secret".to_string());
            }
        }
        if has_header(&headers, "authorization") {
            issue(
                root.key("auth"),
                "`headers` already sets Authorization: use `auth` or the header, not both"
                    .to_string(),
            );
        }
    }

    let mut response_headers: Vec<String> = DEFAULT_RESPONSE_HEADERS
        .iter()
        .map(|h| h.to_string())
        .collect();
    for (i, name) in config.response_headers.iter().enumerate() {
        match check_header_name(name) {
            Ok(()) => {
                let lower = name.to_ascii_lowercase();
                if !response_headers.contains(&lower) {
                    response_headers.push(lower);
                }
            }
            Err(message) => issue(root.key("response_headers").index(i), message),
        }
    }

    let max_body_bytes = config.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if !(1..=MAX_MAX_BODY_BYTES).contains(&max_body_bytes) {
        issue(
            root.key("max_body_bytes"),
            format!("must be between 1 and {MAX_MAX_BODY_BYTES}"),
        );
    }

    let max_redirects = config.max_redirects.unwrap_or(DEFAULT_MAX_REDIRECTS);
    if max_redirects > MAX_MAX_REDIRECTS {
        issue(
            root.key("max_redirects"),
            format!("must be at most {MAX_MAX_REDIRECTS}"),
        );
    }

    let plan = url.map(|url| Plan {
        method,
        url,
        headers,
        body,
        timeout_ms: config.timeout_ms,
        expected,
        extractions,
        auth: config.auth.clone(),
        response_headers,
        max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
        max_redirects,
    });
    (issues, plan)
}

fn has_header(headers: &[(String, String)], name: &str) -> bool {
    headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
}

/// An absolute http(s) URL with a host and without credentials.
pub fn check_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim())
        .map_err(|e| format!("`{text}` is not a valid absolute URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(format!("unsupported scheme `{other}`: use http or https")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{text}` has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are not allowed: use `auth` with a secret".to_string());
    }
    Ok(url)
}

/// A header name is an RFC 9110 token, and not one the HTTP client owns.
pub fn check_header_name(name: &str) -> Result<(), String> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(format!("`{name}` is not a valid header name"));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "`{name}` is set by Meridian's HTTP client and cannot be configured"
        ));
    }
    Ok(())
}

/// A header value holds no line break or NUL (no header injection).
pub fn check_header_value(value: &str) -> Result<(), String> {
    if value.chars().any(|c| matches!(c, '\r' | '\n' | '\0')) {
        return Err("a header value cannot contain line breaks or NUL".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(value: Value) -> Config {
        meridian_sdk::parse_config(&value.to_string()).unwrap()
    }

    fn issues(value: Value) -> Vec<(String, String)> {
        check(&config(value))
            .into_iter()
            .map(|i| (i.path, i.message))
            .collect()
    }

    fn paths(value: Value) -> Vec<String> {
        issues(value).into_iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn a_minimal_config_plans_a_get() {
        let plan = plan(&config(json!({"url": "https://status.example.com/api/v1"}))).unwrap();
        assert_eq!(plan.method, "GET");
        assert_eq!(plan.url.as_str(), "https://status.example.com/api/v1");
        assert!(plan.headers.is_empty() && plan.body.is_none() && plan.extractions.is_empty());
        assert!(plan.expected.contains(204) && !plan.expected.contains(301));
        assert_eq!(plan.max_body_bytes, 65536);
    }

    #[test]
    fn a_full_config_plans_everything() {
        let plan = plan(&config(json!({
            "method": "post",
            "url": "https://api.example.com/v1/items?x=1",
            "query": {"page": 2, "tag": ["a", "b c"], "flag": true},
            "headers": {"X-Request-Id": "r1"},
            "json": {"name": "n"},
            "timeout_ms": 5000,
            "expected_status": [201, "200-204", "3xx"],
            "extract": {"id": "/id", "eta": {"pointer": "/eta", "optional": true, "default": 0}},
            "auth": {"bearer": {"token_secret": "api_token"}},
            "response_headers": ["X-RateLimit-Remaining"],
            "max_body_bytes": 100
        })))
        .unwrap();
        assert_eq!(plan.method, "POST");
        assert_eq!(
            plan.url.as_str(),
            "https://api.example.com/v1/items?x=1&flag=true&page=2&tag=a&tag=b+c"
        );
        assert_eq!(
            plan.headers,
            vec![
                ("X-Request-Id".to_string(), "r1".to_string()),
                ("Content-Type".to_string(), "application/json".to_string())
            ]
        );
        assert_eq!(plan.body.as_deref(), Some(&br#"{"name":"n"}"#[..]));
        assert_eq!(plan.timeout_ms, Some(5000));
        assert!(
            plan.expected.contains(201)
                && plan.expected.contains(302)
                && !plan.expected.contains(205)
        );
        assert_eq!(plan.extractions.len(), 2);
        assert_eq!(plan.extractions[0].name, "eta");
        assert_eq!(plan.extractions[0].default, json!(0));
        assert!(
            plan.response_headers
                .contains(&"x-ratelimit-remaining".to_string())
        );
        assert_eq!(plan.max_body_bytes, 100);
    }

    #[test]
    fn text_bodies_keep_an_explicit_content_type() {
        let plan = plan(&config(json!({
            "method": "PUT", "url": "http://h.example/x",
            "headers": [{"name": "content-type", "value": "text/csv"}],
            "body": "a,b\n1,2\n"
        })))
        .unwrap();
        assert_eq!(
            plan.headers,
            vec![("content-type".to_string(), "text/csv".to_string())]
        );
        assert_eq!(plan.body.as_deref(), Some(&b"a,b\n1,2\n"[..]));
    }

    #[test]
    fn bad_urls_and_methods() {
        assert_eq!(paths(json!({"url": "/relative"})), ["url"]);
        let cases = [
            ("/relative", "is not a valid absolute URL"),
            ("ftp://files.example.com/x", "unsupported scheme `ftp`"),
            (
                "https://user:pw@example.com/",
                "credentials in the URL are not allowed",
            ),
            ("http://", "is not a valid absolute URL"),
            ("file:///etc/passwd", "unsupported scheme `file`"),
        ];
        for (url, expected) in cases {
            let got = issues(json!({"url": url}));
            assert_eq!(got.len(), 1, "{url}: {got:?}");
            assert!(got[0].1.contains(expected), "{url}: {got:?}");
        }
        let got = issues(json!({"url": "https://x.example", "method": "FETCH"}));
        assert_eq!(got[0].0, "method");
        assert!(got[0].1.starts_with("`FETCH` is not a supported method"));
        assert_eq!(
            paths(json!({"url": "https://x.example", "method": "CONNECT"})),
            ["method"]
        );
        assert!(issues(json!({"url": "https://x.example", "method": "delete"})).is_empty());
    }

    #[test]
    fn body_and_json_are_exclusive() {
        let got =
            issues(json!({"url": "https://x.example", "method": "POST", "body": "a", "json": {}}));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "");
        assert!(got[0].1.contains("`body` and `json` are both set"));
    }

    #[test]
    fn bad_status_specs_point_at_the_item() {
        assert_eq!(
            issues(
                json!({"url": "https://x.example", "expected_status": [200, "2xx", "abc", 700]})
            ),
            [
                (
                    "expected_status[2]".to_string(),
                    "`abc` is not a status code (`404`), a class (`2xx`) or a range (`200-299`)"
                        .to_string()
                ),
                (
                    "expected_status[3]".to_string(),
                    "700 is not an HTTP status code (100 to 599)".to_string()
                ),
            ]
        );
        assert_eq!(
            paths(json!({"url": "https://x.example", "expected_status": "9xx"})),
            ["expected_status"]
        );
        assert_eq!(
            paths(json!({"url": "https://x.example", "expected_status": []})),
            ["expected_status"]
        );
        assert!(issues(json!({"url": "https://x.example", "expected_status": "404"})).is_empty());
    }

    #[test]
    fn bad_pointers_and_names_point_at_the_entry() {
        assert_eq!(
            issues(json!({"url": "https://x.example", "extract": {"state": "status/indicator"}})),
            [(
                "extract.state".to_string(),
                "`status/indicator` is not a JSON pointer: it must start with `/` (e.g. `/status/indicator`), or be empty for the whole body".to_string()
            )]
        );
        assert_eq!(
            paths(
                json!({"url": "https://x.example", "extract": {"eta": {"pointer": "eta", "optional": true}}})
            ),
            ["extract.eta.pointer"]
        );
        assert_eq!(
            paths(json!({"url": "https://x.example", "extract": {"my-state": "/s"}})),
            ["extract.my-state"]
        );
    }

    #[test]
    fn bad_headers_point_at_the_header() {
        assert_eq!(
            paths(
                json!({"url": "https://x.example", "headers": [{"name": "ok", "value": "1"}, {"name": "bad name", "value": "1"}]})
            ),
            ["headers[1].name"]
        );
        assert_eq!(
            paths(
                json!({"url": "https://x.example", "headers": [{"name": "X", "value": "a\r\nInjected: 1"}]})
            ),
            ["headers[0].value"]
        );
        assert_eq!(
            issues(json!({"url": "https://x.example", "headers": {"Host": "internal.example"}})),
            [(
                "headers.Host".to_string(),
                "`Host` is set by Meridian's HTTP client and cannot be configured".to_string()
            )]
        );
        assert_eq!(
            paths(json!({"url": "https://x.example", "headers": {"X-Api-Key": "a\nb"}})),
            ["headers.X-Api-Key"]
        );
        assert_eq!(
            paths(json!({"url": "https://x.example", "response_headers": ["ok", "no good"]})),
            ["response_headers[1]"]
        );
    }

    #[test]
    fn auth_checks() {
        assert_eq!(
            paths(
                json!({"url": "https://x.example", "auth": {"basic": {"username": "a:b", "password_secret": ""}}})
            ),
            ["auth.basic.username", "auth.basic.password_secret"]
        );
        assert_eq!(
            paths(
                json!({"url": "https://x.example", "headers": {"authorization": "Bearer x"}, "auth": {"bearer": {"token_secret": "t"}}})
            ),
            ["auth"]
        );
    }

    #[test]
    fn numbers_in_range() {
        assert_eq!(
            paths(json!({"url": "https://x.example", "timeout_ms": 0, "max_body_bytes": 0})),
            ["timeout_ms", "max_body_bytes"]
        );
        assert_eq!(
            paths(json!({"url": "https://x.example", "max_body_bytes": 2_000_000})),
            ["max_body_bytes"]
        );
    }

    #[test]
    fn validation_trusts_unsubstituted_variables_but_execution_does_not() {
        let templated =
            config(json!({"url": "${vars.base_url}/health", "method": "${vars.method}"}));
        assert!(check(&templated).is_empty());
        let issues = plan(&templated).unwrap_err();
        assert_eq!(
            issues.iter().map(|i| i.path.as_str()).collect::<Vec<_>>(),
            ["method", "url"]
        );
    }

    #[test]
    fn serde_errors_carry_paths() {
        let parse = |v: Value| meridian_sdk::parse_config::<Config>(&v.to_string()).unwrap_err();
        assert_eq!(
            parse(json!({})),
            [ConfigIssue::new("url", "required field is missing")]
        );
        assert_eq!(
            parse(json!({"url": "https://x", "timeout_ms": -1}))[0].path,
            "timeout_ms"
        );
        assert_eq!(
            parse(json!({"url": "https://x", "headers": [{"name": "a"}]}))[0].path,
            "headers[0].value"
        );
        assert_eq!(
            parse(json!({"url": "https://x", "headers": {"a": 1}}))[0].path,
            "headers.a"
        );
        assert_eq!(
            parse(json!({"url": "https://x", "colour": 1}))[0].path,
            "colour"
        );
        assert_eq!(
            parse(json!({"url": "https://x", "auth": {"digest": {}}}))[0].path,
            "auth"
        );
    }
}
