//! The call index: one compact row per call, newest last, at most [`Limits::max_calls`] of
//! them; strings (providers, models, sessions, users) interned once; the span itself stays in its
//! traces file and is read back by offset when one call is opened.

use std::collections::{HashMap, VecDeque};

use super::otlp::SpanSummary;

/// The bounds of the index and of the answers built from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Calls kept; the oldest go first.
    pub max_calls: usize,
    /// Calls in one page of the list.
    pub max_page: usize,
    /// Bytes of traces files read at one refresh (the rest waits for the next).
    pub max_read_bytes: u64,
    /// Longest line read; a longer one is skipped.
    pub max_line_bytes: usize,
}

impl Limits {
    /// The default of `max_calls`: 100,000 calls, about 15 MB of index.
    pub const DEFAULT_MAX_CALLS: usize = 100_000;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_calls: Limits::DEFAULT_MAX_CALLS,
            max_page: 500,
            max_read_bytes: 64 << 20,
            max_line_bytes: 16 << 20,
        }
    }
}

/// No value: a token count or a duration the span did not carry.
const NONE_U32: u32 = u32::MAX;

/// The interned strings of a row, in this order.
pub(super) const PROVIDER: usize = 0;
const OPERATION: usize = 1;
pub(super) const REQUEST_MODEL: usize = 2;
pub(super) const RESPONSE_MODEL: usize = 3;
const SESSION: usize = 4;
const USER: usize = 5;
const CONVERSATION: usize = 6;
const ERROR_TYPE: usize = 7;
const STRINGS: usize = 8;

/// One call.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// Where the span's line is: file id, byte offset, length.
    pub file: u32,
    /// Byte offset of the line.
    pub offset: u64,
    /// Length of the line.
    pub len: u32,
    pub(super) start_ns: u64,
    pub(super) cost: f64,
    pub(super) duration_ms: f32,
    pub(super) ttfc_ms: f32,
    pub(super) tokens: [u32; 4],
    pub(super) strings: [u32; STRINGS],
    pub(super) http_status: u16,
    pub(super) error: bool,
    pub(super) streamed: bool,
    pub(super) trace_id: [u8; 16],
    pub(super) span_id: [u8; 8],
}

fn count(value: Option<u64>) -> u32 {
    value.map_or(NONE_U32, |v| u32::try_from(v).unwrap_or(NONE_U32 - 1))
}

pub(super) fn opt_count(value: u32) -> Option<u32> {
    (value != NONE_U32).then_some(value)
}

/// Interned strings; id 0 is the empty string (no value).
#[derive(Debug, Default)]
pub(super) struct Strings {
    ids: HashMap<Box<str>, u32>,
    texts: Vec<Box<str>>,
}

impl Strings {
    fn new() -> Strings {
        let mut strings = Strings::default();
        strings.intern("");
        strings
    }

    fn intern(&mut self, text: &str) -> u32 {
        if let Some(id) = self.ids.get(text) {
            return *id;
        }
        let id = u32::try_from(self.texts.len()).unwrap_or(0);
        self.texts.push(text.into());
        self.ids.insert(text.into(), id);
        id
    }

    pub(super) fn get(&self, id: u32) -> &str {
        self.texts.get(id as usize).map_or("", |s| s)
    }

    fn find(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }
}

/// Which calls a query takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `gen_ai.provider.name`.
    pub provider: Option<String>,
    /// The requested or the responded model.
    pub model: Option<String>,
    /// `ok` or `error`.
    pub status: Option<String>,
    /// `session.id`.
    pub session: Option<String>,
    /// `user.id`.
    pub user: Option<String>,
    /// `gen_ai.conversation.id`.
    pub conversation: Option<String>,
    /// Trace id (hex).
    pub trace: Option<String>,
    /// Text found (case-insensitively) in the provider, operation, models, session, user,
    /// conversation or error type.
    pub text: Option<String>,
}

/// The order of the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Start time.
    #[default]
    Time,
    /// `gen_ai.usage.cost`.
    Cost,
    /// Duration.
    Duration,
}

