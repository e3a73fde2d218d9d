//! Lowering: one merged provider spec into compiled rules, collecting every problem with the JSON
//! pointer of the spec node it concerns.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use super::known::{self, KNOWN_TEMPLATE_VARS};
use super::reads::{Reads, StreamReads};
use super::route::parse_template;
use super::rules::*;
use super::JsonPath;
use crate::diagnostic::did_you_mean;
use crate::spec::{self, OneOrMany, PartType, ProviderSpec, ValueSpec};

/// A problem found while lowering, located by JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON pointer into the merged spec.
    pub pointer: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

#[derive(Default)]
pub(crate) struct Lowerer {
    pub problems: Vec<Problem>,
    /// The capture names of the routes of the operation being lowered (`None` outside an
    /// operation, or when its routes have problems of their own).
    captures: Option<BTreeSet<String>>,
}

/// Sets each part rule's group: the index of the first rule of its list with the same `each`.
fn grouped(mut parts: Vec<PartRule>) -> Vec<PartRule> {
    for i in 0..parts.len() {
        let selector = |r: &PartRule| r.each.as_ref().map(|p| p.as_str().to_string());
        let own = parts.get(i).map(selector);
        let group = parts
            .iter()
            .position(|r| Some(selector(r)) == own)
            .unwrap_or(i);
        if let Some(rule) = parts.get_mut(i) {
            rule.group = group;
        }
    }
    parts
}

/// The capture names of every route's template.
fn capture_names(routes: &[Route]) -> BTreeSet<String> {
    routes
        .iter()
        .flat_map(|r| r.template.segments.iter().flatten())
        .filter_map(|piece| match piece {
            Piece::Capture(name) | Piece::Rest(name) => Some(name.clone()),
            Piece::Literal(_) => None,
        })
        .collect()
}

fn ptr(base: &str, key: &str) -> String {
    format!("{base}/{}", crate::yaml::escape_segment(key))
}

impl Lowerer {
    fn problem(&mut self, pointer: String, message: String, help: Option<String>) {
        self.problems.push(Problem {
            pointer,
            message,
            help,
        });
    }

    pub fn provider(&mut self, spec: &ProviderSpec, file: &str) -> Option<Provider> {
        let start = self.problems.len();
        let provider_name: Arc<str> = match &spec.provider_name {
            Some(name) if !name.is_empty() => name.as_str().into(),
            _ => {
                self.problem(
                    String::new(),
                    "missing `provider_name` (the `gen_ai.provider.name` value)".into(),
                    Some(
                        "add e.g. `provider_name: openai`, or `extends` a provider that has one"
                            .into(),
                    ),
                );
                "".into()
            }
        };
        let upstream = spec.upstream.as_ref();
        if let Some(up) = upstream {
            if !(up.base_url.starts_with("http://") || up.base_url.starts_with("https://")) {
                self.problem(
                    "/upstream/base_url".into(),
                    format!("`{}` is not an http(s) URL", up.base_url),
                    Some("write the scheme and host, e.g. `https://api.openai.com`".into()),
                );
            }
        }
        let prefixes = spec
            .path_prefixes
            .clone()
            .unwrap_or_else(|| vec![String::new()]);
        for (i, prefix) in prefixes.iter().enumerate() {
            if !prefix.is_empty() && (!prefix.starts_with('/') || prefix.ends_with('/')) {
                self.problem(
                    format!("/path_prefixes/{i}"),
                    format!("path prefix `{prefix}` must start with `/` and not end with one"),
                    None,
                );
            }
        }
        let metrics = Arc::new(self.metrics(&spec.metrics));
        let pricing = Arc::new(self.pricing(&spec.pricing));
        let id: Arc<str> = spec.id.as_str().into();
        let mut seen_ids = HashSet::new();
        let mut seen_routes: BTreeMap<String, String> = BTreeMap::new();
        let mut operations = Vec::new();
        for (i, op) in spec.operations.iter().enumerate() {
            let base = format!("/operations/{i}");
            if !seen_ids.insert(op.id.clone()) {
                self.problem(
                    ptr(&base, "id"),
                    format!("duplicate operation id `{}`", op.id),
                    Some("operation ids must be unique within a provider".into()),
                );
            }
            if op.enabled == Some(false) {
                continue;
            }
            let shared = Shared {
                provider: id.clone(),
                provider_name: provider_name.clone(),
                prefixes: &prefixes,
                metrics: metrics.clone(),
                pricing: pricing.clone(),
            };
            if let Some(operation) = self.operation(op, &base, &shared) {
                for route in &operation.routes {
                    let mut query: Vec<String> = route
                        .query
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    query.sort();
                    let key = format!(
                        "{} {}?{}",
                        route.method,
                        route.template.source,
                        query.join("&")
                    );
                    if let Some(other) = seen_routes.insert(key, op.id.clone()) {
                        self.problem(
                            ptr(&base, "match"),
                            format!(
                                "route `{} {}` is already claimed by operation `{other}`",
                                route.method, route.template.source
                            ),
                            Some("give one of them a different path or a `query` condition".into()),
                        );
                    }
                }
                operations.push(Arc::new(operation));
            }
        }
        if self.problems.len() > start {
            return None;
        }
        Some(Provider {
            id,
            name: spec.name.clone().unwrap_or_else(|| spec.id.clone()),
            provider_name,
            extends: spec.extends.clone(),
            docs: spec.docs.clone(),
            base_url: upstream.map(|u| u.base_url.trim_end_matches('/').to_string()),
            hosts: upstream.map(|u| u.hosts.clone()).unwrap_or_default(),
            aws_service: upstream.and_then(|u| u.aws_service.clone()),
            path_prefixes: prefixes,
            operations,
            file: file.to_string(),
        })
    }

