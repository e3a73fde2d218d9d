//! The gateway's security promises (SECURITY.md), attacked from the outside:
//!
//! - it reaches only the configured upstream, whatever the request path, request target form,
//!   `Host` header or HTTP/2 authority says: a second server ("evil") whose address is written into
//!   requests must never see a connection;
//! - API keys sent in headers and query parameters reach the upstream but never an exported span,
//!   event, metric, console line or traces file, in process and through the real binary.

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
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry::trace::Status;
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use specter::unstable::gateway::GatewayConfig;
use specter::Dialect;
use specter::{Capture, ContentPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BOUND: Duration = Duration::from_secs(10);

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("tests/fixtures/{path}")).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The real upstream: answers like OpenAI, Anthropic and Gemini and records what it receives.

#[derive(Clone, Debug)]
struct Received {
    method: String,
    /// Path and query as received.
    target: String,
    headers: Vec<(String, String)>,
}

#[derive(Default)]
struct Upstream {
    received: Mutex<Vec<Received>>,
}

type MockBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn upstream_handle(
    upstream: Arc<Upstream>,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    let path = request.uri().path().to_string();
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let headers = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let forced = request
        .headers()
        .get("x-mock-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u16>().ok());
    // `x-mock-redirect: URL` asks for a redirect there.
    let redirect = request
        .headers()
        .get("x-mock-redirect")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    upstream.received.lock().unwrap().push(Received {
        method: request.method().to_string(),
        target,
        headers,
    });
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let stream = json["stream"] == true;
    let answer = |status: u16, content_type: &str, bytes: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(bytes)).boxed());
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        r.headers_mut()
            .insert("content-type", content_type.parse().unwrap());
        r.headers_mut()
            .insert("x-upstream", "real".parse().unwrap());
        r
    };
    if let Some(to) = redirect {
        let mut r = answer(307, "text/plain", Vec::new());
        r.headers_mut().insert("location", to.parse().unwrap());
        return Ok(r);
    }
    if let Some(status) = forced {
        return Ok(answer(
            status,
            "application/json",
            br#"{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","code":"invalid_api_key"}}"#.to_vec(),
        ));
    }
    let sse = "text/event-stream";
    let json_type = "application/json";
    Ok(match path.as_str() {
        "/v1/chat/completions" if stream => answer(
            200,
            sse,
            fixture("openai/chat_stream_include_usage/response.sse"),
        ),
        "/v1/chat/completions" => {
            answer(200, json_type, fixture("openai/chat_plain/response.json"))
        }
        "/v1/messages" if stream => {
            answer(200, sse, fixture("anthropic/messages_stream/response.sse"))
        }
        "/v1/messages" => answer(
            200,
            json_type,
            fixture("anthropic/messages_plain/response.json"),
        ),
        p if p.ends_with(":streamGenerateContent") => answer(
            200,
            sse,
            fixture("gemini/stream_generate_content/response.sse"),
        ),
        p if p.ends_with(":generateContent") => answer(
            200,
            json_type,
            fixture("gemini/generate_content/response.json"),
        ),
        "/v1/models" => answer(200, json_type, br#"{"object":"list","data":[]}"#.to_vec()),
        _ => answer(
            404,
            json_type,
            br#"{"error":{"message":"not found at the real upstream"}}"#.to_vec(),
        ),
    })
}

async fn serve_upstream() -> (SocketAddr, Arc<Upstream>) {
    let upstream = Arc::new(Upstream::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let u = upstream.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let u = u.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |r| upstream_handle(u.clone(), r));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, upstream)
}

/// The server nobody should reach: counts connections and keeps what it was sent.
struct Evil {
    address: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<u8>>>,
}

