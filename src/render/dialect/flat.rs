//! Data-defined dialects: what a dialect file (`dialects/*.yaml`) says and how a record is
//! rendered by it — renames, drops, sums, constants, derived values (value maps, JSON objects
//! built from several attributes, per-operation values, message text), flattened messages and
//! tool definitions, and extra names for span events.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::engine::Record;

/// A dialect file (`dialects/*.yaml`).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DialectSpec {
    /// Dialect name.
    pub id: String,
    /// Keep the semantic-conventions rendering (every record attribute under its own name and
    /// the message attributes as JSON text) and add this dialect's keys to it. When false (the
    /// default) a renamed or dropped attribute appears only under the dialect's names; the other
    /// record attributes pass through under their own names.
    #[serde(default)]
    pub keep_semconv: bool,
    /// Emit the semantic-conventions message attributes (`gen_ai.input.messages`, ...) as JSON
    /// text even when `keep_semconv` is false.
    #[serde(default)]
    pub semconv_messages: bool,
    /// Record attribute → the key it is emitted under.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Record attributes not emitted under their own name (their values may still feed `derived`).
    #[serde(default)]
    pub drop: Vec<String>,
    /// Emitted key → record attributes whose numbers are added (absent when none is present).
    #[serde(default)]
    pub sums: BTreeMap<String, Vec<String>>,
    /// Keys with fixed values.
    #[serde(default)]
    pub constants: BTreeMap<String, Json>,
    /// Keys whose values are computed from the record, in order (a later entry wins on a key).
    #[serde(default)]
    pub derived: Vec<Derived>,
    /// Attributes of newer conventions that only this dialect emits: the default
    /// semantic-conventions rendering leaves them out.
    #[serde(default)]
    pub introduces: Vec<String>,
    /// Span event name → the names the event is emitted under (the original is dropped unless
    /// listed).
    #[serde(default)]
    pub events: BTreeMap<String, Vec<String>>,
    /// How input messages are flattened.
    #[serde(default)]
    pub input_messages: Option<FlatMessages>,
    /// How output messages are flattened.
    #[serde(default)]
    pub output_messages: Option<FlatMessages>,
    /// How the request's tool definitions are flattened.
    #[serde(default)]
    pub tools: Option<FlatTools>,
    /// Standard metrics recorded under other names for some operations (newer conventions give
    /// embeddings metrics of their own).
    #[serde(default)]
    pub metrics: Vec<MetricRename>,
}

/// Standard metrics of some operations recorded under other names.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricRename {
    /// The `gen_ai.operation.name` values this applies to.
    pub operations: Vec<String>,
    /// Standard metric name → the name its points are recorded under.
    pub rename: BTreeMap<String, String>,
    /// Metric attributes left out of the renamed points (e.g. `gen_ai.token.type` where the new
    /// metric counts one kind of token only).
    #[serde(default)]
    pub drop_attributes: Vec<String>,
}

impl MetricRename {
    /// The new name of metric `name` for an operation called `operation`, if this renames it.
    pub fn renamed(&self, operation: &str, name: &str) -> Option<&str> {
        if !self.operations.iter().any(|o| o == operation) {
            return None;
        }
        self.rename.get(name).map(String::as_str)
    }
}

/// A key whose value is computed from the record. Exactly one source: `from`, `json`, `text`,
/// or `value`/`by_operation` (a constant, per operation name).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Derived {
    /// The emitted key.
    pub key: String,
    /// Record attributes: the first one present gives the value.
    #[serde(default)]
    pub from: Vec<String>,
    /// With `from`: value → value it is emitted as (values not listed pass unchanged).
    #[serde(default)]
    pub values: BTreeMap<String, Json>,
    /// With `values`: a value not listed gives no key (instead of passing unchanged).
    #[serde(default)]
    pub only_listed: bool,
    /// With `from`: take the first element of an array value.
    #[serde(default)]
    pub first_element: bool,
    /// A JSON object, emitted as JSON text: field → record attribute (absent attributes are left
    /// out; nothing is emitted when none is present).
    #[serde(default)]
    pub json: BTreeMap<String, String>,
    /// A message attribute of the record, as its JSON text.
    #[serde(default)]
    pub text: Option<MessageField>,
    /// A constant (with `by_operation`: the value for operations not listed).
    #[serde(default)]
    pub value: Option<Json>,
    /// `gen_ai.operation.name` → the value.
    #[serde(default)]
    pub by_operation: BTreeMap<String, Json>,
    /// Only for these operations (`gen_ai.operation.name`).
    #[serde(default)]
    pub operations: Vec<String>,
    /// Not for these operations.
    #[serde(default)]
    pub except_operations: Vec<String>,
    /// Only when each of these is present: record attributes or message fields
    /// (`input_messages`, `output_messages`, `system_instructions`, `tool_definitions`).
    #[serde(default)]
    pub when_present: Vec<String>,
}

