//! The trace viewer: a read-only web page over the traces file, served by the gateway under
//! [`PREFIX`] (a path no provider route can take: provider ids never contain `-`) and by
//! `specter view` over files written earlier.
//!
//! # The store
//!
//! The viewer keeps its own index over the traces files rather than a database: one compact row
//! per call (about 120 bytes: times, token counts, cost, interned provider, model, session, user,
//! conversation and error type, trace and span ids, and where the span's line is in its file).
//! The span itself is never copied: opening a call reads its line back by offset. Why not an
//! embedded SQLite:
//!
//! - The traces file already is the durable store, written whole-line by the exporter, rotated
//!   and bounded by it; a second copy on disk would double the bytes and need its own retention.
//! - Every query the pages make is a filter on a few equalities and a text match over small
//!   interned strings, a sort and a page, or a group-by with percentiles: one pass over a million
//!   packed rows takes a few milliseconds to tens of milliseconds, less than SQLite's own
//!   aggregation over the same rows, with nothing to build or link.
//! - Memory is bounded by [`Limits::max_calls`] (the oldest calls go first), reads at one refresh
//!   by [`Limits::max_read_bytes`], and a page by [`Limits::max_page`].
//!
//! Files are followed by offset: each refresh (at most one per [`REFRESH_INTERVAL`], triggered
//! by the page's requests) indexes the whole lines appended since the last one. The gateway's
//! file is followed across rotation: a file renamed away stays open while rows point into it
//! and is closed once it is deleted or all its rows were dropped.
//!
//! Span text is attacker-controlled (prompts, model output, tool arguments). The page builds
//! every node with `textContent`, never `innerHTML`, and the responses forbid any other script,
//! frame, or remote fetch (`Content-Security-Policy`); content that was not captured is shown
//! as not captured, never fetched from elsewhere.

mod http;
pub mod index;
pub mod otlp;
mod sources;
pub mod totals;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use http::{endpoint, is_viewer_path, respond, ViewerBody, PREFIX};
pub use index::{Filter, GroupBy, Index, Limits, Page, Sort};

/// The least time between two refreshes of the index from the files.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(250);

/// The index and the files it reads, shared by every request.
#[derive(Debug)]
pub struct Viewer {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    index: Index,
    sources: sources::Sources,
    refreshed: Option<Instant>,
}

/// What the viewer holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// Calls held.
    pub calls: usize,
    /// Calls ever indexed.
    pub indexed: u64,
    /// Lines that were not spans, or too long.
    pub skipped_lines: u64,
    /// Files held open.
    pub open_files: usize,
    /// The file followed (or read last).
    pub file: Option<String>,
    /// Calls kept at most.
    pub max_calls: usize,
}

impl Viewer {
    /// A viewer of the gateway's traces file at `path`, followed across rotation.
    pub fn following(path: PathBuf, limits: Limits) -> Viewer {
        Viewer::new(sources::Sources::new(vec![path], true), limits)
    }

    /// A viewer of `files`, read in order (oldest first); new lines appended to them are read
    /// too.
    pub fn over_files(files: Vec<PathBuf>, limits: Limits) -> Viewer {
        Viewer::new(sources::Sources::new(files, false), limits)
    }

