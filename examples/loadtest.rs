//! Load harness for the gateway (`specter serve`).
//!
//! Starts an in-process mock of the OpenAI chat completions API on loopback, runs the release
//! `specter` binary as three subprocesses (instrumented with message content capture on,
//! instrumented with it off, and `--no-instrument` as a plain proxy), and drives the same traffic
//! at the mock directly and through each gateway: the non-streaming and the streaming workload,
//! at fixed request rates (open loop, bounded in flight) and at maximum throughput (closed loop
//! over N connections). It reports latency percentiles, time to first byte of streams,
//! throughput, the latency each gateway adds over the direct path, the gateway's CPU per request
//! and its peak resident memory; then the memory of a fresh gateway of each kind with 1,000
//! streams held open at once, and the gateway's startup time. Every budget is reported once per
//! content capture setting, beside the baseline it is compared against. With `--fleet N` it also
//! runs N instrumented gateways behind HAProxy (`deploy/haproxy.cfg` on loopback ports) and
//! measures the closed loop through HAProxy, with the CPU the replicas and HAProxy spent.
//!
//! ```sh
//! cargo build --release --bin specter
//! cargo run --release --example loadtest -- [--duration-secs N] [--rates 200,500,1000] \
//!     [--stream-rates 50,100,200] [--concurrency 64] [--capture-modes on,off] [--json out.json]
//! cargo run --release --example loadtest -- --no-load --memory-streams 0 --startup-runs 0 \
//!     --fleet 3    # HAProxy (`haproxy` on PATH) in front of three replicas
//! ```
//!
//! Every loop is bounded in count and in time, and all traffic stays on 127.0.0.1. The load
//! generator, the mock and the gateway share the machine, so on a small machine the figures are
//! an upper bound of the gateway's cost. See `benches/README.md`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

const PLAIN_REQUEST: &[u8] = include_bytes!("../tests/fixtures/openai/chat_plain/request.json");
const PLAIN_RESPONSE: &[u8] = include_bytes!("../tests/fixtures/openai/chat_plain/response.json");
const STREAM_REQUEST: &[u8] =
    include_bytes!("../tests/fixtures/openai/chat_stream_include_usage/request.json");

/// SSE chunks per streamed response (the last one carries the usage, then `data: [DONE]`).
const STREAM_CHUNKS: usize = 100;
/// Default gap between two chunks of a stream.
const CHUNK_INTERVAL_MS: u64 = 2;
/// Request header asking the mock for another chunk gap (forwarded by the gateway as is).
const INTERVAL_HEADER: &str = "x-mock-interval-ms";
/// No single request may take longer than this (it then counts as an error).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for requests still in flight at the end of a phase.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(12);
/// A send this far behind its schedule counts as late (the open loop could not keep the rate).
const LATE_AFTER: Duration = Duration::from_millis(5);

#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    about = "Load harness for `specter serve` (see benches/README.md)"
)]
struct Args {
    /// Seconds of load per measured phase.
    #[arg(long, default_value_t = 4.0)]
    duration_secs: f64,
    /// Open-loop rates (requests/s) of the non-streaming workload.
    #[arg(long, value_delimiter = ',', default_value = "200,500,1000")]
    rates: Vec<u32>,
    /// Open-loop rates (streams/s) of the streaming workload. Each stream lasts about
    /// 100 x 2 ms, so 200 streams/s keep about 40 streams and 20,000 chunks/s in flight.
    #[arg(long, value_delimiter = ',', default_value = "50,100,200")]
    stream_rates: Vec<u32>,
    /// Connections of the closed loop (maximum throughput).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Bound on requests in flight in the open loop.
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// Concurrent streams of the memory test (0 skips it).
    #[arg(long, default_value_t = 1000)]
    memory_streams: usize,
    /// How long the mock holds each stream of the memory test open, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    memory_hold_ms: u64,
    /// Gateway starts timed for the startup figures (0 skips them).
    #[arg(long, default_value_t = 10)]
    startup_runs: usize,
    /// Skip the load phases (startup and memory only).
    #[arg(long)]
    no_load: bool,
    /// Write every figure as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Also measure N instrumented gateways behind HAProxy (0: not).
    #[arg(long, default_value_t = 0)]
    fleet: usize,
    /// The HAProxy binary of `--fleet`.
    #[arg(long, value_name = "PATH", default_value = "haproxy")]
    haproxy: PathBuf,
    /// The specter binary. Default: `specter` in the directory above this example's binary
    /// (`target/release/specter`).
    #[arg(long, value_name = "PATH")]
    specter: Option<PathBuf>,
    /// Message content capture settings of the instrumented gateway to measure, each against
    /// the same baselines: `on` (`SPAN_ONLY`) and `off` (`NO_CONTENT`).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "on,off")]
    capture_modes: Vec<CaptureMode>,
}

/// Message content capture of an instrumented gateway, set through
/// `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` in that gateway's environment alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CaptureMode {
    /// `SPAN_ONLY` (the default): message content on the span.
    On,
    /// `NO_CONTENT`: no message content recorded.
    Off,
}

impl CaptureMode {
    fn name(self) -> &'static str {
        match self {
            CaptureMode::On => "on",
            CaptureMode::Off => "off",
        }
    }

    /// The target name of the instrumented gateway with this setting.
    fn target(self) -> &'static str {
        match self {
            CaptureMode::On => INSTRUMENTED,
            CaptureMode::Off => INSTRUMENTED_NO_CAPTURE,
        }
    }

    /// The value of `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` the gateway gets.
    fn env_value(self) -> &'static str {
        match self {
            CaptureMode::On => "SPAN_ONLY",
            CaptureMode::Off => "false",
        }
    }
}

/// Which gateway a subprocess is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// `--no-instrument`: the plain proxy.
    Uninstrumented,
    Instrumented(CaptureMode),
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Uninstrumented => UNINSTRUMENTED,
            Variant::Instrumented(capture) => capture.target(),
        }
    }
}

/// The name of the content capture variable, as the gateway reads it.
const CAPTURE_VARIABLE: &str = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT";

// ---------------------------------------------------------------------------------------------
// The mock upstream
// ---------------------------------------------------------------------------------------------

/// Shared state of the mock: the pre-rendered stream and counters of streams in flight.
struct Mock {
    chunks: Vec<Bytes>,
    stream_bytes: usize,
    active: AtomicUsize,
    peak: AtomicUsize,
}

impl Mock {
    fn new() -> Result<Mock> {
        let chunks = stream_chunks(STREAM_CHUNKS)?;
        let stream_bytes = chunks.iter().map(Bytes::len).sum();
        Ok(Mock {
            chunks,
            stream_bytes,
            active: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }
}

/// Words of the streamed answer, one per content chunk (cycled).
#[rustfmt::skip]
const WORDS: &[&str] = &[
    "Moving", " from", " polling", " to", " a", " queue", " changes", " where", " failures",
    " show", " up.", " The", " main", " ones", " are", " duplicate", " delivery", ",", " out",
    "-of", "-order", " delivery", " for", " the", " same", " invoice", ",", " poison",
    " messages", " and", " partial", " failures", " where", " the", " charge", " succeeds",
    " but", " the", " acknowledgement", " does", " not", ".", " Each", " needs", " an",
    " explicit", " answer", ":", " idempotency", ",", " ordering", " checks", ",", " a", " dead",
    "-letter", " queue", " and", " bounded", " concurrency", ".",
];

/// An OpenAI chat completion stream with `stream_options.include_usage`: the role chunk, content
/// chunks, the finish chunk, the usage chunk (empty `choices`), then `data: [DONE]`.
fn stream_chunks(n: usize) -> Result<Vec<Bytes>> {
    if n < 4 {
        bail!("a stream needs at least 4 chunks");
    }
    let id = "chatcmpl-AT7qLoadtest0000000000000000";
    let chunk = |choices: Value, usage: Value| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": 1_731_368_639,
            "model": "gpt-4o-mini-2024-07-18",
            "system_fingerprint": "fp_0ba0d124f1",
            "choices": choices,
            "usage": usage,
        })
    };
    let choice = |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
    let content = n - 3;
    let mut values = Vec::with_capacity(n);
    values.push(chunk(
        choice(
            json!({"role": "assistant", "content": "", "refusal": null}),
            Value::Null,
        ),
        Value::Null,
    ));
    for word in WORDS.iter().cycle().take(content) {
        values.push(chunk(
            choice(json!({ "content": word }), Value::Null),
            Value::Null,
        ));
    }
    values.push(chunk(choice(json!({}), json!("stop")), Value::Null));
    values.push(chunk(
        json!([]),
        json!({
            "prompt_tokens": 12,
            "completion_tokens": content,
            "total_tokens": 12 + content,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
            }
        }),
    ));
    let last = values.len() - 1;
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let mut text = format!("data: {}\n\n", serde_json::to_string(&v)?);
            if i == last {
                text.push_str("data: [DONE]\n\n");
            }
            Ok(Bytes::from(text))
        })
        .collect()
}

type MockBody = BoxBody<Bytes, Infallible>;

