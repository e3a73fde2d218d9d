//! Reading one traces file line: the OTLP JSON encoding of an `ExportTraceServiceRequest`, as
//! the traces file exporter writes it, reduced to the fields the call list needs.

use serde::Deserialize;

/// An integer the OTLP JSON encoding writes as a string (64-bit values) or as a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Int {
    Number(i64),
    Text(String),
    Float(f64),
}

impl Int {
    fn value(&self) -> Option<i64> {
        match self {
            Int::Number(n) => Some(*n),
            Int::Text(text) => text.parse().ok(),
            #[allow(clippy::cast_possible_truncation)]
            Int::Float(f) => f.is_finite().then_some(*f as i64),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Request {
    #[serde(default, rename = "resourceSpans")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Debug, Deserialize)]
struct ResourceSpans {
    #[serde(default, rename = "scopeSpans")]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Debug, Deserialize)]
struct ScopeSpans {
    #[serde(default)]
    spans: Vec<Span>,
}

#[derive(Debug, Deserialize)]
struct Span {
    #[serde(default, rename = "traceId")]
    trace_id: String,
    #[serde(default, rename = "spanId")]
    span_id: String,
    #[serde(default, rename = "startTimeUnixNano")]
    start: Option<Int>,
    #[serde(default, rename = "endTimeUnixNano")]
    end: Option<Int>,
    #[serde(default)]
    attributes: Vec<KeyValue>,
    #[serde(default)]
    status: Option<Status>,
}

#[derive(Debug, Deserialize)]
struct Status {
    #[serde(default)]
    code: Option<Int>,
}

#[derive(Debug, Deserialize)]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: Option<AnyValue>,
}

#[derive(Debug, Deserialize)]
struct AnyValue {
    #[serde(default, rename = "stringValue")]
    string: Option<String>,
    #[serde(default, rename = "intValue")]
    int: Option<Int>,
    #[serde(default, rename = "doubleValue")]
    double: Option<f64>,
    #[serde(default, rename = "boolValue")]
    boolean: Option<bool>,
}

/// What the call list keeps of one span.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanSummary {
    /// Trace id, 16 bytes.
    pub trace_id: [u8; 16],
    /// Span id, 8 bytes.
    pub span_id: [u8; 8],
    /// Start, nanoseconds since the Unix epoch.
    pub start_ns: u64,
    /// Duration in milliseconds.
    pub duration_ms: f64,
    /// `gen_ai.response.time_to_first_chunk`, in milliseconds.
    pub ttfc_ms: Option<f64>,
    /// `gen_ai.provider.name`.
    pub provider: String,
    /// `gen_ai.operation.name`.
    pub operation: String,
    /// `gen_ai.request.model`.
    pub request_model: String,
    /// `gen_ai.response.model`.
    pub response_model: String,
    /// `session.id`.
    pub session: String,
    /// `user.id`.
    pub user: String,
    /// `gen_ai.conversation.id`.
    pub conversation: String,
    /// `error.type`.
    pub error_type: String,
    /// `http.response.status_code`.
    pub http_status: Option<u16>,
    /// Whether the span's status is an error (or it has an `error.type`).
    pub error: bool,
    /// Whether the response was streamed.
    pub streamed: bool,
    /// `gen_ai.usage.input_tokens`.
    pub input_tokens: Option<u64>,
    /// `gen_ai.usage.output_tokens`.
    pub output_tokens: Option<u64>,
    /// `gen_ai.usage.cache_read.input_tokens`.
    pub cached_tokens: Option<u64>,
    /// `gen_ai.usage.reasoning.output_tokens`.
    pub reasoning_tokens: Option<u64>,
    /// `gen_ai.usage.cost`.
    pub cost: Option<f64>,
}

/// The spans of one line, or `None` when the line is not an OTLP JSON export request.
pub fn spans(line: &[u8]) -> Option<Vec<SpanSummary>> {
    let request: Request = serde_json::from_slice(line).ok()?;
    Some(
        request
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .filter_map(summarize)
            .collect(),
    )
}

/// Parses lower-case or upper-case hex into exactly `N` bytes.
pub fn hex_id<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn summarize(span: Span) -> Option<SpanSummary> {
    let start = span.start.as_ref().and_then(Int::value).unwrap_or(0).max(0);
    let end = span
        .end
        .as_ref()
        .and_then(Int::value)
        .unwrap_or(start)
        .max(start);
    let mut summary = SpanSummary {
        trace_id: hex_id(&span.trace_id)?,
        span_id: hex_id(&span.span_id)?,
        start_ns: u64::try_from(start).unwrap_or(0),
        #[allow(clippy::cast_precision_loss)]
        duration_ms: (end - start) as f64 / 1e6,
        error: span
            .status
            .as_ref()
            .and_then(|s| s.code.as_ref())
            .and_then(Int::value)
            == Some(2),
        ..SpanSummary::default()
    };
    for kv in span.attributes {
        if let Some(value) = kv.value {
            apply(&mut summary, &kv.key, value);
        }
    }
    if !summary.error_type.is_empty() {
        summary.error = true;
    }
    Some(summary)
}

fn apply(summary: &mut SpanSummary, key: &str, value: AnyValue) {
    let number = value
        .double
        .or_else(|| value.int.as_ref().and_then(Int::value).map(|i| i as f64));
    let count = number.filter(|n| *n >= 0.0).map(|n| n as u64);
    match key {
        "gen_ai.provider.name" => summary.provider = value.string.unwrap_or_default(),
        "gen_ai.operation.name" => summary.operation = value.string.unwrap_or_default(),
        "gen_ai.request.model" => summary.request_model = value.string.unwrap_or_default(),
        "gen_ai.response.model" => summary.response_model = value.string.unwrap_or_default(),
        "session.id" => summary.session = value.string.unwrap_or_default(),
        "user.id" => summary.user = value.string.unwrap_or_default(),
        "gen_ai.conversation.id" => summary.conversation = value.string.unwrap_or_default(),
        "error.type" => summary.error_type = value.string.unwrap_or_default(),
        "http.response.status_code" => {
            summary.http_status = number.and_then(|n| u16::try_from(n as i64).ok());
        }
        "gen_ai.usage.input_tokens" => summary.input_tokens = count,
        "gen_ai.usage.output_tokens" => summary.output_tokens = count,
        "gen_ai.usage.cache_read.input_tokens" => summary.cached_tokens = count,
        "gen_ai.usage.reasoning.output_tokens" => summary.reasoning_tokens = count,
        "gen_ai.usage.cost" => summary.cost = number,
        "gen_ai.response.time_to_first_chunk" => {
            summary.ttfc_ms = number.map(|s| s * 1000.0);
            summary.streamed = true;
        }
        "specter.stream.chunks" => summary.streamed = true,
        _ => {}
    }
    let _ = value.boolean;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_of_an_exported_span() {
        let line = br#"{"resourceSpans":[{"resource":{"attributes":[]},"scopeSpans":[{"spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"chat gpt-4o","startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000001500000000","attributes":[{"key":"gen_ai.provider.name","value":{"stringValue":"openai"}},{"key":"gen_ai.usage.input_tokens","value":{"intValue":"12"}},{"key":"gen_ai.usage.cost","value":{"doubleValue":0.25}},{"key":"gen_ai.response.time_to_first_chunk","value":{"doubleValue":0.5}},{"key":"error.type","value":{"stringValue":"rate_limited"}}],"status":{"code":2}}]}]}]}"#;
        let spans = spans(line).unwrap();
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(hex(&s.trace_id), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(hex(&s.span_id), "b7ad6b7169203331");
        assert_eq!(s.start_ns, 1_700_000_000_000_000_000);
        assert_eq!(s.duration_ms, 1500.0);
        assert_eq!(s.provider, "openai");
        assert_eq!(s.input_tokens, Some(12));
        assert_eq!(s.cost, Some(0.25));
        assert_eq!(s.ttfc_ms, Some(500.0));
        assert!(s.streamed && s.error);
        assert_eq!(s.error_type, "rate_limited");
    }

    #[test]
    fn refuses_what_is_not_an_export_request() {
        assert_eq!(spans(b"not json"), None);
        assert_eq!(hex_id::<8>("zz"), None);
    }
}