    fn operation(
        &mut self,
        op: &spec::OperationSpec,
        base: &str,
        shared: &Shared<'_>,
    ) -> Option<Operation> {
        let start = self.problems.len();
        let operation_name: Arc<str> = match &op.operation_name {
            Some(name) => self.operation_name(name, &ptr(base, "operation_name")),
            None => {
                self.problem(
                    base.to_string(),
                    format!("operation `{}` has no `operation_name`", op.id),
                    Some(
                        "set the `gen_ai.operation.name` value, e.g. `operation_name: chat`".into(),
                    ),
                );
                "".into()
            }
        };
        let span_source = op
            .span_name
            .clone()
            .unwrap_or_else(|| "{gen_ai.operation.name} {gen_ai.request.model}".into());
        let span_name = self.template(&span_source, &ptr(base, "span_name"), op);
        let before_routes = self.problems.len();
        let routes = self.routes(op, base, shared.prefixes);
        self.captures = (self.problems.len() == before_routes).then(|| capture_names(&routes));
        let request = self.phase(
            op.request.as_ref(),
            &ptr(base, "request"),
            PhaseKind::Request,
        );
        let response = self.phase(
            op.response.as_ref(),
            &ptr(base, "response"),
            PhaseKind::Response,
        );
        let error = self.error(op.error.as_ref(), &ptr(base, "error"));
        let stream = op
            .stream
            .as_ref()
            .and_then(|s| self.stream(s, &ptr(base, "stream")));
        self.captures = None;
        if self.problems.len() > start {
            return None;
        }
        let mut operation = Operation {
            provider: shared.provider.clone(),
            provider_name: shared.provider_name.clone(),
            id: op.id.as_str().into(),
            operation_name,
            span_name,
            client_span: op.span_kind != Some(spec::SpanKindSpec::Internal),
            sdk_methods: op.sdk_methods.clone(),
            routes,
            request,
            response,
            error,
            stream,
            metrics: shared.metrics.clone(),
            pricing: shared.pricing.clone(),
            reads: Reads::default(),
        };
        operation.reads = Reads::of(&operation);
        Some(operation)
    }

    /// The `gen_ai.operation.name` value: a semantic-conventions name, or a custom one marked as
    /// such.
    fn operation_name(&mut self, name: &spec::OperationNameSpec, pointer: &str) -> Arc<str> {
        let known = known::OPERATION_NAMES;
        match name {
            spec::OperationNameSpec::Known(name) => {
                if !known.contains(&name.as_str()) {
                    let list = known.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>();
                    let guess = did_you_mean(name, known.iter().copied())
                        .map(|s| format!("did you mean `{s}`? "))
                        .unwrap_or_default();
                    self.problem(
                        pointer.to_string(),
                        format!("`{name}` is not a `gen_ai.operation.name` of the semantic conventions"),
                        Some(format!(
                            "{guess}known: {}; a name of the provider's own is written `operation_name: {{custom: {name}}}`",
                            list.join(", ")
                        )),
                    );
                }
                name.as_str().into()
            }
            spec::OperationNameSpec::Custom(custom) => {
                let name = custom.custom.as_str();
                if name.is_empty() {
                    self.problem(
                        ptr(pointer, "custom"),
                        "a custom operation name cannot be empty".into(),
                        None,
                    );
                } else if known.contains(&name) {
                    self.problem(
                        ptr(pointer, "custom"),
                        format!("`{name}` is a `gen_ai.operation.name` of the semantic conventions, not a custom one"),
                        Some(format!("write `operation_name: {name}`")),
                    );
                }
                name.into()
            }
        }
    }

