//! Replays every recorded exchange under `tests/fixtures/<provider>/<case>/` through
//! `specter::offline::extract` and snapshots the span. Adding a case adds no test code.
//! Each snapshot was checked by hand against its fixture's bodies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use specter::offline::{extract, Recorded};
use specter::Catalog;

/// The value of a top-level scalar key of `meta.yaml`.
fn meta_value(meta: &str, key: &str) -> Option<String> {
    meta.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .map(|v| v.trim().trim_matches('\'').trim_matches('"').to_string())
}

#[test]
fn recorded_exchanges() {
    let catalog = Catalog::bundled().unwrap();
    let mut replayed = 0;
    insta::glob!("fixtures/*/*/meta.yaml", |meta_path| {
        let dir = meta_path.parent().unwrap();
        let meta = std::fs::read_to_string(meta_path).unwrap();
        let response_file = meta_value(&meta, "response_file").unwrap();
        let request_file =
            meta_value(&meta, "request_file").unwrap_or_else(|| "request.json".into());
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_default();
        let (request, response) = (read(&request_file), read(&response_file));
        let exchange = Recorded {
            method: &meta_value(&meta, "method").unwrap(),
            url: &meta_value(&meta, "url").unwrap(),
            status: meta_value(&meta, "status").unwrap().parse().unwrap(),
            request: &request,
            response: &response,
        };
        let output = extract(&catalog, &exchange, true).unwrap();
        let provider = dir
            .parent()
            .and_then(Path::file_name)
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(output["provider"], provider, "{}", dir.display());
        insta::assert_json_snapshot!(output);
        replayed += 1;
    });
    assert!(replayed >= 15, "replayed {replayed} fixtures");
}
