//! Data-defined dialects: renames, sums, constants and flattened message keys.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value as Json;

use crate::engine::Record;

/// A dialect file (`dialects/*.yaml`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialectSpec {
    /// Dialect name.
    pub id: String,
    /// Record attribute → the key it is emitted under. Attributes not named pass through.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Emitted key → record attributes whose numbers are added (absent when none is present).
    #[serde(default)]
    pub sums: BTreeMap<String, Vec<String>>,
    /// Keys with fixed values.
    #[serde(default)]
    pub constants: BTreeMap<String, Json>,
    /// How input messages are flattened.
    #[serde(default)]
    pub input_messages: Option<FlatMessages>,
    /// How output messages are flattened.
    #[serde(default)]
    pub output_messages: Option<FlatMessages>,
}

/// Key templates of flattened messages: `{i}` is the message index, `{j}` the tool call index.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlatMessages {
    /// Put the system instructions first, as a `system` message.
    #[serde(default)]
    pub include_system: bool,
    /// Role key.
    pub role: Option<String>,
    /// Content key: the text parts joined (a tool result's response for tool messages).
    pub content: Option<String>,
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

impl DialectSpec {
    /// Adds this dialect's attributes for a record to `out`.
    pub fn render(&self, record: &Record, out: &mut BTreeMap<String, Json>) {
        for (key, value) in &record.attributes {
            let name = self.rename.get(key).unwrap_or(key);
            out.insert(name.clone(), value.clone());
        }
        for (key, parts) in &self.sums {
            let numbers: Vec<&Json> = parts
                .iter()
                .filter_map(|p| record.attributes.get(p))
                .collect();
            if numbers.is_empty() {
                continue;
            }
            let total: i64 = numbers.iter().filter_map(|n| n.as_i64()).sum();
            out.insert(key.clone(), Json::from(total));
        }
        for (key, value) in &self.constants {
            out.insert(key.clone(), value.clone());
        }
        if let Some(flat) = &self.input_messages {
            let mut messages = Vec::new();
            if flat.include_system {
                if let Some(Json::Array(parts)) = parse(&record.system_instructions) {
                    messages.push(serde_json::json!({"role": "system", "parts": parts}));
                }
            }
            if let Some(Json::Array(items)) = parse(&record.input_messages) {
                messages.extend(items);
            }
            flatten(flat, &messages, out);
        }
        if let (Some(flat), Some(Json::Array(items))) =
            (&self.output_messages, parse(&record.output_messages))
        {
            flatten(flat, &items, out);
        }
    }
}

/// Message JSON text of a record as a value.
fn parse(text: &Option<String>) -> Option<Json> {
    serde_json::from_str(text.as_deref()?).ok()
}

fn key(template: &str, i: usize, j: usize) -> String {
    template
        .replace("{i}", &i.to_string())
        .replace("{j}", &j.to_string())
}

fn text_of(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
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
        let mut content = String::new();
        let mut has_content = false;
        let mut j = 0;
        for part in parts {
            match part.get("type").and_then(Json::as_str) {
                Some("text") => {
                    if let Some(text) = part.get("content").and_then(Json::as_str) {
                        content.push_str(text);
                        has_content = true;
                    }
                }
                Some("tool_call_response") => {
                    if let Some(response) = part.get("response") {
                        content.push_str(&text_of(response));
                        has_content = true;
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
        if let (Some(t), true) = (&flat.content, has_content) {
            out.insert(key(t, i, 0), Json::String(content));
        }
    }
}
