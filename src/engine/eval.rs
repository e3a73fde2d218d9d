//! Evaluating compiled values and conditions against the documents of an exchange.

use serde_json::{Number, Value as Json};

use crate::compile::rules::{Cond, Source, Test, Value};
use crate::spec::{Coercion, JsonType};

/// What a rule can read: the phase document and the rest of the exchange.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The document of the rule (phase body, or the current item).
    pub doc: &'a Json,
    /// The request body.
    pub request: &'a Json,
    /// The response body (or rebuilt stream response), `Null` before the response.
    pub response: &'a Json,
    /// Path captures.
    pub captures: &'a [(String, String)],
    /// Headers of the phase's message, lower-case names.
    pub headers: &'a [(String, String)],
    /// Query parameters.
    pub query: &'a [(String, String)],
}

impl<'a> Scope<'a> {
    /// The same scope with another document.
    pub fn with_doc(&self, doc: &'a Json) -> Scope<'a> {
        Scope { doc, ..*self }
    }
}

/// Evaluates a value; `None` when it is absent, null, filtered out or does not convert.
pub fn eval(value: &Value, scope: &Scope<'_>) -> Option<Json> {
    if let Some(when) = &value.when {
        if !holds(when, scope) {
            return None;
        }
    }
    let mut raw = source(&value.source, scope)?;
    if let Some(re) = &value.pattern {
        let Json::String(text) = &raw else {
            return None;
        };
        let caps = re.captures(text)?;
        let kept = caps.get(1).or_else(|| caps.get(0))?.as_str().to_string();
        raw = Json::String(kept);
    }
    let mapped = match &value.map {
        // Lists are mapped element by element (finish reasons of several choices).
        Some(map) => match raw {
            Json::Array(items) => Json::Array(items.into_iter().map(|v| map_one(map, v)).collect()),
            other => map_one(map, other),
        },
        None => raw,
    };
    match value.coerce {
        Some(c) => coerce(mapped, c),
        None => Some(mapped),
    }
}

fn source(source: &Source, scope: &Scope<'_>) -> Option<Json> {
    let found = match source {
        Source::Doc(path) => select(path, scope.doc),
        Source::Request(path) => select(path, scope.request),
        Source::Response(path) => select(path, scope.response),
        Source::First(values) => values.iter().find_map(|v| eval(v, scope)),
        Source::Sum(values) => sum(values.iter().filter_map(|v| eval(v, scope))),
        Source::Const(c) => Some(c.clone()),
        Source::Capture(name) => lookup(scope.captures, name, false),
        Source::Header(name) => lookup(scope.headers, name, true),
        Source::Query(name) => lookup(scope.query, name, false),
    }?;
    (!found.is_null()).then_some(found)
}

fn select(path: &crate::compile::JsonPath, doc: &Json) -> Option<Json> {
    if path.is_singular() {
        return path.first(doc).cloned();
    }
    let mut found = Vec::new();
    path.select(doc, &mut found);
    found.retain(|v| !v.is_null());
    (!found.is_empty()).then(|| Json::Array(found.into_iter().cloned().collect()))
}

fn lookup(pairs: &[(String, String)], name: &str, ignore_case: bool) -> Option<Json> {
    pairs
        .iter()
        .find(|(k, _)| {
            if ignore_case {
                k.eq_ignore_ascii_case(name)
            } else {
                k == name
            }
        })
        .map(|(_, v)| Json::String(v.clone()))
}

fn sum(values: impl Iterator<Item = Json>) -> Option<Json> {
    let mut int: i64 = 0;
    let mut float: f64 = 0.0;
    let mut any = false;
    let mut all_int = true;
    for v in values {
        let Json::Number(n) = v else { continue };
        any = true;
        match n.as_i64() {
            Some(i) if all_int => int = int.saturating_add(i),
            _ => {
                if all_int {
                    float = int as f64;
                    all_int = false;
                }
                float += n.as_f64().unwrap_or(0.0);
            }
        }
    }
    if !any {
        return None;
    }
    if all_int {
        Some(Json::Number(int.into()))
    } else {
        Number::from_f64(float).map(Json::Number)
    }
}

fn map_one(map: &std::collections::BTreeMap<String, Json>, value: Json) -> Json {
    map.get(&key_text(&value)).cloned().unwrap_or(value)
}

/// The text a value is compared as in `map` keys.
fn key_text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Converts a value to a type.
pub fn coerce(value: Json, to: Coercion) -> Option<Json> {
    match to {
        Coercion::Int => match &value {
            Json::Number(n) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                })
                .map(|i| Json::Number(i.into())),
            Json::String(s) => s.trim().parse::<i64>().ok().map(|i| Json::Number(i.into())),
            _ => None,
        },
        Coercion::Float => match &value {
            Json::Number(n) => n.as_f64().and_then(Number::from_f64).map(Json::Number),
            Json::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Json::Number),
            _ => None,
        },
        Coercion::String => match value {
            Json::String(_) => Some(value),
            Json::Number(_) | Json::Bool(_) => Some(Json::String(value.to_string())),
            _ => None,
        },
        Coercion::Bool => match &value {
            Json::Bool(_) => Some(value),
            Json::String(s) if s == "true" => Some(Json::Bool(true)),
            Json::String(s) if s == "false" => Some(Json::Bool(false)),
            _ => None,
        },
        Coercion::StringArray => array_of(value, Coercion::String),
        Coercion::IntArray => array_of(value, Coercion::Int),
        Coercion::FloatArray => array_of(value, Coercion::Float),
        Coercion::Json => serde_json::to_string(&value).ok().map(Json::String),
        Coercion::ParseJson => match &value {
            Json::String(s) => Some(serde_json::from_str(s).unwrap_or(value)),
            _ => Some(value),
        },
    }
}

fn array_of(value: Json, item: Coercion) -> Option<Json> {
    let items = match value {
        Json::Array(items) => items,
        other => vec![other],
    };
    let converted: Vec<Json> = items.into_iter().filter_map(|v| coerce(v, item)).collect();
    (!converted.is_empty()).then_some(Json::Array(converted))
}

/// Whether a condition holds.
pub fn holds(cond: &Cond, scope: &Scope<'_>) -> bool {
    match cond {
        Cond::All(items) => items.iter().all(|c| holds(c, scope)),
        Cond::Any(items) => items.iter().any(|c| holds(c, scope)),
        Cond::Not(inner) => !holds(inner, scope),
        Cond::Test(value, test) => {
            let found = eval(value, scope);
            match test {
                Test::Exists(want) => found.is_some() == *want,
                Test::Equals(expected) => found.is_some_and(|v| same(&v, expected)),
                Test::NotEquals(expected) => found.is_some_and(|v| !same(&v, expected)),
                Test::In(options) => found.is_some_and(|v| options.iter().any(|o| same(&v, o))),
                Test::Is(kind) => found.is_some_and(|v| is_type(&v, *kind)),
            }
        }
    }
}

fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn is_type(value: &Json, kind: JsonType) -> bool {
    matches!(
        (kind, value),
        (JsonType::String, Json::String(_))
            | (JsonType::Number, Json::Number(_))
            | (JsonType::Bool, Json::Bool(_))
            | (JsonType::Array, Json::Array(_))
            | (JsonType::Object, Json::Object(_))
            | (JsonType::Null, Json::Null)
    )
}
