//! Requests in flight: counted from the moment a request arrives until its response body is
//! finished or dropped and its span is finished. `/healthz` reports the count, and shutdown
//! waits for it to reach zero so that no span is lost.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A shared count of requests in flight.
///
/// ```
/// let in_flight = specter::gateway::InFlight::default();
/// let guard = in_flight.enter();
/// assert_eq!(in_flight.count(), 1);
/// drop(guard);
/// assert_eq!(in_flight.count(), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

/// One unit of the count, released when dropped.
#[derive(Debug)]
pub struct Guard(Arc<AtomicUsize>);

impl InFlight {
    /// Counts one more until the returned guard is dropped.
    pub fn enter(&self) -> Guard {
        self.0.fetch_add(1, Ordering::Relaxed);
        Guard(self.0.clone())
    }

    /// The count now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
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
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
