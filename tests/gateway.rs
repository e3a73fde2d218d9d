//! The gateway over real HTTP on loopback: an in-process mock upstream replays recorded fixtures
//! (streams chunk by chunk, gzip, failures on demand), a real HTTP client talks to
//! `specter::unstable::gateway`, and spans are read from the SDK's in-memory exporter.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::in_process;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry::trace::Status;
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use specter::unstable::gateway::{self, GatewayConfig};
use specter::ContentPolicy;
use specter::Dialect;
use tokio::sync::{mpsc, Notify};

type MockBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("tests/fixtures/{path}")).unwrap()
}

/// The mock upstream: answers like OpenAI from the recorded fixtures.
struct Mock {
    /// Released to let a stream continue after its first event.
    gate: Notify,
}

async fn mock_handle(
    mock: Arc<Mock>,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    let path = request.uri().path().to_string();
    let gzip = request.headers().contains_key("x-mock-gzip");
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let full = |status: u16, bytes: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(bytes)).boxed());
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    };
    match path.as_str() {
        "/v1/chat/completions" if json["stream"] == true => {
            let sse = fixture("openai/chat_stream_include_usage/response.sse");
            let text = String::from_utf8(sse).unwrap();
            let events: Vec<String> = text.split_inclusive("\n\n").map(str::to_string).collect();
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
            tokio::spawn(async move {
                for (i, event) in events.into_iter().enumerate() {
                    if i == 1 {
                        mock.gate.notified().await;
                    }
                    if tx.send(Ok(Frame::data(Bytes::from(event)))).await.is_err() {
                        return;
                    }
                }
            });
            let stream = tokio_stream_from(rx);
            let mut r = Response::new(StreamBody::new(stream).boxed());
            r.headers_mut().insert(
                "content-type",
                "text/event-stream; charset=utf-8".parse().unwrap(),
            );
            Ok(r)
        }
        "/v1/chat/completions" if gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder
                .write_all(&fixture("openai/chat_plain/response.json"))
                .unwrap();
            let mut r = full(200, encoder.finish().unwrap());
            r.headers_mut()
                .insert("content-encoding", "gzip".parse().unwrap());
            Ok(r)
        }
        "/v1/chat/completions" => Ok(full(200, fixture("openai/chat_plain/response.json"))),
        "/v1/models" => Ok(full(200, br#"{"object":"list","data":[]}"#.to_vec())),
        _ => Ok(full(404, br#"{"error":{"message":"not found"}}"#.to_vec())),
    }
}

/// A `Stream` over an mpsc receiver (no extra crate needed).
fn tokio_stream_from<T>(mut rx: mpsc::Receiver<T>) -> impl futures_core::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn serve_mock(mock: Arc<Mock>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let mock = mock.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |r| mock_handle(mock.clone(), r));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

struct Setup {
    gateway: SocketAddr,
    in_flight: gateway::InFlight,
    mock: Arc<Mock>,
    spans: InMemorySpanExporter,
    tracer_provider: SdkTracerProvider,
}

impl Setup {
    /// The spans ended so far.
    fn spans_now(&self) -> Vec<SpanData> {
        self.tracer_provider.force_flush().unwrap();
        self.spans.get_finished_spans().unwrap()
    }

    /// The spans, once every request's response and span are finished (spans are finished on
    /// a task of their own after the last byte reaches the client).
    async fn finished(&self) -> Vec<SpanData> {
        assert!(
            self.in_flight.drained(Duration::from_secs(5)).await,
            "requests still in flight"
        );
        self.spans_now()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway)
    }
}

async fn setup_with(upstream: Option<String>) -> Setup {
    let mock = Arc::new(Mock {
        gate: Notify::new(),
    });
    let mock_address = serve_mock(mock.clone()).await;
    let mut config = GatewayConfig::default();
    let upstream = upstream.unwrap_or_else(|| format!("http://{mock_address}"));
    config.upstreams = BTreeMap::from([("openai".to_string(), upstream)]);
    config.max_request_bytes = 64 * 1024;
    let g = in_process::start(config, vec![Dialect::Semconv], ContentPolicy::default()).await;
    let (gateway_address, in_flight, spans, tracer_provider) =
        (g.address, g.in_flight, g.spans, g.tracer_provider);
    Setup {
        gateway: gateway_address,
        in_flight,
        mock,
        spans,
        tracer_provider,
    }
}

async fn setup() -> Setup {
    setup_with(None).await
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn post(url: &str, body: Vec<u8>) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-gateway-test-key-123")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_call_is_forwarded_byte_for_byte_and_gives_one_span() {
    let s = setup().await;
    let request = post(
        &s.url("/openai/v1/chat/completions"),
        fixture("openai/chat_plain/request.json"),
    );
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body.as_ref(),
        fixture("openai/chat_plain/response.json").as_slice()
    );
    let spans = s.finished().await;
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "chat gpt-4o-mini");
    assert_eq!(
        attr(&spans[0], "gen_ai.usage.output_tokens"),
        Some(Value::I64(5))
    );
    assert!(!format!("{:?}", spans[0]).contains("sk-gateway-test-key-123"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_reach_the_client_chunk_by_chunk_and_fold_into_the_span() {
    let s = setup().await;
    let request = post(
        &s.url("/openai/v1/chat/completions"),
        fixture("openai/chat_stream_include_usage/request.json"),
    );
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    // The upstream holds everything after its first event until released: the first event must
    // reach the client before that, so nothing buffers it.
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(first.starts_with(b"data: {\"id\":\"chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl\""));
    assert!(s.spans_now().is_empty(), "the span is still open");
    s.mock.gate.notify_one();
    let mut received = first.to_vec();
    while let Some(frame) = body.frame().await {
        received.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    assert_eq!(
        received,
        fixture("openai/chat_stream_include_usage/response.sse")
    );
    let spans = s.finished().await;
    assert_eq!(spans.len(), 1);
    assert_eq!(
        attr(&spans[0], "gen_ai.usage.input_tokens"),
        Some(Value::I64(12))
    );
    assert_eq!(
        attr(&spans[0], "specter.stream.chunks"),
        Some(Value::I64(8))
    );
    assert!(attr(&spans[0], "gen_ai.response.time_to_first_chunk").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_responses_reach_the_client_compressed_and_the_span_decoded() {
    let s = setup().await;
    let mut request = post(
        &s.url("/openai/v1/chat/completions"),
        fixture("openai/chat_plain/request.json"),
    );
    request
        .headers_mut()
        .insert("x-mock-gzip", "1".parse().unwrap());
    let response = client().request(request).await.unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(body.as_ref()),
        &mut decoded,
    )
    .unwrap();
    assert_eq!(decoded, fixture("openai/chat_plain/response.json"));
    let spans = s.finished().await;
    assert_eq!(spans.len(), 1);
    assert_eq!(
        attr(&spans[0], "gen_ai.response.id"),
        Some(Value::from("chatcmpl-ASYMQRl3A3DXL9FWCK9tnGRcKIO7q"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_an_operation_are_forwarded_without_a_span() {
    let s = setup().await;
    let request = Request::get(s.url("/openai/v1/models"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.as_ref(), br#"{"object":"list","data":[]}"#);
    assert!(s.finished().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_are_clear_json() {
    let s = setup().await;
    let cases = [
        ("/nosuch/v1/chat", 404, "unknown_provider"),
        ("/", 404, "unknown_route"),
    ];
    for (path, status, kind) in cases {
        let response = client()
            .request(
                Request::get(s.url(path))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
        let body: serde_json::Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        assert_eq!(body["error"]["type"], kind, "{path}");
    }
    let big = post(
        &s.url("/openai/v1/chat/completions"),
        vec![b' '; 100 * 1024],
    );
    let response = client().request(big).await.unwrap();
    assert_eq!(response.status(), 413);
    assert!(s.finished().await.is_empty());
    let health = client()
        .request(
            Request::get(s.url("/healthz"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_gives_502_and_an_error_span() {
    // A port nothing listens on: bind, then close.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let s = setup_with(Some(format!("http://{closed}"))).await;
    let request = post(
        &s.url("/openai/v1/chat/completions"),
        fixture("openai/chat_plain/request.json"),
    );
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), 502);
    let body: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["type"], "upstream_unreachable");
    let spans = s.finished().await;
    assert_eq!(spans.len(), 1);
    assert!(matches!(spans[0].status, Status::Error { .. }));
    assert_eq!(
        attr(&spans[0], "error.type"),
        Some(Value::from("upstream_unreachable"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_traceparent_makes_the_span_a_child_of_the_callers_trace() {
    let s = setup().await;
    let mut request = post(
        &s.url("/openai/v1/chat/completions"),
        fixture("openai/chat_plain/request.json"),
    );
    request.headers_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let response = client().request(request).await.unwrap();
    let _ = response.into_body().collect().await.unwrap();
    let spans = s.finished().await;
    assert_eq!(spans.len(), 1);
    assert_eq!(
        spans[0].span_context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(spans[0].parent_span_id.to_string(), "00f067aa0ba902b7");
}
