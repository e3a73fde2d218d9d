//! The response body as the client receives it: every frame of the upstream's body handed on
//! as it arrives, unchanged, while a copy (decompressed when needed) feeds the instrumentation.
//! Instrumentation problems never change what the client receives, and finishing a span (the
//! response rules, the span's export, the metrics) runs on a task of its own after the last frame
//! is handed on, so it adds nothing to the response's latency.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::decode::Decoder;
use super::in_flight::InFlight;
use crate::instrument::stall::{StallTimer, STALLED};
use crate::instrument::{Call, StreamCall};

/// Compressed input is handed to the decoder this many bytes at a time, so the decoder holds
/// little of it and a body that turns out not to be what it claims goes on raw from about where
/// decoding failed. (What one slice may decode to is bounded by the decoder itself.)
const DECODE_SLICE: usize = 1024;

/// Decoded bytes of one stream after which its copy is no longer decoded (nor observed).
const MAX_DECODED_STREAM: usize = 64 << 20;

/// What watches the body.
pub enum Observer {
    /// Not a GenAI call, or instrumentation is off.
    None,
    /// A streamed response, folded as it passes.
    Stream {
        /// The call.
        call: Box<StreamCall>,
        /// Decoder of the tee's copy.
        decoder: Option<Decoder>,
        /// Bytes decoded so far.
        decoded: usize,
    },
    /// A complete response, buffered (up to a cap) for the response rules.
    Buffer {
        /// The call.
        call: Call,
        /// Status.
        status: u16,
        /// Response headers.
        headers: Vec<(String, String)>,
        /// The decoded body so far.
        body: Vec<u8>,
        /// Decoder of the tee's copy.
        decoder: Option<Decoder>,
        /// Most bytes kept.
        cap: usize,
    },
}

impl Observer {
    /// Stops the decoder at what this observer keeps of a body: [`MAX_DECODED_STREAM`] for a
    /// stream, the kept-bytes cap for a buffered body.
    fn limit_decoding(&mut self) {
        match self {
            Observer::Stream {
                decoder: Some(d), ..
            } => d.set_limit(MAX_DECODED_STREAM),
            Observer::Buffer {
                decoder: Some(d),
                cap,
                ..
            } => d.set_limit(*cap),
            _ => {}
        }
    }

    fn data(&mut self, data: &[u8]) {
        match self {
            Observer::None => {}
            Observer::Stream {
                call,
                decoder,
                decoded,
            } => {
                if *decoded >= MAX_DECODED_STREAM {
                    // A stream that inflates this much is not an LLM response: no longer observed.
                    return;
                }
                if decoder.is_none() {
                    call.bytes(data);
                    return;
                }
                for (n, piece) in data.chunks(DECODE_SLICE).enumerate() {
                    let decoded_ok = decode(decoder, piece, |out| {
                        *decoded += out.len();
                        call.bytes(out);
                    });
                    if !decoded_ok {
                        // Not what it claims to be: the rest goes through as it is.
                        call.bytes(data.get(n * DECODE_SLICE..).unwrap_or_default());
                        return;
                    }
                    if decoder.is_none() {
                        return;
                    }
                }
            }
            Observer::Buffer {
                body, decoder, cap, ..
            } => {
                if decoder.is_none() {
                    let room = cap.saturating_sub(body.len());
                    body.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
                    return;
                }
                for (n, piece) in data.chunks(DECODE_SLICE).enumerate() {
                    let decoded_ok = decode(decoder, piece, |out| {
                        let room = cap.saturating_sub(body.len());
                        body.extend_from_slice(out.get(..room.min(out.len())).unwrap_or_default());
                    });
                    if !decoded_ok {
                        // Not what it claims to be: keep the rest as it is.
                        let rest = data.get(n * DECODE_SLICE..).unwrap_or_default();
                        let room = cap.saturating_sub(body.len());
                        body.extend_from_slice(
                            rest.get(..room.min(rest.len())).unwrap_or_default(),
                        );
                        return;
                    }
                    if decoder.is_none() {
                        // Kept bytes are full: decoding further would only cost memory.
                        return;
                    }
                }
            }
        }
    }

    fn end(self) {
        match self {
            Observer::None => {}
            Observer::Stream { call, .. } => (*call).end(),
            Observer::Buffer {
                call,
                status,
                headers,
                body,
                ..
            } => call.finish(status, &headers, &body),
        }
    }

