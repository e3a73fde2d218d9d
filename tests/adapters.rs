//! The library's adapters over real HTTP on loopback, against a stand-in that answers recorded
//! OpenAI chat exchanges: the reqwest middleware, the tower layer on a hyper-util client, the
//! async-openai recipe, and (feature `tracing`) spans parented under the caller's `tracing` span.
//! Spans are read from the OpenTelemetry SDK's in-memory exporter: their attributes, one span per
//! call, and the span of a stream ending at its end, on its error and when it is dropped.
//!
//! Run with `cargo test --features reqwest,tower,tracing --test adapters`.

#![cfg(all(feature = "reqwest", feature = "tower"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "common/upstream.rs"]
mod upstream;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Full};
use opentelemetry::global::BoxedTracer;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry::Value;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use specter::instrument::{Instrumentor, Options, ABANDONED};
use specter::ContentPolicy;
use specter::Dialect;
use specter::Telemetry;
use tower::{Layer as _, ServiceExt as _};
use upstream::{fixture, StreamEnd, Upstream, PLAIN_ANSWER};

/// Every wait for the network is bounded by this (a guard against hangs, not an assertion).
const BOUND: Duration = Duration::from_secs(20);

struct Harness {
    spans: InMemorySpanExporter,
    provider: SdkTracerProvider,
    instrumentor: Instrumentor,
}

fn harness_with(options: Options) -> Harness {
    let spans = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let meters = SdkMeterProvider::builder().build();
    let tracer = BoxedTracer::new(Box::new(provider.tracer("specter")));
    let telemetry = Telemetry::new(
        tracer,
        &meters.meter("specter"),
        vec![Dialect::Semconv],
        ContentPolicy::default(),
    );
    let instrumentor = Instrumentor::builder()
        .telemetry(telemetry)
        .options(options)
        .build()
        .unwrap();
    Harness {
        spans,
        provider,
        instrumentor,
    }
}

fn harness() -> Harness {
    harness_with(Options::default())
}

impl Harness {
    fn finished(&self) -> Vec<SpanData> {
        self.provider.force_flush().unwrap();
        self.spans.get_finished_spans().unwrap()
    }

    fn only_span(&self) -> SpanData {
        let spans = self.finished();
        assert_eq!(spans.len(), 1, "exactly one span: {spans:#?}");
        spans.into_iter().next().unwrap()
    }

    fn reqwest(&self) -> reqwest_middleware::ClientWithMiddleware {
        reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(self.instrumentor.middleware())
            .build()
    }
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| match &kv.value {
            Value::String(s) => s.to_string(),
            other => other.to_string(),
        })
}

/// The attributes every chat span from the `chat_plain` fixture carries.
fn assert_plain_chat(span: &SpanData) {
    assert_eq!(span.name, "chat gpt-4o-mini");
    assert_eq!(
        attr(span, "gen_ai.request.model").as_deref(),
        Some("gpt-4o-mini")
    );
    assert_eq!(
        attr(span, "gen_ai.response.model").as_deref(),
        Some("gpt-4o-mini-2024-07-18")
    );
    assert_eq!(
        attr(span, "gen_ai.usage.input_tokens").as_deref(),
        Some("12")
    );
    assert_eq!(
        attr(span, "gen_ai.usage.output_tokens").as_deref(),
        Some("5")
    );
    assert_eq!(
        attr(span, "gen_ai.response.finish_reasons").as_deref(),
        Some("[\"stop\"]")
    );
    assert_eq!(attr(span, "error.type"), None);
}

/// The attributes of the whole `chat_stream_include_usage` stream.
fn assert_whole_stream(span: &SpanData) {
    assert_eq!(span.name, "chat gpt-4");
    assert_eq!(attr(span, "gen_ai.request.model").as_deref(), Some("gpt-4"));
    assert_eq!(
        attr(span, "gen_ai.response.model").as_deref(),
        Some("gpt-4-0613")
    );
    assert_eq!(
        attr(span, "gen_ai.usage.input_tokens").as_deref(),
        Some("12")
    );
    assert_eq!(
        attr(span, "gen_ai.usage.output_tokens").as_deref(),
        Some("5")
    );
    assert_eq!(
        attr(span, "gen_ai.response.finish_reasons").as_deref(),
        Some("[\"stop\"]")
    );
    assert_eq!(attr(span, "error.type"), None);
    assert_eq!(span.status, Status::Unset);
}

