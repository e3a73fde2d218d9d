//! Streamed responses: framing parsers (SSE, NDJSON, AWS event stream) that accept bytes split
//! anywhere, and the folder that applies a provider's fold rules to each chunk so the response
//! rules written for the non-streamed response apply to the rebuilt one.

mod eventstream;
mod fold;
mod json_array;
mod ndjson;
mod sse;

pub use eventstream::{encode as encode_event_message, EventStreamParser};
pub use fold::{FoldOutcome, Folder};
pub use json_array::JsonArrayParser;
pub use ndjson::NdjsonParser;
pub use sse::SseParser;

use crate::compile::rules::Framing;

/// One frame of a stream: its event name and raw payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// SSE `event:` or AWS `:event-type` (`:exception-type` for exceptions).
    pub event: Option<String>,
    /// The payload: SSE data, an NDJSON line, or an event-stream message payload.
    pub data: Vec<u8>,
    /// An AWS event-stream exception message.
    pub exception: bool,
}

/// A framing parser of any kind.
#[derive(Debug)]
pub enum Deframer {
    /// Server-sent events.
    Sse(SseParser),
    /// Newline-delimited JSON.
    Ndjson(NdjsonParser),
    /// AWS event stream.
    EventStream(EventStreamParser),
    /// A streamed JSON array.
    JsonArray(JsonArrayParser),
}

impl Deframer {
    /// A parser for a framing.
    pub fn new(framing: Framing) -> Deframer {
        match framing {
            Framing::Sse => Deframer::Sse(SseParser::default()),
            Framing::Ndjson => Deframer::Ndjson(NdjsonParser::default()),
            Framing::AwsEventstream => Deframer::EventStream(EventStreamParser::default()),
            Framing::JsonArray => Deframer::JsonArray(JsonArrayParser::default()),
        }
    }

    /// Feeds bytes; complete frames are appended to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Frame>) {
        match self {
            Deframer::Sse(p) => p.push(bytes, out),
            Deframer::Ndjson(p) => p.push(bytes, out),
            Deframer::EventStream(p) => p.push(bytes, out),
            Deframer::JsonArray(p) => p.push(bytes, out),
        }
    }

    /// Ends the input.
    pub fn finish(&mut self, out: &mut Vec<Frame>) {
        match self {
            Deframer::Sse(p) => p.finish(out),
            Deframer::Ndjson(p) => p.finish(out),
            Deframer::EventStream(p) => p.finish(out),
            Deframer::JsonArray(p) => p.finish(out),
        }
    }

    /// Frames dropped by the framing layer (overlong lines, CRC mismatches).
    pub fn dropped(&self) -> u64 {
        match self {
            Deframer::Sse(p) => p.dropped(),
            Deframer::Ndjson(p) => p.dropped(),
            Deframer::EventStream(p) => p.dropped(),
            Deframer::JsonArray(p) => p.dropped(),
        }
    }
}

/// The content type that identifies a framing.
pub fn framing_for_content_type(content_type: &str) -> Option<Framing> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "text/event-stream" => Some(Framing::Sse),
        "application/x-ndjson"
        | "application/jsonl"
        | "application/ndjson"
        | "application/stream+json" => Some(Framing::Ndjson),
        "application/vnd.amazon.eventstream" => Some(Framing::AwsEventstream),
        _ => None,
    }
}
