//! One instrumented call in flight: request phase done and span started; ends exactly once, with
//! a response, a failure, or as a stream (see [`super::StreamCall`]).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::Shared;
use crate::engine::Exchange;
use crate::telemetry::{ActiveSpan, Timings};

/// An HTTP request as the library sees it.
///
/// ```
/// let request = specter::HttpRequest {
///     method: "POST".into(),
///     url: "https://api.anthropic.com/v1/messages".into(),
///     headers: vec![("content-type".into(), "application/json".into())],
///     body: br#"{"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": []}"#.to_vec(),
/// };
/// assert_eq!(request.method, "POST");
/// ```
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
///
/// ```
/// let response = specter::HttpResponse {
///     status: 200,
///     headers: vec![("content-type".into(), "application/json".into())],
///     body: br#"{"model": "gpt-4o-mini", "choices": []}"#.to_vec(),
/// };
/// assert_eq!(response.status, 200);
/// ```
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
///
/// ```
/// use specter::{parent_context, HttpRequest, Instrumentor};
///
/// let instrumentor = Instrumentor::builder().build().unwrap();
/// let mut request = HttpRequest {
///     method: "POST".into(),
///     url: "https://api.openai.com/v1/chat/completions".into(),
///     headers: vec![],
///     body: br#"{"model": "gpt-4o-mini", "messages": []}"#.to_vec(),
/// };
/// let call = instrumentor.start(&mut request, &parent_context()).unwrap();
/// assert_eq!(call.operation(), Some("chat"));
/// // The response is JSON, not a stream: the call comes back, and is finished with the body.
/// let json = [("content-type".to_string(), "application/json".to_string())];
/// let call = call.into_stream(200, &json).unwrap_err();
/// call.finish(200, &json, br#"{"model": "gpt-4o-mini", "choices": []}"#);
/// ```
pub struct Call {
    pub(super) parts: Option<Box<CallParts>>,
}

/// What a call carries until it ends: the exchange it drives and its span.
pub(super) struct CallParts {
    pub exchange: Exchange,
    pub span: CallSpan,
}

/// A call's open span and its timing.
pub(super) struct CallSpan {
    pub shared: Arc<Shared>,
    pub span: ActiveSpan,
    pub started: Instant,
    pub start_time: SystemTime,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Call");
        if let Some(p) = &self.parts {
            let op = p.exchange.operation();
            d.field("provider", &op.provider)
                .field("operation", &op.id)
                .field("span", &p.exchange.record().span_name);
        }
        d.finish()
    }
}

impl CallSpan {
    /// Ends the span with the exchange's finished record.
    pub fn close(
        self,
        exchange: Exchange,
        first_chunk: Option<Duration>,
        chunk_gaps: Vec<Duration>,
    ) {
        let duration = self.started.elapsed();
        let timings = Timings {
            start: self.start_time,
            end: self.start_time + duration,
            duration,
            first_chunk,
            chunk_gaps,
        };
        let op = exchange.operation().clone();
        let mut record = exchange.into_record();
        if !self.shared.options.enrich_token_usage {
            record
                .attributes
                .retain(|k, _| !k.starts_with("gen_ai.usage."));
        }
        self.shared
            .telemetry
            .finish(self.span, record, &op, &timings);
    }
}

impl Call {
    /// The provider id of the call's operation.
    pub fn provider(&self) -> Option<&str> {
        self.parts
            .as_ref()
            .map(|p| &*p.exchange.operation().provider)
    }

    /// The operation id.
    pub fn operation(&self) -> Option<&str> {
        self.parts.as_ref().map(|p| &*p.exchange.operation().id)
    }

    /// W3C trace-context headers naming the call's span as parent, to send upstream.
    pub fn trace_headers(&self) -> Vec<(String, String)> {
        self.parts
            .as_ref()
            .map(|p| p.span.span.trace_headers())
            .unwrap_or_default()
    }

    /// Whether a response with this status and content type is read as a stream.
    pub fn is_stream(&self, status: u16, content_type: Option<&str>) -> bool {
        self.parts
            .as_ref()
            .is_some_and(|p| p.exchange.is_stream(status, content_type))
    }

    /// Ends the call with a complete (non-streamed) response.
    pub fn finish(mut self, status: u16, headers: &[(String, String)], body: &[u8]) {
        let Some(parts) = self.parts.take() else {
            return;
        };
        let CallParts { mut exchange, span } = *parts;
        exchange.respond(status, headers, body);
        span.close(exchange, None, Vec::new());
    }

    /// Ends the call as failed before a response arrived (connection refused, timeout, ...).
    /// `error_type` is a low-cardinality name such as `timeout` or `connection_refused`.
    pub fn fail(mut self, error_type: &str, message: &str) {
        if let Some(parts) = self.parts.take() {
            parts.fail(error_type, message);
        }
    }

    /// Ends the call as abandoned: the application dropped the response before its end (see
    /// [`super::ABANDONED`]).
    ///
    /// ```
    /// use specter::instrument::{HttpRequest, Instrumentor};
    ///
    /// let instrumentor = Instrumentor::builder().build().unwrap();
    /// let mut request = HttpRequest {
    ///     method: "POST".into(),
    ///     url: "https://api.openai.com/v1/chat/completions".into(),
    ///     headers: vec![],
    ///     body: br#"{"model": "gpt-4o-mini", "messages": []}"#.to_vec(),
    /// };
    /// let call = instrumentor.start(&mut request, &opentelemetry::Context::current()).unwrap();
    /// // The application gave up on the response: the span ends with `error.type` `_OTHER`.
    /// call.abandon();
    /// ```
    pub fn abandon(mut self) {
        if let Some(parts) = self.parts.take() {
            let CallParts { mut exchange, span } = *parts;
            exchange.abandon();
            span.close(exchange, None, Vec::new());
        }
    }

    /// Bytes of a complete response body kept to read it ([`super::Options::max_response_bytes`]).
    #[cfg(any(feature = "reqwest", feature = "tower"))]
    pub(super) fn response_cap(&self) -> usize {
        self.parts
            .as_ref()
            .map_or(0, |p| p.span.shared.options.max_response_bytes)
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
        let CallParts { exchange, span } = *parts;
        let cap = span.shared.options.max_stream_text;
        let stream = exchange.into_stream(status, headers.to_vec(), cap);
        Ok(super::StreamCall::new(span, stream))
    }
}

impl CallParts {
    /// Marks the exchange failed and ends the span.
    fn fail(self, error_type: &str, message: &str) {
        let CallParts { mut exchange, span } = self;
        exchange.fail(error_type, message);
        span.close(exchange, None, Vec::new());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if let Some(parts) = self.parts.take() {
            parts.fail("_OTHER", "call dropped before a response was recorded");
        }
    }
}
