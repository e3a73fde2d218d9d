//! `specter extract` prints exactly the span that is exported: every recorded exchange under
//! `tests/fixtures/` is sent through the `specter serve` binary over loopback (a stand-in
//! upstream replays the recorded response) and the span it writes to its traces file is
//! compared with what `specter::offline::extract` renders for the same exchange: name, kind,
//! status, attributes and events, time values aside.

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

use common::{fixture_cases, meta_value};
use serve::Served;

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

fn headers_of(meta: &Json, key: &str) -> Vec<(String, String)> {
    meta[key]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    (k.to_ascii_lowercase(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn read_case(dir: &Path) -> Case {
    let case = dir.file_name().unwrap().to_str().unwrap().to_string();
    let provider = dir
        .parent()
        .and_then(|p| p.file_name())
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let text = std::fs::read_to_string(dir.join("meta.yaml")).unwrap();
    let meta = specter::yaml::parse(&text).unwrap().value;
    let url = meta_value(&text, "url").unwrap();
    let after_scheme = url.split_once("://").unwrap().1;
    let target = after_scheme
        .find('/')
        .map_or("/".to_string(), |i| after_scheme[i..].to_string());
    let request_file = meta_value(&text, "request_file").unwrap_or_else(|| "request.json".into());
    let response_file = meta_value(&text, "response_file").unwrap();
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_default();
    Case {
        name: format!("{provider}/{case}"),
        provider,
        method: meta_value(&text, "method").unwrap(),
        target,
        status: meta_value(&text, "status").unwrap().parse().unwrap(),
        request: read(&request_file),
        response: read(&response_file),
        content_type: meta_value(&text, "response_content_type").filter(|c| c != "null"),
        request_headers: headers_of(&meta, "request_headers"),
        response_headers: headers_of(&meta, "response_headers"),
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
    let dirs: Vec<PathBuf> = fixture_cases();
    let cases: HashMap<String, Case> = dirs
        .iter()
        .map(|d| read_case(d))
        .map(|c| (c.name.clone(), c))
        .collect();
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
    let dir = std::env::temp_dir().join(format!("specter-exported-{}", std::process::id()));
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
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let served = Served::start_async(&args, &[]).await;

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
    let mut compared = 0;
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
        let options = ExtractOptions {
            provider: Some(case.provider.clone()),
            ..ExtractOptions::default()
        };
        let extracted =
            extract(&catalog, &exchange, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            normalised(&as_extracted(span)),
            normalised(&extracted["span"]),
            "{name}: exported (left) and extracted (right) spans differ"
        );
        compared += 1;
    }
    assert_eq!(compared, names.len());
    assert!(compared >= 130, "{compared} fixtures compared");
    let _ = std::fs::remove_dir_all(&dir);
}
