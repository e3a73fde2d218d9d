//! Parsing only what the rules read changes nothing they produce: every recorded exchange is run
//! through each bundled operation twice, once with the operation's compiled read trees and once
//! with trees that read everything, with message content rendered and skipped, and the records
//! must be equal. Also checks that the trees leave out what they should (a chat's messages when
//! content is off, and everything but a few fields once the request phase is over).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::sync::Arc;

use specter::harness::cases;
use specter::unstable::catalog::Match;
use specter::unstable::compile::reads::{ReadTree, Reads, StreamReads};
use specter::unstable::compile::rules::Operation;
use specter::unstable::engine::{Content, Exchange, HttpTarget, Record};
use specter::Catalog;

/// The operation with trees that read every document whole.
fn reading_everything(op: &Operation) -> Arc<Operation> {
    let mut whole = op.clone();
    whole.reads = Reads::whole();
    if let Some(stream) = &mut whole.stream {
        stream.reads = StreamReads::whole();
    }
    Arc::new(whole)
}

fn run(found: Match, case: &cases::CaseData, content: Content) -> Record {
    let target = HttpTarget::parse(&case.url).unwrap();
    let mut exchange = Exchange::new(
        found,
        target,
        case.request_headers.clone(),
        &case.request,
        content,
    );
    exchange.respond_recorded(
        case.status,
        &case.response_headers,
        case.effective_content_type(),
        &case.response,
        1 << 20,
    );
    exchange.into_record()
}

/// Every recorded case whose request matches an operation of the specs in `providers/`, with
/// the match.
fn matched_cases() -> Vec<(String, cases::CaseData, Match)> {
    let catalog = Catalog::load(&[Path::new("providers").to_path_buf()]).unwrap();
    let mut matched = Vec::new();
    for case in cases::discover(Path::new("tests/fixtures")).unwrap() {
        let data = cases::read_case(&case.dir).unwrap();
        let target = HttpTarget::parse(&data.url).unwrap();
        let found = catalog.find(
            &data.method,
            Some(&target.host),
            &target.path,
            &target.query,
        );
        if let Some(found) = found {
            matched.push((case.id(), data, found));
        }
    }
    matched
}

#[test]
fn records_from_sparse_bodies_equal_records_from_whole_ones() {
    let mut compared = 0;
    for (id, case, found) in matched_cases() {
        for content in [Content::Render, Content::Skip] {
            let whole = Match {
                operation: reading_everything(&found.operation),
                captures: found.captures.clone(),
            };
            let expected = run(whole, &case, content);
            let sparse = run(found.clone(), &case, content);
            assert_eq!(sparse, expected, "{id}, {content:?}");
        }
        compared += 1;
    }
    assert!(
        compared >= 120,
        "only {compared} cases matched an operation"
    );
}

#[test]
fn skipping_content_changes_nothing_but_the_content() {
    let mut with_messages = 0;
    for (id, case, found) in matched_cases() {
        let mut rendered = run(found.clone(), &case, Content::Render);
        let skipped = run(found, &case, Content::Skip);
        with_messages += usize::from(rendered.input_messages.is_some());
        assert!(
            skipped.input_messages.is_none() && skipped.output_messages.is_none(),
            "{id}"
        );
        assert!(
            skipped.system_instructions.is_none() && skipped.tool_definitions.is_none(),
            "{id}"
        );
        rendered.input_messages = None;
        rendered.output_messages = None;
        rendered.system_instructions = None;
        rendered.tool_definitions = None;
        assert_eq!(skipped, rendered, "{id}");
    }
    assert!(
        with_messages >= 80,
        "only {with_messages} cases had input messages"
    );
}

fn chat() -> Arc<Operation> {
    let catalog = Catalog::bundled().unwrap();
    let target = HttpTarget::parse("https://api.openai.com/v1/chat/completions").unwrap();
    catalog
        .find("POST", Some(&target.host), &target.path, &target.query)
        .unwrap()
        .operation
}

