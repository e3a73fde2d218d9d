//! The engine: a pure function from one HTTP exchange and its compiled operation to a [`Record`].
//!
//! Phases are explicit: [`request_phase`] runs when the call starts (the attributes sampling may
//! need: operation, provider, model, server address), [`response_phase`] when the response (or the
//! response rebuilt from a stream) is complete. Nothing here fails: a missing field emits nothing,
//! a body that is not JSON is recorded as a problem and skipped.

mod eval;
mod exchange;
mod json_text;
mod messages;
mod record;
pub mod sparse;
pub mod stream;
mod target;

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::compile::rules::Framing;
use crate::compile::rules::{Operation, Stream, TemplatePiece};
pub use eval::Scope;
pub use exchange::{Exchange, StreamExchange, ABANDONED};
pub use record::{ErrorInfo, Record, StreamStats};
pub use target::HttpTarget;

/// The request side of an exchange.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Where the request went.
    pub target: &'a HttpTarget,
    /// Request headers (any case).
    pub headers: &'a [(String, String)],
    /// The request body as parsed JSON (`Null` when empty or not JSON).
    pub body: &'a Json,
    /// Path captures of the matched route.
    pub captures: &'a [(String, String)],
}

/// The response side of an exchange.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// Response headers (any case).
    pub headers: &'a [(String, String)],
    /// The response body (or rebuilt stream response) as JSON (`Null` when none).
    pub body: &'a Json,
}

/// The stream rules that apply to an exchange, when its response is a stream: the response's
/// content type decides when known; otherwise the operation's `stream.when` on the request.
pub fn stream_for<'o>(
    op: &'o Operation,
    request: &Request<'_>,
    content_type: Option<&str>,
) -> Option<&'o Stream> {
    let stream = op.stream.as_ref()?;
    if let Some(ct) = content_type {
        if let Some(framing) = stream::framing_for_content_type(ct) {
            return (framing == stream.framing).then_some(stream);
        }
        if ct.to_ascii_lowercase().contains("json") && stream.framing != Framing::JsonArray {
            return None;
        }
    }
    let scope = Scope {
        doc: request.body,
        request: request.body,
        response: &Json::Null,
        captures: request.captures,
        headers: request.headers,
        query: &request.target.query,
    };
    match &stream.when {
        Some(cond) => eval::holds(cond, &scope).then_some(stream),
        None => Some(stream),
    }
}

/// Folds a complete stream body (offline use; live streams feed a [`stream::Folder`] as bytes
/// arrive).
pub fn fold_body(
    stream: &Stream,
    request_body: &Json,
    body: &[u8],
    text_cap: usize,
) -> (stream::FoldOutcome, u64) {
    exchange::fold(stream, request_body, body, text_cap)
}

/// Records a finished fold on the record: stream statistics, problems, and a framing-level
/// exception as the call's error.
pub fn record_fold(record: &mut Record, outcome: &stream::FoldOutcome, dropped_frames: u64) {
    record.stream = Some(StreamStats {
        chunks: outcome.chunks,
        skipped_frames: outcome.skipped + dropped_frames,
        truncated: outcome.truncated,
        completed: outcome.done,
    });
    if outcome.skipped + dropped_frames > 0 {
        record.problems.push(format!(
            "{} stream frame(s) skipped",
            outcome.skipped + dropped_frames
        ));
    }
    if let Some((kind, message)) = &outcome.exception {
        record
            .attributes
            .insert("error.type".into(), Json::String(kind.clone()));
        record.error = Some(ErrorInfo {
            error_type: kind.clone(),
            message: message.clone(),
        });
    }
}

/// Whether the engine renders message content: input and output messages, system instructions
/// and tool definitions. With [`Content::Skip`] their rules do not run and the parts of the
/// bodies only they read are not parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Content {
    /// Render it (it may still be dropped or trimmed later by the content policy).
    #[default]
    Render,
    /// Do not render it: no content is captured.
    Skip,
}

