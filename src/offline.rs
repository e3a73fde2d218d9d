//! Offline extraction: one recorded exchange (method, URL, status, body files) to the span JSON
//! that `specter extract` prints and the fixture tests snapshot.

use serde_json::{json, Value as Json};

use crate::content::ContentPolicy;
use crate::dialect::Dialect;
use crate::engine::{self, HttpTarget, Request, Response};
use crate::Catalog;

/// Why an exchange could not be extracted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// The URL is not an absolute http(s) URL.
    #[error("`{0}` is not an absolute http(s) URL")]
    BadUrl(String),
    /// No operation matches.
    #[error("no operation matches {method} {url}")]
    NoMatch {
        /// The method.
        method: String,
        /// The URL.
        url: String,
    },
}

/// A recorded exchange.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Full URL.
    pub url: &'a str,
    /// Response status.
    pub status: u16,
    /// Request body bytes.
    pub request: &'a [u8],
    /// Response body bytes as received (JSON, or a stream body).
    pub response: &'a [u8],
    /// The response's content type, when known (else taken from `response_headers`).
    pub content_type: Option<&'a str>,
    /// Request headers.
    pub request_headers: &'a [(String, String)],
    /// Response headers.
    pub response_headers: &'a [(String, String)],
}

/// How `extract` renders the span.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Dialects of the attributes (default: semconv).
    pub dialects: Vec<Dialect>,
    /// The content policy (message attributes kept, truncated, redacted or left out).
    pub content: ContentPolicy,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            dialects: vec![Dialect::Semconv],
            content: ContentPolicy::default(),
        }
    }
}

/// Text accumulated from a stream is capped at this many bytes by default.
pub const DEFAULT_TEXT_CAP: usize = 1 << 20;

/// Extracts the span of a recorded exchange as the JSON object of `specter extract`.
///
/// ```
/// let catalog = specter::Catalog::bundled().unwrap();
/// let exchange = specter::offline::Recorded {
///     method: "POST",
///     url: "https://api.openai.com/v1/embeddings",
///     status: 200,
///     request: br#"{"model": "text-embedding-3-small", "input": "hi"}"#,
///     response: br#"{"model": "text-embedding-3-small", "usage": {"prompt_tokens": 1}}"#,
///     content_type: None,
///     request_headers: &[],
///     response_headers: &[],
/// };
/// let options = specter::offline::ExtractOptions::default();
/// let out = specter::offline::extract(&catalog, &exchange, &options).unwrap();
/// assert_eq!(out["span"]["name"], "embeddings text-embedding-3-small");
/// assert_eq!(out["span"]["attributes"]["gen_ai.usage.input_tokens"], 1);
/// ```
pub fn extract(
    catalog: &Catalog,
    exchange: &Recorded<'_>,
    options: &ExtractOptions,
) -> Result<Json, ExtractError> {
    let target =
        HttpTarget::parse(exchange.url).ok_or_else(|| ExtractError::BadUrl(exchange.url.into()))?;
    let method = exchange.method.to_ascii_uppercase();
    let found = catalog
        .find(&method, Some(&target.host), &target.path, &target.query)
        .ok_or_else(|| ExtractError::NoMatch {
            method: method.clone(),
            url: exchange.url.into(),
        })?;
    let mut problems = Vec::new();
    let request_body = engine::parse_body(exchange.request, "request", &mut problems);
    let op = &found.operation;
    let request = Request {
        target: &target,
        headers: exchange.request_headers,
        body: &request_body,
        captures: &found.captures,
    };
    let mut record = engine::request_phase(op, &request);
    let success = (200..300).contains(&exchange.status);
    let content_type = exchange.content_type.or_else(|| {
        exchange
            .response_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str())
    });
    let stream = engine::stream_for(op, &request, content_type).filter(|_| success);
    let folded =
        stream.map(|s| engine::fold_body(s, &request_body, exchange.response, DEFAULT_TEXT_CAP));
    let response_body = match &folded {
        // A stream that held no chunk may be a plain JSON answer after all.
        Some((outcome, _))
            if outcome.chunks > 0 || serde_json::from_slice::<Json>(exchange.response).is_err() =>
        {
            outcome.response.clone()
        }
        _ => engine::parse_body(exchange.response, "response", &mut problems),
    };
    let response = Response {
        status: Some(exchange.status),
        headers: exchange.response_headers,
        body: &response_body,
    };
    engine::response_phase(op, &mut record, &request, &response);
    if let Some((outcome, dropped)) = folded.filter(|(o, _)| o.chunks > 0 || o.exception.is_some())
    {
        engine::record_fold(&mut record, &outcome, dropped);
    }
    record.problems.extend(problems);
    let metrics = crate::telemetry::points(&record, op, None);
    options.content.apply(&mut record);
    let mut attributes = crate::dialect::render(&record, &options.dialects);
    if !options.content.capture.on_span() {
        for (key, _) in crate::dialect::message_attributes(&record) {
            attributes.remove(key);
        }
    }
    let status = match &record.error {
        Some(e) => {
            json!({"code": "error", "message": e.message.clone().unwrap_or_else(|| e.error_type.clone())})
        }
        None => json!({"code": "unset"}),
    };
    let events: Vec<Json> = record
        .error
        .iter()
        .map(|e| {
            json!({"name": "exception", "attributes": {
                "exception.type": e.error_type,
                "exception.message": e.message.clone().unwrap_or_default(),
            }})
        })
        .collect();
    Ok(json!({
        "provider": &*record.provider,
        "operation": &*record.operation,
        "span": {
            "name": record.span_name,
            "kind": if record.client_span { "client" } else { "internal" },
            "status": status,
            "attributes": attributes,
            "events": events,
        },
        "metrics": metrics,
        "stream": record.stream,
        "problems": record.problems,
    }))
}
