//! Requests in flight: counted from the moment a request arrives until its response body is
//! finished or dropped and its span is finished. `/healthz` reports the count, and shutdown
//! waits for it to reach zero so that no span is lost; once the grace period is over the count is
//! closed, and responses dropped after that end their spans as cut by the shutdown.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A shared count of requests in flight.
///
/// ```
/// let in_flight = specter::unstable::gateway::InFlight::default();
/// let guard = in_flight.enter();
/// assert_eq!(in_flight.count(), 1);
/// drop(guard);
/// assert_eq!(in_flight.count(), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<Counts>);

#[derive(Debug)]
struct Counts {
    count: AtomicUsize,
    closed: AtomicBool,
    closing: tokio::sync::watch::Sender<bool>,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            count: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            closing: tokio::sync::watch::Sender::new(false),
        }
    }
}

/// One unit of the count, released when dropped.
#[derive(Debug)]
pub struct Guard(Arc<Counts>);

impl InFlight {
    /// Counts one more until the returned guard is dropped.
    pub fn enter(&self) -> Guard {
        self.0.count.fetch_add(1, Ordering::Relaxed);
        Guard(self.0.clone())
    }

    /// The count now.
    pub fn count(&self) -> usize {
        self.0.count.load(Ordering::Relaxed)
    }

    /// Marks the end of the shutdown grace: whatever is still in flight is being cut.
    pub fn close(&self) {
        self.0.closed.store(true, Ordering::Relaxed);
        self.0.closing.send_replace(true);
    }

    /// Resolves once [`InFlight::close`] was called: what runs on its own (a spliced upgrade)
    /// ends then, so that its span ends before the exporters flush.
    pub async fn closed(&self) {
        let mut closing = self.0.closing.subscribe();
        let _ = closing.wait_for(|closed| *closed).await;
    }

    /// Whether the shutdown grace is over.
    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::Relaxed)
    }

    /// Waits until the count is zero or `timeout` has passed; returns whether it reached zero.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Relaxed);
    }
}
