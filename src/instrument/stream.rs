//! A streamed response in flight: bytes (or parsed chunks) are folded as they pass, and the span
//! ends exactly once — at the end of the stream, on an error, when the consumer drops the stream
//! (recorded as abandoned: `error.type` `_OTHER`, `specter.stream.abandoned`), or when it stalls.

use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::call::CallParts;
use crate::engine::stream::{Deframer, Folder, Frame};
use crate::engine::{self};

/// Gaps between chunks kept for the time-per-chunk metric; later gaps are not recorded.
const MAX_GAPS: usize = 4096;

/// A streamed response being observed.
pub struct StreamCall {
    parts: Option<Box<CallParts>>,
    status: u16,
    headers: Vec<(String, String)>,
    deframer: Option<Deframer>,
    folder: Folder,
    frames: Vec<Frame>,
    first_chunk: Option<Duration>,
    last_chunk: Option<Instant>,
    /// In microseconds (4 bytes each rather than a `Duration`'s 16: a gateway holds one list per
    /// stream in flight).
    gaps: Vec<u32>,
}

impl std::fmt::Debug for StreamCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamCall")
            .field("status", &self.status)
            .field("chunks", &self.folder.chunks())
            .finish()
    }
}

impl StreamCall {
    pub(super) fn new(
        parts: Box<CallParts>,
        status: u16,
        headers: Vec<(String, String)>,
    ) -> StreamCall {
        let deframer = parts.op.stream.as_ref().map(|s| Deframer::new(s.framing));
        let cap = parts.shared.options.max_stream_text;
        StreamCall {
            parts: Some(parts),
            status,
            headers,
            deframer,
            folder: Folder::new(cap),
            frames: Vec::new(),
            first_chunk: None,
            last_chunk: None,
            gaps: Vec::new(),
        }
    }

    /// Chunks folded so far.
    pub fn chunks(&self) -> u64 {
        self.folder.chunks()
    }

    fn tick(&mut self) {
        let now = Instant::now();
        match self.last_chunk {
            None => {
                if let Some(p) = &self.parts {
                    self.first_chunk = Some(now.duration_since(p.started));
                }
            }
            Some(last) if self.gaps.len() < MAX_GAPS => {
                let micros = now.duration_since(last).as_micros();
                self.gaps.push(u32::try_from(micros).unwrap_or(u32::MAX));
            }
            Some(_) => {}
        }
        self.last_chunk = Some(now);
    }

    /// Observes raw bytes of the response as they pass (split anywhere).
    pub fn bytes(&mut self, data: &[u8]) {
        let (Some(parts), Some(deframer)) = (&self.parts, &mut self.deframer) else {
            return;
        };
        let Some(stream) = parts.op.stream.as_ref() else {
            return;
        };
        deframer.push(data, &mut self.frames);
        let mut chunks = 0;
        for frame in self.frames.drain(..) {
            if self.folder.frame(stream, &parts.request_body, &frame) {
                chunks += 1;
            }
        }
        for _ in 0..chunks {
            self.tick();
        }
    }

    /// Observes one already-parsed chunk (for clients that yield decoded chunks).
    pub fn chunk(&mut self, event: Option<&str>, chunk: &Json) {
        let Some(parts) = &self.parts else { return };
        let Some(stream) = parts.op.stream.as_ref() else {
            return;
        };
        self.folder.chunk(stream, &parts.request_body, event, chunk);
        self.tick();
    }

    /// Ends the stream normally.
    pub fn end(mut self) {
        self.close(Ending::Normal);
    }

    /// Ends the stream with an error that interrupted it; what arrived so far is still recorded.
    pub fn fail(mut self, error_type: &str, message: &str) {
        self.close(Ending::Failed(error_type.to_string(), message.to_string()));
    }

    fn close(&mut self, ending: Ending) {
        let Some(mut parts) = self.parts.take() else {
            return;
        };
        let Some(stream) = parts.op.stream.clone() else {
            return;
        };
        if let Some(deframer) = &mut self.deframer {
            deframer.finish(&mut self.frames);
            for frame in self.frames.drain(..) {
                self.folder.frame(&stream, &parts.request_body, &frame);
            }
        }
        let dropped = self.deframer.as_ref().map_or(0, Deframer::dropped);
        let folder = std::mem::replace(&mut self.folder, Folder::new(0));
        let outcome = folder.finish(&stream, &parts.request_body);
        let request = engine::Request {
            target: &parts.target,
            headers: &parts.request_headers,
            body: &parts.request_body,
            captures: &parts.captures,
        };
        let response = engine::Response {
            status: Some(self.status),
            headers: &self.headers,
            body: &outcome.response,
        };
        engine::response_phase(&parts.op, &mut parts.record, &request, &response);
        engine::record_fold(&mut parts.record, &outcome, dropped);
        match ending {
            Ending::Normal => {}
            Ending::Failed(error_type, message) => parts.set_error(&error_type, &message),
            Ending::Abandoned => {
                parts
                    .record
                    .attributes
                    .insert("specter.stream.abandoned".into(), Json::Bool(true));
                parts.set_error("_OTHER", ABANDONED);
            }
        }
        let gaps = std::mem::take(&mut self.gaps)
            .into_iter()
            .map(|micros| Duration::from_micros(u64::from(micros)))
            .collect();
        parts.close(self.first_chunk, gaps);
    }
}

/// How a stream ended.
enum Ending {
    Normal,
    Failed(String, String),
    Abandoned,
}

/// The message of an abandoned stream.
pub const ABANDONED: &str = "stream abandoned by the consumer before its end";

impl Drop for StreamCall {
    fn drop(&mut self) {
        if self.parts.is_some() {
            // A client may close as soon as the provider's end marker arrived (the openai SDK stops
            // at `[DONE]`): the stream is complete, not abandoned.
            let ending = if self.folder.is_done() {
                Ending::Normal
            } else {
                Ending::Abandoned
            };
            self.close(ending);
        }
    }
}
