//! Forwarding one request: route by the first path segment to the provider's upstream, pass
//! headers and bytes through, and tee the response into the instrumentation.

use std::future::Future as _;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;

use super::config::GatewayConfig;
use super::decode::Decoder;
use super::in_flight::InFlight;
use super::tee::{Observer, TeeBody};
use crate::engine::HttpTarget;
use crate::instrument::Instrumentor;

/// The body type of responses to clients.
pub type ResponseBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The upstream client: pooled, HTTP/1.1 and HTTP/2, TLS through rustls.
pub type Upstream = Client<crate::tls::Connector, Full<Bytes>>;

/// What every request shares.
pub struct Proxy {
    /// Settings.
    pub config: GatewayConfig,
    /// Instrumentation (`None` when turned off).
    pub instrumentor: Option<Instrumentor>,
    /// The catalog in force, shared with the instrumentation and swapped on reload.
    pub catalog: crate::CatalogSlot,
    /// Upstream client.
    pub client: Upstream,
    /// Requests whose response or span has not ended yet (streams included).
    pub in_flight: InFlight,
    /// Client connections open and allowed.
    pub connections: super::ConnectionCount,
    /// Request body bytes buffered at once across requests.
    pub budget: super::RequestBudget,
    /// Routes that matched no operation, reported once each.
    pub unmatched: super::unmatched::UnmatchedRoutes,
    /// The metrics answered at `GET /metrics` (`None`: the path is routed like any other).
    pub metrics: Option<crate::telemetry::exposition::Scrape>,
    /// The trace viewer over the traces file (`None` without one).
    pub viewer: Option<Arc<crate::viewer::Viewer>>,
}

impl Proxy {
    /// A proxy with `config`'s limits; `config.max_connections` is taken as the effective cap.
    pub fn new(
        config: GatewayConfig,
        instrumentor: Option<Instrumentor>,
        catalog: crate::CatalogSlot,
        client: Upstream,
    ) -> Proxy {
        let connections = super::ConnectionCount::new(config.max_connections);
        let budget = super::RequestBudget::new(config.max_buffered_request_bytes);
        Proxy {
            config,
            instrumentor,
            catalog,
            client,
            in_flight: InFlight::default(),
            connections,
            budget,
            unmatched: Default::default(),
            metrics: None,
            viewer: None,
        }
    }
}

/// Headers that belong to one connection and are never forwarded.
pub(super) const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub(super) fn forwardable(
    headers: &HeaderMap,
) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    // Headers named by `Connection` are hop-by-hop too.
    let named: Vec<String> = headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    headers.iter().filter(move |(k, _)| {
        // The body is forwarded whole, so the client's framing goes and hyper frames it anew.
        !HOP_BY_HOP.contains(&k.as_str())
            && k.as_str() != "host"
            && **k != hyper::header::CONTENT_LENGTH
            && !named.iter().any(|n| n == k.as_str())
    })
}

pub(super) fn pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_string(), v.to_string()))
        })
        .collect()
}