fn assert_cut(span: &SpanData) {
    assert_eq!(span.name, "chat gpt-4");
    assert_eq!(attr(span, "error.type").as_deref(), Some("_OTHER"));
    assert!(
        matches!(span.status, Status::Error { .. }),
        "{:?}",
        span.status
    );
    assert_eq!(attr(span, "specter.stream.abandoned"), None);
}

fn assert_abandoned(span: &SpanData) {
    assert_eq!(span.name, "chat gpt-4");
    assert_eq!(attr(span, "error.type").as_deref(), Some("_OTHER"));
    assert_eq!(
        attr(span, "specter.stream.abandoned").as_deref(),
        Some("true")
    );
    assert_eq!(
        span.status,
        Status::Error {
            description: ABANDONED.into()
        }
    );
}

fn plain_request() -> Vec<u8> {
    fixture("chat_plain", "request.json").unwrap()
}

fn stream_request() -> Vec<u8> {
    fixture("chat_stream_include_usage", "request.json").unwrap()
}

async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, future)
        .await
        .expect("bounded wait")
}

mod reqwest_middleware_adapter {
    use super::*;

    #[tokio::test]
    async fn a_complete_answer_ends_its_span_when_the_body_is_read_not_before() {
        let h = harness();
        let upstream = Upstream::start(StreamEnd::Whole).await.unwrap();
        let url = upstream.url("/v1/chat/completions");
        let response = bounded(h.reqwest().post(&url).body(plain_request()).send())
            .await
            .unwrap();
        assert_eq!(
            response.url().as_str(),
            url,
            "the URL survives the wrapping"
        );
        assert!(
            h.finished().is_empty(),
            "the body is not buffered: no span before it is read"
        );
        let body = bounded(response.bytes()).await.unwrap();
        assert_eq!(body, fixture("chat_plain", "response.json").unwrap());
        assert_plain_chat(&h.only_span());
    }

    #[tokio::test]
    async fn a_complete_answer_decoded_as_json_gives_one_span() {
        let h = harness();
        let upstream = Upstream::start(StreamEnd::Whole).await.unwrap();
        let response = bounded(
            h.reqwest()
                .post(upstream.url("/v1/chat/completions"))
                .body(plain_request())
                .send(),
        )
        .await
        .unwrap();
        let answer: serde_json::Value = bounded(response.json()).await.unwrap();
        assert_eq!(answer["model"], "gpt-4o-mini-2024-07-18");
        assert_plain_chat(&h.only_span());
    }

    #[tokio::test]
    async fn a_complete_answer_dropped_unread_ends_its_span_as_abandoned_once() {
        let h = harness();
        let upstream = Upstream::start(StreamEnd::Whole).await.unwrap();
        let response = bounded(
            h.reqwest()
                .post(upstream.url("/v1/chat/completions"))
                .body(plain_request())
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 200);
        drop(response);
        let span = h.only_span();
        assert_eq!(span.name, "chat gpt-4o-mini");
        assert_eq!(
            attr(&span, "specter.stream.abandoned").as_deref(),
            Some("true")
        );
        assert_eq!(
            span.status,
            Status::Error {
                description: ABANDONED.into()
            }
        );
    }

