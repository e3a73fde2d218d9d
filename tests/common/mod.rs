//! What the fixture-driven tests share: finding the recorded cases and reading their `meta.yaml`.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

/// The value of a top-level scalar key of `meta.yaml`.
pub fn meta_value(meta: &str, key: &str) -> Option<String> {
    meta.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .map(|v| v.trim().trim_matches('\'').trim_matches('"').to_string())
}

/// Every case directory `tests/fixtures/<provider>/<case>/` with a `meta.yaml`, sorted.
pub fn fixture_cases() -> Vec<PathBuf> {
    let mut cases = Vec::new();
    for provider in std::fs::read_dir("tests/fixtures").unwrap() {
        for case in std::fs::read_dir(provider.unwrap().path()).unwrap() {
            let dir = case.unwrap().path();
            if dir.join("meta.yaml").is_file() {
                cases.push(dir);
            }
        }
    }
    cases.sort();
    cases
}
