//! Property tests (proptest) for everything that reads untrusted input:
//!
//! 1. the spec loader (`Catalog::from_sources`) on arbitrary text, generated YAML documents and
//!    bundled provider specs with keys deleted, types swapped and random JSONPaths, templates and
//!    targets: it never panics, and every diagnostic names a given file at a line and column ≥ 1;
//! 2. offline extraction through every operation of every bundled provider with arbitrary JSON
//!    bodies, arbitrary stream chunks in the operation's framing, and recorded exchanges with
//!    random types swapped in: never a panic, always `Ok` for a URL that matches;
//! 3. the stream deframers on arbitrary bytes: the frames do not depend on how the input is split,
//!    and generated well-formed streams give exactly the frames they were built from;
//! 4. folding generated OpenAI, Anthropic, Bedrock and Gemini streams: the rebuilt response does
//!    not depend on the split, and holds exactly the generated deltas (text, tool arguments, stop
//!    reasons, usage);
//! 5. bounded memory: multi-megabyte deltas fold to text capped at the folder's cap, reported as
//!    truncated; array indexes are capped.
//!
//! Also: small parsers (URLs, route templates, JSONPaths, dialect files) and the route lookup.
//!
//! Case counts keep the file well under two minutes in a debug build; `PROPTEST_CASES=N` sets every
//! property's count (see `fuzz/README.md`). Failures are not persisted to files: proptest prints
//! the minimal failing input.
//!
//! Tests marked `#[ignore = "known bug: ..."]` reproduce bugs found by these properties that are
//! not fixed yet; they pass once the bug is fixed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestCaseError};
use serde_json::{json, Map, Number, Value as Json};

use specter::compile::rules::{Framing, PayloadEncoding};
use specter::compile::rules::{Operation, Piece, Provider, Route, Stream};
use specter::compile::{parse_template, JsonPath, Source};
use specter::engine::stream::{encode_event_message, Deframer, FoldOutcome, Folder, Frame};
use specter::engine::HttpTarget;
use specter::offline::{extract, ExtractOptions, Recorded, DEFAULT_TEXT_CAP};
use specter::render::content::{Capture, ContentPolicy, Redaction};
use specter::render::dialect::Dialect;
use specter::Catalog;

// ---------------------------------------------------------------------------------------------
// Configuration and shared data
// ---------------------------------------------------------------------------------------------

/// A proptest configuration with `cases` cases and generous shrinking, unless the standard
/// `PROPTEST_CASES`, `PROPTEST_MAX_SHRINK_ITERS` or `PROPTEST_MAX_SHRINK_TIME` variables say
/// otherwise (`PROPTEST_RNG_SEED` fixes the seed). No failure persistence: no
/// `proptest-regressions/` files next to the tests; a failure prints its minimal input.
fn config(cases: u32) -> Config {
    let set = |name: &str| std::env::var_os(name).is_some();
    let mut config = Config::default();
    if !set("PROPTEST_CASES") {
        config.cases = cases;
    }
    if !set("PROPTEST_MAX_SHRINK_ITERS") {
        config.max_shrink_iters = 4096;
    }
    if !set("PROPTEST_MAX_SHRINK_TIME") {
        config.max_shrink_time = 60_000;
    }
    config.failure_persistence = None;
    config
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog::bundled().unwrap())
}

fn bundled_text(file: &str) -> &'static str {
    specter::catalog::bundled::PROVIDERS
        .iter()
        .find(|(name, _)| *name == file)
        .unwrap_or_else(|| panic!("no bundled {file}"))
        .1
}

/// Bundled specs that the spec mutation property edits (each loaded with `openai.yaml`, which
/// several of them extend).
const SPEC_FILES: &[&str] = &[
    "openai.yaml",
    "openai.yaml",
    "openai.yaml",
    "groq.yaml",
    "azure_openai.yaml",
    "deepseek.yaml",
    "anthropic.yaml",
    "bedrock.yaml",
    "gemini.yaml",
    "ollama.yaml",
];

/// The parsed JSON value of a bundled spec.
fn spec_doc(file: &str) -> Json {
    static DOCS: OnceLock<Vec<(&'static str, Json)>> = OnceLock::new();
    let docs = DOCS.get_or_init(|| {
        specter::catalog::bundled::PROVIDERS
            .iter()
            .map(|(name, text)| (*name, specter::yaml::parse(text).unwrap().value))
            .collect()
    });
    docs.iter().find(|(n, _)| *n == file).unwrap().1.clone()
}

fn op(name: &str) -> Arc<Operation> {
    catalog()
        .operation(name)
        .unwrap_or_else(|| panic!("no operation {name}"))
}

// ---------------------------------------------------------------------------------------------
// Generators: JSON values, strings, edits
// ---------------------------------------------------------------------------------------------

/// Field names the bundled specs read, so that random JSON reaches the rules.
const KEYS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "text",
    "type",
    "index",
    "choices",
    "delta",
    "finish_reason",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "input_tokens",
    "output_tokens",
    "tool_calls",
    "function",
    "name",
    "arguments",
    "id",
    "stream",
    "error",
    "message",
    "code",
    "input",
    "output",
    "candidates",
    "parts",
    "contents",
    "usageMetadata",
    "contentBlockIndex",
    "start",
    "toolUse",
    "stopReason",
    "metadata",
    "bytes",
    "response",
    "item",
    "output_index",
    "content_index",
    "partial_json",
    "content_block",
    "stop_reason",
    "tools",
    "system",
    "done",
    "done_reason",
    "prompt",
    "temperature",
    "max_tokens",
    "n",
    "stop",
    "response_format",
    "tool_call_id",
    "image_url",
    "url",
    "status",
    "embeddings",
    "data",
    "instructions",
    "thinking",
    "signature",
    "source",
    "finishReason",
    "modelVersion",
    "promptTokenCount",
    "candidatesTokenCount",
    "inputTokens",
    "outputTokens",
    "event_type",
    "generation_id",
    "incomplete_details",
    "summary",
    "call_id",
    "results",
];

/// Strings that mean something to some rule, and odd ones.
const WORDS: &[&str] = &[
    "",
    "[DONE]",
    "stop",
    "length",
    "tool_calls",
    "assistant",
    "user",
    "system",
    "tool",
    "model",
    "text",
    "image_url",
    "function",
    "function_call",
    "true",
    "null",
    "0",
    "-1",
    "4096",
    "{\"a\":1}",
    "{\"a\":",
    "{",
    "[",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "message_delta",
    "message_stop",
    "text_delta",
    "input_json_delta",
    "tool_use",
    "thinking",
    "base64",
    "response.created",
    "response.output_text.delta",
    "response.completed",
    "response.output_item.added",
    "error",
    "completed",
    "json_schema",
    "content-filter",
    "é😀\u{0}",
    "\r\n\r\n",
    "data: x\n\n",
    "eyJ0eXBlIjoiY29udGVudF9ibG9ja19kZWx0YSJ9",
    "gpt-4o-mini",
    "claude-3-5-sonnet",
    "sk-abc123",
];

fn arb_string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(WORDS).prop_map(str::to_string),
        2 => "\\PC{0,12}",
        1 => any::<String>(),
    ]
    .boxed()
}

fn arb_key() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(KEYS).prop_map(str::to_string),
        1 => arb_string(),
    ]
    .boxed()
}

fn arb_number() -> BoxedStrategy<Json> {
    prop_oneof![
        (0i64..5).prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        select(&[4095i64, 4096, 4097, 65_536, -1, i64::MIN][..]).prop_map(Json::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Json::Number)),
    ]
    .boxed()
}

fn arb_leaf() -> BoxedStrategy<Json> {
    prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        arb_number(),
        arb_string().prop_map(Json::String),
    ]
    .boxed()
}

