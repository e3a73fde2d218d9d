//! Request context through `specter serve` (the real binary) over loopback HTTP: headers, W3C
//! baggage and request body fields become span attributes, the specter-only headers never reach
//! the upstream (a stand-in that records what it receives), a session id is recorded while API
//! keys and session tokens are still scrubbed, and the Helicone example configuration maps the
//! headers it documents. The spans are read back from the traces file.

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
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use serve::Served;

const API_KEY: &str = "sk-context-test-0123456789abcdef";
const SESSION_TOKEN: &str = "tok-session-secret-98765";

/// Request headers as the upstream received them, one map per request (lower-case names).
type Seen = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

/// A stand-in upstream: records each request's headers and answers the fixture of its path
/// (OpenAI chat, Anthropic messages), or a 401 that echoes the credentials it was sent.
async fn upstream() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let address = serve::http_server(move |r: Request<Incoming>| {
        let log = log.clone();
        async move {
            let headers: BTreeMap<String, String> = r
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                .collect();
            let path = r.uri().path().to_string();
            let _ = r.into_body().collect().await;
            let echo = headers.contains_key("x-echo-credentials");
            let (status, body) = if echo {
                let token = headers.get("x-session-token").cloned().unwrap_or_default();
                let auth = headers.get("authorization").cloned().unwrap_or_default();
                let message = format!("refused {auth} with token {token}");
                (
                    401,
                    json!({"error": {"message": message, "type": "invalid_request_error"}})
                        .to_string()
                        .into_bytes(),
                )
            } else if path.ends_with("/messages") {
                (
                    200,
                    std::fs::read("tests/fixtures/anthropic/messages_plain/response.json").unwrap(),
                )
            } else {
                (
                    200,
                    std::fs::read("tests/fixtures/openai/chat_plain/response.json").unwrap(),
                )
            };
            log.lock().unwrap().push(headers);
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            Ok::<_, Infallible>(response)
        }
    })
    .await;
    (address, seen)
}

