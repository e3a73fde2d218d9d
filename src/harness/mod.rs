//! The fixture harness behind `specter test` and the repository's `tests/fixtures.rs`: every
//! recorded case under `<fixtures>/<provider>/<case>/` is extracted exactly as `specter extract`
//! extracts it ([`crate::offline::extract`]) and compared with its snapshot
//! `<snapshots>/fixtures__<provider>__<case>.snap`.
//!
//! The module owns the run and its report; [`cases`] reads case folders, [`snapshot`] reads and
//! writes insta's `.snap` format. A new or changed snapshot is written next to the old one as a
//! pending `.snap.new` (so `cargo insta review` can review it too), or accepted at once.

pub mod cases;
pub mod snapshot;

use std::path::{Path, PathBuf};

use crate::offline::{extract, ExtractError, ExtractOptions};
use crate::Catalog;

pub use cases::{Case, CaseData, CaseError};
pub use snapshot::Snapshot;

/// The `expression` of a snapshot's header.
pub const EXPRESSION: &str = "output";

/// What to do with new and changed snapshots.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Update {
    /// Write them as pending `.snap.new` files.
    #[default]
    Pending,
    /// Write them as `.snap` files at once.
    Accept,
    /// Write nothing.
    Nothing,
}

/// How cases are run.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The fixture directory: `<provider>/<case>/meta.yaml` and the body files.
    pub fixtures: PathBuf,
    /// The snapshot directory.
    pub snapshots: PathBuf,
    /// Filters: a filter that is a provider id selects that provider's cases; any other selects
    /// the cases whose `provider/case` contains it. No filter selects every case.
    pub filters: Vec<String>,
    /// The `source` written in the header of new snapshots.
    pub source: String,
    /// What to do with new and changed snapshots.
    pub update: Update,
}

impl RunOptions {
    /// Runs every case of `fixtures` against the snapshots in `snapshots`, writing new and changed
    /// snapshots as pending, with `specter test` as the header's `source`.
    ///
    /// ```
    /// use specter::harness::{RunOptions, Update};
    ///
    /// let options = RunOptions::new("tests/fixtures".into(), "tests/snapshots".into())
    ///     .with_filters(vec!["openai".into()])
    ///     .with_source("tests/fixtures.rs".into())
    ///     .with_update(Update::Nothing);
    /// assert_eq!(options.update, Update::Nothing);
    /// ```
    pub fn new(fixtures: PathBuf, snapshots: PathBuf) -> Self {
        RunOptions {
            fixtures,
            snapshots,
            filters: Vec::new(),
            source: "specter test".to_string(),
            update: Update::Pending,
        }
    }

    /// Sets [`RunOptions::filters`].
    pub fn with_filters(mut self, filters: Vec<String>) -> Self {
        self.filters = filters;
        self
    }

    /// Sets [`RunOptions::source`].
    pub fn with_source(mut self, source: String) -> Self {
        self.source = source;
        self
    }

    /// Sets [`RunOptions::update`].
    pub fn with_update(mut self, update: Update) -> Self {
        self.update = update;
        self
    }
}

