//! The embedded exporters of the gateway's default setup, which needs nothing else running: one
//! readable line per finished GenAI span, handed to a sink the application gives (the binary
//! writes them to stderr), and a JSON-lines file in the OTLP JSON
//! encoding (one `ExportTraceServiceRequest` per span and line) that any collector can take
//! later.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry::trace::Status;
use opentelemetry::Value;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use super::otlp_json::{ScopeCache, SpanEncoder};
use super::traces_file::{Appended, Lines, Rotation, TracesFile, TracesFileError};

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

/// Where the console lines go: the application decides (the `specter` binary writes them to
/// stderr); the library never prints.
#[derive(Clone)]
pub struct LineSink(std::sync::Arc<dyn Fn(&str) + Send + Sync>);

impl LineSink {
    /// A sink calling `write` with each line (without its newline).
    ///
    /// ```
    /// let sink = specter::unstable::telemetry::export::LineSink::new(|line| eprintln!("{line}"));
    /// # let _ = sink;
    /// ```
    pub fn new(write: impl Fn(&str) + Send + Sync + 'static) -> LineSink {
        LineSink(std::sync::Arc::new(write))
    }

    /// Hands one line to the sink.
    pub fn write(&self, line: &str) {
        (self.0)(line);
    }
}

impl std::fmt::Debug for LineSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LineSink")
    }
}

/// Hands one human-readable line per GenAI span ([`console_line`]) to a [`LineSink`].
#[derive(Debug, Clone)]
pub struct ConsoleExporter {
    sink: LineSink,
}

impl ConsoleExporter {
    /// An exporter writing its lines to `sink`.
    pub fn new(sink: LineSink) -> ConsoleExporter {
        ConsoleExporter { sink }
    }
}

/// The attributes a console line reads, each the first of its key on the span, found in one
/// pass over the span's attributes.
#[derive(Default)]
struct LineAttributes<'a> {
    provider: Option<&'a Value>,
    operation: Option<&'a Value>,
    response_model: Option<&'a Value>,
    request_model: Option<&'a Value>,
    input_tokens: Option<&'a Value>,
    output_tokens: Option<&'a Value>,
    finish_reasons: Option<&'a Value>,
    cost: Option<&'a Value>,
    session: Option<&'a Value>,
    user: Option<&'a Value>,
    first_chunk: Option<&'a Value>,
    error_type: Option<&'a Value>,
}

