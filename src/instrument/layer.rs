//! The `tower` adapter (feature `tower`): a [`tower_layer::Layer`] for services of
//! `http::Request<B>` to `http::Response<B2>` (hyper and hyper-util clients, and anything built
//! on them), which instruments every request that is a GenAI call and passes every other request
//! on untouched.
//!
//! ```no_run
//! use http_body_util::Full;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::{Layer as _, ServiceExt as _};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let instrumentor = specter::instrument::Instrumentor::builder().build()?;
//! let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
//! let service = instrumentor.layer().layer(client);
//! let request = http::Request::post("http://127.0.0.1:8080/v1/chat/completions")
//!     .header("host", "api.openai.com")
//!     .body(Full::from(r#"{"model": "gpt-4o-mini", "messages": []}"#))?;
//! let response = service.oneshot(request).await?;
//! # let _ = response;
//! # Ok(())
//! # }
//! ```
//!
//! - The request's URL is its URI when that is absolute, else `http://` + its `Host` header +
//!   its path.
//! - The request body of a GenAI call is read before it is sent on, when its length is known and
//!   at most [`super::Options::max_request_bytes`], and rebuilt with `B: From<Bytes>` (what
//!   `http_body_util::Full<Bytes>`, `reqwest::Body` and `axum::body::Body` offer); a longer body, or one
//!   of unknown length (a stream), is sent as it is and the span records no request body.
//! - The response body is wrapped in an [`InstrumentedBody`]: not buffered, handed on frame by
//!   frame, and the span ends exactly once at its end, on its error, or when it is dropped
//!   before its end (abandoned). A body still compressed (`Content-Encoding`) is not read.
//! - Errors are boxed ([`BoxError`], as tower's own layers do): the inner service's error, or
//!   the error of reading a request body.
//! - The span's parent is [`super::parent_context`] when the service is called.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt as _;
use tower_layer::Layer;
use tower_service::Service;

use super::adapt::{header_pairs, set_trace_headers};
use super::{parent_context, Call, InstrumentedBody, Instrumentor};

/// The error of an instrumented service, as tower's own layers box theirs.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Wraps a service so that its GenAI calls are instrumented.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use specter::instrument::{Instrumentor, SpecterLayer};
/// use tower_layer::Layer as _;
///
/// let layer = SpecterLayer::new(Instrumentor::builder().build().unwrap());
/// let echo = tower::service_fn(|request: http::Request<Full<Bytes>>| async move {
///     Ok::<_, std::convert::Infallible>(http::Response::new(request.into_body()))
/// });
/// let service = layer.layer(echo);
/// # let _ = service;
/// ```
#[derive(Debug, Clone)]
pub struct SpecterLayer {
    instrumentor: Instrumentor,
}

impl SpecterLayer {
    /// A layer recording through `instrumentor`.
    pub fn new(instrumentor: Instrumentor) -> SpecterLayer {
        SpecterLayer { instrumentor }
    }
}

impl Instrumentor {
    /// This instrumentor as a tower layer (feature `tower`).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use tower_layer::Layer as _;
    ///
    /// let instrumentor = specter::instrument::Instrumentor::builder().build().unwrap();
    /// let echo = tower::service_fn(|request: http::Request<Full<Bytes>>| async move {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(request.into_body()))
    /// });
    /// let service = instrumentor.layer().layer(echo);
    /// # let _ = service;
    /// ```
    pub fn layer(&self) -> SpecterLayer {
        SpecterLayer::new(self.clone())
    }
}

impl<S> Layer<S> for SpecterLayer {
    type Service = SpecterService<S>;

    fn layer(&self, inner: S) -> SpecterService<S> {
        SpecterService {
            inner,
            instrumentor: self.instrumentor.clone(),
        }
    }
}