/// Any JSON value: bounded depth (5) and size (about 64 nodes).
fn arb_json() -> BoxedStrategy<Json> {
    arb_leaf()
        .prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
                prop::collection::vec((arb_key(), inner), 0..6)
                    .prop_map(|kv| Json::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

/// JSON without floats (whose text form may not parse back to the same bits), for values that
/// must survive serialisation exactly.
fn arb_exact_json() -> BoxedStrategy<Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        arb_string().prop_map(Json::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Json::Array),
            prop::collection::vec((arb_key(), inner), 0..5)
                .prop_map(|kv| Json::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

fn arb_exact_object() -> BoxedStrategy<Json> {
    prop::collection::vec((arb_key(), arb_exact_json()), 0..5)
        .prop_map(|kv| Json::Object(kv.into_iter().collect()))
        .boxed()
}

/// A body: mostly an object (as requests and responses are), sometimes any JSON.
fn arb_top_json() -> BoxedStrategy<Json> {
    prop_oneof![
        4 => prop::collection::vec((arb_key(), arb_json()), 0..8)
            .prop_map(|kv| Json::Object(kv.into_iter().collect())),
        1 => arb_json(),
    ]
    .boxed()
}

/// One edit of a JSON document, at a node chosen by `Index` among all nodes (or string nodes, or
/// object members).
#[derive(Debug, Clone)]
enum Edit {
    /// Replace the node by another value (usually of another type).
    Replace(Index, Json),
    /// Remove the node from its parent.
    Delete(Index),
    /// Add a member to an object, or an element to an array (a scalar becomes an object).
    Insert(Index, String, Json),
    /// Replace a string node by another string.
    SetString(Index, String),
    /// Rename an object member.
    RenameKey(Index, String),
    /// Duplicate an array element in place (or a member under a new key).
    Duplicate(Index),
}

fn arb_edit(strings: BoxedStrategy<String>) -> BoxedStrategy<Edit> {
    prop_oneof![
        3 => (any::<Index>(), arb_json()).prop_map(|(i, v)| Edit::Replace(i, v)),
        3 => any::<Index>().prop_map(Edit::Delete),
        1 => (any::<Index>(), arb_key(), arb_json()).prop_map(|(i, k, v)| Edit::Insert(i, k, v)),
        4 => (any::<Index>(), strings.clone()).prop_map(|(i, s)| Edit::SetString(i, s)),
        2 => (any::<Index>(), strings).prop_map(|(i, s)| Edit::RenameKey(i, s)),
        1 => any::<Index>().prop_map(Edit::Duplicate),
    ]
    .boxed()
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// JSON pointers of every node, in document order.
fn pointers(value: &Json, at: &str, out: &mut Vec<String>) {
    out.push(at.to_string());
    match value {
        Json::Object(map) => {
            for (k, v) in map {
                pointers(v, &format!("{at}/{}", escape(k)), out);
            }
        }
        Json::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                pointers(v, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn split_pointer(pointer: &str) -> Option<(&str, String)> {
    let (parent, last) = pointer.rsplit_once('/')?;
    Some((parent, unescape(last)))
}

fn apply_edit(doc: &mut Json, edit: &Edit) {
    let mut all = Vec::new();
    pointers(doc, "", &mut all);
    match edit {
        Edit::Replace(i, v) => {
            let p = i.get(&all).clone();
            *doc.pointer_mut(&p).unwrap() = v.clone();
        }
        Edit::Delete(i) => {
            let p = i.get(&all).clone();
            let Some((parent, key)) = split_pointer(&p) else {
                *doc = Json::Null;
                return;
            };
            match doc.pointer_mut(parent).unwrap() {
                Json::Object(map) => {
                    map.shift_remove(&key);
                }
                Json::Array(items) => {
                    if let Ok(n) = key.parse::<usize>() {
                        if n < items.len() {
                            items.remove(n);
                        }
                    }
                }
                _ => {}
            }
        }
        Edit::Insert(i, k, v) => {
            let p = i.get(&all).clone();
            match doc.pointer_mut(&p).unwrap() {
                Json::Object(map) => {
                    map.insert(k.clone(), v.clone());
                }
                Json::Array(items) => items.push(v.clone()),
                other => *other = json!({ k.clone(): v.clone() }),
            }
        }
        Edit::SetString(i, s) => {
            let strings: Vec<&String> = all
                .iter()
                .filter(|p| doc.pointer(p).is_some_and(Json::is_string))
                .collect();
            if strings.is_empty() {
                return;
            }
            let p = (*i.get(&strings)).clone();
            *doc.pointer_mut(&p).unwrap() = Json::String(s.clone());
        }
        Edit::RenameKey(i, s) => {
            let members: Vec<&String> = all
                .iter()
                .filter(|p| {
                    split_pointer(p)
                        .is_some_and(|(parent, _)| doc.pointer(parent).is_some_and(Json::is_object))
                })
                .collect();
            if members.is_empty() {
                return;
            }
            let p = (*i.get(&members)).clone();
            let (parent, key) = split_pointer(&p).unwrap();
            if let Some(Json::Object(map)) = doc.pointer_mut(parent) {
                if let Some(v) = map.shift_remove(&key) {
                    map.insert(s.clone(), v);
                }
            }
        }
        Edit::Duplicate(i) => {
            let p = i.get(&all).clone();
            let Some((parent, key)) = split_pointer(&p) else {
                return;
            };
            let copy = doc.pointer(&p).unwrap().clone();
            match doc.pointer_mut(parent).unwrap() {
                Json::Array(items) => {
                    let n = key.parse::<usize>().unwrap_or(0).min(items.len());
                    items.insert(n, copy);
                }
                Json::Object(map) => {
                    map.insert(format!("{key}_copy"), copy);
                }
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// YAML text from JSON values
// ---------------------------------------------------------------------------------------------

fn yaml_scalar(value: &Json) -> String {
    match value {
        Json::String(s) => serde_json::to_string(s).unwrap(),
        other => other.to_string(),
    }
}

fn yaml_block(value: &Json, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Json::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                out.push_str(&pad);
                out.push_str(&serde_json::to_string(k).unwrap());
                out.push(':');
                yaml_child(v, indent + 2, out);
            }
        }
        Json::Array(items) if !items.is_empty() => {
            for v in items {
                out.push_str(&pad);
                out.push('-');
                yaml_child(v, indent + 2, out);
            }
        }
        Json::Object(_) => out.push_str(&format!("{pad}{{}}\n")),
        Json::Array(_) => out.push_str(&format!("{pad}[]\n")),
        scalar => out.push_str(&format!("{pad}{}\n", yaml_scalar(scalar))),
    }
}

fn yaml_child(value: &Json, indent: usize, out: &mut String) {
    match value {
        Json::Object(map) if !map.is_empty() => {
            out.push('\n');
            yaml_block(value, indent, out);
        }
        Json::Array(items) if !items.is_empty() => {
            out.push('\n');
            yaml_block(value, indent, out);
        }
        Json::Object(_) => out.push_str(" {}\n"),
        Json::Array(_) => out.push_str(" []\n"),
        scalar => {
            out.push(' ');
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
}

/// YAML text of a value: block style, pretty JSON (flow YAML) or one-line JSON.
fn to_yaml(value: &Json, style: u8) -> String {
    match style % 3 {
        0 => {
            let mut out = String::new();
            yaml_block(value, 0, &mut out);
            out
        }
        1 => serde_json::to_string_pretty(value).unwrap(),
        _ => serde_json::to_string(value).unwrap(),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The loader
// ---------------------------------------------------------------------------------------------

/// YAML-ish tokens for text that is close to YAML without being generated from a value.
const YAML_TOKENS: &[&str] = &[
    "- ",
    ": ",
    ":",
    "\n",
    "\r\n",
    "  ",
    "    ",
    "\t",
    "{",
    "}",
    "[",
    "]",
    ", ",
    "&a ",
    "*a",
    "*b",
    "!!str ",
    "!!binary ",
    "!custom ",
    "'",
    "\"",
    "# c",
    "|",
    "|-\n",
    ">",
    "---\n",
    "...\n",
    "? ",
    "%YAML 1.2\n",
    "%TAG ! tag:x,2024:\n",
    "<<: ",
    "id",
    "openai",
    "operations",
    "match",
    "path",
    "/v1/{x}",
    "$.a[*]",
    "stream",
    "fold",
    "null",
    "~",
    "1e400",
    "0x1F",
    ".inf",
    "é",
    "\u{feff}",
    "\u{0}",
];

fn arb_text() -> BoxedStrategy<String> {
    prop_oneof![
        1 => any::<String>(),
        1 => prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        3 => prop::collection::vec(select(YAML_TOKENS), 0..80).prop_map(|t| t.concat()),
        3 => (arb_json(), 0u8..3).prop_map(|(v, style)| to_yaml(&v, style)),
        2 => (prop::collection::vec((arb_key(), arb_json()), 0..6), 0u8..3).prop_map(|(kv, style)| {
            let mut map: Map<String, Json> = kv.into_iter().collect();
            map.insert("id".into(), json!("x"));
            to_yaml(&Json::Object(map), style)
        }),
    ]
    .boxed()
}

/// Strings put where the specs have JSONPaths, templates, fold targets, routes, regexes and
/// enumerations.
fn arb_spec_string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "\\$[a-z0-9_.*?@'\"=<>!()&| ,\\[\\]{}#~-]{0,24}",
        2 => "[a-z_.{}# $\\[\\]0-9-]{0,24}",
        2 => "(\\{[a-z._]{0,10}\\}| |[a-z]{1,5}){0,5}",
        2 => "(/(\\{[a-z_]{0,4}\\}|[a-z:]{0,5}){0,3}){0,4}",
        3 => select(&[
            "$", "$.", "$[", "$..*", "$[?@.a==1]", "$[?(@.type == 'x')]", "$.a[-1]", "$.a[0:2]",
            "$['a']", "$[\"a\"]", "$.*", "$.a.b[*].c", "$[*]", "choices[{$.index}]", "a[#]",
            "a[-1]", "a[99999999999999999999]", "a[{$.b[}]", "a.", ".a", "a..b", "{gen_ai.request.model}",
            "{", "}", "{}", "/v1/{x}/{x}", "/a/{b}{c}", "/{}", "v1", "/a?b=c", "^[", "(?P<x>",
            "(a{1000}){1000}", "sse", "ndjson", "aws_eventstream", "json_array", "base64_json",
            "json_text", "string_array", "parse_json", "int", "openai", "anthropic", "CLIENT",
            "INTERNAL", "histogram", "counter", "POST", "get", "*", "*.x.com", "gpt-4o*",
        ][..])
        .prop_map(str::to_string),
        1 => arb_string(),
    ]
    .boxed()
}

/// Checks the load contract: no panic; an `Err` has diagnostics, each naming one of the given
/// files, at a line and column ≥ 1 within the file, with a message. Returns the catalog when the
/// sources load.
fn check_load(sources: &[Source]) -> Result<Option<Catalog>, TestCaseError> {
    let diags = match Catalog::from_sources(sources) {
        Ok(catalog) => return Ok(Some(catalog)),
        Err(diags) => diags,
    };
    prop_assert!(!diags.is_empty());
    let _ = diags.to_string();
    for d in diags.iter() {
        let source = sources.iter().find(|s| s.name == d.file);
        prop_assert!(
            source.is_some(),
            "diagnostic names a file that was not given: {d:?}"
        );
        prop_assert!(d.line >= 1 && d.col >= 1, "position below 1:1: {d:?}");
        // YAML line breaks: `\n`, `\r\n` and a lone `\r`.
        let lines = source
            .unwrap()
            .text
            .replace("\r\n", "\n")
            .split(['\n', '\r'])
            .count();
        prop_assert!(
            d.line <= lines + 1,
            "line {} beyond the {lines} lines of {}: {d}",
            d.line,
            d.file
        );
        prop_assert!(!d.message.is_empty(), "empty message: {d:?}");
    }
    Ok(None)
}

/// Whether a URL built by `url_of` for this route must match it: plain host and path text.
fn plain_route(provider: &Provider, route: &Route) -> bool {
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~:*".contains(&b))
    };
    provider.hosts.iter().all(|h| plain(h))
        && route.template.segments.iter().flatten().all(|p| match p {
            Piece::Literal(text) => plain(text),
            Piece::Capture(_) => true,
        })
}

proptest! {
    #![proptest_config(config(4096))]

    /// Arbitrary text, token soup and generated YAML documents.
    #[test]
    fn loader_survives_arbitrary_text(text in arb_text(), name in select(&["providers/x.yaml", "x.yaml", "dir/sub/openai.yml", "weird name.yaml", ""][..])) {
        check_load(&[Source { name: name.to_string(), text }])?;
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Bundled provider specs edited: keys deleted or renamed, types swapped, random strings as
    /// JSONPaths, templates, targets and routes; loaded with `openai.yaml` (which several extend)
    /// and some providers that extend it; emitted as block YAML, pretty JSON or one-line JSON.
    /// When the edited spec still loads, its rules run on arbitrary bodies and streams through
    /// every operation without a panic, and `extract` finds each operation from its URL.
    #[test]
    fn loader_survives_mutated_provider_specs(
        file in select(SPEC_FILES),
        edits in prop::collection::vec(arb_edit(arb_spec_string()), 1..6),
        style in 0u8..3,
        extra in prop::collection::vec(any::<bool>(), 3),
        request in arb_top_json(),
        response in arb_top_json(),
        chunks in prop::collection::vec(arb_chunk(), 0..4),
        host_pick in any::<Index>(),
    ) {
        let mut doc = spec_doc(file);
        for edit in &edits {
            apply_edit(&mut doc, edit);
        }
        let mut sources = vec![Source { name: format!("providers/{file}"), text: to_yaml(&doc, style) }];
        let others = ["openai.yaml", "groq.yaml", "deepseek.yaml", "xai.yaml"];
        for (i, other) in others.iter().enumerate() {
            let wanted = i == 0 || extra[i - 1];
            if wanted && *other != file {
                sources.push(Source { name: format!("providers/{other}"), text: bundled_text(other).to_string() });
            }
        }
        let Some(loaded) = check_load(&sources)? else { return Ok(()) };
        let stem = file.trim_end_matches(".yaml");
        for provider in loaded.providers().iter().filter(|p| &*p.id == stem) {
            for op in &provider.operations {
                for route in &op.routes {
                    let mut exchange = Exchange {
                        method: route.method.clone(),
                        url: url_of(route, &host_of(provider, host_pick), "Q~Q"),
                        status: 200,
                        request: serde_json::to_vec(&request).unwrap(),
                        response: serde_json::to_vec(&response).unwrap(),
                        content_type: Some("application/json".into()),
                        response_headers: vec![],
                    };
                    let out = extract_with(&loaded, &exchange, &ExtractOptions::default());
                    // A host shared with another provider (a child spec that lost its own
                    // `upstream`) goes to the base provider, whose routes may not match.
                    let own_host = loaded
                        .provider_for_host(&host_of(provider, host_pick))
                        .is_none_or(|p| p.id == provider.id);
                    if own_host && plain_route(provider, route) {
                        prop_assert!(out.is_ok(), "{} {}: {:?}", exchange.method, exchange.url, out.err());
                    }
                    if let Some(stream) = &op.stream {
                        exchange.response = encode_stream(stream, &chunks);
                        exchange.content_type = Some(content_type_of(stream.framing).into());
                        let _ = extract_with(&loaded, &exchange, &ExtractOptions::default());
                    }
                }
            }
        }
    }
}

/// Bundled dialect files (data-defined attribute renderings).
fn dialect_docs() -> &'static [(String, Json)] {
    static DOCS: OnceLock<Vec<(String, Json)>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let mut docs: Vec<(String, Json)> = std::fs::read_dir("dialects")
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (
                    p.display().to_string(),
                    specter::yaml::parse(&text).unwrap().value,
                )
            })
            .collect();
        docs.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(!docs.is_empty());
        docs
    })
}

proptest! {
    #![proptest_config(config(256))]

    /// Dialect files with random edits (key templates such as `a.{i}.{j}.{k}`, swapped types):
    /// parsing never panics, and a dialect that parses renders every recorded exchange.
    #[test]
    fn dialects_survive_mutation(
        pick in any::<Index>(),
        edits in prop::collection::vec(arb_edit(prop_oneof![
            "([a-z._]{0,4}(\\{[ijk]?\\}|\\{|\\})?){0,4}",
            arb_string(),
        ].boxed()), 0..5),
        style in 0u8..3,
        fixture in any::<Index>(),
    ) {
        let (name, doc) = pick.get(dialect_docs());
        let mut doc = doc.clone();
        for edit in &edits {
            apply_edit(&mut doc, edit);
        }
        let Ok(dialect) = Dialect::parse(name, &to_yaml(&doc, style)) else { return Ok(()) };
        let fixture = fixture.get(fixtures());
        let exchange = Exchange {
            method: "POST".into(),
            url: fixture.url.clone(),
            status: fixture.status,
            request: fixture.request.clone(),
            response: fixture.response.clone(),
            content_type: fixture.content_type.clone(),
            response_headers: fixture.response_headers.clone(),
        };
        let options = ExtractOptions { dialects: vec![Dialect::Semconv, dialect], content: ContentPolicy::default(), provider: None };
        run_extract(&exchange, &options, &fixture.provider)?;
    }
}

#[test]
fn unedited_specs_reemitted_as_yaml_still_load() {
    // The emitters used above are faithful: every bundled spec, re-emitted in each style, loads.
    for style in 0..3 {
        let sources: Vec<Source> = specter::catalog::bundled::PROVIDERS
            .iter()
            .map(|(name, _)| Source {
                name: format!("providers/{name}"),
                text: to_yaml(&spec_doc(name), style),
            })
            .collect();
        if let Err(d) = Catalog::from_sources(&sources) {
            panic!("style {style}: {d}");
        }
    }
}

/// Runs `body` in a child process (this test binary, filtered to `test`), so that a stack
/// overflow, which aborts the process, fails one test instead of killing the run.
fn in_child_process(test: &str, body: impl FnOnce()) {
    if std::env::var_os("SPECTER_PROPERTIES_CHILD").is_some() {
        body();
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            test,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SPECTER_PROPERTIES_CHILD", "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{test} failed in its child process ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn deeply_nested_yaml_is_a_diagnostic_not_a_stack_overflow() {
    in_child_process(
        "deeply_nested_yaml_is_a_diagnostic_not_a_stack_overflow",
        || {
            // 4 KB of `- - - - … x`: 2,000 nested block sequences.
            let text = format!("{}x", "- ".repeat(2_000));
            let result = Catalog::from_sources(&[Source {
                name: "deep.yaml".into(),
                text,
            }]);
            let diags = result.expect_err("not a provider");
            assert!(diags.iter().all(|d| d.file == "deep.yaml" && d.line >= 1));
        },
    );
}

#[test]
fn yaml_aliases_cannot_expand_a_small_file_into_a_huge_document() {
    // Five levels of ten aliases each ("billion laughs"); nine levels (463 bytes) would need
    // about 10^9 nodes and tens of GB.
    let mut text = String::from("x0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..5 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("x{i}: &a{i} [{refs}]\n"));
    }
    fn nodes(v: &Json) -> usize {
        1 + match v {
            Json::Array(a) => a.iter().map(nodes).sum(),
            Json::Object(m) => m.values().map(nodes).sum(),
            _ => 0,
        }
    }
    if let Ok(doc) = specter::yaml::parse(&text) {
        let n = nodes(&doc.value);
        assert!(
            n <= 64 * text.len(),
            "{} bytes of YAML became {n} JSON nodes",
            text.len()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Extraction through every operation
// ---------------------------------------------------------------------------------------------

/// A request or response body.
#[derive(Debug, Clone)]
enum Body {
    Json(Json),
    Raw(Vec<u8>),
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Json(v) => serde_json::to_vec(v).unwrap(),
            Body::Raw(b) => b.clone(),
        }
    }
}

fn arb_body() -> BoxedStrategy<Body> {
    prop_oneof![
        8 => arb_top_json().prop_map(Body::Json),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Body::Raw),
        1 => Just(Body::Raw(Vec::new())),
    ]
    .boxed()
}

/// Event names that stream rules react to, and others.
const EVENTS: &[&str] = &[
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "error",
    "ping",
    "completion",
    "messageStart",
    "contentBlockStart",
    "contentBlockDelta",
    "contentBlockStop",
    "messageStop",
    "metadata",
    "chunk",
    "response.completed",
    "content-delta",
    "stream-end",
    "message-end",
    "throttlingException",
];

/// One stream chunk: event name, JSON, and how it is sent (0: an exception message in the AWS
/// event stream, 1: the done sentinel instead of the JSON, 2: a payload that is not base64, else
/// the JSON).
#[derive(Debug, Clone)]
struct Chunk {
    event: Option<String>,
    value: Json,
    kind: u8,
}

fn arb_chunk() -> BoxedStrategy<Chunk> {
    (
        prop::option::of(prop_oneof![
            3 => select(EVENTS).prop_map(str::to_string),
            1 => "[a-zA-Z_.-]{1,12}",
        ]),
        arb_top_json(),
        0u8..12,
    )
        .prop_map(|(event, value, kind)| Chunk { event, value, kind })
        .boxed()
}

/// Serialises chunks in a stream's framing (with its payload wrapping and done sentinel).
fn encode_stream(stream: &Stream, chunks: &[Chunk]) -> Vec<u8> {
    let done = stream.done.clone().unwrap_or_else(|| "[DONE]".into());
    let payload = |value: &Json, kind: u8| -> Vec<u8> {
        let text = serde_json::to_vec(value).unwrap();
        match &stream.payload {
            Some(_) if kind == 2 => serde_json::to_vec(&json!({"bytes": "not base64!"})).unwrap(),
            Some((_, PayloadEncoding::Base64Json)) => serde_json::to_vec(
                &json!({ "bytes": base64::engine::general_purpose::STANDARD.encode(&text) }),
            )
            .unwrap(),
            Some((_, PayloadEncoding::JsonText)) => {
                serde_json::to_vec(&json!({ "bytes": String::from_utf8(text).unwrap() })).unwrap()
            }
            None => text,
        }
    };
    let mut out = Vec::new();
    match stream.framing {
        Framing::Sse => {
            for c in chunks {
                if let Some(e) = &c.event {
                    out.extend_from_slice(format!("event: {e}\n").as_bytes());
                }
                let data = if c.kind == 1 {
                    done.clone().into_bytes()
                } else {
                    payload(&c.value, c.kind)
                };
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\n\n");
            }
        }
        Framing::Ndjson => {
            for c in chunks {
                out.extend_from_slice(&payload(&c.value, c.kind));
                out.push(b'\n');
            }
        }
        Framing::AwsEventstream => {
            for c in chunks {
                let event = c.event.clone().unwrap_or_else(|| "chunk".into());
                let message = if c.kind == 0 {
                    encode_event_message(
                        &[
                            (":message-type", "exception"),
                            (":exception-type", &event),
                            (":content-type", "application/json"),
                        ],
                        &serde_json::to_vec(&c.value).unwrap(),
                    )
                } else {
                    encode_event_message(
                        &[
                            (":message-type", "event"),
                            (":event-type", &event),
                            (":content-type", "application/json"),
                        ],
                        &payload(&c.value, c.kind),
                    )
                };
                out.extend_from_slice(&message);
            }
        }
        Framing::JsonArray => {
            out.push(b'[');
            for (i, c) in chunks.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b",\r\n");
                }
                out.extend_from_slice(&payload(&c.value, c.kind));
            }
            out.push(b']');
        }
    }
    out
}

fn content_type_of(framing: Framing) -> &'static str {
    match framing {
        Framing::Sse => "text/event-stream; charset=utf-8",
        Framing::Ndjson => "application/x-ndjson",
        Framing::AwsEventstream => "application/vnd.amazon.eventstream",
        Framing::JsonArray => "application/json; charset=UTF-8",
    }
}

/// Extraction options exercised: the default, truncation and redaction, no content with every
/// dialect, every dialect.
fn options() -> &'static [ExtractOptions] {
    static OPTIONS: OnceLock<Vec<ExtractOptions>> = OnceLock::new();
    OPTIONS.get_or_init(|| {
        let dialects: Vec<Dialect> = ["semconv", "agentops", "openinference"]
            .iter()
            .map(|n| Dialect::named(n).unwrap())
            .collect();
        vec![
            ExtractOptions::default(),
            ExtractOptions {
                dialects: vec![Dialect::Semconv],
                content: ContentPolicy {
                    capture: Capture::SpanAndEvent,
                    max_length: Some(3),
                    redactions: vec![Redaction {
                        pattern: regex::Regex::new("[a-z]+|😀").unwrap(),
                        replacement: "*".into(),
                    }],
                },
                provider: None,
            },
            ExtractOptions {
                dialects: dialects.clone(),
                content: ContentPolicy {
                    capture: Capture::NoContent,
                    ..ContentPolicy::default()
                },
                provider: None,
            },
            ExtractOptions {
                dialects,
                content: ContentPolicy {
                    capture: Capture::EventOnly,
                    max_length: Some(0),
                    redactions: Vec::new(),
                },
                provider: None,
            },
        ]
    })
}

/// One of the provider's hosts (`*` made `x`).
fn host_of(provider: &Provider, pick: Index) -> String {
    if provider.hosts.is_empty() {
        "unknown.example".to_string()
    } else {
        pick.get(&provider.hosts).replace('*', "x")
    }
}

/// The URL of a route on a host, with its captures filled with `value` (percent-encoded).
fn url_of(route: &Route, host: &str, value: &str) -> String {
    let base = if host == "localhost" || host == "127.0.0.1" {
        format!("http://{host}:11434")
    } else {
        format!("https://{host}")
    };
    let encode = |text: &str| {
        percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut path = String::new();
    for segment in &route.template.segments {
        path.push('/');
        for piece in segment {
            match piece {
                Piece::Literal(text) => path.push_str(text),
                Piece::Capture(_) => path.push_str(&encode(value)),
            }
        }
    }
    let query: Vec<String> = route
        .query
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    if query.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{}", query.join("&"))
    }
}

#[derive(Debug, Clone)]
struct Exchange {
    method: String,
    url: String,
    status: u16,
    request: Vec<u8>,
    response: Vec<u8>,
    content_type: Option<String>,
    response_headers: Vec<(String, String)>,
}

fn run_extract(
    exchange: &Exchange,
    options: &ExtractOptions,
    provider: &str,
) -> Result<Json, TestCaseError> {
    let out = extract_with(catalog(), exchange, options);
    prop_assert!(out.is_ok(), "{}: {:?}", exchange.url, out.err());
    let out = out.unwrap();
    prop_assert_eq!(&out["provider"], &json!(provider), "{}", exchange.url);
    Ok(out)
}

fn extract_with(
    catalog: &Catalog,
    exchange: &Exchange,
    options: &ExtractOptions,
) -> Result<Json, specter::offline::ExtractError> {
    let recorded = Recorded {
        method: &exchange.method,
        url: &exchange.url,
        status: exchange.status,
        request: &exchange.request,
        response: &exchange.response,
        content_type: exchange.content_type.as_deref(),
        request_headers: &[],
        response_headers: &exchange.response_headers,
    };
    extract(catalog, &recorded, options)
}

fn arb_status() -> BoxedStrategy<u16> {
    prop_oneof![
        4 => Just(200u16),
        1 => select(&[201u16, 204, 400, 401, 404, 429, 500, 529][..]),
        1 => any::<u16>(),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config(192))]

    /// Arbitrary JSON (and non-JSON) bodies through every operation of every bundled provider,
    /// as plain responses and, with more chunks, as streams in the operation's framing (content
    /// type known, or the stream decided by the request with `"stream": true`).
    #[test]
    fn every_operation_extracts_arbitrary_bodies(
        request in arb_body(),
        response in arb_body(),
        chunks in prop::collection::vec(arb_chunk(), 0..6),
        status in arb_status(),
        capture in "\\PC{1,8}",
        route_pick in any::<Index>(),
        host_pick in any::<Index>(),
        content_type_known in any::<bool>(),
        options_pick in any::<Index>(),
    ) {
        let options = options_pick.get(options());
        // The stream carries the request and response values as chunks too, then the others.
        let mut chunks = chunks;
        for body in [&response, &request] {
            if let Body::Json(value) = body {
                chunks.insert(0, Chunk { event: None, value: value.clone(), kind: 11 });
            }
        }
        for provider in catalog().providers() {
            for op in &provider.operations {
                let route = route_pick.get(&op.routes);
                let url = url_of(route, &host_of(provider, host_pick), &capture);
                let plain = Exchange {
                    method: route.method.clone(),
                    url: url.clone(),
                    status,
                    request: request.bytes(),
                    response: response.bytes(),
                    content_type: Some("application/json".into()),
                    response_headers: vec![],
                };
                run_extract(&plain, options, &provider.id)?;
                let Some(stream) = &op.stream else { continue };
                let mut request_json = match &request { Body::Json(v) => v.clone(), Body::Raw(_) => json!({}) };
                if let Json::Object(map) = &mut request_json {
                    map.insert("stream".into(), json!(true));
                }
                let ct = content_type_of(stream.framing);
                let streamed = Exchange {
                    method: route.method.clone(),
                    url,
                    status: if content_type_known { 200 } else { status },
                    request: serde_json::to_vec(&request_json).unwrap(),
                    response: encode_stream(stream, &chunks),
                    content_type: content_type_known.then(|| ct.to_string()),
                    response_headers: if content_type_known { vec![] } else { vec![("Content-Type".into(), "application/octet-stream".into())] },
                };
                let out = run_extract(&streamed, options, &provider.id)?;
                if content_type_known && stream.framing != Framing::JsonArray && chunks.first().is_some_and(|c| c.kind > 2) {
                    prop_assert!(!out["stream"].is_null(), "{}: the stream was not read as one", streamed.url);
                }
            }
        }
    }
}

#[test]
fn every_route_finds_its_operation() {
    // With its provider's host, each route's URL (captures filled) selects its own operation; with
    // an unknown host some provider's operation; through the gateway's `/{provider}/...` its own.
    let mut wrong = Vec::new();
    for provider in catalog().providers() {
        for op in &provider.operations {
            for route in &op.routes {
                for pick in 0..provider.hosts.len() {
                    let url = url_of(route, &provider.hosts[pick].replace('*', "x"), "Q~Q");
                    let t = HttpTarget::parse(&url).unwrap();
                    let found = catalog().find(&route.method, Some(&t.host), &t.path, &t.query);
                    match found {
                        Some(m)
                            if m.operation.provider == provider.id && m.operation.id == op.id => {}
                        other => wrong.push(format!(
                            "{url} → {:?}",
                            other.map(|m| format!("{}/{}", m.operation.provider, m.operation.id))
                        )),
                    }
                    assert!(
                        catalog()
                            .find(&route.method, None, &t.path, &t.query)
                            .is_some(),
                        "{url}"
                    );
                    let local = catalog().find_in(&provider.id, &route.method, &t.path, &t.query);
                    assert!(
                        local.is_some_and(|m| m.operation.id == op.id),
                        "/{}{} does not select {}",
                        provider.id,
                        t.path,
                        op.id
                    );
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A recorded exchange of `tests/fixtures/`.
#[derive(Debug, Clone)]
struct Fixture {
    name: String,
    provider: String,
    url: String,
    status: u16,
    streaming: bool,
    request: Vec<u8>,
    response: Vec<u8>,
    content_type: Option<String>,
    response_headers: Vec<(String, String)>,
}

fn fixtures() -> &'static [Fixture] {
    static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let mut out = Vec::new();
        let mut dirs: Vec<_> = std::fs::read_dir("tests/fixtures")
            .unwrap()
            .flat_map(|p| std::fs::read_dir(p.unwrap().path()).unwrap())
            .map(|c| c.unwrap().path())
            .filter(|d| d.join("meta.yaml").is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            let meta =
                specter::yaml::parse(&std::fs::read_to_string(dir.join("meta.yaml")).unwrap())
                    .unwrap()
                    .value;
            let text = |k: &str| meta[k].as_str().map(str::to_string);
            let read = |f: Option<String>| {
                f.map(|f| std::fs::read(dir.join(f)).unwrap_or_default())
                    .unwrap_or_default()
            };
            let response_headers = meta["response_headers"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str().map_or_else(|| v.to_string(), str::to_string),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Fixture {
                name: dir.display().to_string(),
                provider: text("provider").unwrap(),
                url: text("url").unwrap(),
                status: meta["status"].as_u64().unwrap() as u16,
                streaming: meta["streaming"] == json!(true),
                request: read(text("request_file").or_else(|| Some("request.json".into()))),
                response: read(text("response_file")),
                content_type: text("response_content_type"),
                response_headers,
            });
        }
        assert!(out.len() > 100, "{} fixtures", out.len());
        out
    })
}

/// Re-encodes frames in a framing (the inverse of the deframers, for well-formed frames).
fn encode_frames(framing: Framing, frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    match framing {
        Framing::Sse => {
            for f in frames {
                if let Some(e) = &f.event {
                    out.extend_from_slice(format!("event: {e}\n").as_bytes());
                }
                for line in String::from_utf8_lossy(&f.data).split('\n') {
                    out.extend_from_slice(format!("data: {line}\n").as_bytes());
                }
                out.push(b'\n');
            }
        }
        Framing::Ndjson => {
            for f in frames {
                out.extend_from_slice(&f.data);
                out.push(b'\n');
            }
        }
        Framing::AwsEventstream => {
            for f in frames {
                let event = f.event.clone().unwrap_or_default();
                let headers: Vec<(&str, &str)> = if f.exception {
                    vec![(":message-type", "exception"), (":exception-type", &event)]
                } else {
                    vec![(":message-type", "event"), (":event-type", &event)]
                };
                out.extend_from_slice(&encode_event_message(&headers, &f.data));
            }
        }
        Framing::JsonArray => {
            out.push(b'[');
            for (i, f) in frames.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&f.data);
            }
            out.push(b']');
        }
    }
    out
}

fn deframe(framing: Framing, pieces: &[&[u8]]) -> (Vec<Frame>, u64) {
    let mut deframer = Deframer::new(framing);
    let mut out = Vec::new();
    for piece in pieces {
        deframer.push(piece, &mut out);
    }
    deframer.finish(&mut out);
    (out, deframer.dropped())
}

/// Applies `edits` to a frame's JSON (inside its base64 or text payload wrapper when the stream
/// has one).
fn edit_frame(stream: &Stream, frame: &mut Frame, edits: &[Edit]) {
    let Ok(mut value) = serde_json::from_slice::<Json>(&frame.data) else {
        return;
    };
    let wrapped = match &stream.payload {
        Some((path, encoding)) => path
            .first(&value)
            .and_then(Json::as_str)
            .and_then(|text| match encoding {
                PayloadEncoding::Base64Json => base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Json>(&b).ok()),
                PayloadEncoding::JsonText => serde_json::from_str(text).ok(),
            })
            .map(|inner| {
                (
                    path.as_str().trim_start_matches("$.").to_string(),
                    *encoding,
                    inner,
                )
            }),
        None => None,
    };
    match wrapped {
        Some((key, encoding, mut inner)) if value.is_object() => {
            for e in edits {
                apply_edit(&mut inner, e);
            }
            let text = serde_json::to_string(&inner).unwrap();
            value[key] = match encoding {
                PayloadEncoding::Base64Json => {
                    Json::String(base64::engine::general_purpose::STANDARD.encode(text))
                }
                PayloadEncoding::JsonText => Json::String(text),
            };
        }
        _ => {
            for e in edits {
                apply_edit(&mut value, e);
            }
        }
    }
    frame.data = serde_json::to_vec(&value).unwrap();
}

