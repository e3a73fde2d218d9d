//! Stream benchmarks: an OpenAI chat stream chunk deframed (SSE) and folded with the chat
//! operation's fold rules, beside a plain `serde_json` parse of the chunk's JSON; and a whole
//! 500-chunk stream folded, beside parsing its 500 chunks.
//!
//! Run with `cargo bench --bench stream` (add `-- --quick` for a short check).

// Benchmarks are test code: a setup failure should stop the run loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use serde_json::{json, Value as Json};
use specter::offline::DEFAULT_TEXT_CAP;
use specter::unstable::compile::rules::Stream;
use specter::unstable::engine::stream::{Deframer, Folder};
use specter::unstable::engine::{self};
use specter::Catalog;

use budget::{Budget, Figure, Id};

mod budget;

/// Words of the streamed answer, one per content chunk.
const WORDS: &[&str] = &[
    "Moving",
    " from",
    " polling",
    " to",
    " a",
    " queue",
    " changes",
    " where",
    " failures",
    " show",
    " up.",
    " The",
    " main",
    " ones",
    " are",
    " duplicate",
    " delivery",
    ",",
    " out",
    "-of",
    "-order",
    " delivery",
    " for",
    " the",
    " same",
    " invoice",
    ",",
    " poison",
    " messages",
    " and",
    " partial",
    " failures",
    " where",
    " the",
    " charge",
    " succeeds",
    " but",
    " the",
    " acknowledgement",
    " does",
    " not",
    ".\n\n",
];

const ID: &str = "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT";
const MODEL: &str = "gpt-4o-mini-2024-07-18";

fn chunk(delta: Json, finish_reason: Option<&str>, usage: Option<Json>, choices: bool) -> Json {
    let choices = if choices {
        json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}])
    } else {
        json!([])
    };
    json!({
        "id": ID,
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": MODEL,
        "system_fingerprint": "fp_06737a9306",
        "choices": choices,
        "usage": usage,
    })
}

fn sse(event: &Json) -> Vec<u8> {
    let mut out = b"data: ".to_vec();
    out.extend(serde_json::to_vec(event).unwrap());
    out.extend(b"\n\n");
    out
}

/// A typical content chunk.
fn content_chunk(i: usize) -> Json {
    chunk(json!({"content": WORDS[i % WORDS.len()]}), None, None, true)
}

/// The JSON of every chunk of an `n`-chunk stream: a role chunk, content chunks, a finish chunk
/// and a usage chunk (`stream_options.include_usage`).
fn stream_chunks(n: usize) -> Vec<Vec<u8>> {
    let mut chunks = vec![chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        None,
        None,
        true,
    )];
    for i in 0..n - 3 {
        chunks.push(content_chunk(i));
    }
    chunks.push(chunk(json!({}), Some("stop"), None, true));
    chunks.push(chunk(
        json!({}),
        None,
        Some(json!({
            "prompt_tokens": 4817, "completion_tokens": n - 3, "total_tokens": 4817 + n - 3,
            "prompt_tokens_details": {"cached_tokens": 4608, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        })),
        false,
    ));
    chunks
        .iter()
        .map(|c| serde_json::to_vec(c).unwrap())
        .collect()
}

fn stream_body(chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    for c in chunks {
        body.extend(b"data: ");
        body.extend(c);
        body.extend(b"\n\n");
    }
    body.extend(b"data: [DONE]\n\n");
    body
}

fn request_body() -> Json {
    json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "What changes when billing moves from polling to a queue?"}],
        "stream": true,
        "stream_options": {"include_usage": true}
    })
}

fn chat_stream(catalog: &Catalog) -> Stream {
    let op = catalog.operation("openai/chat").unwrap();
    op.stream.clone().unwrap()
}

