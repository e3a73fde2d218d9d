//! Folding chunks into the rebuilt response, as the provider's fold rules say.

use std::borrow::Cow;

use base64::Engine as _;
use serde_json::{Map, Value as Json};

use super::Frame;
use crate::compile::reads::ReadTree;
use crate::compile::rules::PayloadEncoding;
use crate::compile::rules::{FoldAction, FoldRule, IndexExpr, Stream, Target};
use crate::compile::{member, member_mut};
use crate::engine::eval::{eval, holds, Scope};
use crate::engine::sparse;

/// Highest array index a fold may create; larger indexes in a chunk are ignored.
const MAX_INDEX: usize = 4096;

/// Array slots a stream may create before its first chunk; each chunk adds half its size, so the
/// rebuilt response grows at most linearly with the stream (nested indexes would multiply).
const INITIAL_SLOTS: usize = MAX_INDEX + 1;

/// Folds the chunks of one stream into a rebuilt response. It owns only its state; the stream
/// rules and the request body are passed to each call, so it can live beside them.
#[derive(Debug, Clone)]
pub struct Folder {
    rebuilt: Json,
    chunks: u64,
    skipped: u64,
    /// The stream is complete (an end marker, an end event, or a chunk saying it is the last).
    done: bool,
    /// The end sentinel was seen: later frames are not folded.
    closed: bool,
    text_budget: usize,
    truncated: bool,
    slots: usize,
    exception: Option<(String, Option<String>)>,
}

/// What a finished fold produced.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldOutcome {
    /// The rebuilt response.
    pub response: Json,
    /// Chunks folded.
    pub chunks: u64,
    /// Frames skipped (not JSON, or not decodable).
    pub skipped: u64,
    /// Whether appended text hit the content cap.
    pub truncated: bool,
    /// Whether the stream is complete (see [`Folder::is_done`]).
    pub done: bool,
    /// A framing-level exception (AWS event stream): type and message.
    pub exception: Option<(String, Option<String>)>,
}

impl Folder {
    /// A folder; `text_cap` bounds the bytes of text it accumulates.
    pub fn new(text_cap: usize) -> Folder {
        Folder {
            rebuilt: Json::Object(Map::new()),
            chunks: 0,
            skipped: 0,
            done: false,
            closed: false,
            text_budget: text_cap,
            truncated: false,
            slots: INITIAL_SLOTS,
            exception: None,
        }
    }

    /// Chunks folded so far.
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    /// Folds one frame; returns whether it was a chunk (JSON applied to the response).
    pub fn frame(&mut self, stream: &Stream, request: &Json, frame: &Frame) -> bool {
        if self.closed {
            return false;
        }
        if let Some(done) = &stream.done {
            if frame.data == done.as_bytes() {
                self.done = true;
                self.closed = true;
                return false;
            }
        }
        self.slots = self.slots.saturating_add(frame.data.len() / 2);
        let Ok(mut chunk) = sparse::parse(&frame.data, &stream.reads.frame) else {
            self.skipped += 1;
            return false;
        };
        if frame.exception {
            let message = chunk
                .get("message")
                .or_else(|| chunk.get("Message"))
                .and_then(Json::as_str)
                .map(str::to_string);
            let kind = frame.event.clone().unwrap_or_else(|| "exception".into());
            self.exception = Some((kind, message));
            return false;
        }
        if let Some((path, encoding)) = &stream.payload {
            match unwrap_payload(&chunk, path, *encoding, &stream.reads.chunk) {
                Some(inner) => chunk = inner,
                None => {
                    self.skipped += 1;
                    return false;
                }
            }
        }
        self.chunk(stream, request, frame.event.as_deref(), &chunk);
        if frame
            .event
            .as_ref()
            .is_some_and(|e| stream.done_events.contains(e))
        {
            self.done = true;
            self.closed = true;
        }
        true
    }

    /// Whether a chunk says it is the last one (the stream's `done_when`).
    fn says_done(stream: &Stream, request: &Json, chunk: &Json) -> bool {
        let Some(cond) = &stream.done_when else {
            return false;
        };
        let scope = Scope {
            doc: chunk,
            request,
            response: &Json::Null,
            captures: &[],
            headers: &[],
            query: &[],
        };
        holds(cond, &scope)
    }

    /// Folds one already-parsed chunk.
    pub fn chunk(&mut self, stream: &Stream, request: &Json, event: Option<&str>, chunk: &Json) {
        self.chunks += 1;
        let mut state = State {
            request,
            text_budget: &mut self.text_budget,
            truncated: &mut self.truncated,
            slots: &mut self.slots,
        };
        for rule in &stream.fold {
            apply(rule, event, chunk, 0, &mut self.rebuilt, &mut state);
        }
        if Self::says_done(stream, request, chunk) {
            self.done = true;
        }
    }

