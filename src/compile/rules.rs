//! Compiled rules: the validated, ready-to-run form of provider specs. The engine sees only these
//! types; every JSONPath and template in them was parsed once, at load time.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value as Json;

pub use super::kinds::{Coercion, Framing, Instrument, JsonType, PartType, PayloadEncoding};
use super::JsonPath;

/// A compiled provider.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Provider id (file stem).
    pub id: Arc<str>,
    /// Display name.
    pub name: String,
    /// `gen_ai.provider.name` value.
    pub provider_name: Arc<str>,
    /// The provider this one extends, if any.
    pub extends: Option<String>,
    /// API reference link.
    pub docs: Option<String>,
    /// Upstream base URL for the gateway.
    pub base_url: Option<String>,
    /// Host patterns this provider answers for (`*.` prefix = any subdomain).
    pub hosts: Vec<String>,
    /// The AWS service name for SigV4 re-signing, if the provider signs its requests.
    pub aws_service: Option<String>,
    /// Path prefixes in front of operation paths.
    pub path_prefixes: Vec<String>,
    /// The operations.
    pub operations: Vec<Arc<Operation>>,
    /// The file the provider was loaded from.
    pub file: String,
}

/// A compiled operation: everything the engine needs for one kind of call.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Provider id.
    pub provider: Arc<str>,
    /// `gen_ai.provider.name`.
    pub provider_name: Arc<str>,
    /// Operation id within the provider.
    pub id: Arc<str>,
    /// `gen_ai.operation.name`.
    pub operation_name: Arc<str>,
    /// Span name template.
    pub span_name: Template,
    /// Whether the span is CLIENT (else INTERNAL).
    pub client_span: bool,
    /// In-process names of the call.
    pub sdk_methods: Vec<String>,
    /// Routes that select this operation.
    pub routes: Vec<Route>,
    /// Request-phase rules.
    pub request: Phase,
    /// Response-phase rules.
    pub response: Phase,
    /// Error rules.
    pub error: ErrorRules,
    /// Stream rules, when the operation can stream.
    pub stream: Option<Stream>,
    /// Provider metrics.
    pub metrics: Arc<Vec<Metric>>,
    /// Provider prices.
    pub pricing: Arc<Vec<Price>>,
    /// What the rules read of each document (the parts of a body the engine parses).
    pub reads: super::reads::Reads,
}

/// A route: method, path template and query conditions.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Upper-case HTTP method.
    pub method: String,
    /// The full path template (prefix + operation path).
    pub template: PathTemplate,
    /// Query parameters that must have these values.
    pub query: Vec<(String, String)>,
}

/// A path template split into segments.
#[derive(Debug, Clone, PartialEq)]
pub struct PathTemplate {
    /// The template as written.
    pub source: String,
    /// Segments between `/`.
    pub segments: Vec<Vec<Piece>>,
}

/// A piece of a path segment.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Literal text.
    Literal(String),
    /// A named capture.
    Capture(String),
    /// A named capture of the rest of the path (`{model...}`): one or more whole segments with
    /// the `/` between them. Only as the whole last segment of a template.
    Rest(String),
}

/// A name template (`{gen_ai.operation.name} {gen_ai.request.model}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// Literal and variable pieces.
    pub pieces: Vec<TemplatePiece>,
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePiece {
    /// Literal text.
    Literal(String),
    /// An attribute key.
    Var(String),
}

/// Rules of one phase.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    /// Attribute key → value.
    pub attributes: Vec<(Arc<str>, Value)>,
    /// Input message rules.
    pub input_messages: Vec<MessageRule>,
    /// System instruction part rules.
    pub system_instructions: Vec<PartRule>,
    /// Tool definition rules.
    pub tool_definitions: Vec<ToolRule>,
    /// Output message rules.
    pub output_messages: Vec<MessageRule>,
}

/// Error rules.
#[derive(Debug, Clone, Default)]
pub struct ErrorRules {
    /// Body-level failure condition.
    pub when: Option<Cond>,
    /// `error.type`.
    pub error_type: Option<Value>,
    /// Error message.
    pub message: Option<Value>,
    /// Extra attributes.
    pub attributes: Vec<(Arc<str>, Value)>,
}

/// A compiled value rule.
#[derive(Debug, Clone)]
pub struct Value {
    /// Where the value comes from.
    pub source: Source,
    /// Type conversion.
    pub coerce: Option<Coercion>,
    /// Regex keeping part of a string.
    pub pattern: Option<regex::Regex>,
    /// Value map.
    pub map: Option<BTreeMap<String, Json>>,
    /// Guard.
    pub when: Option<Box<Cond>>,
}

/// Value sources.
#[derive(Debug, Clone)]
pub enum Source {
    /// JSONPath on the phase document.
    Doc(JsonPath),
    /// JSONPath on the request body.
    Request(JsonPath),
    /// JSONPath on the response body.
    Response(JsonPath),
    /// First present value.
    First(Vec<Value>),
    /// Sum of present numbers.
    Sum(Vec<Value>),
    /// A constant.
    Const(Json),
    /// A path capture.
    Capture(String),
    /// A header (lower-case name).
    Header(String),
    /// A query parameter.
    Query(String),
}