proptest! {
    #![proptest_config(config(512))]

    /// Every recorded exchange with random types swapped into its request body, its response
    /// body, and one chunk of its stream (the stream re-encoded in its framing).
    #[test]
    fn recorded_exchanges_with_types_swapped(
        pick in any::<Index>(),
        request_edits in prop::collection::vec(arb_edit(arb_string()), 0..4),
        response_edits in prop::collection::vec(arb_edit(arb_string()), 0..4),
        chunk_pick in any::<Index>(),
        options_pick in any::<Index>(),
    ) {
        let fixture = pick.get(fixtures());
        let target = HttpTarget::parse(&fixture.url).unwrap();
        let found = catalog().find("POST", Some(&target.host), &target.path, &target.query).unwrap();
        let mutate = |bytes: &[u8], edits: &[Edit]| -> Vec<u8> {
            match serde_json::from_slice::<Json>(bytes) {
                Ok(mut v) => {
                    for e in edits {
                        apply_edit(&mut v, e);
                    }
                    serde_json::to_vec(&v).unwrap()
                }
                Err(_) => bytes.to_vec(),
            }
        };
        let request = mutate(&fixture.request, &request_edits);
        let response = match (&found.operation.stream, fixture.streaming) {
            (Some(stream), true) => {
                let (mut frames, _) = deframe(stream.framing, &[&fixture.response]);
                if !frames.is_empty() {
                    let n = chunk_pick.index(frames.len());
                    edit_frame(stream, &mut frames[n], &response_edits);
                }
                encode_frames(stream.framing, &frames)
            }
            _ => mutate(&fixture.response, &response_edits),
        };
        let exchange = Exchange {
            method: "POST".into(),
            url: fixture.url.clone(),
            status: fixture.status,
            request,
            response,
            content_type: fixture.content_type.clone(),
            response_headers: fixture.response_headers.clone(),
        };
        run_extract(&exchange, options_pick.get(options()), &fixture.provider)
            .map_err(|e| TestCaseError::fail(format!("{}: {e}", fixture.name)))?;
    }
}

