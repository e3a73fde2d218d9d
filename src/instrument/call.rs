//! One instrumented call in flight: request phase done and span started; ends exactly once, with
//! a response, a failure, or as a stream (see [`super::StreamCall`]).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value as Json;

use super::Shared;
use crate::compile::rules::Operation;
use crate::engine::{self, ErrorInfo, HttpTarget, Record, Request, Response};
use crate::telemetry::{ActiveSpan, Timings};

/// An HTTP request as the library sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method, e.g. `POST`.
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// An HTTP response as the library sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// A call whose span is open. Finish it with [`Call::finish`], [`Call::fail`] or turn it into a
/// stream with [`Call::into_stream`]; if it is dropped unfinished, the span ends as abandoned.
pub struct Call {
    pub(super) parts: Option<Box<CallParts>>,
}

/// What a call carries until it ends.
pub(super) struct CallParts {
    pub shared: Arc<Shared>,
    pub op: Arc<Operation>,
    pub target: HttpTarget,
    pub request_headers: Vec<(String, String)>,
    pub request_body: Json,
    pub captures: Vec<(String, String)>,
    pub record: Record,
    pub span: ActiveSpan,
    pub started: Instant,
    pub start_time: SystemTime,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Call");
        if let Some(p) = &self.parts {
            d.field("provider", &p.op.provider)
                .field("operation", &p.op.id)
                .field("span", &p.record.span_name);
        }
        d.finish()
    }
}

impl CallParts {
    pub fn request(&self) -> Request<'_> {
        Request {
            target: &self.target,
            headers: &self.request_headers,
            body: &self.request_body,
            captures: &self.captures,
        }
    }

    /// Runs the response phase on `body` and ends the span.
    pub fn end(
        mut self,
        status: Option<u16>,
        headers: &[(String, String)],
        body: &Json,
        first_chunk: Option<Duration>,
        gaps: Vec<Duration>,
    ) {
        let request = Request {
            target: &self.target,
            headers: &self.request_headers,
            body: &self.request_body,
            captures: &self.captures,
        };
        let response = Response {
            status,
            headers,
            body,
        };
        engine::response_phase(&self.op, &mut self.record, &request, &response);
        self.close(first_chunk, gaps);
    }

    /// Ends the span with the record as it stands.
    pub fn close(self, first_chunk: Option<Duration>, chunk_gaps: Vec<Duration>) {
        let duration = self.started.elapsed();
        let timings = Timings {
            start: self.start_time,
            end: self.start_time + duration,
            duration,
            first_chunk,
            chunk_gaps,
        };
        let mut record = self.record;
        if !self.shared.options.enrich_token_usage {
            record
                .attributes
                .retain(|k, _| !k.starts_with("gen_ai.usage."));
        }
        self.shared
            .telemetry
            .finish(self.span, record, &self.op, &timings);
    }

    /// Marks the record failed.
    pub fn set_error(&mut self, error_type: &str, message: &str) {
        self.record
            .attributes
            .insert("error.type".into(), Json::String(error_type.to_string()));
        self.record.error = Some(ErrorInfo {
            error_type: error_type.to_string(),
            message: Some(message.to_string()),
        });
    }
}

impl Call {
    /// The provider id of the call's operation.
    pub fn provider(&self) -> Option<&str> {
        self.parts.as_ref().map(|p| &*p.op.provider)
    }

    /// The operation id.
    pub fn operation(&self) -> Option<&str> {
        self.parts.as_ref().map(|p| &*p.op.id)
    }

    /// W3C trace-context headers naming the call's span as parent, to send upstream.
    pub fn trace_headers(&self) -> Vec<(String, String)> {
        self.parts
            .as_ref()
            .map(|p| p.span.trace_headers())
            .unwrap_or_default()
    }

    /// Whether a response with this status and content type is read as a stream.
    pub fn is_stream(&self, status: u16, content_type: Option<&str>) -> bool {
        let Some(p) = &self.parts else { return false };
        (200..300).contains(&status)
            && engine::stream_for(&p.op, &p.request(), content_type).is_some()
    }

    /// Ends the call with a complete (non-streamed) response.
    pub fn finish(mut self, status: u16, headers: &[(String, String)], body: &[u8]) {
        let Some(mut parts) = self.parts.take() else {
            return;
        };
        let mut problems = Vec::new();
        let json = engine::parse_body(body, "response", &mut problems);
        parts.record.problems.extend(problems);
        parts.end(Some(status), headers, &json, None, Vec::new());
    }

    /// Ends the call as failed before a response arrived (connection refused, timeout, ...).
    /// `error_type` is a low-cardinality name such as `timeout` or `connection_refused`.
    pub fn fail(mut self, error_type: &str, message: &str) {
        let Some(mut parts) = self.parts.take() else {
            return;
        };
        parts.set_error(error_type, message);
        parts.close(None, Vec::new());
    }

    /// Continues the call as a stream when the response is one; gives the call back otherwise.
    pub fn into_stream(
        mut self,
        status: u16,
        headers: &[(String, String)],
    ) -> Result<super::StreamCall, Call> {
        let content_type = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str());
        if !self.is_stream(status, content_type) {
            return Err(self);
        }
        let Some(parts) = self.parts.take() else {
            return Err(self);
        };
        Ok(super::StreamCall::new(parts, status, headers.to_vec()))
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if let Some(mut parts) = self.parts.take() {
            parts.set_error("_OTHER", "call dropped before a response was recorded");
            parts.close(None, Vec::new());
        }
    }
}
