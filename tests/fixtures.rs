//! Replays every recorded exchange under `tests/fixtures/<provider>/<case>/` with the specs in
//! `providers/` through the harness of `specter test` (`specter::harness::run_cases`), and checks
//! that each one matches its snapshot `tests/snapshots/fixtures__<provider>__<case>.snap`. Adding
//! a provider or a case adds no test code. Each snapshot was checked by hand against its
//! fixture's bodies.
//!
//! `SPECTER_FIXTURES=anthropic` (filters as `specter test` takes them, separated by commas)
//! replays only the matching cases. A new or changed snapshot is written as `.snap.new` for
//! `specter test --review` or `cargo insta review` (not on CI; `INSTA_UPDATE=always` accepts it,
//! `INSTA_UPDATE=no` writes nothing).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use specter::harness::{self, cases, Outcome, RunOptions, Update};
use specter::Catalog;

fn catalog() -> Catalog {
    Catalog::load(&[PathBuf::from("providers")]).unwrap()
}

/// What to do with new and changed snapshots, as insta decides it.
fn update() -> Update {
    match std::env::var("INSTA_UPDATE").as_deref() {
        Ok("always") => Update::Accept,
        Ok("no") => Update::Nothing,
        _ if std::env::var_os("CI").is_some() => Update::Nothing,
        _ => Update::Pending,
    }
}

fn filters() -> Vec<String> {
    std::env::var("SPECTER_FIXTURES")
        .map(|f| f.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

#[test]
fn recorded_exchanges() {
    let options = RunOptions::new(
        PathBuf::from("tests/fixtures"),
        PathBuf::from("tests/snapshots"),
    )
    .with_filters(filters())
    .with_source("tests/fixtures.rs".into())
    .with_update(update());
    let report = harness::run_cases(&catalog(), &options).unwrap();
    let problems: Vec<String> = report
        .results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Matched => None,
            Outcome::New(_) => Some(format!("{}: new snapshot", r.case.id())),
            Outcome::Changed { .. } => Some(format!(
                "{}: differs from {}",
                r.case.id(),
                r.snapshot_path.display()
            )),
            Outcome::Failed(problem) => Some(format!("{}: {problem}", r.case.id())),
            other => Some(format!("{}: {other:?}", r.case.id())),
        })
        .collect();
    assert!(
        problems.is_empty(),
        "{} case(s) do not match their snapshot (`specter test` shows the diffs):\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(report.passed(), report.results.len());
    assert!(
        report.stale.is_empty(),
        "snapshots without a case: {:?}",
        report.stale
    );
    if options.filters.is_empty() {
        assert!(
            report.passed() >= 139,
            "replayed {} fixtures",
            report.passed()
        );
    }
}

#[test]
fn every_fixture_names_a_provider_and_every_provider_has_fixtures() {
    let catalog = catalog();
    let fixture_providers: std::collections::BTreeSet<String> =
        cases::discover(std::path::Path::new("tests/fixtures"))
            .unwrap()
            .into_iter()
            .map(|c| c.provider)
            .collect();
    for p in &fixture_providers {
        assert!(
            catalog.provider(p).is_some(),
            "tests/fixtures/{p} names no provider in providers/"
        );
    }
    for p in catalog.providers() {
        assert!(
            fixture_providers.contains(&*p.id),
            "provider `{}` has no fixture in tests/fixtures/{}",
            p.id,
            p.id
        );
    }
}
