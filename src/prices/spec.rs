//! Price files as written: the bundled table (`prices/genai-prices.json`) and a user's own file
//! (`--prices FILE`, config key `prices`) share this shape.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A price file: model prices in USD per million tokens.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "specter price file")]
pub struct PriceFile {
    /// Where the prices come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Version of the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Date the prices were taken (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted: Option<String>,
    /// The licence of the source data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// A note on the unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The model prices; for one call the first entry whose provider and model match is used.
    #[serde(default)]
    pub models: Vec<ModelPriceSpec>,
}

/// The prices of one model (or a family of models) at one provider.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelPriceSpec {
    /// The specter provider id (`openai`, `bedrock`, ...). Absent: any provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// A name for the entry (informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The model name as reported in `gen_ai.response.model` (or requested), compared without
    /// regard to case; a trailing `*` makes it a prefix. One of `model` and `match` is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// A match rule on the lower-cased model name.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<MatchSpec>,
    /// The prices.
    pub prices: RatesSpec,
    /// Prices that replace some of `prices` for calls with this request context (e.g.
    /// `service_tier: flex`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<VariantSpec>,
}

/// A match rule on a lower-cased model name.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MatchSpec {
    /// Equal to.
    Equals(String),
    /// Starts with.
    StartsWith(String),
    /// Ends with.
    EndsWith(String),
    /// Contains.
    Contains(String),
    /// Matches this regular expression (no look-around).
    Regex(String),
    /// Any of these rules holds.
    Or(Vec<MatchSpec>),
    /// All of these rules hold.
    And(Vec<MatchSpec>),
    /// This rule does not hold.
    Not(Box<MatchSpec>),
}

/// Prices by kind of token, USD per million tokens. A cache kind without a price is paid at the
/// price of the kind it is part of (`cache_write_1h` at `cache_write`, then at `input`;
/// `cache_read` at `input`); a call with tokens of a kind that has no price (input, output,
/// audio, or reasoning where given apart) gets no cost.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RatesSpec {
    /// Input tokens not read from or written to a cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<RateSpec>,
    /// Output tokens (reasoning included unless `output_reasoning` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<RateSpec>,
    /// Input tokens read from the provider's cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<RateSpec>,
    /// Input tokens written to the provider's cache (5-minute lifetime where the provider
    /// distinguishes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<RateSpec>,
    /// Input tokens written to the provider's cache with a 1-hour lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<RateSpec>,
    /// Audio input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_audio: Option<RateSpec>,
    /// Audio input tokens read from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_audio_read: Option<RateSpec>,
    /// Audio output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_audio: Option<RateSpec>,
    /// Reasoning output tokens, where priced apart from output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_reasoning: Option<RateSpec>,
    /// A fee per request, in USD (not per million tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<f64>,
}

/// A price: flat, or tiered by the request's input tokens.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum RateSpec {
    /// USD per million tokens.
    Flat(f64),
    /// A long-context price: once a request's input tokens exceed a tier's `start`, the whole
    /// request pays that tier's price.
    Tiered(TieredSpec),
}

/// A tiered price.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TieredSpec {
    /// The price below the first tier.
    pub base: f64,
    /// The tiers.
    pub tiers: Vec<TierSpec>,
}

/// One tier of a tiered price.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    /// Input tokens above which the tier applies.
    pub start: u64,
    /// The price.
    pub price: f64,
}

/// Prices for calls with a given request context.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    /// Context values that must all hold; the only key read is `service_tier` (the value of an
    /// attribute ending in `.response.service_tier`, else `.request.service_tier`).
    pub when: BTreeMap<String, String>,
    /// The prices replaced.
    pub prices: RatesSpec,
}
