//! The gateway's export pipeline: batch span processors with bounded queues, so a slow or dead
//! backend never slows traffic, feeding the embedded exporters (stderr lines, OTLP JSON lines
//! file). The resource comes from `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use super::export::{ConsoleExporter, ExportStats, JsonLinesExporter};
use super::{Telemetry, SCOPE};
use crate::content::ContentPolicy;
use crate::dialect::Dialect;

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
}

impl OtlpProtocol {
    /// From `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc`,
    /// `http/protobuf`); the OpenTelemetry default is `http/protobuf`.
    pub fn from_env() -> Result<OtlpProtocol, String> {
        let value = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_else(|_| "http/protobuf".into());
        match value.trim() {
            "grpc" => Ok(OtlpProtocol::Grpc),
            "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
            other => Err(format!("OTEL_EXPORTER_OTLP_PROTOCOL `{other}` is not supported; use `grpc` or `http/protobuf`")),
        }
    }
}

/// Whether an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or the traces one).
pub fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()))
}

/// Where spans go.
#[derive(Debug, Clone, Default)]
pub struct ExportSettings {
    /// Export over OTLP (endpoint, headers and timeout from the standard `OTEL_EXPORTER_OTLP_*`
    /// variables). Must be set up inside a Tokio runtime for gRPC.
    pub otlp: Option<OtlpProtocol>,
    /// One line per span on stderr.
    pub console: bool,
    /// OTLP JSON lines file.
    pub traces_file: Option<PathBuf>,
    /// Spans queued before new ones are dropped.
    pub max_queue: usize,
}

/// Why the pipeline cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The OTLP exporter could not be built.
    #[error("cannot set up OTLP export: {0}")]
    Otlp(String),
    /// The traces file cannot be opened.
    #[error("cannot open the traces file {0}: {1}")]
    TracesFile(PathBuf, std::io::Error),
}

/// Counts what an exporter sent and lost.
#[derive(Debug)]
struct Counting<E> {
    inner: E,
    stats: Arc<ExportStats>,
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Counting<E>
{
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        let count = batch.len() as u64;
        let result = self.inner.export(batch).await;
        let counter = if result.is_ok() {
            &self.stats.exported
        } else {
            &self.stats.failed
        };
        counter.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Running exporters.
pub struct Pipeline {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    /// What the OTLP exporter sent or lost.
    pub otlp_stats: Arc<ExportStats>,
    /// What the traces file exporter wrote or lost.
    pub file_stats: Arc<ExportStats>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish()
    }
}

fn batch<E: opentelemetry_sdk::trace::SpanExporter + 'static>(
    exporter: E,
    max_queue: usize,
) -> BatchSpanProcessor {
    let config = BatchConfigBuilder::default()
        .with_max_queue_size(max_queue.max(64))
        .with_scheduled_delay(Duration::from_millis(200))
        .build();
    BatchSpanProcessor::builder(exporter)
        .with_batch_config(config)
        .build()
}

impl Pipeline {
    /// Starts the exporters.
    pub fn start(settings: &ExportSettings) -> Result<Pipeline, PipelineError> {
        let resource = Resource::builder().build();
        let otlp_stats = Arc::new(ExportStats::default());
        let file_stats = Arc::new(ExportStats::default());
        let mut builder = SdkTracerProvider::builder().with_resource(resource.clone());
        let mut meter_builder = SdkMeterProvider::builder().with_resource(resource.clone());
        if let Some(protocol) = settings.otlp {
            let spans = match protocol {
                OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .build(),
                OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .build(),
            }
            .map_err(|e| PipelineError::Otlp(e.to_string()))?;
            builder = builder.with_span_processor(batch(
                Counting {
                    inner: spans,
                    stats: otlp_stats.clone(),
                },
                settings.max_queue,
            ));
            let metrics = match protocol {
                OtlpProtocol::Grpc => opentelemetry_otlp::MetricExporter::builder()
                    .with_tonic()
                    .build(),
                OtlpProtocol::HttpProtobuf => opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .build(),
            }
            .map_err(|e| PipelineError::Otlp(e.to_string()))?;
            meter_builder = meter_builder
                .with_reader(opentelemetry_sdk::metrics::PeriodicReader::builder(metrics).build());
        }
        if settings.console {
            builder = builder.with_span_processor(batch(ConsoleExporter, settings.max_queue));
        }
        if let Some(path) = &settings.traces_file {
            let exporter = JsonLinesExporter::create(path, &resource, file_stats.clone())
                .map_err(|e| PipelineError::TracesFile(path.clone(), e))?;
            builder = builder.with_span_processor(batch(exporter, settings.max_queue));
        }
        let meter_provider = meter_builder.build();
        Ok(Pipeline {
            tracer_provider: builder.build(),
            meter_provider,
            otlp_stats,
            file_stats,
        })
    }

    /// Telemetry emitting through this pipeline.
    pub fn telemetry(&self, dialects: Vec<Dialect>, content: ContentPolicy) -> Telemetry {
        let tracer =
            opentelemetry::global::BoxedTracer::new(Box::new(self.tracer_provider.tracer(SCOPE)));
        Telemetry::new(tracer, &self.meter_provider.meter(SCOPE), dialects, content)
    }

    /// Flushes and stops the exporters.
    pub fn shutdown(&self) {
        let _ = self.tracer_provider.force_flush();
        let _ = self.tracer_provider.shutdown();
        let _ = self.meter_provider.shutdown();
    }
}
