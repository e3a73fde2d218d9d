//! Hot reload of the providers directory: a valid change takes effect, an invalid one is rejected
//! and the last good rules stay, a deleted file's provider goes away; `specter serve` re-reads
//! the directory on SIGHUP. Hostile directories (over-deep YAML, a FIFO, a huge file, an upstream
//! at a cloud metadata address) are rejected the same way, and traffic flows during a reload.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::serve;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use specter::instrument::Instrumentor;
use specter::unstable::gateway::watch_providers;
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
    let slot = instrumentor.catalog_slot().clone();
    let watcher = watch_providers(dir.clone(), slot.clone(), Default::default()).unwrap();

    let groq = "id: groqx\nextends: openai\nprovider_name: groq\nupstream: { base_url: https://api.groq.com, hosts: [api.groq.com] }\npath_prefixes: [/openai/v1]\n";
    std::fs::write(dir.join("groqx.yaml"), groq).unwrap();
    assert!(
        eventually(|| instrumentor.catalog().provider("groqx").is_some()).await,
        "a new provider is picked up"
    );
    assert!(slot.current().provider("groqx").is_some());
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
    let served = serve::Served::start(
        &["--providers", &dir_text, "--no-bundled", "--no-traces-file"],
        &[],
    );
    assert!(
        served.lines()[0].contains("(1 provider,"),
        "{:#?}",
        served.lines()
    );
    // Nothing changed on disk, so only the signal can cause a reload.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(served.count("reloaded"), 0, "{:#?}", served.lines());
    for round in 1..=3 {
        served.signal("HUP");
        let wanted = format!("reloaded 1 provider from {dir_text}");
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

/// The body every request to [`upstream`] gets.
const UPSTREAM_BODY: &str =
    r#"{"id":"c1","object":"chat.completion","model":"gpt-4o","choices":[]}"#;

/// An upstream on a free loopback port answering every request with [`UPSTREAM_BODY`], on a
/// thread that lives as long as the test process.
fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = read_message(&mut stream);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{UPSTREAM_BODY}",
                    UPSTREAM_BODY.len()
                );
            });
        }
    });
    address
}

/// Reads one HTTP/1.1 message (head and `content-length` body); returns the head and body.
fn read_message(stream: &mut TcpStream) -> (String, String) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            return (String::from_utf8_lossy(&bytes).into_owned(), String::new());
        }
        bytes.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while bytes.len() < head_end + length {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&bytes[head_end..]).into_owned();
    (head, body)
}

/// One chat completion through the gateway: the status code and the body.
fn chat(gateway: SocketAddr) -> (u16, String) {
    let mut stream = TcpStream::connect(gateway).unwrap();
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    write!(
        stream,
        "POST /openai/v1/chat/completions HTTP/1.1\r\nhost: {gateway}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let (head, body) = read_message(&mut stream);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body)
}

/// Writes `text` to `dir/name` at once: written beside the directory, then renamed into it, so
/// the watcher sees one complete file.
fn put(dir: &Path, name: &str, text: &str) {
    let staged = dir.with_extension(format!("staged-{name}"));
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, dir.join(name)).unwrap();
}

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

/// A providers directory holding the bundled OpenAI spec, and a gateway serving it with OpenAI's
/// upstream replaced by [`upstream`].
fn serving(name: &str, extra: &[&str], envs: &[(&str, &str)]) -> (PathBuf, serve::Served) {
    let dir = temp_dir(name);
    std::fs::copy("providers/openai.yaml", dir.join("openai.yaml")).unwrap();
    let upstream = format!("openai=http://{}", upstream());
    let dir_text = dir.display().to_string();
    let mut args = vec![
        "--providers",
        &dir_text,
        "--no-traces-file",
        "--quiet",
        "--upstream",
        &upstream,
    ];
    args.extend_from_slice(extra);
    let served = serve::Served::start(&args, envs);
    assert_eq!(chat(served.address), (200, UPSTREAM_BODY.to_string()));
    (dir, served)
}

