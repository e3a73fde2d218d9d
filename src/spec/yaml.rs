//! YAML reading: the only module that knows the YAML parser.
//!
//! A document is read into a `serde_json::Value` (so the schema validator and serde see plain
//! JSON) together with the line and column of every node, keyed by JSON pointer, so that every
//! later diagnostic can point at the exact place in the file.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Yaml;

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

/// A parsed YAML document with the position of each node.
#[derive(Debug, Clone, Default)]
pub struct Document {
    /// The document as JSON.
    pub value: Value,
    /// JSON pointer → position (of the key, for mapping entries).
    pub positions: HashMap<String, Pos>,
}

impl Document {
    /// The position of the node at `pointer`, or of its closest ancestor that has one.
    pub fn position(&self, pointer: &str) -> Pos {
        let mut current = pointer;
        loop {
            if let Some(pos) = self.positions.get(current) {
                return *pos;
            }
            match current.rfind('/') {
                Some(cut) => current = &current[..cut],
                None => return Pos { line: 1, col: 1 },
            }
        }
    }

    /// The position of the node at `pointer` only if that exact node exists.
    pub fn exact_position(&self, pointer: &str) -> Option<Pos> {
        self.positions.get(pointer).copied()
    }
}

/// A YAML syntax or structure error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// Where the problem was found.
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
}

/// Deepest nesting accepted: the parser recurses once per level, so deeper documents could
/// exhaust the stack. Real specs nest fewer than 20 levels.
const MAX_DEPTH: usize = 200;

/// Most nodes a document may expand to, per byte of text (aliases repeat whole subtrees), with a
/// floor for small files.
const NODES_PER_BYTE: usize = 64;
const MIN_NODES: usize = 10_000;

/// An upper bound of the nesting of a line: its indentation, block sequence dashes and open
/// flow brackets all count one level each.
fn nesting_bound(text: &str) -> Option<(usize, usize)> {
    let mut flow = 0usize;
    for (n, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches([' ', '-']).len();
        for b in line.bytes() {
            match b {
                b'[' | b'{' => flow += 1,
                b']' | b'}' => flow = flow.saturating_sub(1),
                _ => {}
            }
        }
        if indent + flow > MAX_DEPTH {
            return Some((n + 1, indent + flow));
        }
    }
    None
}

/// Parses one YAML document.
pub fn parse(text: &str) -> Result<Document, YamlError> {
    if let Some((line, depth)) = nesting_bound(text) {
        return Err(YamlError {
            pos: Pos { line, col: 1 },
            message: format!(
                "the document nests too deeply (about {depth} levels; at most {MAX_DEPTH})"
            ),
        });
    }
    let mut builder = Builder {
        max_nodes: MIN_NODES.max(NODES_PER_BYTE.saturating_mul(text.len())),
        ..Builder::default()
    };
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| YamlError {
        pos: pos_of(*e.marker()),
        message: e.info().to_string(),
    })?;
    if let Some(error) = builder.error {
        return Err(error);
    }
    Ok(Document {
        value: builder.root.unwrap_or(Value::Null),
        positions: builder.positions,
    })
}

fn pos_of(marker: Marker) -> Pos {
    Pos {
        line: marker.line().max(1),
        col: marker.col() + 1,
    }
}

/// Escapes one JSON pointer segment (RFC 6901).
pub fn escape_segment(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

enum Frame {
    Seq {
        items: Vec<Value>,
        pointer: String,
        anchor: usize,
    },
    Map {
        entries: Map<String, Value>,
        pointer: String,
        anchor: usize,
        key: Option<String>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    positions: HashMap<String, Pos>,
    anchors: HashMap<usize, (Value, usize)>,
    error: Option<YamlError>,
    nodes: usize,
    max_nodes: usize,
}

/// The number of nodes in a value.
fn size(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(size).sum(),
        Value::Object(map) => map.values().map(size).sum(),
        _ => 0,
    }
}

impl Builder {
    /// The pointer of the node about to be added, and whether it is a mapping key.
    fn next_pointer(&self) -> (String, bool) {
        match self.stack.last() {
            None => (String::new(), false),
            Some(Frame::Seq { items, pointer, .. }) => {
                (format!("{pointer}/{}", items.len()), false)
            }
            Some(Frame::Map { pointer, key, .. }) => match key {
                None => (pointer.clone(), true),
                Some(k) => (format!("{pointer}/{}", escape_segment(k)), false),
            },
        }
    }

    fn fail(&mut self, mark: Marker, message: String) {
        if self.error.is_none() {
            self.error = Some(YamlError {
                pos: pos_of(mark),
                message,
            });
        }
    }

    /// Adds a finished node to its parent.
    fn add(&mut self, value: Value, mark: Marker) {
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map {
                entries,
                key,
                pointer,
                ..
            }) => match key.take() {
                None => {
                    let text = match value {
                        Value::String(s) => s,
                        Value::Null => "null".to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Number(n) => n.to_string(),
                        _ => {
                            let message = "mapping keys must be plain scalars".to_string();
                            self.fail(mark, message);
                            return;
                        }
                    };
                    if entries.contains_key(&text) {
                        let message = format!("duplicate key `{text}`");
                        self.fail(mark, message);
                        return;
                    }
                    let child = format!("{pointer}/{}", escape_segment(&text));
                    let key_pos = pos_of(mark);
                    self.positions.insert(child, key_pos);
                    // A block mapping's start marker can come after its first key.
                    if let Some(own) = self.positions.get_mut(pointer.as_str()) {
                        if (key_pos.line, key_pos.col) < (own.line, own.col) {
                            *own = key_pos;
                        }
                    }
                    *key = Some(text);
                }
                Some(k) => {
                    entries.insert(k, value);
                }
            },
        }
    }
}

