//! Offline extraction: one recorded exchange (method, URL, status, body files) to the span JSON
//! that `specter extract` prints and the fixture tests snapshot.

use serde_json::{json, Value as Json};

use crate::engine::{Exchange, HttpTarget};
use crate::render::content::ContentPolicy;
use crate::render::credentials::Credentials;
use crate::render::dialect::Dialect;
use crate::render::Prepared;
use crate::Catalog;

/// Why an exchange could not be extracted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// The URL is not an absolute http(s) URL.
    #[error("`{0}` is not an absolute http(s) URL")]
    BadUrl(String),
    /// No operation matches.
    #[error("no operation matches {method} {url}")]
    NoMatch {
        /// The method.
        method: String,
        /// The URL.
        url: String,
    },
}

/// A recorded exchange.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Full URL.
    pub url: &'a str,
    /// Response status.
    pub status: u16,
    /// Request body bytes.
    pub request: &'a [u8],
    /// Response body bytes as received (JSON, or a stream body).
    pub response: &'a [u8],
    /// The response's content type, when known (else taken from `response_headers`).
    pub content_type: Option<&'a str>,
    /// Request headers.
    pub request_headers: &'a [(String, String)],
    /// Response headers.
    pub response_headers: &'a [(String, String)],
}

/// How `extract` renders the span.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Dialects of the attributes (default: semconv).
    pub dialects: Vec<Dialect>,
    /// The content policy (message attributes kept, truncated, redacted or left out).
    pub content: ContentPolicy,
    /// Match the exchange against this provider's operations only (as the gateway does for
    /// `/{provider}/...`), whatever the URL's host. Default: by host, else by path alone.
    pub provider: Option<String>,
    /// Which request headers and baggage entries become span attributes.
    pub context: crate::context::ContextRules,
    /// The prices the cost is computed from (default: the bundled table).
    pub prices: std::sync::Arc<crate::prices::PriceBook>,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            dialects: vec![Dialect::Semconv],
            content: ContentPolicy::default(),
            provider: None,
            context: crate::context::ContextRules::default(),
            prices: crate::prices::PriceBook::bundled(),
        }
    }
}

/// Text accumulated from a stream is capped at this many bytes by default.
pub const DEFAULT_TEXT_CAP: usize = 1 << 20;

/// Extracts the span of a recorded exchange as the JSON object of `specter extract`.
///
/// ```
/// let catalog = specter::Catalog::bundled().unwrap();
/// let exchange = specter::offline::Recorded {
///     method: "POST",
///     url: "https://api.openai.com/v1/embeddings",
///     status: 200,
///     request: br#"{"model": "text-embedding-3-small", "input": "hi"}"#,
///     response: br#"{"model": "text-embedding-3-small", "usage": {"prompt_tokens": 1}}"#,
///     content_type: None,
///     request_headers: &[],
///     response_headers: &[],
/// };
/// let options = specter::offline::ExtractOptions::default();
/// let out = specter::offline::extract(&catalog, &exchange, &options).unwrap();
/// assert_eq!(out["span"]["name"], "embeddings text-embedding-3-small");
/// assert_eq!(out["span"]["attributes"]["gen_ai.usage.input_tokens"], 1);
/// ```
pub fn extract(
    catalog: &Catalog,
    exchange: &Recorded<'_>,
    options: &ExtractOptions,
) -> Result<Json, ExtractError> {
    let target =
        HttpTarget::parse(exchange.url).ok_or_else(|| ExtractError::BadUrl(exchange.url.into()))?;
    let method = exchange.method.to_ascii_uppercase();
    let found = match &options.provider {
        Some(provider) => catalog.find_in(provider, &method, &target.path, &target.query),
        None => catalog.find(&method, Some(&target.host), &target.path, &target.query),
    };
    let found = found.ok_or_else(|| ExtractError::NoMatch {
        method: method.clone(),
        url: exchange.url.into(),
    })?;
    let content_type = exchange.content_type.or_else(|| {
        exchange
            .response_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str())
    });
    let op = found.operation.clone();
    let credentials = Credentials::of_request(exchange.request_headers, &target.query);
    let mut run = Exchange::new(
        found,
        target,
        exchange.request_headers.to_vec(),
        exchange.request,
    );
    crate::context::apply(&options.context, exchange.request_headers, &mut run);
    run.set_prices(options.prices.clone());
    run.respond_recorded(
        exchange.status,
        exchange.response_headers,
        content_type,
        exchange.response,
        DEFAULT_TEXT_CAP,
    );
    let mut record = run.into_record();
    credentials.scrub_record(&mut record);
    let prepared = Prepared::new(record, &options.content);
    let metrics = crate::telemetry::points(prepared.record(), &op, None);
    let provider = prepared.record().provider.clone();
    let operation = prepared.record().operation.clone();
    let stream = prepared.record().stream.clone();
    let record_problems = prepared.record().problems.clone();
    let span = prepared.into_span(&options.dialects, None);
    Ok(json!({
        "provider": &*provider,
        "operation": &*operation,
        "span": span,
        "metrics": metrics,
        "stream": stream,
        "problems": record_problems,
    }))
}