/// Removes the upstream response's hop-by-hop headers. A `content-length` beside a
/// `transfer-encoding` is stale (RFC 9112 section 6.3: the transfer coding wins) and would cut
/// the body short on its way to the client, so it goes too; hyper frames the body anew.
fn strip_framing(headers: &mut HeaderMap) {
    if headers.contains_key(hyper::header::TRANSFER_ENCODING) {
        headers.remove(hyper::header::CONTENT_LENGTH);
    }
    let named: Vec<HeaderName> = headers
        .keys()
        .filter(|k| HOP_BY_HOP.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in named {
        headers.remove(k);
    }
}

/// A JSON error answered by the gateway itself (never by the upstream).
pub fn error_response(status: StatusCode, kind: &str, message: &str) -> Response<ResponseBody> {
    let body =
        serde_json::json!({"error": {"type": kind, "message": message, "source": "specter"}})
            .to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

impl Proxy {
    fn catalog(&self) -> Arc<crate::Catalog> {
        self.catalog.current()
    }

    /// Handles one request; never fails (errors become JSON responses).
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, std::convert::Infallible> {
        if request.uri().path() == "/healthz" {
            return Ok(self.health(&request));
        }
        if let Some(scrape) = self.metrics_path(&request) {
            return Ok(super::scrape::answer(scrape.clone(), request.method()).await);
        }
        if crate::viewer::is_viewer_path(request.uri().path()) {
            let (method, uri, headers) = (request.method(), request.uri(), request.headers());
            let local_only = self.config.listen.ip().is_loopback();
            let viewer = self.viewer.clone();
            return Ok(crate::viewer::respond(viewer, method, uri, headers, local_only).await);
        }
        let in_flight = self.in_flight.enter();
        let response = if super::upgrade::requested(&request) {
            super::upgrade::relay(&self, request).await
        } else {
            self.forward(request).await
        };
        // The count drops when hyper drops the body: at its end, or when the client leaves.
        Ok(response.map(|body| super::guarded::Guarded::new(body, in_flight).boxed()))
    }

    /// `GET /healthz`: `ok`, or with `Accept: application/json` the requests in flight, the
    /// client connections open and their cap, and the request body bytes buffered.
    pub(crate) fn health(&self, request: &Request<Incoming>) -> Response<ResponseBody> {
        let json = request
            .headers()
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"));
        let (body, content_type) = if json {
            let report = serde_json::json!({
                "status": "ok",
                "in_flight": self.in_flight.count(),
                "connections": self.connections.open(),
                "max_connections": self.connections.cap(),
                "refused_connections": self.connections.refused(),
                "accept_errors": self.connections.accept_errors(),
                "buffered_request_bytes": self.budget.in_use(),
                "max_buffered_request_bytes": self.budget.total(),
            });
            (Bytes::from(report.to_string()), "application/json")
        } else {
            (Bytes::from_static(b"ok\n"), "text/plain")
        };
        let mut ok = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
        ok.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        ok
    }

    async fn forward(&self, request: Request<Incoming>) -> Response<ResponseBody> {
        let arrived = (std::time::Instant::now(), std::time::SystemTime::now());
        let route = match self.route(&request) {
            Ok(route) => route,
            Err(refused) => return *refused,
        };
        let (parts, body) = request.into_parts();
        // Holds the body's bytes in the shared budget until the response is done.
        let mut reserved = super::RequestBudget::none();
        let body = match self.read_request(&parts.headers, body, &mut reserved).await {
            Ok(body) => body,
            Err(refused) => return *refused,
        };
        let pending = self.pending_call(&route, &parts, arrived);
        let is_call = pending.is_some();
        // An instrumented call also keeps its body parsed and its message text until its span
        // ends: it holds three times its size from the budget, until its response is done.
        if is_call
            && !self
                .budget
                .reserve(&mut reserved, body.len() * INSTRUMENTED_COPIES)
        {
            return self.over_budget();
        }
        // With trace context propagation the call must exist before the request leaves (its
        // `traceparent` goes upstream); otherwise the request is sent first and instrumented
        // while the upstream works.
        let (call, pending) = match pending {
            Some(pending) if self.config.propagate_trace_context => {
                (Some(pending.start(&body)), None)
            }
            pending => (None, pending),
        };
        let Some(mut upstream) =
            self.upstream_request(&route, &parts, &body, call.as_ref(), is_call)
        else {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request headers cannot be forwarded",
            );
        };
        if let Err(message) = self.sign(&route.provider_id, &mut upstream, &body) {
            if let Some(call) = call.or_else(|| pending.map(|pending| pending.start(&body))) {
                call.fail("signing_failed", &message);
            }
            return error_response(StatusCode::BAD_GATEWAY, "signing_failed", &message);
        }
        match self.send(&route, upstream, call, pending, &body).await {
            Ok((response, call)) => self.observe(response, call, reserved),
            Err(refused) => *refused,
        }
    }

    /// Routes a request by its first path segment to its provider's upstream, or refuses it.
    pub(super) fn route(&self, request: &Request<Incoming>) -> Result<Route, Refused> {
        if matches!(request.method(), &Method::TRACE | &Method::CONNECT) {
            // TRACE echoes the request (credentials included) back; CONNECT opens a tunnel.
            let mut response = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                &format!("{} requests are not forwarded", request.method()),
            );
            response.headers_mut().insert(
                hyper::header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
            return Err(Box::new(response));
        }
        let path = request.uri().path();
        let Some((provider_id, rest)) = split_route(path) else {
            return Err(Box::new(error_response(
                StatusCode::NOT_FOUND,
                "unknown_route",
                "routes are /{provider}/{path of the provider's API}; GET /healthz checks the gateway",
            )));
        };
        let catalog = self.catalog();
        let Some(provider) = catalog.provider(provider_id) else {
            return Err(Box::new(error_response(
                StatusCode::NOT_FOUND,
                "unknown_provider",
                &format!("no provider `{provider_id}` is loaded"),
            )));
        };
        let base = self
            .config
            .upstreams
            .get(provider_id)
            .cloned()
            .or_else(|| provider.base_url.clone());
        let Some(base) = base else {
            return Err(Box::new(error_response(
                StatusCode::BAD_GATEWAY,
                "no_upstream",
                &format!("provider `{provider_id}` has no upstream; set one with --upstream {provider_id}=URL"),
            )));
        };
        let query = request.uri().query().map(str::to_string);
        let upstream_url = format!(
            "{}{rest}{}",
            base.trim_end_matches('/'),
            query.as_ref().map(|q| format!("?{q}")).unwrap_or_default()
        );
        let Ok(uri) = upstream_url.parse::<Uri>() else {
            return Err(Box::new(error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request path is not a valid URL path",
            )));
        };
        Ok(Route {
            provider_id: provider_id.to_string(),
            rest: rest.to_string(),
            upstream_url,
            uri,
            catalog,
        })
    }

    /// Reads the request body under its size limit, its deadline and the shared budget (holding
    /// its bytes in `reserved`), or answers why not.
    async fn read_request(
        &self,
        headers: &HeaderMap,
        body: Incoming,
        reserved: &mut super::limits::Reserved,
    ) -> Result<Bytes, Refused> {
        let limit = self.config.max_request_bytes;
        let declared = headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            drain(body).await;
            return Err(Box::new(too_large(limit)));
        }
        let limits = BodyLimits {
            limit,
            declared,
            deadline: self.config.request_body_timeout,
            budget: &self.budget,
        };
        read_body(body, limits, reserved).await.map_err(|e| {
            Box::new(match e {
                BodyError::TooLarge => too_large(limit),
                BodyError::OverBudget => self.over_budget(),
                BodyError::Timeout => {
                    let mut response = error_response(
                        StatusCode::REQUEST_TIMEOUT,
                        "request_timeout",
                        &format!(
                            "the request body did not arrive within {:?}",
                            self.config.request_body_timeout
                        ),
                    );
                    response
                        .headers_mut()
                        .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
                    response
                }
                BodyError::Read(e) => error_response(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &format!("cannot read the request body: {e}"),
                ),
            })
        })
    }

    /// The call a request makes when it is instrumented and its route is one of the provider's
    /// operations; its span starts when the request arrived.
    fn pending_call(
        &self,
        route: &Route,
        parts: &hyper::http::request::Parts,
        arrived: (std::time::Instant, std::time::SystemTime),
    ) -> Option<PendingCall<'_>> {
        let instrumentor = self.instrumentor.as_ref()?;
        let target = HttpTarget::parse(&route.upstream_url).unwrap_or_default();
        let Some(found) = route.catalog.find_in(
            &route.provider_id,
            parts.method.as_str(),
            &route.rest,
            &target.query,
        ) else {
            self.unmatched
                .note(&route.provider_id, parts.method.as_str(), &route.rest);
            return None;
        };
        let headers = pairs(&parts.headers);
        let parent = crate::telemetry::extract_context(&headers);
        Some(PendingCall {
            instrumentor,
            found,
            target,
            headers,
            parent,
            arrived,
        })
    }

    /// The request sent upstream: the client's forwardable headers (its trace context replaced by
    /// the call's when propagating) and the body read; `None` when a header cannot be sent.
    fn upstream_request(
        &self,
        route: &Route,
        parts: &hyper::http::request::Parts,
        body: &Bytes,
        call: Option<&crate::instrument::Call>,
        is_call: bool,
    ) -> Option<Request<Full<Bytes>>> {
        let mut upstream = Request::builder()
            .method(parts.method.clone())
            .uri(route.uri.clone());
        for (k, v) in forwardable(&parts.headers) {
            if self.config.propagate_trace_context
                && is_call
                && (k == "traceparent" || k == "tracestate")
            {
                continue;
            }
            if self.config.context.strips(k.as_str()) {
                continue;
            }
            upstream = upstream.header(k, v);
        }
        if self.config.propagate_trace_context {
            for (k, v) in call.iter().flat_map(|c| c.trace_headers()) {
                upstream = upstream.header(k, v);
            }
        }
        upstream.body(Full::new(body.clone())).ok()
    }

    /// Re-signs the request with the gateway's own AWS credentials when its provider is re-signed.
    fn sign(
        &self,
        provider_id: &str,
        upstream: &mut Request<Full<Bytes>>,
        body: &Bytes,
    ) -> Result<(), String> {
        let Some(signing) = self.config.aws_signing.get(provider_id) else {
            return Ok(());
        };
        signing
            .sign(upstream, body)
            .map_err(|e| format!("cannot re-sign the request for `{provider_id}`: {e}"))
    }

    /// Sends the request upstream and waits for the response head within the response timeout.
    /// A pending call starts once the request is handed to its connection, so the span's request
    /// phase runs while the upstream works. Failures end the call and are answered.
    async fn send(
        &self,
        route: &Route,
        upstream: Request<Full<Bytes>>,
        mut call: Option<crate::instrument::Call>,
        pending: Option<PendingCall<'_>>,
        body: &Bytes,
    ) -> Result<(Response<Incoming>, Option<crate::instrument::Call>), Refused> {
        let provider_id = &route.provider_id;
        let mut sending = std::pin::pin!(tokio::time::timeout(
            self.config.response_timeout,
            self.client.request(upstream)
        ));
        // One poll hands the request to its connection, which writes it on its own task.
        let early = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match sending.as_mut().poll(cx) {
                std::task::Poll::Ready(sent) => Some(sent),
                std::task::Poll::Pending => None,
            })
        })
        .await;
        if let Some(pending) = pending {
            call = Some(pending.start(body));
        }
        let mut waiting = Waiting {
            call: call.take(),
            in_flight: &self.in_flight,
        };
        let sent = match early {
            Some(sent) => sent,
            None => sending.await,
        };
        let call = waiting.call.take();
        match sent {
            Ok(Ok(response)) => Ok((response, call)),
            Ok(Err(e)) => {
                let message = format!(
                    "cannot reach the upstream of `{provider_id}`: {}",
                    error_chain(&e)
                );
                if let Some(call) = call {
                    call.fail("upstream_unreachable", &message);
                }
                Err(Box::new(error_response(
                    StatusCode::BAD_GATEWAY,
                    "upstream_unreachable",
                    &message,
                )))
            }
            Err(_) => {
                let message = format!(
                    "the upstream of `{provider_id}` sent no response within {:?}",
                    self.config.response_timeout
                );
                if let Some(call) = call {
                    call.fail("timeout", &message);
                }
                Err(Box::new(error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    &message,
                )))
            }
        }
    }

    /// Hands the upstream's response on, its body teed to the call (as a stream or a buffered
    /// body) under the idle timeout.
    fn observe(
        &self,
        response: Response<Incoming>,
        call: Option<crate::instrument::Call>,
        reserved: super::limits::Reserved,
    ) -> Response<ResponseBody> {
        let (mut head, upstream_body) = response.into_parts();
        let status = head.status.as_u16();
        let response_headers = pairs(&head.headers);
        let decoder = head
            .headers
            .get(CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .and_then(|enc| Decoder::for_encoding(enc).ok().flatten());
        let observer = match call {
            None => Observer::None,
            Some(call) => match call.into_stream(status, &response_headers) {
                Ok(call) => Observer::Stream {
                    call: Box::new(call),
                    decoder,
                    decoded: 0,
                },
                Err(call) => Observer::Buffer {
                    call,
                    status,
                    headers: response_headers,
                    body: Vec::new(),
                    decoder,
                    cap: self.config.max_response_bytes,
                },
            },
        };
        strip_framing(&mut head.headers);
        let body = TeeBody::new(
            upstream_body,
            observer,
            self.config.idle_timeout,
            self.in_flight.clone(),
        );
        Response::from_parts(head, super::guarded::Guarded::new(body, reserved).boxed())
    }
}

