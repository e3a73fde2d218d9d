//! `GET /metrics` of `specter serve` against the OTLP metrics of the same run: recorded OpenAI
//! (plain and streamed) and Anthropic calls go through the real binary, whose OTLP/HTTP exporter
//! sends to a loopback stand-in collector; the scrape must carry the same series with the same
//! values (cumulative), under the standard OpenTelemetry-to-Prometheus names.

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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message as _;
use serve::Served;

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("tests/fixtures/{path}")).unwrap()
}

/// The recorded answers: OpenAI chat (plain, or streamed when the request asks) and Anthropic
/// messages.
async fn upstream() -> SocketAddr {
    serve::http_server(|r: Request<Incoming>| async move {
        let path = r.uri().path().to_string();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let stream = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("stream").and_then(serde_json::Value::as_bool))
            .unwrap_or(false);
        let (content_type, body) = match (path.as_str(), stream) {
            ("/v1/chat/completions", true) => (
                "text/event-stream",
                fixture("openai/chat_stream_include_usage/response.sse"),
            ),
            ("/v1/chat/completions", false) => (
                "application/json",
                fixture("openai/chat_plain/response.json"),
            ),
            ("/v1/messages", _) => (
                "application/json",
                fixture("anthropic/messages_plain/response.json"),
            ),
            ("/v1/embeddings", _) => (
                "application/json",
                fixture("openai/embeddings/response.json"),
            ),
            _ => ("text/plain", b"not found".to_vec()),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response
            .headers_mut()
            .insert("content-type", content_type.parse().unwrap());
        Ok::<_, Infallible>(response)
    })
    .await
}