    /// A `capture` must name a placeholder of the operation's `match.path`.
    fn check_capture(&mut self, name: &str, pointer: &str) {
        let Some(names) = &self.captures else {
            return;
        };
        if names.contains(name) {
            return;
        }
        let help = match did_you_mean(name, names.iter().map(String::as_str)) {
            Some(best) => format!("did you mean `{best}`?"),
            None if names.is_empty() => {
                "the operation's `match.path` has no `{...}` placeholder".to_string()
            }
            None => format!(
                "placeholders of `match.path`: {}",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        self.problem(
            pointer.to_string(),
            format!("`{name}` is not a placeholder of the operation's `match.path`"),
            Some(help),
        );
    }

    fn template(&mut self, source: &str, pointer: &str, op: &spec::OperationSpec) -> Template {
        let mut pieces = Vec::new();
        let mut rest = source;
        let defined: BTreeSet<&str> = op
            .request
            .iter()
            .flat_map(|p| {
                p.attributes
                    .iter()
                    .filter(|(_, v)| v.is_some())
                    .map(|(k, _)| k)
            })
            .map(String::as_str)
            .chain(KNOWN_TEMPLATE_VARS.iter().copied())
            .collect();
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(TemplatePiece::Literal(rest[..open].to_string()));
            }
            let Some(close) = rest[open..].find('}') else {
                self.problem(
                    pointer.into(),
                    format!("unclosed `{{` in template `{source}`"),
                    None,
                );
                return Template { pieces };
            };
            let var = &rest[open + 1..open + close];
            if !defined.contains(var) {
                let help = did_you_mean(var, defined.iter().copied())
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| {
                        Some("span names may use request attributes of this operation".into())
                    });
                self.problem(
                    pointer.into(),
                    format!("unknown template variable `{var}`"),
                    help,
                );
            }
            pieces.push(TemplatePiece::Var(var.to_string()));
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(TemplatePiece::Literal(rest.to_string()));
        }
        Template { pieces }
    }

    fn routes(&mut self, op: &spec::OperationSpec, base: &str, prefixes: &[String]) -> Vec<Route> {
        let Some(matcher) = &op.matcher else {
            self.problem(
                base.to_string(),
                format!("operation `{}` has no `match`", op.id),
                Some("add `match: { method: POST, path: /v1/... }`".into()),
            );
            return Vec::new();
        };
        let base = ptr(base, "match");
        let method = matcher
            .method
            .clone()
            .unwrap_or_else(|| "POST".into())
            .to_ascii_uppercase();
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
            self.problem(
                ptr(&base, "method"),
                format!("unsupported HTTP method `{method}`"),
                None,
            );
        }
        let Some(paths) = &matcher.path else {
            self.problem(base.clone(), "`match` needs a `path`".into(), None);
            return Vec::new();
        };
        let prefixes: Vec<&str> = if matcher.absolute == Some(true) {
            vec![""]
        } else {
            prefixes.iter().map(String::as_str).collect()
        };
        let query: Vec<(String, String)> = matcher
            .query
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut routes = Vec::new();
        let many = matches!(paths, OneOrMany::Many(_));
        for (i, path) in paths.as_slice().iter().enumerate() {
            let pointer = if many {
                format!("{base}/path/{i}")
            } else {
                ptr(&base, "path")
            };
            if !path.starts_with('/') {
                self.problem(pointer, format!("path `{path}` must start with `/`"), None);
                continue;
            }
            for prefix in &prefixes {
                match parse_template(&format!("{prefix}{path}")) {
                    Ok(template) => routes.push(Route {
                        method: method.clone(),
                        template,
                        query: query.clone(),
                    }),
                    Err(e) => self.problem(pointer.clone(), e, None),
                }
            }
        }
        routes
    }

    fn phase(&mut self, spec: Option<&spec::PhaseSpec>, base: &str, phase: PhaseKind) -> Phase {
        let Some(spec) = spec else {
            return Phase::default();
        };
        let attributes = self.attributes(&spec.attributes, &ptr(base, "attributes"));
        let misplaced = |name: &str, present: bool| present.then(|| name.to_string());
        let wrong = match phase {
            PhaseKind::Request => misplaced("output_messages", !spec.output_messages.is_empty()),
            PhaseKind::Response => misplaced("input_messages", !spec.input_messages.is_empty())
                .or_else(|| misplaced("system_instructions", !spec.system_instructions.is_empty()))
                .or_else(|| misplaced("tool_definitions", !spec.tool_definitions.is_empty())),
        };
        if let Some(key) = wrong {
            let other = if phase == PhaseKind::Request {
                "response"
            } else {
                "request"
            };
            self.problem(
                ptr(base, &key),
                format!("`{key}` belongs to the {other} phase"),
                Some(format!("move it under `{other}:`")),
            );
        }
        let messages =
            |me: &mut Self, rules: &[spec::MessageRule], key: &str| -> Vec<MessageRule> {
                rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| me.message(r, &format!("{}/{i}", ptr(base, key))))
                    .collect()
            };
        let input_messages = messages(self, &spec.input_messages, "input_messages");
        let output_messages = messages(self, &spec.output_messages, "output_messages");
        let system_instructions = grouped(
            spec.system_instructions
                .iter()
                .enumerate()
                .map(|(i, r)| self.part(r, &format!("{}/{i}", ptr(base, "system_instructions"))))
                .collect(),
        );
        let tool_definitions = spec
            .tool_definitions
            .iter()
            .enumerate()
            .filter_map(|(i, r)| self.tool(r, &format!("{}/{i}", ptr(base, "tool_definitions"))))
            .collect();
        Phase {
            attributes,
            input_messages,
            system_instructions,
            tool_definitions,
            output_messages,
        }
    }

    fn attributes(
        &mut self,
        map: &BTreeMap<String, Option<ValueSpec>>,
        base: &str,
    ) -> Vec<(Arc<str>, Value)> {
        let mut out = Vec::new();
        for (key, spec) in map {
            let Some(spec) = spec else { continue };
            let pointer = ptr(base, key);
            self.attribute_key(key, &pointer);
            if let Some(value) = self.value(spec, &pointer) {
                out.push((Arc::from(key.as_str()), value));
            }
        }
        out
    }

    fn attribute_key(&mut self, key: &str, pointer: &str) {
        if known::MESSAGE_ATTRIBUTES.contains(&key) {
            self.problem(
                pointer.into(),
                format!("`{key}` is produced from message rules, not set as an attribute"),
                Some("use `input_messages`, `output_messages`, `system_instructions` or `tool_definitions`".into()),
            );
        } else if key.starts_with("gen_ai.") && !known::GEN_AI_ATTRIBUTES.contains(&key) {
            let help = did_you_mean(key, known::GEN_AI_ATTRIBUTES.iter().copied())
                .map(|s| format!("did you mean `{s}`?"))
                .or_else(|| Some("the `gen_ai.` namespace is reserved for the semantic conventions; use your own prefix for other attributes".into()));
            self.problem(
                pointer.into(),
                format!("unknown GenAI attribute `{key}`"),
                help,
            );
        } else if key.is_empty() || key.contains(char::is_whitespace) {
            self.problem(
                pointer.into(),
                format!("invalid attribute key `{key}`"),
                None,
            );
        }
    }

    pub(crate) fn path(&mut self, source: &str, pointer: &str) -> Option<JsonPath> {
        match JsonPath::parse(source) {
            Ok(path) => Some(path),
            Err(e) => {
                let help = (!source.starts_with('$')).then(|| {
                    format!("write `$.{source}`, or `{{ const: {source} }}` for a constant")
                });
                self.problem(
                    pointer.into(),
                    format!("invalid JSONPath `{source}`: {e}"),
                    help,
                );
                None
            }
        }
    }

    pub(crate) fn value(&mut self, spec: &ValueSpec, pointer: &str) -> Option<Value> {
        let rule = match spec {
            ValueSpec::Path(path) => {
                return self.path(path, pointer).map(|p| Value {
                    source: Source::Doc(p),
                    coerce: None,
                    pattern: None,
                    map: None,
                    when: None,
                })
            }
            ValueSpec::Rule(rule) => rule,
        };
        let mut sources = Vec::new();
        if let Some(p) = &rule.path {
            sources.push(self.path(p, &ptr(pointer, "path")).map(Source::Doc));
        }
        if let Some(p) = &rule.request {
            sources.push(self.path(p, &ptr(pointer, "request")).map(Source::Request));
        }
        if let Some(p) = &rule.response {
            sources.push(
                self.path(p, &ptr(pointer, "response"))
                    .map(Source::Response),
            );
        }
        if let Some(list) = &rule.first {
            let items = self.values(list, &ptr(pointer, "first"));
            sources.push(items.map(Source::First));
        }
        if let Some(list) = &rule.sum {
            let items = self.values(list, &ptr(pointer, "sum"));
            sources.push(items.map(Source::Sum));
        }
        if let Some(c) = &rule.constant {
            sources.push(Some(Source::Const(c.clone())));
        }
        if let Some(c) = &rule.capture {
            self.check_capture(c, &ptr(pointer, "capture"));
            sources.push(Some(Source::Capture(c.clone())));
        }
        if let Some(h) = &rule.header {
            let lower = h.to_ascii_lowercase();
            if known::is_credential_header(&lower) {
                self.problem(
                    ptr(pointer, "header"),
                    format!("header `{h}` carries credentials and is never recorded"),
                    None,
                );
            }
            sources.push(Some(Source::Header(lower)));
        }
        if let Some(q) = &rule.query {
            if known::is_credential_query(q) {
                self.problem(
                    ptr(pointer, "query"),
                    format!("query parameter `{q}` carries credentials and is never recorded"),
                    None,
                );
            }
            sources.push(Some(Source::Query(q.clone())));
        }
        if sources.len() != 1 {
            let message = if sources.is_empty() {
                "a value needs a source".to_string()
            } else {
                "a value takes exactly one source".to_string()
            };
            self.problem(
                pointer.into(),
                message,
                Some("use one of `path`, `request`, `response`, `first`, `sum`, `const`, `capture`, `header`, `query`".into()),
            );
            return None;
        }
        let source = sources.pop().flatten()?;
        let when = match &rule.when {
            Some(c) => Some(Box::new(self.condition(c, &ptr(pointer, "when"))?)),
            None => None,
        };
        let pattern = match &rule.pattern {
            Some(p) => match regex::Regex::new(p) {
                Ok(re) => Some(re),
                Err(e) => {
                    let text = e.to_string();
                    let last = text.lines().last().unwrap_or_default().trim().to_string();
                    self.problem(
                        ptr(pointer, "pattern"),
                        format!("invalid regular expression `{p}`: {last}"),
                        None,
                    );
                    return None;
                }
            },
            None => None,
        };
        Some(Value {
            source,
            coerce: rule.coerce.map(Into::into),
            pattern,
            map: rule.map.clone(),
            when,
        })
    }

    fn values(&mut self, list: &[ValueSpec], pointer: &str) -> Option<Vec<Value>> {
        if list.is_empty() {
            self.problem(pointer.into(), "the list is empty".into(), None);
            return None;
        }
        let items: Vec<Option<Value>> = list
            .iter()
            .enumerate()
            .map(|(i, v)| self.value(v, &format!("{pointer}/{i}")))
            .collect();
        items.into_iter().collect()
    }

    pub(crate) fn condition(&mut self, spec: &spec::Condition, pointer: &str) -> Option<Cond> {
        let mut parts = Vec::new();
        let mut ok = true;
        if let Some(list) = &spec.all {
            let items: Option<Vec<Cond>> = list
                .iter()
                .enumerate()
                .map(|(i, c)| self.condition(c, &format!("{}/{i}", ptr(pointer, "all"))))
                .collect();
            ok &= items.as_ref().is_some();
            parts.extend(items.map(Cond::All));
        }
        if let Some(list) = &spec.any {
            let items: Option<Vec<Cond>> = list
                .iter()
                .enumerate()
                .map(|(i, c)| self.condition(c, &format!("{}/{i}", ptr(pointer, "any"))))
                .collect();
            ok &= items.as_ref().is_some();
            parts.extend(items.map(Cond::Any));
        }
        if let Some(inner) = &spec.not {
            let inner = self.condition(inner, &ptr(pointer, "not"));
            ok &= inner.is_some();
            parts.extend(inner.map(|c| Cond::Not(Box::new(c))));
        }
        let mut tests = Vec::new();
        if let Some(v) = &spec.equals {
            tests.push(Test::Equals(v.clone()));
        }
        if let Some(v) = &spec.not_equals {
            tests.push(Test::NotEquals(v.clone()));
        }
        if let Some(v) = &spec.one_of {
            tests.push(Test::In(v.clone()));
        }
        if let Some(v) = spec.exists {
            tests.push(Test::Exists(v));
        }
        if let Some(v) = spec.is {
            tests.push(Test::Is(v.into()));
        }
        match &spec.value {
            Some(value) => {
                if tests.is_empty() {
                    self.problem(
                        pointer.into(),
                        "a condition on `value` needs a test".into(),
                        Some("add one of `equals`, `not_equals`, `in`, `exists`, `is`".into()),
                    );
                    return None;
                }
                let value = self.value(value, &ptr(pointer, "value"))?;
                parts.extend(
                    tests
                        .into_iter()
                        .map(|t| Cond::Test(Box::new(value.clone()), t)),
                );
            }
            None if !tests.is_empty() => {
                self.problem(
                    pointer.into(),
                    "a test needs the `value` it tests".into(),
                    Some("add e.g. `value: $.stream`".into()),
                );
                return None;
            }
            None => {}
        }
        if !ok {
            return None;
        }
        match parts.len() {
            0 => {
                self.problem(pointer.into(), "empty condition".into(), None);
                None
            }
            1 => parts.pop(),
            _ => Some(Cond::All(parts)),
        }
    }

    fn opt_condition(&mut self, spec: &Option<spec::Condition>, pointer: &str) -> Option<Cond> {
        spec.as_ref()
            .and_then(|c| self.condition(c, &ptr(pointer, "when")))
    }

    fn opt_value(&mut self, spec: &Option<ValueSpec>, pointer: &str, key: &str) -> Option<Value> {
        spec.as_ref()
            .and_then(|v| self.value(v, &ptr(pointer, key)))
    }

    fn opt_path(&mut self, spec: &Option<String>, pointer: &str, key: &str) -> Option<JsonPath> {
        spec.as_ref().and_then(|p| self.path(p, &ptr(pointer, key)))
    }

    fn message(&mut self, spec: &spec::MessageRule, pointer: &str) -> MessageRule {
        MessageRule {
            each: self.opt_path(&spec.each, pointer, "each"),
            when: self.opt_condition(&spec.when, pointer),
            role: self.opt_value(&spec.role, pointer, "role"),
            name: self.opt_value(&spec.name, pointer, "name"),
            finish_reason: self.opt_value(&spec.finish_reason, pointer, "finish_reason"),
            parts: grouped(
                spec.parts
                    .iter()
                    .enumerate()
                    .map(|(i, p)| self.part(p, &format!("{}/{i}", ptr(pointer, "parts"))))
                    .collect(),
            ),
        }
    }

    fn part(&mut self, spec: &spec::PartRule, pointer: &str) -> PartRule {
        let candidates: [(&'static str, &Option<ValueSpec>); 12] = [
            ("id", &spec.id),
            ("name", &spec.name),
            ("arguments", &spec.arguments),
            ("response", &spec.response),
            ("modality", &spec.modality),
            ("mime_type", &spec.mime_type),
            ("content", &spec.content),
            ("uri", &spec.uri),
            ("file_id", &spec.file_id),
            ("server_tool_call", &spec.server_tool_call),
            ("server_tool_call_response", &spec.server_tool_call_response),
            ("kind", &spec.kind),
        ];
        let (required, allowed): (&'static str, &[&str]) = match spec.part_type {
            PartType::Text | PartType::Reasoning => ("content", &["content"]),
            PartType::ToolCall | PartType::ServerToolCall => ("name", &["id", "name", "arguments"]),
            PartType::ToolCallResponse | PartType::ServerToolCallResponse => {
                ("response", &["id", "response"])
            }
            PartType::Blob => ("content", &["modality", "mime_type", "content"]),
            PartType::Uri => ("uri", &["modality", "mime_type", "uri"]),
            PartType::File => ("file_id", &["modality", "mime_type", "file_id"]),
            PartType::Generic => ("kind", &["kind", "content"]),
        };
        let mut fields = Vec::new();
        for (name, value) in candidates {
            let Some(value) = value else { continue };
            if !allowed.contains(&name) {
                self.problem(
                    ptr(pointer, name),
                    format!(
                        "a `{}` part has no `{name}` field",
                        super::kinds::PartType::from(spec.part_type).as_str()
                    ),
                    Some(format!(
                        "its fields are {}",
                        allowed
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                );
                continue;
            }
            if let Some(v) = self.value(value, &ptr(pointer, name)) {
                fields.push((name, v));
            }
        }
        if !fields.iter().any(|(n, _)| *n == required) {
            self.problem(
                pointer.into(),
                format!(
                    "a `{}` part needs `{required}`",
                    super::kinds::PartType::from(spec.part_type).as_str()
                ),
                None,
            );
        }
        PartRule {
            part_type: spec.part_type.into(),
            each: self.opt_path(&spec.each, pointer, "each"),
            when: self.opt_condition(&spec.when, pointer),
            fields,
            required,
            group: 0,
        }
    }

    fn tool(&mut self, spec: &spec::ToolRule, pointer: &str) -> Option<ToolRule> {
        let each = self.path(&spec.each, &ptr(pointer, "each"));
        let Some(name) = &spec.name else {
            self.problem(
                pointer.into(),
                "a tool definition needs `name`".into(),
                None,
            );
            return None;
        };
        let name = self.value(name, &ptr(pointer, "name"));
        Some(ToolRule {
            each: each?,
            when: self.opt_condition(&spec.when, pointer),
            tool_type: self.opt_value(&spec.tool_type, pointer, "type"),
            name: name?,
            description: self.opt_value(&spec.description, pointer, "description"),
            parameters: self.opt_value(&spec.parameters, pointer, "parameters"),
        })
    }

    fn error(&mut self, spec: Option<&spec::ErrorSpec>, pointer: &str) -> ErrorRules {
        let Some(spec) = spec else {
            return ErrorRules::default();
        };
        ErrorRules {
            when: self.opt_condition(&spec.when, pointer),
            error_type: self.opt_value(&spec.error_type, pointer, "type"),
            message: self.opt_value(&spec.message, pointer, "message"),
            attributes: self.attributes(&spec.attributes, &ptr(pointer, "attributes")),
        }
    }

    fn stream(&mut self, spec: &spec::StreamSpec, pointer: &str) -> Option<Stream> {
        let Some(framing) = spec.framing else {
            self.problem(
                pointer.into(),
                "a stream needs `framing`".into(),
                Some("one of `sse`, `ndjson`, `aws_eventstream`".into()),
            );
            return None;
        };
        let payload = spec.payload.as_ref().and_then(|p| {
            self.path(&p.path, &format!("{pointer}/payload/path"))
                .map(|path| (path, p.encoding.into()))
        });
        let mut stream = Stream {
            when: self.opt_condition(&spec.when, pointer),
            framing: framing.into(),
            done: spec.done.clone(),
            done_events: spec
                .done_event
                .as_ref()
                .map(|e| e.as_slice().to_vec())
                .unwrap_or_default(),
            done_when: spec
                .done_when
                .as_ref()
                .and_then(|c| self.condition(c, &ptr(pointer, "done_when"))),
            payload,
            fold: self.folds(&spec.fold, &ptr(pointer, "fold")),
            finish: self.folds(&spec.finish, &ptr(pointer, "finish")),
            reads: StreamReads::default(),
        };
        stream.reads = StreamReads::of(&stream);
        Some(stream)
    }

    fn folds(&mut self, rules: &[spec::FoldRule], pointer: &str) -> Vec<FoldRule> {
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| self.fold(r, &format!("{pointer}/{i}")))
            .collect()
    }

    fn fold(&mut self, spec: &spec::FoldRule, pointer: &str) -> FoldRule {
        let at = match &spec.at {
            Some(at) => self.target(at, &ptr(pointer, "at")),
            None => Target::default(),
        };
        let mut actions = Vec::new();
        let groups = [
            (FoldAction::SetOnce, "set_once", &spec.set_once),
            (FoldAction::Set, "set", &spec.set),
            (FoldAction::Merge, "merge", &spec.merge),
            (FoldAction::Append, "append", &spec.append),
            (FoldAction::Push, "push", &spec.push),
        ];
        for (action, key, map) in groups {
            for (target, value) in map {
                let p = ptr(&ptr(pointer, key), target);
                let t = self.target(target, &p);
                if let Some(v) = self.value(value, &p) {
                    actions.push((action, t, v));
                }
            }
        }
        if !spec.coalesce_by.is_empty() && spec.coalesce.is_none() {
            self.problem(
                ptr(pointer, "coalesce_by"),
                "`coalesce_by` only applies with `coalesce`".into(),
                None,
            );
        }
        if spec.coalesce.is_some() && spec.push.is_empty() {
            self.problem(
                ptr(pointer, "coalesce"),
                "`coalesce` only applies to `push`".into(),
                None,
            );
        }
        let remove = spec
            .remove
            .iter()
            .enumerate()
            .map(|(i, t)| self.target(t, &format!("{}/{i}", ptr(pointer, "remove"))))
            .collect();
        if actions.is_empty() && spec.fold.is_empty() && spec.remove.is_empty() {
            self.problem(
                pointer.into(),
                "a fold rule needs an action".into(),
                Some("add one of `set_once`, `set`, `merge`, `append`, `push`, `remove` or nested `fold` rules".into()),
            );
        }
        FoldRule {
            events: spec
                .event
                .as_ref()
                .map(|e| e.as_slice().to_vec())
                .unwrap_or_default(),
            when: self.opt_condition(&spec.when, pointer),
            each: self.opt_path(&spec.each, pointer, "each"),
            at,
            actions,
            coalesce: spec.coalesce.clone(),
            coalesce_by: spec.coalesce_by.clone(),
            remove,
            fold: self.folds(&spec.fold, &ptr(pointer, "fold")),
        }
    }

    fn target(&mut self, source: &str, pointer: &str) -> Target {
        match super::target::parse_target(source) {
            Ok(target) => target,
            Err(e) => {
                self.problem(
                    pointer.into(),
                    format!("invalid target `{source}`: {e}"),
                    None,
                );
                Target::default()
            }
        }
    }

    fn metrics(&mut self, specs: &[spec::MetricSpec]) -> Vec<Metric> {
        let mut out = Vec::new();
        for (i, m) in specs.iter().enumerate() {
            let pointer = format!("/metrics/{i}");
            if m.name.starts_with("gen_ai.client.") {
                self.problem(
                    ptr(&pointer, "name"),
                    format!(
                        "`{}` is a standard metric that specter always records",
                        m.name
                    ),
                    Some("give provider metrics the provider's own prefix".into()),
                );
            }
            let Some(value) = self.value(&m.value, &ptr(&pointer, "value")) else {
                continue;
            };
            let attributes = m.attributes.clone().unwrap_or_else(|| {
                known::DEFAULT_METRIC_ATTRIBUTES
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            });
            for (j, key) in attributes.iter().enumerate() {
                if known::UNBOUNDED_ATTRIBUTES.contains(&key.as_str()) {
                    self.problem(
                        format!("{}/{j}", ptr(&pointer, "attributes")),
                        format!("`{key}` is unbounded and cannot be a metric attribute"),
                        Some(
                            "metric attributes must have few distinct values: no ids, no content"
                                .into(),
                        ),
                    );
                }
            }
            out.push(Metric {
                name: m.name.clone(),
                instrument: m.instrument.into(),
                unit: m.unit.clone(),
                description: m.description.clone(),
                value,
                buckets: m.buckets.clone(),
                attributes,
            });
        }
        out
    }

    fn pricing(&mut self, specs: &[spec::PriceSpec]) -> Vec<Price> {
        let mut out = Vec::new();
        for (i, p) in specs.iter().enumerate() {
            let pointer = format!("/pricing/{i}");
            let negative = [Some(p.input), Some(p.output), p.cached_input]
                .into_iter()
                .flatten()
                .any(|v| v < 0.0 || !v.is_finite());
            if negative {
                self.problem(
                    pointer.clone(),
                    "prices must be finite and not negative".into(),
                    None,
                );
            }
            let (model, prefix) = match p.model.strip_suffix('*') {
                Some(stem) => (stem.to_string(), true),
                None => (p.model.clone(), false),
            };
            if model.contains('*') {
                self.problem(
                    ptr(&pointer, "model"),
                    "`*` is only allowed at the end".into(),
                    None,
                );
            }
            out.push(Price {
                model,
                prefix,
                input: p.input,
                output: p.output,
                cached_input: p.cached_input.unwrap_or(p.input),
            });
        }
        out
    }
}

struct Shared<'a> {
    provider: Arc<str>,
    provider_name: Arc<str>,
    prefixes: &'a [String],
    metrics: Arc<Vec<Metric>>,
    pricing: Arc<Vec<Price>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PhaseKind {
    Request,
    Response,
}
