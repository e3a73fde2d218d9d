//! Values and conditions: where a rule reads a value and when a rule applies.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a value comes from.
///
/// The short form is a JSONPath string (`$.usage.prompt_tokens`) evaluated on the document of the
/// rule's phase: the request body in `request`, the response body (or the response rebuilt from a
/// stream) in `response` and `error`, the current item inside `each`. The long form is an object
/// with exactly one source key (`path`, `request`, `response`, `first`, `sum`, `const`, `capture`,
/// `header`, `query`) and optional transforms (`type`, `map`, `when`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ValueSpec {
    /// A JSONPath on the phase's document, e.g. `$.model` or `$.choices[*].finish_reason`.
    Path(String),
    /// A value rule with an explicit source and transforms.
    Rule(Box<ValueRule>),
}

/// A value with an explicit source and optional transforms.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValueRule {
    /// JSONPath on the phase's document (the same as the short form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// JSONPath on the request body, from any phase (e.g. the requested model in a response rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// JSONPath on the response body (or the response rebuilt from a stream), from the response
    /// and error phases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// The first of these values that is present and not null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<Vec<ValueSpec>>,
    /// The sum of the numbers among these values (a list value adds its numbers, e.g. the counts
    /// a filter selects); absent when none is present (never zero by default). Used for `gen_ai.usage.input_tokens` where a provider reports cached tokens apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum: Option<Vec<ValueSpec>>,
    /// A constant value.
    #[serde(default, rename = "const", skip_serializing_if = "Option::is_none")]
    pub constant: Option<serde_json::Value>,
    /// A capture of the operation's path template (with its path prefix), e.g. `model` for
    /// `/v1beta/models/{model}:generateContent`; naming no placeholder of the template is an error.
    /// Captures are percent-decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<String>,
    /// An HTTP header of the phase's message (request headers in `request`, response headers
    /// otherwise), case-insensitive. Credential headers can never be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// A query parameter of the request URL. Credential parameters (`key`, `api-key`, ...) can
    /// never be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Convert the value to this type; a value that does not convert is left out.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub coerce: Option<Coercion>,
    /// Replace values found as keys of this map (compared as strings) by the mapped value; values
    /// not in the map pass through unchanged. A list is mapped element by element.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<BTreeMap<String, serde_json::Value>>,
    /// Keep only the first match of this regular expression in the (string) value, or its first
    /// capture group when it has one; a string without a match is left out. Applied before `map`.
    /// E.g. `pattern: "^[^:]+"` keeps `ValidationException` of `ValidationException:http://...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Only produce the value when this condition holds (evaluated on the same document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
}

/// A type conversion applied to a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Coercion {
    /// An integer; numeric strings and whole floats convert.
    Int,
    /// A floating-point number; numeric strings convert.
    Float,
    /// A string; numbers and booleans are written out.
    String,
    /// A boolean; `"true"`/`"false"` convert.
    Bool,
    /// An array of strings; a single value becomes a one-element array, nulls are dropped.
    StringArray,
    /// An array of integers.
    IntArray,
    /// An array of floats.
    FloatArray,
    /// The value serialised as compact JSON text.
    Json,
    /// A string holding JSON, parsed into its value (kept as the string when it does not parse).
    ParseJson,
    /// The key of an object with exactly one key, as a string: a tagged union such as
    /// `{"guardContent": {...}}` gives `guardContent`. Other values are left out.
    Key,
}

/// The JSON type of a value, for `is` conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JsonType {
    /// A string.
    String,
    /// A number.
    Number,
    /// `true` or `false`.
    Bool,
    /// An array.
    Array,
    /// An object.
    Object,
    /// `null`.
    Null,
}

/// A condition. Either a test on one value (`value` plus one of `equals`, `not_equals`, `in`,
/// `exists`, `is`), or a combination (`all`, `any`, `not`).
///
/// ```yaml
/// when: { value: $.stream, equals: true }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The value tested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<ValueSpec>,
    /// Holds when the value equals this one (numbers compare by value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    /// Holds when the value is present and differs from this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<serde_json::Value>,
    /// Holds when the value equals one of these.
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<serde_json::Value>>,
    /// `true`: holds when the value is present and not null; `false`: when it is absent or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    /// Holds when the value has this JSON type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is: Option<JsonType>,
    /// Holds when every condition holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Vec<Condition>>,
    /// Holds when at least one condition holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<Vec<Condition>>,
    /// Holds when this condition does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not: Option<Box<Condition>>,
}
