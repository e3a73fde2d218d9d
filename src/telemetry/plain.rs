//! Spans that are not GenAI calls: traffic relayed without an operation to read it with, such as
//! an upgraded connection (a WebSocket session) that the gateway passes through. No record, no
//! dialects, no metrics: a name, plain attributes, an outcome and a duration.

use std::collections::BTreeMap;
use std::time::SystemTime;

use opentelemetry::global::BoxedSpan;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _};
use opentelemetry::{Context, KeyValue};
use serde_json::Value as Json;

use super::convert::{into_key_values, key_values};
use super::Telemetry;

/// A plain span in flight; it ends when [`PlainSpan::end`] is called or when it is dropped.
pub struct PlainSpan {
    span: BoxedSpan,
}

impl std::fmt::Debug for PlainSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainSpan")
            .field("span_context", self.span.span_context())
            .finish()
    }
}

impl Telemetry {
    /// Starts a CLIENT span named `name` with `attributes`, as a child of `parent`, at `start`.
    pub fn start_plain(
        &self,
        name: String,
        attributes: &BTreeMap<String, Json>,
        parent: &Context,
        start: SystemTime,
    ) -> PlainSpan {
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_start_time(start)
            .with_attributes(key_values(attributes))
            .start_with_context(&self.tracer, parent);
        PlainSpan { span }
    }
}

impl PlainSpan {
    /// Adds (or replaces) attributes; `null` values are left out.
    pub fn set(&mut self, attributes: BTreeMap<String, Json>) {
        self.span
            .set_attributes(into_key_values(attributes.into_iter()));
    }

    /// Marks the span failed: `error.type` (low cardinality, e.g. `timeout`), an `exception`
    /// event with `message`, and an error status.
    pub fn fail(&mut self, error_type: &str, message: &str) {
        self.span
            .set_attribute(KeyValue::new("error.type", error_type.to_string()));
        self.span.add_event(
            "exception",
            vec![
                KeyValue::new("exception.type", error_type.to_string()),
                KeyValue::new("exception.message", message.to_string()),
            ],
        );
        self.span.set_status(Status::error(message.to_string()));
    }

    /// Ends the span now.
    pub fn end(mut self) {
        self.span.end();
    }
}
