//! `specter extract` prints exactly the span that is exported: every recorded exchange under
//! `tests/fixtures/` is sent through the `specter serve` binary over loopback (a stand-in
//! upstream replays the recorded response) and the span it writes to its traces file is
//! compared with what `specter::offline::extract` renders for the same exchange: name, kind,
//! status, attributes and events, time values aside. The same holds in every dialect and with
//! the semantic-conventions stability opt-in, on a chosen set of exchanges.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::serve;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value as Json};
use specter::offline::{extract, ExtractOptions, Recorded};
use specter::Catalog;
use specter::Dialect;

use serve::Served;
use specter::harness::cases;

/// Attributes that measure the run rather than the exchange.
const TIME_VALUES: &[&str] = &["gen_ai.response.time_to_first_chunk"];

/// One recorded exchange, as the fixture holds it.
struct Case {
    name: String,
    provider: String,
    method: String,
    /// Path and query of the recorded URL.
    target: String,
    status: u16,
    request: Vec<u8>,
    response: Vec<u8>,
    content_type: Option<String>,
    request_headers: Vec<(String, String)>,
    response_headers: Vec<(String, String)>,
}

fn lowercased(headers: Vec<(String, String)>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

fn read_case(dir: &Path) -> Case {
    let case = cases::Case::of_dir(dir);
    let data = cases::read_case(dir).unwrap();
    let after_scheme = data.url.split_once("://").unwrap().1;
    let target = after_scheme
        .find('/')
        .map_or("/".to_string(), |i| after_scheme[i..].to_string());
    Case {
        name: case.id(),
        provider: case.provider,
        method: data.method,
        target,
        status: data.status,
        request: data.request,
        response: data.response,
        content_type: data.content_type,
        request_headers: lowercased(data.request_headers),
        response_headers: lowercased(data.response_headers),
    }
}

/// Headers that describe a connection or a body's framing and encoding as recorded, not as
/// replayed here (bodies are stored decoded).
fn replayable(name: &str) -> bool {
    !matches!(
        name,
        "host"
            | "content-length"
            | "transfer-encoding"
            | "content-encoding"
            | "connection"
            | "keep-alive"
            | "accept-encoding"
            | "traceparent"
            | "tracestate"
    )
}

/// A stand-in upstream answering each request with the recorded response of the case named in
/// its `x-replay-case` header.
async fn replaying_upstream(cases: Arc<HashMap<String, Case>>) -> std::net::SocketAddr {
    serve::http_server(move |request: Request<Incoming>| {
        let cases = cases.clone();
        async move {
            let name = request.headers()["x-replay-case"]
                .to_str()
                .unwrap()
                .to_string();
            let _ = request.into_body().collect().await;
            let case = &cases[&name];
            let mut response = Response::builder().status(case.status);
            for (k, v) in &case.response_headers {
                if replayable(k) && k != "content-type" {
                    response = response.header(k, v);
                }
            }
            if let Some(content_type) = case.content_type.as_ref().or_else(|| {
                case.response_headers
                    .iter()
                    .find(|(k, _)| k == "content-type")
                    .map(|(_, v)| v)
            }) {
                response = response.header("content-type", content_type);
            }
            let body = Full::new(Bytes::from(case.response.clone()));
            Ok::<_, std::convert::Infallible>(response.body(body).unwrap())
        }
    })
    .await
}

/// A trace id of its own for each case, so that its span can be found in the file.
fn trace_id(index: usize) -> String {
    format!(
        "{:032x}",
        0x5eec_0000_0000_0000_0000_0000_0000_0000u128 + index as u128 + 1
    )
}

/// An OTLP JSON attribute value as the plain JSON value `extract` prints.
fn plain(value: &Json) -> Json {
    if let Some(s) = value.get("stringValue") {
        return s.clone();
    }
    if let Some(i) = value.get("intValue") {
        let n = i
            .as_str()
            .map_or_else(|| i.as_i64().unwrap(), |s| s.parse().unwrap());
        return json!(n);
    }
    if let Some(d) = value.get("doubleValue") {
        return d.clone();
    }
    if let Some(b) = value.get("boolValue") {
        return b.clone();
    }
    if let Some(array) = value.get("arrayValue") {
        let values = array["values"].as_array().cloned().unwrap_or_default();
        return Json::Array(values.iter().map(plain).collect());
    }
    panic!("unexpected OTLP value {value}")
}

/// `{key: value}` of an OTLP JSON attribute list.
fn attributes(list: &Json) -> BTreeMap<String, Json> {
    list.as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| (kv["key"].as_str().unwrap().to_string(), plain(&kv["value"])))
                .collect()
        })
        .unwrap_or_default()
}