    #[tokio::test]
    async fn a_stream_read_to_its_end_gives_one_span_with_the_folded_answer() {
        let h = harness();
        let upstream = Upstream::start(StreamEnd::Whole).await.unwrap();
        let response = bounded(
            h.reqwest()
                .post(upstream.url("/v1/chat/completions"))
                .body(stream_request())
                .send(),
        )
        .await
        .unwrap();
        let mut stream = response.bytes_stream();
        let mut body = Vec::new();
        while let Some(chunk) = bounded(stream.next()).await {
            body.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(
            body,
            fixture("chat_stream_include_usage", "response.sse").unwrap(),
            "every byte reaches the application unchanged"
        );
        drop(stream);
        assert_whole_stream(&h.only_span());
    }

    #[tokio::test]
    async fn a_stream_the_upstream_cuts_ends_its_span_as_failed_once() {
        let h = harness();
        let upstream = Upstream::start(StreamEnd::Cut { after: 3 }).await.unwrap();
        let response = bounded(
            h.reqwest()
                .post(upstream.url("/v1/chat/completions"))
                .body(stream_request())
                .send(),
        )
        .await
        .unwrap();
        let mut stream = response.bytes_stream();
        let mut failed = false;
        while let Some(chunk) = bounded(stream.next()).await {
            if chunk.is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "the client sees the cut");
        drop(stream);
        assert_cut(&h.only_span());
    }

    #[tokio::test]
    async fn a_stream_dropped_mid_way_ends_its_span_as_abandoned_once() {
        let h = harness();
        let upstream = Upstream::start(StreamEnd::Hang { after: 2 }).await.unwrap();
        let response = bounded(
            h.reqwest()
                .post(upstream.url("/v1/chat/completions"))
                .body(stream_request())
                .send(),
        )
        .await
        .unwrap();
        let mut stream = response.bytes_stream();
        let first = bounded(stream.next()).await.unwrap().unwrap();
        assert!(first.starts_with(b"data: "));
        assert!(h.finished().is_empty(), "the stream is still open");
        drop(stream);
        assert_abandoned(&h.only_span());
    }

    #[tokio::test]
    async fn requests_that_are_not_genai_calls_pass_untouched_and_unspanned() {
        let h = harness_with(Options::default().with_propagate_trace_context(true));
        let upstream = Upstream::start(StreamEnd::Whole).await.unwrap();
        let response = bounded(h.reqwest().get(upstream.url("/health")).send())
            .await
            .unwrap();
        assert_eq!(bounded(response.text()).await.unwrap(), PLAIN_ANSWER);
        assert!(h.finished().is_empty());
        let seen = upstream.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].header("traceparent"), None);
    }

    #[tokio::test]
    async fn a_streamed_request_body_is_sent_whole_and_the_span_reads_only_the_answer() {
        let h = harness();
        let upstream = Upstream::start(StreamEnd::Whole).await.unwrap();
        let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
            plain_request().chunks(16).map(|c| Ok(c.to_vec())).collect();
        let body = reqwest::Body::wrap_stream(futures::stream::iter(pieces));
        let response = bounded(
            h.reqwest()
                .post(upstream.url("/v1/chat/completions"))
                .body(body)
                .send(),
        )
        .await
        .unwrap();
        bounded(response.bytes()).await.unwrap();
        assert_eq!(upstream.seen()[0].body, plain_request());
        let span = h.only_span();
        assert_eq!(attr(&span, "gen_ai.request.model"), None);
        assert_eq!(
            attr(&span, "gen_ai.response.model").as_deref(),
            Some("gpt-4o-mini-2024-07-18")
        );
        assert_eq!(
            attr(&span, "gen_ai.usage.output_tokens").as_deref(),
            Some("5")
        );
    }

    #[tokio::test]
    async fn each_call_gets_one_span_and_its_traceparent_names_it() {
        let h = harness_with(Options::default().with_propagate_trace_context(true));
        let upstream = Upstream::start(StreamEnd::Whole).await.unwrap();
        let client = h.reqwest();
        for _ in 0..2 {
            let response = bounded(
                client
                    .post(upstream.url("/v1/chat/completions"))
                    .body(plain_request())
                    .send(),
            )
            .await
            .unwrap();
            bounded(response.bytes()).await.unwrap();
        }
        let spans = h.finished();
        assert_eq!(spans.len(), 2);
        let seen = upstream.seen();
        for (span, request) in spans.iter().zip(&seen) {
            assert_plain_chat(span);
            let traceparent = request.header("traceparent").unwrap();
            assert!(
                traceparent.contains(&span.span_context.span_id().to_string()),
                "{traceparent}"
            );
        }
    }
}

