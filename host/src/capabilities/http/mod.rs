//! The HTTP capability: `meridian:step/http` and the standard
//! `wasi:http/outgoing-handler`, both behind one grant check.
//!
//! Every request goes through [`HttpClient::send`]: the grants decide on the
//! scheme, host, port, method and path ([`crate::capabilities::grants`]) — the path as a
//! server will route it, so a path servers read differently (`..%2F`,
//! `..;`, `//`, double encoding…) is refused before anything is sent and a
//! `path_prefix` matches whole segments ([`grant`]); what is checked is the
//! parsed URL, and that same URL is what is sent; then the host
//! name is resolved by a resolver that drops loopback, private, link-local
//! and metadata addresses unless the matching rule allows them, so a public
//! name that resolves to an internal address is refused too (and the check
//! happens at connect time, leaving no window for DNS rebinding). Redirects
//! are not followed by the host: the step sees the 3xx and any next request
//! is checked again. Proxies from the host's environment are ignored.

pub mod grant;

use super::{CapabilityError, StepEnv};
use crate::contract::bindings::meridian::step::http as wit;
use bytes::Bytes;
use grant::is_public;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use url::Url;
use wasmtime::component::{HasData, Linker};
use wasmtime_wasi_http::{WasiBody, WasiHttpHooks};

/// Limits of the HTTP capability.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Response bodies larger than this fail the call.
    pub max_response_bytes: usize,
    /// Request bodies larger than this are refused.
    pub max_request_bytes: usize,
    /// Used when the step gives no timeout, and the most it may ask for.
    pub default_timeout: Duration,
    pub max_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_response_bytes: 16 * 1024 * 1024,
            max_request_bytes: 16 * 1024 * 1024,
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(300),
        }
    }
}

/// An outbound request, whichever interface it came through.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Bytes>,
    pub timeout: Option<Duration>,
}

/// A buffered response.
#[derive(Debug, Clone)]
pub struct OutboundResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// The host's HTTP client, shared by all steps.
#[derive(Debug, Clone)]
pub struct HttpClient {
    /// For rules without `allow_private`: resolves to public addresses only.
    public_only: reqwest::Client,
    /// For rules with `allow_private`.
    any_address: reqwest::Client,
    limits: HttpLimits,
}

/// A host name that resolved only to addresses a step may not reach.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to non-public addresses ({addrs})")]
struct PrivateAddress {
    host: String,
    addrs: String,
    first: std::net::IpAddr,
}

/// Resolves with the system resolver, keeping public addresses only.
struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                all.iter().copied().filter(|a| is_public(a.ip())).collect();
            match (public.is_empty(), all.first()) {
                (false, _) => Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs),
                (true, Some(first)) => Err(Box::new(PrivateAddress {
                    addrs: all
                        .iter()
                        .map(|a| a.ip().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    first: first.ip(),
                    host,
                })
                    as Box<dyn std::error::Error + Send + Sync>),
                (true, None) => Err(format!("{host} did not resolve to any address").into()),
            }
        })
    }
}

