//! JSONPath: compiled once, evaluated per request. The only user of the JSONPath crate.
//!
//! Most paths in provider specs are plain steps (`$.usage.prompt_tokens`, `$.choices[*].index`,
//! `$['x-groq'].usage`); those are compiled to a list of steps and walked directly, borrowing from
//! the document. Anything else (filters, descendants, slices, unions) goes to the general RFC 9535
//! evaluator.

use std::fmt;

use jsonpath_rust::parser::model::JpQuery;
use serde_json::Value;

/// A compiled JSONPath.
///
/// ```
/// use specter::unstable::compile::JsonPath;
/// let path = JsonPath::parse("$.choices[*].finish_reason").unwrap();
/// let doc = serde_json::json!({"choices": [{"finish_reason": "stop"}, {"finish_reason": "length"}]});
/// let mut found = Vec::new();
/// path.select(&doc, &mut found);
/// assert_eq!(found, [&serde_json::json!("stop"), &serde_json::json!("length")]);
/// assert!(!path.is_singular());
/// ```
#[derive(Clone)]
pub struct JsonPath {
    source: String,
    kind: Kind,
    /// Plain steps without a wildcard: at most one node, found by [`JsonPath::first`] directly.
    singular: bool,
}

#[derive(Clone)]
enum Kind {
    Steps(Vec<Step>),
    /// A path for the general evaluator, and the plain steps it starts with.
    General(Box<JpQuery>, Vec<Step>),
}

/// One plain step of a path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    Key(String),
    Index(i64),
    Wildcard,
}

impl fmt::Debug for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonPath({:?})", self.source)
    }
}

impl PartialEq for JsonPath {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl JsonPath {
    /// Compiles a JSONPath. The error text says what is wrong.
    pub fn parse(source: &str) -> Result<JsonPath, String> {
        if !source.starts_with('$') {
            return Err("a JSONPath starts with `$`".to_string());
        }
        if let Some(steps) = parse_steps(source) {
            return Ok(JsonPath {
                source: source.to_string(),
                singular: !steps.contains(&Step::Wildcard),
                kind: Kind::Steps(steps),
            });
        }
        match jsonpath_rust::parser::parse_json_path(source) {
            Ok(query) => Ok(JsonPath {
                source: source.to_string(),
                kind: Kind::General(Box::new(query), plain_prefix(source)),
                singular: false,
            }),
            Err(e) => Err(explain_parse_error(&e.to_string())),
        }
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the path selects at most one node (no wildcard, filter, slice or descendant).
    pub fn is_singular(&self) -> bool {
        self.singular
    }

    /// Whether the path is plain steps only (keys, indices, wildcards), walked without the
    /// general evaluator.
    pub(crate) fn is_plain(&self) -> bool {
        matches!(&self.kind, Kind::Steps(_))
    }

    /// Whether the path is `$` itself.
    pub fn is_root(&self) -> bool {
        matches!(&self.kind, Kind::Steps(steps) if steps.is_empty())
    }

    /// Appends every node the path selects in `doc` to `out`, in document order.
    pub fn select<'a>(&self, doc: &'a Value, out: &mut Vec<&'a Value>) {
        match &self.kind {
            Kind::Steps(steps) => visit(doc, steps, &mut |node| out.push(node)),
            Kind::General(query, _) => {
                if let Ok(found) = jsonpath_rust::query::js_path_process(query, doc) {
                    out.extend(found.into_iter().map(|r| r.val()));
                }
            }
        }
    }

    /// Calls `f` with every node the path selects in `doc`, in document order (as [`select`]
    /// without collecting plain-step paths into a vector).
    ///
    /// [`select`]: JsonPath::select
    pub fn for_each<'a>(&self, doc: &'a Value, f: &mut dyn FnMut(&'a Value)) {
        match &self.kind {
            Kind::Steps(steps) => visit(doc, steps, f),
            Kind::General(..) => {
                let mut found = Vec::new();
                self.select(doc, &mut found);
                found.into_iter().for_each(f);
            }
        }
    }

