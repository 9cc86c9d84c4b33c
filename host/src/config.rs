//! Configuration: a TOML file, environment overrides and command-line
//! flags, parsed once into typed values.
//!
//! Precedence: flag > `MERIDIAN_*` environment variable > file > default.
//! Relative paths in the file are relative to the file's directory. Secrets
//! may be given literally, by environment variable or by file, and also as
//! `MERIDIAN_SECRET_<NAME>` variables (the name lower-cased). The log files
//! (`[logging]`, see [`crate::logging`]) also take `MERIDIAN_LOG_DIR`,
//! `MERIDIAN_LOG` (filter directives) and `MERIDIAN_LOG_FORMAT`.

use crate::capabilities::grants::{GrantSpec, Grants};
use crate::capabilities::http::HttpLimits;
use crate::logging::{Category, LogConfig, LogFormat};
use crate::runtime::SandboxLimits;
use crate::secrets::{SecretStore, SecretValue};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "meridian-data";
/// The default API address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Secrets shorter than this are masked too, but with a warning.
const MIN_MASKABLE_SECRET: usize = 4;

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    plugins_dir: Option<PathBuf>,
    /// A further TOML file holding `[[grants]]`, kept apart so security
    /// teams can own it.
    grants_file: Option<PathBuf>,
    #[serde(default)]
    sandbox: SandboxFile,
    #[serde(default)]
    http: HttpFile,
    /// `[sql]`: named connections and limits.
    #[serde(default)]
    sql: crate::capabilities::sql::SqlFile,
    #[serde(default)]
    secrets: BTreeMap<String, SecretSource>,
    #[serde(default)]
    grants: Vec<GrantSpec>,
    #[serde(default)]
    logging: LoggingFile,
    /// `[api]`: limits of the REST API.
    #[serde(default)]
    api: ApiFile,
    /// Where the store lives: a SQLite file path, or a `postgres://` URL
    /// for several nodes on one database. Default `<data_dir>/meridian.db`.
    store: Option<String>,
    /// The PostgreSQL password, from `[secrets]` (so the URL can leave it
    /// out).
    store_password_secret: Option<String>,
    /// `[cluster]`: this node's id and its leases.
    #[serde(default)]
    cluster: ClusterFile,
    /// `[audit]`: the signing key and checkpoints of the audit trail.
    #[serde(default)]
    audit: AuditFile,
}

/// `[audit]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditFile {
    signing_key: Option<PathBuf>,
    checkpoint_interval_s: Option<u64>,
    #[serde(default)]
    trusted_keys: Vec<String>,
    witness_url: Option<String>,
    witness_token_secret: Option<String>,
}

/// `[cluster]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    node_id: Option<String>,
    lease_s: Option<u64>,
    heartbeat_s: Option<u64>,
    max_connections: Option<u32>,
}

/// Where the store lives (`store`).
#[derive(Clone)]
pub enum StoreLocation {
    /// The embedded SQLite file.
    Sqlite(PathBuf),
    /// PostgreSQL, shared by the nodes of a cluster.
    Postgres {
        url: String,
        password: Option<String>,
        max_connections: u32,
    },
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl StoreLocation {
    /// For messages: the file, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Sqlite(path) => path.display().to_string(),
            StoreLocation::Postgres { url, .. } => redact_url(url),
        }
    }

    /// Opens the store and brings its schema up to date.
    pub async fn open(&self) -> Result<crate::store::Store, crate::store::StoreError> {
        match self {
            StoreLocation::Sqlite(path) => crate::store::Store::open_sqlite(path).await,
            StoreLocation::Postgres {
                url,
                password,
                max_connections,
            } => {
                crate::store::Store::open_postgres(url, password.as_deref(), *max_connections).await
            }
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    format!("{scheme}://{authority}/{path}")
}

/// This machine's host name (empty when it cannot be read): the default
/// node id, and what a node records to tell a crashed process on this host.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// This node in a cluster (`[cluster]`).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// Unique per node; default the host name.
    pub node_id: String,
    /// How long a node holds an execution without renewing: a dead node's
    /// work is taken over within this time (plus one heartbeat).
    pub lease: Duration,
    /// How often a node renews its leases and looks for expired ones.
    pub heartbeat: Duration,
}