mod tower_layer_adapter {
    use super::*;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
        Client::builder(TokioExecutor::new()).build_http()
    }

    fn post(url: &str, body: Vec<u8>) -> http::Request<Full<Bytes>> {
        http::Request::post(url)
            .header("content-type", "application/json")
            .body(Full::from(body))
            .unwrap()
    }

    #[tokio::test]
    async fn a_complete_answer_gives_one_span_when_its_body_is_read() {
        let h = harness();
        let upstream = Upstream::start(StreamEnd::Whole).await.unwrap();
        let service = h.instrumentor.layer().layer(client());
        let request = post(&upstream.url("/v1/chat/completions"), plain_request());
        let response = bounded(service.oneshot(request)).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(h.finished().is_empty(), "no span before the body is read");
        let body = bounded(response.into_body().collect())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body, fixture("chat_plain", "response.json").unwrap());
        assert_plain_chat(&h.only_span());
        assert_eq!(
            upstream.seen()[0].body,
            plain_request(),
            "the request body is sent as it was given"
        );
    }

    #[tokio::test]
    async fn a_stream_read_to_its_end_gives_one_span() {
        let h = harness();
        let upstream = Upstream::start(StreamEnd::Whole).await.unwrap();
        let service = h.instrumentor.layer().layer(client());
        let request = post(&upstream.url("/v1/chat/completions"), stream_request());
        let response = bounded(service.oneshot(request)).await.unwrap();
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = bounded(body.frame()).await {
            if let Ok(data) = frame.unwrap().into_data() {
                bytes.extend_from_slice(&data);
            }
        }
        assert_eq!(
            bytes,
            fixture("chat_stream_include_usage", "response.sse").unwrap()
        );
        drop(body);
        assert_whole_stream(&h.only_span());
    }

    #[tokio::test]
    async fn a_stream_the_upstream_cuts_ends_its_span_as_failed_once() {
        let h = harness();
        let upstream = Upstream::start(StreamEnd::Cut { after: 3 }).await.unwrap();
        let service = h.instrumentor.layer().layer(client());
        let request = post(&upstream.url("/v1/chat/completions"), stream_request());
        let response = bounded(service.oneshot(request)).await.unwrap();
        let mut body = response.into_body();
        let mut failed = false;
        while let Some(frame) = bounded(body.frame()).await {
            if frame.is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "the client sees the cut");
        drop(body);
        assert_cut(&h.only_span());
    }

    #[tokio::test]
    async fn a_stream_dropped_mid_way_ends_its_span_as_abandoned_once() {
        let h = harness();
        let upstream = Upstream::start(StreamEnd::Hang { after: 2 }).await.unwrap();
        let service = h.instrumentor.layer().layer(client());
        let request = post(&upstream.url("/v1/chat/completions"), stream_request());
        let response = bounded(service.oneshot(request)).await.unwrap();
        let mut body = response.into_body();
        let first = bounded(body.frame()).await.unwrap().unwrap();
        assert!(first.into_data().unwrap().starts_with(b"data: "));
        assert!(h.finished().is_empty(), "the stream is still open");
        drop(body);
        assert_abandoned(&h.only_span());
    }

    /// A body whose length is not known in advance, as a stream's is.
    struct UnknownLength(Full<Bytes>);

    impl From<Bytes> for UnknownLength {
        fn from(bytes: Bytes) -> Self {
            UnknownLength(Full::new(bytes))
        }
    }

    impl http_body::Body for UnknownLength {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            std::pin::Pin::new(&mut self.0).poll_frame(cx)
        }
    }

    #[tokio::test]
    async fn a_request_body_of_unknown_length_is_sent_unread_and_the_span_reads_the_answer() {
        let h = harness();
        let upstream = Upstream::start(StreamEnd::Whole).await.unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http::<UnknownLength>();
        let service = h.instrumentor.layer().layer(client);
        let request = http::Request::post(upstream.url("/v1/chat/completions"))
            .body(UnknownLength::from(Bytes::from(plain_request())))
            .unwrap();
        let response = bounded(service.oneshot(request)).await.unwrap();
        bounded(response.into_body().collect()).await.unwrap();
        assert_eq!(upstream.seen()[0].body, plain_request());
        let span = h.only_span();
        assert_eq!(attr(&span, "gen_ai.request.model"), None);
        assert_eq!(
            attr(&span, "gen_ai.response.model").as_deref(),
            Some("gpt-4o-mini-2024-07-18")
        );
    }

    #[tokio::test]
    async fn a_request_body_over_the_cap_is_sent_unread() {
        let h = harness_with(Options::default().with_max_request_bytes(10));
        let upstream = Upstream::start(StreamEnd::Whole).await.unwrap();
        let service = h.instrumentor.layer().layer(client());
        let request = post(&upstream.url("/v1/chat/completions"), plain_request());
        let response = bounded(service.oneshot(request)).await.unwrap();
        bounded(response.into_body().collect()).await.unwrap();
        assert_eq!(upstream.seen()[0].body, plain_request());
        assert_eq!(attr(&h.only_span(), "gen_ai.request.model"), None);
    }

    #[tokio::test]
    async fn the_layer_adds_the_calls_traceparent() {
        let h = harness_with(Options::default().with_propagate_trace_context(true));
        let upstream = Upstream::start(StreamEnd::Whole).await.unwrap();
        let service = h.instrumentor.layer().layer(client());
        let request = post(&upstream.url("/v1/chat/completions"), plain_request());
        let response = bounded(service.oneshot(request)).await.unwrap();
        bounded(response.into_body().collect()).await.unwrap();
        let span = h.only_span();
        let traceparent = upstream.seen()[0]
            .header("traceparent")
            .unwrap()
            .to_string();
        assert!(
            traceparent.contains(&span.span_context.span_id().to_string()),
            "{traceparent}"
        );
    }

    #[tokio::test]
    async fn requests_that_are_not_genai_calls_pass_untouched_and_unspanned() {
        let h = harness();
        let upstream = Upstream::start(StreamEnd::Whole).await.unwrap();
        let service = h.instrumentor.layer().layer(client());
        let request = http::Request::get(upstream.url("/health"))
            .body(Full::default())
            .unwrap();
        let response = bounded(service.oneshot(request)).await.unwrap();
        let body = bounded(response.into_body().collect())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body, PLAIN_ANSWER.as_bytes());
        assert!(h.finished().is_empty());
    }
}

