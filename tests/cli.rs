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
        summary.starts_with("ok: ") && summary.trim_end().ends_with(&format!("in {files} files")),
        "{summary}"
    );

    let bad = specter(&["validate", "tests/specs/broken/unknown_key.yaml"]);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        text(&bad.stderr),
        "tests/specs/broken/unknown_key.yaml:3:1: operatons: unknown key `operatons`\n  help: did you mean `operations`?\nerror: 1 problem in provider specs\n"
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
        text(&out.stdout).starts_with("ok: 2 providers"),
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

/// The ids of the bundled providers: the stems of `providers/*.yaml`.
fn bundled_ids() -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir("providers")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// The provider ids `specter list --format json ARGS` prints, sorted and deduplicated.
fn listed(args: &[&str]) -> (Vec<String>, String) {
    let mut all = vec!["list", "--format", "json"];
    all.extend_from_slice(args);
    let out = specter(&all);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["provider"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    (ids, text(&out.stderr))
}

const ACME: &str = "id: acme\nextends: openai\nprovider_name: acme\nupstream: { base_url: https://api.acme.test, hosts: [api.acme.test] }\n";

/// OpenAI's bundled spec with one more operation.
fn openai_with_extra() -> String {
    format!(
        "{}\n  - id: extra\n    operation_name: chat\n    match: {{ method: POST, path: /extra }}\n",
        std::fs::read_to_string("providers/openai.yaml").unwrap().trim_end()
    )
}

#[test]
fn list_with_a_providers_directory_shows_its_providers_and_every_bundled_one() {
    let dir = temp_dir("list-local");
    std::fs::write(dir.join("acme.yaml"), ACME).unwrap();
    let dir_text = dir.display().to_string();
    let (ids, err) = listed(&["--providers", &dir_text]);
    let mut wanted = bundled_ids();
    wanted.push("acme".into());
    wanted.sort();
    assert_eq!(ids, wanted);
    assert_eq!(err, "");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn list_without_bundled_providers_and_an_unresolved_extends_fails() {
    let dir = temp_dir("list-alone");
    std::fs::write(dir.join("acme.yaml"), ACME).unwrap();
    let dir_text = dir.display().to_string();
    let out = specter(&["list", "--providers", &dir_text, "--no-bundled"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:2:1: extends: unknown provider `openai`",
            dir.join("acme.yaml").display()
        )),
        "{err}"
    );
    std::fs::copy("providers/openai.yaml", dir.join("openai.yaml")).unwrap();
    let (ids, err) = listed(&["--providers", &dir_text, "--no-bundled"]);
    assert_eq!(ids, vec!["acme".to_string(), "openai".to_string()]);
    assert_eq!(err, "");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_local_spec_replacing_a_bundled_one_is_announced_unless_it_is_a_copy() {
    let dir = temp_dir("list-replace");
    std::fs::write(dir.join("openai.yaml"), openai_with_extra()).unwrap();
    let dir_text = dir.display().to_string();
    let out = specter(&["list", "--providers", &dir_text]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!(
            "specter: {} replaces the bundled provider openai\n",
            dir.join("openai.yaml").display()
        )
    );
    let table = text(&out.stdout);
    // The replacement's new operation, inherited by a bundled provider that extends it.
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("openai ") && l.contains("POST /v1/extra")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("groq ") && l.contains("POST /openai/v1/extra")),
        "{table}"
    );

    // The repository's own providers directory is the bundled set: nothing to say.
    let (ids, err) = listed(&["--providers", "providers"]);
    assert_eq!(ids, bundled_ids());
    assert_eq!(err, "");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn show_prints_a_spec_verbatim_and_suggests_known_names() {
    let out = specter(&["show", "openai"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        std::fs::read_to_string("providers/openai.yaml").unwrap()
    );

    let out = specter(&["show", "opnai"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: no provider `opnai`\nhelp: did you mean `openai`?\nknown providers: {}\n",
            bundled_ids().join(", ")
        )
    );

    let dir = temp_dir("show-local");
    std::fs::write(dir.join("openai.yaml"), openai_with_extra()).unwrap();
    std::fs::write(dir.join("acme.yaml"), ACME).unwrap();
    let dir_text = dir.display().to_string();
    let out = specter(&["show", "openai", "--providers", &dir_text]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), openai_with_extra());
    let out = specter(&["show", "acme", "--providers", &dir_text]);
    assert_eq!(text(&out.stdout), ACME);
    let out = specter(&["show", "groq", "--providers", &dir_text, "--no-bundled"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).ends_with("known providers: acme, openai\n"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn validate_reports_a_schema_error_a_broken_jsonpath_and_a_capture_typo_in_one_run() {
    let dir = temp_dir("validate-three");
    let file = dir.join("three.yaml");
    std::fs::write(
        &file,
        "id: three\nprovider_name: three\noperations:\n  - id: chat\n    operation_name: chat\n    match: { path: /chat }\n    requets:\n      attributes:\n        gen_ai.request.model: $.model\n  - id: embeddings\n    operation_name: embeddings\n    match: { path: /embeddings }\n    request:\n      attributes:\n        gen_ai.request.model: $.model[\n  - id: completions\n    operation_name: text_completion\n    match: { path: \"/engines/{engine}/completions\" }\n    request:\n      attributes:\n        gen_ai.request.model: { capture: engin }\n",
    )
    .unwrap();
    let out = specter(&["validate", &file.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let f = file.display();
    assert_eq!(
        text(&out.stderr),
        format!(
            "{f}:7:5: operations[0].requets: unknown key `requets`\n  help: did you mean `request`?\n\
             {f}:15:9: operations[1].request.attributes.\"gen_ai.request.model\": invalid JSONPath `$.model[`: at character 9: expected selector\n\
             {f}:21:33: operations[2].request.attributes.\"gen_ai.request.model\".capture: `engin` is not a placeholder of the operation's `match.path`\n  help: did you mean `engine`?\n\
             error: 3 problems in provider specs\n"
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn validate_reports_each_scaffold_placeholder_left_with_its_line() {
    let dir = temp_dir("validate-scaffold");
    let providers = dir.join("providers");
    let fixtures = dir.join("fixtures");
    let made = specter(&[
        "init-provider",
        "acme",
        "--dir",
        &providers.display().to_string(),
        "--fixtures",
        &fixtures.display().to_string(),
    ]);
    assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
    let file = providers.join("acme.yaml");
    let spec = std::fs::read_to_string(&file).unwrap();
    let todo_lines: Vec<usize> = spec
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("# TODO"))
        .map(|(n, _)| n + 1)
        .collect();
    assert!(todo_lines.len() >= 5, "{spec}");
    let out = specter(&["validate", &providers.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let reported: Vec<usize> = err
        .lines()
        .filter(|l| l.contains("scaffold placeholder `TODO` left in the spec"))
        .map(|l| {
            let rest = l.strip_prefix(&format!("{}:", file.display())).unwrap();
            rest.split(':').next().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(reported, todo_lines, "{err}");
    assert!(
        err.ends_with(&format!(
            "error: {} problems in provider specs\n",
            todo_lines.len()
        )),
        "{err}"
    );

    // With every TODO note removed, the scaffold validates.
    let done: String = spec
        .lines()
        .filter(|l| !l.trim_start().starts_with("# TODO"))
        .map(|l| l.split(" # TODO").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&file, done + "\n").unwrap();
    let out = specter(&["validate", &providers.display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok: 1 provider, 1 operation in 1 file\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_without_bundled_providers_and_no_spec_is_a_start_up_error() {
    let dir = temp_dir("serve-empty");
    let dir_text = dir.display().to_string();
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--no-traces-file",
        "--providers",
        &dir_text,
        "--no-bundled",
    ];
    let (code, err) = specter_bounded(&args).expect("the gateway refuses to start");
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        format!(
            "error: no provider to serve: {dir_text} holds no provider spec (*.yaml) and the bundled providers are off\n  help: add provider specs to the directory, or drop --no-bundled (`bundled_providers: false`)\n"
        )
    );
    let (code, err) = specter_bounded(&["serve", "--listen", "127.0.0.1:0", "--no-bundled"])
        .expect("the gateway refuses to start");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.starts_with("error: no provider to serve: the bundled providers are off and no providers directory is given\n"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_rest_capture_gives_the_model_of_a_workers_ai_path() {
    let dir = temp_dir("workers-ai");
    std::fs::write(
        dir.join("workers_ai.yaml"),
        "id: workers_ai\nprovider_name: cloudflare.workers_ai\nupstream: { base_url: https://api.cloudflare.com, hosts: [api.cloudflare.com] }\noperations:\n  - id: run\n    operation_name: chat\n    match: { method: POST, path: \"/client/v4/accounts/{account_id}/ai/run/{model...}\" }\n    request:\n      attributes:\n        gen_ai.request.model: { capture: model }\n        gen_ai.request.max_tokens: $.max_tokens\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("request.json"),
        r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":16}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("response.json"),
        r#"{"result":{"response":"hello"},"success":true}"#,
    )
    .unwrap();
    let out = specter(&[
        "extract",
        "--providers",
        &dir.display().to_string(),
        "--url",
        "https://api.cloudflare.com/client/v4/accounts/a1b2/ai/run/@cf/meta/llama-3.1-8b-instruct",
        "--request",
        &dir.join("request.json").display().to_string(),
        "--response",
        &dir.join("response.json").display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["span"]["name"], "chat @cf/meta/llama-3.1-8b-instruct");
    assert_eq!(
        json["span"]["attributes"]["gen_ai.request.model"],
        "@cf/meta/llama-3.1-8b-instruct"
    );
    assert_eq!(json["span"]["attributes"]["gen_ai.request.max_tokens"], 16);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reader_that_closes_standard_output_early_is_not_an_error() {
    // `specter list | head -1`: the reader is gone before the command writes (its end of the
    // pipe is closed at once here), which must end the command quietly, not in a panic.
    for args in [
        &["list"][..],
        &["list", "--format", "json"],
        &["schema"],
        &["schema", "--config"],
        &["show", "openai"],
        &["validate", "providers"],
        &["extract", "--case", "tests/fixtures/openai/chat_plain"],
        &["test", "openai/chat_plain"],
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_specter"))
            .args(args)
            .env_remove("SPECTER_PROVIDERS")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn view_names_a_traces_file_it_cannot_read_and_says_what_to_pass() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_specter"))
        .args(["view", "missing.jsonl", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: cannot read missing.jsonl: no such file\nhelp: pass the traces files `specter serve` wrote (default specter-traces.jsonl in its working directory)\n"
    );
}