#[test]
fn reencoded_fixture_streams_fold_like_the_recordings() {
    // The re-encoding used above keeps what matters: unedited, a recorded stream re-encoded in
    // its framing extracts to the same span.
    for fixture in fixtures().iter().filter(|f| f.streaming) {
        let target = HttpTarget::parse(&fixture.url).unwrap();
        let found = catalog()
            .find("POST", Some(&target.host), &target.path, &target.query)
            .unwrap();
        let Some(stream) = &found.operation.stream else {
            continue;
        };
        let (frames, _) = deframe(stream.framing, &[&fixture.response]);
        let mut exchange = Exchange {
            method: "POST".into(),
            url: fixture.url.clone(),
            status: fixture.status,
            request: fixture.request.clone(),
            response: fixture.response.clone(),
            content_type: fixture.content_type.clone(),
            response_headers: fixture.response_headers.clone(),
        };
        let original =
            run_extract(&exchange, &ExtractOptions::default(), &fixture.provider).unwrap();
        exchange.response = encode_frames(stream.framing, &frames);
        let again = run_extract(&exchange, &ExtractOptions::default(), &fixture.provider).unwrap();
        assert_eq!(original["span"], again["span"], "{}", fixture.name);
    }
}

// ---------------------------------------------------------------------------------------------
// Small parsers: URLs, route templates, JSONPaths
// ---------------------------------------------------------------------------------------------

