//! Spans and metrics through the OpenTelemetry SDK's in-memory exporters: the library API on
//! recorded OpenAI exchanges, errors, the stream lifecycle (end, error, drop, stall), dialects,
//! content policy and trace context.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry::global::BoxedTracer;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use specter::instrument::{HttpRequest, HttpResponse, InstrumentedStream, Instrumentor, Options};
use specter::Dialect;
use specter::Telemetry;
use specter::{Capture, ContentPolicy};

struct Harness {
    spans: InMemorySpanExporter,
    metrics: InMemoryMetricExporter,
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    instrumentor: Instrumentor,
}

fn harness_with(dialects: Vec<Dialect>, content: ContentPolicy, options: Options) -> Harness {
    let spans = InMemorySpanExporter::default();
    let metrics = InMemoryMetricExporter::default();
    let tracer_provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics.clone()).build())
        .build();
    let tracer = BoxedTracer::new(Box::new(tracer_provider.tracer("specter")));
    let telemetry = Telemetry::new(tracer, &meter_provider.meter("specter"), dialects, content);
    let instrumentor = Instrumentor::builder()
        .telemetry(telemetry)
        .options(options)
        .build()
        .unwrap();
    Harness {
        spans,
        metrics,
        tracer_provider,
        meter_provider,
        instrumentor,
    }
}

fn harness() -> Harness {
    harness_with(
        vec![Dialect::Semconv],
        ContentPolicy::default(),
        Options::default(),
    )
}

impl Harness {
    fn finished(&self) -> Vec<SpanData> {
        self.tracer_provider.force_flush().unwrap();
        self.spans.get_finished_spans().unwrap()
    }

