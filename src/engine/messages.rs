//! Message rules → the role/parts JSON of the GenAI semantic conventions, written as JSON text.

use super::eval::{eval, holds, Scope};
use super::json_text::{build_array, write_key, write_str, write_value};
use crate::compile::rules::PartType;
use crate::compile::rules::{MessageRule, PartRule, ToolRule};
use crate::compile::JsonPath;
use serde_json::Value as Json;

/// Messages produced by rules, in rule order then document order, as a JSON array; `None` when
/// there are none.
pub fn messages(rules: &[MessageRule], scope: &Scope<'_>) -> Option<String> {
    if rules.is_empty() {
        return None;
    }
    build_array(|out| write_messages(out, rules, scope))
}

fn write_messages(out: &mut String, rules: &[MessageRule], scope: &Scope<'_>) {
    for rule in rules {
        for_items(rule.each.as_ref(), scope.doc, &mut |item| {
            // A message is an object: an `each` that selects text (an error reply's `message`
            // string) selects no message.
            if rule.each.is_some() && !item.is_object() {
                return;
            }
            let item_scope = scope.with_doc(item);
            if rule.when.as_ref().is_some_and(|c| !holds(c, &item_scope)) {
                return;
            }
            if out.len() > 1 {
                out.push(',');
            }
            out.push('{');
            if let Some(role) = rule.role.as_ref().and_then(|v| eval(v, &item_scope)) {
                write_key(out, "role");
                write_value(out, &role);
            }
            write_key(out, "parts");
            out.push('[');
            write_parts(out, &rule.parts, &item_scope);
            out.push(']');
            if let Some(name) = rule.name.as_ref().and_then(|v| eval(v, &item_scope)) {
                write_key(out, "name");
                write_value(out, &name);
            }
            if let Some(reason) = rule
                .finish_reason
                .as_ref()
                .and_then(|v| eval(v, &item_scope))
            {
                write_key(out, "finish_reason");
                write_value(out, &reason);
            }
            out.push('}');
        });
    }
}

/// Calls `f` with each item `each` selects, or with the document itself. A `null` item is no
/// item: a key holding `null` yields what an absent key yields (no message, no part).
fn for_items<'a>(each: Option<&JsonPath>, doc: &'a Json, f: &mut dyn FnMut(&'a Json)) {
    match each {
        Some(path) => path.for_each(doc, &mut |item| {
            if !item.is_null() {
                f(item);
            }
        }),
        None => f(doc),
    }
}

/// Writes the parts produced by part rules on one message, comma-separated, after what `out`
/// holds (an opened array). Rules that share an `each` selector (a group) run together item by
/// item, so parts keep the order of the blocks they come from; groups keep rule order.
fn write_parts(out: &mut String, rules: &[PartRule], scope: &Scope<'_>) {
    for (i, first) in rules.iter().enumerate() {
        if first.group != i {
            continue;
        }
        let members = rules.get(i..).unwrap_or_default();
        for_items(first.each.as_ref(), scope.doc, &mut |item| {
            let item_scope = scope.with_doc(item);
            for rule in members.iter().filter(|r| r.group == i) {
                write_part(out, rule, &item_scope);
            }
        });
    }
}

/// Writes one part, or nothing when its condition fails or its required field is absent.
fn write_part(out: &mut String, rule: &PartRule, scope: &Scope<'_>) {
    if rule.when.as_ref().is_some_and(|c| !holds(c, scope)) {
        return;
    }
    let start = out.len();
    if !out.ends_with('[') {
        out.push(',');
    }
    out.push('{');
    write_key(out, "type");
    if rule.part_type == PartType::Generic {
        // A generic part is written with its own type, and only when it has one.
        let kind = rule.fields.iter().find(|(name, _)| *name == "kind");
        let kind = kind.and_then(|(_, value)| eval(value, scope));
        let Some(Json::String(kind)) = kind.as_deref() else {
            out.truncate(start);
            return;
        };
        write_str(out, kind);
    } else {
        write_str(out, rule.part_type.as_str());
    }
    let mut complete = false;
    for (name, value) in &rule.fields {
        if rule.part_type == PartType::Generic && *name == "kind" {
            complete = true;
            continue;
        }
        if let Some(v) = eval(value, scope) {
            write_key(out, name);
            write_value(out, &v);
            complete |= *name == rule.required;
        }
    }
    if complete {
        out.push('}');
    } else {
        out.truncate(start);
    }
}

/// System instruction parts as a JSON array; `None` when there are none.
pub fn system_instructions(rules: &[PartRule], scope: &Scope<'_>) -> Option<String> {
    if rules.is_empty() {
        return None;
    }
    build_array(|out| write_parts(out, rules, scope))
}

/// Tool definitions as a JSON array; `None` when there are none.
pub fn tool_definitions(rules: &[ToolRule], scope: &Scope<'_>) -> Option<String> {
    if rules.is_empty() {
        return None;
    }
    build_array(|out| write_tools(out, rules, scope))
}

fn write_tools(out: &mut String, rules: &[ToolRule], scope: &Scope<'_>) {
    for rule in rules {
        for_items(Some(&rule.each), scope.doc, &mut |item| {
            let item_scope = scope.with_doc(item);
            if rule.when.as_ref().is_some_and(|c| !holds(c, &item_scope)) {
                return;
            }
            let Some(name) = eval(&rule.name, &item_scope) else {
                return;
            };
            if out.len() > 1 {
                out.push(',');
            }
            out.push('{');
            write_key(out, "type");
            match rule.tool_type.as_ref().and_then(|v| eval(v, &item_scope)) {
                Some(tool_type) => write_value(out, &tool_type),
                None => write_str(out, "function"),
            }
            write_key(out, "name");
            write_value(out, &name);
            if let Some(d) = rule.description.as_ref().and_then(|v| eval(v, &item_scope)) {
                write_key(out, "description");
                write_value(out, &d);
            }
            if let Some(p) = rule.parameters.as_ref().and_then(|v| eval(v, &item_scope)) {
                write_key(out, "parameters");
                write_value(out, &p);
            }
            out.push('}');
        });
    }
}
