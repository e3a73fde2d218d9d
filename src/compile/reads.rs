//! What an operation's rules read from the JSON documents of an exchange, compiled once per
//! operation: a [`ReadTree`] per document (request body, response body, stream chunk) naming the
//! members and elements any rule can reach, so the engine parses only those and skips the rest.
//!
//! A tree is a superset of what rules read: a path's last node is read whole (a rule may render
//! it as JSON), a path's part after its first filter, slice, union or descendant is read whole,
//! and an array's elements are all kept (indices count from both ends). Rules evaluated on a
//! pruned document therefore see exactly what they see on the whole one.

use super::path::Step;
use super::rules::{Cond, FoldRule, Framing, MessageRule, Operation, PartRule, Source, Stream};
use super::rules::{ToolRule, Value};
use super::JsonPath;

/// The parts of one JSON document that rules read.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadTree {
    /// All of it.
    Whole,
    /// Only these members, and these elements when it is an array.
    Some(Box<Fields>),
}

/// The members and elements of a [`ReadTree::Some`] node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fields {
    /// Members by key (each already includes what `any` reads); a handful per node, found by
    /// comparing lengths first.
    keys: Vec<(Box<str>, ReadTree)>,
    /// What is read of every element of an array and every member of an object.
    any: Option<ReadTree>,
}

impl Default for ReadTree {
    /// A tree that reads nothing.
    fn default() -> Self {
        ReadTree::Some(Box::default())
    }
}

impl ReadTree {
    /// Whether the whole document is read.
    pub fn is_whole(&self) -> bool {
        matches!(self, ReadTree::Whole)
    }

    /// What is read of an object's member `key`; `None` when nothing is.
    pub fn member(&self, key: &str) -> Option<&ReadTree> {
        match self {
            ReadTree::Whole => Some(self),
            ReadTree::Some(fields) => fields
                .keys
                .iter()
                .find(|(k, _)| k.len() == key.len() && **k == *key)
                .map(|(_, tree)| tree)
                .or(fields.any.as_ref()),
        }
    }

    /// What is read of each element of an array; `None` when no element is read (elements are
    /// then kept as `null`, so positions do not move).
    pub fn elements(&self) -> Option<&ReadTree> {
        match self {
            ReadTree::Whole => Some(self),
            ReadTree::Some(fields) => fields.any.as_ref(),
        }
    }

    /// Adds a path: its steps are walked and the node they end at is read whole.
    fn insert(&mut self, steps: &[Step]) {
        let ReadTree::Some(fields) = self else {
            return;
        };
        match steps.split_first() {
            None => *self = ReadTree::Whole,
            Some((Step::Key(key), rest)) => {
                if let Some(member) = fields.member_mut(key) {
                    member.insert(rest);
                }
            }
            Some((Step::Index(_) | Step::Wildcard, rest)) => fields
                .any
                .get_or_insert_with(ReadTree::default)
                .insert(rest),
        }
    }

    /// Adds everything `other` reads.
    fn union(&mut self, other: &ReadTree) {
        let ReadTree::Some(other_fields) = other else {
            *self = ReadTree::Whole;
            return;
        };
        let ReadTree::Some(fields) = self else {
            return;
        };
        for (key, tree) in &other_fields.keys {
            if let Some(member) = fields.member_mut(key) {
                member.union(tree);
            }
        }
        if let Some(any) = &other_fields.any {
            fields.any.get_or_insert_with(ReadTree::default).union(any);
        }
    }

    /// Folds what every member reads (`any`) into each named member, all the way down, so a
    /// lookup by key finds everything in one place.
    fn settle(&mut self) {
        let ReadTree::Some(fields) = self else {
            return;
        };
        if let Some(any) = &mut fields.any {
            any.settle();
        }
        if let Some(any) = fields.any.clone() {
            for (_, tree) in &mut fields.keys {
                tree.union(&any);
            }
        }
        for (_, tree) in &mut fields.keys {
            tree.settle();
        }
    }
}

impl Fields {
    /// The tree of member `key`, added (reading nothing yet) when absent (always `Some`).
    fn member_mut(&mut self, key: &str) -> Option<&mut ReadTree> {
        if !self.keys.iter().any(|(k, _)| **k == *key) {
            self.keys.push((key.into(), ReadTree::default()));
        }
        self.keys
            .iter_mut()
            .find(|(k, _)| **k == *key)
            .map(|(_, tree)| tree)
    }
}

/// What one operation reads from each document of an exchange.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reads {
    /// The request body at the request phase: its rules with message content, and everything
    /// read from the request later.
    pub request: ReadTree,
    /// The same without the content rules (messages, system instructions, tool definitions).
    pub request_without_content: ReadTree,
    /// What is read of the request after its phase (response, error, metric and stream rules):
    /// what an exchange keeps of the request body while it waits for its response.
    pub request_kept: ReadTree,
    /// The response body, with the output message rules.
    pub response: ReadTree,
    /// The response body without the output message rules.
    pub response_without_content: ReadTree,
}