    /// Histogram points: metric name → (attributes, count, sum).
    fn histograms(&self) -> Vec<(String, BTreeMap<String, String>, u64, f64)> {
        self.meter_provider.force_flush().unwrap();
        let mut out = Vec::new();
        for rm in self.metrics.get_finished_metrics().unwrap() {
            for sm in rm.scope_metrics() {
                for metric in sm.metrics() {
                    let mut push = |attrs: BTreeMap<String, String>, count: u64, sum: f64| {
                        out.push((metric.name().to_string(), attrs, count, sum));
                    };
                    match metric.data() {
                        AggregatedMetrics::U64(MetricData::Histogram(h)) => {
                            for dp in h.data_points() {
                                push(attrs_of(dp.attributes()), dp.count(), dp.sum() as f64);
                            }
                        }
                        AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                            for dp in h.data_points() {
                                push(attrs_of(dp.attributes()), dp.count(), dp.sum());
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        out
    }
}

fn attrs_of<'a>(
    kvs: impl Iterator<Item = &'a opentelemetry::KeyValue>,
) -> BTreeMap<String, String> {
    kvs.map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect()
}

fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn fixture(case: &str, file: &str) -> Vec<u8> {
    std::fs::read(format!("tests/fixtures/openai/{case}/{file}")).unwrap()
}

fn chat_request(case: &str) -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        url: "https://api.openai.com/v1/chat/completions".into(),
        headers: vec![("Authorization".into(), "Bearer sk-test-secret".into())],
        body: fixture(case, "request.json"),
    }
}

#[test]
fn a_chat_call_gives_one_span_and_its_metrics() {
    let h = harness();
    let response = h
        .instrumentor
        .instrument_blocking(chat_request("chat_tool_calls"), |_| {
            Ok::<_, std::io::Error>(HttpResponse {
                status: 200,
                headers: vec![],
                body: fixture("chat_tool_calls", "response.json"),
            })
        })
        .unwrap();
    assert_eq!(response.status, 200);
    let spans = h.finished();
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span.name, "chat gpt-4o-mini");
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(span.status, Status::Unset);
    assert_eq!(
        attr(span, "gen_ai.provider.name"),
        Some(Value::from("openai"))
    );
    assert_eq!(
        attr(span, "gen_ai.response.id"),
        Some(Value::from("chatcmpl-ASYMU9Ntix7ePttk0MSuerJstef6U"))
    );
    assert_eq!(
        attr(span, "gen_ai.usage.input_tokens"),
        Some(Value::I64(75))
    );
    assert_eq!(
        attr(span, "gen_ai.usage.output_tokens"),
        Some(Value::I64(51))
    );
    assert_eq!(
        attr(span, "server.address"),
        Some(Value::from("api.openai.com"))
    );
    let finish = attr(span, "gen_ai.response.finish_reasons")
        .unwrap()
        .to_string();
    assert_eq!(finish, "[\"tool_calls\"]");
    let output = attr(span, "gen_ai.output.messages").unwrap().to_string();
    assert!(
        output.contains(r#""arguments":{"location":"Seattle, WA"}"#),
        "{output}"
    );
    // The API key is nowhere in the span.
    assert!(!format!("{span:?}").contains("sk-test-secret"));

    let points = h.histograms();
    let tokens: Vec<_> = points
        .iter()
        .filter(|p| p.0 == "gen_ai.client.token.usage")
        .collect();
    assert_eq!(tokens.len(), 2);
    for (_, attrs, count, sum) in tokens {
        assert_eq!(*count, 1);
        let expected = if attrs["gen_ai.token.type"] == "input" {
            75.0
        } else {
            51.0
        };
        assert_eq!(*sum, expected);
        assert_eq!(attrs["gen_ai.request.model"], "gpt-4o-mini");
        assert_eq!(attrs["gen_ai.response.model"], "gpt-4o-mini-2024-07-18");
        assert!(
            !attrs.contains_key("gen_ai.response.id"),
            "metric attributes are bounded"
        );
    }
    let durations: Vec<_> = points
        .iter()
        .filter(|p| p.0 == "gen_ai.client.operation.duration")
        .collect();
    assert_eq!(durations.len(), 1);
    assert!(!durations[0].1.contains_key("error.type"));
}

#[test]
fn an_error_response_sets_status_error_type_and_an_exception_event() {
    let h = harness();
    let _ = h
        .instrumentor
        .instrument_blocking(chat_request("chat_error_404_model"), |_| {
            Ok::<_, std::io::Error>(HttpResponse {
                status: 404,
                headers: vec![],
                body: fixture("chat_error_404_model", "response.json"),
            })
        });
    let spans = h.finished();
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    let message =
        "The model `this-model-does-not-exist` does not exist or you do not have access to it.";
    assert_eq!(span.status, Status::error(message));
    assert_eq!(
        attr(span, "error.type"),
        Some(Value::from("model_not_found"))
    );
    let event = &span.events.events[0];
    assert_eq!(event.name, "exception");
    assert_eq!(
        attrs_of(event.attributes.iter())["exception.message"],
        message
    );
    let durations: Vec<_> = h
        .histograms()
        .into_iter()
        .filter(|p| p.0 == "gen_ai.client.operation.duration")
        .collect();
    assert_eq!(durations[0].1["error.type"], "model_not_found");
}

#[test]
fn a_transport_failure_ends_the_span_with_the_error() {
    let h = harness();
    let result = h
        .instrumentor
        .instrument_blocking(chat_request("chat_plain"), |_| {
            Err::<HttpResponse, _>(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            ))
        });
    assert!(result.is_err());
    let spans = h.finished();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].status, Status::error("connection refused"));
    assert_eq!(attr(&spans[0], "error.type"), Some(Value::from("_OTHER")));
}

#[test]
fn unknown_requests_pass_without_a_span() {
    let h = harness();
    let request = HttpRequest {
        method: "GET".into(),
        url: "https://example.com/".into(),
        ..Default::default()
    };
    let response = h.instrumentor.instrument_blocking(request, |_| {
        Ok::<_, std::io::Error>(HttpResponse {
            status: 204,
            ..Default::default()
        })
    });
    assert_eq!(response.unwrap().status, 204);
    assert!(h.finished().is_empty());
}

