//! The load pipeline: YAML → schema check → `extends` merge → typed spec → lowered rules, with every
//! problem of every file collected into one list of diagnostics.

use std::collections::{BTreeSet, HashMap};

use super::lower::{Lowerer, Problem};
use super::merge::{merge, OperationOrigins};
use super::rules::Provider;
use super::schema_check;
use crate::diagnostic::{did_you_mean, location_of, Diagnostic, Diagnostics};
use crate::spec::ProviderSpec;
use crate::yaml::{self, Document, Pos};

/// A provider file's name and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The name used in diagnostics, usually the path as given (`providers/openai.yaml`).
    pub name: String,
    /// The YAML text.
    pub text: String,
}

struct Parsed {
    name: String,
    doc: Document,
    /// Whether the file passed the YAML and schema checks on its own, outside its operations.
    ok: bool,
    /// Operations (by index in the file) that failed the schema check: they are left out of the
    /// compiled provider, and the others are still compiled so that their problems are reported
    /// in the same run.
    bad_ops: BTreeSet<usize>,
}

/// Compiles provider sources. Returns the providers that compiled and the problems of the others.
pub fn compile_sources(sources: &[Source]) -> (Vec<Provider>, Diagnostics) {
    let mut diags = Vec::new();
    let mut parsed = Vec::new();
    for source in sources {
        parsed.push(parse_one(source, &mut diags));
    }
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for (i, p) in parsed.iter().enumerate() {
        let Some(id) = p.doc.value.get("id").and_then(|v| v.as_str()) else {
            continue;
        };
        if let Some(first) = by_id.get(id) {
            if let Some(other) = parsed.get(*first) {
                diags.push(diagnostic(
                    &p.name,
                    &p.doc,
                    "/id",
                    format!("provider id `{id}` is already defined in {}", other.name),
                    None,
                ));
            }
            continue;
        }
        by_id.insert(id.to_string(), i);
    }
    let mut providers = Vec::new();
    for (i, p) in parsed.iter().enumerate() {
        if !p.ok {
            continue;
        }
        let Some(chain) = chain_of(i, &parsed, &by_id, &mut diags) else {
            continue;
        };
        if chain.iter().any(|&j| parsed.get(j).is_some_and(|q| !q.ok)) {
            continue; // the ancestor's own problems are reported for its file
        }
        let (merged, layers) = merge_chain(&chain, &parsed);
        let (merged, layers) = without_bad_operations(merged, layers, &parsed);
        let spec: ProviderSpec = match serde_json::from_value(merged) {
            Ok(spec) => spec,
            Err(e) => {
                diags.push(diagnostic(
                    &p.name,
                    &p.doc,
                    "",
                    format!("cannot read the provider: {e}"),
                    None,
                ));
                continue;
            }
        };
        let mut lowerer = Lowerer::default();
        let provider = lowerer.provider(&spec, &p.name);
        for problem in lowerer.problems {
            diags.push(resolve(&problem, &layers, &parsed));
        }
        providers.extend(provider);
    }
    diags.sort();
    diags.dedup();
    (providers, Diagnostics(diags))
}

/// Provider ids the gateway keeps for its own paths (`GET /healthz`, `GET /metrics`), where a
/// provider of that id could not be reached.
const RESERVED_IDS: [&str; 2] = ["healthz", "metrics"];