fn bench_chunk(c: &mut Criterion) {
    let catalog = Catalog::bundled().unwrap();
    let stream = chat_stream(&catalog);
    let request = request_body();
    let event = sse(&content_chunk(7));
    let json_bytes = serde_json::to_vec(&content_chunk(7)).unwrap();
    eprintln!("stream/one_chunk: SSE event {} bytes", event.len());

    // A folder in the middle of a stream: role chunk and a few words already folded.
    let mut warm = Folder::new(DEFAULT_TEXT_CAP);
    let mut deframer = Deframer::new(stream.framing);
    let mut frames = Vec::new();
    for c in stream_chunks(12).iter().take(9) {
        deframer.push(&sse(&serde_json::from_slice(c).unwrap()), &mut frames);
    }
    for f in frames.drain(..) {
        assert!(warm.frame(&stream, &request, &f));
    }

    let mut group = c.benchmark_group("stream/one_chunk");
    group.throughput(Throughput::Bytes(event.len() as u64));
    group.bench_function("serde_json_parse", |b| {
        b.iter(|| serde_json::from_slice::<Json>(black_box(&json_bytes)).unwrap())
    });
    group.bench_function(FOLD_CAPTURE_ON, |b| {
        b.iter_batched(
            || warm.clone(),
            |mut folder| {
                deframer.push(black_box(&event), &mut frames);
                for f in frames.drain(..) {
                    folder.frame(&stream, &request, &f);
                }
                folder
            },
            BatchSize::SmallInput,
        )
    });
    // Breakdown, for reference: the SSE deframing alone.
    group.bench_function("specter_deframe_only", |b| {
        b.iter(|| {
            deframer.push(black_box(&event), &mut frames);
            frames.drain(..).count()
        })
    });
    group.finish();
}

fn bench_whole_stream(c: &mut Criterion) {
    let catalog = Catalog::bundled().unwrap();
    let stream = chat_stream(&catalog);
    let request = request_body();
    let chunks = stream_chunks(500);
    let body = stream_body(&chunks);
    let (outcome, dropped) = engine::fold_body(&stream, &request, &body, DEFAULT_TEXT_CAP);
    assert_eq!((outcome.chunks, dropped, outcome.done), (500, 0, true));
    assert_eq!(outcome.response["usage"]["completion_tokens"], 497);
    eprintln!(
        "stream/500_chunks: body {} bytes, rebuilt content {} bytes",
        body.len(),
        outcome.response["choices"][0]["message"]["content"]
            .as_str()
            .map_or(0, str::len)
    );

    let mut group = c.benchmark_group("stream/500_chunks");
    // ~1.5-4 ms per iteration: fewer samples keep the group within its measurement time.
    group.sample_size(20);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("serde_json_parse", |b| {
        b.iter(|| {
            for c in &chunks {
                black_box(serde_json::from_slice::<Json>(black_box(c)).unwrap());
            }
        })
    });
    group.bench_function(BenchmarkId::from_parameter(FOLD_CAPTURE_ON), |b| {
        b.iter(|| engine::fold_body(&stream, &request, black_box(&body), DEFAULT_TEXT_CAP))
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// The fold does not read the content policy: both capture modes run the same code, so their
/// budgets are computed from the same benchmark. A capture-off variant replaces its id here.
const FOLD_CAPTURE_ON: &str = "specter_deframe_and_fold";
const FOLD_CAPTURE_OFF: &str = FOLD_CAPTURE_ON;
const SAME_FOLD: &str = "fold does not depend on capture";

/// One chunk deframed and folded at most 1.5 times its parse; the whole 500-chunk stream beside
/// parsing its chunks, reported. Both capture modes.
fn budgets() -> Vec<Budget> {
    let mut budgets = Vec::new();
    for (group, limit) in [("stream/one_chunk", Some(1.5)), ("stream/500_chunks", None)] {
        for (capture, function) in [
            ("capture on", FOLD_CAPTURE_ON),
            ("capture off", FOLD_CAPTURE_OFF),
        ] {
            budgets.push(Budget {
                name: group.to_string(),
                capture,
                measured: Figure {
                    label: "specter",
                    id: Id::new(group, &[function]),
                },
                baseline: Figure {
                    label: "serde_json parse",
                    id: Id::new(group, &["serde_json_parse"]),
                },
                limit,
                note: (FOLD_CAPTURE_ON == FOLD_CAPTURE_OFF).then_some(SAME_FOLD),
            });
        }
    }
    budgets
}

fn main() {
    let run_start = SystemTime::now();
    let mut c = config().configure_from_args();
    bench_chunk(&mut c);
    bench_whole_stream(&mut c);
    c.final_summary();
    budget::report(&budgets(), run_start);
}
