//! YAML reading for provider specs, `specter.yaml` and dialect files: the only module that knows
//! the YAML parser.
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

/// Deepest nesting of collections accepted. Nothing here or in the YAML crate recurses while
/// reading (events are pulled one at a time), but everything that walks the finished value does
/// (serde, the schema validator, dropping it), so deeper documents are refused as they are read.
/// Real specs nest fewer than 20 levels.
pub const MAX_DEPTH: usize = 200;

/// Most nodes a document may expand to, per byte of text (aliases repeat whole subtrees), with a
/// floor for small files.
const NODES_PER_BYTE: usize = 64;
const MIN_NODES: usize = 10_000;

/// Parses one YAML document (the first of the stream).
///
/// Events are pulled from the parser in a loop instead of through its recursive loader, and the
/// depth of every collection (and of what every alias repeats) is checked before the node is
/// built, so no input can exhaust the stack.
pub fn parse(text: &str) -> Result<Document, YamlError> {
    let mut builder = Builder {
        max_nodes: MIN_NODES.max(NODES_PER_BYTE.saturating_mul(text.len())),
        ..Builder::default()
    };
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, mark) = parser.next_token().map_err(|e| YamlError {
            pos: pos_of(*e.marker()),
            // The scanner looks ahead and has a flow nesting limit of its own (255).
            message: if e.info() == "recursion limit exceeded" {
                too_deep_message()
            } else {
                e.info().to_string()
            },
        })?;
        if matches!(event, Event::StreamEnd | Event::DocumentEnd) {
            break;
        }
        builder.on_event(event, mark);
        if let Some(error) = builder.error.take() {
            return Err(error);
        }
    }
    Ok(Document {
        value: builder.root.unwrap_or(Value::Null),
        positions: builder.positions,
    })
}

fn too_deep_message() -> String {
    format!(
        "collections nest more than {MAX_DEPTH} levels deep here (aliases count the depth of what \
         they repeat); real specs need fewer than 20"
    )
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
        height: usize,
    },
    Map {
        entries: Map<String, Value>,
        pointer: String,
        anchor: usize,
        key: Option<String>,
        height: usize,
    },
}

impl Frame {
    /// The height of the collection so far: 1 plus that of its highest child.
    fn height_mut(&mut self) -> &mut usize {
        match self {
            Frame::Seq { height, .. } | Frame::Map { height, .. } => height,
        }
    }
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    positions: HashMap<String, Pos>,
    /// Anchored values with their node count and collection height.
    anchors: HashMap<usize, (Value, usize, usize)>,
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

    /// Where a sequence or mapping that starts at `mark` goes, with its position noted; `None`
    /// (and the problem recorded) when it is a mapping key or nests too deep.
    fn open_collection(&mut self, mark: Marker) -> Option<String> {
        let (pointer, is_key) = self.next_pointer();
        if is_key {
            self.fail(mark, "mapping keys must be plain scalars".to_string());
            return None;
        }
        if self.too_deep(1, mark) {
            return None;
        }
        self.positions
            .entry(pointer.clone())
            .or_insert(pos_of(mark));
        Some(pointer)
    }

    /// Refuses a node of collection height `height` at the current depth when together they
    /// nest deeper than [`MAX_DEPTH`].
    fn too_deep(&mut self, height: usize, mark: Marker) -> bool {
        if self.stack.len().saturating_add(height) <= MAX_DEPTH {
            return false;
        }
        self.fail(mark, too_deep_message());
        true
    }

