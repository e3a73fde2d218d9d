//! HTTP/1.1 upgrades relayed to a provider's upstream. A request carrying `Connection: upgrade`
//! and `Upgrade: <protocol>` (a WebSocket handshake, e.g. a realtime API) is routed like every
//! other request (the upstream comes only from the provider spec or `--upstream`), sent on a
//! connection of its own that speaks HTTP/1.1 only (HTTP/2 has no `Upgrade`), and when the
//! upstream answers `101 Switching Protocols` the client gets that answer and both connections
//! are spliced byte for byte until either side closes or both stay silent for the idle timeout.
//! Any other answer goes back as an ordinary response.
//!
//! The session is one plain span (not a GenAI call) from the request's arrival to the end of the
//! splice; the messages exchanged inside it are relayed unread.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, UPGRADE};
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value as Json;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};

use super::config::GatewayConfig;
use super::in_flight::{Guard, InFlight};
use super::proxy::{error_chain, error_response, forwardable, pairs, HOP_BY_HOP};
use super::proxy::{Proxy, ResponseBody};
use super::tee::{Observer, TeeBody};
use crate::engine::HttpTarget;
use crate::telemetry::PlainSpan;

/// Whether an HTTP/1.1 request asks to switch protocols: an `Upgrade` header and `upgrade` among
/// the `Connection` tokens.
pub(super) fn requested<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    request.version() == Version::HTTP_11
        && headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Where an upgrade goes.
struct Route {
    /// `gen_ai.provider.name` of the route's provider.
    provider_name: String,
    /// The upstream URL (base, path, query).
    uri: Uri,
    /// The same, parsed.
    target: HttpTarget,
}

/// Routes the upgrade as the proxy routes every request (the same refusals), then names its
/// provider and parses its upstream target.
fn route(proxy: &Proxy, request: &Request<Incoming>) -> Result<Route, Box<Response<ResponseBody>>> {
    let routed = proxy.route(request)?;
    let provider_name = routed
        .catalog
        .provider(&routed.provider_id)
        .map(|p| p.provider_name.to_string())
        .unwrap_or_default();
    let Some(target) = HttpTarget::parse(&routed.upstream_url) else {
        return Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request path is not a valid URL path",
        )));
    };
    Ok(Route {
        provider_name,
        uri: routed.uri,
        target,
    })
}

/// Relays an upgrade request (see [`requested`]); never fails (errors become JSON responses).
pub(super) async fn relay(proxy: &Proxy, mut request: Request<Incoming>) -> Response<ResponseBody> {
    let arrived = SystemTime::now();
    let route = match route(proxy, &request) {
        Ok(route) => route,
        Err(response) => return *response,
    };
    let client_side = hyper::upgrade::on(&mut request);
    let mut session = Session::start(proxy, &request, &route, arrived);
    let Some(upstream_request) = upstream_request(request.headers(), &route) else {
        session.fail("_OTHER", "the request headers cannot be forwarded");
        return error_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request headers cannot be forwarded",
        );
    };
    let mut response = match send(&proxy.config, upstream_request).await {
        Ok(response) => response,
        Err((status, kind, error_type, message)) => {
            session.fail(error_type, &message);
            return error_response(status, kind, &message);
        }
    };
    let status = response.status();
    session.set("http.response.status_code", Json::from(status.as_u16()));
    if status != StatusCode::SWITCHING_PROTOCOLS {
        session.fail(status.as_str(), "the upstream did not switch protocols");
        return refused(proxy, response);
    }
    let upstream_side = hyper::upgrade::on(&mut response);
    let counted = proxy.in_flight.enter();
    tokio::spawn(splice(
        client_side,
        upstream_side,
        proxy.config.idle_timeout,
        session,
        (counted, proxy.in_flight.clone()),
    ));
    let (head, _) = response.into_parts();
    Response::from_parts(head, Empty::new().map_err(|never| match never {}).boxed())
}

