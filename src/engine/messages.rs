//! Message rules → the role/parts JSON of the GenAI semantic conventions.

use serde_json::{Map, Value as Json};

use super::eval::{eval, holds, Scope};
use crate::compile::rules::{MessageRule, PartRule, ToolRule};

/// Messages produced by rules, in rule order then document order; `None` when there are none.
pub fn messages(rules: &[MessageRule], scope: &Scope<'_>) -> Option<Json> {
    let mut out = Vec::new();
    for rule in rules {
        for item in items(rule.each.as_ref(), scope.doc) {
            let item_scope = scope.with_doc(item);
            if rule.when.as_ref().is_some_and(|c| !holds(c, &item_scope)) {
                continue;
            }
            let mut message = Map::new();
            if let Some(role) = rule.role.as_ref().and_then(|v| eval(v, &item_scope)) {
                message.insert("role".into(), role);
            }
            let parts = parts(&rule.parts, &item_scope);
            message.insert("parts".into(), Json::Array(parts));
            if let Some(name) = rule.name.as_ref().and_then(|v| eval(v, &item_scope)) {
                message.insert("name".into(), name);
            }
            if let Some(reason) = rule
                .finish_reason
                .as_ref()
                .and_then(|v| eval(v, &item_scope))
            {
                message.insert("finish_reason".into(), reason);
            }
            out.push(Json::Object(message));
        }
    }
    (!out.is_empty()).then_some(Json::Array(out))
}

/// The items `each` selects, or the document itself.
fn items<'a>(each: Option<&crate::compile::JsonPath>, doc: &'a Json) -> Vec<&'a Json> {
    let mut found = Vec::new();
    match each {
        Some(path) => path.select(doc, &mut found),
        None => found.push(doc),
    }
    found
}

/// Parts produced by part rules on one message. Rules that share an `each` selector run together
/// item by item, so parts keep the order of the blocks they come from; groups keep rule order.
pub fn parts(rules: &[PartRule], scope: &Scope<'_>) -> Vec<Json> {
    let mut out = Vec::new();
    let mut grouped = vec![false; rules.len()];
    for (i, first) in rules.iter().enumerate() {
        if grouped.get(i).copied().unwrap_or(true) {
            continue;
        }
        let selector = first.each.as_ref().map(|p| p.as_str());
        let mut group = Vec::new();
        for (j, rule) in rules.iter().enumerate().skip(i) {
            if rule.each.as_ref().map(|p| p.as_str()) == selector {
                group.push(rule);
                if let Some(flag) = grouped.get_mut(j) {
                    *flag = true;
                }
            }
        }
        for item in items(first.each.as_ref(), scope.doc) {
            let item_scope = scope.with_doc(item);
            out.extend(group.iter().filter_map(|rule| part(rule, &item_scope)));
        }
    }
    out
}

fn part(rule: &PartRule, scope: &Scope<'_>) -> Option<Json> {
    if rule.when.as_ref().is_some_and(|c| !holds(c, scope)) {
        return None;
    }
    let mut part = Map::new();
    part.insert("type".into(), Json::String(rule.part_type.as_str().into()));
    for (name, value) in &rule.fields {
        if let Some(v) = eval(value, scope) {
            part.insert((*name).into(), v);
        }
    }
    part.contains_key(rule.required)
        .then_some(Json::Object(part))
}

/// System instruction parts; `None` when there are none.
pub fn system_instructions(rules: &[PartRule], scope: &Scope<'_>) -> Option<Json> {
    let parts = parts(rules, scope);
    (!parts.is_empty()).then_some(Json::Array(parts))
}

/// Tool definitions; `None` when there are none.
pub fn tool_definitions(rules: &[ToolRule], scope: &Scope<'_>) -> Option<Json> {
    let mut out = Vec::new();
    for rule in rules {
        let mut items = Vec::new();
        rule.each.select(scope.doc, &mut items);
        for item in items {
            let item_scope = scope.with_doc(item);
            if rule.when.as_ref().is_some_and(|c| !holds(c, &item_scope)) {
                continue;
            }
            let Some(name) = eval(&rule.name, &item_scope) else {
                continue;
            };
            let tool_type = rule
                .tool_type
                .as_ref()
                .and_then(|v| eval(v, &item_scope))
                .unwrap_or_else(|| Json::String("function".into()));
            let mut tool = Map::new();
            tool.insert("type".into(), tool_type);
            tool.insert("name".into(), name);
            if let Some(d) = rule.description.as_ref().and_then(|v| eval(v, &item_scope)) {
                tool.insert("description".into(), d);
            }
            if let Some(p) = rule.parameters.as_ref().and_then(|v| eval(v, &item_scope)) {
                tool.insert("parameters".into(), p);
            }
            out.push(Json::Object(tool));
        }
    }
    (!out.is_empty()).then_some(Json::Array(out))
}
