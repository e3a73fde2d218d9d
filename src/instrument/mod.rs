//! The library API for Rust applications, in the spirit of the Python instrumentors'
//! `OpenAIInstrumentor(...).instrument()`: an [`Instrumentor`] recognises provider calls by method
//! and URL, and wraps them so that each produces one GenAI span and its metrics.
//!
//! ```
//! use specter::instrument::{HttpRequest, HttpResponse, Instrumentor};
//!
//! let instrumentor = Instrumentor::builder().build().unwrap();
//! let request = HttpRequest {
//!     method: "POST".into(),
//!     url: "https://api.openai.com/v1/embeddings".into(),
//!     headers: vec![],
//!     body: br#"{"model": "text-embedding-3-small", "input": "hi"}"#.to_vec(),
//! };
//! // Any blocking HTTP client goes here; the closure gets the request (with `traceparent`
//! // added when trace-context propagation is on).
//! let response = instrumentor.instrument_blocking(request, |_request| {
//!     Ok::<_, std::io::Error>(HttpResponse {
//!         status: 200,
//!         headers: vec![],
//!         body: br#"{"model": "text-embedding-3-small", "usage": {"prompt_tokens": 1}}"#.to_vec(),
//!     })
//! });
//! assert_eq!(response.unwrap().status, 200);
//! ```
//!
//! The HTTP clients an application already uses are instrumented with one line each, without
//! converting requests: [`middleware`] (feature `reqwest`,
//! `ClientBuilder::new(client).with(instrumentor.middleware())`) and [`layer`] (feature `tower`,
//! `instrumentor.layer().layer(service)`). Their response bodies are observed as they pass
//! ([`InstrumentedBody`]), never buffered. Every entry takes the span's parent from
//! [`parent_context`] (with feature `tracing`, the caller's `tracing` span).

#[cfg(any(feature = "reqwest", feature = "tower"))]
mod adapt;
#[cfg(any(feature = "reqwest", feature = "tower"))]
mod body;
mod call;
#[cfg(feature = "tower")]
pub mod layer;
#[cfg(feature = "reqwest")]
pub mod middleware;
mod parent;
pub(crate) mod stall;
mod stream;
mod wrap;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use opentelemetry::Context;

#[cfg(any(feature = "reqwest", feature = "tower"))]
pub use body::InstrumentedBody;
pub use call::{Call, HttpRequest, HttpResponse};
#[cfg(feature = "tower")]
pub use layer::{SpecterLayer, SpecterService};
#[cfg(feature = "reqwest")]
pub use middleware::SpecterMiddleware;
pub use parent::parent_context;
pub use stream::{StreamCall, ABANDONED};
pub use wrap::{InstrumentedChunks, InstrumentedStream};

use crate::engine::{Exchange, HttpTarget};
use crate::render::content::{ContentEnvError, ContentPolicy};
use crate::render::credentials::Credentials;
use crate::render::dialect::Dialect;
use crate::telemetry::Telemetry;
use crate::{Catalog, CatalogSlot, LoadError};

/// Options of an [`Instrumentor`].
///
/// ```
/// use specter::{Instrumentor, Options};
///
/// let instrumentor = Instrumentor::builder()
///     .options(Options::default().with_propagate_trace_context(true))
///     .build()
///     .unwrap();
/// # let _ = instrumentor;
/// ```
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct Options {
    /// Record token usage attributes (the Python instrumentors' `enrich_token_usage`). Default true.
    pub enrich_token_usage: bool,
    /// Add W3C `traceparent`/`tracestate` to outgoing requests (the Python instrumentors'
    /// `enable_trace_context_propagation`). Default false.
    pub propagate_trace_context: bool,
    /// Bytes of text a stream may accumulate for its span (default 1 MiB); the rest is counted,
    /// not kept.
    pub max_stream_text: usize,
    /// Bytes of a complete (non-streamed) response body that the middleware and layer adapters
    /// copy to read it (default 8 MiB, the gateway's `max_response_bytes`); a longer body still
    /// reaches the application whole, and its span reads only what was copied.
    pub max_response_bytes: usize,
    /// Bytes of a request body that the tower layer reads before sending it on (default 32 MiB,
    /// the gateway's `max_request_bytes`); a request body longer than this, or of unknown
    /// length, is sent as it is and its span records no request body.
    pub max_request_bytes: usize,
    /// Which request headers and baggage entries become span attributes (default: the built-in
    /// header and baggage mappings).
    pub context: Arc<crate::context::ContextRules>,
    /// The prices a call's cost is computed from (default: the bundled table).
    pub prices: Arc<crate::prices::PriceBook>,
}

