//! The catalog: compiled providers and the route lookup from an HTTP request to an operation.
//!
//! Providers come from the bundled set ([`bundled`]) with the specs of a directory layered on
//! top ([`Catalog::load_layered`]): a local spec whose id is a bundled provider's replaces it
//! (and is what every `extends` of that id resolves to), other local specs are added.
//!
//! Lookup cost does not grow with the number of providers: a known host or gateway prefix selects
//! the provider through a hash map, and routes are bucketed by method, segment count and first
//! literal segment.

pub mod bundled;
mod layer;

pub use layer::{bundled_sources, layer_on_bundled, source_id, Layered, Loaded, Replacement};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::compile::rules::{Operation, Provider};
use crate::compile::{compile_sources, RouteIndex, Source};
use crate::files::{ReadError, ReadLimits};
use crate::Diagnostics;

/// Why providers could not be loaded.
///
/// ```
/// use specter::{Catalog, LoadError};
///
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::write(dir.path().join("acme.yaml"), "id: acme\noperations: 3\n").unwrap();
/// match Catalog::load(&[dir.path().to_path_buf()]) {
///     Err(LoadError::Invalid(diagnostics)) => {
///         let first = diagnostics.iter().next().unwrap();
///         assert!(first.file.ends_with("acme.yaml"));
///         assert!(first.line >= 1);
///     }
///     other => panic!("{other:?}"),
/// }
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Specs have problems.
    #[error("{0}")]
    Invalid(Diagnostics),
    /// A provider file was refused: not a regular file, or over a size cap.
    #[error(transparent)]
    File(#[from] crate::files::ReadError),
}

/// An operation found for a request, with the captures of its path template.
#[derive(Debug, Clone)]
pub struct Match {
    /// The operation.
    pub operation: Arc<Operation>,
    /// Path captures, percent-decoded.
    pub captures: Vec<(String, String)>,
}

/// Compiled providers with their route index.
///
/// ```
/// let catalog = specter::Catalog::bundled().unwrap();
/// assert!(catalog.provider_ids().any(|id| id == "anthropic"));
/// assert!(catalog.operation_ids("openai").unwrap().contains(&"chat"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    providers: Vec<Arc<Provider>>,
    by_id: HashMap<String, usize>,
    hosts: HashMap<String, usize>,
    host_patterns: Vec<(String, String, usize)>,
    global: RouteIndex<(usize, usize)>,
    local: Vec<RouteIndex<usize>>,
}

impl Catalog {
    /// The providers bundled with specter (the `providers/` directory of its source).
    ///
    /// ```
    /// let catalog = specter::Catalog::bundled().unwrap();
    /// assert!(catalog.provider_ids().any(|id| id == "openai"));
    /// ```
    pub fn bundled() -> Result<Catalog, LoadError> {
        let providers = layer::compiled_bundled().map_err(|d| LoadError::Invalid(d.clone()))?;
        Ok(Catalog::from_providers(providers.to_vec()))
    }

    /// The providers of `paths` on top of the bundled ones (when `bundled` is set): a local spec
    /// whose id is a bundled provider's replaces it, and `extends` resolves against both. Returns
    /// the catalog and the bundled providers that local files replaced.
    ///
    /// Takes or returns types of specter's unstable internals: not covered by semver.
    #[doc(hidden)]
    pub fn load_layered(
        paths: &[PathBuf],
        limits: &ReadLimits,
        bundled: bool,
    ) -> Result<Loaded, LoadError> {
        let local = read_sources_within(paths, limits)?;
        let layered = if bundled {
            layer_on_bundled(local)
        } else {
            Layered {
                sources: local,
                replaced: Vec::new(),
            }
        };
        let catalog = if bundled {
            layer::compile_layered(&layered)
        } else {
            Catalog::from_sources(&layered.sources)
        }
        .map_err(LoadError::Invalid)?;
        Ok(Loaded {
            catalog,
            replaced: layered.replaced,
        })
    }

    /// Loads every `*.yaml` file of a directory, or the given files.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// std::fs::write(
    ///     dir.path().join("acme_ai.yaml"),
    ///     "id: acme_ai\nextends: openai\nupstream:\n  base_url: https://api.acme.example\n  hosts: [api.acme.example]\n",
    /// )
    /// .unwrap();
    /// // `extends` names a provider loaded in the same call: here the openai spec of this package.
    /// let paths = ["providers/openai.yaml".into(), dir.path().to_path_buf()];
    /// let catalog = specter::Catalog::load(&paths).unwrap();
    /// assert!(catalog.operation_ids("acme_ai").unwrap().contains(&"chat"));
    /// ```
    pub fn load(paths: &[PathBuf]) -> Result<Catalog, LoadError> {
        Catalog::load_within(paths, &ReadLimits::default())
    }

