//! Catalog benchmarks: loading and compiling the bundled providers beside a plain YAML parse of
//! the same files, and route lookup (`Catalog::find`) with the bundled catalog and with 500
//! synthetic providers added, beside a bare hash-map lookup of the host.
//!
//! Run with `cargo bench --bench catalog` (add `-- --quick` for a short check).

// Benchmarks are test code: a setup failure should stop the run loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use specter::unstable::compile::Source;
use specter::Catalog;

const SYNTHETIC: usize = 500;

/// A small, standalone provider: its own id and host, two operations. With `shared_paths` its
/// routes are OpenAI's (`/v1/chat/completions`, as for OpenAI-compatible APIs), else under its own
/// prefix `/s{i}/v1`.
fn synthetic_provider(i: usize, shared_paths: bool) -> Source {
    let prefix = if shared_paths {
        "/v1".to_string()
    } else {
        format!("/s{i}/v1")
    };
    let text = format!(
        r#"id: synth{i}
name: Synthetic {i}
provider_name: synth{i}
docs: https://docs.synth{i}.example/api
upstream:
  base_url: https://api.synth{i}.example
  hosts: [api.synth{i}.example]
path_prefixes: [{prefix}]

operations:
  - id: chat
    operation_name: chat
    match: {{ method: POST, path: /chat/completions }}
    request:
      attributes:
        gen_ai.request.model: $.model
        gen_ai.request.temperature: $.temperature
        gen_ai.request.max_tokens: {{ first: [$.max_completion_tokens, $.max_tokens] }}
    response:
      attributes:
        gen_ai.response.id: $.id
        gen_ai.response.model: $.model
        gen_ai.usage.input_tokens: $.usage.prompt_tokens
        gen_ai.usage.output_tokens: $.usage.completion_tokens

  - id: embeddings
    operation_name: embeddings
    match: {{ method: POST, path: /embeddings }}
    request:
      attributes:
        gen_ai.request.model: $.model
    response:
      attributes:
        gen_ai.usage.input_tokens: $.usage.prompt_tokens
"#
    );
    Source {
        name: format!("synthetic/synth{i}.yaml"),
        text,
    }
}

fn bundled_sources() -> Vec<Source> {
    specter::unstable::catalog::bundled::PROVIDERS
        .iter()
        .map(|(name, text)| Source {
            name: format!("providers/{name}"),
            text: (*text).to_string(),
        })
        .collect()
}

fn bench_compile(c: &mut Criterion) {
    let sources = bundled_sources();
    let bytes: usize = sources.iter().map(|s| s.text.len()).sum();
    eprintln!(
        "catalog/compile: {} bundled providers, {bytes} bytes of YAML",
        sources.len()
    );
    let mut group = c.benchmark_group("catalog/compile_bundled");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("yaml_parse", |b| {
        b.iter(|| {
            for s in &sources {
                black_box(yaml_rust2::YamlLoader::load_from_str(black_box(&s.text)).unwrap());
            }
        })
    });
    // `Catalog::from_sources` compiles every time; `Catalog::bundled()` reuses the compiled
    // specs after its first call (a clone and a route index), which is not what is measured here.
    group.bench_function("specter", |b| {
        b.iter(|| Catalog::from_sources(black_box(&sources)).unwrap())
    });
    group.finish();
}

/// One lookup: method, host (`None` = unknown to every provider), path.
type Lookup = (&'static str, Option<String>, String);

fn bench_find(c: &mut Criterion) {
    let bundled = Catalog::bundled().unwrap();
    let with_synthetic = |shared_paths: bool| {
        let mut sources = bundled_sources();
        sources.extend((0..SYNTHETIC).map(|i| synthetic_provider(i, shared_paths)));
        let started = Instant::now();
        let catalog = Catalog::from_sources(&sources).unwrap();
        eprintln!(
            "catalog/find: {} providers (shared paths: {shared_paths}) compiled in {:?} (one run, setup)",
            catalog.providers().len(),
            started.elapsed()
        );
        catalog
    };
    let large = with_synthetic(false);
    let shared = with_synthetic(true);
    let last = SYNTHETIC - 1;
    let openai_known: Lookup = (
        "POST",
        Some("api.openai.com".into()),
        "/v1/chat/completions".into(),
    );
    let openai_unknown_host: Lookup = (
        "POST",
        Some("llm-proxy.corp.internal".into()),
        "/v1/chat/completions".into(),
    );
    let miss: Lookup = (
        "POST",
        Some("llm-proxy.corp.internal".into()),
        "/v9/nothing/here".into(),
    );
    let synth_known: Lookup = (
        "POST",
        Some(format!("api.synth{last}.example")),
        format!("/s{last}/v1/chat/completions"),
    );
    let synth_unknown_host: Lookup = (
        "POST",
        Some("llm-proxy.corp.internal".into()),
        format!("/s{last}/v1/chat/completions"),
    );
    let cases: Vec<(&str, &Catalog, &str, &Lookup, Option<&str>)> = vec![
        (
            "bundled",
            &bundled,
            "known_host",
            &openai_known,
            Some("openai"),
        ),
        (
            "bundled",
            &bundled,
            "unknown_host",
            &openai_unknown_host,
            Some("openai"),
        ),
        ("bundled", &bundled, "no_match", &miss, None),
        (
            "bundled+500",
            &large,
            "known_host",
            &openai_known,
            Some("openai"),
        ),
        (
            "bundled+500",
            &large,
            "unknown_host",
            &openai_unknown_host,
            Some("openai"),
        ),
        ("bundled+500", &large, "no_match", &miss, None),
        (
            "bundled+500",
            &large,
            "synthetic_known_host",
            &synth_known,
            Some("synth499"),
        ),
        (
            "bundled+500",
            &large,
            "synthetic_unknown_host",
            &synth_unknown_host,
            Some("synth499"),
        ),
        // 500 OpenAI-compatible providers on the same paths: an unknown host scans them all.
        (
            "bundled+500_shared_paths",
            &shared,
            "known_host",
            &openai_known,
            Some("openai"),
        ),
        (
            "bundled+500_shared_paths",
            &shared,
            "unknown_host",
            &openai_unknown_host,
            Some("openai"),
        ),
    ];
    let mut group = c.benchmark_group("catalog/find");
    // Baseline: the cheapest possible routing step, one hash-map lookup of the host.
    let hosts: HashMap<String, usize> = (0..SYNTHETIC)
        .map(|i| (format!("api.synth{i}.example"), i))
        .chain(std::iter::once(("api.openai.com".to_string(), SYNTHETIC)))
        .collect();
    group.bench_function("baseline_hashmap_host_get", |b| {
        b.iter(|| hosts.get(black_box("api.openai.com")).copied())
    });
    for (name, catalog, case, (method, host, path), expect) in cases {
        let found = catalog.find(method, host.as_deref(), path, &[]);
        assert_eq!(
            found.as_ref().map(|m| &*m.operation.provider),
            expect,
            "{name}/{case}"
        );
        group.bench_function(format!("{name}/{case}"), |b| {
            b.iter(|| catalog.find(method, black_box(host.as_deref()), black_box(path), &[]))
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

fn main() {
    let mut c = config().configure_from_args();
    bench_compile(&mut c);
    bench_find(&mut c);
    c.final_summary();
}
