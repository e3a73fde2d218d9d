//! Offline extraction: one recorded exchange (method, URL, status, body files) to the span JSON
//! that `specter extract` prints and the fixture tests snapshot.

use serde_json::{json, Value as Json};

use crate::engine::{Exchange, HttpTarget};
use crate::render::content::ContentPolicy;
use crate::render::credentials::Credentials;
use crate::render::dialect::Dialect;
use crate::render::Prepared;
use crate::{Catalog, Match};

/// Why an exchange could not be extracted.
///
/// ```
/// use specter::offline::{extract, ExtractError, ExtractOptions, Recorded};
///
/// let catalog = specter::Catalog::bundled().unwrap();
/// let exchange = Recorded {
///     method: "GET",
///     url: "https://example.com/not/an/llm",
///     status: 200,
///     request: b"",
///     response: b"{}",
///     content_type: None,
///     request_headers: &[],
///     response_headers: &[],
/// };
/// let error = extract(&catalog, &exchange, &ExtractOptions::default()).unwrap_err();
/// assert!(matches!(error, ExtractError::NoMatch { .. }));
/// ```
#[non_exhaustive]
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
    /// The URL's host is claimed by no provider and several providers have the route.
    #[error("{method} {path} is a route of several providers ({}) and the host `{host}` is claimed by none", candidates.join(", "))]
    Ambiguous {
        /// The method.
        method: String,
        /// The URL's host.
        host: String,
        /// The URL's path.
        path: String,
        /// The providers with the route, base providers first.
        candidates: Vec<String>,
    },
}

/// How the provider of an exchange was chosen.
///
/// ```
/// use specter::offline::{extract_with, ExtractOptions, MatchedBy, Recorded};
///
/// let catalog = specter::Catalog::bundled().unwrap();
/// let exchange = Recorded {
///     method: "POST",
///     url: "https://api.openai.com/v1/embeddings",
///     status: 200,
///     request: br#"{"model": "text-embedding-3-small", "input": "hi"}"#,
///     response: br#"{"model": "text-embedding-3-small", "usage": {"prompt_tokens": 1}}"#,
///     content_type: Some("application/json"),
///     request_headers: &[],
///     response_headers: &[],
/// };
/// let by_host = extract_with(&catalog, &exchange, &ExtractOptions::default()).unwrap();
/// assert_eq!(by_host.matched_by, MatchedBy::Host);
/// let named = ExtractOptions::default().with_provider(Some("openai".into()));
/// assert_eq!(extract_with(&catalog, &exchange, &named).unwrap().matched_by, MatchedBy::Provider);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedBy {
    /// [`ExtractOptions::provider`] named it.
    Provider,
    /// The provider claims the URL's host.
    Host,
    /// No provider claims the host; the provider is the only one with the route.
    Path,
}

/// The output of [`extract_with`]: the JSON of `specter extract` and how its provider was chosen.
///
/// ```
/// use specter::offline::{extract_with, ExtractOptions, Recorded};
///
/// let catalog = specter::Catalog::bundled().unwrap();
/// let exchange = Recorded {
///     method: "POST",
///     url: "https://api.openai.com/v1/embeddings",
///     status: 200,
///     request: br#"{"model": "text-embedding-3-small", "input": "hi"}"#,
///     response: br#"{"model": "text-embedding-3-small", "usage": {"prompt_tokens": 1}}"#,
///     content_type: Some("application/json"),
///     request_headers: &[],
///     response_headers: &[],
/// };
/// let extracted = extract_with(&catalog, &exchange, &ExtractOptions::default()).unwrap();
/// assert_eq!(extracted.output["provider"], "openai");
/// ```
#[derive(Debug, Clone)]
pub struct Extracted {
    /// The JSON object.
    pub output: Json,
    /// How the provider was chosen.
    pub matched_by: MatchedBy,
}

/// A recorded exchange.
///
/// ```
/// use specter::offline::{extract, ExtractOptions, Recorded};
///
/// let catalog = specter::Catalog::bundled().unwrap();
/// let exchange = Recorded {
///     method: "POST",
///     url: "https://api.openai.com/v1/embeddings",
///     status: 200,
///     request: br#"{"model": "text-embedding-3-small", "input": "hi"}"#,
///     response: br#"{"model": "text-embedding-3-small", "usage": {"prompt_tokens": 1}}"#,
///     content_type: Some("application/json"),
///     request_headers: &[],
///     response_headers: &[],
/// };
/// let out = extract(&catalog, &exchange, &ExtractOptions::default()).unwrap();
/// assert_eq!(out["span"]["attributes"]["gen_ai.request.model"], "text-embedding-3-small");
/// ```
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
///
/// ```
/// use specter::offline::ExtractOptions;
/// use specter::{Capture, ContentPolicy, Dialect};
///
/// let options = ExtractOptions::default()
///     .with_dialects(vec![Dialect::named("openinference").unwrap()])
///     .with_content(ContentPolicy::default().with_capture(Capture::NoContent))
///     .with_provider(Some("openai".into()));
/// assert_eq!(options.provider.as_deref(), Some("openai"));
/// ```
#[non_exhaustive]
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

impl ExtractOptions {
    /// Sets [`ExtractOptions::dialects`].
    ///
    /// ```
    /// let options = specter::offline::ExtractOptions::default()
    ///     .with_dialects(vec![specter::Dialect::named("openinference").unwrap()]);
    /// assert_eq!(options.dialects.len(), 1);
    /// ```
    pub fn with_dialects(mut self, dialects: Vec<Dialect>) -> Self {
        self.dialects = dialects;
        self
    }

