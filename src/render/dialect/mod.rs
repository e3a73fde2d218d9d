//! Dialects: a [`Record`] rendered as span attributes.
//!
//! The built-in `semconv` dialect follows the OpenTelemetry GenAI semantic conventions: the
//! record's attributes as they are, and the message attributes (`gen_ai.input.messages`,
//! `gen_ai.output.messages`, `gen_ai.system_instructions`, `gen_ai.tool.definitions`) as JSON text.
//! Other dialects are data (`dialects/*.yaml`, embedded): attribute renames, sums, constants, and
//! templates that flatten messages into indexed keys (`gen_ai.prompt.{i}.content`).

mod flat;

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::engine::Record;
pub use flat::{DialectSpec, FlatMessages};

/// Embedded dialect files.
const BUNDLED: &[(&str, &str)] = &[
    ("agentops", include_str!("../../../dialects/agentops.yaml")),
    (
        "openinference",
        include_str!("../../../dialects/openinference.yaml"),
    ),
];

/// A way of naming attributes.
#[derive(Debug, Clone, PartialEq)]
pub enum Dialect {
    /// The OpenTelemetry GenAI semantic conventions (the default).
    Semconv,
    /// A data-defined dialect.
    Flat(Box<DialectSpec>),
}

/// Why a dialect could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialectError {
    /// No dialect has this name.
    #[error("unknown dialect `{0}` (known: semconv, otel, agentops, openinference)")]
    Unknown(String),
    /// The dialect file is invalid.
    #[error("invalid dialect `{name}`: {message}")]
    Invalid {
        /// Dialect name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

impl Dialect {
    /// A dialect by name: `semconv` (alias `otel`), `agentops`, `openinference`.
    ///
    /// ```
    /// use specter::render::dialect::Dialect;
    /// assert_eq!(Dialect::named("otel").unwrap(), Dialect::Semconv);
    /// assert!(matches!(Dialect::named("agentops").unwrap(), Dialect::Flat(_)));
    /// assert!(Dialect::named("nope").is_err());
    /// ```
    pub fn named(name: &str) -> Result<Dialect, DialectError> {
        if name == "semconv" || name == "otel" {
            return Ok(Dialect::Semconv);
        }
        let (_, text) = BUNDLED
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| DialectError::Unknown(name.to_string()))?;
        Dialect::parse(name, text)
    }

    /// Parses a dialect file.
    pub fn parse(name: &str, text: &str) -> Result<Dialect, DialectError> {
        let invalid = |message: String| DialectError::Invalid {
            name: name.to_string(),
            message,
        };
        let doc = crate::yaml::parse(text)
            .map_err(|e| invalid(format!("{}:{}: {}", e.pos.line, e.pos.col, e.message)))?;
        let spec: DialectSpec =
            serde_json::from_value(doc.value).map_err(|e| invalid(e.to_string()))?;
        Ok(Dialect::Flat(Box::new(spec)))
    }
}

/// Renders a record in several dialects at once (later dialects win on a shared key).
pub fn render(record: &Record, dialects: &[Dialect]) -> BTreeMap<String, Json> {
    let mut out = BTreeMap::new();
    for dialect in dialects {
        match dialect {
            // The first dialect's map is taken as it is, not copied entry by entry.
            Dialect::Semconv if out.is_empty() => out = semconv(record, true),
            Dialect::Semconv => out.extend(semconv(record, true)),
            Dialect::Flat(spec) => spec.render(record, &mut out),
        }
    }
    out
}

/// [`render`] for a record whose attributes are not needed afterwards: the default rendering
/// (semconv alone) takes them from the record, leaving it without attributes, instead of copying
/// them.
pub fn render_taking(record: &mut Record, dialects: &[Dialect]) -> BTreeMap<String, Json> {
    if let [Dialect::Semconv] = dialects {
        let mut out = std::mem::take(&mut record.attributes);
        for (key, text) in message_texts(record) {
            out.insert(key.to_string(), Json::String(text.to_string()));
        }
        return out;
    }
    render(record, dialects)
}

/// Renders a record in the semantic-conventions dialect; `content` false leaves the message
/// attributes out.
///
/// ```
/// # use std::collections::BTreeMap;
/// # let record = specter::engine::Record { provider: "openai".into(), operation: "chat".into(),
/// #     span_name: "chat".into(), client_span: true, attributes: BTreeMap::new(),
/// #     input_messages: Some(r#"[{"role":"user","parts":[]}]"#.into()), output_messages: None,
/// #     system_instructions: None, tool_definitions: None, error: None, problems: vec![], stream: None, metric_values: vec![] };
/// let attributes = specter::render::dialect::semconv(&record, true);
/// assert_eq!(attributes["gen_ai.input.messages"], r#"[{"role":"user","parts":[]}]"#);
/// ```
pub fn semconv(record: &Record, content: bool) -> BTreeMap<String, Json> {
    let mut out = record.attributes.clone();
    if content {
        for (key, text) in message_texts(record) {
            out.insert(key.to_string(), Json::String(text.to_string()));
        }
    }
    out
}

/// The semconv message attributes of a record as JSON text.
pub fn message_attributes(record: &Record) -> Vec<(&'static str, Json)> {
    message_texts(record)
        .map(|(key, text)| (key, Json::String(text.to_string())))
        .collect()
}

/// The keys of the semconv message attributes a record has, with their JSON text.
pub fn message_texts(record: &Record) -> impl Iterator<Item = (&'static str, &str)> {
    [
        ("gen_ai.input.messages", &record.input_messages),
        ("gen_ai.output.messages", &record.output_messages),
        ("gen_ai.system_instructions", &record.system_instructions),
        ("gen_ai.tool.definitions", &record.tool_definitions),
    ]
    .into_iter()
    .filter_map(|(key, text)| Some((key, text.as_deref()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_dialects_parse() {
        for (name, _) in BUNDLED {
            assert!(
                matches!(Dialect::named(name), Ok(Dialect::Flat(_))),
                "{name}"
            );
        }
    }
}