impl HttpClient {
    pub fn new(limits: HttpLimits) -> Result<Self, reqwest::Error> {
        let base = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .connect_timeout(Duration::from_secs(10))
                .user_agent(concat!("meridian/", env!("CARGO_PKG_VERSION")))
        };
        Ok(Self {
            public_only: base().dns_resolver(Arc::new(PublicOnlyResolver)).build()?,
            any_address: base().build()?,
            limits,
        })
    }

    pub fn limits(&self) -> &HttpLimits {
        &self.limits
    }

    /// Checks the request against the step's grants, sends it and reads the
    /// response, recording the call on the step's ledger.
    pub async fn send(
        &self,
        env: &StepEnv,
        request: OutboundRequest,
    ) -> Result<OutboundResponse, CapabilityError> {
        let target = format!("{} {}", request.method.to_ascii_uppercase(), request.url);
        let timer = env.begin("http")?.target(&target);
        let result = self.send_checked(env, request, &target).await;
        env.finish(timer, &target, &result);
        result
    }

    async fn send_checked(
        &self,
        env: &StepEnv,
        request: OutboundRequest,
        target: &str,
    ) -> Result<OutboundResponse, CapabilityError> {
        let url = Url::parse(&request.url)
            .map_err(|e| CapabilityError::InvalidRequest(format!("url {:?}: {e}", request.url)))?;
        let method = reqwest::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| {
                CapabilityError::InvalidRequest(format!("method {:?} is not valid", request.method))
            })?;
        let rule = env
            .grants
            .check_http(method.as_str(), &url)
            .map_err(CapabilityError::Denied)?;
        if let Some(body) = &request.body
            && body.len() > self.limits.max_request_bytes
        {
            return Err(CapabilityError::InvalidRequest(format!(
                "request body of {} bytes exceeds the limit of {} bytes",
                body.len(),
                self.limits.max_request_bytes
            )));
        }
        let client = if rule.allow_private() {
            &self.any_address
        } else {
            &self.public_only
        };
        let timeout = request
            .timeout
            .unwrap_or(self.limits.default_timeout)
            .min(self.limits.max_timeout);
        let mut builder = client.request(method, url).timeout(timeout);
        for (name, value) in &request.headers {
            if name.eq_ignore_ascii_case("host") {
                continue;
            }
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let response = builder.send().await.map_err(|e| {
            if let Some(private) = find_source::<PrivateAddress>(&e) {
                return CapabilityError::Denied(env.grants.private_denial(
                    target,
                    private.first,
                    rule,
                ));
            }
            request_error(&e, timeout)
        })?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = self.read_body(response, timeout).await?;
        Ok(OutboundResponse {
            status,
            headers,
            body,
        })
    }

    async fn read_body(
        &self,
        mut response: reqwest::Response,
        timeout: Duration,
    ) -> Result<Bytes, CapabilityError> {
        let max = self.limits.max_response_bytes;
        if let Some(len) = response.content_length()
            && len > max as u64
        {
            return Err(CapabilityError::Failed(format!(
                "response body of {len} bytes exceeds the limit of {max} bytes"
            )));
        }
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| request_error(&e, timeout))?
        {
            if body.len() + chunk.len() > max {
                return Err(CapabilityError::Failed(format!(
                    "response body exceeds the limit of {max} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

fn find_source<'e, E: std::error::Error + 'static>(
    err: &'e (dyn std::error::Error + 'static),
) -> Option<&'e E> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        cur = e.source();
    }
    None
}

/// A readable message for a failed exchange, without internal detail.
fn request_error(e: &reqwest::Error, timeout: Duration) -> CapabilityError {
    if e.is_timeout() {
        return CapabilityError::TimedOut(format!("no complete response within {timeout:?}"));
    }
    let mut msg = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        cur = s.source();
    }
    CapabilityError::Failed(msg)
}

/// The meridian HTTP interface as seen by one step execution.
pub struct HttpCap<'a> {
    pub env: &'a StepEnv,
    pub client: &'a HttpClient,
}

impl wit::Host for HttpCap<'_> {
    async fn send(&mut self, request: wit::Request) -> Result<wit::Response, wit::CapabilityError> {
        let request = OutboundRequest {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body.map(Bytes::from),
            timeout: request
                .timeout_ms
                .map(|ms| Duration::from_millis(ms.into())),
        };
        match self.client.send(self.env, request).await {
            Ok(r) => Ok(wit::Response {
                status: r.status,
                headers: r.headers,
                body: r.body.to_vec(),
            }),
            Err(e) => Err(e.into_wit(&self.env.masker)),
        }
    }
}

struct Http;

impl HasData for Http {
    type Data<'a> = HttpCap<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> HttpCap<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Http>(linker, get)
}

/// Serves `wasi:http/outgoing-handler` through [`HttpClient::send`], so a
/// component built with a generic wasi:http library meets the same grants.
pub struct WasiHttpGate {
    pub env: Arc<StepEnv>,
    pub client: Arc<HttpClient>,
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for WasiHttpGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        use wasmtime_wasi_http::Error;
        let env = self.env.clone();
        let client = self.client.clone();
        Box::new(async move {
            let (parts, body) = request.into_parts();
            let max = client.limits.max_request_bytes;
            let body = http_body_util::Limited::new(body, max)
                .collect()
                .await
                .map_err(|_| Error::HttpRequestBodySize(Some(max as u64)))?
                .to_bytes();
            let headers = parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let timeout = options.and_then(|o| match (o.connect_timeout, o.first_byte_timeout) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            });
            let request = OutboundRequest {
                method: parts.method.as_str().to_string(),
                url: parts.uri.to_string(),
                headers,
                body: (!body.is_empty()).then_some(body),
                timeout,
            };
            let response = client.send(&env, request).await.map_err(|e| match e {
                CapabilityError::Denied(_) => Error::HttpRequestDenied,
                CapabilityError::TimedOut(_) => Error::ConnectionTimeout,
                CapabilityError::InvalidRequest(_) => Error::HttpRequestUriInvalid,
                CapabilityError::Failed(m) | CapabilityError::BudgetExceeded(m) => {
                    Error::InternalError(Some(env.masker.mask(&m).into_owned()))
                }
            })?;
            let mut builder = http::Response::builder().status(response.status);
            for (k, v) in &response.headers {
                builder = builder.header(k.as_str(), v.as_str());
            }
            let body = http_body_util::Full::new(response.body)
                .map_err(|never| match never {})
                .boxed_unsync();
            let response = builder
                .body(body)
                .map_err(|e| Error::InternalError(Some(e.to_string())))?;
            Ok((
                response,
                Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}
