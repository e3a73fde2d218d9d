//! Replays every recorded exchange under `tests/fixtures/<provider>/<case>/` through
//! `specter::offline::extract` with the specs in `providers/`, and snapshots the span as
//! `tests/snapshots/fixtures__<provider>__<case>.snap`. Adding a provider or a case adds no test
//! code. Each snapshot was checked by hand against its fixture's bodies.
//!
//! `SPECTER_FIXTURES=anthropic` (a provider, or `provider/case`) replays only the matching cases.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use specter::offline::{extract, ExtractOptions, Recorded};
use specter::Catalog;

mod common;

use common::{fixture_cases as cases, meta_value};

fn name_of(dir: &Path) -> (String, String) {
    let case = dir.file_name().unwrap().to_str().unwrap().to_string();
    let provider = dir
        .parent()
        .and_then(|p| p.file_name())
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    (provider, case)
}

#[test]
fn recorded_exchanges() {
    let catalog = Catalog::load(&[PathBuf::from("providers")]).unwrap();
    let only = std::env::var("SPECTER_FIXTURES").ok();
    let mut replayed = 0;
    for dir in cases() {
        let (provider, case) = name_of(&dir);
        if let Some(only) = &only {
            if *only != provider && *only != format!("{provider}/{case}") {
                continue;
            }
        }
        let meta = std::fs::read_to_string(dir.join("meta.yaml")).unwrap();
        let response_file = meta_value(&meta, "response_file").unwrap();
        let request_file =
            meta_value(&meta, "request_file").unwrap_or_else(|| "request.json".into());
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_default();
        let (request, response) = (read(&request_file), read(&response_file));
        let content_type = meta_value(&meta, "response_content_type").filter(|c| c != "null");
        let parsed = specter::yaml::parse(&meta).unwrap().value;
        let headers = |key: &str| -> Vec<(String, String)> {
            parsed[key]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str().map_or_else(|| v.to_string(), str::to_string),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let (request_headers, response_headers) =
            (headers("request_headers"), headers("response_headers"));
        let exchange = Recorded {
            method: &meta_value(&meta, "method").unwrap(),
            url: &meta_value(&meta, "url").unwrap(),
            status: meta_value(&meta, "status").unwrap().parse().unwrap(),
            request: &request,
            response: &response,
            content_type: content_type.as_deref(),
            request_headers: &request_headers,
            response_headers: &response_headers,
        };
        let output = extract(&catalog, &exchange, &ExtractOptions::default())
            .unwrap_or_else(|e| panic!("{provider}/{case}: {e}"));
        assert_eq!(output["provider"], provider.as_str(), "{provider}/{case}");
        insta::assert_json_snapshot!(format!("{provider}__{case}"), output);
        replayed += 1;
    }
    if only.is_none() {
        assert!(replayed >= 21, "replayed {replayed} fixtures");
    }
}

#[test]
fn every_fixture_names_a_provider_and_every_provider_has_fixtures() {
    let catalog = Catalog::load(&[PathBuf::from("providers")]).unwrap();
    let fixture_providers: std::collections::BTreeSet<String> =
        cases().iter().map(|d| name_of(d).0).collect();
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
