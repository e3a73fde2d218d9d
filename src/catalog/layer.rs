//! Layering local provider specs on the bundled ones: which bundled provider a local file
//! replaces, and compiling the result without recompiling the bundled providers a change cannot
//! affect (they are compiled once per process).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::OnceLock;

use super::{bundled, Catalog};
use crate::compile::rules::Provider;
use crate::compile::{compile_sources, Source};
use crate::Diagnostics;

/// A catalog with the bundled providers that local files replaced in it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The compiled providers.
    pub catalog: Catalog,
    /// Bundled providers replaced by a local file of the same id.
    pub replaced: Vec<Replacement>,
}

/// A local spec file that takes the place of a bundled provider of the same id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    /// The provider id.
    pub id: String,
    /// The local file, as named in diagnostics.
    pub file: String,
    /// Whether the local file's text is the bundled text (a copy of the bundled directory).
    pub identical: bool,
}

/// Sources put together from the bundled set and local files.
#[derive(Debug, Clone, Default)]
pub struct Layered {
    /// Bundled sources not replaced (in name order), then the local ones (in their order).
    pub sources: Vec<Source>,
    /// The bundled providers local files replaced.
    pub replaced: Vec<Replacement>,
}

/// The bundled specs as sources named `providers/NAME.yaml`.
pub fn bundled_sources() -> Vec<Source> {
    bundled::PROVIDERS
        .iter()
        .map(|(name, text)| Source {
            name: format!("providers/{name}"),
            text: (*text).to_string(),
        })
        .collect()
}