/// A filter resolved against the interned strings: ids to compare.
struct Compiled {
    equal: Vec<(usize, Option<u32>)>,
    model: Option<Option<u32>>,
    error: Option<bool>,
    trace: Option<Option<[u8; 16]>>,
    text: Option<Vec<bool>>,
}

impl Compiled {
    fn matches(&self, row: &Row) -> bool {
        for (field, id) in &self.equal {
            if row.strings.get(*field) != id.as_ref() {
                return false;
            }
        }
        if let Some(model) = self.model {
            let Some(model) = model else { return false };
            if row.strings.get(REQUEST_MODEL) != Some(&model)
                && row.strings.get(RESPONSE_MODEL) != Some(&model)
            {
                return false;
            }
        }
        if let Some(error) = self.error {
            if row.error != error {
                return false;
            }
        }
        if let Some(trace) = self.trace {
            if Some(row.trace_id) != trace {
                return false;
            }
        }
        if let Some(hits) = &self.text {
            let hit = |id: &u32| hits.get(*id as usize).copied().unwrap_or(false);
            if !row.strings.iter().any(hit) {
                return false;
            }
        }
        true
    }
}

/// A page of the call list.
#[derive(Debug, serde::Serialize)]
pub struct Page {
    /// Calls matching the filter.
    pub total: usize,
    /// The calls of this page.
    pub calls: Vec<serde_json::Value>,
    /// Calls ever indexed: changes when new calls arrive.
    pub indexed: u64,
}

/// The rows and the strings they name.
#[derive(Debug)]
pub struct Index {
    pub(super) rows: VecDeque<Row>,
    pub(super) strings: Strings,
    limits: Limits,
    indexed: u64,
}

impl Index {
    /// An empty index.
    pub fn new(limits: Limits) -> Index {
        Index {
            rows: VecDeque::new(),
            strings: Strings::new(),
            limits,
            indexed: 0,
        }
    }

    /// Its limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Calls held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no call is held.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Calls ever indexed.
    pub fn indexed(&self) -> u64 {
        self.indexed
    }

    /// The oldest file id a row still points to.
    pub fn oldest_file(&self) -> Option<u32> {
        self.rows.front().map(|r| r.file)
    }

    /// Adds one call whose span line is at (`file`, `offset`, `len`), dropping the oldest when
    /// full.
    pub fn push(&mut self, span: &SpanSummary, file: u32, offset: u64, len: u32) {
        let s = &mut self.strings;
        let strings = [
            s.intern(&span.provider),
            s.intern(&span.operation),
            s.intern(&span.request_model),
            s.intern(&span.response_model),
            s.intern(&span.session),
            s.intern(&span.user),
            s.intern(&span.conversation),
            s.intern(&span.error_type),
        ];
        #[allow(clippy::cast_possible_truncation)]
        let row = Row {
            file,
            offset,
            len,
            start_ns: span.start_ns,
            cost: span.cost.unwrap_or(f64::NAN),
            duration_ms: span.duration_ms as f32,
            ttfc_ms: span.ttfc_ms.map_or(f32::NAN, |t| t as f32),
            tokens: [
                count(span.input_tokens),
                count(span.output_tokens),
                count(span.cached_tokens),
                count(span.reasoning_tokens),
            ],
            strings,
            http_status: span.http_status.unwrap_or(0),
            error: span.error,
            streamed: span.streamed,
            trace_id: span.trace_id,
            span_id: span.span_id,
        };
        self.rows.push_back(row);
        self.indexed += 1;
        while self.rows.len() > self.limits.max_calls.max(1) {
            self.rows.pop_front();
        }
        if self.strings.texts.len() > 2 * self.limits.max_calls + 4096 {
            self.compact_strings();
        }
    }

    /// Rebuilds the strings from the rows held, forgetting those of dropped calls.
    fn compact_strings(&mut self) {
        let mut fresh = Strings::new();
        for row in &mut self.rows {
            for id in &mut row.strings {
                *id = fresh.intern(self.strings.get(*id));
            }
        }
        self.strings = fresh;
    }