/// The span of the traces file in the form `extract` prints it.
fn as_extracted(span: &Json) -> Json {
    let mut attributes = attributes(&span["attributes"]);
    for key in TIME_VALUES {
        attributes.remove(*key);
    }
    let events: Vec<Json> = span["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| json!({"name": e["name"], "attributes": self::attributes(&e["attributes"])}))
        .collect();
    // OTLP: SPAN_KIND_INTERNAL = 1, SPAN_KIND_CLIENT = 3; STATUS_CODE_ERROR = 2.
    let kind = match span["kind"].as_i64() {
        Some(3) => "client",
        Some(1) => "internal",
        other => panic!("unexpected span kind {other:?}"),
    };
    let status = match span["status"]["code"].as_i64() {
        Some(2) => json!({"code": "error", "message": span["status"]["message"]}),
        _ => json!({"code": "unset"}),
    };
    json!({
        "name": span["name"],
        "kind": kind,
        "status": status,
        "attributes": attributes,
        "events": events,
    })
}

/// Every span of an OTLP JSON lines file, by trace id.
fn spans_by_trace(path: &Path) -> HashMap<String, Json> {
    let mut spans = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let export: Json = serde_json::from_str(line).unwrap();
        for resource in export["resourceSpans"].as_array().unwrap() {
            for scope in resource["scopeSpans"].as_array().unwrap() {
                for span in scope["spans"].as_array().unwrap() {
                    let id = span["traceId"].as_str().unwrap().to_ascii_lowercase();
                    assert!(spans.insert(id, span.clone()).is_none(), "one span a call");
                }
            }
        }
    }
    spans
}