/// A streamed response: the first chunk at once, then one chunk per tick.
struct ChunkBody {
    mock: Arc<Mock>,
    next: usize,
    interval: tokio::time::Interval,
}

impl ChunkBody {
    fn new(mock: Arc<Mock>, gap: Duration) -> ChunkBody {
        let now = mock.active.fetch_add(1, Ordering::Relaxed) + 1;
        mock.peak.fetch_max(now, Ordering::Relaxed);
        let interval = tokio::time::interval_at(tokio::time::Instant::now() + gap, gap);
        ChunkBody {
            mock,
            next: 0,
            interval,
        }
    }
}

impl Body for ChunkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.next > 0
            && this.next < this.mock.chunks.len()
            && this.interval.poll_tick(cx).is_pending()
        {
            return Poll::Pending;
        }
        let chunk = this.mock.chunks.get(this.next).cloned();
        this.next += 1;
        Poll::Ready(chunk.map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.mock.chunks.len()
    }
}

impl Drop for ChunkBody {
    fn drop(&mut self) {
        self.mock.active.fetch_sub(1, Ordering::Relaxed);
    }
}

fn mock_response(
    status: StatusCode,
    body: Bytes,
    content_type: &'static str,
) -> Response<MockBody> {
    let mut response = Response::new(Full::new(body).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn mock_handle(
    mock: Arc<Mock>,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    let gap = request
        .headers()
        .get(INTERVAL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(CHUNK_INTERVAL_MS)
        .max(1);
    let known =
        request.method() == hyper::Method::POST && request.uri().path() == "/v1/chat/completions";
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(mock_response(
                StatusCode::BAD_REQUEST,
                Bytes::from_static(br#"{"error":{"message":"unreadable body"}}"#),
                "application/json",
            ))
        }
    };
    if !known {
        return Ok(mock_response(
            StatusCode::NOT_FOUND,
            Bytes::from_static(br#"{"error":{"message":"not found"}}"#),
            "application/json",
        ));
    }
    // A real server parses the request; so does the mock.
    let stream = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("stream").and_then(Value::as_bool))
        .unwrap_or(false);
    if stream {
        let body = ChunkBody::new(mock, Duration::from_millis(gap));
        let mut response = Response::new(body.boxed());
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        Ok(response)
    } else {
        Ok(mock_response(
            StatusCode::OK,
            Bytes::from_static(PLAIN_RESPONSE),
            "application/json",
        ))
    }
}

/// Accepts until `stop` turns true.
async fn serve_mock(
    listener: tokio::net::TcpListener,
    mock: Arc<Mock>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mock = mock.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |r| mock_handle(mock.clone(), r));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway subprocess
// ---------------------------------------------------------------------------------------------

/// A running `specter serve`; killed when dropped.
struct Gateway {
    child: Child,
    address: SocketAddr,
    listening_after: Option<Duration>,
    healthy_after: Duration,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn status_kb(&self, key: &str) -> Option<u64> {
        proc_status_kb(self.pid(), key)
    }

    fn cpu_ticks(&self) -> Option<u64> {
        proc_cpu_ticks(self.pid())
    }
}

fn free_port() -> Result<u16> {
    let listener = StdListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Starts the gateway and waits for `/healthz`.
fn spawn_gateway(binary: &Path, upstream: SocketAddr, variant: Variant) -> Result<Gateway> {
    let address = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut command = Command::new(binary);
    command
        .arg("serve")
        .arg("--listen")
        .arg(address.to_string())
        .arg("--upstream")
        .arg(format!("openai=http://{upstream}"))
        .arg("--quiet")
        .arg("--no-traces-file");
    // No exporter from the environment, no configuration file: the flags alone decide.
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("OTEL_") || name.starts_with("SPECTER_") {
            command.env_remove(&key);
        }
    }
    match variant {
        Variant::Uninstrumented => {
            command.arg("--no-instrument");
        }
        Variant::Instrumented(capture) => {
            command.env(CAPTURE_VARIABLE, capture.env_value());
        }
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let spawned = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let (tx, rx) = std::sync::mpsc::channel::<Instant>();
    let tail = Arc::new(Mutex::new(Vec::<String>::new()));
    if let Some(stderr) = child.stderr.take() {
        let tail = tail.clone();
        std::thread::spawn(move || {
            // Drains stderr until the gateway exits, so it never blocks on a full pipe.
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening on") {
                    let _ = tx.send(Instant::now());
                }
                if let Ok(mut tail) = tail.lock() {
                    if tail.len() < 20 {
                        tail.push(line);
                    }
                }
            }
        });
    }
    let mut gateway = Gateway {
        child,
        address,
        listening_after: None,
        healthy_after: Duration::ZERO,
    };
    let deadline = spawned + Duration::from_secs(15);
    loop {
        if healthz(address) {
            break;
        }
        if let Some(status) = gateway.child.try_wait()? {
            let text = tail.lock().map(|t| t.join("\n")).unwrap_or_default();
            bail!("the gateway exited ({status}) before answering /healthz:\n{text}");
        }
        if Instant::now() > deadline {
            bail!("the gateway did not answer /healthz within 15 s");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    gateway.healthy_after = spawned.elapsed();
    gateway.listening_after = rx
        .recv_timeout(Duration::from_secs(2))
        .ok()
        .map(|at| at.saturating_duration_since(spawned));
    Ok(gateway)
}

/// One `GET /healthz` over a fresh connection.
fn healthz(address: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(200))?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer)?;
        Ok(answer.starts_with(b"HTTP/1.1 200"))
    };
    attempt().unwrap_or(false)
}

fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// User plus system CPU time of a process, in clock ticks.
fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // After the command name: state is field 3, utime field 14, stime field 15.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

fn kb_to_mb(kb: Option<u64>) -> Option<f64> {
    kb.map(|kb| kb as f64 / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// Load generation
// ---------------------------------------------------------------------------------------------

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Plain,
    Stream,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Plain => "chat",
            Workload::Stream => "chat-stream",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Rate(u32),
    Max(usize),
}

impl Mode {
    fn name(self) -> String {
        match self {
            Mode::Rate(r) => format!("{r}/s"),
            Mode::Max(c) => format!("max c={c}"),
        }
    }
}

/// What one request sends and expects back.
#[derive(Clone)]
struct Call {
    uri: Uri,
    body: Bytes,
    expect_bytes: usize,
    interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    latency: Duration,
    ttfb: Duration,
    done: Instant,
}

/// Sends one request and reads the whole response, checking its status and length.
async fn one_request(client: &HttpClient, call: &Call) -> Result<Sample> {
    let mut request = Request::post(call.uri.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, "Bearer sk-loadtest-0000");
    if let Some(ms) = call.interval_ms {
        request = request.header(INTERVAL_HEADER, ms.to_string());
    }
    let request = request.body(Full::new(call.body.clone()))?;
    let start = Instant::now();
    let response = client.request(request).await?;
    let status = response.status();
    let mut body = response.into_body();
    let mut ttfb = None;
    let mut received = 0usize;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if ttfb.is_none() && !data.is_empty() {
                ttfb = Some(start.elapsed());
            }
            received += data.len();
        }
    }
    let latency = start.elapsed();
    if status != StatusCode::OK {
        bail!("status {status}");
    }
    if received != call.expect_bytes {
        bail!("body of {received} bytes, expected {}", call.expect_bytes);
    }
    Ok(Sample {
        latency,
        ttfb: ttfb.unwrap_or(latency),
        done: start + latency,
    })
}

async fn timed_request(client: &HttpClient, call: &Call, timeout: Duration) -> Result<Sample> {
    match tokio::time::timeout(timeout, one_request(client, call)).await {
        Ok(result) => result,
        Err(_) => Err(anyhow!("no complete response within {timeout:?}")),
    }
}

/// What a phase produced.
#[derive(Default)]
struct Outcome {
    samples: Vec<Sample>,
    errors: usize,
    late: usize,
    first_error: Option<String>,
    throughput_rps: f64,
}

impl Outcome {
    /// Adds the outcome of pass number `pass` (0, 1, ...) of the same phase: the samples and
    /// counts add up; the throughput is the mean of the passes' (they last equally long).
    fn merge(&mut self, other: Outcome, pass: usize) {
        self.samples.extend(other.samples);
        self.errors += other.errors;
        self.late += other.late;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        let passes = pass as f64;
        self.throughput_rps =
            (self.throughput_rps * passes + other.throughput_rps) / (passes + 1.0);
    }

    fn record(&mut self, result: Result<Sample>) {
        match result {
            Ok(sample) => self.samples.push(sample),
            Err(e) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(format!("{e:#}"));
                }
            }
        }
    }
}

