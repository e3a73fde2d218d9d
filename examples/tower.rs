//! A hyper-util client instrumented with one line: `instrumentor.layer().layer(client)`.
//!
//! Run with `cargo run --example tower --features tower`. A stand-in for the OpenAI API on
//! 127.0.0.1 answers with recorded responses, so the example needs no network and no key (the
//! bundled catalog names calls to 127.0.0.1 `ollama`, whose default address it is; calls to
//! api.openai.com are `openai`); the finished spans are printed from the SDK's in-memory exporter.

#[path = "../tests/common/upstream.rs"]
mod upstream;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use specter::instrument::Instrumentor;
use tower::{Layer as _, ServiceExt as _};
use upstream::{fixture, StreamEnd, Upstream};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let spans = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let upstream = Upstream::start(StreamEnd::Whole).await?;
    let url = upstream.url("/v1/chat/completions");

    // The one line: the layer wraps the client's service.
    let instrumentor = Instrumentor::builder().build()?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let service = instrumentor.layer().layer(client);

    for case in ["chat_plain", "chat_stream_include_usage"] {
        let request = http::Request::post(&url)
            .header("content-type", "application/json")
            .body(Full::from(fixture(case, "request.json")?))?;
        let response = service.clone().oneshot(request).await?;
        let status = response.status();
        // The span ends when the body has been read to its end.
        let body = response.into_body().collect().await?.to_bytes();
        println!("{case}: {status}, {} bytes", body.len());
    }

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