/// A message attribute of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageField {
    /// `gen_ai.input.messages`.
    InputMessages,
    /// `gen_ai.output.messages`.
    OutputMessages,
    /// `gen_ai.system_instructions`.
    SystemInstructions,
    /// `gen_ai.tool.definitions`.
    ToolDefinitions,
}

impl MessageField {
    fn of(self, record: &Record) -> Option<&str> {
        match self {
            MessageField::InputMessages => record.input_messages.as_deref(),
            MessageField::OutputMessages => record.output_messages.as_deref(),
            MessageField::SystemInstructions => record.system_instructions.as_deref(),
            MessageField::ToolDefinitions => record.tool_definitions.as_deref(),
        }
    }

    fn named(name: &str) -> Option<MessageField> {
        serde_json::from_value(Json::String(name.to_string())).ok()
    }
}

/// Key templates of flattened messages: `{i}` is the message index, `{j}` the tool call index,
/// `{k}` the index of a content part.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlatMessages {
    /// Put the system instructions first, as a `system` message.
    #[serde(default)]
    pub include_system: bool,
    /// Role key.
    pub role: Option<String>,
    /// Content key: the text parts joined (a tool result's response for tool messages).
    pub content: Option<String>,
    /// Key of the reasoning parts' text, joined.
    pub reasoning: Option<String>,
    /// Content part type key (`{k}`), for the part types in `content_types`.
    pub content_type: Option<String>,
    /// Content part text key (`{k}`).
    pub content_text: Option<String>,
    /// Part type → the type it is emitted as under `content_type`; parts of other types are not
    /// listed as content parts.
    #[serde(default)]
    pub content_types: BTreeMap<String, String>,
    /// List the parts of a message that is a single text part too (by default such a message
    /// has its `content` key only, which says the same).
    #[serde(default)]
    pub parts_for_plain_text: bool,
    /// Finish reason key.
    pub finish_reason: Option<String>,
    /// Tool call id key.
    pub tool_call_id: Option<String>,
    /// Tool call name key.
    pub tool_call_name: Option<String>,
    /// Tool call arguments key (JSON text).
    pub tool_call_arguments: Option<String>,
    /// Key of the id of the call a tool message answers.
    pub tool_response_id: Option<String>,
}

/// Key templates of flattened tool definitions: `{i}` is the tool index.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlatTools {
    /// The whole definition as JSON text.
    pub definition: Option<String>,
    /// Tool type key.
    pub tool_type: Option<String>,
    /// Tool name key.
    pub name: Option<String>,
    /// Tool description key.
    pub description: Option<String>,
    /// Parameters key (the JSON schema as JSON text).
    pub parameters: Option<String>,
    /// Key of the JSON text of the list of tool names.
    pub names: Option<String>,
}

