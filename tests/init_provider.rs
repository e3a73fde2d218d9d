//! `specter init-provider`: the scaffolded spec validates (alone and extending a provider of the
//! same directory), the next steps are printed exactly, existing files are never overwritten and
//! bad names are refused. Every test works in its own directory under the system temp dir.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use specter::offline::{extract, ExtractOptions, Recorded};
use specter::Catalog;

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "specter-init-provider-{tag}-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `specter` in `cwd`.
fn specter(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_specter"))
        .args(args)
        .current_dir(cwd)
        .env_remove("SPECTER_PROVIDERS")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The next steps printed for `name`, with the spec in `dir` (and the schema file written
/// beside it) and the case in `fixtures`.
fn expected_steps(name: &str, dir: &str, fixtures: &str) -> String {
    let case = format!("{fixtures}/{name}/chat");
    let fixtures_arg = if fixtures == "tests/fixtures" {
        String::new()
    } else {
        format!(" --fixtures {fixtures}")
    };
    format!(
        "created {dir}/{name}.yaml
created {dir}/provider.schema.json
created {case}/meta.yaml

Next steps:
  1. Record a real exchange with {name}: through a recording proxy (e.g. mitmproxy), or with the provider's SDK and an HTTP recorder (e.g. vcrpy).
  2. Copy the request body to {case}/request.json and the response body as received to {case}/response.json, then fill in {case}/meta.yaml (rename the folder after the case).
  3. Edit {dir}/{name}.yaml until `specter validate {dir}/` reports no problems; `specter extract --providers {dir} --case {case}` shows the span.
  4. Run `specter test --providers {dir}{fixtures_arg} {name}`: it writes the new snapshot as tests/snapshots/fixtures__{name}__<case>.snap.new. Check it by hand against the bodies (model, ids, token counts, text, tool arguments, finish reasons), then accept it with `specter test --providers {dir}{fixtures_arg} --accept {name}` (or one by one with `--review`).
  5. Run `specter test --providers {dir}{fixtures_arg}` after every change to the spec: it exits with 1 and shows the diff when a span changes.
"
    )
}

/// The schema `specter schema` prints.
fn printed_schema(cwd: &Path) -> String {
    let out = specter(cwd, &["schema"]);
    assert_eq!(out.status.code(), Some(0));
    text(&out.stdout)
}

#[test]
fn scaffolds_a_plain_provider_that_validates_and_extracts() {
    let tmp = TempDir::new("plain");
    let out = specter(tmp.path(), &["init-provider", "acme_ai"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    assert_eq!(
        text(&out.stdout),
        expected_steps("acme_ai", "providers", "tests/fixtures")
    );

    let spec = std::fs::read_to_string(tmp.path().join("providers/acme_ai.yaml")).unwrap();
    // The schema comment names the schema file written beside the spec.
    assert!(
        spec.starts_with("# yaml-language-server: $schema=provider.schema.json\n"),
        "{spec}"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("providers/provider.schema.json")).unwrap(),
        printed_schema(tmp.path())
    );
    let catalog = Catalog::load(&[tmp.path().join("providers")]).unwrap();
    let provider = catalog.provider("acme_ai").unwrap();
    assert_eq!(&*provider.provider_name, "acme_ai");
    assert_eq!(provider.extends, None);
    assert_eq!(
        provider.base_url.as_deref(),
        Some("https://api.acme-ai.example")
    );
    assert_eq!(provider.hosts, vec!["api.acme-ai.example".to_string()]);
    assert_eq!(provider.path_prefixes, vec!["/v1".to_string()]);
    let ops: Vec<(&str, &str)> = provider
        .operations
        .iter()
        .map(|o| (&*o.id, &*o.operation_name))
        .collect();
    assert_eq!(ops, vec![("chat", "chat")]);

    // The same check through the command, as the next steps tell: it reports the `TODO` notes
    // left to fill in, and nothing else; without them the spec is valid.
    let validate = specter(tmp.path(), &["validate", "providers/"]);
    assert_eq!(validate.status.code(), Some(1));
    let problems: Vec<String> = text(&validate.stderr)
        .lines()
        .filter(|l| l.starts_with("providers/"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        problems.len(),
        spec.matches("# TODO").count(),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .all(|l| l.ends_with("scaffold placeholder `TODO` left in the spec")),
        "{problems:#?}"
    );
    let filled: String = spec
        .lines()
        .filter(|l| !l.trim_start().starts_with("# TODO"))
        .map(|l| l.split(" # TODO").next().unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(tmp.path().join("providers/acme_ai.yaml"), filled).unwrap();
    let validate = specter(tmp.path(), &["validate", "providers/"]);
    assert_eq!(
        text(&validate.stdout),
        "ok: 1 provider, 1 operation in 1 file\n",
        "{}",
        text(&validate.stderr)
    );

    // The rules read an OpenAI-style exchange.
    let exchange = Recorded {
        method: "POST",
        url: "https://api.acme-ai.example/v1/chat/completions",
        status: 200,
        request: br#"{"model": "acme-1", "temperature": 0.5, "messages": [{"role": "user", "content": "Hi"}]}"#,
        response: br#"{"id": "r-1", "model": "acme-1-2025", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}"#,
        content_type: Some("application/json"),
        request_headers: &[],
        response_headers: &[],
    };
    let output = extract(&catalog, &exchange, &ExtractOptions::default()).unwrap();
    let attributes = &output["span"]["attributes"];
    assert_eq!(output["span"]["name"], "chat acme-1");
    assert_eq!(attributes["gen_ai.provider.name"], "acme_ai");
    assert_eq!(attributes["gen_ai.request.temperature"], 0.5);
    assert_eq!(attributes["gen_ai.response.id"], "r-1");
    assert_eq!(attributes["gen_ai.response.model"], "acme-1-2025");
    assert_eq!(
        attributes["gen_ai.response.finish_reasons"],
        serde_json::json!(["stop"])
    );
    assert_eq!(attributes["gen_ai.usage.input_tokens"], 3);
    assert_eq!(attributes["gen_ai.usage.output_tokens"], 2);
    let output_messages: serde_json::Value =
        serde_json::from_str(attributes["gen_ai.output.messages"].as_str().unwrap()).unwrap();
    assert_eq!(
        output_messages,
        serde_json::json!([{"role": "assistant", "finish_reason": "stop",
            "parts": [{"type": "text", "content": "Hello"}]}])
    );
    assert_eq!(output["problems"], serde_json::json!([]));

    // The fixture template is a YAML mapping with every key `specter test` reads; the case reader
    // takes it as it is and only misses the body files still to be recorded.
    let case_error =
        specter::harness::cases::read_case(&tmp.path().join("tests/fixtures/acme_ai/chat"))
            .unwrap_err()
            .to_string();
    assert!(
        case_error.ends_with("chat/request.json (named by `request_file`) cannot be read: No such file or directory (os error 2)"),
        "{case_error}"
    );
    let meta =
        std::fs::read_to_string(tmp.path().join("tests/fixtures/acme_ai/chat/meta.yaml")).unwrap();
    let parsed = specter::unstable::yaml::parse(&meta).unwrap().value;
    assert_eq!(parsed["method"], "POST");
    assert_eq!(
        parsed["url"],
        "https://api.acme-ai.example/v1/chat/completions"
    );
    assert_eq!(parsed["status"], 200);
    assert_eq!(parsed["streaming"], false);
    assert_eq!(parsed["request_file"], "request.json");
    assert_eq!(parsed["response_file"], "response.json");
    assert_eq!(parsed["response_content_type"], "application/json");
    assert!(parsed["request_headers"].is_object());
    assert!(parsed["response_headers"].is_object());
    assert!(meta.starts_with('#'), "the template explains itself");
}

#[test]
fn scaffolds_a_provider_extending_one_of_the_same_directory() {
    let tmp = TempDir::new("extends");
    let providers = tmp.path().join("providers");
    std::fs::create_dir_all(&providers).unwrap();
    std::fs::copy("providers/openai.yaml", providers.join("openai.yaml")).unwrap();
    let dir = providers.display().to_string();
    let fixtures = tmp.path().join("fixtures").display().to_string();

    let out = specter(
        tmp.path(),
        &[
            "init-provider",
            "compat",
            "--extends",
            "openai",
            "--dir",
            &dir,
            "--fixtures",
            &fixtures,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), expected_steps("compat", &dir, &fixtures));

    let spec = std::fs::read_to_string(providers.join("compat.yaml")).unwrap();
    assert!(spec.starts_with("# yaml-language-server: $schema=provider.schema.json\n"));
    assert!(providers.join("provider.schema.json").is_file());
    assert!(spec.contains("\nextends: openai\n"), "{spec}");
    assert!(!spec.contains("operations:"), "{spec}");

    let catalog = Catalog::load(std::slice::from_ref(&providers)).unwrap();
    let compat = catalog.provider("compat").unwrap();
    let openai = catalog.provider("openai").unwrap();
    assert_eq!(compat.extends.as_deref(), Some("openai"));
    assert_eq!(&*compat.provider_name, "compat");
    assert_eq!(
        compat.base_url.as_deref(),
        Some("https://api.compat.example")
    );
    assert_eq!(compat.hosts, vec!["api.compat.example".to_string()]);
    assert_eq!(compat.path_prefixes, vec!["/v1".to_string()]);
    let ids = |p: &specter::unstable::compile::rules::Provider| -> Vec<String> {
        p.operations.iter().map(|o| o.id.to_string()).collect()
    };
    assert_eq!(ids(compat), ids(openai));
    assert_eq!(
        ids(compat),
        vec![
            "chat",
            "completions",
            "embeddings",
            "responses",
            "fetch_response"
        ]
    );
    // Calls to the new host go to the new provider.
    let found = catalog
        .find(
            "POST",
            Some("api.compat.example"),
            "/v1/chat/completions",
            &[],
        )
        .unwrap();
    assert_eq!(&*found.operation.provider, "compat");
    assert!(tmp.path().join("fixtures/compat/chat/meta.yaml").is_file());
}

#[test]
fn refuses_to_overwrite_an_existing_file() {
    let tmp = TempDir::new("overwrite");
    let first = specter(tmp.path(), &["init-provider", "acme"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let spec_path = tmp.path().join("providers/acme.yaml");
    std::fs::write(&spec_path, "# edited by hand\n").unwrap();

    let again = specter(tmp.path(), &["init-provider", "acme"]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(text(&again.stdout), "");
    assert_eq!(
        text(&again.stderr),
        "error: providers/acme.yaml already exists\nhelp: init-provider never overwrites a file; choose another name or remove the file\n"
    );
    assert_eq!(
        std::fs::read_to_string(&spec_path).unwrap(),
        "# edited by hand\n"
    );

    // An existing fixture template is not overwritten either, and then no spec is written.
    std::fs::create_dir_all(tmp.path().join("tests/fixtures/other/chat")).unwrap();
    std::fs::write(
        tmp.path().join("tests/fixtures/other/chat/meta.yaml"),
        "x: 1\n",
    )
    .unwrap();
    let fixture = specter(tmp.path(), &["init-provider", "other"]);
    assert_eq!(fixture.status.code(), Some(1));
    assert_eq!(
        text(&fixture.stderr),
        "error: tests/fixtures/other/chat/meta.yaml already exists\nhelp: init-provider never overwrites a file; choose another name or remove the file\n"
    );
    assert!(!tmp.path().join("providers/other.yaml").exists());
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("tests/fixtures/other/chat/meta.yaml")).unwrap(),
        "x: 1\n"
    );
}

#[test]
fn refuses_bad_names_and_unknown_parents() {
    let tmp = TempDir::new("names");
    let cases: [(&[&str], &str); 5] = [
        (
            &["init-provider", "My-LLM"],
            "error: invalid provider name `My-LLM`: use only lower-case letters, digits and `_`\nhelp: e.g. `my_llm`\n",
        ),
        (
            &["init-provider", "acme.ai"],
            "error: invalid provider name `acme.ai`: use only lower-case letters, digits and `_`\nhelp: e.g. `acme_ai`\n",
        ),
        (
            &["init-provider", ""],
            "error: invalid provider name ``: use only lower-case letters, digits and `_`\nhelp: e.g. `my_provider`\n",
        ),
        (
            &["init-provider", "acme", "--extends", "Open AI"],
            "error: invalid provider name `Open AI`: use only lower-case letters, digits and `_`\nhelp: e.g. `open_ai`\n",
        ),
        (
            &["init-provider", "acme", "--extends", "nosuch"],
            "error: cannot extend `nosuch`: no providers/nosuch.yaml and no bundled provider `nosuch`\nhelp: pass the id of a bundled provider (`specter list` shows them) or of a spec in --dir\n",
        ),
    ];
    for (args, stderr) in cases {
        let out = specter(tmp.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(text(&out.stdout), "", "{args:?}");
        assert_eq!(text(&out.stderr), stderr, "{args:?}");
    }
    // Nothing was written.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn extends_a_bundled_provider_from_an_empty_directory() {
    let tmp = TempDir::new("bundled-parent");
    let out = specter(
        tmp.path(),
        &["init-provider", "acme", "--extends", "openai"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        expected_steps("acme", "providers", "tests/fixtures")
    );
    let spec = std::fs::read_to_string(tmp.path().join("providers/acme.yaml")).unwrap();
    // The prefixes come from the bundled openai spec.
    assert!(spec.contains("\npath_prefixes: [/v1] #"), "{spec}");
    // With the bundled specs, the scaffold compiles and inherits every operation of openai.
    let mut sources: Vec<specter::unstable::compile::Source> =
        specter::unstable::catalog::bundled::PROVIDERS
            .iter()
            .map(|(name, text)| specter::unstable::compile::Source {
                name: (*name).to_string(),
                text: (*text).to_string(),
            })
            .collect();
    sources.push(specter::unstable::compile::Source {
        name: "providers/acme.yaml".into(),
        text: spec,
    });
    let catalog = Catalog::from_sources(&sources).unwrap();
    let acme = catalog.provider("acme").unwrap();
    assert_eq!(
        acme.operations
            .iter()
            .map(|o| o.id.to_string())
            .collect::<Vec<_>>(),
        vec![
            "chat",
            "completions",
            "embeddings",
            "responses",
            "fetch_response"
        ]
    );
}

#[test]
fn the_schema_comment_names_the_repository_schema_when_it_is_there() {
    let tmp = TempDir::new("repo-schema");
    std::fs::create_dir_all(tmp.path().join("schemas")).unwrap();
    std::fs::write(tmp.path().join("schemas/provider.schema.json"), "{}\n").unwrap();
    let out = specter(tmp.path(), &["init-provider", "acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let spec = std::fs::read_to_string(tmp.path().join("providers/acme.yaml")).unwrap();
    assert!(spec.starts_with("# yaml-language-server: $schema=../schemas/provider.schema.json\n"));
    assert!(!tmp.path().join("providers/provider.schema.json").exists());
    assert!(!text(&out.stdout).contains("provider.schema.json"));
}