    /// [`Catalog::load`] with the given size caps.
    ///
    /// Takes or returns types of specter's unstable internals: not covered by semver.
    #[doc(hidden)]
    pub fn load_within(paths: &[PathBuf], limits: &ReadLimits) -> Result<Catalog, LoadError> {
        Catalog::from_sources(&read_sources_within(paths, limits)?).map_err(LoadError::Invalid)
    }

    /// Compiles sources; all problems are returned at once.
    ///
    /// Takes or returns types of specter's unstable internals: not covered by semver.
    #[doc(hidden)]
    pub fn from_sources(sources: &[Source]) -> Result<Catalog, Diagnostics> {
        let (providers, diags) = compile_sources(sources);
        if !diags.is_empty() {
            return Err(diags);
        }
        Ok(Catalog::from_providers(providers))
    }

    /// Builds the index over compiled providers.
    ///
    /// Takes or returns types of specter's unstable internals: not covered by semver.
    #[doc(hidden)]
    pub fn from_providers(providers: Vec<Provider>) -> Catalog {
        let mut catalog = Catalog::default();
        // Base providers first, so that an unknown host resolves to the original API.
        let mut providers = providers;
        providers.sort_by(|a, b| (a.extends.is_some(), &a.id).cmp(&(b.extends.is_some(), &b.id)));
        for (p, provider) in providers.into_iter().enumerate() {
            catalog.by_id.insert(provider.id.to_string(), p);
            for host in &provider.hosts {
                let host = host.to_ascii_lowercase();
                match host.split_once('*') {
                    Some((prefix, suffix)) => {
                        catalog
                            .host_patterns
                            .push((prefix.to_string(), suffix.to_string(), p))
                    }
                    None => {
                        catalog.hosts.entry(host).or_insert(p);
                    }
                }
            }
            let mut local = RouteIndex::default();
            for (o, op) in provider.operations.iter().enumerate() {
                for route in &op.routes {
                    local.insert(
                        &route.method,
                        route.template.clone(),
                        route.query.clone(),
                        o,
                    );
                    catalog.global.insert(
                        &route.method,
                        route.template.clone(),
                        route.query.clone(),
                        (p, o),
                    );
                }
            }
            catalog.local.push(local);
            catalog.providers.push(Arc::new(provider));
        }
        catalog
    }

    /// The ids of the providers, base providers first, then by id.
    ///
    /// ```
    /// let catalog = specter::Catalog::bundled().unwrap();
    /// let ids: Vec<&str> = catalog.provider_ids().collect();
    /// assert!(ids.contains(&"openai"));
    /// ```
    pub fn provider_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.providers.iter().map(|p| &*p.id)
    }

    /// The ids of a provider's operations, in spec order; `None` for an unknown provider.
    ///
    /// ```
    /// let catalog = specter::Catalog::bundled().unwrap();
    /// assert!(catalog.operation_ids("openai").unwrap().contains(&"embeddings"));
    /// assert!(catalog.operation_ids("no_such_provider").is_none());
    /// ```
    pub fn operation_ids(&self, provider: &str) -> Option<Vec<&str>> {
        let provider = self.provider(provider)?;
        Some(provider.operations.iter().map(|o| &*o.id).collect())
    }

    /// The providers, base providers first, then by id.
    ///
    /// Takes or returns types of specter's unstable internals: not covered by semver.
    #[doc(hidden)]
    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    /// A provider by id.
    ///
    /// Takes or returns types of specter's unstable internals: not covered by semver.
    #[doc(hidden)]
    pub fn provider(&self, id: &str) -> Option<&Arc<Provider>> {
        self.by_id.get(id).and_then(|&i| self.providers.get(i))
    }

    /// The provider answering for a host, if any.
    ///
    /// Takes or returns types of specter's unstable internals: not covered by semver.
    #[doc(hidden)]
    pub fn provider_for_host(&self, host: &str) -> Option<&Arc<Provider>> {
        let host = host.to_ascii_lowercase();
        let index = self.hosts.get(&host).copied().or_else(|| {
            self.host_patterns
                .iter()
                .find(|(prefix, suffix, _)| {
                    host.len() > prefix.len() + suffix.len()
                        && host.starts_with(prefix.as_str())
                        && host.ends_with(suffix.as_str())
                })
                .map(|(_, _, p)| *p)
        })?;
        self.providers.get(index)
    }

    /// Finds the operation for a request. With a known host, only that provider's routes are
    /// considered; otherwise the first provider (base providers first) with a matching route.
    ///
    /// Takes or returns types of specter's unstable internals: not covered by semver.
    #[doc(hidden)]
    pub fn find(
        &self,
        method: &str,
        host: Option<&str>,
        path: &str,
        query: &[(String, String)],
    ) -> Option<Match> {
        if let Some(provider) = host.and_then(|h| self.provider_for_host(h)) {
            return self.find_in(&provider.id, method, path, query);
        }
        let (&(p, o), captures) = self.global.first(method, path, query)?;
        let operation = self.providers.get(p)?.operations.get(o)?.clone();
        Some(Match {
            operation,
            captures,
        })
    }

    /// Finds the operation for a request to a given provider (the gateway's `/{provider}/...`).
    ///
    /// Takes or returns types of specter's unstable internals: not covered by semver.
    #[doc(hidden)]
    pub fn find_in(
        &self,
        provider: &str,
        method: &str,
        path: &str,
        query: &[(String, String)],
    ) -> Option<Match> {
        let p = *self.by_id.get(provider)?;
        let (&o, captures) = self.local.get(p)?.first(method, path, query)?;
        let operation = self.providers.get(p)?.operations.get(o)?.clone();
        Some(Match {
            operation,
            captures,
        })
    }

    /// An operation by `provider/id` or `provider/sdk-method` (e.g. `openai/chat.completions.create`).
    ///
    /// Takes or returns types of specter's unstable internals: not covered by semver.
    #[doc(hidden)]
    pub fn operation(&self, name: &str) -> Option<Arc<Operation>> {
        let (provider, op) = name.split_once('/')?;
        let provider = self.provider(provider)?;
        provider
            .operations
            .iter()
            .find(|o| &*o.id == op)
            .or_else(|| {
                provider
                    .operations
                    .iter()
                    .find(|o| o.sdk_methods.iter().any(|m| m == op))
            })
            .cloned()
    }
}