#[test]
fn ipv6_host_without_port_parses() {
    let t = HttpTarget::parse("http://[::1]/api/chat");
    assert!(t.is_some(), "`http://[::1]/api/chat` is not parsed");
    let t = t.unwrap();
    assert_eq!(
        (t.host.as_str(), t.port(), t.path.as_str()),
        ("[::1]", Some(80), "/api/chat")
    );
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn url_parsing_never_panics(url in prop_oneof![
        any::<String>(),
        "(https?|HTTP|ftp)://[a-zA-Z0-9.:@\\[\\]%_-]{0,20}(/[^?#]{0,10}){0,3}(\\?[a-z=&%+]{0,12})?(#.*)?",
    ]) {
        if let Some(t) = HttpTarget::parse(&url) {
            prop_assert!(t.path.starts_with('/') || !t.path.is_empty());
            let _ = t.port();
        }
    }

    #[test]
    fn route_templates_never_panic(source in prop_oneof![any::<String>(), "(/(\\{[a-z_]{0,3}\\}?|[a-z:.{}-]{0,4}){0,3}){0,4}"], path in "(/[a-z{}:%0-9]{0,5}){0,5}") {
        if let Ok(t) = parse_template(&source) {
            let _ = t.matches(&path);
        }
    }

    /// A template filled with percent-encoded values matches its own path and gives the values
    /// back.
    #[test]
    fn route_templates_match_their_own_paths(
        segments in prop::collection::vec(prop::collection::vec((any::<bool>(), "[a-z0-9]{0,4}"), 1..4), 1..5),
        values in prop::collection::vec("\\PC{1,6}", 16),
        separators in prop::collection::vec(select(&[":", "-", ".", "_", "~"][..]), 16),
    ) {
        // A segment alternates literals and captures; a literal after a capture starts with a
        // separator, which percent-encoding never produces, so the capture's end is unambiguous.
        let mut source = String::new();
        let mut path = String::new();
        let mut expected = Vec::new();
        let mut n = 0;
        for segment in &segments {
            source.push('/');
            path.push('/');
            let mut after_capture = false;
            for (capture, literal) in segment {
                if *capture && !after_capture && n < values.len() {
                    let name = format!("c{n}");
                    source.push_str(&format!("{{{name}}}"));
                    path.push_str(&percent_encoding::utf8_percent_encode(&values[n], percent_encoding::NON_ALPHANUMERIC).to_string());
                    expected.push((name, values[n].clone()));
                    n += 1;
                    after_capture = true;
                } else {
                    let text = if after_capture { format!("{}{literal}", separators[n % 16]) } else { literal.clone() };
                    source.push_str(&text);
                    path.push_str(&text);
                    after_capture = false;
                }
            }
        }
        let template = parse_template(&source);
        prop_assert!(template.is_ok(), "{source}: {:?}", template.err());
        prop_assert_eq!(template.unwrap().matches(&path), Some(expected), "{} / {}", source, path);
    }

    #[test]
    fn jsonpaths_never_panic(source in arb_spec_string(), doc in arb_json()) {
        if let Ok(path) = JsonPath::parse(&source) {
            let mut out = Vec::new();
            path.select(&doc, &mut out);
            let first = path.first(&doc);
            prop_assert_eq!(first, out.first().copied(), "{}", source);
            if path.is_singular() {
                prop_assert!(out.len() <= 1, "{} is singular but selected {:?}", source, out);
            }
        }
    }

    /// The plain-step fast path selects what the general RFC 9535 evaluator selects.
    #[test]
    fn jsonpath_fast_path_agrees_with_the_general_evaluator(
        steps in prop::collection::vec(prop_oneof![
            select(KEYS).prop_map(|k| format!(".{k}")),
            "[a-z_][a-z0-9_]{0,5}".prop_map(|k| format!(".{k}")),
            select(KEYS).prop_map(|k| format!("['{k}']")),
            "[a-z -]{0,5}".prop_map(|k| format!("['{k}']")),
            (-3i64..4).prop_map(|i| format!("[{i}]")),
            Just("[*]".to_string()),
            Just(".*".to_string()),
        ], 0..5),
        doc in arb_json(),
    ) {
        let source = format!("${}", steps.concat());
        let path = JsonPath::parse(&source).unwrap();
        let mut fast = Vec::new();
        path.select(&doc, &mut fast);
        let general = jsonpath_rust::query::js_path_vals(&source, &doc).unwrap();
        prop_assert_eq!(fast, general, "{}", source);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Deframers: split anywhere, same frames; well-formed streams, exact frames
// ---------------------------------------------------------------------------------------------

const SSE_TOKENS: &[&str] = &[
    "data:",
    "data: ",
    "event:",
    "event: ",
    "id: 1",
    "retry: 5",
    ":",
    ": ping",
    "\n",
    "\r",
    "\r\n",
    "\n\n",
    "\r\r",
    " ",
    "{\"a\":1}",
    "[DONE]",
    "é",
    "😀",
    "\u{0}",
    "x",
    "data",
    "\u{feff}",
];
const NDJSON_TOKENS: &[&str] = &[
    "{\"a\":1}",
    "\n",
    "\r\n",
    "\r",
    " ",
    "\t",
    "[1,2]",
    "x",
    "\"s\"",
    "{",
    "}",
];
const JSON_ARRAY_TOKENS: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    "\"",
    "\\",
    "\\\"",
    ",",
    " ",
    "\r\n",
    "a",
    "1",
    ":",
    "\"x]\"",
    "{\"a\":[1,{\"b\":\"]\"}]}",
    "\"\\\\\"",
];

fn soup(tokens: &'static [&'static str]) -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(select(tokens), 0..80)
        .prop_map(|t| t.concat().into_bytes())
        .boxed()
}

/// AWS event-stream messages, some corrupted (a flipped byte, truncated, garbage in between).
fn arb_event_stream_bytes() -> BoxedStrategy<Vec<u8>> {
    let message = (
        select(&["messageStart", "contentBlockDelta", "metadata", "chunk", ""][..]),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..40),
        0u8..10,
        any::<Index>(),
        prop::collection::vec(any::<u8>(), 0..6),
    )
        .prop_map(|(event, exception, payload, corrupt, at, garbage)| {
            let headers: Vec<(&str, &str)> = if exception {
                vec![(":message-type", "exception"), (":exception-type", event)]
            } else {
                vec![
                    (":message-type", "event"),
                    (":event-type", event),
                    (":content-type", "application/json"),
                ]
            };
            let mut bytes = encode_event_message(&headers, &payload);
            match corrupt {
                0 => {
                    let i = at.index(bytes.len());
                    bytes[i] ^= 0x5a;
                }
                1 => bytes.truncate(at.index(bytes.len())),
                2 => bytes.extend_from_slice(&garbage),
                _ => {}
            }
            bytes
        });
    prop::collection::vec(message, 0..6)
        .prop_map(|m| m.concat())
        .boxed()
}

fn arb_framed_bytes() -> BoxedStrategy<(Framing, Vec<u8>)> {
    let framing = prop_oneof![
        Just(Framing::Sse),
        Just(Framing::Ndjson),
        Just(Framing::AwsEventstream),
        Just(Framing::JsonArray)
    ];
    let raw = (framing, prop::collection::vec(any::<u8>(), 0..400));
    prop_oneof![
        2 => raw,
        2 => soup(SSE_TOKENS).prop_map(|b| (Framing::Sse, b)),
        1 => soup(NDJSON_TOKENS).prop_map(|b| (Framing::Ndjson, b)),
        2 => soup(JSON_ARRAY_TOKENS).prop_map(|b| (Framing::JsonArray, b)),
        2 => arb_event_stream_bytes().prop_map(|b| (Framing::AwsEventstream, b)),
    ]
    .boxed()
}

/// `bytes` cut at the given points (no empty pieces).
fn split<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

proptest! {
    #![proptest_config(config(1024))]

    /// Arbitrary bytes split at arbitrary points give the frames (and dropped counts) of the
    /// unsplit input, also fed one byte at a time.
    #[test]
    fn deframers_do_not_depend_on_the_split(
        (framing, bytes) in arb_framed_bytes(),
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let whole = deframe(framing, &[&bytes]);
        let pieces = split(&bytes, &cuts);
        prop_assert_eq!(&deframe(framing, &pieces), &whole, "{:?} pieces {:?}", framing, pieces);
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        prop_assert_eq!(&deframe(framing, &bytewise), &whole, "{:?} byte by byte", framing);
    }

    /// Empty pushes between pieces change nothing (NDJSON, event stream and JSON array; SSE has
    /// a known bug, see `sse_empty_push_after_cr_does_not_split_an_event`).
    #[test]
    fn empty_pushes_change_nothing(
        (framing, bytes) in arb_framed_bytes().prop_filter("not sse", |(f, _)| *f != Framing::Sse),
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let whole = deframe(framing, &[&bytes]);
        let mut pieces: Vec<&[u8]> = Vec::new();
        for piece in split(&bytes, &cuts) {
            pieces.push(piece);
            pieces.push(&[]);
        }
        prop_assert_eq!(&deframe(framing, &pieces), &whole);
    }
}

