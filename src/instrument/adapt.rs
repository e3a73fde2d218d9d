//! What the reqwest middleware and the tower layer share: `http` headers as the engine reads
//! them, and the trace-context headers a call adds to its request.

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use super::Call;

/// The headers as name and value pairs; values that are not visible ASCII are left out (no
/// rule reads them).
pub(super) fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// Replaces the request's `traceparent` and `tracestate` with the call's.
pub(super) fn set_trace_headers(headers: &mut HeaderMap, call: &Call) {
    headers.remove("traceparent");
    headers.remove("tracestate");
    for (key, value) in call.trace_headers() {
        if let (Ok(key), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(key, value);
        }
    }
}
