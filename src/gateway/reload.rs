//! Hot reload: the providers directory is watched (debounced) and re-read on SIGHUP; a change
//! that validates replaces the rules at once, one that does not is rejected with its diagnostics
//! and the last good rules stay. Requests in flight keep the rules they started with.
//!
//! Reading and compiling run on a blocking thread, never on the workers that serve requests, so
//! a large or slow spec directory cannot stall traffic; reloads still run one at a time. The same
//! checks as at start-up apply: the size caps of [`ReadLimits`] and the refusal of upstreams at
//! metadata addresses. The bundled providers stay under the directory's (unless they are off), as at
//! start-up. Outcomes are delivered as [`ReloadEvent`]s to the caller's callback.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use crate::files::ReadLimits;
use crate::gateway::upstream_check::{refuse_metadata_upstreams, MetadataUpstreams};
use crate::{Catalog, CatalogSlot, LoadError};

/// What a reload did, for the caller to report.
#[derive(Debug)]
pub enum ReloadEvent {
    /// A change (or SIGHUP) was seen; the directory is being read, off the request path.
    Started {
        /// The providers directory.
        dir: PathBuf,
    },
    /// The new rules are active.
    Reloaded {
        /// The providers directory.
        dir: PathBuf,
        /// How many providers are loaded now (with the bundled ones, unless they are off).
        providers: usize,
        /// How long reading and compiling took.
        elapsed: Duration,
    },
    /// The change was rejected; the previous rules stay active.
    Rejected {
        /// The providers directory.
        dir: PathBuf,
        /// Why.
        error: ReloadError,
    },
}

/// Why a reload was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The specs could not be read or do not compile.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A provider's upstream is at a metadata address and that is not allowed.
    #[error(transparent)]
    MetadataUpstreams(#[from] MetadataUpstreams),
    /// The directory holds no provider and the bundled providers are off.
    #[error("no provider spec (*.yaml) left, and the bundled providers are off")]
    Empty,
    /// The blocking task that reads the directory did not finish.
    #[error("the reload did not finish: {0}")]
    Interrupted(String),
}

/// Called with every reload outcome.
pub type ReloadReport = Arc<dyn Fn(ReloadEvent) + Send + Sync>;

/// How reloads are checked and reported.
#[derive(Clone)]
pub struct ReloadSettings {
    /// Size caps of the spec files.
    pub limits: ReadLimits,
    /// Upstream overrides per provider id (they win over a spec's `upstream.base_url`).
    pub upstreams: BTreeMap<String, String>,
    /// Accept upstreams at link-local or cloud metadata addresses.
    pub allow_metadata_upstreams: bool,
    /// Receives every outcome.
    pub report: ReloadReport,
    /// Whether the bundled providers stay under those of the directory.
    pub bundled: bool,
}

impl Default for ReloadSettings {
    fn default() -> Self {
        ReloadSettings {
            limits: ReadLimits::default(),
            upstreams: BTreeMap::new(),
            allow_metadata_upstreams: false,
            report: Arc::new(|_| {}),
            bundled: true,
        }
    }
}

impl std::fmt::Debug for ReloadSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadSettings")
            .field("limits", &self.limits)
            .field("upstreams", &self.upstreams)
            .field("allow_metadata_upstreams", &self.allow_metadata_upstreams)
            .field("bundled", &self.bundled)
            .finish_non_exhaustive()
    }
}

/// How long changes settle before a reload: long enough to fold an editor's save (truncate,
/// write, rename) into one reload, short enough that a reload of all the bundled specs is active
/// well within 100 ms of the write.
const DEBOUNCE: Duration = Duration::from_millis(40);

/// Reloads `dir` into `slot` (read by routing and instrumentation alike) on every change and on SIGHUP, until the
/// task is dropped, checking and reporting as `settings` say. Returns an error only when the
/// directory cannot be watched.
pub fn watch_providers(
    dir: PathBuf,
    slot: CatalogSlot,
    settings: ReloadSettings,
) -> notify::Result<tokio::task::JoinHandle<()>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| changes_content(&e.kind)) {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    // Registered before returning, so a SIGHUP right after start-up reloads instead of ending
    // the process.
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let handle = tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            tokio::select! {
                changed = rx.recv() => {
                    if changed.is_none() {
                        return;
                    }
                    tokio::time::sleep(DEBOUNCE).await;
                    while rx.try_recv().is_ok() {}
                }
                () = hangup => {}
            }
            reload(&dir, &slot, &settings).await;
        }
    });
    Ok(handle)
}

/// Whether an event can change what the directory holds. Opening and reading a file (the reload
/// itself does) and metadata such as access times cannot.
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    use notify::EventKind;
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Any | EventKind::Other => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
    }
}

/// One reload: reading, compiling, checking and swapping in the rules on a blocking thread.
async fn reload(dir: &std::path::Path, slot: &CatalogSlot, settings: &ReloadSettings) {
    (settings.report)(ReloadEvent::Started {
        dir: dir.to_path_buf(),
    });
    let job = {
        let (dir, slot, settings) = (dir.to_path_buf(), slot.clone(), settings.clone());
        tokio::task::spawn_blocking(move || load_and_swap(&dir, &slot, &settings))
    };
    let outcome = job
        .await
        .unwrap_or_else(|e| Err(ReloadError::Interrupted(e.to_string())));
    let event = match outcome {
        Ok((providers, elapsed)) => ReloadEvent::Reloaded {
            dir: dir.to_path_buf(),
            providers,
            elapsed,
        },
        Err(error) => ReloadEvent::Rejected {
            dir: dir.to_path_buf(),
            error,
        },
    };
    (settings.report)(event);
}

/// Loads and checks `dir`; when it passes, makes it the active rules. Returns the number of
/// providers and the time taken. Runs on a blocking thread (the previous rules are dropped here
/// too when nothing else holds them).
fn load_and_swap(
    dir: &std::path::Path,
    slot: &CatalogSlot,
    settings: &ReloadSettings,
) -> Result<(usize, Duration), ReloadError> {
    let started = std::time::Instant::now();
    let catalog =
        Catalog::load_layered(&[dir.to_path_buf()], &settings.limits, settings.bundled)?.catalog;
    if catalog.providers().is_empty() {
        return Err(ReloadError::Empty);
    }
    refuse_metadata_upstreams(
        &catalog,
        &settings.upstreams,
        settings.allow_metadata_upstreams,
    )?;
    let providers = catalog.providers().len();
    drop(slot.replace(catalog));
    Ok((providers, started.elapsed()))
}
