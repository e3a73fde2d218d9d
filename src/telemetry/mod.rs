//! Telemetry: the only user of `opentelemetry`. Turns records into spans (in the configured
//! dialects, under the content policy) and metric points with the semantic conventions' advisory
//! bucket boundaries.

mod convert;
pub mod export;
mod metrics;
pub mod pipeline;
pub mod traces_file;

use std::time::{Duration, SystemTime};

use opentelemetry::global::{BoxedSpan, BoxedTracer};
use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::{Span, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;

use crate::compile::rules::Operation;
use crate::content::ContentPolicy;
use crate::dialect::{self, Dialect};
use crate::engine::Record;
use convert::{into_key_values, key_values};
pub use metrics::{points, Instruments, Point};

/// When a call happened and how its stream flowed.
#[derive(Debug, Clone, PartialEq)]
pub struct Timings {
    /// Wall-clock start.
    pub start: SystemTime,
    /// Wall-clock end.
    pub end: SystemTime,
    /// Monotonic duration.
    pub duration: Duration,
    /// Time from the start to the first chunk of a stream.
    pub first_chunk: Option<Duration>,
    /// Gaps between consecutive output chunks after the first (bounded).
    pub chunk_gaps: Vec<Duration>,
}

/// A 64-bit fingerprint of an attribute (key and value), to tell whether the end of a span
/// changed what its start set.
fn fingerprint(key: &str, value: &serde_json::Value) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    fn feed(value: &serde_json::Value, hasher: &mut std::hash::DefaultHasher) {
        use serde_json::Value as Json;
        match value {
            Json::Null => 0u8.hash(hasher),
            Json::Bool(b) => (1u8, b).hash(hasher),
            Json::Number(n) => {
                (2u8, n.as_i64(), n.as_u64(), n.as_f64().map(f64::to_bits)).hash(hasher)
            }
            Json::String(s) => (3u8, s).hash(hasher),
            Json::Array(items) => {
                (4u8, items.len()).hash(hasher);
                for item in items {
                    feed(item, hasher);
                }
            }
            Json::Object(map) => {
                (5u8, map.len()).hash(hasher);
                for (k, v) in map {
                    k.hash(hasher);
                    feed(v, hasher);
                }
            }
        }
    }
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    feed(value, &mut hasher);
    hasher.finish()
}

/// A span in flight.
pub struct ActiveSpan {
    span: BoxedSpan,
    context: Context,
    /// Fingerprints of the attributes set when the span started, which are not set again at its
    /// end (OTLP keys are unique). Fingerprints rather than a copy: a gateway holds one span per
    /// stream in flight.
    initial: Vec<u64>,
}

impl std::fmt::Debug for ActiveSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveSpan")
            .field("span_context", self.context.span().span_context())
            .finish()
    }
}

impl ActiveSpan {
    /// The context holding this span, to parent other work under it.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// W3C trace-context headers (`traceparent`, `tracestate`) naming this span as the parent.
    pub fn trace_headers(&self) -> Vec<(String, String)> {
        struct Headers(Vec<(String, String)>);
        impl Injector for Headers {
            fn set(&mut self, key: &str, value: String) {
                self.0.push((key.to_string(), value));
            }
        }
        let mut headers = Headers(Vec::new());
        TraceContextPropagator::new().inject_context(&self.context, &mut headers);
        headers.0
    }
}

/// Extracts the W3C trace context from request headers (for the gateway's incoming requests).
pub fn extract_context(headers: &[(String, String)]) -> Context {
    struct Headers<'a>(&'a [(String, String)]);
    impl opentelemetry::propagation::Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(k, _)| k.as_str()).collect()
        }
    }
    TraceContextPropagator::new().extract(&Headers(headers))
}

/// Emits spans and metrics for records.
pub struct Telemetry {
    tracer: BoxedTracer,
    instruments: Instruments,
    dialects: Vec<Dialect>,
    content: ContentPolicy,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("dialects", &self.dialects)
            .field("content", &self.content)
            .finish()
    }
}

/// The instrumentation scope name of specter's tracer and meter.
pub const SCOPE: &str = "specter";

impl Telemetry {
    /// Telemetry through the global tracer and meter providers.
    pub fn global(dialects: Vec<Dialect>, content: ContentPolicy) -> Telemetry {
        let tracer = opentelemetry::global::tracer(SCOPE);
        let meter = opentelemetry::global::meter(SCOPE);
        Telemetry::new(tracer, &meter, dialects, content)
    }

