//! Soak and reload under load: many mixed calls (a third of them streamed) at high concurrency
//! through `specter serve`, while the providers directory is rewritten 100 times with valid and
//! invalid versions. Every call must get the upstream's exact bytes, every call must give exactly
//! one span made by one whole version of the rules, no request may stay in flight, and resident
//! memory must stay flat after warm-up.
//!
//! The CI size is at least 12,000 calls (more if the 100 rewrites take longer). The full size:
//! `SPECTER_SOAK_REQUESTS=100000 cargo test --release --test soak -- --nocapture`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::serve;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serve::Served;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

const CONCURRENCY: usize = 64;
const REWRITES: usize = 100;
/// Spacing of the rewrites: past the watcher's debounce, so most become a reload of their own.
const REWRITE_EVERY: Duration = Duration::from_millis(170);
/// `provider_name` of the second valid version of the rules.
const VERSION_B: &str = "openai_soak_b";

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("tests/fixtures/{path}")).unwrap()
}

/// The mock upstream: the recorded chat answer, or the recorded stream event by event.
async fn upstream() -> SocketAddr {
    let plain = Bytes::from(fixture("openai/chat_plain/response.json"));
    let sse = String::from_utf8(fixture("openai/chat_stream_include_usage/response.sse")).unwrap();
    let events: Arc<Vec<Bytes>> = Arc::new(
        sse.split_inclusive("\n\n")
            .map(|e| Bytes::from(e.to_string()))
            .collect(),
    );
    serve::http_server(move |r: Request<Incoming>| {
        let (plain, events) = (plain.clone(), events.clone());
        async move {
            let body = r.into_body().collect().await.unwrap().to_bytes();
            let streamed = body.windows(14).any(|w| w == b"\"stream\": true");
            let (content_type, body): (&str, Body) = if streamed {
                let frames: Vec<Result<Frame<Bytes>, Infallible>> =
                    events.iter().cloned().map(|e| Ok(Frame::data(e))).collect();
                (
                    "text/event-stream",
                    StreamBody::new(futures::stream::iter(frames)).boxed(),
                )
            } else {
                ("application/json", Full::new(plain).boxed())
            };
            let mut response = Response::new(body);
            response
                .headers_mut()
                .insert("content-type", content_type.parse().unwrap());
            Ok::<_, Infallible>(response)
        }
    })
    .await
}

