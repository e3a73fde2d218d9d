//! Dialects: a [`Record`] rendered as span attributes.
//!
//! The default dialect follows the OpenTelemetry GenAI semantic conventions: the record's
//! attributes as they are, and the message attributes (`gen_ai.input.messages`,
//! `gen_ai.output.messages`, `gen_ai.system_instructions`, `gen_ai.tool.definitions`) as JSON text.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::engine::Record;

/// Renders a record in the semantic-conventions dialect; `content` false leaves the message
/// attributes out.
///
/// ```
/// # use std::collections::BTreeMap;
/// # let record = specter::engine::Record { provider: "openai".into(), operation: "chat".into(),
/// #     span_name: "chat".into(), client_span: true, attributes: BTreeMap::new(),
/// #     input_messages: Some(serde_json::json!([{"role": "user", "parts": []}])), output_messages: None,
/// #     system_instructions: None, tool_definitions: None, error: None, problems: vec![] };
/// let attributes = specter::dialect::semconv(&record, true);
/// assert_eq!(attributes["gen_ai.input.messages"], r#"[{"role":"user","parts":[]}]"#);
/// ```
pub fn semconv(record: &Record, content: bool) -> BTreeMap<String, Json> {
    let mut out = record.attributes.clone();
    if content {
        let messages = [
            ("gen_ai.input.messages", &record.input_messages),
            ("gen_ai.output.messages", &record.output_messages),
            ("gen_ai.system_instructions", &record.system_instructions),
            ("gen_ai.tool.definitions", &record.tool_definitions),
        ];
        for (key, value) in messages {
            if let Some(text) = value.as_ref().and_then(|v| serde_json::to_string(v).ok()) {
                out.insert(key.to_string(), Json::String(text));
            }
        }
    }
    out
}