#[test]
fn sse_empty_push_after_cr_does_not_split_an_event() {
    let input: &[u8] = b"data: a\r\ndata: b\r\n\r\n";
    let whole = deframe(Framing::Sse, &[input]);
    assert_eq!(whole.0.len(), 1);
    assert_eq!(whole.0[0].data, b"a\nb");
    // Cut after the first `\r`, with an empty chunk (as a body stream may yield) in between.
    let pieces: [&[u8]; 3] = [&input[..8], b"", &input[8..]];
    assert_eq!(deframe(Framing::Sse, &pieces), whole);
}

#[test]
fn sse_overlong_line_does_not_depend_on_the_split() {
    // One line longer than the 16 MiB limit, whose tail looks like a field.
    let mut input = b"data: ".to_vec();
    input.resize((16 << 20) + 1, b'a');
    let tail = input.len();
    input.extend_from_slice(b"data: injected\n\n");
    let whole = deframe(Framing::Sse, &[&input]);
    assert_eq!(whole.0, Vec::<Frame>::new(), "the overlong line is dropped");
    // Cut where the line's tail begins: the first piece alone is over the limit.
    let split = deframe(Framing::Sse, &[&input[..tail], &input[tail..]]);
    assert_eq!(split, whole, "cut after 16 MiB + 1 bytes of one line");
}

#[test]
fn sse_event_data_is_capped_like_a_line() {
    // 20 `data:` lines of 1 MiB each, then the blank line: one 20 MiB frame.
    let line = format!("data: {}\n", "a".repeat(1 << 20));
    let mut input = line.repeat(20).into_bytes();
    input.extend_from_slice(b"\n");
    let (frames, _) = deframe(Framing::Sse, &[&input]);
    let largest = frames.iter().map(|f| f.data.len()).max().unwrap_or(0);
    assert!(largest <= 16 << 20, "a frame of {largest} bytes");
}

#[test]
fn sse_leading_byte_order_mark_is_ignored() {
    let (frames, _) = deframe(Framing::Sse, &[b"\xef\xbb\xbfdata: x\n\n"]);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].data, b"x");
}

#[test]
fn json_array_top_level_string_with_bracket_keeps_later_elements() {
    let (frames, dropped) = deframe(Framing::JsonArray, &[b"[\"a]\", {\"x\": 1}]"]);
    assert!(
        frames.iter().any(|f| f.data == b"{\"x\": 1}") || dropped > 0,
        "the object after the string was lost without a trace: {frames:?}"
    );
}

/// A well-formed SSE event: optional name, data lines (no CR/LF inside).
#[derive(Debug, Clone)]
struct SseEvent {
    name: Option<String>,
    lines: Vec<String>,
    comment: bool,
}

fn arb_sse_events() -> BoxedStrategy<(Vec<SseEvent>, u8)> {
    let line = prop_oneof![
        "[^\r\n]{0,12}",
        select(
            &[
                "",
                " lead",
                "[DONE]",
                "{\"a\": 1}",
                "data: x",
                ":colon",
                "é😀"
            ][..]
        )
        .prop_map(str::to_string)
    ];
    let event = (
        prop::option::of("[a-z_.]{1,12}"),
        prop::collection::vec(line, 1..4),
        any::<bool>(),
    )
        .prop_map(|(name, lines, comment)| SseEvent {
            name,
            lines,
            comment,
        });
    (prop::collection::vec(event, 0..8), 0u8..3).boxed()
}

proptest! {
    #![proptest_config(config(512))]

    /// Generated SSE events, serialised with `\n`, `\r\n` or `\r` line endings and comments, are
    /// parsed back to exactly their events whatever the split.
    #[test]
    fn sse_frames_are_the_events_sent(
        (events, ending) in arb_sse_events(),
        cuts in prop::collection::vec(any::<Index>(), 0..16),
        last_blank in any::<bool>(),
    ) {
        let eol = ["\n", "\r\n", "\r"][ending as usize];
        let mut text = String::new();
        for (i, e) in events.iter().enumerate() {
            if e.comment {
                text.push_str(&format!(": keep-alive{eol}"));
            }
            if let Some(name) = &e.name {
                text.push_str(&format!("event: {name}{eol}"));
            }
            for line in &e.lines {
                text.push_str(&format!("data: {line}{eol}"));
            }
            if i + 1 < events.len() || last_blank {
                text.push_str(eol);
            }
        }
        let expected: Vec<Frame> = events
            .iter()
            .map(|e| Frame { event: e.name.clone(), data: e.lines.join("\n").into_bytes(), exception: false })
            .collect();
        let bytes = text.into_bytes();
        let (frames, dropped) = deframe(Framing::Sse, &split(&bytes, &cuts));
        prop_assert_eq!(frames, expected);
        prop_assert_eq!(dropped, 0);
    }

    /// NDJSON lines (any line ending, blank lines between) are parsed back to the JSON sent.
    #[test]
    fn ndjson_frames_are_the_lines_sent(
        values in prop::collection::vec(arb_json(), 0..8),
        crlf in any::<bool>(),
        blank in any::<bool>(),
        final_newline in any::<bool>(),
        cuts in prop::collection::vec(any::<Index>(), 0..16),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut text = String::new();
        for (i, v) in values.iter().enumerate() {
            text.push_str(&serde_json::to_string(v).unwrap());
            if i + 1 < values.len() || final_newline {
                text.push_str(eol);
            }
            if blank {
                text.push_str(eol);
            }
        }
        let bytes = text.into_bytes();
        let (frames, dropped) = deframe(Framing::Ndjson, &split(&bytes, &cuts));
        let parsed: Vec<Json> = frames.iter().map(|f| serde_json::from_slice(&f.data).unwrap()).collect();
        prop_assert_eq!(parsed, values);
        prop_assert_eq!(dropped, 0);
    }

    /// A JSON array of objects and arrays (Gemini's stream) is parsed back element by element.
    #[test]
    fn json_array_frames_are_the_elements_sent(
        values in prop::collection::vec(prop_oneof![
            arb_exact_object(),
            prop::collection::vec(arb_exact_json(), 0..4).prop_map(Json::Array),
        ], 0..6),
        pretty in any::<bool>(),
        cuts in prop::collection::vec(any::<Index>(), 0..16),
    ) {
        let body = if pretty { serde_json::to_string_pretty(&values) } else { serde_json::to_string(&values) }.unwrap();
        let bytes = body.into_bytes();
        let (frames, dropped) = deframe(Framing::JsonArray, &split(&bytes, &cuts));
        let parsed: Vec<Json> = frames.iter().map(|f| serde_json::from_slice(&f.data).unwrap()).collect();
        prop_assert_eq!(parsed, values);
        prop_assert_eq!(dropped, 0);
    }

    /// AWS event-stream messages are parsed back to their event names, payloads and exception
    /// flags, with no message dropped.
    #[test]
    fn event_stream_frames_are_the_messages_sent(
        messages in prop::collection::vec(("[a-zA-Z]{0,12}", any::<bool>(), prop::collection::vec(any::<u8>(), 0..64)), 0..6),
        cuts in prop::collection::vec(any::<Index>(), 0..16),
    ) {
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        for (event, exception, payload) in &messages {
            let headers: Vec<(&str, &str)> = if *exception {
                vec![(":message-type", "exception"), (":exception-type", event.as_str())]
            } else {
                vec![(":content-type", "application/json"), (":event-type", event.as_str()), (":message-type", "event")]
            };
            bytes.extend_from_slice(&encode_event_message(&headers, payload));
            expected.push(Frame { event: Some(event.clone()), data: payload.clone(), exception: *exception });
        }
        let (frames, dropped) = deframe(Framing::AwsEventstream, &split(&bytes, &cuts));
        prop_assert_eq!(frames, expected);
        prop_assert_eq!(dropped, 0);
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Folding: the rebuilt response does not depend on the split, and holds what was streamed
// ---------------------------------------------------------------------------------------------

fn fold_pieces(op: &Operation, request: &Json, pieces: &[&[u8]], cap: usize) -> FoldOutcome {
    let stream = op.stream.as_ref().unwrap();
    let mut deframer = Deframer::new(stream.framing);
    let mut folder = Folder::new(cap);
    let mut frames = Vec::new();
    for piece in pieces {
        deframer.push(piece, &mut frames);
        for frame in frames.drain(..) {
            folder.frame(stream, request, &frame);
        }
    }
    deframer.finish(&mut frames);
    for frame in frames.drain(..) {
        folder.frame(stream, request, &frame);
    }
    folder.finish(stream, request)
}

/// Folds `body` whole, cut at `cuts` and byte by byte; all three must agree. Returns the first.
fn fold_every_way(
    op: &Operation,
    request: &Json,
    body: &[u8],
    cuts: &[Index],
) -> Result<FoldOutcome, TestCaseError> {
    let whole = fold_pieces(op, request, &[body], DEFAULT_TEXT_CAP);
    let pieces = split(body, cuts);
    prop_assert_eq!(
        &fold_pieces(op, request, &pieces, DEFAULT_TEXT_CAP),
        &whole,
        "cut at {:?}",
        pieces.iter().map(|p| p.len()).collect::<Vec<_>>()
    );
    let bytewise: Vec<&[u8]> = body.chunks(1).collect();
    prop_assert_eq!(
        &fold_pieces(op, request, &bytewise, DEFAULT_TEXT_CAP),
        &whole,
        "byte by byte"
    );
    Ok(whole)
}

/// Text deltas: printable text, any text, and strings that look like framing.
fn arb_delta() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "\\PC{0,10}",
        1 => any::<String>(),
        1 => select(&["", "\n", "\r\n", "data: [DONE]\n\n", "[DONE]", "\"", "\\", "é😀", "}]"][..])
            .prop_map(str::to_string),
    ]
    .boxed()
}

/// `text` cut into fragments at the given char positions.
fn fragments(text: &str, cuts: &[Index]) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(chars.len() + 1)).collect();
    at.push(0);
    at.push(chars.len());
    at.sort_unstable();
    // Duplicate cut points are kept: they make empty fragments, which must append nothing.
    at.windows(2)
        .map(|w| chars[w[0]..w[1]].iter().collect())
        .collect()
}

#[derive(Debug, Clone)]
struct OpenAiTool {
    index: usize,
    id: Option<String>,
    name: Option<String>,
    args: String,
}

#[derive(Debug, Clone)]
struct OpenAiDelta {
    choice: usize,
    role: Option<String>,
    content: Option<String>,
    tool: Option<OpenAiTool>,
    finish: Option<String>,
}

fn arb_openai_delta() -> BoxedStrategy<OpenAiDelta> {
    let tool = (
        0usize..3,
        prop::option::of("call_[a-z0-9]{1,6}"),
        prop::option::of("[a-z_]{1,8}"),
        arb_delta(),
    )
        .prop_map(|(index, id, name, args)| OpenAiTool {
            index,
            id,
            name,
            args,
        });
    (
        0usize..3,
        prop::option::weighted(
            0.2,
            select(&["assistant", "tool", ""][..]).prop_map(str::to_string),
        ),
        prop::option::of(arb_delta()),
        prop::option::weighted(0.4, tool),
        prop::option::weighted(
            0.15,
            select(&["stop", "length", "tool_calls", "content_filter"][..])
                .prop_map(str::to_string),
        ),
    )
        .prop_map(|(choice, role, content, tool, finish)| OpenAiDelta {
            choice,
            role,
            content,
            tool,
            finish,
        })
        .boxed()
}