impl<'a> LineAttributes<'a> {
    fn of(span: &'a SpanData) -> LineAttributes<'a> {
        let mut found = LineAttributes::default();
        for kv in &span.attributes {
            let slot = match kv.key.as_str() {
                "gen_ai.provider.name" => &mut found.provider,
                "gen_ai.operation.name" => &mut found.operation,
                "gen_ai.response.model" => &mut found.response_model,
                "gen_ai.request.model" => &mut found.request_model,
                "gen_ai.usage.input_tokens" => &mut found.input_tokens,
                "gen_ai.usage.output_tokens" => &mut found.output_tokens,
                "gen_ai.response.finish_reasons" => &mut found.finish_reasons,
                crate::prices::COST => &mut found.cost,
                "session.id" => &mut found.session,
                "user.id" => &mut found.user,
                "gen_ai.response.time_to_first_chunk" => &mut found.first_chunk,
                "error.type" => &mut found.error_type,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(&kv.value);
            }
        }
        found
    }
}

/// Finish reasons that say the model called tools.
const TOOL_FINISH_REASONS: [&str; 4] = ["tool_call", "tool_calls", "tool_use", "function_call"];

/// The finish reason, a `tools` marker when the model called tools, the cost when known, and the
/// session and user when the request named them.
fn call_summary(found: &LineAttributes<'_>, line: &mut String) {
    let mut tools = false;
    match found.finish_reasons {
        Some(Value::Array(opentelemetry::Array::String(items))) => {
            for (i, reason) in items.iter().enumerate() {
                line.push_str(if i == 0 { " finish=" } else { "," });
                line.push_str(reason.as_str());
                tools |= TOOL_FINISH_REASONS.contains(&reason.as_str());
            }
        }
        Some(other) => {
            line.push_str(" finish=");
            let start = line.len();
            let _ = write!(line, "{other}");
            tools = line
                .get(start..)
                .is_some_and(|reason| TOOL_FINISH_REASONS.contains(&reason));
        }
        None => {}
    }
    if tools {
        line.push_str(" tools");
    }
    if let Some(Value::F64(usd)) = found.cost {
        line.push_str(" $");
        push_usd(line, *usd);
    }
    for (value, label) in [(found.session, " session="), (found.user, " user=")] {
        if let Some(v) = value {
            line.push_str(label);
            let _ = write!(line, "{v}");
        }
    }
}

/// A cost in USD with enough digits to tell small calls apart (`0.000123`, `1.25`).
pub fn format_usd(usd: f64) -> String {
    let mut text = String::new();
    push_usd(&mut text, usd);
    text
}

/// Appends [`format_usd`]'s text: eight decimals, trailing zeros cut down to two decimals.
fn push_usd(line: &mut String, usd: f64) {
    let start = line.len();
    let _ = write!(line, "{usd:.8}");
    let Some(text) = line.get(start..) else {
        return;
    };
    // Not finite (`NaN`, `inf`): as written.
    let Some(dot) = text.find('.') else {
        return;
    };
    let trimmed = text.trim_end_matches('0').len();
    line.truncate(start + trimmed);
    match trimmed - dot - 1 {
        0 => line.push_str("00"),
        1 => line.push('0'),
        _ => {}
    }
}

/// Appends a value's text, or `default` without one.
fn push_text(line: &mut String, value: Option<&Value>, default: &str) {
    match value {
        Some(Value::String(s)) => line.push_str(s.as_str()),
        Some(other) => {
            let _ = write!(line, "{other}");
        }
        None => line.push_str(default),
    }
}

/// The console line of a span:
/// `openai chat gpt-4o-mini in=12 out=5 finish=tool_call tools $0.000042 session=s-1 user=u-1
/// 1.234s ttfc=0.120s ok`. Control characters in the
/// upstream's text (model name, error message) are escaped: the line stays one line and no
/// escape sequence reaches the terminal.
pub fn console_line(span: &SpanData) -> String {
    let found = LineAttributes::of(span);
    let mut line = String::with_capacity(128);
    push_text(&mut line, found.provider, "-");
    line.push(' ');
    push_text(&mut line, found.operation, &span.name);
    line.push(' ');
    push_text(&mut line, found.response_model.or(found.request_model), "-");
    for (value, label) in [(found.input_tokens, " in="), (found.output_tokens, " out=")] {
        if let Some(v) = value {
            line.push_str(label);
            let _ = write!(line, "{v}");
        }
    }
    call_summary(&found, &mut line);
    let duration = span
        .end_time
        .duration_since(span.start_time)
        .unwrap_or_default();
    let _ = write!(line, " {:.3}s", duration.as_secs_f64());
    if let Some(Value::F64(ttfc)) = found.first_chunk {
        let _ = write!(line, " ttfc={ttfc:.3}s");
    }
    match &span.status {
        Status::Error { description } => {
            line.push_str(" error=");
            push_text(&mut line, found.error_type, "_OTHER");
            line.push_str(": ");
            line.push_str(description);
        }
        _ => line.push_str(" ok"),
    }
    // Printable ASCII needs no escaping.
    if line.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return line;
    }
    crate::printable::escape_controls(&line).into_owned()
}

impl SpanExporter for ConsoleExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        for span in &batch {
            self.sink.write(&console_line(span));
        }
        Ok(())
    }
}

/// Appends spans to the traces file in the OTLP JSON encoding, one span per line.
///
/// Each line is a complete `ExportTraceServiceRequest` holding one resource, one scope and one
/// span, so every line stands alone: `jq`, `grep` and a collector's OTLP JSON reader take any
/// line by itself, a line's size is bounded by one span rather than a whole batch, and losing a
/// line (a full disk) loses one span, not a batch. The resource and scope are repeated on every
/// line; that costs bytes, not correctness. A batch's lines are written together, whole, by
/// [`TracesFile`]. The exporter counts what it wrote and lost itself, since a batch can be
/// partly written.
#[derive(Debug)]
pub struct JsonLinesExporter {
    file: Mutex<TracesFile>,
    encoder: SpanEncoder,
    stats: Arc<ExportStats>,
}

impl JsonLinesExporter {
    /// Opens (creating or appending to) the file, cutting away a torn last line; counts into
    /// `stats`.
    ///
    /// # Errors
    /// When the file cannot be repaired or opened.
    pub fn create(
        path: &Path,
        rotation: Rotation,
        resource: &Resource,
        stats: Arc<ExportStats>,
    ) -> Result<JsonLinesExporter, TracesFileError> {
        Ok(JsonLinesExporter::over(
            TracesFile::open(path, rotation)?,
            resource,
            stats,
        ))
    }

