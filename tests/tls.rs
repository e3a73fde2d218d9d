//! TLS on both sides of `specter serve`, with real rustls servers and a test certificate
//! authority made by rcgen: HTTPS upstreams over HTTP/2 and HTTP/1.1 (chosen by ALPN) trusted
//! through `--upstream-ca`, a certificate from an unknown authority refused, and spans exported
//! to an `https://` collector over OTLP/HTTP and OTLP/gRPC trusted through
//! `OTEL_EXPORTER_OTLP_CERTIFICATE`. The gateway runs as the release-shaped binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::serve;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, Version};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serve::Served;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A test certificate authority and a server certificate it signed for `localhost` and
/// `127.0.0.1`.
struct Pki {
    ca_file: PathBuf,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

fn pki(name: &str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "specter test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let server = server_params.signed_by(&server_key, &ca).unwrap();
    let dir = std::env::temp_dir().join(format!("specter-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    Pki {
        ca_file,
        server_chain: vec![server.der().clone()],
        server_key: server_key.serialize_der(),
    }
}

/// What the TLS server saw.
#[derive(Default)]
struct Seen {
    /// HTTP version and path of every request.
    requests: Mutex<Vec<(Version, String)>>,
    /// Decoded OTLP trace exports.
    exports: Mutex<Vec<ExportTraceServiceRequest>>,
}

impl Seen {
    fn versions(&self, path: &str) -> Vec<Version> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .filter(|(_, p)| p == path)
            .map(|(v, _)| *v)
            .collect()
    }

    /// The attributes of every exported span, as `key=value` strings.
    fn exported_spans(&self) -> Vec<Vec<String>> {
        let exports = self.exports.lock().unwrap();
        let mut spans = Vec::new();
        for export in exports.iter() {
            for resource in &export.resource_spans {
                for scope in &resource.scope_spans {
                    for span in &scope.spans {
                        let attributes = span
                            .attributes
                            .iter()
                            .map(|kv| {
                                let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                    Some(AnyValue::StringValue(s)) => s.clone(),
                                    Some(AnyValue::IntValue(i)) => i.to_string(),
                                    Some(other) => format!("{other:?}"),
                                    None => String::new(),
                                };
                                format!("{}={value}", kv.key)
                            })
                            .collect();
                        spans.push(attributes);
                    }
                }
            }
        }
        spans
    }
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("tests/fixtures/{path}")).unwrap()
}

fn full(content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    response
        .headers_mut()
        .insert("content-type", content_type.parse().unwrap());
    response
}

/// A gRPC answer: one length-prefixed message, then `grpc-status: 0` in the trailers.
fn grpc_ok(message: Vec<u8>) -> Response<Body> {
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&message);
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(Bytes::from(framed))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut response = Response::new(StreamBody::new(futures::stream::iter(frames)).boxed());
    response
        .headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    response
}

/// Answers as an OpenAI upstream and as an OTLP collector (HTTP/protobuf and gRPC).
async fn handle(seen: Arc<Seen>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let version = request.version();
    let path = request.uri().path().to_string();
    seen.requests.lock().unwrap().push((version, path.clone()));
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let response = match path.as_str() {
        "/v1/chat/completions" => full(
            "application/json",
            fixture("openai/chat_plain/response.json"),
        ),
        "/v1/traces" => {
            let export = ExportTraceServiceRequest::decode(body).unwrap();
            seen.exports.lock().unwrap().push(export);
            full(
                "application/x-protobuf",
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
        }
        "/v1/metrics" => full("application/x-protobuf", Vec::new()),
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export" => {
            let export = ExportTraceServiceRequest::decode(body.slice(5..)).unwrap();
            seen.exports.lock().unwrap().push(export);
            grpc_ok(ExportTraceServiceResponse::default().encode_to_vec())
        }
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export" => grpc_ok(Vec::new()),
        _ => full("application/json", b"{}".to_vec()),
    };
    Ok(response)
}

/// A TLS server offering `alpn` (e.g. `h2` and `http/1.1`).
async fn tls_server(pki: &Pki, alpn: &[&[u8]]) -> (SocketAddr, Arc<Seen>) {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        pki.server_chain.clone(),
        PrivateKeyDer::Pkcs8(pki.server_key.clone().into()),
    )
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let seen = state.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake here.
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |r| handle(seen.clone(), r));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (address, seen)
}