/// The provider id a source declares by its file name (a spec's `id` must equal its file stem;
/// a file that breaks the rule is reported by the compiler).
pub fn source_id(source: &Source) -> &str {
    Path::new(&source.name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
}

/// The bundled sources with `local` on top: a local source with a bundled provider's id replaces
/// it, every other local source is added.
pub fn layer_on_bundled(local: Vec<Source>) -> Layered {
    let mut replaced = Vec::new();
    let bundled: Vec<Source> = bundled_sources()
        .into_iter()
        .filter(|b| {
            let id = source_id(b);
            let Some(over) = local.iter().find(|l| source_id(l) == id) else {
                return true;
            };
            replaced.push(Replacement {
                id: id.to_string(),
                file: over.name.clone(),
                identical: over.text == b.text,
            });
            false
        })
        .collect();
    let mut sources = bundled;
    sources.extend(local);
    Layered { sources, replaced }
}

/// The bundled providers, compiled once per process (they cannot change while it runs).
pub(super) fn compiled_bundled() -> Result<&'static [Provider], &'static Diagnostics> {
    static COMPILED: OnceLock<Result<Vec<Provider>, Diagnostics>> = OnceLock::new();
    COMPILED
        .get_or_init(|| {
            let (providers, diags) = compile_sources(&bundled_sources());
            if diags.is_empty() {
                Ok(providers)
            } else {
                Err(diags)
            }
        })
        .as_ref()
        .map(Vec::as_slice)
}

/// Compiles layered sources. Only the local sources are compiled, with the bundled ones they
/// extend (directly or not) and the bundled ones that extend a replaced provider; every other
/// bundled provider is taken as compiled once per process, since nothing local can change it.
/// The result is the catalog a compilation of every source would give.
pub(super) fn compile_layered(layered: &Layered) -> Result<Catalog, Diagnostics> {
    let Ok(cached) = compiled_bundled() else {
        return Catalog::from_sources(&layered.sources);
    };
    let bundled_parent: HashMap<&str, Option<&str>> = cached
        .iter()
        .map(|p| (&*p.id, p.extends.as_deref()))
        .collect();
    // A replacement identical to the bundled text compiles to the bundled provider: it is taken
    // as compiled, under its local file name, and touches nothing that extends it.
    let replaced: BTreeSet<&str> = layered
        .replaced
        .iter()
        .filter(|r| !r.identical)
        .map(|r| r.id.as_str())
        .collect();
    let copies: HashMap<&str, &str> = layered
        .replaced
        .iter()
        .filter(|r| r.identical)
        .map(|r| (r.id.as_str(), r.file.as_str()))
        .collect();
    // A local source either replaces a bundled provider or has an id no bundled one has.
    let local_parent: HashMap<&str, Option<String>> = layered
        .sources
        .iter()
        .filter(|s| {
            let id = source_id(s);
            !copies.contains_key(id) && (replaced.contains(id) || !bundled_parent.contains_key(id))
        })
        .map(|s| (source_id(s), declared_extends(s)))
        .collect();
    let parent_of = |id: &str| -> Option<String> {
        match local_parent.get(id) {
            Some(parent) => parent.clone(),
            None => bundled_parent
                .get(id)
                .copied()
                .flatten()
                .map(str::to_string),
        }
    };
    let mut needed: BTreeSet<String> = BTreeSet::new();
    // The bundled ancestors of every local spec.
    for id in local_parent.keys() {
        for ancestor in chain(id, &parent_of).into_iter().skip(1) {
            if !local_parent.contains_key(ancestor.as_str()) {
                needed.insert(ancestor);
            }
        }
    }
    // The bundled providers that extend a replaced one, with their ancestors.
    for p in cached {
        let ids = chain(&p.id, &parent_of);
        if ids.iter().any(|id| replaced.contains(id.as_str())) {
            needed.extend(
                ids.into_iter()
                    .filter(|id| !local_parent.contains_key(id.as_str())),
            );
        }
    }
    let sources: Vec<Source> = layered
        .sources
        .iter()
        .filter(|s| {
            let id = source_id(s);
            local_parent.contains_key(id) || needed.contains(id)
        })
        .cloned()
        .collect();
    let compiled_ids: BTreeSet<String> = sources.iter().map(|s| source_id(s).to_string()).collect();
    let (mut providers, diags) = compile_sources(&sources);
    if !diags.is_empty() {
        return Err(diags);
    }
    providers.extend(
        cached
            .iter()
            .filter(|p| !compiled_ids.contains(&*p.id) && !replaced.contains(&*p.id))
            .map(|p| {
                let mut p = p.clone();
                if let Some(file) = copies.get(&*p.id) {
                    p.file = (*file).to_string();
                }
                p
            }),
    );
    Ok(Catalog::from_providers(providers))
}

/// The `extends` a source declares, read without compiling it (`None` when it has none or does
/// not parse; the compiler reports the latter).
fn declared_extends(source: &Source) -> Option<String> {
    let doc = crate::yaml::parse(&source.text).ok()?;
    doc.value
        .get("extends")
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// `id` and its ancestors, nearest first; stops at a cycle (the compiler reports it).
fn chain(id: &str, parent_of: &impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut ids = vec![id.to_string()];
    let mut current = id.to_string();
    while let Some(parent) = parent_of(&current) {
        if ids.contains(&parent) {
            break;
        }
        ids.push(parent.clone());
        current = parent;
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled_text(id: &str) -> String {
        bundled::PROVIDERS
            .iter()
            .find(|(name, _)| *name == format!("{id}.yaml"))
            .map(|(_, text)| (*text).to_string())
            .unwrap()
    }

    /// Provider ids with their operation ids and routes, in catalog order.
    fn shape(catalog: &Catalog) -> Vec<(String, String, Vec<String>)> {
        catalog
            .providers()
            .iter()
            .flat_map(|p| {
                p.operations.iter().map(|o| {
                    let routes = o
                        .routes
                        .iter()
                        .map(|r| format!("{} {}", r.method, r.template.source))
                        .collect();
                    (format!("{} {}", p.id, p.file), o.id.to_string(), routes)
                })
            })
            .collect()
    }

    #[test]
    fn compiling_only_what_a_local_change_touches_gives_the_full_compilation() {
        let extra = format!(
            "{}\n  - id: extra\n    operation_name: chat\n    match: {{ method: POST, path: /extra }}\n",
            bundled_text("openai").trim_end()
        );
        let cases: Vec<Vec<Source>> = vec![
            vec![],
            vec![Source {
                name: "mine/openai.yaml".into(),
                text: extra,
            }],
            vec![Source {
                name: "mine/acme.yaml".into(),
                text: "id: acme\nextends: groq\nprovider_name: acme\n".into(),
            }],
            vec![
                Source {
                    name: "mine/openai.yaml".into(),
                    text: bundled_text("openai"),
                },
                Source {
                    name: "mine/acme.yaml".into(),
                    text: "id: acme\nextends: openai\nprovider_name: acme\n".into(),
                },
            ],
            vec![Source {
                name: "mine/gemini.yaml".into(),
                text: bundled_text("gemini")
                    .replace("name: Google Gemini API", "name: Gemini (local)"),
            }],
        ];
        for local in cases {
            let layered = layer_on_bundled(local.clone());
            let full = Catalog::from_sources(&layered.sources).unwrap();
            let partial = compile_layered(&layered).unwrap();
            assert_eq!(shape(&partial), shape(&full), "{local:?}");
        }
    }

    #[test]
    fn problems_of_a_bundled_provider_a_replacement_breaks_are_reported() {
        // A local openai whose `chat` operation has another id: the bundled providers that patch
        // `chat` now define an incomplete operation of their own.
        let text = bundled_text("openai").replace("  - id: chat\n", "  - id: chat_completions\n");
        let layered = layer_on_bundled(vec![Source {
            name: "mine/openai.yaml".into(),
            text,
        }]);
        let full = Catalog::from_sources(&layered.sources).unwrap_err();
        let partial = compile_layered(&layered).unwrap_err();
        assert!(
            full.iter().any(|d| d.file.starts_with("providers/")),
            "{full}"
        );
        assert_eq!(partial, full);
    }
}
