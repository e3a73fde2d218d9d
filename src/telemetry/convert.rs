//! JSON attribute values → OpenTelemetry values.

use std::collections::BTreeMap;

use opentelemetry::{Array, KeyValue, StringValue, Value};
use serde_json::Value as Json;

/// Converts attributes; objects and mixed arrays become JSON text, nulls are left out.
pub fn key_values(attributes: &BTreeMap<String, Json>) -> Vec<KeyValue> {
    attributes
        .iter()
        .filter_map(|(k, v)| to_value(v).map(|v| KeyValue::new(k.clone(), v)))
        .collect()
}

/// Converts attributes, moving their keys and strings.
pub fn into_key_values(attributes: impl Iterator<Item = (String, Json)>) -> Vec<KeyValue> {
    attributes
        .filter_map(|(k, v)| into_value(v).map(|v| KeyValue::new(k, v)))
        .collect()
}

/// One value, moving a string (the same value as [`to_value`]).
pub fn into_value(value: Json) -> Option<Value> {
    match value {
        Json::String(s) => Some(Value::String(s.into())),
        other => to_value(&other),
    }
}

/// One value.
pub fn to_value(value: &Json) -> Option<Value> {
    Some(match value {
        Json::Null => return None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::I64(i),
            None => Value::F64(n.as_f64()?),
        },
        Json::String(s) => Value::String(s.clone().into()),
        Json::Array(items) => {
            array(items).unwrap_or_else(|| Value::String(value.to_string().into()))
        }
        Json::Object(_) => Value::String(value.to_string().into()),
    })
}

fn array(items: &[Json]) -> Option<Value> {
    if items.iter().all(Json::is_string) {
        let strings: Vec<StringValue> = items
            .iter()
            .filter_map(|v| v.as_str().map(|s| s.to_string().into()))
            .collect();
        return Some(Value::Array(Array::String(strings)));
    }
    if items.iter().all(Json::is_i64) {
        return Some(Value::Array(Array::I64(
            items.iter().filter_map(Json::as_i64).collect(),
        )));
    }
    if items.iter().all(Json::is_number) {
        return Some(Value::Array(Array::F64(
            items.iter().filter_map(Json::as_f64).collect(),
        )));
    }
    if items.iter().all(Json::is_boolean) {
        return Some(Value::Array(Array::Bool(
            items.iter().filter_map(Json::as_bool).collect(),
        )));
    }
    None
}
