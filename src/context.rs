//! Request context: whose call it was, taken from the request and put on its span.
//!
//! This module owns the `context` section of `specter.yaml` and what it maps: request headers
//! (`X-Specter-Session-Id` → `session.id`, `X-Specter-Property-<Name>` →
//! `specter.property.<name>`, ...) and W3C `baggage` entries (`session.id`, `user.id`,
//! `gen_ai.conversation.id`, `gen_ai.agent.name`) become span attributes. Request body fields
//! (OpenAI's `user`, Anthropic's `metadata.user_id`, ...) are mapped by provider rules; their
//! values are capped here like the others. Every value is cut to a byte cap and its control
//! characters escaped; the number of attributes a request can add is bounded. Context attributes
//! become metric dimensions only when listed as bounded in `context.metric_attributes` (ids are
//! refused there). Headers that exist only for specter (`X-Specter-*`) are not forwarded
//! upstream.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// Default byte cap of one context value.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 256;
/// Default number of context attributes one request can add from headers and baggage.
pub const DEFAULT_MAX_ATTRIBUTES: usize = 32;
/// Largest `baggage` header read, in bytes (W3C Baggage: at least 8192 bytes are supported).
pub const MAX_BAGGAGE_BYTES: usize = 8192;
/// Most baggage members read (W3C Baggage: at least 64 are supported).
pub const MAX_BAGGAGE_MEMBERS: usize = 64;

/// The built-in header mappings.
pub const DEFAULT_HEADERS: [(&str, &str); 3] = [
    ("x-specter-session-id", "session.id"),
    ("x-specter-user-id", "user.id"),
    ("x-specter-conversation-id", "gen_ai.conversation.id"),
];
/// The built-in header prefix mapping.
pub const DEFAULT_HEADER_PREFIXES: [(&str, &str); 1] =
    [("x-specter-property-", "specter.property.")];
/// The built-in baggage keys, each recorded under its own name.
pub const DEFAULT_BAGGAGE: [&str; 4] = [
    "session.id",
    "user.id",
    "gen_ai.conversation.id",
    "gen_ai.agent.name",
];
/// Headers not forwarded upstream by default (a trailing `*` makes a prefix).
pub const DEFAULT_STRIP_HEADERS: [&str; 1] = ["x-specter-*"];

/// Attribute keys that hold request context wherever they come from (body rules included).
const CONTEXT_KEYS: [&str; 5] = [
    "session.id",
    "user.id",
    "gen_ai.conversation.id",
    "gen_ai.agent.name",
    "specter.safety_identifier",
];
/// Attribute key prefixes that hold request context.
const CONTEXT_PREFIXES: [&str; 1] = ["specter.property."];

/// The `context` section of `specter.yaml`: request headers and W3C baggage entries recorded as
/// span attributes. The built-in mappings stay unless `defaults: false`; entries here are added
/// to them (a header or baggage key given again is remapped).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextSpec {
    /// Keep the built-in mappings: headers `X-Specter-Session-Id` → `session.id`,
    /// `X-Specter-User-Id` → `user.id`, `X-Specter-Conversation-Id` → `gen_ai.conversation.id`,
    /// `X-Specter-Property-<Name>` → `specter.property.<name>`, and the baggage keys
    /// `session.id`, `user.id`, `gen_ai.conversation.id`, `gen_ai.agent.name`. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub defaults: Option<bool>,
    /// Request header (any case) → attribute key, e.g. `Helicone-User-Id: user.id`. Credential
    /// headers (`Authorization`, API keys, cookies, tokens) cannot be mapped.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request header prefix (any case) → attribute key prefix: the rest of the header name,
    /// lower-cased, ends the key, e.g. `Helicone-Property-: specter.property.`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub header_prefixes: BTreeMap<String, String>,
    /// W3C `baggage` key → attribute key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub baggage: BTreeMap<String, String>,
    /// Request headers not forwarded upstream (any case; a trailing `*` makes a prefix).
    /// Default `[x-specter-*]`; `[]` forwards every header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = ["x-specter-*"]))]
    pub strip_headers: Option<Vec<String>>,
    /// Longest context value kept, in bytes; a longer one is cut (at a character boundary).
    /// Default 256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 256))]
    pub max_value_bytes: Option<usize>,
    /// Most context attributes one request adds from headers and baggage. Default 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 32))]
    pub max_attributes: Option<usize>,
    /// Context attribute keys with few distinct values (e.g. `specter.property.environment`)
    /// copied onto the standard GenAI metrics. No other context attribute is ever a metric
    /// dimension; ids (`session.id`, `user.id`, `gen_ai.conversation.id`) are refused here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_attributes: Vec<String>,
}