/// A response refusing a request, answered by the gateway itself.
type Refused = Box<Response<ResponseBody>>;

/// Where a request goes.
pub(super) struct Route {
    /// The provider, the first path segment.
    pub(super) provider_id: String,
    /// The rest of the path, the provider's API path.
    pub(super) rest: String,
    /// The upstream URL, query included.
    pub(super) upstream_url: String,
    /// The same, parsed.
    pub(super) uri: Uri,
    /// The catalog the route was found in.
    pub(super) catalog: Arc<crate::Catalog>,
}

/// A call to start once the request is read: its operation, target, headers and parent
/// context, and when the request arrived.
struct PendingCall<'a> {
    instrumentor: &'a Instrumentor,
    found: crate::Match,
    target: HttpTarget,
    headers: Vec<(String, String)>,
    parent: opentelemetry::Context,
    arrived: (std::time::Instant, std::time::SystemTime),
}

impl PendingCall<'_> {
    /// Starts the call (its request phase and span) on the request body.
    fn start(self, body: &Bytes) -> crate::instrument::Call {
        self.instrumentor.start_matched_at(
            self.found,
            self.target,
            &self.headers,
            body,
            &self.parent,
            self.arrived,
        )
    }
}

/// A call waiting for its upstream's answer. If the wait is cut at the end of the shutdown grace
/// period, the call's span ends as cut by the shutdown.
struct Waiting<'a> {
    call: Option<crate::instrument::Call>,
    in_flight: &'a InFlight,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            if self.in_flight.is_closed() {
                call.fail(
                    super::tee::SHUTDOWN,
                    "the gateway shut down before the upstream answered",
                );
            }
        }
    }
}

