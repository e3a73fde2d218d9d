//! A streamed response in flight: bytes (or parsed chunks) are folded as they pass, and the span
//! ends exactly once — at the end of the stream, on an error, when the consumer drops the stream
//! (recorded as abandoned: `error.type` `_OTHER`, `specter.stream.abandoned`), or when it stalls.

use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::call::CallSpan;
use crate::engine::StreamExchange;

pub use crate::engine::ABANDONED;

/// Gaps between chunks kept for the time-per-chunk metric; later gaps are not recorded.
const MAX_GAPS: usize = 4096;

/// A streamed response being observed.
///
/// ```
/// use specter::{parent_context, HttpRequest, Instrumentor};
///
/// let instrumentor = Instrumentor::builder().build().unwrap();
/// let mut request = HttpRequest {
///     method: "POST".into(),
///     url: "https://api.openai.com/v1/chat/completions".into(),
///     headers: vec![],
///     body: br#"{"model": "gpt-4o-mini", "stream": true, "messages": []}"#.to_vec(),
/// };
/// let call = instrumentor.start(&mut request, &parent_context()).unwrap();
/// let sse = [("content-type".to_string(), "text/event-stream".to_string())];
/// let mut stream = call.into_stream(200, &sse).unwrap();
/// // Bytes as they arrive, split anywhere.
/// stream.bytes(b"data: {\"choices\": [{\"delta\": {\"content\": \"Hel\"}}]}\n\nda");
/// stream.bytes(b"ta: {\"choices\": [{\"delta\": {\"content\": \"lo\"}}]}\n\n");
/// assert_eq!(stream.chunks(), 2);
/// stream.end();
/// ```
pub struct StreamCall {
    parts: Option<Box<(CallSpan, StreamExchange)>>,
    first_chunk: Option<Duration>,
    last_chunk: Option<Instant>,
    /// In microseconds (4 bytes each rather than a `Duration`'s 16: a gateway holds one list per
    /// stream in flight).
    gaps: Vec<u32>,
}

impl std::fmt::Debug for StreamCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("StreamCall");
        if let Some((_, stream)) = self.parts.as_deref() {
            d.field("status", &stream.status())
                .field("chunks", &stream.chunks());
        }
        d.finish()
    }
}

impl StreamCall {
    pub(super) fn new(span: CallSpan, stream: StreamExchange) -> StreamCall {
        StreamCall {
            parts: Some(Box::new((span, stream))),
            first_chunk: None,
            last_chunk: None,
            gaps: Vec::new(),
        }
    }

    /// Chunks folded so far.
    pub fn chunks(&self) -> u64 {
        self.parts.as_deref().map_or(0, |(_, s)| s.chunks())
    }

    fn tick(&mut self) {
        let now = Instant::now();
        match self.last_chunk {
            None => {
                if let Some((span, _)) = self.parts.as_deref() {
                    self.first_chunk = Some(now.duration_since(span.started));
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
        let Some((_, stream)) = self.parts.as_deref_mut() else {
            return;
        };
        for _ in 0..stream.bytes(data) {
            self.tick();
        }
    }

    /// Observes one already-parsed chunk (for clients that yield decoded chunks).
    pub fn chunk(&mut self, event: Option<&str>, chunk: &Json) {
        let Some((_, stream)) = self.parts.as_deref_mut() else {
            return;
        };
        stream.chunk(event, chunk);
        self.tick();
    }

    /// Ends the stream normally.
    pub fn end(mut self) {
        self.close(Ending::Normal);
    }

    /// Ends the stream with an error that interrupted it; what arrived so far is still recorded.
    pub fn fail(mut self, error_type: &str, message: &str) {
        self.close(Ending::Failed(error_type, message));
    }

    fn close(&mut self, ending: Ending<'_>) {
        let Some(parts) = self.parts.take() else {
            return;
        };
        let (span, stream) = *parts;
        let mut exchange = stream.finish();
        match ending {
            Ending::Normal => {}
            Ending::Failed(error_type, message) => exchange.fail(error_type, message),
            Ending::Abandoned => exchange.abandon(),
        }
        let gaps = std::mem::take(&mut self.gaps)
            .into_iter()
            .map(|micros| Duration::from_micros(u64::from(micros)))
            .collect();
        span.close(exchange, self.first_chunk, gaps);
    }
}

/// How a stream ended.
enum Ending<'a> {
    Normal,
    Failed(&'a str, &'a str),
    Abandoned,
}

impl Drop for StreamCall {
    fn drop(&mut self) {
        let Some((_, stream)) = self.parts.as_deref() else {
            return;
        };
        // A client may close as soon as the provider's end marker arrived (the openai SDK stops
        // at `[DONE]`): the stream is complete, not abandoned.
        let ending = if stream.is_done() {
            Ending::Normal
        } else {
            Ending::Abandoned
        };
        self.close(ending);
    }
}
