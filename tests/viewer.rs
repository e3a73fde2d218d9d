//! The trace viewer over loopback HTTP against the real binary: `specter serve` lists the calls
//! it forwarded (live, from its traces file), filters them by session, opens one call with its
//! span, totals them, and answers span text as inert JSON; `specter view` serves a traces file
//! written earlier and keeps to loopback without `--allow-remote`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
#[path = "common/upstream.rs"]
mod upstream;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::serve::Served;
use serde_json::{json, Value};
use upstream::{StreamEnd, Upstream};

const HOSTILE: &str = "<script>alert('owned')</script><img src=x onerror=alert(1)>";

async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let response = reqwest::Client::new().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

async fn get_json(url: &str) -> Value {
    let (status, _, body) = get(url).await;
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls the call list (at most 10 s) until it holds `count` calls.
async fn wait_for_calls(base: &str, count: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = get_json(&format!("{base}/-/viewer/api/calls")).await;
        if page["total"] == count || Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn chat(gateway: &str, body: Value, session: Option<&str>) {
    let mut request = reqwest::Client::new()
        .post(format!("{gateway}/openai/v1/chat/completions"))
        .header("authorization", "Bearer sk-test")
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(session) = session {
        request = request.header("x-specter-session-id", session);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_lists_filters_opens_and_totals_its_calls() {
    let upstream = Upstream::start(StreamEnd::Whole).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let traces = dir.path().join("traces.jsonl");
    let served = Served::start_async(
        &[
            "--upstream",
            &format!("openai={}", upstream.url("")),
            "--traces-file",
            traces.to_str().unwrap(),
            "--quiet",
        ],
        &[("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")],
    )
    .await;
    let base = served.url("");
    chat(
        &base,
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": HOSTILE}]}),
        Some("session-a"),
    )
    .await;
    chat(
        &base,
        json!({"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "stream please"}]}),
        None,
    )
    .await;

    let page = wait_for_calls(&base, 2).await;
    assert_eq!(page["total"], 2, "{page}");
    let calls = page["calls"].as_array().unwrap();
    // Newest first: the streamed call, then the plain one.
    assert_eq!(calls[0]["streamed"], true);
    assert_eq!(calls[1]["streamed"], false);
    for call in calls {
        assert_eq!(call["provider"], "openai");
        assert_eq!(call["request_model"], "gpt-4o-mini");
        assert_eq!(call["error"], false);
    }
    assert_eq!(calls[1]["response_model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(calls[1]["input_tokens"], 12);
    assert_eq!(calls[1]["output_tokens"], 5);
    assert_eq!(calls[1]["session"], "session-a");
    assert!(calls[0]["ttfc_ms"].as_f64().unwrap() >= 0.0);

    let session = get_json(&format!("{base}/-/viewer/api/calls?session=session-a")).await;
    assert_eq!(session["total"], 1);
    assert_eq!(session["calls"][0]["span_id"], calls[1]["span_id"]);
    let streamed = get_json(&format!("{base}/-/viewer/api/calls?q=nothing-like-this")).await;
    assert_eq!(streamed["total"], 0);

    // One call: the span read back from the traces file, its hostile text inert.
    let url = format!(
        "{base}/-/viewer/api/call/{}/{}",
        calls[1]["trace_id"].as_str().unwrap(),
        calls[1]["span_id"].as_str().unwrap()
    );
    let (status, headers, body) = get(&url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    assert!(!body.contains('<') && !body.contains('>'), "{body}");
    let call: Value = serde_json::from_str(&body).unwrap();
    let input = call["span"]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|kv| kv["key"] == "gen_ai.input.messages")
        .unwrap()["value"]["stringValue"]
        .as_str()
        .unwrap()
        .to_string();
    let messages: Value = serde_json::from_str(&input).unwrap();
    assert_eq!(messages[0]["parts"][0]["content"], HOSTILE);

    let totals = get_json(&format!("{base}/-/viewer/api/totals")).await;
    assert_eq!(totals["all"]["calls"], 2);
    let input_total = calls
        .iter()
        .map(|c| c["input_tokens"].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(totals["all"]["input_tokens"], input_total);
    let groups = get_json(&format!("{base}/-/viewer/api/groups?by=session")).await;
    assert_eq!(groups["total"], 1);
    assert_eq!(groups["groups"][0]["key"], "session-a");
    assert_eq!(groups["groups"][0]["calls"], 1);

    // The page, read-only, and only under a loopback name.
    let (status, headers, html) = get(&format!("{base}/-/viewer/")).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(
        html.contains("app.js") && !html.contains("<script>"),
        "{html}"
    );
    let (_, _, script) = get(&format!("{base}/-/viewer/app.js")).await;
    assert!(
        !script.contains(".innerHTML"),
        "span text is set with textContent only"
    );
    let post = reqwest::Client::new()
        .post(format!("{base}/-/viewer/api/calls"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    let rebound = reqwest::Client::new()
        .get(format!("{base}/-/viewer/api/calls"))
        .header(
            "host",
            format!("attacker.example:{}", served.address.port()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    served.stop_async().await;
}

/// `specter view ARGS`, its address read from its stderr (at most 20 s).
struct View {
    child: std::process::Child,
    address: String,
}

impl View {
    fn start(args: &[&str]) -> View {
        let mut child = Command::new(env!("CARGO_BIN_EXE_specter"))
            .arg("view")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while let Ok(line) =
            receive.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if let Some(rest) = line.split("trace viewer at http://").nth(1) {
                let address = rest.split('/').next().unwrap().to_string();
                return View { child, address };
            }
            seen.push(line);
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("specter view did not start: {seen:#?}");
    }
}

impl Drop for View {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn specter_view_serves_a_traces_file_written_earlier() {
    let upstream = Upstream::start(StreamEnd::Whole).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let traces = dir.path().join("traces.jsonl");
    let served = Served::start_async(
        &[
            "--upstream",
            &format!("openai={}", upstream.url("")),
            "--traces-file",
            traces.to_str().unwrap(),
            "--quiet",
        ],
        &[],
    )
    .await;
    let base = served.url("");
    for session in ["one", "two", "two"] {
        chat(
            &base,
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
            Some(session),
        )
        .await;
    }
    served.stop_async().await;

    let view = View::start(&[traces.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let base = format!("http://{}", view.address);
    let page = get_json(&format!("{base}/-/viewer/api/calls")).await;
    assert_eq!(page["total"], 3, "{page}");
    let two = get_json(&format!("{base}/-/viewer/api/calls?session=two")).await;
    assert_eq!(two["total"], 2);
    let totals = get_json(&format!("{base}/-/viewer/api/totals")).await;
    assert_eq!(totals["all"]["calls"], 3);
    assert_eq!(totals["all"]["input_tokens"], 36);
    assert_eq!(totals["by_model"][0]["model"], "gpt-4o-mini-2024-07-18");
    let (status, _, _) = get(&format!("{base}/-/viewer/")).await;
    assert_eq!(status, 200);
}

#[test]
fn specter_view_keeps_to_loopback_without_allow_remote() {
    let dir = tempfile::tempdir().unwrap();
    let traces = dir.path().join("traces.jsonl");
    std::fs::write(&traces, "").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_specter"))
        .args(["view", traces.to_str().unwrap(), "--listen", "0.0.0.0:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--allow-remote"), "{stderr}");
}
