//! The embedded exporters of the gateway's default setup, which needs nothing else running: one
//! readable line per finished GenAI span on stderr, and a JSON-lines file in the OTLP JSON
//! encoding (one `ExportTraceServiceRequest` per line) that any collector can take later.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use opentelemetry::trace::Status;
use opentelemetry::Value;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

/// Counts what became of the spans of one output, for the shutdown report.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Spans handed to the output's batch queue.
    pub queued: AtomicU64,
    /// Spans written.
    pub exported: AtomicU64,
    /// Spans that could not be written.
    pub failed: AtomicU64,
}

impl ExportStats {
    /// Spans that never reached the exporter: dropped because the batch queue was full (a slow
    /// or dead backend) or still queued. Exact once the pipeline is shut down.
    pub fn dropped(&self) -> u64 {
        let queued = self.queued.load(Ordering::Relaxed);
        let done = self.exported.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed);
        queued.saturating_sub(done)
    }

    /// `N span(s) exported, M lost to export failures, K dropped by a full queue`.
    pub fn summary(&self) -> String {
        format!(
            "{} span(s) exported, {} lost to export failures, {} dropped by a full queue",
            self.exported.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.dropped()
        )
    }
}

/// Writes one human-readable line per GenAI span to stderr.
#[derive(Debug, Default)]
pub struct ConsoleExporter;

fn get<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

/// The console line of a span:
/// `openai chat gpt-4o-mini in=12 out=5 1.234s ttfc=0.120s ok`. Control characters in the
/// upstream's text (model name, error message) are escaped: the line stays one line and no
/// escape sequence reaches the terminal.
pub fn console_line(span: &SpanData) -> String {
    let mut line = String::new();
    let text = |key: &str| get(span, key).map(|v| v.to_string());
    let provider = text("gen_ai.provider.name").unwrap_or_else(|| "-".into());
    let operation = text("gen_ai.operation.name").unwrap_or_else(|| span.name.to_string());
    let model = text("gen_ai.response.model")
        .or_else(|| text("gen_ai.request.model"))
        .unwrap_or_else(|| "-".into());
    let _ = write!(line, "{provider} {operation} {model}");
    for (key, label) in [
        ("gen_ai.usage.input_tokens", "in"),
        ("gen_ai.usage.output_tokens", "out"),
    ] {
        if let Some(v) = text(key) {
            let _ = write!(line, " {label}={v}");
        }
    }
    let duration = span
        .end_time
        .duration_since(span.start_time)
        .unwrap_or_default();
    let _ = write!(line, " {:.3}s", duration.as_secs_f64());
    if let Some(Value::F64(ttfc)) = get(span, "gen_ai.response.time_to_first_chunk") {
        let _ = write!(line, " ttfc={ttfc:.3}s");
    }
    match &span.status {
        Status::Error { description } => {
            let kind = text("error.type").unwrap_or_else(|| "_OTHER".into());
            let _ = write!(line, " error={kind}: {description}");
        }
        _ => line.push_str(" ok"),
    }
    crate::printable::escape_controls(&line).into_owned()
}

impl SpanExporter for ConsoleExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut stderr = std::io::stderr().lock();
        for span in &batch {
            let _ = writeln!(stderr, "specter: {}", console_line(span));
        }
        Ok(())
    }
}

/// Appends spans to a JSON-lines file in the OTLP JSON encoding.
#[derive(Debug)]
pub struct JsonLinesExporter {
    file: Mutex<File>,
    resource: ResourceAttributesWithSchema,
}

impl JsonLinesExporter {
    /// Opens (creating or appending to) the file.
    pub fn create(path: &Path, resource: &Resource) -> std::io::Result<JsonLinesExporter> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(JsonLinesExporter {
            file: Mutex::new(file),
            resource: resource.into(),
        })
    }
}

impl SpanExporter for JsonLinesExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let request = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(batch, &self.resource),
        };
        let written = serde_json::to_string(&request)
            .map_err(|e| e.to_string())
            .and_then(|line| {
                let mut file = self
                    .file
                    .lock()
                    .map_err(|_| "file lock poisoned".to_string())?;
                writeln!(file, "{line}")
                    .and_then(|_| file.flush())
                    .map_err(|e| e.to_string())
            });
        written.map_err(OTelSdkError::InternalFailure)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.into();
    }
}
