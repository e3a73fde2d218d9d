//! The viewer's HTTP surface under [`PREFIX`]: the page and its script and style (embedded in
//! the binary), and the read-only JSON endpoints the page polls. Only `GET` and `HEAD`.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, HOST, LOCATION};
use hyper::{HeaderMap, Method, Response, StatusCode, Uri};

use super::index::{Filter, GroupBy, Sort};
use super::Viewer;

/// The path prefix of the viewer. `-` is never in a provider id, so no provider route is ever
/// shadowed.
pub const PREFIX: &str = "/-/viewer";

/// The body type of the viewer's responses (the gateway's response body type).
pub type ViewerBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Scripts, styles and fetches from the viewer itself only; images only inline (`data:`).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Longest query string read.
const MAX_QUERY: usize = 4096;

/// Whether `path` is the viewer's.
pub fn is_viewer_path(path: &str) -> bool {
    path == PREFIX
        || path
            .strip_prefix(PREFIX)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Answers one request to the viewer. `viewer` is `None` when there is nothing to view (no traces
/// file). With `local_only`, a request whose `Host` is not a loopback name or an IP address is
/// refused (a DNS-rebinding page reaching the loopback listener under its own name).
pub async fn respond(
    viewer: Option<Arc<Viewer>>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    local_only: bool,
) -> Response<ViewerBody> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = json(
            StatusCode::METHOD_NOT_ALLOWED,
            &error(
                "method_not_allowed",
                "the viewer is read-only: GET and HEAD",
            ),
        );
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if local_only && !local_host(headers) {
        return json(
            StatusCode::FORBIDDEN,
            &error("forbidden_host", "open the viewer at its loopback address"),
        );
    }
    let path = uri.path();
    let rest = path.strip_prefix(PREFIX).unwrap_or_default();
    match rest {
        "" => redirect(),
        "/" | "/index.html" => asset(INDEX_HTML, "text/html; charset=utf-8"),
        "/app.js" => asset(APP_JS, "text/javascript; charset=utf-8"),
        "/app.css" => asset(APP_CSS, "text/css; charset=utf-8"),
        _ => match rest.strip_prefix("/api/") {
            Some(api) => {
                let Some(viewer) = viewer else {
                    return json(
                        StatusCode::NOT_FOUND,
                        &error(
                            "no_traces_file",
                            "the viewer reads the traces file, which is turned off",
                        ),
                    );
                };
                let query = params(uri.query().unwrap_or_default());
                let api = api.to_string();
                let answer = tokio::task::spawn_blocking(move || endpoint(&viewer, &api, &query));
                match answer.await {
                    Ok((status, body)) => json(status, &body),
                    Err(_) => json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &error("viewer_failed", "the viewer could not answer"),
                    ),
                }
            }
            None => json(
                StatusCode::NOT_FOUND,
                &error("unknown_route", "no such viewer page"),
            ),
        },
    }
}