    fn compile(&self, filter: &Filter) -> Compiled {
        let id = |value: &Option<String>| value.as_deref().map(|v| self.strings.find(v));
        let mut equal = Vec::new();
        for (field, value) in [
            (PROVIDER, &filter.provider),
            (SESSION, &filter.session),
            (USER, &filter.user),
            (CONVERSATION, &filter.conversation),
        ] {
            if let Some(found) = id(value) {
                // An unknown value matches nothing: `Some(u32::MAX)` is no row's id.
                equal.push((field, Some(found.unwrap_or(u32::MAX))));
            }
        }
        let text = filter
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                let needle = t.to_lowercase();
                self.strings
                    .texts
                    .iter()
                    .map(|s| !s.is_empty() && s.to_lowercase().contains(&needle))
                    .collect()
            });
        Compiled {
            equal,
            model: id(&filter.model),
            error: match filter.status.as_deref() {
                Some("ok") => Some(false),
                Some("error") => Some(true),
                _ => None,
            },
            trace: filter
                .trace
                .as_deref()
                .map(|t| super::otlp::hex_id::<16>(&t.to_ascii_lowercase())),
            text,
        }
    }

    /// The rows matching `filter`, newest first.
    pub(super) fn matching<'a>(&'a self, filter: &Filter) -> impl Iterator<Item = &'a Row> + 'a {
        let compiled = self.compile(filter);
        self.rows.iter().rev().filter(move |r| compiled.matches(r))
    }

    /// One page of the calls matching `filter` in `sort` order (descending unless `ascending`).
    pub fn list(
        &self,
        filter: &Filter,
        sort: Sort,
        ascending: bool,
        offset: usize,
        limit: usize,
    ) -> Page {
        let limit = limit.clamp(1, self.limits.max_page);
        let total;
        let rows: Vec<&Row> = match (sort, ascending) {
            (Sort::Time, false) => {
                total = self.matching(filter).count();
                self.matching(filter).skip(offset).take(limit).collect()
            }
            _ => {
                let mut all: Vec<&Row> = self.matching(filter).collect();
                total = all.len();
                let key = |r: &Row| match sort {
                    Sort::Time => r.start_ns as f64,
                    Sort::Cost => {
                        if r.cost.is_nan() {
                            f64::NEG_INFINITY
                        } else {
                            r.cost
                        }
                    }
                    Sort::Duration => f64::from(r.duration_ms),
                };
                let order = |a: &&Row, b: &&Row| {
                    let o = key(a).total_cmp(&key(b));
                    if ascending {
                        o
                    } else {
                        o.reverse()
                    }
                };
                let end = offset.saturating_add(limit).min(all.len());
                if end > 0 && end < all.len() {
                    all.select_nth_unstable_by(end, order);
                    all.truncate(end);
                }
                all.sort_by(order);
                all.into_iter().skip(offset).take(limit).collect()
            }
        };
        Page {
            total,
            calls: rows.into_iter().map(|r| self.summary(r)).collect(),
            indexed: self.indexed,
        }
    }

    /// The row of one call.
    pub fn find(&self, trace_id: &[u8; 16], span_id: &[u8; 8]) -> Option<Row> {
        self.rows
            .iter()
            .rev()
            .find(|r| &r.trace_id == trace_id && &r.span_id == span_id)
            .copied()
    }

    /// One row as the JSON the browser reads.
    pub fn summary(&self, r: &Row) -> serde_json::Value {
        let s = |i: usize| {
            let text = self.strings.get(r.strings.get(i).copied().unwrap_or(0));
            (!text.is_empty()).then_some(text)
        };
        let float = |v: f32| (!v.is_nan()).then_some(f64::from(v));
        serde_json::json!({
            "trace_id": super::otlp::hex(&r.trace_id),
            "span_id": super::otlp::hex(&r.span_id),
            "start_ms": r.start_ns / 1_000_000,
            "duration_ms": float(r.duration_ms),
            "ttfc_ms": float(r.ttfc_ms),
            "provider": s(PROVIDER),
            "operation": s(OPERATION),
            "request_model": s(REQUEST_MODEL),
            "response_model": s(RESPONSE_MODEL),
            "session": s(SESSION),
            "user": s(USER),
            "conversation": s(CONVERSATION),
            "error_type": s(ERROR_TYPE),
            "http_status": (r.http_status != 0).then_some(r.http_status),
            "error": r.error,
            "streamed": r.streamed,
            "input_tokens": opt_count(r.tokens[0]),
            "output_tokens": opt_count(r.tokens[1]),
            "cached_tokens": opt_count(r.tokens[2]),
            "reasoning_tokens": opt_count(r.tokens[3]),
            "cost": (!r.cost.is_nan()).then_some(r.cost),
        })
    }

    /// The distinct providers and models held (at most `max_page` of each), for the filters.
    pub fn facets(&self) -> serde_json::Value {
        let mut providers = std::collections::BTreeSet::new();
        let mut models = std::collections::BTreeSet::new();
        for r in &self.rows {
            providers.insert(r.strings[PROVIDER]);
            models.insert(r.strings[REQUEST_MODEL]);
            models.insert(r.strings[RESPONSE_MODEL]);
        }
        let names = |ids: std::collections::BTreeSet<u32>| {
            let mut names: Vec<&str> = ids
                .into_iter()
                .map(|id| self.strings.get(id))
                .filter(|s| !s.is_empty())
                .collect();
            names.sort_unstable();
            names.truncate(self.limits.max_page);
            names
        };
        serde_json::json!({"providers": names(providers), "models": names(models)})
    }
}

