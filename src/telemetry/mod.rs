//! Telemetry: the only user of `opentelemetry`. Turns records into spans (in the configured
//! dialects, under the content policy) and metric points with the semantic conventions' advisory
//! bucket boundaries.

mod convert;
#[cfg(feature = "gateway")]
pub mod export;
#[cfg(feature = "gateway")]
pub mod exposition;
mod metrics;
#[cfg(feature = "gateway")]
pub mod otlp_json;
#[cfg(feature = "gateway")]
pub mod pipeline;
mod plain;
#[cfg(feature = "gateway")]
pub mod traces_file;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::global::{BoxedSpan, BoxedTracer};
use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::{Span, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;

use crate::compile::rules::Operation;
use crate::engine::Record;
use crate::render::content::ContentPolicy;
use crate::render::credentials::Credentials;
use crate::render::dialect::Dialect;
use crate::render::{self, Prepared, RenderedSpan};
use convert::into_key_values;
pub use metrics::{points, points_renamed, Instruments, Point};
pub use plain::PlainSpan;

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

/// A fast multiply-rotate hasher for [`fingerprint`], seeded once per process at random (so an
/// upstream cannot aim a value at another's fingerprint).
struct Mix(u64);

impl Mix {
    fn new() -> Mix {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        use std::hash::BuildHasher as _;
        Mix(*SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0u8)))
    }

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl std::hash::Hasher for Mix {
    fn finish(&self) -> u64 {
        let h = self.0;
        (h ^ (h >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ (h >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().unwrap_or_default()));
        }
        let mut last = 0u64;
        for (i, byte) in chunks.remainder().iter().enumerate() {
            last |= u64::from(*byte) << (8 * i);
        }
        self.add(last ^ ((bytes.len() as u64) << 56));
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

/// A 64-bit fingerprint of an attribute (key and value), to tell whether the end of a span
/// changed what its start set.
fn fingerprint(key: &str, value: &serde_json::Value) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    fn feed(value: &serde_json::Value, hasher: &mut Mix) {
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
    let mut hasher = Mix::new();
    key.hash(&mut hasher);
    feed(value, &mut hasher);
    hasher.finish()
}

/// [`fingerprint`] of a string attribute, without a JSON value around the text.
fn fingerprint_text(key: &str, text: &str) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = Mix::new();
    key.hash(&mut hasher);
    (3u8, text).hash(&mut hasher);
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
    /// The call's credential values, scrubbed from everything the span exports.
    credentials: Credentials,
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
///
/// ```
/// use opentelemetry::trace::TracerProvider as _;
/// use opentelemetry::metrics::MeterProvider as _;
/// use opentelemetry_sdk::{metrics::SdkMeterProvider, trace::SdkTracerProvider};
/// use specter::{ContentPolicy, Dialect, Instrumentor, Telemetry};
///
/// // The application's own providers rather than the global ones.
/// let tracer_provider = SdkTracerProvider::builder().build();
/// let meter_provider = SdkMeterProvider::builder().build();
/// let tracer = opentelemetry::global::BoxedTracer::new(Box::new(tracer_provider.tracer("specter")));
/// let telemetry = Telemetry::new(
///     tracer,
///     &meter_provider.meter("specter"),
///     vec![Dialect::Semconv],
///     ContentPolicy::default(),
/// );
/// let instrumentor = Instrumentor::builder().telemetry(telemetry).build().unwrap();
/// # let _ = instrumentor;
/// ```
pub struct Telemetry {
    tracer: BoxedTracer,
    instruments: Instruments,
    dialects: Vec<Dialect>,
    content: ContentPolicy,
    calls: Arc<CallCounts>,
}

/// Calls whose span started and ended, for the shutdown report: every call that starts must
/// end its span, whatever becomes of the span in the exporters.
#[derive(Debug, Default)]
pub struct CallCounts {
    started: AtomicU64,
    ended: AtomicU64,
    usage: std::sync::Mutex<UsageTable>,
}

/// Most provider-and-model rows kept by [`CallCounts`]; the calls of further models are summed
/// in one `other` row.
pub const MAX_USAGE_ROWS: usize = 100;

/// Longest model name kept in a usage row, in bytes.
const MAX_MODEL_BYTES: usize = 128;

/// What the calls of one provider and model used.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageRow {
    /// `gen_ai.provider.name` (`other` for the summed row).
    pub provider: String,
    /// The model (response model, else request model; `-` when unknown).
    pub model: String,
    /// Calls ended.
    pub calls: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost in USD of the calls whose cost is known.
    pub cost: f64,
    /// Calls whose cost is not known.
    pub unpriced: u64,
}

impl UsageRow {
    fn add(&mut self, other: &UsageRow) {
        self.calls += other.calls;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost += other.cost;
        self.unpriced += other.unpriced;
    }
}

/// Usage rows by provider, then model (so a known row is found without allocating), bounded.
#[derive(Debug, Default)]
struct UsageTable {
    rows: std::collections::BTreeMap<String, std::collections::BTreeMap<String, UsageRow>>,
    /// Rows in `rows`.
    count: usize,
    other: UsageRow,
}

impl UsageTable {
    /// Adds `row` (its names left empty) to the row of `provider` and `model`, creating that row
    /// while there is room, else to `other`.
    fn add(&mut self, provider: &str, model: &str, row: UsageRow) {
        if let Some(existing) = self.rows.get_mut(provider).and_then(|m| m.get_mut(model)) {
            existing.add(&row);
        } else if self.count < MAX_USAGE_ROWS {
            self.count += 1;
            self.rows.entry(provider.to_string()).or_default().insert(
                model.to_string(),
                UsageRow {
                    provider: provider.to_string(),
                    model: model.to_string(),
                    ..row
                },
            );
        } else {
            self.other.add(&row);
        }
    }
}

impl CallCounts {
    /// Calls whose span started.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Calls whose span ended.
    pub fn ended(&self) -> u64 {
        self.ended.load(Ordering::Relaxed)
    }

    /// Adds a finished call's tokens and cost to its provider and model's row.
    pub fn count_usage(&self, record: &Record) {
        let text = |key: &str| record.attributes.get(key).and_then(|v| v.as_str());
        let n = |key: &str| {
            record
                .attributes
                .get(key)
                .and_then(|v| v.as_u64())
                .unwrap_or(0)
        };
        let provider = text("gen_ai.provider.name").unwrap_or("-");
        let mut model = text("gen_ai.response.model")
            .or_else(|| text("gen_ai.request.model"))
            .unwrap_or("-");
        if model.len() > MAX_MODEL_BYTES {
            let mut end = MAX_MODEL_BYTES;
            while !model.is_char_boundary(end) {
                end -= 1;
            }
            model = model.get(..end).unwrap_or_default();
        }
        let cost = record
            .attributes
            .get(crate::prices::COST)
            .and_then(|v| v.as_f64());
        let row = UsageRow {
            provider: String::new(),
            model: String::new(),
            calls: 1,
            input_tokens: n("gen_ai.usage.input_tokens"),
            output_tokens: n("gen_ai.usage.output_tokens"),
            cost: cost.unwrap_or(0.0),
            unpriced: u64::from(cost.is_none()),
        };
        let Ok(mut table) = self.usage.lock() else {
            return;
        };
        table.add(provider, model, row);
    }

    /// The usage rows by provider and model, and the `other` row when more models were seen
    /// than [`MAX_USAGE_ROWS`].
    pub fn usage(&self) -> Vec<UsageRow> {
        let Ok(table) = self.usage.lock() else {
            return Vec::new();
        };
        let mut rows: Vec<UsageRow> = table
            .rows
            .values()
            .flat_map(|models| models.values().cloned())
            .collect();
        if table.other.calls > 0 {
            rows.push(UsageRow {
                provider: "other".into(),
                model: "-".into(),
                ..table.other.clone()
            });
        }
        rows
    }
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
        let renames = crate::render::dialect::metric_renames(&dialects);
        Telemetry {
            tracer,
            instruments: Instruments::new(meter).with_metric_renames(renames),
            dialects,
            content,
            calls: Arc::default(),
        }
    }

    /// Copies these bounded request context attributes onto the standard metrics.
    pub fn with_metric_attributes(mut self, keys: Vec<String>) -> Telemetry {
        self.instruments = self.instruments.with_context_attributes(keys);
        self
    }

    /// Counts calls into `calls` (shared with whoever reports them).
    ///
    /// Takes or returns types of specter's unstable internals: not covered by semver.
    #[doc(hidden)]
    pub fn with_call_counts(mut self, calls: Arc<CallCounts>) -> Telemetry {
        self.calls = calls;
        self
    }

    /// Calls started and ended so far.
    ///
    /// Takes or returns types of specter's unstable internals: not covered by semver.
    #[doc(hidden)]
    pub fn call_counts(&self) -> &Arc<CallCounts> {
        &self.calls
    }

    /// The content policy.
    pub fn content(&self) -> &ContentPolicy {
        &self.content
    }

    /// Starts the span of a call from its request-phase record, as a child of `parent`.
    ///
    /// Takes or returns types of specter's unstable internals: not covered by semver.
    #[doc(hidden)]
    pub fn start(&self, record: &Record, parent: &Context, start: SystemTime) -> ActiveSpan {
        self.start_scrubbed(record, parent, start, Credentials::default())
    }

    /// [`Telemetry::start`] for a call whose request carried `credentials`: they are replaced by
    /// `[REDACTED]` in every string the span exports, now and when it finishes.
    ///
    /// Takes or returns types of specter's unstable internals: not covered by semver.
    #[doc(hidden)]
    pub fn start_scrubbed(
        &self,
        record: &Record,
        parent: &Context,
        start: SystemTime,
        credentials: Credentials,
    ) -> ActiveSpan {
        // Only the name and the attributes are exported at the start: scrub copies of those.
        let mut name = record.span_name.clone();
        credentials.scrub_in_place(&mut name);
        let (attributes, initial) = start_attributes(record, &self.dialects, &credentials);
        let kind = if record.client_span {
            SpanKind::Client
        } else {
            SpanKind::Internal
        };
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_start_time(start)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, parent);
        let context = parent.with_remote_span_context(span.span_context().clone());
        self.calls.started.fetch_add(1, Ordering::Relaxed);
        ActiveSpan {
            span,
            context,
            initial,
            credentials,
        }
    }

    /// Ends a call's span with its final record and records its metrics. Consumes the span, so
    /// it ends exactly once. Everything exported (attributes, events, status, metric attributes)
    /// is rendered from the record here, after the call's credentials are scrubbed from it.
    ///
    /// Takes or returns types of specter's unstable internals: not covered by semver.
    #[doc(hidden)]
    pub fn finish(
        &self,
        mut active: ActiveSpan,
        mut record: Record,
        op: &Operation,
        timings: &Timings,
    ) {
        active.credentials.scrub_record(&mut record);
        self.calls.count_usage(&record);
        let prepared = Prepared::new(record, &self.content);
        self.instruments.record(prepared.record(), op, timings);
        let rendered = prepared.into_span(&self.dialects, timings.first_chunk);
        copy_onto(&mut active, rendered, timings.end);
        active.span.end_with_timestamp(timings.end);
        self.calls.ended.fetch_add(1, Ordering::Relaxed);
    }
}

