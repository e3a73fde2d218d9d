//! The gateway in process: a `Proxy` over the bundled providers whose telemetry goes to the
//! SDK's in-memory span and metric exporters, serving on a free loopback port, for the tests that
//! drive the gateway without the binary.

use std::net::SocketAddr;
use std::sync::Arc;

use opentelemetry::global::BoxedTracer;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use specter::instrument::Instrumentor;
use specter::unstable::gateway::{self, GatewayConfig, InFlight, Proxy};
use specter::ContentPolicy;
use specter::Dialect;
use specter::Telemetry;

/// A running in-process gateway and where its telemetry goes.
pub struct InProcess {
    /// Where it listens.
    pub address: SocketAddr,
    /// Finished spans.
    pub spans: InMemorySpanExporter,
    /// Metric exports (read after `meter_provider.force_flush()`).
    pub metrics: InMemoryMetricExporter,
    /// Flushes spans into `spans`.
    pub tracer_provider: SdkTracerProvider,
    /// Flushes metrics into `metrics`.
    pub meter_provider: SdkMeterProvider,
    /// Requests whose response or span is not finished.
    pub in_flight: InFlight,
}

/// Starts a gateway with `config`, rendering spans in `dialects` under `content`.
pub async fn start(
    config: GatewayConfig,
    dialects: Vec<Dialect>,
    content: ContentPolicy,
) -> InProcess {
    let spans = InMemorySpanExporter::default();
    let metrics = InMemoryMetricExporter::default();
    let tracer_provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics.clone()).build())
        .build();
    let telemetry = Telemetry::new(
        BoxedTracer::new(Box::new(tracer_provider.tracer("specter"))),
        &meter_provider.meter("specter"),
        dialects,
        content,
    );
    let catalog = specter::Catalog::bundled().unwrap();
    let instrumentor = Instrumentor::builder()
        .catalog(catalog.clone())
        .telemetry(telemetry)
        .build()
        .unwrap();
    let client = gateway::upstream_client(&config).unwrap();
    let slot = instrumentor.catalog_slot().clone();
    let proxy = Arc::new(Proxy::new(config, Some(instrumentor), slot, client));
    let in_flight = proxy.in_flight.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(gateway::serve(listener, proxy, std::future::pending()));
    InProcess {
        address,
        spans,
        metrics,
        tracer_provider,
        meter_provider,
        in_flight,
    }
}
