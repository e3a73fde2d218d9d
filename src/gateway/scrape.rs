//! `GET /metrics`: the gateway's metrics in the Prometheus text exposition format, from an
//! in-memory snapshot of the same instruments the OTLP exporter sends (see
//! [`crate::telemetry::exposition`]). Read-only: a scrape changes no metric.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use super::proxy::{error_response, ResponseBody};
use super::Proxy;
use crate::telemetry::exposition::{Scrape, CONTENT_TYPE as TEXT_FORMAT};

/// The path of the metrics; the provider id `metrics` is reserved for it.
pub const METRICS_PATH: &str = "/metrics";

impl Proxy {
    /// The scrape to answer `request` with: a request for exactly `/metrics` while the endpoint
    /// is on.
    pub(super) fn metrics_path(&self, request: &Request<Incoming>) -> Option<&Scrape> {
        self.metrics
            .as_ref()
            .filter(|_| request.uri().path() == METRICS_PATH)
    }
}

/// The answer to a request for `/metrics`: the text format for `GET` and `HEAD`, 405 otherwise.
/// The snapshot is encoded on the blocking pool: with many series (each instrument holds up to
/// the SDK's 2000 attribute sets) it takes a while, and the runtime's workers keep serving.
pub(super) async fn answer(scrape: Scrape, method: &Method) -> Response<ResponseBody> {
    if !matches!(*method, Method::GET | Method::HEAD) {
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "/metrics answers GET and HEAD",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match tokio::task::spawn_blocking(move || scrape.render()).await {
        Ok(Ok(text)) => {
            let body = Full::new(Bytes::from(text))
                .map_err(|never| match never {})
                .boxed();
            let mut response = Response::new(body);
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
            response
        }
        Ok(Err(e)) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics_unavailable",
            &e.to_string(),
        ),
        Err(_) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics_unavailable",
            "the metrics snapshot did not finish",
        ),
    }
}
