//! Extraction benchmarks: specter's full extraction of a non-streaming OpenAI chat exchange beside
//! a plain `serde_json` parse of the same two bodies, and span export through the OpenTelemetry
//! SDK (batch processor, dropping exporter) beside the same extraction without telemetry.
//!
//! Run with `cargo bench --bench extract` (add `-- --quick` for a short check).

// Benchmarks are test code: a setup failure should stop the run loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
};
use serde_json::{json, Value as Json};
use specter::offline::{self, ExtractOptions, Recorded};
use specter::unstable::catalog::Match;
use specter::unstable::engine::{Content, Exchange, HttpTarget, Record};
use specter::unstable::render::dialect::{self, Dialect};
use specter::unstable::telemetry::{Telemetry, Timings};
use specter::{Capture, Catalog, ContentPolicy};

use budget::{Budget, Figure, Id};

mod budget;

const URL: &str = "https://api.openai.com/v1/chat/completions";

const SMALL_REQUEST: &[u8] = include_bytes!("../tests/fixtures/openai/chat_plain/request.json");
const SMALL_RESPONSE: &[u8] = include_bytes!("../tests/fixtures/openai/chat_plain/response.json");

/// Realistic user turns of a long coding-assistant conversation.
const USER_TEXTS: &[&str] = &[
    "I'm migrating our billing service from a cron job to an event-driven design. The current job runs every five minutes, scans the invoices table for rows with status 'pending', and calls the payment provider for each. What are the main failure modes I should plan for when moving this to a queue consumer?",
    "Here is the consumer loop we have so far. It reads a message, loads the invoice, charges the card and acknowledges the message. Sometimes we see duplicate charges in staging when the pod restarts. Could the acknowledgement order be the reason?",
    "That makes sense. How would you structure the idempotency key? We have the invoice id, the attempt number and the customer id available, and the provider accepts a 255 character key.",
    "Can you show me a minimal Rust example of the consumer with the idempotency key and a retry policy with exponential backoff capped at one minute? We use tokio and sqlx with Postgres.",
    "We also need to emit metrics for the number of charges, the failures by reason and the latency of the provider call. Which OpenTelemetry instruments would you pick, and what attributes should they carry without blowing up cardinality?",
    "One more thing: our compliance team wants every charge decision to be auditable for seven years. Should the audit log live in the same database transaction as the invoice update, or be written asynchronously to object storage?",
    "The provider sometimes returns HTTP 409 when a charge with the same idempotency key is still in progress. How should the consumer treat that response compared to a 5xx or a timeout?",
    "Thanks. Please summarise the final design in a short list I can paste into the design document, including the open questions we still need to answer with the payments team.",
];

/// Realistic assistant turns of the same conversation.
const ASSISTANT_TEXTS: &[&str] = &[
    "Moving from polling to a queue changes where failures show up. The main ones are: duplicate delivery (most queues are at-least-once), out-of-order delivery for the same invoice, poison messages that fail forever, partial failures where the charge succeeds but the acknowledgement or the database update does not, and back-pressure when the provider slows down. Each needs an explicit answer: idempotency, per-key ordering or version checks, a dead-letter queue, an outbox or a reconciliation job, and bounded concurrency.",
    "Yes, very likely. If the pod dies after the charge succeeds but before the acknowledgement, the broker redelivers the message and the next consumer charges again. Acknowledging first has the opposite problem: a crash after the acknowledgement loses the charge. The usual fix is to keep at-least-once delivery and make the charge itself idempotent, so a redelivery becomes a no-op on the provider side.",
    "Derive it from what identifies the business operation, not the delivery: for example `invoice:{invoice_id}:charge:{attempt}` where the attempt number only increases when you deliberately retry after a definitive decline. Do not include timestamps or random values, and store the key on the invoice row so that a reconciliation job can query the provider by key later.",
    "Here is a sketch. The consumer reads a batch, and for each message it loads the invoice with `SELECT ... FOR UPDATE SKIP LOCKED`, skips it when it is already paid, calls the provider with the stored idempotency key inside a retry loop whose delay doubles from 500 ms up to 60 s with jitter, then updates the invoice and writes an outbox row in one transaction before acknowledging the message.",
    "I would use a counter `billing.charges` with attributes `outcome` (succeeded, declined, failed) and `provider`, a counter `billing.charge.failures` with a bounded `reason` attribute mapped from the provider's error codes, and a histogram `billing.provider.duration` in seconds with the same `provider` and `outcome` attributes. Keep customer and invoice ids out of metric attributes; put them on spans and logs instead.",
    "Write the audit record in the same transaction as the invoice update: it is the only way to guarantee that every state change has exactly one audit entry. You can then ship the audit table to object storage asynchronously with a change-data-capture pipeline, and prune the hot table after the export is verified. This keeps the guarantee without making the consumer depend on object storage latency.",
    "Treat 409 as 'outcome unknown, check later', not as a failure: requeue the message with a delay, and on the next attempt first ask the provider for the charge by idempotency key. A 5xx or a timeout is also 'unknown'. Only a definitive decline should move the invoice to a failed state and increment the attempt number.",
    "Summary: 1) at-least-once queue delivery with idempotent charges keyed by invoice and attempt; 2) invoice row locked with SKIP LOCKED, updated with an outbox row and an audit row in one transaction; 3) 409, 5xx and timeouts are unknown outcomes resolved by lookup; 4) bounded-cardinality metrics; 5) dead-letter queue after 10 deliveries. Open questions: provider's key retention period, maximum retry window, and who owns reconciliation alerts.",
];