/// Why a `context` section cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// A credential header is mapped.
    #[error("context: header `{0}` carries credentials and cannot be recorded")]
    Credential(String),
    /// An empty or blank header name, prefix or attribute key.
    #[error("context: `{0}` is not a header name or attribute key")]
    Invalid(String),
    /// An id listed as a metric attribute.
    #[error("context: `{0}` has a value per session, user or conversation and cannot be a metric attribute")]
    Unbounded(String),
}

/// The compiled `context` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextRules {
    headers: Vec<(String, String)>,
    prefixes: Vec<(String, String)>,
    baggage: Vec<(String, String)>,
    strip: Vec<(String, bool)>,
    max_value_bytes: usize,
    max_attributes: usize,
    metric_attributes: Vec<String>,
}

impl Default for ContextRules {
    fn default() -> Self {
        ContextRules::from_spec(&ContextSpec::default()).unwrap_or(ContextRules {
            headers: Vec::new(),
            prefixes: Vec::new(),
            baggage: Vec::new(),
            strip: Vec::new(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_attributes: DEFAULT_MAX_ATTRIBUTES,
            metric_attributes: Vec::new(),
        })
    }
}

impl ContextRules {
    /// Compiles a `context` section.
    ///
    /// # Errors
    /// When a credential header or a blank name is mapped.
    pub fn from_spec(spec: &ContextSpec) -> Result<ContextRules, ContextError> {
        let defaults = spec.defaults.unwrap_or(true);
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        let mut prefixes: BTreeMap<String, String> = BTreeMap::new();
        let mut baggage: BTreeMap<String, String> = BTreeMap::new();
        if defaults {
            for (h, a) in DEFAULT_HEADERS {
                headers.insert(h.into(), a.into());
            }
            for (h, a) in DEFAULT_HEADER_PREFIXES {
                prefixes.insert(h.into(), a.into());
            }
            for key in DEFAULT_BAGGAGE {
                baggage.insert(key.into(), key.into());
            }
        }
        for (h, a) in &spec.headers {
            headers.insert(checked_header(h)?, checked_key(a)?);
        }
        for (h, a) in &spec.header_prefixes {
            prefixes.insert(checked_header(h)?, checked_key(a)?);
        }
        for (k, a) in &spec.baggage {
            baggage.insert(checked_key(k)?, checked_key(a)?);
        }
        let strip = spec
            .strip_headers
            .clone()
            .unwrap_or_else(|| DEFAULT_STRIP_HEADERS.map(String::from).to_vec())
            .into_iter()
            .map(|h| {
                let lower = h.trim().to_ascii_lowercase();
                match lower.strip_suffix('*') {
                    Some(stem) => (stem.to_string(), true),
                    None => (lower, false),
                }
            })
            .collect();
        let mut metric_attributes = Vec::new();
        for key in &spec.metric_attributes {
            let key = checked_key(key)?;
            if key.ends_with(".id") || key.ends_with("_id") || key == "specter.safety_identifier" {
                return Err(ContextError::Unbounded(key));
            }
            metric_attributes.push(key);
        }
        Ok(ContextRules {
            headers: headers.into_iter().collect(),
            prefixes: prefixes.into_iter().collect(),
            baggage: baggage.into_iter().collect(),
            strip,
            max_value_bytes: spec.max_value_bytes.unwrap_or(DEFAULT_MAX_VALUE_BYTES),
            max_attributes: spec.max_attributes.unwrap_or(DEFAULT_MAX_ATTRIBUTES),
            metric_attributes,
        })
    }

    /// The context attribute keys copied onto the standard metrics.
    pub fn metric_attributes(&self) -> &[String] {
        &self.metric_attributes
    }

    /// Whether a request header is kept from the upstream.
    pub fn strips(&self, header: &str) -> bool {
        let lower = header.to_ascii_lowercase();
        self.strip.iter().any(|(name, prefix)| {
            if *prefix {
                lower.starts_with(name.as_str())
            } else {
                lower == *name
            }
        })
    }