/// Normalises numbers so that `1.0` and `1` compare equal, as OTLP has only int and double.
fn normalised(value: &Json) -> Json {
    match value {
        Json::Number(n) => json!(n.as_f64().unwrap()),
        Json::Array(items) => Json::Array(items.iter().map(normalised).collect()),
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), normalised(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exported_span_is_the_extracted_span_for_every_fixture() {
    let exported = exported_and_extracted(None, &[], &[], vec![Dialect::Semconv]).await;
    assert!(
        exported.len() >= 130,
        "{} fixtures compared",
        exported.len()
    );
}

/// Cases of each kind: a chat, a streamed chat, tool calls, embeddings, an error, cache writes,
/// reasoning.
const DIALECT_CASES: &[&str] = &[
    "openai/chat_plain",
    "openai/chat_stream_include_usage",
    "openai/chat_tool_calls",
    "openai/embeddings",
    "openai/chat_error_404_model",
    "anthropic/messages_system_cache_control",
    "anthropic/messages_stream_thinking",
    "bedrock/converse",
    "gemini/stream_generate_content_thinking",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_dialect_exports_the_extracted_span_and_no_other_names() {
    let openinference = Dialect::named("openinference").unwrap();
    let spans = exported_and_extracted(
        Some(DIALECT_CASES),
        &["--dialect", "openinference"],
        &[],
        vec![openinference],
    )
    .await;
    let chat = &spans["openai/chat_plain"]["attributes"];
    assert_eq!(chat["openinference.span.kind"], "LLM");
    assert_eq!(chat["llm.provider"], "openai");
    assert_eq!(chat["llm.model_name"], "gpt-4o-mini-2024-07-18");
    // Set at the span's start by the semantic conventions before: now only OpenInference's names.
    for key in ["gen_ai.provider.name", "gen_ai.request.model"] {
        assert!(chat.get(key).is_none(), "{key}");
    }
    assert_eq!(
        spans["bedrock/converse"]["attributes"]["llm.provider"],
        "aws"
    );
    assert_eq!(
        spans["openai/embeddings"]["attributes"]["openinference.span.kind"],
        "EMBEDDING"
    );

    let agentops = Dialect::named("agentops").unwrap();
    let spans = exported_and_extracted(
        Some(DIALECT_CASES),
        &["--dialect", "agentops"],
        &[],
        vec![agentops],
    )
    .await;
    let chat = &spans["openai/chat_plain"]["attributes"];
    assert_eq!(chat["gen_ai.system"], "openai");
    assert_eq!(chat["gen_ai.request.streaming"], false);
    for key in ["gen_ai.provider.name", "gen_ai.request.stream"] {
        assert!(chat.get(key).is_none(), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stability_opt_in_switches_the_gateway_to_the_newest_names() {
    let latest = Dialect::named("gen_ai_latest_experimental").unwrap();
    let spans = exported_and_extracted(
        Some(DIALECT_CASES),
        &[],
        &[(
            "OTEL_SEMCONV_STABILITY_OPT_IN",
            "gen_ai_latest_experimental",
        )],
        vec![latest],
    )
    .await;
    let cached = &spans["anthropic/messages_system_cache_control"]["attributes"];
    assert_eq!(cached["gen_ai.usage.cache_write.input_tokens"], 1733);
    assert!(cached
        .get("gen_ai.usage.cache_creation.input_tokens")
        .is_none());
    assert_eq!(
        spans["openai/chat_plain"]["attributes"]["gen_ai.usage.audio.input_tokens"],
        0
    );
    let events: Vec<&Json> = spans["openai/chat_error_404_model"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["name"])
        .collect();
    assert_eq!(
        events,
        [
            &json!("exception"),
            &json!("gen_ai.client.operation.exception")
        ]
    );
}

/// Sends the recorded exchanges (all, or those named in `only`) through a `specter serve` run
/// with `extra_args` and `envs`, checks that each exported span is what `extract` renders in
/// `dialects`, and returns the spans by case name.
async fn exported_and_extracted(
    only: Option<&[&str]>,
    extra_args: &[&str],
    envs: &[(&str, &str)],
    dialects: Vec<Dialect>,
) -> HashMap<String, Json> {
    let dirs: Vec<PathBuf> = cases::discover(Path::new("tests/fixtures"))
        .unwrap()
        .into_iter()
        .map(|c| c.dir)
        .collect();
    let cases: HashMap<String, Case> = dirs
        .iter()
        .map(|d| read_case(d))
        .filter(|c| only.is_none_or(|names| names.contains(&c.name.as_str())))
        .map(|c| (c.name.clone(), c))
        .collect();
    if let Some(names) = only {
        assert_eq!(cases.len(), names.len(), "every named case exists");
    }
    let mut names: Vec<String> = cases.keys().cloned().collect();
    names.sort();
    let cases = Arc::new(cases);
    let upstream = replaying_upstream(cases.clone()).await;
    let catalog = Catalog::load(&[PathBuf::from("providers")]).unwrap();
    let mut args: Vec<String> = Vec::new();
    for provider in catalog.providers() {
        args.push("--upstream".into());
        args.push(format!("{}=http://{upstream}", provider.id));
    }
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("specter-exported-{}-{run}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let traces = dir.join("traces.jsonl");
    args.extend([
        "--providers".into(),
        "providers".into(),
        "--traces-file".into(),
        traces.display().to_string(),
        "--quiet".into(),
    ]);
    args.extend(extra_args.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let served = Served::start_async(&args, envs).await;

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for (index, name) in names.iter().enumerate() {
        let case = &cases[name];
        let mut request = Request::builder()
            .method(case.method.as_str())
            .uri(served.url(&format!("/{}{}", case.provider, case.target)));
        for (k, v) in &case.request_headers {
            if replayable(k) {
                request = request.header(k, v);
            }
        }
        let request = request
            .header("x-replay-case", name)
            .header(
                "traceparent",
                format!("00-{}-00f067aa0ba902b7-01", trace_id(index)),
            )
            .body(Full::new(Bytes::from(case.request.clone())))
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
            .await
            .unwrap_or_else(|_| panic!("{name}: no answer"))
            .unwrap();
        assert_eq!(response.status().as_u16(), case.status, "{name}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            body, case.response,
            "{name}: the client gets the upstream's bytes"
        );
    }
    served.stop_async().await;

    let exported = spans_by_trace(&traces);
    let mut compared = HashMap::new();
    for (index, name) in names.iter().enumerate() {
        let case = &cases[name];
        let span = exported
            .get(&trace_id(index))
            .unwrap_or_else(|| panic!("{name}: no span exported"));
        let url = format!("http://{upstream}{}", case.target);
        let exchange = Recorded {
            method: &case.method,
            url: &url,
            status: case.status,
            request: &case.request,
            response: &case.response,
            content_type: case.content_type.as_deref(),
            request_headers: &case.request_headers,
            response_headers: &case.response_headers,
        };
        let options = ExtractOptions::default()
            .with_provider(Some(case.provider.clone()))
            .with_dialects(dialects.clone());
        let extracted =
            extract(&catalog, &exchange, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        let span = as_extracted(span);
        assert_eq!(
            normalised(&span),
            normalised(&extracted["span"]),
            "{name}: exported (left) and extracted (right) spans differ"
        );
        compared.insert(name.clone(), span);
    }
    assert_eq!(compared.len(), names.len());
    let _ = std::fs::remove_dir_all(&dir);
    compared
}
