//! The data of one step execution's store: one field per capability's
//! state, the sandbox limits, and the captured standard streams.

use crate::capabilities::StepEnv;
use crate::capabilities::http::{HttpCap, HttpClient, WasiHttpGate};
use crate::capabilities::log::{LogCap, StepLog};
use crate::capabilities::process::ProcessCap;
use crate::capabilities::secrets::SecretsCap;
use crate::capabilities::sql::{SqlCap, SqlPools};
use crate::runtime::SandboxLimits;
use crate::secrets::{Masker, SecretStore};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Store data of one step execution.
pub struct StepState {
    pub(crate) env: Arc<StepEnv>,
    table: ResourceTable,
    /// WASI with nothing granted: no preopens, no environment, no sockets.
    wasi: WasiCtx,
    http_ctx: WasiHttpCtx,
    gate: WasiHttpGate,
    pub(crate) limits: MemoryCap,
    pub(crate) log: StepLog,
    secrets: Arc<SecretStore>,
    http: Arc<HttpClient>,
    sql: Arc<SqlPools>,
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
}

/// The most one `wasi:random` call may ask for; a step needs a few bytes
/// (seeds, ids), and wasmtime's default of 64 MiB is an allocation a guest
/// could make the host repeat.
const MAX_RANDOM_BYTES: u64 = 1024 * 1024;

impl StepState {
    pub fn new(
        env: Arc<StepEnv>,
        secrets: Arc<SecretStore>,
        http: Arc<HttpClient>,
        sql: Arc<SqlPools>,
        limits: &SandboxLimits,
    ) -> Self {
        // A secret printed across the cap is kept whole, so it is masked
        // before the text is cut to the cap (`CapturedOutput::masked`).
        let slack = env.masker.longest();
        let stdout = CapturedOutput::new(limits.max_stdio_bytes, slack);
        let stderr = CapturedOutput::new(limits.max_stdio_bytes, slack);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        // Every WASI and wasi:http resource a step holds lives in this table,
        // each with host memory behind it: bounded, so a guest that leaks
        // them fails instead of growing the node.
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.max_resources);
        let mut http_ctx = WasiHttpCtx::new();
        http_ctx.set_field_size_limit(limits.max_http_fields_bytes);
        Self {
            gate: WasiHttpGate {
                env: env.clone(),
                client: http.clone(),
            },
            log: StepLog::new(limits.max_log_bytes, limits.max_log_line_bytes),
            env,
            table,
            wasi,
            http_ctx,
            limits: MemoryCap::new(limits.memory_bytes),
            secrets,
            http,
            sql,
            stdout,
            stderr,
        }
    }

    pub(crate) fn log_cap(&mut self) -> LogCap<'_> {
        LogCap {
            env: &self.env,
            log: &mut self.log,
        }
    }

    pub(crate) fn secrets_cap(&mut self) -> SecretsCap<'_> {
        SecretsCap {
            env: &self.env,
            store: &self.secrets,
        }
    }

    pub(crate) fn http_cap(&mut self) -> HttpCap<'_> {
        HttpCap {
            env: &self.env,
            client: &self.http,
        }
    }

    pub(crate) fn sql_cap(&mut self) -> SqlCap<'_> {
        SqlCap {
            env: &self.env,
            pools: &self.sql,
        }
    }

    pub(crate) fn process_cap(&mut self) -> ProcessCap<'_> {
        ProcessCap { env: &self.env }
    }
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StepState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.gate,
        }
    }
}

/// The memory cap of one step: wasmtime's [`StoreLimits`], remembering
/// whether the cap was what stopped the step so the failure can say so.
pub struct MemoryCap {
    inner: StoreLimits,
    limit: usize,
    pub(crate) hit: bool,
}

impl MemoryCap {
    fn new(limit: usize) -> Self {
        Self {
            inner: StoreLimitsBuilder::new()
                .memory_size(limit)
                .trap_on_grow_failure(true)
                .build(),
            limit,
            hit: false,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
        }
        self.inner.memory_growing(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.hit = true;
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }
}

/// A guest's stdout or stderr: the first `cap` bytes are kept, the rest is
/// dropped without failing the guest's write (a chatty step must not die of
/// its own printing).
#[derive(Clone)]
pub struct CapturedOutput {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    cap: usize,
    /// Bytes kept past `cap` so that a secret written across it is still
    /// found whole by the masker, then cut off.
    slack: usize,
    truncated: bool,
}

impl CapturedOutput {
    fn new(cap: usize, slack: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Captured {
                cap,
                slack,
                ..Captured::default()
            })),
        }
    }

    /// The kept text, masked, at most `cap` bytes, and whether some was
    /// dropped.
    pub fn masked(&self, masker: &Masker) -> (String, bool) {
        let Ok(c) = self.inner.lock() else {
            return (String::new(), false);
        };
        let text = String::from_utf8_lossy(&c.bytes);
        let masked = masker.mask(&text);
        let mut end = masked.len().min(c.cap);
        while !masked.is_char_boundary(end) {
            end -= 1;
        }
        let truncated = c.truncated || end < masked.len();
        (masked.get(..end).unwrap_or_default().to_owned(), truncated)
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Ok(mut c) = self.inner.lock() {
            let room = (c.cap + c.slack).saturating_sub(c.bytes.len());
            let take = room.min(buf.len());
            c.bytes.extend_from_slice(&buf[..take]);
            if take < buf.len() {
                c.truncated = true;
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