/// `[api]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiFile {
    max_plugin_bytes: Option<usize>,
    refusal_window_s: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    insecure_http: Option<bool>,
}

/// The REST API's settings (`[api]`).
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// The largest component PUT /api/v2/plugins/{name} accepts; every
    /// other route keeps the 1 MiB body limit.
    pub max_plugin_bytes: usize,
    /// How long requests without a valid token are counted before their
    /// aggregate audit records are written (one per source address).
    pub refusal_window: Duration,
    /// The certificate chain and key `serve` speaks TLS with.
    pub tls: Option<TlsFiles>,
    /// Serve plain HTTP on an address that is not loopback (said in so
    /// many words: `--insecure-http` or `[api] insecure_http = true`).
    pub insecure_http: bool,
}

/// The default of `[api] max_plugin_bytes`: 64 MiB.
pub const DEFAULT_MAX_PLUGIN_BYTES: usize = 64 * 1024 * 1024;

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            max_plugin_bytes: DEFAULT_MAX_PLUGIN_BYTES,
            refusal_window: DEFAULT_REFUSAL_WINDOW,
            tls: None,
            insecure_http: false,
        }
    }
}

/// `[logging]` as written; checked into a [`LogConfig`] by [`logging_config`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoggingFile {
    dir: Option<PathBuf>,
    level: Option<String>,
    format: Option<String>,
    stderr: Option<bool>,
    max_file_bytes: Option<u64>,
    compress: Option<bool>,
    cleanup_interval_s: Option<u64>,
    #[serde(default)]
    retention_days: RetentionFile,
}

/// `[logging.retention_days]`: days per category.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionFile {
    timezones: Option<u32>,
    executions: Option<u32>,
    audit: Option<u32>,
    performance: Option<u32>,
    system: Option<u32>,
}

/// The logging variables of the environment, read once (empty ones are
/// unset), so tests can give their own.
#[derive(Debug, Default)]
struct LogEnv {
    /// `MERIDIAN_LOG_DIR`
    dir: Option<PathBuf>,
    /// `MERIDIAN_LOG`
    level: Option<String>,
    /// `MERIDIAN_LOG_FORMAT`
    format: Option<String>,
}