mod async_openai_recipe {
    use super::*;
    use async_openai::config::OpenAIConfig;
    use async_openai::error::OpenAIError;
    use async_openai::middleware::HttpRequestFactory;
    use async_openai::types::chat::CreateChatCompletionRequest;

    /// The recipe: async-openai sends through a reqwest client carrying specter's middleware.
    fn client(h: &Harness, upstream: &Upstream) -> async_openai::Client<OpenAIConfig> {
        let http = h.reqwest();
        let service = tower::service_fn(move |factory: HttpRequestFactory| {
            let http = http.clone();
            async move {
                let request = factory.build().await?;
                http.execute(request)
                    .await
                    .map_err(|e| OpenAIError::Boxed(Box::new(e)))
            }
        });
        let config = OpenAIConfig::new()
            .with_api_base(upstream.url("/v1"))
            .with_api_key("sk-test");
        async_openai::Client::with_config(config).with_http_service(service)
    }

    #[tokio::test]
    async fn a_chat_completion_gives_one_span() {
        let h = harness();
        let upstream = Upstream::start(StreamEnd::Whole).await.unwrap();
        let request: CreateChatCompletionRequest =
            serde_json::from_slice(&plain_request()).unwrap();
        let answer = bounded(client(&h, &upstream).chat().create(request))
            .await
            .unwrap();
        assert_eq!(answer.model, "gpt-4o-mini-2024-07-18");
        assert_plain_chat(&h.only_span());
    }

    #[tokio::test]
    async fn a_streamed_chat_completion_gives_one_span_when_the_stream_ends() {
        let h = harness();
        let upstream = Upstream::start(StreamEnd::Whole).await.unwrap();
        let request: CreateChatCompletionRequest =
            serde_json::from_slice(&stream_request()).unwrap();
        let mut stream = bounded(client(&h, &upstream).chat().create_stream(request))
            .await
            .unwrap();
        let mut text = String::new();
        while let Some(chunk) = bounded(stream.next()).await {
            let chunk = chunk.unwrap();
            for choice in chunk.choices {
                text.push_str(choice.delta.content.as_deref().unwrap_or_default());
            }
        }
        assert_eq!(text, "\"This is a test.\"");
        drop(stream);
        assert_whole_stream(&h.only_span());
    }
}

