//! The OTLP JSON encoding of finished spans, written straight from the SDK's [`SpanData`] into a
//! byte buffer: one `ExportTraceServiceRequest` per span, with no intermediate protobuf message
//! tree. The bytes are those `opentelemetry-proto`'s serde encoding gives the same request (field
//! order, ids as lowercase hex, enums as integers, 64-bit integers and timestamps as strings); the
//! resource, which every line repeats, is encoded once.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::Resource;

/// OTLP `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`.
const HAS_IS_REMOTE: u32 = 0x100;
/// OTLP `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`.
const IS_REMOTE: u32 = 0x200;

/// Encodes spans as OTLP JSON request lines under one resource.
#[derive(Debug, Clone, Default)]
pub struct SpanEncoder {
    /// `{"resourceSpans":[{"resource":{…},"scopeSpans":[{"scope":` — the start of every line.
    head: Vec<u8>,
    /// `,"schemaUrl":"…"}]}` — the resource's schema URL and the end of every line.
    tail: Vec<u8>,
}

/// The encoding of the last scope seen, reused while spans keep to it (the gateway has one).
#[derive(Debug, Default)]
pub struct ScopeCache<'a> {
    last: Option<(&'a InstrumentationScope, Vec<u8>)>,
}

impl SpanEncoder {
    /// An encoder for spans of `resource`.
    pub fn new(resource: &Resource) -> SpanEncoder {
        let mut head = br#"{"resourceSpans":[{"resource":{"attributes":["#.to_vec();
        let mut first = true;
        for (key, value) in resource.iter() {
            comma(&mut head, &mut first);
            key_value(&mut head, key.as_str(), value);
        }
        head.extend_from_slice(
            br#"],"droppedAttributesCount":0,"entityRefs":[]},"scopeSpans":[{"scope":"#,
        );
        let mut tail = br#"],"schemaUrl":"#.to_vec();
        string(&mut tail, resource.schema_url().unwrap_or_default());
        tail.extend_from_slice(b"}]}");
        SpanEncoder { head, tail }
    }