    /// Sets [`ExtractOptions::content`].
    ///
    /// ```
    /// use specter::{Capture, ContentPolicy};
    ///
    /// let options = specter::offline::ExtractOptions::default()
    ///     .with_content(ContentPolicy::default().with_capture(Capture::NoContent));
    /// assert_eq!(options.content.capture, Capture::NoContent);
    /// ```
    pub fn with_content(mut self, content: ContentPolicy) -> Self {
        self.content = content;
        self
    }

    /// Sets [`ExtractOptions::provider`].
    ///
    /// ```
    /// let options = specter::offline::ExtractOptions::default().with_provider(Some("openai".into()));
    /// assert_eq!(options.provider.as_deref(), Some("openai"));
    /// ```
    pub fn with_provider(mut self, provider: Option<String>) -> Self {
        self.provider = provider;
        self
    }

    /// Sets [`ExtractOptions::context`] (a type of the unstable internals).
    #[doc(hidden)]
    pub fn with_context(mut self, context: crate::context::ContextRules) -> Self {
        self.context = context;
        self
    }

    /// Sets [`ExtractOptions::prices`] (a type of the unstable internals).
    #[doc(hidden)]
    pub fn with_prices(mut self, prices: std::sync::Arc<crate::prices::PriceBook>) -> Self {
        self.prices = prices;
        self
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
    extract_with(catalog, exchange, options).map(|e| e.output)
}

/// [`extract`], also saying how the provider was chosen: the one named by the options, else the
/// one claiming the URL's host, else the only provider with the route (several are an error:
/// name one with [`ExtractOptions::provider`]).
///
/// ```
/// use specter::offline::{extract_with, ExtractOptions, Recorded};
///
/// let catalog = specter::Catalog::bundled().unwrap();
/// let exchange = Recorded {
///     method: "POST",
///     url: "https://api.openai.com/v1/embeddings",
///     status: 200,
///     request: br#"{"model": "text-embedding-3-small", "input": "hi"}"#,
///     response: br#"{"model": "text-embedding-3-small", "usage": {"prompt_tokens": 1}}"#,
///     content_type: Some("application/json"),
///     request_headers: &[],
///     response_headers: &[],
/// };
/// let extracted = extract_with(&catalog, &exchange, &ExtractOptions::default()).unwrap();
/// assert_eq!(extracted.output["span"]["name"], "embeddings text-embedding-3-small");
/// ```
pub fn extract_with(
    catalog: &Catalog,
    exchange: &Recorded<'_>,
    options: &ExtractOptions,
) -> Result<Extracted, ExtractError> {
    let target =
        HttpTarget::parse(exchange.url).ok_or_else(|| ExtractError::BadUrl(exchange.url.into()))?;
    let method = exchange.method.to_ascii_uppercase();
    let (found, matched_by) = find(catalog, &method, &target, options)
        .map_err(|candidates| ambiguous_or_none(&method, exchange.url, &target, candidates))?;
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
        crate::engine::Content::of(options.content.capture),
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
    let renames = crate::render::dialect::metric_renames(&options.dialects);
    let metrics = crate::telemetry::points_renamed(prepared.record(), &op, None, &renames);
    let provider = prepared.record().provider.clone();
    let operation = prepared.record().operation.clone();
    let stream = prepared.record().stream.clone();
    let record_problems = prepared.record().problems.clone();
    let span = prepared.into_span(&options.dialects, None);
    let output = json!({
        "provider": &*provider,
        "operation": &*operation,
        "span": span,
        "metrics": metrics,
        "stream": stream,
        "problems": record_problems,
    });
    Ok(Extracted { output, matched_by })
}

/// The operation of an exchange and how its provider was chosen, or the providers that share
/// the route when the host selects none (empty: no provider has it).
fn find(
    catalog: &Catalog,
    method: &str,
    target: &HttpTarget,
    options: &ExtractOptions,
) -> Result<(Match, MatchedBy), Vec<String>> {
    let (path, query) = (&target.path, &target.query);
    if let Some(provider) = &options.provider {
        let found = catalog.find_in(provider, method, path, query);
        return found.map(|m| (m, MatchedBy::Provider)).ok_or_else(Vec::new);
    }
    if let Some(provider) = catalog.provider_for_host(&target.host) {
        let found = catalog.find_in(&provider.id, method, path, query);
        return found.map(|m| (m, MatchedBy::Host)).ok_or_else(Vec::new);
    }
    let mut matches: Vec<(String, Match)> = catalog
        .providers()
        .iter()
        .filter_map(|p| {
            catalog
                .find_in(&p.id, method, path, query)
                .map(|m| (p.id.to_string(), m))
        })
        .collect();
    if matches.len() == 1 {
        if let Some((_, found)) = matches.pop() {
            return Ok((found, MatchedBy::Path));
        }
    }
    Err(matches.into_iter().map(|(id, _)| id).collect())
}

/// A missing match as an error: no provider with the route, or several.
fn ambiguous_or_none(
    method: &str,
    url: &str,
    target: &HttpTarget,
    candidates: Vec<String>,
) -> ExtractError {
    if candidates.len() > 1 {
        ExtractError::Ambiguous {
            method: method.to_string(),
            host: target.host.clone(),
            path: target.path.clone(),
            candidates,
        }
    } else {
        ExtractError::NoMatch {
            method: method.to_string(),
            url: url.to_string(),
        }
    }
}