async fn serve_evil() -> Evil {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (c, s) = (connections.clone(), seen.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    s.lock().unwrap().extend_from_slice(&buf[..n]);
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nx-upstream: evil\r\ncontent-length: 4\r\nconnection: close\r\n\r\nevil")
                        .await;
                }
            });
        }
    });
    Evil {
        address,
        connections,
        seen,
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway in process.

struct Gateway {
    address: SocketAddr,
    spans: InMemorySpanExporter,
    metrics: InMemoryMetricExporter,
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
}

async fn gateway(upstreams: &[(&str, String)]) -> Gateway {
    let content = ContentPolicy::default().with_capture(Capture::SpanAndEvent);
    // Every dialect: none may copy a credential.
    let dialects = ["otel", "openinference", "agentops"]
        .into_iter()
        .map(|d| Dialect::named(d).unwrap())
        .collect();
    let config = GatewayConfig {
        upstreams: upstreams
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        connect_timeout: Duration::from_secs(2),
        ..GatewayConfig::default()
    };
    let g = in_process::start(config, dialects, content).await;
    Gateway {
        address: g.address,
        spans: g.spans,
        metrics: g.metrics,
        tracer_provider: g.tracer_provider,
        meter_provider: g.meter_provider,
    }
}

impl Gateway {
    fn spans_now(&self) -> Vec<SpanData> {
        self.tracer_provider.force_flush().unwrap();
        self.spans.get_finished_spans().unwrap()
    }

    async fn settled_spans(&self, expected: usize) -> Vec<SpanData> {
        let deadline = Instant::now() + BOUND;
        while self.spans_now().len() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.spans_now()
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 on a TcpStream, so that no client library normalises what is sent.

#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&body[..line_end]).unwrap_or("0");
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&body[start..(start + size).min(body.len())]);
        body = &body[(start + size + 2).min(body.len())..];
    }
}

/// Writes `request` (which must ask for `connection: close`) and reads the answer to its end.
async fn raw_exchange(address: SocketAddr, request: &str) -> Option<RawResponse> {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut bytes))
        .await
        .expect("the gateway answers and closes within the bound")
        .ok()?;
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let raw_body = &bytes[head_end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(raw_body)
    } else {
        raw_body.to_vec()
    };
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

/// What became of a request: forwarded to the real upstream, or refused by the gateway.
#[derive(Debug, PartialEq)]
enum Outcome {
    Forwarded(u16),
    Refused(u16, String),
}

/// Classifies a response, failing on anything but the real upstream's answer or a 4xx JSON error
/// of the gateway's own.
fn outcome(what: &str, response: Option<RawResponse>) -> Outcome {
    let response = response.unwrap_or_else(|| panic!("{what}: no HTTP response"));
    assert_ne!(
        response.header("x-upstream"),
        Some("evil"),
        "{what}: answered by the evil server"
    );
    if response.header("x-upstream") == Some("real") {
        return Outcome::Forwarded(response.status);
    }
    assert!(
        (400..500).contains(&response.status),
        "{what}: neither forwarded nor a 4xx: {response:?}"
    );
    let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_else(|_| {
        panic!(
            "{what}: a refusal must be a JSON error: {} {:?}",
            response.status,
            String::from_utf8_lossy(&response.body)
        )
    });
    assert_eq!(json["error"]["source"], "specter", "{what}: {json}");
    Outcome::Refused(
        response.status,
        json["error"]["type"].as_str().unwrap().to_string(),
    )
}

