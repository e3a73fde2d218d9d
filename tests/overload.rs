//! The `specter serve` binary under ordinary overload and hostile peers, on loopback: more
//! connections than its descriptors allow, descriptors exhausted, slow and idle clients, more
//! request bytes than its budget, and a shutdown whose grace period runs out with calls open.
//!
//! The tests marked `#[ignore]` measure what the README's Hardening table reports:
//! `cargo build --release --bin specter && cargo test --release --test overload -- --ignored --nocapture`.

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
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use serve::Served;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
/// Opened once to let every held request through.
type Release = tokio::sync::watch::Sender<bool>;

/// The longest any step of these tests waits.
const BOUND: Duration = Duration::from_secs(30);

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
const STREAM: &str =
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
const ANSWER: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
const FIRST_EVENT: &str = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"hel\"}}]}\n\n";
const LAST_EVENTS: &str = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";

/// An OpenAI stand-in. Requests carrying `x-hold` wait until `release` is opened (or the
/// bound passes) before answering; streamed requests send their first event at once, then
/// `x-gap-ms` apart (or held like the rest) send the others.
async fn upstream(release: Arc<Release>) -> SocketAddr {
    serve::http_server(move |request: Request<Incoming>| {
        let release = release.clone();
        async move {
            let hold = request.headers().contains_key("x-hold");
            let gap = request
                .headers()
                .get("x-gap-ms")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis);
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let streamed = String::from_utf8_lossy(&body).contains("\"stream\":true");
            let wait = async move {
                match gap {
                    Some(gap) => tokio::time::sleep(gap).await,
                    None if hold => {
                        let mut open = release.subscribe();
                        let _ = tokio::time::timeout(BOUND, open.wait_for(|open| *open)).await;
                    }
                    None => {}
                }
            };
            if !streamed {
                wait.await;
                let response = Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(ANSWER)).boxed())
                    .unwrap();
                return Ok::<_, Infallible>(response);
            }
            let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(4);
            tokio::spawn(async move {
                let _ = sender.send(Bytes::from(FIRST_EVENT)).await;
                wait.await;
                let _ = sender.send(Bytes::from(LAST_EVENTS)).await;
            });
            let frames = futures::stream::unfold(receiver, |mut receiver| async move {
                let data = receiver.recv().await?;
                Some((Ok::<_, Infallible>(Frame::data(data)), receiver))
            });
            let response = Response::builder()
                .header("content-type", "text/event-stream")
                .body(BodyExt::boxed(StreamBody::new(frames)))
                .unwrap();
            Ok(response)
        }
    })
    .await
}

/// One raw HTTP/1.1 request on a connection of its own.
fn raw_request(path: &str, body: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(body);
    head.into_bytes()
}

/// Reads until the end of a response head; returns the head.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// `GET /healthz` as JSON on a connection of its own.
async fn health(address: SocketAddr) -> serde_json::Value {
    let mut stream = tokio::time::timeout(BOUND, TcpStream::connect(address))
        .await
        .expect("connects within the bound")
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\naccept: application/json\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut answer))
        .await
        .expect("/healthz answers within the bound")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    serde_json::from_str(body).unwrap()
}

/// Sends a chat request (on a connection of its own) and returns the whole answer.
async fn chat(address: SocketAddr, body: &str, headers: &[(&str, &str)]) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let mut headers = headers.to_vec();
    headers.push(("connection", "close"));
    stream
        .write_all(&raw_request("/openai/v1/chat/completions", body, &headers))
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut answer))
        .await
        .expect("answered within the bound")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// The CPU time the process has used, from `/proc/PID/stat`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; the name ends at field 2.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A `/proc/PID/status` value in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