    fn fail(self, error_type: &str, message: &str) {
        match self {
            Observer::None => {}
            Observer::Stream { call, .. } => (*call).fail(error_type, message),
            Observer::Buffer { call, .. } => call.fail(error_type, message),
        }
    }
}

/// Decodes a piece of the body step by step, handing each bounded step of decoded bytes to
/// `sink`. Returns false when the piece cannot be decoded (the decoder is then dropped and the
/// raw bytes are used); a decoder that reached its limit is dropped too, having no more to give.
fn decode(decoder: &mut Option<Decoder>, piece: &[u8], mut sink: impl FnMut(&[u8])) -> bool {
    let Some(d) = decoder.as_mut() else {
        return false;
    };
    let mut step = d.feed(piece);
    loop {
        match step {
            Ok([]) => break,
            Ok(out) => sink(out),
            Err(_) => {
                *decoder = None;
                return false;
            }
        }
        step = d.next_piece();
    }
    if d.is_spent() {
        *decoder = None;
    }
    true
}

/// How an observed body ended.
enum Ending {
    /// The whole body arrived.
    Complete,
    /// It ended with an error of this type and message.
    Failed(&'static str, String),
}

/// Finishes the observer's span on a task of its own, counted in flight until it is done, so
/// the client's last frame is not held up; without a runtime, at once.
fn finish(observer: Observer, ending: Ending, in_flight: &InFlight) {
    if matches!(observer, Observer::None) {
        return;
    }
    let guard = in_flight.enter();
    let work = move || {
        match ending {
            Ending::Complete => observer.end(),
            Ending::Failed(error_type, message) => observer.fail(error_type, &message),
        }
        drop(guard);
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move { work() });
        }
        Err(_) => work(),
    }
}

pin_project_lite::pin_project! {
    /// A response body teed to an [`Observer`], with an idle timeout between frames.
    pub struct TeeBody<B> {
        #[pin]
        inner: B,
        observer: Option<Observer>,
        stall: StallTimer,
        in_flight: InFlight,
    }

    impl<B> PinnedDrop for TeeBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Dropped before its end: the client left (the call's own drop records that), or
            // the shutdown grace ran out and the gateway cut the response.
            if this.in_flight.is_closed() {
                if let Some(observer) = this.observer.take() {
                    observer.fail(SHUTDOWN, "the gateway shut down before the response ended");
                }
            }
        }
    }
}

/// The `error.type` of calls cut by the end of the shutdown grace period.
pub const SHUTDOWN: &str = "gateway_shutdown";

impl<B: Body> TeeBody<B> {
    /// Tees `inner` to `observer`; a body that sends nothing for `idle` is ended with an error.
    /// An empty body (which is never polled) ends the observer at once. Spans are finished on
    /// tasks counted in `in_flight`.
    pub fn new(inner: B, mut observer: Observer, idle: Duration, in_flight: InFlight) -> Self {
        observer.limit_decoding();
        let observer = if inner.is_end_stream() {
            finish(observer, Ending::Complete, &in_flight);
            None
        } else {
            Some(observer)
        };
        TeeBody {
            inner,
            observer,
            stall: StallTimer::new(idle),
            in_flight,
        }
    }
}

impl<B> Body for TeeBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.stall.reset();
                if let (Some(data), Some(observer)) = (frame.data_ref(), this.observer.as_mut()) {
                    observer.data(data);
                }
                // A body of known length ends without a final poll: end the call with its last byte.
                if this.inner.is_end_stream() {
                    if let Some(observer) = this.observer.take() {
                        finish(observer, Ending::Complete, this.in_flight);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: Self::Error = e.into();
                if let Some(observer) = this.observer.take() {
                    finish(
                        observer,
                        Ending::Failed("upstream_error", e.to_string()),
                        this.in_flight,
                    );
                }
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                if let Some(observer) = this.observer.take() {
                    finish(observer, Ending::Complete, this.in_flight);
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                let Poll::Ready(stalled) = this.stall.poll_stalled(cx) else {
                    return Poll::Pending;
                };
                if let Some(observer) = this.observer.take() {
                    finish(
                        observer,
                        Ending::Failed(STALLED, stalled.to_string()),
                        this.in_flight,
                    );
                }
                Poll::Ready(Some(Err(Box::new(stalled))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