    /// Whether the stream is complete: its end sentinel or end event was seen, or a chunk said
    /// it was the last.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Ends the stream: runs the finish rules and returns the rebuilt response.
    pub fn finish(mut self, stream: &Stream, request: &Json) -> FoldOutcome {
        for rule in &stream.finish {
            // Each finish rule reads the response as the rules before it left it.
            let snapshot = self.rebuilt.clone();
            let mut state = State {
                request,
                text_budget: &mut self.text_budget,
                truncated: &mut self.truncated,
                slots: &mut self.slots,
            };
            apply(rule, None, &snapshot, 0, &mut self.rebuilt, &mut state);
        }
        FoldOutcome {
            response: self.rebuilt,
            chunks: self.chunks,
            skipped: self.skipped,
            truncated: self.truncated,
            done: self.done,
            exception: self.exception,
        }
    }
}

fn unwrap_payload(
    chunk: &Json,
    path: &crate::compile::JsonPath,
    encoding: PayloadEncoding,
    reads: &ReadTree,
) -> Option<Json> {
    let text = path.first(chunk)?.as_str()?;
    match encoding {
        PayloadEncoding::Base64Json => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()?;
            sparse::parse(&bytes, reads).ok()
        }
        PayloadEncoding::JsonText => sparse::parse(text.as_bytes(), reads).ok(),
    }
}

struct State<'a> {
    request: &'a Json,
    text_budget: &'a mut usize,
    truncated: &'a mut bool,
    slots: &'a mut usize,
}

fn apply(
    rule: &FoldRule,
    event: Option<&str>,
    item: &Json,
    position: usize,
    target: &mut Json,
    state: &mut State<'_>,
) {
    if !rule.events.is_empty() && !event.is_some_and(|e| rule.events.iter().any(|r| r == e)) {
        return;
    }
    match &rule.each {
        Some(path) => {
            let mut i = 0;
            path.for_each(item, &mut |current| {
                apply_one(rule, event, current, i, target, state);
                i += 1;
            });
        }
        None => apply_one(rule, event, item, position, target, state),
    }
}

/// Applies a rule to one item at its position.
fn apply_one(
    rule: &FoldRule,
    event: Option<&str>,
    current: &Json,
    pos: usize,
    target: &mut Json,
    state: &mut State<'_>,
) {
    let scope = Scope {
        doc: current,
        request: state.request,
        response: &Json::Null,
        captures: &[],
        headers: &[],
        query: &[],
    };
    if rule.when.as_ref().is_some_and(|c| !holds(c, &scope)) {
        return;
    }
    let Some(base) = resolve(target, &rule.at, current, pos, state.slots) else {
        return;
    };
    for (action, to, value) in &rule.actions {
        let Some(value) = eval(value, &scope) else {
            continue;
        };
        let Some(slot) = resolve(base, to, current, pos, state.slots) else {
            continue;
        };
        act(*action, slot, value, rule, state);
    }
    for to in &rule.remove {
        remove(base, to, current, pos);
    }
    for nested in &rule.fold {
        apply(nested, event, current, pos, base, state);
    }
}

fn index_of(expr: &IndexExpr, item: &Json, position: usize, len: usize) -> usize {
    match expr {
        IndexExpr::Fixed(n) => *n,
        IndexExpr::Last => len.saturating_sub(1),
        IndexExpr::Position => position,
        IndexExpr::Path(path) => path
            .first(item)
            .and_then(Json::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(position),
    }
}

/// Walks to a target, creating objects and arrays on the way; `None` on a type clash or an index
/// beyond the limit.
fn resolve<'t>(
    root: &'t mut Json,
    target: &Target,
    item: &Json,
    position: usize,
    slots: &mut usize,
) -> Option<&'t mut Json> {
    let mut node = root;
    for step in &target.steps {
        if node.is_null() {
            *node = Json::Object(Map::new());
        }
        let map = node.as_object_mut()?;
        // Looked up before inserting: most chunks find the key, and need no copy of it.
        if member(map, &step.key).is_none() {
            map.insert(step.key.clone(), Json::Null);
        }
        node = member_mut(map, &step.key)?;
        if let Some(expr) = &step.index {
            if node.is_null() {
                *node = Json::Array(Vec::new());
            }
            let index = index_of(expr, item, position, node.as_array().map_or(0, Vec::len));
            if index > MAX_INDEX {
                return None;
            }
            if node.is_null() {
                *node = Json::Array(Vec::new());
            }
            let array = node.as_array_mut()?;
            if array.len() <= index {
                let added = index + 1 - array.len();
                if added > *slots {
                    return None;
                }
                *slots -= added;
                array.resize(index + 1, Json::Null);
            }
            node = array.get_mut(index)?;
        }
    }
    Some(node)
}