impl Content {
    /// What the engine renders when content is captured this way (nothing when none is).
    pub fn of(capture: crate::Capture) -> Content {
        match capture {
            crate::Capture::NoContent => Content::Skip,
            _ => Content::Render,
        }
    }
}

/// Parses the parts of a body that `reads` names (see [`sparse::parse`]), recording a problem
/// when it is not JSON. An empty body is `Null`.
pub fn parse_body(
    bytes: &[u8],
    reads: &crate::compile::reads::ReadTree,
    what: &str,
    problems: &mut Vec<String>,
) -> Json {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Json::Null;
    }
    match sparse::parse(bytes, reads) {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!("{what} body is not JSON: {e}"));
            Json::Null
        }
    }
}

/// Runs the request phase: the span's name and its start attributes and input content.
pub fn request_phase(op: &Operation, request: &Request<'_>, content: Content) -> Record {
    let scope = Scope {
        doc: request.body,
        request: request.body,
        response: &Json::Null,
        captures: request.captures,
        headers: request.headers,
        query: &request.target.query,
    };
    let mut attributes = BTreeMap::new();
    attributes.insert(
        "gen_ai.operation.name".into(),
        Json::String(String::from(&*op.operation_name)),
    );
    attributes.insert(
        "gen_ai.provider.name".into(),
        Json::String(String::from(&*op.provider_name)),
    );
    if !request.target.host.is_empty() {
        attributes.insert(
            "server.address".into(),
            Json::String(request.target.host.clone()),
        );
    }
    if let Some(port) = request.target.port() {
        attributes.insert("server.port".into(), Json::Number(port.into()));
    }
    // `String::from(&*key)`: `Arc<str>::to_string` would go through `Display`.
    for (key, value) in &op.request.attributes {
        if let Some(v) = eval::eval(value, &scope) {
            insert_attribute(&mut attributes, key, v.into_owned());
        }
    }
    let span_name = render_template(op, &attributes);
    let rendered = content == Content::Render;
    Record {
        provider: op.provider.clone(),
        operation: op.id.clone(),
        span_name,
        client_span: op.client_span,
        input_messages: rendered
            .then(|| messages::messages(&op.request.input_messages, &scope))
            .flatten(),
        system_instructions: rendered
            .then(|| messages::system_instructions(&op.request.system_instructions, &scope))
            .flatten(),
        tool_definitions: rendered
            .then(|| messages::tool_definitions(&op.request.tool_definitions, &scope))
            .flatten(),
        attributes,
        output_messages: None,
        error: None,
        stream: None,
        metric_values: Vec::new(),
        problems: Vec::new(),
    }
}

/// Runs the response and error phases on a record started by [`request_phase`].
pub fn response_phase(
    op: &Operation,
    record: &mut Record,
    request: &Request<'_>,
    response: &Response<'_>,
    content: Content,
) {
    let scope = Scope {
        doc: response.body,
        request: request.body,
        response: response.body,
        captures: request.captures,
        headers: response.headers,
        query: &request.target.query,
    };
    for (key, value) in &op.response.attributes {
        if let Some(v) = eval::eval(value, &scope) {
            record
                .attributes
                .insert(String::from(&**key), v.into_owned());
        }
    }
    if content == Content::Render {
        record.output_messages = messages::messages(&op.response.output_messages, &scope);
    }
    for (index, metric) in op.metrics.iter().enumerate() {
        if let Some(value) = eval::eval(&metric.value, &scope)
            .as_deref()
            .and_then(Json::as_f64)
        {
            record.metric_values.push((index, value));
        }
    }
    let failed_status = response.status.is_some_and(|s| !(200..300).contains(&s));
    let failed_body = op
        .error
        .when
        .as_ref()
        .is_some_and(|c| eval::holds(c, &scope));
    if !(failed_status || failed_body) {
        return;
    }
    for (key, value) in &op.error.attributes {
        if let Some(v) = eval::eval(value, &scope) {
            record
                .attributes
                .insert(String::from(&**key), v.into_owned());
        }
    }
    let error_type = text(op.error.error_type.as_ref(), &scope)
        .or_else(|| {
            response
                .status
                .filter(|_| failed_status)
                .map(|s| s.to_string())
        })
        .unwrap_or_else(|| "_OTHER".to_string());
    let message = text(op.error.message.as_ref(), &scope);
    record
        .attributes
        .insert("error.type".into(), Json::String(error_type.clone()));
    record.error = Some(ErrorInfo {
        error_type,
        message,
    });
}