fn scratch(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("context-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An OTLP JSON attribute value as plain JSON.
fn plain(value: &Value) -> Value {
    if let Some(s) = value.get("stringValue") {
        return s.clone();
    }
    if let Some(i) = value.get("intValue") {
        return json!(i
            .as_str()
            .map_or_else(|| i.as_i64().unwrap(), |s| s.parse().unwrap()));
    }
    if let Some(d) = value.get("doubleValue") {
        return d.clone();
    }
    if let Some(b) = value.get("boolValue") {
        return b.clone();
    }
    if let Some(a) = value.get("arrayValue") {
        return Value::Array(a["values"].as_array().unwrap().iter().map(plain).collect());
    }
    Value::Null
}

/// The attributes of every span of the traces file, in order.
fn spans(path: &Path) -> Vec<BTreeMap<String, Value>> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .flat_map(|line| {
            let request: Value = serde_json::from_str(line).unwrap();
            let mut out = Vec::new();
            for r in request["resourceSpans"].as_array().unwrap() {
                for s in r["scopeSpans"].as_array().unwrap() {
                    for span in s["spans"].as_array().unwrap() {
                        out.push(
                            span["attributes"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|kv| {
                                    (kv["key"].as_str().unwrap().to_string(), plain(&kv["value"]))
                                })
                                .collect(),
                        );
                    }
                }
            }
            out
        })
        .collect()
}

/// Starts the gateway with both upstreams on the stand-in and a traces file; `extra` adds
/// arguments (a configuration file).
async fn gateway(name: &str, upstream: SocketAddr, extra: &[&str]) -> (Served, PathBuf) {
    let traces = scratch(name).join("traces.jsonl");
    let openai = format!("openai=http://{upstream}");
    let anthropic = format!("anthropic=http://{upstream}");
    let traces_arg = traces.display().to_string();
    let mut args = vec![
        "--upstream",
        &openai,
        "--upstream",
        &anthropic,
        "--traces-file",
        &traces_arg,
    ];
    args.extend_from_slice(extra);
    (Served::start_async(&args, &[]).await, traces)
}

async fn send(served: &Served, path: &str, headers: &[(&str, &str)], body: Value) -> u16 {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::post(served.url(path))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {API_KEY}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await.unwrap();
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_baggage_and_body_fields_become_attributes_and_specter_headers_stay_here() {
    let (address, seen) = upstream().await;
    let (served, traces) = gateway("defaults", address, &[]).await;
    let status = send(
        &served,
        "/openai/v1/chat/completions",
        &[
            ("X-Specter-Session-Id", "sess-0123456789"),
            ("X-Specter-Property-Team", "Search\tRanking"),
            ("X-Specter-Property-Long", &"x".repeat(300)),
            (
                "baggage",
                "gen_ai.agent.name=planner%20one;ttl=5, gen_ai.conversation.id=conv-7,unrelated=1",
            ),
            ("X-Request-Tag", "kept"),
        ],
        json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi"}],
            "user": "body-user-1",
            "metadata": {"Tenant": "acme", "nested": {"no": 1}},
        }),
    )
    .await;
    assert_eq!(status, 200);
    let lines = served.stop_async().await;

    // The upstream got the request without the specter-only headers, everything else kept.
    let received = seen.lock().unwrap()[0].clone();
    assert!(
        received.keys().all(|k| !k.starts_with("x-specter-")),
        "specter headers reached the upstream: {received:?}"
    );
    assert_eq!(received["authorization"], format!("Bearer {API_KEY}"));
    assert_eq!(received["x-request-tag"], "kept");
    assert!(received["baggage"].contains("gen_ai.agent.name"));

    let all = spans(&traces);
    assert_eq!(all.len(), 1);
    let span = &all[0];
    assert_eq!(span["session.id"], "sess-0123456789");
    // The body's `user`, read by the OpenAI provider rules.
    assert_eq!(span["user.id"], "body-user-1");
    // Baggage values percent-decoded, properties after `;` dropped, unmapped keys ignored.
    assert_eq!(span["gen_ai.agent.name"], "planner one");
    assert_eq!(span["gen_ai.conversation.id"], "conv-7");
    assert!(!span.contains_key("unrelated"));
    // Header properties lower-cased, control characters escaped, values cut at 256 bytes.
    assert_eq!(span["specter.property.team"], "Search\\tRanking");
    assert_eq!(span["specter.property.long"], json!("x".repeat(256)));
    // Body metadata entries (scalars only).
    assert_eq!(span["specter.property.tenant"], "acme");
    assert!(!span.contains_key("specter.property.nested"));
    // gpt-4o-mini at $0.15 / $0.60 per million: 12 × 0.15 + 5 × 0.60 = 4.8 → $0.0000048.
    assert_eq!(span["gen_ai.usage.cost"], json!(0.0000048));
    assert_eq!(span["gen_ai.usage.cost.source"], "local");
    assert!(!std::fs::read_to_string(&traces).unwrap().contains(API_KEY));

    // Without a backend: the console line and the stop report say it too.
    let console = lines
        .iter()
        .find(|l| l.starts_with("specter: openai chat gpt-4o-mini"))
        .unwrap_or_else(|| panic!("no console line: {lines:#?}"));
    assert!(
        console.contains(
            "in=12 out=5 finish=stop $0.0000048 session=sess-0123456789 user=body-user-1 "
        ),
        "{console}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l
                == "specter: openai gpt-4o-mini-2024-07-18: 1 call(s), in=12 out=5, $0.0000048"),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_id_is_recorded_while_api_keys_and_session_tokens_are_scrubbed() {
    let (address, seen) = upstream().await;
    let (served, traces) = gateway("credentials", address, &["--quiet"]).await;
    let status = send(
        &served,
        "/openai/v1/chat/completions",
        &[
            ("X-Specter-Session-Id", "sess-visible-42"),
            ("X-Session-Token", SESSION_TOKEN),
            ("X-Echo-Credentials", "1"),
        ],
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 401);
    served.stop_async().await;
    // The token is the client's to send upstream.
    assert_eq!(seen.lock().unwrap()[0]["x-session-token"], SESSION_TOKEN);

    let span = &spans(&traces)[0];
    assert_eq!(span["session.id"], "sess-visible-42");
    let text = std::fs::read_to_string(&traces).unwrap();
    assert!(
        !text.contains(API_KEY),
        "the API key reached the traces file"
    );
    assert!(
        !text.contains(SESSION_TOKEN),
        "the session token reached the traces file"
    );
    assert!(
        text.contains("refused [REDACTED] with token [REDACTED]"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helicone_example_maps_its_headers_and_keeps_them_from_the_upstream() {
    let (address, seen) = upstream().await;
    let (served, traces) = gateway(
        "helicone",
        address,
        &["--quiet", "--config", "examples/helicone-context.yaml"],
    )
    .await;
    let status = send(
        &served,
        "/anthropic/v1/messages",
        &[
            ("Helicone-Session-Id", "hsess-1"),
            ("Helicone-Session-Name", "checkout"),
            ("Helicone-Property-Environment", "qa"),
            ("Helicone-Auth", "Bearer sk-helicone-secret-1234"),
            ("X-Specter-User-Id", "header-user"),
            ("anthropic-version", "2023-06-01"),
        ],
        json!({
            "model": "claude-sonnet-4-6",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"user_id": "body-user-2"},
        }),
    )
    .await;
    assert_eq!(status, 200);
    served.stop_async().await;

    let received = seen.lock().unwrap()[0].clone();
    assert!(
        received
            .keys()
            .all(|k| !k.starts_with("helicone-") && !k.starts_with("x-specter-")),
        "{received:?}"
    );
    assert_eq!(received["anthropic-version"], "2023-06-01");

    let span = &spans(&traces)[0];
    assert_eq!(span["session.id"], "hsess-1");
    assert_eq!(span["specter.session.name"], "checkout");
    assert_eq!(span["specter.property.environment"], "qa");
    // A header wins over the body's `metadata.user_id`; the built-in headers stay on.
    assert_eq!(span["user.id"], "header-user");
    assert!(!std::fs::read_to_string(&traces)
        .unwrap()
        .contains("sk-helicone-secret-1234"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_metadata_user_id_is_the_user() {
    let (address, _seen) = upstream().await;
    let (served, traces) = gateway("anthropic-user", address, &["--quiet"]).await;
    let status = send(
        &served,
        "/anthropic/v1/messages",
        &[("anthropic-version", "2023-06-01")],
        json!({
            "model": "claude-sonnet-4-6",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"user_id": "body-user-2"},
        }),
    )
    .await;
    assert_eq!(status, 200);
    served.stop_async().await;
    let span = &spans(&traces)[0];
    assert_eq!(span["user.id"], "body-user-2");
    // claude-sonnet-4-6 at $3 / $15 per million: 14 × 3 + 11 × 15 = 207 → $0.000207.
    assert_eq!(span["gen_ai.usage.cost"], json!(0.000207));
}

#[test]
fn a_context_section_that_maps_a_credential_is_refused() {
    let dir = scratch("refused");
    let config = dir.join("specter.yaml");
    std::fs::write(&config, "context:\n  headers:\n    X-Api-Key: user.id\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_specter"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-traces-file",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("context: header `X-Api-Key` carries credentials and cannot be recorded"),
        "{stderr}"
    );
}

/// Histogram points of the standard metrics recorded in process: name → attribute keys.
fn metric_attribute_keys(
    rules: specter::unstable::context::ContextRules,
    metric_keys: Vec<String>,
) -> Vec<(String, Vec<String>)> {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    use specter::instrument::{HttpRequest, HttpResponse, Instrumentor, Options};

    let metrics = InMemoryMetricExporter::default();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics.clone()).build())
        .build();
    let tracer_provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let tracer =
        opentelemetry::global::BoxedTracer::new(Box::new(tracer_provider.tracer("specter")));
    let telemetry = specter::Telemetry::new(
        tracer,
        &meter_provider.meter("specter"),
        vec![specter::Dialect::Semconv],
        specter::ContentPolicy::default(),
    )
    .with_metric_attributes(metric_keys);
    let instrumentor = Instrumentor::builder()
        .telemetry(telemetry)
        .options(Options::default().with_context(Arc::new(rules)))
        .build()
        .unwrap();
    let request = HttpRequest {
        method: "POST".into(),
        url: "https://api.openai.com/v1/chat/completions".into(),
        headers: vec![
            ("X-Specter-Session-Id".into(), "sess-metrics-1".into()),
            ("X-Specter-Property-Environment".into(), "qa".into()),
        ],
        body: std::fs::read("tests/fixtures/openai/chat_plain/request.json").unwrap(),
    };
    instrumentor
        .instrument_blocking(request, |_| {
            Ok::<_, std::io::Error>(HttpResponse {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: std::fs::read("tests/fixtures/openai/chat_plain/response.json").unwrap(),
            })
        })
        .unwrap();
    meter_provider.force_flush().unwrap();
    let mut out = Vec::new();
    for rm in metrics.get_finished_metrics().unwrap() {
        for sm in rm.scope_metrics() {
            for metric in sm.metrics() {
                let keys = |attrs: Vec<&opentelemetry::KeyValue>| {
                    attrs
                        .iter()
                        .map(|kv| kv.key.to_string())
                        .collect::<Vec<_>>()
                };
                match metric.data() {
                    AggregatedMetrics::U64(MetricData::Histogram(h)) => {
                        for dp in h.data_points() {
                            out.push((metric.name().to_string(), keys(dp.attributes().collect())));
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                        for dp in h.data_points() {
                            out.push((metric.name().to_string(), keys(dp.attributes().collect())));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

#[test]
fn context_attributes_are_metric_dimensions_only_when_listed_as_bounded() {
    use specter::unstable::context::{ContextRules, ContextSpec};
    let points = metric_attribute_keys(ContextRules::default(), Vec::new());
    let cost = points
        .iter()
        .find(|(name, _)| name == "gen_ai.client.operation.cost")
        .unwrap_or_else(|| panic!("no cost point: {points:?}"));
    assert!(!cost
        .1
        .iter()
        .any(|k| k == "session.id" || k.starts_with("specter.property.")));
    assert!(points.iter().all(|(_, keys)| keys
        .iter()
        .all(|k| k != "session.id" && !k.starts_with("specter."))));

    let rules = ContextRules::from_spec(&ContextSpec {
        metric_attributes: vec!["specter.property.environment".into()],
        ..Default::default()
    })
    .unwrap();
    let keys = rules.metric_attributes().to_vec();
    let points = metric_attribute_keys(rules, keys);
    for name in [
        "gen_ai.client.operation.cost",
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.duration",
    ] {
        let (_, keys) = points.iter().find(|(n, _)| n == name).unwrap();
        assert!(
            keys.iter().any(|k| k == "specter.property.environment"),
            "{name}: {keys:?}"
        );
        assert!(!keys.iter().any(|k| k == "session.id"), "{name}: {keys:?}");
    }
}

#[test]
fn vertex_ai_labels_are_properties_and_the_inherited_request_rules_stay() {
    let dir = scratch("vertex-labels");
    let case = Path::new("tests/fixtures/vertexai/generate_content");
    let mut request: Value =
        serde_json::from_slice(&std::fs::read(case.join("request.json")).unwrap()).unwrap();
    request["labels"] = json!({"team": "search", "env": "prod"});
    let request_file = dir.join("request.json");
    std::fs::write(&request_file, request.to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_specter"))
        .args(["extract", "--url"])
        .arg("https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro:generateContent")
        .arg("--request")
        .arg(&request_file)
        .arg("--response")
        .arg(case.join("response.json"))
        .env_remove("SPECTER_PROVIDERS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let output: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output["provider"], "vertexai");
    let a = &output["span"]["attributes"];
    assert_eq!(a["specter.property.team"], "search");
    assert_eq!(a["specter.property.env"], "prod");
    // Rules inherited from the Gemini spec still read the same request.
    assert_eq!(a["gen_ai.request.model"], "gemini-2.5-pro");
}