fn remove(root: &mut Json, target: &Target, item: &Json, position: usize) {
    let Some((last, parents)) = target.steps.split_last() else {
        return;
    };
    let mut node = root;
    for step in parents {
        let Some(next) = node.as_object_mut().and_then(|m| member_mut(m, &step.key)) else {
            return;
        };
        node = next;
        if let Some(expr) = &step.index {
            let index = index_of(expr, item, position, node.as_array().map_or(0, Vec::len));
            let Some(next) = node.as_array_mut().and_then(|a| a.get_mut(index)) else {
                return;
            };
            node = next;
        }
    }
    let Some(map) = node.as_object_mut() else {
        return;
    };
    match &last.index {
        None => {
            map.remove(&last.key);
        }
        Some(expr) => {
            let len = map
                .get(&last.key)
                .and_then(Json::as_array)
                .map_or(0, Vec::len);
            let index = index_of(expr, item, position, len);
            if let Some(array) = map.get_mut(&last.key).and_then(Json::as_array_mut) {
                if index < array.len() {
                    array.remove(index);
                }
            }
        }
    }
}

fn act(
    action: FoldAction,
    slot: &mut Json,
    value: Cow<'_, Json>,
    rule: &FoldRule,
    state: &mut State<'_>,
) {
    match action {
        FoldAction::SetOnce => {
            if slot.is_null() {
                *slot = value.into_owned();
            }
        }
        FoldAction::Set => match (&*slot, &*value) {
            // The same text again (a model name, a fingerprint on every chunk): nothing to copy.
            (Json::String(old), Json::String(new)) if old == new => {}
            _ => *slot = value.into_owned(),
        },
        FoldAction::Merge => match (slot, value) {
            (Json::Object(into), Cow::Borrowed(Json::Object(from))) => {
                for (k, v) in from {
                    if !v.is_null() {
                        into.insert(k.clone(), v.clone());
                    }
                }
            }
            (Json::Object(into), Cow::Owned(Json::Object(from))) => {
                for (k, v) in from {
                    if !v.is_null() {
                        into.insert(k, v);
                    }
                }
            }
            (slot, value) => *slot = value.into_owned(),
        },
        FoldAction::Append => {
            let Json::String(text) = &*value else { return };
            if slot.is_null() {
                *slot = Json::String(String::new());
            }
            if let Json::String(existing) = slot {
                append_capped(existing, text, state);
            }
        }
        FoldAction::Push => {
            if slot.is_null() {
                *slot = Json::Array(Vec::new());
            }
            let Json::Array(array) = slot else { return };
            if let (Some(key), Some(Json::Object(last)), Json::Object(new)) =
                (rule.coalesce.as_deref(), array.last_mut(), &*value)
            {
                let joinable = matches!(
                    (last.get(key), new.get(key)),
                    (Some(Json::String(_)), Some(Json::String(_)))
                ) && agrees(last, new, key, &rule.coalesce_by);
                if joinable {
                    if let (Some(Json::String(existing)), Some(Json::String(more))) =
                        (last.get_mut(key), new.get(key))
                    {
                        append_capped(existing, more, state);
                    }
                    // With `coalesce_by`, keys the joined element lacks are kept (a signature
                    // sent with the last piece of a text).
                    if !rule.coalesce_by.is_empty() {
                        for (k, v) in new {
                            if !last.contains_key(k) {
                                last.insert(k.clone(), v.clone());
                            }
                        }
                    }
                    return;
                }
            }
            if array.len() <= MAX_INDEX {
                array.push(value.into_owned());
            }
        }
    }
}

/// Whether a pushed element may be joined to the last one: without `by`, it restates no key
/// differently from the last element (the joined `key` aside); with `by`, both agree on each of
/// these keys, a key absent on one side counting as a different value.
fn agrees(last: &Map<String, Json>, new: &Map<String, Json>, key: &str, by: &[String]) -> bool {
    if by.is_empty() {
        new.iter().all(|(k, v)| k == key || last.get(k) == Some(v))
    } else {
        by.iter().all(|k| last.get(k) == new.get(k))
    }
}

fn append_capped(existing: &mut String, more: &str, state: &mut State<'_>) {
    if more.len() <= *state.text_budget {
        existing.push_str(more);
        *state.text_budget -= more.len();
        return;
    }
    let mut cut = *state.text_budget;
    while cut > 0 && !more.is_char_boundary(cut) {
        cut -= 1;
    }
    existing.push_str(more.get(..cut).unwrap_or_default());
    // Once text was cut, nothing more is kept, so the kept text is always a prefix.
    *state.text_budget = 0;
    *state.truncated = true;
}
