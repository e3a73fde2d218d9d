//! Dialects: a [`Record`] rendered as span attributes.
//!
//! The built-in `semconv` dialect follows the OpenTelemetry GenAI semantic conventions: the
//! record's attributes as they are, and the message attributes (`gen_ai.input.messages`,
//! `gen_ai.output.messages`, `gen_ai.system_instructions`, `gen_ai.tool.definitions`) as JSON text.
//! Other dialects are data (`dialects/*.yaml`, embedded, checked against [`dialect_schema`]):
//! attribute renames and drops, sums, constants, derived values (value maps, JSON objects built
//! from several attributes, per-operation values), templates that flatten messages and tool
//! definitions into indexed keys (`gen_ai.prompt.{i}.content`), and extra names for span events.
//!
//! The newest GenAI conventions are a dialect too (`gen_ai_latest_experimental`), chosen instead
//! of the default names by `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`
//! ([`with_stability_opt_in`]); the attributes it `introduces` are left out of the default
//! rendering.

mod flat;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value as Json;

use crate::engine::Record;
pub use flat::{Derived, DialectSpec, FlatMessages, FlatTools, MessageField, MetricRename};

/// The name of the dialect of the newest (experimental) GenAI conventions, and the value of
/// `OTEL_SEMCONV_STABILITY_OPT_IN` that selects it.
pub const LATEST_EXPERIMENTAL: &str = "gen_ai_latest_experimental";

/// The environment variable of the semantic-conventions stability opt-in.
pub const STABILITY_OPT_IN_ENV: &str = "OTEL_SEMCONV_STABILITY_OPT_IN";

/// Embedded dialect files.
const BUNDLED: &[(&str, &str)] = &[
    ("agentops", include_str!("../../../dialects/agentops.yaml")),
    (
        "openinference",
        include_str!("../../../dialects/openinference.yaml"),
    ),
    (
        LATEST_EXPERIMENTAL,
        include_str!("../../../dialects/gen_ai_latest_experimental.yaml"),
    ),
];

/// A way of naming attributes.
///
/// ```
/// use specter::Dialect;
///
/// let dialects = vec![Dialect::Semconv, Dialect::named("openinference").unwrap()];
/// assert_eq!(dialects.len(), 2);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum Dialect {
    /// The OpenTelemetry GenAI semantic conventions (the default).
    Semconv,
    /// A data-defined dialect.
    Flat(Box<DialectSpec>),
}

/// Why a dialect could not be loaded.
///
/// ```
/// use specter::{Dialect, DialectError};
///
/// let error = Dialect::named("no_such_dialect").unwrap_err();
/// assert_eq!(error, DialectError::Unknown("no_such_dialect".into()));
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialectError {
    /// No dialect has this name.
    #[error("unknown dialect `{0}` (known: semconv, otel, agentops, openinference, gen_ai_latest_experimental)")]
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
    /// use specter::Dialect;
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
        let located = |pointer: &str, message: &str| {
            let pos = doc.position(pointer);
            format!("{}:{}: {message}", pos.line, pos.col)
        };
        if let Some(validator) = validator() {
            let mut errors: Vec<String> = validator
                .iter_errors(&doc.value)
                .flat_map(|e| schema_problems(&e))
                .map(|(pointer, message)| located(&pointer, &message))
                .collect();
            if !errors.is_empty() {
                errors.sort();
                errors.dedup();
                return Err(invalid(errors.join("; ")));
            }
        }
        let spec: DialectSpec =
            serde_json::from_value(doc.value.clone()).map_err(|e| invalid(e.to_string()))?;
        let problems: Vec<String> = spec
            .problems()
            .iter()
            .map(|(pointer, message)| located(pointer, message))
            .collect();
        if !problems.is_empty() {
            return Err(invalid(problems.join("; ")));
        }
        Ok(Dialect::Flat(Box::new(spec)))
    }
}

/// The JSON Schema of dialect files (`schemas/dialect.schema.json`).
pub fn dialect_schema() -> Json {
    schemars::schema_for!(DialectSpec).to_value()
}

/// A schema error as (JSON pointer, message) pairs: an unknown key is placed at the key itself.
fn schema_problems(error: &jsonschema::ValidationError<'_>) -> Vec<(String, String)> {
    let pointer = error.instance_path().as_str().to_string();
    match error.kind() {
        jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => unexpected
            .iter()
            .map(|key| {
                (
                    format!("{pointer}/{}", crate::yaml::escape_segment(key)),
                    format!("unknown key `{key}`"),
                )
            })
            .collect(),
        _ => vec![(pointer, error.to_string())],
    }
}

fn validator() -> Option<&'static jsonschema::Validator> {
    static VALIDATOR: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| jsonschema::validator_for(&dialect_schema()).ok())
        .as_ref()
}

