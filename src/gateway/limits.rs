//! Process and memory limits of the gateway: the open-file limit raised at start-up (as nginx
//! and Go's runtime do) with the connection cap it allows, and the budget of request body bytes
//! buffered at once across all requests.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Descriptors kept back from the connection cap for the listener, the traces file, the
/// providers directory watch, exporter sockets and the standard streams, and for the connections
/// past the cap that are still accepted to be told `503`.
const RESERVED_FDS: u64 = 64 + super::connections::OVERFLOW_CONNECTIONS as u64;

/// The open-file limit of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit found at start-up.
    pub before: u64,
    /// The soft limit in force now.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the limits, or `None` where
/// the platform has no such limit or it cannot be read.
///
/// ```
/// if let Some(limit) = specter::unstable::gateway::raise_fd_limit() {
///     assert!(limit.soft >= limit.before);
///     assert!(limit.soft <= limit.hard);
/// }
/// ```
pub fn raise_fd_limit() -> Option<FdLimit> {
    #[cfg(unix)]
    {
        let (before, hard) = rlimit::Resource::NOFILE.get().ok()?;
        let soft = rlimit::increase_nofile_limit(hard).unwrap_or(before);
        Some(FdLimit { before, soft, hard })
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The number of client connections the gateway serves at once: the configured cap, bounded by
/// what the open-file limit allows (each connection may hold a client and an upstream socket).
///
/// ```
/// use specter::unstable::gateway::connection_cap;
/// assert_eq!(connection_cap(10_000, Some(1024)), 448);
/// assert_eq!(connection_cap(100, Some(1_048_576)), 100);
/// assert_eq!(connection_cap(100, None), 100);
/// ```
pub fn connection_cap(configured: usize, soft_fd_limit: Option<u64>) -> usize {
    let allowed = soft_fd_limit.map_or(usize::MAX, |soft| {
        usize::try_from(soft.saturating_sub(RESERVED_FDS) / 2).unwrap_or(usize::MAX)
    });
    configured.min(allowed).max(1)
}

/// The bytes of request bodies buffered at once, across requests.
#[derive(Debug, Clone)]
pub struct RequestBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

/// Bytes of the budget held by one request body, given back when dropped.
#[derive(Debug)]
pub struct Reserved(Option<OwnedSemaphorePermit>);

impl RequestBudget {
    /// A budget of `total` bytes.
    pub fn new(total: usize) -> RequestBudget {
        let total = total.min(Semaphore::MAX_PERMITS);
        RequestBudget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// The whole budget, in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes held by requests now.
    pub fn in_use(&self) -> usize {
        self.total.saturating_sub(self.bytes.available_permits())
    }

    /// Nothing reserved yet.
    pub fn none() -> Reserved {
        Reserved(None)
    }

    /// Adds `n` bytes to `reserved`; `false` (reserving nothing) when the budget has no room.
    pub fn reserve(&self, reserved: &mut Reserved, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        let Ok(n) = u32::try_from(n) else {
            return false;
        };
        match self.bytes.clone().try_acquire_many_owned(n) {
            Ok(permit) => {
                match &mut reserved.0 {
                    Some(held) => held.merge(permit),
                    None => reserved.0 = Some(permit),
                }
                true
            }
            Err(_) => false,
        }
    }
}

impl Default for RequestBudget {
    fn default() -> Self {
        RequestBudget::new(256 << 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_past_its_total_and_refills_when_released() {
        let budget = RequestBudget::new(100);
        let mut first = RequestBudget::none();
        assert!(budget.reserve(&mut first, 60));
        assert!(budget.reserve(&mut first, 30));
        assert_eq!(budget.in_use(), 90);
        let mut second = RequestBudget::none();
        assert!(!budget.reserve(&mut second, 11));
        assert!(budget.reserve(&mut second, 10));
        drop(first);
        assert_eq!(budget.in_use(), 10);
        assert!(budget.reserve(&mut second, 90));
    }

    #[test]
    fn the_cap_leaves_descriptors_for_upstreams_and_files() {
        assert_eq!(connection_cap(10_000, Some(256)), 64);
        assert_eq!(connection_cap(10_000, Some(10)), 1);
    }
}