/// The request for the upstream: the client's end-to-end headers, `Connection: upgrade` and the
/// client's `Upgrade`, no body.
fn upstream_request(headers: &HeaderMap, route: &Route) -> Option<Request<Full<Bytes>>> {
    let mut upstream = Request::builder()
        .method(hyper::Method::GET)
        .uri(route.uri.clone());
    for (k, v) in forwardable(headers) {
        if k != hyper::header::CONTENT_LENGTH {
            upstream = upstream.header(k, v);
        }
    }
    upstream = upstream.header(CONNECTION, HeaderValue::from_static("upgrade"));
    for v in headers.get_all(UPGRADE) {
        upstream = upstream.header(UPGRADE, v);
    }
    upstream.body(Full::new(Bytes::new())).ok()
}

/// Why the upstream gave no answer: the status, kind and message for the client, and the span's
/// `error.type`.
type Unanswered = (StatusCode, &'static str, &'static str, String);

/// Sends the request on a fresh HTTP/1.1 connection within the response timeout.
async fn send(
    config: &GatewayConfig,
    request: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, Unanswered> {
    let unreachable = |message: String| {
        (
            StatusCode::BAD_GATEWAY,
            "upstream_unreachable",
            "upstream_unreachable",
            format!("cannot reach the upstream: {message}"),
        )
    };
    let client = http1_client(config).map_err(|e| unreachable(error_chain(&e)))?;
    match tokio::time::timeout(config.response_timeout, client.request(request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(unreachable(error_chain(&e))),
        Err(_) => Err((
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            "timeout",
            format!(
                "the upstream sent no response within {:?}",
                config.response_timeout
            ),
        )),
    }
}

/// A client for one upgrade: HTTP/1.1 only (ALPN `http/1.1` over TLS), the gateway's certificate
/// authorities and connect timeout, no pooling (an upgraded connection is never reused).
fn http1_client(
    config: &GatewayConfig,
) -> Result<Client<crate::tls::Connector, Full<Bytes>>, crate::tls::TlsError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(crate::tls::client_config(&config.upstream_ca)?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(https))
}

/// An upstream's refusal to switch, passed through as an ordinary response (hop-by-hop headers
/// removed, the body under the idle timeout and counted in flight).
fn refused(proxy: &Proxy, response: Response<Incoming>) -> Response<ResponseBody> {
    let (mut head, body) = response.into_parts();
    let named: Vec<HeaderName> = head
        .headers
        .keys()
        .filter(|k| HOP_BY_HOP.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in named {
        head.headers.remove(k);
    }
    let body = TeeBody::new(
        body,
        Observer::None,
        proxy.config.idle_timeout,
        proxy.in_flight.clone(),
    );
    Response::from_parts(head, body.boxed())
}

/// Splices the two upgraded connections until either side closes (what it sent before closing
/// is delivered first) or nothing moves for `idle`, then ends the session's span and leaves the
/// in-flight count.
async fn splice(
    client: OnUpgrade,
    upstream: OnUpgrade,
    idle: Duration,
    mut session: Session,
    (counted, in_flight): (Guard, InFlight),
) {
    let _counted = counted;
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            session.fail("_OTHER", &format!("the upgrade did not complete: {e}"));
            return;
        }
    };
    let activity = Activity::new();
    let from_client = Arc::new(AtomicU64::new(0));
    let from_upstream = Arc::new(AtomicU64::new(0));
    let client = Metered::new(TokioIo::new(client), &activity, &from_client);
    let upstream = Metered::new(TokioIo::new(upstream), &activity, &from_upstream);
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let failure = tokio::select! {
        relayed = relay_one_way(&mut client_read, &mut upstream_write) => relayed,
        relayed = relay_one_way(&mut upstream_read, &mut client_write) => relayed,
        () = activity.silence(idle) => {
            Some(("timeout", format!("nothing in either direction for {idle:?}")))
        }
        () = in_flight.closed() => {
            Some((super::tee::SHUTDOWN, "the gateway shut down during the session".to_string()))
        }
    };
    session.set(
        "specter.upgrade.client_bytes",
        Json::from(from_client.load(Ordering::Relaxed)),
    );
    session.set(
        "specter.upgrade.upstream_bytes",
        Json::from(from_upstream.load(Ordering::Relaxed)),
    );
    if let Some((error_type, message)) = failure {
        session.fail(error_type, &message);
    }
}

