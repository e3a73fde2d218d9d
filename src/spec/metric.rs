//! Provider metrics and model pricing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ValueSpec;

/// A metric recorded for each finished call of this provider, beyond the standard GenAI client
/// metrics.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    /// Metric name, e.g. `groq.queue.duration`.
    pub name: String,
    /// Instrument kind.
    pub instrument: Instrument,
    /// UCUM unit, e.g. `s` or `{token}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// What the metric measures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The value, read on the response body (or rebuilt stream response). No value, no point.
    pub value: ValueSpec,
    /// Histogram bucket boundaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<f64>>,
    /// Span attribute keys copied onto the metric point. Keep this set bounded: no ids, no
    /// content. Default: `gen_ai.operation.name`, `gen_ai.provider.name`,
    /// `gen_ai.request.model`, `gen_ai.response.model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Vec<String>>,
}

/// Metric instrument kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Instrument {
    /// A monotonic sum.
    Counter,
    /// A distribution of values.
    Histogram,
    /// The last value.
    Gauge,
}

/// The price of one model (or a family, with a trailing `*`), in USD per million tokens.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceSpec {
    /// Model name as reported in `gen_ai.response.model` (or requested), or a prefix ending in `*`.
    pub model: String,
    /// USD per million input tokens.
    pub input: f64,
    /// USD per million output tokens.
    pub output: f64,
    /// USD per million input tokens read from the provider's cache. Default: the input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
}