impl LogEnv {
    fn from_process() -> Self {
        let text = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            dir: std::env::var_os("MERIDIAN_LOG_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            level: text("MERIDIAN_LOG"),
            format: text("MERIDIAN_LOG_FORMAT"),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SandboxFile {
    timeout_ms: Option<u64>,
    memory_mb: Option<u64>,
    max_host_calls: Option<u32>,
    max_output_bytes: Option<usize>,
    max_log_bytes: Option<usize>,
    max_log_line_bytes: Option<usize>,
    max_resources: Option<usize>,
    max_http_fields_bytes: Option<usize>,
    max_concurrent: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    max_response_bytes: Option<usize>,
    max_request_bytes: Option<usize>,
    default_timeout_ms: Option<u64>,
    max_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsFile {
    #[serde(default)]
    grants: Vec<GrantSpec>,
}

/// Where a secret's value comes from.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SecretSource {
    Literal(String),
    Env { env: String },
    File { file: PathBuf },
}

/// Values given on the command line or through `MERIDIAN_*` variables.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub plugins_dir: Option<PathBuf>,
    /// `serve --tls-cert`, `--tls-key`, `--insecure-http`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub insecure_http: bool,
}

/// The whole configuration, parsed.
#[derive(Debug)]
pub struct Config {
    /// Store, compiled-plugin cache and logs live here.
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Extra plugins are loaded from here, besides the built-in ones.
    pub plugins_dir: Option<PathBuf>,
    pub sandbox: SandboxLimits,
    pub http: HttpLimits,
    /// SQL connections and limits.
    pub sql: crate::capabilities::sql::SqlSettings,
    pub secrets: SecretStore,
    pub grants: Grants,
    /// The grants as written (file and grants file), for the views that
    /// show them; `grants` is their parsed form.
    pub grant_specs: Vec<GrantSpec>,
    /// Log files: where, in what format, rotated and kept how long.
    pub logging: LogConfig,
    /// `[api]`: the plugin upload's size limit.
    pub api: ApiSettings,
    /// Where the store lives.
    pub store: StoreLocation,
    /// This node's id and leases (`[cluster]`).
    pub cluster: ClusterSettings,
    /// `[audit]`: the key that signs the trail's checkpoints, how often,
    /// whose checkpoints verify, the witness.
    pub audit: crate::audit::anchor::AuditSettings,
}

/// A configuration problem, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {field}: {message}")]
    Field {
        path: String,
        field: String,
        message: String,
    },
}

impl Config {
    /// Reads the file (when given), then applies environment secrets and the
    /// overrides.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        let (parsed, base) = match file {
            Some(path) => {
                let parsed: FileConfig = read_toml(path)?;
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                (parsed, Some(base))
            }
            None => (FileConfig::default(), None),
        };
        let origin = file.map_or_else(|| "configuration".to_string(), |p| p.display().to_string());
        let field = |field: &str, message: String| ConfigError::Field {
            path: origin.clone(),
            field: field.to_string(),
            message,
        };
        let resolve = |p: PathBuf| match &base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p,
        };

        let data_dir = overrides
            .data_dir
            .or(parsed.data_dir.map(resolve))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let listen_text = overrides
            .listen
            .or(parsed.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = listen_text.parse().map_err(|e| {
            field(
                "listen",
                format!("{listen_text:?} is not an address like 127.0.0.1:8080: {e}"),
            )
        })?;
        let plugins_dir = overrides.plugins_dir.or(parsed.plugins_dir.map(resolve));
        let logging = logging_config(parsed.logging, LogEnv::from_process(), &resolve)
            .map_err(|(name, message)| field(&name, message))?;

        let mut sandbox = SandboxLimits::default();
        let s = parsed.sandbox;
        if let Some(ms) = s.timeout_ms {
            sandbox.timeout = Duration::from_millis(ms);
        }
        if let Some(mb) = s.memory_mb {
            if !(1..=4096).contains(&mb) {
                return Err(field(
                    "sandbox.memory_mb",
                    "must be between 1 and 4096".into(),
                ));
            }
            sandbox.memory_bytes = (mb as usize) * 1024 * 1024;
        }
        if let Some(n) = s.max_host_calls {
            sandbox.max_host_calls = n;
        }
        if let Some(n) = s.max_output_bytes {
            sandbox.max_output_bytes = n;
        }
        if let Some(n) = s.max_log_bytes {
            sandbox.max_log_bytes = n;
        }
        if let Some(n) = s.max_log_line_bytes {
            if !(256..=16 * 1024 * 1024).contains(&n) {
                return Err(field(
                    "sandbox.max_log_line_bytes",
                    "must be between 256 and 16777216 (16 MiB)".into(),
                ));
            }
            sandbox.max_log_line_bytes = n;
        }
        if let Some(n) = s.max_resources {
            if !(64..=1_000_000).contains(&n) {
                return Err(field(
                    "sandbox.max_resources",
                    "must be between 64 and 1000000".into(),
                ));
            }
            sandbox.max_resources = n;
        }
        if let Some(n) = s.max_http_fields_bytes {
            if !(1024..=16 * 1024 * 1024).contains(&n) {
                return Err(field(
                    "sandbox.max_http_fields_bytes",
                    "must be between 1024 and 16777216 (16 MiB)".into(),
                ));
            }
            sandbox.max_http_fields_bytes = n;
        }
        if let Some(n) = s.max_concurrent {
            if !(1..=1024).contains(&n) {
                return Err(field(
                    "sandbox.max_concurrent",
                    "must be between 1 and 1024".into(),
                ));
            }
            sandbox.max_concurrent = n;
        }

        let cluster_file = parsed.cluster;
        let lease_s = cluster_file.lease_s.unwrap_or(15);
        if !(2..=3600).contains(&lease_s) {
            return Err(field(
                "cluster.lease_s",
                "must be between 2 and 3600 seconds".into(),
            ));
        }
        let heartbeat_s = cluster_file.heartbeat_s.unwrap_or((lease_s / 3).max(1));
        if heartbeat_s == 0 || heartbeat_s * 2 > lease_s {
            return Err(field(
                "cluster.heartbeat_s",
                format!("must be at least 1 and at most half of lease_s ({lease_s})"),
            ));
        }
        let node_id = match cluster_file.node_id {
            Some(id) => id,
            None => match hostname() {
                h if h.is_empty() => "local".to_string(),
                h => h,
            },
        };
        if node_id.is_empty()
            || node_id.len() > 128
            || !node_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(field(
                "cluster.node_id",
                format!("{node_id:?}: use 1 to 128 letters, digits, '-', '_' or '.'"),
            ));
        }
        let cluster = ClusterSettings {
            node_id,
            lease: Duration::from_secs(lease_s),
            heartbeat: Duration::from_secs(heartbeat_s),
        };

        let mut api = ApiSettings::default();
        if let Some(n) = parsed.api.max_plugin_bytes {
            if n == 0 {
                return Err(field("api.max_plugin_bytes", "must be at least 1".into()));
            }
            api.max_plugin_bytes = n;
        }
        if let Some(s) = parsed.api.refusal_window_s {
            if !(1..=3600).contains(&s) {
                return Err(field(
                    "api.refusal_window_s",
                    "must be between 1 and 3600 seconds".into(),
                ));
            }
            api.refusal_window = Duration::from_secs(s);
        }
        let tls_cert = overrides.tls_cert.or(parsed.api.tls_cert.map(resolve));
        let tls_key = overrides.tls_key.or(parsed.api.tls_key.map(resolve));
        api.tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(field(
                    "api.tls_key",
                    "is needed with tls_cert (--tls-key with --tls-cert)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(field(
                    "api.tls_cert",
                    "is needed with tls_key (--tls-cert with --tls-key)".into(),
                ));
            }
        };
        api.insecure_http = overrides.insecure_http || parsed.api.insecure_http.unwrap_or(false);

        let mut http = HttpLimits::default();
        let h = parsed.http;
        if let Some(n) = h.max_response_bytes {
            http.max_response_bytes = n;
        }
        if let Some(n) = h.max_request_bytes {
            http.max_request_bytes = n;
        }
        if let Some(ms) = h.default_timeout_ms {
            http.default_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = h.max_timeout_ms {
            http.max_timeout = Duration::from_millis(ms);
        }

        let mut secrets = BTreeMap::new();
        for (name, source) in parsed.secrets {
            let value = match source {
                SecretSource::Literal(v) => v,
                SecretSource::Env { env } => std::env::var(&env).map_err(|_| {
                    field(
                        &format!("secrets.{name}.env"),
                        format!("environment variable {env} is not set"),
                    )
                })?,
                SecretSource::File { file } => {
                    let file = resolve(file);
                    std::fs::read_to_string(&file)
                        .map_err(|e| {
                            field(
                                &format!("secrets.{name}.file"),
                                format!("{}: {e}", file.display()),
                            )
                        })?
                        .trim_end_matches(['\n', '\r'])
                        .to_string()
                }
            };
            secrets.insert(name, SecretValue::new(value));
        }
        for (key, value) in std::env::vars() {
            if let Some(name) = key.strip_prefix("MERIDIAN_SECRET_")
                && !name.is_empty()
            {
                secrets.insert(name.to_ascii_lowercase(), SecretValue::new(value));
            }
        }

        for (name, value) in &secrets {
            // Every secret is masked wherever it appears; a very short one
            // also masks ordinary text that happens to contain it.
            if value.expose().chars().count() < MIN_MASKABLE_SECRET {
                tracing::warn!(
                    secret = %name,
                    "secret is shorter than {MIN_MASKABLE_SECRET} characters: masking it will also hide unrelated text in outputs and logs"
                );
            } else if value.expose().len() < crate::secrets::MIN_ENCODED_SECRET_BYTES {
                tracing::warn!(
                    secret = %name,
                    "secret is shorter than {} bytes: its base64 and hex forms are not masked",
                    crate::secrets::MIN_ENCODED_SECRET_BYTES
                );
            }
        }

        let sql = crate::capabilities::sql::SqlSettings::parse(parsed.sql, &|name| {
            secrets.contains_key(name)
        })
        .map_err(|(name, message)| field(&name, message))?;

        let mut grants_specs = parsed.grants;
        let mut grants_origin = "grants".to_string();
        if let Some(gf) = parsed.grants_file {
            let gf = resolve(gf);
            let extra: GrantsFile = read_toml(&gf)?;
            grants_origin = format!("grants (from {} and {})", origin, gf.display());
            grants_specs.extend(extra.grants);
        }
        let grants =
            Grants::parse(&grants_specs, "grants").map_err(|errors| ConfigError::Field {
                path: grants_origin,
                field: "grants".into(),
                message: errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            })?;

        let audit = audit_settings(parsed.audit, &data_dir, &resolve, &|name| {
            secrets.get(name).cloned()
        })
        .map_err(|(name, message)| field(&name, message))?;

        let store = match parsed.store {
            None => StoreLocation::Sqlite(data_dir.join("meridian.db")),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let password = match parsed.store_password_secret {
                    Some(name) => Some(
                        secrets
                            .get(&name)
                            .map(|v: &SecretValue| v.expose().to_string())
                            .ok_or_else(|| {
                                field(
                                    "store_password_secret",
                                    format!("no secret named {name:?} in [secrets]"),
                                )
                            })?,
                    ),
                    None => None,
                };
                let max_connections = cluster_file.max_connections.unwrap_or(16);
                if !(2..=1000).contains(&max_connections) {
                    return Err(field(
                        "cluster.max_connections",
                        "must be between 2 and 1000".into(),
                    ));
                }
                StoreLocation::Postgres {
                    url,
                    password,
                    max_connections,
                }
            }
            Some(other) if other.contains("://") => {
                return Err(field(
                    "store",
                    format!(
                        "{}: a postgres:// URL or a SQLite file path",
                        redact_url(&other)
                    ),
                ));
            }
            Some(path) => StoreLocation::Sqlite(resolve(PathBuf::from(path))),
        };
        let store_file = match &store {
            StoreLocation::Sqlite(path) => Some(path.as_path()),
            StoreLocation::Postgres { .. } => None,
        };
        sql.check_apart_from(&data_dir, store_file)
            .map_err(|(name, message)| field(&name, message))?;

        Ok(Self {
            grant_specs: grants_specs,
            data_dir,
            listen,
            plugins_dir,
            sandbox,
            http,
            sql,
            secrets: SecretStore::new(secrets),
            grants,
            logging,
            api,
            store,
            cluster,
            audit,
        })
    }

    /// The embedded SQLite database's default file.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("meridian.db")
    }

    /// Where plugins uploaded through the API are stored (and loaded from
    /// at start): `plugins_dir`, or `<data_dir>/plugins` without one.
    pub fn upload_dir(&self) -> PathBuf {
        self.plugins_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("plugins"))
    }

    /// Where compiled components are cached.
    pub fn cache_dir(&self) -> PathBuf {
        self.data_dir.join("cache").join("components")
    }
}