    /// The context attributes of a request's headers: mapped headers, header prefixes and
    /// baggage entries, each value capped; at most `max_attributes` of them. Where several
    /// sources give one key, a header wins over baggage.
    pub fn attributes(&self, headers: &[(String, String)]) -> BTreeMap<String, Json> {
        let mut out = BTreeMap::new();
        let add = |out: &mut BTreeMap<String, Json>, key: String, value: &str| {
            if out.len() < self.max_attributes || out.contains_key(&key) {
                out.insert(key, Json::String(self.cap(value)));
            }
        };
        // Several `baggage` headers are one list (RFC 9110 field lines combined with commas).
        let baggage: Vec<&str> = headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("baggage"))
            .map(|(_, value)| value.as_str())
            .collect();
        if !baggage.is_empty() {
            for (key, value) in parse_baggage(&baggage.join(",")) {
                if let Some((_, attr)) = self.baggage.iter().find(|(k, _)| *k == key) {
                    add(&mut out, attr.clone(), &value);
                }
            }
        }
        for (name, value) in headers {
            let lower = name.to_ascii_lowercase();
            if let Some((_, attr)) = self.headers.iter().find(|(h, _)| *h == lower) {
                add(&mut out, attr.clone(), value.trim());
                continue;
            }
            for (prefix, attr) in &self.prefixes {
                if let Some(rest) = lower.strip_prefix(prefix.as_str()) {
                    if !rest.is_empty() {
                        add(&mut out, format!("{attr}{rest}"), value.trim());
                    }
                }
            }
        }
        out
    }

    /// Caps the context values a provider rule read from the request body, in place.
    pub fn cap_in_place(&self, attributes: &mut BTreeMap<String, Json>) {
        let targets: Vec<&str> = self.headers.iter().map(|(_, a)| a.as_str()).collect();
        for (key, value) in attributes.iter_mut() {
            let context = CONTEXT_KEYS.contains(&key.as_str())
                || targets.contains(&key.as_str())
                || CONTEXT_PREFIXES.iter().any(|p| key.starts_with(p))
                || self
                    .prefixes
                    .iter()
                    .any(|(_, p)| key.starts_with(p.as_str()));
            if let (true, Json::String(text)) = (context, &*value) {
                *value = Json::String(self.cap(text));
            }
        }
    }

    /// A value cut to the byte cap at a character boundary, its control characters escaped.
    pub fn cap(&self, value: &str) -> String {
        let mut end = value.len().min(self.max_value_bytes);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        let cut = value.get(..end).unwrap_or_default();
        crate::printable::escape_controls(cut).into_owned()
    }
}

/// Applies the context rules to an exchange's record: its body-derived context capped, then the
/// header and baggage attributes added.
pub fn apply(
    rules: &ContextRules,
    headers: &[(String, String)],
    exchange: &mut crate::engine::Exchange,
) {
    rules.cap_in_place(exchange.attributes_mut());
    exchange.add_attributes(rules.attributes(headers));
}

fn checked_header(name: &str) -> Result<String, ContextError> {
    let lower = name.trim().to_ascii_lowercase();
    if lower.is_empty() || lower.contains(char::is_whitespace) {
        return Err(ContextError::Invalid(name.into()));
    }
    if crate::compile::is_credential_header(&lower) {
        return Err(ContextError::Credential(name.into()));
    }
    Ok(lower)
}

fn checked_key(key: &str) -> Result<String, ContextError> {
    if key.trim().is_empty() || key.contains(char::is_whitespace) {
        return Err(ContextError::Invalid(key.into()));
    }
    Ok(key.to_string())
}