/// Posts the recorded chat request through the gateway; returns the status and body.
async fn chat(served: &Served) -> (u16, Vec<u8>) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = Request::post(served.url("/openai/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-tls-test-key-5150")
        .body(Full::new(Bytes::from(fixture(
            "openai/chat_plain/request.json",
        ))))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

async fn start(args: Vec<String>, envs: Vec<(String, String)>) -> Served {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Served::start_async(&args, &envs).await
}

/// Runs the gateway in front of an HTTPS upstream offering `alpn`, trusting the test CA.
async fn through_https_upstream(name: &str, alpn: &[&[u8]]) -> (Arc<Seen>, Vec<String>) {
    let pki = pki(name);
    let (upstream, seen) = tls_server(&pki, alpn).await;
    let served = start(
        vec![
            "--upstream".into(),
            format!("openai=https://localhost:{}", upstream.port()),
            "--upstream-ca".into(),
            pki.ca_file.display().to_string(),
            "--no-traces-file".into(),
        ],
        Vec::new(),
    )
    .await;
    let (status, body) = chat(&served).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        fixture("openai/chat_plain/response.json"),
        "the upstream's bytes reach the client unchanged"
    );
    let lines = served.stop_async().await;
    (seen, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_offering_http2_is_reached_over_http2() {
    let (seen, lines) = through_https_upstream("h2", &[b"h2", b"http/1.1"]).await;
    assert_eq!(seen.versions("/v1/chat/completions"), vec![Version::HTTP_2]);
    assert!(
        lines.iter().any(
            |l| l.contains("openai chat gpt-4o-mini-2024-07-18 in=12 out=5") && l.ends_with(" ok")
        ),
        "one span for the call: {lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_offering_only_http1_is_reached_over_http1() {
    let (seen, lines) = through_https_upstream("h1", &[b"http/1.1"]).await;
    assert_eq!(
        seen.versions("/v1/chat/completions"),
        vec![Version::HTTP_11]
    );
    assert!(
        lines.iter().any(
            |l| l.contains("openai chat gpt-4o-mini-2024-07-18 in=12 out=5") && l.ends_with(" ok")
        ),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_certificate_from_an_unknown_authority_is_refused_with_502() {
    let pki = pki("unknown-ca");
    let (upstream, seen) = tls_server(&pki, &[b"h2", b"http/1.1"]).await;
    let served = start(
        vec![
            "--upstream".into(),
            format!("openai=https://localhost:{}", upstream.port()),
            "--no-traces-file".into(),
        ],
        Vec::new(),
    )
    .await;
    let (status, body) = chat(&served).await;
    assert_eq!(status, 502);
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("certificate") || message.contains("UnknownIssuer"),
        "the 502 says why: {message}"
    );
    assert!(
        seen.versions("/v1/chat/completions").is_empty(),
        "no request crossed the refused handshake"
    );
    let lines = served.stop_async().await;
    let spans: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("specter: openai chat gpt-4o-mini "))
        .collect();
    assert_eq!(spans.len(), 1, "one span: {lines:#?}");
    assert!(
        spans[0].contains(" error=upstream_unreachable: ") && spans[0].contains("UnknownIssuer"),
        "{spans:#?}"
    );
    assert!(
        lines.iter().any(|l| l.ends_with(
            "stopped (1 call(s), 1 span(s) ended; 1 span(s) exported, 0 lost to export failures, 0 dropped by a full queue)"
        )),
        "{lines:#?}"
    );
}

/// Exports one call's span to an HTTPS collector over `protocol` and checks what arrived.
async fn exports_to_https_collector(name: &str, protocol: &str) {
    let pki = pki(name);
    let (collector, seen) = tls_server(&pki, &[b"h2", b"http/1.1"]).await;
    let (upstream, _) = tls_server(&pki, &[b"h2", b"http/1.1"]).await;
    let ca = pki.ca_file.display().to_string();
    let served = start(
        vec![
            "--upstream".into(),
            format!("openai=https://localhost:{}", upstream.port()),
            "--upstream-ca".into(),
            ca.clone(),
        ],
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                format!("https://localhost:{}", collector.port()),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), protocol.into()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE".into(), ca),
        ],
    )
    .await;
    assert!(
        served
            .lines()
            .iter()
            .any(|l| l.contains(&format!("spans to OTLP ({protocol})"))),
        "{:#?}",
        served.lines()
    );
    let (status, _) = chat(&served).await;
    assert_eq!(status, 200);
    let lines = served.stop_async().await;
    assert!(
        lines.iter().any(|l| l.ends_with(
            "stopped (1 call(s), 1 span(s) ended; 1 span(s) exported, 0 lost to export failures, 0 dropped by a full queue)"
        )),
        "{lines:#?}"
    );
    let spans = seen.exported_spans();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let span = &spans[0];
    for expected in [
        "gen_ai.operation.name=chat",
        "gen_ai.provider.name=openai",
        "gen_ai.request.model=gpt-4o-mini",
        "gen_ai.response.model=gpt-4o-mini-2024-07-18",
        "gen_ai.response.id=chatcmpl-ASYMQRl3A3DXL9FWCK9tnGRcKIO7q",
        "gen_ai.usage.input_tokens=12",
        "gen_ai.usage.output_tokens=5",
    ] {
        assert!(
            span.iter().any(|a| a == expected),
            "{expected} in {span:#?}"
        );
    }
    assert!(
        !span.iter().any(|a| a.contains("sk-tls-test-key-5150")),
        "the API key is not exported"
    );
    if protocol == "grpc" {
        assert!(seen
            .versions("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            .iter()
            .all(|v| *v == Version::HTTP_2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_https_collector_over_otlp_http_protobuf() {
    exports_to_https_collector("otlp-http", "http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_https_collector_over_otlp_grpc() {
    exports_to_https_collector("otlp-grpc", "grpc").await;
}

#[test]
fn an_unusable_ca_file_stops_the_gateway_with_a_clear_error() {
    let missing = std::env::temp_dir().join("specter-no-such-ca.pem");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_specter"))
        .args(["serve", "--listen", "127.0.0.1:0", "--upstream-ca"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: cannot use the CA certificate file {}: ",
            missing.display()
        )),
        "{stderr}"
    );

    let not_pem = std::env::temp_dir().join(format!("specter-not-pem-{}.pem", std::process::id()));
    std::fs::write(&not_pem, "hello\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_specter"))
        .args(["serve", "--listen", "127.0.0.1:0", "--upstream-ca"])
        .arg(&not_pem)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no `-----BEGIN CERTIFICATE-----` block in the file"),
        "{stderr}"
    );
}
