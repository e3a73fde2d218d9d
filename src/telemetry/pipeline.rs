//! The gateway's export pipeline: batch span processors with bounded queues, so a slow or dead
//! backend never slows traffic, feeding OTLP (gRPC or HTTP/protobuf, configured by the standard
//! `OTEL_EXPORTER_OTLP_*` variables) and the embedded exporters (stderr lines, OTLP JSON lines
//! file). Every output counts the spans queued, exported, failed and dropped. The resource comes
//! from `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`, with a `service.instance.id` unique to
//! the process (a random UUID v4) unless `OTEL_RESOURCE_ATTRIBUTES` names one, so that the spans
//! of replicas behind a load balancer tell which replica served each call.

mod otlp_http;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithHttpConfig as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::resource::{
    EnvResourceDetector, ResourceDetector, SdkProvidedResourceDetector, TelemetryResourceDetector,
};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, Span, SpanData, SpanProcessor,
};
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator};
use opentelemetry_sdk::Resource;
use rustls::pki_types::CertificateDer;

use super::export::{ConsoleExporter, ExportStats, JsonLinesExporter, LineSink, LocalExporter};
use super::traces_file::{Rotation, TracesFileError};
use super::{Telemetry, SCOPE};
use crate::render::content::ContentPolicy;
use crate::render::dialect::Dialect;

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

/// The first set variable of `names`, trimmed and non-empty.
fn env_var(names: &[&str]) -> Option<String> {
    names
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .map(|v| v.trim().to_string())
        .find(|v| !v.is_empty())
}

/// The extra certificate authorities of `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` or
/// `OTEL_EXPORTER_OTLP_CERTIFICATE` (a PEM file), for a collector behind a private CA.
fn otlp_certificate() -> Result<Option<Certificate>, PipelineError> {
    let Some(path) = env_var(&[
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
    ]) else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    let pem = crate::files::read_bytes(&path, crate::files::MAX_PEM_FILE_BYTES)
        .map_err(|e| PipelineError::Otlp(format!("the certificate file: {e}")))?;
    let certs = crate::tls::read_ca_file(&path).map_err(|e| PipelineError::Otlp(e.to_string()))?;
    Ok(Some(Certificate { pem, certs }))
}

/// A collector's certificate authority, as PEM text for tonic and parsed for rustls.
struct Certificate {
    pem: Vec<u8>,
    certs: Vec<CertificateDer<'static>>,
}