impl Options {
    /// Sets [`Options::enrich_token_usage`].
    ///
    /// ```
    /// let options = specter::Options::default().with_enrich_token_usage(false);
    /// assert!(!options.enrich_token_usage);
    /// ```
    pub fn with_enrich_token_usage(mut self, enrich: bool) -> Self {
        self.enrich_token_usage = enrich;
        self
    }

    /// Sets [`Options::propagate_trace_context`].
    ///
    /// ```
    /// let options = specter::Options::default().with_propagate_trace_context(true);
    /// assert!(options.propagate_trace_context);
    /// ```
    pub fn with_propagate_trace_context(mut self, propagate: bool) -> Self {
        self.propagate_trace_context = propagate;
        self
    }

    /// Sets [`Options::max_stream_text`].
    ///
    /// ```
    /// let options = specter::Options::default().with_max_stream_text(4096);
    /// assert_eq!(options.max_stream_text, 4096);
    /// ```
    pub fn with_max_stream_text(mut self, bytes: usize) -> Self {
        self.max_stream_text = bytes;
        self
    }

    /// Sets [`Options::max_response_bytes`].
    ///
    /// ```
    /// let options = specter::Options::default().with_max_response_bytes(1 << 20);
    /// assert_eq!(options.max_response_bytes, 1 << 20);
    /// ```
    pub fn with_max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Sets [`Options::max_request_bytes`].
    ///
    /// ```
    /// let options = specter::Options::default().with_max_request_bytes(1 << 20);
    /// assert_eq!(options.max_request_bytes, 1 << 20);
    /// ```
    pub fn with_max_request_bytes(mut self, bytes: usize) -> Self {
        self.max_request_bytes = bytes;
        self
    }

    /// Sets [`Options::context`] (a type of the unstable internals: the rules `specter serve`
    /// reads from its configuration).
    #[doc(hidden)]
    pub fn with_context(mut self, context: Arc<crate::context::ContextRules>) -> Self {
        self.context = context;
        self
    }

    /// Sets [`Options::prices`] (a type of the unstable internals: the price table `specter
    /// serve` reads from its configuration).
    #[doc(hidden)]
    pub fn with_prices(mut self, prices: Arc<crate::prices::PriceBook>) -> Self {
        self.prices = prices;
        self
    }
}

/// The default of [`Options::max_response_bytes`]: 8 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 << 20;

/// The default of [`Options::max_request_bytes`]: 32 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 32 << 20;

impl Default for Options {
    fn default() -> Self {
        Options {
            enrich_token_usage: true,
            propagate_trace_context: false,
            max_stream_text: crate::offline::DEFAULT_TEXT_CAP,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            context: Arc::new(crate::context::ContextRules::default()),
            prices: crate::prices::PriceBook::bundled(),
        }
    }
}

/// What every call of an instrumentor shares.
pub(crate) struct Shared {
    pub telemetry: Telemetry,
    pub options: Options,
}

/// Recognises provider calls and records them.
///
/// ```
/// use specter::{parent_context, HttpRequest, Instrumentor};
///
/// let instrumentor = Instrumentor::builder().build().unwrap();
/// let mut request = HttpRequest {
///     method: "POST".into(),
///     url: "https://api.openai.com/v1/chat/completions".into(),
///     headers: vec![],
///     body: br#"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}"#.to_vec(),
/// };
/// let call = instrumentor.start(&mut request, &parent_context()).unwrap();
/// assert_eq!(call.provider(), Some("openai"));
/// call.finish(200, &[], br#"{"model": "gpt-4o-mini", "choices": []}"#);
///
/// // Not a GenAI call: nothing to record.
/// request.url = "https://api.openai.com/health".into();
/// assert!(instrumentor.start(&mut request, &parent_context()).is_none());
/// ```
#[derive(Clone)]
pub struct Instrumentor {
    catalog: CatalogSlot,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Instrumentor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instrumentor")
            .field("options", &self.shared.options)
            .finish()
    }
}