fn stream_call(h: &Harness) -> specter::instrument::StreamCall {
    let mut request = chat_request("chat_stream_include_usage");
    let call = h
        .instrumentor
        .start(&mut request, &Context::current())
        .unwrap();
    let headers = vec![(
        "content-type".to_string(),
        "text/event-stream; charset=utf-8".to_string(),
    )];
    call.into_stream(200, &headers).unwrap()
}

#[test]
fn a_stream_that_ends_gives_one_ok_span_with_usage_and_timings() {
    let h = harness();
    let mut stream = stream_call(&h);
    for piece in fixture("chat_stream_include_usage", "response.sse").chunks(37) {
        stream.bytes(piece);
    }
    stream.end();
    let spans = h.finished();
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span.status, Status::Unset);
    assert_eq!(
        attr(span, "gen_ai.usage.input_tokens"),
        Some(Value::I64(12))
    );
    assert_eq!(
        attr(span, "gen_ai.usage.output_tokens"),
        Some(Value::I64(5))
    );
    assert_eq!(attr(span, "specter.stream.chunks"), Some(Value::I64(8)));
    assert!(attr(span, "gen_ai.response.time_to_first_chunk").is_some());
    let output = attr(span, "gen_ai.output.messages").unwrap().to_string();
    assert!(
        output.contains(r#""content":"\"This is a test.\"""#),
        "{output}"
    );
    let points = h.histograms();
    assert_eq!(
        points
            .iter()
            .filter(|p| p.0 == "gen_ai.client.operation.time_to_first_chunk")
            .map(|p| p.2)
            .sum::<u64>(),
        1
    );
    assert_eq!(
        points
            .iter()
            .filter(|p| p.0 == "gen_ai.client.operation.time_per_output_chunk")
            .map(|p| p.2)
            .sum::<u64>(),
        7
    );
}

#[test]
fn a_stream_that_fails_keeps_what_arrived_and_reports_the_error() {
    let h = harness();
    let mut stream = stream_call(&h);
    let body = fixture("chat_stream_include_usage", "response.sse");
    stream.bytes(&body[..body.len() / 2]);
    stream.fail("_OTHER", "connection reset by peer");
    let spans = h.finished();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].status, Status::error("connection reset by peer"));
    assert_eq!(
        attr(&spans[0], "gen_ai.response.id"),
        Some(Value::from("chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl"))
    );
}

#[test]
fn a_dropped_stream_is_recorded_as_abandoned_with_its_partial_content() {
    let h = harness();
    let mut stream = stream_call(&h);
    let body = fixture("chat_stream_include_usage", "response.sse");
    stream.bytes(&body[..body.len() / 2]);
    drop(stream);
    let spans = h.finished();
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span.status, Status::error(specter::instrument::ABANDONED));
    assert_eq!(attr(span, "error.type"), Some(Value::from("_OTHER")));
    assert_eq!(
        attr(span, "specter.stream.abandoned"),
        Some(Value::Bool(true))
    );
    let output = attr(span, "gen_ai.output.messages").unwrap().to_string();
    assert!(output.contains("This"), "{output}");
}

#[tokio::test]
async fn a_stalled_stream_ends_its_span_and_keeps_forwarding() {
    let h = harness();
    let call = stream_call(&h);
    let body = fixture("chat_stream_include_usage", "response.sse");
    let first: Result<Vec<u8>, std::io::Error> = Ok(body[..200].to_vec());
    // One chunk, then nothing for longer than the stall timeout.
    let inner = futures::stream::iter(vec![first]).chain(futures::stream::pending());
    let mut wrapped = Box::pin(InstrumentedStream::new(
        inner,
        call,
        Some(Duration::from_millis(50)),
    ));
    use futures::StreamExt;
    assert_eq!(wrapped.next().await.unwrap().unwrap(), body[..200].to_vec());
    let waited = tokio::time::timeout(Duration::from_millis(300), wrapped.next()).await;
    assert!(waited.is_err(), "the inner stream is still pending");
    let spans = h.finished();
    assert_eq!(spans.len(), 1);
    assert_eq!(attr(&spans[0], "error.type"), Some(Value::from("timeout")));
    assert_eq!(spans[0].status, Status::error("no data for 50 ms"));
    drop(wrapped);
    assert_eq!(h.finished().len(), 1, "the span ends exactly once");
}