/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` or `OTEL_EXPORTER_OTLP_TIMEOUT` in milliseconds; 10 s.
fn otlp_timeout() -> Duration {
    env_var(&[
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ])
    .and_then(|v| v.parse::<u64>().ok())
    .map_or(Duration::from_secs(10), Duration::from_millis)
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
    /// Export over OTLP (endpoint, headers, timeout and certificate from the standard
    /// `OTEL_EXPORTER_OTLP_*` variables). The pipeline must be started inside a Tokio runtime,
    /// which then carries the exports.
    pub otlp: Option<OtlpProtocol>,
    /// One human-readable line per span, handed to this sink.
    pub console: Option<LineSink>,
    /// OTLP JSON lines file.
    pub traces_file: Option<PathBuf>,
    /// Size-based rotation of the traces file.
    pub traces_file_rotation: Rotation,
    /// Spans queued before new ones are dropped.
    pub max_queue: usize,
    /// Keep the metrics for a Prometheus scrape ([`Pipeline::scrape`]), beside OTLP.
    pub metrics_endpoint: bool,
}

/// Why the pipeline cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The OTLP exporter could not be built.
    #[error("cannot set up OTLP export: {0}")]
    Otlp(String),
    /// The traces file cannot be opened.
    #[error("{0}")]
    TracesFile(TracesFileError),
    /// The Prometheus metric reader cannot be set up.
    #[error(transparent)]
    Scrape(#[from] super::exposition::ScrapeError),
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

/// Counts the spans handed to a batch processor, so that what its bounded queue dropped can be
/// told from what was exported or failed.
#[derive(Debug)]
struct Tally {
    inner: BatchSpanProcessor,
    /// The stats of each output behind the processor.
    stats: Vec<Arc<ExportStats>>,
}

impl SpanProcessor for Tally {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        for stats in &self.stats {
            stats
                .queued
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// What the OTLP exporters are built with, from the environment.
struct Otlp {
    runtime: tokio::runtime::Handle,
    certificate: Option<Certificate>,
    timeout: Duration,
}

impl Otlp {
    fn new() -> Result<Otlp, PipelineError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            PipelineError::Otlp("OTLP export must be started inside a Tokio runtime".into())
        })?;
        Ok(Otlp {
            runtime,
            certificate: otlp_certificate()?,
            timeout: otlp_timeout(),
        })
    }

    /// The OTLP/HTTP client: rustls with the Mozilla roots and the configured CA.
    fn http_client(&self) -> Result<otlp_http::OtlpHttpClient, PipelineError> {
        let extra = self
            .certificate
            .as_ref()
            .map_or(&[][..], |c| c.certs.as_slice());
        let connector = crate::tls::https_connector(extra, self.timeout)
            .map_err(|e| PipelineError::Otlp(e.to_string()))?;
        Ok(otlp_http::OtlpHttpClient::new(
            self.runtime.clone(),
            connector,
            self.timeout,
        ))
    }

    /// Builds a gRPC exporter, trusting the configured CA when there is one; tonic otherwise
    /// sets up TLS for `https` endpoints with the Mozilla roots.
    fn grpc_tls<B, T>(&self, builder: B) -> Result<T, opentelemetry_otlp::ExporterBuildError>
    where
        B: opentelemetry_otlp::WithTonicConfig + GrpcBuild<T>,
    {
        let _entered = self.runtime.enter();
        match &self.certificate {
            Some(certificate) => {
                let pem = certificate.pem.clone();
                let tls = opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                    .ca_certificate(
                        opentelemetry_otlp::tonic_types::transport::Certificate::from_pem(pem),
                    )
                    .with_webpki_roots();
                builder.with_tls_config(tls).build_exporter()
            }
            None => builder.build_exporter(),
        }
    }
}

/// The `build` of the span and metric gRPC exporter builders.
trait GrpcBuild<T> {
    fn build_exporter(self) -> Result<T, opentelemetry_otlp::ExporterBuildError>;
}

impl GrpcBuild<opentelemetry_otlp::SpanExporter>
    for opentelemetry_otlp::SpanExporterBuilder<opentelemetry_otlp::TonicExporterBuilderSet>
{
    fn build_exporter(
        self,
    ) -> Result<opentelemetry_otlp::SpanExporter, opentelemetry_otlp::ExporterBuildError> {
        self.build()
    }
}

impl GrpcBuild<opentelemetry_otlp::MetricExporter>
    for opentelemetry_otlp::MetricExporterBuilder<opentelemetry_otlp::TonicExporterBuilderSet>
{
    fn build_exporter(
        self,
    ) -> Result<opentelemetry_otlp::MetricExporter, opentelemetry_otlp::ExporterBuildError> {
        self.build()
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
    /// What the stderr lines exporter wrote or lost.
    pub console_stats: Arc<ExportStats>,
    /// Calls whose span started and ended through this pipeline's telemetry.
    pub calls: Arc<super::CallCounts>,
    /// Bytes of a torn last line (left by a crash) cut from the traces file when it was opened.
    pub traces_file_repaired: u64,
    /// The metrics in the Prometheus text format, when [`ExportSettings::metrics_endpoint`] is on.
    pub scrape: Option<super::exposition::Scrape>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish()
    }
}

/// A batch processor over `exporter` whose queue holds `max_queue` spans, counting into `stats`.
fn batch<E: opentelemetry_sdk::trace::SpanExporter + 'static>(
    exporter: E,
    max_queue: usize,
    stats: &Arc<ExportStats>,
) -> Tally {
    let counting = Counting {
        inner: exporter,
        stats: stats.clone(),
    };
    processor(counting, max_queue, vec![stats.clone()])
}

/// A batch processor over `exporter`, which counts what it exports and loses into its outputs'
/// `stats` itself, whose queue holds `max_queue` spans.
fn processor<E: opentelemetry_sdk::trace::SpanExporter + 'static>(
    exporter: E,
    max_queue: usize,
    stats: Vec<Arc<ExportStats>>,
) -> Tally {
    let config = BatchConfigBuilder::default()
        .with_max_queue_size(max_queue.max(1))
        .with_max_export_batch_size(max_queue.clamp(1, 512))
        .with_scheduled_delay(Duration::from_millis(200))
        .build();
    let inner = BatchSpanProcessor::builder(exporter)
        .with_batch_config(config)
        .build();
    Tally { inner, stats }
}

/// The resource attribute naming the process that emitted a span.
pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";

/// This process's default `service.instance.id`: a random UUID v4, drawn once.
pub fn instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let random = u128::from_be_bytes(RandomIdGenerator::default().new_trace_id().to_bytes());
        uuid_v4(random)
    })
}

/// Formats 128 random bits as a UUID version 4 (RFC 9562): the version and variant bits are
/// set, the other 122 bits kept.
fn uuid_v4(random: u128) -> String {
    let bits = (random & !(0xF << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    let part = |from: usize, to: usize| hex.get(from..to).unwrap_or_default();
    format!(
        "{}-{}-{}-{}-{}",
        part(0, 8),
        part(8, 12),
        part(12, 16),
        part(16, 20),
        part(20, 32)
    )
}

/// The SDK's resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, the SDK's own
/// attributes) over a default `service.instance.id`: the variables win.
fn resource() -> Resource {
    let detectors: [Box<dyn ResourceDetector>; 3] = [
        Box::new(SdkProvidedResourceDetector),
        Box::new(TelemetryResourceDetector),
        Box::new(EnvResourceDetector::new()),
    ];
    Resource::builder_empty()
        .with_attribute(KeyValue::new(SERVICE_INSTANCE_ID, instance_id()))
        .with_detectors(&detectors)
        .build()
}

impl Pipeline {
    /// Starts the exporters. Must run inside a Tokio runtime when OTLP is on: the exports run on
    /// it.
    ///
    /// # Errors
    /// When the OTLP exporter cannot be built (no runtime, a bad certificate file) or the traces
    /// file cannot be opened.
    pub fn start(settings: &ExportSettings) -> Result<Pipeline, PipelineError> {
        let resource = resource();
        let otlp_stats = Arc::new(ExportStats::default());
        let file_stats = Arc::new(ExportStats::default());
        let console_stats = Arc::new(ExportStats::default());
        let mut builder = SdkTracerProvider::builder().with_resource(resource.clone());
        let mut meter_builder = SdkMeterProvider::builder().with_resource(resource.clone());
        if let Some(protocol) = settings.otlp {
            let otlp = Otlp::new()?;
            let spans = match protocol {
                OtlpProtocol::Grpc => {
                    otlp.grpc_tls(opentelemetry_otlp::SpanExporter::builder().with_tonic())
                }
                OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_http_client(otlp.http_client()?)
                    .build(),
            }
            .map_err(|e| PipelineError::Otlp(e.to_string()))?;
            builder = builder.with_span_processor(batch(spans, settings.max_queue, &otlp_stats));
            let metrics = match protocol {
                OtlpProtocol::Grpc => {
                    otlp.grpc_tls(opentelemetry_otlp::MetricExporter::builder().with_tonic())
                }
                OtlpProtocol::HttpProtobuf => opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .with_http_client(otlp.http_client()?)
                    .build(),
            }
            .map_err(|e| PipelineError::Otlp(e.to_string()))?;
            meter_builder = meter_builder
                .with_reader(opentelemetry_sdk::metrics::PeriodicReader::builder(metrics).build());
        }
        let mut traces_file_repaired = 0;
        let mut file = None;
        if let Some(path) = &settings.traces_file {
            let rotation = settings.traces_file_rotation;
            let exporter = JsonLinesExporter::create(path, rotation, &resource, file_stats.clone())
                .map_err(PipelineError::TracesFile)?;
            traces_file_repaired = exporter.repaired_bytes();
            file = Some(exporter);
        }
        // The console and the file share one processor: the SDK copies each span per processor.
        let console = settings
            .console
            .as_ref()
            .map(|sink| (ConsoleExporter::new(sink.clone()), console_stats.clone()));
        let mut tallied = Vec::new();
        if console.is_some() {
            tallied.push(console_stats.clone());
        }
        if file.is_some() {
            tallied.push(file_stats.clone());
        }
        if !tallied.is_empty() {
            let local = LocalExporter::new(console, file);
            builder = builder.with_span_processor(processor(local, settings.max_queue, tallied));
        }
        let mut scrape = None;
        if settings.metrics_endpoint {
            let (metrics, reader) = super::exposition::Scrape::reader()?;
            meter_builder = meter_builder.with_reader(reader);
            scrape = Some(metrics);
        }
        let meter_provider = meter_builder.build();
        Ok(Pipeline {
            tracer_provider: builder.build(),
            meter_provider,
            otlp_stats,
            file_stats,
            console_stats,
            calls: Arc::default(),
            traces_file_repaired,
            scrape,
        })
    }

    /// Telemetry emitting through this pipeline.
    pub fn telemetry(&self, dialects: Vec<Dialect>, content: ContentPolicy) -> Telemetry {
        let tracer =
            opentelemetry::global::BoxedTracer::new(Box::new(self.tracer_provider.tracer(SCOPE)));
        Telemetry::new(tracer, &self.meter_provider.meter(SCOPE), dialects, content)
            .with_call_counts(self.calls.clone())
    }

    /// Flushes and stops the exporters.
    pub fn shutdown(&self) {
        let _ = self.tracer_provider.force_flush();
        let _ = self.tracer_provider.shutdown();
        let _ = self.meter_provider.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v4_sets_the_version_and_variant_bits_and_keeps_the_rest() {
        assert_eq!(uuid_v4(0), "00000000-0000-4000-8000-000000000000");
        assert_eq!(uuid_v4(u128::MAX), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(
            uuid_v4(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            "01234567-89ab-4def-8123-456789abcdef"
        );
    }

    #[test]
    fn the_instance_id_is_one_uuid_v4_per_process_and_in_the_resource() {
        let id = instance_id();
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id.get(14..15), Some("4"), "{id}");
        assert!(
            matches!(id.get(19..20), Some("8" | "9" | "a" | "b")),
            "{id}"
        );
        assert_ne!(id, "00000000-0000-4000-8000-000000000000");
        assert_eq!(instance_id(), id, "drawn once per process");
        let resource = resource();
        let value = resource.get(&opentelemetry::Key::new(SERVICE_INSTANCE_ID));
        // Unless the environment of the test run names one itself.
        if std::env::var("OTEL_RESOURCE_ATTRIBUTES")
            .map_or(true, |v| !v.contains(SERVICE_INSTANCE_ID))
        {
            assert_eq!(value, Some(opentelemetry::Value::from(id.to_string())));
        }
    }
}