    /// Telemetry through the given tracer and meter.
    pub fn new(
        tracer: BoxedTracer,
        meter: &opentelemetry::metrics::Meter,
        dialects: Vec<Dialect>,
        content: ContentPolicy,
    ) -> Telemetry {
        Telemetry {
            tracer,
            instruments: Instruments::new(meter),
            dialects,
            content,
        }
    }

    /// The content policy.
    pub fn content(&self) -> &ContentPolicy {
        &self.content
    }

    /// Starts the span of a call from its request-phase record, as a child of `parent`.
    pub fn start(&self, record: &Record, parent: &Context, start: SystemTime) -> ActiveSpan {
        let kind = if record.client_span {
            SpanKind::Client
        } else {
            SpanKind::Internal
        };
        let span = self
            .tracer
            .span_builder(record.span_name.clone())
            .with_kind(kind)
            .with_start_time(start)
            .with_attributes(key_values(&record.attributes))
            .start_with_context(&self.tracer, parent);
        let context = parent.with_remote_span_context(span.span_context().clone());
        ActiveSpan {
            span,
            context,
            initial: record
                .attributes
                .iter()
                .map(|(key, value)| fingerprint(key, value))
                .collect(),
        }
    }

    /// Ends a call's span with its final record and records its metrics. Consumes the span, so
    /// it ends exactly once.
    pub fn finish(
        &self,
        mut active: ActiveSpan,
        mut record: Record,
        op: &Operation,
        timings: &Timings,
    ) {
        let content_on_event = self.content.capture.on_event();
        let event_content = if content_on_event {
            let mut copy = record.clone();
            self.content.apply(&mut copy);
            dialect::message_attributes(&copy)
        } else {
            Vec::new()
        };
        self.content.apply(&mut record);
        // Metrics first: they read the attributes that the rendering below takes from the record.
        self.instruments.record(&record, op, timings);
        let mut rendered = dialect::render_taking(&mut record, &self.dialects);
        if !self.content.capture.on_span() {
            for (key, _) in dialect::message_texts(&record) {
                rendered.remove(key);
            }
        }
        if let Some(ttfc) = timings.first_chunk {
            rendered.insert(
                "gen_ai.response.time_to_first_chunk".into(),
                serde_json::json!(ttfc.as_secs_f64()),
            );
        }
        if !record.problems.is_empty() {
            // Problems met and skipped (a body that is not JSON, a bad chunk): counted, never fatal.
            rendered.insert(
                "specter.problems".into(),
                serde_json::json!(record.problems.len()),
            );
        }
        if let Some(skipped) = record
            .stream
            .as_ref()
            .map(|s| s.skipped_frames)
            .filter(|n| *n > 0)
        {
            rendered.insert(
                "specter.stream.skipped_frames".into(),
                serde_json::json!(skipped),
            );
        }
        if let Some(stream) = &record.stream {
            rendered.insert(
                "specter.stream.chunks".into(),
                serde_json::json!(stream.chunks),
            );
            if stream.truncated {
                rendered.insert("specter.stream.truncated".into(), serde_json::json!(true));
            }
        }
        let initial = &active.initial;
        let changed = rendered
            .into_iter()
            .filter(|(key, value)| !initial.contains(&fingerprint(key, value)));
        active.span.set_attributes(into_key_values(changed));
        if !event_content.is_empty() {
            let attrs = event_content
                .into_iter()
                .map(|(k, v)| KeyValue::new(k, convert::to_string(&v)))
                .collect();
            active.span.add_event_with_timestamp(
                "gen_ai.client.inference.operation.details",
                timings.end,
                attrs,
            );
        }
        for problem in record.problems.iter().take(8) {
            active.span.add_event_with_timestamp(
                "specter.problem",
                timings.end,
                vec![KeyValue::new("message", problem.clone())],
            );
        }
        if let Some(error) = &record.error {
            let message = error
                .message
                .clone()
                .unwrap_or_else(|| error.error_type.clone());
            active.span.add_event_with_timestamp(
                "exception",
                timings.end,
                vec![
                    KeyValue::new("exception.type", error.error_type.clone()),
                    KeyValue::new("exception.message", message.clone()),
                ],
            );
            active.span.set_status(Status::error(message));
        }
        active.span.end_with_timestamp(timings.end);
    }
}