/// Applies the semantic-conventions stability opt-in (`OTEL_SEMCONV_STABILITY_OPT_IN`, a
/// comma-separated list): with `gen_ai_latest_experimental` in it, the default names (`semconv`)
/// give way to the newest conventions' dialect; without it the dialects are unchanged.
///
/// ```
/// use specter::unstable::render::dialect::{with_stability_opt_in, Dialect};
/// let latest = with_stability_opt_in(vec![Dialect::Semconv], Some("http, gen_ai_latest_experimental")).unwrap();
/// assert_eq!(latest, vec![Dialect::named("gen_ai_latest_experimental").unwrap()]);
/// let default = with_stability_opt_in(vec![Dialect::Semconv], Some("http")).unwrap();
/// assert_eq!(default, vec![Dialect::Semconv]);
/// ```
pub fn with_stability_opt_in(
    dialects: Vec<Dialect>,
    opt_in: Option<&str>,
) -> Result<Vec<Dialect>, DialectError> {
    let latest = opt_in
        .unwrap_or_default()
        .split(',')
        .any(|entry| entry.trim() == LATEST_EXPERIMENTAL);
    if !latest {
        return Ok(dialects);
    }
    let replacement = Dialect::named(LATEST_EXPERIMENTAL)?;
    Ok(dialects
        .into_iter()
        .map(|d| match d {
            Dialect::Semconv => replacement.clone(),
            other => other,
        })
        .collect())
}

/// The attributes only the newest conventions' dialect emits (its `introduces`).
fn newer_only() -> &'static [String] {
    static NEWER: OnceLock<Vec<String>> = OnceLock::new();
    NEWER.get_or_init(|| match Dialect::named(LATEST_EXPERIMENTAL) {
        Ok(Dialect::Flat(spec)) => spec.introduces,
        _ => Vec::new(),
    })
}

/// Whether `key` is an attribute only the newest conventions' dialect emits.
pub fn is_newer_only(key: &str) -> bool {
    newer_only().iter().any(|k| k == key)
}

/// The attributes a span carries from its start, in `dialects`: the request-phase record's
/// attributes under each dialect's names (no message content).
pub fn render_start(record: &Record, dialects: &[Dialect]) -> BTreeMap<String, Json> {
    let mut out = BTreeMap::new();
    for dialect in dialects {
        match dialect {
            Dialect::Semconv => out.extend(
                record
                    .attributes
                    .iter()
                    .filter(|(k, _)| !newer_only().contains(k))
                    .map(|(k, v)| (k.clone(), v.clone())),
            ),
            Dialect::Flat(spec) => spec.render_start(&record.attributes, &mut out),
        }
    }
    out
}

/// The metric renames of `dialects`, in order (the first that renames a metric wins).
pub fn metric_renames(dialects: &[Dialect]) -> Vec<MetricRename> {
    dialects
        .iter()
        .flat_map(|dialect| match dialect {
            Dialect::Flat(spec) => spec.metrics.clone(),
            Dialect::Semconv => Vec::new(),
        })
        .collect()
}

/// The names a span event called `name` is emitted under in `dialects`: its own name unless a
/// dialect renames it (the names of every dialect that does, without repeats).
pub fn event_names(name: &'static str, dialects: &[Dialect]) -> Vec<Cow<'static, str>> {
    let mut names: Vec<Cow<'static, str>> = Vec::new();
    for dialect in dialects {
        let listed = match dialect {
            Dialect::Flat(spec) => spec.event_names(name),
            Dialect::Semconv => None,
        };
        match listed {
            Some(list) => {
                for n in list {
                    if !names.iter().any(|x| x == n) {
                        names.push(Cow::Owned(n.clone()));
                    }
                }
            }
            None => {
                if !names.iter().any(|x| x == name) {
                    names.push(Cow::Borrowed(name));
                }
            }
        }
    }
    if names.is_empty() {
        names.push(Cow::Borrowed(name));
    }
    names
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

/// [`render`] for a record whose attributes and message texts are not needed afterwards: the
/// default rendering (semconv alone) takes them from the record, leaving it without them,
/// instead of copying them.
pub fn render_taking(record: &mut Record, dialects: &[Dialect]) -> BTreeMap<String, Json> {
    if let [Dialect::Semconv] = dialects {
        let mut out = std::mem::take(&mut record.attributes);
        for key in newer_only() {
            out.remove(key);
        }
        for (key, text) in [
            ("gen_ai.input.messages", record.input_messages.take()),
            ("gen_ai.output.messages", record.output_messages.take()),
            (
                "gen_ai.system_instructions",
                record.system_instructions.take(),
            ),
            ("gen_ai.tool.definitions", record.tool_definitions.take()),
        ] {
            if let Some(text) = text {
                out.insert(key.to_string(), Json::String(text));
            }
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
/// # let record = specter::unstable::engine::Record { provider: "openai".into(), operation: "chat".into(),
/// #     span_name: "chat".into(), client_span: true, attributes: BTreeMap::new(),
/// #     input_messages: Some(r#"[{"role":"user","parts":[]}]"#.into()), output_messages: None,
/// #     system_instructions: None, tool_definitions: None, error: None, problems: vec![], stream: None, metric_values: vec![] };
/// let attributes = specter::unstable::render::dialect::semconv(&record, true);
/// assert_eq!(attributes["gen_ai.input.messages"], r#"[{"role":"user","parts":[]}]"#);
/// ```
pub fn semconv(record: &Record, content: bool) -> BTreeMap<String, Json> {
    let mut out: BTreeMap<String, Json> = record
        .attributes
        .iter()
        .filter(|(k, _)| !newer_only().contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
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