impl DialectSpec {
    /// Adds this dialect's attributes for a record to `out`.
    pub fn render(&self, record: &Record, out: &mut BTreeMap<String, Json>) {
        if self.keep_semconv {
            out.extend(super::semconv(record, true));
        } else if self.semconv_messages {
            out.extend(
                super::message_attributes(record)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v)),
            );
        }
        self.render_attributes(&record.attributes, Some(record), out);
        if let Some(flat) = &self.input_messages {
            let mut messages = Vec::new();
            if flat.include_system {
                if let Some(Json::Array(parts)) = parse(record.system_instructions.as_deref()) {
                    messages.push(serde_json::json!({"role": "system", "parts": parts}));
                }
            }
            if let Some(Json::Array(items)) = parse(record.input_messages.as_deref()) {
                messages.extend(items);
            }
            flatten(flat, &messages, out);
        }
        if let (Some(flat), Some(Json::Array(items))) = (
            &self.output_messages,
            parse(record.output_messages.as_deref()),
        ) {
            flatten(flat, &items, out);
        }
        if let (Some(flat), Some(Json::Array(tools))) =
            (&self.tools, parse(record.tool_definitions.as_deref()))
        {
            flatten_tools(flat, &tools, out);
        }
    }

    /// Adds this dialect's keys for the request-phase attributes of a call to `out`: what a span
    /// carries from its start. An attribute once set on a span cannot be replaced, so only keys
    /// whose value the rest of the call cannot change are included: no message content, sums
    /// only when all their parts are present, derived keys only when [`Derived::settled`].
    pub fn render_start(
        &self,
        attributes: &BTreeMap<String, Json>,
        out: &mut BTreeMap<String, Json>,
    ) {
        if self.keep_semconv {
            out.extend(attributes.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        self.render_attributes(attributes, None, out);
        for (key, parts) in &self.sums {
            if !parts.iter().all(|p| attributes.contains_key(p)) {
                out.remove(key);
            }
        }
        for derived in &self.derived {
            if !derived.settled(attributes) {
                out.remove(&derived.key);
            }
        }
    }

    fn render_attributes(
        &self,
        attributes: &BTreeMap<String, Json>,
        record: Option<&Record>,
        out: &mut BTreeMap<String, Json>,
    ) {
        for (key, value) in attributes {
            if let Some(name) = self.rename.get(key) {
                out.insert(name.clone(), value.clone());
            } else if !self.keep_semconv
                && !self.drop.contains(key)
                && (self.introduces.contains(key) || !super::is_newer_only(key))
            {
                out.insert(key.clone(), value.clone());
            }
        }
        for (key, parts) in &self.sums {
            let numbers: Vec<i64> = parts
                .iter()
                .filter_map(|p| attributes.get(p).and_then(Json::as_i64))
                .collect();
            if !numbers.is_empty() {
                out.insert(key.clone(), Json::from(numbers.iter().sum::<i64>()));
            }
        }
        for (key, value) in &self.constants {
            out.insert(key.clone(), value.clone());
        }
        for derived in &self.derived {
            if let Some(value) = derived.compute(attributes, record) {
                out.insert(derived.key.clone(), value);
            }
        }
    }

    /// The names a span event is emitted under in this dialect, if it renames it.
    pub fn event_names(&self, name: &str) -> Option<&[String]> {
        self.events.get(name).map(Vec::as_slice)
    }

    /// What is wrong with the spec beyond its schema, as (JSON pointer, message) pairs.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (n, derived) in self.derived.iter().enumerate() {
            let constant = derived.value.is_some() || !derived.by_operation.is_empty();
            let sources = [
                !derived.from.is_empty(),
                !derived.json.is_empty(),
                derived.text.is_some(),
                constant,
            ];
            let count = sources.iter().filter(|s| **s).count();
            if count != 1 {
                problems.push((
                    format!("/derived/{n}"),
                    format!(
                        "`{}` needs exactly one source (`from`, `json`, `text`, or `value`/`by_operation`), found {count}",
                        derived.key
                    ),
                ));
            }
            let modifiers =
                !derived.values.is_empty() || derived.first_element || derived.only_listed;
            if modifiers && derived.from.is_empty() {
                problems.push((
                    format!("/derived/{n}"),
                    format!(
                        "`{}`: `values`, `only_listed` and `first_element` apply to `from` only",
                        derived.key
                    ),
                ));
            }
        }
        problems
    }
}

impl Derived {
    /// Whether this key's value, computed from `attributes` alone, is final: every input it reads
    /// is present (for `from`, the first listed one), and it reads no message content.
    pub fn settled(&self, attributes: &BTreeMap<String, Json>) -> bool {
        let present = |name: &String| attributes.contains_key(name);
        let inputs = if let Some(first) = self.from.first() {
            present(first)
        } else if !self.json.is_empty() {
            self.json.values().all(present)
        } else {
            self.text.is_none()
        };
        inputs
            && self
                .when_present
                .iter()
                .all(|n| MessageField::named(n).is_none() && present(n))
            && attributes.contains_key("gen_ai.operation.name")
    }

    /// The value of this key for a record, if it has one.
    fn compute(
        &self,
        attributes: &BTreeMap<String, Json>,
        record: Option<&Record>,
    ) -> Option<Json> {
        let operation = attributes
            .get("gen_ai.operation.name")
            .and_then(Json::as_str);
        if !self.operations.is_empty()
            && !operation.is_some_and(|o| self.operations.iter().any(|x| x == o))
        {
            return None;
        }
        if operation.is_some_and(|o| self.except_operations.iter().any(|x| x == o)) {
            return None;
        }
        let present = |name: &String| match MessageField::named(name) {
            Some(field) => record.and_then(|r| field.of(r)).is_some(),
            None => attributes.contains_key(name),
        };
        if !self.when_present.iter().all(present) {
            return None;
        }
        if !self.from.is_empty() {
            let mut value = self.from.iter().find_map(|a| attributes.get(a))?.clone();
            if self.first_element {
                value = value.as_array()?.first()?.clone();
            }
            return match value.as_str().and_then(|s| self.values.get(s)) {
                Some(mapped) => Some(mapped.clone()),
                None if self.only_listed => None,
                None => Some(value),
            };
        }
        if !self.json.is_empty() {
            let object: Map<String, Json> = self
                .json
                .iter()
                .filter_map(|(field, attribute)| {
                    Some((field.clone(), attributes.get(attribute)?.clone()))
                })
                .collect();
            return (!object.is_empty()).then(|| Json::String(Json::Object(object).to_string()));
        }
        if let Some(field) = self.text {
            return Some(Json::String(field.of(record?)?.to_string()));
        }
        operation
            .and_then(|o| self.by_operation.get(o))
            .or(self.value.as_ref())
            .cloned()
    }
}