/// Builds an [`Instrumentor`].
///
/// ```
/// use specter::{Capture, Catalog, ContentPolicy, Dialect, Instrumentor, Options};
///
/// let instrumentor = Instrumentor::builder()
///     .catalog(Catalog::bundled().unwrap())
///     .dialects(vec![Dialect::Semconv, Dialect::named("openinference").unwrap()])
///     .content(ContentPolicy::default().with_capture(Capture::NoContent))
///     .options(Options::default().with_enrich_token_usage(false))
///     .build()
///     .unwrap();
/// assert!(instrumentor.catalog().provider_ids().any(|id| id == "openai"));
/// ```
pub struct InstrumentorBuilder {
    providers: Option<Vec<PathBuf>>,
    catalog: Option<Catalog>,
    slot: Option<CatalogSlot>,
    telemetry: Option<Telemetry>,
    dialects: Vec<Dialect>,
    content: Option<ContentPolicy>,
    options: Options,
}

/// Why an [`Instrumentor`] cannot be built.
///
/// ```
/// use specter::{BuildError, Instrumentor, LoadError};
///
/// let error = Instrumentor::builder()
///     .providers(vec!["/no/such/providers".into()])
///     .build()
///     .unwrap_err();
/// assert!(matches!(error, BuildError::Load(LoadError::Io { .. })));
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The provider specs cannot be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The content capture variable holds a value that is not accepted.
    #[error(transparent)]
    Content(#[from] ContentEnvError),
}

impl Default for InstrumentorBuilder {
    fn default() -> Self {
        InstrumentorBuilder {
            providers: None,
            catalog: None,
            slot: None,
            telemetry: None,
            dialects: vec![Dialect::Semconv],
            content: None,
            options: Options::default(),
        }
    }
}

impl InstrumentorBuilder {
    /// Loads providers from these directories or files instead of the bundled ones.
    pub fn providers(mut self, paths: Vec<PathBuf>) -> Self {
        self.providers = Some(paths);
        self
    }

    /// Uses this catalog.
    pub fn catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Reads its catalog from this slot, shared with whoever else routes by it and swapped by
    /// whoever reloads it (the gateway). Wins over [`InstrumentorBuilder::catalog`] and
    /// [`InstrumentorBuilder::providers`].
    ///
    /// Takes or returns types of specter's unstable internals: not covered by semver.
    #[doc(hidden)]
    pub fn catalog_slot(mut self, slot: CatalogSlot) -> Self {
        self.slot = Some(slot);
        self
    }

    /// Emits through this telemetry (tracer and meter) instead of the global providers.
    /// Its dialects and content policy are used as they are.
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// The dialects to emit (default: semconv only).
    pub fn dialects(mut self, dialects: Vec<Dialect>) -> Self {
        self.dialects = dialects;
        self
    }

    /// The content policy (default: from `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`,
    /// content on the span).
    pub fn content(mut self, content: ContentPolicy) -> Self {
        self.content = Some(content);
        self
    }

    /// Options.
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Builds.
    ///
    /// # Errors
    /// When provider files cannot be loaded, or when neither a telemetry nor a content policy is
    /// given and `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` holds a value that is not
    /// accepted.
    pub fn build(self) -> Result<Instrumentor, BuildError> {
        let catalog = match (self.slot, self.catalog, self.providers) {
            (Some(slot), _, _) => slot,
            (None, Some(c), _) => CatalogSlot::new(c),
            (None, None, Some(paths)) => CatalogSlot::new(Catalog::load(&paths)?),
            (None, None, None) => CatalogSlot::new(Catalog::bundled()?),
        };
        let telemetry = match (self.telemetry, self.content) {
            (Some(telemetry), _) => telemetry,
            (None, Some(content)) => Telemetry::global(self.dialects, content),
            (None, None) => Telemetry::global(self.dialects, ContentPolicy::from_env()?),
        };
        Ok(Instrumentor {
            catalog,
            shared: Arc::new(Shared {
                telemetry,
                options: self.options,
            }),
        })
    }
}

impl Instrumentor {
    /// A builder with the bundled providers, the global tracer and meter providers, and defaults.
    pub fn builder() -> InstrumentorBuilder {
        InstrumentorBuilder::default()
    }