/// A compiled condition.
#[derive(Debug, Clone)]
pub enum Cond {
    /// A test on one value.
    Test(Box<Value>, Test),
    /// All hold.
    All(Vec<Cond>),
    /// One holds.
    Any(Vec<Cond>),
    /// Does not hold.
    Not(Box<Cond>),
}

/// A test on a value.
#[derive(Debug, Clone)]
pub enum Test {
    /// Equal to.
    Equals(Json),
    /// Present and different.
    NotEquals(Json),
    /// Equal to one of.
    In(Vec<Json>),
    /// Presence.
    Exists(bool),
    /// JSON type.
    Is(JsonType),
}

/// Compiled message rule.
#[derive(Debug, Clone)]
pub struct MessageRule {
    /// Message selector (`None` = the document).
    pub each: Option<JsonPath>,
    /// Item filter.
    pub when: Option<Cond>,
    /// Role.
    pub role: Option<Value>,
    /// Participant name.
    pub name: Option<Value>,
    /// Finish reason.
    pub finish_reason: Option<Value>,
    /// Parts.
    pub parts: Vec<PartRule>,
}

/// Compiled part rule.
#[derive(Debug, Clone)]
pub struct PartRule {
    /// Part type.
    pub part_type: PartType,
    /// Item selector on the message.
    pub each: Option<JsonPath>,
    /// Item filter.
    pub when: Option<Cond>,
    /// Field name → value, in output order.
    pub fields: Vec<(&'static str, Value)>,
    /// The field without which no part is produced.
    pub required: &'static str,
    /// Index of the first rule of its list with the same `each` selector: rules of one group run
    /// together, item by item.
    pub group: usize,
}

/// Compiled tool definition rule.
#[derive(Debug, Clone)]
pub struct ToolRule {
    /// Tool selector.
    pub each: JsonPath,
    /// Item filter.
    pub when: Option<Cond>,
    /// Tool type (default `function`).
    pub tool_type: Option<Value>,
    /// Name.
    pub name: Value,
    /// Description.
    pub description: Option<Value>,
    /// Parameters schema.
    pub parameters: Option<Value>,
}

/// Compiled stream rules.
#[derive(Debug, Clone)]
pub struct Stream {
    /// When the request streams (`None` = always).
    pub when: Option<Cond>,
    /// Framing.
    pub framing: Framing,
    /// End sentinel.
    pub done: Option<String>,
    /// Event names that mark the stream complete.
    pub done_events: Vec<String>,
    /// A condition on a chunk that marks the stream complete.
    pub done_when: Option<Cond>,
    /// Payload unwrapping.
    pub payload: Option<(JsonPath, PayloadEncoding)>,
    /// Per-chunk rules.
    pub fold: Vec<FoldRule>,
    /// End-of-stream rules.
    pub finish: Vec<FoldRule>,
    /// What the rules read of each frame and chunk.
    pub reads: super::reads::StreamReads,
}

/// A compiled fold rule.
#[derive(Debug, Clone, Default)]
pub struct FoldRule {
    /// Event names (empty = any).
    pub events: Vec<String>,
    /// Guard on the item.
    pub when: Option<Cond>,
    /// Item selector.
    pub each: Option<JsonPath>,
    /// Base target.
    pub at: Target,
    /// Actions in order.
    pub actions: Vec<(FoldAction, Target, Value)>,
    /// Key joining text in `push`.
    pub coalesce: Option<String>,
    /// Keys that must agree (absent counts) for `coalesce` to join.
    pub coalesce_by: Vec<String>,
    /// Targets removed.
    pub remove: Vec<Target>,
    /// Nested rules.
    pub fold: Vec<FoldRule>,
}

/// What a fold action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoldAction {
    /// Set when absent.
    SetOnce,
    /// Set (last wins).
    Set,
    /// Merge object keys.
    Merge,
    /// Append text.
    Append,
    /// Push onto an array.
    Push,
}

/// A target path in the rebuilt response (empty = the current target itself).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    /// Steps.
    pub steps: Vec<TargetStep>,
}

/// One step of a target path.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetStep {
    /// Object key.
    pub key: String,
    /// Optional array index.
    pub index: Option<IndexExpr>,
}

/// An array index in a target path.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexExpr {
    /// A fixed index.
    Fixed(usize),
    /// Read on the item (falls back to the position).
    Path(JsonPath),
    /// The item's position in `each`.
    Position,
    /// The last element (the first when the array is empty): `[-1]`.
    Last,
}

/// A compiled provider metric.
#[derive(Debug, Clone)]
pub struct Metric {
    /// Name.
    pub name: String,
    /// Instrument.
    pub instrument: Instrument,
    /// Unit.
    pub unit: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Value on the response.
    pub value: Value,
    /// Histogram buckets.
    pub buckets: Option<Vec<f64>>,
    /// Attribute keys copied from the span.
    pub attributes: Vec<String>,
}

/// A model price in USD per million tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    /// Exact model, or prefix when `prefix` is set.
    pub model: String,
    /// Whether `model` is a prefix.
    pub prefix: bool,
    /// Input price.
    pub input: f64,
    /// Output price.
    pub output: f64,
    /// Cached input price.
    pub cached_input: f64,
}