    /// The plain steps the path reads through: the whole path when it is plain, otherwise the
    /// steps before its first filter, slice, union or descendant (everything under the node they
    /// lead to may be read).
    pub(crate) fn read_steps(&self) -> &[Step] {
        match &self.kind {
            Kind::Steps(steps) | Kind::General(_, steps) => steps,
        }
    }

    /// The first node the path selects.
    pub fn first<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        match &self.kind {
            Kind::Steps(steps) if self.singular => {
                let mut node = doc;
                for step in steps {
                    node = child(node, step)?;
                }
                Some(node)
            }
            _ => {
                let mut out = Vec::new();
                self.select(doc, &mut out);
                out.into_iter().next()
            }
        }
    }
}

/// Condenses the parser's multi-line report to `at character N: expected ...`.
fn explain_parse_error(text: &str) -> String {
    let column = text
        .lines()
        .find_map(|l| l.split_once("--> ").map(|(_, pos)| pos.trim()))
        .and_then(|pos| pos.split(':').nth(1))
        .map(|col| format!("at character {col}: "))
        .unwrap_or_default();
    let expected = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("= "))
        .unwrap_or("syntax error");
    format!("{column}{expected}")
}

/// Objects up to this many members are searched by comparing keys, which is cheaper than hashing
/// the key (SipHash, with `preserve_order`) for the small objects of API bodies.
const LINEAR_LOOKUP: usize = 16;

/// A member of an object by key.
pub(crate) fn member<'a>(map: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    if map.len() <= LINEAR_LOOKUP {
        map.iter().find(|(k, _)| same_key(k, key)).map(|(_, v)| v)
    } else {
        map.get(key)
    }
}

/// A member of an object by key, mutably (see [`member`]).
pub(crate) fn member_mut<'a>(
    map: &'a mut serde_json::Map<String, Value>,
    key: &str,
) -> Option<&'a mut Value> {
    if map.len() <= LINEAR_LOOKUP {
        map.iter_mut()
            .find(|(k, _)| same_key(k, key))
            .map(|(_, v)| v)
    } else {
        map.get_mut(key)
    }
}

/// Key equality, cheapest tests first (length and last byte tell most keys apart).
fn same_key(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().last() == b.as_bytes().last() && a == b
}

fn child<'a>(node: &'a Value, step: &Step) -> Option<&'a Value> {
    match (step, node) {
        (Step::Key(key), Value::Object(map)) => member(map, key),
        (Step::Index(i), Value::Array(items)) => {
            let index = if *i < 0 { items.len() as i64 + i } else { *i };
            usize::try_from(index).ok().and_then(|i| items.get(i))
        }
        _ => None,
    }
}

fn visit<'a>(node: &'a Value, steps: &[Step], f: &mut dyn FnMut(&'a Value)) {
    let Some((step, rest)) = steps.split_first() else {
        f(node);
        return;
    };
    match step {
        Step::Wildcard => match node {
            Value::Array(items) => items.iter().for_each(|n| visit(n, rest, f)),
            Value::Object(map) => map.values().for_each(|n| visit(n, rest, f)),
            _ => {}
        },
        _ => {
            if let Some(next) = child(node, step) {
                visit(next, rest, f);
            }
        }
    }
}

/// Parses the plain-step subset; `None` when the path needs the general evaluator.
fn parse_steps(source: &str) -> Option<Vec<Step>> {
    let (steps, complete) = parse_prefix(source);
    complete.then_some(steps)
}

/// The plain steps a path starts with (all of them for a plain path).
fn plain_prefix(source: &str) -> Vec<Step> {
    parse_prefix(source).0
}

/// Parses plain steps from the start of a path: the steps, and whether they are the whole path.
fn parse_prefix(source: &str) -> (Vec<Step>, bool) {
    let mut steps = Vec::new();
    let complete = push_steps(source, &mut steps).is_some();
    (steps, complete)
}