#[test]
fn agentops_dialect_has_the_seed_guide_keys() {
    let h = harness_with(
        vec![Dialect::named("agentops").unwrap()],
        ContentPolicy::default(),
        Options::default(),
    );
    let mut request = chat_request("chat_plain");
    request.body = br#"{"model": "your-model-v1", "messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there!"}], "temperature": 0.7, "max_tokens": 100}"#.to_vec();
    let body = br#"{"id": "resp-123", "model": "your-model-v1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}"#;
    let _ = h.instrumentor.instrument_blocking(request, |_| {
        Ok::<_, std::io::Error>(HttpResponse {
            status: 200,
            headers: vec![],
            body: body.to_vec(),
        })
    });
    let span = &h.finished()[0];
    assert_eq!(
        attr(span, "gen_ai.request.model"),
        Some(Value::from("your-model-v1"))
    );
    assert_eq!(
        attr(span, "gen_ai.request.temperature"),
        Some(Value::F64(0.7))
    );
    assert_eq!(
        attr(span, "gen_ai.request.max_tokens"),
        Some(Value::I64(100))
    );
    assert_eq!(
        attr(span, "gen_ai.response.id"),
        Some(Value::from("resp-123"))
    );
    assert_eq!(
        attr(span, "gen_ai.usage.prompt_tokens"),
        Some(Value::I64(10))
    );
    assert_eq!(
        attr(span, "gen_ai.usage.completion_tokens"),
        Some(Value::I64(5))
    );
    assert_eq!(
        attr(span, "gen_ai.usage.total_tokens"),
        Some(Value::I64(15))
    );
    assert_eq!(attr(span, "gen_ai.system"), Some(Value::from("openai")));
    assert_eq!(
        attr(span, "gen_ai.prompt.1.role"),
        Some(Value::from("assistant"))
    );
    assert_eq!(
        attr(span, "gen_ai.prompt.1.content"),
        Some(Value::from("Hi there!"))
    );
    assert_eq!(
        attr(span, "gen_ai.completion.0.content"),
        Some(Value::from("Hello!"))
    );
    assert_eq!(
        attr(span, "gen_ai.completion.0.finish_reason"),
        Some(Value::from("stop"))
    );
    assert!(
        attr(span, "gen_ai.usage.input_tokens").is_none(),
        "renamed, not duplicated"
    );
}

#[test]
fn openinference_dialect_flattens_tool_calls() {
    let h = harness_with(
        vec![Dialect::named("openinference").unwrap()],
        ContentPolicy::default(),
        Options::default(),
    );
    let _ = h
        .instrumentor
        .instrument_blocking(chat_request("chat_tool_calls"), |_| {
            Ok::<_, std::io::Error>(HttpResponse {
                status: 200,
                headers: vec![],
                body: fixture("chat_tool_calls", "response.json"),
            })
        });
    let span = &h.finished()[0];
    // OpenInference's llm.model_name is the model that answered when the response names it.
    assert_eq!(
        attr(span, "llm.model_name"),
        Some(Value::from("gpt-4o-mini-2024-07-18"))
    );
    assert_eq!(attr(span, "llm.token_count.prompt"), Some(Value::I64(75)));
    assert_eq!(attr(span, "llm.token_count.total"), Some(Value::I64(126)));
    assert_eq!(
        attr(
            span,
            "llm.output_messages.0.message.tool_calls.1.tool_call.function.arguments"
        ),
        Some(Value::from(r#"{"location":"San Francisco, CA"}"#))
    );
    assert_eq!(
        attr(span, "openinference.span.kind"),
        Some(Value::from("LLM"))
    );
    // Set once: what the span carried from its start is not set again with another value, and
    // the semantic-conventions names OpenInference replaces were never set.
    let mut keys: Vec<&str> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
    let all = keys.len();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), all, "a key set twice: {keys:?}");
    for key in ["gen_ai.provider.name", "gen_ai.request.model"] {
        assert!(attr(span, key).is_none(), "{key}");
    }
}

