//! A reqwest client instrumented with one line: `.with(instrumentor.middleware())`.
//!
//! Run with `cargo run --example reqwest_middleware --features reqwest`. A stand-in for the OpenAI
//! API on 127.0.0.1 answers with recorded responses, so the example needs no network and no key
//! (the bundled catalog names calls to 127.0.0.1 `ollama`, whose default address it is; calls to
//! api.openai.com are `openai`); the finished spans are printed from the SDK's in-memory exporter.

#[path = "../tests/common/upstream.rs"]
mod upstream;

use futures::StreamExt as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use specter::instrument::Instrumentor;
use upstream::{fixture, StreamEnd, Upstream};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spans = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let upstream = Upstream::start(StreamEnd::Whole).await?;
    let url = upstream.url("/v1/chat/completions");

    // The one line: every GenAI call this client sends gets a span.
    let instrumentor = Instrumentor::builder().build()?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(instrumentor.middleware())
        .build();

    let answer = client
        .post(&url)
        .header("content-type", "application/json")
        .body(fixture("chat_plain", "request.json")?)
        .send()
        .await?
        .bytes()
        .await?;
    println!("answer: {} bytes", answer.len());

    let mut stream = client
        .post(&url)
        .body(fixture("chat_stream_include_usage", "request.json")?)
        .send()
        .await?
        .bytes_stream();
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        chunk?;
        chunks += 1;
    }
    println!("streamed answer: {chunks} chunks");

    provider.force_flush()?;
    for span in spans.get_finished_spans()? {
        println!("span {:?}", span.name);
        for kv in &span.attributes {
            println!("  {} = {}", kv.key, kv.value);
        }
    }
    provider.shutdown()?;
    Ok(())
}
