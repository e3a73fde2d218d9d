//! Message rules: how chat messages, system instructions and tool definitions are read into the
//! role/parts structure of the GenAI semantic conventions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, ValueSpec};

/// Reads messages: one message per item selected by `each`.
///
/// ```yaml
/// input_messages:
///   - each: $.messages[*]
///     role: $.role
///     parts:
///       - type: text
///         content: $.content
///         when: { value: $.content, is: string }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRule {
    /// JSONPath selecting the message objects. Default `$`: the document itself is one message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub each: Option<String>,
    /// Only items for which this holds become messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    /// The role (`system`, `user`, `assistant`, `tool`, or the provider's own), read on the item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<ValueSpec>,
    /// The participant's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<ValueSpec>,
    /// Output messages: why the model stopped, normalised to `stop`, `length`,
    /// `content_filter`, `tool_call` or `error` with `map` where the provider spells it otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<ValueSpec>,
    /// The message's parts, in order. Each rule may yield zero or more parts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartRule>,
}

/// The kind of a message part, as named by the semantic conventions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartType {
    /// Text content (`content`).
    Text,
    /// A tool call requested by the model (`id`, `name`, `arguments`).
    ToolCall,
    /// The result of a tool call (`id`, `response`).
    ToolCallResponse,
    /// Reasoning or thinking content (`content`).
    Reasoning,
    /// Inline binary data (`modality`, `mime_type`, `content`).
    Blob,
    /// Data referenced by URI (`modality`, `mime_type`, `uri`).
    Uri,
    /// A file referenced by id (`modality`, `mime_type`, `file_id`).
    File,
    /// A tool call executed by the provider's server (`id`, `name`, `server_tool_call`).
    ServerToolCall,
    /// The result of a server tool call (`id`, `server_tool_call_response`).
    ServerToolCallResponse,
    /// Any other kind of part (`kind`, written as the part's `type`): a block no other rule
    /// reads stays visible, with its type, instead of disappearing.
    Generic,
}

/// Reads message parts: one part per item selected by `each` (default: the message itself).
/// A part whose required field is missing is left out.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartRule {
    /// The part type.
    #[serde(rename = "type")]
    pub part_type: PartType,
    /// JSONPath on the message selecting the items that become parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub each: Option<String>,
    /// Only items for which this holds become parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    /// Text, reasoning or blob content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ValueSpec>,
    /// Tool call id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ValueSpec>,
    /// Tool name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<ValueSpec>,
    /// Tool call arguments (use `type: parse_json` when the provider sends them as JSON text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<ValueSpec>,
    /// Tool call result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ValueSpec>,
    /// `image`, `video` or `audio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modality: Option<ValueSpec>,
    /// IANA media type of the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<ValueSpec>,
    /// URI of the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<ValueSpec>,
    /// Provider file id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<ValueSpec>,
    /// Server tool call details (an object; its `type` names the server tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_tool_call: Option<ValueSpec>,
    /// Server tool call result details (an object; its `type` names the server tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_tool_call_response: Option<ValueSpec>,
    /// Generic parts: the part's `type` as written (e.g. `{ path: $, type: key }` for the name
    /// of a block type that no other rule reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ValueSpec>,
}

/// Reads tool definitions: one per item selected by `each`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolRule {
    /// JSONPath selecting the tool objects.
    pub each: String,
    /// Only items for which this holds become tool definitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    /// Tool type. Default `function`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub tool_type: Option<ValueSpec>,
    /// Tool name (required: an item without one is left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<ValueSpec>,
    /// Tool description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<ValueSpec>,
    /// JSON Schema of the parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<ValueSpec>,
}