fn openai_chunk(d: &OpenAiDelta) -> Json {
    let mut delta = Map::new();
    if let Some(role) = &d.role {
        delta.insert("role".into(), json!(role));
    }
    delta.insert(
        "content".into(),
        d.content.clone().map_or(Json::Null, Json::String),
    );
    if let Some(t) = &d.tool {
        let mut call = Map::new();
        call.insert("index".into(), json!(t.index));
        if let Some(id) = &t.id {
            call.insert("id".into(), json!(id));
            call.insert("type".into(), json!("function"));
        }
        let mut function = Map::new();
        if let Some(name) = &t.name {
            function.insert("name".into(), json!(name));
        }
        function.insert("arguments".into(), json!(t.args));
        call.insert("function".into(), Json::Object(function));
        delta.insert("tool_calls".into(), json!([call]));
    }
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_1",
        "choices": [{"index": d.choice, "delta": delta, "logprobs": null, "finish_reason": d.finish}],
    })
}

fn sse_body(chunks: &[(Option<&str>, Json)], eol: &str, done: Option<&str>) -> Vec<u8> {
    let mut text = String::new();
    for (event, chunk) in chunks {
        if let Some(e) = event {
            text.push_str(&format!("event: {e}{eol}"));
        }
        text.push_str(&format!(
            "data: {}{eol}{eol}",
            serde_json::to_string(chunk).unwrap()
        ));
    }
    if let Some(done) = done {
        text.push_str(&format!("data: {done}{eol}{eol}"));
    }
    text.into_bytes()
}