    /// Appends `span` as one request (without a newline) to `out`.
    pub fn encode<'a>(&self, span: &'a SpanData, scopes: &mut ScopeCache<'a>, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head);
        scopes.encode(&span.instrumentation_scope, out);
        out.extend_from_slice(br#","spans":["#);
        encode_span(span, out);
        out.extend_from_slice(br#"],"schemaUrl":"#);
        string(
            out,
            span.instrumentation_scope.schema_url().unwrap_or_default(),
        );
        out.extend_from_slice(b"}");
        out.extend_from_slice(&self.tail);
    }
}

impl<'a> ScopeCache<'a> {
    /// Appends the encoding of `scope`, reusing the last one's when it is the same scope.
    fn encode(&mut self, scope: &'a InstrumentationScope, out: &mut Vec<u8>) {
        if let Some((known, bytes)) = &self.last {
            if *known == scope {
                out.extend_from_slice(bytes);
                return;
            }
        }
        let mut bytes = Vec::new();
        bytes.extend_from_slice(br#"{"name":"#);
        string(&mut bytes, scope.name());
        bytes.extend_from_slice(br#","version":"#);
        string(&mut bytes, scope.version().unwrap_or_default());
        bytes.extend_from_slice(br#","attributes":"#);
        key_values(&mut bytes, scope.attributes());
        bytes.extend_from_slice(br#","droppedAttributesCount":0}"#);
        out.extend_from_slice(&bytes);
        self.last = Some((scope, bytes));
    }
}

/// The span object.
fn encode_span(span: &SpanData, out: &mut Vec<u8>) {
    let context = &span.span_context;
    out.extend_from_slice(br#"{"traceId":""#);
    hex(out, &context.trace_id().to_bytes());
    out.extend_from_slice(br#"","spanId":""#);
    hex(out, &context.span_id().to_bytes());
    out.extend_from_slice(br#"","traceState":"#);
    string(out, &context.trace_state().header());
    out.extend_from_slice(br#","parentSpanId":""#);
    if span.parent_span_id != SpanId::INVALID {
        hex(out, &span.parent_span_id.to_bytes());
    }
    let span_flags = flags(
        span.parent_span_is_remote,
        context.trace_flags().to_u8().into(),
    );
    let _ = write!(out, r#"","flags":{span_flags},"name":"#);
    string(out, &span.name);
    let _ = write!(
        out,
        r#","kind":{},"startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":"#,
        kind(&span.span_kind),
        nanos(span.start_time),
        nanos(span.end_time)
    );
    key_values(out, &span.attributes);
    let _ = write!(
        out,
        r#","droppedAttributesCount":{},"events":["#,
        span.dropped_attributes_count
    );
    let mut first = true;
    for event in span.events.iter() {
        comma(out, &mut first);
        let _ = write!(
            out,
            r#"{{"timeUnixNano":"{}","name":"#,
            nanos(event.timestamp)
        );
        string(out, &event.name);
        out.extend_from_slice(br#","attributes":"#);
        key_values(out, &event.attributes);
        let _ = write!(
            out,
            r#","droppedAttributesCount":{}}}"#,
            event.dropped_attributes_count
        );
    }
    let _ = write!(
        out,
        r#"],"droppedEventsCount":{},"links":["#,
        span.events.dropped_count
    );
    let mut first = true;
    for link in span.links.iter() {
        comma(out, &mut first);
        let linked = &link.span_context;
        out.extend_from_slice(br#"{"traceId":""#);
        hex(out, &linked.trace_id().to_bytes());
        out.extend_from_slice(br#"","spanId":""#);
        hex(out, &linked.span_id().to_bytes());
        out.extend_from_slice(br#"","traceState":"#);
        string(out, &linked.trace_state().header());
        out.extend_from_slice(br#","attributes":"#);
        key_values(out, &link.attributes);
        let _ = write!(
            out,
            r#","droppedAttributesCount":{},"flags":{}}}"#,
            link.dropped_attributes_count,
            flags(linked.is_remote(), linked.trace_flags().to_u8().into())
        );
    }
    let _ = write!(
        out,
        r#"],"droppedLinksCount":{},"status":{{"message":"#,
        span.links.dropped_count
    );
    let (code, message) = match &span.status {
        Status::Unset => (0, ""),
        Status::Ok => (1, ""),
        Status::Error { description } => (2, description.as_ref()),
    };
    string(out, message);
    let _ = write!(out, r#","code":{code}}}}}"#);
}

/// OTLP span flags: the W3C trace flags and whether the parent was remote.
fn flags(remote: bool, trace_flags: u32) -> u32 {
    trace_flags | HAS_IS_REMOTE | if remote { IS_REMOTE } else { 0 }
}

/// OTLP `SpanKind` numbers.
fn kind(kind: &SpanKind) -> u8 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// Nanoseconds since the Unix epoch (0 before it).
fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn comma(out: &mut Vec<u8>, first: &mut bool) {
    if !*first {
        out.push(b',');
    }
    *first = false;
}

/// Lowercase hex of `bytes`.
fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.extend(DIGITS.get(usize::from(byte >> 4)));
        out.extend(DIGITS.get(usize::from(byte & 0x0f)));
    }
}

/// A JSON string, escaped as `serde_json` escapes it. Text with nothing to escape (no quote,
/// backslash or control character below U+0020) is copied as it is.
fn string(out: &mut Vec<u8>, text: &str) {
    if needs_escape(text.as_bytes()) {
        let _ = serde_json::to_writer(&mut *out, text);
        return;
    }
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// Whether `text` holds a byte JSON escapes: a quote, a backslash or a control character below
/// U+0020. Eight bytes at a time (a word has a byte below `n` when `(w - n·1) & !w & 0x80·1` is
/// not zero, for `n` up to 0x80; a byte equal to `c` is a zero byte of `w ^ c·1`).
fn needs_escape(text: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS != 0;
    let mut words = text.chunks_exact(8);
    for word in &mut words {
        let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
        if below(w, 0x20)
            || below(w ^ (ONES * u64::from(b'"')), 1)
            || below(w ^ (ONES * u64::from(b'\\')), 1)
        {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// A JSON number as `serde_json` writes an `f64` (`null` when not finite).
fn double(out: &mut Vec<u8>, value: f64) {
    let _ = serde_json::to_writer(&mut *out, &value);
}

/// `[{"key":…,"value":…},…]`.
fn key_values<'a>(out: &mut Vec<u8>, list: impl IntoIterator<Item = &'a KeyValue>) {
    out.push(b'[');
    let mut first = true;
    for kv in list {
        comma(out, &mut first);
        key_value(out, kv.key.as_str(), &kv.value);
    }
    out.push(b']');
}

fn key_value(out: &mut Vec<u8>, key: &str, value: &Value) {
    out.extend_from_slice(br#"{"key":"#);
    string(out, key);
    out.extend_from_slice(br#","value":"#);
    any_value(out, value);
    out.push(b'}');
}

/// An OTLP `AnyValue`: `{"stringValue":…}`, `{"intValue":"…"}`, `{"arrayValue":{"values":[…]}}`.
fn any_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(b) => {
            let _ = write!(out, r#"{{"boolValue":{b}}}"#);
        }
        Value::I64(n) => {
            let _ = write!(out, r#"{{"intValue":"{n}"}}"#);
        }
        Value::F64(x) => {
            out.extend_from_slice(br#"{"doubleValue":"#);
            double(out, *x);
            out.push(b'}');
        }
        Value::String(s) => {
            out.extend_from_slice(br#"{"stringValue":"#);
            string(out, s.as_str());
            out.push(b'}');
        }
        Value::Array(array) => {
            out.extend_from_slice(br#"{"arrayValue":{"values":["#);
            array_values(out, array);
            out.extend_from_slice(b"]}}");
        }
        other => {
            out.extend_from_slice(br#"{"stringValue":"#);
            string(out, &other.to_string());
            out.push(b'}');
        }
    }
}

fn array_values(out: &mut Vec<u8>, array: &Array) {
    let mut first = true;
    match array {
        Array::Bool(items) => items.iter().for_each(|b| {
            comma(out, &mut first);
            any_value(out, &Value::Bool(*b));
        }),
        Array::I64(items) => items.iter().for_each(|n| {
            comma(out, &mut first);
            let _ = write!(out, r#"{{"intValue":"{n}"}}"#);
        }),
        Array::F64(items) => items.iter().for_each(|x| {
            comma(out, &mut first);
            out.extend_from_slice(br#"{"doubleValue":"#);
            double(out, *x);
            out.push(b'}');
        }),
        Array::String(items) => items.iter().for_each(|s| {
            comma(out, &mut first);
            out.extend_from_slice(br#"{"stringValue":"#);
            string(out, s.as_str());
            out.push(b'}');
        }),
        other => {
            comma(out, &mut first);
            out.extend_from_slice(br#"{"stringValue":"#);
            string(out, &other.to_string());
            out.push(b'}');
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod string_tests {
    /// Every byte value at every position of a 17-byte text (two words and a remainder) is
    /// written as `serde_json` writes the text.
    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for byte in 0u8..0x80 {
            for at in 0..17 {
                let mut bytes = vec![b'a'; 17];
                bytes[at] = byte;
                let text = String::from_utf8(bytes).unwrap();
                let mut out = Vec::new();
                super::string(&mut out, &text);
                assert_eq!(out, serde_json::to_vec(&text).unwrap(), "{byte:#x} at {at}");
            }
        }
        for text in ["", "é\u{7f}ü", "ascii only", "€ and \"quotes\""] {
            let mut out = Vec::new();
            super::string(&mut out, text);
            assert_eq!(out, serde_json::to_vec(text).unwrap());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use opentelemetry::trace::{
        Link, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags,
        TraceId, TraceState, Tracer as _, TracerProvider as _,
    };
    use opentelemetry::{Array, Context, InstrumentationScope, KeyValue, StringValue, Value};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
    use opentelemetry_sdk::Resource;

    use super::{ScopeCache, SpanEncoder};

    /// Spans exercising every field: every value type, events, links, a remote parent with trace
    /// state, error and ok statuses, text needing escapes, two scopes, kinds.
    fn spans() -> Vec<SpanData> {
        let memory = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(memory.clone())
            .build();
        let remote = SpanContext::new(
            TraceId::from(0x5eec_0000_0000_0000_0000_0000_0000_0001),
            SpanId::from(0x00ab_cdef_0123_4567),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("vendor", "a1")]).unwrap(),
        );
        let parent = Context::new().with_remote_span_context(remote.clone());
        let scoped = InstrumentationScope::builder("other")
            .with_version("1.2.3")
            .with_schema_url("https://opentelemetry.io/schemas/1.30.0")
            .with_attributes([KeyValue::new("scope.attr", 7)])
            .build();
        let tracers = [
            provider.tracer("specter"),
            provider.tracer_with_scope(scoped),
        ];
        for (n, tracer) in tracers.iter().enumerate() {
            let mut span = tracer
                .span_builder(format!("chat \"gpt\"\n\u{1f600} {n}"))
                .with_kind(if n == 0 {
                    SpanKind::Client
                } else {
                    SpanKind::Internal
                })
                .with_start_time(UNIX_EPOCH + Duration::from_nanos(1_731_368_639_123_456_789))
                .with_links(vec![Link::new(
                    remote.clone(),
                    vec![KeyValue::new("link.kind", "follows")],
                    0,
                )])
                .start_with_context(tracer, &parent);
            span.set_attributes([
                KeyValue::new("s", "text with \"quotes\", \\ and \u{7}"),
                KeyValue::new("i", -42_i64),
                KeyValue::new("big", i64::MAX),
                KeyValue::new("f", 0.1_f64),
                KeyValue::new("whole", 3.0_f64),
                KeyValue::new("nan", f64::NAN),
                KeyValue::new("b", true),
                KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
                KeyValue::new("ints", Value::Array(Array::I64(vec![1, -2]))),
                KeyValue::new("floats", Value::Array(Array::F64(vec![1.5, 1e300]))),
                KeyValue::new(
                    "strings",
                    Value::Array(Array::String(vec![
                        StringValue::from("stop"),
                        "x\ty".into(),
                    ])),
                ),
                KeyValue::new("empty", Value::Array(Array::String(Vec::new()))),
            ]);
            span.add_event_with_timestamp(
                "gen_ai.choice",
                UNIX_EPOCH + Duration::from_secs(1_731_368_640),
                vec![KeyValue::new("index", 0_i64)],
            );
            span.add_event("no attributes", Vec::new());
            if n == 0 {
                span.set_status(Status::error("upstream said \"no\""));
            } else {
                span.set_status(Status::Ok);
            }
            span.end_with_timestamp(UNIX_EPOCH + Duration::from_nanos(1_731_368_640_000_000_001));
        }
        let mut root = provider.tracer("specter").start("root");
        root.end();
        memory.get_finished_spans().unwrap()
    }

    fn resource() -> Resource {
        Resource::builder_empty()
            .with_schema_url(
                [KeyValue::new("service.name", "specter-test")],
                "https://opentelemetry.io/schemas/1.29.0",
            )
            .with_attribute(KeyValue::new("service.instance.id", "i-1"))
            .build()
    }

    #[test]
    fn each_line_is_byte_for_byte_the_serde_encoding_of_the_otlp_request() {
        let resource = resource();
        let encoder = SpanEncoder::new(&resource);
        let spans = spans();
        assert_eq!(spans.len(), 3);
        let mut scopes = ScopeCache::default();
        for span in &spans {
            let mut ours = Vec::new();
            encoder.encode(span, &mut scopes, &mut ours);
            let request = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans::new(span.clone(), &(&resource).into())],
            };
            let theirs = serde_json::to_string(&request).unwrap();
            assert_eq!(String::from_utf8(ours).unwrap(), theirs);
        }
    }

    #[test]
    fn ids_are_hex_enums_numbers_and_64_bit_integers_strings() {
        let spans = spans();
        let mut out = Vec::new();
        SpanEncoder::new(&resource()).encode(&spans[0], &mut ScopeCache::default(), &mut out);
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let span = &line["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "5eec0000000000000000000000000001");
        assert_eq!(span["parentSpanId"], "00abcdef01234567");
        assert_eq!(span["traceState"], "vendor=a1");
        assert_eq!(span["kind"], 3);
        assert_eq!(span["flags"], 0x301);
        assert_eq!(span["startTimeUnixNano"], "1731368639123456789");
        assert_eq!(span["status"]["code"], 2);
        let big = span["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|kv| kv["key"] == "big")
            .unwrap();
        assert_eq!(big["value"]["intValue"], i64::MAX.to_string());
    }
}