/// One JSON endpoint, run off the async threads (it reads files).
pub fn endpoint(
    viewer: &Viewer,
    api: &str,
    query: &HashMap<String, String>,
) -> (StatusCode, serde_json::Value) {
    viewer.refresh();
    let filter = filter(query);
    let number = |key: &str, default: usize| {
        query
            .get(key)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(default)
    };
    let (offset, limit) = (number("offset", 0), number("limit", 50));
    match api.split('/').collect::<Vec<_>>().as_slice() {
        ["calls"] => {
            let sort = match query.get("sort").map(String::as_str) {
                Some("cost") => Sort::Cost,
                Some("duration") => Sort::Duration,
                _ => Sort::Time,
            };
            let ascending = query.get("order").is_some_and(|o| o == "asc");
            let page = viewer.with_index(|i| i.list(&filter, sort, ascending, offset, limit));
            (
                StatusCode::OK,
                serde_json::to_value(page).unwrap_or_default(),
            )
        }
        ["call", trace, span] => match viewer.call(trace, span) {
            Some(call) => (StatusCode::OK, call),
            None => (
                StatusCode::NOT_FOUND,
                error("unknown_call", "no such call in the traces files"),
            ),
        },
        ["groups"] => {
            let by = match query.get("by").map(String::as_str) {
                Some("conversation") => GroupBy::Conversation,
                Some("trace") => GroupBy::Trace,
                _ => GroupBy::Session,
            };
            let groups = viewer.with_index(|i| i.groups(by, &filter, offset, limit));
            (StatusCode::OK, groups)
        }
        ["totals"] => (StatusCode::OK, viewer.with_index(|i| i.totals(&filter))),
        ["facets"] => (StatusCode::OK, viewer.with_index(super::Index::facets)),
        ["status"] => (
            StatusCode::OK,
            serde_json::to_value(viewer.status()).unwrap_or_default(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            error("unknown_route", "no such viewer endpoint"),
        ),
    }
}

/// The filter named by a query string's keys.
fn filter(query: &HashMap<String, String>) -> Filter {
    let get = |key: &str| query.get(key).filter(|v| !v.is_empty()).cloned();
    Filter {
        provider: get("provider"),
        model: get("model"),
        status: get("status"),
        session: get("session"),
        user: get("user"),
        conversation: get("conversation"),
        trace: get("trace"),
        text: get("q"),
    }
}

/// `a=1&b=x+y` → {a: 1, b: "x y"}, percent-decoded; the first value of a key wins.
fn params(query: &str) -> HashMap<String, String> {
    let query = query.get(..MAX_QUERY).unwrap_or(query);
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut out = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(decode(key)).or_insert_with(|| decode(value));
    }
    out
}

/// Whether the `Host` header names the loopback interface or an IP address.
fn local_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return true;
    };
    let name = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

fn error(kind: &str, message: &str) -> serde_json::Value {
    serde_json::json!({"error": {"type": kind, "message": message, "source": "specter"}})
}

fn body(bytes: Bytes) -> ViewerBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn secure(mut response: Response<ViewerBody>, content_type: &'static str) -> Response<ViewerBody> {
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        hyper::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        hyper::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        hyper::header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    );
    response
}

fn asset(text: &'static str, content_type: &'static str) -> Response<ViewerBody> {
    secure(
        Response::new(body(Bytes::from_static(text.as_bytes()))),
        content_type,
    )
}

/// `value` as JSON text in which `<`, `>` and `&` are written as `\u003c`, `\u003e` and
/// `\u0026` (the same JSON value): span text never reads as markup, even to a browser that
/// ignores the content type.
pub fn inert_json(value: &serde_json::Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            c => out.push(c),
        }
    }
    out
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<ViewerBody> {
    let mut response = Response::new(body(Bytes::from(inert_json(value))));
    *response.status_mut() = status;
    secure(response, "application/json")
}

pub(super) fn redirect() -> Response<ViewerBody> {
    let mut response = Response::new(body(Bytes::new()));
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    response
        .headers_mut()
        .insert(LOCATION, HeaderValue::from_static("/-/viewer/"));
    secure(response, "text/plain")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_never_a_provider_route() {
        assert!(is_viewer_path("/-/viewer"));
        assert!(is_viewer_path("/-/viewer/api/calls"));
        assert!(!is_viewer_path("/-/viewerx"));
        assert!(!is_viewer_path("/openai/v1/chat/completions"));
    }

    #[test]
    fn json_text_carries_no_markup_characters() {
        let value = serde_json::json!({"text": "<script>alert('&')</script>"});
        let text = inert_json(&value);
        assert!(
            !text.contains('<') && !text.contains('>') && !text.contains('&'),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn query_strings_are_decoded() {
        let q = params("session=a%20b&q=x+y&session=second&flag");
        assert_eq!(q["session"], "a b");
        assert_eq!(q["q"], "x y");
        assert_eq!(q["flag"], "");
    }

    #[test]
    fn only_loopback_names_and_addresses_are_local() {
        let host = |h: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(HOST, HeaderValue::from_str(h).unwrap());
            local_host(&headers)
        };
        assert!(host("127.0.0.1:8787"));
        assert!(host("localhost:8787"));
        assert!(host("[::1]:8787"));
        assert!(!host("attacker.example:8787"));
    }
}
