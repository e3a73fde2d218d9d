//! The gateway (`specter serve`): an instrumenting reverse proxy. Applications point their SDK's
//! base URL at `http://HOST:PORT/{provider}`; every byte is forwarded to the provider's upstream
//! and back, and each GenAI call becomes a span and metric points on the side.
//!
//! It keeps no state between requests, so several can run behind a load balancer.

mod activity;
mod build;
pub mod config;
mod connections;
mod decode;
mod guarded;
mod in_flight;
mod limits;
pub mod proxy;
mod reload;
mod scrape;
pub mod settings;
pub mod sign;
mod tee;
pub mod unmatched;
mod upgrade;
pub mod upstream_check;

use hyper_util::rt::TokioExecutor;

pub use build::{BuildError, Gateway, Outputs, StopReport};
pub use config::{config_schema, ConfigFile, GatewayConfig};
pub use connections::{serve, ConnectionCount, OVERFLOW_CONNECTIONS};
pub use decode::{DecodeError, Decoder};
pub use in_flight::InFlight;
pub use limits::{connection_cap, raise_fd_limit, FdLimit, RequestBudget};
pub use proxy::{Proxy, Upstream};
pub use reload::watch_providers;
pub use reload::{ReloadError, ReloadEvent, ReloadReport, ReloadSettings};
pub use settings::{Flags, Settings, SettingsError};

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
