//! The canonical record of one exchange: what extraction produces and dialects render.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value as Json;

/// Everything extracted from one exchange, deterministic for a given input. The message content
/// is kept as the JSON text it is emitted as (written once by the engine, never a value tree).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// Provider id.
    pub provider: Arc<str>,
    /// Operation id.
    pub operation: Arc<str>,
    /// Span name.
    pub span_name: String,
    /// CLIENT (true) or INTERNAL span.
    pub client_span: bool,
    /// Attributes by key (semconv names), JSON scalars or arrays.
    pub attributes: BTreeMap<String, Json>,
    /// `gen_ai.input.messages` as JSON text (an array of role/parts messages).
    pub input_messages: Option<String>,
    /// `gen_ai.output.messages` as JSON text.
    pub output_messages: Option<String>,
    /// `gen_ai.system_instructions` as JSON text (an array of parts).
    pub system_instructions: Option<String>,
    /// `gen_ai.tool.definitions` as JSON text.
    pub tool_definitions: Option<String>,
    /// Set when the call failed.
    pub error: Option<ErrorInfo>,
    /// Problems met and skipped (non-JSON bodies, bad chunks).
    pub problems: Vec<String>,
    /// For a streamed response: what the stream held.
    pub stream: Option<StreamStats>,
    /// Values of the provider's own metrics: index into the operation's metrics, value.
    pub metric_values: Vec<(usize, f64)>,
}

/// What a streamed response held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamStats {
    /// Chunks folded into the response.
    pub chunks: u64,
    /// Frames skipped (not JSON, bad CRC, overlong).
    pub skipped_frames: u64,
    /// Whether accumulated text hit the content cap.
    pub truncated: bool,
    /// Whether the provider's end-of-stream sentinel arrived.
    pub completed: bool,
}

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorInfo {
    /// `error.type`.
    pub error_type: String,
    /// The provider's message.
    pub message: Option<String>,
}
