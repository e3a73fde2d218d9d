//! A response body observed by its call, for the adapters that hand an `http_body::Body` on to
//! the application ([`super::middleware`], [`super::layer`]). Every frame passes unchanged and at
//! once; nothing is buffered on the application's behalf. A streamed response is folded as it
//! passes; a complete one is copied (up to [`super::Options::max_response_bytes`]) and read when
//! its last byte has passed. The span ends exactly once: at the end of the body, on an error of
//! the body, or when the application drops the body before its end (recorded as abandoned, see
//! [`super::ABANDONED`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};

use super::{Call, StreamCall};

/// What watches the body.
enum Observer {
    /// A streamed response, folded as it passes.
    Stream(StreamCall),
    /// A complete response, copied up to `cap` bytes and read at its end.
    Buffer {
        call: Call,
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        cap: usize,
    },
}

impl Observer {
    fn new(call: Call, status: u16, headers: Vec<(String, String)>) -> Observer {
        let cap = call.response_cap();
        match call.into_stream(status, &headers) {
            Ok(stream) => Observer::Stream(stream),
            Err(call) => Observer::Buffer {
                call,
                status,
                // A body the client did not decode cannot be read: the span gets its status and
                // headers only.
                cap: if is_encoded(&headers) { 0 } else { cap },
                headers,
                body: Vec::new(),
            },
        }
    }

    fn data(&mut self, data: &[u8]) {
        match self {
            Observer::Stream(call) => call.bytes(data),
            Observer::Buffer { body, cap, .. } => {
                let room = cap.saturating_sub(body.len());
                body.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
            }
        }
    }

    fn end(self) {
        match self {
            Observer::Stream(call) => call.end(),
            Observer::Buffer {
                call,
                status,
                headers,
                body,
                ..
            } => call.finish(status, &headers, &body),
        }
    }

    fn fail(self, message: &str) {
        match self {
            Observer::Stream(call) => call.fail("_OTHER", message),
            Observer::Buffer { call, .. } => call.fail("_OTHER", message),
        }
    }

    fn abandon(self) {
        match self {
            // The stream call tells an abandoned stream from one whose end marker arrived.
            Observer::Stream(call) => drop(call),
            Observer::Buffer { call, .. } => call.abandon(),
        }
    }
}

/// Whether the body is still compressed as it reaches the application.
fn is_encoded(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("content-encoding") && !v.trim().eq_ignore_ascii_case("identity")
    })
}

pin_project_lite::pin_project! {
    /// A response body whose frames pass unchanged while its call observes them; the call's span
    /// ends when the body ends, fails, or is dropped. A body of a request that is not a GenAI
    /// call is passed on as it is, with no observer.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt as _, Full};
    /// use specter::instrument::InstrumentedBody;
    ///
    /// // A body with no call to observe passes through untouched.
    /// let body = InstrumentedBody::passthrough(Full::new(Bytes::from_static(b"{}")));
    /// let bytes = futures::executor::block_on(body.collect()).unwrap().to_bytes();
    /// assert_eq!(bytes, Bytes::from_static(b"{}"));
    /// ```
    pub struct InstrumentedBody<B> {
        #[pin]
        inner: B,
        observer: Option<Observer>,
    }

    impl<B> PinnedDrop for InstrumentedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(observer) = this.project().observer.take() {
                observer.abandon();
            }
        }
    }
}

impl<B> std::fmt::Debug for InstrumentedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstrumentedBody")
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl<B: Body> InstrumentedBody<B> {
    /// The body of the response to `call`, which arrived with this status and headers. A body
    /// that is already at its end (an empty body) ends the call at once.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt as _, Full};
    /// use specter::instrument::{HttpRequest, InstrumentedBody, Instrumentor};
    ///
    /// let instrumentor = Instrumentor::builder().build().unwrap();
    /// let mut request = HttpRequest {
    ///     method: "POST".into(),
    ///     url: "https://api.openai.com/v1/embeddings".into(),
    ///     headers: vec![],
    ///     body: br#"{"model": "text-embedding-3-small", "input": "hi"}"#.to_vec(),
    /// };
    /// let parent = specter::instrument::parent_context();
    /// let call = instrumentor.start(&mut request, &parent).unwrap();
    /// let answer = Full::new(Bytes::from_static(br#"{"usage": {"prompt_tokens": 1}}"#));
    /// let headers = vec![("content-type".to_string(), "application/json".to_string())];
    /// let body = InstrumentedBody::new(answer, call, 200, headers);
    /// // The span ends as the last byte is read.
    /// let bytes = futures::executor::block_on(body.collect()).unwrap().to_bytes();
    /// assert_eq!(&bytes[..], br#"{"usage": {"prompt_tokens": 1}}"#);
    /// ```
    pub fn new(inner: B, call: Call, status: u16, headers: Vec<(String, String)>) -> Self {
        let observer = Observer::new(call, status, headers);
        let observer = if inner.is_end_stream() {
            observer.end();
            None
        } else {
            Some(observer)
        };
        InstrumentedBody { inner, observer }
    }

    /// A body that is not observed (the response of a request that is not a GenAI call).
    pub fn passthrough(inner: B) -> Self {
        InstrumentedBody {
            inner,
            observer: None,
        }
    }
}

impl<B> Body for InstrumentedBody<B>
where
    B: Body,
    B::Data: AsRef<[u8]>,
    B::Error: std::fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(observer)) = (frame.data_ref(), this.observer.as_mut()) {
                    observer.data(data.as_ref());
                }
                // A body of known length may not be polled past its last byte.
                if this.inner.is_end_stream() {
                    if let Some(observer) = this.observer.take() {
                        observer.end();
                    }
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(observer) = this.observer.take() {
                    observer.fail(&e.to_string());
                }
            }
            Poll::Ready(None) => {
                if let Some(observer) = this.observer.take() {
                    observer.end();
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