/// How calls are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// `session.id`.
    Session,
    /// `gen_ai.conversation.id`.
    Conversation,
    /// Trace id.
    Trace,
}

/// What calls are grouped by: an interned string or a trace id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum GroupKey {
    Text(u32),
    Trace([u8; 16]),
}

#[derive(Debug, Default, Clone)]
struct Group {
    calls: u64,
    errors: u64,
    input: u64,
    output: u64,
    cost: f64,
    duration_ms: f64,
    first_ns: u64,
    last_ns: u64,
    trace_id: [u8; 16],
    key: u32,
}

impl Group {
    fn add(&mut self, r: &Row) {
        if self.calls == 0 || r.start_ns < self.first_ns {
            self.first_ns = r.start_ns;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let end = r.start_ns + (f64::from(r.duration_ms) * 1e6) as u64;
        self.last_ns = self.last_ns.max(end);
        self.calls += 1;
        self.errors += u64::from(r.error);
        self.input += u64::from(opt_count(r.tokens[0]).unwrap_or(0));
        self.output += u64::from(opt_count(r.tokens[1]).unwrap_or(0));
        if !r.cost.is_nan() {
            self.cost += r.cost;
        }
        self.duration_ms += f64::from(r.duration_ms);
        self.trace_id = r.trace_id;
    }
}

impl Index {
    /// Groups of the calls matching `filter`, the most recently active first, with their totals.
    pub fn groups(
        &self,
        by: GroupBy,
        filter: &Filter,
        offset: usize,
        limit: usize,
    ) -> serde_json::Value {
        let limit = limit.clamp(1, self.limits.max_page);
        // Groups sit in one vector, found through a map of small entries (key to position), the
        // last one found kept at hand: a trace's or a session's calls often come one after
        // another. foldhash is fast and seeded per process, so chosen trace ids cannot make it
        // collide.
        let mut positions: HashMap<GroupKey, usize, foldhash::fast::RandomState> =
            HashMap::default();
        let mut groups: Vec<Group> = Vec::new();
        let mut last: Option<(GroupKey, usize)> = None;
        for r in self.matching(filter) {
            let key = match by {
                GroupBy::Session => GroupKey::Text(r.strings.get(SESSION).copied().unwrap_or(0)),
                GroupBy::Conversation => {
                    GroupKey::Text(r.strings.get(CONVERSATION).copied().unwrap_or(0))
                }
                GroupBy::Trace => GroupKey::Trace(r.trace_id),
            };
            if key == GroupKey::Text(0) {
                continue;
            }
            let at = match last {
                Some((k, at)) if k == key => at,
                _ => *positions.entry(key).or_insert_with(|| {
                    groups.push(Group {
                        key: match key {
                            GroupKey::Text(id) => id,
                            GroupKey::Trace(_) => 0,
                        },
                        ..Group::default()
                    });
                    groups.len() - 1
                }),
            };
            last = Some((key, at));
            if let Some(group) = groups.get_mut(at) {
                group.add(r);
            }
        }
        // Keys are formatted for the page only: a million traces make a million groups.
        let total = groups.len();
        let order = |a: &Group, b: &Group| b.last_ns.cmp(&a.last_ns);
        let end = offset.saturating_add(limit).min(groups.len());
        if end > 0 && end < groups.len() {
            groups.select_nth_unstable_by(end, order);
            groups.truncate(end);
        }
        groups.sort_by(order);
        let groups: Vec<serde_json::Value> = groups
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|g| {
                let key = match by {
                    GroupBy::Trace => super::otlp::hex(&g.trace_id),
                    _ => self.strings.get(g.key).to_string(),
                };
                serde_json::json!({
                    "key": key,
                    "calls": g.calls,
                    "errors": g.errors,
                    "input_tokens": g.input,
                    "output_tokens": g.output,
                    "cost": g.cost,
                    "duration_ms": g.duration_ms,
                    "first_ms": g.first_ns / 1_000_000,
                    "last_ms": g.last_ns / 1_000_000,
                    "trace_id": super::otlp::hex(&g.trace_id),
                })
            })
            .collect();
        serde_json::json!({"total": total, "groups": groups, "indexed": self.indexed})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(i: u64, provider: &str, session: &str, cost: f64) -> SpanSummary {
        SpanSummary {
            trace_id: [i as u8; 16],
            span_id: [i as u8; 8],
            start_ns: i * 1_000_000_000,
            duration_ms: (i * 10) as f64,
            provider: provider.into(),
            request_model: "m".into(),
            session: session.into(),
            input_tokens: Some(i),
            cost: Some(cost),
            error: i % 2 == 0,
            ..SpanSummary::default()
        }
    }

