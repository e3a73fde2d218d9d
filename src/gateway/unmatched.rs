//! Requests that match no operation of their provider: forwarded untouched and without a span,
//! which is right for endpoints the specs do not describe but also what a base URL missing a
//! prefix (`/v1`) looks like. Each distinct method and path is reported once, as an
//! [`Unmatched`] event to the callback installed with
//! [`Gateway::report_unmatched`](super::Gateway::report_unmatched); at most
//! [`MAX_REMEMBERED`] distinct routes are remembered, later ones are not reported.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

/// Distinct routes remembered (and so reported) at most.
pub const MAX_REMEMBERED: usize = 1_000;

/// A request that matched no operation of its provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmatched {
    /// The provider id of the gateway path (`/openai/...`).
    pub provider: String,
    /// The request method.
    pub method: String,
    /// The path after the provider's segment, without the query.
    pub path: String,
}

/// Receives each unmatched route once.
pub type UnmatchedReport = Arc<dyn Fn(Unmatched) + Send + Sync>;

/// The routes reported so far, and where reports go (nowhere until a callback is installed).
#[derive(Default)]
pub struct UnmatchedRoutes {
    seen: Mutex<HashSet<(String, String, String)>>,
    report: OnceLock<UnmatchedReport>,
}

impl std::fmt::Debug for UnmatchedRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnmatchedRoutes")
            .field("reporting", &self.report.get().is_some())
            .finish_non_exhaustive()
    }
}

impl UnmatchedRoutes {
    /// Installs the callback; only the first one installed is kept. Returns whether it was.
    pub fn set_report(&self, report: UnmatchedReport) -> bool {
        self.report.set(report).is_ok()
    }

    /// Reports a route the first time it is seen, while fewer than [`MAX_REMEMBERED`] are
    /// remembered. Costs nothing when no callback is installed.
    pub fn note(&self, provider: &str, method: &str, path: &str) {
        let Some(report) = self.report.get() else {
            return;
        };
        let key = (provider.to_string(), method.to_string(), path.to_string());
        let first = {
            let mut seen = match self.seen.lock() {
                Ok(seen) => seen,
                Err(poisoned) => poisoned.into_inner(),
            };
            seen.len() < MAX_REMEMBERED && seen.insert(key.clone())
        };
        if first {
            let (provider, method, path) = key;
            report(Unmatched {
                provider,
                method,
                path,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_is_reported_once_and_the_set_is_bounded() {
        let routes = UnmatchedRoutes::default();
        routes.note("openai", "POST", "/chat/completions"); // no callback yet: nothing kept
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        assert!(routes.set_report(Arc::new(move |u| sink.lock().unwrap().push(u))));
        for _ in 0..3 {
            routes.note("openai", "POST", "/chat/completions");
        }
        routes.note("openai", "GET", "/chat/completions");
        assert_eq!(got.lock().unwrap().len(), 2);
        assert_eq!(
            got.lock().unwrap()[0],
            Unmatched {
                provider: "openai".into(),
                method: "POST".into(),
                path: "/chat/completions".into()
            }
        );
        for i in 0..(MAX_REMEMBERED + 10) {
            routes.note("openai", "POST", &format!("/x/{i}"));
        }
        assert_eq!(got.lock().unwrap().len(), MAX_REMEMBERED);
    }
}