proptest! {
    #![proptest_config(config(512))]

    /// OpenAI chat chunks: content deltas, tool-call fragments, finish reasons and usage fold
    /// into the choices of a non-streamed response, the same however the bytes are split.
    #[test]
    fn openai_chat_stream_folds_to_its_deltas(
        deltas in prop::collection::vec(arb_openai_delta(), 0..12),
        usage in prop::option::of((0u32..100_000, 0u32..100_000)),
        ending in 0usize..3,
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let op = op("openai/chat");
        let request = json!({"model": "gpt-4o-mini", "stream": true, "messages": []});
        let mut chunks: Vec<(Option<&str>, Json)> = deltas.iter().map(|d| (None, openai_chunk(d))).collect();
        if let Some((p, c)) = usage {
            chunks.push((None, json!({"id": "chatcmpl-1", "model": "gpt-4o-mini", "choices": [],
                "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}})));
        }
        let body = sse_body(&chunks, ["\n", "\r\n", "\r"][ending], Some("[DONE]"));
        let outcome = fold_every_way(&op, &request, &body, &cuts)?;
        prop_assert!(outcome.done);
        prop_assert_eq!(outcome.chunks, chunks.len() as u64);
        prop_assert_eq!(outcome.skipped, 0);
        prop_assert!(!outcome.truncated);
        let r = &outcome.response;
        if !chunks.is_empty() {
            prop_assert_eq!(&r["id"], &json!("chatcmpl-1"));
            prop_assert_eq!(&r["model"], &json!("gpt-4o-mini"));
        }
        let choices = deltas.iter().map(|d| d.choice + 1).max().unwrap_or(0);
        for c in 0..choices {
            let mine: Vec<&OpenAiDelta> = deltas.iter().filter(|d| d.choice == c).collect();
            let choice = &r["choices"][c];
            if mine.is_empty() {
                prop_assert!(choice.is_null(), "choice {} never streamed: {}", c, choice);
                continue;
            }
            prop_assert_eq!(&choice["index"], &json!(c));
            let contents: Vec<&str> = mine.iter().filter_map(|d| d.content.as_deref()).collect();
            let expected = if contents.is_empty() { Json::Null } else { json!(contents.concat()) };
            prop_assert_eq!(&choice["message"]["content"], &expected, "choice {} content", c);
            let role = mine.iter().find_map(|d| d.role.clone()).map_or(Json::Null, Json::String);
            prop_assert_eq!(&choice["message"]["role"], &role);
            let finish = mine.iter().rev().find_map(|d| d.finish.clone()).map_or(Json::Null, Json::String);
            prop_assert_eq!(&choice["finish_reason"], &finish);
            for t in 0..3 {
                let calls: Vec<&OpenAiTool> = mine.iter().filter_map(|d| d.tool.as_ref()).filter(|x| x.index == t).collect();
                let slot = &choice["message"]["tool_calls"][t];
                if calls.is_empty() {
                    prop_assert!(slot.is_null());
                    continue;
                }
                let args: String = calls.iter().map(|x| x.args.as_str()).collect();
                prop_assert_eq!(&slot["function"]["arguments"], &json!(args), "choice {} tool {}", c, t);
                let id = calls.iter().find_map(|x| x.id.clone()).map_or(Json::Null, Json::String);
                prop_assert_eq!(&slot["id"], &id);
                let name = calls.iter().find_map(|x| x.name.clone()).map_or(Json::Null, Json::String);
                prop_assert_eq!(&slot["function"]["name"], &name);
            }
        }
        match usage {
            Some((p, c)) => prop_assert_eq!(&r["usage"], &json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})),
            None => prop_assert!(r["usage"].is_null()),
        }

        // End to end: the span's finish reasons are those of the choices, in index order.
        let exchange = Exchange {
            method: "POST".into(),
            url: "https://api.openai.com/v1/chat/completions".into(),
            status: 200,
            request: serde_json::to_vec(&request).unwrap(),
            response: body,
            content_type: Some("text/event-stream".into()),
            response_headers: vec![],
        };
        let out = run_extract(&exchange, &ExtractOptions::default(), "openai")?;
        let finishes: Vec<Json> = (0..choices)
            .filter_map(|c| deltas.iter().rev().filter(|d| d.choice == c).find_map(|d| d.finish.clone()))
            .map(Json::String)
            .collect();
        let attribute = &out["span"]["attributes"]["gen_ai.response.finish_reasons"];
        if finishes.is_empty() {
            prop_assert!(attribute.is_null(), "{}", attribute);
        } else {
            prop_assert_eq!(attribute, &Json::Array(finishes));
        }
        if chunks.is_empty() {
            prop_assert!(out["stream"].is_null(), "{}", out["stream"]);
        } else {
            prop_assert_eq!(&out["stream"]["chunks"], &json!(chunks.len()));
            prop_assert_eq!(&out["stream"]["completed"], &json!(true));
        }
    }
}

#[derive(Debug, Clone)]
enum Block {
    Text(Vec<String>),
    Thinking(Vec<String>, String),
    Tool {
        id: String,
        name: String,
        input: Json,
        cuts: Vec<Index>,
    },
}

fn arb_block() -> BoxedStrategy<Block> {
    prop_oneof![
        3 => prop::collection::vec(arb_delta(), 1..6).prop_map(Block::Text),
        1 => (prop::collection::vec(arb_delta(), 1..4), "[A-Za-z0-9+/=]{0,12}")
            .prop_map(|(t, s)| Block::Thinking(t, s)),
        2 => ("toolu_[a-z0-9]{1,6}", "[a-z_]{1,8}", arb_exact_object(), prop::collection::vec(any::<Index>(), 0..6))
            .prop_map(|(id, name, input, cuts)| Block::Tool { id, name, input, cuts }),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config(384))]

    /// Anthropic message events: text, thinking and `input_json_delta` fragments rebuild the
    /// content blocks of a non-streamed Message (tool input parsed back to the object sent).
    #[test]
    fn anthropic_stream_folds_to_its_blocks(
        blocks in prop::collection::vec(arb_block(), 0..5),
        pings in prop::collection::vec(any::<bool>(), 8),
        stop in select(&["end_turn", "max_tokens", "tool_use", "stop_sequence"][..]),
        tokens in (0u32..100_000, 0u32..100_000),
        crlf in any::<bool>(),
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let op = op("anthropic/messages");
        let request = json!({"model": "claude-x", "stream": true, "messages": []});
        let mut events: Vec<Json> = vec![json!({"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [], "stop_reason": null, "usage": {"input_tokens": tokens.0, "output_tokens": 1}}})];
        let mut expected = Vec::new();
        for (i, block) in blocks.iter().enumerate() {
            if pings[i % pings.len()] {
                events.push(json!({"type": "ping"}));
            }
            let (start, deltas, rebuilt): (Json, Vec<Json>, Json) = match block {
                Block::Text(parts) => (
                    json!({"type": "text", "text": ""}),
                    parts.iter().map(|t| json!({"type": "text_delta", "text": t})).collect(),
                    json!({"type": "text", "text": parts.concat()}),
                ),
                Block::Thinking(parts, signature) => {
                    let mut d: Vec<Json> = parts.iter().map(|t| json!({"type": "thinking_delta", "thinking": t})).collect();
                    d.push(json!({"type": "signature_delta", "signature": signature}));
                    (
                        json!({"type": "thinking", "thinking": "", "signature": ""}),
                        d,
                        json!({"type": "thinking", "thinking": parts.concat(), "signature": signature}),
                    )
                }
                Block::Tool { id, name, input, cuts } => {
                    let text = serde_json::to_string(input).unwrap();
                    (
                        json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                        fragments(&text, cuts).into_iter().map(|f| json!({"type": "input_json_delta", "partial_json": f})).collect(),
                        json!({"type": "tool_use", "id": id, "name": name, "input": input}),
                    )
                }
            };
            events.push(json!({"type": "content_block_start", "index": i, "content_block": start}));
            for d in deltas {
                events.push(json!({"type": "content_block_delta", "index": i, "delta": d}));
            }
            events.push(json!({"type": "content_block_stop", "index": i}));
            expected.push(rebuilt);
        }
        events.push(json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": tokens.1}}));
        events.push(json!({"type": "message_stop"}));
        let chunks: Vec<(Option<&str>, Json)> = events.iter().map(|e| (e["type"].as_str(), e.clone())).collect();
        let body = sse_body(&chunks, if crlf { "\r\n" } else { "\n" }, None);
        let outcome = fold_every_way(&op, &request, &body, &cuts)?;
        prop_assert!(outcome.done);
        prop_assert_eq!(outcome.skipped, 0);
        let r = &outcome.response;
        if expected.is_empty() {
            // A stream without content blocks leaves `content` out (a non-streamed Message has
            // `content: []`); the response rules treat both alike.
            prop_assert!(r["content"].is_null(), "{}", r["content"]);
        } else {
            prop_assert_eq!(&r["content"], &Json::Array(expected.clone()));
        }
        prop_assert_eq!(&r["id"], &json!("msg_1"));
        prop_assert_eq!(&r["role"], &json!("assistant"));
        prop_assert_eq!(&r["stop_reason"], &json!(stop));
        prop_assert_eq!(&r["usage"], &json!({"input_tokens": tokens.0, "output_tokens": tokens.1}));
    }

    /// Bedrock ConverseStream (AWS event stream): text and tool-input fragments rebuild the
    /// Converse response.
    #[test]
    fn bedrock_converse_stream_folds_to_its_blocks(
        blocks in prop::collection::vec(arb_block().prop_filter("text or tool", |b| !matches!(b, Block::Thinking(..))), 0..5),
        stop in select(&["end_turn", "max_tokens", "tool_use"][..]),
        tokens in (0u32..100_000, 0u32..100_000),
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let op = op("bedrock/converse_stream");
        let request = json!({"messages": []});
        let mut events: Vec<(&str, Json)> = vec![("messageStart", json!({"role": "assistant"}))];
        let mut expected = Vec::new();
        for (i, block) in blocks.iter().enumerate() {
            match block {
                Block::Text(parts) => {
                    for t in parts {
                        events.push(("contentBlockDelta", json!({"contentBlockIndex": i, "delta": {"text": t}})));
                    }
                    expected.push(json!({"text": parts.concat()}));
                }
                Block::Tool { id, name, input, cuts } => {
                    events.push(("contentBlockStart", json!({"contentBlockIndex": i, "start": {"toolUse": {"toolUseId": id, "name": name}}})));
                    let text = serde_json::to_string(input).unwrap();
                    for f in fragments(&text, cuts) {
                        events.push(("contentBlockDelta", json!({"contentBlockIndex": i, "delta": {"toolUse": {"input": f}}})));
                    }
                    expected.push(json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}));
                }
                Block::Thinking(..) => unreachable!(),
            }
            events.push(("contentBlockStop", json!({"contentBlockIndex": i})));
        }
        events.push(("messageStop", json!({"stopReason": stop})));
        let usage = json!({"inputTokens": tokens.0, "outputTokens": tokens.1, "totalTokens": tokens.0 + tokens.1});
        events.push(("metadata", json!({"usage": usage, "metrics": {"latencyMs": 12}})));
        let body: Vec<u8> = events
            .iter()
            .flat_map(|(name, payload)| encode_event_message(
                &[(":event-type", name), (":content-type", "application/json"), (":message-type", "event")],
                &serde_json::to_vec(payload).unwrap(),
            ))
            .collect();
        let outcome = fold_every_way(&op, &request, &body, &cuts)?;
        prop_assert!(outcome.done);
        prop_assert_eq!(outcome.chunks, events.len() as u64);
        let r = &outcome.response;
        prop_assert_eq!(&r["output"]["message"]["role"], &json!("assistant"));
        let content = &r["output"]["message"]["content"];
        if expected.is_empty() {
            prop_assert!(content.is_null(), "{}", content);
        } else {
            prop_assert_eq!(content, &Json::Array(expected));
        }
        prop_assert_eq!(&r["stopReason"], &json!(stop));
        prop_assert_eq!(&r["usage"], &usage);
    }

    /// Gemini chunks (as SSE, and as one streamed JSON array): consecutive text parts coalesce
    /// into one part holding the concatenated text.
    #[test]
    fn gemini_stream_folds_to_its_text(
        deltas in prop::collection::vec((arb_delta(), any::<bool>()), 1..10),
        finish in select(&["STOP", "MAX_TOKENS", "SAFETY"][..]),
        as_array in any::<bool>(),
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let op = op(if as_array { "gemini/stream_generate_content_json" } else { "gemini/stream_generate_content" });
        let request = json!({"contents": []});
        let last = deltas.len() - 1;
        let chunks: Vec<Json> = deltas
            .iter()
            .enumerate()
            .map(|(i, (text, with_index))| {
                let mut candidate = json!({"content": {"role": "model", "parts": [{"text": text}]}});
                if *with_index {
                    candidate["index"] = json!(0);
                }
                let mut chunk = json!({"candidates": [candidate], "modelVersion": "gemini-x", "responseId": "r1"});
                if i == last {
                    chunk["candidates"][0]["finishReason"] = json!(finish);
                    chunk["usageMetadata"] = json!({"promptTokenCount": 3, "candidatesTokenCount": 5});
                }
                chunk
            })
            .collect();
        let body = if as_array {
            serde_json::to_vec_pretty(&chunks).unwrap()
        } else {
            let c: Vec<(Option<&str>, Json)> = chunks.iter().map(|c| (None, c.clone())).collect();
            sse_body(&c, "\r\n", None)
        };
        let outcome = fold_every_way(&op, &request, &body, &cuts)?;
        prop_assert_eq!(outcome.chunks, chunks.len() as u64);
        let r = &outcome.response;
        let text: String = deltas.iter().map(|(t, _)| t.as_str()).collect();
        prop_assert_eq!(&r["candidates"][0]["content"]["parts"], &json!([{"text": text}]));
        prop_assert_eq!(&r["candidates"][0]["content"]["role"], &json!("model"));
        prop_assert_eq!(&r["candidates"][0]["finishReason"], &json!(finish));
        prop_assert_eq!(&r["usageMetadata"]["candidatesTokenCount"], &json!(5));
        prop_assert_eq!(&r["modelVersion"], &json!("gemini-x"));
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Bounded memory
// ---------------------------------------------------------------------------------------------

/// Whether `kept` is a prefix of `full`, but for the known bug of
/// `capped_text_is_a_prefix_of_the_text_sent`: after a delta is cut at a char boundary, up to 3
/// bytes of budget are left, and a later short delta is still appended. Once fixed, this is
/// `full.starts_with(kept)`.
fn nearly_prefix(full: &str, kept: &str) -> bool {
    let common = full
        .bytes()
        .zip(kept.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    kept.len() - common < 4
}

#[test]
fn capped_text_is_a_prefix_of_the_text_sent() {
    // Cap 4: "abcé" is cut to "abc" (é is 2 bytes), leaving 1 byte; the next delta "d" fits.
    let chunks: Vec<(Option<&str>, Json)> = ["abcé", "d"]
        .iter()
        .map(|d| {
            (
                None,
                json!({"choices": [{"index": 0, "delta": {"content": d}}]}),
            )
        })
        .collect();
    let body = sse_body(&chunks, "\n", Some("[DONE]"));
    let outcome = fold_pieces(&op("openai/chat"), &json!({}), &[&body], 4);
    assert!(outcome.truncated);
    assert_eq!(
        outcome.response["choices"][0]["message"]["content"],
        json!("abc"),
        "the text sent was \"abcéd\""
    );
}

proptest! {
    #![proptest_config(config(8))]

    /// Multi-megabyte content deltas fold to text capped at the folder's cap (cut at a char
    /// boundary, a prefix of what was sent), reported as truncated, whatever the split; through
    /// `extract` (1 MiB default cap) the stream is reported truncated.
    #[test]
    fn huge_deltas_are_capped(
        unit in select(&["a", "é", "😀", "aé😀", "\""][..]),
        sizes in prop::collection::vec(1usize..(3 << 20), 1..4),
        offset in 0usize..4,
        cap in prop_oneof![Just(DEFAULT_TEXT_CAP), 0usize..(4 << 20)],
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let op = op("openai/chat");
        let request = json!({"model": "gpt-4o-mini", "stream": true});
        let deltas: Vec<String> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let lead = if i == 0 { "x".repeat(offset) } else { String::new() };
                lead + &unit.repeat(n / unit.len() + 1)
            })
            .collect();
        let full = deltas.concat();
        let chunks: Vec<(Option<&str>, Json)> = deltas
            .iter()
            .map(|d| (None, json!({"id": "c", "choices": [{"index": 0, "delta": {"content": d}}]})))
            .collect();
        let body = sse_body(&chunks, "\n", Some("[DONE]"));
        let pieces = split(&body, &cuts);
        let outcome = fold_pieces(&op, &request, &pieces, cap);
        let text = outcome.response["choices"][0]["message"]["content"].as_str().unwrap_or("");
        prop_assert!(text.len() <= cap, "{} bytes kept with a cap of {}", text.len(), cap);
        prop_assert!(
            nearly_prefix(&full, text),
            "the kept text is not a prefix of the text sent (beyond the known bug)"
        );
        prop_assert_eq!(outcome.truncated, full.len() > cap);
        if full.len() > cap {
            prop_assert!(cap - text.len() < 4, "{} bytes kept with a cap of {}: not the longest prefix", text.len(), cap);
        } else {
            prop_assert_eq!(text.len(), full.len());
        }
        prop_assert!(outcome.done);

        let exchange = Exchange {
            method: "POST".into(),
            url: "https://api.openai.com/v1/chat/completions".into(),
            status: 200,
            request: serde_json::to_vec(&request).unwrap(),
            response: body,
            content_type: Some("text/event-stream".into()),
            response_headers: vec![],
        };
        let out = run_extract(&exchange, &ExtractOptions::default(), "openai")?;
        prop_assert_eq!(&out["stream"]["truncated"], &json!(full.len() > DEFAULT_TEXT_CAP));
        let messages: Json = serde_json::from_str(out["span"]["attributes"]["gen_ai.output.messages"].as_str().unwrap()).unwrap();
        let kept = messages[0]["parts"][0]["content"].as_str().unwrap();
        prop_assert!(kept.len() <= DEFAULT_TEXT_CAP && nearly_prefix(&full, kept), "{} bytes in the output message", kept.len());
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// Array indexes in chunks are capped: huge or negative indexes create no huge arrays.
    #[test]
    fn fold_indexes_are_capped(
        indexes in prop::collection::vec((prop_oneof![0u64..5, 4090u64..4100, Just(u64::MAX), Just(1 << 40)], 0u64..4200), 1..8),
    ) {
        let op = op("openai/chat");
        let request = json!({"stream": true});
        let chunks: Vec<(Option<&str>, Json)> = indexes
            .iter()
            .map(|(c, t)| (None, json!({"choices": [{"index": c, "delta": {"content": "x", "tool_calls": [{"index": t, "function": {"arguments": "y"}}]}}]})))
            .collect();
        let body = sse_body(&chunks, "\n", None);
        let outcome = fold_pieces(&op, &request, &[&body], DEFAULT_TEXT_CAP);
        let choices = outcome.response["choices"].as_array().map_or(0, Vec::len);
        prop_assert!(choices <= 4097, "{} choices", choices);
        for choice in outcome.response["choices"].as_array().into_iter().flatten() {
            let calls = choice["message"]["tool_calls"].as_array().map_or(0, Vec::len);
            prop_assert!(calls <= 4097, "{} tool calls", calls);
        }
    }
}

#[test]
fn rebuilt_response_grows_at_most_linearly_with_the_stream() {
    // Each ~110-byte chunk names a new choice and tool call 4096: 4,097 nulls per chunk.
    let chunks: Vec<(Option<&str>, Json)> = (0..64)
        .map(|c| (None, json!({"choices": [{"index": c, "delta": {"tool_calls": [{"index": 4096, "function": {"arguments": "y"}}]}}]})))
        .collect();
    let body = sse_body(&chunks, "\n", None);
    let outcome = fold_pieces(&op("openai/chat"), &json!({}), &[&body], DEFAULT_TEXT_CAP);
    fn nodes(v: &Json) -> usize {
        1 + match v {
            Json::Array(a) => a.iter().map(nodes).sum(),
            Json::Object(m) => m.values().map(nodes).sum(),
            _ => 0,
        }
    }
    let n = nodes(&outcome.response);
    assert!(
        n <= body.len() + 4097,
        "{} bytes of stream rebuilt {n} JSON values",
        body.len()
    );
}