/// Message JSON text of a record as a value.
fn parse(text: Option<&str>) -> Option<Json> {
    serde_json::from_str(text?).ok()
}

/// A key from its template: `{i}` is `i`; `{j}` (a tool call) and `{k}` (a content part) are
/// `j`, the index within the message of whichever the template is for.
fn key(template: &str, i: usize, j: usize) -> String {
    template
        .replace("{i}", &i.to_string())
        .replace("{j}", &j.to_string())
        .replace("{k}", &j.to_string())
}

fn text_of(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn flatten_tools(flat: &FlatTools, tools: &[Json], out: &mut BTreeMap<String, Json>) {
    let mut names = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        if let Some(name) = tool.get("name") {
            names.push(name.clone());
        }
        let fields = [
            (&flat.definition, Some(Json::String(tool.to_string()))),
            (&flat.tool_type, tool.get("type").cloned()),
            (&flat.name, tool.get("name").cloned()),
            (&flat.description, tool.get("description").cloned()),
            (
                &flat.parameters,
                tool.get("parameters").map(|p| Json::String(text_of(p))),
            ),
        ];
        for (template, value) in fields {
            if let (Some(t), Some(v)) = (template, value) {
                out.insert(key(t, i, 0), v);
            }
        }
    }
    if let (Some(k), false) = (&flat.names, names.is_empty()) {
        out.insert(k.clone(), Json::String(Json::Array(names).to_string()));
    }
}

/// Text of the parts of one message, gathered while it is flattened.
#[derive(Default)]
struct Gathered {
    content: Option<String>,
    reasoning: Option<String>,
}

fn append(slot: &mut Option<String>, text: &str) {
    slot.get_or_insert_with(String::new).push_str(text);
}

fn flatten(flat: &FlatMessages, messages: &[Json], out: &mut BTreeMap<String, Json>) {
    for (i, message) in messages.iter().enumerate() {
        let parts: &[Json] = message
            .get("parts")
            .and_then(Json::as_array)
            .map_or(&[], Vec::as_slice);
        if let (Some(t), Some(role)) = (&flat.role, message.get("role")) {
            out.insert(key(t, i, 0), role.clone());
        }
        if let (Some(t), Some(reason)) = (&flat.finish_reason, message.get("finish_reason")) {
            out.insert(key(t, i, 0), reason.clone());
        }
        let mut gathered = Gathered::default();
        let (mut j, mut k) = (0, 0);
        let plain_text =
            matches!(parts, [one] if one.get("type").and_then(Json::as_str) == Some("text"));
        let list_parts = flat.parts_for_plain_text || !plain_text;
        for part in parts {
            let kind = part.get("type").and_then(Json::as_str);
            if let (true, Some(listed)) = (list_parts, kind.and_then(|t| flat.content_types.get(t)))
            {
                if let Some(t) = &flat.content_type {
                    out.insert(key(t, i, k), Json::String(listed.clone()));
                }
                if let (Some(t), Some(text)) = (&flat.content_text, part.get("content")) {
                    out.insert(key(t, i, k), Json::String(text_of(text)));
                }
                k += 1;
            }
            match kind {
                Some("text") => {
                    if let Some(text) = part.get("content").and_then(Json::as_str) {
                        append(&mut gathered.content, text);
                    }
                }
                Some("reasoning") => {
                    if let Some(text) = part.get("content").and_then(Json::as_str) {
                        append(&mut gathered.reasoning, text);
                    }
                }
                Some("tool_call_response") => {
                    if let Some(response) = part.get("response") {
                        append(&mut gathered.content, &text_of(response));
                    }
                    if let (Some(t), Some(id)) = (&flat.tool_response_id, part.get("id")) {
                        out.insert(key(t, i, 0), id.clone());
                    }
                }
                Some("tool_call") => {
                    let fields = [
                        (&flat.tool_call_id, part.get("id").cloned()),
                        (&flat.tool_call_name, part.get("name").cloned()),
                        (
                            &flat.tool_call_arguments,
                            part.get("arguments").map(|a| Json::String(text_of(a))),
                        ),
                    ];
                    for (template, value) in fields {
                        if let (Some(t), Some(v)) = (template, value) {
                            out.insert(key(t, i, j), v);
                        }
                    }
                    j += 1;
                }
                _ => {}
            }
        }
        for (template, text) in [
            (&flat.content, gathered.content),
            (&flat.reasoning, gathered.reasoning),
        ] {
            if let (Some(t), Some(text)) = (template, text) {
                out.insert(key(t, i, 0), Json::String(text));
            }
        }
    }
}
