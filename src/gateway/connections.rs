//! Client connections: the accept loop with its connection cap and its back-off when the process
//! runs out of descriptors, the HTTP/1 and HTTP/2 settings of each connection, and the cut of
//! connections still open when the shutdown grace ends. What one connection is doing, and when it
//! has waited too long, is `activity.rs`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::activity::{Activity, Timeouts, Watched};
use super::config::GatewayConfig;
use super::proxy::{error_response, Proxy, ResponseBody};

/// Connections past the cap that are still accepted, to answer `/healthz` and tell everyone
/// else `503 overloaded`, before the gateway stops accepting until a connection closes.
pub const OVERFLOW_CONNECTIONS: usize = 64;

/// The longest pause of the accept loop after the process ran out of descriptors.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How many client connections are open and how many may be.
#[derive(Debug)]
pub struct ConnectionCount {
    normal: Arc<Semaphore>,
    overflow: Arc<Semaphore>,
    cap: usize,
    served: AtomicUsize,
    refused: AtomicU64,
    accept_errors: AtomicU64,
}

impl ConnectionCount {
    /// A count allowing `cap` connections (plus the overflow that only hears 503).
    pub fn new(cap: usize) -> ConnectionCount {
        let cap = cap.clamp(1, Semaphore::MAX_PERMITS);
        ConnectionCount {
            normal: Arc::new(Semaphore::new(cap)),
            overflow: Arc::new(Semaphore::new(OVERFLOW_CONNECTIONS)),
            cap,
            served: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
        }
    }

    /// The cap.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Connections served now (not counting the overflow).
    pub fn open(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }

    /// Requests answered `503 overloaded` because the connection cap was reached.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Failed `accept` calls (out of descriptors, aborted handshakes).
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Ordering::Relaxed)
    }
}

/// A connection's place under the cap, released when the connection closes.
enum Slot {
    Served(#[allow(dead_code)] OwnedSemaphorePermit),
    Overflow(#[allow(dead_code)] OwnedSemaphorePermit),
}

/// Accepts and serves connections until `shutdown` resolves; then stops accepting, lets open
/// requests finish (and their spans be finished) for the grace period, and cuts what is left:
/// the responses still open end their spans as cut by the shutdown.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    let mut backoff = Duration::ZERO;
    loop {
        while tasks.try_join_next().is_some() {}
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = proxy.connections.normal.clone().acquire_owned() => permit.map(Slot::Served),
            permit = proxy.connections.overflow.clone().acquire_owned() => permit.map(Slot::Overflow),
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                backoff = Duration::ZERO;
                let _ = stream.set_nodelay(true);
                let connection = serve_connection(stream, proxy.clone(), slot, &graceful);
                tasks.spawn(connection);
            }
            Err(error) => {
                proxy
                    .connections
                    .accept_errors
                    .fetch_add(1, Ordering::Relaxed);
                if is_resource_exhaustion(&error) {
                    // Out of descriptors or buffers: retrying at once would spin. Wait, longer
                    // each time, for connections to close.
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), MAX_BACKOFF);
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
    }
    drop(listener);
    let grace = proxy.config.shutdown_grace;
    let started = tokio::time::Instant::now();
    let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
    // Spans of the last responses are finished off the response path: wait for them too.
    let _ = proxy
        .in_flight
        .drained(grace.saturating_sub(started.elapsed()))
        .await;
    // What is still open is cut: its responses end their spans as cut by the shutdown, before
    // the caller flushes the exporters.
    proxy.in_flight.close();
    tasks.shutdown().await;
    let _ = proxy.in_flight.drained(Duration::from_secs(2)).await;
}

/// Whether an accept error means the process or system is out of a resource.
fn is_resource_exhaustion(error: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        const EMFILE: i32 = 24;
        const ENFILE: i32 = 23;
        const ENOBUFS: i32 = 105;
        const ENOMEM: i32 = 12;
        matches!(
            error.raw_os_error(),
            Some(EMFILE | ENFILE | ENOBUFS | ENOMEM)
        )
    }
    #[cfg(not(unix))]
    {
        error.kind() == std::io::ErrorKind::OutOfMemory
    }
}

/// The future serving one accepted connection.
fn serve_connection(
    stream: TcpStream,
    proxy: Arc<Proxy>,
    slot: Slot,
    graceful: &GracefulShutdown,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let config = &proxy.config;
    let activity = Arc::new(Activity::default());
    let io = TokioIo::new(Watched::new(stream, &activity));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let overflow = matches!(slot, Slot::Overflow(_));
    configure(&mut builder, config, overflow);
    let timeouts = Timeouts {
        head: config.header_read_timeout,
        idle: config.keep_alive_timeout,
    };
    let tracked = activity.clone();
    let count = (!overflow).then(|| Served::count(&proxy));
    let service = service_fn(move |request: Request<Incoming>| {
        let busy = tracked.busy();
        let proxy = proxy.clone();
        async move {
            let response = if overflow {
                overloaded(&proxy, &request)
            } else {
                proxy.handle(request).await?
            };
            Ok::<_, Infallible>(response.map(|body| hold(body, busy)))
        }
    });
    let connection = builder
        .serve_connection_with_upgrades(io, service)
        .into_owned();
    let watched = graceful.watch(connection);
    async move {
        let _slot = slot;
        let _count = count;
        tokio::select! {
            _ = watched => {}
            () = activity.expired(timeouts) => {}
        }
    }
}

/// One connection served under the cap, counted until it closes.
struct Served(Arc<Proxy>);

impl Served {
    fn count(proxy: &Arc<Proxy>) -> Served {
        proxy.connections.served.fetch_add(1, Ordering::Relaxed);
        Served(proxy.clone())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.0.connections.served.fetch_sub(1, Ordering::Relaxed);
    }
}

/// HTTP/1 and HTTP/2 settings of a client connection.
fn configure(builder: &mut auto::Builder<TokioExecutor>, config: &GatewayConfig, overflow: bool) {
    builder
        .http1()
        // The request-head deadline is kept by `Activity`, which starts it at a head's first byte
        // rather than when the connection falls idle, so that idle connections are governed by
        // the keep-alive timeout alone.
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(!overflow);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(config.http2_keep_alive_interval)
        .keep_alive_timeout(config.http2_keep_alive_timeout)
        .max_concurrent_streams(if overflow {
            1
        } else {
            config.http2_max_concurrent_streams
        });
}

/// The answer on a connection past the cap: `/healthz` as usual, `503 overloaded` otherwise.
fn overloaded(proxy: &Proxy, request: &Request<Incoming>) -> Response<ResponseBody> {
    if request.uri().path() == "/healthz" {
        return proxy.health(request);
    }
    proxy.connections.refused.fetch_add(1, Ordering::Relaxed);
    let mut response = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        &format!(
            "the gateway is serving its maximum of {} connections; retry shortly",
            proxy.connections.cap
        ),
    );
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    headers.insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    response
}

/// Keeps `guard` alive until the body is finished or dropped.
fn hold<G: Send + Sync + 'static>(body: ResponseBody, guard: G) -> ResponseBody {
    super::guarded::Guarded::new(body, guard).boxed()
}