const SYSTEM_PROMPT: &str = "You are a senior backend engineer helping a teammate design reliable payment processing. Answer precisely, prefer concrete designs over general advice, show code in Rust when asked, and point out trade-offs and operational risks. Keep answers under 300 words unless the user asks for detail.\n\nContext about the team: the billing service is written in Rust (tokio, axum, sqlx) and runs on Kubernetes with three replicas per region; Postgres 15 is the system of record; the message broker delivers at least once and keeps messages for seven days; the payment provider exposes a REST API with idempotency keys retained for 24 hours, returns 409 for a request whose key is still being processed, and rate-limits each merchant account to 100 requests per second. Observability uses OpenTelemetry with an OTLP collector; metric attribute cardinality must stay below 1000 series per instrument. Compliance requires audit records for seven years and forbids storing full card numbers anywhere outside the provider. When you propose code, prefer small functions with explicit error types, no panics on input, and tests that can run without network access. When a question is ambiguous, state the assumption you make before answering.";

/// A 50-message chat request (~20 KB): a system prompt, user and assistant turns, one tool call
/// and its result, and two tool definitions.
fn large_request() -> Vec<u8> {
    let mut messages = vec![json!({"role": "system", "content": SYSTEM_PROMPT})];
    let mut turn = 0usize;
    while messages.len() < 50 {
        if messages.len() == 25 {
            messages.push(json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": "call_8fJk2LmQx7RtY1bN3pS0aVwZ",
                    "type": "function",
                    "function": {
                        "name": "search_runbooks",
                        "arguments": "{\"query\":\"payment provider 409 idempotency in progress\",\"limit\":3}"
                    }
                }]
            }));
            messages.push(json!({
                "role": "tool",
                "tool_call_id": "call_8fJk2LmQx7RtY1bN3pS0aVwZ",
                "content": "[{\"title\":\"Payments: handling in-progress charges\",\"excerpt\":\"A 409 means a request with the same key is being processed; retry after the Retry-After header.\"}]"
            }));
            continue;
        }
        let (role, texts) = if messages.len() % 2 == 1 {
            ("user", USER_TEXTS)
        } else {
            ("assistant", ASSISTANT_TEXTS)
        };
        let text = texts[(turn * 3 + messages.len()) % texts.len()];
        messages.push(json!({"role": role, "content": text}));
        turn += 1;
    }
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": messages,
        "temperature": 0.2,
        "top_p": 0.95,
        "max_tokens": 1024,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "seed": 42,
        "stream": false,
        "user": "user-7f3a9c",
        "tools": [
            {"type": "function", "function": {
                "name": "search_runbooks",
                "description": "Searches the internal runbooks and returns the best matching excerpts.",
                "parameters": {"type": "object", "properties": {
                    "query": {"type": "string", "description": "What to look for."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 10}
                }, "required": ["query"]}
            }},
            {"type": "function", "function": {
                "name": "get_invoice",
                "description": "Loads an invoice by id with its charge attempts.",
                "parameters": {"type": "object", "properties": {
                    "invoice_id": {"type": "string"}
                }, "required": ["invoice_id"]}
            }}
        ]
    });
    serde_json::to_vec(&body).unwrap()
}

/// The response to the large request: one ~1.3 KB assistant answer with usage details.
fn large_response() -> Vec<u8> {
    let content = ASSISTANT_TEXTS
        .iter()
        .take(3)
        .copied()
        .collect::<Vec<_>>()
        .join("\n\n");
    let body = json!({
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": 4817,
            "completion_tokens": 291,
            "total_tokens": 5108,
            "prompt_tokens_details": {"cached_tokens": 4608, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
            }
        },
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306"
    });
    serde_json::to_vec(&body).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Everything an extraction needs that the gateway has before the bodies arrive.