/// The versions the providers directory is rewritten with, in turn: the bundled OpenAI spec, the
/// same with another `provider_name`, a schema error, and a YAML syntax error.
fn versions() -> Vec<(&'static str, String)> {
    let a = std::fs::read_to_string("providers/openai.yaml").unwrap();
    assert!(a.contains("\nprovider_name: openai\n"));
    let b = a.replace(
        "\nprovider_name: openai\n",
        &format!("\nprovider_name: {VERSION_B}\n"),
    );
    let schema_error = a.replace("\nprovider_name: openai\n", "\nprovider_name: [a, list]\n");
    let syntax_error = format!("{a}\n  - id: [unclosed\n");
    vec![
        ("a", a),
        ("b", b),
        ("schema error", schema_error),
        ("syntax error", syntax_error),
    ]
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

/// `provider_name` and whether the span streamed, per exported span; panics on a span that is
/// not whole.
fn read_spans(path: &Path) -> Vec<(String, bool)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut spans = Vec::new();
    for line in text.lines() {
        let export: serde_json::Value = serde_json::from_str(line).unwrap();
        for resource in export["resourceSpans"].as_array().unwrap() {
            for scope in resource["scopeSpans"].as_array().unwrap() {
                for span in scope["spans"].as_array().unwrap() {
                    let attributes: BTreeMap<String, serde_json::Value> = span["attributes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|kv| (kv["key"].as_str().unwrap().to_string(), kv["value"].clone()))
                        .collect();
                    let text = |key: &str| {
                        attributes
                            .get(key)
                            .and_then(|v| v["stringValue"].as_str())
                            .unwrap_or_else(|| panic!("{key} missing: {span}"))
                            .to_string()
                    };
                    let int = |key: &str| {
                        attributes
                            .get(key)
                            .and_then(|v| v["intValue"].as_str())
                            .unwrap_or_else(|| panic!("{key} missing: {span}"))
                            .to_string()
                    };
                    let model = text("gen_ai.request.model");
                    let streamed = model == "gpt-4";
                    assert_eq!(text("gen_ai.operation.name"), "chat");
                    assert_eq!(
                        text("gen_ai.response.model"),
                        if streamed {
                            "gpt-4-0613"
                        } else {
                            "gpt-4o-mini-2024-07-18"
                        }
                    );
                    assert_eq!(int("gen_ai.usage.input_tokens"), "12");
                    assert_eq!(int("gen_ai.usage.output_tokens"), "5");
                    assert!(
                        span["status"]["code"].as_str() != Some("STATUS_CODE_ERROR"),
                        "{span}"
                    );
                    spans.push((text("gen_ai.provider.name"), streamed));
                }
            }
        }
    }
    spans
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("specter-soak-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_reloads_under_load_loses_no_call_and_no_span() {
    let minimum: usize = std::env::var("SPECTER_SOAK_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12_000);
    let dir = temp_dir("providers");
    let versions = versions();
    std::fs::write(dir.join("openai.yaml"), &versions[0].1).unwrap();
    let traces = temp_dir("traces").join("traces.jsonl");
    let mock = upstream().await;
    let (dir_text, traces_text) = (dir.display().to_string(), traces.display().to_string());
    // Every span stays in the one file, however many the full size makes.
    let config = traces.with_file_name("specter.yaml");
    std::fs::write(&config, "traces_file_max_bytes: 0\n").unwrap();
    let config_text = config.display().to_string();
    let upstream = format!("openai=http://{mock}");
    let served = Served::start_async(
        &[
            "--config",
            &config_text,
            "--providers",
            &dir_text,
            "--no-bundled",
            "--upstream",
            &upstream,
            "--quiet",
            "--traces-file",
            &traces_text,
        ],
        &[],
    )
    .await;
    let pid = served.pid();

    // The rewrites run on their own thread for as long as they take; the load goes on at least
    // that long.
    let rewrites_done = Arc::new(AtomicBool::new(false));
    let rewriter = {
        let (dir, done) = (dir.clone(), rewrites_done.clone());
        std::thread::spawn(move || {
            for i in 0..REWRITES {
                std::thread::sleep(REWRITE_EVERY);
                let (_, text) = &versions[i % versions.len()];
                std::fs::write(dir.join("openai.yaml"), text).unwrap();
            }
            // End on a valid version, so the last reload is a good one.
            std::thread::sleep(REWRITE_EVERY);
            std::fs::write(dir.join("openai.yaml"), &versions[0].1).unwrap();
            done.store(true, Ordering::Relaxed);
        })
    };

    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONCURRENCY)
        .build_http();
    let url = served.url("/openai/v1/chat/completions");
    let plain_request = Bytes::from(fixture("openai/chat_plain/request.json"));
    let stream_request = Bytes::from(fixture("openai/chat_stream_include_usage/request.json"));
    let plain_response = Bytes::from(fixture("openai/chat_plain/response.json"));
    let stream_response = Bytes::from(fixture("openai/chat_stream_include_usage/response.sse"));
    let next = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let warm_rss = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let client = client.clone();
        let url = url.clone();
        let bodies = (
            plain_request.clone(),
            stream_request.clone(),
            plain_response.clone(),
            stream_response.clone(),
        );
        let (next, sent, done, warm_rss) = (
            next.clone(),
            sent.clone(),
            rewrites_done.clone(),
            warm_rss.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= minimum && done.load(Ordering::Relaxed) {
                    break;
                }
                let streamed = i % 3 == 0;
                let (request_body, expected) = if streamed {
                    (bodies.1.clone(), &bodies.3)
                } else {
                    (bodies.0.clone(), &bodies.2)
                };
                let request = Request::post(&url)
                    .header("content-type", "application/json")
                    .header("authorization", "Bearer sk-soak")
                    .body(Full::new(request_body))
                    .unwrap();
                let response = client.request(request).await.unwrap();
                assert_eq!(response.status(), 200, "call {i}");
                let got = response.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&got, expected, "call {i} got the upstream's bytes");
                if sent.fetch_add(1, Ordering::Relaxed) + 1 == 2_000 {
                    warm_rss.store(rss_kib(pid) as usize, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut peak_rss = 0;
    while !workers.iter().all(|w| w.is_finished()) {
        peak_rss = peak_rss.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for worker in workers {
        worker.await.unwrap();
    }
    rewriter.join().unwrap();
    let elapsed = started.elapsed();
    let calls = sent.load(Ordering::Relaxed);
    let end_rss = rss_kib(pid);

    // Nothing stays in flight once the calls are answered and their spans finished (they are
    // finished just after the last byte, on tasks of their own).
    let mut health = Bytes::new();
    for _ in 0..100 {
        let request = Request::get(served.url("/healthz"))
            .header("accept", "application/json")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client.request(request).await.unwrap();
        health = response.into_body().collect().await.unwrap().to_bytes();
        if in_flight(&health) == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(in_flight(&health), Some(0), "{health:?}");

    let reloads = served.count("specter: reloaded 1 provider ");
    let rejected = served.count("specter: rejected the change");
    let lines = served.stop_async().await;
    assert!(
        lines.iter().any(|l| l
            == &format!(
                "specter: stopped ({calls} call(s), {calls} span(s) ended; {calls} span(s) exported, 0 lost to export failures, 0 dropped by a full queue)"
            )),
        "{lines:#?}"
    );
    let spans = read_spans(&traces);
    assert_eq!(spans.len(), calls, "one span per call");
    let streamed = spans.iter().filter(|(_, s)| *s).count();
    assert_eq!(streamed, calls.div_ceil(3), "one span per streamed call");
    let mut by_version: BTreeMap<&str, usize> = BTreeMap::new();
    for (provider, _) in &spans {
        *by_version.entry(provider.as_str()).or_default() += 1;
    }
    assert_eq!(
        by_version.keys().copied().collect::<Vec<_>>(),
        vec!["openai", VERSION_B],
        "every span comes from one of the two valid versions, and both were active"
    );
    assert!(reloads >= 10, "{reloads} reloads: {lines:#?}");
    assert!(rejected >= 5, "{rejected} rejected changes: {lines:#?}");
    let warm = warm_rss.load(Ordering::Relaxed) as u64;
    eprintln!(
        "soak: {calls} calls ({streamed} streamed) in {:.1} s, {REWRITES} rewrites: {reloads} reloads, {rejected} rejected; spans {} ({by_version:?}); RSS after 2,000 calls {} MiB, peak {} MiB, end {} MiB",
        elapsed.as_secs_f64(),
        spans.len(),
        warm / 1024,
        peak_rss / 1024,
        end_rss / 1024
    );
    // Flat after warm-up: a leak of even 1 KiB per call would add ten times this allowance.
    assert!(
        end_rss <= warm + 16 * 1024 && peak_rss <= warm + 24 * 1024,
        "resident memory grew: {warm} KiB after warm-up, {peak_rss} KiB peak, {end_rss} KiB at the end"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&traces);
}

/// `in_flight` of a `/healthz` JSON report.
fn in_flight(report: &[u8]) -> Option<u64> {
    let report: serde_json::Value = serde_json::from_slice(report).ok()?;
    report["in_flight"].as_u64()
}
