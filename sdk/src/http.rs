//! Outbound HTTP through the host, checked against the component's HTTP
//! grants (scheme, host pattern, port, method, path prefix) and the addresses
//! the host name resolves to.
//!
//! One-liners for the common cases, and a [`Request`] builder for the rest:
//!
//! ```no_run
//! use meridian_sdk::http;
//! use meridian_sdk::serde_json::json;
//!
//! # fn run() -> Result<(), meridian_sdk::StepError> {
//! let status = http::get("https://status.example.com/api/v1")?;
//! let state: meridian_sdk::serde_json::Value = status.json()?;
//!
//! let created = http::Request::new("POST", "https://api.example.com/v1/tickets")
//!     .header("X-Request-Source", "meridian")
//!     .json(&json!({ "title": "disk full", "state": state }))?
//!     .bearer(&meridian_sdk::secrets::get("api_token")?)
//!     .timeout_ms(10_000)
//!     .send()?;
//! if !created.is_success() {
//!     return Err(meridian_sdk::StepError::failed(format!("ticket API answered {}", created.status)));
//! }
//! # Ok(()) }
//! ```
//!
//! A response with any status is `Ok`: the status is the step's to judge.
//! `Err` means there was no response (denied, invalid, failed, timed out).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::CapabilityError;

/// An HTTP request, built and then [sent](Request::send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout_ms: Option<u32>,
}

impl Request {
    /// A request with any method (`"GET"`, `"POST"`, ...) to an absolute
    /// `http` or `https` URL.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout_ms: None,
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }

    /// A `PUT` request.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new("PUT", url)
    }

    /// A `PATCH` request.
    pub fn patch(url: impl Into<String>) -> Self {
        Self::new("PATCH", url)
    }

    /// A `DELETE` request.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new("DELETE", url)
    }

    /// Adds a header (a repeated name is sent once per call).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds several headers.
    pub fn headers<N, V>(mut self, headers: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: Into<String>,
        V: Into<String>,
    {
        self.headers
            .extend(headers.into_iter().map(|(n, v)| (n.into(), v.into())));
        self
    }

    /// Sets a header, replacing any with the same name (case-insensitively).
    pub fn set_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body bytes as they are.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets a text body, with `Content-Type: text/plain; charset=utf-8`
    /// unless a content type was set already.
    pub fn text(self, text: impl Into<String>) -> Self {
        self.default_content_type("text/plain; charset=utf-8")
            .body(text.into().into_bytes())
    }

    /// Sets a JSON body, with `Content-Type: application/json` unless a
    /// content type was set already.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, CapabilityError> {
        let body = serde_json::to_vec(value).map_err(|e| {
            CapabilityError::InvalidRequest(format!("the JSON body could not be serialised: {e}"))
        })?;
        Ok(self.default_content_type("application/json").body(body))
    }

    /// Sets `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.set_header("Authorization", format!("Bearer {token}"))
    }

    /// Sets `Authorization: Basic ...` for `username` and `password`.
    pub fn basic_auth(self, username: &str, password: &str) -> Self {
        let credentials = crate::encoding::base64(format!("{username}:{password}").as_bytes());
        self.set_header("Authorization", format!("Basic {credentials}"))
    }

    /// Limits the whole exchange to `ms` milliseconds (the step's own
    /// timeout still applies on top).
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The headers, in the order they will be sent.
    pub fn header_list(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body, if one was set.
    pub fn body_bytes(&self) -> Option<&[u8]> {
        self.body.as_deref()
    }

    /// The time limit, if one was set.
    pub fn timeout(&self) -> Option<u32> {
        self.timeout_ms
    }

    /// Sends the request through the host.
    pub fn send(self) -> Result<Response, CapabilityError> {
        send(self)
    }

    fn default_content_type(self, content_type: &str) -> Self {
        if self.header_value("content-type").is_some() {
            self
        } else {
            self.header("Content-Type", content_type)
        }
    }
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The media type of the body, without parameters, in lower case
    /// (`application/json` for `Application/JSON; charset=utf-8`).
    pub fn content_type(&self) -> Option<String> {
        self.header("content-type").map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
    }

    /// The body as text; invalid UTF-8 becomes U+FFFD.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, CapabilityError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            CapabilityError::Failed(format!(
                "the response body (HTTP {}) is not the JSON expected: {e}",
                self.status
            ))
        })
    }
}

/// Sends `GET url`.
pub fn get(url: &str) -> Result<Response, CapabilityError> {
    Request::get(url).send()
}

/// Sends `POST url` with `value` as a JSON body.
pub fn post_json<T: Serialize + ?Sized>(url: &str, value: &T) -> Result<Response, CapabilityError> {
    Request::post(url).json(value)?.send()
}

/// Sends a request through the host.
pub fn send(request: Request) -> Result<Response, CapabilityError> {
    transport::send(request)
}

#[cfg(target_arch = "wasm32")]
mod transport {
    use super::{Request, Response};
    use crate::CapabilityError;
    use crate::bindings::meridian::step::http as wit;

    pub(super) fn send(request: Request) -> Result<Response, CapabilityError> {
        let request = wit::Request {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
            timeout_ms: request.timeout_ms,
        };
        let response = wit::send(&request).map_err(CapabilityError::from_wit)?;
        Ok(Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod transport {
    use super::{Request, Response};
    use crate::CapabilityError;

    pub(super) fn send(_request: Request) -> Result<Response, CapabilityError> {
        Err(CapabilityError::outside_host("http"))
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn builder_sets_headers_and_body() {
        let request = Request::new("POST", "https://x.example/api")
            .header("Content-Type", "application/vnd.x+json")
            .json(&json!({"a": 1}))
            .unwrap()
            .bearer("t0k")
            .basic_auth("Aladdin", "open sesame")
            .timeout_ms(500);
        assert_eq!(request.method(), "POST");
        assert_eq!(
            request.header_value("content-type"),
            Some("application/vnd.x+json")
        );
        assert_eq!(
            request.header_value("authorization"),
            Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        );
        assert_eq!(request.header_list().len(), 2);
        assert_eq!(request.body_bytes(), Some(&br#"{"a":1}"#[..]));
        assert_eq!(request.timeout(), Some(500));

        let text = Request::post("https://x.example").text("hi");
        assert_eq!(
            text.header_value("Content-Type"),
            Some("text/plain; charset=utf-8")
        );
    }

    #[test]
    fn response_helpers() {
        let response = Response {
            status: 201,
            headers: vec![(
                "Content-Type".into(),
                "Application/JSON; charset=utf-8".into(),
            )],
            body: br#"{"id": 7}"#.to_vec(),
        };
        assert!(response.is_success());
        assert_eq!(response.content_type().as_deref(), Some("application/json"));
        assert_eq!(response.json::<serde_json::Value>().unwrap()["id"], 7);
        assert!(response.json::<Vec<u8>>().is_err());
        assert_eq!(response.text(), r#"{"id": 7}"#);
    }

    #[test]
    fn outside_the_host_calls_fail_cleanly() {
        assert!(matches!(
            get("https://example.com"),
            Err(CapabilityError::Failed(_))
        ));
    }
}