#[test]
fn content_policy_controls_where_messages_go() {
    let none = harness_with(
        vec![Dialect::Semconv],
        ContentPolicy::default().with_capture(Capture::NoContent),
        Options::default(),
    );
    let _ = none
        .instrumentor
        .instrument_blocking(chat_request("chat_plain"), |_| {
            Ok::<_, std::io::Error>(HttpResponse {
                status: 200,
                headers: vec![],
                body: fixture("chat_plain", "response.json"),
            })
        });
    let span = &none.finished()[0];
    assert!(attr(span, "gen_ai.input.messages").is_none());
    assert!(attr(span, "gen_ai.output.messages").is_none());
    assert_eq!(
        attr(span, "gen_ai.usage.output_tokens"),
        Some(Value::I64(5))
    );

    let events = harness_with(
        vec![Dialect::Semconv],
        ContentPolicy::default()
            .with_capture(Capture::EventOnly)
            .with_max_length(Some(4)),
        Options::default(),
    );
    let _ = events
        .instrumentor
        .instrument_blocking(chat_request("chat_plain"), |_| {
            Ok::<_, std::io::Error>(HttpResponse {
                status: 200,
                headers: vec![],
                body: fixture("chat_plain", "response.json"),
            })
        });
    let span = &events.finished()[0];
    assert!(attr(span, "gen_ai.output.messages").is_none());
    let event = span
        .events
        .events
        .iter()
        .find(|e| e.name == "gen_ai.client.inference.operation.details")
        .unwrap();
    let output = attrs_of(event.attributes.iter())["gen_ai.output.messages"].clone();
    assert_eq!(
        output,
        r#"[{"role":"assistant","parts":[{"type":"text","content":"This…"}],"finish_reason":"stop"}]"#
    );
}

#[test]
fn the_span_is_a_child_of_the_current_context_and_traceparent_is_propagated() {
    let h = harness_with(
        vec![Dialect::Semconv],
        ContentPolicy::default(),
        Options::default().with_propagate_trace_context(true),
    );
    let parent_span = h.tracer_provider.tracer("app").start("parent");
    let parent_cx = Context::current_with_span(parent_span);
    let _guard = parent_cx.clone().attach();
    let mut sent_headers = Vec::new();
    let _ = h
        .instrumentor
        .instrument_blocking(chat_request("chat_plain"), |request| {
            sent_headers = request.headers.clone();
            Ok::<_, std::io::Error>(HttpResponse {
                status: 200,
                headers: vec![],
                body: fixture("chat_plain", "response.json"),
            })
        });
    let spans = h.finished();
    let span = spans.iter().find(|s| s.name == "chat gpt-4o-mini").unwrap();
    let parent = parent_cx.span().span_context().clone();
    assert_eq!(span.span_context.trace_id(), parent.trace_id());
    assert_eq!(span.parent_span_id, parent.span_id());
    let traceparent = sent_headers
        .iter()
        .find(|(k, _)| k == "traceparent")
        .unwrap()
        .1
        .clone();
    assert_eq!(
        traceparent,
        format!(
            "00-{}-{}-01",
            span.span_context.trace_id(),
            span.span_context.span_id()
        )
    );
}

/// Everything a span exports, as text.
fn exported_text(span: &SpanData) -> String {
    let mut text = format!("{}\n", span.name);
    for kv in &span.attributes {
        text.push_str(&format!("{}={}\n", kv.key, kv.value));
    }
    for event in span.events.iter() {
        for kv in &event.attributes {
            text.push_str(&format!("{} {}={}\n", event.name, kv.key, kv.value));
        }
    }
    if let Status::Error { description } = &span.status {
        text.push_str(description);
    }
    text
}

