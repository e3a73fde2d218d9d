//! Hot reload: the providers directory is watched (debounced) and re-read on SIGHUP; a change
//! that validates replaces the rules at once, one that does not is rejected with its diagnostics
//! and the last good rules stay. Requests in flight keep the rules they started with.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use crate::instrument::Instrumentor;
use crate::Catalog;

/// How long changes settle before a reload: long enough to fold an editor's save (truncate,
/// write, rename) into one reload, short enough that a reload of all the bundled specs is active
/// well within 100 ms of the write.
const DEBOUNCE: Duration = Duration::from_millis(40);

/// Reloads `dir` into `target` on every change and on SIGHUP, until the task is dropped.
/// Returns an error only when the directory cannot be watched.
pub fn watch_providers(
    dir: PathBuf,
    instrumentor: Option<Instrumentor>,
    routing: Arc<std::sync::RwLock<Arc<Catalog>>>,
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
            reload(&dir, instrumentor.as_ref(), &routing);
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

fn reload(
    dir: &PathBuf,
    instrumentor: Option<&Instrumentor>,
    routing: &std::sync::RwLock<Arc<Catalog>>,
) {
    let started = std::time::Instant::now();
    match Catalog::load(std::slice::from_ref(dir)) {
        Ok(catalog) => {
            let providers = catalog.providers().len();
            if let Some(i) = instrumentor {
                i.set_catalog(catalog.clone());
            }
            if let Ok(mut slot) = routing.write() {
                *slot = Arc::new(catalog);
            }
            eprintln!(
                "specter: reloaded {providers} provider(s) from {} in {:?}",
                dir.display(),
                started.elapsed()
            );
        }
        Err(e) => {
            // Diagnostics escape the file content they quote.
            eprintln!(
                "specter: rejected the change to {}; the previous rules stay active:\n{e}",
                crate::printable::escape_controls(&dir.display().to_string())
            );
        }
    }
}
