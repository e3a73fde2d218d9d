//! Hot reload of the providers directory: a valid change takes effect, an invalid one is rejected
//! and the last good rules stay, a deleted file's provider goes away; `specter serve` re-reads
//! the directory on SIGHUP.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "common/serve.rs"]
mod serve;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use specter::gateway::watch_providers;
use specter::instrument::Instrumentor;
use specter::Catalog;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("specter-reload-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits (bounded) until `check` holds.
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_directory_is_reloaded_on_change() {
    let dir = temp_dir("change");
    std::fs::copy("providers/openai.yaml", dir.join("openai.yaml")).unwrap();
    let catalog = Catalog::load(std::slice::from_ref(&dir)).unwrap();
    let instrumentor = Instrumentor::builder()
        .catalog(catalog.clone())
        .build()
        .unwrap();
    let routing = Arc::new(std::sync::RwLock::new(Arc::new(catalog)));
    let watcher =
        watch_providers(dir.clone(), Some(instrumentor.clone()), routing.clone()).unwrap();

    let groq = "id: groqx\nextends: openai\nprovider_name: groq\nupstream: { base_url: https://api.groq.com, hosts: [api.groq.com] }\npath_prefixes: [/openai/v1]\n";
    std::fs::write(dir.join("groqx.yaml"), groq).unwrap();
    assert!(
        eventually(|| instrumentor.catalog().provider("groqx").is_some()).await,
        "a new provider is picked up"
    );
    assert!(routing.read().unwrap().provider("groqx").is_some());
    let before = instrumentor.catalog();

    std::fs::write(
        dir.join("groqx.yaml"),
        "id: groqx\nextends: openai\nprovider_name: [not, a, string]\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = instrumentor.catalog();
    assert!(
        Arc::ptr_eq(&before, &after),
        "an invalid change is rejected and the last good rules stay"
    );

    std::fs::remove_file(dir.join("groqx.yaml")).unwrap();
    assert!(
        eventually(|| instrumentor.catalog().provider("groqx").is_none()).await,
        "a deleted provider goes away"
    );
    assert!(instrumentor.catalog().provider("openai").is_some());
    watcher.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_rereads_the_providers_directory() {
    let dir = temp_dir("sighup");
    std::fs::copy("providers/openai.yaml", dir.join("openai.yaml")).unwrap();
    let dir_text = dir.display().to_string();
    let served = serve::Served::start(&["--providers", &dir_text, "--no-traces-file"], &[]);
    assert!(
        served.lines()[0].contains("(1 providers,"),
        "{:#?}",
        served.lines()
    );
    // Nothing changed on disk, so only the signal can cause a reload.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(served.count("reloaded"), 0, "{:#?}", served.lines());
    for round in 1..=3 {
        served.signal("HUP");
        let wanted = format!("reloaded 1 provider(s) from {dir_text}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while served.count(&wanted) < round && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(served.count(&wanted), round, "{:#?}", served.lines());
    }
    let (status, lines) = served.stop();
    assert!(status.success(), "the process survives SIGHUP: {lines:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}
