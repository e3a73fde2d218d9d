//! The OTLP collector misbehaving behind `specter serve`: refusing connections, accepting and
//! never answering, answering errors. Traffic must not notice: every call gets the upstream's
//! bytes, and every span is accounted for in the shutdown report as exported, lost to export
//! failures, or dropped by the bounded queue.

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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serve::Served;

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("tests/fixtures/{path}")).unwrap()
}

/// Serves every request with `answer(path)` on a free port; counts the requests.
async fn http_server(
    answer: fn(&str) -> (u16, &'static str, Vec<u8>),
) -> (SocketAddr, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let address = serve::http_server(move |r: Request<Incoming>| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            let path = r.uri().path().to_string();
            let _ = r.into_body().collect().await;
            let (status, content_type, body) = answer(&path);
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
            response
                .headers_mut()
                .insert("content-type", content_type.parse().unwrap());
            Ok::<_, Infallible>(response)
        }
    })
    .await;
    (address, count)
}

/// The OpenAI upstream: the recorded chat answer.
fn upstream_answer(_: &str) -> (u16, &'static str, Vec<u8>) {
    (
        200,
        "application/json",
        fixture("openai/chat_plain/response.json"),
    )
}

/// A collector that accepts connections and never answers.
async fn silent_collector() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::Relaxed);
            held.push(stream);
        }
    });
    (address, accepted)
}

/// Resident set size of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A port with nothing listening.
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    address
}

/// Sends `calls` chat requests, `concurrency` at a time, and checks that each got the upstream's
/// exact bytes.
async fn drive(served: &Served, calls: usize, concurrency: usize) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let url = served.url("/openai/v1/chat/completions");
    let expected = fixture("openai/chat_plain/response.json");
    let request_body = Bytes::from(fixture("openai/chat_plain/request.json"));
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, expected, body, next) = (
            client.clone(),
            url.clone(),
            expected.clone(),
            request_body.clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < calls {
                let request = Request::post(&url)
                    .header("content-type", "application/json")
                    .header("authorization", "Bearer sk-collector-test")
                    .body(Full::new(body.clone()))
                    .unwrap();
                let response = client.request(request).await.unwrap();
                assert_eq!(response.status(), 200);
                let got = response.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(got.as_ref(), expected.as_slice());
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
}

/// `(exported, failed, dropped)` from the report `stopped (C call(s), E span(s) ended; N span(s)
/// exported, M lost to export failures, K dropped by a full queue)`, checking that every call
/// ended its span.
fn report(lines: &[String]) -> (usize, usize, usize) {
    let line = lines
        .iter()
        .find(|l| l.starts_with("specter: stopped ("))
        .unwrap_or_else(|| panic!("no stop report: {lines:#?}"));
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(numbers.len(), 5, "{line}");
    assert_eq!(numbers[0], numbers[1], "every call ends its span: {line}");
    (numbers[2], numbers[3], numbers[4])
}

async fn gateway(upstream: SocketAddr, envs: Vec<(&'static str, String)>) -> Served {
    let upstream = format!("openai=http://{upstream}");
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Served::start_async(&["--upstream", &upstream], &envs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_refusing_connections_costs_spans_not_requests() {
    let (upstream, upstream_calls) = http_server(upstream_answer).await;
    for protocol in ["grpc", "http/protobuf"] {
        let before = upstream_calls.load(Ordering::Relaxed);
        let collector = closed_port().await;
        let served = gateway(
            upstream,
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}")),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000".to_string()),
            ],
        )
        .await;
        drive(&served, 50, 8).await;
        let lines = served.stop_async().await;
        assert_eq!(upstream_calls.load(Ordering::Relaxed) - before, 50);
        let (exported, failed, dropped) = report(&lines);
        assert_eq!(exported, 0, "{protocol}: {lines:#?}");
        assert_eq!(failed + dropped, 50, "{protocol}: every span accounted for");
        assert!(failed > 0, "{protocol}: exports were tried and failed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_collector_fills_the_bounded_queue_drops_are_counted_and_memory_stays_flat() {
    let (upstream, upstream_calls) = http_server(upstream_answer).await;
    let (collector, accepted) = silent_collector().await;
    let served = gateway(
        upstream,
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}")),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_string()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "300".to_string()),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "16".to_string()),
        ],
    )
    .await;
    // Every call completes while the collector holds every export: export never blocks traffic.
    drive(&served, 500, 16).await;
    let warm = rss_kib(served.pid());
    drive(&served, 5_000, 16).await;
    let after = rss_kib(served.pid());
    eprintln!("silent collector: RSS {warm} KiB after 500 calls, {after} KiB after 5,500");
    // 5,000 more spans held in memory would take several MiB; the bounded queue holds 16.
    assert!(
        after <= warm + 3 * 1024,
        "memory stays bounded while the collector is silent: {warm} KiB, then {after} KiB"
    );
    let lines = served.stop_async().await;
    assert_eq!(upstream_calls.load(Ordering::Relaxed), 5_500);
    assert!(
        accepted.load(Ordering::Relaxed) > 0,
        "exports were attempted"
    );
    let (exported, failed, dropped) = report(&lines);
    assert_eq!(exported, 0, "{lines:#?}");
    assert_eq!(
        failed + dropped,
        5_500,
        "every span accounted for: {lines:#?}"
    );
    assert!(
        dropped >= 5_500 - 16 * 64,
        "the queue holds 16 spans; the rest are dropped and counted: {lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_answering_errors_costs_spans_not_requests() {
    fn unavailable(_: &str) -> (u16, &'static str, Vec<u8>) {
        (
            503,
            "application/json",
            br#"{"code":14,"message":"unavailable"}"#.to_vec(),
        )
    }
    let (upstream, upstream_calls) = http_server(upstream_answer).await;
    let (collector, collector_calls) = http_server(unavailable).await;
    let served = gateway(
        upstream,
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}")),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_string()),
        ],
    )
    .await;
    drive(&served, 40, 4).await;
    let lines = served.stop_async().await;
    assert_eq!(upstream_calls.load(Ordering::Relaxed), 40);
    assert!(collector_calls.load(Ordering::Relaxed) > 0);
    let (exported, failed, dropped) = report(&lines);
    assert_eq!((exported, failed, dropped), (0, 40, 0), "{lines:#?}");
}