/// What an instrumented call holds beside its request body, in body sizes: the parsed body and
/// the message text kept for its span.
const INSTRUMENTED_COPIES: usize = 2;

enum BodyError {
    TooLarge,
    OverBudget,
    Timeout,
    Read(hyper::Error),
}

/// What bounds the reading of one request body.
struct BodyLimits<'a> {
    /// Most bytes of this body.
    limit: usize,
    /// Its declared `content-length`.
    declared: Option<u64>,
    /// Time to read it all.
    deadline: std::time::Duration,
    /// Bytes buffered across requests.
    budget: &'a super::RequestBudget,
}

/// Bytes drained after the limit so the client can finish sending and read the 413.
const DRAIN_LIMIT: usize = 64 << 20;

/// Reads a request body up to `limits.limit` bytes within its deadline, holding its bytes in
/// `reserved` from the budget shared by all requests; past the limit or the budget the rest is
/// drained (see [`drain`]) so that a client still sending receives the error.
async fn read_body(
    mut body: Incoming,
    limits: BodyLimits<'_>,
    reserved: &mut super::limits::Reserved,
) -> Result<Bytes, BodyError> {
    let limit = limits.limit;
    let budget = limits.budget;
    // A declared length is reserved at once and read into one allocation of that size.
    let declared = limits
        .declared
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n <= limit);
    if let Some(n) = declared {
        if !budget.reserve(reserved, n) {
            drain(body).await;
            return Err(BodyError::OverBudget);
        }
    }
    let read = async {
        // A body in one frame is kept as it is; more frames are gathered in one buffer.
        let mut first: Option<Bytes> = None;
        let mut buffer = bytes::BytesMut::new();
        let mut read = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(BodyError::Read)?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if read + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            let fresh = (read + data.len()).saturating_sub(read.max(declared.unwrap_or(0)));
            if !budget.reserve(reserved, fresh) {
                return Err(BodyError::OverBudget);
            }
            read += data.len();
            if first.is_none() && buffer.is_empty() {
                first = Some(data);
                continue;
            }
            if let Some(first) = first.take() {
                buffer.reserve(declared.unwrap_or(0).max(first.len() + data.len()));
                buffer.extend_from_slice(&first);
            }
            buffer.extend_from_slice(&data);
        }
        Ok(first.unwrap_or_else(|| buffer.freeze()))
    };
    match tokio::time::timeout(limits.deadline, read).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e @ (BodyError::TooLarge | BodyError::OverBudget))) => {
            drain(body).await;
            Err(e)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(BodyError::Timeout),
    }
}