/// The attributes a span starts with: the request-phase record's, in `dialects`, with the
/// call's credentials scrubbed, and their fingerprints. The default names are converted
/// straight from the record's attributes (a string is copied once, scrubbed only when it holds
/// the start of a credential); other dialects render a map first.
fn start_attributes(
    record: &Record,
    dialects: &[Dialect],
    credentials: &Credentials,
) -> (Vec<KeyValue>, Vec<u64>) {
    if !matches!(dialects, [Dialect::Semconv]) {
        let mut rendered = render::dialect::render_start(record, dialects);
        rendered
            .values_mut()
            .for_each(|v| credentials.scrub_json(v));
        let initial = rendered
            .iter()
            .map(|(key, value)| fingerprint(key, value))
            .collect();
        return (into_key_values(rendered.into_iter()), initial);
    }
    // No room is reserved for what the end adds: a stream's span is held open for the whole
    // stream, and one growth at its end costs less than the memory held meanwhile.
    let mut attributes = Vec::with_capacity(record.attributes.len());
    let mut initial = Vec::with_capacity(record.attributes.len());
    for (key, value) in &record.attributes {
        if render::dialect::is_newer_only(key) {
            continue;
        }
        let converted = match value {
            serde_json::Value::String(text) => {
                let text = credentials.scrubbed(text);
                initial.push(fingerprint_text(key, &text));
                Some(opentelemetry::Value::String(text.into_owned().into()))
            }
            serde_json::Value::Array(_) | serde_json::Value::Object(_)
                if !credentials.is_empty() =>
            {
                let mut value = value.clone();
                credentials.scrub_json(&mut value);
                initial.push(fingerprint(key, &value));
                convert::to_value(&value)
            }
            value => {
                initial.push(fingerprint(key, value));
                convert::to_value(value)
            }
        };
        if let Some(converted) = converted {
            attributes.push(KeyValue::new(key.clone(), converted));
        }
    }
    (attributes, initial)
}

