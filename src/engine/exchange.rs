//! One exchange run whole, from its request to its finished [`Record`]: the request body parsed
//! and the request phase run once, then either a complete response body or a stream folded as it
//! passes, the response phase, the fold's statistics, and a failure when there is one.
//!
//! This is the only place that builds the engine's view of a request ([`Request`]); the offline
//! extractor and the live instrumentation drive it and keep only what is theirs (spans, timing).

use std::sync::Arc;

use serde_json::Value as Json;

use super::stream::{Deframer, FoldOutcome, Folder, Frame};
use super::{Content, ErrorInfo, HttpTarget, Record, Request, Response};
use crate::compile::rules::{Operation, Stream};
use crate::Match;

/// The message of a stream abandoned by its consumer.
pub const ABANDONED: &str = "stream abandoned by the consumer before its end";

/// An exchange whose request phase has run.
#[derive(Debug)]
pub struct Exchange {
    op: Arc<Operation>,
    target: HttpTarget,
    headers: Vec<(String, String)>,
    /// The parsed request body: after the request phase, only what later rules read of it.
    body: Json,
    captures: Vec<(String, String)>,
    content: Content,
    record: Record,
    /// The prices the call's cost is computed from.
    prices: Arc<crate::prices::PriceBook>,
    /// Bodies that were not JSON; added to the record's problems when it is finished.
    problems: Vec<String>,
}

impl Exchange {
    /// Starts the exchange of a matched operation: parses what its rules read of the request
    /// body and runs the request phase. With [`Content::Skip`], message content is neither
    /// parsed nor rendered.
    pub fn new(
        found: Match,
        target: HttpTarget,
        headers: Vec<(String, String)>,
        body: &[u8],
        content: Content,
    ) -> Exchange {
        let mut problems = Vec::new();
        let reads = &found.operation.reads;
        let tree = match content {
            Content::Render => &reads.request,
            Content::Skip => &reads.request_without_content,
        };
        let mut body = super::parse_body(body, tree, "request", &mut problems);
        let request = view(&target, &headers, &body, &found.captures);
        let record = super::request_phase(&found.operation, &request, content);
        super::sparse::prune(&mut body, &reads.request_kept);
        Exchange {
            op: found.operation,
            target,
            headers,
            body,
            captures: found.captures,
            content,
            record,
            prices: crate::prices::PriceBook::bundled(),
            problems,
        }
    }

    /// Computes the call's cost from these prices instead of the bundled ones.
    pub fn set_prices(&mut self, prices: Arc<crate::prices::PriceBook>) {
        self.prices = prices;
    }

    /// Adds attributes to the record (request context, before the span starts); existing keys
    /// are replaced.
    pub fn add_attributes(&mut self, attributes: impl IntoIterator<Item = (String, Json)>) {
        self.record.attributes.extend(attributes);
    }

    /// The record's attributes, for a request-context step to cap in place.
    pub fn attributes_mut(&mut self) -> &mut std::collections::BTreeMap<String, Json> {
        &mut self.record.attributes
    }