fn parse_one(source: &Source, diags: &mut Vec<Diagnostic>) -> Parsed {
    let doc = match yaml::parse(&source.text) {
        Ok(doc) => doc,
        Err(e) => {
            diags.push(Diagnostic {
                file: source.name.clone(),
                line: e.pos.line,
                col: e.pos.col,
                location: String::new(),
                message: format!("invalid YAML: {}", e.message),
                help: None,
            });
            return Parsed {
                name: source.name.clone(),
                doc: Document::default(),
                ok: false,
                bad_ops: BTreeSet::new(),
            };
        }
    };
    if !doc.value.is_object() {
        diags.push(diagnostic(
            &source.name,
            &doc,
            "",
            "a provider file must be a mapping with `id` and `operations`".into(),
            None,
        ));
        return Parsed {
            name: source.name.clone(),
            doc,
            ok: false,
            bad_ops: BTreeSet::new(),
        };
    }
    let mut ok = true;
    let mut bad_ops = BTreeSet::new();
    for problem in schema_check::check(&doc.value) {
        match split_operation(&problem.pointer) {
            (Some(op), _) => {
                bad_ops.insert(op);
            }
            (None, _) => ok = false,
        }
        diags.push(diagnostic(
            &source.name,
            &doc,
            &problem.pointer,
            problem.message,
            problem.help,
        ));
    }
    let stem = std::path::Path::new(&source.name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    if let Some(id) = doc.value.get("id").and_then(|v| v.as_str()) {
        if id != stem && !stem.is_empty() {
            ok = false;
            diags.push(diagnostic(
                &source.name,
                &doc,
                "/id",
                format!("id `{id}` does not match the file name `{stem}`"),
                Some(format!(
                    "rename the file to `{id}.yaml` or set `id: {stem}`"
                )),
            ));
        } else if !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            || id.is_empty()
        {
            ok = false;
            diags.push(diagnostic(
                &source.name,
                &doc,
                "/id",
                format!("id `{id}` must use only lower-case letters, digits and `_`"),
                None,
            ));
        } else if RESERVED_IDS.contains(&id) {
            ok = false;
            diags.push(diagnostic(
                &source.name,
                &doc,
                "/id",
                format!("id `{id}` is reserved: the gateway answers `/{id}` itself"),
                Some("choose another id (and file name)".into()),
            ));
        }
    }
    Parsed {
        name: source.name.clone(),
        doc,
        ok,
        bad_ops,
    }
}

/// The `extends` chain from the root ancestor down to `start`.
fn chain_of(
    start: usize,
    parsed: &[Parsed],
    by_id: &HashMap<String, usize>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<usize>> {
    let mut chain = vec![start];
    let mut current = start;
    loop {
        let p = parsed.get(current)?;
        let Some(parent) = p.doc.value.get("extends").and_then(|v| v.as_str()) else {
            break;
        };
        let Some(&next) = by_id.get(parent) else {
            if current == start {
                let help = did_you_mean(parent, by_id.keys().map(String::as_str))
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| Some("`extends` names a bundled provider or another provider file loaded in the same run".into()));
                diags.push(diagnostic(
                    &p.name,
                    &p.doc,
                    "/extends",
                    format!("unknown provider `{parent}`"),
                    help,
                ));
            }
            return None;
        };
        if chain.contains(&next) {
            if current == start || next == start {
                let mut names: Vec<String> = chain
                    .iter()
                    .filter_map(|&j| {
                        parsed
                            .get(j)?
                            .doc
                            .value
                            .get("id")?
                            .as_str()
                            .map(str::to_string)
                    })
                    .collect();
                names.push(parent.to_string());
                let first = parsed.get(start)?;
                diags.push(diagnostic(
                    &first.name,
                    &first.doc,
                    "/extends",
                    format!("`extends` forms a cycle: {}", names.join(" → ")),
                    Some("a provider cannot extend itself, directly or through others".into()),
                ));
            }
            return None;
        }
        chain.push(next);
        current = next;
    }
    chain.reverse();
    Some(chain)
}

/// One file's share of a merged provider.
struct Layer {
    file: usize,
    origins: OperationOrigins,
}

/// Merges a chain (root first); returns the merged value and its layers, child first.
fn merge_chain(chain: &[usize], parsed: &[Parsed]) -> (serde_json::Value, Vec<Layer>) {
    let mut layers: Vec<Layer> = Vec::new();
    let mut merged = serde_json::Value::Null;
    for (n, &i) in chain.iter().enumerate() {
        let Some(doc) = parsed.get(i).map(|p| &p.doc.value) else {
            continue;
        };
        if n == 0 {
            let count = doc
                .get("operations")
                .and_then(|o| o.as_array())
                .map_or(0, Vec::len);
            merged = doc.clone();
            layers.push(Layer {
                file: i,
                origins: (0..count).map(Some).collect(),
            });
            continue;
        }
        let (next, from_parent, from_child) = merge(&merged, doc);
        for layer in &mut layers {
            layer.origins = from_parent
                .iter()
                .map(|k| k.and_then(|k| layer.origins.get(k).copied().flatten()))
                .collect();
        }
        layers.push(Layer {
            file: i,
            origins: from_child,
        });
        merged = next;
    }
    layers.reverse();
    (merged, layers)
}

/// Drops from a merged provider the operations that come from an operation of any layer that
/// failed the schema check (its problems are reported already), keeping the layers' origins in
/// step.
fn without_bad_operations(
    mut merged: serde_json::Value,
    mut layers: Vec<Layer>,
    parsed: &[Parsed],
) -> (serde_json::Value, Vec<Layer>) {
    let bad = |j: usize| {
        layers.iter().any(|layer| {
            let origin = layer.origins.get(j).copied().flatten();
            let file = parsed.get(layer.file);
            matches!((origin, file), (Some(i), Some(p)) if p.bad_ops.contains(&i))
        })
    };
    let count = merged
        .get("operations")
        .and_then(|o| o.as_array())
        .map_or(0, Vec::len);
    let keep: Vec<bool> = (0..count).map(|j| !bad(j)).collect();
    if keep.iter().all(|k| *k) {
        return (merged, layers);
    }
    if let Some(ops) = merged.get_mut("operations").and_then(|o| o.as_array_mut()) {
        let mut n = 0;
        ops.retain(|_| {
            n += 1;
            keep.get(n - 1).copied().unwrap_or(true)
        });
    }
    for layer in &mut layers {
        let mut n = 0;
        layer.origins.retain(|_| {
            n += 1;
            keep.get(n - 1).copied().unwrap_or(true)
        });
    }
    (merged, layers)
}

/// Finds the file and place of a problem in a merged provider.
fn resolve(problem: &Problem, layers: &[Layer], parsed: &[Parsed]) -> Diagnostic {
    let (op_index, rest) = split_operation(&problem.pointer);
    let rewrite = |layer: &Layer| -> Option<String> {
        match op_index {
            None => Some(problem.pointer.clone()),
            Some(j) => layer
                .origins
                .get(j)
                .copied()
                .flatten()
                .map(|i| format!("/operations/{i}{rest}")),
        }
    };
    for layer in layers {
        let (Some(pointer), Some(p)) = (rewrite(layer), parsed.get(layer.file)) else {
            continue;
        };
        if p.doc.exact_position(&pointer).is_some() {
            return diagnostic(
                &p.name,
                &p.doc,
                &pointer,
                problem.message.clone(),
                problem.help.clone(),
            );
        }
    }
    for layer in layers {
        let (Some(pointer), Some(p)) = (rewrite(layer), parsed.get(layer.file)) else {
            continue;
        };
        return diagnostic(
            &p.name,
            &p.doc,
            &pointer,
            problem.message.clone(),
            problem.help.clone(),
        );
    }
    Diagnostic {
        file: String::new(),
        line: 1,
        col: 1,
        location: location_of(&problem.pointer),
        message: problem.message.clone(),
        help: problem.help.clone(),
    }
}

fn split_operation(pointer: &str) -> (Option<usize>, &str) {
    let Some(rest) = pointer.strip_prefix("/operations/") else {
        return (None, pointer);
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].parse() {
        Ok(j) => (Some(j), &rest[end..]),
        Err(_) => (None, pointer),
    }
}

fn diagnostic(
    file: &str,
    doc: &Document,
    pointer: &str,
    message: String,
    help: Option<String>,
) -> Diagnostic {
    let Pos { line, col } = doc.position(pointer);
    Diagnostic {
        file: file.to_string(),
        line,
        col,
        location: location_of(pointer),
        message,
        help,
    }
}