/// Copies a rendered span onto the open span: the attributes not already set at its start, the
/// events at `end`, the status.
fn copy_onto(active: &mut ActiveSpan, rendered: RenderedSpan, end: SystemTime) {
    let initial = &active.initial;
    let changed = rendered
        .attributes
        .into_iter()
        .filter(|(key, value)| !initial.contains(&fingerprint(key, value)))
        .filter_map(|(key, value)| Some(KeyValue::new(key, convert::into_value(value)?)));
    active.span.set_attributes(changed);
    for event in rendered.events {
        let attributes = event
            .attributes
            .into_iter()
            .map(|(k, v)| KeyValue::new(k, v))
            .collect();
        active
            .span
            .add_event_with_timestamp(event.name, end, attributes);
    }
    if let render::Status::Error { message } = rendered.status {
        active.span.set_status(Status::error(message));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod usage_tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::{CallCounts, MAX_USAGE_ROWS};
    use crate::engine::Record;

    fn record(model: &str, cost: Option<f64>) -> Record {
        let mut attributes = BTreeMap::new();
        attributes.insert("gen_ai.provider.name".into(), json!("openai"));
        attributes.insert("gen_ai.response.model".into(), json!(model));
        attributes.insert("gen_ai.usage.input_tokens".into(), json!(10));
        attributes.insert("gen_ai.usage.output_tokens".into(), json!(2));
        if let Some(c) = cost {
            attributes.insert("gen_ai.usage.cost".into(), json!(c));
        }
        Record {
            provider: "openai".into(),
            operation: "chat".into(),
            span_name: "chat".into(),
            client_span: true,
            attributes,
            input_messages: None,
            output_messages: None,
            system_instructions: None,
            tool_definitions: None,
            error: None,
            problems: Vec::new(),
            stream: None,
            metric_values: Vec::new(),
        }
    }

    #[test]
    fn usage_rows_add_up_by_model_and_are_bounded() {
        let counts = CallCounts::default();
        counts.count_usage(&record("gpt-4o", Some(0.25)));
        counts.count_usage(&record("gpt-4o", None));
        for n in 0..MAX_USAGE_ROWS + 5 {
            counts.count_usage(&record(&format!("m-{n:03}"), Some(0.5)));
        }
        let rows = counts.usage();
        assert_eq!(rows.len(), MAX_USAGE_ROWS + 1);
        let gpt = rows.iter().find(|r| r.model == "gpt-4o").unwrap();
        assert_eq!((gpt.calls, gpt.input_tokens, gpt.output_tokens), (2, 20, 4));
        assert_eq!((gpt.cost, gpt.unpriced), (0.25, 1));
        // 100 rows: gpt-4o and m-000..m-098; m-099..m-104 (6 calls) are summed as `other`.
        let other = rows.last().unwrap();
        assert_eq!((other.provider.as_str(), other.calls), ("other", 6));
        assert_eq!(other.cost, 3.0);
    }
}