/// Copies `from` into `to` until `from` ends, then shuts `to` down; the failure, if any.
async fn relay_one_way<R, W>(from: &mut R, to: &mut W) -> Option<(&'static str, String)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let copied = tokio::io::copy(from, to).await;
    let _ = to.shutdown().await;
    copied
        .err()
        .map(|e| ("_OTHER", format!("the connection failed: {e}")))
}

/// The span of one upgrade, when instrumenting; it ends when dropped.
struct Session(Option<PlainSpan>);

impl Session {
    /// Opens the span `{protocol} {upstream path}` as a child of the request's trace context.
    fn start(proxy: &Proxy, request: &Request<Incoming>, route: &Route, at: SystemTime) -> Self {
        let Some(instrumentor) = &proxy.instrumentor else {
            return Session(None);
        };
        let protocol = protocol(request.headers());
        let mut attributes = BTreeMap::new();
        attributes.insert("http.request.method".into(), Json::from("GET"));
        attributes.insert("url.path".into(), Json::from(route.target.path.as_str()));
        attributes.insert(
            "server.address".into(),
            Json::from(route.target.host.as_str()),
        );
        if let Some(port) = route.target.port() {
            attributes.insert("server.port".into(), Json::from(port));
        }
        attributes.insert(
            "network.protocol.name".into(),
            Json::from(protocol.as_str()),
        );
        attributes.insert(
            "gen_ai.provider.name".into(),
            Json::from(route.provider_name.as_str()),
        );
        let parent = crate::telemetry::extract_context(&pairs(request.headers()));
        let name = format!("{protocol} {}", route.target.path);
        Session(Some(instrumentor.telemetry().start_plain(
            name,
            &attributes,
            &parent,
            at,
        )))
    }

    fn set(&mut self, key: &str, value: Json) {
        if let Some(span) = &mut self.0 {
            span.set(BTreeMap::from([(key.to_string(), value)]));
        }
    }

    fn fail(&mut self, error_type: &str, message: &str) {
        if let Some(span) = &mut self.0 {
            span.fail(error_type, message);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(span) = self.0.take() {
            span.end();
        }
    }
}

/// The upgrade protocol named by the client, lower case (`websocket`); `upgrade` when it is not a
/// short token (it becomes part of a span name).
fn protocol(headers: &HeaderMap) -> String {
    let name = headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(['/', ',']).next())
        .map(str::trim)
        .unwrap_or_default();
    let token = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if token {
        name.to_ascii_lowercase()
    } else {
        "upgrade".into()
    }
}

/// When bytes last moved on a spliced pair of connections.
struct Activity {
    epoch: Instant,
    /// Milliseconds from `epoch` to the last byte read on either side.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `limit`.
    async fn silence(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
            let quiet = self.epoch.elapsed().saturating_sub(last);
            if quiet >= limit {
                return;
            }
            tokio::time::sleep(limit.saturating_sub(quiet)).await;
        }
    }
}

/// One side of a splice: counts the bytes read from it and marks the pair active.
struct Metered<T> {
    io: T,
    activity: Arc<Activity>,
    read: Arc<AtomicU64>,
}

impl<T> Metered<T> {
    fn new(io: T, activity: &Arc<Activity>, read: &Arc<AtomicU64>) -> Self {
        Metered {
            io,
            activity: activity.clone(),
            read: read.clone(),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        if read > 0 {
            this.read.fetch_add(read as u64, Ordering::Relaxed);
            this.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().uri("/openai/v1/realtime");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap_or_default()
    }

    #[test]
    fn recognises_upgrades() {
        let websocket = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ];
        assert!(requested(&request(&websocket)));
        assert!(!requested(&request(&[("upgrade", "websocket")])));
        assert!(!requested(&request(&[("connection", "upgrade")])));
        assert!(!requested(&request(&[("connection", "keep-alive")])));
    }

    #[test]
    fn names_the_protocol() {
        let headers = |v: &str| {
            let mut map = HeaderMap::new();
            map.insert(
                UPGRADE,
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
            );
            map
        };
        assert_eq!(protocol(&headers("WebSocket")), "websocket");
        assert_eq!(protocol(&headers("h2c, websocket")), "h2c");
        assert_eq!(protocol(&headers("TLS/1.0")), "tls");
        assert_eq!(protocol(&headers("a b")), "upgrade");
        assert_eq!(protocol(&HeaderMap::new()), "upgrade");
    }
}