    /// The exporter over an opened traces file.
    pub fn over(file: TracesFile, resource: &Resource, stats: Arc<ExportStats>) -> Self {
        JsonLinesExporter {
            file: Mutex::new(file),
            encoder: SpanEncoder::new(resource),
            stats,
        }
    }

    /// Bytes of a torn last line cut away when the file was opened.
    pub fn repaired_bytes(&self) -> u64 {
        self.file.lock().map_or(0, |file| file.repaired_bytes())
    }

    /// Writes the lines, counting the spans written and lost.
    fn write(&self, lines: &Lines, spans: usize) -> Result<(), String> {
        let appended = self
            .file
            .lock()
            .map(|mut file| file.append(lines))
            .map_err(|_| "file lock poisoned".to_string());
        let written = appended.as_ref().map_or(0, |a| a.written);
        self.stats
            .exported
            .fetch_add(written as u64, Ordering::Relaxed);
        self.stats
            .failed
            .fetch_add(spans.saturating_sub(written) as u64, Ordering::Relaxed);
        match appended? {
            Appended { error: Some(e), .. } => Err(e.to_string()),
            Appended { error: None, .. } if written < spans => {
                Err(format!("{} span(s) could not be encoded", spans - written))
            }
            Appended { error: None, .. } => Ok(()),
        }
    }
}

/// Encodes each span of `batch` as one `ExportTraceServiceRequest` line, in batch order.
pub fn encode_lines(batch: &[SpanData], encoder: &SpanEncoder) -> Lines {
    let mut lines = Lines::default();
    let mut scopes = ScopeCache::default();
    for span in batch {
        lines.push_with(|out| encoder.encode(span, &mut scopes, out));
    }
    lines
}

impl JsonLinesExporter {
    /// Encodes and writes `batch`.
    fn export_spans(&self, batch: &[SpanData]) -> OTelSdkResult {
        let lines = encode_lines(batch, &self.encoder);
        self.write(&lines, batch.len())
            .map_err(OTelSdkError::InternalFailure)
    }
}

impl SpanExporter for JsonLinesExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.export_spans(&batch)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.encoder = SpanEncoder::new(resource);
    }
}

/// The local outputs, console lines and the traces file, behind one batch processor: the SDK
/// copies a finished span once for each processor, so one processor for both hands each span
/// over once. The console counts its lines into its own stats; the file counts itself.
#[derive(Debug)]
pub struct LocalExporter {
    console: Option<(ConsoleExporter, Arc<ExportStats>)>,
    file: Option<JsonLinesExporter>,
}

impl LocalExporter {
    /// Console lines counted into `console`'s stats, and the traces file, each when given.
    pub fn new(
        console: Option<(ConsoleExporter, Arc<ExportStats>)>,
        file: Option<JsonLinesExporter>,
    ) -> LocalExporter {
        LocalExporter { console, file }
    }
}