#[test]
fn deep_yaml_written_while_serving_is_rejected_and_the_last_good_rules_keep_serving() {
    let (dir, served) = serving("deep", &[], &[]);
    // 40 KB of nested complex keys: 20,000 levels.
    put(&dir, "deep.yaml", &format!("{}a\n", "? ".repeat(20_000)));
    let rejected = served.wait_for("rejected the change", Duration::from_secs(20));
    assert!(rejected.is_some(), "{:#?}", served.lines());
    let wanted = format!(
        "{}: invalid YAML: mapping keys must be plain scalars",
        dir.join("deep.yaml:1:3").display()
    );
    assert!(served.count(&wanted) == 1, "{:#?}", served.lines());
    // Flow sequences and aliases that nest deeply are refused the same way.
    std::fs::remove_file(dir.join("deep.yaml")).unwrap();
    let mut aliases = String::from("k0: &a0 [0]\n");
    for k in 1..2_000 {
        aliases.push_str(&format!("k{k}: &a{k} [[[[[[[[[[*a{}]]]]]]]]]]\n", k - 1));
    }
    put(&dir, "aliases.yaml", &aliases);
    let deep = served.wait_for(
        "collections nest more than 200 levels",
        Duration::from_secs(20),
    );
    assert!(deep.is_some(), "{:#?}", served.lines());
    assert_eq!(chat(served.address), (200, UPSTREAM_BODY.to_string()));
    let (status, lines) = served.stop();
    assert!(status.success(), "{lines:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `specter ARGS` and waits (up to 20 s) for it to end; `None` when it had to be killed.
fn run_bounded(args: &[&str]) -> Option<(Option<i32>, String)> {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_specter"))
        .args(args)
        .env_remove("SPECTER_PROVIDERS")
        .env_remove("SPECTER_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return Some((status.code(), err));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(unix)]
#[test]
fn a_fifo_in_the_providers_directory_fails_start_up_with_a_clear_error() {
    let dir = temp_dir("fifo-start");
    std::fs::copy("providers/openai.yaml", dir.join("openai.yaml")).unwrap();
    mkfifo(&dir.join("x.yaml"));
    let dir_text = dir.display().to_string();
    let ended = run_bounded(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--providers",
        &dir_text,
        "--no-traces-file",
    ]);
    let (code, err) = ended.expect("start-up does not hang on a FIFO");
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        format!(
            "error: cannot read {}: it is a FIFO, not a regular file\n  help: provider specs must be regular files (or symbolic links to them); remove or rename it\n",
            dir.join("x.yaml").display()
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn a_fifo_created_while_serving_is_rejected_and_sigterm_still_stops_the_gateway() {
    let (dir, served) = serving("fifo-reload", &[], &[]);
    mkfifo(&dir.join("x.yaml"));
    let wanted = format!(
        "cannot read {}: it is a FIFO, not a regular file",
        dir.join("x.yaml").display()
    );
    assert!(
        served.wait_for(&wanted, Duration::from_secs(20)).is_some(),
        "{:#?}",
        served.lines()
    );
    // SIGHUP re-reads the directory: rejected again, still without blocking.
    served.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while served.count(&wanted) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(served.count(&wanted), 2, "{:#?}", served.lines());
    assert_eq!(chat(served.address), (200, UPSTREAM_BODY.to_string()));
    let (status, lines) = served.stop();
    assert!(status.success(), "{lines:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn traffic_flows_while_a_large_spec_directory_is_reloaded() {
    // One runtime worker: a reload on it would hold every request until it ends.
    let config = temp_dir("large-config").join("specter.yaml");
    std::fs::write(
        &config,
        "max_spec_file_bytes: 67108864\nmax_spec_total_bytes: 134217728\n",
    )
    .unwrap();
    let config_text = config.display().to_string();
    let (dir, served) = serving(
        "large",
        &["--config", &config_text],
        &[("TOKIO_WORKER_THREADS", "1")],
    );
    // About 24 MB of YAML: seconds of parsing in a debug build, then rejected (`padding` is not a
    // spec key).
    let mut big = String::from("id: big\nprovider_name: big\npadding:\n");
    let line = format!("  - \"{}\"\n", "x".repeat(90));
    for _ in 0..250_000 {
        big.push_str(&line);
    }
    put(&dir, "big.yaml", &big);
    assert!(
        served
            .wait_for("reloading the providers of", Duration::from_secs(20))
            .is_some(),
        "{:#?}",
        served.lines()
    );
    let mut during = 0;
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while served.count("rejected the change") == 0 && sent < 2_000 && Instant::now() < deadline {
        assert_eq!(chat(served.address), (200, UPSTREAM_BODY.to_string()));
        sent += 1;
        if served.count("rejected the change") == 0 {
            during += 1;
        }
    }
    assert!(
        served
            .wait_for("rejected the change", Duration::from_secs(120))
            .is_some(),
        "{:#?}",
        served.lines()
    );
    assert!(
        served.count("big.yaml:3:1: padding: unknown key `padding`") == 1,
        "{:#?}",
        served.lines()
    );
    // With the reload on the only worker, no request could complete before it ended.
    assert!(
        during >= 3,
        "{during} of {sent} requests completed during the reload"
    );
    assert_eq!(chat(served.address), (200, UPSTREAM_BODY.to_string()));
    let (status, lines) = served.stop();
    assert!(status.success(), "{lines:#?}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(config.parent().unwrap());
}

/// A provider extending OpenAI whose upstream is the cloud metadata service.
const METADATA_SPEC: &str = "id: meta\nextends: openai\nprovider_name: meta\nupstream: { base_url: \"http://169.254.169.254/latest\", hosts: [meta.internal] }\npath_prefixes: [/openai/v1]\n";

#[test]
fn a_reload_adding_a_metadata_upstream_is_rejected_unless_allowed() {
    let (dir, served) = serving("metadata", &[], &[]);
    put(&dir, "meta.yaml", METADATA_SPEC);
    let wanted = format!(
        "provider `meta` ({}) has the upstream `http://169.254.169.254/latest`: 169.254.169.254 is link-local (169.254.0.0/16), where cloud metadata services answer, so requests through the gateway could read the host's cloud credentials",
        dir.join("meta.yaml").display()
    );
    assert!(
        served.wait_for(&wanted, Duration::from_secs(20)).is_some(),
        "{:#?}",
        served.lines()
    );
    assert_eq!(
        served.count("--allow-metadata-upstream"),
        1,
        "{:#?}",
        served.lines()
    );
    assert_eq!(served.count("reloaded"), 0, "{:#?}", served.lines());
    assert_eq!(chat(served.address), (200, UPSTREAM_BODY.to_string()));
    let (status, lines) = served.stop();
    assert!(status.success(), "{lines:#?}");

    // With the configuration key, the same directory starts and the provider is loaded.
    let config = dir.with_extension("yaml");
    std::fs::write(&config, "allow_metadata_upstreams: true\n").unwrap();
    let config_text = config.display().to_string();
    let dir_text = dir.display().to_string();
    let served = serve::Served::start(
        &[
            "--providers",
            &dir_text,
            "--no-bundled",
            "--no-traces-file",
            "--config",
            &config_text,
        ],
        &[],
    );
    assert!(
        served.lines()[0].contains("(2 providers,"),
        "{:#?}",
        served.lines()
    );
    let (status, lines) = served.stop();
    assert!(status.success(), "{lines:#?}");
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_bundled_providers_under_the_directory() {
    let dir = temp_dir("bundled-base");
    let acme = "id: acme\nextends: openai\nprovider_name: acme\nupstream: { base_url: https://api.acme.test, hosts: [api.acme.test] }\n";
    std::fs::write(dir.join("acme.yaml"), acme).unwrap();
    let limits = specter::unstable::files::ReadLimits::default();
    let loaded = Catalog::load_layered(std::slice::from_ref(&dir), &limits, true).unwrap();
    let bundled = Catalog::bundled().unwrap().providers().len();
    assert_eq!(loaded.catalog.providers().len(), bundled + 1);
    let slot = specter::unstable::catalog::CatalogSlot::new(loaded.catalog);
    let watcher = watch_providers(dir.clone(), slot.clone(), Default::default()).unwrap();

    let changed = format!(
        "{acme}operations:\n  - id: extra\n    operation_name: chat\n    match: {{ path: /extra }}\n"
    );
    put(&dir, "acme.yaml", &changed);
    assert!(
        eventually(|| slot.current().operation("acme/extra").is_some()).await,
        "the change is picked up"
    );
    let current = slot.current();
    assert_eq!(current.providers().len(), bundled + 1);
    assert!(
        current.operation("acme/chat").is_some(),
        "still extends the bundled openai"
    );
    assert!(current.provider("groq").is_some());
    watcher.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends `METHOD PATH` with a small JSON body to the gateway; returns the status.
fn send(gateway: SocketAddr, method: &str, path: &str) -> u16 {
    let mut stream = TcpStream::connect(gateway).unwrap();
    let body = r#"{"model":"gpt-4o","messages":[]}"#;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {gateway}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let (head, _) = read_message(&mut stream);
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn with_verbose_a_route_matching_no_operation_is_reported_once() {
    let (dir, served) = serving("unmatched", &["--verbose"], &[]);
    // A base URL without `/v1`: forwarded, but no operation matches.
    for _ in 0..3 {
        assert_eq!(
            send(served.address, "POST", "/openai/chat/completions"),
            200
        );
    }
    assert_eq!(
        send(served.address, "GET", "/openai/chat/completions?x=1"),
        200
    );
    assert_eq!(
        send(served.address, "POST", "/openai/v1/chat/completions"),
        200
    );
    let (status, lines) = served.stop();
    assert!(status.success(), "{lines:#?}");
    let debug: Vec<&String> = lines.iter().filter(|l| l.contains("debug:")).collect();
    assert_eq!(
        debug,
        vec![
            "specter: debug: POST /openai/chat/completions matches no operation of `openai`; forwarded without a span (is a path prefix such as /v1 missing from the base URL?)",
            "specter: debug: GET /openai/chat/completions matches no operation of `openai`; forwarded without a span (is a path prefix such as /v1 missing from the base URL?)",
        ],
        "{lines:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn start_up_lines_name_only_the_providers_loaded() {
    let dir = temp_dir("hint");
    std::fs::write(
        dir.join("acme.yaml"),
        "id: acme\nprovider_name: acme\nupstream: { base_url: https://api.acme.test, hosts: [api.acme.test] }\noperations:\n  - id: chat\n    operation_name: chat\n    match: { path: /chat }\n",
    )
    .unwrap();
    let dir_text = dir.display().to_string();
    let served = serve::Served::start(
        &["--providers", &dir_text, "--no-bundled", "--no-traces-file"],
        &[],
    );
    let hint = served.wait_for("point an SDK", Duration::from_secs(10));
    let lines = served.lines();
    assert!(lines[0].contains("(1 provider,"), "{lines:#?}");
    let address = served.address;
    assert_eq!(
        hint.as_deref(),
        Some(
            format!(
                "specter: point an SDK at http://{address}/<provider>, e.g. http://{address}/acme"
            )
            .as_str()
        ),
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.contains("openai")), "{lines:#?}");
    let (status, lines) = served.stop();
    assert!(status.success(), "{lines:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_says_which_bundled_provider_a_local_file_replaces() {
    let dir = temp_dir("replace");
    let openai = std::fs::read_to_string("providers/openai.yaml").unwrap();
    std::fs::write(
        dir.join("openai.yaml"),
        openai.replace("name: OpenAI\n", "name: OpenAI (local)\n"),
    )
    .unwrap();
    assert!(std::fs::read_to_string(dir.join("openai.yaml")).unwrap() != openai);
    std::fs::copy("providers/groq.yaml", dir.join("groq.yaml")).unwrap();
    let dir_text = dir.display().to_string();
    let served = serve::Served::start(&["--providers", &dir_text, "--no-traces-file"], &[]);
    let lines = served.lines();
    let bundled = Catalog::bundled().unwrap().providers().len();
    // The changed file is named; the identical copy of groq is not.
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("replaces the bundled provider"))
            .collect::<Vec<_>>(),
        vec![&format!(
            "specter: {} replaces the bundled provider openai",
            dir.join("openai.yaml").display()
        )],
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("({bundled} providers,"))),
        "{lines:#?}"
    );
    let (status, lines) = served.stop();
    assert!(status.success(), "{lines:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}