    /// The catalog in use.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.current()
    }

    /// The slot the catalog is read from.
    ///
    /// Takes or returns types of specter's unstable internals: not covered by semver.
    #[doc(hidden)]
    pub fn catalog_slot(&self) -> &CatalogSlot {
        &self.catalog
    }

    /// The telemetry the instrumentor emits through.
    pub fn telemetry(&self) -> &Telemetry {
        &self.shared.telemetry
    }

    /// Replaces the catalog (hot reload); calls already started keep the rules they started with.
    pub fn set_catalog(&self, catalog: Catalog) {
        self.catalog.replace(catalog);
    }

    /// Starts a call when the request matches an operation: runs the request phase and opens the
    /// span as a child of `parent`. With trace-context propagation on, adds `traceparent` to the
    /// request's headers. `None` when the request is not a known GenAI call.
    pub fn start(&self, request: &mut HttpRequest, parent: &Context) -> Option<Call> {
        let (found, target) = self.find(&request.method, &request.url)?;
        let call = self.start_matched(found, target, &request.headers, &request.body, parent);
        if self.propagates() {
            request.headers.retain(|(k, _)| {
                !k.eq_ignore_ascii_case("traceparent") && !k.eq_ignore_ascii_case("tracestate")
            });
            request.headers.extend(call.trace_headers());
        }
        Some(call)
    }

    /// The operation a request with this method and absolute URL calls, with the URL parsed;
    /// `None` when it is not a known GenAI call.
    pub(crate) fn find(&self, method: &str, url: &str) -> Option<(crate::Match, HttpTarget)> {
        let target = HttpTarget::parse(url)?;
        let found = self.catalog().find(
            &method.to_ascii_uppercase(),
            Some(&target.host),
            &target.path,
            &target.query,
        )?;
        Some((found, target))
    }

    /// Whether calls add W3C trace-context headers to their requests.
    pub(crate) fn propagates(&self) -> bool {
        self.shared.options.propagate_trace_context
    }

    /// Starts a call for an operation already found (the gateway's route).
    ///
    /// Takes or returns types of specter's unstable internals: not covered by semver.
    #[doc(hidden)]
    pub fn start_matched(
        &self,
        found: crate::Match,
        target: HttpTarget,
        headers: &[(String, String)],
        body: &[u8],
        parent: &Context,
    ) -> Call {
        self.start_matched_at(
            found,
            target,
            headers,
            body,
            parent,
            (Instant::now(), SystemTime::now()),
        )
    }

    /// [`Instrumentor::start_matched`] for a call that began at `since` (monotonic and wall-clock
    /// time), e.g. when the request arrived at a gateway that instruments it a little later.
    ///
    /// Takes or returns types of specter's unstable internals: not covered by semver.
    #[doc(hidden)]
    pub fn start_matched_at(
        &self,
        found: crate::Match,
        target: HttpTarget,
        headers: &[(String, String)],
        body: &[u8],
        parent: &Context,
        since: (Instant, SystemTime),
    ) -> Call {
        let (started, start_time) = since;
        let request_headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        let credentials = Credentials::of_request(headers, &target.query);
        let content = crate::engine::Content::of(self.shared.telemetry.content().capture);
        let mut exchange = Exchange::new(found, target, request_headers, body, content);
        crate::context::apply(&self.shared.options.context, headers, &mut exchange);
        exchange.set_prices(self.shared.options.prices.clone());
        let span = self.shared.telemetry.start_scrubbed(
            exchange.record(),
            parent,
            start_time,
            credentials,
        );
        Call {
            parts: Some(Box::new(call::CallParts {
                exchange,
                span: call::CallSpan {
                    shared: self.shared.clone(),
                    span,
                    started,
                    start_time,
                },
            })),
        }
    }

    /// Instruments an async call: `send` receives the request (with `traceparent` when
    /// propagation is on) and returns the complete response. The span is a child of
    /// [`parent_context`]. Requests that match no operation are sent untouched.
    pub async fn instrument<F, Fut, E>(
        &self,
        mut request: HttpRequest,
        send: F,
    ) -> Result<HttpResponse, E>
    where
        F: FnOnce(HttpRequest) -> Fut,
        Fut: Future<Output = Result<HttpResponse, E>>,
        E: std::fmt::Display,
    {
        let call = self.start(&mut request, &parent_context());
        let result = send(request).await;
        finish_with(call, &result);
        result
    }

    /// Instruments a blocking call, like [`Instrumentor::instrument`].
    pub fn instrument_blocking<F, E>(
        &self,
        mut request: HttpRequest,
        send: F,
    ) -> Result<HttpResponse, E>
    where
        F: FnOnce(HttpRequest) -> Result<HttpResponse, E>,
        E: std::fmt::Display,
    {
        let call = self.start(&mut request, &parent_context());
        let result = send(request);
        finish_with(call, &result);
        result
    }
}

fn finish_with<E: std::fmt::Display>(call: Option<Call>, result: &Result<HttpResponse, E>) {
    let Some(call) = call else { return };
    match result {
        Ok(response) => call.finish(response.status, &response.headers, &response.body),
        Err(e) => call.fail("_OTHER", &e.to_string()),
    }
}