impl SpanExporter for LocalExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if let Some((console, stats)) = &self.console {
            for span in &batch {
                console.sink.write(&console_line(span));
            }
            stats
                .exported
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        match &self.file {
            Some(file) => file.export_spans(&batch),
            None => Ok(()),
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(file) = &mut self.file {
            file.set_resource(resource);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry::KeyValue;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_sdk::trace::{
        InMemorySpanExporter, SdkTracerProvider, SpanData, SpanExporter,
    };
    use opentelemetry_sdk::Resource;

    use super::{ExportStats, JsonLinesExporter};
    use crate::telemetry::traces_file::fault::{opener, Faults};
    use crate::telemetry::traces_file::{Rotation, TracesFile};

    #[test]
    fn costs_print_with_the_digits_they_need() {
        assert_eq!(super::format_usd(0.0000048), "0.0000048");
        assert_eq!(super::format_usd(1.25), "1.25");
        assert_eq!(super::format_usd(2.0), "2.00");
        assert_eq!(super::format_usd(0.5), "0.50");
    }

    /// `count` finished spans from two scopes, each span named `call N`.
    fn spans(count: usize) -> Vec<SpanData> {
        let memory = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(memory.clone())
            .build();
        for n in 0..count {
            let scope = if n % 2 == 0 { "specter" } else { "other" };
            let mut span = provider.tracer(scope).start(format!("call {n}"));
            span.set_attribute(KeyValue::new("gen_ai.request.model", "gpt-4o-mini"));
            span.end();
        }
        memory.get_finished_spans().unwrap()
    }

    fn resource() -> Resource {
        Resource::builder_empty()
            .with_attribute(KeyValue::new("service.name", "specter-test"))
            .build()
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "specter-export-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The requests of the file, one per line, each holding exactly one resource, scope and span.
    fn requests(path: &std::path::Path) -> Vec<ExportTraceServiceRequest> {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'));
        text.lines()
            .map(|l| {
                let request: ExportTraceServiceRequest = serde_json::from_str(l).unwrap();
                assert_eq!(request.resource_spans.len(), 1, "{l}");
                assert_eq!(request.resource_spans[0].scope_spans.len(), 1, "{l}");
                assert_eq!(
                    request.resource_spans[0].scope_spans[0].spans.len(),
                    1,
                    "{l}"
                );
                request
            })
            .collect()
    }

    fn name(request: &ExportTraceServiceRequest) -> (String, String) {
        let resource_spans = &request.resource_spans[0];
        let scope_spans = &resource_spans.scope_spans[0];
        (
            scope_spans.scope.as_ref().unwrap().name.clone(),
            scope_spans.spans[0].name.clone(),
        )
    }

    #[test]
    fn every_span_is_a_line_of_its_own_with_its_resource_and_scope() {
        let dir = scratch("lines");
        let path = dir.join("t.jsonl");
        let stats = Arc::new(ExportStats::default());
        let exporter =
            JsonLinesExporter::create(&path, Rotation::default(), &resource(), stats.clone())
                .unwrap();
        futures::executor::block_on(exporter.export(spans(5))).unwrap();
        let requests = requests(&path);
        let mut names: Vec<(String, String)> = requests.iter().map(name).collect();
        names.sort();
        assert_eq!(
            names,
            [
                ("other", "call 1"),
                ("other", "call 3"),
                ("specter", "call 0"),
                ("specter", "call 2"),
                ("specter", "call 4"),
            ]
            .map(|(s, n)| (s.to_string(), n.to_string()))
        );
        for request in &requests {
            let resource = request.resource_spans[0].resource.as_ref().unwrap();
            assert_eq!(resource.attributes[0].key, "service.name");
        }
        assert_eq!(stats.exported.load(Ordering::Relaxed), 5);
        assert_eq!(stats.failed.load(Ordering::Relaxed), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn spans_that_miss_a_full_disk_are_counted_failed_and_later_ones_exported() {
        let dir = scratch("full");
        let path = dir.join("t.jsonl");
        let faults = Arc::new(Faults::default());
        let file = TracesFile::open_with(&path, Rotation::default(), opener(&faults)).unwrap();
        let stats = Arc::new(ExportStats::default());
        let exporter = JsonLinesExporter::over(file, &resource(), stats.clone());
        futures::executor::block_on(exporter.export(spans(2))).unwrap();
        faults.set_room(Some(100));
        let full = futures::executor::block_on(exporter.export(spans(3)));
        assert!(full.is_err());
        assert_eq!(stats.exported.load(Ordering::Relaxed), 2);
        assert_eq!(stats.failed.load(Ordering::Relaxed), 3);
        assert_eq!(requests(&path).len(), 2);
        faults.set_room(None);
        futures::executor::block_on(exporter.export(spans(4))).unwrap();
        assert_eq!(stats.exported.load(Ordering::Relaxed), 6);
        assert_eq!(stats.failed.load(Ordering::Relaxed), 3);
        assert_eq!(requests(&path).len(), 6);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_batch_split_by_rotation_counts_each_span_once() {
        let dir = scratch("split");
        let path = dir.join("t.jsonl");
        let stats = Arc::new(ExportStats::default());
        let probe = super::encode_lines(&spans(1), &super::SpanEncoder::new(&resource()));
        assert_eq!(probe.count(), 1);
        let line = probe.as_bytes().len() as u64;
        // Two lines per file, two backups: a batch of 5 spans spreads over three files.
        let rotation = Rotation {
            max_bytes: 2 * line + line / 2,
            max_files: 2,
        };
        let exporter =
            JsonLinesExporter::create(&path, rotation, &resource(), stats.clone()).unwrap();
        futures::executor::block_on(exporter.export(spans(5))).unwrap();
        assert_eq!(stats.exported.load(Ordering::Relaxed), 5);
        let counts = [
            requests(&path).len(),
            requests(&dir.join("t.1.jsonl")).len(),
            requests(&dir.join("t.2.jsonl")).len(),
        ];
        assert_eq!(counts, [1, 2, 2]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