/// The API's certificate chain and private key files (`[api] tls_cert`,
/// `tls_key`), loaded and watched by [`crate::api::tls`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The default of `[api] refusal_window_s`: how long the API tallies
/// refused requests before it writes one audit record per source.
pub const DEFAULT_REFUSAL_WINDOW: Duration = Duration::from_secs(60);

/// Checks `[audit]`; a problem is the field's name and what is wrong.
fn audit_settings(
    file: AuditFile,
    data_dir: &Path,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
    secret: &dyn Fn(&str) -> Option<SecretValue>,
) -> Result<crate::audit::anchor::AuditSettings, (String, String)> {
    let mut settings = crate::audit::anchor::AuditSettings::new(data_dir);
    if let Some(path) = file.signing_key {
        settings.signing_key = resolve(path);
    }
    if let Some(s) = file.checkpoint_interval_s {
        if !(1..=86_400).contains(&s) {
            return Err((
                "audit.checkpoint_interval_s".into(),
                "must be between 1 and 86400 seconds".into(),
            ));
        }
        settings.checkpoint_interval = Duration::from_secs(s);
    }
    for (i, key) in file.trusted_keys.iter().enumerate() {
        let key = key
            .parse()
            .map_err(|e| (format!("audit.trusted_keys[{i}]"), format!("{e}")))?;
        settings.trusted_keys.push(key);
    }
    let token = match file.witness_token_secret {
        Some(name) => Some(secret(&name).ok_or_else(|| {
            (
                "audit.witness_token_secret".to_string(),
                format!("no secret named {name:?} in [secrets]"),
            )
        })?),
        None => None,
    };
    match file.witness_url {
        Some(text) => {
            let bad = |m: &str| ("audit.witness_url".to_string(), m.to_string());
            let url = url::Url::parse(&text).map_err(|e| bad(&format!("not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(bad("must be an http:// or https:// URL"));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(bad(
                    "must not hold credentials: give the token with witness_token_secret",
                ));
            }
            settings.witness = Some(crate::audit::anchor::WitnessSettings { url, token });
        }
        None if token.is_some() => {
            return Err((
                "audit.witness_token_secret".into(),
                "is set but witness_url is not".into(),
            ));
        }
        None => {}
    }
    Ok(settings)
}

