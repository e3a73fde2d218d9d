//! The `specter` command's interface: exit codes, output and error messages.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::{Command, Output};

fn specter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_specter"))
        .args(args)
        .env_remove("SPECTER_PROVIDERS")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn validate_exit_codes_and_messages() {
    let ok = specter(&["validate", "providers/"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let summary = text(&ok.stdout);
    let files = std::fs::read_dir("providers")
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "yaml")
        })
        .count();
    assert!(
        summary.starts_with("ok: ") && summary.trim_end().ends_with(&format!("in {files} file(s)")),
        "{summary}"
    );

    let bad = specter(&["validate", "tests/specs/broken/unknown_key.yaml"]);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        text(&bad.stderr),
        "tests/specs/broken/unknown_key.yaml:3:1: operatons: unknown key `operatons`\n  help: did you mean `operations`?\nerror: 1 problem(s) in provider specs\n"
    );

    let missing = specter(&["validate", "no/such/dir"]);
    assert_eq!(missing.status.code(), Some(2));
    let err = text(&missing.stderr);
    assert!(err.starts_with("error: cannot read no/such/dir: "), "{err}");
    assert!(
        err.contains("help: pass an existing providers directory or YAML file"),
        "{err}"
    );
}

#[test]
fn schema_prints_the_committed_schema() {
    let out = specter(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        std::fs::read_to_string("schemas/provider.schema.json").unwrap()
    );
}

#[test]
fn list_shows_operations_and_routes() {
    let table = text(&specter(&["list"]).stdout);
    let chat = table
        .lines()
        .find(|l| l.starts_with("openai") && l.contains(" chat "))
        .unwrap();
    assert!(
        chat.contains("sse") && chat.ends_with("POST /v1/chat/completions"),
        "{chat}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&specter(&["list", "--format", "json"]).stdout).unwrap();
    let embeddings = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["operation"] == "embeddings")
        .unwrap();
    assert_eq!(
        embeddings["routes"],
        serde_json::json!(["POST /v1/embeddings"])
    );
    assert_eq!(embeddings["stream"], serde_json::Value::Null);
    // Stream formats are spelled as the specs spell them.
    let stream_of = |provider: &str, operation: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|r| r["provider"] == provider && r["operation"] == operation)
            .map(|r| r["stream"].clone())
            .unwrap()
    };
    assert_eq!(stream_of("bedrock", "converse_stream"), "aws_eventstream");
}

