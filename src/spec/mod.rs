//! Provider specs as written: serde types that mirror the YAML one to one.
//!
//! This module owns the *raw* spec family: what a spec author writes in `providers/*.yaml`. The
//! doc comments on these types are written for spec authors; they become the descriptions in
//! `schemas/provider.schema.json`, which editors use to complete and check provider files. Nothing
//! here is validated beyond its shape: [`crate::compile`] turns these types into rules and reports
//! every problem at once.
//!
//! Almost every field is optional at this level because a provider that `extends` another writes
//! only what it changes; the compiler checks what the merged provider must have.

mod message;
mod metric;
mod operation;
mod schema;
mod stream;
mod value;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use message::{MessageRule, PartRule, PartType, ToolRule};
pub use metric::{Instrument, MetricSpec, PriceSpec};
pub use operation::{
    CustomOperationName, ErrorSpec, MatchSpec, OneOrMany, OperationNameSpec, OperationSpec,
    PhaseSpec, SpanKindSpec,
};
pub use schema::provider_schema;
pub use stream::{FoldRule, Framing, PayloadEncoding, PayloadSpec, StreamSpec};
pub use value::{Coercion, Condition, JsonType, ValueRule, ValueSpec};

/// One LLM provider: where its API lives, and the operations specter instruments on it.
///
/// The file name without `.yaml` must equal `id`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "specter provider spec")]
pub struct ProviderSpec {
    /// Identifier of the provider: lower case letters, digits and `_`, equal to the file stem.
    /// It is also the first path segment of the gateway's routes (`/openai/v1/...`).
    pub id: String,
    /// Human-readable name, e.g. `OpenAI`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Id of another provider whose spec this one starts from. Top-level keys given here replace
    /// the inherited ones; `operations` are merged by `id` (an operation with an inherited id is
    /// merged key by key into the inherited one, a `null` value removes an inherited key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// Value of the `gen_ai.provider.name` attribute, as the semantic conventions spell it
    /// (`openai`, `anthropic`, `gcp.gemini`, `aws.bedrock`, `azure.ai.openai`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_name: Option<String>,
    /// Link to the provider's API reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<String>,
    /// Where the provider's API lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamSpec>,
    /// Path prefixes put in front of every operation's `match.path` (unless the operation sets
    /// `match.absolute`). OpenAI-compatible providers differ mostly here: `/v1` for OpenAI,
    /// `/openai/v1` for Groq, `/api/v1` for OpenRouter. A prefix may contain captures such as
    /// `/openai/deployments/{deployment}`. Default: a single empty prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefixes: Option<Vec<String>>,
    /// The API calls to instrument (the wrap configs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<OperationSpec>,
    /// Metrics this provider adds beyond the standard GenAI client metrics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricSpec>,
    /// Prices per model, used to record `gen_ai.usage.cost` (USD) before the bundled price
    /// table (`prices/genai-prices.json`) and after a user's price file (`--prices`). Most specs
    /// leave this out: the bundled table prices the bundled providers' models. A model with no
    /// price anywhere gets no cost attribute rather than zero.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pricing: Vec<PriceSpec>,
    /// Free-form notes for spec authors; ignored by the engine.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub notes: BTreeMap<String, String>,
}

/// Where a provider's API is served.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// Scheme, host and optional port the gateway forwards to, e.g. `https://api.openai.com`.
    /// The request path after the provider segment is appended unchanged.
    pub base_url: String,
    /// Host names this provider answers for, used to recognise calls by URL (library and
    /// `specter extract`). One `*` matches any non-empty text, e.g. `*.openai.azure.com` or
    /// `bedrock-runtime.*.amazonaws.com`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// The AWS service name requests are signed for with Signature Version 4, e.g. `bedrock`.
    /// The gateway re-signs this provider's requests with its own AWS credentials when run with
    /// `--aws-sign PROVIDER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_service: Option<String>,
}
