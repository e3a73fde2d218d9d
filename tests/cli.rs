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
