//! The step's configuration as job definitions write it. These types only
//! mirror the JSON (their schema is what `describe` reports); what the values
//! mean is checked once, in [`crate::plan`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// One HTTP request: what to send, which statuses count as success, and what
/// to take from the JSON response.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP method: GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS (any case).
    #[serde(default = "default_method")]
    pub method: String,
    /// Absolute http or https URL, without credentials (use `auth`).
    pub url: String,
    /// Query parameters appended to the URL; a list value repeats the name.
    #[serde(default)]
    pub query: BTreeMap<String, QueryValue>,
    /// Request headers.
    #[serde(default)]
    pub headers: Headers,
    /// Request body as text (`Content-Type: text/plain; charset=utf-8` unless
    /// a header sets another). Not together with `json`.
    #[serde(default)]
    pub body: Option<String>,
    /// Request body as JSON (`Content-Type: application/json` unless a header
    /// sets another). Not together with `body`.
    #[serde(default)]
    pub json: Option<Value>,
    /// Time limit for the whole exchange, in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// Statuses that count as success: codes (`204`), classes (`"2xx"`) and
    /// ranges (`"200-299"`). Default `["2xx"]`.
    #[serde(default)]
    pub expected_status: Option<StatusSpecs>,
    /// Values to take from the JSON response body: output name → JSON pointer
    /// (`"/status/indicator"`), or `{ "pointer", "optional", "default" }`.
    /// Each is in the output's `extracted` and exported as a variable.
    #[serde(default)]
    pub extract: BTreeMap<String, ExtractSpec>,
    /// Credentials, read from secrets at run time.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Response headers to copy into the output besides the usual ones
    /// (content-type, content-length, etag, last-modified, location,
    /// retry-after).
    #[serde(default)]
    pub response_headers: Vec<String>,
    /// Cap on the response body bytes kept in the output (default 65536, at
    /// most 1048576); extraction always sees the whole body.
    #[serde(default)]
    pub max_body_bytes: Option<u32>,
    /// Redirects (301, 302, 303, 307, 308) followed before giving up
    /// (default 5, at most 20; 0 returns the redirect as the response). Each
    /// hop is a new request that the host checks against the grants; a 3xx
    /// listed in `expected_status` is not followed.
    #[serde(default)]
    pub max_redirects: Option<u32>,
}

fn default_method() -> String {
    "GET".to_string()
}

/// A query parameter value: a scalar, or a list of scalars for a repeated name.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum QueryValue {
    /// One value.
    One(Scalar),
    /// The name repeated once per value.
    Many(Vec<Scalar>),
}

/// A string, number or boolean, sent as its text.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    /// Sent as is.
    Text(String),
    /// Sent as its JSON text (`2`, `0.5`).
    Number(serde_json::Number),
    /// Sent as `true` / `false`.
    Bool(bool),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Text(s) => f.write_str(s),
            Scalar::Number(n) => write!(f, "{n}"),
            Scalar::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// One request header.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
}

/// How the headers were written, so that an issue's JSON path points at
/// what the job author wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderForm {
    /// `{ "Name": "value" }`
    #[default]
    Map,
    /// `[ { "name": "Name", "value": "value" } ]`
    List,
}

/// Request headers: an object of name → value, or a list of
/// `{ "name", "value" }` (to repeat a name).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Headers {
    /// The headers in the order written.
    pub entries: Vec<Header>,
    /// Which of the two forms the config used.
    pub form: HeaderForm,
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor;

        impl<'de> Visitor<'de> for HeadersVisitor {
            type Value = Headers;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of header name to value, or a list of {\"name\", \"value\"}")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut entries = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, String>()? {
                    entries.push(Header { name, value });
                }
                Ok(Headers {
                    entries,
                    form: HeaderForm::Map,
                })
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Headers, A::Error> {
                let mut entries = Vec::new();
                while let Some(header) = seq.next_element::<Header>()? {
                    entries.push(header);
                }
                Ok(Headers {
                    entries,
                    form: HeaderForm::List,
                })
            }
        }

        deserializer.deserialize_any(HeadersVisitor)
    }
}

impl JsonSchema for Headers {
    fn schema_name() -> Cow<'static, str> {
        "Headers".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Request headers: an object of name to value, or a list of {\"name\", \"value\"} to repeat a name.",
            "anyOf": [
                { "type": "object", "additionalProperties": { "type": "string" } },
                { "type": "array", "items": generator.subschema_for::<Header>() }
            ]
        })
    }
}

/// `expected_status`: one spec or a list of them.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StatusSpecs {
    /// A single code, class or range.
    One(StatusSpec),
    /// Any of these.
    Many(Vec<StatusSpec>),
}

impl StatusSpecs {
    /// The specs with the JSON path of each, relative to `expected_status`
    /// (`None` for the single form).
    pub fn items(&self) -> Vec<(Option<usize>, &StatusSpec)> {
        match self {
            StatusSpecs::One(spec) => vec![(None, spec)],
            StatusSpecs::Many(specs) => specs
                .iter()
                .enumerate()
                .map(|(i, s)| (Some(i), s))
                .collect(),
        }
    }
}

/// A status code (`204`), class (`"2xx"`), range (`"200-299"`) or code as
/// text (`"404"`).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StatusSpec {
    /// One status code.
    Code(u16),
    /// A class, a range, or a code as text.
    Text(String),
}

/// What to take from the JSON response body.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ExtractSpec {
    /// A JSON pointer (RFC 6901) that must resolve.
    Pointer(String),
    /// A JSON pointer with options.
    Detailed(ExtractDetail),
}

/// A JSON pointer with what to do when it does not resolve.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtractDetail {
    /// JSON pointer (RFC 6901) into the response body, e.g. `/items/0/id`;
    /// `""` is the whole body.
    pub pointer: String,
    /// When true, a pointer that does not resolve gives `default` instead of
    /// failing the step.
    #[serde(default)]
    pub optional: bool,
    /// The value for an optional pointer that does not resolve (default null).
    #[serde(default)]
    pub default: Option<Value>,
}

/// Credentials; the secrets named are fetched at run time and never appear
/// in the output.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: Basic`, password from a secret.
    Basic {
        /// User name.
        username: String,
        /// Name of the secret holding the password.
        password_secret: String,
    },
    /// `Authorization: Bearer`, token from a secret.
    Bearer {
        /// Name of the secret holding the token.
        token_secret: String,
    },
}