#[cfg(feature = "tracing")]
mod tracing_parentage {
    use super::*;
    use opentelemetry::trace::TraceContextExt as _;
    use specter::instrument::{HttpRequest, HttpResponse};
    use tracing::Instrument as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    /// A subscriber that maps `tracing` spans to OpenTelemetry spans of the harness's provider,
    /// without making them the current OpenTelemetry context when entered: the parent must come
    /// from the `tracing` span itself, not from `Context::current()`.
    fn subscriber(h: &Harness) -> impl tracing::Subscriber + Send + Sync {
        tracing_subscriber::registry().with(
            tracing_opentelemetry::layer()
                .with_tracer(h.provider.tracer("app"))
                .with_context_activation(false),
        )
    }

    fn otel_id(span: &tracing::Span) -> opentelemetry::trace::SpanId {
        span.context().span().span_context().span_id()
    }

    fn genai_span(h: &Harness) -> SpanData {
        let spans = h.finished();
        let genai: Vec<_> = spans
            .into_iter()
            .filter(|s| s.name.starts_with("chat "))
            .collect();
        assert_eq!(genai.len(), 1, "{genai:#?}");
        genai.into_iter().next().unwrap()
    }

    #[tokio::test]
    async fn the_middleware_parents_its_span_under_the_callers_tracing_span() {
        let h = harness();
        let _default = tracing::subscriber::set_default(subscriber(&h));
        let upstream = Upstream::start(StreamEnd::Whole).await.unwrap();
        let span = tracing::info_span!("handler");
        let parent = otel_id(&span);
        assert_ne!(parent, opentelemetry::trace::SpanId::INVALID);
        let client = h.reqwest();
        let url = upstream.url("/v1/chat/completions");
        async {
            let response = bounded(client.post(&url).body(plain_request()).send())
                .await
                .unwrap();
            bounded(response.bytes()).await.unwrap();
        }
        .instrument(span.clone())
        .await;
        let genai = genai_span(&h);
        assert_eq!(genai.parent_span_id, parent);
        assert_eq!(
            genai.span_context.trace_id(),
            span.context().span().span_context().trace_id()
        );
    }

    #[tokio::test]
    async fn the_layer_parents_its_span_under_the_callers_tracing_span() {
        let h = harness();
        let _default = tracing::subscriber::set_default(subscriber(&h));
        let upstream = Upstream::start(StreamEnd::Whole).await.unwrap();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        let service = h.instrumentor.layer().layer(client);
        let span = tracing::info_span!("handler");
        let parent = otel_id(&span);
        let request = http::Request::post(upstream.url("/v1/chat/completions"))
            .body(Full::from(plain_request()))
            .unwrap();
        async {
            let response = bounded(service.oneshot(request)).await.unwrap();
            bounded(response.into_body().collect()).await.unwrap();
        }
        .instrument(span)
        .await;
        assert_eq!(genai_span(&h).parent_span_id, parent);
    }

    #[test]
    fn instrument_blocking_parents_its_span_under_the_callers_tracing_span() {
        let h = harness();
        let _default = tracing::subscriber::set_default(subscriber(&h));
        let span = tracing::info_span!("handler");
        let parent = otel_id(&span);
        let _entered = span.enter();
        let request = HttpRequest {
            method: "POST".into(),
            url: "https://api.openai.com/v1/chat/completions".into(),
            headers: vec![],
            body: plain_request(),
        };
        h.instrumentor
            .instrument_blocking(request, |_| {
                Ok::<_, std::io::Error>(HttpResponse {
                    status: 200,
                    headers: vec![],
                    body: fixture("chat_plain", "response.json").unwrap(),
                })
            })
            .unwrap();
        assert_eq!(genai_span(&h).parent_span_id, parent);
    }

    #[test]
    fn without_a_tracing_span_the_parent_is_the_current_opentelemetry_context() {
        let h = harness();
        let _default = tracing::subscriber::set_default(subscriber(&h));
        let parent = opentelemetry::trace::Tracer::start(&h.provider.tracer("app"), "parent");
        let cx = opentelemetry::Context::current_with_span(parent);
        let parent_id = cx.span().span_context().span_id();
        let _attached = cx.attach();
        assert_eq!(
            specter::instrument::parent_context()
                .span()
                .span_context()
                .span_id(),
            parent_id
        );
    }
}