#[test]
fn a_chat_reads_its_messages_only_for_content() {
    let reads = &chat().reads;
    assert!(reads.request.member("messages").is_some());
    assert!(reads.request_without_content.member("messages").is_none());
    assert!(reads.request_without_content.member("model").is_some());
    let usage = reads.response_without_content.member("usage").unwrap();
    assert_eq!(usage.member("prompt_tokens"), Some(&ReadTree::Whole));
    assert!(usage.member("total_tokens").is_none());
    let choice = |tree: &ReadTree| tree.member("choices").unwrap().elements().unwrap().clone();
    assert!(choice(&reads.response).member("message").is_some());
    assert!(choice(&reads.response_without_content)
        .member("message")
        .is_none());
    assert!(choice(&reads.response_without_content)
        .member("finish_reason")
        .is_some());
}

#[test]
fn a_chat_keeps_little_of_its_request_while_it_waits() {
    let reads = &chat().reads;
    for absent in ["messages", "tools", "temperature", "max_tokens"] {
        assert!(reads.request_kept.member(absent).is_none(), "{absent}");
    }
    let body = br#"{"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "a long conversation"}], "temperature": 0.2}"#;
    let catalog = Catalog::bundled().unwrap();
    let target = HttpTarget::parse("https://api.openai.com/v1/chat/completions").unwrap();
    let found = catalog
        .find("POST", Some(&target.host), &target.path, &target.query)
        .unwrap();
    let exchange = Exchange::new(found, target, Vec::new(), body, Content::Render);
    let kept = exchange.request().body;
    assert!(kept.get("messages").is_none(), "{kept}");
    assert!(kept.get("temperature").is_none(), "{kept}");
    // The record was made from the whole request all the same.
    let record = exchange.record();
    assert_eq!(record.attributes["gen_ai.request.temperature"], 0.2);
    assert!(record
        .input_messages
        .as_deref()
        .unwrap()
        .contains("a long conversation"));
    // And what the stream needs is still there.
    assert!(exchange.is_stream(200, Some("text/event-stream")));
}

/// A provider whose output message reads the request: its role comes from the request body, and
/// its stream's fold copies a request field into the rebuilt response.
const ECHO: &str = r#"
id: echo
name: Echo
provider_name: echo
upstream:
  base_url: https://echo.example
  hosts: [echo.example]
operations:
  - id: chat
    operation_name: chat
    match: { method: POST, path: /chat }
    request:
      attributes:
        gen_ai.request.model: $.model
      input_messages:
        - each: $.messages[*]
          role: $.role
          parts:
            - type: text
              content: $.content
    response:
      attributes:
        gen_ai.response.model: { first: [$.model, { request: $.model }] }
      output_messages:
        - role: { request: $.persona.role }
          parts:
            - type: text
              content: $.text
"#;

#[test]
fn what_output_messages_read_of_the_request_is_kept_past_its_phase() {
    use specter::unstable::compile::Source;
    let catalog = Catalog::from_sources(&[Source {
        name: "echo.yaml".into(),
        text: ECHO.into(),
    }])
    .unwrap();
    let target = HttpTarget::parse("https://echo.example/chat").unwrap();
    let found = catalog
        .find("POST", Some(&target.host), &target.path, &target.query)
        .unwrap();
    let reads = &found.operation.reads;
    let persona = reads.request_kept.member("persona").unwrap();
    assert_eq!(persona.member("role"), Some(&ReadTree::Whole));
    assert!(reads.request_kept.member("messages").is_none());
    let body = br#"{"model": "m1", "persona": {"role": "narrator", "mood": "calm"},
        "messages": [{"role": "user", "content": "hello"}]}"#;
    let mut exchange = Exchange::new(found, target, Vec::new(), body, Content::Render);
    exchange.respond(200, &[], br#"{"text": "once upon a time"}"#);
    let record = exchange.into_record();
    assert_eq!(record.attributes["gen_ai.response.model"], "m1");
    let output: serde_json::Value =
        serde_json::from_str(record.output_messages.as_deref().unwrap()).unwrap();
    assert_eq!(output[0]["role"], "narrator", "{output}");
    assert_eq!(output[0]["parts"][0]["content"], "once upon a time");
}
