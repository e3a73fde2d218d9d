//! Wrappers that observe a stream while handing every item on unchanged and at once: a
//! `futures::Stream` of byte chunks (what an HTTP client yields), and a `Stream` or `Iterator` of
//! already-parsed chunks.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use serde::Serialize;

use super::StreamCall;
use crate::instrument::stall::{StallTimer, STALLED};

pin_project_lite::pin_project! {
    /// A byte stream observed by a [`StreamCall`]. Items pass through unchanged; the span ends when
    /// the stream ends, yields an error, stalls longer than the stall timeout, or is dropped.
    ///
    /// ```
    /// use futures::{executor::block_on, stream, StreamExt};
    /// use specter::{parent_context, HttpRequest, InstrumentedStream, Instrumentor};
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
    /// let call = call.into_stream(200, &sse).unwrap();
    /// // The byte stream of any HTTP client.
    /// let body = stream::iter(vec![
    ///     Ok::<_, std::io::Error>(b"data: {\"choices\": [{\"delta\": {\"content\": \"hi\"}}]}\n\n".to_vec()),
    ///     Ok(b"data: [DONE]\n\n".to_vec()),
    /// ]);
    /// let passed: Vec<_> = block_on(InstrumentedStream::new(body, call, None).collect());
    /// assert_eq!(passed.len(), 2);
    /// ```
    pub struct InstrumentedStream<S> {
        #[pin]
        inner: S,
        call: Option<StreamCall>,
        stall: Option<StallTimer>,
    }
}

impl<S> InstrumentedStream<S> {
    /// Wraps `inner`. With `stall` set (and a Tokio runtime with timers present), a stream that
    /// yields nothing for that long ends its span as `timeout`; items still pass through.
    pub fn new(inner: S, call: StreamCall, stall: Option<Duration>) -> Self {
        InstrumentedStream {
            inner,
            call: Some(call),
            stall: stall.map(StallTimer::new),
        }
    }
}

impl<S, B, E> Stream for InstrumentedStream<S>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    type Item = Result<B, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        match this.inner.poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                if let Some(stall) = this.stall.as_mut() {
                    stall.reset();
                }
                if let Some(call) = this.call.as_mut() {
                    call.bytes(bytes.as_ref());
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(call) = this.call.take() {
                    call.fail("_OTHER", &e.to_string());
                }
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                if let Some(call) = this.call.take() {
                    call.end();
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                let stalled = match (this.stall.as_mut(), this.call.is_some()) {
                    (Some(stall), true) => stall.poll_stalled(cx),
                    _ => Poll::Pending,
                };
                if let Poll::Ready(stalled) = stalled {
                    if let Some(call) = this.call.take() {
                        call.fail(STALLED, &stalled.to_string());
                    }
                }
                Poll::Pending
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A stream or iterator of parsed chunks observed by a [`StreamCall`]; each chunk is
    /// serialised to JSON for folding and handed on unchanged.
    ///
    /// ```
    /// use specter::{parent_context, HttpRequest, InstrumentedChunks, Instrumentor};
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
    /// let call = call.into_stream(200, &sse).unwrap();
    /// // Chunks a client SDK already parsed (anything `Serialize`).
    /// let parsed = vec![
    ///     serde_json::json!({"choices": [{"delta": {"content": "Hel"}}]}),
    ///     serde_json::json!({"choices": [{"delta": {"content": "lo"}}]}),
    /// ];
    /// let handed_on: Vec<_> = InstrumentedChunks::new(parsed.into_iter(), call).collect();
    /// assert_eq!(handed_on.len(), 2);
    /// ```
    pub struct InstrumentedChunks<S> {
        #[pin]
        inner: S,
        call: Option<StreamCall>,
    }
}

impl<S> InstrumentedChunks<S> {
    /// Wraps a stream or iterator of chunks.
    pub fn new(inner: S, call: StreamCall) -> Self {
        InstrumentedChunks {
            inner,
            call: Some(call),
        }
    }
}

fn observe<T: Serialize>(call: &mut Option<StreamCall>, item: &T) {
    if let (Some(call), Ok(value)) = (call.as_mut(), serde_json::to_value(item)) {
        call.chunk(None, &value);
    }
}

impl<S, T> Stream for InstrumentedChunks<S>
where
    S: Stream<Item = T>,
    T: Serialize,
{
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.project();
        match this.inner.poll_next(cx) {
            Poll::Ready(Some(item)) => {
                observe(this.call, &item);
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                if let Some(call) = this.call.take() {
                    call.end();
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I, T> Iterator for InstrumentedChunks<I>
where
    I: Iterator<Item = T> + Unpin,
    T: Serialize,
{
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match self.inner.next() {
            Some(item) => {
                observe(&mut self.call, &item);
                Some(item)
            }
            None => {
                if let Some(call) = self.call.take() {
                    call.end();
                }
                None
            }
        }
    }
}