// ---------------------------------------------------------------------------------------------
// Reaching only the configured upstream.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_targets_cannot_reach_another_host() {
    let (upstream_address, upstream) = serve_upstream().await;
    let evil = serve_evil().await;
    let g = gateway(&[("openai", format!("http://{upstream_address}"))]).await;
    let e = evil.address.to_string();
    let refused = |kind: &str| Outcome::Refused(404, kind.to_string());
    // (method, request target, what the real upstream receives, or how the gateway refuses)
    let cases: Vec<(&str, String, Result<String, Outcome>)> = vec![
        (
            "GET",
            "//evil.example/x".into(),
            Err(refused("unknown_route")),
        ),
        ("GET", format!("//{e}/x"), Err(refused("unknown_route"))),
        (
            "GET",
            format!("//{e}/openai/v1/models"),
            Err(refused("unknown_route")),
        ),
        (
            "GET",
            "/openai//evil.example/x".into(),
            Ok("//evil.example/x".into()),
        ),
        ("GET", format!("/openai//{e}/x"), Ok(format!("//{e}/x"))),
        ("GET", "/openai/../../etc".into(), Ok("/../../etc".into())),
        (
            "GET",
            format!("/openai/../../{e}/x"),
            Ok(format!("/../../{e}/x")),
        ),
        (
            "GET",
            "/%2e%2e/openai/x".into(),
            Err(refused("unknown_route")),
        ),
        (
            "GET",
            "/%2E%2E/%2E%2E/openai/x".into(),
            Err(refused("unknown_route")),
        ),
        (
            "GET",
            "/openai/%2F%2Fevil.example".into(),
            Ok("/%2F%2Fevil.example".into()),
        ),
        (
            "GET",
            format!("/openai/%2F%2F{e}/x"),
            Ok(format!("/%2F%2F{e}/x")),
        ),
        (
            "GET",
            format!("/openai/%5C%5C{e}/x"),
            Ok(format!("/%5C%5C{e}/x")),
        ),
        (
            "GET",
            format!("/openai@{e}/x"),
            Err(refused("unknown_route")),
        ),
        (
            "GET",
            format!("/openai:x@{e}/x"),
            Err(refused("unknown_route")),
        ),
        (
            "GET",
            format!("/openai%40{e}/x"),
            Err(refused("unknown_route")),
        ),
        (
            "GET",
            format!("/openai%2F%2F{e}/x"),
            Err(refused("unknown_route")),
        ),
        (
            "GET",
            format!("/{}/x", e.replace([':', '.'], "_")),
            Err(refused("unknown_provider")),
        ),
        (
            "GET",
            "/openai/%0D%0AHost:%20evil.example".into(),
            Ok("/%0D%0AHost:%20evil.example".into()),
        ),
        (
            "GET",
            format!("/openai/v1/models?next=http://{e}/x&host={e}"),
            Ok(format!("/v1/models?next=http://{e}/x&host={e}")),
        ),
        // Absolute-form targets: only the path counts.
        (
            "GET",
            "http://evil.example/openai/v1/models".into(),
            Ok("/v1/models".into()),
        ),
        (
            "GET",
            format!("http://{e}/openai/v1/models"),
            Ok("/v1/models".into()),
        ),
        (
            "GET",
            format!("https://{e}/openai/v1/models"),
            Ok("/v1/models".into()),
        ),
        (
            "GET",
            format!("http://{e}/openai//{e}/x"),
            Ok(format!("//{e}/x")),
        ),
        (
            "GET",
            format!("http://{e}//{e}/x"),
            Err(refused("unknown_route")),
        ),
        ("GET", format!("http://{e}"), Err(refused("unknown_route"))),
        (
            "POST",
            format!("http://{e}/openai/v1/chat/completions"),
            Ok("/v1/chat/completions".into()),
        ),
        // Authority-form (CONNECT is never forwarded) and asterisk-form.
        (
            "CONNECT",
            e.clone(),
            Err(Outcome::Refused(405, "method_not_allowed".into())),
        ),
        (
            "CONNECT",
            "evil.example:443".into(),
            Err(Outcome::Refused(405, "method_not_allowed".into())),
        ),
        ("OPTIONS", "*".into(), Err(refused("unknown_route"))),
    ];
    let mut expected_forwarded = Vec::new();
    for (method, target, expected) in &cases {
        let body = if *method == "POST" {
            String::from_utf8(fixture("openai/chat_plain/request.json")).unwrap()
        } else {
            String::new()
        };
        let request = format!(
            "{method} {target} HTTP/1.1\r\nhost: {e}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let what = format!("{method} {target}");
        let got = outcome(&what, raw_exchange(g.address, &request).await);
        match expected {
            Ok(path) => {
                assert!(matches!(got, Outcome::Forwarded(_)), "{what}: {got:?}");
                expected_forwarded.push(path.clone());
            }
            Err(refusal) => assert_eq!(&got, refusal, "{what}"),
        }
    }
    let received = upstream.received.lock().unwrap().clone();
    let targets: Vec<String> = received.iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets, expected_forwarded);
    for r in &received {
        let host = r.headers.iter().find(|(k, _)| k == "host").map(|(_, v)| v);
        assert_eq!(
            host,
            Some(&upstream_address.to_string()),
            "{} {}: the upstream's own Host",
            r.method,
            r.target
        );
    }
    assert_eq!(
        evil.connections.load(Ordering::SeqCst),
        0,
        "the evil server was reached: {:?}",
        String::from_utf8_lossy(&evil.seen.lock().unwrap())
    );
    // One chat call, whatever its target's form.
    let spans = g.settled_spans(1).await;
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(
        spans[0]
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "server.address")
            .map(|kv| kv.value.to_string()),
        Some("127.0.0.1".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_headers_cannot_choose_the_upstream() {
    let (upstream_address, upstream) = serve_upstream().await;
    let evil = serve_evil().await;
    let g = gateway(&[("openai", format!("http://{upstream_address}"))]).await;
    let e = evil.address.to_string();
    let header_sets: Vec<String> = vec![
        "host: evil.example\r\n".into(),
        format!("host: {e}\r\n"),
        format!("host: {e}\r\nx-forwarded-host: {e}\r\nx-forwarded-proto: http\r\nforwarded: host={e};proto=http\r\nx-original-url: http://{e}/x\r\nx-rewrite-url: //{e}/x\r\n"),
        format!("host: {e}\r\nconnection: close, host\r\n"),
        format!("host: openai@{e}\r\n"),
        "host: [::1]:1\r\n".into(),
        String::new(),
    ];
    let mut forwarded = 0;
    for headers in &header_sets {
        let request =
            format!("GET /openai/v1/models HTTP/1.1\r\n{headers}connection: close\r\n\r\n");
        let what = format!("headers {headers:?}");
        match outcome(&what, raw_exchange(g.address, &request).await) {
            Outcome::Forwarded(status) => {
                assert_eq!(status, 200, "{what}");
                forwarded += 1;
            }
            // hyper may refuse a malformed Host itself; that is fine as long as it is a 4xx.
            Outcome::Refused(status, kind) => panic!("{what}: refused {status} {kind}"),
        }
    }
    // HTTP/1.0 without a Host.
    let old = outcome(
        "HTTP/1.0",
        raw_exchange(g.address, "GET /openai/v1/models HTTP/1.0\r\n\r\n").await,
    );
    assert_eq!(old, Outcome::Forwarded(200));
    forwarded += 1;
    let received = upstream.received.lock().unwrap().clone();
    assert_eq!(received.len(), forwarded);
    for r in &received {
        assert_eq!(r.target, "/v1/models");
        let hosts: Vec<&String> = r
            .headers
            .iter()
            .filter(|(k, _)| k == "host")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(hosts, [&upstream_address.to_string()]);
    }
    assert_eq!(evil.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_authorities_cannot_choose_the_upstream() {
    let (upstream_address, upstream) = serve_upstream().await;
    let evil = serve_evil().await;
    let g = gateway(&[("openai", format!("http://{upstream_address}"))]).await;
    let e = evil.address;
    let stream = TcpStream::connect(g.address).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    for uri in [
        format!("http://{e}/openai/v1/models"),
        format!("https://{e}/openai//{e}/x"),
        format!("http://{e}//{e}/x"),
    ] {
        let request = Request::get(&uri)
            .header("x-forwarded-host", e.to_string())
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = tokio::time::timeout(BOUND, sender.send_request(request))
            .await
            .unwrap()
            .unwrap();
        let status = response.status().as_u16();
        let real = response
            .headers()
            .get("x-upstream")
            .map(|v| v.as_bytes().to_vec());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        if real.as_deref() == Some(b"real".as_slice()) {
            continue;
        }
        assert!((400..500).contains(&status), "{uri}: {status}");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["source"], "specter", "{uri}");
    }
    let received = upstream.received.lock().unwrap().clone();
    let targets: Vec<&str> = received.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["/v1/models", &format!("//{e}/x")]);
    assert_eq!(evil.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_redirects_are_passed_to_the_client_not_followed() {
    let (upstream_address, upstream) = serve_upstream().await;
    let evil = serve_evil().await;
    let g = gateway(&[("openai", format!("http://{upstream_address}"))]).await;
    let e = evil.address;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for (method, path, body) in [
        ("GET", "/openai/v1/models", Vec::new()),
        (
            "POST",
            "/openai/v1/chat/completions",
            fixture("openai/chat_plain/request.json"),
        ),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", g.address))
            .header("x-mock-redirect", format!("http://{e}/stolen"))
            .header("authorization", "Bearer sk-redirect-test")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = tokio::time::timeout(BOUND, client.request(request))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), 307, "{path}");
        assert_eq!(
            response.headers()["location"],
            format!("http://{e}/stolen").as_str()
        );
        assert_eq!(response.headers()["x-upstream"], "real");
    }
    assert_eq!(upstream.received.lock().unwrap().len(), 2);
    assert_eq!(evil.connections.load(Ordering::SeqCst), 0);
    // The chat call that was redirected is a failed call (a 3xx is no answer).
    let spans = g.settled_spans(1).await;
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert!(matches!(spans[0].status, Status::Error { .. }));
}

// ---------------------------------------------------------------------------------------------
// API keys.

/// A key no test data contains.
fn unique_key() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("sk-leakcheck-{}-{nanos:x}", std::process::id())
}