/// Waits (bounded) until `check` holds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + BOUND;
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until the `/healthz` report satisfies `check`.
async fn until_health(what: &str, address: SocketAddr, check: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + BOUND;
    loop {
        let report = health(address).await;
        if check(&report) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never happened: {what}: {report}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `specter serve` with `yaml` as its configuration and `upstream` as its OpenAI, writing no
/// traces file and no span lines.
async fn serve_configured(upstream: SocketAddr, dir: &Path, yaml: &str) -> Served {
    let config = config_file(dir, yaml);
    let openai = format!("openai=http://{upstream}");
    Served::start_async(
        &[
            "--upstream",
            &openai,
            "--config",
            &config,
            "--no-traces-file",
            "--quiet",
        ],
        &[],
    )
    .await
}

fn config_file(dir: &Path, yaml: &str) -> String {
    let path = dir.join("specter.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("specter-overload-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Opens `n` connections, each sending a chat request that the upstream holds; returns the
/// connections with a task each that reads the response head.
async fn held_calls(
    address: SocketAddr,
    n: usize,
) -> Vec<tokio::task::JoinHandle<(Option<String>, TcpStream)>> {
    let mut calls = Vec::new();
    for _ in 0..n {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(&raw_request(
                "/openai/v1/chat/completions",
                CHAT,
                &[("x-hold", "1")],
            ))
            .await
            .unwrap();
        calls.push(tokio::spawn(async move {
            let head = tokio::time::timeout(BOUND, read_head(&mut stream))
                .await
                .ok()
                .flatten();
            (head, stream)
        }));
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_new_calls_get_503_while_healthz_and_open_calls_carry_on() {
    let release = Arc::new(Release::new(false));
    let upstream = upstream(release.clone()).await;
    let openai = format!("openai=http://{upstream}");
    // 256 descriptors: a cap of (256 - 128) / 2 = 64 connections, each with its upstream socket,
    // leaving room for 64 more that are told 503.
    let served = tokio::task::spawn_blocking(move || {
        Served::start_wrapped(
            &["prlimit", "--nofile=256:256", "--"],
            &["--upstream", &openai, "--no-traces-file", "--quiet"],
            &[],
        )
    })
    .await
    .unwrap();
    assert!(
        served
            .wait_for(
                "open-file limit 256; up to 64 client connections at once",
                BOUND
            )
            .is_some(),
        "{:#?}",
        served.lines()
    );
    let calls = held_calls(served.address, 114).await;
    let refused = 114 - 64;
    let pid = served.pid();
    eventually("50 calls past the cap answered", || {
        calls.iter().filter(|c| c.is_finished()).count() >= refused
    })
    .await;
    let ticks = cpu_ticks(pid);
    let report = health(served.address).await;
    assert_eq!(report["connections"], 64, "{report}");
    assert_eq!(report["max_connections"], 64, "{report}");
    assert_eq!(report["refused_connections"], refused, "{report}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "at the cap: 64 connections held, /healthz answering, gateway CPU {} ticks in 1 s",
        cpu_ticks(pid) - ticks
    );
    // Past the cap: a 503 that says why; the calls under the cap still wait for the upstream.
    let mut answered = Vec::new();
    let mut open = Vec::new();
    for call in calls {
        if call.is_finished() {
            answered.push(call.await.unwrap().0.unwrap());
        } else {
            open.push(call);
        }
    }
    assert_eq!(answered.len(), refused);
    for head in &answered {
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("retry-after: 1"),
            "{head}"
        );
    }
    release.send_replace(true);
    for call in open {
        let (head, _stream) = call.await.unwrap();
        let head = head.expect("a call under the cap is answered");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    // With connections free again, calls go through.
    // The connection asking counts itself.
    until_health("connections closed", served.address, |r| {
        r["connections"] == 1
    })
    .await;
    let answer = chat(served.address, CHAT, &[]).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(ANSWER), "{answer}");
    served.stop_async().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_accept_loop_backs_off_and_recovers() {
    let release = Arc::new(Release::new(false));
    let upstream = upstream(release.clone()).await;
    let dir = temp_dir("fds");
    // A configured cap beyond what 192 descriptors allow: accepts run out of descriptors.
    let config = config_file(&dir, "max_connections: 100000\n");
    let openai = format!("openai=http://{upstream}");
    let served = tokio::task::spawn_blocking(move || {
        Served::start_wrapped(
            &["prlimit", "--nofile=192:192", "--"],
            &[
                "--upstream",
                &openai,
                "--config",
                &config,
                "--no-traces-file",
                "--quiet",
            ],
            &[],
        )
    })
    .await
    .unwrap();
    assert!(
        served
            .wait_for("max_connections 100000 is more than the 32", BOUND)
            .is_some(),
        "{:#?}",
        served.lines()
    );
    let pid = served.pid();
    let calls = held_calls(served.address, 150).await;
    // Held there for two seconds: a loop that retried at once would fail hundreds of thousands
    // of accepts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ticks = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "out of descriptors: gateway CPU {} ticks in 2 s",
        cpu_ticks(pid) - ticks
    );
    release.send_replace(true);
    let mut ok = 0;
    for call in calls {
        let (head, _stream) = call.await.unwrap();
        if head.is_some_and(|h| h.starts_with("HTTP/1.1 200")) {
            ok += 1;
        }
    }
    let report = health(served.address).await;
    let errors = report["accept_errors"].as_u64().unwrap();
    assert!(errors > 0, "descriptors ran out: {report}");
    assert!(errors < 1000, "the accept loop backs off: {report}");
    assert!(ok > 0, "calls were served");
    let answer = chat(served.address, CHAT, &[]).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "recovered: {answer}");
    served.stop_async().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_and_idle_connections_are_closed_while_long_streams_are_not() {
    let upstream = upstream(Arc::new(Release::new(false))).await;
    let dir = temp_dir("slow");
    let served = serve_configured(
        upstream,
        &dir,
        "header_read_timeout_ms: 500\nkeep_alive_timeout_ms: 1500\n",
    )
    .await;

    // A head sent a header line at a time, forever: cut at the header-read timeout.
    let mut slow = TcpStream::connect(served.address).await.unwrap();
    slow.write_all(b"POST /openai/v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut cut = false;
    for i in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if slow
            .write_all(format!("x-slow-{i}: 1\r\n").as_bytes())
            .await
            .is_err()
        {
            cut = true;
            break;
        }
        let mut byte = [0u8; 1];
        if let Ok(read) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut byte)).await
        {
            // The gateway answered (408) or closed: either way the head is refused.
            let _ = read;
            cut = true;
            break;
        }
    }
    assert!(cut, "a head trickled for 10 s must be cut");

    // An idle keep-alive connection: kept past the header-read timeout (idle time is not a slow
    // head), closed after its own timeout.
    let mut idle = TcpStream::connect(served.address).await.unwrap();
    for _ in 0..2 {
        idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let head = read_head(&mut idle).await.unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut body = [0u8; 3];
        idle.read_exact(&mut body).await.unwrap();
        assert_eq!(&body, b"ok\n");
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(BOUND, idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "an idle connection is closed");
    assert!(rest.is_empty(), "nothing more is sent: {rest:?}");

    // A stream with gaps longer than both timeouts is a request in progress: never cut.
    let answer = chat(served.address, STREAM, &[("x-gap-ms", "2500")]).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("data: [DONE]"), "{answer}");
    served.stop_async().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_past_the_shared_budget_get_503_until_room_frees_up() {
    let upstream = upstream(Arc::new(Release::new(false))).await;
    let dir = temp_dir("budget");
    let served = serve_configured(upstream, &dir, "max_buffered_request_bytes: 8388608\n").await;
    // A 3 MiB body to a route no operation matches (forwarded, not instrumented), announced and
    // half sent: its 3 MiB are held from the 8 MiB budget.
    let big = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(3 << 20)
    );
    let request = raw_request("/openai/v1/files", &big, &[("connection", "close")]);
    let (sent, unsent) = request.split_at(request.len() / 2);
    let mut holder = TcpStream::connect(served.address).await.unwrap();
    holder.write_all(sent).await.unwrap();
    until_health("3 MiB held", served.address, |r| {
        r["buffered_request_bytes"].as_u64() >= Some(3 << 20)
    })
    .await;
    // A 2 MiB chat (announced) and a chunked one: read, but an instrumented call holds three
    // times its body (9 MiB in all): no room, a 503 that says why.
    let medium = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "b".repeat(2 << 20)
    );
    let answer = chat(served.address, &medium, &[]).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{}", &answer[..200]);
    assert!(answer.contains(r#""type":"overloaded""#), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    let mut chunked = TcpStream::connect(served.address).await.unwrap();
    chunked
        .write_all(b"POST /openai/v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    for piece in medium.as_bytes().chunks(64 << 10) {
        let mut frame = format!("{:x}\r\n", piece.len()).into_bytes();
        frame.extend_from_slice(piece);
        frame.extend_from_slice(b"\r\n");
        if chunked.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = chunked.write_all(b"0\r\n\r\n").await;
    let head = read_head(&mut chunked).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    // The held body completes and goes through; then there is room again.
    holder.write_all(unsent).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(BOUND, holder.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    let answer = chat(served.address, &medium, &[]).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{}", &answer[..100]);
    assert_eq!(health(served.address).await["buffered_request_bytes"], 0);
    served.stop_async().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The spans in an OTLP JSON lines file: `error.type` of each (empty when none).
fn error_types(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut types = Vec::new();
    for line in text.lines() {
        let export: serde_json::Value = serde_json::from_str(line).unwrap();
        for resource in export["resourceSpans"].as_array().unwrap() {
            for scope in resource["scopeSpans"].as_array().unwrap() {
                for span in scope["spans"].as_array().unwrap() {
                    let attributes: BTreeMap<&str, &serde_json::Value> = span["attributes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|kv| (kv["key"].as_str().unwrap(), &kv["value"]))
                        .collect();
                    types.push(
                        attributes
                            .get("error.type")
                            .and_then(|v| v["stringValue"].as_str())
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
            }
        }
    }
    types
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cut_at_the_end_of_the_shutdown_grace_still_end_their_spans() {
    let release = Arc::new(Release::new(false));
    let upstream = upstream(release.clone()).await;
    let dir = temp_dir("shutdown");
    let config = config_file(&dir, "shutdown_grace_ms: 300\n");
    let traces = dir.join("traces.jsonl");
    let openai = format!("openai=http://{upstream}");
    let traces_arg = traces.display().to_string();
    let served = Served::start_async(
        &[
            "--upstream",
            &openai,
            "--config",
            &config,
            "--traces-file",
            &traces_arg,
            "--quiet",
        ],
        &[],
    )
    .await;
    // Three streams that sent their first event, and two calls still waiting for the upstream.
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(served.address).await.unwrap();
        stream
            .write_all(&raw_request(
                "/openai/v1/chat/completions",
                STREAM,
                &[("x-hold", "1")],
            ))
            .await
            .unwrap();
        let head = read_head(&mut stream).await.unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        streams.push(stream);
    }
    let waiting = held_calls(served.address, 2).await;
    until_health("5 calls in flight", served.address, |r| r["in_flight"] == 5).await;
    let lines = served.stop_async().await;
    assert!(
        lines.iter().any(|l| l
            == "specter: stopped (5 call(s), 5 span(s) ended; 5 span(s) exported, 0 lost to export failures, 0 dropped by a full queue)"),
        "{lines:#?}"
    );
    assert_eq!(
        error_types(&traces),
        vec!["gateway_shutdown"; 5],
        "every cut call ends its span as cut by the shutdown"
    );
    drop(streams);
    drop(waiting);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Peak resident memory of the gateway while 16 clients send 30 MiB bodies at once, with the
/// default request budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn measure_memory_with_16_clients_sending_30_mib_bodies() {
    let upstream = upstream(Arc::new(Release::new(false))).await;
    let openai = format!("openai=http://{upstream}");
    let served =
        Served::start_async(&["--upstream", &openai, "--no-traces-file", "--quiet"], &[]).await;
    let pid = served.pid();
    let before = status_kib(pid, "VmRSS");
    let body = Arc::new(format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "c".repeat(30 << 20)
    ));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let body = body.clone();
        let address = served.address;
        clients.push(tokio::spawn(async move {
            let answer = chat(address, &body, &[]).await;
            answer.get(..12).unwrap_or_default().to_string()
        }));
    }
    let mut statuses = BTreeMap::<String, usize>::new();
    for client in clients {
        *statuses.entry(client.await.unwrap()).or_default() += 1;
    }
    println!(
        "16 clients x 30 MiB: RSS {} MiB before, peak {} MiB; answers {statuses:?}",
        before >> 10,
        status_kib(pid, "VmHWM") >> 10
    );
    served.stop_async().await;
}

/// Reads one HTTP/2 frame: (type, flags, payload).
async fn h2_frame(stream: &mut TcpStream) -> Option<(u8, u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.ok()?;
    let length = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], payload))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_peer_that_stops_answering_pings_is_disconnected() {
    let upstream = upstream(Arc::new(Release::new(false))).await;
    let dir = temp_dir("h2ping");
    let yaml = "http2_keep_alive_interval_ms: 300\nhttp2_keep_alive_timeout_ms: 300\n";
    let served = serve_configured(upstream, &dir, yaml).await;
    // A client that speaks HTTP/2 (prior knowledge), acknowledges the server's settings, then
    // goes silent: it never answers a PING.
    let mut peer = TcpStream::connect(served.address).await.unwrap();
    peer.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    peer.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut pinged = false;
    let closed = tokio::time::timeout(BOUND, async {
        while let Some((kind, flags, _)) = h2_frame(&mut peer).await {
            match (kind, flags & 1) {
                // SETTINGS from the server: acknowledge.
                (4, 0) => peer.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).await.unwrap(),
                // PING: never answered.
                (6, 0) => pinged = true,
                _ => {}
            }
        }
    })
    .await;
    assert!(pinged, "the gateway pings an idle HTTP/2 peer");
    assert!(closed.is_ok(), "and drops it when the PING goes unanswered");
    served.stop_async().await;
    let _ = std::fs::remove_dir_all(&dir);
}