struct Setup {
    catalog: Catalog,
    found: Match,
    target: HttpTarget,
    request_headers: Vec<(String, String)>,
    response_headers: Vec<(String, String)>,
}

fn setup() -> Setup {
    let catalog = Catalog::bundled().unwrap();
    let target = HttpTarget::parse(URL).unwrap();
    let found = catalog
        .find("POST", Some(&target.host), &target.path, &target.query)
        .unwrap();
    Setup {
        found,
        catalog,
        target,
        request_headers: headers(&[
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("user-agent", "OpenAI/Python 1.54.3"),
            ("x-stainless-lang", "python"),
        ]),
        response_headers: headers(&[
            ("content-type", "application/json"),
            ("openai-processing-ms", "287"),
            ("openai-version", "2020-10-01"),
            ("x-ratelimit-remaining-requests", "9999"),
            ("x-request-id", "req_58cff97afd0e7c0bba910ccf0b044a6f"),
        ]),
    }
}

/// The exchange the gateway and the library start for a matched request: the request body
/// parsed and the request phase run (`Exchange::new`, with the per-call copies of the match, the
/// target and the headers the gateway makes).
fn start(s: &Setup, request: &[u8], content: Content) -> Exchange {
    Exchange::new(
        s.found.clone(),
        s.target.clone(),
        s.request_headers.clone(),
        request,
        content,
    )
}

/// specter's work for one non-streaming exchange: the exchange run whole (both bodies parsed,
/// request and response phases with all rules, the cost), then the semconv attributes rendered
/// the way the gateway and the library do when they finish a span (`dialect::render_taking`:
/// the record's attributes are moved into the result, not copied).
fn extract(s: &Setup, request: &[u8], response: &[u8]) -> BTreeMap<String, Json> {
    let mut record = record(s, request, response);
    dialect::render_taking(&mut record, &[Dialect::Semconv])
}

/// The same without rendering: the exchange's finished `Record` (what the dialects render).
fn record(s: &Setup, request: &[u8], response: &[u8]) -> Record {
    let mut exchange = start(s, request, Content::Render);
    exchange.respond(200, &s.response_headers, response);
    exchange.into_record()
}

/// The gateway's per-call path: the exchange started, its span started from the request-phase
/// record, the response phase run, and the span finished (content policy, attributes, metrics)
/// through the telemetry layer. With capture off, `t` carries the policy that drops content.
fn extract_with_telemetry(t: &Telemetry, s: &Setup, request: &[u8], response: &[u8]) {
    let start_time = SystemTime::now();
    // With capture off the engine neither parses nor renders message content, as in the gateway.
    let mut exchange = start(s, request, Content::of(t.content().capture));
    let active = t.start(exchange.record(), &Context::new(), start_time);
    exchange.respond(200, &s.response_headers, response);
    let timings = Timings {
        start: start_time,
        end: start_time + Duration::from_millis(850),
        duration: Duration::from_millis(850),
        first_chunk: None,
        chunk_gaps: Vec::new(),
    };
    let op = exchange.operation().clone();
    t.finish(active, exchange.into_record(), &op, &timings);
}

/// An exporter that drops every span.
#[derive(Debug)]
struct DropExporter;

impl SpanExporter for DropExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