#[test]
fn credentials_echoed_by_the_upstream_or_the_client_are_scrubbed() {
    let h = harness_with(
        vec![Dialect::Semconv],
        ContentPolicy::default().with_capture(Capture::SpanAndEvent),
        Options::default(),
    );
    let key = "sk-proj-echo-0123456789abcdef";
    let google = "AIzaSy-query-key-0123";
    let request = |headers: Vec<(String, String)>| HttpRequest {
        method: "POST".into(),
        url: format!("https://api.openai.com/v1/chat/completions?key={google}"),
        headers,
        body: fixture("chat_plain", "request.json"),
    };
    let bearer = vec![("Authorization".to_string(), format!("Bearer {key}"))];
    // The upstream echoes the key (whole and masked) in its error; the reply echoes it as content.
    let echo = serde_json::json!({"error": {
        "message": format!("Incorrect API key provided: {key}. Or sk-proj-****cdef. Query {google}."),
        "code": "invalid_api_key",
    }});
    let _ = h
        .instrumentor
        .instrument_blocking(request(bearer.clone()), |_| {
            Ok::<_, std::io::Error>(HttpResponse {
                status: 401,
                headers: vec![],
                body: echo.to_string().into_bytes(),
            })
        });
    let mut reply: serde_json::Value =
        serde_json::from_slice(&fixture("chat_plain", "response.json")).unwrap();
    reply["choices"][0]["message"]["content"] = format!("your key is {key}").into();
    let _ = h.instrumentor.instrument_blocking(request(bearer), |_| {
        Ok::<_, std::io::Error>(HttpResponse {
            status: 200,
            headers: vec![],
            body: reply.to_string().into_bytes(),
        })
    });
    // The client's own error quotes the URL; the key is in `x-api-key` and, by mistake, in the
    // model name (an attribute set when the span starts).
    let headers = vec![("x-api-key".to_string(), key.to_string())];
    let mut misplaced = request(headers);
    misplaced.body = serde_json::json!({"model": format!("gpt-4o {key}"), "messages": []})
        .to_string()
        .into_bytes();
    let _ = h.instrumentor.instrument_blocking(misplaced, |r| {
        Err::<HttpResponse, _>(format!("connection refused: {} ({key})", r.url))
    });

    let spans = h.finished();
    assert_eq!(spans.len(), 3);
    let [refused, echoed, failed] = [&spans[0], &spans[1], &spans[2]];
    assert_eq!(
        refused.status,
        Status::error("Incorrect API key provided: [REDACTED]. Or [REDACTED]. Query [REDACTED].")
    );
    let output = attr(echoed, "gen_ai.output.messages").unwrap().to_string();
    assert!(output.contains("your key is [REDACTED]"), "{output}");
    assert_eq!(
        failed.status,
        Status::error(
            "connection refused: https://api.openai.com/v1/chat/completions?key=[REDACTED] ([REDACTED])"
        )
    );
    assert_eq!(
        attr(failed, "gen_ai.request.model"),
        Some(Value::from("gpt-4o [REDACTED]"))
    );
    for span in &spans {
        let text = exported_text(span);
        assert!(!text.contains(key) && !text.contains(google), "{text}");
        assert!(!text.contains("****cdef"), "{text}");
    }
    h.meter_provider.force_flush().unwrap();
    let metrics = format!("{:?}", h.metrics.get_finished_metrics().unwrap());
    assert!(!metrics.contains(key), "{metrics}");
}

/// The request, response body and response content type of `tests/fixtures/<provider>/<case>/`.
fn recorded(provider: &str, case: &str) -> (HttpRequest, Vec<u8>, String) {
    let dir = format!("tests/fixtures/{provider}/{case}");
    let meta = std::fs::read_to_string(format!("{dir}/meta.yaml")).unwrap();
    let meta = specter::unstable::yaml::parse(&meta).unwrap().value;
    let text = |key: &str| meta[key].as_str().unwrap().to_string();
    let request = HttpRequest {
        method: text("method"),
        url: text("url"),
        headers: vec![("content-type".into(), "application/json".into())],
        body: std::fs::read(format!("{dir}/{}", text("request_file"))).unwrap(),
    };
    let body = std::fs::read(format!("{dir}/{}", text("response_file"))).unwrap();
    let content_type = match meta["response_content_type"].as_str() {
        Some(c) if c != "null" => c.to_string(),
        _ => "text/event-stream".to_string(),
    };
    (request, body, content_type)
}