    fn new(sources: sources::Sources, limits: Limits) -> Viewer {
        Viewer {
            state: Mutex::new(State {
                index: Index::new(limits),
                sources,
                refreshed: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Indexes what was appended since the last refresh, unless that was less than
    /// [`REFRESH_INTERVAL`] ago.
    pub fn refresh(&self) {
        let mut state = self.lock();
        if state
            .refreshed
            .is_some_and(|at| at.elapsed() < REFRESH_INTERVAL)
        {
            return;
        }
        state.refresh_now();
    }

    /// Reads every file to its end now (start-up of `specter view`, tests and benchmarks).
    pub fn load(&self) -> Status {
        let mut state = self.lock();
        loop {
            let before = (state.index.indexed(), state.sources.skipped_lines);
            state.refresh_now();
            if (state.index.indexed(), state.sources.skipped_lines) == before {
                break;
            }
        }
        state.status()
    }

    /// What the viewer holds.
    pub fn status(&self) -> Status {
        self.lock().status()
    }

    /// Runs `f` over the index.
    pub fn with_index<T>(&self, f: impl FnOnce(&Index) -> T) -> T {
        f(&self.lock().index)
    }

    /// The span of one call with its resource and scope, read back from its traces file:
    /// `None` when the call is unknown or its file is gone.
    pub fn call(&self, trace_id: &str, span_id: &str) -> Option<serde_json::Value> {
        let trace = otlp::hex_id::<16>(&trace_id.to_ascii_lowercase())?;
        let span = otlp::hex_id::<8>(&span_id.to_ascii_lowercase())?;
        let state = self.lock();
        let row = state.index.find(&trace, &span)?;
        let summary = state.index.summary(&row);
        let line = state.sources.line(row.file, row.offset, row.len);
        drop(state);
        let found = line.and_then(|l| span_in_line(&l, span_id));
        Some(serde_json::json!({
            "call": summary,
            "span": found.as_ref().map(|f| &f.0),
            "resource": found.as_ref().map(|f| &f.1),
            "scope": found.as_ref().map(|f| &f.2),
        }))
    }
}

impl State {
    fn refresh_now(&mut self) {
        let State { index, sources, .. } = self;
        sources.refresh(index);
        self.refreshed = Some(Instant::now());
    }

    fn status(&self) -> Status {
        Status {
            calls: self.index.len(),
            indexed: self.index.indexed(),
            skipped_lines: self.sources.skipped_lines,
            open_files: self.sources.open_files(),
            file: self
                .sources
                .current_path()
                .map(|p| crate::printable::escape_controls(&p.display().to_string()).to_string()),
            max_calls: self.index.limits().max_calls,
        }
    }
}

/// The span with `span_id` in an export request line, with its resource and scope.
fn span_in_line(
    line: &[u8],
    span_id: &str,
) -> Option<(serde_json::Value, serde_json::Value, serde_json::Value)> {
    let mut request: serde_json::Value = serde_json::from_slice(line).ok()?;
    let resources = request.get_mut("resourceSpans")?.as_array_mut()?;
    for resource in resources {
        let res = resource.get("resource").cloned().unwrap_or_default();
        let Some(scopes) = resource
            .get_mut("scopeSpans")
            .and_then(|s| s.as_array_mut())
        else {
            continue;
        };
        for scope in scopes {
            let meta = scope.get("scope").cloned().unwrap_or_default();
            let Some(spans) = scope.get_mut("spans").and_then(|s| s.as_array_mut()) else {
                continue;
            };
            if let Some(span) = spans.iter_mut().find(|s| {
                s.get("spanId")
                    .and_then(|v| v.as_str())
                    .is_some_and(|v| v.eq_ignore_ascii_case(span_id))
            }) {
                return Some((span.take(), res, meta));
            }
        }
    }
    None
}

/// The gateway's viewer: over its traces file, with `config.viewer_max_calls` calls; `None`
/// without a traces file or with `viewer_max_calls: 0`.
pub fn gateway_viewer(
    config: &crate::gateway::GatewayConfig,
    traces_file: Option<&std::path::Path>,
) -> Option<std::sync::Arc<Viewer>> {
    let path = traces_file?;
    (config.viewer_max_calls > 0).then(|| {
        std::sync::Arc::new(Viewer::following(
            path.to_path_buf(),
            Limits {
                max_calls: config.viewer_max_calls,
                ..Limits::default()
            },
        ))
    })
}

/// The traces files `specter view` reads without arguments: the rotated backups of `path`
/// (`NAME.N.EXT`, oldest first) that exist, then `path`.
pub fn with_rotated(path: &std::path::Path, max_files: u32) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..=max_files)
        .rev()
        .map(|n| crate::telemetry::traces_file::rotated_path(path, n))
        .filter(|p| p.is_file())
        .collect();
    files.push(path.to_path_buf());
    files
}

/// Serves the viewer alone on `listener` (`specter view`) until `shutdown` completes. With
/// `local_only`, requests must name a loopback host.
pub async fn serve(
    listener: tokio::net::TcpListener,
    viewer: std::sync::Arc<Viewer>,
    local_only: bool,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let viewer = viewer.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                let viewer = viewer.clone();
                async move {
                    let _: &hyper::body::Incoming = request.body();
                    let response = if is_viewer_path(request.uri().path()) {
                        respond(
                            Some(viewer),
                            request.method(),
                            request.uri(),
                            request.headers(),
                            local_only,
                        )
                        .await
                    } else {
                        http::redirect()
                    };
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_has_a_viewer_with_a_traces_file_and_calls_to_keep() {
        let path = std::path::Path::new("specter-traces.jsonl");
        let mut config = crate::gateway::GatewayConfig::default();
        assert!(gateway_viewer(&config, Some(path)).is_some());
        assert!(gateway_viewer(&config, None).is_none());
        config.viewer_max_calls = 0;
        assert!(gateway_viewer(&config, Some(path)).is_none());
    }

    #[test]
    fn rotated_backups_come_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        for name in ["t.1.jsonl", "t.3.jsonl"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let files = with_rotated(&path, 5);
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["t.3.jsonl", "t.1.jsonl", "t.jsonl"]);
    }
}
