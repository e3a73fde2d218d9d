//! Compression bombs through `specter serve`: an upstream answers a chat completion with a body
//! of under a KiB to about a MiB that decodes to 512 MiB or 1 GiB of zeros, under each
//! `content-encoding` specter decodes. The client must receive exactly the upstream's compressed bytes, every call
//! must end its span, and the gateway's peak resident memory (`VmHWM`) must stay far below what
//! decoding the whole bomb would take.

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
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serve::Served;

/// Peak resident memory (MiB) the gateway may reach while relaying bombs. It starts at about
/// 25 MiB; each decoder may add its window (16 MiB for Brotli, 8 MiB for Zstandard) and each
/// call its kept bytes (8 MiB by default). Decoding one Brotli bomb whole took over 1 GiB.
const PEAK_BOUND_MIB: u64 = 150;

/// The bound for three Zstandard bombs at once: three 8 MiB windows and three 8 MiB bodies over
/// the start, with room to spare, and below what decoding them unbounded took (about 120 MiB).
const ZSTD_PEAK_BOUND_MIB: u64 = 96;

/// The bound for three Zstandard frames asking for 128 MiB windows, which are refused: no window
/// at all, where granting them took about 170 MiB.
const REFUSED_PEAK_BOUND_MIB: u64 = 64;

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("tests/fixtures/{path}")).unwrap()
}

/// 1 MiB of zeros, written `mib` times into `encoder`: the test never holds the plain text.
fn zeros_into(encoder: &mut impl Write, mib: usize) {
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..mib {
        encoder.write_all(&zeros).unwrap();
    }
}

/// The bombs: `content-encoding` and how the body is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Bomb {
    /// 16 gzip members of 64 MiB of zeros each.
    Gzip,
    /// One zlib stream of 512 MiB of zeros (deflate's ratio tops out near 1,000:1, so the bomb
    /// stays under a MiB).
    Deflate,
    /// 1 GiB of zeros in Brotli with a 16 MiB window: under a KiB.
    Brotli,
    /// 1 GiB of zeros in Zstandard at level 19 (an 8 MiB window).
    Zstd,
    /// 1 GiB of zeros in a Zstandard frame asking for a 128 MiB window.
    ZstdWideWindow,
}

impl Bomb {
    fn encoding(self) -> &'static str {
        match self {
            Bomb::Gzip => "gzip",
            Bomb::Deflate => "deflate",
            Bomb::Brotli => "br",
            Bomb::Zstd | Bomb::ZstdWideWindow => "zstd",
        }
    }

    fn build(self) -> Vec<u8> {
        match self {
            Bomb::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                zeros_into(&mut gz, 64);
                gz.finish().unwrap().repeat(16)
            }
            Bomb::Deflate => {
                let mut zl =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
                zeros_into(&mut zl, 512);
                zl.finish().unwrap()
            }
            Bomb::Brotli => {
                let mut br = Vec::new();
                {
                    let mut w = brotli::CompressorWriter::new(&mut br, 1 << 16, 5, 24);
                    zeros_into(&mut w, 1024);
                }
                br
            }
            Bomb::Zstd | Bomb::ZstdWideWindow => {
                let (level, window_log) = if self == Bomb::Zstd {
                    (19, 23)
                } else {
                    (3, 27)
                };
                let mut zs = zstd::stream::write::Encoder::new(Vec::new(), level).unwrap();
                zs.window_log(window_log).unwrap();
                zeros_into(&mut zs, 1024);
                zs.finish().unwrap()
            }
        }
    }

    /// The body, built once per test run.
    fn body(self) -> Bytes {
        static BUILT: Mutex<BTreeMap<Bomb, Bytes>> = Mutex::new(BTreeMap::new());
        let mut built = BUILT.lock().unwrap();
        built
            .entry(self)
            .or_insert_with(|| Bytes::from(self.build()))
            .clone()
    }
}

/// An upstream answering every request with `body` under `content-encoding: encoding`, as an
/// event stream when the request asks for one.
async fn upstream(encoding: &'static str, body: Bytes) -> SocketAddr {
    serve::http_server(move |r: Request<Incoming>| {
        let body = body.clone();
        async move {
            let request = r.into_body().collect().await.unwrap().to_bytes();
            let streamed = request.windows(14).any(|w| w == b"\"stream\": true");
            let content_type = if streamed {
                "text/event-stream"
            } else {
                "application/json"
            };
            let response = Response::builder()
                .header("content-type", content_type)
                .header("content-encoding", encoding)
                .body(Full::new(body))
                .unwrap();
            Ok::<_, Infallible>(response)
        }
    })
    .await
}

