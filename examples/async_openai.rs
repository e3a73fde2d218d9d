//! async-openai instrumented through specter's reqwest middleware: the client's HTTP service is
//! a `tower::service_fn` that sends each request it builds through a `reqwest_middleware` client
//! carrying `instrumentor.middleware()`.
//!
//! Run with `cargo run --example async_openai --features reqwest`. A stand-in for the OpenAI API
//! on 127.0.0.1 answers with recorded responses, so the example needs no network and no key (the
//! bundled catalog names calls to 127.0.0.1 `ollama`, whose default address it is; calls to
//! api.openai.com are `openai`); the finished spans are printed from the SDK's in-memory exporter.

#[path = "../tests/common/upstream.rs"]
mod upstream;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::types::chat::CreateChatCompletionRequest;
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

    // The recipe.
    let instrumentor = Instrumentor::builder().build()?;
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(instrumentor.middleware())
        .build();
    let service = tower::service_fn(move |factory: HttpRequestFactory| {
        let http = http.clone();
        async move {
            let request = factory.build().await?;
            http.execute(request)
                .await
                .map_err(|e| OpenAIError::Boxed(Box::new(e)))
        }
    });
    let config = OpenAIConfig::new()
        .with_api_base(upstream.url("/v1"))
        .with_api_key("sk-example");
    let client = async_openai::Client::with_config(config).with_http_service(service);

    let request: CreateChatCompletionRequest =
        serde_json::from_slice(&fixture("chat_plain", "request.json")?)?;
    let answer = client.chat().create(request).await?;
    println!("answer from {}", answer.model);

    let request: CreateChatCompletionRequest =
        serde_json::from_slice(&fixture("chat_stream_include_usage", "request.json")?)?;
    let mut stream = client.chat().create_stream(request).await?;
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        for choice in chunk?.choices {
            text.push_str(choice.delta.content.as_deref().unwrap_or_default());
        }
    }
    println!("streamed answer: {text}");

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