fn scalar(text: String, style: TScalarStyle, tag: Option<&yaml_rust2::parser::Tag>) -> Value {
    if style != TScalarStyle::Plain {
        return Value::String(text);
    }
    if let Some(tag) = tag {
        if tag.suffix == "str" {
            return Value::String(text);
        }
    }
    match Yaml::from_str(&text) {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::Number(i.into()),
        Yaml::Real(r) => match r.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) => Value::Number(n),
            None => Value::String(text),
        },
        _ => Value::String(text),
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let (pointer, is_key) = self.next_pointer();
                if !is_key {
                    self.positions.entry(pointer).or_insert(pos_of(mark));
                }
                let value = scalar(text, style, tag.as_ref());
                self.nodes += 1;
                if anchor > 0 {
                    self.anchors.insert(anchor, (value.clone(), 1));
                }
                self.add(value, mark);
            }
            Event::SequenceStart(anchor, _) => {
                let (pointer, is_key) = self.next_pointer();
                if is_key {
                    self.fail(mark, "mapping keys must be plain scalars".to_string());
                    return;
                }
                self.positions
                    .entry(pointer.clone())
                    .or_insert(pos_of(mark));
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    pointer,
                    anchor,
                });
            }
            Event::MappingStart(anchor, _) => {
                let (pointer, is_key) = self.next_pointer();
                if is_key {
                    self.fail(mark, "mapping keys must be plain scalars".to_string());
                    return;
                }
                self.positions
                    .entry(pointer.clone())
                    .or_insert(pos_of(mark));
                self.stack.push(Frame::Map {
                    entries: Map::new(),
                    pointer,
                    anchor,
                    key: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { items, anchor, .. }) => (Value::Array(items), anchor),
                    Some(Frame::Map {
                        entries, anchor, ..
                    }) => (Value::Object(entries), anchor),
                    None => return,
                };
                self.nodes += 1;
                if anchor > 0 {
                    let nodes = size(&value);
                    self.anchors.insert(anchor, (value.clone(), nodes));
                }
                self.add(value, mark);
            }
            Event::Alias(anchor) => match self.anchors.get(&anchor).cloned() {
                Some((value, nodes)) => {
                    self.nodes += nodes;
                    if self.nodes > self.max_nodes {
                        let message =
                            format!("aliases expand the document past {} nodes", self.max_nodes);
                        self.fail(mark, message);
                        return;
                    }
                    self.add(value, mark);
                }
                None => self.fail(mark, "alias to an unknown anchor".to_string()),
            },
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_positions() {
        let doc = parse(
            "id: openai\nops:\n  - id: chat\n    n: 3\n    f: 0.5\n    t: true\n    q: \"1\"\n",
        )
        .unwrap();
        assert_eq!(
            doc.value,
            serde_json::json!({"id": "openai", "ops": [{"id": "chat", "n": 3, "f": 0.5, "t": true, "q": "1"}]})
        );
        assert_eq!(doc.position("/id"), Pos { line: 1, col: 1 });
        assert_eq!(doc.position("/ops/0"), Pos { line: 3, col: 5 });
        assert_eq!(doc.position("/ops/0/n"), Pos { line: 4, col: 5 });
        assert_eq!(doc.position("/ops/0/n/missing"), Pos { line: 4, col: 5 });
    }

    #[test]
    fn duplicate_keys_and_syntax_errors_are_reported() {
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.message, "duplicate key `a`");
        assert_eq!(err.pos, Pos { line: 2, col: 1 });
        let err = parse("a: [1, 2\n").unwrap_err();
        assert_eq!(err.pos.line, 2);
    }

    #[test]
    fn anchors_and_aliases() {
        let doc = parse("a: &x {k: 1}\nb: *x\n").unwrap();
        assert_eq!(doc.value["b"], serde_json::json!({"k": 1}));
    }
}