/// Reads and discards the rest of a refused body, for at most [`DRAIN_LIMIT`] bytes and two
/// seconds, so that a client still sending can read the error instead of a broken pipe.
async fn drain(mut body: Incoming) {
    let discard = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > DRAIN_LIMIT {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), discard).await;
}

impl Proxy {
    /// `503 overloaded`: the request bodies buffered now leave no room for this one.
    fn over_budget(&self) -> Response<ResponseBody> {
        let mut response = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            &format!(
                "the gateway is buffering its maximum of {} request bytes; retry shortly",
                self.budget.total()
            ),
        );
        let headers = response.headers_mut();
        headers.insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
        headers.insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

fn too_large(limit: usize) -> Response<ResponseBody> {
    let mut response = error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request_too_large",
        &format!("request bodies are limited to {limit} bytes"),
    );
    response
        .headers_mut()
        .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// `/openai/v1/chat/completions` → (`openai`, `/v1/chat/completions`).
fn split_route(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (provider, tail) = match rest.find('/') {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, "/"),
    };
    let valid = !provider.is_empty()
        && provider
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    valid.then_some((provider, tail))
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            split_route("/openai/v1/chat/completions"),
            Some(("openai", "/v1/chat/completions"))
        );
        assert_eq!(split_route("/anthropic"), Some(("anthropic", "/")));
        assert_eq!(split_route("//evil.com/x"), None);
        assert_eq!(split_route("/Open/x"), None);
        assert_eq!(split_route("/"), None);
    }
}
