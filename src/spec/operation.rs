//! Operations: one instrumented API call, how it is recognised, and its rules by phase.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, MessageRule, PartRule, StreamSpec, ToolRule, ValueSpec};

/// One instrumented API call (a wrap config): how to recognise it and what to record.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationSpec {
    /// Identifier, unique within the provider (`chat`, `embeddings`, ...). With `extends`, an
    /// operation whose id is inherited is merged into the inherited one.
    pub id: String,
    /// `false` removes an inherited operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Value of `gen_ai.operation.name`, one the semantic conventions define: `chat`,
    /// `text_completion`, `embeddings`, `generate_content`, `retrieval`, `create_agent`,
    /// `invoke_agent`, `execute_tool`, `invoke_workflow`. A name of the provider's own is written
    /// `{custom: NAME}` (e.g. `operation_name: {custom: rerank}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_name: Option<OperationNameSpec>,
    /// Span name template. Variables in braces are attribute keys; a variable with no value is
    /// left out together with the space before it. Default:
    /// `{gen_ai.operation.name} {gen_ai.request.model}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_name: Option<String>,
    /// Span kind. Default `client`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_kind: Option<SpanKindSpec>,
    /// Names an application uses for this call in-process, e.g. the SDK method
    /// `chat.completions.create`. The library API finds an operation by `provider/id` or by any of
    /// these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sdk_methods: Vec<String>,
    /// How an HTTP request is recognised as this operation.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<MatchSpec>,
    /// Rules on the request, known before the call is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<PhaseSpec>,
    /// Rules on a successful response (or the response rebuilt from a stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<PhaseSpec>,
    /// How failures are recognised and described.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorSpec>,
    /// How a streamed response is read and folded into the non-streamed response shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamSpec>,
}

/// A semantic-conventions operation name (`chat`, `embeddings`, ...), or `{custom: NAME}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OperationNameSpec {
    /// A name the semantic conventions define (`chat`, `embeddings`, ...).
    Known(String),
    /// A name of the provider's own, which the semantic conventions do not define.
    Custom(CustomOperationName),
}

/// `{custom: NAME}`: an operation name the semantic conventions do not define.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomOperationName {
    /// The name, e.g. `rerank`.
    pub custom: String,
}

/// OpenTelemetry span kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpanKindSpec {
    /// A call to a remote service (the default for GenAI client spans).
    Client,
    /// An in-process operation.
    Internal,
}

/// One value or a list of values.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// A single value.
    One(T),
    /// Several values.
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The values as a slice.
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        }
    }
}

/// How a request is recognised.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// HTTP method. Default `POST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Path template(s) after the provider's path prefix. `{name}` captures one path segment or
    /// part of one (`/models/{model}:generateContent`); `{name...}`, as the whole last segment,
    /// captures the rest of the path, one or more segments with the `/` between them
    /// (`/ai/run/{model...}` captures `@cf/meta/llama-3.1-8b-instruct`). Captures are
    /// percent-decoded and can be read with `capture:`; a route of fixed length is preferred over
    /// one ending in `{name...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<OneOrMany<String>>,
    /// `true`: `path` is matched from the root, without the provider's `path_prefixes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute: Option<bool>,
    /// Query parameters that must have these values (e.g. `alt: sse`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
}

/// Rules of one phase (request or response).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PhaseSpec {
    /// Span attributes: attribute key → where its value comes from. A value that is not found is
    /// left out, never invented. With `extends`, `null` removes an inherited attribute.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, Option<ValueSpec>>,
    /// Request phase: the chat history sent to the model (`gen_ai.input.messages`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_messages: Vec<MessageRule>,
    /// Request phase: system instructions given apart from the chat history
    /// (`gen_ai.system_instructions`), as message parts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub system_instructions: Vec<PartRule>,
    /// Request phase: the tools offered to the model (`gen_ai.tool.definitions`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_definitions: Vec<ToolRule>,
    /// Response phase: the model's answer (`gen_ai.output.messages`), one message per choice or
    /// candidate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_messages: Vec<MessageRule>,
}

/// How a failed call is recognised and described. A non-2xx status is always a failure; `when`
/// adds failures reported inside a 2xx body (an error object, or an error event in a stream).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorSpec {
    /// A 2xx response (or rebuilt stream) is a failure when this holds on its body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    /// `error.type`: the provider's error type or code. When absent, the HTTP status code is used,
    /// and `_OTHER` when there is none.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub error_type: Option<ValueSpec>,
    /// The provider's error message, recorded on the exception event and the span status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<ValueSpec>,
    /// Extra attributes read from the error body (`null` removes an inherited one).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, Option<ValueSpec>>,
}