/// One GenAI call carrying the key everywhere a client may put it.
struct KeyedCall {
    path: String,
    body: Vec<u8>,
    /// Forwarded to the mock (false: its upstream is unreachable).
    reaches_upstream: bool,
    extra_header: Option<(&'static str, &'static str)>,
}

fn keyed_calls(key: &str) -> Vec<KeyedCall> {
    let call = |path: String, body: Vec<u8>| KeyedCall {
        path,
        body,
        reaches_upstream: true,
        extra_header: None,
    };
    vec![
        call(
            format!("/openai/v1/chat/completions?key={key}"),
            fixture("openai/chat_plain/request.json"),
        ),
        call(
            format!("/openai/v1/chat/completions?key={key}"),
            fixture("openai/chat_stream_include_usage/request.json"),
        ),
        call(
            format!("/anthropic/v1/messages?key={key}"),
            fixture("anthropic/messages_plain/request.json"),
        ),
        call(
            format!("/anthropic/v1/messages?key={key}"),
            fixture("anthropic/messages_stream/request.json"),
        ),
        call(
            format!("/gemini/v1beta/models/gemini-2.0-flash:generateContent?key={key}"),
            fixture("gemini/generate_content/request.json"),
        ),
        call(
            format!(
                "/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse&key={key}"
            ),
            fixture("gemini/stream_generate_content/request.json"),
        ),
        // The upstream refuses the key.
        KeyedCall {
            extra_header: Some(("x-mock-status", "401")),
            ..call(
                format!("/openai/v1/chat/completions?key={key}"),
                fixture("openai/chat_plain/request.json"),
            )
        },
        // The upstream cannot be reached: the error message must not carry the URL's query.
        KeyedCall {
            reaches_upstream: false,
            ..call(
                format!("/deepseek/chat/completions?key={key}&api-key={key}"),
                fixture("openai/chat_plain/request.json"),
            )
        },
    ]
}