/// Why the cases could not be run at all.
///
/// ```
/// use specter::harness::{run_cases, HarnessError, RunOptions};
///
/// let catalog = specter::Catalog::bundled().unwrap();
/// let options = RunOptions::new("/no/such/fixtures".into(), "/no/such/snapshots".into());
/// let error = run_cases(&catalog, &options).unwrap_err();
/// assert!(matches!(error, HarnessError::Fixtures(_)));
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The fixture directory cannot be read.
    #[error(transparent)]
    Fixtures(#[from] CaseError),
    /// A snapshot file cannot be written or removed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Why one case failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaseProblem {
    /// The case folder cannot be read.
    #[error(transparent)]
    Read(#[from] CaseError),
    /// The exchange cannot be extracted.
    #[error(transparent)]
    Extract(#[from] ExtractError),
    /// The exchange matched another provider than the case's folder names.
    #[error("the exchange matched provider `{found}`, but the case is in the folder of `{expected}` (check the URL's host)")]
    WrongProvider {
        /// The provider of the folder.
        expected: String,
        /// The provider matched.
        found: String,
    },
    /// The existing snapshot cannot be read.
    #[error("cannot read {path}: {source}")]
    Snapshot {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The outcome of one case.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// The extracted value is the snapshot's.
    Matched,
    /// The case has no snapshot yet.
    New(Snapshot),
    /// The extracted value differs from the snapshot.
    Changed {
        /// The stored snapshot.
        old: Snapshot,
        /// The snapshot of the extracted value.
        new: Snapshot,
    },
    /// The case could not be extracted.
    Failed(CaseProblem),
}

/// One case run.
#[derive(Debug)]
pub struct CaseResult {
    /// The case.
    pub case: Case,
    /// Its snapshot file.
    pub snapshot_path: PathBuf,
    /// What came out.
    pub outcome: Outcome,
    /// Whether a new or changed snapshot was written as `.snap` ([`Update::Accept`]).
    pub accepted: bool,
}

impl CaseResult {
    /// The pending file of the case's snapshot.
    pub fn pending_path(&self) -> PathBuf {
        snapshot::pending_path(&self.snapshot_path)
    }

    /// The snapshot waiting for review, for a new or changed case.
    pub fn proposed(&self) -> Option<&Snapshot> {
        match &self.outcome {
            Outcome::New(new) | Outcome::Changed { new, .. } => Some(new),
            Outcome::Matched | Outcome::Failed(_) => None,
        }
    }
}

/// Everything a run found.
///
/// ```
/// use specter::harness::{run_cases, Outcome, RunOptions, Update};
///
/// let catalog = specter::Catalog::bundled().unwrap();
/// // The repository's recorded OpenAI cases against their snapshots, writing nothing.
/// let options = RunOptions::new("tests/fixtures".into(), "tests/snapshots".into())
///     .with_filters(vec!["openai".into()])
///     .with_update(Update::Nothing);
/// let report = run_cases(&catalog, &options).unwrap();
/// assert!(!report.results.is_empty());
/// assert!(report.results.iter().all(|r| matches!(r.outcome, Outcome::Matched)));
/// assert!(report.all_passed());
/// ```
#[derive(Debug, Default)]
pub struct Report {
    /// The cases run, in order.
    pub results: Vec<CaseResult>,
    /// Cases left out by the filters.
    pub filtered_out: usize,
    /// Snapshot files of the selected providers with no case.
    pub stale: Vec<PathBuf>,
}

impl Report {
    /// Cases whose snapshot matched.
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Matched))
    }

    /// Cases that failed: a problem, or a changed value.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_) | Outcome::Changed { .. }))
    }

    /// Cases without a snapshot.
    pub fn new_snapshots(&self) -> usize {
        self.count(|o| matches!(o, Outcome::New(_)))
    }

    /// New or changed snapshots written as `.snap`.
    pub fn accepted(&self) -> usize {
        self.results.iter().filter(|r| r.accepted).count()
    }

    /// Whether every case matched its snapshot (or had its new value accepted).
    pub fn all_passed(&self) -> bool {
        self.results
            .iter()
            .all(|r| r.accepted || matches!(r.outcome, Outcome::Matched))
    }

    fn count(&self, pred: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| pred(&r.outcome)).count()
    }
}

/// Runs every selected case and writes new and changed snapshots as `options.update` says.
///
/// ```
/// use specter::harness::{run_cases, Outcome, RunOptions, Update};
///
/// let catalog = specter::Catalog::bundled().unwrap();
/// // The repository's recorded OpenAI cases against their snapshots, writing nothing.
/// let options = RunOptions::new("tests/fixtures".into(), "tests/snapshots".into())
///     .with_filters(vec!["openai".into()])
///     .with_update(Update::Nothing);
/// let report = run_cases(&catalog, &options).unwrap();
/// assert!(!report.results.is_empty());
/// assert!(report.results.iter().all(|r| matches!(r.outcome, Outcome::Matched)));
/// assert!(report.all_passed());
/// ```
pub fn run_cases(catalog: &Catalog, options: &RunOptions) -> Result<Report, HarnessError> {
    let all = cases::discover(&options.fixtures)?;
    let (selected, filtered_out): (Vec<Case>, Vec<Case>) = all
        .iter()
        .cloned()
        .partition(|case| selects(&all, &options.filters, case));
    let mut report = Report {
        filtered_out: filtered_out.len(),
        ..Report::default()
    };
    for case in selected.iter() {
        let result = run_case(catalog, options, case.clone());
        let result = apply_update(result, options.update)?;
        report.results.push(result);
    }
    report.stale = stale_snapshots(&options.snapshots, &all, &selected, &options.filters);
    Ok(report)
}

/// Whether the filters select a case.
fn selects(all: &[Case], filters: &[String], case: &Case) -> bool {
    if filters.is_empty() {
        return true;
    }
    filters.iter().any(|filter| {
        if all.iter().any(|c| c.provider == *filter) {
            case.provider == *filter
        } else {
            case.id().contains(filter.as_str())
        }
    })
}

/// Extracts one case and compares it with its snapshot.
pub fn run_case(catalog: &Catalog, options: &RunOptions, case: Case) -> CaseResult {
    let snapshot_path = options
        .snapshots
        .join(snapshot::file_name(&case.provider, &case.name));
    let outcome = match outcome_of(catalog, options, &case, &snapshot_path) {
        Ok(outcome) => outcome,
        Err(problem) => Outcome::Failed(problem),
    };
    CaseResult {
        case,
        snapshot_path,
        outcome,
        accepted: false,
    }
}