    fn index(max_calls: usize) -> Index {
        Index::new(Limits {
            max_calls,
            ..Limits::default()
        })
    }

    fn ids(page: &Page) -> Vec<u64> {
        page.calls
            .iter()
            .map(|c| c["input_tokens"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn lists_newest_first_filters_and_pages() {
        let mut index = index(100);
        for i in 1..=6 {
            let provider = if i <= 3 { "openai" } else { "anthropic" };
            index.push(
                &call(i, provider, if i % 3 == 0 { "s" } else { "" }, 0.0),
                0,
                0,
                0,
            );
        }
        let all = index.list(&Filter::default(), Sort::Time, false, 0, 4);
        assert_eq!((all.total, ids(&all)), (6, vec![6, 5, 4, 3]));
        let next = index.list(&Filter::default(), Sort::Time, false, 4, 4);
        assert_eq!(ids(&next), vec![2, 1]);
        let openai = Filter {
            provider: Some("openai".into()),
            ..Filter::default()
        };
        assert_eq!(
            ids(&index.list(&openai, Sort::Time, false, 0, 10)),
            vec![3, 2, 1]
        );
        let session = Filter {
            session: Some("s".into()),
            ..Filter::default()
        };
        assert_eq!(
            ids(&index.list(&session, Sort::Time, false, 0, 10)),
            vec![6, 3]
        );
        let errors = Filter {
            status: Some("error".into()),
            ..Filter::default()
        };
        assert_eq!(
            ids(&index.list(&errors, Sort::Time, false, 0, 10)),
            vec![6, 4, 2]
        );
        let text = Filter {
            text: Some("ANTHRO".into()),
            ..Filter::default()
        };
        assert_eq!(
            ids(&index.list(&text, Sort::Time, false, 0, 10)),
            vec![6, 5, 4]
        );
        let unknown = Filter {
            user: Some("nobody".into()),
            ..Filter::default()
        };
        assert_eq!(index.list(&unknown, Sort::Time, false, 0, 10).total, 0);
    }

    #[test]
    fn sorts_by_cost_and_duration() {
        let mut index = index(100);
        for (i, cost) in [(1, 0.5), (2, 3.0), (3, 1.0), (4, 2.0)] {
            index.push(&call(i, "p", "", cost), 0, 0, 0);
        }
        let by_cost = index.list(&Filter::default(), Sort::Cost, false, 0, 2);
        assert_eq!((by_cost.total, ids(&by_cost)), (4, vec![2, 4]));
        let by_cost = index.list(&Filter::default(), Sort::Cost, false, 2, 2);
        assert_eq!(ids(&by_cost), vec![3, 1]);
        let fastest = index.list(&Filter::default(), Sort::Duration, true, 0, 3);
        assert_eq!(ids(&fastest), vec![1, 2, 3]);
    }

    #[test]
    fn keeps_at_most_max_calls_and_forgets_their_strings() {
        let mut index = index(3);
        for i in 1..=5000 {
            index.push(&call(i, "p", &format!("session-{i}"), 0.0), 0, 0, 0);
        }
        assert_eq!(index.len(), 3);
        assert_eq!(index.indexed(), 5000);
        let page = index.list(&Filter::default(), Sort::Time, false, 0, 10);
        assert_eq!(ids(&page), vec![5000, 4999, 4998]);
        assert_eq!(page.calls[0]["session"], "session-5000");
        assert!(
            index.strings.texts.len() < 4096 + 10,
            "{}",
            index.strings.texts.len()
        );
    }

    #[test]
    fn pages_are_capped() {
        let mut index = index(1000);
        for i in 1..=700 {
            index.push(&call(i, "p", "", 0.0), 0, 0, 0);
        }
        let page = index.list(&Filter::default(), Sort::Time, false, 0, 10_000);
        assert_eq!(page.calls.len(), Limits::default().max_page);
    }

    #[test]
    fn groups_carry_their_totals() {
        let mut index = index(100);
        index.push(&call(1, "p", "a", 0.25), 0, 0, 0);
        index.push(&call(2, "p", "b", 1.0), 0, 0, 0);
        index.push(&call(3, "p", "a", 0.5), 0, 0, 0);
        index.push(&call(4, "p", "", 0.5), 0, 0, 0);
        let groups = index.groups(GroupBy::Session, &Filter::default(), 0, 10);
        assert_eq!(groups["total"], 2);
        let a = &groups["groups"][0];
        assert_eq!(
            (a["key"].as_str(), a["calls"].as_u64()),
            (Some("a"), Some(2))
        );
        assert_eq!(a["input_tokens"], 4);
        assert_eq!(a["cost"], 0.75);
        assert_eq!(a["first_ms"], 1000);
        let traces = index.groups(GroupBy::Trace, &Filter::default(), 0, 10);
        assert_eq!(traces["total"], 4);
    }

    #[test]
    fn totals_by_provider_and_model() {
        let mut index = index(100);
        for i in 1..=4 {
            index.push(&call(i, if i == 4 { "q" } else { "p" }, "", 1.0), 0, 0, 0);
        }
        let totals = index.totals(&Filter::default());
        assert_eq!(totals["all"]["calls"], 4);
        assert_eq!(totals["all"]["input_tokens"], 10);
        assert_eq!(totals["all"]["errors"], 2);
        assert_eq!(totals["all"]["error_rate"], 0.5);
        let first = &totals["by_model"][0];
        assert_eq!(
            (first["provider"].as_str(), first["calls"].as_u64()),
            (Some("p"), Some(3))
        );
        assert_eq!(first["duration_p50_ms"], 20.0);
        assert_eq!(first["cost"], 3.0);
        let calls: u64 = totals["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["calls"].as_u64().unwrap())
            .sum();
        assert_eq!(calls, 4);
    }
}