#[test]
fn every_command_has_help() {
    for cmd in ["validate", "schema", "list", "extract", "serve"] {
        let out = specter(&[cmd, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        assert!(text(&out.stdout).contains("Usage: specter"), "{cmd}");
    }
}

#[test]
fn extract_prints_the_span_and_reports_errors() {
    let dir = "tests/fixtures/openai/chat_error_404_model";
    let out = specter(&[
        "extract",
        "--url",
        "https://api.openai.com/v1/chat/completions",
        "--status",
        "404",
        "--request",
        &format!("{dir}/request.json"),
        "--response",
        &format!("{dir}/response.json"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["span"]["name"], "chat this-model-does-not-exist");
    assert_eq!(json["span"]["status"]["code"], "error");
    assert_eq!(json["span"]["attributes"]["error.type"], "model_not_found");
    assert_eq!(json["span"]["events"][0]["name"], "exception");

    let none = specter(&[
        "extract",
        "--method",
        "GET",
        "--url",
        "https://api.openai.com/v1/models",
    ]);
    assert_eq!(none.status.code(), Some(1));
    assert_eq!(
        text(&none.stderr),
        "error: no operation matches GET https://api.openai.com/v1/models\nhelp: `specter list` shows the routes of every provider\n"
    );

    let unreadable = specter(&[
        "extract",
        "--url",
        "https://api.openai.com/v1/embeddings",
        "--request",
        "no/such/file.json",
    ]);
    assert_eq!(unreadable.status.code(), Some(2));
    assert!(text(&unreadable.stderr).starts_with("error: cannot read no/such/file.json: "));
}

#[test]
fn serve_refuses_non_loopback_without_allow_remote() {
    let out = specter(&["serve", "--listen", "0.0.0.0:0", "--no-traces-file"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: refusing to listen on 0.0.0.0:0: the gateway sees every prompt and API key; pass --allow-remote"), "{err}");
    let bad = specter(&["serve", "--upstream", "openai", "--no-traces-file"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("--upstream takes PROVIDER=URL"),
        "{}",
        text(&bad.stderr)
    );
    let unknown = specter(&[
        "serve",
        "--upstream",
        "nosuch=http://127.0.0.1:1",
        "--no-traces-file",
    ]);
    assert!(
        text(&unknown.stderr).contains("`nosuch`, which is not a loaded provider"),
        "{}",
        text(&unknown.stderr)
    );
}

/// Runs `specter ARGS` and waits (up to 20 s) for it to end: the exit code and stderr, or `None`
/// when it had to be killed (it hung, or started serving).
fn specter_bounded(args: &[&str]) -> Option<(Option<i32>, String)> {
    use std::io::Read as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_specter"))
        .args(args)
        .env_remove("SPECTER_PROVIDERS")
        .env_remove("SPECTER_CONFIG")
        .env_remove("SPECTER_ALLOW_METADATA_UPSTREAM")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
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
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("specter-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A directory with the OpenAI spec and `meta.yaml`, a provider extending it whose upstream is
/// the cloud metadata service.
fn metadata_dir() -> std::path::PathBuf {
    let dir = temp_dir("metadata");
    std::fs::copy("providers/openai.yaml", dir.join("openai.yaml")).unwrap();
    std::fs::write(
        dir.join("meta.yaml"),
        "id: meta\nextends: openai\nprovider_name: meta\nupstream:\n  base_url: http://169.254.169.254/latest\n  hosts: [meta.internal]\npath_prefixes: [/openai/v1]\n",
    )
    .unwrap();
    dir
}

const METADATA_HELP: &str = "  help: if this upstream is intended, pass --allow-metadata-upstream to `specter serve` or set `allow_metadata_upstreams: true` in its configuration file\n";

#[test]
fn validate_warns_of_an_upstream_at_a_metadata_address_and_still_passes() {
    let dir = metadata_dir();
    let out = specter(&["validate", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("ok: 2 provider(s)"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        text(&out.stderr),
        format!(
            "warning: {}:5:3: upstream.base_url: `http://169.254.169.254/latest` of provider `meta`: 169.254.169.254 is link-local (169.254.0.0/16), where cloud metadata services answer; `specter serve` refuses to start with it\n{METADATA_HELP}",
            dir.join("meta.yaml").display()
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_refuses_an_upstream_at_a_metadata_address() {
    let dir = metadata_dir();
    let dir_text = dir.display().to_string();
    let serve = |extra: &[&str]| {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--no-traces-file"];
        args.extend_from_slice(extra);
        specter_bounded(&args).expect("the gateway refuses to start")
    };
    let (code, err) = serve(&["--providers", &dir_text]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        format!(
            "error: provider `meta` ({}) has the upstream `http://169.254.169.254/latest`: 169.254.169.254 is link-local (169.254.0.0/16), where cloud metadata services answer, so requests through the gateway could read the host's cloud credentials\n{METADATA_HELP}",
            dir.join("meta.yaml").display()
        )
    );
    // An override at the AWS IPv6 metadata address, on the bundled providers.
    let (code, err) = serve(&["--upstream", "openai=http://[fd00:ec2::254]/v1"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        format!(
            "error: provider `openai` (set by --upstream or `upstreams`) has the upstream `http://[fd00:ec2::254]/v1`: fd00:ec2::254 is the AWS IPv6 metadata address, so requests through the gateway could read the host's cloud credentials\n{METADATA_HELP}"
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn validate_and_serve_refuse_fifos_and_oversized_files_without_reading_them() {
    let dir = temp_dir("files");
    let fifo = dir.join("x.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let (code, err) = specter_bounded(&["validate", fifo.to_str().unwrap()])
        .expect("validate does not block on a FIFO");
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        format!(
            "error: cannot read {}: it is a FIFO, not a regular file\nhelp: provider specs must be regular files (or symbolic links to them); remove or rename it\n",
            fifo.display()
        )
    );
    let (code, err) = specter_bounded(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--no-traces-file",
        "--config",
        fifo.to_str().unwrap(),
    ])
    .expect("serve does not block on a FIFO configuration");
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        format!(
            "error: cannot read {}: it is a FIFO, not a regular file\n",
            fifo.display()
        )
    );

    let big = dir.join("big.yaml");
    std::fs::write(&big, format!("# {}\n", "x".repeat(4 << 20))).unwrap();
    let (code, err) = specter_bounded(&["validate", big.to_str().unwrap()]).unwrap();
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        format!(
            "error: cannot read {}: it holds more than 4194304 bytes (the limit)\nhelp: provider specs are small; `specter serve` reads bigger ones with `max_spec_file_bytes` in its configuration file\n",
            big.display()
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_reports_a_deeply_nested_configuration_file_instead_of_crashing() {
    let dir = temp_dir("deep-config");
    let config = dir.join("specter.yaml");
    // 40 KB of nested complex keys, 20,000 levels.
    std::fs::write(&config, format!("{}a\n", "? ".repeat(20_000))).unwrap();
    let (code, err) = specter_bounded(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--no-traces-file",
        "--config",
        config.to_str().unwrap(),
    ])
    .expect("the gateway refuses to start");
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        format!(
            "error: {}:1:3: mapping keys must be plain scalars\n",
            config.display()
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}
