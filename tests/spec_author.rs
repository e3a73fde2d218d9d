//! The spec author's path with the `specter` binary alone, each step in a fresh directory:
//! `init-provider` in an empty directory, a recorded exchange copied into the scaffold's case,
//! `specter test` (a new snapshot), `--accept`, a changed body (a diff), `--review`, and the
//! problems a case can have. Also: the harness reads the repository's snapshots as matching and
//! writes JSON byte for byte as insta does, and `extract --case` / `--provider`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use specter::harness::snapshot::{to_pretty_json, Snapshot};

/// The recorded OpenAI chat exchange copied into the scaffold.
const RECORDED: &str = "tests/fixtures/openai/chat_plain";

/// Runs `specter` in `cwd` with `stdin` as its standard input.
fn specter_with_input(cwd: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_specter"))
        .args(args)
        .current_dir(cwd)
        .env_remove("SPECTER_PROVIDERS")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn specter(cwd: &Path, args: &[&str]) -> Output {
    specter_with_input(cwd, args, "")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The repository directory (the tests' working directory).
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An empty directory with `init-provider acme --extends openai` run in it and the recorded
/// OpenAI exchange copied into the scaffold's case folder.
fn scaffold_with_recording() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let init = specter(
        tmp.path(),
        &["init-provider", "acme", "--extends", "openai"],
    );
    assert_eq!(init.status.code(), Some(0), "{}", stderr(&init));
    let case = tmp.path().join("tests/fixtures/acme/chat");
    for file in ["request.json", "response.json"] {
        std::fs::copy(repo().join(RECORDED).join(file), case.join(file)).unwrap();
    }
    // The scaffold's meta.yaml already names the acme route.
    let meta = std::fs::read_to_string(case.join("meta.yaml")).unwrap();
    assert!(meta.contains("\nurl: https://api.acme.example/v1/chat/completions\n"));
    tmp
}

const TEST: &[&str] = &["test", "--providers", "providers"];

fn with(extra: &[&'static str]) -> Vec<&'static str> {
    TEST.iter().chain(extra).copied().collect()
}

#[test]
fn init_provider_works_in_an_empty_directory_and_names_the_test_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let init = specter(
        tmp.path(),
        &["init-provider", "acme", "--extends", "openai"],
    );
    assert_eq!(init.status.code(), Some(0), "{}", stderr(&init));
    let out = stdout(&init);
    assert!(
        out.contains("`specter test --providers providers acme`"),
        "{out}"
    );
    assert!(
        out.contains("`specter test --providers providers --accept acme`"),
        "{out}"
    );
    let spec = std::fs::read_to_string(tmp.path().join("providers/acme.yaml")).unwrap();
    let schema_ref = spec
        .lines()
        .next()
        .unwrap()
        .strip_prefix("# yaml-language-server: $schema=")
        .unwrap();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("providers").join(schema_ref)).unwrap(),
    )
    .unwrap();
    assert_eq!(schema, specter::unstable::spec::provider_schema());
}

#[test]
fn a_recorded_exchange_becomes_a_snapshot_that_is_accepted_then_kept() {
    let tmp = scaffold_with_recording();
    let dir = tmp.path();
    let snap = dir.join("tests/snapshots/fixtures__acme__chat.snap");
    let pending = dir.join("tests/snapshots/fixtures__acme__chat.snap.new");

    let first = specter(dir, TEST);
    assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));
    let out = stdout(&first);
    assert!(out.starts_with("new     acme/chat: no snapshot yet, written to tests/snapshots/fixtures__acme__chat.snap.new\n--- tests/snapshots/fixtures__acme__chat.snap\n+++ tests/snapshots/fixtures__acme__chat.snap.new\n@@ -0,0 +1,62 @@\n+{\n+  \"provider\": \"acme\",\n"), "{out}");
    assert!(
        out.contains("\n+      \"gen_ai.usage.output_tokens\": 5,\n"),
        "{out}"
    );
    assert!(out.ends_with("\n0 passed, 0 failed, 1 new\nhelp: check each new value against the recorded bodies, then rerun with `--review` (one by one) or `--accept` (all)\n"), "{out}");
    assert!(!snap.exists());
    let written = std::fs::read_to_string(&pending).unwrap();
    assert!(written.starts_with("---\nsource: specter test\nexpression: output\n---\n{\n  \"provider\": \"acme\",\n  \"operation\": \"chat\",\n"), "{written}");
    // insta reads the pending file as its own.
    let read = insta::Snapshot::from_file(&pending).unwrap();
    assert_eq!(read.metadata().source(), Some("specter test"));
    assert_eq!(read.metadata().expression(), Some("output"));

    let accept = specter(dir, &with(&["--accept"]));
    assert_eq!(accept.status.code(), Some(0), "{}", stdout(&accept));
    assert!(stdout(&accept).starts_with(
        "new     acme/chat: no snapshot yet, accepted as tests/snapshots/fixtures__acme__chat.snap\n"
    ));
    assert!(stdout(&accept).ends_with("\n0 passed, 0 failed, 1 new, 1 accepted\n"));
    assert_eq!(std::fs::read_to_string(&snap).unwrap(), written);
    assert!(!pending.exists());

    let again = specter(dir, TEST);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(stdout(&again), "ok      acme/chat\n\n1 passed, 0 failed\n");

    // The directory adds to the bundled providers: acme and every bundled one are listed.
    let list = specter(
        dir,
        &["list", "--providers", "providers", "--format", "json"],
    );
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    // One entry per operation.
    let ids: std::collections::BTreeSet<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["provider"].as_str().unwrap())
        .collect();
    let mut bundled: Vec<String> = std::fs::read_dir(repo().join("providers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_string())
        .collect();
    bundled.sort();
    assert_eq!(bundled.len(), 19);
    assert!(ids.contains(&"acme"), "{ids:?}");
    for id in &bundled {
        assert!(ids.contains(&id.as_str()), "{id} missing from {ids:?}");
    }
    assert_eq!(ids.len(), bundled.len() + 1);
}

#[test]
fn a_changed_body_shows_a_diff_and_review_accepts_it() {
    let tmp = scaffold_with_recording();
    let dir = tmp.path();
    assert_eq!(specter(dir, &with(&["--accept"])).status.code(), Some(0));
    let response = dir.join("tests/fixtures/acme/chat/response.json");
    let body = std::fs::read_to_string(&response).unwrap();
    assert!(body.contains("\"completion_tokens\": 5,"));
    std::fs::write(
        &response,
        body.replace("\"completion_tokens\": 5,", "\"completion_tokens\": 7,"),
    )
    .unwrap();

    let changed = specter(dir, TEST);
    assert_eq!(changed.status.code(), Some(1));
    let out = stdout(&changed);
    assert!(out.starts_with("FAILED  acme/chat: the output differs from tests/snapshots/fixtures__acme__chat.snap, written to tests/snapshots/fixtures__acme__chat.snap.new\n"), "{out}");
    assert!(
        out.contains(
            "\n-      \"gen_ai.usage.output_tokens\": 5,\n+      \"gen_ai.usage.output_tokens\": 7,\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("\n-      \"value\": 5.0,\n+      \"value\": 7.0,\n"),
        "{out}"
    );
    assert!(out.contains("\n0 passed, 1 failed\n"), "{out}");

    // An answer that is not a, r or s is asked again; `a` accepts.
    let review = specter_with_input(dir, &with(&["--review"]), "x\na\n");
    assert_eq!(review.status.code(), Some(0), "{}", stdout(&review));
    let out = stdout(&review);
    assert!(out.contains("\nreview acme/chat\n"), "{out}");
    assert!(
        out.contains(
            "\naccept (a), reject (r) or skip (s)? x\nanswer a, r or s\naccept (a), reject (r) or skip (s)? a\n\n0 passed, 1 failed, 1 accepted\n"
        ),
        "{out}"
    );
    assert!(out.ends_with("0 passed, 1 failed, 1 accepted\n"), "{out}");
    let snap =
        std::fs::read_to_string(dir.join("tests/snapshots/fixtures__acme__chat.snap")).unwrap();
    assert!(snap.contains("\"gen_ai.usage.output_tokens\": 7,"));
    assert!(!dir
        .join("tests/snapshots/fixtures__acme__chat.snap.new")
        .exists());
    assert_eq!(specter(dir, TEST).status.code(), Some(0));

    // Rejecting removes the pending file and keeps the snapshot; skipping keeps both.
    std::fs::write(&response, body.clone()).unwrap();
    let reject = specter_with_input(dir, &with(&["--review"]), "r\n");
    assert_eq!(reject.status.code(), Some(1));
    assert!(stdout(&reject).ends_with("0 passed, 1 failed, 1 rejected\n"));
    assert!(!dir
        .join("tests/snapshots/fixtures__acme__chat.snap.new")
        .exists());
    let skip = specter_with_input(dir, &with(&["--review"]), "");
    assert_eq!(skip.status.code(), Some(1));
    assert!(stdout(&skip).contains("0 passed, 1 failed, 1 skipped\n"));
    assert!(dir
        .join("tests/snapshots/fixtures__acme__chat.snap.new")
        .exists());
}

#[test]
fn a_case_with_a_problem_fails_naming_the_case_and_is_not_snapshotted() {
    let tmp = scaffold_with_recording();
    let dir = tmp.path();
    let case = dir.join("tests/fixtures/acme/chat");
    let meta = std::fs::read_to_string(case.join("meta.yaml")).unwrap();
    let problems = [
        (
            meta.replace("\nstatus: 200\n", "\nstatus: <fill in>\n"),
            None,
            "FAILED  acme/chat: tests/fixtures/acme/chat/meta.yaml: `status` must be an HTTP status (100 to 599), found \"<fill in>\"\n",
        ),
        (
            meta.replace("\nmethod: POST\n", "\n"),
            None,
            "FAILED  acme/chat: tests/fixtures/acme/chat/meta.yaml: `method` is missing\n",
        ),
        (
            meta.clone(),
            Some("<html>Bad gateway</html>"),
            "FAILED  acme/chat: tests/fixtures/acme/chat/response.json is not JSON although its content type is `application/json`: expected value at line 1 column 1\n",
        ),
        (
            meta.replace("\nresponse_file: response.json\n", "\nresponse_file: response.sse\n"),
            None,
            "FAILED  acme/chat: tests/fixtures/acme/chat/response.sse (named by `response_file`) cannot be read: No such file or directory (os error 2)\n",
        ),
        (
            meta.replace("\nurl: https://api.acme.example/", "\nurl: https://api.openai.com/"),
            None,
            "FAILED  acme/chat: the exchange matched provider `openai`, but the case is in the folder of `acme` (check the URL's host)\n",
        ),
    ];
    let response = std::fs::read(case.join("response.json")).unwrap();
    for (meta_text, body, line) in problems {
        std::fs::write(case.join("meta.yaml"), &meta_text).unwrap();
        std::fs::write(
            case.join("response.json"),
            body.map_or(response.clone(), |b| b.as_bytes().to_vec()),
        )
        .unwrap();
        let out = specter(dir, TEST);
        assert_eq!(out.status.code(), Some(1), "{line}");
        assert_eq!(stdout(&out), format!("{line}\n0 passed, 1 failed\n"));
        assert!(!dir.join("tests/snapshots").exists(), "{line}");
    }
}

#[test]
fn stale_snapshots_are_listed_and_kept_and_filters_select_cases() {
    let tmp = scaffold_with_recording();
    let dir = tmp.path();
    assert_eq!(specter(dir, &with(&["--accept"])).status.code(), Some(0));
    let stale = dir.join("tests/snapshots/fixtures__acme__gone.snap");
    std::fs::write(&stale, "---\nsource: x\n---\n{}\n").unwrap();
    let out = specter(dir, TEST);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        "ok      acme/chat\n\n1 snapshot has no case (kept; remove them if their case is gone):\n  tests/snapshots/fixtures__acme__gone.snap\n\n1 passed, 0 failed\n"
    );
    assert!(stale.exists());

    let none = specter(dir, &with(&["other"]));
    assert_eq!(none.status.code(), Some(0));
    assert_eq!(stdout(&none), "\n0 passed, 0 failed, 1 filtered out\n");
    let by_text = specter(dir, &with(&["me/ch"]));
    assert!(stdout(&by_text).starts_with("ok      acme/chat\n"));

    let missing = specter(dir, &with(&["--fixtures", "nowhere"]));
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing)
        .starts_with("error: cannot read nowhere: No such file or directory (os error 2)\n"));
}

