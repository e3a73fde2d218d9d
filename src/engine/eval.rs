//! Evaluating compiled values and conditions against the documents of an exchange.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{Number, Value as Json};

use crate::compile::rules::{Coercion, JsonType};
use crate::compile::rules::{Cond, Source, Test, Value};

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

/// Evaluates a value; `None` when it is absent, null, filtered out or does not convert. The value
/// is borrowed from the documents or the rule when no transform changed it.
pub fn eval<'a>(value: &'a Value, scope: &Scope<'a>) -> Option<Cow<'a, Json>> {
    if let Some(found) = plain(value, scope) {
        return found.map(Cow::Borrowed);
    }
    if let Some(when) = &value.when {
        if !holds(when, scope) {
            return None;
        }
    }
    let mut raw = source(&value.source, scope)?;
    if let Some(re) = &value.pattern {
        let Json::String(text) = &*raw else {
            return None;
        };
        let caps = re.captures(text)?;
        let kept = caps.get(1).or_else(|| caps.get(0))?.as_str().to_string();
        raw = Cow::Owned(Json::String(kept));
    }
    let mapped = match &value.map {
        // Lists are mapped element by element (finish reasons of several choices).
        Some(map) => match raw {
            Cow::Borrowed(Json::Array(items)) => Cow::Owned(Json::Array(
                items
                    .iter()
                    .map(|v| map_one(map, Cow::Borrowed(v)).into_owned())
                    .collect(),
            )),
            Cow::Owned(Json::Array(items)) => Cow::Owned(Json::Array(
                items
                    .into_iter()
                    .map(|v| map_one(map, Cow::Owned(v)).into_owned())
                    .collect(),
            )),
            other => map_one(map, other),
        },
        None => raw,
    };
    match value.coerce {
        Some(c) => coerce(mapped, c),
        None => Some(mapped),
    }
}

/// The value of a plain path (a single node, no guard and no transform: most rules), borrowed;
/// `None` when the value is not plain.
fn plain<'a>(value: &'a Value, scope: &Scope<'a>) -> Option<Option<&'a Json>> {
    if value.when.is_some()
        || value.pattern.is_some()
        || value.map.is_some()
        || value.coerce.is_some()
    {
        return None;
    }
    let (path, doc) = match &value.source {
        Source::Doc(path) => (path, scope.doc),
        Source::Request(path) => (path, scope.request),
        Source::Response(path) => (path, scope.response),
        _ => return None,
    };
    if !path.is_singular() {
        return None;
    }
    Some(path.first(doc).filter(|v| !v.is_null()))
}

fn source<'a>(source: &'a Source, scope: &Scope<'a>) -> Option<Cow<'a, Json>> {
    let found = match source {
        Source::Doc(path) => select(path, scope.doc),
        Source::Request(path) => select(path, scope.request),
        Source::Response(path) => select(path, scope.response),
        Source::First(values) => values.iter().find_map(|v| eval(v, scope)),
        Source::Sum(values) => sum(values.iter().filter_map(|v| eval(v, scope))).map(Cow::Owned),
        Source::Const(c) => Some(Cow::Borrowed(c)),
        Source::Capture(name) => lookup(scope.captures, name, false),
        Source::Header(name) => lookup(scope.headers, name, true),
        Source::Query(name) => lookup(scope.query, name, false),
    }?;
    (!found.is_null()).then_some(found)
}

fn select<'a>(path: &crate::compile::JsonPath, doc: &'a Json) -> Option<Cow<'a, Json>> {
    if path.is_singular() {
        return path.first(doc).map(Cow::Borrowed);
    }
    let mut found = Vec::new();
    path.for_each(doc, &mut |v| {
        if !v.is_null() {
            found.push(v.clone());
        }
    });
    (!found.is_empty()).then_some(Cow::Owned(Json::Array(found)))
}

fn lookup<'a>(pairs: &[(String, String)], name: &str, ignore_case: bool) -> Option<Cow<'a, Json>> {
    pairs
        .iter()
        .find(|(k, _)| {
            if ignore_case {
                k.eq_ignore_ascii_case(name)
            } else {
                k == name
            }
        })
        .map(|(_, v)| Cow::Owned(Json::String(v.clone())))
}