#[tokio::test]
async fn a_stream_without_an_end_marker_is_complete_once_its_last_chunk_says_so() {
    use futures::StreamExt;
    // Streams whose last chunk is their only end signal (`done: true`, `stream-end`, a finish
    // reason, the invocation metrics), with the finish reason that last chunk carries.
    let cases = [
        ("ollama", "chat_stream_ndjson", "stop"),
        ("ollama", "generate_stream_ndjson", "stop"),
        ("cohere", "chat_v1_stream_ndjson", "COMPLETE"),
        ("gemini", "stream_generate_content", "STOP"),
        ("gemini", "stream_generate_content_thinking", "STOP"),
        ("vertexai", "stream_generate_content_json_array", "STOP"),
        ("bedrock", "invoke_model_stream_nova", "max_tokens"),
        (
            "bedrock",
            "invoke_model_stream_claude3_messages",
            "end_turn",
        ),
    ];
    for (provider, case, finish_reason) in cases {
        let h = harness();
        let (mut request, body, content_type) = recorded(provider, case);
        let call = h
            .instrumentor
            .start(&mut request, &Context::current())
            .unwrap();
        let call = call
            .into_stream(200, &[("content-type".to_string(), content_type)])
            .unwrap();
        // Every byte arrives, then the connection stays open and the consumer stops reading.
        let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
            body.chunks(61).map(|c| Ok(c.to_vec())).collect();
        let count = pieces.len();
        let inner = futures::stream::iter(pieces).chain(futures::stream::pending());
        let mut wrapped = Box::pin(InstrumentedStream::new(inner, call, None));
        for _ in 0..count {
            wrapped.next().await.unwrap().unwrap();
        }
        drop(wrapped);
        let spans = h.finished();
        assert_eq!(spans.len(), 1, "{provider}/{case}");
        let span = &spans[0];
        assert_eq!(span.status, Status::Unset, "{provider}/{case}");
        assert_eq!(attr(span, "error.type"), None, "{provider}/{case}");
        assert_eq!(
            attr(span, "specter.stream.abandoned"),
            None,
            "{provider}/{case}"
        );
        assert_eq!(
            attr(span, "gen_ai.response.finish_reasons").map(|v| v.to_string()),
            Some(format!("[\"{finish_reason}\"]")),
            "{provider}/{case}"
        );
    }
}

/// The attributes a span starts with, credentials scrubbed from them, are not set again when it
/// ends: every key is exported once, the start attributes first, in key order, then the end's.
#[test]
fn start_attributes_scrubbed_of_credentials_are_exported_once() {
    let h = harness();
    let key = "sk-proj-start-0123456789abcdef";
    let mut request = chat_request("chat_plain");
    request.headers = vec![("Authorization".into(), format!("Bearer {key}"))];
    request.body = serde_json::json!({"model": format!("gpt-4o {key}"), "messages": []})
        .to_string()
        .into_bytes();
    let _ = h.instrumentor.instrument_blocking(request, |_| {
        Ok::<_, std::io::Error>(HttpResponse {
            status: 200,
            headers: vec![],
            body: fixture("chat_plain", "response.json"),
        })
    });
    let spans = h.finished();
    assert_eq!(spans.len(), 1);
    let keys: Vec<&str> = spans[0]
        .attributes
        .iter()
        .map(|kv| kv.key.as_str())
        .collect();
    let mut unique = keys.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "{keys:?}");
    assert_eq!(
        keys[..6],
        [
            "gen_ai.operation.name",
            "gen_ai.provider.name",
            "gen_ai.request.model",
            "server.address",
            "server.port",
            "gen_ai.output.messages",
        ]
    );
    assert_eq!(
        attr(&spans[0], "gen_ai.request.model"),
        Some(Value::from("gpt-4o [REDACTED]"))
    );
    assert!(!exported_text(&spans[0]).contains(key));
}
