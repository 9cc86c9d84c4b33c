//! The routing layer: decides which files an event belongs to, formats
//! and masks it on the calling thread, and hands the line to the writer.
//!
//! Routing, by what the event belongs to (an event can go to several):
//!
//! - inside a span named `execution` (the engine's, with fields
//!   `execution_id` and `zone`): the zone's file for the event's local date
//!   in that zone, and the execution's file. The innermost such span counts;
//!   a `zone` that is no IANA zone goes to `timezones/unknown/<UTC date>`,
//!   an `execution_id` that cannot name a file gets no execution file.
//! - target `meridian::audit` or under it (`meridian::audit::…`): `audit/`.
//! - target `meridian::performance` or under it: `performance/`.
//! - none of these: `system/`.
//!
//! A span's fields are captured (and masked) once, when it is created or
//! recorded, and kept in the span's extensions; an execution span's zone is
//! parsed then too, so an event costs its own fields, a walk up its few
//! spans and one line of formatting.

use super::format::{self, Collect, Fields, Value};
use super::handle::{DEFAULT_CHANNEL_LINES, LogHandle, Shared, SharedParts};
use super::paths::{Dest, UNKNOWN_ZONE_DIR, valid_execution_id, zone_dir_name};
use super::settings::{Category, LogConfig, LogFormat};
use super::writer::{self, Dests, WriterSettings};
use super::{Clock, LogError};
use crate::secrets::Masker;
use chrono::Utc;
use chrono_tz::Tz;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::{Extensions, LookupSpan, SpanRef};

/// The span that marks an execution; see [`crate::engine::Engine::run`].
const EXECUTION_SPAN: &str = "execution";

/// The `tracing` layer that writes the log files under one root. Build it
/// with [`RouterLayer::builder`]; [`super::install`] puts one into the
/// process's subscriber.
pub struct RouterLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for RouterLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterLayer")
            .field("root", &self.shared.root)
            .field("format", &self.shared.format)
            .finish_non_exhaustive()
    }
}

/// Settings for a [`RouterLayer`] beyond the config: the clock and the
/// channel's size, for tests and benchmarks.
pub struct RouterBuilder {
    root: PathBuf,
    config: LogConfig,
    masker: Arc<Masker>,
    clock: Clock,
    channel_lines: usize,
}

impl fmt::Debug for RouterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterBuilder")
            .field("root", &self.root)
            .field("config", &self.config)
            .field("channel_lines", &self.channel_lines)
            .finish_non_exhaustive()
    }
}

impl RouterLayer {
    /// A layer writing under `root` as `config` says (its `dir` is not
    /// looked at: `root` is the resolved one), masking with `masker`.
    pub fn builder(
        root: impl Into<PathBuf>,
        config: &LogConfig,
        masker: Arc<Masker>,
    ) -> RouterBuilder {
        RouterBuilder {
            root: root.into(),
            config: config.clone(),
            masker,
            clock: Arc::new(Utc::now),
            channel_lines: DEFAULT_CHANNEL_LINES,
        }
    }
}

impl RouterBuilder {
    /// What "now" is for the router (each event's instant, so its file's
    /// date) and for the retention cleanup; the system clock by default.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// How many lines the writer's channel holds (at least 1).
    pub fn channel_lines(mut self, lines: usize) -> Self {
        self.channel_lines = lines.max(1);
        self
    }

    /// Creates the root and starts the writer thread; the layer and the
    /// handle that flushes and cleans up its files.
    pub fn build(self) -> Result<(RouterLayer, LogHandle), LogError> {
        std::fs::create_dir_all(&self.root).map_err(|source| LogError::Dir {
            path: self.root.clone(),
            source,
        })?;
        let (tx, rx) = crossbeam_channel::bounded(self.channel_lines);
        let dropped = Arc::new(AtomicU64::new(0));
        let held = Arc::new(writer::HeldLines::default());
        writer::spawn(
            rx,
            WriterSettings {
                root: self.root.clone(),
                max_file_bytes: self.config.max_file_bytes,
                compress: self.config.compress,
                format: self.config.format,
                clock: Arc::clone(&self.clock),
                dropped: Arc::clone(&dropped),
                held: Arc::clone(&held),
            },
        )
        .map_err(LogError::Thread)?;
        let shared = Arc::new(Shared::new(SharedParts {
            tx,
            root: self.root,
            clock: self.clock,
            masker: self.masker,
            format: self.config.format,
            compress: self.config.compress,
            retention: self.config.retention,
            cleanup_interval: self.config.cleanup_interval,
            dropped,
            held,
        }));
        Ok((
            RouterLayer {
                shared: Arc::clone(&shared),
            },
            LogHandle { shared },
        ))
    }
}

/// What the router keeps about a span.
#[derive(Default)]
struct SpanData {
    /// Its fields, masked, in the order declared.
    fields: Fields,
    /// Where its events go, for an `execution` span.
    route: Option<ExecutionRoute>,
}

/// The files of one execution.
#[derive(Default, Clone)]
struct ExecutionRoute {
    id: Option<Arc<str>>,
    zone: Option<ZoneRoute>,
}

