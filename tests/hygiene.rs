//! What the `specter` binary writes, attacked from the outside:
//!
//! - content capture fails closed: an unknown value of
//!   `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` (or of `capture_content`) stops the
//!   gateway before it listens, and the spellings of "off" keep prompts out of the traces file;
//! - an API key that the upstream echoes in its error body reaches neither the traces file nor
//!   stderr, whole or masked;
//! - newlines and escape sequences in upstream text (model names, error messages) neither forge
//!   stderr lines nor reach the terminal.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::serve;

use std::convert::Infallible;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serve::{http_server, Served};

const VARIABLE: &str = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT";

fn unique(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}-{}-{nanos:x}", std::process::id())
}

fn temp_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique(name))
}

/// Runs `specter serve ARGS` with `envs` (and a clean `OTEL_*` environment) until it exits,
/// killing it after 20 s; returns its exit code (`None` when it had to be killed) and stderr.
fn serve_until_exit(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let stderr_path = temp_file("stderr");
    let mut command = Command::new(env!("CARGO_BIN_EXE_specter"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--no-traces-file"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    for key in [
        VARIABLE,
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "SPECTER_CONFIG",
        "SPECTER_LISTEN",
        "SPECTER_PROVIDERS",
    ] {
        command.env_remove(key);
    }
    command.envs(envs.iter().copied());
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    let _ = std::fs::remove_file(&stderr_path);
    (code, stderr)
}

#[test]
fn unknown_capture_values_stop_the_gateway() {
    let (code, stderr) = serve_until_exit(&[], &[(VARIABLE, "maybe")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: {VARIABLE}: `maybe` is not a content capture mode; accepted (case-insensitive): true, false, NO_CONTENT, SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT")),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
    assert_eq!(
        stderr.matches("is not a content capture mode").count(),
        1,
        "said once: {stderr}"
    );

    // The value is quoted with its control characters escaped.
    let (code, stderr) = serve_until_exit(&[], &[(VARIABLE, "on\n\u{1b}[31mforged")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("`on\\n\\u{1b}[31mforged`"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let config = temp_file("capture.yaml");
    std::fs::write(&config, "capture_content: maybe\n").unwrap();
    let (code, stderr) = serve_until_exit(&["--config", config.to_str().unwrap()], &[]);
    let _ = std::fs::remove_file(&config);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: capture_content in the configuration file: `maybe` is not a content capture mode; accepted"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("is not a content capture mode").count(),
        1,
        "said once: {stderr}"
    );

    // An empty variable is unset: the gateway starts (and is stopped).
    let served = Served::start(&["--no-traces-file"], &[(VARIABLE, "")]);
    let (status, lines) = served.stop();
    assert!(status.success(), "{lines:#?}");
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("tests/fixtures/{path}")).unwrap()
}

/// Posts `body` to the gateway with `headers`; returns the status and the body.
async fn post(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = hyper::Request::post(url).header("content-type", "application/json");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .unwrap()
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// An upstream answering every request with the recorded OpenAI chat response, the model name
/// replaced by `model`, or with a 401 whose body is `error_body` when the request asks for it
/// with `x-fail: 1`.
async fn upstream(model: String, error_body: String) -> std::net::SocketAddr {
    http_server(move |request: hyper::Request<hyper::body::Incoming>| {
        let (model, error_body) = (model.clone(), error_body.clone());
        async move {
            let fail = request.headers().contains_key("x-fail");
            let (status, body) = if fail {
                (401, error_body.into_bytes())
            } else {
                let mut json: serde_json::Value =
                    serde_json::from_slice(&fixture("openai/chat_plain/response.json")).unwrap();
                json["model"] = serde_json::Value::String(model);
                (200, serde_json::to_vec(&json).unwrap())
            };
            let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            Ok::<_, Infallible>(response)
        }
    })
    .await
}

/// Waits (bounded) until the gateway printed `n` span lines.
fn wait_for_span_lines(served: &Served, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while span_lines(&served.lines()) < n {
        assert!(Instant::now() < deadline, "{:#?}", served.lines());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn span_lines(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|l| l.starts_with("specter: openai chat"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_off_keeps_prompts_out_of_the_traces_file() {
    let address = upstream("gpt-4o-mini-2024-07-18".into(), String::new()).await;
    for value in ["off", "0", "disabled"] {
        let traces = temp_file("off-traces.jsonl");
        let served = Served::start_async(
            &[
                "--upstream",
                &format!("openai=http://{address}"),
                "--traces-file",
                traces.to_str().unwrap(),
            ],
            &[(VARIABLE, value)],
        )
        .await;
        let (status, _) = post(
            &served.url("/openai/v1/chat/completions"),
            &[],
            fixture("openai/chat_plain/request.json"),
        )
        .await;
        assert_eq!(status, 200);
        let served = tokio::task::spawn_blocking(move || {
            wait_for_span_lines(&served, 1);
            served
        })
        .await
        .unwrap();
        served.stop_async().await;
        let file = std::fs::read_to_string(&traces).unwrap();
        let _ = std::fs::remove_file(&traces);
        assert_eq!(file.matches("\"spanId\"").count(), 1, "{value}: {file}");
        assert!(
            file.contains("gen_ai.usage.input_tokens"),
            "{value}: {file}"
        );
        for content in [
            "gen_ai.input.messages",
            "gen_ai.output.messages",
            "Say this is a test",
            "This is a test.",
        ] {
            assert!(!file.contains(content), "{value}: {content} in {file}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_keys_and_control_characters_stay_out_of_the_output() {
    let key = unique("sk-echoed");
    // OpenAI's form of a masked echo: the first characters, stars, the last four.
    let masked = format!("{}{}{}", &key[..8], "*".repeat(20), &key[key.len() - 4..]);
    let forged = "specter: openai chat forged-model in=1 out=1 0.001s ok";
    let model = format!("gpt-4o\n{forged}\u{1b}[31m");
    let error_body = serde_json::json!({"error": {
        "message": format!("Incorrect API key provided: {key}. Or {masked}.\n{forged}\u{1b}[2J"),
        "type": "invalid_request_error",
        "code": "invalid_api_key",
    }})
    .to_string();
    let address = upstream(model, error_body).await;
    let traces = temp_file("echo-traces.jsonl");
    let served = Served::start_async(
        &[
            "--upstream",
            &format!("openai=http://{address}"),
            "--traces-file",
            traces.to_str().unwrap(),
        ],
        &[(VARIABLE, "SPAN_AND_EVENT")],
    )
    .await;
    let url = served.url("/openai/v1/chat/completions");
    let bearer = format!("Bearer {key}");
    let auth = [("authorization", bearer.as_str())];
    let (status, body) = post(
        &url,
        &[auth[0], ("x-fail", "1")],
        fixture("openai/chat_plain/request.json"),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        body.contains(&key),
        "the client gets the upstream's body as it is"
    );
    let (status, _) = post(&url, &auth, fixture("openai/chat_plain/request.json")).await;
    assert_eq!(status, 200);
    let served = tokio::task::spawn_blocking(move || {
        wait_for_span_lines(&served, 2);
        served
    })
    .await
    .unwrap();
    let stderr = served.stop_async().await;
    let file = std::fs::read_to_string(&traces).unwrap();
    let _ = std::fs::remove_file(&traces);

    // The spans are there, with the upstream's error and the scrubbed key.
    assert_eq!(file.matches("\"spanId\"").count(), 2, "{file}");
    assert!(file.contains("invalid_api_key"), "{file}");
    assert!(
        file.contains("Incorrect API key provided: [REDACTED]. Or [REDACTED]."),
        "{file}"
    );
    for (what, text) in [("the traces file", &file), ("stderr", &stderr.join("\n"))] {
        assert!(!text.contains(&key), "{what} holds the key:\n{text}");
        assert!(
            !text.contains(&masked),
            "{what} holds the masked key:\n{text}"
        );
    }

    // One line per span, nothing forged, no escape character.
    let joined = stderr.join("\n");
    assert!(!joined.contains('\u{1b}'), "{joined}");
    assert_eq!(span_lines(&stderr), 2, "{stderr:#?}");
    assert!(
        !stderr.iter().any(|l| l.starts_with(forged)),
        "a forged line: {stderr:#?}"
    );
    let ok = stderr
        .iter()
        .find(|l| l.ends_with(" ok") && l.starts_with("specter: openai chat"))
        .unwrap();
    assert!(
        ok.starts_with(&format!(
            "specter: openai chat gpt-4o\\n{forged}\\u{{1b}}[31m in=12 out=5 "
        )),
        "{ok}"
    );
    let failed = stderr
        .iter()
        .find(|l| l.contains(" error=invalid_api_key: "))
        .unwrap();
    assert!(
        failed.ends_with(&format!(
            "error=invalid_api_key: Incorrect API key provided: [REDACTED]. Or [REDACTED].\\n{forged}\\u{{1b}}[2J"
        )),
        "{failed}"
    );
}