    /// The engine's view of the request.
    pub fn request(&self) -> Request<'_> {
        view(&self.target, &self.headers, &self.body, &self.captures)
    }

    /// The matched operation.
    pub fn operation(&self) -> &Arc<Operation> {
        &self.op
    }

    /// The record as it stands (after the request phase: what a span starts with).
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// Whether a response with this status and content type is read as a stream.
    pub fn is_stream(&self, status: u16, content_type: Option<&str>) -> bool {
        (200..300).contains(&status)
            && super::stream_for(&self.op, &self.request(), content_type).is_some()
    }

    /// Marks the record failed: `error_type` is a low-cardinality name such as `timeout`.
    pub fn fail(&mut self, error_type: &str, message: &str) {
        self.record
            .attributes
            .insert("error.type".into(), Json::String(error_type.to_string()));
        self.record.error = Some(ErrorInfo {
            error_type: error_type.to_string(),
            message: Some(message.to_string()),
        });
    }

    /// Marks the record as a stream its consumer dropped before its end.
    pub fn abandon(&mut self) {
        self.record
            .attributes
            .insert("specter.stream.abandoned".into(), Json::Bool(true));
        self.fail("_OTHER", ABANDONED);
    }

    /// Runs the response phase on a complete response body.
    pub fn respond(&mut self, status: u16, headers: &[(String, String)], body: &[u8]) {
        let reads = &self.op.reads;
        let tree = match self.content {
            Content::Render => &reads.response,
            Content::Skip => &reads.response_without_content,
        };
        let json = super::parse_body(body, tree, "response", &mut self.problems);
        self.respond_json(status, headers, &json);
    }

    /// Runs the response phase on a recorded response: folded as a stream when it is one (a
    /// stream that held no chunk but whose body is JSON is read as a plain JSON answer), as a
    /// complete body otherwise.
    pub fn respond_recorded(
        &mut self,
        status: u16,
        headers: &[(String, String)],
        content_type: Option<&str>,
        body: &[u8],
        text_cap: usize,
    ) {
        let stream = self
            .op
            .stream
            .as_ref()
            .filter(|_| self.is_stream(status, content_type));
        let Some(stream) = stream else {
            return self.respond(status, headers, body);
        };
        let (outcome, dropped) = fold(stream, &self.body, body, text_cap);
        if outcome.chunks > 0 || serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
            self.respond_json(status, headers, &outcome.response);
        } else {
            self.respond(status, headers, body);
        }
        if outcome.chunks > 0 || outcome.exception.is_some() {
            super::record_fold(&mut self.record, &outcome, dropped);
        }
    }

    /// Continues the exchange as a streamed response with this status and headers; text
    /// accumulated from the stream is capped at `text_cap` bytes.
    pub fn into_stream(
        self,
        status: u16,
        headers: Vec<(String, String)>,
        text_cap: usize,
    ) -> StreamExchange {
        StreamExchange {
            folding: Folding::new(self.op.stream.as_ref(), text_cap),
            exchange: self,
            status,
            headers,
        }
    }

    /// The finished record.
    pub fn into_record(mut self) -> Record {
        self.record.problems.append(&mut self.problems);
        self.record
    }

    fn respond_json(&mut self, status: u16, headers: &[(String, String)], body: &Json) {
        let response = Response {
            status: Some(status),
            headers,
            body,
        };
        let request = view(&self.target, &self.headers, &self.body, &self.captures);
        super::response_phase(
            &self.op,
            &mut self.record,
            &request,
            &response,
            self.content,
        );
        super::record_cost(&self.op, &mut self.record, &self.prices);
    }
}

/// The engine's view of a request from its parts.
fn view<'a>(
    target: &'a HttpTarget,
    headers: &'a [(String, String)],
    body: &'a Json,
    captures: &'a [(String, String)],
) -> Request<'a> {
    Request {
        target,
        headers,
        body,
        captures,
    }
}

/// Folds a complete stream body: the fold's outcome and the frames the framing layer dropped.
pub(super) fn fold(
    stream: &Stream,
    request: &Json,
    body: &[u8],
    text_cap: usize,
) -> (FoldOutcome, u64) {
    let mut folding = Folding::new(Some(stream), text_cap);
    folding.bytes(stream, request, body);
    folding.finish(stream, request)
}

/// The framing parser, folder and frames of a stream being folded.
#[derive(Debug)]
struct Folding {
    deframer: Option<Deframer>,
    folder: Folder,
    frames: Vec<Frame>,
}

impl Folding {
    fn new(stream: Option<&Stream>, text_cap: usize) -> Folding {
        Folding {
            deframer: stream.map(|s| Deframer::new(s.framing)),
            folder: Folder::new(text_cap),
            frames: Vec::new(),
        }
    }

    /// Folds bytes split anywhere; returns the chunks folded.
    fn bytes(&mut self, stream: &Stream, request: &Json, data: &[u8]) -> u64 {
        let Some(deframer) = &mut self.deframer else {
            return 0;
        };
        deframer.push(data, &mut self.frames);
        let mut chunks = 0;
        for frame in self.frames.drain(..) {
            if self.folder.frame(stream, request, &frame) {
                chunks += 1;
            }
        }
        chunks
    }

    /// Ends the input: the fold's outcome and the frames the framing layer dropped.
    fn finish(mut self, stream: &Stream, request: &Json) -> (FoldOutcome, u64) {
        if let Some(deframer) = &mut self.deframer {
            deframer.finish(&mut self.frames);
            for frame in self.frames.drain(..) {
                self.folder.frame(stream, request, &frame);
            }
        }
        let dropped = self.deframer.as_ref().map_or(0, Deframer::dropped);
        (self.folder.finish(stream, request), dropped)
    }
}

/// An exchange whose response is a stream being folded as it passes.
#[derive(Debug)]
pub struct StreamExchange {
    exchange: Exchange,
    status: u16,
    headers: Vec<(String, String)>,
    folding: Folding,
}