fn sum<'a>(values: impl Iterator<Item = Cow<'a, Json>>) -> Option<Json> {
    let mut int: i64 = 0;
    let mut float: f64 = 0.0;
    let mut any = false;
    let mut all_int = true;
    // A value that is a list (a path with a filter or a wildcard) adds its numbers.
    let numbers = values.flat_map(|v| match v.into_owned() {
        Json::Array(items) => items,
        other => vec![other],
    });
    for v in numbers {
        let Json::Number(n) = &v else { continue };
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

fn map_one<'a>(map: &'a BTreeMap<String, Json>, value: Cow<'a, Json>) -> Cow<'a, Json> {
    let found = match &*value {
        // `map` keys are compared with a value's text (strings as they are, others written out).
        Json::String(s) => map.get(s.as_str()),
        other => map.get(&other.to_string()),
    };
    match found {
        Some(mapped) => Cow::Borrowed(mapped),
        None => value,
    }
}

/// Converts a value to a type (borrowed when it already has it).
pub fn coerce(value: Cow<'_, Json>, to: Coercion) -> Option<Cow<'_, Json>> {
    let owned = |v: Json| Some(Cow::Owned(v));
    match to {
        Coercion::Int => match &*value {
            Json::Number(n) if n.is_i64() => Some(value),
            Json::Number(n) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                })
                .and_then(|i| owned(Json::Number(i.into()))),
            Json::String(s) => s
                .trim()
                .parse::<i64>()
                .ok()
                .and_then(|i| owned(Json::Number(i.into()))),
            _ => None,
        },
        Coercion::Float => match &*value {
            Json::Number(n) if n.is_f64() => Some(value),
            Json::Number(n) => n
                .as_f64()
                .and_then(Number::from_f64)
                .and_then(|n| owned(Json::Number(n))),
            Json::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .and_then(|n| owned(Json::Number(n))),
            _ => None,
        },
        Coercion::String => match &*value {
            Json::String(_) => Some(value),
            Json::Number(_) | Json::Bool(_) => owned(Json::String(value.to_string())),
            _ => None,
        },
        Coercion::Bool => match &*value {
            Json::Bool(_) => Some(value),
            Json::String(s) if s == "true" => owned(Json::Bool(true)),
            Json::String(s) if s == "false" => owned(Json::Bool(false)),
            _ => None,
        },
        Coercion::StringArray => array_of(value, Coercion::String),
        Coercion::IntArray => array_of(value, Coercion::Int),
        Coercion::FloatArray => array_of(value, Coercion::Float),
        Coercion::Json => serde_json::to_string(&*value)
            .ok()
            .and_then(|s| owned(Json::String(s))),
        Coercion::ParseJson => match &*value {
            Json::String(s) => match serde_json::from_str(s) {
                Ok(parsed) => owned(parsed),
                Err(_) => Some(value),
            },
            _ => Some(value),
        },
        Coercion::Key => match &*value {
            Json::Object(map) if map.len() == 1 => map
                .keys()
                .next()
                .and_then(|k| owned(Json::String(k.clone()))),
            _ => None,
        },
    }
}

fn array_of(value: Cow<'_, Json>, item: Coercion) -> Option<Cow<'_, Json>> {
    let converted: Vec<Json> = match value {
        Cow::Borrowed(Json::Array(items)) => items
            .iter()
            .filter_map(|v| coerce(Cow::Borrowed(v), item).map(Cow::into_owned))
            .collect(),
        Cow::Owned(Json::Array(items)) => items
            .into_iter()
            .filter_map(|v| coerce(Cow::Owned(v), item).map(Cow::into_owned))
            .collect(),
        other => coerce(other, item)
            .map(Cow::into_owned)
            .into_iter()
            .collect(),
    };
    (!converted.is_empty()).then_some(Cow::Owned(Json::Array(converted)))
}

/// Whether a condition holds.
pub fn holds(cond: &Cond, scope: &Scope<'_>) -> bool {
    match cond {
        Cond::All(items) => items.iter().all(|c| holds(c, scope)),
        Cond::Any(items) => items.iter().any(|c| holds(c, scope)),
        Cond::Not(inner) => !holds(inner, scope),
        Cond::Test(value, test) => {
            let evaluated;
            let found = match plain(value, scope) {
                Some(found) => found,
                None => {
                    evaluated = eval(value, scope);
                    evaluated.as_deref()
                }
            };
            match test {
                Test::Exists(want) => found.is_some() == *want,
                Test::Equals(expected) => found.is_some_and(|v| same(v, expected)),
                Test::NotEquals(expected) => found.is_some_and(|v| !same(v, expected)),
                Test::In(options) => found.is_some_and(|v| options.iter().any(|o| same(v, o))),
                Test::Is(kind) => found.is_some_and(|v| is_type(v, *kind)),
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