#[test]
fn the_repository_snapshots_are_read_as_matching_and_round_trip_byte_for_byte() {
    let out = specter(&repo(), &["test"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    let cases = std::fs::read_dir(repo().join("tests/snapshots"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("fixtures__") && n.ends_with(".snap"))
        .count();
    assert!(cases >= 139);
    assert!(
        text.ends_with(&format!("\n{cases} passed, 0 failed\n")),
        "{text}"
    );
    for entry in std::fs::read_dir(repo().join("tests/snapshots")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read_to_string(&path).unwrap();
        let snap = Snapshot::parse(&bytes);
        assert_eq!(snap.to_text(), bytes, "{}", path.display());
        let insta = insta::Snapshot::from_file(&path).unwrap();
        assert_eq!(
            snap.header_value("source").as_deref(),
            insta.metadata().source()
        );
        assert_eq!(
            snap.contents,
            insta.contents().as_text().unwrap().to_string()
        );
    }
}

#[test]
fn json_is_written_byte_for_byte_as_insta_writes_it() {
    let value = serde_json::json!({
        "floats": [0.0000048, 1e20, 1.5e-300, 3.0, -0.0, 0.1, 12.25],
        "ints": [0, -1, u64::MAX, i64::MIN],
        "text": "quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7} del \u{7f} é 😀",
        "empty": {"a": [], "o": {}},
        "nested": [{"x": null, "y": [true, false]}]
    });
    let ours = to_pretty_json(&value);
    let theirs = insta::_macro_support::serialize_value(
        &value,
        insta::_macro_support::SerializationFormat::Json,
    );
    assert_eq!(ours, theirs);
}

#[test]
fn extract_reads_a_case_and_names_the_provider_when_a_route_is_shared() {
    let case = specter(&repo(), &["extract", "--case", RECORDED]);
    assert_eq!(case.status.code(), Some(0), "{}", stderr(&case));
    let snapshot = Snapshot::parse(
        &std::fs::read_to_string(repo().join("tests/snapshots/fixtures__openai__chat_plain.snap"))
            .unwrap(),
    );
    let printed: serde_json::Value = serde_json::from_slice(&case.stdout).unwrap();
    assert!(snapshot.matches(&to_pretty_json(&printed)));

    let unclaimed = "https://llm.internal.example/v1/chat/completions";
    let request = format!("{RECORDED}/request.json");
    let response = format!("{RECORDED}/response.json");
    let shared = specter(
        &repo(),
        &[
            "extract",
            "--url",
            unclaimed,
            "--request",
            &request,
            "--response",
            &response,
        ],
    );
    assert_eq!(shared.status.code(), Some(1));
    let err = stderr(&shared);
    assert!(err.starts_with("error: no provider claims the host `llm.internal.example`, and POST /v1/chat/completions is a route of several providers:\n  openai\n"), "{err}");
    assert!(err.contains("\n  together\n"), "{err}");
    assert!(
        err.ends_with("help: name the provider with `--provider openai`\n"),
        "{err}"
    );
    assert_eq!(stdout(&shared), "");

    let pinned = specter(
        &repo(),
        &[
            "extract",
            "--provider",
            "together",
            "--url",
            unclaimed,
            "--request",
            &request,
            "--response",
            &response,
        ],
    );
    assert_eq!(pinned.status.code(), Some(0), "{}", stderr(&pinned));
    assert_eq!(stderr(&pinned), "");
    let json: serde_json::Value = serde_json::from_slice(&pinned.stdout).unwrap();
    assert_eq!(json["provider"], "together");

    let by_path = specter(
        &repo(),
        &[
            "extract",
            "--url",
            "https://llm.internal.example/v1/messages",
        ],
    );
    assert_eq!(by_path.status.code(), Some(0), "{}", stderr(&by_path));
    assert_eq!(stderr(&by_path), "note: no provider claims the host of https://llm.internal.example/v1/messages; matched `anthropic` by the path alone\n");
    let json: serde_json::Value = serde_json::from_slice(&by_path.stdout).unwrap();
    assert_eq!(json["provider"], "anthropic");
}
