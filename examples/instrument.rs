//! Instrumenting calls from a Rust application with the library API.
//!
//! Run with `cargo run --example instrument`. The HTTP client is stood in by a closure that
//! answers with a recorded OpenAI response, so the example needs no network and no key; the span
//! is collected in memory and printed to stderr.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use specter::instrument::{HttpRequest, HttpResponse, Instrumentor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Any tracer provider works; the global one is used when none is given.
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());

    let instrumentor = Instrumentor::builder().build()?;
    let request = HttpRequest {
        method: "POST".into(),
        url: "https://api.openai.com/v1/chat/completions".into(),
        headers: vec![("authorization".into(), "Bearer sk-example".into())],
        body: br#"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say this is a test"}]}"#.to_vec(),
    };
    let response = instrumentor.instrument_blocking(request, |request| {
        // A real application sends `request` with its HTTP client here.
        let _ = request;
        Ok::<_, std::io::Error>(HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"id": "chatcmpl-1", "model": "gpt-4o-mini-2024-07-18",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "This is a test."}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 5}}"#
                .to_vec(),
        })
    })?;
    println!("status {}", response.status);
    let _ = provider.tracer("example");
    for span in exporter.get_finished_spans()? {
        eprintln!("span {}", span.name);
        for attribute in &span.attributes {
            eprintln!("  {} = {}", attribute.key, attribute.value);
        }
    }
    provider.shutdown()?;
    Ok(())
}