/// Checks `[logging]` with the environment's overrides; a problem is the
/// field's name (or the variable's) and what is wrong.
fn logging_config(
    file: LoggingFile,
    env: LogEnv,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<LogConfig, (String, String)> {
    let mut config = LogConfig::default();
    let err = |name: &str, message: String| (name.to_string(), message);
    config.dir = env.dir.or(file.dir.map(resolve));
    let (level_field, level) = match (env.level, file.level) {
        (Some(l), _) => ("MERIDIAN_LOG", Some(l)),
        (None, l) => ("logging.level", l),
    };
    if let Some(level) = level {
        crate::logging::check_filter(&level).map_err(|m| err(level_field, m))?;
        config.level = level;
    }
    let (format_field, format) = match (env.format, file.format) {
        (Some(f), _) => ("MERIDIAN_LOG_FORMAT", Some(f)),
        (None, f) => ("logging.format", f),
    };
    if let Some(format) = format {
        config.format = LogFormat::parse(&format)
            .ok_or_else(|| err(format_field, format!("{format:?} is not json or text")))?;
    }
    if let Some(stderr) = file.stderr {
        config.stderr = stderr;
    }
    if let Some(bytes) = file.max_file_bytes {
        if bytes < crate::logging::MIN_MAX_FILE_BYTES {
            return Err(err(
                "logging.max_file_bytes",
                format!(
                    "must be at least {} bytes",
                    crate::logging::MIN_MAX_FILE_BYTES
                ),
            ));
        }
        config.max_file_bytes = bytes;
    }
    if let Some(compress) = file.compress {
        config.compress = compress;
    }
    if let Some(s) = file.cleanup_interval_s {
        if s == 0 {
            return Err(err(
                "logging.cleanup_interval_s",
                "must be at least 1 second".into(),
            ));
        }
        config.cleanup_interval = Duration::from_secs(s);
    }
    let r = file.retention_days;
    for (category, days) in [
        (Category::Timezones, r.timezones),
        (Category::Executions, r.executions),
        (Category::Audit, r.audit),
        (Category::Performance, r.performance),
        (Category::System, r.system),
    ] {
        let Some(days) = days else { continue };
        if !(1..=crate::logging::MAX_RETENTION_DAYS).contains(&days) {
            return Err(err(
                &format!("logging.retention_days.{}", category.dir_name()),
                format!(
                    "must be between 1 and {} days",
                    crate::logging::MAX_RETENTION_DAYS
                ),
            ));
        }
        *config.retention.days_mut(category) = days;
    }
    Ok(config)
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn file_values_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "pw", "from-file\n");
        let cfg = write(
            dir.path(),
            "m.toml",
            r#"
            listen = "127.0.0.1:9999"
            plugins_dir = "plugins"
            [sandbox]
            timeout_ms = 1500
            [api]
            max_plugin_bytes = 4096
            refusal_window_s = 5
            tls_cert = "tls/cert.pem"
            tls_key = "tls/key.pem"
            [audit]
            signing_key = "keys/audit.pem"
            checkpoint_interval_s = 30
            witness_url = "https://witness.example/checkpoints"
            witness_token_secret = "lit"
            [secrets]
            lit = "literal"
            pw = { file = "pw" }
            [[grants]]
            plugin = "http"
            secrets = ["lit"]
            "#,
        );
        let c = Config::load(
            Some(&cfg),
            Overrides {
                data_dir: Some("/tmp/x".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.plugins_dir, Some(dir.path().join("plugins")));
        assert_eq!(c.sandbox.timeout, Duration::from_millis(1500));
        assert_eq!(c.api.max_plugin_bytes, 4096);
        assert_eq!(c.api.refusal_window, Duration::from_secs(5));
        let tls = c.api.tls.as_ref().unwrap();
        assert_eq!(tls.cert, dir.path().join("tls/cert.pem"));
        assert_eq!(tls.key, dir.path().join("tls/key.pem"));
        assert!(!c.api.insecure_http);
        assert_eq!(c.audit.signing_key, dir.path().join("keys/audit.pem"));
        assert_eq!(c.audit.checkpoint_interval, Duration::from_secs(30));
        let witness = c.audit.witness.as_ref().unwrap();
        assert_eq!(witness.url.as_str(), "https://witness.example/checkpoints");
        assert_eq!(witness.token.as_ref().unwrap().expose(), "literal");
        assert_eq!(c.upload_dir(), dir.path().join("plugins"));
        assert_eq!(c.secrets.get("pw").unwrap().expose(), "from-file");
        assert_eq!(c.secrets.get("lit").unwrap().expose(), "literal");
    }

    #[test]
    fn sandbox_resource_limits_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            "m.toml",
            "[sandbox]\nmax_resources = 200\nmax_http_fields_bytes = 8192\nmax_log_line_bytes = 1024\n",
        );
        let c = Config::load(Some(&cfg), Overrides::default()).unwrap();
        assert_eq!(c.sandbox.max_resources, 200);
        assert_eq!(c.sandbox.max_http_fields_bytes, 8192);
        assert_eq!(c.sandbox.max_log_line_bytes, 1024);
        for (text, field) in [
            ("max_resources = 3", "sandbox.max_resources"),
            ("max_http_fields_bytes = 0", "sandbox.max_http_fields_bytes"),
            ("max_log_line_bytes = 10", "sandbox.max_log_line_bytes"),
        ] {
            let cfg = write(dir.path(), "bad.toml", &format!("[sandbox]\n{text}\n"));
            let e = Config::load(Some(&cfg), Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(dir.path(), "m.toml", "listen = \"nope\"\n");
        let e = Config::load(Some(&cfg), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen"), "{e}");
        let cfg = write(dir.path(), "m2.toml", "[sandbox]\nmemroy_mb = 3\n");
        let e = Config::load(Some(&cfg), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("memroy_mb"), "{e}");
        let cfg = write(
            dir.path(),
            "m3.toml",
            "[[grants]]\nplugin = \"p\"\n[[grants.http]]\nhost = \"\"\n",
        );
        let e = Config::load(Some(&cfg), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("grants[0].http[0].host"), "{e}");
        let cfg = write(dir.path(), "m4.toml", "[api]\nmax_plugin_bytes = 0\n");
        let e = Config::load(Some(&cfg), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("api.max_plugin_bytes"), "{e}");
        for (text, field) in [
            (
                "[audit]\ncheckpoint_interval_s = 0\n",
                "audit.checkpoint_interval_s",
            ),
            (
                "[audit]\ntrusted_keys = [\"abc\"]\n",
                "audit.trusted_keys[0]",
            ),
            ("[audit]\nwitness_url = \"ftp://w\"\n", "audit.witness_url"),
            (
                "[audit]\nwitness_url = \"https://u:p@w/\"\n",
                "audit.witness_url",
            ),
            (
                "[audit]\nwitness_url = \"https://w/\"\nwitness_token_secret = \"nope\"\n",
                "audit.witness_token_secret",
            ),
        ] {
            let cfg = write(dir.path(), "a.toml", text);
            let e = Config::load(Some(&cfg), Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        let cfg = write(dir.path(), "m6.toml", "[api]\ntls_cert = \"c.pem\"\n");
        let e = Config::load(Some(&cfg), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("api.tls_key"), "{e}");
        let cfg = write(dir.path(), "m5.toml", "[api]\nrefusal_window_s = 0\n");
        let e = Config::load(Some(&cfg), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("api.refusal_window_s"), "{e}");
    }

    fn logging(text: &str, env: LogEnv) -> Result<LogConfig, (String, String)> {
        let file: FileConfig = toml::from_str(text).unwrap();
        logging_config(file.logging, env, &|p| Path::new("/conf").join(p))
    }

    #[test]
    fn logging_section_and_its_overrides() {
        let c = logging("", LogEnv::default()).unwrap();
        assert_eq!(c, LogConfig::default());
        assert_eq!(c.root(Path::new("/data")), PathBuf::from("/data/logs"));
        let c = logging(
            r#"
            [logging]
            dir = "logs"
            level = "info,meridian::engine=debug"
            format = "text"
            stderr = false
            max_file_bytes = 1048576
            compress = false
            cleanup_interval_s = 600
            [logging.retention_days]
            audit = 3650
            performance = 7
            "#,
            LogEnv::default(),
        )
        .unwrap();
        assert_eq!(c.dir, Some(PathBuf::from("/conf/logs")));
        assert_eq!(c.level, "info,meridian::engine=debug");
        assert_eq!(c.format, LogFormat::Text);
        assert!(!c.stderr && !c.compress);
        assert_eq!(c.max_file_bytes, 1 << 20);
        assert_eq!(c.cleanup_interval, Duration::from_secs(600));
        assert_eq!((c.retention.audit, c.retention.performance), (3650, 7));
        assert_eq!(c.retention.timezones, 90);
        // The environment wins over the file.
        let c = logging(
            "[logging]\nlevel = \"info\"\nformat = \"text\"\ndir = \"x\"\n",
            LogEnv {
                dir: Some("/env/logs".into()),
                level: Some("debug".into()),
                format: Some("json".into()),
            },
        )
        .unwrap();
        assert_eq!(c.dir, Some(PathBuf::from("/env/logs")));
        assert_eq!(c.level, "debug");
        assert_eq!(c.format, LogFormat::Json);
    }

    #[test]
    fn logging_errors_name_the_field() {
        let field = |text: &str, env| logging(text, env).unwrap_err().0;
        let none = LogEnv::default;
        assert_eq!(
            field("[logging]\nlevel = \"info,x=loud\"", none()),
            "logging.level"
        );
        assert_eq!(
            field("[logging]\nformat = \"yaml\"", none()),
            "logging.format"
        );
        assert_eq!(
            field("[logging]\nmax_file_bytes = 10", none()),
            "logging.max_file_bytes"
        );
        assert_eq!(
            field("[logging]\ncleanup_interval_s = 0", none()),
            "logging.cleanup_interval_s"
        );
        assert_eq!(
            field("[logging.retention_days]\nsystem = 0", none()),
            "logging.retention_days.system"
        );
        let env = LogEnv {
            format: Some("xml".into()),
            ..LogEnv::default()
        };
        assert_eq!(field("", env), "MERIDIAN_LOG_FORMAT");
        let env = LogEnv {
            level: Some("=".into()),
            ..LogEnv::default()
        };
        assert_eq!(field("", env), "MERIDIAN_LOG");
        // Unknown keys are refused by name, through `Config::load`.
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(dir.path(), "m.toml", "[logging]\nretention = 3\n");
        let e = Config::load(Some(&cfg), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("retention"), "{e}");
    }
}
