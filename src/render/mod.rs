//! Rendering: a finished [`Record`], under the content policy ([`content`]), with the call's own
//! credentials scrubbed ([`credentials`]), in the configured dialects ([`dialect`]), plus what only
//! the run of the call knows (the time to the first chunk), into the span that is exported, as a
//! plain value. Telemetry copies a [`RenderedSpan`] onto an OpenTelemetry span; `specter extract`
//! serialises it. One path, so what `extract` prints is what is exported.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value as Json};

pub mod content;
pub mod credentials;
pub mod dialect;

use crate::engine::Record;
use content::ContentPolicy;
use dialect::Dialect;

/// Problem events kept on one span; the `specter.problems` attribute counts them all.
pub const MAX_PROBLEM_EVENTS: usize = 8;

/// The name of the event that carries message content when the policy puts it on events.
pub const CONTENT_EVENT: &str = "gen_ai.client.inference.operation.details";

/// The kind of a rendered span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A call to a remote service.
    Client,
    /// Work inside the process.
    Internal,
}

/// The status of a rendered span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "lowercase")]
pub enum Status {
    /// Not an error.
    Unset,
    /// Failed, with a description.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// One span event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// The event name.
    pub name: Cow<'static, str>,
    /// Its attributes, as text.
    pub attributes: BTreeMap<String, String>,
}

/// The span one call exports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderedSpan {
    /// Span name.
    pub name: String,
    /// Span kind.
    pub kind: Kind,
    /// Status.
    pub status: Status,
    /// Attributes by key.
    pub attributes: BTreeMap<String, Json>,
    /// Events, in order.
    pub events: Vec<Event>,
}

/// A record with the content policy applied, ready to be read by the metrics and then rendered.
#[derive(Debug)]
pub struct Prepared {
    record: Record,
    event_content: Vec<(&'static str, Json)>,
    content_on_span: bool,
}

impl Prepared {
    /// Applies `content` (capture mode, truncation, redaction) to `record`.
    pub fn new(mut record: Record, content: &ContentPolicy) -> Prepared {
        let event_content = if content.capture.on_event() {
            let mut copy = record.clone();
            content.apply(&mut copy);
            dialect::message_attributes(&copy)
        } else {
            Vec::new()
        };
        content.apply(&mut record);
        Prepared {
            record,
            event_content,
            content_on_span: content.capture.on_span(),
        }
    }

    /// The record as the policy leaves it: what metrics are computed from.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The span, in `dialects` (later dialects win on a shared key).
    pub fn into_span(
        mut self,
        dialects: &[Dialect],
        first_chunk: Option<Duration>,
    ) -> RenderedSpan {
        let record = &mut self.record;
        if !self.content_on_span {
            // Content that goes on an event only was copied already: no dialect sees it.
            record.input_messages = None;
            record.output_messages = None;
            record.system_instructions = None;
            record.tool_definitions = None;
        }
        let mut attributes = dialect::render_taking(record, dialects);
        add_run_attributes(&mut attributes, record, first_chunk);
        let mut events = Vec::new();
        if !self.event_content.is_empty() {
            events.push(Event {
                name: Cow::Borrowed(CONTENT_EVENT),
                attributes: self
                    .event_content
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), text(&v)))
                    .collect(),
            });
        }
        for problem in record.problems.iter().take(MAX_PROBLEM_EVENTS) {
            events.push(Event {
                name: Cow::Borrowed("specter.problem"),
                attributes: BTreeMap::from([("message".to_string(), problem.clone())]),
            });
        }
        let status = match &record.error {
            Some(error) => {
                let message = error
                    .message
                    .clone()
                    .unwrap_or_else(|| error.error_type.clone());
                let attributes = BTreeMap::from([
                    ("exception.type".to_string(), error.error_type.clone()),
                    ("exception.message".to_string(), message.clone()),
                ]);
                for name in dialect::event_names("exception", dialects) {
                    events.push(Event {
                        name,
                        attributes: attributes.clone(),
                    });
                }
                Status::Error { message }
            }
            None => Status::Unset,
        };
        RenderedSpan {
            name: std::mem::take(&mut record.span_name),
            kind: if record.client_span {
                Kind::Client
            } else {
                Kind::Internal
            },
            status,
            attributes,
            events,
        }
    }
}

