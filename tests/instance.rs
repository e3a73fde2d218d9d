//! Which process emitted a span: every `specter serve` sets the `service.instance.id` resource
//! attribute to a UUID v4 of its own, so replicas behind a load balancer tell apart in the
//! backend; `OTEL_RESOURCE_ATTRIBUTES=service.instance.id=...` replaces it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::serve;

use std::convert::Infallible;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use serde_json::Value;
use serve::Served;

const CHAT_REQUEST: &str = include_str!("fixtures/openai/chat_plain/request.json");
const CHAT_RESPONSE: &str = include_str!("fixtures/openai/chat_plain/response.json");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("specter-instance-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One chat call through the gateway over HTTP/1.1; returns the status line and the body.
fn chat(served: &Served) -> (String, String) {
    let mut stream = TcpStream::connect(served.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /openai/v1/chat/completions HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         authorization: Bearer sk-test\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        served.address,
        CHAT_REQUEST.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(CHAT_REQUEST.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The resource attributes of every span in an OTLP JSON-lines file, one map per span.
fn span_resources(path: &Path) -> Vec<serde_json::Map<String, Value>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let request: Value = serde_json::from_str(line).unwrap();
        for resource_spans in request["resourceSpans"].as_array().unwrap() {
            let mut attributes = serde_json::Map::new();
            for kv in resource_spans["resource"]["attributes"].as_array().unwrap() {
                attributes.insert(
                    kv["key"].as_str().unwrap().to_string(),
                    kv["value"]["stringValue"].clone(),
                );
            }
            for scope in resource_spans["scopeSpans"].as_array().unwrap() {
                for _ in scope["spans"].as_array().unwrap() {
                    out.push(attributes.clone());
                }
            }
        }
    }
    out
}

/// Starts a gateway writing `dir/traces.jsonl`, makes one chat call, stops it (which flushes) and
/// returns the `service.instance.id` of its one span.
fn instance_of_one_call(
    dir: &Path,
    upstream: std::net::SocketAddr,
    envs: &[(&str, &str)],
) -> String {
    let traces = dir.join("traces.jsonl");
    let upstream = format!("openai=http://{upstream}");
    let served = Served::start(
        &[
            "--upstream",
            &upstream,
            "--traces-file",
            traces.to_str().unwrap(),
            "--quiet",
        ],
        envs,
    );
    let (status, body) = chat(&served);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("chatcmpl"), "{body}");
    let (exit, lines) = served.stop();
    assert!(exit.success(), "{lines:#?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut resources = span_resources(&traces);
    while resources.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        resources = span_resources(&traces);
    }
    assert_eq!(resources.len(), 1, "one call, one span");
    resources[0]["service.instance.id"]
        .as_str()
        .unwrap_or_else(|| panic!("no service.instance.id in {:?}", resources[0]))
        .to_string()
}

fn is_uuid_v4(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && groups.iter().all(|g| {
            g.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        })
        && groups[2].starts_with('4')
        && groups[3].starts_with(['8', '9', 'a', 'b'])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gateway_process_names_itself_and_the_environment_can_name_it() {
    let upstream = serve::http_server(|_r: Request<hyper::body::Incoming>| async {
        let mut response = Response::new(Full::new(Bytes::from_static(CHAT_RESPONSE.as_bytes())));
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        Ok::<_, Infallible>(response)
    })
    .await;
    let ids = tokio::task::spawn_blocking(move || {
        let first = instance_of_one_call(&temp_dir("first"), upstream, &[]);
        let second = instance_of_one_call(&temp_dir("second"), upstream, &[]);
        let named = instance_of_one_call(
            &temp_dir("named"),
            upstream,
            &[(
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.instance.id=replica-a,deployment.environment=test",
            )],
        );
        (first, second, named)
    })
    .await
    .unwrap();
    let (first, second, named) = ids;
    assert!(is_uuid_v4(&first), "{first}");
    assert!(is_uuid_v4(&second), "{second}");
    assert_ne!(first, second, "two processes, two ids");
    assert_eq!(named, "replica-a");
}