/// Reads provider files: each path is a file, or a directory whose `*.yaml`/`*.yml` files are read
/// in name order. The default size caps apply; see [`read_sources_within`].
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<Source>, LoadError> {
    read_sources_within(paths, &ReadLimits::default())
}

/// [`read_sources`] with the given size caps. Every file must be a regular file (or a symbolic
/// link to one) of at most `limits.max_file_bytes`, and all of them together at most
/// `limits.max_total_bytes`; sizes are checked before anything is read.
pub fn read_sources_within(
    paths: &[PathBuf],
    limits: &ReadLimits,
) -> Result<Vec<Source>, LoadError> {
    let files = list_files(paths)?;
    let mut total = 0u64;
    for path in &files {
        let size = crate::files::regular_file_size(path)?;
        if size > limits.max_file_bytes {
            return Err(ReadError::TooLarge {
                path: path.clone(),
                max: limits.max_file_bytes,
            }
            .into());
        }
        total = total.saturating_add(size);
    }
    if total > limits.max_total_bytes {
        return Err(ReadError::TotalTooLarge {
            path: paths.first().cloned().unwrap_or_default(),
            total,
            max: limits.max_total_bytes,
        }
        .into());
    }
    let mut budget = limits.max_total_bytes;
    let mut sources = Vec::with_capacity(files.len());
    for path in files {
        // Files that grew since they were measured still cannot exceed either cap.
        let text = crate::files::read_text(&path, limits.max_file_bytes.min(budget))?;
        budget = budget.saturating_sub(text.len() as u64);
        sources.push(Source {
            name: path.display().to_string(),
            text,
        });
    }
    Ok(sources)
}

