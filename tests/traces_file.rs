//! The traces file of `specter serve` as a process sees it: after `kill -9` in the middle of
//! load every line is a whole OTLP JSON `ExportTraceServiceRequest` of one span, a restart on the
//! same file cuts away a torn last line and appends valid lines, and the file rotates by the
//! size and count set in `specter.yaml`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::serve;

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serve::Served;

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("tests/fixtures/{path}")).unwrap()
}

/// The OpenAI upstream: the recorded chat answer to every request.
async fn upstream() -> SocketAddr {
    let answer = Bytes::from(fixture("openai/chat_plain/response.json"));
    serve::http_server(move |r: Request<Incoming>| {
        let answer = answer.clone();
        async move {
            let _ = r.into_body().collect().await;
            let mut response = Response::new(Full::new(answer));
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            Ok::<_, Infallible>(response)
        }
    })
    .await
}

/// A fresh empty directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("traces-file-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The span ids of the file, checking that it ends with a newline and that every line is an
/// OTLP JSON `ExportTraceServiceRequest` holding exactly one span.
fn span_ids(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{} ends inside a line",
        path.display()
    );
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let request: ExportTraceServiceRequest =
                serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!("{} line {}: not OTLP JSON ({e})", path.display(), i + 1)
                });
            let spans: Vec<_> = request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .collect();
            assert_eq!(
                spans.len(),
                1,
                "{} line {}: one span",
                path.display(),
                i + 1
            );
            hex::encode(&spans[0].span_id)
        })
        .collect()
}

/// Lines of the file so far (0 when it does not exist yet).
fn line_count(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// Sends chat calls `concurrency` at a time until `calls` were sent or `stop` is set; a worker
/// stops at its first failed call (the gateway was killed). Returns the calls answered.
async fn load(url: String, calls: usize, concurrency: usize, stop: Arc<AtomicBool>) -> usize {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let body = Bytes::from(fixture("openai/chat_plain/request.json"));
    let (next, answered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        let (next, answered, stop) = (next.clone(), answered.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) && next.fetch_add(1, Ordering::Relaxed) < calls {
                let request = Request::post(&url)
                    .header("content-type", "application/json")
                    .header("authorization", "Bearer sk-traces-file-test")
                    .body(Full::new(body.clone()))
                    .unwrap();
                let Ok(response) = client.request(request).await else {
                    return;
                };
                if response.status() != 200 || response.into_body().collect().await.is_err() {
                    return;
                }
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    answered.load(Ordering::Relaxed)
}

/// Runs `calls` calls to completion.
async fn drive(served: &Served, calls: usize) {
    let url = served.url("/openai/v1/chat/completions");
    let answered = load(url, calls, 4, Arc::new(AtomicBool::new(false))).await;
    assert_eq!(answered, calls);
}

/// The numbers of the clean stop report `stopped (C call(s), E span(s) ended; N span(s)
/// exported, M lost …, K dropped …)`.
fn report(lines: &[String]) -> Vec<usize> {
    let line = lines
        .iter()
        .find(|l| l.starts_with("specter: stopped ("))
        .unwrap_or_else(|| panic!("no stop report: {lines:#?}"));
    line.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_load_leaves_whole_lines_and_a_restart_appends_valid_ones() {
    let upstream = format!("openai=http://{}", upstream().await);
    let dir = scratch("kill");
    let traces = dir.join("specter-traces.jsonl");
    let traces_arg = traces.display().to_string();
    let args = [
        "--upstream",
        &upstream,
        "--traces-file",
        &traces_arg,
        "--quiet",
    ];
    let served = Served::start_async(&args, &[]).await;

    // Load that runs until the gateway dies (or, at most, 50,000 calls).
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(
        served.url("/openai/v1/chat/completions"),
        50_000,
        8,
        stop.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while line_count(&traces) < 200 {
        assert!(
            Instant::now() < deadline,
            "spans reach the file under load ({} lines)",
            line_count(&traces)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    served.signal("KILL");
    drop(served);
    stop.store(true, Ordering::Relaxed);
    let answered = running.await.unwrap();
    let after_kill = span_ids(&traces);
    assert!(after_kill.len() >= 200, "{} lines", after_kill.len());
    assert!(
        after_kill.len() <= answered + 8,
        "one line per call at most"
    );

    // A kill inside a write system call leaves the start of a line: reproduce it exactly.
    let text = std::fs::read_to_string(&traces).unwrap();
    let last = text.lines().last().unwrap();
    let torn = &last[..last.len() / 2];
    std::fs::OpenOptions::new()
        .append(true)
        .open(&traces)
        .unwrap()
        .write_all(torn.as_bytes())
        .unwrap();

    // The restart cuts the torn line away, says so, and appends whole lines after the old ones.
    let served = Served::start_async(&args, &[]).await;
    drive(&served, 30).await;
    let stopped = served.stop_async().await;
    assert_eq!(report(&stopped), [30, 30, 30, 0, 0], "{stopped:#?}");
    let after_restart = span_ids(&traces);
    let cut = format!("cut a torn last line ({} bytes)", torn.len());
    assert_eq!(
        stopped.iter().filter(|l| l.contains(&cut)).count(),
        1,
        "{stopped:#?}"
    );
    assert_eq!(after_restart.len(), after_kill.len() + 30);
    assert_eq!(after_restart[..after_kill.len()], after_kill[..]);
    let mut unique = after_restart.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), after_restart.len(), "every span once");
    eprintln!(
        "kill -9 after {answered} answered calls: {} lines, all whole; {} after the restart",
        after_kill.len(),
        after_restart.len()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_traces_file_rotates_by_the_size_and_count_of_the_configuration() {
    const MAX_BYTES: u64 = 16 * 1024;
    let upstream = format!("openai=http://{}", upstream().await);
    let dir = scratch("rotate");
    let traces = dir.join("specter-traces.jsonl");
    let config = dir.join("specter.yaml");
    std::fs::write(
        &config,
        format!(
            "traces_file: {}\ntraces_file_max_bytes: {MAX_BYTES}\ntraces_file_max_files: 2\n",
            traces.display()
        ),
    )
    .unwrap();
    let config_arg = config.display().to_string();
    let served = Served::start_async(
        &["--upstream", &upstream, "--config", &config_arg, "--quiet"],
        &[],
    )
    .await;
    drive(&served, 100).await;
    let stopped = served.stop_async().await;
    assert_eq!(report(&stopped), [100, 100, 100, 0, 0], "{stopped:#?}");

    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "specter-traces.1.jsonl",
            "specter-traces.2.jsonl",
            "specter-traces.jsonl",
            "specter.yaml"
        ]
    );
    let mut kept = 0;
    for name in ["specter-traces.2.jsonl", "specter-traces.1.jsonl"] {
        let path = dir.join(name);
        let size = std::fs::metadata(&path).unwrap().len();
        let lines = span_ids(&path).len();
        assert!(size <= MAX_BYTES, "{name}: {size} bytes");
        // A backup is full: one more line would have passed the limit.
        assert!(
            size + size / lines as u64 > MAX_BYTES,
            "{name}: {size} bytes"
        );
        kept += lines;
    }
    let current = std::fs::metadata(&traces).unwrap().len();
    assert!(current <= MAX_BYTES);
    kept += span_ids(&traces).len();
    assert!(kept < 100, "older spans were deleted with the oldest files");
    std::fs::remove_dir_all(dir).unwrap();
}
