//! Configuration, shared data and generators: JSON values, strings, edits, and YAML text from
//! JSON values.

use super::*;

/// A proptest configuration with `cases` cases and generous shrinking, unless the standard
/// `PROPTEST_CASES`, `PROPTEST_MAX_SHRINK_ITERS` or `PROPTEST_MAX_SHRINK_TIME` variables say
/// otherwise (`PROPTEST_RNG_SEED` fixes the seed). No failure persistence: no
/// `proptest-regressions/` files next to the tests; a failure prints its minimal input.
pub(crate) fn config(cases: u32) -> Config {
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

pub(crate) fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog::bundled().unwrap())
}

pub(crate) fn bundled_text(file: &str) -> &'static str {
    specter::unstable::catalog::bundled::PROVIDERS
        .iter()
        .find(|(name, _)| *name == file)
        .unwrap_or_else(|| panic!("no bundled {file}"))
        .1
}

/// Bundled specs that the spec mutation property edits (each loaded with `openai.yaml`, which
/// several of them extend).
pub(crate) const SPEC_FILES: &[&str] = &[
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
pub(crate) fn spec_doc(file: &str) -> Json {
    static DOCS: OnceLock<Vec<(&'static str, Json)>> = OnceLock::new();
    let docs = DOCS.get_or_init(|| {
        specter::unstable::catalog::bundled::PROVIDERS
            .iter()
            .map(|(name, text)| (*name, specter::unstable::yaml::parse(text).unwrap().value))
            .collect()
    });
    docs.iter().find(|(n, _)| *n == file).unwrap().1.clone()
}

pub(crate) fn op(name: &str) -> Arc<Operation> {
    catalog()
        .operation(name)
        .unwrap_or_else(|| panic!("no operation {name}"))
}

// ---------------------------------------------------------------------------------------------
// Generators: JSON values, strings, edits
// ---------------------------------------------------------------------------------------------

/// Field names the bundled specs read, so that random JSON reaches the rules.
pub(crate) const KEYS: &[&str] = &[
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
pub(crate) const WORDS: &[&str] = &[
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

pub(crate) fn arb_string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(WORDS).prop_map(str::to_string),
        2 => "\\PC{0,12}",
        1 => any::<String>(),
    ]
    .boxed()
}

pub(crate) fn arb_key() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(KEYS).prop_map(str::to_string),
        1 => arb_string(),
    ]
    .boxed()
}

pub(crate) fn arb_number() -> BoxedStrategy<Json> {
    prop_oneof![
        (0i64..5).prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        select(&[4095i64, 4096, 4097, 65_536, -1, i64::MIN][..]).prop_map(Json::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Json::Number)),
    ]
    .boxed()
}

pub(crate) fn arb_leaf() -> BoxedStrategy<Json> {
    prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        arb_number(),
        arb_string().prop_map(Json::String),
    ]
    .boxed()
}

/// Any JSON value: bounded depth (5) and size (about 64 nodes).
pub(crate) fn arb_json() -> BoxedStrategy<Json> {
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
pub(crate) fn arb_exact_json() -> BoxedStrategy<Json> {
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

pub(crate) fn arb_exact_object() -> BoxedStrategy<Json> {
    prop::collection::vec((arb_key(), arb_exact_json()), 0..5)
        .prop_map(|kv| Json::Object(kv.into_iter().collect()))
        .boxed()
}

/// A body: mostly an object (as requests and responses are), sometimes any JSON.
pub(crate) fn arb_top_json() -> BoxedStrategy<Json> {
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
pub(crate) enum Edit {
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

pub(crate) fn arb_edit(strings: BoxedStrategy<String>) -> BoxedStrategy<Edit> {
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

pub(crate) fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

pub(crate) fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// JSON pointers of every node, in document order.
pub(crate) fn pointers(value: &Json, at: &str, out: &mut Vec<String>) {
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

pub(crate) fn split_pointer(pointer: &str) -> Option<(&str, String)> {
    let (parent, last) = pointer.rsplit_once('/')?;
    Some((parent, unescape(last)))
}

pub(crate) fn apply_edit(doc: &mut Json, edit: &Edit) {
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

pub(crate) fn yaml_scalar(value: &Json) -> String {
    match value {
        Json::String(s) => serde_json::to_string(s).unwrap(),
        other => other.to_string(),
    }
}

pub(crate) fn yaml_block(value: &Json, indent: usize, out: &mut String) {
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

pub(crate) fn yaml_child(value: &Json, indent: usize, out: &mut String) {
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
pub(crate) fn to_yaml(value: &Json, style: u8) -> String {
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