/// Peak resident memory of a process, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("specter-bombs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// `gen_ai.request.model` of every span in a traces file, checking each has ended.
fn span_models(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut models = Vec::new();
    for line in text.lines() {
        let export: serde_json::Value = serde_json::from_str(line).unwrap();
        for resource in export["resourceSpans"].as_array().unwrap() {
            for scope in resource["scopeSpans"].as_array().unwrap() {
                for span in scope["spans"].as_array().unwrap() {
                    assert!(span["endTimeUnixNano"].as_str().is_some(), "{span}");
                    let model = span["attributes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|kv| kv["key"] == "gen_ai.request.model")
                        .and_then(|kv| kv["value"]["stringValue"].as_str())
                        .unwrap_or_else(|| panic!("no request model: {span}"));
                    models.push(model.to_string());
                }
            }
        }
    }
    models
}

/// Relays `calls` of these bombs at once through a fresh gateway (streamed calls when
/// `streamed`), and checks what the clients got, the spans, and that the gateway's peak
/// resident memory stays under `bound_mib`.
async fn relay_bombs(bomb: Bomb, calls: usize, streamed: bool, bound_mib: u64) {
    let (encoding, body) = (bomb.encoding(), bomb.body());
    assert!(body.len() < 1 << 20, "{bomb:?} of {} bytes", body.len());
    let mock = upstream(encoding, body.clone()).await;
    let traces = temp_file(&format!("{bomb:?}-{calls}-{streamed}.jsonl"));
    let (upstream, traces_text) = (
        format!("openai=http://{mock}"),
        traces.display().to_string(),
    );
    let served = Served::start_async(
        &[
            "--upstream",
            &upstream,
            "--quiet",
            "--traces-file",
            &traces_text,
        ],
        &[],
    )
    .await;
    let (request, model) = if streamed {
        (
            fixture("openai/chat_stream_include_usage/request.json"),
            "gpt-4",
        )
    } else {
        (fixture("openai/chat_plain/request.json"), "gpt-4o-mini")
    };
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut sent = Vec::new();
    for _ in 0..calls {
        let request = Request::post(served.url("/openai/v1/chat/completions"))
            .header("content-type", "application/json")
            .header("authorization", "Bearer sk-bomb")
            .header("accept-encoding", encoding)
            .body(Full::new(Bytes::from(request.clone())))
            .unwrap();
        let client = client.clone();
        sent.push(tokio::spawn(async move {
            let response = client.request(request).await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["content-encoding"], encoding);
            response.into_body().collect().await.unwrap().to_bytes()
        }));
    }
    for call in sent {
        assert!(
            call.await.unwrap() == body,
            "{bomb:?}: the client got the upstream's bytes"
        );
    }
    let peak = peak_kib(served.pid());
    let lines = served.stop_async().await;
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "specter: stopped ({calls} call(s), {calls} span(s) ended; {calls} span(s) exported, 0 lost"
        ))),
        "{lines:#?}"
    );
    assert_eq!(span_models(&traces), vec![model.to_string(); calls]);
    let _ = std::fs::remove_file(&traces);
    eprintln!(
        "{calls} x {bomb:?} ({encoding}, {} bytes){}: gateway peak {} MiB",
        body.len(),
        if streamed { " (streamed)" } else { "" },
        peak / 1024
    );
    assert!(
        peak < bound_mib * 1024,
        "relaying {calls} x {bomb:?} took the gateway to {} MiB",
        peak / 1024
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brotli_bomb_is_relayed_whole_within_bounded_memory() {
    relay_bombs(Bomb::Brotli, 1, false, PEAK_BOUND_MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brotli_bombs_at_once_are_relayed_whole_within_bounded_memory() {
    relay_bombs(Bomb::Brotli, 3, false, PEAK_BOUND_MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_brotli_bomb_is_relayed_whole_within_bounded_memory() {
    relay_bombs(Bomb::Brotli, 1, true, PEAK_BOUND_MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_zstd_bombs_at_once_are_relayed_whole_within_bounded_memory() {
    relay_bombs(Bomb::Zstd, 3, false, ZSTD_PEAK_BOUND_MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_frames_asking_for_128_mib_windows_are_relayed_whole_and_not_granted_them() {
    relay_bombs(Bomb::ZstdWideWindow, 3, false, REFUSED_PEAK_BOUND_MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_is_relayed_whole_within_bounded_memory() {
    relay_bombs(Bomb::Gzip, 1, false, PEAK_BOUND_MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deflate_bomb_is_relayed_whole_within_bounded_memory() {
    relay_bombs(Bomb::Deflate, 1, false, PEAK_BOUND_MIB).await;
}