impl StreamExchange {
    /// The exchange (its operation, request and record so far).
    pub fn exchange(&self) -> &Exchange {
        &self.exchange
    }

    /// The response status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Chunks folded so far.
    pub fn chunks(&self) -> u64 {
        self.folding.folder.chunks()
    }

    /// Whether the provider's end-of-stream marker arrived.
    pub fn is_done(&self) -> bool {
        self.folding.folder.is_done()
    }

    /// Folds raw bytes of the response (split anywhere); returns the chunks they completed.
    pub fn bytes(&mut self, data: &[u8]) -> u64 {
        let Some(stream) = self.exchange.op.stream.as_ref() else {
            return 0;
        };
        self.folding.bytes(stream, &self.exchange.body, data)
    }

    /// Folds one already-parsed chunk.
    pub fn chunk(&mut self, event: Option<&str>, chunk: &Json) {
        let Some(stream) = self.exchange.op.stream.as_ref() else {
            return;
        };
        self.folding
            .folder
            .chunk(stream, &self.exchange.body, event, chunk);
    }

    /// Ends the stream: runs the response phase on the response the stream rebuilt and records
    /// the fold. The exchange is handed back to be marked failed, when it was, and finished.
    pub fn finish(self) -> Exchange {
        let StreamExchange {
            mut exchange,
            status,
            headers,
            folding,
        } = self;
        let op = exchange.op.clone();
        let Some(stream) = op.stream.as_ref() else {
            return exchange;
        };
        let (outcome, dropped) = folding.finish(stream, &exchange.body);
        exchange.respond_json(status, &headers, &outcome.response);
        super::record_fold(&mut exchange.record, &outcome, dropped);
        exchange
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::Catalog;

    fn chat(body: &[u8]) -> Exchange {
        let catalog = Catalog::bundled().unwrap();
        let target = HttpTarget::parse("https://api.openai.com/v1/chat/completions").unwrap();
        let found = catalog
            .find("POST", Some(&target.host), &target.path, &target.query)
            .unwrap();
        Exchange::new(found, target, Vec::new(), body, Content::Render)
    }

    #[test]
    fn a_failure_sets_the_error_type_and_its_message() {
        let mut exchange = chat(br#"{"model": "gpt-4o", "messages": []}"#);
        exchange.fail("timeout", "no data for 5 ms");
        let record = exchange.into_record();
        assert_eq!(record.attributes["error.type"], "timeout");
        let error = record.error.unwrap();
        assert_eq!(error.error_type, "timeout");
        assert_eq!(error.message.as_deref(), Some("no data for 5 ms"));
    }

    #[test]
    fn an_abandoned_stream_is_marked_as_such() {
        let mut exchange = chat(br#"{"model": "gpt-4o", "messages": [], "stream": true}"#);
        exchange.abandon();
        let record = exchange.into_record();
        assert_eq!(record.attributes["specter.stream.abandoned"], true);
        assert_eq!(record.attributes["error.type"], "_OTHER");
        assert_eq!(record.error.unwrap().message.as_deref(), Some(ABANDONED));
    }

    #[test]
    fn bodies_that_are_not_json_are_problems_of_the_finished_record() {
        let mut exchange = chat(b"not json");
        assert_eq!(exchange.request().body, &Json::Null);
        exchange.respond(200, &[], b"nor this");
        let record = exchange.into_record();
        assert_eq!(record.problems.len(), 2, "{:?}", record.problems);
        assert!(record.problems[0].starts_with("request body is not JSON"));
        assert!(record.problems[1].starts_with("response body is not JSON"));
    }

    #[test]
    fn a_stream_rebuilds_the_response_and_records_the_fold() {
        let exchange = chat(br#"{"model": "gpt-4o", "messages": [], "stream": true}"#);
        assert!(exchange.is_stream(200, Some("text/event-stream")));
        assert!(!exchange.is_stream(500, Some("text/event-stream")));
        let mut stream = exchange.into_stream(200, Vec::new(), 1 << 20);
        let chunk = br#"data: {"model": "gpt-4o-2024", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}"#;
        assert_eq!(
            stream.bytes(chunk),
            0,
            "a frame is complete at its blank line"
        );
        assert_eq!(stream.bytes(b"\n\ndata: [DONE]\n\n"), 1);
        assert!(stream.is_done());
        let record = stream.finish().into_record();
        assert_eq!(record.attributes["gen_ai.response.model"], "gpt-4o-2024");
        let stats = record.stream.unwrap();
        assert_eq!((stats.chunks, stats.completed), (1, true));
        assert!(record.error.is_none());
    }
}
