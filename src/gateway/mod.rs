//! The gateway (`specter serve`): an instrumenting reverse proxy. Applications point their SDK's
//! base URL at `http://HOST:PORT/{provider}`; every byte is forwarded to the provider's upstream
//! and back, and each GenAI call becomes a span and metric points on the side.
//!
//! It keeps no state between requests, so several can run behind a load balancer.

pub mod config;
mod decode;
mod in_flight;
pub mod proxy;
mod reload;
pub mod sign;
mod tee;

use std::convert::Infallible;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

pub use config::{config_schema, ConfigFile, GatewayConfig};
pub use decode::{DecodeError, Decoder};
pub use in_flight::InFlight;
pub use proxy::{Proxy, Upstream};
pub use reload::watch_providers;
pub use reload::{ReloadError, ReloadEvent, ReloadReport, ReloadSettings};

/// Builds the upstream client: pooled connections, HTTP/1.1 and HTTP/2 (ALPN), TLS via rustls
/// with the Mozilla root certificates plus the configured extra certificate authorities.
///
/// # Errors
/// When an extra certificate authority is not valid.
pub fn upstream_client(config: &GatewayConfig) -> Result<Upstream, crate::tls::TlsError> {
    let https = crate::tls::https_connector(&config.upstream_ca, config.connect_timeout)?;
    Ok(
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(https),
    )
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests (and the
/// finishing of their spans) complete for the grace period, and returns.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let grace = proxy.config.shutdown_grace;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let proxy = proxy.clone();
                let service = service_fn(move |request| proxy.clone().handle(request));
                let builder = auto::Builder::new(TokioExecutor::new());
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let watched = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = watched.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let started = tokio::time::Instant::now();
    let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
    // Spans of the last responses are finished off the response path: wait for them too.
    let _ = proxy
        .in_flight
        .drained(grace.saturating_sub(started.elapsed()))
        .await;
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[allow(dead_code)]
fn _assert_infallible(_: Infallible) {}