#[derive(Clone)]
struct ZoneRoute {
    /// `None` for a zone this build does not know: dated in UTC.
    tz: Option<Tz>,
    dir: Arc<str>,
}

impl ExecutionRoute {
    /// Updates the route from an execution span's (raw, unmasked) values.
    fn record(&mut self, values: &dyn RecordValues) {
        let mut raw = RawRoute::default();
        values.visit(&mut raw);
        if let Some(id) = raw.execution_id {
            self.id = valid_execution_id(&id).then(|| Arc::from(id));
        }
        if let Some(zone) = raw.zone {
            self.zone = Some(match zone.parse::<Tz>() {
                Ok(tz) => ZoneRoute {
                    tz: Some(tz),
                    dir: Arc::from(zone_dir_name(tz)),
                },
                Err(_) => ZoneRoute {
                    tz: None,
                    dir: Arc::from(UNKNOWN_ZONE_DIR),
                },
            });
        }
    }
}

/// Span attributes and records alike.
trait RecordValues {
    fn visit(&self, visitor: &mut dyn Visit);
}

impl RecordValues for Attributes<'_> {
    fn visit(&self, visitor: &mut dyn Visit) {
        self.record(visitor);
    }
}

impl RecordValues for Record<'_> {
    fn visit(&self, visitor: &mut dyn Visit) {
        self.record(visitor);
    }
}

/// The routing fields as given, before masking.
#[derive(Default)]
struct RawRoute {
    execution_id: Option<String>,
    zone: Option<String>,
}

impl Visit for RawRoute {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "execution_id" => self.execution_id = Some(value.to_owned()),
            "zone" => self.zone = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if matches!(field.name(), "execution_id" | "zone") {
            self.record_str(field, &format!("{value:?}"));
        }
    }
}

/// Whether `target` is `module` or inside it (`module::…`).
fn under(target: &str, module: &str) -> bool {
    target
        .strip_prefix(module)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

impl<S> Layer<S> for RouterLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut data = SpanData::default();
        attrs.record(&mut Collect {
            masker: &self.shared.masker,
            fields: &mut data.fields,
        });
        if let Some(message) = data.fields.message.take() {
            data.fields.set("message", Value::Str(message));
        }
        if attrs.metadata().name() == EXECUTION_SPAN {
            let mut route = ExecutionRoute::default();
            route.record(attrs);
            data.route = Some(route);
        }
        span.extensions_mut().insert(data);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        let Some(data) = extensions.get_mut::<SpanData>() else {
            return;
        };
        values.record(&mut Collect {
            masker: &self.shared.masker,
            fields: &mut data.fields,
        });
        if let Some(message) = data.fields.message.take() {
            data.fields.set("message", Value::Str(message));
        }
        if let Some(route) = &mut data.route {
            route.record(values);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let shared = &*self.shared;
        let now = (shared.clock)();
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut Collect {
            masker: &shared.masker,
            fields: &mut fields,
        });

        let spans: Vec<SpanRef<'_, S>> = ctx
            .event_scope(event)
            .map(|scope| scope.from_root().collect())
            .unwrap_or_default();
        let extensions: Vec<Extensions<'_>> = spans.iter().map(SpanRef::extensions).collect();
        let mut span_fields: Vec<(&'static str, &Value)> = Vec::new();
        let mut route = None;
        for data in extensions.iter().filter_map(|e| e.get::<SpanData>()) {
            for (name, value) in &data.fields.list {
                match span_fields.iter_mut().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = value,
                    None => span_fields.push((name, value)),
                }
            }
            if data.route.is_some() {
                route = data.route.as_ref();
            }
        }

        let mut dests = Dests::default();
        if let Some(route) = route {
            if let Some(zone) = &route.zone {
                let date = match zone.tz {
                    Some(tz) => now.with_timezone(&tz).date_naive(),
                    None => now.date_naive(),
                };
                dests.push(Dest::Zone {
                    zone: Arc::clone(&zone.dir),
                    date,
                });
            }
            if let Some(id) = &route.id {
                dests.push(Dest::Execution(Arc::clone(id)));
            }
        }
        let target = meta.target();
        let daily = if under(target, "meridian::audit") {
            Some(Category::Audit)
        } else if under(target, "meridian::performance") {
            Some(Category::Performance)
        } else if dests.is_empty() {
            Some(Category::System)
        } else {
            None
        };
        if let Some(category) = daily {
            dests.push(Dest::Daily {
                category,
                date: now.date_naive(),
            });
        }

        let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let line = format::Line {
            ts: &ts,
            level: meta.level().as_str(),
            target,
            fields: &fields,
            span: &span_fields,
        };
        let mut out = Vec::with_capacity(256);
        match shared.format {
            LogFormat::Json => format::json(&mut out, &line),
            LogFormat::Text => format::text(&mut out, &line),
        }
        drop(extensions);
        shared.send_line(dests, out);
    }
}

#[cfg(test)]
mod tests {
    use super::under;

    #[test]
    fn targets_match_on_module_boundaries() {
        assert!(under("meridian::audit", "meridian::audit"));
        assert!(under("meridian::audit::jobs", "meridian::audit"));
        assert!(!under("meridian::auditor", "meridian::audit"));
        assert!(!under("meridian", "meridian::audit"));
    }
}
