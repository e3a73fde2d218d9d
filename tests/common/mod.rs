//! What the integration tests share: finding the recorded cases and reading their `meta.yaml`
//! (here), the gateway in process (`in_process`) and the `specter serve` binary as a child
//! process (`serve`). Each test crate takes what it needs with `mod common;`.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod in_process;
pub mod serve;

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