/// Open loop: `rate` requests per second for `duration`, at most `max_in_flight` at once.
async fn open_loop(
    client: &HttpClient,
    call: &Call,
    rate: u32,
    duration: Duration,
    max_in_flight: usize,
) -> Outcome {
    let mut outcome = Outcome::default();
    let rate = rate.max(1);
    let total = (f64::from(rate) * duration.as_secs_f64()).round() as u64;
    let gap = Duration::from_secs_f64(1.0 / f64::from(rate));
    let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    // Issuing stops at 1.5x the duration even if the schedule slipped.
    let stop_issuing = start + duration.mul_f64(1.5);
    for i in 0..total {
        let due = start + gap.mul_f64(i as f64);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let now = Instant::now();
        if now > stop_issuing {
            break;
        }
        if now.saturating_duration_since(due) > LATE_AFTER {
            outcome.late += 1;
        }
        let client = client.clone();
        let call = call.clone();
        tasks.spawn(async move {
            let result = timed_request(&client, &call, REQUEST_TIMEOUT).await;
            drop(permit);
            result
        });
        while let Some(done) = tasks.try_join_next() {
            if let Ok(result) = done {
                outcome.record(result);
            }
        }
    }
    let drain_until = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    loop {
        match tokio::time::timeout_at(drain_until, tasks.join_next()).await {
            Ok(Some(Ok(result))) => outcome.record(result),
            Ok(Some(Err(_))) => outcome.record(Err(anyhow!("request task failed"))),
            Ok(None) => break,
            Err(_) => {
                let left = tasks.len();
                tasks.abort_all();
                for _ in 0..left {
                    outcome.record(Err(anyhow!("still in flight after the drain timeout")));
                }
                break;
            }
        }
    }
    // Completions per second between the first and the last completion (one gap added so
    // that N completions exactly `gap` apart give the rate).
    let first = outcome.samples.iter().map(|s| s.done).min();
    let last = outcome.samples.iter().map(|s| s.done).max();
    if let (Some(first), Some(last)) = (first, last) {
        let window = last.saturating_duration_since(first) + gap;
        outcome.throughput_rps = outcome.samples.len() as f64 / window.as_secs_f64();
    }
    outcome
}

/// Closed loop: `connections` clients, each sending its next request when the last one is done,
/// for `duration` (and at most `max_requests` in all).
async fn closed_loop(
    client: &HttpClient,
    call: &Call,
    connections: usize,
    duration: Duration,
    max_requests: usize,
) -> Outcome {
    let start = Instant::now();
    let deadline = start + duration;
    let budget = Arc::new(AtomicUsize::new(max_requests));
    let mut tasks = JoinSet::new();
    for _ in 0..connections.max(1) {
        let client = client.clone();
        let call = call.clone();
        let budget = budget.clone();
        tasks.spawn(async move {
            let mut outcome = Outcome::default();
            while Instant::now() < deadline
                && budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                    .is_ok()
            {
                outcome.record(timed_request(&client, &call, REQUEST_TIMEOUT).await);
            }
            outcome
        });
    }
    let mut outcome = Outcome::default();
    let drain_until = tokio::time::Instant::from_std(deadline) + DRAIN_TIMEOUT;
    loop {
        match tokio::time::timeout_at(drain_until, tasks.join_next()).await {
            Ok(Some(Ok(part))) => {
                outcome.samples.extend(part.samples);
                outcome.errors += part.errors;
                if outcome.first_error.is_none() {
                    outcome.first_error = part.first_error;
                }
            }
            Ok(Some(Err(_))) => outcome.record(Err(anyhow!("client task failed"))),
            Ok(None) => break,
            Err(_) => {
                tasks.abort_all();
                outcome.record(Err(anyhow!("clients still busy after the drain timeout")));
                break;
            }
        }
    }
    // Requests per second within the measured window: a request still running at the deadline
    // counts for the share of its time that fell inside the window. (Counting whole completions
    // would quantise long requests: 64 streams of 0.2 s finish in waves.)
    let within: f64 = outcome
        .samples
        .iter()
        .map(|s| {
            if s.done <= deadline {
                1.0
            } else {
                let sent = s.done - s.latency;
                let inside = deadline.saturating_duration_since(sent).as_secs_f64();
                (inside / s.latency.as_secs_f64().max(1e-9)).clamp(0.0, 1.0)
            }
        })
        .sum();
    outcome.throughput_rps = within / duration.as_secs_f64();
    outcome
}

