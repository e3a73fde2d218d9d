//! specter's spans parented under the application's `tracing` spans (feature `tracing`): with a
//! `tracing_opentelemetry` layer in the subscriber, a call sent inside a `tracing` span gets a span
//! that is its child.
//!
//! Run with `cargo run --example tracing --features reqwest,tracing`. A stand-in for the OpenAI API
//! on 127.0.0.1 answers with a recorded response, so the example needs no network and no key (the
//! bundled catalog names calls to 127.0.0.1 `ollama`, whose default address it is; calls to
//! api.openai.com are `openai`); the finished spans are printed from the SDK's in-memory exporter
//! with their parents.

#[path = "../tests/common/upstream.rs"]
mod upstream;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use specter::instrument::Instrumentor;
use tracing::Instrument as _;
use tracing_subscriber::layer::SubscriberExt as _;
use upstream::{fixture, StreamEnd, Upstream};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spans = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("app")));
    tracing::subscriber::set_global_default(subscriber)?;
    let upstream = Upstream::start(StreamEnd::Whole).await?;

    let instrumentor = Instrumentor::builder().build()?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(instrumentor.middleware())
        .build();

    async {
        let answer = client
            .post(upstream.url("/v1/chat/completions"))
            .body(fixture("chat_plain", "request.json")?)
            .send()
            .await?
            .bytes()
            .await?;
        println!("answer: {} bytes", answer.len());
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .instrument(tracing::info_span!("handle_request"))
    .await?;

    provider.force_flush()?;
    for span in spans.get_finished_spans()? {
        println!(
            "span {:?} id {} parent {}",
            span.name,
            span.span_context.span_id(),
            span.parent_span_id
        );
    }
    provider.shutdown()?;
    Ok(())
}
