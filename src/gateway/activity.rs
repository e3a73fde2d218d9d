//! What one client connection is doing, and when it has waited too long: requests in progress
//! (each held until its response body is dropped), when the connection last received bytes, and
//! when the request head it is receiving began. A head must arrive whole within the header-read
//! timeout, counted from its first byte (or from the connection's opening); a connection with no
//! request in progress that receives nothing for the keep-alive timeout is closed. HTTP/2
//! connections are kept alive by PINGs instead and have no heads to time here.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The connection preface every HTTP/2 client sends first.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Milliseconds since the first call, on a monotonic clock.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    let epoch = EPOCH.get_or_init(std::time::Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// How long a connection may wait.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// For a whole request head, from its first byte.
    pub head: Duration,
    /// With no request in progress and nothing received.
    pub idle: Duration,
}

/// What a connection is doing.
#[derive(Debug)]
pub(super) struct Activity {
    busy: AtomicUsize,
    last_ms: AtomicU64,
    /// When the head being received began; `u64::MAX` when none is.
    head_ms: AtomicU64,
    http2: AtomicBool,
    seen_bytes: AtomicBool,
}

impl Default for Activity {
    fn default() -> Self {
        let now = now_ms();
        Activity {
            busy: AtomicUsize::new(0),
            last_ms: AtomicU64::new(now),
            // A new connection owes its first head from the moment it opens.
            head_ms: AtomicU64::new(now),
            http2: AtomicBool::new(false),
            seen_bytes: AtomicBool::new(false),
        }
    }
}

impl Activity {
    /// Notes bytes received: the first bytes after a finished request begin a new head.
    fn received(&self, bytes: &[u8]) {
        let now = now_ms();
        if !self.seen_bytes.swap(true, Ordering::Relaxed) && bytes.starts_with(HTTP2_PREFACE) {
            self.http2.store(true, Ordering::Relaxed);
        }
        if self.busy.load(Ordering::Relaxed) == 0 {
            let _ =
                self.head_ms
                    .compare_exchange(u64::MAX, now, Ordering::Relaxed, Ordering::Relaxed);
        }
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// A request began (its head is complete); the guard ends it.
    pub(super) fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.head_ms.store(u64::MAX, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// How much longer the connection may wait, or `None` when it has waited too long.
    fn remaining(&self, timeouts: Timeouts) -> Option<Duration> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return Some(timeouts.idle.min(timeouts.head));
        }
        let now = now_ms();
        let idle = Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)));
        let mut left = timeouts.idle.checked_sub(idle).filter(|d| !d.is_zero())?;
        let head = self.head_ms.load(Ordering::Relaxed);
        if head != u64::MAX && !self.http2.load(Ordering::Relaxed) {
            let waited = Duration::from_millis(now.saturating_sub(head));
            left = left.min(timeouts.head.checked_sub(waited).filter(|d| !d.is_zero())?);
        }
        Some(left)
    }

    /// Resolves once the connection has waited too long for a head, or idled too long.
    pub(super) async fn expired(&self, timeouts: Timeouts) {
        while let Some(left) = self.remaining(timeouts) {
            tokio::time::sleep(left.max(Duration::from_millis(10))).await;
        }
    }
}

/// One request in progress on a connection.
pub(super) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.last_ms.store(now_ms(), Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A client socket that tells its [`Activity`] what it receives.
    pub(super) struct Watched {
        #[pin]
        inner: TcpStream,
        activity: Arc<Activity>,
    }
}

impl Watched {
    pub(super) fn new(inner: TcpStream, activity: &Arc<Activity>) -> Watched {
        Watched {
            inner,
            activity: activity.clone(),
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.inner.poll_read(cx, buf);
        if let Some(fresh) = buf.filled().get(before..).filter(|b| !b.is_empty()) {
            this.activity.received(fresh);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Timeouts = Timeouts {
        head: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    #[test]
    fn a_new_connection_owes_its_head_within_the_header_timeout() {
        let activity = Activity::default();
        let left = activity.remaining(LIMITS).unwrap();
        assert!(left <= LIMITS.head && left > Duration::from_secs(9));
    }

    #[test]
    fn between_requests_only_the_keep_alive_timeout_counts() {
        let activity = Arc::new(Activity::default());
        activity.received(b"GET / HTTP/1.1\r\n\r\n");
        drop(activity.busy());
        let left = activity.remaining(LIMITS).unwrap();
        assert!(left > Duration::from_secs(59), "{left:?}");
        // The next head's first byte starts its deadline.
        activity.received(b"G");
        assert!(activity.remaining(LIMITS).unwrap() <= LIMITS.head);
    }

    #[test]
    fn http2_connections_have_no_head_deadline() {
        let activity = Arc::new(Activity::default());
        activity.received(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert!(activity.remaining(LIMITS).unwrap() > Duration::from_secs(59));
    }
}