/// A service whose GenAI calls are instrumented; made by [`SpecterLayer`]. Its responses'
/// bodies are [`InstrumentedBody`]s; its errors are boxed.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{BodyExt as _, Full};
/// use tower::{Layer as _, ServiceExt as _};
///
/// let instrumentor = specter::instrument::Instrumentor::builder().build().unwrap();
/// // Stands in for an HTTP client: answers every request with its own body.
/// let echo = tower::service_fn(|request: http::Request<Full<Bytes>>| async move {
///     Ok::<_, std::convert::Infallible>(http::Response::new(request.into_body()))
/// });
/// let service = instrumentor.layer().layer(echo);
/// let request = http::Request::get("http://example.com/health")
///     .body(Full::from("not a GenAI call"))
///     .unwrap();
/// let response = futures::executor::block_on(service.oneshot(request)).unwrap();
/// let body = futures::executor::block_on(response.into_body().collect()).unwrap();
/// assert_eq!(body.to_bytes(), "not a GenAI call");
/// ```
#[derive(Debug, Clone)]
pub struct SpecterService<S> {
    inner: S,
    instrumentor: Instrumentor,
}

/// The future of [`SpecterService::call`].
pub type ResponseFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl<S, ReqB, ResB> Service<http::Request<ReqB>> for SpecterService<S>
where
    S: Service<http::Request<ReqB>, Response = http::Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqB: Body + From<Bytes> + Send + 'static,
    ReqB::Data: Send,
    ReqB::Error: Into<BoxError>,
    ResB: Body + Send + 'static,
{
    type Response = http::Response<InstrumentedBody<ResB>>;
    type Error = BoxError;
    type Future = ResponseFuture<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<ReqB>) -> Self::Future {
        // The service that was polled ready serves this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let instrumentor = self.instrumentor.clone();
        let since = (Instant::now(), SystemTime::now());
        let parent = parent_context();
        let found = instrumentor.find(request.method().as_str(), &url_of(&request));
        Box::pin(async move {
            let Some((found, target)) = found else {
                let response = inner.call(request).await.map_err(Into::into)?;
                return Ok(response.map(InstrumentedBody::passthrough));
            };
            let (mut parts, body) = request.into_parts();
            let cap = instrumentor.shared.options.max_request_bytes;
            let (body, read) = read_body(body, cap).await?;
            let headers = header_pairs(&parts.headers);
            let call = instrumentor.start_matched_at(
                found,
                target,
                &headers,
                read.as_deref().unwrap_or_default(),
                &parent,
                since,
            );
            if instrumentor.propagates() {
                set_trace_headers(&mut parts.headers, &call);
            }
            let request = http::Request::from_parts(parts, body);
            match inner.call(request).await {
                Ok(response) => Ok(observe(response, call)),
                Err(e) => {
                    let e: BoxError = e.into();
                    call.fail("_OTHER", &e.to_string());
                    Err(e)
                }
            }
        })
    }
}

/// The request's absolute URL: its URI when absolute, else from its `Host` header.
fn url_of<B>(request: &http::Request<B>) -> String {
    let uri = request.uri();
    if uri.scheme().is_some() && uri.authority().is_some() {
        return uri.to_string();
    }
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    format!("http://{host}{path}")
}

/// Reads a body whose length is known and at most `cap`, and gives it back rebuilt with its
/// bytes; any other body is given back as it is, unread.
async fn read_body<B>(body: B, cap: usize) -> Result<(B, Option<Bytes>), BoxError>
where
    B: Body + From<Bytes>,
    B::Error: Into<BoxError>,
{
    let fits = body
        .size_hint()
        .upper()
        .is_some_and(|upper| upper <= u64::try_from(cap).unwrap_or(u64::MAX));
    if !fits {
        return Ok((body, None));
    }
    let bytes = body.collect().await.map_err(Into::into)?.to_bytes();
    Ok((B::from(bytes.clone()), Some(bytes)))
}

/// The response with its body observed by `call`.
fn observe<B: Body>(
    response: http::Response<B>,
    call: Call,
) -> http::Response<InstrumentedBody<B>> {
    let status = response.status().as_u16();
    let headers = header_pairs(response.headers());
    response.map(|body| InstrumentedBody::new(body, call, status, headers))
}