/// What a stream's rules read of each frame and chunk.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamReads {
    /// A frame's JSON as it arrives: an exception's message, the payload to unwrap, or the chunk
    /// itself.
    pub frame: ReadTree,
    /// A chunk unwrapped from a frame's payload.
    pub chunk: ReadTree,
}

impl StreamReads {
    /// Trees that read every frame and chunk whole.
    pub fn whole() -> StreamReads {
        StreamReads {
            frame: ReadTree::Whole,
            chunk: ReadTree::Whole,
        }
    }

    /// What `stream`'s rules read.
    pub fn of(stream: &Stream) -> StreamReads {
        let mut into = Gathered::default();
        stream_rules(stream, &mut into);
        let mut chunk = into.chunk;
        let mut frame = ReadTree::default();
        if stream.framing == Framing::AwsEventstream {
            for key in EXCEPTION_MESSAGE_KEYS {
                frame.insert(&[Step::Key(key.to_string())]);
            }
        }
        match &stream.payload {
            Some((payload, _)) => frame.insert(payload.read_steps()),
            None => frame.union(&chunk),
        }
        frame.settle();
        chunk.settle();
        StreamReads { frame, chunk }
    }
}

/// The documents rules read, by role.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Doc {
    Request,
    Response,
    Chunk,
}

/// Paths gathered per document.
#[derive(Default)]
struct Gathered {
    request: ReadTree,
    response: ReadTree,
    chunk: ReadTree,
}

impl Gathered {
    fn tree(&mut self, doc: Doc) -> &mut ReadTree {
        match doc {
            Doc::Request => &mut self.request,
            Doc::Response => &mut self.response,
            Doc::Chunk => &mut self.chunk,
        }
    }
}

/// Where rules are evaluated: the document and node a `$` path starts from (`None` when it is a
/// document that is not parsed, or a node already read whole), and which documents
/// `request`/`response` sources read.
#[derive(Clone)]
struct At {
    doc: Option<(Doc, Vec<Step>)>,
    request: Option<Doc>,
    response: Option<Doc>,
}

impl At {
    fn root(doc: Option<Doc>, request: Option<Doc>, response: Option<Doc>) -> At {
        At {
            doc: doc.map(|d| (d, Vec::new())),
            request,
            response,
        }
    }

    /// The same place moved to the items `each` selects. Items under a path that is not plain
    /// are read whole, so rules under them read nothing more.
    fn each(&self, each: Option<&JsonPath>, into: &mut Gathered) -> At {
        let Some(path) = each else {
            return self.clone();
        };
        let mut at = self.clone();
        if let Some((doc, prefix)) = &mut at.doc {
            prefix.extend_from_slice(path.read_steps());
            if !path.is_plain() {
                into.tree(*doc).insert(prefix);
                at.doc = None;
            }
        }
        at
    }
}

fn path(path: &JsonPath, doc: Option<Doc>, prefix: &[Step], into: &mut Gathered) {
    let Some(doc) = doc else {
        return;
    };
    let mut steps = prefix.to_vec();
    steps.extend_from_slice(path.read_steps());
    into.tree(doc).insert(&steps);
}

fn value(v: &Value, at: &At, into: &mut Gathered) {
    if let Some(when) = &v.when {
        cond(when, at, into);
    }
    match &v.source {
        Source::Doc(p) => {
            if let Some((doc, prefix)) = &at.doc {
                path(p, Some(*doc), prefix, into);
            }
        }
        Source::Request(p) => path(p, at.request, &[], into),
        Source::Response(p) => path(p, at.response, &[], into),
        Source::First(values) | Source::Sum(values) => {
            values.iter().for_each(|v| value(v, at, into))
        }
        Source::Const(_) | Source::Capture(_) | Source::Header(_) | Source::Query(_) => {}
    }
}

fn cond(c: &Cond, at: &At, into: &mut Gathered) {
    match c {
        Cond::Test(v, _) => value(v, at, into),
        Cond::All(list) | Cond::Any(list) => list.iter().for_each(|c| cond(c, at, into)),
        Cond::Not(c) => cond(c, at, into),
    }
}

fn values<'v>(list: impl IntoIterator<Item = &'v Value>, at: &At, into: &mut Gathered) {
    list.into_iter().for_each(|v| value(v, at, into));
}

fn messages(rules: &[MessageRule], at: &At, into: &mut Gathered) {
    for rule in rules {
        let item = at.each(rule.each.as_ref(), into);
        rule.when.iter().for_each(|c| cond(c, &item, into));
        values(
            [&rule.role, &rule.name, &rule.finish_reason]
                .into_iter()
                .flatten(),
            &item,
            into,
        );
        parts(&rule.parts, &item, into);
    }
}

fn parts(rules: &[PartRule], at: &At, into: &mut Gathered) {
    for rule in rules {
        let item = at.each(rule.each.as_ref(), into);
        rule.when.iter().for_each(|c| cond(c, &item, into));
        values(rule.fields.iter().map(|(_, v)| v), &item, into);
    }
}

fn tools(rules: &[ToolRule], at: &At, into: &mut Gathered) {
    for rule in rules {
        let item = at.each(Some(&rule.each), into);
        rule.when.iter().for_each(|c| cond(c, &item, into));
        let optional = [&rule.tool_type, &rule.description, &rule.parameters];
        values(optional.into_iter().flatten(), &item, into);
        value(&rule.name, &item, into);
    }
}

