//! WebSocket sessions through the gateway: a real WebSocket client connects to the in-process
//! gateway, which relays the HTTP/1.1 upgrade to a real WebSocket echo server on loopback (plain
//! or TLS) and splices the two connections. Messages echo both ways, close completes, the
//! session is one span (read from the SDK's in-memory exporter), unknown providers and refused
//! upgrades are answered like ordinary requests, and a silent session ends at the idle timeout.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::result_large_err
)]

mod common;
use common::{in_process, serve};

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use in_process::InProcess;
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use specter::unstable::gateway::GatewayConfig;
use specter::ContentPolicy;
use specter::Dialect;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as HandshakeRequest, Response as HandshakeResponse,
};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The first message the echo server sends on its own, before any echo.
const GREETING: &str = r#"{"type":"session.created"}"#;

/// A WebSocket echo server on loopback: greets, then sends back every text and binary message.
#[derive(Default)]
struct Echo {
    /// TCP connections accepted.
    connections: AtomicUsize,
    /// Path and query of every handshake.
    targets: Mutex<Vec<String>>,
    /// ALPN protocol negotiated on each TLS connection (`None`: none).
    alpn: Mutex<Vec<Option<Vec<u8>>>>,
}

impl Echo {
    /// Serves plain WebSocket (`ws://`); returns its address.
    async fn plain(self: &Arc<Self>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let echo = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                echo.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(echo.clone().session(stream));
            }
        });
        address
    }

    /// Serves WebSocket over TLS (`wss://`), offering HTTP/2 and HTTP/1.1 by ALPN like a real
    /// provider's front end; returns its address.
    async fn tls(self: &Arc<Self>, pki: &Pki) -> SocketAddr {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            pki.server_chain.clone(),
            PrivateKeyDer::try_from(pki.server_key.clone()).unwrap(),
        )
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let echo = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                echo.connections.fetch_add(1, Ordering::SeqCst);
                let Ok(stream) = acceptor.accept(stream).await else {
                    continue;
                };
                let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                echo.alpn.lock().unwrap().push(alpn);
                tokio::spawn(echo.clone().session(stream));
            }
        });
        address
    }

    async fn session<S: AsyncRead + AsyncWrite + Unpin>(self: Arc<Self>, stream: S) {
        let targets = &self.targets;
        let record = |request: &HandshakeRequest, response: HandshakeResponse| {
            targets.lock().unwrap().push(request.uri().to_string());
            Ok::<_, ErrorResponse>(response)
        };
        let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, record).await else {
            return;
        };
        if ws.send(Message::text(GREETING)).await.is_err() {
            return;
        }
        while let Some(Ok(message)) = ws.next().await {
            if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                return;
            }
        }
    }
}

/// A test certificate authority and a server certificate it signed for `127.0.0.1`.
struct Pki {
    ca: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "specter websocket test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let server = server_params.signed_by(&server_key, &ca).unwrap();
    Pki {
        ca: ca.der().clone(),
        server_chain: vec![server.der().clone()],
        server_key: server_key.serialize_der(),
    }
}

/// An in-process gateway whose `openai` upstream is `upstream`.
async fn gateway(upstream: String, configure: impl FnOnce(&mut GatewayConfig)) -> InProcess {
    let mut config = GatewayConfig {
        upstreams: BTreeMap::from([("openai".to_string(), upstream)]),
        ..GatewayConfig::default()
    };
    configure(&mut config);
    in_process::start(config, vec![Dialect::Semconv], ContentPolicy::default()).await
}

