//! The `reqwest` adapter (feature `reqwest`): a [`reqwest_middleware::Middleware`] that
//! instruments every request of a `reqwest_middleware::ClientWithMiddleware` that is a GenAI
//! call, and passes every other request on untouched.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let instrumentor = specter::instrument::Instrumentor::builder().build()?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(instrumentor.middleware())
//!     .build();
//! let response = client
//!     .post("https://api.openai.com/v1/chat/completions")
//!     .body(r#"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}"#)
//!     .send()
//!     .await?;
//! // The span ends when the body has been read (or fails, or is dropped unread).
//! let _answer = response.bytes().await?;
//! # Ok(())
//! # }
//! ```
//!
//! - The response's body is not buffered: it reaches the application as it arrives, and the
//!   span ends exactly once, when the body ends (`bytes()`, `json()`, the end of
//!   `bytes_stream()`), when it fails (the connection is cut), or when the application drops the
//!   response before its end (recorded as abandoned, [`super::ABANDONED`]). A streamed response
//!   is folded chunk by chunk; a complete one is read from a copy of at most
//!   [`super::Options::max_response_bytes`].
//! - The request body is read when reqwest holds it in memory (`.body(String)`, `.json(..)`); a
//!   streamed request body (`Body::wrap_stream`) is sent as it is and the span records no request
//!   body (no model, no input messages).
//! - A response that the client did not decompress (a `Content-Encoding` still on it) gets a span
//!   with its status but not its body's attributes: enable reqwest's `gzip`/`brotli`/`zstd`
//!   features to have it decompressed before the middleware sees it.
//! - The span's parent is [`super::parent_context`] when the request is sent.

use http::Extensions;
use reqwest::{Request, Response, ResponseBuilderExt as _};
use reqwest_middleware::{Middleware, Next};

use super::adapt::{header_pairs, set_trace_headers};
use super::{parent_context, Call, InstrumentedBody, Instrumentor};

/// Instruments the GenAI calls a `reqwest_middleware` client sends.
///
/// ```
/// use specter::instrument::{Instrumentor, SpecterMiddleware};
///
/// let instrumentor = Instrumentor::builder().build().unwrap();
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(SpecterMiddleware::new(instrumentor))
///     .build();
/// # let _ = client;
/// ```
#[derive(Debug, Clone)]
pub struct SpecterMiddleware {
    instrumentor: Instrumentor,
}

impl SpecterMiddleware {
    /// Middleware recording through `instrumentor`.
    pub fn new(instrumentor: Instrumentor) -> SpecterMiddleware {
        SpecterMiddleware { instrumentor }
    }

    /// Starts the request's call when it is a GenAI call.
    fn start(&self, request: &mut Request) -> Option<Call> {
        let (found, target) = self
            .instrumentor
            .find(request.method().as_str(), request.url().as_str())?;
        let headers = header_pairs(request.headers());
        let body = request
            .body()
            .and_then(reqwest::Body::as_bytes)
            .unwrap_or_default();
        let call =
            self.instrumentor
                .start_matched(found, target, &headers, body, &parent_context());
        if self.instrumentor.propagates() {
            set_trace_headers(request.headers_mut(), &call);
        }
        Some(call)
    }
}

impl Instrumentor {
    /// This instrumentor as `reqwest_middleware` middleware (feature `reqwest`), for
    /// `reqwest_middleware::ClientBuilder::with`.
    ///
    /// ```
    /// let instrumentor = specter::instrument::Instrumentor::builder().build().unwrap();
    /// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
    ///     .with(instrumentor.middleware())
    ///     .build();
    /// # let _ = client;
    /// ```
    pub fn middleware(&self) -> SpecterMiddleware {
        SpecterMiddleware::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Middleware for SpecterMiddleware {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let Some(call) = self.start(&mut request) else {
            return next.run(request, extensions).await;
        };
        match next.run(request, extensions).await {
            Ok(response) => Ok(observe(response, call)),
            Err(e) => {
                call.fail(error_type(&e), &e.to_string());
                Err(e)
            }
        }
    }
}

/// The `error.type` of a request that got no response.
fn error_type(error: &reqwest_middleware::Error) -> &'static str {
    match error {
        reqwest_middleware::Error::Reqwest(e) if e.is_timeout() => "timeout",
        _ => "_OTHER",
    }
}

/// The response with its body observed by `call`; status, headers, URL and extensions unchanged.
fn observe(response: Response, call: Call) -> Response {
    let url = response.url().clone();
    let status = response.status().as_u16();
    let headers = header_pairs(response.headers());
    let (mut parts, body) = http::Response::<reqwest::Body>::from(response).into_parts();
    // The conversion drops the URL; it travels back in the extension reqwest reads it from.
    if let Ok(with_url) = http::Response::builder().url(url).body(()) {
        parts.extensions.extend(with_url.into_parts().0.extensions);
    }
    let body = reqwest::Body::wrap(InstrumentedBody::new(body, call, status, headers));
    Response::from(http::Response::from_parts(parts, body))
}