/// Pushes the plain steps of `source` in order; `None` at the first step that is not plain.
fn push_steps(source: &str, steps: &mut Vec<Step>) -> Option<()> {
    let bytes = source.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes.get(i)? {
            b'.' => {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len() && is_name_byte(*bytes.get(end)?) {
                    end += 1;
                }
                let name = source.get(start..end)?;
                if name == "*" || (end == start && source.get(start..start + 1) == Some("*")) {
                    steps.push(Step::Wildcard);
                    i = start + 1;
                    continue;
                }
                if name.is_empty() || name.as_bytes().first()?.is_ascii_digit() {
                    return None;
                }
                steps.push(Step::Key(name.to_string()));
                i = end;
            }
            b'[' => {
                let close = source.get(i..)?.find(']')? + i;
                let inner = source.get(i + 1..close)?.trim();
                if inner == "*" {
                    steps.push(Step::Wildcard);
                } else if let Some(key) = quoted(inner) {
                    steps.push(Step::Key(key));
                } else if let Ok(index) = inner.parse::<i64>() {
                    steps.push(Step::Index(index));
                } else {
                    return None;
                }
                i = close + 1;
            }
            _ => return None,
        }
    }
    Some(())
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

fn quoted(inner: &str) -> Option<String> {
    let quote = inner.chars().next()?;
    if (quote != '\'' && quote != '"') || inner.len() < 2 || !inner.ends_with(quote) {
        return None;
    }
    let body = inner.get(1..inner.len() - 1)?;
    if body.contains(['\\', '\'', '"']) {
        return None;
    }
    Some(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all(path: &str, doc: &Value) -> Vec<Value> {
        let p = JsonPath::parse(path).unwrap();
        let mut out = Vec::new();
        p.select(doc, &mut out);
        out.into_iter().cloned().collect()
    }

    #[test]
    fn plain_steps_agree_with_the_general_evaluator() {
        let doc = json!({"a": {"b": [1, {"c": 2}, 3]}, "x-y": {"z": true}, "m": {"p": 1, "q": 2}});
        for path in [
            "$",
            "$.a",
            "$.a.b",
            "$.a.b[1].c",
            "$.a.b[-1]",
            "$.a.b[*]",
            "$['x-y'].z",
            "$.m.*",
            "$.a.b[*].c",
            "$.missing",
            "$.a.b[9]",
            "$[\"x-y\"]",
        ] {
            let fast = all(path, &doc);
            let general: Vec<Value> = jsonpath_rust::query::js_path_vals(path, &doc)
                .unwrap()
                .into_iter()
                .cloned()
                .collect();
            assert_eq!(fast, general, "{path}");
            assert!(
                parse_steps(path).is_some(),
                "{path} should take the fast path"
            );
        }
    }

    #[test]
    fn filters_use_the_general_evaluator() {
        let doc =
            json!({"content": [{"type": "text", "text": "a"}, {"type": "tool_use", "id": "t"}]});
        assert_eq!(
            all("$.content[?@.type == 'text'].text", &doc),
            vec![json!("a")]
        );
        assert_eq!(all("$..id", &doc), vec![json!("t")]);
    }

    #[test]
    fn errors() {
        assert!(JsonPath::parse("choices").is_err());
        assert!(JsonPath::parse("$.choices[").is_err());
        assert!(JsonPath::parse("$.a[?@.b ==]").is_err());
    }

    #[test]
    fn first_and_singular() {
        let doc = json!({"a": [{"b": 1}, {"b": 2}]});
        assert_eq!(
            JsonPath::parse("$.a[1].b").unwrap().first(&doc),
            Some(&json!(2))
        );
        assert_eq!(
            JsonPath::parse("$.a[*].b").unwrap().first(&doc),
            Some(&json!(1))
        );
        assert!(JsonPath::parse("$.a[0].b").unwrap().is_singular());
        assert!(JsonPath::parse("$").unwrap().is_root());
    }
}
