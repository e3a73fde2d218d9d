//! Checks a provider document against the generated JSON Schema, turning each schema error into a
//! problem at the exact node, with "did you mean" help for unknown keys and enum values.

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use super::lower::Problem;
use crate::diagnostic::did_you_mean;
use crate::spec::provider_schema;

struct Checker {
    schema: Value,
    validator: Option<Validator>,
}

fn checker() -> &'static Checker {
    static CHECKER: OnceLock<Checker> = OnceLock::new();
    CHECKER.get_or_init(|| {
        let schema = provider_schema();
        let validator = jsonschema::validator_for(&schema).ok();
        Checker { schema, validator }
    })
}

/// Validates one provider document; an empty result means it fits the schema.
pub fn check(doc: &Value) -> Vec<Problem> {
    let checker = checker();
    let Some(validator) = &checker.validator else {
        return vec![Problem {
            pointer: String::new(),
            message: "internal error: the provider schema does not compile".into(),
            help: None,
        }];
    };
    let mut problems = Vec::new();
    for error in validator.iter_errors(doc) {
        explain(&error, &checker.schema, &mut problems);
    }
    problems.sort_by(|a, b| a.pointer.cmp(&b.pointer));
    problems.dedup();
    problems
}

fn explain(error: &ValidationError<'_>, schema: &Value, out: &mut Vec<Problem>) {
    let pointer = error.instance_path().as_str().to_string();
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let allowed = allowed_keys(schema, error.schema_path().as_str());
            for key in unexpected {
                let help = did_you_mean(key, allowed.iter().map(String::as_str))
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| {
                        (!allowed.is_empty()).then(|| {
                            format!(
                                "allowed keys here: {}",
                                allowed
                                    .iter()
                                    .map(|a| format!("`{a}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        })
                    });
                out.push(Problem {
                    pointer: format!("{pointer}/{}", crate::yaml::escape_segment(key)),
                    message: format!("unknown key `{key}`"),
                    help,
                });
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| property.to_string());
            out.push(Problem {
                pointer,
                message: format!("missing required key `{name}`"),
                help: None,
            });
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            // Report the branch that had the right JSON type, if exactly one did.
            let typed: Vec<&Vec<ValidationError<'static>>> = context
                .iter()
                .filter(|branch| {
                    !branch.iter().any(|e| {
                        matches!(e.kind(), ValidationErrorKind::Type { .. })
                            && (e.instance_path().as_str() == pointer
                                || e.instance_path().as_str().is_empty())
                    })
                })
                .collect();
            let constants: Vec<String> = context
                .iter()
                .flatten()
                .filter_map(|e| match e.kind() {
                    ValidationErrorKind::Constant { expected_value } => {
                        expected_value.as_str().map(str::to_string)
                    }
                    _ => None,
                })
                .collect();
            let all_constants = context.iter().all(|branch| {
                branch.iter().all(|e| {
                    matches!(
                        e.kind(),
                        ValidationErrorKind::Constant { .. } | ValidationErrorKind::Type { .. }
                    )
                })
            });
            if all_constants && !constants.is_empty() {
                out.push(choice_problem(pointer, error.instance(), &constants));
                return;
            }
            match typed.as_slice() {
                [branch] => branch.iter().for_each(|e| explain(e, schema, out)),
                _ => out.push(Problem {
                    pointer,
                    message: format!("unexpected value {}", short(error.instance())),
                    help: expected_help(schema, error.schema_path().as_str()),
                }),
            }
        }
        ValidationErrorKind::Enum { options } => {
            let choices: Vec<String> = options
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            out.push(choice_problem(pointer, error.instance(), &choices));
        }
        ValidationErrorKind::Type { kind } => {
            let debug = format!("{kind:?}").to_lowercase();
            let expected: Vec<&str> = [
                ("object", "a mapping"),
                ("array", "a list"),
                ("string", "a string"),
                ("integer", "an integer"),
                ("number", "a number"),
                ("boolean", "a boolean"),
            ]
            .into_iter()
            .filter(|(word, _)| debug.contains(word))
            .map(|(_, name)| name)
            .collect();
            out.push(Problem {
                pointer,
                message: format!(
                    "expected {}, found {}",
                    expected.join(" or "),
                    describe(error.instance())
                ),
                help: None,
            });
        }
        _ => out.push(Problem {
            pointer,
            message: error.to_string(),
            help: None,
        }),
    }
}

fn choice_problem(pointer: String, value: &Value, choices: &[String]) -> Problem {
    let help = value
        .as_str()
        .and_then(|v| did_you_mean(v, choices.iter().map(String::as_str)))
        .map(|s| format!("did you mean `{s}`?"))
        .unwrap_or_else(|| {
            let list: Vec<String> = choices.iter().map(|c| format!("`{c}`")).collect();
            format!("expected one of {}", list.join(", "))
        });
    Problem {
        pointer,
        message: format!("unexpected value {}", short(value)),
        help: Some(help),
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 {
        let cut: String = text.chars().take(37).collect();
        format!("`{cut}...`")
    } else {
        format!("`{text}`")
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => format!("number `{n}`"),
        Value::String(s) => format!("string {}", short(&Value::String(s.clone()))),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

/// Resolves a schema pointer, following `$ref`s to `#/$defs/...`.
fn resolve<'a>(schema: &'a Value, pointer: &str) -> Option<&'a Value> {
    let mut node = schema;
    for raw in pointer.split('/').skip(1) {
        let segment = raw.replace("~1", "/").replace("~0", "~");
        node = match node {
            Value::Object(map) => map.get(&segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
        if segment == "$ref" {
            let target = node.as_str()?.strip_prefix('#')?;
            node = resolve(schema, target)?;
        }
    }
    Some(node)
}

fn allowed_keys(schema: &Value, schema_path: &str) -> Vec<String> {
    let object_path = schema_path.trim_end_matches("/additionalProperties");
    let Some(node) = resolve(schema, object_path) else {
        return Vec::new();
    };
    let node = follow_ref(schema, node);
    node.get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn follow_ref<'a>(schema: &'a Value, node: &'a Value) -> &'a Value {
    match node
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
    {
        Some(target) => resolve(schema, target).unwrap_or(node),
        None => node,
    }
}

fn expected_help(schema: &Value, schema_path: &str) -> Option<String> {
    let node = resolve(
        schema,
        schema_path
            .trim_end_matches("/anyOf")
            .trim_end_matches("/oneOf"),
    )?;
    let description = follow_ref(schema, node)
        .get("description")
        .and_then(Value::as_str)?;
    Some(description.lines().next().unwrap_or_default().to_string())
}