/// A value as text (strings as they are, other JSON written out).
fn text(value: Option<&crate::compile::rules::Value>, scope: &Scope<'_>) -> Option<String> {
    value.and_then(|v| eval::eval(v, scope)).map(|v| match v {
        std::borrow::Cow::Borrowed(Json::String(s)) => s.clone(),
        std::borrow::Cow::Owned(Json::String(s)) => s,
        other => other.to_string(),
    })
}

/// The price of the call's model in the provider spec's own `pricing`, when it has one.
fn spec_rates(op: &Operation, attributes: &BTreeMap<String, Json>) -> Option<crate::prices::Rates> {
    if op.pricing.is_empty() {
        return None;
    }
    let model = ["gen_ai.response.model", "gen_ai.request.model"]
        .iter()
        .find_map(|k| attributes.get(*k).and_then(Json::as_str))?;
    let price = op
        .pricing
        .iter()
        .find(|p| !p.prefix && p.model == model)
        .or_else(|| {
            op.pricing
                .iter()
                .filter(|p| p.prefix && model.starts_with(&p.model))
                .max_by_key(|p| p.model.len())
        })?;
    use crate::prices::Rate;
    Some(crate::prices::Rates {
        input: Some(Rate::Flat(price.input)),
        output: Some(Rate::Flat(price.output)),
        cache_read: Some(Rate::Flat(price.cached_input)),
        ..Default::default()
    })
}

/// Sets the call's cost attributes: the provider's own reported cost, else the provider spec's
/// price, else the price book's.
pub fn record_cost(op: &Operation, record: &mut Record, prices: &crate::prices::PriceBook) {
    let spec = spec_rates(op, &record.attributes);
    prices.record_cost(&op.provider, &mut record.attributes, spec.as_ref());
}

/// Most attributes one `prefix.*` rule expands to.
pub const MAX_EXPANDED_ATTRIBUTES: usize = 32;

/// Inserts an attribute. A key ending in `.*` expands an object value into one attribute per
/// scalar entry (`specter.property.*` on `{"team": "a"}` gives `specter.property.team`), keys
/// lower-cased, at most [`MAX_EXPANDED_ATTRIBUTES`] of them; any other value of such a key is
/// left out.
fn insert_attribute(attributes: &mut BTreeMap<String, Json>, key: &str, value: Json) {
    let Some(prefix) = key.strip_suffix('*') else {
        attributes.insert(key.to_string(), value);
        return;
    };
    let Json::Object(map) = value else { return };
    let scalars = map
        .into_iter()
        .filter(|(_, v)| matches!(v, Json::String(_) | Json::Number(_) | Json::Bool(_)))
        .take(MAX_EXPANDED_ATTRIBUTES);
    for (k, v) in scalars {
        attributes.insert(format!("{prefix}{}", k.to_lowercase()), v);
    }
}

fn render_template(op: &Operation, attributes: &BTreeMap<String, Json>) -> String {
    let mut out = String::new();
    for piece in &op.span_name.pieces {
        match piece {
            TemplatePiece::Literal(text) => out.push_str(text),
            TemplatePiece::Var(key) => match attributes.get(key) {
                Some(Json::String(s)) => out.push_str(s),
                Some(other) => out.push_str(&other.to_string()),
                None => {
                    // Leave the variable out together with the space before it.
                    if out.ends_with(' ') {
                        out.pop();
                    }
                }
            },
        }
    }
    out.trim().to_string()
}