// ---------------------------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------------------------

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.saturating_sub(1).min(sorted.len() - 1);
    sorted.get(index).copied().unwrap_or_default()
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Latency {
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Latency {
    fn of(values: &mut [Duration]) -> Latency {
        values.sort_unstable();
        Latency {
            p50_ms: ms(percentile(values, 50.0)),
            p90_ms: ms(percentile(values, 90.0)),
            p99_ms: ms(percentile(values, 99.0)),
            max_ms: ms(values.last().copied().unwrap_or_default()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct Phase {
    workload: &'static str,
    mode: String,
    target: &'static str,
    requests: usize,
    errors: usize,
    /// Sends more than 5 ms behind the open-loop schedule (rate not kept).
    late_sends: usize,
    throughput_rps: f64,
    latency: Latency,
    /// Time to the first body byte (streams only).
    ttfb: Option<Latency>,
    /// Gateway CPU time (user + system) per request, microseconds.
    gateway_cpu_us_per_request: Option<f64>,
    first_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Added {
    workload: &'static str,
    mode: String,
    /// `target - baseline`, e.g. `instrumented - direct`.
    comparison: String,
    /// The target measured.
    target: &'static str,
    /// The target it is compared against.
    baseline: &'static str,
    p50_ms: f64,
    p99_ms: f64,
    ttfb_p50_ms: Option<f64>,
    ttfb_p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
struct Ratio {
    workload: &'static str,
    mode: String,
    /// Message content capture of the instrumented gateway: `on` or `off`.
    capture: &'static str,
    /// The instrumented gateway's target name.
    target: &'static str,
    instrumented_rps: f64,
    uninstrumented_rps: f64,
    direct_rps: f64,
    instrumented_over_uninstrumented: f64,
    /// Gateway CPU per request during the phase, microseconds.
    instrumented_cpu_us_per_request: Option<f64>,
    uninstrumented_cpu_us_per_request: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
struct StreamsMemory {
    variant: &'static str,
    streams: usize,
    hold_ms: u64,
    completed: usize,
    errors: usize,
    first_error: Option<String>,
    peak_concurrent_streams_at_mock: usize,
    idle_rss_mb: Option<f64>,
    sampled_peak_rss_mb: Option<f64>,
    peak_rss_mb_vmhwm: Option<f64>,
    rss_after_mb: Option<f64>,
    elapsed_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
struct MinMedMax {
    min_ms: f64,
    p50_ms: f64,
    max_ms: f64,
}

impl MinMedMax {
    fn of(values: &mut [Duration]) -> Option<MinMedMax> {
        values.sort_unstable();
        Some(MinMedMax {
            min_ms: ms(*values.first()?),
            p50_ms: ms(percentile(values, 50.0)),
            max_ms: ms(*values.last()?),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
struct Startup {
    runs: usize,
    providers: usize,
    /// Spawn to the "listening on" line on stderr.
    spawn_to_listening: Option<MinMedMax>,
    /// Spawn to the first `GET /healthz` answered 200.
    spawn_to_healthz: Option<MinMedMax>,
    /// The same with message content capture off (when measured).
    spawn_to_healthz_capture_off: Option<MinMedMax>,
    /// The same with `--no-instrument`.
    spawn_to_healthz_uninstrumented: Option<MinMedMax>,
    /// `specter --version`: process start-up and exit alone (no catalog).
    exec_version: Option<MinMedMax>,
    /// `specter list --format json`: exec plus compiling the bundled catalog plus printing.
    exec_list: Option<MinMedMax>,
    /// `Catalog::bundled()` in this process (same release build), first call.
    catalog_compile_first_ms: f64,
    /// `Catalog::bundled()` in this process, later calls.
    catalog_compile: Option<MinMedMax>,
    /// `Catalog::clone()` of the bundled catalog in this process.
    catalog_clone: Option<MinMedMax>,
    /// Hot reload: from rewriting a provider file in a `--providers` directory holding all
    /// the bundled specs to the gateway's "reloaded" line (debounce, re-read, compile, swap).
    reload: Option<MinMedMax>,
    /// The same with message content capture off (when measured).
    reload_capture_off: Option<MinMedMax>,
}

#[derive(Debug, Clone, Serialize)]
struct Budget {
    budget: &'static str,
    /// Message content capture of the gateway measured: `on` or `off`.
    capture: &'static str,
    limit: String,
    measured: String,
    /// What the measured figure is compared against (or derived from).
    baseline: String,
    met: Option<bool>,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    settings: Settings,
    startup: Option<Startup>,
    phases: Vec<Phase>,
    added_latency: Vec<Added>,
    throughput_ratio: Vec<Ratio>,
    gateway_peak_rss_mb: BTreeMap<&'static str, Option<f64>>,
    streams_memory: Vec<StreamsMemory>,
    budgets: Vec<Budget>,
    fleet: Vec<FleetPhase>,
    total_seconds: f64,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    loadavg_at_start: String,
    loadavg_at_end: String,
    specter_binary: String,
}

#[derive(Debug, Serialize)]
struct Settings {
    duration_secs: f64,
    rates: Vec<u32>,
    stream_rates: Vec<u32>,
    concurrency: usize,
    max_in_flight: usize,
    stream_chunks: usize,
    chunk_interval_ms: u64,
    memory_streams: usize,
    memory_hold_ms: u64,
    /// Message content capture settings of the instrumented gateways measured.
    capture_modes: Vec<&'static str>,
}

const DIRECT: &str = "direct";
/// The instrumented gateway with message content capture on.
const INSTRUMENTED: &str = "instrumented";
/// The instrumented gateway with message content capture off.
const INSTRUMENTED_NO_CAPTURE: &str = "instrumented-nocapture";
const UNINSTRUMENTED: &str = "uninstrumented";

fn phase_report(
    workload: Workload,
    mode: Mode,
    target: &'static str,
    mut outcome: Outcome,
    cpu_seconds: Option<f64>,
) -> Phase {
    let ok = outcome.samples.len();
    let requests = ok + outcome.errors;
    let mut latencies: Vec<Duration> = outcome.samples.iter().map(|s| s.latency).collect();
    let mut ttfbs: Vec<Duration> = outcome.samples.iter().map(|s| s.ttfb).collect();
    Phase {
        workload: workload.name(),
        mode: mode.name(),
        target,
        requests,
        errors: outcome.errors,
        late_sends: outcome.late,
        throughput_rps: outcome.throughput_rps,
        latency: Latency::of(&mut latencies),
        ttfb: (workload == Workload::Stream).then(|| Latency::of(&mut ttfbs)),
        gateway_cpu_us_per_request: cpu_seconds
            .filter(|_| requests > 0)
            .map(|s| s * 1e6 / requests as f64),
        first_error: outcome.first_error.take(),
    }
}

fn find<'a>(phases: &'a [Phase], workload: &str, mode: &str, target: &str) -> Option<&'a Phase> {
    phases
        .iter()
        .find(|p| p.workload == workload && p.mode == mode && p.target == target)
}

/// The pairs compared: each instrumented gateway and the plain proxy against direct, each
/// instrumented gateway against the plain proxy, and capture on against capture off.
fn comparison_pairs(captures: &[CaptureMode]) -> Vec<(&'static str, &'static str)> {
    let mut pairs: Vec<(&'static str, &'static str)> =
        captures.iter().map(|c| (c.target(), DIRECT)).collect();
    pairs.push((UNINSTRUMENTED, DIRECT));
    pairs.extend(captures.iter().map(|c| (c.target(), UNINSTRUMENTED)));
    if captures.contains(&CaptureMode::On) && captures.contains(&CaptureMode::Off) {
        pairs.push((INSTRUMENTED, INSTRUMENTED_NO_CAPTURE));
    }
    pairs
}

fn comparisons(phases: &[Phase], captures: &[CaptureMode]) -> (Vec<Added>, Vec<Ratio>) {
    let mut added = Vec::new();
    let mut ratios = Vec::new();
    let mut keys: Vec<(&'static str, String)> = Vec::new();
    for p in phases {
        if !keys.iter().any(|(w, m)| *w == p.workload && *m == p.mode) {
            keys.push((p.workload, p.mode.clone()));
        }
    }
    for (workload, mode) in keys {
        for (target, baseline) in comparison_pairs(captures) {
            let a = find(phases, workload, &mode, target);
            let b = find(phases, workload, &mode, baseline);
            let (Some(a), Some(b)) = (a, b) else { continue };
            let ttfb = a.ttfb.zip(b.ttfb);
            added.push(Added {
                workload,
                mode: mode.clone(),
                comparison: format!("{target} - {baseline}"),
                target,
                baseline,
                p50_ms: a.latency.p50_ms - b.latency.p50_ms,
                p99_ms: a.latency.p99_ms - b.latency.p99_ms,
                ttfb_p50_ms: ttfb.map(|(a, b)| a.p50_ms - b.p50_ms),
                ttfb_p99_ms: ttfb.map(|(a, b)| a.p99_ms - b.p99_ms),
            });
        }
        if !mode.starts_with("max") {
            continue;
        }
        let plain = find(phases, workload, &mode, UNINSTRUMENTED);
        let direct = find(phases, workload, &mode, DIRECT);
        for capture in captures {
            let instrumented = find(phases, workload, &mode, capture.target());
            let (Some(i), Some(u), Some(d)) = (instrumented, plain, direct) else {
                continue;
            };
            ratios.push(Ratio {
                workload,
                mode: mode.clone(),
                capture: capture.name(),
                target: capture.target(),
                instrumented_rps: i.throughput_rps,
                uninstrumented_rps: u.throughput_rps,
                direct_rps: d.throughput_rps,
                instrumented_over_uninstrumented: if u.throughput_rps > 0.0 {
                    i.throughput_rps / u.throughput_rps
                } else {
                    0.0
                },
                instrumented_cpu_us_per_request: i.gateway_cpu_us_per_request,
                uninstrumented_cpu_us_per_request: u.gateway_cpu_us_per_request,
            });
        }
    }
    (added, ratios)
}

fn added_row<'a>(
    report: &'a Report,
    workload: &str,
    mode: &str,
    target: &str,
    baseline: &str,
) -> Option<&'a Added> {
    report.added_latency.iter().find(|a| {
        a.workload == workload && a.mode == mode && a.target == target && a.baseline == baseline
    })
}

/// One budget's line for one content capture setting (`None`: not measured in this run).
type BudgetLine = fn(&Report, &[u32], CaptureMode) -> Option<Budget>;

/// The budgets, one line per budget and content capture setting (capture on, then off).
fn budgets(report: &Report, rates: &[u32], captures: &[CaptureMode]) -> Vec<Budget> {
    let kinds: [BudgetLine; 8] = [
        |r, rates, c| added_latency_budget(r, rates, c, false),
        |r, rates, c| added_latency_budget(r, rates, c, true),
        |r, _, c| throughput_budget(r, Workload::Plain, c),
        |r, _, c| throughput_budget(r, Workload::Stream, c),
        |r, _, c| ttfb_budget(r, c),
        |r, _, c| memory_budget(r, c),
        |r, _, c| startup_budget(r, c),
        |r, _, c| reload_budget(r, c),
    ];
    kinds
        .iter()
        .flat_map(|kind| captures.iter().filter_map(|c| kind(report, rates, *c)))
        .collect()
}

/// Added latency p50 (or p99) of `chat` at 1,000 req/s (or the highest rate measured).
fn added_latency_budget(
    report: &Report,
    rates: &[u32],
    capture: CaptureMode,
    p99: bool,
) -> Option<Budget> {
    let plain = Workload::Plain.name();
    let rate = if rates.contains(&1000) {
        Some(1000)
    } else {
        rates.iter().copied().max()
    }?;
    let mode = Mode::Rate(rate).name();
    let target = capture.target();
    let a = added_row(report, plain, &mode, target, DIRECT)?;
    let measured = find(&report.phases, plain, &mode, target)?;
    let direct = find(&report.phases, plain, &mode, DIRECT)?;
    let proxy = added_row(report, plain, &mode, UNINSTRUMENTED, DIRECT);
    let (name, limit, added, at, base, proxy_added) = if p99 {
        (
            "gateway added latency p99 (instrumented - direct)",
            0.5,
            a.p99_ms,
            measured.latency.p99_ms,
            direct.latency.p99_ms,
            proxy.map(|p| p.p99_ms),
        )
    } else {
        (
            "gateway added latency p50 (instrumented - direct)",
            0.1,
            a.p50_ms,
            measured.latency.p50_ms,
            direct.latency.p50_ms,
            proxy.map(|p| p.p50_ms),
        )
    };
    let quantile = if p99 { "p99" } else { "p50" };
    Some(Budget {
        budget: name,
        capture: capture.name(),
        limit: format!("<= {limit} ms at 1000 req/s (measured at {rate}/s)"),
        measured: format!("{added:.3} ms ({target} {quantile} {at:.3} ms)"),
        baseline: format!(
            "direct {quantile} {base:.3} ms (uninstrumented - direct {})",
            proxy_added
                .map(|v| format!("{v:+.3} ms"))
                .unwrap_or_else(|| "-".into())
        ),
        met: Some(added <= limit),
    })
}

/// Throughput instrumented / uninstrumented at maximum throughput.
fn throughput_budget(report: &Report, workload: Workload, capture: CaptureMode) -> Option<Budget> {
    let r = report
        .throughput_ratio
        .iter()
        .find(|r| r.workload == workload.name() && r.capture == capture.name())?;
    Some(Budget {
        budget: match workload {
            Workload::Plain => "throughput, instrumented / uninstrumented (chat)",
            Workload::Stream => "throughput, instrumented / uninstrumented (chat-stream)",
        },
        capture: capture.name(),
        limit: format!(">= 0.85 ({})", r.mode),
        measured: format!(
            "{:.3} ({} {:.1} req/s; gateway CPU {} us per request)",
            r.instrumented_over_uninstrumented,
            r.target,
            r.instrumented_rps,
            opt(r.instrumented_cpu_us_per_request, 1)
        ),
        baseline: format!(
            "uninstrumented {:.1} req/s, gateway CPU {} us per request (direct {:.1} req/s)",
            r.uninstrumented_rps,
            opt(r.uninstrumented_cpu_us_per_request, 1),
            r.direct_rps
        ),
        met: Some(r.instrumented_over_uninstrumented >= 0.85),
    })
}

/// Added time to first byte of streams at the fixed rates; the worst p50 decides.
fn ttfb_budget(report: &Report, capture: CaptureMode) -> Option<Budget> {
    let stream = Workload::Stream.name();
    let target = capture.target();
    let rows: Vec<&Added> = report
        .added_latency
        .iter()
        .filter(|a| {
            a.workload == stream
                && a.mode.ends_with("/s")
                && a.target == target
                && a.baseline == DIRECT
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    let worst = rows
        .iter()
        .filter_map(|a| a.ttfb_p50_ms)
        .fold(f64::MIN, f64::max);
    let detail: Vec<String> = rows
        .iter()
        .map(|a| {
            format!(
                "{}: p50 {:+.3} / p99 {:+.3}",
                a.mode,
                a.ttfb_p50_ms.unwrap_or_default(),
                a.ttfb_p99_ms.unwrap_or_default()
            )
        })
        .collect();
    let direct: Vec<String> = rows
        .iter()
        .map(|a| {
            let ttfb = find(&report.phases, stream, &a.mode, DIRECT).and_then(|p| p.ttfb);
            format!(
                "{}: p50 {} / p99 {}",
                a.mode,
                opt(ttfb.map(|t| t.p50_ms), 3),
                opt(ttfb.map(|t| t.p99_ms), 3)
            )
        })
        .collect();
    Some(Budget {
        budget: "added TTFB on streams, p50 (instrumented - direct)",
        capture: capture.name(),
        limit: "<= 0.5 ms".into(),
        measured: format!("{} ms", detail.join("; ")),
        baseline: format!("direct TTFB {} ms", direct.join("; ")),
        met: Some(worst <= 0.5),
    })
}

/// Peak RSS of a fresh gateway with `--memory-streams` streams open at once.
fn memory_budget(report: &Report, capture: CaptureMode) -> Option<Budget> {
    let m = report
        .streams_memory
        .iter()
        .find(|m| m.variant == capture.target())?;
    let plain = report
        .streams_memory
        .iter()
        .find(|m| m.variant == UNINSTRUMENTED);
    Some(Budget {
        budget: "gateway RSS with concurrent streams (VmHWM)",
        capture: capture.name(),
        limit: "<= 64 MB with 1000 streams".into(),
        measured: format!(
            "{} MB with {} streams ({} at once at the mock; idle {} MB)",
            opt(m.peak_rss_mb_vmhwm, 1),
            m.streams,
            m.peak_concurrent_streams_at_mock,
            opt(m.idle_rss_mb, 1)
        ),
        baseline: match plain {
            Some(p) => format!(
                "uninstrumented {} MB with {} streams ({} at once; idle {} MB)",
                opt(p.peak_rss_mb_vmhwm, 1),
                p.streams,
                p.peak_concurrent_streams_at_mock,
                opt(p.idle_rss_mb, 1)
            ),
            None => "-".into(),
        },
        met: m.peak_rss_mb_vmhwm.map(|mb| mb <= 64.0),
    })
}

fn startup_budget(report: &Report, capture: CaptureMode) -> Option<Budget> {
    let s = report.startup.as_ref()?;
    let h = match capture {
        CaptureMode::On => s.spawn_to_healthz.as_ref(),
        CaptureMode::Off => s.spawn_to_healthz_capture_off.as_ref(),
    }?;
    Some(Budget {
        budget: "startup, spawn to /healthz (all bundled providers)",
        capture: capture.name(),
        limit: "<= 50 ms".into(),
        measured: format!(
            "p50 {:.1} ms (min {:.1}, max {:.1})",
            h.p50_ms, h.min_ms, h.max_ms
        ),
        baseline: format!(
            "uninstrumented p50 {} ms; catalog compile {:.1} ms in process (first call)",
            opt(
                s.spawn_to_healthz_uninstrumented.as_ref().map(|u| u.p50_ms),
                1
            ),
            s.catalog_compile_first_ms
        ),
        met: Some(h.p50_ms <= 50.0),
    })
}

fn reload_budget(report: &Report, capture: CaptureMode) -> Option<Budget> {
    let s = report.startup.as_ref()?;
    let r = match capture {
        CaptureMode::On => s.reload.as_ref(),
        CaptureMode::Off => s.reload_capture_off.as_ref(),
    }?;
    Some(Budget {
        budget: "hot reload, file written to rules active (all bundled providers)",
        capture: capture.name(),
        limit: "<= 100 ms".into(),
        measured: format!(
            "p50 {:.1} ms (min {:.1}, max {:.1})",
            r.p50_ms, r.min_ms, r.max_ms
        ),
        baseline: format!(
            "none, an absolute limit (catalog compile {:.1} ms in process, first call)",
            s.catalog_compile_first_ms
        ),
        met: Some(r.p50_ms <= 100.0),
    })
}

// ---------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

fn print_phases(phases: &[Phase]) {
    println!(
        "\n{:<11} {:<9} {:<22} {:>7} {:>5} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "workload",
        "mode",
        "target",
        "reqs",
        "errs",
        "late",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "ttfb50",
        "ttfb99",
        "gw cpu/rq"
    );
    for p in phases {
        println!(
            "{:<11} {:<9} {:<22} {:>7} {:>5} {:>5} {:>8.1} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8} {:>8} {:>9}",
            p.workload,
            p.mode,
            p.target,
            p.requests,
            p.errors,
            p.late_sends,
            p.throughput_rps,
            p.latency.p50_ms,
            p.latency.p90_ms,
            p.latency.p99_ms,
            p.latency.max_ms,
            opt(p.ttfb.map(|t| t.p50_ms), 3),
            opt(p.ttfb.map(|t| t.p99_ms), 3),
            p.gateway_cpu_us_per_request
                .map(|us| format!("{us:.0} us"))
                .unwrap_or_else(|| "-".into()),
        );
        if let Some(e) = &p.first_error {
            println!("    first error: {e}");
        }
    }
}

fn print_report(report: &Report) {
    println!(
        "\n== specter gateway load test ({} CPUs; load average at start {}, at end {}) ==",
        report.machine.cpus, report.machine.loadavg_at_start, report.machine.loadavg_at_end
    );
    if let Some(s) = &report.startup {
        println!(
            "\n-- startup ({} runs, {} bundled providers) --",
            s.runs, s.providers
        );
        let line = |name: &str, v: &Option<MinMedMax>| {
            if let Some(v) = v {
                println!(
                    "{name:<46} p50 {:>7.2} ms   min {:>7.2}   max {:>7.2}",
                    v.p50_ms, v.min_ms, v.max_ms
                );
            }
        };
        line("spawn -> /healthz answers", &s.spawn_to_healthz);
        line(
            "spawn -> /healthz answers (capture off)",
            &s.spawn_to_healthz_capture_off,
        );
        line(
            "spawn -> /healthz answers (--no-instrument)",
            &s.spawn_to_healthz_uninstrumented,
        );
        line("spawn -> \"listening on\" line", &s.spawn_to_listening);
        line("`specter --version` (exec alone)", &s.exec_version);
        line(
            "`specter list --format json` (exec + catalog)",
            &s.exec_list,
        );
        line("Catalog::bundled() in process, later calls (compiled specs reused, route index rebuilt)", &s.catalog_compile);
        line("Catalog::clone() in process", &s.catalog_clone);
        line("hot reload, write -> \"reloaded\" line", &s.reload);
        line(
            "hot reload, write -> \"reloaded\" (capture off)",
            &s.reload_capture_off,
        );
        println!(
            "{:<46} {:>7.2} ms",
            "Catalog::bundled() in process (first call)", s.catalog_compile_first_ms
        );
    }
    if !report.phases.is_empty() {
        println!("\n-- load (latency from send to last body byte; ttfb to first body byte) --");
        print_phases(&report.phases);
        println!("\n-- added latency (difference of percentiles) --");
        println!(
            "{:<11} {:<9} {:<39} {:>9} {:>9} {:>9} {:>9}",
            "workload", "mode", "comparison", "d p50 ms", "d p99 ms", "d ttfb50", "d ttfb99"
        );
        for a in &report.added_latency {
            println!(
                "{:<11} {:<9} {:<39} {:>+9.3} {:>+9.3} {:>9} {:>9}",
                a.workload,
                a.mode,
                a.comparison,
                a.p50_ms,
                a.p99_ms,
                a.ttfb_p50_ms
                    .map(|v| format!("{v:+.3}"))
                    .unwrap_or_else(|| "-".into()),
                a.ttfb_p99_ms
                    .map(|v| format!("{v:+.3}"))
                    .unwrap_or_else(|| "-".into()),
            );
        }
        println!("\n-- maximum throughput --");
        for r in &report.throughput_ratio {
            println!(
                "{:<11} {:<9} capture {:<3}  direct {:>8.1}  uninstrumented {:>8.1}  instrumented {:>8.1} req/s  instrumented/uninstrumented {:.3}",
                r.workload,
                r.mode,
                r.capture,
                r.direct_rps,
                r.uninstrumented_rps,
                r.instrumented_rps,
                r.instrumented_over_uninstrumented
            );
            println!(
                "{:<33} gateway CPU per request: uninstrumented {} us, {} {} us",
                "",
                opt(r.uninstrumented_cpu_us_per_request, 1),
                r.target,
                opt(r.instrumented_cpu_us_per_request, 1)
            );
        }
    }
    if !report.gateway_peak_rss_mb.is_empty() {
        println!("\n-- gateway peak RSS after the load phases (VmHWM) --");
        for (name, mb) in &report.gateway_peak_rss_mb {
            println!("{name:<22} {} MB", opt(*mb, 1));
        }
    }
    for m in &report.streams_memory {
        println!(
            "\n-- {} streams held {} ms through a fresh {} gateway --",
            m.streams, m.hold_ms, m.variant
        );
        println!(
            "completed {}  errors {}  peak concurrent streams at the mock {}  took {:.0} ms",
            m.completed, m.errors, m.peak_concurrent_streams_at_mock, m.elapsed_ms
        );
        println!(
            "RSS idle {} MB, sampled peak {} MB, VmHWM {} MB, after {} MB",
            opt(m.idle_rss_mb, 1),
            opt(m.sampled_peak_rss_mb, 1),
            opt(m.peak_rss_mb_vmhwm, 1),
            opt(m.rss_after_mb, 1)
        );
        if let Some(e) = &m.first_error {
            println!("first error: {e}");
        }
    }
    if !report.budgets.is_empty() {
        println!("\n-- budgets --");
        for b in &report.budgets {
            let verdict = match b.met {
                Some(true) => "MET",
                Some(false) => "MISSED",
                None => "n/a",
            };
            println!(
                "[{verdict:^6}] {}, capture {} ({}): {}; baseline: {}",
                b.budget, b.capture, b.limit, b.measured, b.baseline
            );
        }
    }
    println!("\ntotal {:.1} s", report.total_seconds);
}

// ---------------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------------

fn time_command(binary: &Path, args: &[&str], runs: usize) -> Option<MinMedMax> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let status = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        if !status.success() {
            return None;
        }
        times.push(start.elapsed());
    }
    MinMedMax::of(&mut times)
}

/// Times hot reloads: the bundled specs copied to a temporary directory, `specter serve
/// --providers DIR`, then `runs` rewrites of `openai.yaml` (alternating two valid versions), each
/// timed from the write to the "reloaded" line on the gateway's stderr.
fn measure_reload(
    binary: &Path,
    upstream: SocketAddr,
    runs: usize,
    capture: CaptureMode,
) -> Result<Option<MinMedMax>> {
    let dir = std::env::temp_dir().join(format!(
        "specter-loadtest-reload-{}-{}",
        std::process::id(),
        capture.name()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir("providers")? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            if let Some(name) = path.file_name() {
                std::fs::copy(&path, dir.join(name))?;
            }
        }
    }
    let original = std::fs::read_to_string(dir.join("openai.yaml"))?;
    let changed = original.replace("\nname: OpenAI\n", "\nname: OpenAI (reloaded)\n");
    let port = free_port()?;
    let mut child = Command::new(binary)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--quiet",
            "--no-traces-file",
        ])
        .args([
            "--upstream",
            &format!("openai=http://{upstream}"),
            "--providers",
        ])
        .arg(&dir)
        .env(CAPTURE_VARIABLE, capture.env_value())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, String)>();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let wait_for = |needle: &str| -> Option<Instant> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok((at, line)) =
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if line.contains(needle) {
                return Some(at);
            }
        }
        None
    };
    let mut times = Vec::new();
    if wait_for("listening on").is_some() {
        for run in 0..runs {
            // Changes closer together than the debounce would be folded into one reload.
            std::thread::sleep(Duration::from_millis(300));
            let text = if run % 2 == 0 { &changed } else { &original };
            let written = Instant::now();
            std::fs::write(dir.join("openai.yaml"), text)?;
            match wait_for("reloaded") {
                Some(at) => times.push(at.saturating_duration_since(written)),
                None => break,
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(MinMedMax::of(&mut times))
}

fn measure_startup(
    binary: &Path,
    upstream: SocketAddr,
    runs: usize,
    captures: &[CaptureMode],
) -> Result<Startup> {
    let first = Instant::now();
    let catalog = specter::Catalog::bundled().map_err(|e| anyhow!("{e}"))?;
    let catalog_compile_first_ms = ms(first.elapsed());
    let providers = catalog.providers().len();
    drop(catalog);
    let mut compiles = Vec::new();
    let mut clones = Vec::new();
    for _ in 0..runs.max(5) {
        let start = Instant::now();
        let catalog = specter::Catalog::bundled().map_err(|e| anyhow!("{e}"))?;
        compiles.push(start.elapsed());
        // `specter serve` clones the catalog twice (routing and instrumentor).
        let start = Instant::now();
        let copy = catalog.clone();
        clones.push(start.elapsed());
        drop(copy);
        drop(catalog);
    }
    let exec_version = time_command(binary, &["--version"], runs);
    let exec_list = time_command(binary, &["list", "--format", "json"], runs);
    let mut healthy = Vec::new();
    let mut listening = Vec::new();
    let mut healthy_off = Vec::new();
    let mut healthy_plain = Vec::new();
    // One start of each kind per round, so all see the same machine.
    for _ in 0..runs {
        if captures.contains(&CaptureMode::On) {
            let gateway = spawn_gateway(binary, upstream, Variant::Instrumented(CaptureMode::On))?;
            healthy.push(gateway.healthy_after);
            if let Some(l) = gateway.listening_after {
                listening.push(l);
            }
        }
        if captures.contains(&CaptureMode::Off) {
            let gateway = spawn_gateway(binary, upstream, Variant::Instrumented(CaptureMode::Off))?;
            healthy_off.push(gateway.healthy_after);
        }
        let gateway = spawn_gateway(binary, upstream, Variant::Uninstrumented)?;
        healthy_plain.push(gateway.healthy_after);
    }
    let reload_with = |capture: CaptureMode| -> Result<Option<MinMedMax>> {
        if captures.contains(&capture) {
            measure_reload(binary, upstream, runs, capture)
        } else {
            Ok(None)
        }
    };
    Ok(Startup {
        runs,
        providers,
        spawn_to_listening: MinMedMax::of(&mut listening),
        spawn_to_healthz: MinMedMax::of(&mut healthy),
        spawn_to_healthz_capture_off: MinMedMax::of(&mut healthy_off),
        spawn_to_healthz_uninstrumented: MinMedMax::of(&mut healthy_plain),
        exec_version,
        exec_list,
        catalog_compile_first_ms,
        catalog_compile: MinMedMax::of(&mut compiles),
        catalog_clone: MinMedMax::of(&mut clones),
        reload: reload_with(CaptureMode::On)?,
        reload_capture_off: reload_with(CaptureMode::Off)?,
    })
}

/// Where the load goes: the mock directly, or a gateway.
#[derive(Clone, Copy)]
struct Target<'a> {
    name: &'static str,
    address: SocketAddr,
    gateway: Option<&'a Gateway>,
}

impl Target<'_> {
    fn through_gateway(&self) -> bool {
        self.gateway.is_some()
    }
}

fn call_for(
    workload: Workload,
    address: SocketAddr,
    through_gateway: bool,
    mock: &Mock,
) -> Result<Call> {
    let path = if through_gateway {
        "/openai/v1/chat/completions"
    } else {
        "/v1/chat/completions"
    };
    let uri: Uri = format!("http://{address}{path}").parse()?;
    Ok(match workload {
        Workload::Plain => Call {
            uri,
            body: Bytes::from_static(PLAIN_REQUEST),
            expect_bytes: PLAIN_RESPONSE.len(),
            interval_ms: None,
        },
        Workload::Stream => Call {
            uri,
            body: Bytes::from_static(STREAM_REQUEST),
            expect_bytes: mock.stream_bytes,
            interval_ms: None,
        },
    })
}

/// Runs every (workload, mode) against every target, after the same warm-up for each.
async fn run_load(
    args: &Args,
    targets: &[Target<'_>],
    mock: &Mock,
    ticks: f64,
) -> Result<Vec<Phase>> {
    let driver = Driver {
        args,
        client: http_client(),
        mock,
        ticks,
        half: Duration::from_secs_f64(args.duration_secs.max(0.1) / 2.0),
    };
    for target in targets {
        driver.warm_up(*target).await?;
    }
    let mut phases = Vec::new();
    let mut round = 0usize;
    for workload in [Workload::Plain, Workload::Stream] {
        let rates = match workload {
            Workload::Plain => &args.rates,
            Workload::Stream => &args.stream_rates,
        };
        let mut modes: Vec<Mode> = rates.iter().map(|r| Mode::Rate(*r)).collect();
        modes.push(Mode::Max(args.concurrency));
        for mode in modes {
            phases.extend(driver.run_mode(targets, workload, mode, round).await?);
            round += 1;
        }
    }
    Ok(phases)
}

/// What every half phase shares.
struct Driver<'a> {
    args: &'a Args,
    client: HttpClient,
    mock: &'a Mock,
    ticks: f64,
    half: Duration,
}

impl Driver<'_> {
    /// Fills the connection pools of a path with both workloads (not measured).
    async fn warm_up(&self, target: Target<'_>) -> Result<()> {
        for workload in [Workload::Plain, Workload::Stream] {
            let call = call_for(
                workload,
                target.address,
                target.through_gateway(),
                self.mock,
            )?;
            let warm = closed_loop(
                &self.client,
                &call,
                self.args.concurrency,
                Duration::from_millis(400),
                100_000,
            )
            .await;
            if warm.samples.is_empty() {
                bail!(
                    "warm-up against {} ({}) failed: {}",
                    target.name,
                    target.address,
                    warm.first_error.unwrap_or_default()
                );
            }
        }
        Ok(())
    }

    /// One (workload, mode) against every target, in two halves of half the duration: the
    /// targets one after the other, then in the reverse order, so that on average each target
    /// runs at the same point of the sequence (none systematically on a hotter machine). The
    /// starting target rotates with `round`. The halves' samples are pooled, their CPU added.
    async fn run_mode(
        &self,
        targets: &[Target<'_>],
        workload: Workload,
        mode: Mode,
        round: usize,
    ) -> Result<Vec<Phase>> {
        let mut order: Vec<usize> = (0..targets.len()).collect();
        order.rotate_left(round % targets.len().max(1));
        let reversed: Vec<usize> = order.iter().rev().copied().collect();
        let mut results: Vec<(Outcome, Option<f64>)> = (0..targets.len())
            .map(|_| (Outcome::default(), Some(0.0)))
            .collect();
        for (pass, sequence) in [order, reversed].into_iter().enumerate() {
            for index in sequence {
                let (Some(target), Some(slot)) = (targets.get(index), results.get_mut(index))
                else {
                    continue;
                };
                let (outcome, cpu) = self.run_half(*target, workload, mode).await?;
                slot.0.merge(outcome, pass);
                slot.1 = slot.1.zip(cpu).map(|(a, b)| a + b);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let mut phases = Vec::new();
        for (target, (outcome, cpu)) in targets.iter().zip(results) {
            let phase = phase_report(workload, mode, target.name, outcome, cpu);
            eprintln!(
                "  {:<11} {:<9} {:<22} {:>6} req {:>4} err {:>8.1} req/s p50 {:.3} ms p99 {:.3} ms",
                phase.workload,
                phase.mode,
                phase.target,
                phase.requests,
                phase.errors,
                phase.throughput_rps,
                phase.latency.p50_ms,
                phase.latency.p99_ms
            );
            phases.push(phase);
        }
        Ok(phases)
    }

    /// One half of a phase against one target: its outcome and the gateway's CPU seconds.
    async fn run_half(
        &self,
        target: Target<'_>,
        workload: Workload,
        mode: Mode,
    ) -> Result<(Outcome, Option<f64>)> {
        let call = call_for(
            workload,
            target.address,
            target.through_gateway(),
            self.mock,
        )?;
        let cpu_before = target.gateway.and_then(Gateway::cpu_ticks);
        let outcome = match mode {
            Mode::Rate(rate) => {
                open_loop(
                    &self.client,
                    &call,
                    rate,
                    self.half,
                    self.args.max_in_flight,
                )
                .await
            }
            Mode::Max(connections) => {
                closed_loop(&self.client, &call, connections, self.half, 5_000_000).await
            }
        };
        let cpu_after = target.gateway.and_then(Gateway::cpu_ticks);
        let cpu = cpu_before
            .zip(cpu_after)
            .map(|(b, a)| a.saturating_sub(b) as f64 / self.ticks);
        Ok((outcome, cpu))
    }
}

async fn streams_memory(
    variant: &'static str,
    gateway: &Gateway,
    mock: &Mock,
    streams: usize,
    hold_ms: u64,
) -> Result<StreamsMemory> {
    let client = http_client();
    let interval_ms = (hold_ms / (STREAM_CHUNKS as u64 - 1)).max(1);
    let mut call = call_for(Workload::Stream, gateway.address, true, mock)?;
    call.interval_ms = Some(interval_ms);
    let idle = gateway.status_kb("VmRSS");
    mock.peak
        .store(mock.active.load(Ordering::Relaxed), Ordering::Relaxed);
    let start = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let pid = gateway.pid();
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut peak = 0u64;
            // Bounded: stops when the streams are done or after 120 s.
            for _ in 0..(120_000 / 20) {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                if let Some(kb) = proc_status_kb(pid, "VmRSS") {
                    peak = peak.max(kb);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    let timeout = Duration::from_millis(hold_ms) + Duration::from_secs(30);
    let mut tasks = JoinSet::new();
    for i in 0..streams {
        // Open the connections in batches so the listen backlog never overflows.
        if i > 0 && i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let client = client.clone();
        let call = call.clone();
        tasks.spawn(async move { timed_request(&client, &call, timeout).await });
    }
    let mut outcome = Outcome::default();
    let drain_until = tokio::time::Instant::now() + timeout + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(drain_until, tasks.join_next()).await {
            Ok(Some(Ok(result))) => outcome.record(result),
            Ok(Some(Err(_))) => outcome.record(Err(anyhow!("stream task failed"))),
            Ok(None) => break,
            Err(_) => {
                let left = tasks.len();
                tasks.abort_all();
                for _ in 0..left {
                    outcome.record(Err(anyhow!("stream still open after the timeout")));
                }
                break;
            }
        }
    }
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let sampled = sampler.await.ok().filter(|kb| *kb > 0);
    let hwm = gateway.status_kb("VmHWM");
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(StreamsMemory {
        variant,
        streams,
        hold_ms,
        completed: outcome.samples.len(),
        errors: outcome.errors,
        first_error: outcome.first_error,
        peak_concurrent_streams_at_mock: mock.peak.load(Ordering::Relaxed),
        idle_rss_mb: kb_to_mb(idle),
        sampled_peak_rss_mb: kb_to_mb(sampled),
        peak_rss_mb_vmhwm: kb_to_mb(hwm),
        rss_after_mb: kb_to_mb(gateway.status_kb("VmRSS")),
        elapsed_ms: ms(elapsed),
    })
}

fn specter_binary(args: &Args) -> Result<PathBuf> {
    if let Some(path) = &args.specter {
        return Ok(path.clone());
    }
    let exe = std::env::current_exe()?;
    // target/release/examples/loadtest -> target/release/specter
    let beside = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("specter"));
    match beside {
        Some(path) if path.is_file() => Ok(path),
        _ => bail!(
            "no specter binary beside {}; run `cargo build --release --bin specter` or pass --specter PATH",
            exe.display()
        ),
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() -> Result<()> {
    let args = Args::parse();
    let began = Instant::now();
    let binary = specter_binary(&args)?;
    let ticks = clock_ticks_per_second();
    let machine = Machine {
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        loadavg_at_start: loadavg(),
        loadavg_at_end: String::new(),
        specter_binary: binary.display().to_string(),
    };
    eprintln!("loadtest: specter binary {}", binary.display());

    // The mock gets its own single-threaded runtime; the load generator a two-thread one.
    let mock_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("mock")
        .enable_all()
        .build()?;
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()?;
    let mock = Arc::new(Mock::new()?);
    let listener = mock_runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let mock_address = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mock_task = mock_runtime.spawn(serve_mock(listener, mock.clone(), stop_rx));
    eprintln!("loadtest: mock upstream on http://{mock_address}");

    let mut captures: Vec<CaptureMode> = Vec::new();
    for capture in &args.capture_modes {
        if !captures.contains(capture) {
            captures.push(*capture);
        }
    }
    let startup = if args.startup_runs > 0 {
        eprintln!("loadtest: timing {} gateway starts", args.startup_runs);
        Some(measure_startup(
            &binary,
            mock_address,
            args.startup_runs,
            &captures,
        )?)
    } else {
        None
    };

    let mut phases = Vec::new();
    let mut gateway_peak_rss_mb = BTreeMap::new();
    let variants: Vec<Variant> = captures
        .iter()
        .map(|c| Variant::Instrumented(*c))
        .chain([Variant::Uninstrumented])
        .collect();
    if !args.no_load {
        let gateways = variants
            .iter()
            .map(|v| Ok((*v, spawn_gateway(&binary, mock_address, *v)?)))
            .collect::<Result<Vec<_>>>()?;
        for (variant, gateway) in &gateways {
            eprintln!(
                "loadtest: {} gateway on {} (pid {})",
                variant.name(),
                gateway.address,
                gateway.pid()
            );
        }
        let mut targets = vec![Target {
            name: DIRECT,
            address: mock_address,
            gateway: None,
        }];
        targets.extend(gateways.iter().map(|(variant, gateway)| Target {
            name: variant.name(),
            address: gateway.address,
            gateway: Some(gateway),
        }));
        phases = client_runtime.block_on(run_load(&args, &targets, &mock, ticks))?;
        for (variant, gateway) in &gateways {
            gateway_peak_rss_mb.insert(variant.name(), kb_to_mb(gateway.status_kb("VmHWM")));
        }
    }

    let mut memory = Vec::new();
    if args.memory_streams > 0 {
        for variant in &variants {
            eprintln!(
                "loadtest: {} streams through a fresh {} gateway",
                args.memory_streams,
                variant.name()
            );
            let gateway = spawn_gateway(&binary, mock_address, *variant)?;
            memory.push(client_runtime.block_on(streams_memory(
                variant.name(),
                &gateway,
                &mock,
                args.memory_streams,
                args.memory_hold_ms,
            ))?);
        }
    }

    let fleet = if args.fleet > 0 {
        eprintln!("loadtest: {} gateways behind HAProxy", args.fleet);
        client_runtime.block_on(measure_fleet(&args, &binary, mock_address, &mock, ticks))?
    } else {
        Vec::new()
    };

    let _ = stop_tx.send(true);
    let _ = mock_runtime.block_on(mock_task);
    mock_runtime.shutdown_timeout(Duration::from_secs(1));
    client_runtime.shutdown_timeout(Duration::from_secs(1));

    let (added_latency, throughput_ratio) = comparisons(&phases, &captures);
    let mut report = Report {
        machine,
        settings: Settings {
            duration_secs: args.duration_secs,
            rates: args.rates.clone(),
            stream_rates: args.stream_rates.clone(),
            concurrency: args.concurrency,
            max_in_flight: args.max_in_flight,
            stream_chunks: STREAM_CHUNKS,
            chunk_interval_ms: CHUNK_INTERVAL_MS,
            memory_streams: args.memory_streams,
            memory_hold_ms: args.memory_hold_ms,
            capture_modes: captures.iter().map(|c| c.name()).collect(),
        },
        startup,
        phases,
        added_latency,
        throughput_ratio,
        gateway_peak_rss_mb,
        streams_memory: memory,
        budgets: Vec::new(),
        fleet,
        total_seconds: 0.0,
    };
    report.budgets = budgets(&report, &args.rates, &captures);
    report.machine.loadavg_at_end = loadavg();
    report.total_seconds = began.elapsed().as_secs_f64();
    print_report(&report);
    print_fleet(&report.fleet);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("figures written to {}", path.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Replicas behind HAProxy
// ---------------------------------------------------------------------------------------------

/// The load balancer's configuration as deployed.
const HAPROXY_CFG: &str = include_str!("../deploy/haproxy.cfg");

/// HAProxy running `deploy/haproxy.cfg` on loopback; killed when dropped.
struct HAProxy {
    child: Child,
    address: SocketAddr,
    _dir: TempDir,
}

impl Drop for HAProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `deploy/haproxy.cfg` with the frontend on `listen`, the servers `specter-1`... on `replicas`,
/// and the runtime API socket in `dir`.
fn haproxy_config(listen: SocketAddr, replicas: &[SocketAddr], dir: &Path) -> Result<String> {
    let mut config = HAPROXY_CFG
        .replace("bind :8787", &format!("bind {listen}"))
        .replace(
            "/var/lib/haproxy/admin.sock",
            &dir.join("admin.sock").display().to_string(),
        );
    for (i, address) in replicas.iter().enumerate() {
        let name = format!("specter-{}", i + 1);
        let line = format!("server {name} {name}:8787");
        if !config.contains(&line) {
            bail!("deploy/haproxy.cfg has no line `{line}`");
        }
        config = config.replace(&line, &format!("server {name} {address}"));
    }
    Ok(config)
}

fn spawn_haproxy(binary: &Path, replicas: &[SocketAddr]) -> Result<HAProxy> {
    let dir = std::env::temp_dir().join(format!("specter-loadtest-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let dir = TempDir(dir);
    let address = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let config = dir.0.join("haproxy.cfg");
    std::fs::write(&config, haproxy_config(address, replicas, &dir.0)?)?;
    let child = Command::new(binary)
        .arg("-db")
        .arg("-f")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut haproxy = HAProxy {
        child,
        address,
        _dir: dir,
    };
    // Up once it answers /healthz through every replica (health checks run each second).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut answered = 0;
    while answered < replicas.len() * 3 {
        if let Some(status) = haproxy.child.try_wait()? {
            bail!("haproxy exited ({status})");
        }
        if Instant::now() > deadline {
            bail!("haproxy did not answer /healthz within 15 s");
        }
        if healthz(address) {
            answered += 1;
        } else {
            answered = 0;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Give the health checks time to see every server up.
    std::thread::sleep(Duration::from_millis(2500));
    Ok(haproxy)
}

/// One closed-loop phase through HAProxy.
#[derive(Debug, Clone, Serialize)]
struct FleetPhase {
    workload: &'static str,
    replicas: usize,
    connections: usize,
    requests: usize,
    errors: usize,
    throughput_rps: f64,
    latency: Latency,
    /// CPU seconds (user + system) of all replicas together, and of HAProxy.
    replicas_cpu_s: f64,
    haproxy_cpu_s: f64,
    /// Requests per second of replica CPU: what one core of gateway serves.
    requests_per_replica_core_s: Option<f64>,
    /// Peak resident memory of each replica, MiB.
    replica_peak_rss_mb: Vec<Option<f64>>,
    first_error: Option<String>,
}

async fn measure_fleet(
    args: &Args,
    binary: &Path,
    upstream: SocketAddr,
    mock: &Mock,
    ticks: f64,
) -> Result<Vec<FleetPhase>> {
    let replicas = (0..args.fleet)
        .map(|_| spawn_gateway(binary, upstream, Variant::Instrumented(CaptureMode::On)))
        .collect::<Result<Vec<_>>>()?;
    let addresses: Vec<SocketAddr> = replicas.iter().map(|g| g.address).collect();
    let haproxy = spawn_haproxy(&args.haproxy, &addresses)?;
    let client = http_client();
    let duration = Duration::from_secs_f64(args.duration_secs.max(0.1));
    let cpu = |pids: &[u32]| -> u64 { pids.iter().filter_map(|p| proc_cpu_ticks(*p)).sum() };
    let replica_pids: Vec<u32> = replicas.iter().map(Gateway::pid).collect();
    let haproxy_pid = [haproxy.child.id()];
    let mut phases = Vec::new();
    for workload in [Workload::Plain, Workload::Stream] {
        let call = call_for(workload, haproxy.address, true, mock)?;
        // Warm-up (not measured).
        let _ = closed_loop(
            &client,
            &call,
            args.concurrency,
            Duration::from_millis(400),
            100_000,
        )
        .await;
        let (replicas_before, haproxy_before) = (cpu(&replica_pids), cpu(&haproxy_pid));
        let mut outcome = closed_loop(&client, &call, args.concurrency, duration, 5_000_000).await;
        let replicas_cpu_s = cpu(&replica_pids).saturating_sub(replicas_before) as f64 / ticks;
        let haproxy_cpu_s = cpu(&haproxy_pid).saturating_sub(haproxy_before) as f64 / ticks;
        let requests = outcome.samples.len();
        let throughput_rps = outcome.throughput_rps;
        let mut totals: Vec<Duration> = outcome.samples.iter().map(|s| s.latency).collect();
        let phase = FleetPhase {
            workload: workload.name(),
            replicas: replicas.len(),
            connections: args.concurrency,
            requests,
            errors: outcome.errors,
            throughput_rps,
            latency: Latency::of(&mut totals),
            replicas_cpu_s,
            haproxy_cpu_s,
            requests_per_replica_core_s: (replicas_cpu_s > 0.0)
                .then(|| requests as f64 / replicas_cpu_s),
            replica_peak_rss_mb: replicas
                .iter()
                .map(|g| kb_to_mb(g.status_kb("VmHWM")))
                .collect(),
            first_error: outcome.first_error.take(),
        };
        eprintln!(
            "  {:<11} fleet of {} {:>6} req {:>4} err {:>8.1} req/s, replicas {:.2} CPU s, haproxy {:.2} CPU s",
            phase.workload,
            phase.replicas,
            phase.requests,
            phase.errors,
            phase.throughput_rps,
            phase.replicas_cpu_s,
            phase.haproxy_cpu_s
        );
        phases.push(phase);
    }
    drop(haproxy);
    drop(replicas);
    Ok(phases)
}

fn print_fleet(phases: &[FleetPhase]) {
    if phases.is_empty() {
        return;
    }
    println!("\n-- replicas behind HAProxy (closed loop through deploy/haproxy.cfg) --");
    for p in phases {
        println!(
            "{:<7} {} replicas, {} connections: {} req, {} err, {:.1} req/s, p50 {:.3} ms, p99 {:.3} ms; \
             replicas {:.2} CPU s ({} req per replica core-second), haproxy {:.2} CPU s; \
             replica peak RSS MiB {:?}",
            p.workload,
            p.replicas,
            p.connections,
            p.requests,
            p.errors,
            p.throughput_rps,
            p.latency.p50_ms,
            p.latency.p99_ms,
            p.replicas_cpu_s,
            opt(p.requests_per_replica_core_s, 0),
            p.haproxy_cpu_s,
            p.replica_peak_rss_mb
        );
        if let Some(e) = &p.first_error {
            println!("        first error: {e}");
        }
    }
}