fn keyed_request(base: &str, call: &KeyedCall, key: &str) -> Request<Full<Bytes>> {
    let mut request = Request::post(format!("{base}{}", call.path))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .header("x-api-key", key)
        .header("api-key", key)
        .header("x-goog-api-key", key)
        .header("cookie", format!("session={key}"))
        .header("openai-organization", "org-test");
    if let Some((k, v)) = call.extra_header {
        request = request.header(k, v);
    }
    request
        .body(Full::new(Bytes::from(call.body.clone())))
        .unwrap()
}

async fn send_keyed_calls(base: &str, key: &str) -> usize {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let calls = keyed_calls(key);
    for call in &calls {
        let response = tokio::time::timeout(BOUND, client.request(keyed_request(base, call, key)))
            .await
            .unwrap()
            .unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body);
        match (call.reaches_upstream, call.extra_header) {
            (true, None) => assert_eq!(status, 200, "{}: {text}", call.path),
            (true, Some(_)) => assert_eq!(status, 401, "{}: {text}", call.path),
            (false, _) => assert_eq!(status, 502, "{}: {text}", call.path),
        }
        assert!(!text.contains(key) || call.reaches_upstream, "{text}");
    }
    calls.len()
}

/// Every place of a span a key could hide in.
fn span_text(span: &SpanData) -> String {
    let mut text = format!("{span:?}\n{}\n", span.name);
    for kv in &span.attributes {
        text.push_str(&format!("{}={}\n", kv.key, kv.value));
    }
    for event in span.events.iter() {
        text.push_str(&format!("event {}\n", event.name));
        for kv in &event.attributes {
            text.push_str(&format!("  {}={}\n", kv.key, kv.value));
        }
    }
    if let Status::Error { description } = &span.status {
        text.push_str(description);
    }
    text
}

