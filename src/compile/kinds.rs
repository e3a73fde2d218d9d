//! The compiled rules' own kinds: what the runtime matches on, apart from the spec's serde types
//! (which follow the YAML and its schema). Each is converted from its spec counterpart once, when
//! a spec is lowered.

use crate::spec;

/// A value's conversion (`type:` in a spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coercion {
    /// An integer.
    Int,
    /// A float.
    Float,
    /// A string.
    String,
    /// A boolean.
    Bool,
    /// An array of strings.
    StringArray,
    /// An array of integers.
    IntArray,
    /// An array of floats.
    FloatArray,
    /// The value as JSON text.
    Json,
    /// JSON text parsed into a value.
    ParseJson,
    /// The key of a one-key object.
    Key,
}

/// A JSON type a condition tests for (`is:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    /// A string.
    String,
    /// A number.
    Number,
    /// A boolean.
    Bool,
    /// An array.
    Array,
    /// An object.
    Object,
    /// `null`.
    Null,
}

/// The type of a message part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartType {
    /// Text.
    Text,
    /// A tool call.
    ToolCall,
    /// A tool call's response.
    ToolCallResponse,
    /// Reasoning text.
    Reasoning,
    /// Inline data.
    Blob,
    /// A URI.
    Uri,
    /// A file id.
    File,
    /// A server-side tool call.
    ServerToolCall,
    /// A server-side tool call's response.
    ServerToolCallResponse,
    /// A part of the type its `kind` names.
    Generic,
}

impl PartType {
    /// The part type as the semantic conventions spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            PartType::Text => "text",
            PartType::ToolCall => "tool_call",
            PartType::ToolCallResponse => "tool_call_response",
            PartType::Reasoning => "reasoning",
            PartType::Blob => "blob",
            PartType::Uri => "uri",
            PartType::File => "file",
            PartType::ServerToolCall => "server_tool_call",
            PartType::ServerToolCallResponse => "server_tool_call_response",
            PartType::Generic => "generic",
        }
    }
}

/// How a streamed body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Server-sent events.
    Sse,
    /// Newline-delimited JSON.
    Ndjson,
    /// The AWS event stream.
    AwsEventstream,
    /// A streamed JSON array.
    JsonArray,
}

impl Framing {
    /// The name a spec gives it (`stream.framing`).
    pub fn spec_name(self) -> &'static str {
        match self {
            Framing::Sse => "sse",
            Framing::Ndjson => "ndjson",
            Framing::AwsEventstream => "aws_eventstream",
            Framing::JsonArray => "json_array",
        }
    }
}

/// How a wrapped chunk is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadEncoding {
    /// A base64 string holding JSON text.
    Base64Json,
    /// A string holding JSON text.
    JsonText,
}

/// A provider metric's instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instrument {
    /// A counter.
    Counter,
    /// A histogram.
    Histogram,
    /// A gauge.
    Gauge,
}

impl From<spec::Coercion> for Coercion {
    fn from(c: spec::Coercion) -> Self {
        match c {
            spec::Coercion::Int => Coercion::Int,
            spec::Coercion::Float => Coercion::Float,
            spec::Coercion::String => Coercion::String,
            spec::Coercion::Bool => Coercion::Bool,
            spec::Coercion::StringArray => Coercion::StringArray,
            spec::Coercion::IntArray => Coercion::IntArray,
            spec::Coercion::FloatArray => Coercion::FloatArray,
            spec::Coercion::Json => Coercion::Json,
            spec::Coercion::ParseJson => Coercion::ParseJson,
            spec::Coercion::Key => Coercion::Key,
        }
    }
}

impl From<spec::JsonType> for JsonType {
    fn from(t: spec::JsonType) -> Self {
        match t {
            spec::JsonType::String => JsonType::String,
            spec::JsonType::Number => JsonType::Number,
            spec::JsonType::Bool => JsonType::Bool,
            spec::JsonType::Array => JsonType::Array,
            spec::JsonType::Object => JsonType::Object,
            spec::JsonType::Null => JsonType::Null,
        }
    }
}

impl From<spec::PartType> for PartType {
    fn from(p: spec::PartType) -> Self {
        match p {
            spec::PartType::Text => PartType::Text,
            spec::PartType::ToolCall => PartType::ToolCall,
            spec::PartType::ToolCallResponse => PartType::ToolCallResponse,
            spec::PartType::Reasoning => PartType::Reasoning,
            spec::PartType::Blob => PartType::Blob,
            spec::PartType::Uri => PartType::Uri,
            spec::PartType::File => PartType::File,
            spec::PartType::ServerToolCall => PartType::ServerToolCall,
            spec::PartType::ServerToolCallResponse => PartType::ServerToolCallResponse,
            spec::PartType::Generic => PartType::Generic,
        }
    }
}

impl From<spec::Framing> for Framing {
    fn from(f: spec::Framing) -> Self {
        match f {
            spec::Framing::Sse => Framing::Sse,
            spec::Framing::Ndjson => Framing::Ndjson,
            spec::Framing::AwsEventstream => Framing::AwsEventstream,
            spec::Framing::JsonArray => Framing::JsonArray,
        }
    }
}

impl From<spec::PayloadEncoding> for PayloadEncoding {
    fn from(e: spec::PayloadEncoding) -> Self {
        match e {
            spec::PayloadEncoding::Base64Json => PayloadEncoding::Base64Json,
            spec::PayloadEncoding::JsonText => PayloadEncoding::JsonText,
        }
    }
}

impl From<spec::Instrument> for Instrument {
    fn from(i: spec::Instrument) -> Self {
        match i {
            spec::Instrument::Counter => Instrument::Counter,
            spec::Instrument::Histogram => Instrument::Histogram,
            spec::Instrument::Gauge => Instrument::Gauge,
        }
    }
}
