//! Measures the trace viewer's store at scale: writes N calls (default 1,000,000) as traces file
//! lines to a temporary file, indexes them, and prints the latency of the list, filter, group
//! and totals queries the viewer's pages make.
//!
//! ```text
//! cargo run --release --example viewer_bench [-- CALLS]
//! ```

#![allow(clippy::indexing_slicing, clippy::panic)]

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Instant;

use specter::unstable::viewer::{Limits, Viewer};

const PROVIDERS: [(&str, &[&str]); 3] = [
    ("openai", &["gpt-4o", "gpt-4o-mini", "o3-mini"]),
    ("anthropic", &["claude-sonnet-4", "claude-haiku-4"]),
    ("gcp.gemini", &["gemini-2.5-pro", "gemini-2.5-flash"]),
];

fn line(i: u64) -> String {
    let (provider, models) = PROVIDERS[(i % 3) as usize];
    let model = models[(i / 3 % models.len() as u64) as usize];
    let start = 1_700_000_000_000_000_000u64 + i * 1_000_000_000;
    let end = start + 200_000_000 + (i % 997) * 3_000_000;
    let error = if i % 50 == 0 {
        r#",{"key":"error.type","value":{"stringValue":"rate_limited"}}"#
    } else {
        ""
    };
    format!(
        concat!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"bench"}}}}]}},"scopeSpans":[{{"scope":{{"name":"specter"}},"spans":[{{"#,
            r#""traceId":"{:032x}","spanId":"{:016x}","name":"chat {}","kind":3,"startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":["#,
            r#"{{"key":"gen_ai.operation.name","value":{{"stringValue":"chat"}}}},{{"key":"gen_ai.provider.name","value":{{"stringValue":"{}"}}}},"#,
            r#"{{"key":"gen_ai.request.model","value":{{"stringValue":"{}"}}}},{{"key":"gen_ai.response.model","value":{{"stringValue":"{}"}}}},"#,
            r#"{{"key":"session.id","value":{{"stringValue":"session-{}"}}}},{{"key":"user.id","value":{{"stringValue":"user-{}"}}}},"#,
            r#"{{"key":"gen_ai.usage.input_tokens","value":{{"intValue":"{}"}}}},{{"key":"gen_ai.usage.output_tokens","value":{{"intValue":"{}"}}}},"#,
            r#"{{"key":"gen_ai.usage.cache_read.input_tokens","value":{{"intValue":"{}"}}}},{{"key":"gen_ai.usage.cost","value":{{"doubleValue":{}}}}},"#,
            r#"{{"key":"gen_ai.response.time_to_first_chunk","value":{{"doubleValue":{}}}}}{}]}}]}}]}}]}}"#,
            "\n"
        ),
        i / 4 + 1,
        i + 1,
        model,
        start,
        end,
        provider,
        model,
        model,
        i / 20,
        i % 500,
        100 + i % 4000,
        10 + i % 900,
        (i % 7) * 64,
        (i % 1000) as f64 * 1e-5,
        0.05 + (i % 300) as f64 * 1e-3,
        error
    )
}

fn timed<T>(label: &str, runs: u32, mut f: impl FnMut() -> T) -> T {
    let mut result = f();
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        result = f();
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let worst = times[times.len() - 1];
    println!("{label:<46} median {median:8.2} ms   worst {worst:8.2} ms");
    result
}

fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("specter-traces.jsonl");
    let start = Instant::now();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for i in 0..calls {
        out.write_all(line(i).as_bytes())?;
    }
    out.flush()?;
    drop(out);
    let bytes = std::fs::metadata(&path)?.len();
    println!(
        "wrote {calls} calls ({} MiB) in {:.1} s",
        bytes >> 20,
        start.elapsed().as_secs_f64()
    );
    let viewer = Viewer::over_files(
        vec![path],
        Limits {
            max_calls: calls as usize,
            ..Limits::default()
        },
    );
    let start = Instant::now();
    let status = viewer.load();
    println!(
        "indexed {} calls in {:.1} s",
        status.calls,
        start.elapsed().as_secs_f64()
    );
    let ask = |api: &str, pairs: &[(&str, &str)]| {
        let (status, body) = specter::unstable::viewer::endpoint(&viewer, api, &query(pairs));
        assert!(status.is_success(), "{api}: {body}");
        body
    };
    let runs = 9;
    timed("list: newest page", runs, || ask("calls", &[]));
    timed("list: page 1000 (offset 50,000)", runs, || {
        ask("calls", &[("offset", "50000")])
    });
    timed("filter: provider + model", runs, || {
        ask(
            "calls",
            &[("provider", "anthropic"), ("model", "claude-haiku-4")],
        )
    });
    timed("filter: one session", runs, || {
        ask("calls", &[("session", "session-4242")])
    });
    timed("filter: status error", runs, || {
        ask("calls", &[("status", "error")])
    });
    timed("filter: free text", runs, || {
        ask("calls", &[("q", "user-42")])
    });
    timed("sort: by cost", runs, || ask("calls", &[("sort", "cost")]));
    timed("sort: by duration, filtered by provider", runs, || {
        ask("calls", &[("sort", "duration"), ("provider", "openai")])
    });
    let call = ask("calls", &[("offset", "500000"), ("limit", "1")]);
    let trace = call["calls"][0]["trace_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let span = call["calls"][0]["span_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    timed("one call (read back by offset)", runs, || {
        ask(&format!("call/{trace}/{span}"), &[])
    });
    timed("groups: by session", runs, || {
        ask("groups", &[("by", "session")])
    });
    timed("groups: by trace", runs, || {
        ask("groups", &[("by", "trace")])
    });
    let totals = timed("totals: all calls", runs, || ask("totals", &[]));
    timed("totals: one provider", runs, || {
        ask("totals", &[("provider", "openai")])
    });
    timed("facets", runs, || ask("facets", &[]));
    println!("totals: {} calls", totals["all"]["calls"]);
    Ok(())
}