/// The files named by `paths`: files as given, directories as their `*.yaml`/`*.yml` entries in
/// name order.
fn list_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| LoadError::Io {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| LoadError::Io {
                path: path.clone(),
                source,
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_yaml(p))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// The catalog in force, shared by routing and instrumentation and swapped whole on reload.
/// Readers take the current catalog (an `Arc`) and keep it for as long as they need it, so a call
/// that started keeps its rules while a reload installs new ones.
///
/// ```
/// let slot = specter::unstable::catalog::CatalogSlot::new(specter::Catalog::bundled().unwrap());
/// let before = slot.current();
/// slot.replace(specter::Catalog::from_providers(Vec::new()));
/// assert!(slot.current().providers().is_empty());
/// assert!(!before.providers().is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct CatalogSlot(Arc<std::sync::RwLock<Arc<Catalog>>>);

impl CatalogSlot {
    /// A slot holding `catalog`.
    pub fn new(catalog: Catalog) -> CatalogSlot {
        CatalogSlot(Arc::new(std::sync::RwLock::new(Arc::new(catalog))))
    }

    /// The catalog in force now.
    pub fn current(&self) -> Arc<Catalog> {
        match self.0.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Installs `catalog`; returns the one it replaces.
    pub fn replace(&self, catalog: Catalog) -> Arc<Catalog> {
        let mut slot = match self.0.write() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        std::mem::replace(&mut *slot, Arc::new(catalog))
    }
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

    fn local(name: &str, text: &str) -> Source {
        Source {
            name: format!("mine/{name}"),
            text: text.to_string(),
        }
    }

    /// OpenAI's bundled spec with one more operation.
    fn openai_with_extra() -> String {
        format!(
            "{}\n  - id: extra\n    operation_name: chat\n    match: {{ method: POST, path: /extra }}\n",
            bundled_text("openai").trim_end()
        )
    }

    #[test]
    fn a_local_spec_is_added_to_the_bundled_ones() {
        let acme = "id: acme\nprovider_name: acme\nupstream: { base_url: https://api.acme.test, hosts: [api.acme.test] }\noperations:\n  - id: chat\n    operation_name: chat\n    match: { path: /chat }\n";
        let layered = layer_on_bundled(vec![local("acme.yaml", acme)]);
        assert!(layered.replaced.is_empty());
        let catalog = Catalog::from_sources(&layered.sources).unwrap();
        assert_eq!(catalog.providers().len(), bundled::PROVIDERS.len() + 1);
        assert_eq!(catalog.provider("acme").unwrap().file, "mine/acme.yaml");
        assert!(catalog.provider("openai").is_some());
    }

    #[test]
    fn a_local_spec_with_a_bundled_id_replaces_it_and_is_what_others_extend() {
        let acme = "id: acme\nextends: openai\nprovider_name: acme\nupstream: { base_url: https://api.acme.test, hosts: [api.acme.test] }\n";
        let layered = layer_on_bundled(vec![
            local("openai.yaml", &openai_with_extra()),
            local("acme.yaml", acme),
        ]);
        assert_eq!(
            layered.replaced,
            vec![Replacement {
                id: "openai".into(),
                file: "mine/openai.yaml".into(),
                identical: false
            }]
        );
        let catalog = Catalog::from_sources(&layered.sources).unwrap();
        assert_eq!(catalog.providers().len(), bundled::PROVIDERS.len() + 1);
        assert_eq!(catalog.provider("openai").unwrap().file, "mine/openai.yaml");
        // The local acme and the bundled groq both extend the local openai.
        assert!(catalog.operation("acme/extra").is_some());
        assert!(catalog.operation("groq/extra").is_some());
        assert!(catalog.operation("acme/chat").is_some());
    }

    #[test]
    fn a_copy_of_a_bundled_spec_is_an_identical_replacement() {
        let layered = layer_on_bundled(vec![local("openai.yaml", &bundled_text("openai"))]);
        assert_eq!(layered.replaced.len(), 1);
        assert!(layered.replaced[0].identical);
        assert_eq!(layered.sources.len(), bundled::PROVIDERS.len());
    }

    #[test]
    fn without_bundled_only_the_directory_is_loaded_and_extends_needs_its_parent_there() {
        let dir = std::env::temp_dir().join(format!("specter-layered-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("acme.yaml"),
            "id: acme\nextends: openai\nprovider_name: acme\n",
        )
        .unwrap();
        let limits = ReadLimits::default();
        let with = Catalog::load_layered(std::slice::from_ref(&dir), &limits, true).unwrap();
        assert_eq!(with.catalog.providers().len(), bundled::PROVIDERS.len() + 1);
        assert!(with.catalog.operation("acme/chat").is_some());
        let Err(LoadError::Invalid(diags)) =
            Catalog::load_layered(std::slice::from_ref(&dir), &limits, false)
        else {
            panic!("`extends: openai` cannot resolve without the bundled providers");
        };
        let rendered = diags.to_string();
        assert!(
            rendered.contains("acme.yaml:2:1: extends: unknown provider `openai`"),
            "{rendered}"
        );
        std::fs::write(dir.join("openai.yaml"), bundled_text("openai")).unwrap();
        let alone = Catalog::load_layered(std::slice::from_ref(&dir), &limits, false).unwrap();
        let ids: Vec<&str> = alone.catalog.providers().iter().map(|p| &*p.id).collect();
        assert_eq!(ids, vec!["openai", "acme"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