fn fold_rules(rules: &[FoldRule], at: &At, into: &mut Gathered) {
    for rule in rules {
        let item = at.each(rule.each.as_ref(), into);
        rule.when.iter().for_each(|c| cond(c, &item, into));
        values(rule.actions.iter().map(|(_, _, v)| v), &item, into);
        let targets = [&rule.at]
            .into_iter()
            .chain(rule.actions.iter().map(|(_, t, _)| t))
            .chain(&rule.remove);
        for target in targets {
            for index in target.steps.iter().filter_map(|s| s.index.as_ref()) {
                if let super::rules::IndexExpr::Path(p) = index {
                    if let Some((doc, prefix)) = &item.doc {
                        path(p, Some(*doc), prefix, into);
                    }
                }
            }
        }
        fold_rules(&rule.fold, &item, into);
    }
}

/// What a stream's rules read: the request (its `when`, and `request` sources), and chunks.
fn stream_rules(stream: &Stream, into: &mut Gathered) {
    let at_request = At::root(Some(Doc::Request), Some(Doc::Request), None);
    stream.when.iter().for_each(|c| cond(c, &at_request, into));
    let at_chunk = At::root(Some(Doc::Chunk), Some(Doc::Request), None);
    fold_rules(&stream.fold, &at_chunk, into);
    stream
        .done_when
        .iter()
        .for_each(|c| cond(c, &at_chunk, into));
    // Finish rules read the rebuilt response, which is not parsed.
    let at_rebuilt = At::root(None, Some(Doc::Request), None);
    fold_rules(&stream.finish, &at_rebuilt, into);
}

/// The members of an AWS event-stream frame read before its payload is unwrapped: an exception
/// frame's message.
const EXCEPTION_MESSAGE_KEYS: [&str; 2] = ["message", "Message"];

impl Reads {
    /// Trees that read every document whole.
    pub fn whole() -> Reads {
        Reads {
            request: ReadTree::Whole,
            request_without_content: ReadTree::Whole,
            request_kept: ReadTree::Whole,
            response: ReadTree::Whole,
            response_without_content: ReadTree::Whole,
        }
    }

    /// What `op`'s rules read.
    pub fn of(op: &Operation) -> Reads {
        let mut kept = Self::kept(op);
        let mut output = Gathered::default();
        let at_response = At::root(Some(Doc::Response), Some(Doc::Request), Some(Doc::Response));
        messages(&op.response.output_messages, &at_response, &mut output);
        // Output messages are rendered after the request phase: what they read of the request is
        // kept with it.
        kept.request.union(&output.request);

        let at_request = At::root(Some(Doc::Request), Some(Doc::Request), None);
        let mut without_content = Gathered::default();
        let attributes = op.request.attributes.iter().map(|(_, v)| v);
        values(attributes, &at_request, &mut without_content);
        let mut request_without_content = without_content.request;
        request_without_content.union(&kept.request);
        let mut content = Gathered::default();
        messages(&op.request.input_messages, &at_request, &mut content);
        parts(&op.request.system_instructions, &at_request, &mut content);
        tools(&op.request.tool_definitions, &at_request, &mut content);
        let mut request = content.request;
        request.union(&request_without_content);

        let mut response_without_content = kept.response;
        let mut response = output.response;
        response.union(&response_without_content);
        let mut request_kept = kept.request;
        for tree in [
            &mut request,
            &mut request_without_content,
            &mut request_kept,
            &mut response,
            &mut response_without_content,
        ] {
            tree.settle();
        }
        Reads {
            request,
            request_without_content,
            request_kept,
            response,
            response_without_content,
        }
    }

    /// What is read after the request phase: of the request (by response, error, metric and
    /// stream rules, and the stream's `when` on the request), of the response (without output
    /// messages) and of each stream chunk.
    fn kept(op: &Operation) -> Gathered {
        let mut into = Gathered::default();
        let at_response = At::root(Some(Doc::Response), Some(Doc::Request), Some(Doc::Response));
        values(
            op.response.attributes.iter().map(|(_, v)| v),
            &at_response,
            &mut into,
        );
        values(op.metrics.iter().map(|m| &m.value), &at_response, &mut into);
        let error = &op.error;
        error
            .when
            .iter()
            .for_each(|c| cond(c, &at_response, &mut into));
        values(
            [&error.error_type, &error.message].into_iter().flatten(),
            &at_response,
            &mut into,
        );
        values(
            error.attributes.iter().map(|(_, v)| v),
            &at_response,
            &mut into,
        );
        if let Some(stream) = &op.stream {
            stream_rules(stream, &mut into);
        }
        into
    }
}

/// A tree reading these paths (for tests of what reads them).
#[cfg(test)]
pub(crate) fn tree_of_paths(paths: &[&str]) -> ReadTree {
    let mut tree = ReadTree::default();
    for path in paths.iter().filter_map(|p| JsonPath::parse(p).ok()) {
        tree.insert(path.read_steps());
    }
    tree.settle();
    tree
}