/// Waits (at most 10 s) for a finished span named `name`.
async fn span_named(gateway: &InProcess, name: &str) -> SpanData {
    for _ in 0..200 {
        gateway.tracer_provider.force_flush().unwrap();
        let spans = gateway.spans.get_finished_spans().unwrap();
        if let Some(span) = spans.into_iter().find(|s| s.name == name) {
            return span;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no span named `{name}` was exported");
}

fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn int(span: &SpanData, key: &str) -> i64 {
    match attr(span, key) {
        Some(Value::I64(n)) => n,
        other => panic!("`{key}` is {other:?}"),
    }
}

fn text(span: &SpanData, key: &str) -> String {
    match attr(span, key) {
        Some(Value::String(s)) => s.to_string(),
        other => panic!("`{key}` is {other:?}"),
    }
}

/// Bounded wait for the next message of a client.
async fn next<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Option<Result<Message, WsError>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("the gateway relays within 10 s")
}

/// Text and binary messages both ways, then a clean close, over a greeted client.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
) {
    let text = r#"{"type":"response.create","response":{"modalities":["text"]}}"#;
    ws.send(Message::text(text)).await.unwrap();
    assert_eq!(next(ws).await.unwrap().unwrap(), Message::text(text));
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    ws.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(next(ws).await.unwrap().unwrap(), Message::binary(binary));
    ws.close(None).await.unwrap();
    // The server answers the close; then the stream ends.
    loop {
        match next(ws).await {
            Some(Ok(Message::Close(_))) => {}
            None | Some(Err(WsError::ConnectionClosed)) => break,
            other => panic!("after close: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_websocket_session_is_relayed_both_ways_and_becomes_one_span() {
    let echo = Arc::new(Echo::default());
    let upstream = echo.plain().await;
    let gateway = gateway(format!("http://{upstream}"), |_| {}).await;

    let url = format!(
        "ws://{}/openai/v1/realtime?model=gpt-realtime",
        gateway.address
    );
    let (mut ws, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        next(&mut ws).await.unwrap().unwrap(),
        Message::text(GREETING)
    );
    assert_eq!(
        gateway.in_flight.count(),
        1,
        "the open session counts as in flight"
    );
    converse(&mut ws).await;

    assert_eq!(
        *echo.targets.lock().unwrap(),
        vec!["/v1/realtime?model=gpt-realtime".to_string()]
    );
    let span = span_named(&gateway, "websocket /v1/realtime").await;
    assert_eq!(int(&span, "http.response.status_code"), 101);
    assert_eq!(text(&span, "server.address"), "127.0.0.1");
    assert_eq!(int(&span, "server.port"), i64::from(upstream.port()));
    assert_eq!(text(&span, "url.path"), "/v1/realtime");
    assert_eq!(text(&span, "gen_ai.provider.name"), "openai");
    assert_eq!(text(&span, "network.protocol.name"), "websocket");
    // Masked client frames carry the 70,000-byte message plus headers; the server's are unmasked.
    assert!(int(&span, "specter.upgrade.client_bytes") > 70_000);
    assert!(int(&span, "specter.upgrade.upstream_bytes") > 70_000);
    assert_eq!(attr(&span, "error.type"), None);
    assert!(span.end_time > span.start_time);
    assert!(
        gateway.in_flight.drained(Duration::from_secs(5)).await,
        "the session left the in-flight count"
    );
}

#[tokio::test]
async fn websocket_sessions_reach_https_upstreams_over_http1() {
    let pki = pki();
    let echo = Arc::new(Echo::default());
    let upstream = echo.tls(&pki).await;
    let ca = pki.ca.clone();
    let gateway = gateway(format!("https://{upstream}"), move |config| {
        config.upstream_ca = vec![ca];
    })
    .await;

    let url = format!(
        "ws://{}/openai/v1/realtime?model=gpt-realtime",
        gateway.address
    );
    let (mut ws, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        next(&mut ws).await.unwrap().unwrap(),
        Message::text(GREETING)
    );
    converse(&mut ws).await;

    assert_eq!(
        *echo.alpn.lock().unwrap(),
        vec![None],
        "the upgrade offered no HTTP/2 (no ALPN: HTTP/1.1) although the server offers it"
    );
    assert_eq!(
        *echo.targets.lock().unwrap(),
        vec!["/v1/realtime?model=gpt-realtime".to_string()]
    );
    let span = span_named(&gateway, "websocket /v1/realtime").await;
    assert_eq!(int(&span, "http.response.status_code"), 101);
    assert_eq!(int(&span, "server.port"), i64::from(upstream.port()));
}

#[tokio::test]
async fn an_upgrade_to_an_unknown_provider_is_404_and_reaches_no_host() {
    let echo = Arc::new(Echo::default());
    let upstream = echo.plain().await;
    let gateway = gateway(format!("http://{upstream}"), |_| {}).await;

    // A Host header naming the echo server changes nothing: routes come from the provider.
    let mut request = format!("ws://{}/nosuch/v1/realtime", gateway.address)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("host", upstream.to_string().parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), StatusCode::NOT_FOUND),
        other => panic!("expected 404, got {other:?}"),
    }

    // Nor does an absolute-form target naming the echo server.
    let mut stream = tokio::net::TcpStream::connect(gateway.address)
        .await
        .unwrap();
    let handshake = format!(
        "GET http://{upstream}/v1/realtime HTTP/1.1\r\nHost: {upstream}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(handshake.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 404");

    assert_eq!(echo.connections.load(Ordering::SeqCst), 0);
    assert!(echo.targets.lock().unwrap().is_empty());
}

/// What a plain HTTP upstream saw of the requests it answered.
#[derive(Default)]
struct Seen {
    /// `upgrade`, `connection` and `sec-websocket-key` of each request (empty when absent).
    headers: Mutex<Vec<[String; 3]>>,
}

/// A plain HTTP upstream: refuses upgrades with 426 and answers `/v1/models` with JSON.
async fn refusing_upstream(seen: Arc<Seen>) -> SocketAddr {
    serve::http_server(move |request: Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            seen.headers.lock().unwrap().push([
                header("upgrade"),
                header("connection"),
                header("sec-websocket-key"),
            ]);
            let response = if request.uri().path() == "/v1/models" {
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(br#"{"data":[]}"#)))
            } else {
                Response::builder()
                    .status(StatusCode::UPGRADE_REQUIRED)
                    .header("x-refusal", "version 2 only")
                    .body(Full::new(Bytes::from_static(br#"{"error":"use v2"}"#)))
            };
            Ok::<_, Infallible>(response.unwrap())
        }
    })
    .await
}

/// Sends `request` on a fresh HTTP/1.1 connection to `address`; returns status, headers, body.
async fn send_http1(
    address: SocketAddr,
    request: Request<Empty<Bytes>>,
) -> (StatusCode, hyper::HeaderMap, Bytes) {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (head.status, head.headers, body)
}

#[tokio::test]
async fn an_upstream_refusing_the_upgrade_is_answered_through() {
    let seen = Arc::new(Seen::default());
    let upstream = refusing_upstream(seen.clone()).await;
    let gateway = gateway(format!("http://{upstream}"), |_| {}).await;

    let request = Request::get("/openai/v1/realtime?model=gpt-realtime")
        .header("host", gateway.address.to_string())
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Empty::new())
        .unwrap();
    let (status, headers, body) = send_http1(gateway.address, request).await;
    assert_eq!(status, StatusCode::UPGRADE_REQUIRED);
    assert_eq!(headers["x-refusal"], "version 2 only");
    assert_eq!(&body[..], br#"{"error":"use v2"}"#);
    assert_eq!(
        *seen.headers.lock().unwrap(),
        vec![[
            "websocket".to_string(),
            "upgrade".to_string(),
            "dGhlIHNhbXBsZSBub25jZQ==".to_string()
        ]],
        "the upstream received the upgrade headers"
    );
    let span = span_named(&gateway, "websocket /v1/realtime").await;
    assert_eq!(int(&span, "http.response.status_code"), 426);
    assert_eq!(text(&span, "error.type"), "426");
}

#[tokio::test]
async fn requests_without_upgrade_are_forwarded_as_before() {
    let seen = Arc::new(Seen::default());
    let upstream = refusing_upstream(seen.clone()).await;
    let gateway = gateway(format!("http://{upstream}"), |_| {}).await;

    let request = Request::get("/openai/v1/models")
        .header("host", gateway.address.to_string())
        .body(Empty::new())
        .unwrap();
    let (status, _, body) = send_http1(gateway.address, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], br#"{"data":[]}"#);
    assert_eq!(
        *seen.headers.lock().unwrap(),
        vec![[String::new(), String::new(), String::new()]]
    );
}

#[tokio::test]
async fn a_silent_session_ends_at_the_idle_timeout() {
    let echo = Arc::new(Echo::default());
    let upstream = echo.plain().await;
    let gateway = gateway(format!("http://{upstream}"), |config| {
        config.idle_timeout = Duration::from_millis(300);
    })
    .await;

    let url = format!("ws://{}/openai/v1/realtime", gateway.address);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(
        next(&mut ws).await.unwrap().unwrap(),
        Message::text(GREETING)
    );
    // Nothing more is sent: the gateway closes both connections.
    match next(&mut ws).await {
        None | Some(Err(_)) => {}
        Some(Ok(message)) => panic!("unexpected {message:?}"),
    }
    let span = span_named(&gateway, "websocket /v1/realtime").await;
    assert_eq!(text(&span, "error.type"), "timeout");
    assert_eq!(int(&span, "http.response.status_code"), 101);
    assert!(gateway.in_flight.drained(Duration::from_secs(5)).await);
}