/// What the run of the call adds beside the record's own attributes: the time to the first
/// chunk, problems met and skipped, and what a stream held.
fn add_run_attributes(
    attributes: &mut BTreeMap<String, Json>,
    record: &Record,
    first_chunk: Option<Duration>,
) {
    if let Some(ttfc) = first_chunk {
        attributes.insert(
            "gen_ai.response.time_to_first_chunk".into(),
            json!(ttfc.as_secs_f64()),
        );
    }
    if !record.problems.is_empty() {
        // Problems met and skipped (a body that is not JSON, a bad chunk): counted, never fatal.
        attributes.insert("specter.problems".into(), json!(record.problems.len()));
    }
    if let Some(stream) = &record.stream {
        if stream.skipped_frames > 0 {
            attributes.insert(
                "specter.stream.skipped_frames".into(),
                json!(stream.skipped_frames),
            );
        }
        attributes.insert("specter.stream.chunks".into(), json!(stream.chunks));
        if stream.truncated {
            attributes.insert("specter.stream.truncated".into(), json!(true));
        }
    }
}

/// A JSON value as event attribute text: strings as they are, anything else as JSON.
fn text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ErrorInfo, StreamStats};
    use crate::render::content::Capture;

    fn record() -> Record {
        Record {
            provider: "openai".into(),
            operation: "chat".into(),
            span_name: "chat gpt-4o".into(),
            client_span: true,
            attributes: BTreeMap::from([("gen_ai.request.model".into(), json!("gpt-4o"))]),
            input_messages: Some(r#"[{"role":"user","parts":[]}]"#.into()),
            output_messages: None,
            system_instructions: None,
            tool_definitions: None,
            error: Some(ErrorInfo {
                error_type: "rate_limit".into(),
                message: Some("slow down".into()),
            }),
            problems: vec!["response: not JSON".into()],
            stream: Some(StreamStats {
                chunks: 3,
                skipped_frames: 1,
                truncated: false,
                completed: false,
            }),
            metric_values: vec![],
        }
    }

    #[test]
    fn a_record_renders_with_its_run_attributes_events_and_status() {
        let span = Prepared::new(record(), &ContentPolicy::default())
            .into_span(&[Dialect::Semconv], Some(Duration::from_millis(250)));
        assert_eq!(span.name, "chat gpt-4o");
        assert_eq!(span.kind, Kind::Client);
        assert_eq!(
            span.status,
            Status::Error {
                message: "slow down".into()
            }
        );
        assert_eq!(span.attributes["gen_ai.response.time_to_first_chunk"], 0.25);
        assert_eq!(span.attributes["specter.problems"], 1);
        assert_eq!(span.attributes["specter.stream.chunks"], 3);
        assert_eq!(span.attributes["specter.stream.skipped_frames"], 1);
        assert_eq!(
            span.attributes["gen_ai.input.messages"],
            r#"[{"role":"user","parts":[]}]"#
        );
        let names: Vec<&str> = span.events.iter().map(|e| e.name.as_ref()).collect();
        assert_eq!(names, ["specter.problem", "exception"]);
        assert_eq!(span.events[1].attributes["exception.type"], "rate_limit");
    }

    #[test]
    fn content_on_events_leaves_the_span_and_fills_the_event() {
        let content = ContentPolicy {
            capture: Capture::EventOnly,
            ..ContentPolicy::default()
        };
        let span = Prepared::new(record(), &content).into_span(&[Dialect::Semconv], None);
        assert!(!span.attributes.contains_key("gen_ai.input.messages"));
        assert_eq!(span.events[0].name, CONTENT_EVENT);
        assert_eq!(
            span.events[0].attributes["gen_ai.input.messages"],
            r#"[{"role":"user","parts":[]}]"#
        );
    }
}