fn assert_key_absent(what: &str, text: &str, key: &str) {
    // The whole key, and its unique tail alone (a partly masked key is still a leak).
    let tail = key.rsplit('-').next().unwrap();
    assert!(!text.contains(key), "{what} contains the API key:\n{text}");
    assert!(
        !text.contains(tail),
        "{what} contains part of the API key:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_never_reach_spans_events_or_metrics() {
    let (upstream_address, upstream) = serve_upstream().await;
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let base = format!("http://{upstream_address}");
    let g = gateway(&[
        ("openai", base.clone()),
        ("anthropic", base.clone()),
        ("gemini", base.clone()),
        ("deepseek", format!("http://{closed}")),
    ])
    .await;
    let key = unique_key();
    let calls = send_keyed_calls(&format!("http://{}", g.address), &key).await;

    // The keys are forwarded: the upstream needs them.
    let received = upstream.received.lock().unwrap().clone();
    assert_eq!(received.len(), calls - 1);
    for r in &received {
        for header in [
            "authorization",
            "x-api-key",
            "api-key",
            "x-goog-api-key",
            "cookie",
        ] {
            let value = r.headers.iter().find(|(k, _)| k == header).map(|(_, v)| v);
            assert!(
                value.is_some_and(|v| v.contains(&key)),
                "{header} forwarded on {}",
                r.target
            );
        }
        assert!(r.target.contains(&format!("key={key}")), "{}", r.target);
    }

    let spans = g.settled_spans(calls).await;
    assert_eq!(spans.len(), calls, "one span per call: {spans:#?}");
    // The spans are not empty shells: content and errors are there.
    let all: String = spans.iter().map(span_text).collect();
    assert!(all.contains("gen_ai.output.messages"), "content captured");
    assert!(
        all.contains("gen_ai.client.inference.operation.details"),
        "content events"
    );
    assert!(all.contains("invalid_api_key"), "the upstream's error");
    assert!(
        all.contains("upstream_unreachable"),
        "the unreachable upstream"
    );
    for span in &spans {
        assert_key_absent(&format!("span `{}`", span.name), &span_text(span), &key);
    }
    g.meter_provider.force_flush().unwrap();
    let metrics = format!("{:?}", g.metrics.get_finished_metrics().unwrap());
    assert!(metrics.contains("gen_ai.client.operation.duration"));
    assert_key_absent("the metrics", &metrics, &key);
}

/// The `specter` binary as a child process, its stderr collected as it comes.
struct Served {
    child: std::process::Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    async fn wait_for_stderr(&self, what: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.stderr();
            if what(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "specter serve did not get there; stderr:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits (bounded) for the exit and the last of stderr.
    async fn stop(mut self) -> (std::process::ExitStatus, String) {
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "specter serve did not stop on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        (status, self.stderr())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // Only reached when a test fails before `stop`: do not leave the child behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_binary(args: &[String]) -> Served {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_specter"));
    command
        .arg("serve")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .env(
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
            "SPAN_AND_EVENT",
        );
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "SPECTER_LISTEN",
        "SPECTER_ALLOW_REMOTE",
        "SPECTER_PROVIDERS",
        "SPECTER_TRACES_FILE",
        "SPECTER_QUIET",
        "SPECTER_CONFIG",
    ] {
        command.env_remove(var);
    }
    let mut child = command.spawn().unwrap();
    let pipe = child.stderr.take().unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = stderr.clone();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    Served {
        child,
        stderr,
        reader: Some(reader),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_keeps_api_keys_out_of_stderr_and_the_traces_file() {
    let (upstream_address, upstream) = serve_upstream().await;
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let traces = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "security-traces-{}-{nanos}.jsonl",
        std::process::id()
    ));
    let base = format!("http://{upstream_address}");
    let served = serve_binary(&[
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--traces-file".into(),
        traces.display().to_string(),
        "--upstream".into(),
        format!("openai={base}"),
        "--upstream".into(),
        format!("anthropic={base}"),
        "--upstream".into(),
        format!("gemini={base}"),
        "--upstream".into(),
        format!("deepseek=http://{closed}"),
        "--dialect".into(),
        "otel".into(),
        "--dialect".into(),
        "openinference".into(),
        "--dialect".into(),
        "agentops".into(),
    ]);
    let started = served
        .wait_for_stderr(|t| t.contains("specter: listening on http://"))
        .await;
    let address = started
        .split("listening on http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let key = unique_key();
    let calls = send_keyed_calls(&format!("http://{address}"), &key).await;
    assert_eq!(upstream.received.lock().unwrap().len(), calls - 1);
    // One console line per span, then a clean stop (which flushes the traces file).
    served
        .wait_for_stderr(|t| {
            t.lines()
                .filter(|l| {
                    l.starts_with("specter: ")
                        && (l.contains(" ok") || l.contains(" error="))
                        && !l.contains("listening")
                })
                .count()
                >= calls
        })
        .await;
    let (status, stderr) = served.stop().await;
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "specter: stopped ({calls} call(s), {calls} span(s) ended; file: {calls} span(s) exported, 0 lost to export failures, 0 dropped by a full queue; stderr: {calls} span(s) exported"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("error=upstream_unreachable"), "{stderr}");
    assert!(stderr.contains("error=invalid_api_key"), "{stderr}");
    assert_key_absent("stderr", &stderr, &key);
    let file = std::fs::read_to_string(&traces).unwrap();
    let _ = std::fs::remove_file(&traces);
    assert_eq!(file.matches("\"spanId\"").count(), calls, "{file}");
    assert!(
        file.contains("gen_ai.output.messages"),
        "content is in the file"
    );
    assert_key_absent("the traces file", &file, &key);
}