fn outcome_of(
    catalog: &Catalog,
    options: &RunOptions,
    case: &Case,
    snapshot_path: &Path,
) -> Result<Outcome, CaseProblem> {
    let contents = extract_case(catalog, case)?;
    let old = match std::fs::read_to_string(snapshot_path) {
        Ok(text) => Snapshot::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Outcome::New(Snapshot::new(
                &options.source,
                EXPRESSION,
                contents,
            )))
        }
        Err(source) => {
            return Err(CaseProblem::Snapshot {
                path: snapshot_path.to_path_buf(),
                source,
            })
        }
    };
    if old.matches(&contents) {
        return Ok(Outcome::Matched);
    }
    let new = Snapshot {
        header: old.header.clone(),
        contents,
    };
    Ok(Outcome::Changed { old, new })
}

/// The snapshot text of a case: the output of `specter extract` for its exchange, pretty JSON.
pub fn extract_case(catalog: &Catalog, case: &Case) -> Result<String, CaseProblem> {
    let data = cases::read_case(&case.dir)?;
    let output = extract(catalog, &data.recorded(), &ExtractOptions::default())?;
    let found = output
        .get("provider")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    if found != case.provider {
        return Err(CaseProblem::WrongProvider {
            expected: case.provider.clone(),
            found: found.to_string(),
        });
    }
    Ok(snapshot::to_pretty_json(&output))
}

/// Writes or removes the case's pending file, or accepts its new snapshot.
fn apply_update(mut result: CaseResult, update: Update) -> Result<CaseResult, HarnessError> {
    let pending = result.pending_path();
    match (update, result.proposed()) {
        (Update::Nothing, _) => {}
        (Update::Pending, Some(new)) => write(&pending, &new.to_text())?,
        (Update::Accept, Some(_)) => {
            accept(&result)?;
            result.accepted = true;
        }
        (Update::Pending | Update::Accept, None) => {
            if matches!(result.outcome, Outcome::Matched) {
                remove(&pending)?;
            }
        }
    }
    Ok(result)
}

/// Accepts the new snapshot of a case: writes the `.snap` and removes the `.snap.new`.
pub fn accept(result: &CaseResult) -> Result<(), HarnessError> {
    if let Some(new) = result.proposed() {
        write(&result.snapshot_path, &new.for_persistence().to_text())?;
    }
    remove(&result.pending_path())
}

/// Rejects the new snapshot of a case: removes the `.snap.new`, the `.snap` stays as it is.
pub fn reject(result: &CaseResult) -> Result<(), HarnessError> {
    remove(&result.pending_path())
}

fn write(path: &Path, text: &str) -> Result<(), HarnessError> {
    let io = |source| HarnessError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}

fn remove(path: &Path) -> Result<(), HarnessError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(HarnessError::Write {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Fixture snapshots that belong to no case (with filters: only those of the selected cases'
/// providers).
fn stale_snapshots(
    dir: &Path,
    all: &[Case],
    selected: &[Case],
    filters: &[String],
) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut stale: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let Some((provider, case)) = snapshot::case_of_file_name(name) else {
                return false;
            };
            let known = all.iter().any(|c| c.provider == provider && c.name == case);
            let selected = filters.is_empty() || selected.iter().any(|c| c.provider == provider);
            !known && selected
        })
        .collect();
    stale.sort();
    stale
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn case(provider: &str, name: &str) -> Case {
        Case {
            provider: provider.into(),
            name: name.into(),
            dir: PathBuf::new(),
        }
    }

    #[test]
    fn a_provider_filter_selects_that_provider_and_other_text_a_substring() {
        let all = vec![
            case("openai", "chat_plain"),
            case("openai", "chat_stream"),
            case("azure_openai", "chat_plain"),
        ];
        let chosen = |filters: &[&str]| -> Vec<String> {
            let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
            all.iter()
                .filter(|c| selects(&all, &filters, c))
                .map(Case::id)
                .collect()
        };
        assert_eq!(
            chosen(&["openai"]),
            vec!["openai/chat_plain", "openai/chat_stream"]
        );
        assert_eq!(chosen(&["stream"]), vec!["openai/chat_stream"]);
        assert_eq!(
            chosen(&["/chat_plain"]),
            vec!["openai/chat_plain", "azure_openai/chat_plain"]
        );
        assert_eq!(chosen(&[]).len(), 3);
        assert!(chosen(&["nothing"]).is_empty());
    }

    #[test]
    fn stale_snapshots_are_those_of_no_case() {
        let tmp = tempfile::tempdir().unwrap();
        for name in [
            "fixtures__openai__chat.snap",
            "fixtures__openai__gone.snap",
            "fixtures__removed__x.snap",
            "specs__other.snap",
        ] {
            std::fs::write(tmp.path().join(name), "").unwrap();
        }
        let all = vec![case("openai", "chat"), case("anthropic", "m")];
        let names = |paths: Vec<PathBuf>| -> Vec<String> {
            paths
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names(stale_snapshots(tmp.path(), &all, &all, &[])),
            vec!["fixtures__openai__gone.snap", "fixtures__removed__x.snap"]
        );
        let anthropic = vec![case("anthropic", "m")];
        assert!(stale_snapshots(tmp.path(), &all, &anthropic, &["anthropic".into()]).is_empty());
    }
}
