//! Fault injection around the gateway: a scripted upstream written on raw TCP (so it can stall,
//! reset, truncate and observe its connection closing), clients that leave early, bodies that are
//! not what they claim, and requests the gateway must refuse. Every test checks what the client
//! receives and that exactly one span (or, when no call started, none) ends, with the right status
//! and `error.type`.

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
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::Status;
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use specter::unstable::gateway::GatewayConfig;
use specter::ContentPolicy;
use specter::Dialect;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// How long any single wait in these tests may take before it counts as a hang.
const BOUND: Duration = Duration::from_secs(10);
/// How long the mock keeps a connection it holds open, at most.
const MOCK_HOLD: Duration = Duration::from_secs(30);
/// The request body limit of the gateways under test.
const LIMIT: usize = 64 * 1024;

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("tests/fixtures/{path}")).unwrap()
}

fn chat_request() -> Vec<u8> {
    fixture("openai/chat_plain/request.json")
}

fn chat_response() -> Vec<u8> {
    fixture("openai/chat_plain/response.json")
}

fn stream_request() -> Vec<u8> {
    fixture("openai/chat_stream_include_usage/request.json")
}

/// The SSE events of the recorded OpenAI stream (9 events, the last `[DONE]`).
fn stream_events() -> Vec<Vec<u8>> {
    let text = String::from_utf8(fixture("openai/chat_stream_include_usage/response.sse")).unwrap();
    text.split_inclusive("\n\n")
        .map(|e| e.as_bytes().to_vec())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The scripted upstream.

/// One step of what the mock does on a connection after reading the request.
#[derive(Clone, Debug)]
enum Step {
    /// Write these bytes.
    Write(Vec<u8>),
    /// Wait until the test opens the gate (once per passage).
    Gate,
    /// Sleep.
    Sleep(Duration),
    /// Abort the connection with a TCP reset.
    Reset,
    /// Close the connection normally (FIN), whatever was promised.
    Close,
    /// Send nothing more and wait (bounded) for the gateway to close the connection.
    Hold,
    /// Write these bytes again and again until a write fails or the gateway closes (bounded).
    Trickle(Vec<u8>, Duration),
}

/// A request as the mock received it.
#[derive(Clone, Debug)]
struct Received {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

#[derive(Default)]
struct MockState {
    connections: AtomicUsize,
    requests: Mutex<Vec<Received>>,
    /// What happened to connections: `closed by peer`, `write failed`, `still open`, ...
    events: Mutex<Vec<String>>,
}

impl MockState {
    fn log(&self, event: &str) {
        self.events.lock().unwrap().push(event.to_string());
    }
}

struct Mock {
    address: SocketAddr,
    state: Arc<MockState>,
    gate: Arc<Semaphore>,
}

impl Mock {
    /// An upstream that answers once with the recorded chat response.
    async fn chat() -> Mock {
        Mock::start(vec![Step::Write(full(
            "200 OK",
            "application/json",
            &chat_response(),
        ))])
        .await
    }

    /// Serves `script` on every connection, one request per connection.
    async fn start(script: Vec<Step>) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(MockState::default());
        let gate = Arc::new(Semaphore::new(0));
        let (s, g) = (state.clone(), gate.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                s.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(run_script(stream, script.clone(), s.clone(), g.clone()));
            }
        });
        Mock {
            address,
            state,
            gate,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn open_gate(&self) {
        self.gate.add_permits(1);
    }

    fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<Received> {
        self.state.requests.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<String> {
        self.state.events.lock().unwrap().clone()
    }

    /// Waits (bounded) until the mock saw its connection end from the gateway's side: the
    /// gateway closed it, or a write to it failed. Returns what it saw.
    async fn connection_ended(&self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(e) = self
                .events()
                .into_iter()
                .find(|e| e == "closed by peer" || e == "write failed")
            {
                return Some(e);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one HTTP/1.1 request with a `Content-Length` body (what the gateway sends).
async fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut piece = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut piece).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&piece[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut piece).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&piece[..n]);
    }
    body.truncate(length);
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}

/// Waits until the peer closes the connection (read returns 0 or fails).
async fn until_closed(stream: &mut (impl AsyncReadExt + Unpin)) {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn run_script(
    mut stream: TcpStream,
    script: Vec<Step>,
    state: Arc<MockState>,
    gate: Arc<Semaphore>,
) {
    let Some(request) = read_request(&mut stream).await else {
        state.log("closed before a whole request");
        return;
    };
    state.requests.lock().unwrap().push(request);
    for step in script {
        match step {
            Step::Write(bytes) => {
                if stream.write_all(&bytes).await.is_err() || stream.flush().await.is_err() {
                    state.log("write failed");
                    return;
                }
            }
            Step::Gate => gate.acquire().await.unwrap().forget(),
            Step::Sleep(d) => tokio::time::sleep(d).await,
            Step::Reset => {
                stream.set_zero_linger().unwrap();
                drop(stream);
                state.log("reset");
                return;
            }
            Step::Close => {
                let _ = stream.shutdown().await;
                drop(stream);
                state.log("closed");
                return;
            }
            Step::Hold => {
                match tokio::time::timeout(MOCK_HOLD, until_closed(&mut stream)).await {
                    Ok(()) => state.log("closed by peer"),
                    Err(_) => state.log("still open"),
                }
                return;
            }
            Step::Trickle(bytes, every) => {
                let (mut read, mut write) = stream.split();
                let writes = async {
                    loop {
                        if write.write_all(&bytes).await.is_err() || write.flush().await.is_err() {
                            return "write failed";
                        }
                        tokio::time::sleep(every).await;
                    }
                };
                let closed = async {
                    until_closed(&mut read).await;
                    "closed by peer"
                };
                let event = tokio::time::timeout(MOCK_HOLD, async {
                    tokio::select! {
                        e = writes => e,
                        e = closed => e,
                    }
                })
                .await
                .unwrap_or("still open");
                state.log(event);
                return;
            }
        }
    }
    let _ = stream.shutdown().await;
}

/// A response head.
fn head(status: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut text = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// A response head announcing `length` bytes.
fn head_with_length(status: &str, content_type: &str, length: usize) -> Vec<u8> {
    head(
        status,
        &[
            ("content-type", content_type),
            ("content-length", &length.to_string()),
            ("connection", "close"),
        ],
    )
}

/// A whole response.
fn full(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = head_with_length(status, content_type, body.len());
    bytes.extend_from_slice(body);
    bytes
}

/// The head of a chunked event stream.
fn sse_head() -> Vec<u8> {
    head(
        "200 OK",
        &[
            ("content-type", "text/event-stream; charset=utf-8"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
        ],
    )
}

/// One chunk of a chunked body.
fn chunk(data: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{:x}\r\n", data.len()).into_bytes();
    bytes.extend_from_slice(data);
    bytes.extend_from_slice(b"\r\n");
    bytes
}

/// A complete chunked event stream of these events.
fn sse_stream(events: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = sse_head();
    for e in events {
        bytes.extend(chunk(e));
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    bytes
}

// ---------------------------------------------------------------------------------------------
// The gateway under test.

struct Gateway {
    address: SocketAddr,
    spans: InMemorySpanExporter,
    tracer_provider: SdkTracerProvider,
}

/// A gateway whose `openai` upstream is `upstream`, with `tweak` applied to its configuration.
async fn gateway(upstream: &str, tweak: impl FnOnce(&mut GatewayConfig)) -> Gateway {
    let mut config = GatewayConfig {
        upstreams: BTreeMap::from([("openai".to_string(), upstream.to_string())]),
        max_request_bytes: LIMIT,
        connect_timeout: Duration::from_secs(2),
        ..GatewayConfig::default()
    };
    tweak(&mut config);
    let g = in_process::start(config, vec![Dialect::Semconv], ContentPolicy::default()).await;
    Gateway {
        address: g.address,
        spans: g.spans,
        tracer_provider: g.tracer_provider,
    }
}

impl Gateway {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn spans_now(&self) -> Vec<SpanData> {
        self.tracer_provider.force_flush().unwrap();
        self.spans.get_finished_spans().unwrap()
    }

    /// Waits (bounded) for `expected` spans, then a little longer so that any extra span would
    /// show up too, and returns all of them.
    async fn settled_spans(&self, expected: usize) -> Vec<SpanData> {
        let deadline = Instant::now() + BOUND;
        while self.spans_now().len() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.spans_now()
    }

    /// The one span that ended (fails when there is none or more than one).
    async fn the_span(&self) -> SpanData {
        let spans = self.settled_spans(1).await;
        assert_eq!(spans.len(), 1, "exactly one span must end: {spans:#?}");
        spans.into_iter().next().unwrap()
    }

    async fn no_span(&self) {
        let spans = self.settled_spans(0).await;
        assert!(spans.is_empty(), "no call started, so no span: {spans:#?}");
    }
}

type ClientBody = BoxBody<Bytes, Infallible>;

fn client() -> Client<HttpConnector, ClientBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn body(bytes: Vec<u8>) -> ClientBody {
    Full::new(Bytes::from(bytes)).boxed()
}

fn post(url: &str, bytes: Vec<u8>) -> Request<ClientBody> {
    Request::post(url)
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-faults-test")
        .body(body(bytes))
        .unwrap()
}

async fn send(request: Request<ClientBody>) -> Response<Incoming> {
    tokio::time::timeout(BOUND, client().request(request))
        .await
        .expect("the gateway answers within the bound")
        .expect("the gateway answers")
}

/// Reads frames until at least `n` bytes arrived.
async fn read_at_least(body: &mut Incoming, received: &mut Vec<u8>, n: usize) {
    while received.len() < n {
        let frame = tokio::time::timeout(BOUND, body.frame())
            .await
            .expect("a frame within the bound")
            .expect("the body goes on")
            .expect("no error yet");
        if let Ok(data) = frame.into_data() {
            received.extend_from_slice(&data);
        }
    }
}

/// Reads the rest of a body; returns the error that ended it, if any.
async fn read_rest(body: &mut Incoming, received: &mut Vec<u8>) -> Option<String> {
    loop {
        match tokio::time::timeout(BOUND, body.frame()).await {
            Err(_) => panic!("the body neither ended nor failed within {BOUND:?}"),
            Ok(None) => return None,
            Ok(Some(Err(e))) => return Some(e.to_string()),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    received.extend_from_slice(&data);
                }
            }
        }
    }
}

async fn whole(response: Response<Incoming>) -> Vec<u8> {
    let mut body = response.into_body();
    let mut received = Vec::new();
    let error = read_rest(&mut body, &mut received).await;
    assert!(error.is_none(), "the body ends cleanly: {error:?}");
    received
}

/// Checks a JSON error answered by the gateway itself.
async fn assert_gateway_error(response: Response<Incoming>, status: u16, kind: &str) -> String {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_slice(&whole(response).await).unwrap();
    assert_eq!(json["error"]["type"], kind, "{json}");
    assert_eq!(json["error"]["source"], "specter", "{json}");
    let message = json["error"]["message"].as_str().unwrap().to_string();
    assert!(!message.is_empty());
    message
}

fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn text_attr(span: &SpanData, key: &str) -> String {
    attr(span, key)
        .map(|v| v.to_string())
        .unwrap_or_else(|| panic!("no `{key}` on {span:#?}"))
}

/// The span failed with this `error.type`, as status, attribute and exception event.
fn assert_failed(span: &SpanData, error_type: &str) {
    assert_eq!(
        attr(span, "error.type"),
        Some(Value::from(error_type.to_string())),
        "{span:#?}"
    );
    assert!(
        matches!(span.status, Status::Error { .. }),
        "{:?}",
        span.status
    );
    let exception = span
        .events
        .iter()
        .find(|e| e.name == "exception")
        .unwrap_or_else(|| panic!("no exception event: {span:#?}"));
    assert!(exception
        .attributes
        .iter()
        .any(|kv| kv.key.as_str() == "exception.type" && kv.value.as_str() == error_type));
}

fn assert_ok(span: &SpanData) {
    assert!(attr(span, "error.type").is_none(), "{span:#?}");
    assert!(
        !matches!(span.status, Status::Error { .. }),
        "{:?}",
        span.status
    );
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Upstream faults.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_give_502_and_one_error_span() {
    let closed = closed_port().await;
    let g = gateway(&format!("http://{closed}"), |_| {}).await;
    for request in [chat_request(), stream_request()] {
        let before = g.spans_now().len();
        let response = send(post(&g.url("/openai/v1/chat/completions"), request)).await;
        let message = assert_gateway_error(response, 502, "upstream_unreachable").await;
        assert!(message.contains("openai"), "{message}");
        let spans = g.settled_spans(before + 1).await;
        assert_eq!(spans.len(), before + 1, "{spans:#?}");
        let span = spans.last().unwrap();
        assert_failed(span, "upstream_unreachable");
        // The request phase ran: the span knows what was asked.
        assert!(attr(span, "gen_ai.request.model").is_some(), "{span:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_before_the_response_gives_502_and_one_error_span() {
    for ending in [Step::Reset, Step::Close] {
        let mock = Mock::start(vec![ending.clone()]).await;
        let g = gateway(&mock.url(), |_| {}).await;
        let response = send(post(&g.url("/openai/v1/chat/completions"), chat_request())).await;
        assert_gateway_error(response, 502, "upstream_unreachable").await;
        assert_failed(&g.the_span().await, "upstream_unreachable");
        // A POST is not retried behind the client's back.
        assert_eq!(mock.requests().len(), 1, "{ending:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_body_gives_the_bytes_so_far_then_an_error() {
    let answer = chat_response();
    let half = answer.len() / 2;
    for ending in [Step::Reset, Step::Close] {
        let mut first = head_with_length("200 OK", "application/json", answer.len());
        first.extend_from_slice(&answer[..half]);
        let mock = Mock::start(vec![Step::Write(first), Step::Gate, ending.clone()]).await;
        let g = gateway(&mock.url(), |_| {}).await;
        let response = send(post(&g.url("/openai/v1/chat/completions"), chat_request())).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-length"],
            answer.len().to_string()
        );
        let mut body = response.into_body();
        let mut received = Vec::new();
        read_at_least(&mut body, &mut received, half).await;
        mock.open_gate();
        let error = read_rest(&mut body, &mut received).await;
        assert!(error.is_some(), "{ending:?}: the client must see an error");
        assert_eq!(received, &answer[..half], "{ending:?}");
        let span = g.the_span().await;
        assert_failed(&span, "upstream_error");
        assert!(attr(&span, "gen_ai.request.model").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_stream_gives_the_events_so_far_then_an_error_and_a_partial_span() {
    let events = stream_events();
    let sent: Vec<u8> = events[..3].concat();
    for ending in [Step::Reset, Step::Close] {
        let mut first = sse_head();
        for e in &events[..3] {
            first.extend(chunk(e));
        }
        let mock = Mock::start(vec![Step::Write(first), Step::Gate, ending.clone()]).await;
        let g = gateway(&mock.url(), |_| {}).await;
        let response = send(post(
            &g.url("/openai/v1/chat/completions"),
            stream_request(),
        ))
        .await;
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut received = Vec::new();
        read_at_least(&mut body, &mut received, sent.len()).await;
        assert!(
            g.spans_now().is_empty(),
            "the span is open while the stream is"
        );
        mock.open_gate();
        let error = read_rest(&mut body, &mut received).await;
        assert!(error.is_some(), "{ending:?}: the client must see an error");
        assert_eq!(received, sent, "{ending:?}");
        let span = g.the_span().await;
        assert_failed(&span, "upstream_error");
        // What arrived is on the span: the response id, the model and the partial text.
        assert_eq!(
            text_attr(&span, "gen_ai.response.id"),
            "chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl"
        );
        assert_eq!(text_attr(&span, "gen_ai.response.model"), "gpt-4-0613");
        assert_eq!(attr(&span, "specter.stream.chunks"), Some(Value::I64(3)));
        let output = text_attr(&span, "gen_ai.output.messages");
        assert!(output.contains("This is"), "{output}");
        assert!(!output.contains(" a test"), "{output}");
        assert!(attr(&span, "gen_ai.usage.output_tokens").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_before_the_response_gives_504_and_closes_the_upstream_connection() {
    let mock = Mock::start(vec![Step::Hold]).await;
    let g = gateway(&mock.url(), |c| {
        c.response_timeout = Duration::from_millis(400);
    })
    .await;
    for request in [chat_request(), stream_request()] {
        let before = g.spans_now().len();
        let started = Instant::now();
        let response = send(post(&g.url("/openai/v1/chat/completions"), request)).await;
        let waited = started.elapsed();
        let message = assert_gateway_error(response, 504, "upstream_timeout").await;
        assert!(message.contains("openai"), "{message}");
        assert!(waited >= Duration::from_millis(400), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        let spans = g.settled_spans(before + 1).await;
        assert_eq!(spans.len(), before + 1, "{spans:#?}");
        assert_failed(spans.last().unwrap(), "timeout");
    }
    // The gateway gave up on the upstream: it does not keep the stalled connections open.
    let deadline = Instant::now() + BOUND;
    while mock
        .events()
        .iter()
        .filter(|e| *e == "closed by peer")
        .count()
        < 2
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        mock.events(),
        ["closed by peer", "closed by peer"],
        "the stalled upstream connections must be closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_mid_stream_ends_at_the_idle_timeout_with_a_partial_span() {
    let events = stream_events();
    let sent: Vec<u8> = events[..3].concat();
    let mut first = sse_head();
    for e in &events[..3] {
        first.extend(chunk(e));
    }
    let mock = Mock::start(vec![Step::Write(first), Step::Hold]).await;
    let g = gateway(&mock.url(), |c| {
        c.idle_timeout = Duration::from_millis(400);
    })
    .await;
    let response = send(post(
        &g.url("/openai/v1/chat/completions"),
        stream_request(),
    ))
    .await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = Vec::new();
    read_at_least(&mut body, &mut received, sent.len()).await;
    let stalled = Instant::now();
    let error = read_rest(&mut body, &mut received).await;
    let waited = stalled.elapsed();
    assert!(error.is_some(), "the client must see an error");
    assert_eq!(received, sent);
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    let span = g.the_span().await;
    assert_failed(&span, "timeout");
    assert_eq!(span.status, Status::error("no data for 400 ms"));
    assert_eq!(attr(&span, "specter.stream.chunks"), Some(Value::I64(3)));
    assert!(text_attr(&span, "gen_ai.output.messages").contains("This is"));
    assert_eq!(
        mock.connection_ended(BOUND).await.as_deref(),
        Some("closed by peer"),
        "the stalled upstream connection must be closed: {:?}",
        mock.events()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_mid_body_ends_at_the_idle_timeout() {
    let answer = chat_response();
    let half = answer.len() / 2;
    let mut first = head_with_length("200 OK", "application/json", answer.len());
    first.extend_from_slice(&answer[..half]);
    let mock = Mock::start(vec![Step::Write(first), Step::Hold]).await;
    let g = gateway(&mock.url(), |c| {
        c.idle_timeout = Duration::from_millis(400);
    })
    .await;
    let response = send(post(&g.url("/openai/v1/chat/completions"), chat_request())).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = Vec::new();
    let error = read_rest(&mut body, &mut received).await;
    assert!(error.is_some(), "the client must see an error");
    assert_eq!(received, &answer[..half]);
    assert_failed(&g.the_span().await, "timeout");
    assert_eq!(
        mock.connection_ended(BOUND).await.as_deref(),
        Some("closed by peer")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_stream_is_not_cut_by_the_idle_timeout() {
    let events = stream_events();
    let mut script = vec![Step::Write(sse_head())];
    for e in &events {
        script.push(Step::Sleep(Duration::from_millis(150)));
        script.push(Step::Write(chunk(e)));
    }
    script.push(Step::Write(b"0\r\n\r\n".to_vec()));
    let mock = Mock::start(script).await;
    let g = gateway(&mock.url(), |c| {
        c.idle_timeout = Duration::from_millis(500);
    })
    .await;
    let started = Instant::now();
    let response = send(post(
        &g.url("/openai/v1/chat/completions"),
        stream_request(),
    ))
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        whole(response).await,
        fixture("openai/chat_stream_include_usage/response.sse")
    );
    // Longer in total than the idle timeout, never silent for that long.
    assert!(started.elapsed() > Duration::from_millis(1000));
    let span = g.the_span().await;
    assert_ok(&span);
    assert_eq!(attr(&span, "specter.stream.chunks"), Some(Value::I64(8)));
    assert_eq!(
        attr(&span, "gen_ai.usage.output_tokens"),
        Some(Value::I64(5))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_5xx_errors_are_forwarded_as_is_and_typed_on_the_span() {
    let openai_error = br#"{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}"#;
    let coded_error =
        br#"{"error":{"message":"Engine overloaded","type":"server_error","code":"engine_overloaded"}}"#;
    // (status line, content type, body, request, error.type, span status message)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [u8],
        Vec<u8>,
        &'a str,
        Option<&'a str>,
    );
    let cases: [Case<'_>; 5] = [
        (
            "500 Internal Server Error",
            "application/json",
            openai_error,
            chat_request(),
            "server_error",
            Some("The server had an error while processing your request."),
        ),
        (
            "503 Service Unavailable",
            "application/json",
            coded_error,
            chat_request(),
            "engine_overloaded",
            Some("Engine overloaded"),
        ),
        // A stream request answered with an error is not a stream.
        (
            "500 Internal Server Error",
            "application/json",
            openai_error,
            stream_request(),
            "server_error",
            Some("The server had an error while processing your request."),
        ),
        // JSON without the provider's error shape: the status is the type.
        (
            "503 Service Unavailable",
            "application/json",
            br#"{"detail":"upstream connect error"}"#,
            chat_request(),
            "503",
            None,
        ),
        // Not JSON at all (a load balancer's page).
        (
            "502 Bad Gateway",
            "text/html",
            b"<html><body>502 Bad Gateway</body></html>",
            stream_request(),
            "502",
            None,
        ),
    ];
    for (status, content_type, answer, request, error_type, message) in cases {
        let mock = Mock::start(vec![Step::Write(full(status, content_type, answer))]).await;
        let g = gateway(&mock.url(), |_| {}).await;
        let response = send(post(&g.url("/openai/v1/chat/completions"), request)).await;
        assert_eq!(
            response.status().as_u16().to_string(),
            status[..3],
            "{status}"
        );
        assert_eq!(response.headers()["content-type"], content_type);
        assert_eq!(whole(response).await, answer, "{status}: forwarded as is");
        let span = g.the_span().await;
        assert_failed(&span, error_type);
        if let (Some(message), Status::Error { description }) = (message, &span.status) {
            assert_eq!(description, message);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_response_bodies_are_forwarded_as_is_and_the_span_still_ends() {
    let answer = chat_response();
    let truncated = answer[..answer.len() / 2].to_vec();
    let cases: [(&str, Vec<u8>); 3] = [
        ("application/json", truncated),
        ("application/json", b"this is not JSON".to_vec()),
        (
            "application/json",
            b"{\"id\": \"chatcmpl-x\", \"choices\": [}".to_vec(),
        ),
    ];
    for (content_type, answer) in cases {
        let mock = Mock::start(vec![Step::Write(full("200 OK", content_type, &answer))]).await;
        let g = gateway(&mock.url(), |_| {}).await;
        let response = send(post(&g.url("/openai/v1/chat/completions"), chat_request())).await;
        assert_eq!(response.status(), 200);
        assert_eq!(whole(response).await, answer);
        let span = g.the_span().await;
        assert_ok(&span);
        // Nothing of the response could be read.
        for key in [
            "gen_ai.response.id",
            "gen_ai.response.model",
            "gen_ai.usage.input_tokens",
            "gen_ai.output.messages",
        ] {
            assert!(attr(&span, key).is_none(), "{key} on {span:#?}");
        }
        assert!(attr(&span, "gen_ai.request.model").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_stream_events_are_forwarded_as_is_and_skipped() {
    let mut events = stream_events();
    events.insert(2, b"data: {\"id\": broken\n\n".to_vec());
    let mock = Mock::start(vec![Step::Write(sse_stream(&events))]).await;
    let g = gateway(&mock.url(), |_| {}).await;
    let response = send(post(
        &g.url("/openai/v1/chat/completions"),
        stream_request(),
    ))
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(whole(response).await, events.concat());
    let span = g.the_span().await;
    assert_ok(&span);
    assert_eq!(attr(&span, "specter.stream.chunks"), Some(Value::I64(8)));
    assert_eq!(
        attr(&span, "gen_ai.usage.output_tokens"),
        Some(Value::I64(5))
    );
}

/// Where a body problem (response body not JSON, stream frame skipped) shows up in telemetry.
fn problem_markers(span: &SpanData) -> Vec<String> {
    let mut found: Vec<String> = span
        .attributes
        .iter()
        .filter(|kv| kv.key.as_str().contains("problem") || kv.key.as_str().contains("skipped"))
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    found.extend(
        span.events
            .iter()
            .filter(|e| e.name.contains("problem"))
            .map(|e| e.name.to_string()),
    );
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_problems_are_counted_on_the_span() {
    // A response body that is not JSON.
    let answer = b"{\"id\": \"chatcmpl-x\", \"choices\": [}".to_vec();
    let mock = Mock::start(vec![Step::Write(full(
        "200 OK",
        "application/json",
        &answer,
    ))])
    .await;
    let g = gateway(&mock.url(), |_| {}).await;
    let response = send(post(&g.url("/openai/v1/chat/completions"), chat_request())).await;
    assert_eq!(whole(response).await, answer);
    let span = g.the_span().await;
    assert!(
        !problem_markers(&span).is_empty(),
        "a response body that is not JSON must be counted: {span:#?}"
    );
    // A stream frame that is not JSON.
    let mut events = stream_events();
    events.insert(2, b"data: {\"id\": broken\n\n".to_vec());
    let mock = Mock::start(vec![Step::Write(sse_stream(&events))]).await;
    let g = gateway(&mock.url(), |_| {}).await;
    let response = send(post(
        &g.url("/openai/v1/chat/completions"),
        stream_request(),
    ))
    .await;
    assert_eq!(whole(response).await, events.concat());
    let span = g.the_span().await;
    assert!(
        !problem_markers(&span).is_empty(),
        "a skipped stream frame must be counted: {span:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Client faults.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_is_not_json_is_forwarded_and_the_span_ends() {
    let request = b"model=gpt-4o-mini&prompt=hello {".to_vec();
    let mock = Mock::chat().await;
    let g = gateway(&mock.url(), |_| {}).await;
    let response = send(post(&g.url("/openai/v1/chat/completions"), request.clone())).await;
    assert_eq!(response.status(), 200);
    assert_eq!(whole(response).await, chat_response());
    let received = mock.requests();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].path, "/v1/chat/completions");
    assert_eq!(received[0].body, request, "forwarded as received");
    assert!(received[0].headers.contains(&(
        "authorization".to_string(),
        "Bearer sk-faults-test".to_string()
    )));
    let span = g.the_span().await;
    assert_ok(&span);
    let request_attributes: Vec<_> = span
        .attributes
        .iter()
        .filter(|kv| {
            kv.key.as_str().starts_with("gen_ai.request.")
                || kv.key.as_str() == "gen_ai.input.messages"
        })
        .collect();
    assert!(request_attributes.is_empty(), "{request_attributes:?}");
    assert_eq!(text_attr(&span, "gen_ai.operation.name"), "chat");
    // The response was still read.
    assert_eq!(
        text_attr(&span, "gen_ai.response.id"),
        "chatcmpl-ASYMQRl3A3DXL9FWCK9tnGRcKIO7q"
    );
}

/// Sends a request on a raw connection to the gateway and returns the connection.
async fn raw_request(gateway: SocketAddr, request: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(gateway).await.unwrap();
    stream.write_all(request).await.unwrap();
    stream
}

fn raw_post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "POST {path} HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Reads from a raw connection until `needle` arrived.
async fn read_raw_until(stream: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut received = Vec::new();
    let mut piece = [0u8; 4096];
    tokio::time::timeout(BOUND, async {
        while find(&received, needle).is_none() {
            let n = stream.read(&mut piece).await.unwrap();
            assert!(
                n > 0,
                "closed early: {}",
                String::from_utf8_lossy(&received)
            );
            received.extend_from_slice(&piece[..n]);
        }
    })
    .await
    .expect("the bytes arrive within the bound");
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_stream_abandons_the_span_and_closes_the_upstream() {
    let events = stream_events();
    let mut first = sse_head();
    first.extend(chunk(&events[0]));
    let mock = Mock::start(vec![
        Step::Write(first),
        Step::Gate,
        Step::Trickle(chunk(&events[1]), Duration::from_millis(20)),
    ])
    .await;
    let g = gateway(&mock.url(), |_| {}).await;
    let mut client = raw_request(
        g.address,
        &raw_post("/openai/v1/chat/completions", &stream_request()),
    )
    .await;
    let received = read_raw_until(&mut client, b"chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl").await;
    assert!(received.starts_with(b"HTTP/1.1 200 OK\r\n"));
    drop(client);
    mock.open_gate();
    let span = g.the_span().await;
    assert_failed(&span, "_OTHER");
    assert_eq!(
        attr(&span, "specter.stream.abandoned"),
        Some(Value::Bool(true))
    );
    assert_eq!(
        text_attr(&span, "gen_ai.response.id"),
        "chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl"
    );
    let ended = mock.connection_ended(BOUND).await;
    assert!(
        ended.is_some(),
        "the upstream connection must be closed: {:?}",
        mock.events()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_a_silent_stream_abandons_the_span_and_closes_the_upstream() {
    // The upstream sends one event and then nothing (the default idle timeout is 5 minutes): the
    // gateway must still notice the client leaving.
    let events = stream_events();
    let mut first = sse_head();
    first.extend(chunk(&events[0]));
    let mock = Mock::start(vec![Step::Write(first), Step::Hold]).await;
    let g = gateway(&mock.url(), |_| {}).await;
    let mut client = raw_request(
        g.address,
        &raw_post("/openai/v1/chat/completions", &stream_request()),
    )
    .await;
    read_raw_until(&mut client, b"chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl").await;
    drop(client);
    let span = g.the_span().await;
    assert_failed(&span, "_OTHER");
    assert_eq!(
        attr(&span, "specter.stream.abandoned"),
        Some(Value::Bool(true))
    );
    assert_eq!(
        mock.connection_ended(BOUND).await.as_deref(),
        Some("closed by peer"),
        "{:?}",
        mock.events()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_before_the_response_ends_the_span_and_the_upstream_call() {
    // The upstream never answers (the default response timeout is 10 minutes).
    let mock = Mock::start(vec![Step::Hold]).await;
    let g = gateway(&mock.url(), |_| {}).await;
    let client = raw_request(
        g.address,
        &raw_post("/openai/v1/chat/completions", &chat_request()),
    )
    .await;
    let deadline = Instant::now() + BOUND;
    while mock.requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the request reaches the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(client);
    let span = g.the_span().await;
    assert_failed(&span, "_OTHER");
    assert_eq!(
        mock.connection_ended(BOUND).await.as_deref(),
        Some("closed by peer"),
        "{:?}",
        mock.events()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_body_ends_the_span_once_and_closes_the_upstream() {
    let answer = chat_response();
    let half = answer.len() / 2;
    let mut first = head_with_length("200 OK", "application/json", answer.len());
    first.extend_from_slice(&answer[..half]);
    let mock = Mock::start(vec![Step::Write(first), Step::Hold]).await;
    let g = gateway(&mock.url(), |_| {}).await;
    let mut client = raw_request(
        g.address,
        &raw_post("/openai/v1/chat/completions", &chat_request()),
    )
    .await;
    read_raw_until(&mut client, &answer[..half]).await;
    drop(client);
    let span = g.the_span().await;
    assert_failed(&span, "_OTHER");
    assert_eq!(
        mock.connection_ended(BOUND).await.as_deref(),
        Some("closed by peer"),
        "{:?}",
        mock.events()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_request_reaches_no_upstream() {
    let mock = Mock::chat().await;
    let g = gateway(&mock.url(), |_| {}).await;
    let body = chat_request();
    let partial = format!(
        "POST /openai/v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    // Gone entirely after part of the body.
    let mut client = raw_request(g.address, partial.as_bytes()).await;
    client.write_all(&body[..body.len() / 2]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(client);
    // Half-closed after part of the body: whatever comes back is a JSON error or nothing.
    let mut client = raw_request(g.address, partial.as_bytes()).await;
    client.write_all(&body[..body.len() / 2]).await.unwrap();
    client.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(BOUND, client.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the gateway must not keep a half-closed request open"
    );
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(
        answer.is_empty()
            || (answer.starts_with("HTTP/1.1 400") && answer.contains("\"source\":\"specter\"")),
        "{answer}"
    );
    g.no_span().await;
    assert_eq!(
        mock.connections(),
        0,
        "no upstream call for an incomplete request"
    );
    // The gateway is unharmed.
    let response = send(post(&g.url("/openai/v1/chat/completions"), chat_request())).await;
    assert_eq!(whole(response).await, chat_response());
    assert_eq!(mock.requests().len(), 1);
    assert_ok(&g.the_span().await);
}

// ---------------------------------------------------------------------------------------------
// Requests the gateway refuses.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_bodies_get_413_without_an_upstream_call() {
    let mock = Mock::chat().await;
    let g = gateway(&mock.url(), |_| {}).await;
    // With a content length.
    let response = send(post(
        &g.url("/openai/v1/chat/completions"),
        vec![b' '; LIMIT + 1],
    ))
    .await;
    let message = assert_gateway_error(response, 413, "request_too_large").await;
    assert!(message.contains(&LIMIT.to_string()), "{message}");
    // Chunked, with no length announced.
    // (The body ends with the frame that crosses the limit: see
    // `large_oversized_bodies_still_get_their_413` for bodies that go on.)
    let response = send(chunked_post(
        &g.url("/openai/v1/chat/completions"),
        LIMIT + 8192,
    ))
    .await;
    assert_gateway_error(response, 413, "request_too_large").await;
    g.no_span().await;
    assert_eq!(mock.connections(), 0, "no upstream call for a refused body");
    // Exactly at the limit is fine.
    let mut at_limit = chat_request();
    at_limit.resize(LIMIT, b' ');
    let response = send(post(
        &g.url("/openai/v1/chat/completions"),
        at_limit.clone(),
    ))
    .await;
    assert_eq!(whole(response).await, chat_response());
    assert_eq!(mock.requests().len(), 1);
    assert_eq!(mock.requests()[0].body, at_limit);
    assert_ok(&g.the_span().await);
}

/// A chunked POST of `size` spaces in 8 KiB frames, with no content length.
fn chunked_post(url: &str, size: usize) -> Request<ClientBody> {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = (0..size.div_ceil(8192))
        .map(|i| {
            let n = 8192.min(size - i * 8192);
            Ok(Frame::data(Bytes::from(vec![b' '; n])))
        })
        .collect();
    Request::post(url)
        .header("content-type", "application/json")
        .body(StreamBody::new(futures::stream::iter(frames)).boxed())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_oversized_bodies_still_get_their_413() {
    let mock = Mock::chat().await;
    let g = gateway(&mock.url(), |_| {}).await;
    let url = g.url("/openai/v1/chat/completions");
    let mut failures = Vec::new();
    for attempt in 0..3 {
        for chunked in [false, true] {
            let request = if chunked {
                chunked_post(&url, 128 * LIMIT)
            } else {
                post(&url, vec![b' '; 128 * LIMIT])
            };
            match tokio::time::timeout(BOUND, client().request(request)).await {
                Ok(Ok(response)) => {
                    assert_gateway_error(response, 413, "request_too_large").await;
                }
                Ok(Err(e)) => failures.push(format!("attempt {attempt}, chunked {chunked}: {e:?}")),
                Err(_) => failures.push(format!("attempt {attempt}, chunked {chunked}: hung")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "a body 128 times the limit must get the 413 JSON error, not a broken connection:\n{}",
        failures.join("\n")
    );
    g.no_span().await;
    assert_eq!(mock.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_over_the_limit_is_refused_before_the_body_arrives() {
    let mock = Mock::chat().await;
    let g = gateway(&mock.url(), |_| {}).await;
    let mut client = raw_request(
        g.address,
        b"POST /openai/v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\ncontent-length: 1000000000\r\n\r\n{",
    )
    .await;
    let answer = read_raw_until(&mut client, b"request_too_large").await;
    assert!(answer.starts_with(b"HTTP/1.1 413"));
    g.no_span().await;
    assert_eq!(mock.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_providers_get_404_json_without_an_upstream_call() {
    let mock = Mock::chat().await;
    let g = gateway(&mock.url(), |_| {}).await;
    let cases = [
        ("GET", "/", "unknown_route"),
        ("GET", "/v1/chat/completions", "unknown_provider"),
        ("POST", "/nosuch/v1/chat/completions", "unknown_provider"),
        ("GET", "/nosuch", "unknown_provider"),
        ("GET", "/OpenAI/v1/models", "unknown_route"),
        ("POST", "/open-ai/v1/chat/completions", "unknown_route"),
        ("POST", "/%6Fpenai/v1/chat/completions", "unknown_route"),
        ("GET", "/openai.example/v1/models", "unknown_route"),
    ];
    for (method, path, kind) in cases {
        let request = Request::builder()
            .method(method)
            .uri(g.url(path))
            .header("content-type", "application/json")
            .body(body(if method == "POST" {
                chat_request()
            } else {
                Vec::new()
            }))
            .unwrap();
        let response = send(request).await;
        assert_gateway_error(response, 404, kind).await;
    }
    g.no_span().await;
    assert_eq!(
        mock.connections(),
        0,
        "no upstream call for an unknown route"
    );
}

// ---------------------------------------------------------------------------------------------
// More upstream oddities.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_event_mid_stream_fails_the_span_and_reaches_the_client() {
    let mut events = stream_events()[..2].to_vec();
    events.push(
        b"data: {\"error\":{\"message\":\"The server is overloaded\",\"type\":\"server_error\",\"code\":\"overloaded\"}}\n\n"
            .to_vec(),
    );
    let mock = Mock::start(vec![Step::Write(sse_stream(&events))]).await;
    let g = gateway(&mock.url(), |_| {}).await;
    let response = send(post(
        &g.url("/openai/v1/chat/completions"),
        stream_request(),
    ))
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(whole(response).await, events.concat());
    let span = g.the_span().await;
    assert_failed(&span, "overloaded");
    assert_eq!(
        span.status,
        Status::error("The server is overloaded"),
        "{span:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_does_not_speak_http_gives_502() {
    let mock = Mock::start(vec![
        Step::Write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec()),
        Step::Close,
    ])
    .await;
    let g = gateway(&mock.url(), |_| {}).await;
    let response = send(post(&g.url("/openai/v1/chat/completions"), chat_request())).await;
    assert_gateway_error(response, 502, "upstream_unreachable").await;
    assert_failed(&g.the_span().await, "upstream_unreachable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_response_bodies_end_the_span_with_their_status() {
    // (status line, content type, request, expected error.type)
    let cases = [
        ("200 OK", "application/json", chat_request(), None),
        (
            "503 Service Unavailable",
            "application/json",
            chat_request(),
            Some("503"),
        ),
        (
            "429 Too Many Requests",
            "text/plain",
            chat_request(),
            Some("429"),
        ),
        // An empty event stream: a stream of no chunks, not an abandoned one.
        ("200 OK", "text/event-stream", stream_request(), None),
    ];
    for (status, content_type, request, error_type) in cases {
        let mock = Mock::start(vec![Step::Write(full(status, content_type, b""))]).await;
        let g = gateway(&mock.url(), |_| {}).await;
        let response = send(post(&g.url("/openai/v1/chat/completions"), request)).await;
        assert_eq!(response.status().as_u16().to_string(), status[..3]);
        assert!(whole(response).await.is_empty());
        let span = g.the_span().await;
        assert!(
            attr(&span, "specter.stream.abandoned").is_none(),
            "{status} {content_type}: {span:#?}"
        );
        match error_type {
            None => assert_ok(&span),
            Some(error_type) => assert_failed(&span, error_type),
        }
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_lie_about_their_encoding_are_forwarded_as_is() {
    // Not gzip at all, though it says so.
    let answer = chat_response();
    let mut bytes = head(
        "200 OK",
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
            ("content-length", &answer.len().to_string()),
            ("connection", "close"),
        ],
    );
    bytes.extend_from_slice(&answer);
    let mock = Mock::start(vec![Step::Write(bytes)]).await;
    let g = gateway(&mock.url(), |_| {}).await;
    let response = send(post(&g.url("/openai/v1/chat/completions"), chat_request())).await;
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(whole(response).await, answer);
    // The tee falls back to the raw bytes, which happen to be JSON.
    let span = g.the_span().await;
    assert_ok(&span);
    assert_eq!(
        text_attr(&span, "gen_ai.response.id"),
        "chatcmpl-ASYMQRl3A3DXL9FWCK9tnGRcKIO7q"
    );

    // A gzip stream corrupted half way.
    let mut corrupt = gzip(&answer);
    let middle = corrupt.len() / 2;
    for b in &mut corrupt[middle..] {
        *b ^= 0x5a;
    }
    let mut bytes = head(
        "200 OK",
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
            ("content-length", &corrupt.len().to_string()),
            ("connection", "close"),
        ],
    );
    bytes.extend_from_slice(&corrupt);
    let mock = Mock::start(vec![Step::Write(bytes)]).await;
    let g = gateway(&mock.url(), |_| {}).await;
    let response = send(post(&g.url("/openai/v1/chat/completions"), chat_request())).await;
    assert_eq!(whole(response).await, corrupt);
    let span = g.the_span().await;
    assert_ok(&span);
    assert!(attr(&span, "gen_ai.response.id").is_none(), "{span:#?}");

    // An event stream that says gzip and is plain.
    let events = stream_events();
    let mut bytes = head(
        "200 OK",
        &[
            ("content-type", "text/event-stream"),
            ("content-encoding", "gzip"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
        ],
    );
    for e in &events {
        bytes.extend(chunk(e));
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    let mock = Mock::start(vec![Step::Write(bytes)]).await;
    let g = gateway(&mock.url(), |_| {}).await;
    let response = send(post(
        &g.url("/openai/v1/chat/completions"),
        stream_request(),
    ))
    .await;
    assert_eq!(whole(response).await, events.concat());
    let span = g.the_span().await;
    assert_ok(&span);
    assert_eq!(attr(&span, "specter.stream.chunks"), Some(Value::I64(8)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_over_the_kept_bytes_cap_still_reaches_the_client_whole() {
    let answer = chat_response();
    let mock = Mock::start(vec![Step::Write(full(
        "200 OK",
        "application/json",
        &answer,
    ))])
    .await;
    let g = gateway(&mock.url(), |c| c.max_response_bytes = 100).await;
    let response = send(post(&g.url("/openai/v1/chat/completions"), chat_request())).await;
    assert_eq!(whole(response).await, answer);
    // Only the first 100 bytes were kept: not JSON, so no response attributes, but one span.
    let span = g.the_span().await;
    assert_ok(&span);
    assert!(attr(&span, "gen_ai.usage.output_tokens").is_none());
}

/// Peak resident memory of this process since the last reset, in KiB (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// How much the peak resident memory grows while the gateway relays `answer` (sent with these
/// extra headers) under a 1 MiB cap on kept bytes; `None` without Linux memory accounting.
async fn peak_growth_mib(answer: &[u8], headers: &[(&str, &str)]) -> Option<u64> {
    let length = answer.len().to_string();
    let mut all = vec![
        ("content-type", "application/json"),
        ("content-length", length.as_str()),
        ("connection", "close"),
    ];
    all.extend_from_slice(headers);
    let mut bytes = head("200 OK", &all);
    bytes.extend_from_slice(answer);
    let mock = Mock::start(vec![Step::Write(bytes)]).await;
    let g = gateway(&mock.url(), |c| c.max_response_bytes = 1 << 20).await;
    // Reset the peak (Linux: writing 5 to clear_refs resets VmHWM).
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    let before = rss_kib()?;
    let response = send(post(&g.url("/openai/v1/chat/completions"), chat_request())).await;
    assert_eq!(whole(response).await.len(), answer.len());
    assert_ok(&g.the_span().await);
    Some(peak_rss_kib()?.saturating_sub(before) / 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compression_bomb_does_not_cost_more_memory_than_the_caps() {
    // 512 gzip members of 1 MiB of zeros: 512 MiB decoded from about half a MiB.
    let bomb = gzip(&vec![0u8; 1 << 20]).repeat(512);
    // The same bytes relayed without an encoding: the baseline.
    let Some(plain) = peak_growth_mib(&bomb, &[]).await else {
        eprintln!("no /proc/self memory accounting here; skipped");
        return;
    };
    let decoded = peak_growth_mib(&bomb, &[("content-encoding", "gzip")])
        .await
        .unwrap();
    eprintln!("peak memory grew by {plain} MiB relaying, {decoded} MiB decoding");
    assert!(plain < 64, "baseline {plain} MiB");
    assert!(
        decoded < 96,
        "a 1 MiB cap on kept bytes, yet decoding a bomb grew the peak by {decoded} MiB"
    );
}

// ---------------------------------------------------------------------------------------------
// Framing.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_content_length_beside_chunked_framing_never_truncates_the_body() {
    // RFC 9112 section 6.3: with both, the transfer coding frames the body. The stale length
    // must not reach the client, or it would cut the answer short.
    let answer = chat_response();
    let mut bytes = head(
        "200 OK",
        &[
            ("content-type", "application/json"),
            ("content-length", "10"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
        ],
    );
    let (first, rest) = answer.split_at(answer.len() / 2);
    bytes.extend(chunk(first));
    bytes.extend(chunk(rest));
    bytes.extend_from_slice(b"0\r\n\r\n");
    let mock = Mock::start(vec![Step::Write(bytes)]).await;
    let g = gateway(&mock.url(), |_| {}).await;
    let response = send(post(&g.url("/openai/v1/chat/completions"), chat_request())).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("content-length").is_none(),
        "{:?}",
        response.headers()
    );
    assert_eq!(whole(response).await, answer);
    assert_ok(&g.the_span().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_and_connect_are_answered_405_and_never_forwarded() {
    let mock = Mock::chat().await;
    let g = gateway(&mock.url(), |_| {}).await;
    for method in ["TRACE", "CONNECT"] {
        let target = if method == "CONNECT" {
            g.address.to_string()
        } else {
            g.url("/openai/v1/chat/completions")
        };
        let mut stream = TcpStream::connect(g.address).await.unwrap();
        let head = format!(
            "{method} {target} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer sk-trace-test\r\nconnection: close\r\n\r\n",
            g.address
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(BOUND, stream.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 405"), "{method}: {answer}");
        assert!(answer.contains("method_not_allowed"), "{method}: {answer}");
        assert!(!answer.contains("sk-trace-test"), "{method}: {answer}");
    }
    assert_eq!(mock.connections(), 0, "nothing reaches the upstream");
    g.no_span().await;
}
