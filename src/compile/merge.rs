//! `extends`: a provider document merged onto the one it extends.
//!
//! Keys of the child replace the parent's, objects merge key by key, a `null` removes an
//! inherited key, and `operations` merge by `id`. Each merged operation remembers which file and
//! index it came from, so diagnostics point into the right file.

use serde_json::{Map, Value};

/// Where merged operation `j` came from in one layer (file): its index there, if any.
pub type OperationOrigins = Vec<Option<usize>>;

/// Merges `child` onto `parent`. Returns the merged document and, for the parent and the child
/// layers, the index each merged operation had in that layer.
pub fn merge(parent: &Value, child: &Value) -> (Value, OperationOrigins, OperationOrigins) {
    let mut merged = parent.clone();
    let parent_ops = parent
        .get("operations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut from_parent: OperationOrigins = (0..parent_ops.len()).map(Some).collect();
    let mut from_child: OperationOrigins = vec![None; parent_ops.len()];
    let (Value::Object(target), Value::Object(source)) = (&mut merged, child) else {
        return (child.clone(), Vec::new(), Vec::new());
    };
    for (key, value) in source {
        if key == "operations" {
            let mut ops = parent_ops.clone();
            for (i, op) in value.as_array().into_iter().flatten().enumerate() {
                let id = op.get("id");
                match ops.iter().position(|p| id.is_some() && p.get("id") == id) {
                    Some(j) => {
                        if let Some(slot) = ops.get_mut(j) {
                            patch(slot, op);
                        }
                        if let Some(slot) = from_child.get_mut(j) {
                            *slot = Some(i);
                        }
                    }
                    None => {
                        ops.push(op.clone());
                        from_parent.push(None);
                        from_child.push(Some(i));
                    }
                }
            }
            target.insert(key.clone(), Value::Array(ops));
        } else if value.is_null() {
            target.remove(key);
        } else {
            match target.get_mut(key) {
                Some(existing) => patch(existing, value),
                None => {
                    target.insert(key.clone(), value.clone());
                }
            }
        }
    }
    (merged, from_parent, from_child)
}

/// JSON merge patch (RFC 7396): objects merge, `null` removes, anything else replaces.
fn patch(target: &mut Value, source: &Value) {
    match (target, source) {
        (Value::Object(t), Value::Object(s)) => patch_object(t, s),
        (t, s) => *t = s.clone(),
    }
}

fn patch_object(target: &mut Map<String, Value>, source: &Map<String, Value>) {
    for (key, value) in source {
        if value.is_null() {
            target.remove(key);
        } else if let Some(existing) = target.get_mut(key) {
            patch(existing, value);
        } else {
            target.insert(key.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations_merge_by_id() {
        let parent = json!({"id": "openai", "provider_name": "openai", "path_prefixes": ["/v1"],
            "operations": [{"id": "chat", "operation_name": "chat", "request": {"attributes": {"a": "$.a", "b": "$.b"}}},
                           {"id": "embeddings", "operation_name": "embeddings"}]});
        let child = json!({"id": "groq", "extends": "openai", "path_prefixes": ["/openai/v1"],
            "operations": [{"id": "chat", "request": {"attributes": {"b": null, "c": "$.c"}}},
                           {"id": "audio", "operation_name": "x"}]});
        let (merged, from_parent, from_child) = merge(&parent, &child);
        assert_eq!(merged["id"], "groq");
        assert_eq!(merged["provider_name"], "openai");
        assert_eq!(merged["path_prefixes"], json!(["/openai/v1"]));
        assert_eq!(
            merged["operations"][0]["request"]["attributes"],
            json!({"a": "$.a", "c": "$.c"})
        );
        assert_eq!(merged["operations"][2]["id"], "audio");
        assert_eq!(from_parent, vec![Some(0), Some(1), None]);
        assert_eq!(from_child, vec![Some(0), None, Some(1)]);
    }
}