fn bodies() -> [(&'static str, Vec<u8>, Vec<u8>); 2] {
    [
        ("small", SMALL_REQUEST.to_vec(), SMALL_RESPONSE.to_vec()),
        ("large", large_request(), large_response()),
    ]
}

fn bench_extract(c: &mut Criterion) {
    let s = setup();
    let options = ExtractOptions::default();
    let mut group = c.benchmark_group("extract");
    for (size, request, response) in bodies() {
        // Sanity: the extraction finds what it should.
        let attrs = extract(&s, &request, &response);
        assert_eq!(attrs["gen_ai.request.model"], "gpt-4o-mini");
        assert!(attrs.contains_key("gen_ai.output.messages"));
        eprintln!(
            "extract/{size}: request {} bytes, response {} bytes, {} attributes",
            request.len(),
            response.len(),
            attrs.len()
        );
        group.throughput(Throughput::Bytes((request.len() + response.len()) as u64));
        group.bench_function(BenchmarkId::new(size, "serde_json_parse"), |b| {
            b.iter(|| {
                let q: Json = serde_json::from_slice(black_box(&request)).unwrap();
                let r: Json = serde_json::from_slice(black_box(&response)).unwrap();
                (q, r)
            })
        });
        group.bench_function(BenchmarkId::new(size, "specter"), |b| {
            b.iter(|| extract(&s, black_box(&request), black_box(&response)))
        });
        // Breakdown, for reference: the same without the semconv rendering.
        group.bench_function(BenchmarkId::new(size, "specter_record_only"), |b| {
            b.iter(|| record(&s, black_box(&request), black_box(&response)))
        });
        // For reference: the whole `specter extract` path (URL parse, route lookup, metric
        // points, JSON output object).
        let response_headers = s.response_headers.clone();
        group.bench_function(BenchmarkId::new(size, "specter_offline_extract"), |b| {
            b.iter(|| {
                let exchange = Recorded {
                    method: "POST",
                    url: URL,
                    status: 200,
                    request: black_box(&request),
                    response: black_box(&response),
                    content_type: Some("application/json"),
                    request_headers: &s.request_headers,
                    response_headers: &response_headers,
                };
                offline::extract(&s.catalog, &exchange, &options).unwrap()
            })
        });
    }
    group.finish();
}

fn bench_telemetry(c: &mut Criterion) {
    let s = setup();
    let config = BatchConfigBuilder::default()
        .with_max_queue_size(4096)
        .with_scheduled_delay(Duration::from_millis(200))
        .build();
    let tracer_provider = SdkTracerProvider::builder()
        .with_span_processor(
            BatchSpanProcessor::builder(DropExporter)
                .with_batch_config(config)
                .build(),
        )
        .build();
    let meter_provider = SdkMeterProvider::builder()
        // Metrics are aggregated as in production; the reader only collects once a minute.
        .with_reader(
            PeriodicReader::builder(InMemoryMetricExporter::default())
                .with_interval(Duration::from_secs(60))
                .build(),
        )
        .build();
    let meter = opentelemetry::metrics::MeterProvider::meter(
        &meter_provider,
        specter::unstable::telemetry::SCOPE,
    );
    // As the gateway builds it: semconv, and the content policy of
    // `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` unset (capture on) or `false` (off).
    let telemetry = |capture: Capture| {
        let tracer = opentelemetry::global::BoxedTracer::new(Box::new(
            tracer_provider.tracer(specter::unstable::telemetry::SCOPE),
        ));
        let content = ContentPolicy::default().with_capture(capture);
        Telemetry::new(tracer, &meter, vec![Dialect::Semconv], content)
    };
    let capture_on = telemetry(Capture::SpanOnly);
    let capture_off = telemetry(Capture::NoContent);
    let mut group = c.benchmark_group("telemetry");
    for (size, request, response) in bodies() {
        group.bench_function(BenchmarkId::new(size, "extract_only"), |b| {
            b.iter(|| extract(&s, black_box(&request), black_box(&response)))
        });
        for (t, function) in [
            (&capture_on, EXPORT_CAPTURE_ON),
            (&capture_off, EXPORT_CAPTURE_OFF),
        ] {
            group.bench_function(BenchmarkId::new(size, function), |b| {
                b.iter(|| extract_with_telemetry(t, &s, black_box(&request), black_box(&response)))
            });
        }
    }
    group.finish();
    let _ = tracer_provider.shutdown();
    let _ = meter_provider.shutdown();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// The extraction with span export, capture on and off (`telemetry/<size>/<function>`).
const EXPORT_CAPTURE_ON: &str = "extract_and_export_span";
const EXPORT_CAPTURE_OFF: &str = "extract_and_export_span_no_content";

/// Extraction with span export at most twice the parse of the exchange's two bodies, for both
/// sizes and both capture modes.
fn budgets() -> Vec<Budget> {
    let mut budgets = Vec::new();
    for size in ["small", "large"] {
        for (capture, function) in [
            ("capture on", EXPORT_CAPTURE_ON),
            ("capture off", EXPORT_CAPTURE_OFF),
        ] {
            budgets.push(Budget {
                name: format!("extract/{size}"),
                capture,
                measured: Figure {
                    label: "specter",
                    id: Id::new("telemetry", &[size, function]),
                },
                baseline: Figure {
                    label: "serde_json parse",
                    id: Id::new("extract", &[size, "serde_json_parse"]),
                },
                limit: Some(2.0),
                note: None,
            });
        }
    }
    budgets
}

fn main() {
    let run_start = SystemTime::now();
    let mut c = config().configure_from_args();
    bench_extract(&mut c);
    bench_telemetry(&mut c);
    c.final_summary();
    budget::report(&budgets(), run_start);
}