/// Parses a W3C `baggage` header value with the OpenTelemetry SDK's baggage propagator:
/// `key=value` members separated by commas, optional whitespace around each part, properties
/// after `;` kept apart (not returned), keys and values percent-decoded. A header over
/// [`MAX_BAGGAGE_BYTES`] is not read at all (as the specification allows), at most
/// [`MAX_BAGGAGE_MEMBERS`] members are kept, malformed members are skipped. Sorted by key.
///
/// ```
/// use specter::unstable::context::parse_baggage;
/// assert_eq!(
///     parse_baggage("user.id=alice%20b;meta=1, session.id = s-1 ,bad"),
///     vec![("session.id".to_string(), "s-1".to_string()), ("user.id".to_string(), "alice b".to_string())]
/// );
/// ```
pub fn parse_baggage(header: &str) -> Vec<(String, String)> {
    use opentelemetry::baggage::BaggageExt as _;
    use opentelemetry::propagation::{Extractor, TextMapPropagator as _};

    struct Baggage<'a>(&'a str);
    impl Extractor for Baggage<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            (key == "baggage").then_some(self.0)
        }
        fn keys(&self) -> Vec<&str> {
            vec!["baggage"]
        }
    }
    if header.len() > MAX_BAGGAGE_BYTES {
        return Vec::new();
    }
    let cx = opentelemetry_sdk::propagation::BaggagePropagator::new().extract(&Baggage(header));
    let mut members: Vec<(String, String)> = cx
        .baggage()
        .iter()
        .map(|(key, (value, _))| (key.to_string(), value.to_string()))
        .collect();
    members.sort();
    members.truncate(MAX_BAGGAGE_MEMBERS);
    members
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_map_specter_headers_properties_and_baggage() {
        let rules = ContextRules::default();
        let attrs = rules.attributes(&h(&[
            ("X-Specter-Session-Id", "sess-1"),
            ("x-specter-user-id", "u-1"),
            ("X-Specter-Property-Team", "Search"),
            (
                "baggage",
                "gen_ai.agent.name=planner;p=1,session.id=from-baggage,other=x",
            ),
        ]));
        assert_eq!(attrs["session.id"], "sess-1");
        assert_eq!(attrs["user.id"], "u-1");
        assert_eq!(attrs["specter.property.team"], "Search");
        assert_eq!(attrs["gen_ai.agent.name"], "planner");
        assert!(!attrs.contains_key("other"));
        assert_eq!(attrs.len(), 4);
    }

    #[test]
    fn values_are_capped_and_escaped_and_counted() {
        let rules = ContextRules::from_spec(&ContextSpec {
            max_value_bytes: Some(5),
            max_attributes: Some(2),
            ..Default::default()
        })
        .unwrap();
        let attrs = rules.attributes(&h(&[
            ("x-specter-session-id", "a\nbcdefgh"),
            ("x-specter-property-a", "1"),
            ("x-specter-property-b", "2"),
        ]));
        assert_eq!(attrs["session.id"], "a\\nbcd");
        assert_eq!(attrs.len(), 2);
        // A cut never splits a character: "é" is two bytes.
        assert_eq!(rules.cap("abcdé"), "abcd");
    }

    #[test]
    fn credential_headers_cannot_be_mapped() {
        let spec = ContextSpec {
            headers: [("X-Session-Token".to_string(), "session.id".to_string())].into(),
            ..Default::default()
        };
        assert_eq!(
            ContextRules::from_spec(&spec),
            Err(ContextError::Credential("X-Session-Token".into()))
        );
    }

    #[test]
    fn strip_rules() {
        let rules = ContextRules::default();
        assert!(rules.strips("X-Specter-Session-Id"));
        assert!(!rules.strips("helicone-user-id"));
        let none = ContextRules::from_spec(&ContextSpec {
            strip_headers: Some(vec![]),
            ..Default::default()
        })
        .unwrap();
        assert!(!none.strips("x-specter-session-id"));
    }

    #[cfg(feature = "gateway")]
    #[test]
    fn the_schema_shows_the_context_defaults() {
        let schema = crate::gateway::config::config_schema();
        let props = &schema["$defs"]["ContextSpec"]["properties"];
        assert_eq!(props["max_value_bytes"]["default"], DEFAULT_MAX_VALUE_BYTES);
        assert_eq!(props["max_attributes"]["default"], DEFAULT_MAX_ATTRIBUTES);
        assert_eq!(
            props["strip_headers"]["default"],
            serde_json::json!(DEFAULT_STRIP_HEADERS)
        );
        assert_eq!(props["defaults"]["default"], true);
    }

    #[test]
    fn ids_cannot_be_metric_attributes() {
        let spec = |key: &str| ContextSpec {
            metric_attributes: vec![key.to_string()],
            ..Default::default()
        };
        assert_eq!(
            ContextRules::from_spec(&spec("session.id")),
            Err(ContextError::Unbounded("session.id".into()))
        );
        let rules = ContextRules::from_spec(&spec("specter.property.environment")).unwrap();
        assert_eq!(rules.metric_attributes(), ["specter.property.environment"]);
    }

    #[test]
    fn several_baggage_headers_are_one_list() {
        let attrs = ContextRules::default().attributes(&h(&[
            ("baggage", "user.id=u-7"),
            ("Baggage", "session.id=s-7;ttl=1"),
        ]));
        assert_eq!(attrs["user.id"], "u-7");
        assert_eq!(attrs["session.id"], "s-7");
    }

    #[test]
    fn oversized_baggage_is_not_read() {
        let big = format!("user.id=u,pad={}", "x".repeat(MAX_BAGGAGE_BYTES));
        assert!(parse_baggage(&big).is_empty());
        assert_eq!(parse_baggage("k=%E2%9C%93").len(), 1);
        assert!(parse_baggage("k=%FF").is_empty());
    }
}
