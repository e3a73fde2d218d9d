//! Parsing only what the rules read: a body is scanned whole (so malformed JSON is still refused)
//! but only the members and elements its operation's [`ReadTree`] names are built into the
//! [`serde_json::Value`] the rules run on; everything else is skipped without allocating. The
//! parsed request is also cut down to what is read after its phase, so a call waiting for its
//! response (a stream above all) holds only that.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value as Json};

use crate::compile::reads::ReadTree;

/// Parses the parts of `bytes` that `tree` reads. Members nothing reads are left out; elements
/// of an array nothing reads are `null` (positions do not move). The whole text must be JSON.
pub fn parse(bytes: &[u8], tree: &ReadTree) -> serde_json::Result<Json> {
    if tree.is_whole() {
        return serde_json::from_slice(bytes);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Sparse(tree).deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Removes from `value` what `tree` does not read (as [`parse`] would have left it out).
pub fn prune(value: &mut Json, tree: &ReadTree) {
    if tree.is_whole() {
        return;
    }
    match value {
        Json::Object(map) => map.retain(|key, member| match tree.member(key) {
            Some(inner) => {
                prune(member, inner);
                true
            }
            None => false,
        }),
        Json::Array(items) => match tree.elements() {
            Some(inner) => items.iter_mut().for_each(|item| prune(item, inner)),
            None => items.iter_mut().for_each(|item| *item = Json::Null),
        },
        _ => {}
    }
}

/// A value read through a tree.
struct Sparse<'t>(&'t ReadTree);

impl<'de> DeserializeSeed<'de> for Sparse<'_> {
    type Value = Json;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Json, D::Error> {
        if self.0.is_whole() {
            Json::deserialize(deserializer)
        } else {
            deserializer.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Sparse<'_> {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(Number::from_f64(v).map_or(Json::Null, Json::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        match self.0.elements() {
            Some(inner) => {
                while let Some(item) = seq.next_element_seed(Sparse(inner))? {
                    items.push(item);
                }
            }
            None => {
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    items.push(Json::Null);
                }
            }
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Json, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key_seed(Key(self.0))? {
            match key {
                Some((key, inner)) => {
                    let value = access.next_value_seed(Sparse(inner))?;
                    map.insert(key, value);
                }
                None => {
                    access.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Json::Object(map))
    }
}

/// An object key: the key and what is read under it, or `None` for a member nothing reads (its
/// key is not copied).
struct Key<'t>(&'t ReadTree);

impl<'de, 't> DeserializeSeed<'de> for Key<'t> {
    type Value = Option<(String, &'t ReadTree)>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, 't> Visitor<'de> for Key<'t> {
    type Value = Option<(String, &'t ReadTree)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.member(key).map(|inner| (key.to_owned(), inner)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use serde_json::json;

    // Trees are built by the compiler from rules; these tests get them from tiny operations.
    fn tree(paths: &[&str]) -> ReadTree {
        crate::compile::reads::tree_of_paths(paths)
    }

    #[test]
    fn only_the_paths_read_are_built() {
        let body = br#"{"model": "m", "messages": [{"role": "user", "content": "hi"}],
                       "stream": true, "n": 2, "extra": {"deep": [1, 2, 3]}}"#;
        let t = tree(&[
            "$.model",
            "$.messages[*].role",
            "$.stream_options.include_usage",
        ]);
        assert_eq!(
            parse(body, &t).unwrap(),
            json!({"model": "m", "messages": [{"role": "user"}]})
        );
    }

    #[test]
    fn unread_elements_keep_their_places() {
        let t = tree(&["$.a"]);
        assert_eq!(parse(b"[1, 2]", &t).unwrap(), json!([null, null]));
        let t = tree(&["$.list[-1].x"]);
        assert_eq!(
            parse(br#"{"list": [{"x": 1, "y": 2}, {"x": 3}]}"#, &t).unwrap(),
            json!({"list": [{"x": 1}, {"x": 3}]})
        );
    }

    #[test]
    fn a_path_that_is_not_plain_reads_its_node_whole() {
        let t = tree(&["$.content[?@.type == 'text'].text"]);
        let body = br#"{"content": [{"type": "text", "text": "a", "x": 1}], "id": "z"}"#;
        assert_eq!(
            parse(body, &t).unwrap(),
            json!({"content": [{"type": "text", "text": "a", "x": 1}]})
        );
        assert!(tree(&["$..id"]).is_whole());
    }

    #[test]
    fn a_wildcard_on_an_object_reads_every_member_with_what_named_ones_add() {
        let t = tree(&["$.m.*.a", "$.m.k.b"]);
        let body = br#"{"m": {"k": {"a": 1, "b": 2, "c": 3}, "j": {"a": 4, "b": 5}}}"#;
        assert_eq!(
            parse(body, &t).unwrap(),
            json!({"m": {"k": {"a": 1, "b": 2}, "j": {"a": 4}}})
        );
    }

    #[test]
    fn malformed_json_is_refused_even_where_nothing_is_read() {
        let t = tree(&["$.model"]);
        assert!(parse(br#"{"model": "m", "x": [1, }"#, &t).is_err());
        assert!(parse(br#"{"model": "m"} trailing"#, &t).is_err());
        assert!(parse(b"", &t).is_err());
    }

    #[test]
    fn numbers_strings_and_escapes_are_as_serde_json_reads_them() {
        let t = tree(&["$.*"]);
        let body = br#"{"i": -3, "u": 18446744073709551615, "f": 1.5e3, "s": "a\"\u00e9", "n": null, "b": false}"#;
        assert_eq!(
            parse(body, &t).unwrap(),
            serde_json::from_slice::<Json>(body).unwrap()
        );
    }

    #[test]
    fn pruning_a_parsed_value_leaves_what_parsing_would() {
        let body =
            br#"{"model": "m", "messages": [{"role": "user", "content": "hi"}], "x": [1, 2]}"#;
        for paths in [
            &["$.model"][..],
            &["$.messages[*].role", "$.x"],
            &["$.x[0]"],
            &[],
        ] {
            let t = tree(paths);
            let mut whole: Json = serde_json::from_slice(body).unwrap();
            prune(&mut whole, &t);
            assert_eq!(whole, parse(body, &t).unwrap(), "{paths:?}");
        }
    }

    #[test]
    fn deep_nesting_is_skipped_without_recursion_and_refused_where_it_is_read() {
        // serde_json skips a value without recursing, so nesting nothing reads is harmless.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            parse(deep.as_bytes(), &tree(&["$.a"])).unwrap(),
            json!([null])
        );
        // Where it is read, serde_json's nesting limit (128) applies.
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(deep.as_bytes(), &tree(&["$.a"])).is_err());
    }
}
