//! The process's subscriber: set once by [`super::init_stderr`] before the
//! config is known, completed by [`super::install`] after it is.
//!
//! Three reloadable slots over a `Registry`: the filter (a [`LogFilter`]),
//! the file router (empty until installed) and the stderr output (a `fmt`
//! layer writing through a [`MaskedStderr`], or nothing when `stderr =
//! false`). `tracing_subscriber::reload` swaps each in place, so events
//! logged while the config loads still reach stderr, and no second global
//! subscriber is ever needed.

use super::router::RouterLayer;
use super::settings::LogConfig;
use super::{LogError, LogHandle};
use crate::secrets::Masker;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, Layered, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// An `EnvFilter` that always lets the engine's `execution` spans through:
/// routing an event to its zone and execution files needs the span even
/// when `level` is `warn` and the span is `info`. (The span itself is not
/// an event: it writes no line.)
pub(crate) struct LogFilter {
    env: EnvFilter,
}

impl LogFilter {
    /// The filter of `directives` (already checked by the config).
    pub(crate) fn parse(directives: &str) -> Result<Self, LogError> {
        EnvFilter::builder()
            .parse(directives)
            .map(|env| Self { env })
            .map_err(|e| LogError::Filter {
                directives: directives.to_string(),
                message: e.to_string(),
            })
    }

    fn is_execution_span(meta: &Metadata<'_>) -> bool {
        meta.is_span() && meta.name() == "execution" && meta.target().starts_with("meridian")
    }
}

impl<S> Layer<S> for LogFilter
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if Self::is_execution_span(meta) {
            Interest::always()
        } else {
            Layer::<S>::register_callsite(&self.env, meta)
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // The execution span is `info`.
        Layer::<S>::max_level_hint(&self.env).map(|l| l.max(LevelFilter::INFO))
    }

    fn enabled(&self, meta: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        Self::is_execution_span(meta) || Layer::<S>::enabled(&self.env, meta, ctx)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        Layer::<S>::on_new_span(&self.env, attrs, id, ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        Layer::<S>::on_record(&self.env, id, values, ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        Layer::<S>::on_enter(&self.env, id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        Layer::<S>::on_exit(&self.env, id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        Layer::<S>::on_close(&self.env, id, ctx);
    }
}

/// Where stderr lines go: the process's stderr, or a test's buffer.
pub(crate) type Sink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// The process's stderr as a [`Sink`].
pub(crate) fn process_stderr() -> Sink {
    Arc::new(|bytes| {
        let _ = std::io::stderr().lock().write_all(bytes);
    })
}

/// stderr, with every line masked before it is written. The `fmt` layer
/// formats an event into one buffer and writes it once, so each writer
/// here holds one whole line and masks it as it is dropped.
#[derive(Clone)]
pub(crate) struct MaskedStderr {
    masker: Arc<Masker>,
    sink: Sink,
}

impl<'a> MakeWriter<'a> for MaskedStderr {
    type Writer = MaskedLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        MaskedLine {
            masker: &self.masker,
            sink: &self.sink,
            buf: Vec::new(),
        }
    }
}

/// One line on its way to stderr.
pub(crate) struct MaskedLine<'a> {
    masker: &'a Masker,
    sink: &'a Sink,
    buf: Vec<u8>,
}

impl Write for MaskedLine<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for MaskedLine<'_> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        let masked = self.masker.mask(&text);
        (self.sink)(masked.as_bytes());
    }
}

type FilterSlot = reload::Layer<LogFilter, Registry>;
type WithFilter = Layered<FilterSlot, Registry>;
type RouterSlot = reload::Layer<Option<RouterLayer>, WithFilter>;
type WithRouter = Layered<RouterSlot, WithFilter>;
type StderrLayer = tracing_subscriber::fmt::Layer<
    WithRouter,
    tracing_subscriber::fmt::format::DefaultFields,
    tracing_subscriber::fmt::format::Format,
    MaskedStderr,
>;
type StderrSlot = reload::Layer<Option<StderrLayer>, WithRouter>;
/// The whole subscriber.
pub(crate) type Stack = Layered<StderrSlot, WithRouter>;

/// The handles that fill the stack's slots.
pub(crate) struct Slots {
    filter: reload::Handle<LogFilter, Registry>,
    router: reload::Handle<Option<RouterLayer>, WithFilter>,
    stderr: reload::Handle<Option<StderrLayer>, WithRouter>,
    sink: Sink,
}

fn stderr_layer(masker: Arc<Masker>, sink: Sink) -> StderrLayer {
    tracing_subscriber::fmt::layer()
        .with_writer(MaskedStderr { masker, sink })
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
}

/// The subscriber with `filter`, stderr (to `sink`) unmasked and no files
/// yet.
pub(crate) fn stack(filter: LogFilter, sink: Sink) -> (Stack, Slots) {
    let (filter, filter_handle) = reload::Layer::new(filter);
    let (router, router_handle) = reload::Layer::new(None);
    let (stderr, stderr_handle) = reload::Layer::new(Some(stderr_layer(
        Arc::new(Masker::default()),
        Arc::clone(&sink),
    )));
    let stack = Registry::default().with(filter).with(router).with(stderr);
    (
        stack,
        Slots {
            filter: filter_handle,
            router: router_handle,
            stderr: stderr_handle,
            sink,
        },
    )
}

impl Slots {
    /// Fills the slots from the config: its filter, stderr masked (or off),
    /// and the file router, whose handle is returned.
    pub(crate) fn install(
        &self,
        config: &LogConfig,
        masker: Arc<Masker>,
        data_dir: &Path,
    ) -> Result<LogHandle, LogError> {
        let filter = LogFilter::parse(&config.level)?;
        let (router, handle) =
            RouterLayer::builder(config.root(data_dir), config, Arc::clone(&masker)).build()?;
        let reloaded = |e: reload::Error| LogError::Reload(e.to_string());
        self.stderr
            .reload(
                config
                    .stderr
                    .then(|| stderr_layer(masker, Arc::clone(&self.sink))),
            )
            .map_err(reloaded)?;
        self.filter.reload(filter).map_err(reloaded)?;
        self.router.reload(Some(router)).map_err(reloaded)?;
        Ok(handle)
    }
}
