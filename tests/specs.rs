//! Spec loading: the broken-spec corpus (rendered diagnostics, snapshot-tested), the committed
//! schema, and the bundled provider list.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use specter::unstable::catalog::read_sources;
use specter::unstable::compile::Source;
use specter::Catalog;

fn openai() -> Source {
    Source {
        name: "providers/openai.yaml".into(),
        text: std::fs::read_to_string("providers/openai.yaml").unwrap(),
    }
}

/// Renders the diagnostics of one broken case (a file, or a directory of files), loaded together
/// with the bundled OpenAI spec so that `extends: openai` resolves.
fn diagnostics_of(case: &Path) -> specter::Diagnostics {
    let mut sources = read_sources(&[case.to_path_buf()]).unwrap();
    for s in &mut sources {
        s.name = s.name.replace('\\', "/");
    }
    sources.push(openai());
    Catalog::from_sources(&sources).expect_err("a broken spec must not load")
}

#[test]
fn broken_specs_report_file_line_and_place() {
    let dir = Path::new("tests/specs/broken");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "the corpus has {} cases", cases.len());
    for case in cases {
        let name = case.file_stem().unwrap().to_str().unwrap().to_string();
        let diags = diagnostics_of(&case);
        assert!(!diags.is_empty(), "{name}");
        for d in diags.iter() {
            assert!(d.file.starts_with("tests/specs/broken/"), "{name}: {d}");
            assert!(d.line >= 1 && d.col >= 1, "{name}: {d}");
        }
        insta::assert_snapshot!(format!("broken_{name}"), diags.to_string());
    }
}

#[test]
fn every_problem_of_a_file_is_reported_at_once() {
    let text = "id: many\nprovider_name: x\noperations:\n  - id: a\n    operation_name: chat\n    match: { path: /a }\n    request:\n      attributes:\n        gen_ai.request.model: nope\n        gen_ai.request.temperatur: $.t\n  - id: a\n    match: { path: /b }\n";
    let diags = Catalog::from_sources(&[Source {
        name: "many.yaml".into(),
        text: text.into(),
    }])
    .unwrap_err();
    let rendered = diags.to_string();
    assert_eq!(diags.len(), 4, "{rendered}");
    assert!(rendered.contains("many.yaml:9:9: operations[0].request.attributes.\"gen_ai.request.model\": invalid JSONPath `nope`"), "{rendered}");
    assert!(
        rendered.contains("did you mean `gen_ai.request.temperature`?"),
        "{rendered}"
    );
    assert!(
        rendered.contains("many.yaml:11:5: operations[1].id: duplicate operation id `a`"),
        "{rendered}"
    );
    assert!(
        rendered.contains("operation `a` has no `operation_name`"),
        "{rendered}"
    );
}

#[test]
fn committed_schema_matches_the_types() {
    let generated =
        serde_json::to_string_pretty(&specter::unstable::spec::provider_schema()).unwrap() + "\n";
    let committed = std::fs::read_to_string("schemas/provider.schema.json").unwrap();
    assert!(
        generated == committed,
        "schemas/provider.schema.json is stale: run `cargo run -- schema > schemas/provider.schema.json`"
    );
}

#[test]
fn committed_config_schema_matches_the_types() {
    let generated =
        serde_json::to_string_pretty(&specter::unstable::gateway::config_schema()).unwrap() + "\n";
    let committed = std::fs::read_to_string("schemas/config.schema.json").unwrap();
    assert!(
        generated == committed,
        "schemas/config.schema.json is stale: run `cargo run -- schema --config > schemas/config.schema.json`"
    );
}

#[test]
fn bundled_list_matches_the_providers_directory() {
    let mut on_disk: Vec<String> = std::fs::read_dir("providers")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().to_string())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    let mut bundled: Vec<String> = specter::unstable::catalog::bundled::PROVIDERS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    bundled.sort();
    assert_eq!(bundled, on_disk, "update src/catalog/bundled.rs");
    for (name, text) in specter::unstable::catalog::bundled::PROVIDERS {
        let on_disk = std::fs::read_to_string(Path::new("providers").join(name)).unwrap();
        assert_eq!(*text, on_disk);
    }
}

#[test]
fn bundled_providers_are_valid_and_start_with_the_schema_comment() {
    let catalog = Catalog::bundled().unwrap();
    assert!(catalog.provider("openai").is_some());
    for (name, text) in specter::unstable::catalog::bundled::PROVIDERS {
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schemas/provider.schema.json\n"),
            "{name} must start with the schema comment"
        );
    }
}

#[test]
fn extends_inherits_and_overrides_operations() {
    let child = Source {
        name: "groq.yaml".into(),
        text: "id: groq\nextends: openai\nprovider_name: groq\nupstream: { base_url: https://api.groq.com, hosts: [api.groq.com] }\npath_prefixes: [/openai/v1]\noperations:\n  - id: embeddings\n    enabled: false\n".into(),
    };
    let catalog = Catalog::from_sources(&[child, openai()]).unwrap();
    let found = catalog
        .find(
            "POST",
            Some("api.groq.com"),
            "/openai/v1/chat/completions",
            &[],
        )
        .unwrap();
    assert_eq!(&*found.operation.provider, "groq");
    assert_eq!(&*found.operation.provider_name, "groq");
    assert!(catalog
        .find("POST", Some("api.groq.com"), "/openai/v1/embeddings", &[])
        .is_none());
    // An unknown host resolves to the base provider.
    let found = catalog
        .find("POST", Some("localhost"), "/v1/chat/completions", &[])
        .unwrap();
    assert_eq!(&*found.operation.provider, "openai");
    assert_eq!(
        &*catalog
            .operation("openai/chat.completions.create")
            .unwrap()
            .id,
        "chat"
    );
}

#[test]
fn generic_parts_need_kind_and_coalesce_by_needs_coalesce() {
    let text = "id: odd\nprovider_name: x\noperations:\n  - id: a\n    operation_name: chat\n    match: { path: /a }\n    request:\n      input_messages:\n        - each: $.messages[*]\n          parts:\n            - type: generic\n              each: $.content[*]\n              content: $\n    stream:\n      framing: ndjson\n      done_when: { value: $.done, equals: true }\n      fold:\n        - each: $.parts[*]\n          push: { parts: $ }\n          coalesce_by: [thought]\n";
    let diags = Catalog::from_sources(&[Source {
        name: "odd.yaml".into(),
        text: text.into(),
    }])
    .unwrap_err();
    let rendered = diags.to_string();
    assert_eq!(diags.len(), 2, "{rendered}");
    assert!(
        rendered.contains("a `generic` part needs `kind`"),
        "{rendered}"
    );
    assert!(
        rendered.contains("`coalesce_by` only applies with `coalesce`"),
        "{rendered}"
    );
}