/// An OTLP/HTTP collector keeping the body of every metrics export.
async fn collector() -> (SocketAddr, Arc<Mutex<Vec<Bytes>>>) {
    let exports = Arc::new(Mutex::new(Vec::new()));
    let kept = exports.clone();
    let address = serve::http_server(move |r: Request<Incoming>| {
        let kept = kept.clone();
        async move {
            let path = r.uri().path().to_string();
            let body = r.into_body().collect().await.unwrap().to_bytes();
            if path == "/v1/metrics" {
                kept.lock().unwrap().push(body);
            }
            let mut response = Response::new(Full::new(Bytes::new()));
            response
                .headers_mut()
                .insert("content-type", "application/x-protobuf".parse().unwrap());
            Ok::<_, Infallible>(response)
        }
    })
    .await;
    (address, exports)
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Sends a request; returns the status, the content type and the body.
async fn send(
    client: &HttpClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String, String) {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// Waits (at most 5 s) until no request of the gateway is in flight: every span has ended and
/// every metric point is recorded.
async fn settled(client: &HttpClient, served: &Served) {
    for _ in 0..100 {
        let (_, _, body) = send(
            client,
            "GET",
            &served.url("/healthz"),
            &[("accept", "application/json")],
            Vec::new(),
        )
        .await;
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        if health["in_flight"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("requests still in flight");
}

/// One sample of the text format: name, labels (sorted), value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the samples of the Prometheus text exposition format (comments skipped), unescaping
/// label values.
fn parse_text(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).unwrap();
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut chars = line[name_end..].chars().peekable();
    if chars.peek() == Some(&'{') {
        chars.next();
        loop {
            if chars.peek() == Some(&'}') {
                chars.next();
                break;
            }
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            assert_eq!(chars.next(), Some('"'), "{line}");
            let mut value = String::new();
            loop {
                match chars.next().unwrap() {
                    '\\' => match chars.next().unwrap() {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.insert(key, value);
            if chars.peek() == Some(&',') {
                chars.next();
            }
        }
    }
    let value: String = chars.collect();
    (name, labels, number(value.trim()))
}

fn number(text: &str) -> f64 {
    match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other
            .parse()
            .unwrap_or_else(|_| panic!("a number: {other}")),
    }
}

/// The standard translation of an OpenTelemetry name and unit to a Prometheus name.
fn prometheus_name(name: &str, unit: &str, counter: bool) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    match unit {
        "s" => out.push_str("_seconds"),
        "By" => out.push_str("_bytes"),
        "1" => out.push_str("_ratio"),
        "" => {}
        annotation if annotation.starts_with('{') => {}
        other => panic!("unit `{other}` is not covered by this test"),
    }
    if counter {
        out.push_str("_total");
    }
    out
}

/// An OTLP attribute as a Prometheus label.
fn label(kv: &KeyValue) -> (String, String) {
    let key = kv
        .key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        other => panic!("attribute {} has an unexpected value {other:?}", kv.key),
    };
    (key, value)
}

/// Sample values by name and labels.
type Series = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// What an OTLP export says `/metrics` must show.
struct Expected {
    /// The samples, keyed by name and labels.
    samples: Series,
    /// The `target_info` labels (the resource).
    target: BTreeMap<String, String>,
    /// The OpenTelemetry names of the metrics.
    names: Vec<String>,
}

fn expected_from_otlp(export: &ExportMetricsServiceRequest) -> Expected {
    let mut samples = BTreeMap::new();
    let mut names = Vec::new();
    let [resource_metrics] = export.resource_metrics.as_slice() else {
        panic!("one resource: {export:?}");
    };
    let target: BTreeMap<String, String> = resource_metrics
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(label)
        .collect();
    for scope_metrics in &resource_metrics.scope_metrics {
        let scope = scope_metrics.scope.as_ref().unwrap();
        let mut scope_labels = BTreeMap::from([("otel_scope_name".into(), scope.name.clone())]);
        if !scope.version.is_empty() {
            scope_labels.insert("otel_scope_version".into(), scope.version.clone());
        }
        for metric in &scope_metrics.metrics {
            names.push(metric.name.clone());
            let labels_of = |attributes: &[KeyValue]| {
                let mut labels = scope_labels.clone();
                labels.extend(attributes.iter().map(label));
                labels
            };
            match metric.data.as_ref().unwrap() {
                Data::Histogram(histogram) => {
                    let name = prometheus_name(&metric.name, &metric.unit, false);
                    for point in &histogram.data_points {
                        let labels = labels_of(&point.attributes);
                        samples.insert(
                            (format!("{name}_count"), labels.clone()),
                            point.count as f64,
                        );
                        samples.insert((format!("{name}_sum"), labels.clone()), point.sum.unwrap());
                        let mut cumulative = 0;
                        let bounds = point
                            .explicit_bounds
                            .iter()
                            .map(|b| b.to_string())
                            .chain(["+Inf".to_string()]);
                        assert_eq!(point.bucket_counts.len(), point.explicit_bounds.len() + 1);
                        for (le, count) in bounds.zip(&point.bucket_counts) {
                            cumulative += count;
                            let mut labels = labels.clone();
                            labels.insert("le".into(), le);
                            samples.insert((format!("{name}_bucket"), labels), cumulative as f64);
                        }
                        assert_eq!(cumulative, point.count);
                    }
                }
                Data::Sum(sum) => {
                    assert_eq!(sum.aggregation_temporality, 2, "cumulative");
                    let name = prometheus_name(&metric.name, &metric.unit, sum.is_monotonic);
                    for point in &sum.data_points {
                        samples.insert((name.clone(), labels_of(&point.attributes)), value(point));
                    }
                }
                Data::Gauge(gauge) => {
                    let name = prometheus_name(&metric.name, &metric.unit, false);
                    for point in &gauge.data_points {
                        samples.insert((name.clone(), labels_of(&point.attributes)), value(point));
                    }
                }
                other => panic!("{}: unexpected data {other:?}", metric.name),
            }
        }
    }
    Expected {
        samples,
        target,
        names,
    }
}

fn value(point: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint) -> f64 {
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    match point.value.unwrap() {
        Value::AsDouble(d) => d,
        Value::AsInt(i) => i as f64,
    }
}

/// The scraped samples keyed by name and labels, `le` written as the OTLP bound is (the text
/// format may spell a bound differently, e.g. `1.0` or `1`).
fn scraped(text: &str) -> Series {
    let mut out = BTreeMap::new();
    for (name, mut labels, value) in parse_text(text) {
        if let Some(le) = labels.get_mut("le") {
            let bound = number(le);
            *le = if bound.is_infinite() {
                "+Inf".into()
            } else {
                bound.to_string()
            };
        }
        let previous = out.insert((name.clone(), labels.clone()), value);
        assert!(
            previous.is_none(),
            "one sample per series: {name} {labels:?}"
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrape_shows_what_otlp_exported_in_the_same_run() {
    let upstream = upstream().await;
    let (collector, exports) = collector().await;
    let openai = format!("openai=http://{upstream}");
    let anthropic = format!("anthropic=http://{upstream}");
    let endpoint = format!("http://{collector}");
    let served = Served::start_async(
        &["--upstream", &openai, "--upstream", &anthropic],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            // Only the export at shutdown: what the scrape saw, nothing recorded since.
            ("OTEL_METRIC_EXPORT_INTERVAL", "3600000"),
            ("OTEL_SERVICE_NAME", "metrics-test"),
        ],
    )
    .await;
    assert_eq!(
        served.wait_for("metrics at", Duration::from_secs(5)),
        Some(format!(
            "specter: Prometheus metrics at {}",
            served.url("/metrics")
        ))
    );
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let json = [("content-type", "application/json")];
    for (path, body) in [
        (
            "/openai/v1/chat/completions",
            "openai/chat_plain/request.json",
        ),
        (
            "/openai/v1/chat/completions",
            "openai/chat_stream_include_usage/request.json",
        ),
        (
            "/anthropic/v1/messages",
            "anthropic/messages_plain/request.json",
        ),
        (
            "/openai/v1/chat/completions",
            "openai/chat_plain/request.json",
        ),
    ] {
        let (status, _, _) = send(&client, "POST", &served.url(path), &json, fixture(body)).await;
        assert_eq!(status, 200, "{path}");
    }
    settled(&client, &served).await;

    let (status, content_type, text) =
        send(&client, "GET", &served.url("/metrics"), &[], Vec::new()).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(content_type, "text/plain; version=0.0.4");
    // A second scrape reads the same values: scraping changes nothing.
    let (_, _, again) = send(&client, "GET", &served.url("/metrics"), &[], Vec::new()).await;
    assert_eq!(scraped(&again), scraped(&text));
    let (status, _, refused) =
        send(&client, "POST", &served.url("/metrics"), &[], Vec::new()).await;
    assert_eq!(status, 405, "{refused}");

    served.stop_async().await;
    let last = exports
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("the metrics were exported over OTLP at shutdown");
    let export = ExportMetricsServiceRequest::decode(last).unwrap();
    let Expected {
        samples: expected,
        target,
        names,
    } = expected_from_otlp(&export);

    for name in [
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.time_to_first_chunk",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    let durations: f64 = expected
        .iter()
        .filter(|((name, _), _)| name == "gen_ai_client_operation_duration_seconds_count")
        .map(|(_, count)| count)
        .sum();
    assert_eq!(durations, 4.0, "four calls timed");

    let mut scraped = scraped(&text);
    let info = scraped
        .iter()
        .find(|((name, _), _)| name == "target_info")
        .map(|((_, labels), value)| (labels.clone(), *value))
        .expect("target_info");
    assert_eq!(info, (target.clone(), 1.0), "the resource is target_info");
    assert_eq!(target["service_name"], "metrics-test");
    scraped.retain(|(name, _), _| name != "target_info");
    // Every series and value alike, both ways: counts, sums, cumulative buckets.
    for (key, value) in &expected {
        assert_eq!(scraped.get(key), Some(value), "{key:?}\nscraped:\n{text}");
    }
    assert_eq!(
        scraped.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "no series beyond what OTLP carried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_false_leaves_the_path_to_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("specter.yaml");
    std::fs::write(&config, "metrics_endpoint: false\n").unwrap();
    let served = Served::start_async(
        &["--config", config.to_str().unwrap(), "--no-traces-file"],
        &[],
    )
    .await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let (status, _, body) = send(&client, "GET", &served.url("/metrics"), &[], Vec::new()).await;
    assert_eq!(status, 404, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["type"], "unknown_provider", "{body}");
    let lines = served.stop_async().await;
    assert!(
        !lines.iter().any(|l| l.contains("metrics at")),
        "{lines:#?}"
    );
}

/// The metric series names of a scrape whose labels say `gen_ai_operation_name="<operation>"`.
fn series_of(text: &str, operation: &str) -> std::collections::BTreeSet<String> {
    parse_text(text)
        .into_iter()
        .filter(|(_, labels, _)| {
            labels.get("gen_ai_operation_name").map(String::as_str) == Some(operation)
        })
        .map(|(name, _, _)| name)
        .collect()
}

/// The gateway's scrape after one embeddings call and one chat, with `envs`.
async fn embeddings_and_chat_scrape(envs: &[(&str, &str)]) -> String {
    let upstream = upstream().await;
    let openai = format!("openai=http://{upstream}");
    let served = Served::start_async(
        &["--upstream", &openai, "--no-traces-file", "--quiet"],
        envs,
    )
    .await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let json = [("content-type", "application/json")];
    for (path, body) in [
        ("/openai/v1/embeddings", "openai/embeddings/request.json"),
        (
            "/openai/v1/chat/completions",
            "openai/chat_plain/request.json",
        ),
    ] {
        let (status, _, _) = send(&client, "POST", &served.url(path), &json, fixture(body)).await;
        assert_eq!(status, 200, "{path}");
    }
    settled(&client, &served).await;
    let (status, _, text) = send(&client, "GET", &served.url("/metrics"), &[], Vec::new()).await;
    assert_eq!(status, 200);
    served.stop_async().await;
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_have_metrics_of_their_own_under_the_newest_conventions() {
    // openai/embeddings reports 6 prompt tokens.
    let default = embeddings_and_chat_scrape(&[]).await;
    let embeddings = series_of(&default, "embeddings");
    assert!(embeddings.contains("gen_ai_client_operation_duration_seconds_count"));
    assert!(embeddings.contains("gen_ai_client_token_usage_sum"));
    assert!(
        !embeddings.iter().any(|n| n.contains("embeddings")),
        "{embeddings:?}"
    );

    let latest = embeddings_and_chat_scrape(&[(
        "OTEL_SEMCONV_STABILITY_OPT_IN",
        "gen_ai_latest_experimental",
    )])
    .await;
    let embeddings = series_of(&latest, "embeddings");
    assert!(
        embeddings.contains("gen_ai_client_embeddings_duration_seconds_count"),
        "{embeddings:?}"
    );
    assert!(!embeddings.contains("gen_ai_client_operation_duration_seconds_count"));
    assert!(!embeddings.contains("gen_ai_client_token_usage_sum"));
    let input: Vec<(BTreeMap<String, String>, f64)> = parse_text(&latest)
        .into_iter()
        .filter(|(name, _, _)| name == "gen_ai_client_embeddings_operation_input_tokens_sum")
        .map(|(_, labels, value)| (labels, value))
        .collect();
    assert_eq!(input.len(), 1, "{latest}");
    assert_eq!(input[0].1, 6.0);
    assert!(!input[0].0.contains_key("gen_ai_token_type"));
    // Chat keeps the standard metrics.
    let chat = series_of(&latest, "chat");
    assert!(chat.contains("gen_ai_client_operation_duration_seconds_count"));
    assert!(chat.contains("gen_ai_client_token_usage_sum"));
}
