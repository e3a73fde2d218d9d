//! A response body that keeps a guard alive until the body is finished or dropped: how the
//! gateway counts requests in flight and requests in progress on a connection. Frames, the end
//! and the size hint (and so the `content-length` hyper writes) pass through unchanged.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};

pin_project_lite::pin_project! {
    /// `inner`, holding `guard` for as long as it lives.
    pub struct Guarded<B, G> {
        #[pin]
        inner: B,
        guard: G,
    }
}

impl<B, G> Guarded<B, G> {
    /// Wraps `inner`.
    pub fn new(inner: B, guard: G) -> Self {
        Guarded { inner, guard }
    }
}

impl<B: Body, G> Body for Guarded<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;

    #[test]
    fn the_size_hint_passes_through_and_the_guard_lives_as_long_as_the_body() {
        let guard = std::sync::Arc::new(());
        let body = Guarded::new(Full::new(Bytes::from_static(b"hello")), guard.clone());
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(std::sync::Arc::strong_count(&guard), 2);
        drop(body);
        assert_eq!(std::sync::Arc::strong_count(&guard), 1);
    }
}
