//! Streaming: how a streamed response is framed and how each chunk folds into a rebuilt response
//! of the non-streamed shape, so that the response rules serve both.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, OneOrMany, ValueSpec};

/// How a streamed response is read.
///
/// ```yaml
/// stream:
///   when: { value: $.stream, equals: true }
///   framing: sse
///   done: "[DONE]"
///   fold:
///     - set_once: { id: $.id, model: $.model }
///     - each: $.choices[*]
///       at: "choices[{$.index}]"
///       append: { message.content: $.delta.content }
///       set: { finish_reason: $.finish_reason }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    /// The request streams when this holds on the request body (captures and query parameters can
    /// be read too). Absent: the operation always streams. A response whose content type is the
    /// framing's (`text/event-stream`, `application/x-ndjson`,
    /// `application/vnd.amazon.eventstream`) is read as a stream in any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    /// How frames are delimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framing: Option<Framing>,
    /// A frame whose data is exactly this text ends the stream (OpenAI's `[DONE]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<String>,
    /// Frames with this event name mark the stream complete (Anthropic's `message_stop`); they are
    /// still folded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_event: Option<OneOrMany<String>>,
    /// A chunk for which this holds marks the stream complete; it is still folded. For streams
    /// without an end marker whose last chunk says it is the last (`done: true`, a finish
    /// reason), so that a consumer that stops reading right after it ends the call as complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_when: Option<Condition>,
    /// How the JSON chunk is taken out of a frame whose payload wraps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<PayloadSpec>,
    /// Rules applied to every chunk, in order, updating the rebuilt response.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fold: Vec<FoldRule>,
    /// Rules applied once to the rebuilt response when the stream ends; their sources read the
    /// rebuilt response itself (e.g. parse tool arguments accumulated as JSON text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finish: Vec<FoldRule>,
}

/// Stream framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// Server-sent events (`text/event-stream`): `event:` names, `data:` payloads.
    Sse,
    /// One JSON document per line (`application/x-ndjson`).
    Ndjson,
    /// The AWS binary event stream (`application/vnd.amazon.eventstream`); the event name is the
    /// `:event-type` header.
    AwsEventstream,
    /// A JSON array whose elements arrive one by one (`application/json`; Gemini's
    /// `streamGenerateContent` without `alt=sse`). The content type cannot tell it from a plain
    /// JSON answer, so the operation's `stream.when` decides.
    JsonArray,
}

/// How the chunk is taken out of a frame's JSON payload.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PayloadSpec {
    /// JSONPath to the wrapped chunk within the frame's JSON (e.g. `$.bytes`).
    pub path: String,
    /// How the wrapped chunk is encoded.
    pub encoding: PayloadEncoding,
}

/// Encoding of a wrapped chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayloadEncoding {
    /// A base64 string holding JSON text (Bedrock `InvokeModelWithResponseStream`).
    Base64Json,
    /// A string holding JSON text.
    JsonText,
}

/// One fold rule: when it applies, which items of the chunk it reads, where in the rebuilt
/// response they go, and what it does there.
///
/// Targets are dotted paths relative to `at` (or to the rebuilt response): `message.content`,
/// `usage`, `$` for the target itself. A segment may carry an index: `choices[0]`,
/// `choices[{$.index}]` (an index read on the current item; when it is missing, the item's
/// position), `choices[#]` (the item's position in `each`), or `choices[-1]` (the last element,
/// the first when the array is empty).
///
/// Actions run in this order: `set_once`, `set`, `merge`, `append`, `push`, `remove`, then the
/// nested `fold` rules.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FoldRule {
    /// Only for frames with this event name (SSE `event:`, AWS `:event-type`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<OneOrMany<String>>,
    /// Only when this holds on the current item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    /// JSONPath selecting items of the chunk; the rule runs once per item, with the item as the
    /// document of its sources. Default: the chunk (or the current item) itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub each: Option<String>,
    /// Target path the rule's targets are relative to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Set the target when it is absent or null (ids, names, roles).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set_once: BTreeMap<String, ValueSpec>,
    /// Set the target to the value when the value is present (last value wins).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, ValueSpec>,
    /// Merge an object into the target key by key, ignoring null values (usage counters).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub merge: BTreeMap<String, ValueSpec>,
    /// Append text to the target string (content deltas, tool-call argument fragments).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub append: BTreeMap<String, ValueSpec>,
    /// Push the value onto the target array. With `coalesce`, a value whose `coalesce` key holds
    /// text is appended to the last element instead when that element has text under the same
    /// key and agrees on every other key the value has, or on the `coalesce_by` keys when they are
    /// given (Gemini text parts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub push: BTreeMap<String, ValueSpec>,
    /// Key used by `push` to join consecutive text elements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coalesce: Option<String>,
    /// With `coalesce`: the keys on which two elements must agree to be joined, a key absent on
    /// one side counting as a different value (a flag such as `thought: true` set on reasoning
    /// parts only). Other keys then need not agree, and those the last element lacks are copied
    /// onto it (a signature sent with the last piece of a text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coalesce_by: Vec<String>,
    /// Remove these targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// Nested rules, applied to each item with `at` as their target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fold: Vec<FoldRule>,
}
