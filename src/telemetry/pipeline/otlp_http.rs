//! The HTTP client of the OTLP/HTTP exporters. It is the gateway's own hyper and rustls stack
//! (see [`crate::tls`]), so `https://` collectors and a private CA from
//! `OTEL_EXPORTER_OTLP_CERTIFICATE` work. The SDK exports from its own threads; each request
//! runs on the gateway's Tokio runtime and is awaited from there, bounded by
//! `OTEL_EXPORTER_OTLP_TIMEOUT`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};

use crate::tls::Connector;

/// Largest collector response read (the OTLP response is a small protobuf message).
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// An [`HttpClient`] for the OTLP exporters, driven on a Tokio runtime.
#[derive(Debug, Clone)]
pub struct OtlpHttpClient {
    runtime: tokio::runtime::Handle,
    client: Client<Connector, Full<Bytes>>,
    timeout: Duration,
}

impl OtlpHttpClient {
    /// A client whose requests run on `runtime` and time out after `timeout`.
    pub fn new(runtime: tokio::runtime::Handle, connector: Connector, timeout: Duration) -> Self {
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        OtlpHttpClient {
            runtime,
            client,
            timeout,
        }
    }
}

async fn send(
    client: Client<Connector, Full<Bytes>>,
    request: Request<Bytes>,
) -> Result<Response<Bytes>, HttpError> {
    let (parts, body) = request.into_parts();
    let response = client
        .request(hyper::Request::from_parts(parts, Full::new(body)))
        .await?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_RESPONSE_BYTES)
        .collect()
        .await?
        .to_bytes();
    Ok(Response::from_parts(parts, body))
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let timeout = self.timeout;
        let task = self
            .runtime
            .spawn(async move { tokio::time::timeout(timeout, send(client, request)).await });
        match task.await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(format!("no answer from the collector within {timeout:?}").into()),
            Err(e) => Err(format!("the export was cancelled: {e}").into()),
        }
    }
}