    /// Adds a finished node of collection height `height` to its parent.
    fn add(&mut self, value: Value, height: usize, mark: Marker) {
        if let Some(parent) = self.stack.last_mut() {
            let own = parent.height_mut();
            *own = (*own).max(height.saturating_add(1));
        }
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
                    self.anchors.insert(anchor, (value.clone(), 1, 0));
                }
                self.add(value, 0, mark);
            }
            Event::SequenceStart(anchor, _) => {
                let Some(pointer) = self.open_collection(mark) else {
                    return;
                };
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    pointer,
                    anchor,
                    height: 1,
                });
            }
            Event::MappingStart(anchor, _) => {
                let Some(pointer) = self.open_collection(mark) else {
                    return;
                };
                self.stack.push(Frame::Map {
                    entries: Map::new(),
                    pointer,
                    anchor,
                    key: None,
                    height: 1,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor, height) = match self.stack.pop() {
                    Some(Frame::Seq {
                        items,
                        anchor,
                        height,
                        ..
                    }) => (Value::Array(items), anchor, height),
                    Some(Frame::Map {
                        entries,
                        anchor,
                        height,
                        ..
                    }) => (Value::Object(entries), anchor, height),
                    None => return,
                };
                self.nodes += 1;
                if anchor > 0 {
                    let nodes = size(&value);
                    self.anchors.insert(anchor, (value.clone(), nodes, height));
                }
                self.add(value, height, mark);
            }
            Event::Alias(anchor) => match self.anchors.get(&anchor).cloned() {
                Some((value, nodes, height)) => {
                    if self.too_deep(height, mark) {
                        return;
                    }
                    self.nodes += nodes;
                    if self.nodes > self.max_nodes {
                        let message =
                            format!("aliases expand the document past {} nodes", self.max_nodes);
                        self.fail(mark, message);
                        return;
                    }
                    self.add(value, height, mark);
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

    fn depth_error(text: &str) -> YamlError {
        let err = parse(text).unwrap_err();
        assert!(
            err.message
                .starts_with("collections nest more than 200 levels deep here"),
            "{err:?}"
        );
        err
    }

    #[test]
    fn two_hundred_levels_are_read_and_one_more_is_refused_where_it_opens() {
        let ok = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}{}", "[".repeat(201), "]".repeat(201));
        assert_eq!(depth_error(&deep).pos, Pos { line: 1, col: 201 });
    }

    #[test]
    fn thousands_of_levels_of_any_shape_are_refused_without_exhausting_the_stack() {
        let flow_seq = "[".repeat(20_000);
        assert_eq!(depth_error(&flow_seq).pos, Pos { line: 1, col: 256 });
        let flow_map = "{a: ".repeat(20_000);
        assert_eq!(depth_error(&flow_map).pos, Pos { line: 1, col: 1021 });
        let block_seq = format!("{}a\n", "- ".repeat(20_000));
        assert_eq!(depth_error(&block_seq).pos, Pos { line: 1, col: 401 });
        let mut indented = String::new();
        for level in 0..300 {
            indented.push_str(&format!("{}a:\n", " ".repeat(level)));
        }
        assert_eq!(depth_error(&indented).pos.line, 201);
        // Complex keys: the first one is refused, whatever follows.
        let keys = format!("{}a\n", "? ".repeat(20_000));
        let err = parse(&keys).unwrap_err();
        assert_eq!(err.message, "mapping keys must be plain scalars");
        assert_eq!(err.pos, Pos { line: 1, col: 3 });
        let mixed = format!("{}a\n", "- ? ".repeat(20_000));
        assert_eq!(
            parse(&mixed).unwrap_err().message,
            "mapping keys must be plain scalars"
        );
    }

    #[test]
    fn aliases_count_the_depth_of_what_they_repeat() {
        // Each line nests 100 levels around the previous anchor: 400 lines would build a value
        // 40,000 levels deep from 84 KB of text, with few nodes.
        let mut text = format!("k0: &a0 {}0{}\n", "[".repeat(100), "]".repeat(100));
        for k in 1..400 {
            text.push_str(&format!(
                "k{k}: &a{k} {}*a{}{}\n",
                "[".repeat(100),
                k - 1,
                "]".repeat(100)
            ));
        }
        let err = depth_error(&text);
        assert_eq!(err.pos, Pos { line: 2, col: 109 });
        // Within the limit, an alias is fine.
        let ok = format!("a: &x {}1{}\nb: *x\n", "[".repeat(150), "]".repeat(150));
        assert!(parse(&ok).is_ok());
    }
}
